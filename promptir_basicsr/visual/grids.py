"""Labelled comparison pictures, drawn with OpenCV at the images' own pixels (no plotting library).

- :func:`side_by_side`: images in a row, each with a label above (``basicsr restore --compare``).
- :class:`ValidationGrid`: at each validation, one grid per set: degraded | restored | target for the
  first few images, PSNR under each (``visualization/<set>/grid_<iter>.png`` and tensorboard).

Pictures are uint8 RGB arrays (H, W, 3); :func:`save_png` writes one atomically.
"""
import os.path as osp

import cv2
import numpy as np
import torch

from ..metrics.protocol_metric import calculate_psnr_protocol
from ..utils.files import atomic_write_bytes

FONT = cv2.FONT_HERSHEY_SIMPLEX
PAPER, INK, GAP_COLOUR = 255, 0, 160  # label bars: black on white; grey gaps between cells
GAP = 4


def to_uint8_rgb(img):
    """A (C, H, W) tensor or an (H, W[, C]) array, float in [0, 1] or uint8/uint16 -> (H, W, 3) uint8."""
    if torch.is_tensor(img):
        img = img.detach().float().cpu().clamp(0, 1).permute(1, 2, 0).numpy()
    img = np.asarray(img)
    if img.dtype == np.uint16:
        img = img.astype(np.float32) / 65535.
    if img.dtype != np.uint8:
        img = (np.clip(img, 0, 1) * 255.).round().astype(np.uint8)
    if img.ndim == 2:
        img = img[..., None]
    return np.ascontiguousarray(np.repeat(img, 3, axis=2) if img.shape[2] == 1 else img[..., :3])


def fit(img, size):
    """Scale ``img`` so its longer side is at most ``size``: smaller images are enlarged by a whole
    factor with nearest neighbours (pixels stay visible), larger ones reduced by area averaging."""
    if not size:
        return img
    longest = max(img.shape[:2])
    if longest * 2 <= size:
        factor = size // longest
        return cv2.resize(img, None, fx=factor, fy=factor, interpolation=cv2.INTER_NEAREST)
    if longest > size:
        scale = size / longest
        new = (max(1, round(img.shape[1] * scale)), max(1, round(img.shape[0] * scale)))
        return cv2.resize(img, new, interpolation=cv2.INTER_AREA)
    return img


def _font_scale(width):
    return float(np.clip(width / 350., 0.4, 4.0))


