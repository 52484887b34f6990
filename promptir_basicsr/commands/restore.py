"""``basicsr restore``: restore your own images with any weights, at any size.

    basicsr restore -i photos/ -o restored/ --weights net_g_latest.pth [--tile 256] [--compare]

The network is read from the weights (:mod:`promptir_basicsr.inference`); ``--opt``/``--arch``/
``--arch-opt`` override it. A folder is walked recursively and mirrored under ``-o``. Each output
keeps its input's name (plus ``--suffix``), size, mode (gray, RGB, alpha) and bit depth. A file that
cannot be read or written is reported at the end and the exit status is 1; the others are written.
"""
import argparse
import os
import os.path as osp
import sys
import time

import cv2
import torch
from tqdm import tqdm

from ..errors import UserError
from ..inference import (IMAGE_EXTENSIONS, ImageError, Restorer, describe_network, encode_image, load_network,
                         read_image, to_samples, to_tensor)
from ..utils.checkpoints import CheckpointError, _parse_arch_opt, atomic_write_bytes

LARGE_UNTILED_MP = 4.0  # above this many megapixels without --tile, suggest tiling once


def add_network_arguments(parser):
    """The options that override the network read from the weights (shared with ``basicsr export``)."""
    parser.add_argument('-opt', '--opt', default=None, metavar='YML',
                        help="take the network from an option file's network_g (overrides what the weights say)")
    parser.add_argument('--arch', default=None, help='architecture name (default: read from the weights)')
    parser.add_argument('--arch-opt', action='append', default=[], metavar='KEY=VALUE',
                        help='architecture option, YAML value, repeatable; overrides the weights and --opt')
    parser.add_argument('--param-key', default=None,
                        help='entry of the weights file to use (default: params_ema, params, state_dict, ...)')


def build_parser(prog='basicsr restore'):
    parser = argparse.ArgumentParser(
        prog=prog, description='Restore images with PromptIR, Restormer or AirNet weights (any size, tiles for '
        'bounded memory). The network is read from the weights; --opt/--arch/--arch-opt override it.',
        epilog='example: %(prog)s -i photos/ -o restored/ --weights net_g_latest.pth --tile 256 --compare')
    parser.add_argument('-i', '--input', required=True, help='an image file, or a folder (walked recursively)')
    parser.add_argument('-o', '--output', required=True, help='output folder (sub-folders of the input are mirrored)')
    parser.add_argument('--weights', required=True,
                        help='a basicsr .pth (params_ema, else params), an official PromptIR .ckpt, an official '
                        'AirNet/Restormer .pth, a .safetensors file, or an .onnx export (run by onnxruntime)')
    add_network_arguments(parser)
    parser.add_argument('--tile', type=int, default=0, metavar='N',
                        help='restore tiles of N x N pixels (bounded memory for any image size); 0: whole images')
    parser.add_argument('--tile-overlap', type=int, default=32, metavar='N',
                        help='overlap of neighbouring tiles in pixels, blended smoothly (default 32)')
    parser.add_argument('--device', default='auto', choices=['auto', 'cpu', 'cuda'],
                        help='auto: CUDA when available, else the CPU')
    parser.add_argument('--threads', type=int, default=None, metavar='N',
                        help="CPU threads for torch (default: torch's choice, one per core)")
    parser.add_argument('--amp', default=None, choices=['bf16', 'fp16'],
                        help='run the network in bfloat16 (CPU or CUDA) or float16 (CUDA)')
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


def read_network_options(args):
    """(arch, overrides) from --opt, then --arch / --arch-opt."""
    overrides = {}
    if args.opt:
        from ..options import import_plugins, read_option_file
        opt = read_option_file(args.opt)
        import_plugins(opt, args.opt)
        if not isinstance(opt.get('network_g'), dict):
            raise UserError(f'--opt {args.opt}: no network_g section')
        overrides.update(opt['network_g'])
    for item in args.arch_opt:
        try:
            key, value = _parse_arch_opt(item)
        except ValueError as err:
            raise UserError(str(err)) from None
        overrides[key] = value
    return args.arch or overrides.pop('type', None), overrides


def load_network_from_args(args, log):
    """``(net, network_opt)`` for ``--weights`` and the network options (:func:`add_network_arguments`),
    logging where the network came from (shared with ``basicsr export``)."""
    arch, overrides = read_network_options(args)
    try:
        net, network_opt, report = load_network(args.weights, arch, overrides, args.param_key)
    except (CheckpointError, FileNotFoundError) as err:
        raise UserError(f'--weights {args.weights}: {err}') from None
    log(f'weights: {args.weights} ({report["source"]}); network from {report["read_from"]}: '
        f'{describe_network(network_opt)}')
    for note in report['notes']:
        log(f'note: {note}')
    return net, network_opt


