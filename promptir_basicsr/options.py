"""Option files: reading, user plugins, checks and warnings before a run starts, defaults, the log's echo.

basicsr's ``parse_options`` stays the parser of record (it owns ``--force_yml``, the launcher and
the paths); this module runs around it: :func:`prepare_run` before (plugins, the schema check of
:mod:`promptir_basicsr.option_schema`, consistency warnings, demo data), :func:`apply_runtime_defaults`
right after it (installed by ``compat.fix_runtime_options``) and :func:`options_echo`, which replaces
basicsr's ``dict2str`` at the start of the log (installed by ``compat.readable_options_echo``).
"""
import importlib
import os
import os.path as osp
from collections.abc import Mapping

import torch
import yaml

from .option_schema import Key, OptionError, collect_problems, register_known_keys  # noqa: F401 (the API)


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
    - ``manual_seed``: basicsr seeds Python, NumPy and torch *before* it applies ``--force_yml``, so a forced
      ``manual_seed`` changed only the loaders' seeds, not the network's initialisation; seeded again here
      (the same state as basicsr's when the seed was not forced: nothing draws random numbers in between).
    """
    if opt.get('manual_seed') is not None:
        from basicsr.utils import set_random_seed
        set_random_seed(int(opt['manual_seed']) + int(opt.get('rank', 0)))
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
        try:
            node[last] = _postprocess_yml_value(value)
        except Exception as err:  # noqa: BLE001 - basicsr eval()s list values as Python
            raise OptionError(f'--force_yml {entry!r}: cannot read the value {value!r} ({type(err).__name__}: {err}); '
                              "basicsr reads a list as Python, so quote its strings: key=['a','b']") from err
    return opt


def prepare_run(opt_path, is_train=True, force_yml=None):
    """Everything that must happen before basicsr builds or writes anything: ``--force_yml``, ``plugins:``,
    the option check (every problem at once, :class:`OptionError`), consistency warnings, demo data.

    Returns the options as they will be run. Warnings and notes are kept for the run's log
    (:func:`options_echo` logs them first thing); nothing is written when the check fails.
    """
    _NOTES.clear()
    opt = read_option_file(opt_path)
    apply_force_yml(opt, force_yml)  # first, so `--force_yml plugins=[...]` is imported too
    import_plugins(opt, opt_path)
    from .utils.demo_data import demo_data_root, prepare_demo_data
    from .data.demo import is_complete
    demo_root = demo_data_root(opt)
    unbuilt = demo_root if demo_root and not is_complete(demo_root) else None
    validate_options(opt, opt_path, is_train=is_train, unbuilt_root=unbuilt)
    for message in consistency_warnings(opt, is_train):
        add_note(message, 'warning')
    if demo_root:
        prepare_demo_data(opt)
        state = 'written now from scikit-image\'s photos' if unbuilt else 'already there'
        add_note(f'Demo data (option demo_data): {osp.abspath(demo_root)} ({state}; '
                 '`python scripts/make_demo_data.py` rebuilds it)')
        if unbuilt:
            validate_options(opt, opt_path, is_train=is_train)  # its paths, now that they exist
    return opt


def validate_options(opt, opt_path, is_train=True, check_paths=True, unbuilt_root=None):
    """Every problem of an option dict at once, before anything is built or written.

    The schema (:mod:`promptir_basicsr.option_schema`: unknown keys with the closest known one, required keys,
    types, registry names, the arguments of the architecture, optimizer, scheduler, losses, metrics and
    degradations, the model's own rules), data and checkpoint paths (not those under ``unbuilt_root``, a
    folder about to be generated), and ``num_gpu`` against this machine. Raises :class:`OptionError` listing
    all problems with the file's name; returns ``opt`` when it is fine.
    """
    problems = collect_problems(opt, is_train)
    if check_paths:
        problems += _path_problems(opt, unbuilt_root)
    if problems:
        listing = '\n'.join(f'  - {p}' for p in problems)
        raise OptionError(f'{opt_path}: {len(problems)} problem(s) in the options:\n{listing}')
    return opt


def _walk_data_paths(node, where):
    """(where, path) for every data path in a dataset option (roots, meta/list files), nested sources too."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            if isinstance(value, str) and (key.startswith('dataroot') or key in ('meta_info_file', 'list_file')):
                yield f'{where}:{key}', value
            elif isinstance(value, (Mapping, list)):
                yield from _walk_data_paths(value, f'{where}:{key}')
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from _walk_data_paths(item, f'{where}[{i}]')


def _path_problems(opt, unbuilt_root=None):
    problems = []
    unbuilt = osp.abspath(unbuilt_root) + os.sep if unbuilt_root else None
    datasets = opt.get('datasets')
    for phase, dataset_opt in (datasets.items() if isinstance(datasets, Mapping) else ()):
        for where, path in _walk_data_paths(dataset_opt, f'datasets:{phase}'):
            path = os.path.expanduser(path)
            if unbuilt and osp.abspath(path).startswith(unbuilt):
                continue
            if not os.path.exists(path):
                problems.append(f'{where}: {path} does not exist')
    paths = opt.get('path')
    for key, value in (paths.items() if isinstance(paths, Mapping) else ()):
        if (key.startswith('pretrain_network') or key == 'resume_state') and value:
            if not os.path.isfile(os.path.expanduser(str(value))):
                problems.append(f'path:{key}: {value} does not exist')
    return problems


# ---- consistency warnings ----------------------------------------------------------------------------------
def _cpu_cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def consistency_warnings(opt, is_train=True):
    """Options that run but most likely not as meant: the scheduler's horizon against ``total_iter``,
    validation or checkpoints never reached, more loader processes than CPU cores, loader keys basicsr
    ignores for val/test sets, the model's own (``option_warnings``). A batch larger than the training set
    is reported when the set is built (``compat.fix_epoch_count``)."""
    from basicsr.utils.registry import MODEL_REGISTRY

    from .models.schedulers import horizon_warnings
    from .option_schema import _registry_lookup
    warnings = []
    train = opt.get('train') if is_train else None
    if isinstance(train, Mapping) and isinstance(train.get('total_iter'), (int, float)):
        total = int(train['total_iter'])
        if isinstance(train.get('scheduler'), Mapping):
            warnings += horizon_warnings(train['scheduler'], train)
        for section, key, what in (('val', 'val_freq', 'no validation runs during training, only the final one'),
                                   ('logger', 'save_checkpoint_freq',
                                    'no checkpoint or training state is saved before the end, so a crash '
                                    'cannot be resumed')):
            value = (opt.get(section) or {}).get(key)
            if isinstance(value, (int, float)) and value > total:
                warnings.append(f'{section}:{key} {value:g} is beyond train:total_iter {total}: {what}')
        model_rules = getattr(_registry_lookup(MODEL_REGISTRY, opt.get('model_type')), 'option_warnings', None)
        if model_rules is not None:
            warnings += model_rules(opt)
    datasets = opt.get('datasets') or {}
    for phase, dataset_opt in datasets.items():
        if not isinstance(dataset_opt, Mapping):
            continue
        if str(phase).split('_')[0] == 'train':
            workers = dataset_opt.get('num_worker_per_gpu') or 0
            num_gpu = opt.get('num_gpu', 'auto')
            if num_gpu in (None, 'auto'):
                num_gpu = torch.cuda.device_count() if torch.cuda.is_available() else 0
            processes = int(os.environ.get('LOCAL_WORLD_SIZE', 0))
            loaders = workers * (processes or max(int(num_gpu), 1))
            cores = _cpu_cores()
            if isinstance(workers, int) and loaders > cores:
                per = f'{processes} processes' if processes else f'{max(int(num_gpu), 1)} GPU(s)'
                warnings.append(f'datasets:{phase}:num_worker_per_gpu {workers} x {per} = {loaders} data loader '
                                f'processes on {cores} CPU cores: they compete with training for the cores; at most '
                                f'{max(cores // (processes or max(int(num_gpu), 1)), 1)} per GPU fits this machine')
        else:
            ignored = [k for k, default in (('batch_size_per_gpu', 1), ('num_worker_per_gpu', 0))
                       if k in dataset_opt and dataset_opt[k] != default]
            if ignored:
                warnings.append(f'datasets:{phase}: {" and ".join(ignored)} ignored: basicsr loads val/test sets one '
                                'image at a time in the main process')
    return warnings


# ---- notes for the log, and the options echoed at its start ---------------------------------------------------
_NOTES = []  # (level, message) gathered by prepare_run before basicsr's logger exists


def add_note(message, level='info'):
    """Keep ``message`` for the start of the run's log (``level``: 'info' or 'warning')."""
    _NOTES.append((level, message))


def options_echo(opt):
    """What basicsr logs right after creating its logger (in place of its ``dict2str``): first the notes of
    :func:`prepare_run` (consistency warnings, where the demo data went) as log records of their level,
    then the options as readable YAML."""
    from basicsr.utils import get_root_logger
    logger = get_root_logger()
    for level, message in _NOTES:
        getattr(logger, level)(message)
    _NOTES.clear()
    return 'Options:\n' + options_yaml(opt)


class _FlowMapping(dict):
    """A mapping written on one line, as option files write each entry of ``sources``."""


class _EchoDumper(yaml.SafeDumper):
    pass


def _represent_mapping(dumper, data):
    return dumper.represent_mapping('tag:yaml.org,2002:map', data.items(), flow_style=isinstance(data, _FlowMapping))


def _represent_list(dumper, data):
    flat = all(not isinstance(v, (Mapping, list, tuple)) for v in data)
    return dumper.represent_sequence('tag:yaml.org,2002:seq', data, flow_style=flat)


_EchoDumper.add_representer(type(None), lambda dumper, _: dumper.represent_scalar('tag:yaml.org,2002:null', '~'))
_EchoDumper.add_representer(dict, _represent_mapping)
_EchoDumper.add_representer(_FlowMapping, _represent_mapping)
_EchoDumper.add_representer(list, _represent_list)


def _plain(node, in_list=False):
    if isinstance(node, Mapping):
        return (_FlowMapping if in_list else dict)((str(k), _plain(v)) for k, v in node.items())
    if isinstance(node, (list, tuple)):
        return [_plain(v, in_list=True) for v in node]
    return node


def options_yaml(opt):
    """The options as YAML in the option files' style: sections as blocks, lists of numbers and the entries
    of lists of mappings (``sources``, ``degradation``) on one line each."""
    return yaml.dump(_plain(opt), Dumper=_EchoDumper, sort_keys=False, allow_unicode=True, width=200)
