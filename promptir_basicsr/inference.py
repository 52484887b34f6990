"""Using trained weights outside a training run: any weights file -> a ready network -> images.

Used by ``basicsr restore``, ``basicsr prompts`` and ``basicsr convert`` (and by export tools):

- :func:`infer_network_options`: the architecture and all its hyper-parameters, read from a state
  dict alone (one small reader per architecture, registered with :func:`option_reader`).
- :func:`read_weights` / :func:`load_network`: a basicsr ``.pth`` (``params_ema`` first, then
  ``params``), an official PromptIR Lightning ``.ckpt``, an official AirNet or Restormer ``.pth``, or a
  ``.safetensors`` file (its metadata ``arch`` / ``network_options`` when present), always read
  without running pickled code, built through basicsr's ``build_network`` and loaded strictly.
- :class:`Restorer`: the one place where a network is prepared (device, precision) and run on
  whole images (padding, tiles: :func:`promptir_basicsr.utils.tiling.tiled_forward`).
- :func:`read_image` / :func:`encode_image`: image files in and out, keeping size, mode (gray, RGB,
  RGBA), bit depth (8, 16, float32 TIFF) and JPEG orientation.
"""
import json
import os.path as osp
from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np
import torch

from .archs.arch_api import options_from_weights, size_multiple
from .errors import UserError
from .utils import acceleration
from .utils.checkpoints import CheckpointError, convert_state_dict, extract_state_dict, load_checkpoint_for_conversion
from .utils.tiling import TileGrid, tiled_forward

# ----------------------------------------------------------------------------------------------
# Weights files
# ----------------------------------------------------------------------------------------------
#: safetensors metadata keys (strings only): the architecture name and its options as JSON
SAFETENSORS_ARCH_KEY = 'arch'
SAFETENSORS_OPTIONS_KEY = 'network_options'


def network_metadata(network_opt):
    """The safetensors metadata that records ``network_opt`` (``{'type': arch, ...}``)."""
    options = {k: v for k, v in network_opt.items() if k != 'type'}
    return {SAFETENSORS_ARCH_KEY: network_opt['type'], SAFETENSORS_OPTIONS_KEY: json.dumps(options)}


def network_opt_from_metadata(metadata):
    """``{'type': arch, ...}`` from safetensors metadata written by :func:`network_metadata`, or None."""
    if not metadata or SAFETENSORS_ARCH_KEY not in metadata:
        return None
    options = json.loads(metadata.get(SAFETENSORS_OPTIONS_KEY) or '{}')
    return {'type': metadata[SAFETENSORS_ARCH_KEY], **options}


def read_weights(path):
    """``(checkpoint dict, network_opt from the file's metadata or None)`` for any supported file."""
    path = str(path)
    if not osp.isfile(path):
        raise FileNotFoundError(f'Weights file not found: {path}')
    if path.lower().endswith('.safetensors'):
        from safetensors import SafetensorError, safe_open
        try:
            with safe_open(path, framework='pt', device='cpu') as f:
                return {key: f.get_tensor(key) for key in f.keys()}, network_opt_from_metadata(f.metadata())
        except (SafetensorError, OSError, ValueError) as err:
            raise CheckpointError(f'Cannot read {path} as a safetensors file: {err}') from err
    try:
        return load_checkpoint_for_conversion(path), None
    except CheckpointError:
        raise
    except Exception as err:  # noqa: BLE001 (not a torch file at all: say so, with torch's reason)
        raise CheckpointError(f'Cannot read {path} as PyTorch weights (.pth/.ckpt) or .safetensors: '
                              f'{str(err).splitlines()[0]}') from err


def default_param_key(ckpt):
    """basicsr files: ``params_ema`` (the EMA weights, what basicsr validates with) when present."""
    return 'params_ema' if isinstance(ckpt, dict) and isinstance(ckpt.get('params_ema'), dict) else None


