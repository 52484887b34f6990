"""Image files written by writers other than the code under test (a PNG writer of our own, Pillow, tifffile), from
sample arrays in RGB order, so a test knows every stored sample and a channel-order or scale error of OpenCV's
conventions cannot go unnoticed."""
import struct
import zlib

import numpy as np

PNG_COLOUR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type (gray, gray + alpha, RGB, RGBA)


def write_png(path, samples):
    """``samples`` (H, W) or (H, W, C), uint8 or uint16, channels in the PNG's order (gray[, alpha] or RGB[A]), as
    a PNG written here byte by byte (OpenCV cannot write gray + alpha)."""
    samples = np.asarray(samples)
    height, width = samples.shape[:2]
    channels = 1 if samples.ndim == 2 else samples.shape[2]
    depth = 16 if samples.dtype == np.uint16 else 8
    rows = samples.reshape(height, width * channels).astype('>u2' if depth == 16 else 'u1')
    raw = b''.join(b'\x00' + row.tobytes() for row in rows)  # filter type 0 (none) on every row

    def chunk(kind, data):
        return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))

    header = struct.pack('>IIBBBBB', width, height, depth, PNG_COLOUR_TYPES[channels], 0, 0, 0)
    with open(path, 'wb') as f:
        f.write(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', header) + chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b''))


def write_tiff(path, samples):
    """``samples`` (H, W) gray or (H, W, 3|4) RGB[A] of any dtype, written by tifffile. The fourth channel is
    declared an unspecified extra sample, as OpenCV writes it: OpenCV's reader premultiplies 8-bit colour by an
    alpha declared unassociated (measured: 9 at alpha 128 read as 5)."""
    import tifffile
    samples = np.asarray(samples)
    rgb = samples.ndim == 3
    tifffile.imwrite(path, samples, photometric='rgb' if rgb else 'minisblack',
                     extrasamples=['unspecified'] if rgb and samples.shape[2] == 4 else None)


def write_with_pillow(path, samples, **params):
    """8-bit ``samples`` (H, W) gray, (H, W, 2) gray + alpha, (H, W, 3|4) RGB[A] written by Pillow (JPEG, WebP,
    BMP; ``params`` as Pillow's ``save``, e.g. ``lossless=True``, ``exif=...``)."""
    from PIL import Image
    Image.fromarray(np.asarray(samples, np.uint8)).save(path, **params)  # mode L, LA, RGB or RGBA from the shape


def exif_orientation(value):
    """EXIF bytes with only the orientation tag (0x0112), as a phone writes for a photo held sideways."""
    from PIL import Image
    exif = Image.Exif()
    exif[0x0112] = value
    return exif.tobytes()


def read_with_pillow(path):
    """(H, W[, C]) uint8 samples as Pillow decodes ``path``, with the EXIF orientation applied."""
    from PIL import Image, ImageOps
    with Image.open(path) as img:
        return np.asarray(ImageOps.exif_transpose(img))


def smooth(height, width, channels, seed, low=0.0, high=1.0):
    """A seeded smooth float image in [low, high] (a photo-like input: the networks' outputs stay in range)."""
    rng = np.random.default_rng(seed)
    noise = rng.random((height + 4, width + 4, channels))
    kernel = np.ones(5) / 5
    for axis in (0, 1):
        noise = np.apply_along_axis(lambda v: np.convolve(v, kernel, mode='valid'), axis, noise)
    noise = (noise - noise.min()) / (noise.max() - noise.min())
    return (low + (high - low) * noise).astype(np.float32)


def quantise(img, dtype):
    """Float samples in [0, 1] -> uint8 / uint16 samples."""
    top = 255 if dtype == np.uint8 else 65535
    return np.rint(np.clip(img, 0, 1) * top).astype(dtype)
