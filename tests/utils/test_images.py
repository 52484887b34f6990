"""utils/images.py through a real network run: every mode x format ``basicsr restore`` accepts, written by other
writers (tests/image_helpers.py) from known samples, restored by an affine network whose output is computed here by
hand, read back. A scale or channel-order error on reading shows in the output even when writing makes the same
error (the network's bias does not scale with it); clamping, gray averaging and alpha pass-through are checked
value by value."""
import cv2
import numpy as np
import pytest
import torch
from image_helpers import (exif_orientation, quantise, read_with_pillow, smooth, write_png, write_tiff,
                           write_with_pillow)

from promptir_basicsr.commands import restore as restore_command
from promptir_basicsr.image_restoration import restore_file
from promptir_basicsr.inference import Restorer
from promptir_basicsr.utils.images import (IMAGE_EXTENSIONS, ImageError, encode_image, output_problem, read_image,
                                           storage_problem, to_samples)

# out = M @ rgb + b per pixel: channels mixed unequally (an RGB/BGR swap shows), a bias that pushes bright pixels
# above 1 and dark ones below 0 in some channels (clamping shows; float32 TIFFs keep those values).
MIX = np.array([[0.9, 0.2, 0.1], [0.1, 0.6, 0.2], [0.0, 0.3, 0.5]])
BIAS = np.array([0.08, -0.1, 0.15])
H, W = 11, 14  # odd height; not square (orientation shows)


@pytest.fixture(scope='module')
def restorer():
    net = torch.nn.Conv2d(3, 3, 1)
    with torch.no_grad():
        net.weight.copy_(torch.tensor(MIX, dtype=torch.float32)[..., None, None])
        net.bias.copy_(torch.tensor(BIAS, dtype=torch.float32))
    return Restorer(net, 'cpu')


def _expected(rgb, gray=False, clamp=True):
    """The stored samples (float, in [0, 1] units) of the restored ``rgb`` (H, W, 3 float in [0, 1])."""
    out = rgb.astype(np.float64) @ MIX.T + BIAS
    if clamp:
        out = np.clip(out, 0, 1)
    return out.mean(axis=2) if gray else out


def _read_back(path):
    """The output file's samples as OpenCV stores them, turned to RGB[A] order here."""
    out = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if out.ndim == 3:
        out = np.concatenate([out[..., 2::-1], out[..., 3:]], axis=2)
    return out


def _rgb(samples):
    """The float RGB the network should see for stored samples (gray repeated, alpha dropped)."""
    top = {np.uint8: 255., np.uint16: 65535.}.get(samples.dtype.type, 1.)
    img = samples / top
    return np.repeat(img[..., None], 3, 2) if img.ndim == 2 else img[..., :3]


def _with_extremes(img, low=0.0, high=1.0):
    """``img`` with a white first and a black last pixel, whose restored values leave [0, 1] (clamping shows)."""
    img = img.copy()
    img[0, 0], img[-1, -1] = high, low
    return img


def _lossless_cases():
    rgb = _with_extremes(smooth(H, W, 3, seed=1))
    gray = _with_extremes(smooth(H, W, 1, seed=2)[..., 0])
    alpha = smooth(H, W, 1, seed=3)[..., 0]
    cases = {}
    for dtype, bits in ((np.uint8, 8), (np.uint16, 16)):
        cases[f'gray{bits}.png'] = (write_png, quantise(gray, dtype))
        cases[f'gray_alpha{bits}.png'] = (write_png, quantise(np.dstack([gray, alpha]), dtype))
        cases[f'rgb{bits}.png'] = (write_png, quantise(rgb, dtype))
        cases[f'rgba{bits}.png'] = (write_png, quantise(np.dstack([rgb, alpha]), dtype))
        cases[f'gray{bits}.tif'] = (write_tiff, quantise(gray, dtype))
        cases[f'rgb{bits}.tiff'] = (write_tiff, quantise(rgb, dtype))
        cases[f'rgba{bits}.tif'] = (write_tiff, quantise(np.dstack([rgb, alpha]), dtype))
    cases['float_rgb.tif'] = (write_tiff, rgb * 1.2 - 0.1)  # float TIFFs may hold values outside [0, 1]
    cases['float_gray.tiff'] = (write_tiff, gray * 1.4 - 0.2)
    cases['rgb8.bmp'] = (write_with_pillow, quantise(rgb, np.uint8))
    cases['gray8.bmp'] = (write_with_pillow, quantise(gray, np.uint8))
    return cases


