"""The size and sample layout of an image file from its first bytes, before anything decodes it.

An upload says how large it is in its header; a decoder believes it and allocates (a 30000 x 30000 PNG of a few
kilobytes asks for 2.7 GB). :func:`read_header` reads only the header of the formats ``basicsr restore`` reads
(PNG, JPEG, BMP, TIFF, WebP) and says what the file claims: width, height, channels, bits per sample, integer or
float samples. Pillow's lazy open does not do for this: it cannot identify float32 RGB TIFFs, which restore
reads. Only the standard library here.
"""
import struct
from dataclasses import dataclass

READ_BYTES = 1 << 16  # a JPEG's frame header may follow large EXIF blocks; the first 64 KiB hold it in practice


class HeaderError(ValueError):
    """Not a header of a format this reads (or a truncated one)."""


@dataclass
class Header:
    format: str  # 'PNG', 'JPEG', 'BMP', 'TIFF', 'WebP'
    width: int
    height: int
    channels: int  # samples per pixel as stored (a palette counts 3)
    bits: int  # bits per sample
    sample: str = 'uint'  # 'uint', 'int' or 'float'
    colour: str = ''  # 'CMYK' where the file says so (JPEG with 4 components, TIFF photometric 5)


def _png(data):
    if len(data) < 33 or data[12:16] != b'IHDR':
        raise HeaderError('truncated PNG header')
    width, height, depth, colour_type = struct.unpack('>IIBB', data[16:26])
    channels = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}.get(colour_type)
    if channels is None:
        raise HeaderError(f'PNG colour type {colour_type}')
    return Header('PNG', width, height, channels, 8 if colour_type == 3 else depth)


def _jpeg(data):
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise HeaderError('corrupt JPEG marker')
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            pos += 2
            continue
        length = struct.unpack('>H', data[pos + 2:pos + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # a start of frame
            if pos + 10 > len(data):
                break
            bits, height, width, components = struct.unpack('>BHHB', data[pos + 4:pos + 10])
            return Header('JPEG', width, height, components, bits, colour='CMYK' if components == 4 else '')
        pos += 2 + length
    raise HeaderError('no JPEG frame header in the first 64 KiB')


def _bmp(data):
    if len(data) < 30:
        raise HeaderError('truncated BMP header')
    size = struct.unpack('<I', data[14:18])[0]
    if size == 12:  # OS/2 BITMAPCOREHEADER
        width, height, _, bpp = struct.unpack('<HHHH', data[18:26])
    else:
        width, height, _, bpp = struct.unpack('<iiHH', data[18:30])
    return Header('BMP', abs(width), abs(height), 4 if bpp == 32 else 3, 8)


def _tiff(data):
    order = '<' if data[:2] == b'II' else '>'
    if len(data) < 8:
        raise HeaderError('truncated TIFF header')
    offset = struct.unpack(order + 'I', data[4:8])[0]
    if offset + 2 > len(data):
        raise HeaderError('the TIFF directory is beyond the first 64 KiB')
    count = struct.unpack(order + 'H', data[offset:offset + 2])[0]
    tags = {}
    for i in range(count):
        entry = data[offset + 2 + 12 * i:offset + 14 + 12 * i]
        if len(entry) < 12:
            break
        tag, kind, number = struct.unpack(order + 'HHI', entry[:8])
        if kind not in (3, 4):  # SHORT, LONG: all the tags read here
            continue
        size = 2 if kind == 3 else 4
        at = offset + 2 + 12 * i + 8  # values of up to 4 bytes are in the entry, longer ones at an offset
        if size * number > 4:
            at = struct.unpack(order + 'I', entry[8:12])[0]
        if at + size <= len(data):  # the first value (every sample of the images read here shares it)
            tags[tag] = struct.unpack(order + ('H' if kind == 3 else 'I'), data[at:at + size])[0]
    if 256 not in tags or 257 not in tags:
        raise HeaderError('the TIFF directory has no width or height')
    sample = {1: 'uint', 2: 'int', 3: 'float'}.get(tags.get(339, 1), 'other')
    return Header('TIFF', tags[256], tags[257], tags.get(277, 1), tags.get(258, 1), sample,
                  colour='CMYK' if tags.get(262) == 5 else '')


def _webp(data):
    kind = data[12:16]
    if kind == b'VP8 ' and len(data) >= 30:
        width, height = struct.unpack('<HH', data[26:30])
        return Header('WebP', width & 0x3FFF, height & 0x3FFF, 3, 8)
    if kind == b'VP8L' and len(data) >= 25:
        bits = struct.unpack('<I', data[21:25])[0]
        return Header('WebP', (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, 4 if bits >> 28 & 1 else 3, 8)
    if kind == b'VP8X' and len(data) >= 30:
        alpha = data[20] & 0x10
        width = int.from_bytes(data[24:27], 'little') + 1
        height = int.from_bytes(data[27:30], 'little') + 1
        return Header('WebP', width, height, 4 if alpha else 3, 8)
    raise HeaderError('truncated or unknown WebP header')


def read_header(path):
    """The :class:`Header` of the image file ``path``; :class:`HeaderError` when it is none of PNG, JPEG, BMP,
    TIFF or WebP (or its header is cut short)."""
    with open(path, 'rb') as f:
        data = f.read(READ_BYTES)
    if data.startswith(b'\x89PNG\r\n\x1a\n'):
        return _png(data)
    if data.startswith(b'\xff\xd8'):
        return _jpeg(data)
    if data.startswith(b'BM'):
        return _bmp(data)
    if data[:4] in (b'II*\x00', b'MM\x00*'):
        return _tiff(data)
    if data[:4] == b'RIFF' and data[8:12] == b'WEBP':
        return _webp(data)
    raise HeaderError('not a PNG, JPEG, BMP, TIFF or WebP file')
