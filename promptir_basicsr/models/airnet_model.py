"""``AirNetModel``: AirNet's two-stage recipe in basicsr, a :class:`.contrastive_model.ContrastiveModel`.

Stage 1, iterations 1..``encoder_iters``: only the degradation encoder (CBDE, MoCo) is trained, with the
contrastive loss alone. Stage 2: ``L1(restored, gt) + contrastive_weight * contrastive`` through the
whole network (see ``models/contrastive_model.py`` for the mechanics, shared with PromptIR's CBDE
variant).

Batches: ``num_crops: 2`` in the training set gives each sample two independent crops of the same
degraded image, ``lq`` (query) and ``lq2`` (key); the L1 target is ``gt`` (of the first crop).
``one_per_source: true`` gives one sample of every degradation per item, flattened by ``feed_data``
(the official batch: 5 = one per degradation). The queue length of the arch must be a multiple of
the flattened batch.

Option keys (``train:``), besides those of ``AllInOneModel``:
    encoder_iters: 40000        contrastive-only iterations (official 100 epochs x 400 iterations)
    contrastive_weight: 0.1     weight of the contrastive loss in stage 2
    contrastive_opt: {type: ContrastiveLoss}   the loss on (logits, labels); default shown
    scheduler: {type: AirNetStepLR, ...}       the official steps (``models/schedulers.py``)
``val.pad_to_multiple`` defaults to the network's ``size_multiple``: 1 for AirNet (it takes any size; padding
would change its pooled code).
"""
from basicsr.utils.registry import MODEL_REGISTRY

from .contrastive_model import ContrastiveModel


@MODEL_REGISTRY.register()
class AirNetModel(ContrastiveModel):
    """AirNet: contrastive encoder warm-up, then joint restoration + contrastive training."""
