"""BioIR's frequency loss (``c-yn/BioIR`` ``All_in_One/train_eval.py:24-37``), registered as ``FFT2Loss``.

``FFT2Loss(pred, target)``: the L1 loss between the full 2-D spectra of ``pred`` and ``target`` (``fft2``
over the last two axes, H and W, unnormalised: every frequency, the conjugate-symmetric half included),
their real and imaginary parts taken as separate values, times ``loss_weight``. With ``reduction: mean``
that is (sum |dRe| + sum |dIm|) / (2 * B * C * H * W), the official ``L1Loss()`` of the stacked
(..., H, W, 2) spectra. The official code adds it with weight 0.1 (``FFTLoss(loss_weight=0.1)``,
``train_eval.py:25, 48, 59-60``). In an option file (``model_type: BioIRModel``)::

    train:
      fft_opt: {type: FFT2Loss, loss_weight: 0.1}

Not the same number as a loss over the one-sided spectrum (``rfft2``, MoCE-IR's ``FFTLoss``): the mean over
the full spectrum counts the frequencies of the half that ``rfft2`` drops, whose magnitudes mirror the other
half's except for the zero and Nyquist columns, so the two means weigh those columns differently.
"""
import torch
import torch.nn.functional as F
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn

from ..archs import fourier


@LOSS_REGISTRY.register()
class FFT2Loss(nn.Module):
    """L1 between the real and imaginary parts of fft2(pred) and fft2(target), times ``loss_weight``."""

    def __init__(self, loss_weight=1.0, reduction='mean'):
        super().__init__()
        if reduction not in ('none', 'mean', 'sum'):
            raise ValueError(f'Unsupported reduction mode: {reduction}. Supported ones are: none, mean, sum')
        self.loss_weight = loss_weight
        self.reduction = reduction

    def forward(self, pred, target, **kwargs):
        """``reduction: none`` gives (..., H, W, 2): the real and imaginary differences' magnitudes."""
        pred_spectrum = torch.stack(fourier.fft2(pred), dim=-1)
        target_spectrum = torch.stack(fourier.fft2(target), dim=-1)
        return self.loss_weight * F.l1_loss(pred_spectrum, target_spectrum, reduction=self.reduction)
