"""Repairs for basicsr 1.4.2 on today's stack (torch 2.14, torchvision 0.29, numpy 2, py-lmdb 3).

One small function per breakage, each applied by :func:`apply_all` (called on
``import promptir_basicsr``) and each covered by its own test in ``tests/test_compat.py``.
We patch basicsr's module attributes where its own code looks them up; we never copy a whole
basicsr module. Where a replacement re-states a basicsr function, its docstring says what differs.
Every replacement is marked (:func:`_ours`), and each repair returns early when it finds its mark:
applying a repair twice (a second ``apply_all()``, a reload) never wraps basicsr's function twice.
"""
import importlib
import logging
import os
import os.path as osp
import sys

import torch

_MARK = '_promptir_compat'


def _ours(obj):
    """Mark ``obj`` as one of our replacements; returns it."""
    setattr(obj, _MARK, True)
    return obj


def _is_ours(obj):
    return getattr(obj, _MARK, False)


def alias_functional_tensor():
    """torchvision 0.17 renamed ``transforms.functional_tensor`` to ``_functional_tensor``.

    ``basicsr/data/degradations.py`` still imports the old name, so ``import basicsr`` fails.
    Register the new module under the old name, only when the old one is missing.
    """
    old_name = 'torchvision.transforms.functional_tensor'
    if old_name in sys.modules:
        return
    try:
        importlib.import_module(old_name)
    except ImportError:
        sys.modules[old_name] = importlib.import_module('torchvision.transforms._functional_tensor')


def cpu_map_location():
    """Where loaded tensors go: the current CUDA device if there is one, else the CPU."""
    if torch.cuda.is_available():
        device_id = torch.cuda.current_device()
        return lambda storage, loc: storage.cuda(device_id)
    return 'cpu'


def newest_training_state(states_dir):
    """Path of the newest ``<iter>.state`` in ``states_dir``, or None.

    Only files named exactly ``<integer>.state`` count: checkpoints are written to a temporary
    name and renamed (see :func:`promptir_basicsr.utils.checkpoints.atomic_save`), so a kill during
    a save leaves no file that could be picked here.
    """
    if not osp.isdir(states_dir):
        return None
    iters = []
    for name in os.listdir(states_dir):
        stem, ext = osp.splitext(name)
        if ext == '.state' and stem.isdigit():
            iters.append(int(stem))
    return osp.join(states_dir, f'{max(iters)}.state') if iters else None


def fix_resume_state_loading():
    """Replace ``basicsr.train.load_resume_state`` (``train_pipeline`` looks it up as a global).

    Differs from basicsr's: it works without CUDA (basicsr calls ``torch.cuda.current_device()``
    unconditionally); the state is loaded with ``weights_only=True``; and when ``--auto_resume``
    finds no state it says so in one line, naming the folder it searched, instead of silently
    starting from iteration 0. That folder is ``opt['path']['training_states']``, i.e.
    ``experiments/<name>/training_states`` under the directory the command runs from (basicsr's
    root), so a run started elsewhere is not found.
    """
    import basicsr.train as basicsr_train
    from basicsr.utils import check_resume

    from .utils.checkpoints import load_checkpoint

    if _is_ours(basicsr_train.load_resume_state):
        return

    def load_resume_state(opt):
        resume_state_path = None
        if opt['auto_resume']:
            resume_state_path = newest_training_state(opt['path']['training_states'])
            if resume_state_path is not None:
                opt['path']['resume_state'] = resume_state_path
            elif opt.get('rank', 0) == 0:
                print(f"--auto_resume: no training state in {opt['path']['training_states']}; starting from "
                      'iteration 0 (a run is continued from the directory it was started in).', file=sys.stderr,
                      flush=True)
        elif opt['path'].get('resume_state'):
            resume_state_path = opt['path']['resume_state']
        if resume_state_path is None:
            return None
        resume_state = load_checkpoint(resume_state_path, map_location=cpu_map_location())
        check_resume(opt, resume_state['iter'])
        return resume_state

    basicsr_train.load_resume_state = _ours(load_resume_state)


