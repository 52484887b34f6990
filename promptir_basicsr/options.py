"""Option files: reading, user plugins, defaults, and checks before a run starts.

basicsr's ``parse_options`` stays the parser of record (it owns ``--force_yml``, the launcher and
the paths); this module runs around it: :func:`prepare_run` before (plugins, validation) and
:func:`apply_runtime_defaults` right after it (installed by ``compat.fix_runtime_options``).
"""
import importlib
import os
import os.path as osp

import torch
import yaml

from .errors import UserError


class OptionError(UserError):
    """An option file that cannot run; the message names the file and every problem found."""


def read_option_file(opt_path):
    """The option file as a dict, with a clear error for a missing or malformed file."""
    if not osp.isfile(opt_path):
        raise OptionError(f'Option file not found: {opt_path}')
    from basicsr.utils.options import ordered_yaml
    with open(opt_path, encoding='utf-8') as f:
        try:
            opt = yaml.load(f, Loader=ordered_yaml()[0])
        except yaml.YAMLError as err:
            raise OptionError(f'{opt_path}: not valid YAML: {err}') from err
    if not isinstance(opt, dict):
        raise OptionError(f'{opt_path}: the top level must be a mapping of option keys, got {type(opt).__name__}')
    return opt


def import_plugins(opt, opt_path):
    """Import the modules named by the top-level ``plugins:`` key, so they can register things.

    Returns the imported modules. A module that cannot be imported is an :class:`OptionError` that
    names the option file and the module.
    """
    plugins = opt.get('plugins') or []
    if isinstance(plugins, str):
        plugins = [plugins]
    if not isinstance(plugins, (list, tuple)):
        raise OptionError(f'{opt_path}: `plugins` must be a list of Python module names, got {plugins!r}')
    # A console script does not put the current directory on sys.path; users expect a plugin file
    # beside them or beside the option file to import.
    import sys
    for folder in (osp.dirname(osp.abspath(opt_path)), osp.abspath('.')):
        if folder not in sys.path:
            sys.path.append(folder)
    modules = []
    for name in plugins:
        try:
            modules.append(importlib.import_module(name))
        except ImportError as err:
            raise OptionError(
                f'{opt_path}: plugins: cannot import module {name!r} ({err}). Install it, or put its folder on '
                'PYTHONPATH (or run from the folder that holds it).') from err
    return modules


def apply_runtime_defaults(opt):
    """Repair option values that basicsr 1.4.2 would crash on, in place.

    - ``num_gpu: auto`` (or missing): the number of CUDA devices, 0 (the CPU) without CUDA.
    - ``prefetch_mode: cuda`` on a machine without CUDA: the CPU prefetcher.
    - ``logger.use_tb_logger``, ``val.save_img``, ``val.suffix``: indexed by basicsr without a default.
    """
    cuda_count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if opt.get('num_gpu') in (None, 'auto'):
        opt['num_gpu'] = cuda_count
    if cuda_count == 0:
        for dataset_opt in opt.get('datasets', {}).values():
            if dataset_opt.get('prefetch_mode') == 'cuda':
                dataset_opt['prefetch_mode'] = 'cpu'
                dataset_opt['pin_memory'] = False
    opt.setdefault('logger', {}).setdefault('use_tb_logger', False)
    if opt.get('val') is not None:
        opt['val'].setdefault('save_img', False)
        opt['val'].setdefault('suffix', None)
    return opt


def apply_force_yml(opt, entries):
    """basicsr's ``--force_yml a:b=value`` applied to ``opt`` (same value rules, no ``exec``).

    Used to check the options a run will really have; basicsr applies them again itself.
    """
    from basicsr.utils.options import _postprocess_yml_value
    for entry in entries or []:
        if '=' not in entry:
            raise OptionError(f'--force_yml {entry!r}: expected key:subkey=value')
        keys, value = (part.strip() for part in entry.split('=', 1))
        *parents, last = keys.split(':')
        node = opt
        for key in parents:
            if not isinstance(node.get(key), dict):
                raise OptionError(f'--force_yml {entry!r}: no option section {key!r}')
            node = node[key]
        node[last] = _postprocess_yml_value(value)
    return opt


def prepare_run(opt_path, is_train=True, force_yml=None):
    """Everything that must happen before basicsr builds anything: import ``plugins:``, check options.

    Returns the options as they will be run (with ``--force_yml`` applied).
    """
    opt = read_option_file(opt_path)
    import_plugins(opt, opt_path)
    apply_force_yml(opt, force_yml)
    from .utils.demo_data import prepare_demo_data
    prepare_demo_data(opt)  # `demo_data: true`: make datasets/demo before its paths are checked
    validate_options(opt, opt_path, is_train=is_train)
    return opt


