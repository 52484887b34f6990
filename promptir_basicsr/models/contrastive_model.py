"""``ContrastiveModel``: an ``AllInOneModel`` whose network has a contrastive degradation encoder (AirNet's
CBDE: MoCo around a small ResNet) trained by AirNet's recipe. ``AirNetModel`` is this model for AirNet;
PromptIR with ``prompt_source: cbde`` uses it directly.

Stage 1, iterations 1..``encoder_iters`` (0: no such stage): only the degradation encoder is trained,
with the contrastive loss alone; the rest of the network is not run, so its parameters get no gradient
and the optimizer leaves them untouched. Stage 2: ``L1(restored, gt) + contrastive_weight * contrastive``
through the whole network. The MoCo momentum update of the key encoder and the queue live inside the
network and happen in its training forward; the queue and its pointer are buffers, so they are saved in
``net_g_*.pth`` and restored on ``--auto_resume`` like the weights.

The network's contract (``AirNet`` and ``PromptIR(prompt_source='cbde')`` keep it):

* training ``forward(lq, lq2)`` -> ``(restored, logits, labels)``: restored from ``lq``, InfoNCE logits
  (B, 1+K) of the query ``lq`` against its key ``lq2`` (a second crop of the same degraded image) and the
  queue, labels (B,) zeros;
* ``contrastive(lq, lq2)`` -> ``(logits, labels)``: the encoder alone (stage 1);
* a static ``uses_contrastive_encoder(network_options) -> bool`` on the class, read by the option check.

Batches: ``num_crops: 2`` in the training set gives each sample two independent crops of the same
degraded image, ``lq`` (query) and ``lq2`` (key); the L1 target is ``gt`` (of the first crop).

Option keys (``train:``), besides those of ``AllInOneModel``:
    encoder_iters: 0            contrastive-only iterations first (AirNet: 40000 = 100 epochs x 400)
    contrastive_weight: 0.1     weight of the contrastive loss in stage 2
    contrastive_opt: {type: ContrastiveLoss}   the loss on (logits, labels); default shown
"""
import torch.distributed as dist
from basicsr.losses import build_loss
from basicsr.utils.registry import MODEL_REGISTRY

from ..archs.arch_api import uses_contrastive_encoder
from ..utils.option_keys import Key
from .all_in_one_model import AllInOneModel


@MODEL_REGISTRY.register()
class ContrastiveModel(AllInOneModel):
    """Restoration + contrastive degradation-encoder training (optionally an encoder-only stage first)."""

    OPTIONS = {'train': {'encoder_iters': Key(int), 'contrastive_weight': Key(float),
                         'contrastive_opt': Key(dict, None)}}

    @classmethod
    def option_problems(cls, opt, is_train):
        problems = super().option_problems(opt, is_train)
        if uses_contrastive_encoder(opt.get('network_g')) is False:
            network = opt['network_g']
            hint = ' (set network_g:prompt_source: cbde)' if network.get('type') == 'PromptIR' else ''
            problems.append(f'model_type {opt["model_type"]} trains a contrastive degradation encoder, but network_g '
                            f'{network.get("type")} has none{hint}')
        train_set = (opt.get('datasets') or {}).get('train') or {}
        if is_train and train_set.get('num_crops', 1) != 2:
            problems.append(f'datasets:train:num_crops must be 2 for {opt["model_type"]}: its contrastive loss compares '
                            'two crops of each degraded image (MoCo query and key)')
        return problems

    @classmethod
    def option_warnings(cls, opt):  # replaces AllInOneModel's: this model trains the encoder contrastively
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
            raise ValueError(f'{type(self).__name__} needs two crops per sample for its contrastive loss: set '
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
