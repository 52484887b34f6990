"""``basicsr serve``: a local web page to restore your photos with one or several networks and compare them.

    basicsr serve --weights A.pth B.ckpt [C.safetensors D.onnx ...] [--host 127.0.0.1] [--port 7860]
    basicsr serve --weights experiments/        # every weights file under a folder

The page (Gradio, the optional ``web`` extra; :mod:`promptir_basicsr.serving`) takes a photo (or offers the demo
validation images), runs the networks you pick (a before/after slider for one, a grid for several), scores
them against a reference (PSNR/SSIM) and offers the files ``basicsr restore`` writes for download. The server
listens on 127.0.0.1 unless ``--host`` says otherwise and makes no request to the internet.
"""
import argparse
import importlib.util
import os.path as osp
import sys

from ..errors import UserError
from . import arguments

HELP = 'a local web page: restore a photo with several networks side by side, PSNR/SSIM, download'
WEB_INSTALL = 'pip install -r requirements-web.txt -e ".[web]"'


def build_parser(prog='basicsr serve'):
    parser = argparse.ArgumentParser(
        prog=prog, description='Serve a local page that restores photos with the networks of the given weights '
        '(compare several side by side, score against a reference, download what `basicsr restore` writes). '
        f'Needs the web extra: {WEB_INSTALL}.',
        epilog='example: %(prog)s --weights experiments/promptir_demo/models/net_g_latest.pth AdaIR.ckpt')
    parser.add_argument('--weights', nargs='+', required=True, metavar='PATH',
                        help='weights files (.pth, .ckpt, .safetensors, .onnx) or folders searched for them')
    parser.add_argument('--host', default='127.0.0.1',
                        help='address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 opens it to the '
                        'network)')
    parser.add_argument('--port', type=int, default=7860, help='port to listen on (default 7860)')
    parser.add_argument('--demo-root', default='datasets/demo', metavar='FOLDER',
                        help='the demo data whose validation images the page offers (made there if missing); '
                        '"none" offers none')
    parser.add_argument('--max-megapixels', type=float, default=100, metavar='N',
                        help='larger uploads are refused from their header, before decoding (default 100)')
    parser.add_argument('--exit-after', type=float, default=None, metavar='SECONDS',
                        help='stop the server after this many seconds (demos, tests); default: run until Ctrl-C')
    arguments.add_tile_arguments(parser)
    arguments.add_device_arguments(parser, speed=False)
    parser.add_argument('--threads', type=int, default=None, metavar='N',
                        help="CPU threads for torch and onnxruntime (default: the libraries' choice)")
    arguments.add_scale_arguments(parser)
    return parser


def run(args):
    if importlib.util.find_spec('gradio') is None:
        raise UserError(f'basicsr serve needs the optional "web" extra (gradio is not installed): run {WEB_INSTALL} '
                        'in the promptir-basicsr folder')
    arguments.check_tiles(args)
    if not 0 < args.port < 65536:
        raise UserError(f'--port {args.port}: choose a port between 1 and 65535')
    # Gradio, torch and the networks load here, after parsing (fast --help); the page module sets Gradio's
    # no-network environment before importing it.
    import tempfile

    from ..serving import page, service

    def log(message):
        print(message, flush=True)

    networks = service.load_networks(args.weights, args.device, args.threads, args.backend or 'torch', args.max_memory,
                                     args.tile_size, args.tile_overlap, log)
    for network in networks:
        log(f'network: {network.label}')
    with tempfile.TemporaryDirectory(prefix='basicsr-serve-demo-') as scratch:
        examples = [] if args.demo_root == 'none' else \
            [list(pair) for pair in service.demo_pairs(osp.abspath(args.demo_root), scratch)]
        return page.serve(networks, examples, args.host, args.port, args.max_megapixels, args.exit_after, log)


def main(argv=None):
    return run(build_parser().parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