def resolve_network_opt(state_dict, file_opt=None, arch=None, overrides=None):
    """The network to build: from the file's metadata, else read from the weights, then overridden.

    ``arch`` (``--arch``) different from the weights' architecture drops what was read from them;
    ``overrides`` (an option file's ``network_g``, ``--arch-opt``) win over everything.
    """
    overrides = dict(overrides or {})
    arch = overrides.pop('type', None) or arch
    try:
        base = dict(file_opt) if file_opt else options_from_weights(state_dict)
    except CheckpointError:
        if arch is None:
            raise
        base = {'type': arch}
    if arch is not None and arch != base['type']:
        base = {'type': arch}
    base.update(overrides)
    return base


def load_network(path, arch=None, overrides=None, param_key=None):
    """Build the network for a weights file and load them strictly.

    Returns ``(net, network_opt, report)``; ``report`` as :func:`convert_state_dict`'s, plus
    ``'read_from'``: where the options came from. Raises :class:`CheckpointError` (listing missing,
    unexpected and mis-shaped keys) when the weights do not fit the network.
    """
    from basicsr.archs import build_network

    ckpt, file_opt = read_weights(path)
    param_key = param_key or default_param_key(ckpt)
    state_dict = extract_state_dict(ckpt, param_key)[0]
    network_opt = resolve_network_opt(state_dict, file_opt, arch, overrides)
    try:
        net = build_network(dict(network_opt))
    except KeyError as err:
        raise CheckpointError(f'Unknown architecture {network_opt["type"]!r}: {err}') from err
    except (TypeError, ValueError) as err:
        raise CheckpointError(f'Cannot build {network_opt["type"]} with options {network_opt}: {err}') from err
    converted, report = convert_state_dict(ckpt, net, param_key=param_key)
    net.load_state_dict(converted, strict=True)
    report['read_from'] = 'the file metadata' if file_opt else 'the weights'
    if overrides:
        report['read_from'] += ' + your options'
    return net.eval(), network_opt, report


def describe_network(network_opt):
    """One line: ``PromptIR dim=16 num_blocks=[1, 1, 1, 2] ...``."""
    return ' '.join([network_opt['type']] + [f'{k}={v}' for k, v in network_opt.items() if k != 'type'])


# ----------------------------------------------------------------------------------------------
# Running a network on images
# ----------------------------------------------------------------------------------------------
AMP_DTYPES = acceleration.AMP_DTYPES  # the speed options' one table of amp names


