"""What keeps a days-long run safe: non-finite losses, pre-emption signals, complete resume states.

``TrainingGuardsMixin`` goes first in a model's bases (``class AllInOneModel(TrainingGuardsMixin,
SRModel)``). The model calls :meth:`loss_is_finite` on its total loss before ``backward`` and
:meth:`after_iteration` at the end of ``optimize_parameters``; everything else is automatic.

Options (top level):
    deterministic: true  # deterministic algorithms (cuDNN too), for bit-identical runs given manual_seed

Options (``train:`` section):
    nan_policy: stop   # stop: save the last good state, then stop with a clear error (default)
                       # skip: drop the step (no backward, no update), warn, go on
    nan_max_skips: 100 # with skip: stop anyway after this many consecutive non-finite losses
"""
import os
import signal
import sys

import torch
import torch.distributed as dist
from basicsr.data.data_sampler import EnlargedSampler
from basicsr.utils import get_root_logger
from basicsr.utils.dist_util import master_only

from ..utils.option_keys import Key
from ..utils.files import atomic_save


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the last good state was saved."""


def _current_epoch():
    """The epoch ``train_pipeline`` is in: ``EnlargedSampler.current_epoch``, recorded at each
    ``set_epoch`` by ``basicsr_patches/behaviour/data_data_sampler.py``."""
    return getattr(EnlargedSampler, 'current_epoch', 0)


def _any_rank(flag, device):
    """True on every rank when ``flag`` is True on any rank (ranks must take the same branch)."""
    if not (dist.is_available() and dist.is_initialized()):
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def configure_determinism(opt):
    """``deterministic: true``: deterministic kernels, no cuDNN autotuning (train_pipeline turns it on)."""
    if not opt.get('deterministic'):
        return
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    os.environ.setdefault('CUBLAS_WORKSPACE_CONFIG', ':4096:8')  # needed by deterministic cuBLAS
    torch.use_deterministic_algorithms(True, warn_only=True)


class TrainingGuardsMixin:
    """Non-finite loss policy, SIGTERM/SIGINT pre-emption, best metrics kept in training states."""

    #: the option keys read here (merged into the model's declaration by ``options/schema.py``)
    OPTIONS = {'': {'deterministic': Key(bool)},
               'train': {'nan_policy': Key(str, choices=('stop', 'skip')), 'nan_max_skips': Key(int)}}

    _stop_signal = None

    def __init__(self, opt):
        configure_determinism(opt)
        super().__init__(opt)

    def init_training_settings(self):
        super().init_training_settings()
        self._consecutive_nonfinite = 0
        self._install_stop_signals()

    # ---- pre-emption -------------------------------------------------------------------------
    def _install_stop_signals(self):
        import threading
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread

        def on_signal(signum, frame):
            self._stop_signal = signum
            # A second signal falls back to the default action, so a user can still force-quit.
            signal.signal(signum, signal.SIG_DFL)

        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, on_signal)

    def after_iteration(self, current_iter):
        """On SIGTERM/SIGINT (pre-emption, Ctrl-C): save a training state for this iteration, exit."""
        stop = _any_rank(self._stop_signal is not None, self.device) if self.opt.get('dist') else \
            self._stop_signal is not None
        if not stop:
            return
        signum = self._stop_signal or signal.SIGTERM
        logger = get_root_logger()
        logger.warning(f'Received {signal.Signals(signum).name}: saving the training state of iteration '
                       f'{current_iter}, then stopping. Continue with `basicsr train -opt <file> --auto_resume`.')
        self.save(_current_epoch(), current_iter)
        if dist.is_available() and dist.is_initialized():
            dist.barrier()
        logger.warning(f'Training state of iteration {current_iter} saved; stopped.')
        sys.exit(128 + int(signum))

    # ---- non-finite losses -------------------------------------------------------------------
    def loss_is_finite(self, loss, current_iter):
        """True when ``loss`` is finite on every rank; otherwise apply ``train.nan_policy``.

        Returns False when the step must be skipped. With ``stop`` it saves the state of the last good
        iteration (the weights are still those of ``current_iter - 1``) and raises.
        """
        nonfinite = _any_rank(not bool(torch.isfinite(loss.detach()).all()), loss.device)
        if not nonfinite:
            self._consecutive_nonfinite = 0
            return True
        train_opt = self.opt['train']
        policy = train_opt.get('nan_policy', 'stop')
        self._consecutive_nonfinite += 1
        logger = get_root_logger()
        if policy == 'skip' and self._consecutive_nonfinite <= train_opt.get('nan_max_skips', 100):
            logger.warning(f'Non-finite loss ({loss.detach().float().mean().item()}) at iteration {current_iter}: '
                           f'step skipped ({self._consecutive_nonfinite} in a row; train:nan_policy is skip).')
            for optimizer in self.optimizers:
                optimizer.zero_grad(set_to_none=True)
            return False
        last_good = current_iter - self._consecutive_nonfinite
        if last_good > 0:
            self.save(_current_epoch(), last_good)
            saved = f'the last good state (iteration {last_good}) was saved; '
        else:
            saved = 'no iteration had completed, so nothing was saved; '
        raise NonFiniteLossError(
            f'Loss is {loss.detach().float().mean().item()} at iteration {current_iter}: {saved}'
            'lower train:optim_g:lr, enable gradient clipping, or check the data, then continue with '
            '--auto_resume (or set train:nan_policy: skip to drop such steps).')

    def save(self, epoch, current_iter):
        """Refuse to write non-finite weights over good checkpoints."""
        for name, param in self.get_bare_model(self.net_g).state_dict().items():
            if param.is_floating_point() and not bool(torch.isfinite(param).all()):
                raise NonFiniteLossError(f'Not saving iteration {current_iter}: weight {name} is not finite.')
        super().save(epoch, current_iter)

    # ---- training states with best metrics -----------------------------------------------------
    @master_only
    def save_training_state(self, epoch, current_iter):
        """basicsr's state plus ``best_metric_results`` (plain floats), written atomically."""
        if current_iter == -1:
            return
        state = {
            'epoch': int(epoch),
            'iter': int(current_iter),
            'optimizers': [o.state_dict() for o in self.optimizers],
            'schedulers': [s.state_dict() for s in self.schedulers],
            'best_metric_results': _plain(getattr(self, 'best_metric_results', {})),
        }
        import os.path as osp
        atomic_save(state, osp.join(self.opt['path']['training_states'], f'{current_iter}.state'))

    def resume_training(self, resume_state):
        super().resume_training(resume_state)
        best = resume_state.get('best_metric_results')
        if best:
            self.best_metric_results = best


def _plain(value):
    """Best-metric records as plain Python types, loadable with ``weights_only=True``."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, str) or value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    return float(value)
