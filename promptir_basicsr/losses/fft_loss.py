"""MoCE-IR's frequency loss (``eduardzamfir/MoCE-IR`` ``src/utils/loss_utils.py:90-103``), registered as ``FFTLoss``.

``FFTLoss(pred, target)``: the L1 loss between the 2-D spectra of ``pred`` and ``target`` (``rfft2`` over the
last two axes, H and W, unnormalised: the non-negative frequencies of the last axis), their real and
imaginary parts taken as separate values, times ``loss_weight``. With ``reduction: mean`` that is
(sum |dRe| + sum |dIm|) / (2 * number of spectrum values). In an option file (``model_type: MoCEIRModel``)::

    train:
      fft_opt: {type: FFTLoss, loss_weight: 0.1}
"""
import torch
import torch.nn.functional as F
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn

from ..archs import fourier


@LOSS_REGISTRY.register()
class FFTLoss(nn.Module):
    """L1 between the real and imaginary parts of rfft2(pred) and rfft2(target), times ``loss_weight``."""

    def __init__(self, loss_weight=1.0, reduction='mean'):
        super().__init__()
        if reduction not in ('none', 'mean', 'sum'):
            raise ValueError(f'Unsupported reduction mode: {reduction}. Supported ones are: none, mean, sum')
        self.loss_weight = loss_weight
        self.reduction = reduction

    def forward(self, pred, target, **kwargs):
        """``reduction: none`` gives (..., H, W//2+1, 2): the real and imaginary differences' magnitudes."""
        pred_spectrum = torch.stack(fourier.rfft2(pred), dim=-1)
        target_spectrum = torch.stack(fourier.rfft2(target), dim=-1)
        return self.loss_weight * F.l1_loss(pred_spectrum, target_spectrum, reduction=self.reduction)
