"""Image files in and out, keeping what a user expects back: size, mode (gray, gray + alpha, RGB, RGBA), bit depth
(8, 16, float32 TIFF) and JPEG orientation. Used by ``basicsr restore`` (and ``basicsr serve``).

- :func:`read_image` -> :class:`ImageFile`: float32 RGB in [0, 1] for the network, plus what writing needs.
- :func:`to_samples` + :func:`encode_image`: a restored float RGB image back to the input's mode and depth, as
  the bytes of a file format (refusing what the format cannot store instead of OpenCV's silent conversion).
"""
from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np
import torch

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


def storage_problem(ext, channels, dtype):
    """Why ``ext`` (e.g. '.jpg') cannot store ``channels`` samples of ``dtype`` without loss, or None when it can."""
    if ext not in _FORMAT_CAN_STORE:
        return f'cannot write {ext} files (supported: {", ".join(IMAGE_EXTENSIONS)})'
    can_channels, can_dtypes = _FORMAT_CAN_STORE[ext]
    if channels in can_channels and dtype in can_dtypes:
        return None
    kind = {1: 'gray', 3: 'RGB', 4: 'RGBA'}.get(channels, f'{channels}-channel')
    return f'{ext} cannot store {kind} {np.dtype(dtype).name} samples without loss; use --ext png (or .tif)'


def _png_layout(path):
    """``(channels, dtype)`` of what :func:`read_image` + :func:`to_samples` make of a PNG, from its header alone,
    or None when the header cannot tell (a palette or a transparency chunk: OpenCV may add an alpha plane)."""
    with open(path, 'rb') as f:
        head = f.read(33)  # signature, IHDR (length, type, 13 bytes of data, CRC)
        if len(head) < 33 or head[:8] != b'\x89PNG\r\n\x1a\n' or head[12:16] != b'IHDR':
            return None
        depth, colour_type = head[24], head[25]
        while True:  # the chunks before the image data: a tRNS chunk gives alpha to gray or RGB
            chunk = f.read(8)
            if len(chunk) < 8 or chunk[4:] == b'IDAT':
                break
            if chunk[4:] == b'tRNS':
                return None
            f.seek(int.from_bytes(chunk[:4], 'big') + 4, 1)
    channels = {0: 1, 2: 3, _PNG_GRAY_ALPHA: 4, 6: 4}.get(colour_type)  # gray + alpha is written as BGRA
    return (channels, np.uint16 if depth == 16 else np.uint8) if channels else None


def output_problem(path, ext):
    """Why the restored ``path`` cannot be written as ``ext`` (:func:`storage_problem`), found cheaply before
    anything is restored: a PNG's header, a JPEG's kind (8-bit gray or RGB, which every format stores); other
    formats are decoded. None when it can be written, or when ``path`` cannot be read (restoring it reports why)."""
    path = str(path)
    if path.lower().endswith(('.jpg', '.jpeg')):
        return None
    try:
        layout = _png_layout(path) if path.lower().endswith('.png') else None
        if layout is None:
            image = read_image(path)
            layout = (4 if image.alpha is not None else 1 if image.gray else 3), image.dtype
    except (ImageError, OSError):
        return None
    return storage_problem(ext.lower(), *layout)


def encode_image(samples, ext):
    """Encode the array of :func:`to_samples` as ``ext`` (e.g. '.png'); raises :class:`ImageError` when
    the format cannot store its channels or bit depth (instead of OpenCV's silent conversion)."""
    ext = ext.lower()
    n = 1 if samples.ndim == 2 else samples.shape[2]
    problem = storage_problem(ext, n, samples.dtype.type)
    if problem:
        raise ImageError(problem)
    if ext == '.webp' and n == 1:
        samples = cv2.cvtColor(samples, cv2.COLOR_GRAY2BGR)
    ok, buffer = cv2.imencode(ext, samples, _ENCODE_PARAMS.get(ext, []))
    if not ok:
        raise ImageError(f'OpenCV could not encode the result as {ext}')
    return buffer.tobytes()
