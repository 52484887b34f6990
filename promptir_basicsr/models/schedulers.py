"""Learning-rate schedulers by name, for ``train.scheduler.type`` in an option file.

basicsr 1.4.2's ``BaseModel.setup_schedulers`` knows only ``MultiStep(Restart)LR`` and
``CosineAnnealingRestartLR``. :func:`build_scheduler` knows those, the schedules of the official
PromptIR / Restormer / AirNet recipes (converted from epochs to iterations), and any class of
``torch.optim.lr_scheduler`` by its name. Every scheduler here is stepped once per iteration by
basicsr's ``update_learning_rate`` (the first step happens at iteration 2, so the lr used at
iteration ``i`` is the schedule's value at ``i - 1``), and each is a closed-form function of the
iteration, so a resumed run continues exactly where it stopped.

Names (``train.scheduler.type``):

- ``LinearWarmupCosineLR``: PromptIR's schedule (Lightning-bolts' ``LinearWarmupCosineAnnealingLR``
  stepped per epoch in the official code). Keys: ``warmup_iters``, ``max_iters`` (end of the
  cosine, counted from iteration 0), ``warmup_start_lr`` (0), ``eta_min`` (0), ``step_size`` (1;
  the official code changed the lr once per epoch: ``step_size: 4451`` reproduces that staircase).
- ``CosineAnnealingRestartCyclicLR``: Restormer's. Keys: ``periods``, ``restart_weights``,
  ``eta_mins`` (one per period).
- ``AirNetStepLR``: AirNet's two-stage steps. Keys: ``encoder_iters`` (defaults to
  ``train.encoder_iters``), ``encoder_step``, ``encoder_gamma`` (0.1), ``restore_lr``,
  ``restore_step``, ``restore_gamma`` (0.5).
- ``MultiStepRestartLR`` / ``MultiStepLR``, ``CosineAnnealingRestartLR``: basicsr's own.
- any other name: ``torch.optim.lr_scheduler.<name>(optimizer, **keys)``.
"""
import math
from copy import deepcopy

import torch
from basicsr.models import lr_scheduler as basicsr_lr_scheduler
from torch.optim.lr_scheduler import _LRScheduler


class _ClosedFormLR(_LRScheduler):
    """A scheduler whose lr is ``self.lr_at(iteration, base_lr)``; no state beyond ``last_epoch``."""

    def lr_at(self, iteration, base_lr):
        raise NotImplementedError

    def get_lr(self):
        return [self.lr_at(self.last_epoch, base_lr) for base_lr in self.base_lrs]

    def _get_closed_form_lr(self):
        return self.get_lr()


