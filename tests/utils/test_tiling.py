import pytest
import torch
from torch import nn

from promptir_basicsr.utils.tiling import pad_to_multiple, tiled_forward


def _conv_net():
    torch.manual_seed(0)
    # receptive field radius 3 (three 3x3 convs)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 6, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(6, 3, 3, padding=1)).eval()


@pytest.mark.parametrize('size', [(40, 56), (37, 50)])
def test_tiled_equals_untiled_for_conv_net(size):
    net = _conv_net()
    x = torch.rand(1, 3, *size)
    with torch.no_grad():
        whole = tiled_forward(net, x, tile_size=None)
        tiled = tiled_forward(net, x, tile_size=16, tile_overlap=8)
    assert tiled.shape == x.shape
    torch.testing.assert_close(tiled, whole, rtol=0, atol=1e-6)


def test_too_small_overlap_differs_and_bad_overlap():
    net = _conv_net()
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(tiled_forward(net, x, 16, 0), tiled_forward(net, x, None), atol=1e-6)
    with pytest.raises(ValueError):
        tiled_forward(net, x, 16, 16)


def test_pad_to_multiple():
    x = torch.rand(1, 3, 5, 9)
    padded, size = pad_to_multiple(x, 8)
    assert padded.shape[-2:] == (8, 16) and size == (5, 9)
    assert torch.equal(padded[..., :5, :9], x)
