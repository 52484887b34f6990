"""The one tiling and padding helper (utils/tiling.py): exactness, blending, geometry, padding."""
import pytest
import torch
from torch import nn

from promptir_basicsr.utils import tiling
from promptir_basicsr.utils.tiling import TileGrid, pad_to_multiple, tiled_forward


def _conv_net():
    torch.manual_seed(0)
    # receptive field radius 3 (three 3x3 convs)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 6, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(6, 3, 3, padding=1)).eval()


@pytest.mark.parametrize('size', [(40, 56), (37, 50)])
def test_tiled_equals_untiled_for_conv_net(size):
    """Radius 3 <= overlap // 4: tiled equals untiled, with several rows/columns and a last tile moved
    back to the border (guards the zero-weight margin, the tile placement and the normalisation)."""
    net = _conv_net()
    x = torch.rand(1, 3, *size)
    with torch.no_grad():
        whole = tiled_forward(net, x, tile_size=None)
        tiled = tiled_forward(net, x, tile_size=16, tile_overlap=12)
    assert tiled.shape == x.shape
    torch.testing.assert_close(tiled, whole, rtol=0, atol=1e-6)


def test_overlap_too_small_for_the_receptive_field_differs():
    """overlap 8 -> margin 2 < radius 3: tile borders leak in (pins the margin at overlap // 4)."""
    net = _conv_net()
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(tiled_forward(net, x, 16, 8), tiled_forward(net, x, None), atol=1e-4)


@pytest.mark.parametrize('scale', [1, 2])
def test_constant_image_stays_constant(scale):
    """Whatever a tile's content, the weights of overlapping tiles sum to 1: a constant image comes back
    constant (no seams, no dark or bright bands at overlaps), also at output scale 2."""
    x = torch.full((1, 3, 45, 61), 0.3)

    def global_op(t):  # depends on the whole tile, like PromptIR's pooled prompt weights
        out = t * (1 + t.mean())
        return out.repeat_interleave(scale, -1).repeat_interleave(scale, -2)

    out = tiled_forward(global_op, x, tile_size=16, tile_overlap=8, scale=scale)
    assert out.shape == (1, 3, 45 * scale, 61 * scale)
    torch.testing.assert_close(out, torch.full_like(out, 0.3 * 1.3), rtol=0, atol=1e-6)


def test_overlaps_are_blended_smoothly():
    """Each tile returns its own mean (a strongly tile-dependent network) on a horizontal gradient: a hard
    cut between tiles would jump by the full difference of the tile means; the blend spreads it over the
    overlap, so neighbouring pixels differ by a fraction of it."""
    x = torch.linspace(0, 1, 96).expand(1, 3, 24, 96).contiguous()
    out = tiled_forward(lambda t: t.mean().expand_as(t), x, tile_size=32, tile_overlap=16)
    grid = TileGrid(24, 96, 32, 16)
    means = torch.stack([x[..., left:left + 32].mean() for left in grid.cols])
    jump_between_tiles = (means[1:] - means[:-1]).abs().min()
    step_between_pixels = (out[..., 1:] - out[..., :-1]).abs().max()
    assert step_between_pixels < 0.2 * jump_between_tiles
    assert torch.all(out[..., 1:] >= out[..., :-1] - 1e-6)  # the blend of increasing means increases


def test_progress_callback_and_grid_geometry():
    """on_tile counts every tile once; tiles are multiples of 8, cover the image and end at its border."""
    calls = []
    tiled_forward(lambda t: t, torch.rand(1, 3, 70, 100), tile_size=35, tile_overlap=8,
                  on_tile=lambda done, total: calls.append((done, total)))
    grid = TileGrid(72, 104, 35, 8)  # the image padded to multiples of 8
    assert (grid.tile_h, grid.tile_w) == (32, 32)  # 35 rounded down to a multiple of 8
    assert grid.rows == [0, 24, 40] and grid.cols == [0, 24, 48, 72]
    assert calls == [(i, 12) for i in range(1, 13)] and len(grid) == 12
    assert TileGrid(20, 30, 64, 16).rows == [0] and TileGrid(20, 30, 64, 16).tile_w == 30  # one tile per short side
    with pytest.raises(ValueError):
        tiled_forward(lambda t: t, torch.rand(1, 3, 32, 32), 16, 16)