def fix_cpu_distributed():
    """DDP on machines without CUDA (gloo), and the right backend on machines with it.

    basicsr's ``_init_dist_pytorch``/``_init_dist_slurm`` compute ``rank % cuda.device_count()``
    (a division by zero on CPU) and always use nccl; ``BaseModel.model_to_device`` passes
    ``device_ids=[torch.cuda.current_device()]``. Here: nccl with the rank's GPU when CUDA is
    available, gloo otherwise; ``device_ids=None`` for CPU modules. Without CUDA, data loader workers are
    forked again (basicsr's ``init_dist`` makes them spawn, re-importing everything at each epoch).
    """
    import torch.distributed as dist
    from basicsr.models import base_model
    from basicsr.utils import dist_util

    if _is_ours(base_model.BaseModel.model_to_device):
        return

    def _backend(requested):
        return requested if torch.cuda.is_available() else 'gloo'

    def _fork_loader_workers_without_cuda():
        # basicsr's init_dist sets the 'spawn' start method (for CUDA's sake): every DataLoader worker,
        # restarted each epoch, then re-imports torch, basicsr and this package (measured: 9-12 s before the
        # first batch of each epoch, 2 busy cores). Without CUDA nothing makes fork unsafe (Linux's default).
        import multiprocessing
        if not torch.cuda.is_available() and 'fork' in multiprocessing.get_all_start_methods():
            torch.multiprocessing.set_start_method('fork', force=True)

    def _init_dist_pytorch(backend, **kwargs):
        if torch.cuda.is_available():
            local_rank = int(os.environ.get('LOCAL_RANK', os.environ['RANK']))
            torch.cuda.set_device(local_rank % torch.cuda.device_count())
        _fork_loader_workers_without_cuda()
        dist.init_process_group(backend=_backend(backend), **kwargs)

    original_slurm = dist_util._init_dist_slurm

    def _init_dist_slurm(backend, port=None):
        if torch.cuda.is_available():
            return original_slurm(backend, port)
        # Same environment as basicsr's, without the CUDA device selection.
        import subprocess
        if port is not None:
            os.environ['MASTER_PORT'] = str(port)
        os.environ.setdefault('MASTER_PORT', '29500')
        node_list = os.environ['SLURM_NODELIST']
        os.environ['MASTER_ADDR'] = subprocess.getoutput(f'scontrol show hostname {node_list} | head -n1')
        os.environ['WORLD_SIZE'] = os.environ['SLURM_NTASKS']
        os.environ['RANK'] = os.environ['SLURM_PROCID']
        os.environ['LOCAL_RANK'] = os.environ.get('SLURM_LOCALID', '0')
        _fork_loader_workers_without_cuda()
        dist.init_process_group(backend='gloo')

    dist_util._init_dist_pytorch = _ours(_init_dist_pytorch)
    dist_util._init_dist_slurm = _ours(_init_dist_slurm)

    original_model_to_device = base_model.BaseModel.model_to_device

    def model_to_device(self, net):
        if self.opt['dist'] and self.device.type == 'cpu':
            from torch.nn.parallel import DistributedDataParallel
            net = net.to(self.device)
            return DistributedDataParallel(
                net, device_ids=None, find_unused_parameters=self.opt.get('find_unused_parameters', False))
        return original_model_to_device(self, net)

    base_model.BaseModel.model_to_device = _ours(model_to_device)


def fix_jpeg_quality_type():
    """OpenCV 5 rejects a float JPEG quality; basicsr's ``add_jpg_compression`` passes one."""
    from basicsr.data import degradations

    original = degradations.add_jpg_compression
    if _is_ours(original):
        return

    def add_jpg_compression(img, quality=90):
        return original(img, int(round(float(quality))))

    degradations.add_jpg_compression = _ours(add_jpg_compression)


_LMDB_ENVS = {}


def open_lmdb(path, **kwargs):
    """One read environment per (process, real path): py-lmdb 3 refuses a second ``open``.

    Train and validation reading the same database, or a re-forked worker, would open it twice.
    The process id in the key gives each forked worker its own environment.
    """
    import lmdb
    key = (os.getpid(), osp.realpath(path))
    env = _LMDB_ENVS.get(key)
    if env is None:
        env = lmdb.open(str(path), **kwargs)
        _LMDB_ENVS[key] = env
    return env


def fix_lmdb_reopen():
    """Make basicsr's ``LmdbBackend`` open its databases through :func:`open_lmdb`.

    Differs from basicsr's ``__init__`` only in calling :func:`open_lmdb` instead of ``lmdb.open``.
    """
    from basicsr.utils import file_client

    if _is_ours(file_client.LmdbBackend.__init__):
        return

    def __init__(self, db_paths, client_keys='default', readonly=True, lock=False, readahead=False, **kwargs):
        client_keys = [client_keys] if isinstance(client_keys, str) else list(client_keys)
        self.db_paths = [str(v) for v in db_paths] if isinstance(db_paths, (list, tuple)) else [str(db_paths)]
        if len(client_keys) != len(self.db_paths):
            raise ValueError(f'client_keys and db_paths should have the same length, '
                             f'but received {len(client_keys)} and {len(self.db_paths)}.')
        self._client = {
            client: open_lmdb(path, readonly=readonly, lock=lock, readahead=readahead, **kwargs)
            for client, path in zip(client_keys, self.db_paths)
        }

    file_client.LmdbBackend.__init__ = _ours(__init__)


