"""What ``basicsr train`` and ``basicsr test`` share: basicsr's own flags, and running its pipeline with the
current directory as root after the option file passed its checks."""
import argparse
import os

from ..options.checker import check_file


def build_parser(prog, description):
    """basicsr's own flags (those of ``basicsr.utils.options.parse_options``), for --help and early checks."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument('-opt', type=str, required=True, help='Path to option YAML file.')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm'], default='none', help='job launcher')
    parser.add_argument('--auto_resume', action='store_true',
                        help='resume from the newest training state of this experiment, if any')
    parser.add_argument('--debug', action='store_true', help='debug mode (basicsr: name prefixed with debug_)')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0,
                        help='set by old launchers (torch.distributed.launch); torchrun uses environment variables')
    parser.add_argument('--force_yml', nargs='+', default=None,
                        help='override options, e.g. train:total_iter=10 datasets:train:batch_size_per_gpu=2')
    return parser


def basicsr_argv(args):
    """The flags as basicsr's ``parse_options`` reads them (it knows ``--local_rank`` only with an underscore)."""
    argv = ['-opt', args.opt, '--launcher', args.launcher, '--local_rank', str(args.local_rank)]
    argv += ['--auto_resume'] * args.auto_resume + ['--debug'] * args.debug
    return argv + (['--force_yml', *args.force_yml] if args.force_yml else [])


def run_pipeline(args, is_train):
    """Check the option file (first what needs no torch, then everything), then run basicsr's pipeline."""
    check_file(args.opt, is_train=is_train, force_yml=args.force_yml)  # a fraction of a second, before torch loads
    # The full check and the pipeline load torch and basicsr: imported once the quick check passed.
    from ..basicsr_patches.behaviour.pipelines import run_pipeline as run_basicsr
    from ..options.prepare import prepare_run
    prepare_run(args.opt, is_train=is_train, force_yml=args.force_yml)
    run_basicsr(basicsr_argv(args), os.getcwd(), is_train, prog='basicsr train' if is_train else 'basicsr test')
    return 0
