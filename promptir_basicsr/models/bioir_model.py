"""``BioIRModel``: an ``AllInOneModel`` with BioIR's training loss (``c-yn/BioIR`` ``All_in_One/train_eval.py:53-62``)::

    L1(restored, gt) + fft_opt(restored, gt)

The official ``training_step`` adds ``FFTLoss(loss_weight=0.1)`` (the L1 of the full spectra,
``losses/bioir_loss.py``: ``FFT2Loss``) to ``nn.L1Loss()``. Any network can be trained with it. Option keys
(``train:``), besides those of ``AllInOneModel``:

    fft_opt: {type: FFT2Loss, loss_weight: 0.1}   the frequency loss on (restored, gt); omitted: none
                                     (then the model trains as AllInOneModel)

Logged: ``l_pix`` (and ``l_percep``... as AllInOneModel) and ``l_fft`` when ``fft_opt`` is given.
"""
from basicsr.losses import build_loss
from basicsr.utils.registry import MODEL_REGISTRY

from ..option_schema import Key
from .all_in_one_model import AllInOneModel


@MODEL_REGISTRY.register()
class BioIRModel(AllInOneModel):
    """Restoration loss + an optional frequency loss (``train: fft_opt``)."""

    OPTIONS = {'train': {'fft_opt': Key(dict, None)}}

    def init_training_settings(self):
        train_opt = self.opt['train']
        self.cri_fft = build_loss(train_opt['fft_opt']).to(self.device) if train_opt.get('fft_opt') else None
        super().init_training_settings()

    def compute_losses(self, output, target):
        l_total, loss_dict = super().compute_losses(output, target)
        if self.cri_fft is not None:
            l_fft = self.cri_fft(output, target)
            l_total = l_total + l_fft
            loss_dict['l_fft'] = l_fft
        return l_total, loss_dict
