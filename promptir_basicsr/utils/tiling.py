"""Run a restoration network on a whole image: padding to a multiple, and optional overlapping tiles.

One helper for every place that restores a full image (validation, testing, ``basicsr restore``):

- :func:`pad_to_multiple` / :func:`padded_forward`: pad H and W up to a multiple (PromptIR and
  Restormer need multiples of 8), run, crop back.
- :func:`tiled_forward`: split a large image into ``tile_size`` tiles overlapping by
  ``tile_overlap`` pixels, run each alone (peak memory of one tile), and stitch. Each tile
  contributes only its centre: ``tile_overlap // 2`` pixels are dropped on every side that is not
  an image border, and pixels covered by several centres are averaged. A network whose receptive
  field radius is at most ``tile_overlap // 2`` (a stack of convolutions) therefore gives exactly
  its untiled output; networks with global operations (Restormer/PromptIR channel attention,
  PromptIR's pooled prompt weights, AirNet's pooled degradation code) see only their tile, so
  their tiled output is close to but not identical with the untiled one.
"""
import torch
import torch.nn.functional as F


def pad_to_multiple(x, multiple, mode='reflect'):
    """``x`` (N,C,H,W) padded at the bottom/right to multiples of ``multiple``; returns (padded, (H, W)).

    Reflect padding needs the pad to be smaller than the side; tiny images fall back to replicate.
    """
    h, w = x.shape[-2:]
    if multiple is None or multiple <= 1:
        return x, (h, w)
    pad_h = (multiple - h % multiple) % multiple
    pad_w = (multiple - w % multiple) % multiple
    if pad_h == 0 and pad_w == 0:
        return x, (h, w)
    if mode == 'reflect' and (pad_h >= h or pad_w >= w):
        mode = 'replicate'
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode), (h, w)


def padded_forward(fn, x, multiple=8, scale=1, mode='reflect'):
    """``fn(x)`` with ``x`` padded to a multiple of ``multiple``, the output cropped back."""
    padded, (h, w) = pad_to_multiple(x, multiple, mode)
    out = fn(padded)
    return out[..., :h * scale, :w * scale]


def _starts(length, tile, stride):
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


def tiled_forward(fn, x, tile_size, tile_overlap=32, multiple=8, scale=1, mode='reflect'):
    """``fn`` applied to ``x`` (N,C,H,W) tile by tile; see the module docstring.

    Args:
        fn: a function of a (N,C,h,w) tensor returning (N,C',h*scale,w*scale).
        tile_size (int): tile side in input pixels; rounded down to a multiple of ``multiple``.
            ``None``/0: no tiling (:func:`padded_forward`).
        tile_overlap (int): overlap between neighbouring tiles, in input pixels (< tile_size).
        multiple (int): the image is first padded to this multiple, and tiles are multiples of it.
        scale (int): output/input size ratio (1 for restoration).
    """
    if not tile_size:
        return padded_forward(fn, x, multiple, scale, mode)
    multiple = max(int(multiple or 1), 1)
    tile = max(multiple, (int(tile_size) // multiple) * multiple)
    overlap = int(tile_overlap or 0)
    if not 0 <= overlap < tile:
        raise ValueError(f'tile_overlap must be in [0, tile_size), got {tile_overlap} with tile_size {tile}')
    padded, (h, w) = pad_to_multiple(x, multiple, mode)
    big_h, big_w = padded.shape[-2:]
    tile_h, tile_w = min(tile, big_h), min(tile, big_w)
    stride_h, stride_w = max(tile_h - overlap, 1), max(tile_w - overlap, 1)
    margin = overlap // 2

    out = None
    weight = None
    rows, cols = _starts(big_h, tile_h, stride_h), _starts(big_w, tile_w, stride_w)
    for top in rows:
        for left in cols:
            patch = padded[..., top:top + tile_h, left:left + tile_w]
            result = fn(patch)
            if out is None:
                n, c = result.shape[:2]
                out = result.new_zeros((n, c, big_h * scale, big_w * scale))
                weight = result.new_zeros((1, 1, big_h * scale, big_w * scale))
            # the tile's centre: drop `margin` pixels on sides that are not image borders
            y0 = 0 if top == 0 else margin
            x0 = 0 if left == 0 else margin
            y1 = tile_h if top + tile_h >= big_h else tile_h - margin
            x1 = tile_w if left + tile_w >= big_w else tile_w - margin
            oy, ox = (top + y0) * scale, (left + x0) * scale
            out[..., oy:oy + (y1 - y0) * scale, ox:ox + (x1 - x0) * scale] += \
                result[..., y0 * scale:y1 * scale, x0 * scale:x1 * scale]
            weight[..., oy:oy + (y1 - y0) * scale, ox:ox + (x1 - x0) * scale] += 1
    out = out / weight
    return out[..., :h * scale, :w * scale]


@torch.no_grad()
def restore_image(net, x, tile_size=None, tile_overlap=32, multiple=8, scale=1):
    """Convenience for callers outside a model (e.g. ``basicsr restore``): ``net`` in eval mode."""
    return tiled_forward(net, x, tile_size, tile_overlap, multiple, scale)
