"""What ``basicsr serve``'s page does, without the page (testable without a browser or Gradio).

- :func:`find_weights` / :func:`load_networks`: weights files (or folders of them) -> :class:`LoadedNetwork`\\ s,
  each a :class:`~promptir_basicsr.inference.Restorer` opened by
  :func:`~promptir_basicsr.image_restoration.open_network` (the backend and memory budget of ``restore``), its
  label (architecture, parameters, the run or file it came from) and its lock (one restoration at a time).
- :func:`check_upload`: an uploaded file judged from its header before anything decodes it: empty, not an image,
  too many pixels, a mode the restorer cannot keep; each an :class:`UploadError` of one line.
- :func:`restore_upload`: one network on one upload, written by
  :func:`~promptir_basicsr.image_restoration.restore_file`, the function ``basicsr restore`` writes with: the same
  bytes for the same weights, image and tiles.
- :func:`preview` and :func:`scores`: 8-bit RGB pictures for the page; PSNR/SSIM of a result against a reference
  with the protocol metrics (:mod:`promptir_basicsr.metrics.protocol_metric`).
"""
import os
import os.path as osp
import re
import threading
import time
from dataclasses import dataclass, field

import cv2
import numpy as np

from ..errors import UserError
from ..image_restoration import open_network, restore_file, tile_overhead
from ..utils.images import IMAGE_EXTENSIONS, ImageError, read_image
from .headers import HeaderError, read_header

WEIGHTS_EXTENSIONS = ('.pth', '.ckpt', '.safetensors', '.onnx')
DEFAULT_MAX_MEGAPIXELS = 100  # above this an upload is refused before decoding (a 30000 x 30000 PNG is 900)
PREVIEW_SIDE = 1600  # previews in the page are at most this many pixels on their long side


class UploadError(UserError):
    """An upload the page cannot restore; the message is the one line the page shows."""


@dataclass
class LoadedNetwork:
    """A network ready to restore, with what the page shows of it."""
    label: str  # 'PromptIR · 35.59 M parameters · run promptir_demo (net_g_latest.pth)'
    slug: str  # for output file names: 'PromptIR_net_g_latest'
    weights: str
    restorer: object
    parameters: int
    lock: threading.Lock = field(default_factory=threading.Lock)


def find_weights(paths):
    """The weights files named by ``paths`` (files, or folders searched recursively), sorted per folder."""
    found = []
    for path in paths:
        if osp.isdir(path):
            inside = sorted(osp.join(folder, name) for folder, _, names in os.walk(path) for name in names
                            if name.lower().endswith(WEIGHTS_EXTENSIONS))
            if not inside:
                raise UserError(f'--weights {path}: no weights files in this folder (looked for '
                                f'{", ".join(WEIGHTS_EXTENSIONS)})')
            found += inside
        elif osp.isfile(path):
            found.append(path)
        else:
            raise UserError(f'--weights {path}: no such file or folder')
    return list(dict.fromkeys(found))


def source_of(path):
    """'run <name> (<file>)' for a basicsr run's ``experiments/<name>/models/<file>``, else the path (relative to
    the current folder when it is inside it)."""
    parts = osp.normpath(path).split(os.sep)
    if len(parts) >= 3 and parts[-2] == 'models':
        return f'run {parts[-3]} ({parts[-1]})'
    relative = osp.relpath(osp.abspath(path))
    return path if relative.startswith('..') else relative


def _onnx_parameters(path):
    """Parameters of an ONNX model: the elements of its initializers (0 when onnx cannot read it)."""
    try:
        import onnx  # the interop extra: only for .onnx weights
        model = onnx.load(path, load_external_data=False)
    except Exception:  # noqa: BLE001 (a label only: the runner reports real problems)
        return 0
    return int(sum(np.prod(init.dims, dtype=np.int64) for init in model.graph.initializer))


