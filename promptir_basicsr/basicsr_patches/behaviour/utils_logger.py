"""``basicsr.utils.logger``: the run's log says whether it runs on the CPU or CUDA, drops a warning that is
false for our models, and its eta is never negative."""
import logging

import torch

from ..marks import is_ours, ours


def report_device_in_env_info():
    """Say in the run's log whether it runs on CPU or CUDA (basicsr logs nothing about it).

    ``train_pipeline`` and ``test_pipeline`` log ``get_env_info()`` first thing; extend it there.
    """
    import basicsr.test as basicsr_test
    import basicsr.train as basicsr_train
    from basicsr.utils import logger as basicsr_logger

    if is_ours(basicsr_train.get_env_info):
        return
    original = basicsr_logger.get_env_info

    def get_env_info():
        if torch.cuda.is_available():
            device = f'CUDA ({torch.cuda.device_count()} device(s): {torch.cuda.get_device_name(0)})'
        else:
            device = 'CPU (no CUDA device found; training and testing run on the CPU)'
        return original() + f'\n\tRunning on: {device}'

    basicsr_train.get_env_info = basicsr_test.get_env_info = ours(get_env_info)


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


def eta_counts_the_iterations_left():
    """``MessageLogger`` estimates the time left as the mean iteration time x ``max_iters - iter - 1``: one
    iteration too few, so the last log line (``iter == max_iters``) shows ``eta: -1 day, 23:59:59`` once an
    iteration takes a second or more. Run it with ``max_iters`` one larger, so that it counts
    ``max_iters - iter`` iterations left: 0 s at the end."""
    from basicsr.utils.logger import MessageLogger

    original = MessageLogger.__call__
    if is_ours(original):
        return

    def __call__(self, log_vars):
        self.max_iters += 1
        try:
            return original(self, log_vars)
        finally:
            self.max_iters -= 1

    MessageLogger.__call__ = ours(__call__)


def apply():
    report_device_in_env_info()
    drop_misleading_validation_warning()
    eta_counts_the_iterations_left()
