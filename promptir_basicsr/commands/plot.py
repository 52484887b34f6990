"""``basicsr plot``: training curves of one or several runs, one panel per curve (runs overlay).

    basicsr plot experiments/promptir_demo [experiments/other_run ...] [-o curves.png]

Panels: each loss term, the learning rate, and the chosen metric (``--metric``, default psnr) of
each validation set, with the degraded input's value dashed. Read from the runs' logs and, when
present, their tensorboard files (:mod:`promptir_basicsr.visual.curves`).
"""
import argparse
import os.path as osp

from ..errors import UserError
from . import arguments

HELP = 'plot loss, learning rate and per-set metrics of training runs (several runs overlay)'


def build_parser(prog='basicsr plot'):
    parser = argparse.ArgumentParser(
        prog=prog, description="Plot loss, learning rate and each validation set's metric against iteration "
        'for basicsr runs (their logs and tensorboard files); several runs overlay.',
        epilog='example: %(prog)s experiments/promptir_demo -o curves.png')
    parser.add_argument('runs', nargs='+', metavar='RUN_DIR', help='run folders, e.g. experiments/<name>')
    arguments.add_output_argument(parser, 'PNG to write (default: curves.png)', default='curves.png')
    parser.add_argument('--metric', default='psnr', help='validation metric to plot per set (default: psnr)')
    parser.add_argument('--smooth', type=float, default=0.0,
                        help='exponential smoothing of the losses in [0, 1), as tensorboard (default 0: raw)')
    return parser


def run(args):
    from ..visual.curves import plot_runs, read_run  # matplotlib: loaded when plotting, not for --help

    if not 0 <= args.smooth < 1:
        raise UserError(f'--smooth {args.smooth}: must be in [0, 1)')
    names = [osp.basename(osp.normpath(r)) for r in args.runs]
    runs = []
    for run_dir, name in zip(args.runs, names):
        if not osp.isdir(run_dir):
            raise UserError(f'{run_dir}: no such run folder (give experiments/<name>)')
        run = read_run(run_dir, name if names.count(name) == 1 else osp.normpath(run_dir))
        if not run.series:
            raise UserError(f'{run_dir}: no training log (*.log) or tensorboard file with curves found')
        runs.append(run)
        validations = sum(len(v) for k, v in run.series.items() if k[0] == 'metric' and k[2] == args.metric)
        print(f'{run.name}: {len(run.series)} curves, {validations} {args.metric} values, from '
              f'{", ".join(run.sources)}')
    if not any(k[0] != 'metric' or k[2] == args.metric for run in runs for k in run.series):
        raise UserError(f'no curves to plot (no losses, learning rate or {args.metric!r} values)')
    titles = plot_runs(runs, args.output, metric=args.metric, smooth=args.smooth)
    print(f'wrote {args.output}: {len(titles)} panels ({", ".join(titles)})')
    return 0


def main(argv=None):
    return run(build_parser().parse_args(argv))
