"""``basicsr.train.train_pipeline`` and ``basicsr.test.test_pipeline`` run from the ``basicsr`` command: the
arguments handed over as basicsr reads them, and every process leaving together.

basicsr's ``parse_options`` parses ``sys.argv`` itself, so a command that runs a pipeline with its own argument
list sets ``sys.argv`` for the call (and puts it back). basicsr validates and saves on rank 0 only and never
closes the process group, so the other ranks reach the end first and exit with gloo's threads still running:
the C++ runtime then aborts that process ("terminate called without an active exception") and torchrun kills
rank 0 in the middle of its last save. Every rank waits at a barrier and closes the group before returning.
"""
import contextlib
import sys

import torch.distributed as dist


@contextlib.contextmanager
def _argv(argv):
    saved = sys.argv
    sys.argv = list(argv)
    try:
        yield
    finally:
        sys.argv = saved


def _leave_process_group():
    """Wait for every rank, then close the process group (see the module docstring)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def run_pipeline(argv, root_path, is_train, prog='basicsr'):
    """basicsr's training (``is_train``) or test pipeline with the flags ``argv``, writing under ``root_path``."""
    if is_train:
        from basicsr.train import train_pipeline as pipeline
    else:
        from basicsr.test import test_pipeline as pipeline
    with _argv([prog, *argv]):
        pipeline(root_path)
    _leave_process_group()
