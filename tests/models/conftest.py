"""Fixtures for model tests; the tiny networks and option dicts are in ``model_test_helpers``."""
import pytest

from model_test_helpers import make_opt


@pytest.fixture
def tiny_opt(tmp_path):
    return lambda **kw: make_opt(tmp_path, **kw)


@pytest.fixture
def basicsr_log_warnings():
    """The warnings basicsr's logger (get_root_logger's) writes during the test; it may not propagate to the root."""
    import logging
    messages = []

    class Keep(logging.Handler):
        def emit(self, record):
            messages.append(record.getMessage())

    logger = logging.getLogger('basicsr')
    handler = Keep(logging.WARNING)
    logger.addHandler(handler)
    yield messages
    logger.removeHandler(handler)