def load_networks(paths, device='auto', threads=None, backend='torch', max_memory=None, tile_size=0,
                  tile_overlap=32, log=print):
    """A :class:`LoadedNetwork` for every weights file of ``paths`` (see :func:`find_weights`)."""
    from ..weights.network import describe_network, load_network  # torch and basicsr: when serving starts

    networks = []
    for path in find_weights(paths):
        if path.lower().endswith('.onnx'):
            net, arch = path, None
        else:
            try:
                net, network_opt, report = load_network(path)
            except (UserError, FileNotFoundError) as err:
                raise UserError(f'--weights {path}: {err}') from None
            log(f'weights: {path} ({report["source"]}): {describe_network(network_opt)}')
            arch = network_opt['type']
        restorer = open_network(net, device, threads, tile_size=tile_size, tile_overlap=tile_overlap, log=log,
                                refused_flags={}, backend=backend, network_opt=None if arch is None else network_opt,
                                max_memory=max_memory)
        if arch is None:
            arch = (restorer.net.network_opt or {}).get('type', 'ONNX model')
            parameters = _onnx_parameters(path)
        else:
            parameters = sum(p.numel() for p in net.parameters())
        label = f'{arch} · {parameters / 1e6:.2f} M parameters · {source_of(path)}'
        slug = re.sub(r'[^A-Za-z0-9_.-]+', '_', f'{arch}_{osp.splitext(osp.basename(path))[0]}')
        networks.append(LoadedNetwork(label, slug, path, restorer, parameters))
    for i, network in enumerate(networks):  # the same file name twice (two runs' net_g_latest.pth): number them
        twins = [n for n in networks if n.label == network.label]
        if len(twins) > 1:
            network.label += f' #{twins.index(network) + 1}'
        if sum(n.slug == network.slug for n in networks) > 1:
            network.slug += f'_{i + 1}'
    return networks


def _layout_problem(header):
    """Why the restorer cannot keep this sample layout (None when it can: what ``basicsr restore`` reads back
    and writes in the same mode and depth)."""
    if header.colour == 'CMYK':
        return f'is a CMYK {header.format}; convert it to RGB first'
    if header.channels == 2 and header.format != 'PNG':
        return f'is gray + alpha in a {header.format} file, whose alpha would be lost; save it as PNG'
    if header.channels not in (1, 2, 3, 4):
        return f'has {header.channels} channels (supported: gray, RGB, with or without alpha)'
    if not ((header.sample == 'uint' and header.bits <= 16) or (header.sample == 'float' and header.bits == 32)):
        return (f'has {header.bits}-bit {header.sample} samples (supported: 8 or 16-bit integers, 32-bit float '
                'TIFF)')
    return None


def check_upload(path, what='the photo', max_megapixels=DEFAULT_MAX_MEGAPIXELS):
    """``(width, height)`` of an uploaded image, judged from its header before anything decodes it;
    :class:`UploadError` (one line) for an empty file, one that is not an image, too many pixels or a sample
    layout the restorer cannot keep."""
    name = osp.basename(str(path))
    if not osp.isfile(path):
        raise UploadError(f'{what} {name} did not arrive; upload it again')
    if osp.getsize(path) == 0:
        raise UploadError(f'{what} {name} is empty (0 bytes)')
    try:
        header = read_header(path)
    except HeaderError as err:
        raise UploadError(f'{what} {name} is not an image this page reads ({err}; it reads '
                          f'{", ".join(IMAGE_EXTENSIONS)})') from None
    megapixels = header.width * header.height / 1e6
    if megapixels > max_megapixels:
        raise UploadError(f'{what} {name} is {header.width} x {header.height} pixels ({megapixels:.0f} megapixels), '
                          f'more than the {max_megapixels:g} megapixels this page accepts (--max-megapixels); '
                          'restore it with `basicsr restore`')
    problem = _layout_problem(header)
    if problem:
        raise UploadError(f'{what} {name} {problem}')
    return header.width, header.height


def _reason(err):
    """One line for a decoding error (OpenCV's are several lines with a source path first)."""
    text = str(err).strip()
    if isinstance(err, cv2.error):
        found = re.search(r'error: \([^)]*\) ([^\n]+)', text)
        return f'OpenCV cannot decode it ({found.group(1).strip() if found else "error"})'
    return (text.splitlines() or [type(err).__name__])[0]


def _decoded(path, what):
    try:
        return read_image(path)
    except (ImageError, OSError, cv2.error) as err:
        raise UploadError(f'{what} {osp.basename(str(path))}: {_reason(err)}') from None


def preview(path, what='the image'):
    """An 8-bit RGB picture of the image file ``path`` for the page (long side at most :data:`PREVIEW_SIDE`)."""
    rgb = _decoded(path, what).rgb
    np.clip(rgb, 0, 1, out=rgb)
    height, width = rgb.shape[:2]
    if max(height, width) > PREVIEW_SIDE:
        scale = PREVIEW_SIDE / max(height, width)
        rgb = cv2.resize(rgb, (max(1, round(width * scale)), max(1, round(height * scale))),
                         interpolation=cv2.INTER_AREA)
    return (rgb * 255).round().astype(np.uint8)


