"""Run a restoration network on a whole image: padding to a multiple, and optional overlapping tiles.

The one helper for every place that restores a full image (the networks' own padding, validation,
``basicsr test``, ``basicsr restore``, ``basicsr prompts``):

- :func:`pad_to_multiple` / :func:`padded_forward`: pad H and W up to a multiple (PromptIR and
  Restormer need multiples of 8), run, crop back.
- :func:`tiled_forward`: split a large image into ``tile_size`` tiles overlapping by ``tile_overlap``
  pixels, run them ``tile_batch`` at a time (the peak memory of that many tiles, whatever the image
  size), and blend.
- :func:`fitted_tile` / :func:`computed_pixels`: the tile that covers a side with the fewest tiles and the
  least overlap, and how many pixels a tiled forward computes (the memory budget of ``basicsr restore``).

Batches. Every tile of a grid has the same size, so ``tile_batch`` tiles are stacked along the batch
axis and run in one call; for a network that treats the images of a batch independently (every
network here in eval mode) the result equals one tile at a time.

Blending. Along every side a tile shares with a neighbour, its weight is 0 for the outer
``tile_overlap // 4`` pixels (a tile's border sees zero padding instead of the image, so those
pixels are the least reliable), then rises linearly to 1 across the middle of the overlap, where
the neighbour's weight falls by the same amount: the weights of neighbouring tiles sum to 1, so
tiles fade into each other with no seam, and a constant image stays constant. The weights are a
product of a row and a column profile, so the normaliser is one row and one column vector, not a
second image-sized buffer.

Exactness. A network whose receptive-field radius is at most ``tile_overlap // 4`` pixels (a stack
of convolutions) sees, at every pixel with a non-zero weight, exactly what it sees untiled: its
tiled output equals the untiled one. Networks with global operations (Restormer/PromptIR channel
attention, PromptIR's pooled prompt weights, AirNet's pooled degradation code) see only their
tile, so their tiled output is close to, not identical with, the untiled one (README: measured).
"""
import torch
import torch.nn.functional as F