# Keys basicsr 1.4.2 and this module read, per section; anything else is most likely a typo.
# Our models, datasets and guards declare the keys they read themselves (register_known_keys).
KNOWN_KEYS = {
    '': {'name', 'model_type', 'scale', 'num_gpu', 'manual_seed', 'datasets', 'network_g', 'network_d', 'path',
         'train', 'val', 'logger', 'dist_params', 'find_unused_parameters', 'plugins', 'is_train', 'dist', 'rank',
         'world_size', 'auto_resume', 'root_path', 'demo_data', 'high_order_degradation'},
    'path': {'pretrain_network_g', 'pretrain_network_d', 'strict_load_g', 'strict_load_d', 'param_key_g',
             'param_key_d', 'resume_state', 'ignore_resume_networks', 'experiments_root', 'models',
             'training_states', 'log', 'visualization', 'results_root'},
    'logger': {'print_freq', 'save_checkpoint_freq', 'use_tb_logger', 'wandb'},
    'val': {'val_freq', 'save_img', 'suffix', 'metrics', 'pbar', 'center_frame_only', 'flip_seq', 'num_val_samples'},
    'train': {'optim_g', 'optim_d', 'scheduler', 'total_iter', 'warmup_iter', 'pixel_opt', 'perceptual_opt',
              'gan_opt', 'ema_decay', 'net_d_iters', 'net_d_init_iters'},
}


def register_known_keys(section, *keys):
    """Let a model (or a user's plugin) declare the extra option keys it reads in ``section``."""
    KNOWN_KEYS.setdefault(section, set()).update(keys)


def _closest(key, known):
    import difflib
    match = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ''


def _known_list(registry):
    return ', '.join(sorted(name[:-len('_basicsr')] if name.endswith('_basicsr') else name for name, _ in registry))


def _check_registry(problems, where, name, registry, kind):
    if name is None:
        problems.append(f'{where}: missing `type` ({kind})')
    elif name not in registry and f'{name}_basicsr' not in registry:  # Registry.get's own fallback
        problems.append(f"{where}: unknown {kind} {name!r}{_closest(name, registry.keys())}; known: "
                        f'{_known_list(registry)}. A plugin module listed under `plugins:` can register more.')


def _walk_data_paths(node, where):
    """(where, path) for every data path in a dataset option (roots, meta/list files), nested sources too."""
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, str) and (key.startswith('dataroot') or key in ('meta_info_file', 'list_file')):
                yield f'{where}:{key}', value
            elif isinstance(value, (dict, list)):
                yield from _walk_data_paths(value, f'{where}:{key}')
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from _walk_data_paths(item, f'{where}[{i}]')


