"""Fixtures for model tests; the tiny networks and option dicts are in ``model_test_helpers``."""
import pytest

from model_test_helpers import make_opt


@pytest.fixture
def tiny_opt(tmp_path):
    return lambda **kw: make_opt(tmp_path, **kw)
