"""Option files: reading, user plugins, defaults, and checks before a run starts.

basicsr's ``parse_options`` stays the parser of record (it owns ``--force_yml``, the launcher and
the paths); this module runs around it: :func:`prepare_run` before (plugins, validation) and
:func:`apply_runtime_defaults` right after it (installed by ``compat.fix_runtime_options``).
"""
import importlib
import os.path as osp

import torch
import yaml


class OptionError(ValueError):
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
    return opt
