"""``basicsr export``: weights as ONNX, TorchScript or safetensors, for tools outside this toolbox.

    basicsr export --weights net_g_latest.pth --format onnx --output promptir.onnx [--opset N] [--dynamic] [--fp16]

The network is read from the weights as ``basicsr restore`` reads it (any weights format; ``--opt``,
``--arch``, ``--arch-opt`` override). Every export is checked before it is written
(:mod:`promptir_basicsr.interop.export`): ONNX by onnxruntime and TorchScript by torch at two input
sizes, one not a multiple of 8, the max abs differences printed; safetensors read back. A file that
fails is not written (exit status 1).
"""
import argparse
import os.path as osp
import sys

from ..archs.arch_api import declaration
from ..errors import UserError
from ..interop import INTEROP_INSTALL
from ..utils.files import atomic_write_bytes
from . import arguments

HELP = 'export weights to ONNX (checked with onnxruntime), TorchScript or safetensors'

# format -> (file extension, writer name in promptir_basicsr.interop.export)
FORMATS = {'onnx': ('.onnx', 'onnx_bytes'), 'torchscript': ('.pt', 'torchscript_bytes'),
           'safetensors': ('.safetensors', 'safetensors_bytes')}


def build_parser(prog='basicsr export'):
    parser = argparse.ArgumentParser(
        prog=prog, description='Export weights to ONNX (dynamic height and width, checked with onnxruntime), '
        'TorchScript or safetensors (the network in the metadata, so `basicsr restore` and spandrel need nothing '
        'else). Needs the interop extra: ' + INTEROP_INSTALL + '.',
        epilog='example: %(prog)s --weights net_g_latest.pth --format onnx --output promptir.onnx')
    parser.add_argument('--format', choices=sorted(FORMATS), default=None,
                        help="onnx, torchscript or safetensors (default: from --output's extension: "
                        + ', '.join(ext for ext, _ in FORMATS.values()) + ')')
    arguments.add_output_argument(parser, 'the file to write', required=True)
    parser.add_argument('--opset', type=int, default=None, metavar='N',
                        help='ONNX opset (default: 17, or 19 for AirNet, whose deformable convolution needs 19)')
    parser.add_argument('--dynamic', action='store_true',
                        help='ONNX: a dynamic batch axis too (height and width are always dynamic)')
    parser.add_argument('--fp16', action='store_true', help='float16 weights (ONNX: float16 input and output too)')
    arguments.add_network_arguments(parser, weights_help='any weights `basicsr restore` reads (.pth, .ckpt, '
                                    '.safetensors)')
    return parser


def choose_format(args):
    if args.format:
        return args.format
    ext = osp.splitext(args.output)[1].lower()
    for name, (format_ext, _) in FORMATS.items():
        if ext == format_ext:
            return name
    raise UserError(f'--output {args.output}: give --format (onnx, torchscript or safetensors), or an output name '
                    f'ending in {", ".join(ext for ext, _ in FORMATS.values())}')


def _for_export(net, network_opt, user_keys):
    """The network rebuilt with its architecture's ``export_options`` (e.g. MoCE-IR's deterministic routing), the
    same weights; options the user gave (``--opt``, ``--arch-opt``) win."""
    from ..weights.network import build_from_options  # loads torch and basicsr: when the command runs
    extra = {k: v for k, v in declaration(network_opt['type'], 'export_options').items()
             if k not in user_keys and network_opt.get(k) != v}
    if not extra:
        return net, network_opt
    network_opt = {**network_opt, **extra}
    rebuilt = build_from_options(network_opt)
    rebuilt.load_state_dict(net.state_dict(), strict=True)
    print(f'export: {network_opt["type"]} exported with {", ".join(f"{k}={v}" for k, v in extra.items())} (declared '
          'by the architecture for export; --arch-opt overrides it)')
    return rebuilt.eval(), network_opt


def run(args):
    fmt = choose_format(args)
    for flag, given in (('--opset', args.opset is not None), ('--dynamic', args.dynamic)):
        if given and fmt != 'onnx':
            raise UserError(f'{flag} applies to --format onnx only (this export is {fmt})')
    from ..interop import export  # the writers: torch, and the optional interop packages (imported by each writer)

    net, network_opt = arguments.load_network(args, print)
    net, network_opt = _for_export(net, network_opt, user_keys=set(arguments.network_overrides(args)[1]))
    writer = getattr(export, FORMATS[fmt][1])
    kwargs = dict(opset=args.opset, dynamic_batch=args.dynamic) if fmt == 'onnx' else {}
    try:
        data, _ = writer(net.eval(), network_opt, fp16=args.fp16, **kwargs)
    except export.ExportCheckError as err:
        print(f'basicsr export: error: {err}', file=sys.stderr)
        return 1
    atomic_write_bytes(args.output, data)
    print(f'wrote {args.output} ({fmt}, {len(data) / 2**20:.1f} MiB)')
    return 0


def main(argv=None):
    return run(build_parser().parse_args(argv))
