"""``basicsr.utils.logger``: the run's log says whether it runs on the CPU or CUDA, and drops a warning that is
false for our models."""
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


def apply():
    report_device_in_env_info()
    drop_misleading_validation_warning()
