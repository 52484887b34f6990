"""The frequency losses of MoCE-IR and BioIR, registered as ``FFTLoss``: the L1 loss between the 2-D spectra of
``pred`` and ``target`` (over the last two axes, H and W, unnormalised), their real and imaginary parts taken as
separate values, times ``loss_weight``.

``onesided: true`` (MoCE-IR, ``eduardzamfir/MoCE-IR`` ``src/utils/loss_utils.py:90-103``): the ``rfft2`` spectrum,
the non-negative frequencies of the last axis; with ``reduction: mean`` that is
(sum |dRe| + sum |dIm|) / (2 * number of rfft2 values). ``onesided: false`` (BioIR, ``c-yn/BioIR``
``All_in_One/train_eval.py:24-37``): the full ``fft2`` spectrum, the official ``L1Loss()`` of the stacked
(..., H, W, 2) spectra. Not the same number: the mean over the full spectrum counts the mirrored half that
``rfft2`` drops, so the two weigh the zero and Nyquist columns differently. In an option file (any model of
ours adds ``train: fft_opt`` to its loss as ``l_fft``)::

    train:
      fft_opt: {type: FFTLoss, loss_weight: 0.1, onesided: false}   # BioIR's
"""
import torch
import torch.nn.functional as F
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn

from ..utils import fourier


@LOSS_REGISTRY.register()
class FFTLoss(nn.Module):
    """L1 between the real and imaginary parts of the spectra of ``pred`` and ``target``, times ``loss_weight``."""

    def __init__(self, loss_weight=1.0, reduction='mean', onesided=True):
        super().__init__()
        if reduction not in ('none', 'mean', 'sum'):
            raise ValueError(f'Unsupported reduction mode: {reduction}. Supported ones are: none, mean, sum')
        self.loss_weight = loss_weight
        self.reduction = reduction
        self.transform = fourier.rfft2 if onesided else fourier.fft2

    def forward(self, pred, target, **kwargs):
        """``reduction: none`` gives (..., H, W', 2): the real and imaginary differences' magnitudes (W' = W//2+1
        one-sided, W otherwise)."""
        pred_spectrum = torch.stack(self.transform(pred), dim=-1)
        target_spectrum = torch.stack(self.transform(target), dim=-1)
        return self.loss_weight * F.l1_loss(pred_spectrum, target_spectrum, reduction=self.reduction)
