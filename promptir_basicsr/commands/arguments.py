"""The argument groups several subcommands share, declared once so each flag has one spelling everywhere.

- :func:`add_network_arguments`: ``--weights`` and what overrides the network read from them (``-opt/--opt``,
  ``--arch``, ``--arch-opt``, ``--param-key``); :func:`network_overrides` merges them, :func:`load_network`
  builds the network (restore, export, prompts, serve; ``convert`` takes its input as a positional argument).
- :func:`add_tile_arguments`: ``--tile-size`` / ``--tile-overlap``, the names of the ``val: tile_size`` /
  ``tile_overlap`` options.
- :func:`add_device_arguments`: ``--device``, ``--threads``, ``--amp``, ``--channels-last``, ``--compile``.
- :func:`add_scale_arguments`: ``--max-memory`` and ``--backend`` (restore, serve).
- :func:`add_output_argument`: ``-o/--output``.

Only argparse and the standard library at import: ``basicsr <cmd> --help`` must not wait for torch.
"""
import argparse

import yaml

from ..errors import UserError
from ..options.files import import_plugins, read_option_file

AMP_CHOICES = ('bf16', 'fp16')


def add_output_argument(parser, help, required=False, default=None):
    parser.add_argument('-o', '--output', required=required, default=default, help=help)


def add_network_arguments(parser, weights_required=True, weights_help=None):
    """``--weights`` and the options that override the network read from them."""
    parser.add_argument('--weights', required=weights_required,
                        help=weights_help or 'a basicsr .pth (params_ema, else params), an official Lightning .ckpt '
                        '(PromptIR, AdaIR, MoCE-IR, BioIR), an official AirNet/Restormer .pth, or a .safetensors file')
    parser.add_argument('-opt', '--opt', default=None, metavar='YML',
                        help="take the network from an option file's network_g (overrides what the weights say)")
    parser.add_argument('--arch', default=None, help='architecture name (default: read from the weights)')
    add_arch_opt_argument(parser, 'architecture option, YAML value, repeatable; overrides the weights and --opt')
    parser.add_argument('--param-key', default=None,
                        help='entry of the weights file to use (default: params_ema, params, state_dict, ...)')


def add_arch_opt_argument(parser, help):
    parser.add_argument('--arch-opt', action='append', default=[], metavar='KEY=VALUE', type=parse_arch_opt, help=help)


def add_tile_arguments(parser):
    """Tiles, named like the options ``val: tile_size`` and ``tile_overlap``."""
    parser.add_argument('--tile-size', type=int, default=0, metavar='N',
                        help='restore tiles of N x N pixels (bounded memory for any image size); 0: whole images')
    parser.add_argument('--tile-overlap', type=int, default=32, metavar='N',
                        help='overlap of neighbouring tiles in pixels, blended smoothly (default 32)')


def check_tiles(args):
    if args.tile_size < 0 or (args.tile_size and not 0 <= args.tile_overlap < args.tile_size):
        raise UserError(f'--tile-size {args.tile_size} --tile-overlap {args.tile_overlap}: need tile size > overlap '
                        '>= 0')


def add_scale_arguments(parser):
    """The memory budget that picks tiles, and the engine that runs the network (restore, serve)."""
    from ..utils.memory import parse_size  # the standard library only
    parser.add_argument('--max-memory', type=parse_size, default=None, metavar='SIZE',
                        help='peak memory the process may use, e.g. 4G or 512M: picks the tile size and how many '
                        'tiles run per forward for each image (with --tile-size: the batch only). Default: what the '
                        'process holds plus 3/4 of the free memory')
    # torch by default: the first onnxruntime run exports the network (48 s to 6.5 min for the full-size networks
    # on a 2-core CPU), which only a folder of photos or a long-running page pays back. The default is None, read as
    # torch, so that restore can tell a --backend given for an export (refused) from none given.
    parser.add_argument('--backend', default=None, choices=['torch', 'onnxruntime', 'auto'],
                        help='torch (default), or onnxruntime (the network exported to ONNX once per weights and '
                        'cached; needs the interop extra). auto: on the CPU with the extra installed, whichever of the '
                        'two is faster for the network (timed once, remembered); else torch')


def add_device_arguments(parser, speed=True):
    """Where and how fast the network runs (``speed``: the precision and compile options too)."""
    parser.add_argument('--device', default='auto', choices=['auto', 'cpu', 'cuda'],
                        help='auto: CUDA when available, else the CPU')
    if not speed:
        return
    parser.add_argument('--threads', type=int, default=None, metavar='N',
                        help="CPU threads for torch (default: torch's choice, one per core)")
    parser.add_argument('--amp', default=None, choices=AMP_CHOICES,
                        help='run the network in bfloat16 (CPU or CUDA) or float16 (CUDA)')
    parser.add_argument('--channels-last', action='store_true',
                        help="the network's weights in channels-last memory (our transformers run channels-last "
                             'inside anyway; this matters most for cuDNN)')
    parser.add_argument('--compile', nargs='?', const='inductor', default=None, metavar='BACKEND',
                        help="torch.compile the network (backend: torch's default, inductor); falls back to eager "
                             'with a warning if compiling fails. Pays off over many images or tiles of one size')


def parse_arch_opt(item):
    """``KEY=VALUE`` (the value read as YAML) -> (key, value); argparse reports anything else as a usage error."""
    key, sep, value = item.partition('=')
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f'--arch-opt expects KEY=VALUE, got {item!r}')
    return key.strip(), yaml.safe_load(value)


def network_overrides(args):
    """``(arch, overrides)`` from ``--opt`` (its ``network_g``, after importing its ``plugins:``; a file with only
    ``plugins:`` registers a plugin's architecture, whose options are then read from the weights), then ``--arch``
    and ``--arch-opt``, in that order of precedence (the later wins)."""
    overrides = {}
    if args.opt:
        opt = read_option_file(args.opt)
        import_plugins(opt, args.opt)
        if isinstance(opt.get('network_g'), dict):
            overrides.update(opt['network_g'])
        elif not opt.get('plugins'):
            raise UserError(f'--opt {args.opt}: no network_g section (nor plugins: to import)')
    arch = args.arch or overrides.pop('type', None)
    overrides.pop('type', None)
    overrides.update(args.arch_opt)  # (key, value) pairs: parse_arch_opt
    return arch, overrides


def load_network(args, log):
    """``(net, network_opt)`` for ``--weights`` and the network arguments, logging where the network came from."""
    # The weights machinery loads torch and basicsr: imported when a command runs, not when it parses (--help).
    from ..weights.network import describe_network
    from ..weights.network import load_network as load
    arch, overrides = network_overrides(args)
    try:
        net, network_opt, report = load(args.weights, arch, overrides, args.param_key)
    except (UserError, FileNotFoundError) as err:
        raise UserError(f'--weights {args.weights}: {err}') from None
    log(f'weights: {args.weights} ({report["source"]}); network from {report["read_from"]}: '
        f'{describe_network(network_opt)}')
    for note in report['notes']:
        log(f'note: {note}')
    return net, network_opt
