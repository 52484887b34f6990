"""``AirNetModel``: AirNet's two-stage recipe in basicsr (an ``AllInOneModel`` with another loss).

Stage 1, iterations 1..``encoder_iters``: only the degradation encoder (CBDE, MoCo) is trained,
with the contrastive loss alone; the restorer is not run, so its parameters get no gradient and the
optimizer leaves them untouched. Stage 2: ``L1(restored, gt) + contrastive_weight * contrastive``
through the whole network. The MoCo momentum update of the key encoder and the queue live inside
the network (``AirNet`` arch) and happen in its training forward; the queue and its pointer are
buffers, so they are saved in ``net_g_*.pth`` and restored on ``--auto_resume`` like the weights
(the optimizer and scheduler states come from basicsr's training state).

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
``val.pad_to_multiple`` defaults to 1 here (AirNet takes any size; padding would change its pooled code).
"""
import torch.distributed as dist
from basicsr.losses import build_loss
from basicsr.utils.registry import MODEL_REGISTRY

from ..option_schema import Key
from .all_in_one_model import AllInOneModel


@MODEL_REGISTRY.register()
class AirNetModel(AllInOneModel):
    """AirNet: contrastive encoder warm-up, then joint restoration + contrastive training."""

    OPTIONS = {'train': {'encoder_iters': Key(int), 'contrastive_weight': Key(float),
                         'contrastive_opt': Key(dict, None)}}

    default_pad_multiple = 1

    @classmethod
    def option_problems(cls, opt, is_train):
        problems = super().option_problems(opt, is_train)
        train_set = (opt.get('datasets') or {}).get('train') or {}
        if is_train and train_set.get('num_crops', 1) != 2:
            problems.append('datasets:train:num_crops must be 2 for AirNetModel: its contrastive loss compares two '
                            'crops of each degraded image (MoCo query and key)')
        return problems

    @classmethod
    def option_warnings(cls, opt):
        train = opt['train']
        encoder_iters = train.get('encoder_iters', 0)
        if isinstance(encoder_iters, int) and encoder_iters >= int(train['total_iter']):
            return [f'train:encoder_iters {encoder_iters} >= train:total_iter {int(train["total_iter"])}: only the '
                    'contrastive encoder stage runs; the restorer is never trained']
        return []

    def init_training_settings(self):
        train_opt = self.opt['train']
        self.encoder_iters = int(train_opt.get('encoder_iters', 0))
        self.contrastive_weight = float(train_opt.get('contrastive_weight', 0.1))
        self.cri_contrast = build_loss(train_opt.get('contrastive_opt') or {'type': 'ContrastiveLoss'}).to(self.device)
        super().init_training_settings()

    def in_encoder_stage(self, current_iter):
        """True for the contrastive-only iterations 1..encoder_iters."""
        return current_iter <= self.encoder_iters

    def _key_crops(self):
        if not hasattr(self, 'lq2'):
            raise ValueError('AirNetModel needs two crops per sample for its contrastive loss: set '
                             '`num_crops: 2` in datasets.train (gives lq2).')
        return self.lq2

    def forward_and_loss(self, current_iter):
        key = self._key_crops()
        if self.in_encoder_stage(current_iter):
            logits, labels = self.get_bare_model(self.net_g).contrastive(self.lq, key)
            l_contrast = self.cri_contrast(logits, labels)
            return l_contrast, {'l_contrast': l_contrast}
        restored, logits, labels = self.net_g(self.lq, key)
        self.output = restored
        l_total, loss_dict = self.compute_losses(restored.float(), self.gt)
        l_contrast = self.cri_contrast(logits, labels)
        loss_dict['l_contrast'] = l_contrast
        return l_total + self.contrastive_weight * l_contrast, loss_dict

    def sync_gradients(self):
        # Stage 1 calls the encoder outside DDP's forward, so DDP does not average its gradients.
        if not (self.opt.get('dist') and dist.is_available() and dist.is_initialized()):
            return
        if not self.in_encoder_stage(self.current_iter):
            return
        world = dist.get_world_size()
        for param in self.net_g.parameters():
            if param.grad is not None:
                dist.all_reduce(param.grad)
                param.grad.div_(world)