def text_bar(text, width, scale=None, height=None):
    """A white bar ``width`` pixels wide with ``text`` centred in black, shrunk until it fits; at least ``height``
    pixels high (bars above images side by side share one height, so the images stay level)."""
    scale = scale or _font_scale(width)
    thickness = max(1, round(scale * 1.5))
    (tw, th), base = cv2.getTextSize(text, FONT, scale, thickness)
    while tw > width - 4 and scale > 0.3:
        scale *= 0.9
        thickness = max(1, round(scale * 1.5))
        (tw, th), base = cv2.getTextSize(text, FONT, scale, thickness)
    height = max(th + base + max(6, round(th * 0.6)), height or 0)
    bar = np.full((height, width, 3), PAPER, np.uint8)
    origin = (max(2, (width - tw) // 2), (height + th) // 2)
    cv2.putText(bar, text, origin, FONT, scale, (INK, INK, INK), thickness, cv2.LINE_AA)
    return bar


def _pad(img, height, width):
    out = np.full((height, width, 3), GAP_COLOUR, np.uint8)
    out[:img.shape[0], :img.shape[1]] = img
    return out


def _stack(parts, axis):
    """Concatenate pictures along ``axis`` (0: rows, 1: columns) with grey gaps, padding the other side."""
    size = max(p.shape[1 - axis] for p in parts)
    padded = [_pad(p, *((p.shape[0], size) if axis == 0 else (size, p.shape[1]))) for p in parts]
    gap_shape = (GAP, size, 3) if axis == 0 else (size, GAP, 3)
    gap = np.full(gap_shape, GAP_COLOUR, np.uint8)
    out = [padded[0]]
    for part in padded[1:]:
        out += [gap, part]
    return np.concatenate(out, axis=axis)


def labelled(img, label=None, caption=None, scale=None, label_height=None):
    """``img`` with an optional label bar above (at least ``label_height`` high) and caption bar below."""
    parts = ([text_bar(label, img.shape[1], scale, label_height)] if label else []) + [img]
    parts += [text_bar(caption, img.shape[1], scale)] if caption else []
    return np.concatenate(parts, axis=0)


CHECKER_CELL, CHECKER_LIGHT, CHECKER_DARK = 8, 204, 153  # how image editors show transparent pixels


def over_checkerboard(img, alpha):
    """``img`` (H, W, 3) uint8 composited over a grey checkerboard of :data:`CHECKER_CELL` pixels by ``alpha``
    (H, W): uint8, uint16, or float in [0, 1]."""
    alpha = np.asarray(alpha)
    scale = {np.uint8: 255., np.uint16: 65535.}.get(alpha.dtype.type, 1.)
    weight = np.clip(alpha.astype(np.float32) / scale, 0, 1)[..., None]
    rows, cols = np.indices(img.shape[:2]) // CHECKER_CELL
    board = np.where((rows + cols) % 2 == 0, CHECKER_LIGHT, CHECKER_DARK).astype(np.float32)[..., None]
    return (img * weight + board * (1 - weight)).round().astype(np.uint8)


def side_by_side(images, labels, captions=None, title=None, alpha=None):
    """Images (any of :func:`to_uint8_rgb`'s inputs) in one row, each labelled; one picture. ``alpha``: the
    transparency the images share (an RGBA input's, kept in its restored image), shown over a checkerboard."""
    images = [to_uint8_rgb(img) for img in images]
    if alpha is not None:
        images = [over_checkerboard(img, alpha) for img in images]
    scale = _font_scale(min(img.shape[1] for img in images))
    captions = captions or [None] * len(images)
    tallest = max(text_bar(lab, img.shape[1], scale).shape[0] for img, lab in zip(images, labels))
    row = _stack([labelled(img, lab, cap, scale, tallest) for img, lab, cap in zip(images, labels, captions)], axis=1)
    return _stack([text_bar(title, row.shape[1], scale * 1.2), row], axis=0) if title else row


def save_png(picture, path):
    """Write an RGB picture as PNG, atomically."""
    # zlib level 6: OpenCV's default writes these grids 2.5x larger
    ok, buffer = cv2.imencode('.png', cv2.cvtColor(picture, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 6])
    if not ok:
        raise RuntimeError(f'could not encode {path}')
    atomic_write_bytes(path, buffer.tobytes())


def psnr(result, target):
    """The paper protocol's PSNR (float RGB, clamped, data range 1) of two (C, H, W) tensors."""
    def rgb(t):
        return t.detach().float().cpu().clamp(0, 1).permute(1, 2, 0).numpy()

    return calculate_psnr_protocol(rgb(result), rgb(target))


class ValidationGrid:
    """Collects the first ``num_images`` images of a validation set and draws their grid.

    Rows are images; columns degraded | restored | target (no target column for sets without
    one), each cell scaled to fit ``cell_size`` pixels, PSNR against the target under the degraded
    and restored cells, the image name under the target. Options (``val:``): ``grid_images``
    (default 4; 0: no grid), ``grid_size`` (cell side, default 256).
    """

    def __init__(self, num_images=4, cell_size=256):
        self.num_images = int(num_images or 0)
        self.cell_size = int(cell_size or 0)
        self.rows = []

    @classmethod
    def from_options(cls, val_opt):
        return cls(val_opt.get('grid_images', 4), val_opt.get('grid_size', 256))

    def add(self, name, lq, output, gt=None):
        """One image (tensors (C, H, W) in [0, 1]); ignored once the grid is full."""
        if len(self.rows) >= self.num_images:
            return
        cells = [(fit(to_uint8_rgb(lq), self.cell_size), None), (fit(to_uint8_rgb(output), self.cell_size), None)]
        if gt is not None:
            lq_caption = f'{psnr(lq, gt):.2f} dB' if lq.shape == gt.shape else '-'
            cells = [(cells[0][0], lq_caption), (cells[1][0], f'{psnr(output, gt):.2f} dB'),
                     (fit(to_uint8_rgb(gt), self.cell_size), name)]
        else:
            cells[1] = (cells[1][0], name)
        self.rows.append(cells)

    def render(self, title):
        """The grid as one uint8 RGB picture, or None when no image was added."""
        if not self.rows:
            return None
        columns = ['degraded', 'restored', 'target'][:max(len(r) for r in self.rows)]
        width = max(cell.shape[1] for row in self.rows for cell, _ in row)
        scale = _font_scale(width)
        header = _stack([text_bar(label, width, scale) for label in columns], axis=1)
        body = [_stack([labelled(_pad(cell, cell.shape[0], width), None, caption or ' ', scale)
                        for cell, caption in row], axis=1) for row in self.rows]
        grid = _stack([header] + body, axis=0)
        return _stack([text_bar(title, grid.shape[1], scale * 1.2), grid], axis=0)

    def write(self, folder, set_name, current_iter, tb_logger=None):
        """Save ``<folder>/<set_name>/grid_<iter>.png`` and add it to tensorboard (``grids/<set>``).

        Returns the path, or None when there was nothing to draw.
        """
        picture = self.render(f'{set_name}, iteration {current_iter}' if isinstance(current_iter, int) else set_name)
        if picture is None:
            return None
        path = osp.join(folder, set_name, f'grid_{current_iter}.png')
        save_png(picture, path)
        if tb_logger is not None and isinstance(current_iter, int):
            tb_logger.add_image(f'grids/{set_name}', picture, current_iter, dataformats='HWC')
        return path
