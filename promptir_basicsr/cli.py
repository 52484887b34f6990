"""The ``basicsr`` command: ``basicsr <subcommand> [options]``.

``train`` and ``test`` accept exactly basicsr's flags and run basicsr's own pipelines with the
current directory as root. Each subcommand is one entry of :data:`SUBCOMMANDS`: a one-line help and
a function taking the remaining argv. Adding a subcommand means adding one entry.
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


def _run_pipeline(argv, prog, description, is_train):
    argv = _normalize_local_rank(argv)
    args = _pipeline_parser(prog, description).parse_args(argv)
    from .options import prepare_run
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
    return 0


def train(argv):
    return _run_pipeline(argv, 'basicsr train', 'Train with basicsr.train.train_pipeline (root: current directory).',
                         is_train=True)


def test(argv):
    return _run_pipeline(argv, 'basicsr test', 'Test with basicsr.test.test_pipeline (root: current directory).',
                         is_train=False)


def convert(argv):
    from .utils.checkpoints import convert_main
    return convert_main(argv, prog='basicsr convert')


def table(argv):
    from .utils.results_table import main as results_table_main
    return results_table_main(argv)


# name -> (one-line help, function(argv) -> exit code). Later features add entries here.
SUBCOMMANDS = {
    'train': ('train a model from an option file (basicsr flags)', train),
    'test': ('test a model from an option file (basicsr flags)', test),
    'convert': ('convert an official PromptIR/AirNet/Restormer checkpoint to a basicsr .pth', convert),
    'table': ('merge the results tables of several `basicsr test` runs (the paper\'s Table 1 layout)', table),
}


def _usage():
    lines = ['usage: basicsr <subcommand> [options]', '', 'subcommands:']
    width = max(len(name) for name in SUBCOMMANDS)
    lines += [f'  {name.ljust(width)}  {text}' for name, (text, _) in SUBCOMMANDS.items()]
    lines += ['', "Run 'basicsr <subcommand> --help' for a subcommand's options."]
    return '\n'.join(lines)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ('-h', '--help'):
        print(_usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"basicsr: unknown subcommand '{name}'\n\n{_usage()}", file=sys.stderr)
        return 2
    import promptir_basicsr  # noqa: F401  (compat fixes and registrations before anything runs)
    from .options import OptionError
    try:
        return SUBCOMMANDS[name][1](rest)
    except OptionError as err:
        print(f'basicsr {name}: error: {err}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
