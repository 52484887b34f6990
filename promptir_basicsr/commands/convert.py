"""``basicsr convert IN OUT``: an official checkpoint (Lightning ``.ckpt``, AirNet's plain state dict, Restormer's
``{'params': ...}``) -> basicsr's ``{'params': state_dict}`` ``.pth`` that loads with ``strict=True`` into the
network read from it (:func:`promptir_basicsr.weights.convert.convert_checkpoint`)."""
import argparse

from . import arguments

HELP = 'convert an official checkpoint (PromptIR, AdaIR, MoCE-IR, BioIR, AirNet, Restormer) to a basicsr .pth'


def build_parser(prog='basicsr convert'):
    """The one parser of ``basicsr convert`` and ``scripts/convert_checkpoint.py``."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description='Convert an official checkpoint (Lightning .ckpt of PromptIR, AdaIR, MoCE-IR, BioIR; AirNet\'s plain '
        "state dict; Restormer's {'params': ...}) to basicsr's {'params': state_dict} .pth. The network is read from "
        'the weights. Loading never runs pickled code (weights_only=True).',
        epilog='example: %(prog)s model.ckpt experiments/pretrained/promptir.pth')
    parser.add_argument('input', help='official checkpoint (.ckpt / .pth)')
    parser.add_argument('output', help='converted file to write (.pth)')
    parser.add_argument('--arch', default=None, help='registered architecture (default: detected from the keys)')
    arguments.add_arch_opt_argument(parser, 'architecture option, YAML value, repeatable (e.g. queue_size=2560); '
                                    'overrides what is read from the weights')
    parser.add_argument('-opt', '--opt', default=None, metavar='YML',
                        help="take the architecture from an option file's network_g (--arch/--arch-opt override)")
    parser.add_argument('--param-key', default=None,
                        help='entry holding the weights (default: state_dict, params, params_ema, or the file itself)')
    parser.add_argument('--allow-mismatch', action='store_true',
                        help="write the file even if keys are missing/unexpected or shapes differ (mismatched keys "
                        "keep the network's initial values)")
    return parser


def run(args):
    """0 on success; a refused or missing checkpoint raises a :class:`~promptir_basicsr.errors.CheckpointError`
    (one line and exit status 2 through ``cli.main``)."""
    from ..weights.convert import convert_checkpoint  # loads torch and basicsr: after parsing (fast --help)
    arch, overrides = arguments.network_overrides(args)
    convert_checkpoint(args.input, args.output, arch=arch, arch_opt=overrides, param_key=args.param_key,
                       allow_mismatch=args.allow_mismatch)
    return 0


def main(argv=None):
    return run(build_parser().parse_args(argv))
