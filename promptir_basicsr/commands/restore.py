"""``basicsr restore``: restore your own images with any weights, at any size.

    basicsr restore -i photos/ -o restored/ --weights net_g_latest.pth [--tile-size 256] [--compare]

The network is read from the weights (:mod:`promptir_basicsr.weights`); ``--opt``/``--arch``/``--arch-opt``
override it. Images go through :class:`promptir_basicsr.inference.Restorer`, the path validation and test take. A folder is walked recursively and mirrored under ``-o``. Each output
keeps its input's name (plus ``--suffix``), size, mode (gray, RGB, alpha) and bit depth. A file that
cannot be read or written is reported at the end and the exit status is 1; the others are written.
"""
import argparse
import os
import os.path as osp
import sys
import time

from ..archs.arch_api import declaration
from ..errors import UserError
from . import arguments

HELP = 'restore your own images with any weights, at any size (tiles, 8/16-bit, gray, alpha)'
# What restore reads (utils/images.py's list, repeated here so that --help needs no OpenCV; a test keeps them equal)
IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp')


def build_parser(prog='basicsr restore'):
    parser = argparse.ArgumentParser(
        prog=prog, description='Restore images with PromptIR, Restormer or AirNet weights (any size, tiles for '
        'bounded memory). The network is read from the weights; --opt/--arch/--arch-opt override it.',
        epilog='example: %(prog)s -i photos/ -o restored/ --weights net_g_latest.pth --tile-size 256 --compare')
    parser.add_argument('-i', '--input', required=True, help='an image file, or a folder (walked recursively)')
    arguments.add_output_argument(parser, 'output folder (sub-folders of the input are mirrored)', required=True)
    arguments.add_network_arguments(parser, weights_help='a basicsr .pth (params_ema, else params), an official '
                                    'Lightning .ckpt (PromptIR, AdaIR, MoCE-IR, BioIR), an official AirNet/Restormer '
                                    '.pth, a .safetensors file, or an export of `basicsr export`: .onnx (run by '
                                    'onnxruntime) or TorchScript .pt')
    arguments.add_tile_arguments(parser)
    arguments.add_device_arguments(parser)
    arguments.add_scale_arguments(parser)
    parser.add_argument('--suffix', default='', help='added to each output name before the extension, e.g. _restored')
    parser.add_argument('--ext', default=None, choices=[e[1:] for e in IMAGE_EXTENSIONS],
                        help="output format (default: the input's)")
    parser.add_argument('--compare', action='store_true',
                        help='also write <name>_compare.png: input and restored side by side, labelled')
    return parser


def collect_inputs(input_path, output_dir):
    """``(images, skipped)``: images as (path, path relative to the input folder) in sorted order;
    skipped: other files found (listed to the user, never silently ignored)."""
    if osp.isfile(input_path):
        return [(input_path, osp.basename(input_path))], []
    if not osp.isdir(input_path):
        raise UserError(f'--input {input_path}: no such file or folder')
    images, skipped = [], []
    out_real = osp.realpath(output_dir)
    for folder, dirs, files in os.walk(input_path):
        dirs[:] = sorted(d for d in dirs if osp.realpath(osp.join(folder, d)) != out_real)  # not our own outputs
        for name in sorted(files):
            path = osp.join(folder, name)
            target = images if name.lower().endswith(IMAGE_EXTENSIONS) else skipped
            target.append((path, osp.relpath(path, input_path)))
    return images, [path for path, _ in skipped]


def plan_outputs(images, output_dir, suffix, ext, compare):
    """Output paths per input; refuses (UserError) any that would overwrite an input or each other."""
    plans, owners = [], {}
    inputs = {osp.realpath(path) for path, _ in images}
    for path, rel in images:
        stem, in_ext = osp.splitext(rel)
        out = osp.join(output_dir, stem + suffix + ('.' + ext if ext else in_ext))
        compare_path = osp.join(output_dir, f'{stem}{suffix}_compare.png') if compare else None
        for target in filter(None, (out, compare_path)):
            real = osp.realpath(target)
            if real in inputs:
                raise UserError(f'the output {target} would overwrite an input; choose another -o folder or a '
                                '--suffix (e.g. --suffix _restored)')
            if real in owners:
                raise UserError(f'{owners[real]} and {path} would both be written to {target}; keep --ext unset or '
                                'rename one of them')
            owners[real] = path
        plans.append((path, out, compare_path))
    return plans


