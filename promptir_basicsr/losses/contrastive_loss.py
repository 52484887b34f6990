"""The InfoNCE loss of AirNet's degradation encoder (basicsr has no cross-entropy loss).

``ContrastiveLoss(logits, labels)``: cross entropy over MoCo's (N, 1 + K) logits, where the
positive is column ``labels[i]`` (0 in MoCo), times ``loss_weight``. In an option file::

    train:
      contrastive_opt: {type: ContrastiveLoss, loss_weight: 1.0}
"""
import torch.nn.functional as F
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn


@LOSS_REGISTRY.register()
class ContrastiveLoss(nn.Module):
    """Cross entropy of contrastive logits against the positives' indices, times ``loss_weight``."""

    def __init__(self, loss_weight=1.0, reduction='mean'):
        super().__init__()
        if reduction not in ('none', 'mean', 'sum'):
            raise ValueError(f'Unsupported reduction mode: {reduction}. Supported ones are: none, mean, sum')
        self.loss_weight = loss_weight
        self.reduction = reduction

    def forward(self, logits, labels, **kwargs):
        return self.loss_weight * F.cross_entropy(logits.float(), labels.long(), reduction=self.reduction)