class LinearWarmupCosineLR(_ClosedFormLR):
    """Linear warm-up from ``warmup_start_lr`` to the optimizer's lr over ``warmup_iters``, then a
    half cosine down to ``eta_min`` at ``max_iters``; ``eta_min`` after that.

    ``step_size`` > 1 holds the lr constant over blocks of that many iterations (the value at the
    start of the block), as a per-epoch scheduler does with ``step_size`` = iterations per epoch.
    """

    def __init__(self, optimizer, warmup_iters, max_iters, warmup_start_lr=0.0, eta_min=0.0, step_size=1,
                 last_epoch=-1):
        if not 0 <= warmup_iters < max_iters:
            raise ValueError(f'LinearWarmupCosineLR needs 0 <= warmup_iters < max_iters, got {warmup_iters}, '
                             f'{max_iters}')
        if step_size < 1:
            raise ValueError(f'LinearWarmupCosineLR: step_size must be >= 1, got {step_size}')
        self.warmup_iters = int(warmup_iters)
        self.max_iters = int(max_iters)
        self.warmup_start_lr = float(warmup_start_lr)
        self.eta_min = float(eta_min)
        self.step_size = int(step_size)
        super().__init__(optimizer, last_epoch)

    def lr_at(self, iteration, base_lr):
        t = (iteration // self.step_size) * self.step_size
        if t < self.warmup_iters:
            return self.warmup_start_lr + (base_lr - self.warmup_start_lr) * t / self.warmup_iters
        progress = min(t - self.warmup_iters, self.max_iters - self.warmup_iters) / (self.max_iters - self.warmup_iters)
        return self.eta_min + 0.5 * (base_lr - self.eta_min) * (1 + math.cos(math.pi * progress))


class CosineAnnealingRestartCyclicLR(_ClosedFormLR):
    """Cosine cycles of lengths ``periods``; cycle ``i`` starts at ``restart_weights[i] * lr`` and ends
    at ``eta_mins[i]`` (Restormer: periods [92000, 208000], restart_weights [1, 1],
    eta_mins [0.0003, 0.000001]). After the last period the lr stays at the last ``eta_min``.
    """

    def __init__(self, optimizer, periods, restart_weights=(1, ), eta_mins=(0, ), last_epoch=-1):
        self.periods = [int(p) for p in periods]
        self.restart_weights = [float(w) for w in restart_weights]
        self.eta_mins = [float(e) for e in eta_mins]
        if not len(self.periods) == len(self.restart_weights) == len(self.eta_mins):
            raise ValueError('CosineAnnealingRestartCyclicLR: periods, restart_weights and eta_mins must have the '
                             f'same length, got {len(self.periods)}, {len(self.restart_weights)}, {len(self.eta_mins)}')
        self.cumulative_period = [sum(self.periods[:i + 1]) for i in range(len(self.periods))]
        super().__init__(optimizer, last_epoch)

    def lr_at(self, iteration, base_lr):
        idx = next((i for i, end in enumerate(self.cumulative_period) if iteration <= end), None)
        if idx is None:
            return self.eta_mins[-1]
        start = self.cumulative_period[idx - 1] if idx > 0 else 0
        eta_min = self.eta_mins[idx]
        progress = (iteration - start) / self.periods[idx]
        return eta_min + self.restart_weights[idx] * 0.5 * (base_lr - eta_min) * (1 + math.cos(math.pi * progress))


class AirNetStepLR(_ClosedFormLR):
    """AirNet's steps, in iterations: ``lr * encoder_gamma ** (it // encoder_step)`` while
    ``it < encoder_iters`` (contrastive stage), then
    ``restore_lr * restore_gamma ** ((it - encoder_iters) // restore_step)``.

    Official (epoch = 400 iterations at batch 5): lr 1e-3, encoder_iters 40,000 (100 epochs),
    encoder_step 24,000 (60 epochs), restore_lr 1e-4, restore_step 50,000 (125 epochs).
    """

    def __init__(self, optimizer, encoder_step, restore_step, encoder_iters=0, restore_lr=None, encoder_gamma=0.1,
                 restore_gamma=0.5, last_epoch=-1):
        self.encoder_iters = int(encoder_iters)
        self.encoder_step = int(encoder_step)
        self.restore_step = int(restore_step)
        self.restore_lr = None if restore_lr is None else float(restore_lr)
        self.encoder_gamma = float(encoder_gamma)
        self.restore_gamma = float(restore_gamma)
        if self.encoder_step < 1 or self.restore_step < 1:
            raise ValueError('AirNetStepLR: encoder_step and restore_step must be >= 1')
        super().__init__(optimizer, last_epoch)

    def lr_at(self, iteration, base_lr):
        if iteration < self.encoder_iters:
            return base_lr * self.encoder_gamma**(iteration // self.encoder_step)
        restore_lr = base_lr * 0.1 if self.restore_lr is None else self.restore_lr
        return restore_lr * self.restore_gamma**((iteration - self.encoder_iters) // self.restore_step)


SCHEDULERS = {
    'LinearWarmupCosineLR': LinearWarmupCosineLR,
    'CosineAnnealingRestartCyclicLR': CosineAnnealingRestartCyclicLR,
    'AirNetStepLR': AirNetStepLR,
    'MultiStepRestartLR': basicsr_lr_scheduler.MultiStepRestartLR,
    'MultiStepLR': basicsr_lr_scheduler.MultiStepRestartLR,  # basicsr maps this name to its own class too
    'CosineAnnealingRestartLR': basicsr_lr_scheduler.CosineAnnealingRestartLR,
}


def scheduler_class(name):
    """The class of scheduler ``name`` (:data:`SCHEDULERS`, or a ``torch.optim.lr_scheduler`` class); None if
    unknown. The option checker reads its signature."""
    if not isinstance(name, str):
        return None
    cls = SCHEDULERS.get(name) or getattr(torch.optim.lr_scheduler, name, None)
    kinds = (torch.optim.lr_scheduler.LRScheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
    return cls if isinstance(cls, type) and issubclass(cls, kinds) else None


def build_scheduler(optimizer, scheduler_opt, train_opt=None):
    """The scheduler named by ``scheduler_opt['type']``, built with the other keys (not mutated)."""
    scheduler_opt = deepcopy(dict(scheduler_opt))
    name = scheduler_opt.pop('type', None)
    if name is None:
        raise ValueError('train.scheduler needs a `type`; known: ' + ', '.join(SCHEDULERS))
    if name == 'AirNetStepLR' and 'encoder_iters' not in scheduler_opt and train_opt is not None:
        scheduler_opt['encoder_iters'] = train_opt.get('encoder_iters', 0)
    cls = scheduler_class(name)
    if cls is None:
        raise ValueError(f'Unknown scheduler type {name!r}; known: {", ".join(SCHEDULERS)}, '
                         'or a class of torch.optim.lr_scheduler')
    try:
        return cls(optimizer, **scheduler_opt)
    except TypeError as err:
        raise ValueError(f'train.scheduler ({name}): {err}') from err


def build_optimizer(params, optim_opt):
    """``torch.optim.<type>(params, **keys)`` for any optimizer class of ``torch.optim`` (Adam, AdamW, ...)."""
    optim_opt = deepcopy(dict(optim_opt))
    name = optim_opt.pop('type', None)
    cls = getattr(torch.optim, name, None) if name else None
    if cls is None or not isinstance(cls, type) or not issubclass(cls, torch.optim.Optimizer):
        raise ValueError(f'Unknown optimizer type {name!r}: use the name of a torch.optim class (Adam, AdamW, SGD, ...)')
    if 'betas' in optim_opt:
        optim_opt['betas'] = tuple(optim_opt['betas'])
    try:
        return cls(params, **optim_opt)
    except TypeError as err:
        raise ValueError(f'train.optim_g ({name}): {err}') from err


# A run that stops before this share of its decaying schedule still has a cosine lr above a quarter of its
# peak (0.5 * (1 + cos(pi * 2/3)) = 0.25): most likely total_iter was shortened and the schedule was not. The
# official PromptIR recipe stops at 80% of its 150-epoch cosine on purpose, which is above this share.
EARLY_STOP_SHARE = 2 / 3


def _numbers(value):
    return [int(v) for v in value] if isinstance(value, (list, tuple)) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value) else None


def horizon_warnings(scheduler_opt, train_opt):
    """Where the schedule's horizon and ``train.total_iter`` disagree: a list of messages, empty when they fit.

    The horizon is ``max_iters`` (LinearWarmupCosineLR), the sum of ``periods`` (the cosine restarts),
    ``T_max`` (torch's CosineAnnealingLR). A horizon before ``total_iter`` leaves the end of the run at the
    final lr; a run that ends before :data:`EARLY_STOP_SHARE` of it ends with a high lr; a warm-up that does
    not end, or ``milestones`` past ``total_iter``, never take effect.
    """
    total = int(train_opt['total_iter'])
    name = scheduler_opt.get('type')
    warnings, horizon, label = [], None, None
    if name == 'LinearWarmupCosineLR':
        warmup = scheduler_opt.get('warmup_iters')
        if isinstance(warmup, (int, float)) and warmup >= total:
            return [f'train:scheduler:warmup_iters {int(warmup)} >= train:total_iter {total}: the run ends during the '
                    'linear warm-up, before the lr reaches train:optim_g:lr; scale the schedule with total_iter']
        horizon, label = scheduler_opt.get('max_iters'), 'max_iters'
    elif name in ('CosineAnnealingRestartCyclicLR', 'CosineAnnealingRestartLR'):
        periods = _numbers(scheduler_opt.get('periods'))
        horizon, label = (sum(periods), f'periods (sum {sum(periods)})') if periods else (None, None)
    elif name == 'CosineAnnealingLR':
        horizon, label = scheduler_opt.get('T_max'), 'T_max'
    elif name in ('MultiStepRestartLR', 'MultiStepLR'):
        late = [m for m in _numbers(scheduler_opt.get('milestones')) or [] if m > total]
        if late:
            warnings.append(f'train:scheduler:milestones {late} are beyond train:total_iter {total}: never reached')
    if isinstance(horizon, (int, float)) and not isinstance(horizon, bool) and horizon > 0:
        horizon = int(horizon)
        if horizon < total:
            warnings.append(f'train:scheduler:{label} end at iteration {horizon}, before train:total_iter {total}: '
                            f'the last {total - horizon} iterations run at the final lr')
        elif total < EARLY_STOP_SHARE * horizon:
            warnings.append(f'train:total_iter {total} stops at {100 * total / horizon:.0f}% of '
                            f'train:scheduler:{label} {horizon}: the lr is still high when the run ends; scale the schedule with total_iter')
    return warnings