def resolve_device(device='auto'):
    """'auto' -> CUDA when available, else the CPU; asking for CUDA without it is a ValueError."""
    if device in (None, 'auto'):
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    device = torch.device(device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise ValueError('--device cuda, but no CUDA device is available here; use --device cpu (or auto)')
    return device


class Restorer:
    """A network prepared for inference, and the one call that runs it on whole images.

    Preparing (:meth:`__init__`): eval mode, the device, the precision, channels-last weights and
    ``torch.compile`` when asked (``compile_options``: the keyword arguments of ``torch.compile``).
    Running (:meth:`__call__`):
    padding to the network's size multiple, tiles when ``tile_size`` is set, autocast for ``amp``.
    """

    def __init__(self, net, device='auto', amp=None, tile_size=None, tile_overlap=32, channels_last=False,
                 compile_options=None):
        self.device = resolve_device(device)
        if amp is not None and amp not in AMP_DTYPES:
            raise ValueError(f'amp must be one of {sorted(AMP_DTYPES)}, got {amp!r}')
        if amp == 'fp16' and self.device.type != 'cuda':
            raise ValueError('--amp fp16 needs CUDA; on the CPU use --amp bf16')
        self.amp_dtype = AMP_DTYPES.get(amp)
        self.multiple = size_multiple(net)
        self.tile_size, self.tile_overlap = tile_size, tile_overlap
        self.net = net.eval().to(self.device)
        # The speed options of training and test (utils/acceleration.py), on the network as it will run.
        if channels_last:
            acceleration.to_channels_last(self.net)
        if compile_options is not None:
            acceleration.compile_network(self.net, compile_options)

    def _forward(self, x):
        out = self.net(x)
        return out[0] if isinstance(out, (tuple, list)) else out

    @torch.inference_mode()
    def __call__(self, x, on_tile=None):
        """(N, C, H, W) float in [0, 1] (any device) -> restored (N, C, H, W) float32 on the CPU."""
        x = x.to(self.device)
        amp = self.amp_dtype is not None
        try:
            with acceleration.autocast(self.device, self.amp_dtype):
                out = tiled_forward(self._forward, x, self.tile_size, self.tile_overlap, self.multiple,
                                    on_tile=on_tile)
        except RuntimeError as err:
            if amp and 'not implemented for' in str(err):  # an operation without a kernel in that precision
                reason = str(err).splitlines()[0][-80:]
                raise UserError(f'--amp: {type(self.net).__name__} has an operation without {self.amp_dtype} support '
                                f'on {self.device.type} ({reason}); run without --amp') from None
            raise
        return out.cpu()

    def tile_count(self, height, width):
        """How many tiles an image of this size is cut into (1 without tiling)."""
        if not self.tile_size:
            return 1
        padded_h, padded_w = (-(-side // self.multiple) * self.multiple for side in (height, width))
        return len(TileGrid(padded_h, padded_w, self.tile_size, self.tile_overlap, self.multiple))


# ----------------------------------------------------------------------------------------------
# Image files
# ----------------------------------------------------------------------------------------------
IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp')
# What each format can store: channel counts and sample types (OpenCV silently converts the rest).
_FORMAT_CAN_STORE = {
    '.png': ({1, 3, 4}, {np.uint8, np.uint16}),
    '.tif': ({1, 3, 4}, {np.uint8, np.uint16, np.float32}),
    '.tiff': ({1, 3, 4}, {np.uint8, np.uint16, np.float32}),
    '.jpg': ({1, 3}, {np.uint8}),
    '.jpeg': ({1, 3}, {np.uint8}),
    '.bmp': ({1, 3, 4}, {np.uint8}),
    '.webp': ({1, 3, 4}, {np.uint8}),  # gray is stored as RGB
}
_ENCODE_PARAMS = {'.jpg': [cv2.IMWRITE_JPEG_QUALITY, 95], '.jpeg': [cv2.IMWRITE_JPEG_QUALITY, 95],
                  '.webp': [cv2.IMWRITE_WEBP_QUALITY, 95], '.png': [cv2.IMWRITE_PNG_COMPRESSION, 3]}
_PNG_GRAY_ALPHA = 4  # PNG colour type of gray + alpha (OpenCV reads it as BGRA and cannot write it)


class ImageError(ValueError):
    """An image file that cannot be read, or a result its format cannot store."""


@dataclass
class ImageFile:
    """A decoded image: ``rgb`` float32 (H, W, 3) in [0, 1] for the network, and what writing it
    back needs: ``gray`` (one channel, or gray + alpha), ``alpha`` (the alpha plane as stored),
    ``dtype`` (uint8, uint16 or float32)."""
    rgb: np.ndarray
    gray: bool
    alpha: Optional[np.ndarray]
    dtype: type


def _sample_range(dtype):
    return {np.uint8: 255.0, np.uint16: 65535.0}.get(dtype, 1.0)


def _png_colour_type(path):
    with open(path, 'rb') as f:
        head = f.read(26)
    return head[25] if head[:8] == b'\x89PNG\r\n\x1a\n' and len(head) == 26 else None


def read_image(path):
    """Decode ``path`` (PNG, JPEG, BMP, TIFF, WebP; 8/16-bit, float32 TIFF; gray, RGB, RGBA).

    JPEG orientation (EXIF) is applied, as image viewers do. Raises :class:`ImageError` for a file
    that is missing, unreadable, corrupt or of an unsupported sample type.
    """
    path = str(path)
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # the reason is reported below, once
    try:
        raw = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    finally:
        cv2.utils.logging.setLogLevel(level)
    if raw is None:
        raise ImageError('cannot be read as an image (corrupt, truncated or not an image file)')
    if raw.dtype.type not in (np.uint8, np.uint16, np.float32):
        raise ImageError(f'unsupported sample type {raw.dtype} (supported: 8-bit, 16-bit, float32 TIFF)')
    if path.lower().endswith(('.jpg', '.jpeg')) and raw.dtype == np.uint8 and raw.ndim in (2, 3):
        # IMREAD_UNCHANGED ignores the EXIF orientation; these flags apply it.
        oriented = cv2.imread(path, cv2.IMREAD_GRAYSCALE if raw.ndim == 2 else cv2.IMREAD_COLOR)
        raw = oriented if oriented is not None else raw
    dtype = raw.dtype.type
    scale = _sample_range(dtype)
    gray = raw.ndim == 2 or raw.shape[2] == 1
    alpha = None
    if gray:
        rgb = np.repeat(raw.reshape(*raw.shape[:2], 1), 3, axis=2).astype(np.float32)
    else:
        if raw.shape[2] == 4:
            alpha = raw[..., 3].copy()
            gray = path.lower().endswith('.png') and _png_colour_type(path) == _PNG_GRAY_ALPHA
        rgb = cv2.cvtColor(np.ascontiguousarray(raw[..., :3]), cv2.COLOR_BGR2RGB).astype(np.float32)
    rgb /= scale  # in place: one float copy of the image
    return ImageFile(rgb=rgb, gray=gray, alpha=alpha, dtype=dtype)


def to_tensor(rgb):
    """(H, W, 3) float32 RGB -> (1, 3, H, W) tensor."""
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))[None]


def to_samples(restored, like):
    """Restored (H, W, 3) float32 RGB -> the stored array of ``like``'s mode and dtype (OpenCV's BGR order).

    Integer outputs are clamped to [0, 1] per channel first (as basicsr's ``tensor2img``); a gray
    input comes back as the mean of the three channels; float32 TIFFs are stored unclamped.
    ``restored`` is overwritten (in place: at 4096 x 4096 each float copy is 200 MB).
    """
    integer = like.dtype is not np.float32
    if integer:
        np.clip(restored, 0, 1, out=restored)
    planes = restored.mean(axis=2, keepdims=True) if like.gray else restored[..., ::-1]  # RGB -> BGR (a view)
    if integer:
        planes *= _sample_range(like.dtype)
        np.rint(planes, out=planes)
    samples = planes.astype(like.dtype)
    if like.alpha is not None:
        if like.gray:  # gray + alpha PNG: OpenCV writes 1, 3 or 4 channels, so the gray repeats
            samples = np.repeat(samples, 3, axis=2)
        samples = np.concatenate([samples, like.alpha[..., None].astype(samples.dtype)], axis=2)
    return np.ascontiguousarray(samples[..., 0] if samples.shape[2] == 1 else samples)


def encode_image(samples, ext):
    """Encode the array of :func:`to_samples` as ``ext`` (e.g. '.png'); raises :class:`ImageError` when
    the format cannot store its channels or bit depth (instead of OpenCV's silent conversion)."""
    ext = ext.lower()
    if ext not in _FORMAT_CAN_STORE:
        raise ImageError(f'cannot write {ext} files (supported: {", ".join(IMAGE_EXTENSIONS)})')
    channels, dtypes = _FORMAT_CAN_STORE[ext]
    n = 1 if samples.ndim == 2 else samples.shape[2]
    if n not in channels or samples.dtype.type not in dtypes:
        kind = {1: 'gray', 3: 'RGB', 4: 'RGBA'}.get(n, f'{n}-channel')
        raise ImageError(f'{ext} cannot store {kind} {samples.dtype.name} samples without loss; use --ext png '
                         '(or .tif)')
    if ext == '.webp' and n == 1:
        samples = cv2.cvtColor(samples, cv2.COLOR_GRAY2BGR)
    ok, buffer = cv2.imencode(ext, samples, _ENCODE_PARAMS.get(ext, []))
    if not ok:
        raise ImageError(f'OpenCV could not encode the result as {ext}')
    return buffer.tobytes()