def fix_checkpoint_io():
    """Route basicsr's checkpoint reads and writes through :mod:`promptir_basicsr.utils.checkpoints`.

    basicsr's ``save_network``/``save_training_state`` write with ``torch.save`` in place: a kill
    during that write leaves a truncated ``.pth``/``.state`` that ``--auto_resume`` then picks.
    Its ``load_network`` calls ``torch.load`` and, on a bad file, fails with torch's long message.
    All three look ``torch`` up as a global of ``basicsr.models.base_model``: give that module a
    ``torch`` whose ``save`` is :func:`atomic_save` (temporary file, then rename) and whose ``load``
    is :func:`load_checkpoint` (``weights_only=True``, a clear refusal of pickled code).
    """
    import types

    from basicsr.models import base_model

    from .utils.checkpoints import atomic_save, load_checkpoint

    if _is_ours(base_model.torch):
        return

    def load(f, map_location=None, **kwargs):
        return load_checkpoint(f, map_location=map_location)

    routed_torch = types.ModuleType('torch_with_safe_checkpoint_io')
    routed_torch.__dict__.update(torch.__dict__)
    routed_torch.save = atomic_save
    routed_torch.load = load
    _ours(routed_torch)
    base_model.torch = routed_torch
    base_model.BaseModel.load_network = _load_network_with_clear_mismatch(base_model.BaseModel.load_network)


def _load_network_with_clear_mismatch(load_network):
    """A strict load of a non-matching file fails with torch's RuntimeError, after basicsr has only
    logged the key differences as warnings. Raise a :class:`CheckpointError` that names the file, lists
    missing/unexpected/mis-shaped keys and says how to fix it."""
    from .utils.checkpoints import CheckpointError, compare_state_dicts, format_differences, load_checkpoint

    def wrapper(self, net, load_path, strict=True, param_key='params'):
        try:
            return load_network(self, net, load_path, strict, param_key)
        except RuntimeError as err:
            if isinstance(err, CheckpointError) or 'state_dict' not in str(err):
                raise
            bare = self.get_bare_model(net)
            ckpt = load_checkpoint(load_path)
            state = ckpt.get(param_key, ckpt.get('params', ckpt)) if param_key else ckpt
            state = {k[len('module.'):] if k.startswith('module.') else k: v for k, v in state.items()}
            differences = format_differences(compare_state_dicts(state, bare.state_dict()))
            raise CheckpointError(
                f'{load_path} does not match {type(bare).__name__} as configured in network_g:\n  '
                + '\n  '.join(differences) + '\nAn official release (PromptIR .ckpt, AirNet .pth) must be converted '
                'first: `basicsr convert --arch <Arch> <file> <out.pth>`. Otherwise check network_g\'s options, or set '
                'path:strict_load_g: false to load only the matching tensors.') from err

    return _ours(wrapper)


def report_device_in_env_info():
    """Say in the run's log whether it runs on CPU or CUDA (basicsr logs nothing about it).

    ``train_pipeline`` and ``test_pipeline`` log ``get_env_info()`` first thing; extend it there.
    """
    import basicsr.test as basicsr_test
    import basicsr.train as basicsr_train
    from basicsr.utils import logger as basicsr_logger

    if _is_ours(basicsr_train.get_env_info):
        return
    original = basicsr_logger.get_env_info

    def get_env_info():
        if torch.cuda.is_available():
            device = f'CUDA ({torch.cuda.device_count()} device(s): {torch.cuda.get_device_name(0)})'
        else:
            device = 'CPU (no CUDA device found; training and testing run on the CPU)'
        return original() + f'\n\tRunning on: {device}'

    basicsr_train.get_env_info = basicsr_test.get_env_info = _ours(get_env_info)


def fix_runtime_options():
    """Option values that crash basicsr 1.4.2 at run time, repaired right after it parses them.

    ``train_pipeline``/``test_pipeline`` call ``parse_options`` as a global of their own modules.
    The wrapper applies :func:`promptir_basicsr.options.apply_runtime_defaults`: CPU fallback for
    ``num_gpu`` and ``prefetch_mode: cuda`` without CUDA, defaults for keys basicsr indexes
    without checking (``logger.use_tb_logger``, ``val.suffix``, ``val.save_img``).
    """
    import basicsr.test as basicsr_test
    import basicsr.train as basicsr_train

    from .options import apply_runtime_defaults

    for module in (basicsr_train, basicsr_test):
        original = module.parse_options
        if _is_ours(original):
            continue

        def parse_options(root_path, is_train=True, _original=original):
            opt, args = _original(root_path, is_train=is_train)
            apply_runtime_defaults(opt)
            return opt, args

        module.parse_options = _ours(parse_options)


