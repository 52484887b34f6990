"""``basicsr.utils.options.dict2str``: the options echoed at the start of the log as readable YAML, after the notes
of the option check."""
from basicsr.utils import get_root_logger

from ...options.files import options_yaml, take_notes
from ..marks import is_ours, ours


def options_echo(opt):
    """What basicsr logs right after creating its logger (in place of its ``dict2str``): first the notes of
    ``options.prepare.prepare_run`` (consistency warnings, where the demo data went) as log records of their
    level, then the options as readable YAML."""
    logger = get_root_logger()
    for level, message in take_notes():
        getattr(logger, level)(message)
    return 'Options:\n' + options_yaml(opt)


def readable_options_echo():
    """Echo the options at the start of the log as YAML, after the notes of the option check.

    ``train_pipeline``/``test_pipeline`` log ``dict2str(opt)`` (a global of their modules) right after
    creating the logger; basicsr's prints a list of sources as ``[OrderedDict([('name', ...), ...])]``.
    :func:`options_echo` first logs the warnings and notes gathered before the
    logger existed (consistency warnings, where the demo data went), then returns readable YAML.
    """
    import basicsr.test as basicsr_test
    import basicsr.train as basicsr_train

    if is_ours(basicsr_train.dict2str):
        return
    basicsr_train.dict2str = basicsr_test.dict2str = ours(options_echo)


def apply():
    readable_options_echo()