def test_pad_to_multiple_sizes_and_no_op():
    x = torch.rand(1, 3, 37, 53)
    padded, size = pad_to_multiple(x, 8)
    assert padded.shape[-2:] == (40, 56) and size == (37, 53)
    torch.testing.assert_close(padded[..., :37, :53], x)
    assert padded[0, 0, 37, 0] == x[0, 0, 35, 0]  # reflect, not zeros
    already = torch.rand(1, 3, 16, 24)
    same, _ = pad_to_multiple(already, 8)
    assert same is already
    tiny, _ = pad_to_multiple(torch.rand(1, 3, 3, 8), 8)  # reflect impossible (pad 5 >= 3): replicate
    assert tiny.shape[-2:] == (8, 8)


def test_no_padding_op_when_already_multiple(monkeypatch):
    """The networks pad through this helper on every forward: no op at all for multiples of 8 (the very tensor comes
    back, with its size), nor for a multiple of None or 1."""
    def forbidden(*args, **kwargs):
        raise AssertionError('F.pad called for an input that needs no padding')

    monkeypatch.setattr(tiling.F, 'pad', forbidden)
    x = torch.rand(1, 3, 32, 48)
    for multiple in (8, 16, None, 1, 0):
        padded, size = pad_to_multiple(x, multiple)
        assert padded is x and size == (32, 48), multiple
    odd = torch.rand(1, 3, 7, 5)
    assert pad_to_multiple(odd, None) == (odd, (7, 5)) and pad_to_multiple(odd, 1)[0] is odd


def test_pad_to_two_and_replicate_at_the_width_edge():
    """Multiple 2 pads odd sides by one (reflect: the row before the last); a width padded by as much as it has
    pixels (3 -> 6? no: 3 -> 8 needs 5 >= 3) replicates; so does a width of 4 padded by 4."""
    x = torch.arange(15.).view(1, 1, 3, 5)
    two, size = pad_to_multiple(x, 2)
    assert size == (3, 5) and two.shape[-2:] == (4, 6)
    assert torch.equal(two[0, 0, 3, :5], x[0, 0, 1]) and torch.equal(two[0, 0, :3, 5], x[0, 0, :, 3])
    wide, _ = pad_to_multiple(torch.arange(32.).view(1, 1, 8, 4), 8)  # pad_w 4 == w 4: replicate
    assert torch.equal(wide[0, 0, :, 7], torch.arange(3., 32., 4.))


def test_blend_profile_by_hand():
    """The weights along one side, computed by hand: margin overlap // 4, then a ramp of overlap - 2 * margin steps
    (k / (ramp + 1)), at shared ends only; scale 2 stretches margin and ramp."""
    profile = tiling._blend_profile
    middle = profile(8, 16, 40, 8, 1)  # margin 2, ramp 4 (steps of 1/5) at both ends
    expected = [0, 0, .2, .4, .6, .8, 1, 1, 1, 1, .8, .6, .4, .2, 0, 0]
    torch.testing.assert_close(middle, torch.tensor(expected), rtol=0, atol=1e-6)
    assert middle.dtype == torch.float32
    first = profile(0, 16, 40, 10, 1)  # margin 2, ramp 6 (steps of 1/7) at the end only
    torch.testing.assert_close(first, torch.tensor([1.] * 8 + [6 / 7, 5 / 7, 4 / 7, 3 / 7, 2 / 7, 1 / 7, 0, 0]))
    last = profile(1, 15, 16, 10, 1)  # starts at 1 (shares its start), ends at the border
    torch.testing.assert_close(last, torch.tensor([0, 0] + [k / 7 for k in range(1, 7)] + [1.] * 7))
    scaled = profile(0, 8, 24, 8, 2)  # n 16, margin 4, ramp 8 (steps of 1/9)
    torch.testing.assert_close(scaled, torch.tensor([1.] * 4 + [k / 9 for k in range(8, 0, -1)] + [0.] * 4))
    alone = profile(0, 16, 16, 8, 1)  # one tile: no neighbour, weight 1 everywhere
    torch.testing.assert_close(alone, torch.ones(16))