def fix_epoch_count():
    """Train for the full ``total_iter``: count epochs from the loader's real length.

    ``train_pipeline`` loops ``for epoch in range(start, total_epochs + 1)`` with ``total_epochs``
    computed from ``ceil(samples / batch)`` iterations per epoch, but basicsr's train loader drops the
    last partial batch (``drop_last=True``): an epoch has ``floor(samples / batch)`` iterations, so a
    run could stop early (481 of 500 iterations seen). ``train_pipeline`` looks
    ``create_train_val_dataloader`` up as a global of ``basicsr.train``; wrap it there. A train set
    with fewer samples per process than one batch is an error (a ``UserError``) instead of a run that never
    trains; a batch larger than the train set (made to work by ``dataset_enlarge_ratio``) is a warning.
    """
    import math

    import basicsr.train as basicsr_train

    original = basicsr_train.create_train_val_dataloader
    if _is_ours(original):
        return

    def create_train_val_dataloader(opt, logger):
        train_loader, train_sampler, val_loaders, total_epochs, total_iters = original(opt, logger)
        iters_per_epoch = len(train_loader)
        train_opt = opt['datasets']['train']
        batch = train_opt['batch_size_per_gpu'] * opt['world_size']
        if iters_per_epoch == 0:
            from .errors import UserError
            raise UserError(
                f"datasets:train: {len(train_sampler)} samples per process are fewer than batch_size_per_gpu "
                f"({train_opt['batch_size_per_gpu']}), so no full batch exists: lower "
                'batch_size_per_gpu, add images, or raise dataset_enlarge_ratio.')
        if batch > len(train_loader.dataset):
            logger.warning(f"datasets:train: a batch of {batch} samples (batch_size_per_gpu "
                           f"{train_opt['batch_size_per_gpu']} x {opt['world_size']} process(es)) is larger than the "
                           f'training set ({len(train_loader.dataset)} samples): every batch repeats samples.')
        real_epochs = math.ceil(total_iters / iters_per_epoch)
        if real_epochs != total_epochs:
            logger.info(f'Full batches per epoch: {iters_per_epoch} (the last partial batch is dropped); '
                        f'total epochs: {real_epochs}.')
        return train_loader, train_sampler, val_loaders, real_epochs, total_iters

    basicsr_train.create_train_val_dataloader = _ours(create_train_val_dataloader)


def readable_options_echo():
    """Echo the options at the start of the log as YAML, after the notes of the option check.

    ``train_pipeline``/``test_pipeline`` log ``dict2str(opt)`` (a global of their modules) right after
    creating the logger; basicsr's prints a list of sources as ``[OrderedDict([('name', ...), ...])]``.
    :func:`promptir_basicsr.options.options_echo` first logs the warnings and notes gathered before the
    logger existed (consistency warnings, where the demo data went), then returns readable YAML.
    """
    import basicsr.test as basicsr_test
    import basicsr.train as basicsr_train

    from .options import options_echo

    if _is_ours(basicsr_train.dict2str):
        return
    basicsr_train.dict2str = basicsr_test.dict2str = _ours(options_echo)


class _DropMessage(logging.Filter):
    """Drops log records whose message starts with ``prefix``."""

    def __init__(self, prefix):
        super().__init__()
        self.prefix = prefix

    def filter(self, record):
        return not str(record.msg).startswith(self.prefix)


def drop_misleading_validation_warning():
    """``train_pipeline`` warns "Multiple validation datasets are *only* supported by SRModel." at every
    validation with several sets, whatever the model: our models (SRModel subclasses) validate each set
    with its own log lines and tensorboard tags, so the line is false for them. Filter it out of basicsr's
    logger (its other messages are untouched)."""
    logger = logging.getLogger('basicsr')
    if not any(isinstance(f, _DropMessage) for f in logger.filters):
        logger.addFilter(_DropMessage('Multiple validation datasets are *only* supported by SRModel'))


def apply_all():
    """Apply every repair (each only once, however often this runs). The import alias must come
    before anything imports basicsr."""
    alias_functional_tensor()
    fix_resume_state_loading()
    fix_cpu_distributed()
    fix_jpeg_quality_type()
    fix_lmdb_reopen()
    fix_checkpoint_io()
    report_device_in_env_info()
    fix_runtime_options()
    fix_epoch_count()
    readable_options_echo()
    drop_misleading_validation_warning()