def _walk_degradations(node, where):
    """(where, op type) for every op of every ``degradation:`` list in a dataset option."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == 'degradation' and isinstance(value, list):
                for i, op in enumerate(value):
                    yield f'{where}:degradation[{i}]', op.get('type') if isinstance(op, dict) else None
            elif isinstance(value, (dict, list)):
                yield from _walk_degradations(value, f'{where}:{key}')
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from _walk_degradations(item, f'{where}[{i}]')


def validate_options(opt, opt_path, is_train=True, check_paths=True):
    """Every problem of an option file at once, before anything is built or written.

    Checks required keys and their types, unknown keys (with the closest known key), registry names
    (model, network, datasets, degradations, losses, metrics), data and checkpoint paths, and ``num_gpu`` against
    this machine. Raises :class:`OptionError` listing all problems; returns ``opt`` when it is fine.
    """
    from basicsr.utils.registry import ARCH_REGISTRY, DATASET_REGISTRY, LOSS_REGISTRY, METRIC_REGISTRY, MODEL_REGISTRY

    from .data.degradations import DEGRADATION_REGISTRY
    problems = []

    required = ['name', 'model_type', 'network_g', 'datasets', 'path'] + (['train', 'logger'] if is_train else [])
    for key in required:
        if key not in opt:
            problems.append(f'missing required key `{key}`')
    for section, known in KNOWN_KEYS.items():
        node = opt if section == '' else opt.get(section)
        if not isinstance(node, dict):
            continue
        for key in node:
            if key not in known:
                where = f'{section}:{key}' if section else key
                problems.append(f'unknown key `{where}`{_closest(key, known)}')

    if 'name' in opt and not isinstance(opt['name'], str):
        problems.append(f'`name` must be a string, got {opt["name"]!r}')
    num_gpu = opt.get('num_gpu', 'auto')
    cuda_count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if num_gpu != 'auto' and not (isinstance(num_gpu, int) and num_gpu >= 0):
        problems.append(f'`num_gpu` must be `auto` or a whole number >= 0, got {num_gpu!r}')
    elif isinstance(num_gpu, int) and num_gpu > cuda_count:
        problems.append(f'`num_gpu: {num_gpu}` but this machine has {cuda_count} CUDA device(s); use `num_gpu: auto` '
                        f'({"the CPU" if cuda_count == 0 else cuda_count} here)')
    if 'manual_seed' in opt and opt['manual_seed'] is not None and not isinstance(opt['manual_seed'], int):
        problems.append(f'`manual_seed` must be a whole number, got {opt["manual_seed"]!r}')

    if 'model_type' in opt:
        _check_registry(problems, 'model_type', opt['model_type'], MODEL_REGISTRY, 'model')
    if isinstance(opt.get('network_g'), dict):
        _check_registry(problems, 'network_g:type', opt['network_g'].get('type'), ARCH_REGISTRY, 'architecture')

    datasets = opt.get('datasets')
    if 'datasets' in opt and not (isinstance(datasets, dict) and datasets):
        problems.append('`datasets` must map phases (train, val_1, test_1, ...) to dataset options')
    for phase, dataset_opt in (datasets or {}).items():
        if is_train and phase != 'train' and not phase.startswith('val'):
            problems.append(f"datasets:{phase}: a training run's phases are `train` and `val*`")
        if not isinstance(dataset_opt, dict):
            problems.append(f'datasets:{phase}: expected a mapping of dataset options')
            continue
        _check_registry(problems, f'datasets:{phase}:type', dataset_opt.get('type'), DATASET_REGISTRY, 'dataset')
        for where, op_type in _walk_degradations(dataset_opt, f'datasets:{phase}'):
            _check_registry(problems, where, op_type, DEGRADATION_REGISTRY, 'degradation')
        if check_paths:
            for where, path in _walk_data_paths(dataset_opt, f'datasets:{phase}'):
                if not os.path.exists(os.path.expanduser(path)):
                    problems.append(f'{where}: {path} does not exist')
    if is_train and isinstance(datasets, dict) and 'train' not in datasets:
        problems.append('datasets: a training run needs a `train` dataset')

    train = opt.get('train') if is_train else None
    if isinstance(train, dict):
        for key in ('optim_g', 'total_iter'):
            if key not in train:
                problems.append(f'missing required key `train:{key}`')
        if 'total_iter' in train and not _is_number(train['total_iter']):
            problems.append(f'`train:total_iter` must be a number, got {train["total_iter"]!r}')
        for key, value in train.items():
            if key.endswith('_opt') and isinstance(value, dict):
                _check_registry(problems, f'train:{key}:type', value.get('type'), LOSS_REGISTRY, 'loss')
    logger_opt = opt.get('logger') if is_train else None
    if isinstance(logger_opt, dict):
        for key in ('print_freq', 'save_checkpoint_freq'):
            if key not in logger_opt:
                problems.append(f'missing required key `logger:{key}`')
            elif not _is_number(logger_opt[key]):
                problems.append(f'`logger:{key}` must be a number, got {logger_opt[key]!r}')
    val = opt.get('val')
    if isinstance(val, dict):
        if is_train and 'val_freq' in val and not _is_number(val['val_freq']):
            problems.append(f'`val:val_freq` must be a number, got {val["val_freq"]!r}')
        for name, metric in (val.get('metrics') or {}).items():
            if isinstance(metric, dict):
                _check_registry(problems, f'val:metrics:{name}:type', metric.get('type'), METRIC_REGISTRY, 'metric')

    if check_paths and isinstance(opt.get('path'), dict):
        for key, value in opt['path'].items():
            if (key.startswith('pretrain_network') or key == 'resume_state') and value:
                if not os.path.isfile(os.path.expanduser(str(value))):
                    problems.append(f'path:{key}: {value} does not exist')

    if problems:
        listing = '\n'.join(f'  - {p}' for p in problems)
        raise OptionError(f'{opt_path}: {len(problems)} problem(s) in the options:\n{listing}')
    return opt


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)