def test_defaults_and_grid_options():
    """tile_overlap defaults to 32 (TileGrid and tiled_forward alike); multiple None or 0 means 1; an overlap of
    None means 0; 0 is allowed; tiles one pixel apart when the overlap is the tile minus one."""
    grid = TileGrid(200, 100, 64, multiple=8)
    assert grid.overlap == 32 and grid.rows == [0, 32, 64, 96, 128, 136] and grid.cols == [0, 32, 36]
    assert (TileGrid(30, 30, 15, 0, multiple=None).tile_h, TileGrid(30, 30, 15, 0, multiple=0).tile_w) == (15, 15)
    assert TileGrid(30, 30, 15, 0, multiple=1).rows == [0, 15]
    assert TileGrid(30, 30, 16, None).rows == [0, 14] and TileGrid(30, 30, 16, None).overlap == 0
    assert TileGrid(12, 12, 8, 7, multiple=1).rows == [0, 1, 2, 3, 4]
    x = torch.rand(1, 3, 70, 90, generator=torch.Generator().manual_seed(1))
    per_tile_mean = (lambda t: t * 0 + t.mean())
    torch.testing.assert_close(tiled_forward(per_tile_mean, x, 48), tiled_forward(per_tile_mean, x, 48, 32),
                               rtol=0, atol=0)
    assert not torch.allclose(tiled_forward(per_tile_mean, x, 48), tiled_forward(per_tile_mean, x, 48, 33))


def test_multiple_and_mode_reach_the_tiles():
    """The network sees tiles cut to the multiple asked for (4: 12 x 12 tiles, not 8 x 8) of an image padded to it
    (multiple None: not padded), padded with the mode asked for (replicate differs from reflect in the mean)."""
    seen = []

    def record(t):
        seen.append(tuple(t.shape[-2:]))
        return t + t.mean()

    x = torch.arange(21.).view(1, 1, 3, 7) / 21
    tiled_forward(record, x, 12, 4, multiple=4)
    assert seen == [(4, 8)]  # the whole (3 x 7 -> 4 x 8) image is one tile of at most 12
    seen.clear()
    tiled_forward(record, torch.rand(1, 1, 26, 13), 12, 4, multiple=4)
    assert set(seen) == {(12, 12)} and len(seen) == 3 * 2
    seen.clear()
    tiled_forward(record, torch.rand(1, 1, 7, 5), 4, 1, multiple=None)
    assert seen[0] == (4, 4) and len(seen) == 2 * 2  # 7 x 5 unpadded: rows 0, 3; cols 0, 1
    seen.clear()
    tiled_forward(record, torch.rand(1, 1, 7, 5), None, multiple=None)
    assert seen == [(7, 5)]
    y = torch.arange(117.).view(1, 1, 9, 13) / 117  # padded by 7 and 3: reflect is possible
    for tile in (None, 16):
        replicate = tiled_forward(lambda t: t + t.mean(), y, tile, 8, multiple=8, mode='replicate')
        padded = torch.nn.functional.pad(y, (0, 3, 0, 7), mode='replicate')
        torch.testing.assert_close(replicate, y + padded.mean(), rtol=0, atol=1e-6)
        reflect = tiled_forward(lambda t: t + t.mean(), y, tile, 8, multiple=8)
        assert not torch.allclose(reflect, replicate, atol=1e-4)


