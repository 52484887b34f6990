"""Model size and compute: parameters and multiply-accumulates (MACs) of one forward pass.

MACs are counted by ``torch.utils.flop_counter.FlopCounterMode`` (convolutions, grouped and
depth-wise ones included, and matrix products such as MDTA's attention), halved: one MAC is one
multiply and one add. Element-wise ops, norms, softmax and interpolation are not counted, the usual
convention of the papers' GMAC figures; this reproduces the published numbers exactly: PromptIR
43.18 GMACs at 128x128 and 172.71 at 256x256, Restormer 154.88 at 256x256. The count is the
architecture's: the zero channels our feed-forward blocks add for speed
(``restormer_blocks.exact_widths``) are left out while counting.
"""
import torch
from torch.utils.flop_counter import FlopCounterMode

from ..archs.restormer_blocks import exact_widths


def count_parameters(net, trainable_only=False):
    """Number of parameters of ``net`` (all of them, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad or not trainable_only)


def count_macs(net, input_shape=(1, 3, 256, 256)):
    """MACs of one forward of ``net`` in eval mode on a zero tensor of ``input_shape`` (B, C, H, W)."""
    param = next(net.parameters())
    x = torch.zeros(input_shape, dtype=param.dtype, device=param.device)
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad(), exact_widths(), FlopCounterMode(display=False) as counter:
            net(x)
    finally:
        net.train(was_training)
    return counter.get_total_flops() // 2