@pytest.mark.parametrize('name', sorted(_lossless_cases()))
def test_lossless_formats_restore_to_the_computed_samples(tmp_path, restorer, name):
    """PNG (gray, gray + alpha, RGB, RGBA at 8 and 16 bits), TIFF (the same, and float32 unclamped), BMP: the
    output has the input's size, mode and depth, and exactly the samples computed by hand (1 level of rounding)."""
    write, samples = _lossless_cases()[name]
    write(tmp_path / name, samples)
    out = tmp_path / ('out_' + name)
    assert restore_file(restorer, tmp_path / name, out) == pytest.approx(H * W / 1e6)
    back = _read_back(out)
    gray = samples.ndim == 2 or samples.shape[2] == 2
    alpha = samples[..., -1] if samples.ndim == 3 and samples.shape[2] in (2, 4) else None
    rgb = _rgb(samples[..., 0] if gray and alpha is not None else samples)
    expected = _expected(rgb, gray=gray, clamp=samples.dtype != np.float32)
    if samples.dtype == np.float32:
        assert back.dtype == np.float32 and back.shape == samples.shape
        assert back.max() > 1 and back.min() < 0  # stored unclamped
        np.testing.assert_allclose(back, expected, atol=1e-6)
        return
    top = 255 if samples.dtype == np.uint8 else 65535
    assert back.dtype == samples.dtype
    if gray and alpha is not None:  # gray + alpha: OpenCV writes BGRA, so the gray is repeated in B, G and R
        assert back.shape == (H, W, 4) and (back[..., 0] == back[..., 1]).all() and (back[..., 0] == back[..., 2]).all()
        back = back[..., [0, 3]]
    assert back.shape == samples.shape
    colour = back[..., :-1] if alpha is not None else back
    if colour.ndim == 3 and colour.shape[2] == 1:
        colour = colour[..., 0]
    assert np.abs(colour.astype(np.float64) - expected * top).max() <= 0.51  # rint of the same value
    assert np.abs(_expected(rgb, gray=gray, clamp=False) - expected).max() > 0.05  # this input needs the clamping
    if alpha is not None:
        np.testing.assert_array_equal(back[..., -1], alpha)  # untouched, at the input's depth


def test_jpeg_gray_and_exif_orientation(tmp_path, restorer):
    """JPEGs (RGB turned by EXIF orientation 6, gray by 8, written by Pillow with the tag set here) are restored
    upright, as Pillow shows them; the output JPEG holds the computed samples (compared after the same quality-95
    encoding)."""
    rgb = quantise(smooth(H, W, 3, seed=4), np.uint8)
    gray = quantise(smooth(H, W, 1, seed=5)[..., 0], np.uint8)
    write_with_pillow(tmp_path / 'phone.jpg', rgb, quality=100, exif=exif_orientation(6))
    write_with_pillow(tmp_path / 'gray.jpeg', gray, quality=100, exif=exif_orientation(8))
    for name, upright_gray in (('phone.jpg', False), ('gray.jpeg', True)):
        seen = read_with_pillow(tmp_path / name)  # what a viewer shows: turned to W x H
        assert seen.shape[:2] == (W, H)
        restore_file(restorer, tmp_path / name, tmp_path / ('out_' + name))
        back = _read_back(tmp_path / ('out_' + name))
        expected = quantise(_expected(_rgb(seen), gray=upright_gray), np.uint8)
        assert back.shape == expected.shape and back.dtype == np.uint8
        as_jpeg = cv2.imdecode(cv2.imencode('.jpg', expected if upright_gray else expected[..., ::-1],
                                            [cv2.IMWRITE_JPEG_QUALITY, 95])[1], cv2.IMREAD_UNCHANGED)
        as_jpeg = as_jpeg if upright_gray else as_jpeg[..., ::-1]
        assert np.abs(back.astype(float) - as_jpeg).mean() < 1.5, name  # re-encoding differs by a level here and there
    assert read_image(tmp_path / 'phone.jpg').rgb.shape == (W, H, 3)


