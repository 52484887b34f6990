"""``basicsr train`` and ``basicsr test``: basicsr's own pipelines, with the current directory as root.

Both take exactly basicsr's flags (``basicsr.utils.options.parse_options``). Before basicsr builds
anything, :func:`promptir_basicsr.options.prepare_run` imports ``plugins:`` and checks the option file.
"""
import argparse
import os
import sys


def _pipeline_parser(prog, description):
    """basicsr's own flags (``basicsr.utils.options.parse_options``), for --help and early checks."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument('-opt', type=str, required=True, help='Path to option YAML file.')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm'], default='none', help='job launcher')
    parser.add_argument('--auto_resume', action='store_true',
                        help='resume from the newest training state of this experiment, if any')
    parser.add_argument('--debug', action='store_true', help='debug mode (basicsr: name prefixed with debug_)')
    parser.add_argument('--local_rank', type=int, default=0, help='set by old launchers; torchrun uses env vars')
    parser.add_argument('--force_yml', nargs='+', default=None,
                        help='override options, e.g. train:total_iter=10 datasets:train:batch_size_per_gpu=2')
    return parser


def _normalize_local_rank(argv):
    """``torch.distributed.launch`` passes ``--local-rank=N``; basicsr only knows ``--local_rank``."""
    return [arg.replace('--local-rank', '--local_rank', 1) if arg.startswith('--local-rank') else arg for arg in argv]


def run_pipeline(argv, prog, description, is_train):
    argv = _normalize_local_rank(argv)
    args = _pipeline_parser(prog, description).parse_args(argv)
    from ..options import prepare_run
    prepare_run(args.opt, is_train=is_train, force_yml=args.force_yml)
    # basicsr parses sys.argv itself: hand it exactly the flags it knows.
    sys.argv = [prog] + argv
    root_path = os.getcwd()
    if is_train:
        from basicsr.train import train_pipeline
        train_pipeline(root_path)
    else:
        from basicsr.test import test_pipeline
        test_pipeline(root_path)
    _leave_process_group()
    return 0


def _leave_process_group():
    """Wait for every rank, then close the process group.

    basicsr validates and saves on rank 0 only and never closes the group, so the other ranks reach the
    end first and exit with gloo's threads still running: the C++ runtime then aborts that process
    ("terminate called without an active exception") and torchrun kills rank 0 in the middle of its
    last save. Leaving together, through a barrier, is the clean way out.
    """
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def train(argv):
    return run_pipeline(argv, 'basicsr train', 'Train with basicsr.train.train_pipeline (root: current directory).',
                        is_train=True)


def test(argv):
    return run_pipeline(argv, 'basicsr test', 'Test with basicsr.test.test_pipeline (root: current directory).',
                        is_train=False)
