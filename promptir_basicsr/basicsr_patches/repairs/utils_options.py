"""``basicsr.utils.options.parse_options``: option values that crash basicsr 1.4.2 at run time."""
import torch
from basicsr.utils import set_random_seed

from ..marks import is_ours, ours


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


def fix_runtime_options():
    """Option values that crash basicsr 1.4.2 at run time, repaired right after it parses them.

    ``train_pipeline``/``test_pipeline`` call ``parse_options`` as a global of their own modules.
    The wrapper applies :func:`apply_runtime_defaults`: CPU fallback for
    ``num_gpu`` and ``prefetch_mode: cuda`` without CUDA, defaults for keys basicsr indexes
    without checking (``logger.use_tb_logger``, ``val.suffix``, ``val.save_img``), and the random
    seeds set again from ``manual_seed`` (basicsr seeds before applying ``--force_yml``).
    """
    import basicsr.test as basicsr_test
    import basicsr.train as basicsr_train

    for module in (basicsr_train, basicsr_test):
        original = module.parse_options
        if is_ours(original):
            continue

        def parse_options(root_path, is_train=True, _original=original):
            opt, args = _original(root_path, is_train=is_train)
            apply_runtime_defaults(opt)
            return opt, args

        module.parse_options = ours(parse_options)


def apply():
    fix_runtime_options()