def pad_to_multiple(x, multiple, mode='reflect'):
    """``x`` (N, C, H, W) padded at the bottom/right so H and W are multiples of ``multiple``.

    Returns ``(padded, (H, W))``; when both already are multiples (or ``multiple`` <= 1), ``x``
    itself comes back and no padding op runs at all. Reflect padding (what Restormer's own
    validation uses) keeps the border statistics natural; it needs pad < size, so a tiny side (e.g.
    H=3 padded to 8) falls back to replicate padding instead of failing.
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


def _tile_sides(tile_size):
    """``tile_size``: one side for square tiles, or (height, width)."""
    if isinstance(tile_size, (tuple, list)):
        return int(tile_size[0]), int(tile_size[1])
    return int(tile_size), int(tile_size)


class TileGrid:
    """Where the tiles of an (H, W) image go, for ``tile_size`` / ``tile_overlap`` (input pixels).

    ``tile_size`` (one side, or (height, width)) is rounded down to a multiple of ``multiple``. Along a
    side longer than the tile, tiles start every ``tile - overlap`` pixels and the last one is moved back
    to end at the border (so every tile has the full size); a side no longer than the tile is one tile.
    """

    def __init__(self, height, width, tile_size, tile_overlap=32, multiple=8):
        multiple = max(int(multiple or 1), 1)
        tile_h, tile_w = (max(multiple, (side // multiple) * multiple) for side in _tile_sides(tile_size))
        overlap = int(tile_overlap or 0)
        if not 0 <= overlap < min(tile_h, tile_w):
            raise ValueError(f'tile_overlap must be in [0, tile_size), got {tile_overlap} with tile_size '
                             f'{min(tile_h, tile_w)}')
        self.tile_h, self.tile_w = min(tile_h, height), min(tile_w, width)
        self.overlap = overlap
        self.rows = self._starts(height, self.tile_h, overlap)
        self.cols = self._starts(width, self.tile_w, overlap)

    @staticmethod
    def _starts(length, tile, overlap):
        if length <= tile:
            return [0]
        starts = list(range(0, length - tile, max(tile - overlap, 1)))
        starts.append(length - tile)
        return starts

    def __len__(self):
        return len(self.rows) * len(self.cols)

    def computed_pixels(self):
        """Pixels the network computes for one image: every tile in full, overlaps counted each time."""
        return len(self) * self.tile_h * self.tile_w


def fitted_tile(length, max_tile, overlap, multiple=8):
    """The smallest tile side (a multiple of ``multiple``, at most ``max_tile``) that covers ``length`` with as
    few tiles as ``max_tile`` needs, so neighbouring tiles overlap by about ``overlap`` and no more.

    :class:`TileGrid` moves the last tile back to the border, so a tile of ``max_tile`` can overlap its
    neighbour by far more than ``overlap`` (4096 pixels in tiles of 512 overlapping 32: 9 tiles computing
    4608 pixels); the fitted tile spreads the tiles evenly instead (9 tiles of 488: 4392 pixels).
    ``length`` (a side of the padded image) at most ``max_tile``: one tile, ``length`` rounded up to ``multiple``.
    """
    multiple = max(int(multiple or 1), 1)
    max_tile = (int(max_tile) // multiple) * multiple
    if length <= max_tile:
        return -(-length // multiple) * multiple
    if max_tile <= overlap:
        raise ValueError(f'tile side {max_tile} must exceed the overlap {overlap}')
    count = -(-(length - overlap) // (max_tile - overlap))  # tiles of max_tile needed
    while True:
        side = -(-(length + (count - 1) * overlap) // count)  # count tiles overlapping exactly by `overlap`
        side = -(-side // multiple) * multiple
        if side <= max_tile:
            return side
        count += 1


def computed_pixels(height, width, tile_size, tile_overlap=32, multiple=8):
    """Pixels a forward computes to restore one (height, width) image: the padded image without tiles, else
    every tile of the grid (see :meth:`TileGrid.computed_pixels`)."""
    multiple = max(int(multiple or 1), 1)
    padded_h, padded_w = (-(-side // multiple) * multiple for side in (height, width))
    if not tile_size:
        return padded_h * padded_w
    return TileGrid(padded_h, padded_w, tile_size, tile_overlap, multiple).computed_pixels()


def _blend_profile(start, tile, length, overlap, scale):
    """1-D weights (tile * scale,) of a tile at ``start`` along a side of ``length`` (input pixels).

    1 everywhere, except at ends shared with a neighbour: 0 for the outer ``overlap // 4`` pixels,
    then a linear ramp over the middle of the overlap (see the module docstring).
    """
    n = tile * scale
    margin, ramp_len = (overlap // 4) * scale, (overlap - 2 * (overlap // 4)) * scale
    dist = torch.arange(n, dtype=torch.float32)
    ramp = ((dist - margin + 1) / (ramp_len + 1)).clamp(0, 1)  # by distance from the tile's end
    weight = torch.ones(n)
    if start > 0:
        weight = weight * ramp
    if start + tile < length:
        weight = weight * ramp.flip(0)
    return weight


def tiled_forward(fn, x, tile_size, tile_overlap=32, multiple=8, scale=1, mode='reflect', on_tile=None,
                  tile_batch=1):
    """``fn`` applied to ``x`` (N, C, H, W) tile by tile (``tile_batch`` tiles per call) and blended; see the
    module docstring.

    Args:
        fn: a function of a (N, C, h, w) tensor returning (N, C', h*scale, w*scale).
        tile_size (int or (int, int)): tile side in input pixels, or (height, width); rounded down to a
            multiple of ``multiple``. ``None``/0: no tiling (:func:`padded_forward`).
        tile_overlap (int): overlap between neighbouring tiles, in input pixels (< tile_size).
        multiple (int): the image is first padded to this multiple, and tiles are multiples of it.
        scale (int): output/input size ratio (1 for restoration).
        on_tile: called as ``on_tile(done, total)`` after each call of ``fn`` (progress bars), ``done``
            counting tiles.
        tile_batch (int): tiles stacked into one call of ``fn`` (N * tile_batch images).
    Returns:
        (N, C', H*scale, W*scale) float32 on ``x``'s device, whatever dtype ``fn`` computes in.
    """
    if not tile_size:
        out = padded_forward(fn, x, multiple, scale, mode)
        if on_tile:
            on_tile(1, 1)
        return out.float()
    padded, (h, w) = pad_to_multiple(x, max(int(multiple or 1), 1), mode)
    big_h, big_w = padded.shape[-2:]
    grid = TileGrid(big_h, big_w, tile_size, tile_overlap, multiple)
    th, tw = grid.tile_h, grid.tile_w
    row_weights = [_blend_profile(top, th, big_h, grid.overlap, scale).to(x.device) for top in grid.rows]
    col_weights = [_blend_profile(left, tw, big_w, grid.overlap, scale).to(x.device) for left in grid.cols]
    places = [(top, wy, left, wx) for top, wy in zip(grid.rows, row_weights)
              for left, wx in zip(grid.cols, col_weights)]
    batch = max(int(tile_batch or 1), 1)
    out = None
    for first in range(0, len(places), batch):
        chunk = places[first:first + batch]
        tiles = [padded[..., top:top + th, left:left + tw] for top, _, left, _ in chunk]
        results = fn(tiles[0] if len(tiles) == 1 else torch.cat(tiles)).float().split(x.shape[0])
        del tiles
        for (top, wy, left, wx), result in zip(chunk, results):
            if out is None:
                out = result.new_zeros((result.shape[0], result.shape[1], big_h * scale, big_w * scale))
            out[..., top * scale:(top + th) * scale, left * scale:(left + tw) * scale] += \
                result * wy[:, None] * wx[None, :]
        del results
        if on_tile:
            on_tile(first + len(chunk), len(places))
    # Each tile's weight is wy(row) * wx(col), so the total weight is (sum of rows) x (sum of cols).
    total_y = torch.zeros(big_h * scale, device=out.device)
    total_x = torch.zeros(big_w * scale, device=out.device)
    for top, wy in zip(grid.rows, row_weights):
        total_y[top * scale:(top + th) * scale] += wy
    for left, wx in zip(grid.cols, col_weights):
        total_x[left * scale:(left + tw) * scale] += wx
    out /= total_y[:, None]  # two in-place passes: no image-sized normaliser
    out /= total_x[None, :]
    return out[..., :h * scale, :w * scale]