def check_output_format(plans, ext):
    """Refuses (UserError) an ``--ext`` that cannot store an input's bit depth or alpha, before any image is
    restored (reading headers; a few formats are decoded). Without ``--ext`` each output keeps its input's
    format, which stores what was read from it."""
    from ..utils.images import output_problem  # OpenCV: after parsing
    problems = [(path, problem) for path, _, _ in plans for problem in [output_problem(path, '.' + ext)] if problem]
    if problems:
        path, problem = problems[0]
        others = f' (and {len(problems) - 1} more input(s))' if len(problems) > 1 else ''
        raise UserError(f'--ext {ext}: {path}{others}: {problem}; nothing was restored')


def run(args):
    # The network and the image codecs load torch, OpenCV and basicsr: imported when the command runs.
    import cv2
    import torch
    from tqdm import tqdm

    from ..image_restoration import open_network, restore_file, scale_summary
    from ..utils.images import ImageError

    def log(message):
        tqdm.write(message, file=sys.stdout)

    arguments.check_tiles(args)
    images, skipped = collect_inputs(args.input, args.output)
    if skipped:
        log(f'not images (skipped): {len(skipped)} file(s): {", ".join(skipped[:10])}'
            f'{", ..." if len(skipped) > 10 else ""} (readable: {", ".join(IMAGE_EXTENSIONS)})')
    if not images:
        raise UserError(f'--input {args.input}: no images found (looked for {", ".join(IMAGE_EXTENSIONS)})')
    plans = plan_outputs(images, args.output, args.suffix, args.ext, args.compare)
    if args.ext:
        check_output_format(plans, args.ext)
    from ..weights.files import is_torchscript_archive
    onnx = args.weights.lower().endswith('.onnx')
    if onnx or is_torchscript_archive(args.weights):  # exports run as they are, by the engine they were made for
        other_engine = 'torch' if onnx else 'onnxruntime'
        refused = {'--opt': args.opt, '--arch': args.arch, '--arch-opt': args.arch_opt, '--param-key': args.param_key,
                   '--amp': args.amp, '--channels-last': args.channels_last, '--compile': args.compile,
                   f'--backend {other_engine}': args.backend == other_engine}
        net, network_opt = args.weights, None
    else:
        refused, (net, network_opt) = None, arguments.load_network(args, log)
    restorer = open_network(net, args.device, args.threads, args.amp, args.tile_size, args.tile_overlap,
                            args.channels_last, args.compile, log, refused, backend=args.backend or 'torch',
                            network_opt=network_opt, max_memory=args.max_memory)
    del net  # onnxruntime runs its own copy of the weights: the torch network would only take memory
    network_opt = getattr(restorer.net, 'network_opt', None)  # an ONNX or TorchScript export records its network
    note = declaration(network_opt['type'] if network_opt else restorer.net, 'tiling_note')
    if args.tile_size and note:
        log(f'warning: {note}')

    failures, megapixels = [], 0.0
    start = time.time()
    with tqdm(plans, unit='image', file=sys.stderr, dynamic_ncols=True) as bar:
        # tiles of one image (--tile-size, or the memory budget's): on a terminal only (a log file would get one
        # line per tile)
        tile_bar = tqdm(total=1, unit='tile', leave=False, file=sys.stderr, position=1, disable=None)

        def on_tile(done, total):
            tile_bar.total = total
            tile_bar.update(done - tile_bar.n)  # a forward may run several tiles

        for path, out_path, compare_path in bar:
            bar.set_postfix_str(osp.basename(path))
            tile_bar.reset()
            try:
                size = restore_file(restorer, path, out_path, compare_path, on_tile)
            except (ImageError, OSError, cv2.error) as err:
                failures.append(f'{path}: {err}')
                continue
            except torch.OutOfMemoryError:
                failures.append(f'{path}: out of memory; restore it with --tile-size 512 (or smaller)')
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                continue
            megapixels += size
        tile_bar.close()
    seconds = time.time() - start
    restored = len(plans) - len(failures)
    log(f'restored {restored} image(s), {megapixels:.2f} megapixels in {seconds:.1f} s '
        f'({megapixels / max(seconds, 1e-9):.3g} megapixels/s) -> {args.output}{scale_summary(restorer)}')
    if failures:
        log(f'failed {len(failures)} file(s):\n  ' + '\n  '.join(failures))
        return 1
    return 0


def main(argv=None):
    return run(build_parser().parse_args(argv))