def load_onnx_network(args, log):
    """An ``.onnx`` export as the network, run by onnxruntime (:class:`~promptir_basicsr.interop.onnx_runtime.
    OnnxNetwork`); its network was fixed at export, so the network options and ``--amp`` do not apply."""
    for flag, given in (('--opt', args.opt), ('--arch', args.arch), ('--arch-opt', args.arch_opt),
                        ('--param-key', args.param_key), ('--amp', args.amp)):
        if given:
            raise UserError(f'{flag} does not apply to an .onnx model (its network and precision were fixed by '
                            '`basicsr export`; export with --fp16 for float16)')
    if not osp.isfile(args.weights):
        raise UserError(f'--weights {args.weights}: no such file')
    from ..interop.onnx_runtime import OnnxNetwork
    try:
        net = OnnxNetwork(args.weights, args.device, args.threads)
    except UserError as err:
        raise UserError(f'--weights {args.weights}: {err}') from None
    network = describe_network(net.network_opt) if net.network_opt else 'not recorded in the file'
    log(f'weights: {args.weights} (ONNX); network: {network}')
    return net


def prepare_restorer(args, log):
    """The network of ``--weights`` (and the option flags), ready on its device: a :class:`Restorer`."""
    if args.tile < 0 or (args.tile and not 0 <= args.tile_overlap < args.tile):
        raise UserError(f'--tile {args.tile} --tile-overlap {args.tile_overlap}: need tile > overlap >= 0')
    onnx = args.weights.lower().endswith('.onnx')
    net = load_onnx_network(args, log) if onnx else load_network_from_args(args, log)[0]
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        # An ONNX model takes its input from host memory, wherever onnxruntime runs it.
        restorer = Restorer(net, 'cpu' if onnx else args.device, args.amp, args.tile or None, args.tile_overlap)
    except ValueError as err:
        raise UserError(str(err)) from None
    tiles = f'tiles of {args.tile} px overlapping {args.tile_overlap} px' if args.tile else 'whole images'
    device = f'onnxruntime {", ".join(net.providers)}' if onnx else restorer.device
    log(f'device: {device}{f", autocast {args.amp}" if args.amp else ""}; {tiles}')
    return restorer


def restore_file(restorer, path, out_path, compare_path, tile_bar):
    """Restore one file; returns its megapixels. Raises ImageError/OSError for this file's problems.

    Large images: each float copy of a 4096 x 4096 RGB image is 200 MB, so copies are dropped as soon
    as they are not needed and the result is converted in place.
    """
    image = read_image(path)
    height, width = image.rgb.shape[:2]
    on_tile = None
    if tile_bar is not None:
        tile_bar.reset(total=restorer.tile_count(height, width))

        def on_tile(done, total):
            tile_bar.update(1)
    x = to_tensor(image.rgb)
    if not compare_path:
        image.rgb = None  # the tensor holds the pixels now
    restored = restorer(x, on_tile=on_tile)[0].permute(1, 2, 0).numpy()
    del x
    if compare_path:
        from ..visual.grids import save_png, side_by_side
        save_png(side_by_side([image.rgb, restored], ['input', 'restored']), compare_path)
    samples = to_samples(restored, image)
    atomic_write_bytes(out_path, encode_image(samples, osp.splitext(out_path)[1]))
    return height * width / 1e6


def main(argv=None):
    args = build_parser().parse_args(argv)

    def log(message):
        tqdm.write(message, file=sys.stdout)

    images, skipped = collect_inputs(args.input, args.output)
    if skipped:
        log(f'not images (skipped): {len(skipped)} file(s): {", ".join(skipped[:10])}'
            f'{", ..." if len(skipped) > 10 else ""} (readable: {", ".join(IMAGE_EXTENSIONS)})')
    if not images:
        raise UserError(f'--input {args.input}: no images found (looked for {", ".join(IMAGE_EXTENSIONS)})')
    plans = plan_outputs(images, args.output, args.suffix, args.ext, args.compare)
    restorer = prepare_restorer(args, log)

    failures, megapixels, hinted = [], 0.0, bool(args.tile)
    start = time.time()
    with tqdm(plans, unit='image', file=sys.stderr, dynamic_ncols=True) as bar:
        # tiles of one image: on a terminal only (a log file would get one line per tile)
        tile_bar = tqdm(total=1, unit='tile', leave=False, file=sys.stderr, position=1, disable=None) if args.tile \
            else None
        for path, out_path, compare_path in bar:
            bar.set_postfix_str(osp.basename(path))
            try:
                size = restore_file(restorer, path, out_path, compare_path, tile_bar)
            except (ImageError, OSError, cv2.error) as err:
                failures.append(f'{path}: {err}')
                continue
            except torch.OutOfMemoryError:
                failures.append(f'{path}: out of memory; restore it with --tile 512 (or smaller)')
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                continue
            megapixels += size
            if not hinted and size > LARGE_UNTILED_MP:
                log(f'tip: {path} has {size:.1f} megapixels; --tile 512 restores large images in bounded memory')
                hinted = True
        if tile_bar is not None:
            tile_bar.close()
    seconds = time.time() - start
    restored = len(plans) - len(failures)
    log(f'restored {restored} image(s), {megapixels:.2f} megapixels in {seconds:.1f} s '
        f'({megapixels / max(seconds, 1e-9):.3g} megapixels/s) -> {args.output}')
    if failures:
        log(f'failed {len(failures)} file(s):\n  ' + '\n  '.join(failures))
        return 1
    return 0