@pytest.mark.parametrize('channels', [3, 4])
def test_webp_rgb_and_rgba(tmp_path, restorer, channels):
    """Lossless WebP in (RGB, RGBA written by Pillow with exact colours), lossy WebP out at quality 95: the
    colours are the computed ones after that encoding, the alpha is kept."""
    samples = quantise(np.dstack([smooth(H, W, 3, seed=6), smooth(H, W, 1, seed=7)])[..., :channels], np.uint8)
    write_with_pillow(tmp_path / 'in.webp', samples, lossless=True, exact=True)
    restore_file(restorer, tmp_path / 'in.webp', tmp_path / 'out.webp')
    back = _read_back(tmp_path / 'out.webp')
    assert back.shape == samples.shape and back.dtype == np.uint8
    expected = quantise(_expected(_rgb(samples)), np.uint8)
    stored = np.concatenate([expected[..., ::-1], samples[..., 3:]], axis=2)
    as_webp = cv2.imdecode(cv2.imencode('.webp', stored, [cv2.IMWRITE_WEBP_QUALITY, 95])[1], cv2.IMREAD_UNCHANGED)
    assert np.abs(back[..., :3].astype(float) - as_webp[..., 2::-1]).mean() < 1.5
    swapped = cv2.imdecode(cv2.imencode('.webp', np.concatenate([expected, samples[..., 3:]], axis=2),
                                        [cv2.IMWRITE_WEBP_QUALITY, 95])[1], cv2.IMREAD_UNCHANGED)
    assert np.abs(back[..., :3].astype(float) - swapped[..., 2::-1]).mean() > 10  # the comparison tells RGB from BGR
    if channels == 4:
        np.testing.assert_array_equal(back[..., 3], samples[..., 3])


def test_other_extensions_convert_or_refuse(tmp_path, restorer):
    """--ext: an 8-bit RGB PNG restored as JPEG and as BMP; 16-bit and alpha into JPEG, float into PNG refused
    with the fix instead of OpenCV's silent conversion."""
    samples = quantise(smooth(H, W, 3, seed=8), np.uint8)
    write_png(tmp_path / 'rgb.png', samples)
    restore_file(restorer, tmp_path / 'rgb.png', tmp_path / 'rgb.bmp')
    expected = quantise(_expected(_rgb(samples)), np.uint8)
    assert np.abs(_read_back(tmp_path / 'rgb.bmp').astype(float) - expected).max() <= 1
    with pytest.raises(ImageError, match=r'^\.jpg cannot store RGB uint16 samples without loss; use --ext png'):
        encode_image(np.zeros((4, 4, 3), np.uint16), '.jpg')
    with pytest.raises(ImageError, match=r'^\.jpeg cannot store RGBA uint8 samples'):
        encode_image(np.zeros((4, 4, 4), np.uint8), '.JPEG')
    with pytest.raises(ImageError, match=r'^\.png cannot store gray float32 samples'):
        encode_image(np.zeros((4, 4), np.float32), '.png')
    with pytest.raises(ImageError, match=r'^\.webp cannot store 2-channel uint8'):
        encode_image(np.zeros((4, 4, 2), np.uint8), '.webp')
    with pytest.raises(ImageError, match=r'cannot write \.gif files'):
        encode_image(np.zeros((4, 4), np.uint8), '.gif')
    gray_webp = cv2.imdecode(np.frombuffer(encode_image(np.full((4, 4), 77, np.uint8), '.webp'), np.uint8),
                             cv2.IMREAD_UNCHANGED)
    assert gray_webp.shape == (4, 4, 3) and np.abs(gray_webp.astype(int) - 77).max() <= 2  # stored as RGB