def test_untiled_run_reports_one_tile_and_keeps_the_defaults():
    """Without tiles: on_tile(1, 1) once; padded_forward pads to 8 by reflection by default, output scale 1."""
    calls = []
    x = torch.rand(1, 3, 9, 10)
    tiled_forward(lambda t: t, x, 0, on_tile=lambda *args: calls.append(args))
    assert calls == [(1, 1)]
    seen = []
    out = tiling.padded_forward(lambda t: seen.append(tuple(t.shape[-2:])) or t * 2, x)
    assert seen == [(16, 16)] and torch.equal(out, 2 * x)
    doubled = tiling.padded_forward(lambda t: t.repeat_interleave(2, -1).repeat_interleave(2, -2), x, scale=2)
    assert doubled.shape[-2:] == (18, 20)
    mean = tiling.padded_forward(lambda t: t * 0 + t.mean(), x, mode='replicate')
    torch.testing.assert_close(mean, torch.full_like(x, float(torch.nn.functional.pad(x, (0, 6, 0, 7),
                                                                                    mode='replicate').mean())))


def test_pad_equal_to_the_side_replicates():
    """Guards the reflect/replicate switch at its edge: reflect needs pad < side, so H = 4 padded by 4
    (to 8) must replicate, while H = 5 padded by 3 reflects (found by mutation testing)."""
    x = torch.arange(16.).view(1, 1, 4, 4)
    padded, _ = pad_to_multiple(x, 8)
    assert padded.shape[-2:] == (8, 8) and torch.equal(padded[0, 0, 7, :4], x[0, 0, 3])
    five, _ = pad_to_multiple(torch.arange(40.).view(1, 1, 5, 8), 8)
    assert torch.equal(five[0, 0, 5], torch.arange(24., 32.))  # row 5 reflects row 3


def test_tiles_rounded_to_the_multiple_and_the_weights_on_the_image_device():
    """A 20 px tile with multiple 8 is cut as 16 px tiles; an image on another device (torch's 'meta' device here,
    which mixes with no other) is tiled with weights and normalisers on that device."""
    seen = []
    tiled_forward(lambda t: seen.append(tuple(t.shape[-2:])) or t, torch.rand(1, 1, 40, 40), 20, 4, multiple=8)
    assert set(seen) == {(16, 16)}
    out = tiled_forward(lambda t: t * 2, torch.empty(1, 3, 37, 45, device='meta'), 16, 4)
    assert out.device.type == 'meta' and out.shape == (1, 3, 37, 45)


def test_reflect_needs_a_pad_shorter_than_the_side_in_each_direction():
    """H = 4 padded by 4 replicates even though the width (13, padded by 3) could reflect."""
    x = torch.arange(52.).view(1, 1, 4, 13)
    padded, _ = pad_to_multiple(x, 8)
    assert torch.equal(padded[0, 0, 4:, :13], x[0, 0, 3].expand(4, 13))  # the last row repeated
    assert torch.equal(padded[0, 0, :4, 13:], x[0, 0, :, 12:13].expand(4, 3))  # replicate on both sides alike


@pytest.mark.parametrize('batch', [2, 5, 12])
def test_batches_of_tiles_equal_one_at_a_time(batch):
    """Tiles stacked into one call give the image that one tile per call gives (every tile at its place and
    weight; a last, partial batch included), with ``fn`` called ceil(tiles / batch) times on batches of that
    size; progress counts tiles. Two images in the input batch stay apart."""
    net = _conv_net()
    x = torch.rand(2, 3, 45, 61)
    calls, progress = [], []

    def counted(t):
        calls.append(t.shape[0])
        return net(t) * (1 + t.mean(dim=(1, 2, 3), keepdim=True))  # depends on each tile as a whole

    with torch.no_grad():
        alone = tiled_forward(counted, x, tile_size=16, tile_overlap=8)
        tiles = len(calls)
        calls.clear()
        batched = tiled_forward(counted, x, tile_size=16, tile_overlap=8, tile_batch=batch,
                                on_tile=lambda done, total: progress.append((done, total)))
    assert tiles == len(TileGrid(48, 64, 16, 8)) == 35
    assert calls == [2 * min(batch, tiles - i) for i in range(0, tiles, batch)]
    assert progress[-1] == (tiles, tiles) and [d for d, _ in progress] == sorted({min(i + batch, tiles)
                                                                                   for i in range(0, tiles, batch)})
    torch.testing.assert_close(batched, alone, rtol=0, atol=1e-5)
    first = tiled_forward(counted, x[:1], tile_size=16, tile_overlap=8, tile_batch=batch)
    torch.testing.assert_close(batched[:1], first, rtol=0, atol=1e-5)


