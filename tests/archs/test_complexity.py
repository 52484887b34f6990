"""Parameter and MAC counts against the published figures (guards a wrong halving, a missed
depth-wise/grouped conv or attention matmul, or a counter that sees the wrong input size)."""
import torch
from torch import nn

from promptir_basicsr.archs.restormer_arch import Restormer
from promptir_basicsr.archs.complexity import count_macs, count_parameters


def test_conv_macs_by_hand():
    # 3x3 conv 4->6 on 10x12, plus a depth-wise 3x3 on 6 channels: MACs = out pixels * per-pixel work
    net = nn.Sequential(nn.Conv2d(4, 6, 3, padding=1), nn.Conv2d(6, 6, 3, padding=1, groups=6))
    assert count_macs(net, (2, 4, 10, 12)) == 2 * 10 * 12 * (6 * 4 * 9 + 6 * 9)
    assert count_parameters(net) == (6 * 4 * 9 + 6) + (6 * 9 + 6)
    net[1].requires_grad_(False)
    assert count_parameters(net, trainable_only=True) == 6 * 4 * 9 + 6


def test_restormer_published_figures():
    """Restormer: 26,126,644 parameters and 154.88 GMACs at 256x256 (the papers' figures). Every
    counted op scales with H*W, so 128x128 (a quarter of the work to run) gives exactly a quarter."""
    net = Restormer()
    assert count_parameters(net) == 26_126_644
    assert round(4 * count_macs(net, (1, 3, 128, 128)) / 1e9, 2) == 154.88
    assert net.training  # restored after counting
    assert next(net.parameters()).dtype == torch.float32