def test_storage_problem_table():
    """What each format stores (the table both the planning check and the writer use)."""
    storable = {(ext, channels, dtype) for ext in ('.png', '.tif', '.bmp', '.webp', '.jpg')
                for channels in (1, 3, 4) for dtype in (np.uint8, np.uint16, np.float32)
                if storage_problem(ext, channels, dtype) is None}
    assert storable == ({('.png', c, d) for c in (1, 3, 4) for d in (np.uint8, np.uint16)}
                        | {('.tif', c, d) for c in (1, 3, 4) for d in (np.uint8, np.uint16, np.float32)}
                        | {(e, c, np.uint8) for e in ('.bmp', '.webp') for c in (1, 3, 4)}
                        | {('.jpg', c, np.uint8) for c in (1, 3)})
    assert storage_problem('.tiff', 4, np.float32) is None and storage_problem('.jpeg', 1, np.uint8) is None
    assert storage_problem('.jpg', 4, np.uint16) == ('.jpg cannot store RGBA uint16 samples without loss; use --ext '
                                                     'png (or .tif)')
    assert restore_command.IMAGE_EXTENSIONS == IMAGE_EXTENSIONS  # the command's copy (its --help needs no OpenCV)


def test_output_problem_reads_headers_and_decodes_the_rest(tmp_path, monkeypatch):
    """The planning check of restore --ext: PNG modes and depths from the header (no decoding), a palette or
    transparency chunk decoded, JPEG never a problem, TIFF/WebP decoded; an unreadable file left to the restore."""
    gray, rgb = np.full((3, 5), 9, np.uint8), np.full((3, 5, 3), 9, np.uint8)
    write_png(tmp_path / 'g16.png', gray.astype(np.uint16))
    write_png(tmp_path / 'la8.png', np.dstack([gray, gray]))
    write_png(tmp_path / 'rgba16.png', np.dstack([rgb, gray]).astype(np.uint16))
    write_png(tmp_path / 'rgb8.png', rgb)
    write_with_pillow(tmp_path / 'photo.jpg', rgb)
    write_tiff(tmp_path / 'float.tif', rgb.astype(np.float32))
    write_with_pillow(tmp_path / 'alpha.webp', np.dstack([rgb, gray]), lossless=True)
    real_read = read_image
    decoded = []
    monkeypatch.setattr('promptir_basicsr.utils.images.read_image', lambda path: decoded.append(path.rsplit('/')[-1])
                        or real_read(path))
    assert output_problem(tmp_path / 'g16.png', '.jpg') == '.jpg cannot store gray uint16 samples without loss; ' \
                                                            'use --ext png (or .tif)'
    assert output_problem(tmp_path / 'g16.png', '.PNG') is None
    assert output_problem(tmp_path / 'la8.png', '.jpg').startswith('.jpg cannot store RGBA uint8')
    assert output_problem(tmp_path / 'la8.png', '.webp') is None
    assert output_problem(tmp_path / 'rgba16.png', '.webp').startswith('.webp cannot store RGBA uint16')
    assert output_problem(tmp_path / 'rgb8.png', '.jpg') is None
    assert decoded == []  # PNG headers were enough
    assert output_problem(tmp_path / 'photo.jpg', '.bmp') is None and decoded == []
    assert output_problem(tmp_path / 'float.tif', '.png').startswith('.png cannot store RGB float32')
    assert output_problem(tmp_path / 'alpha.webp', '.jpg').startswith('.jpg cannot store RGBA uint8')
    assert decoded == ['float.tif', 'alpha.webp']
    # a palette PNG with a transparent entry: OpenCV gives it an alpha plane, which only decoding tells
    from PIL import Image
    palette = Image.new('P', (5, 3))
    palette.putpalette([255, 0, 0, 0, 255, 0])
    palette.save(tmp_path / 'palette.png', transparency=0)
    assert output_problem(tmp_path / 'palette.png', '.jpg').startswith('.jpg cannot store RGBA uint8')
    Image.new('RGB', (5, 3)).save(tmp_path / 'rgb_trns.png', transparency=(0, 0, 0))  # tRNS on RGB
    assert output_problem(tmp_path / 'rgb_trns.png', '.jpg').startswith('.jpg cannot store RGBA uint8')
    (tmp_path / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\n' + b'\0' * 30)
    assert output_problem(tmp_path / 'broken.png', '.jpg') is None
    assert output_problem(tmp_path / 'missing.tif', '.jpg') is None


def test_encoder_settings_are_fixed():
    """JPEG and WebP at quality 95, PNG at compression 3: the same samples always give the same bytes (what
    `basicsr serve`'s downloads are compared with), here against OpenCV called with those settings."""
    samples = quantise(smooth(48, 64, 3, seed=9), np.uint8)  # big enough for PNG's levels 3 and 4 to differ
    for ext, params in (('.jpg', [cv2.IMWRITE_JPEG_QUALITY, 95]), ('.JPEG', [cv2.IMWRITE_JPEG_QUALITY, 95]),
                        ('.webp', [cv2.IMWRITE_WEBP_QUALITY, 95]), ('.png', [cv2.IMWRITE_PNG_COMPRESSION, 3])):
        assert encode_image(samples, ext) == cv2.imencode(ext.lower(), samples, params)[1].tobytes(), ext


def _png_bytes(colour_type, depth, before=(), after=(), signature=b'\x89PNG\r\n\x1a\n'):
    """A 2 x 1 PNG of ``colour_type`` and ``depth`` with the chunks ``before`` and ``after`` (type, data) its image
    data, written here chunk by chunk (length, type, data, CRC)."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))

    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[colour_type]
    row = b'\0' + bytes(2 * channels * depth // 8)  # filter byte, then zero samples
    chunks = [(b'IHDR', struct.pack('>IIBBBBB', 2, 1, depth, colour_type, 0, 0, 0)), *before,
              (b'IDAT', zlib.compress(row)), *after, (b'IEND', b'')]
    return signature + b''.join(chunk(kind, data) for kind, data in chunks)


def test_png_layout_walks_the_chunks_before_the_image_data(tmp_path):
    """The layout from IHDR (colour type, depth), unless a tRNS chunk comes before the image data (past other
    chunks of any length); the walk stops at IDAT (a tRNS after it is out of place: libpng ignores it). A palette
    or a file that is not a PNG: None (decode it)."""
    from promptir_basicsr.utils.images import _png_layout
    text = (b'tEXt', b'Comment\0thirteen bytes of text')
    cases = {'rgb8': (_png_bytes(2, 8, before=[text]), (3, np.uint8)),
             'gray_alpha16': (_png_bytes(4, 16, before=[text, (b'pHYs', bytes(9))]), (4, np.uint16)),
             'gray16': (_png_bytes(0, 16), (1, np.uint16)), 'rgba8': (_png_bytes(6, 8), (4, np.uint8)),
             'trns_after_text': (_png_bytes(2, 8, before=[text, (b'tRNS', bytes(6))]), None),
             'trns_after_idat': (_png_bytes(2, 8, after=[(b'tRNS', bytes(6))]), (3, np.uint8)),
             'palette': (_png_bytes(3, 8, before=[(b'PLTE', bytes(6))]), None),
             'not_png': (_png_bytes(6, 8, signature=b'\x89PNX\r\n\x1a\n'), None),
             'short': (_png_bytes(6, 8)[:32], None)}
    for name, (data, expected) in cases.items():
        (tmp_path / f'{name}.png').write_bytes(data)
        assert _png_layout(tmp_path / f'{name}.png') == expected, name
    # the colour type of gray + alpha is read from PNGs only (byte 25 of another file means nothing)
    from promptir_basicsr.utils.images import _png_colour_type
    assert _png_colour_type(tmp_path / 'gray_alpha16.png') == 4 and _png_colour_type(tmp_path / 'not_png.png') is None
    (tmp_path / 'gif.png').write_bytes(b'GIF89a' + bytes(19) + b'\x04' + bytes(10))
    assert _png_colour_type(tmp_path / 'gif.png') is None
    # the layouts are what decoding gives (OpenCV reads these files as 8-bit BGR and 16-bit BGRA)
    for name in ('rgb8', 'gray_alpha16'):
        image = read_image(tmp_path / f'{name}.png')
        layout = (4 if image.alpha is not None else 1 if image.gray else 3), image.dtype
        assert layout == cases[name][1], name


def test_output_problem_of_decoded_gray_names_gray(tmp_path):
    """A decoded gray TIFF is one channel: any format stores 8-bit gray, and JPEG's refusal of 16-bit names gray."""
    write_tiff(tmp_path / 'g16.tif', np.full((3, 5), 300, np.uint16))
    write_tiff(tmp_path / 'g8.tif', np.full((3, 5), 30, np.uint8))
    assert output_problem(tmp_path / 'g16.tif', '.jpg') == ('.jpg cannot store gray uint16 samples without loss; '
                                                             'use --ext png (or .tif)')
    assert output_problem(tmp_path / 'g16.tif', '.png') is None and output_problem(tmp_path / 'g8.tif', '.bmp') is None


def test_unreadable_files_say_why(tmp_path):
    (tmp_path / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\n' + b'\0' * 40)
    with pytest.raises(ImageError, match='cannot be read as an image'):
        read_image(tmp_path / 'broken.png')
    write_tiff(tmp_path / 'double.tif', np.zeros((3, 4), np.float64))
    with pytest.raises(ImageError, match='unsupported sample type float64'):
        read_image(tmp_path / 'double.tif')


def test_to_samples_rounds_clamps_and_averages():
    """Hand values: 0.5 of 255 is 127.5 -> 128 (round half to even); a gray pixel is the mean of its clamped
    channels (gray + alpha written as BGRA); 16-bit scales by 65535; float32 is stored unclamped."""
    from promptir_basicsr.utils.images import ImageFile
    restored = np.array([[[0.5, 1.5, -0.2], [0.2, 0.4, 0.8]]], np.float32)
    like = ImageFile(rgb=None, gray=False, alpha=None, dtype=np.uint8)
    np.testing.assert_array_equal(to_samples(restored.copy(), like), [[[0, 255, 128], [204, 102, 51]]])
    gray = ImageFile(rgb=None, gray=True, alpha=np.array([[7, 9]], np.uint16), dtype=np.uint16)
    np.testing.assert_array_equal(to_samples(restored.copy(), gray),
                                  [[[32768] * 3 + [7], [30583] * 3 + [9]]])  # (0.5 + 1 + 0) / 3; 1.4 / 3
    gray8 = ImageFile(rgb=None, gray=True, alpha=None, dtype=np.uint8)  # one plane: (H, W), as OpenCV writes gray
    np.testing.assert_array_equal(to_samples(restored.copy(), gray8), [[128, 119]])  # 1.5 / 3 -> 127.5; 1.4 / 3
    floats = ImageFile(rgb=None, gray=False, alpha=None, dtype=np.float32)
    np.testing.assert_array_equal(to_samples(restored.copy(), floats), restored[..., ::-1])