def output_path(folder, upload_path, network):
    """``<folder>/<photo stem>_<network slug><the photo's extension>``: restore's rule (same format as the input)."""
    stem, ext = osp.splitext(osp.basename(str(upload_path)))
    return osp.join(folder, f'{stem}_{network.slug}{ext.lower()}')


def restore_upload(network, upload_path, folder, on_tile=None):
    """Restore ``upload_path`` with ``network`` into ``folder`` (one request at a time per network: its lock).
    Returns ``(output path, seconds, tile overhead of this image)``; :class:`UploadError` for the file's problems."""
    out_path = output_path(folder, upload_path, network)
    with network.lock:
        restorer = network.restorer
        before = restorer.pixels_computed, restorer.pixels_restored
        start = time.perf_counter()
        try:
            restore_file(restorer, upload_path, out_path, on_tile=on_tile)
        except (ImageError, OSError, cv2.error) as err:
            raise UploadError(f'{osp.basename(str(upload_path))}: {_reason(err)}') from None
        seconds = time.perf_counter() - start
        computed, restored = restorer.pixels_computed - before[0], restorer.pixels_restored - before[1]
    return out_path, seconds, computed / restored if restored else tile_overhead(restorer)


def scores(result_path, reference_path):
    """``(psnr, ssim)`` of the written result against the reference (protocol metrics: RGB in [0, 1], no crop)."""
    from ..metrics.protocol_metric import calculate_psnr_protocol, calculate_ssim_protocol
    result, reference = _decoded(result_path, 'the result'), _decoded(reference_path, 'the reference')
    if result.rgb.shape != reference.rgb.shape:
        height, width = reference.rgb.shape[:2]
        raise UploadError(f'the reference is {width} x {height} pixels, the photo '
                          f'{result.rgb.shape[1]} x {result.rgb.shape[0]}: PSNR/SSIM need the same size')
    return (calculate_psnr_protocol(result.rgb, reference.rgb), calculate_ssim_protocol(result.rgb, reference.rgb))


def demo_pairs(root, scratch):
    """``[(degraded, reference)]`` of the demo validation set under ``root`` (made if missing), copied under
    ``scratch`` with names that say the degradation (``blur_0001.png``, ``blur_0001_gt.png``): the page's examples
    when no photo is given. The clean images get noise (sigma 25, the official uint8 recipe, seeded by name)."""
    import shutil

    from ..data.degradations import DEGRADATION_REGISTRY
    from ..data.demo import ensure_demo_data
    from ..data.transforms import image_rng
    ensure_demo_data(root)
    val = osp.join(root, 'val')
    os.makedirs(scratch, exist_ok=True)
    found = [('noise25', osp.join(val, 'clean', name), osp.join(val, 'clean', name))
             for name in sorted(os.listdir(osp.join(val, 'clean')))]
    for kind, lq, gt in (('rain', 'rain/input', 'rain/target'), ('blur', 'blur/lq', 'blur/gt'),
                         ('lowlight', 'lowlight/lq', 'lowlight/gt')):
        found += [(kind, osp.join(val, lq, name), osp.join(val, gt, name))
                  for name in sorted(os.listdir(osp.join(val, lq)))]
    found += [('haze', osp.join(val, 'haze', 'hazy', name), osp.join(val, 'haze', 'gt', name.split('_')[0] + '.png'))
              for name in sorted(os.listdir(osp.join(val, 'haze', 'hazy')))]  # SOTS names: <gt>_<A>_<beta>.png
    pairs = []
    for kind, lq, gt in found:
        stem = f'{kind}_{osp.splitext(osp.basename(lq))[0]}'
        degraded, reference = osp.join(scratch, stem + '.png'), osp.join(scratch, stem + '_gt.png')
        if kind == 'noise25':
            clean = cv2.imread(lq, cv2.IMREAD_COLOR)[..., ::-1].astype(np.float32) / 255
            noisy = DEGRADATION_REGISTRY.get('gaussian_noise_uint8')(clean, image_rng(f'serve/{stem}'), 25)
            cv2.imwrite(degraded, (noisy[..., ::-1] * 255).round().astype(np.uint8))
        else:
            shutil.copyfile(lq, degraded)
        shutil.copyfile(gt, reference)
        pairs.append((degraded, reference))
    return pairs
