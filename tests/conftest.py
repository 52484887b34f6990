"""Shared test setup: the plugin is imported (compat + registrations) before any test runs.

Fixtures that build tiny data live beside the tests that use them (tests/<area>/conftest.py).
"""
import os
import shutil
import tempfile

# Tests run tiny networks, where extra threads only add overhead; and on 2 cores, a second busy
# process (a subprocess CLI run, a DDP rank) makes multi-threaded OpenMP spin: measured 0.02 s vs
# 3.7 s per tiny training step. Subprocesses inherit this.
os.environ.setdefault('OMP_NUM_THREADS', '1')

import pytest  # noqa: E402
import torch  # noqa: E402

import promptir_basicsr  # noqa: E402,F401

torch.set_num_threads(1)


def pytest_configure(config):
    config.addinivalue_line('markers', 'slow: end-to-end runs (seconds to a minute); CI runs them too')
    # `basicsr restore` caches ONNX exports (and its backend timings) under $XDG_CACHE_HOME: the tests' own folder,
    # never the user's (subprocesses inherit it); removed when the session ends.
    config._promptir_cache = tempfile.mkdtemp(prefix='promptir-tests-cache-')
    os.environ['XDG_CACHE_HOME'] = config._promptir_cache


def pytest_unconfigure(config):
    shutil.rmtree(getattr(config, '_promptir_cache', ''), ignore_errors=True)


@pytest.fixture
def in_tmp_dir(tmp_path, monkeypatch):
    """Run a test from a fresh temporary directory (basicsr writes experiments/ under the cwd)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def tiny_data(tmp_path):
    """tmp_path with data/train (6 pairs, 32 px) and two validation sets valA, valB (2 pairs, 24 px)."""
    from cli_helpers import write_pairs
    write_pairs(tmp_path / 'data' / 'train', 6, 32, seed=1)
    write_pairs(tmp_path / 'data' / 'valA', 2, 24, seed=2)
    write_pairs(tmp_path / 'data' / 'valB', 2, 24, seed=3)
    return tmp_path


@pytest.fixture(autouse=True)
def _degradations_a_test_registers_are_removed():
    """The degradation registry is shared by every test of a process, and pytest-xdist runs them in an order that
    changes from run to run: an op a test registers (test_invert_op, ...) must not show in another test's list of
    known degradations."""
    from promptir_basicsr.data.degradations import DEGRADATION_REGISTRY
    DEGRADATION_REGISTRY.keys()  # a lookup registers the package's own ops first: they are no test's to remove
    before = set(DEGRADATION_REGISTRY._obj_map)
    yield
    for name in set(DEGRADATION_REGISTRY._obj_map) - before:
        DEGRADATION_REGISTRY._obj_map.pop(name)
