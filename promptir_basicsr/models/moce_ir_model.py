"""``MoCEIRModel``: an ``AllInOneModel`` with MoCE-IR's training loss (``eduardzamfir/MoCE-IR``
``src/train.py:59-77``)::

    L1(restored, gt) [+ fft_opt(restored, gt)] + balance_loss_weight * balance

``balance`` is the network's auxiliary routing loss of this forward (``MoCEIR.balance_loss``: the mean over
the decoder blocks of each router's 0.5 * cv^2(importance) + 0.5 * cv^2(load); the official
``self.net.total_loss``), so any network that sets a ``balance_loss`` attribute in its training forward can be
trained with this model. Option keys (``train:``), besides those of ``AllInOneModel``:

    balance_loss_weight: 0.01        weight of the balance loss (src/options.py:35; every README command)
    fft_opt: {type: FFTLoss, loss_weight: 0.1}   optional frequency loss (AllInOneModel's, losses/fft_loss.py); the
                                     official code adds FFTLoss(loss_weight=fft_loss_weight) when --loss_type is "fft"

Logged: ``l_pix`` (and ``l_percep``... as AllInOneModel), ``l_fft`` when fft_opt is given, ``l_balance`` (the
balance loss itself, unweighted, as the official log's "Balance").
"""
from basicsr.utils.registry import MODEL_REGISTRY

from ..archs.arch_api import arch_class
from ..utils.option_keys import Key
from .all_in_one_model import AllInOneModel


@MODEL_REGISTRY.register()
class MoCEIRModel(AllInOneModel):
    """Restoration loss + frequency loss (optional) + weighted routing balance loss of the network."""

    OPTIONS = {'train': {'balance_loss_weight': Key(float)}}

    @classmethod
    def option_problems(cls, opt, is_train):
        problems = super().option_problems(opt, is_train)
        if not is_train:
            return problems
        network = opt.get('network_g') or {}
        arch = arch_class(network.get('type'))
        if arch is not None and not hasattr(arch, 'balance_loss'):
            problems.append(f'model_type {opt["model_type"]} adds the routing balance loss of its network, but '
                            f'network_g {network.get("type")} has none (MoCEIR has; use AllInOneModel otherwise)')
        return problems

    def init_training_settings(self):
        train_opt = self.opt['train']
        self.balance_loss_weight = float(train_opt.get('balance_loss_weight', 0.01))
        super().init_training_settings()

    def forward_and_loss(self, current_iter):
        l_total, loss_dict = super().forward_and_loss(current_iter)  # restoration (+ fft_opt) losses
        balance = self.get_bare_model(self.net_g).balance_loss
        loss_dict['l_balance'] = balance
        return l_total + self.balance_loss_weight * balance, loss_dict