def test_fitted_tiles_cover_with_the_fewest_tiles_and_least_overlap():
    """4096 px in tiles of at most 512 overlapping 32: 9 tiles are needed; the fitted side 488 (the smallest
    multiple of 8 with 9 * 488 - 8 * 32 >= 4096) computes 4392 px per row instead of 9 * 512 = 4608."""
    assert tiling.fitted_tile(4096, 512, 32) == 488
    assert len(TileGrid(4096, 4096, 488, 32).rows) == len(TileGrid(4096, 4096, 512, 32).rows) == 9
    assert tiling.fitted_tile(4096, 544, 32) == 544  # 8 tiles of 544 fit exactly: 8 * 544 - 7 * 32 == 4096
    for length, most in [(1000, 700), (777, 100), (4096, 256), (300, 64), (64, 64), (100, 512)]:
        side = tiling.fitted_tile(length, most, 16)
        grid = TileGrid(length, length, side, 16)
        fewest = len(TileGrid(length, length, most, 16).rows)
        assert side <= max(most, 104) and side % 8 == 0 and len(grid.rows) == fewest, (length, most)
        if len(grid.rows) > 1:  # one multiple of 8 less would need another tile
            assert (side - 8 - 16) * (len(grid.rows) - 1) + side - 8 < length
    assert tiling.computed_pixels(4096, 4096, 488, 32) == (9 * 488) ** 2
    assert tiling.computed_pixels(37, 50, None) == 40 * 56  # untiled: the padded image
    assert TileGrid(40, 64, (16, 32), 8).tile_h == 16 and TileGrid(40, 64, (16, 32), 8).tile_w == 32


def test_fitted_tile_and_computed_pixels_at_their_edges():
    """Cases counted by hand that the covering test above does not reach: a maximum that is no multiple of 8, one
    tile whose side is not above the overlap, no multiple, the overlap equal to the maximum; the pixels of grids
    with the default overlap, a tile rounded down to the multiple, a multiple other than 8."""
    # 500 is rounded down to 496 first: 498 px need 2 tiles, each ceil((498 + 32) / 2) = 265 -> 272
    assert tiling.fitted_tile(498, 500, 32) == 272
    assert tiling.fitted_tile(16, 16, 32) == 16  # one tile of the (padded) length, whatever the overlap
    assert tiling.fitted_tile(13, 512, 4, multiple=None) == 13 and tiling.fitted_tile(13, 512, 4, multiple=1) == 13
    assert type(tiling.fitted_tile(4096, 512, 32)) is int  # a side slices tensors
    with pytest.raises(ValueError, match='tile side 32 must exceed the overlap 32'):
        tiling.fitted_tile(100, 32, 32)
    # the default overlap 32: 128 rows in tiles of 64 start at 0, 32 and 64; the 64 columns are one tile
    assert tiling.computed_pixels(128, 64, 64) == 3 * 64 * 64
    assert tiling.computed_pixels(13, 7, 0, multiple=None) == 13 * 7 == tiling.computed_pixels(13, 7, 0, multiple=1)
    # 40 x 8 in tiles of 20 -> 16 (a multiple of 8) overlapping 4: rows start at 0, 12 and 24
    assert tiling.computed_pixels(40, 8, 20, 4, 8) == 3 * 16 * 8
    # with multiple 4 the tile stays 20: rows start at 0, 16 and 20
    assert tiling.computed_pixels(40, 8, 20, 4, 4) == 3 * 20 * 8


def test_tiles_run_one_per_call_unless_batched():
    """tile_batch None or 0: one tile per call (9 tiles of a 32 x 32 image in tiles of 16 overlapping 8)."""
    x = torch.rand(1, 3, 32, 32)
    for batch, expected in ((None, [1] * 9), (0, [1] * 9), (4, [4, 4, 1])):
        calls = []
        tiled_forward(lambda t: calls.append(t.shape[0]) or t, x, tile_size=16, tile_overlap=8, tile_batch=batch)
        assert calls == expected, batch
