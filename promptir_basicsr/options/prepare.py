"""Everything that happens to the options of a ``basicsr train``/``test`` run before basicsr builds anything
(:func:`prepare_run`: overrides, plugins, the full check, consistency warnings, demo data). What happens right
after basicsr parses them is a basicsr patch (``basicsr_patches/repairs/utils_options.py``,
``basicsr_patches/behaviour/utils_options.py``).
"""
import os
import os.path as osp
from collections.abc import Mapping

import torch
from basicsr.utils.registry import MODEL_REGISTRY

from ..data.demo import demo_data_root, is_complete, prepare_demo_data
from ..errors import OptionError
from ..models.schedulers import horizon_warnings
from .checker import format_problems, path_problems
from .files import add_note, apply_force_yml, clear_notes, import_plugins, read_option_file
from .schema import collect_problems, registry_lookup


def prepare_run(opt_path, is_train=True, force_yml=None):
    """Everything that must happen before basicsr builds or writes anything: ``--force_yml``, ``plugins:``,
    the option check (every problem at once, :class:`OptionError`), consistency warnings, demo data.

    Returns the options as they will be run. Warnings and notes are kept for the run's log
    (``basicsr_patches/behaviour/utils_options.py`` logs them first thing); nothing is written when the check fails.
    """
    clear_notes()
    opt = read_option_file(opt_path)
    apply_force_yml(opt, force_yml)  # first, so `--force_yml plugins=[...]` is imported too
    import_plugins(opt, opt_path)
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

    The schema (:mod:`promptir_basicsr.options.schema`: unknown keys with the closest known one, required keys,
    types, registry names, the arguments of the architecture, optimizer, scheduler, losses, metrics and
    degradations, the model's own rules), data and checkpoint paths (not those under ``unbuilt_root``, a
    folder about to be generated), and ``num_gpu`` against this machine. Raises :class:`OptionError` listing
    all problems with the file's name; returns ``opt`` when it is fine.
    """
    problems = collect_problems(opt, is_train)
    if check_paths:
        problems += path_problems(opt, unbuilt_root)
    if problems:
        raise OptionError(format_problems(opt_path, problems))
    return opt


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
    is reported when the set is built (``basicsr_patches/behaviour/train.py``)."""
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
        model_rules = getattr(registry_lookup(MODEL_REGISTRY, opt.get('model_type')), 'option_warnings', None)
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
