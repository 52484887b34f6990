"""models/schedulers.py: the learning rates of every schedule, computed by hand at chosen iterations (non-zero
warm-up start and eta_min, several periods, restart weights, gammas), the builders by name, and the horizon
warnings of the option check."""
import math

import pytest
import torch

from promptir_basicsr.models.schedulers import (EARLY_STOP_SHARE, AirNetStepLR, CosineAnnealingRestartCyclicLR,
                                                LinearWarmupCosineLR, build_optimizer, build_scheduler,
                                                horizon_warnings, scheduler_class)

# stepping a scheduler without optimizer steps is the point of these tests
pytestmark = pytest.mark.filterwarnings('ignore:Detected call of `lr_scheduler.step')


def _optimizer(lr=1e-3):
    return torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def _lrs(scheduler, upto):
    """lr after 0..upto-1 scheduler steps (basicsr steps once per iteration from iteration 2)."""
    values = []
    for _ in range(upto):
        values.append(scheduler.optimizer.param_groups[0]['lr'])
        scheduler.step()
    return values


def test_warmup_cosine_with_a_warm_up_start_and_eta_min():
    """base 1e-3, warm-up from 1e-5 over 4 iterations, cosine down to 1e-4 at 12 (values by hand)."""
    lrs = _lrs(LinearWarmupCosineLR(_optimizer(), warmup_iters=4, max_iters=12, warmup_start_lr=1e-5, eta_min=1e-4), 16)
    assert lrs[0] == pytest.approx(1e-5, rel=1e-12)
    assert lrs[1] == pytest.approx(1e-5 + 9.9e-4 / 4, rel=1e-12)  # a quarter of the way from 1e-5 to 1e-3
    assert lrs[2] == pytest.approx(5.05e-4, rel=1e-12)
    assert lrs[4] == pytest.approx(1e-3, rel=1e-12)
    assert lrs[6] == pytest.approx(1e-4 + 4.5e-4 * (1 + math.sqrt(0.5)), rel=1e-12)  # cos(pi / 4)
    assert lrs[8] == pytest.approx(5.5e-4, rel=1e-12)  # half-way between 1e-3 and 1e-4
    assert lrs[12] == pytest.approx(1e-4, rel=1e-12)
    assert lrs[15] == pytest.approx(1e-4, rel=1e-12)  # stays at eta_min after max_iters


def test_warmup_cosine_staircase_and_no_warm_up():
    """step_size 3 holds each block's first value; warmup_iters 0 starts on the cosine at the base lr."""
    sched = LinearWarmupCosineLR(_optimizer(), warmup_iters=4, max_iters=12, warmup_start_lr=1e-5, eta_min=1e-4,
                                 step_size=3)
    assert [sched.lr_at(i, 1e-3) for i in (2, 3, 5)] == pytest.approx([1e-5, 7.525e-4, 7.525e-4], rel=1e-12)
    assert sched.lr_at(7, 1e-3) == pytest.approx(1e-4 + 4.5e-4 * (1 + math.sqrt(0.5)), rel=1e-12)  # t = 6
    flat = LinearWarmupCosineLR(_optimizer(), warmup_iters=0, max_iters=10, eta_min=2e-4)
    assert flat.lr_at(0, 1e-3) == pytest.approx(1e-3) and flat.lr_at(5, 1e-3) == pytest.approx(6e-4)
    official = LinearWarmupCosineLR(_optimizer(2e-4), warmup_iters=15 * 4451, max_iters=150 * 4451, step_size=4451)
    assert official.lr_at(4450, 2e-4) == 0.0 and official.lr_at(4451, 2e-4) == pytest.approx(2e-4 / 15)


@pytest.mark.parametrize('warmup, total, step', [(-1, 10, 1), (10, 10, 1), (11, 10, 1), (2, 10, 0)])
def test_warmup_cosine_refuses_impossible_schedules(warmup, total, step):
    with pytest.raises(ValueError, match='LinearWarmupCosineLR'):
        LinearWarmupCosineLR(_optimizer(), warmup_iters=warmup, max_iters=total, step_size=step)


def test_resumed_schedulers_continue_where_they_stopped():
    """A state dict, or last_epoch given at construction (what a resumed optimizer's 'initial_lr' allows), gives
    the lr of the iteration reached, not the schedule's start."""
    first = LinearWarmupCosineLR(_optimizer(), warmup_iters=4, max_iters=20, warmup_start_lr=1e-5)
    _lrs(first, 7)
    second = LinearWarmupCosineLR(_optimizer(), warmup_iters=4, max_iters=20, warmup_start_lr=1e-5)
    second.load_state_dict(first.state_dict())
    second.step()
    first.step()
    assert second.get_last_lr() == pytest.approx(first.get_last_lr())
    for cls, kwargs in ((LinearWarmupCosineLR, dict(warmup_iters=4, max_iters=20, warmup_start_lr=1e-5)),
                        (CosineAnnealingRestartCyclicLR, dict(periods=[4, 8], eta_mins=[1e-4, 1e-6],
                                                              restart_weights=[1, 1])),
                        (AirNetStepLR, dict(encoder_step=2, restore_step=3, encoder_iters=4))):
        optimizer = _optimizer()
        optimizer.param_groups[0]['initial_lr'] = 1e-3
        resumed = cls(optimizer, last_epoch=5, **kwargs)
        assert resumed.last_epoch == 6 and optimizer.param_groups[0]['lr'] == pytest.approx(
            resumed.lr_at(6, 1e-3)), cls.__name__


def test_cyclic_cosine_periods_weights_and_minimums():
    """Three periods (4, 8, 2) with restart weights 1, 0.5, 1 and minimums 1e-4, 1e-6, 5e-6 (basicsr's rule: an
    iteration at a period's end still belongs to it)."""
    sched = CosineAnnealingRestartCyclicLR(_optimizer(), periods=[4, 8, 2], restart_weights=[1, 0.5, 1],
                                           eta_mins=[1e-4, 1e-6, 5e-6])
    lrs = _lrs(sched, 17)
    assert lrs[0] == pytest.approx(1e-3, rel=1e-12)
    assert lrs[2] == pytest.approx(5.5e-4, rel=1e-12)
    assert lrs[4] == pytest.approx(1e-4, rel=1e-12)  # the end of the first period, not the restart
    assert lrs[5] == pytest.approx(1e-6 + 0.25 * 9.99e-4 * (1 + math.cos(math.pi / 8)), rel=1e-12)
    assert lrs[8] == pytest.approx(1e-6 + 0.25 * 9.99e-4, rel=1e-12)
    assert lrs[12] == pytest.approx(1e-6, rel=1e-9)
    assert lrs[13] == pytest.approx(5e-6 + 0.5 * 9.95e-4, rel=1e-12)
    assert lrs[14] == pytest.approx(5e-6, rel=1e-9)
    assert lrs[16] == pytest.approx(5e-6, rel=1e-12)  # after the last period: the last minimum
    with pytest.raises(ValueError, match='same length, got 2, 1, 2'):
        CosineAnnealingRestartCyclicLR(_optimizer(), periods=[4, 8], restart_weights=[1], eta_mins=[0, 0])


def test_airnet_steps_by_hand():
    """Encoder stage: 1e-3 halved every 4 iterations until 10; then the restore lr (default: a tenth of the base)
    times 0.2 every 3 iterations."""
    sched = AirNetStepLR(_optimizer(), encoder_step=4, restore_step=3, encoder_iters=10, encoder_gamma=0.5,
                         restore_gamma=0.2)
    expected = {0: 1e-3, 3: 1e-3, 4: 5e-4, 8: 2.5e-4, 9: 2.5e-4, 10: 1e-4, 12: 1e-4, 13: 2e-5, 16: 4e-6}
    assert {i: sched.lr_at(i, 1e-3) for i in expected} == pytest.approx(expected, rel=1e-12)
    given = AirNetStepLR(_optimizer(), encoder_step=4, restore_step=3, encoder_iters=10, restore_lr=3e-4,
                         restore_gamma=0.2)
    assert given.lr_at(7, 1e-3) == pytest.approx(1e-4) and given.lr_at(10, 1e-3) == pytest.approx(3e-4)
    assert given.lr_at(13, 1e-3) == pytest.approx(6e-5)
    no_encoder = AirNetStepLR(_optimizer(), encoder_step=4, restore_step=3)  # encoder_iters 0: restore from the start
    assert no_encoder.lr_at(0, 1e-3) == pytest.approx(1e-4) and no_encoder.lr_at(3, 1e-3) == pytest.approx(5e-5)
    official = AirNetStepLR(_optimizer(), encoder_step=60, restore_step=125, encoder_iters=100, restore_lr=1e-4)
    assert official.lr_at(59, 1e-3) == pytest.approx(1e-3) and official.lr_at(60, 1e-3) == pytest.approx(1e-4)
    for steps in ((0, 3), (4, 0)):
        with pytest.raises(ValueError, match='must be >= 1'):
            AirNetStepLR(_optimizer(), *steps)
    assert AirNetStepLR(_optimizer(), 1, 1, encoder_iters=3).lr_at(2, 1e-3) == pytest.approx(1e-5)  # steps of 1


def test_build_scheduler_by_name_gives_the_schedules():
    """Built from option keys: the same learning rates as the classes; AirNetStepLR takes encoder_iters from
    train when its section has none; the option dict is left as it was; torch's classes by name."""
    keys = {'type': 'AirNetStepLR', 'encoder_step': 4, 'restore_step': 3, 'encoder_gamma': 0.5}
    built = build_scheduler(_optimizer(), keys, {'encoder_iters': 10})
    assert keys == {'type': 'AirNetStepLR', 'encoder_step': 4, 'restore_step': 3, 'encoder_gamma': 0.5}
    assert built.encoder_iters == 10 and built.lr_at(9, 1e-3) == pytest.approx(2.5e-4)
    assert build_scheduler(_optimizer(), dict(keys, encoder_iters=6), {'encoder_iters': 10}).encoder_iters == 6
    assert build_scheduler(_optimizer(), keys, {}).encoder_iters == 0
    assert build_scheduler(_optimizer(), keys).encoder_iters == 0
    warm = build_scheduler(_optimizer(), {'type': 'LinearWarmupCosineLR', 'warmup_iters': 4, 'max_iters': 12,
                                          'warmup_start_lr': 1e-5, 'eta_min': 1e-4}, {'encoder_iters': 10})
    assert _lrs(warm, 3)[2] == pytest.approx(5.05e-4)
    step = build_scheduler(_optimizer(), {'type': 'StepLR', 'step_size': 3, 'gamma': 0.5})
    assert _lrs(step, 7) == pytest.approx([1e-3] * 3 + [5e-4] * 3 + [2.5e-4])
    restart = build_scheduler(_optimizer(), {'type': 'MultiStepRestartLR', 'milestones': [2], 'gamma': 0.1})
    assert _lrs(restart, 4) == pytest.approx([1e-3, 1e-3, 1e-4, 1e-4])
    cosine = build_scheduler(_optimizer(), {'type': 'CosineAnnealingRestartLR', 'periods': [4], 'eta_min': 2e-4})
    assert _lrs(cosine, 3)[2] == pytest.approx(6e-4)
    for bad, message in (({'type': 'Nope'}, "Unknown scheduler type 'Nope'"), ({}, 'needs a `type`'),
                         ({'type': 'StepLR', 'stepsize': 3}, r'train.scheduler \(StepLR\)')):
        with pytest.raises(ValueError, match=message):
            build_scheduler(_optimizer(), bad)


def test_scheduler_class_knows_schedulers_only():
    assert scheduler_class('LinearWarmupCosineLR') is LinearWarmupCosineLR
    assert scheduler_class('StepLR') is torch.optim.lr_scheduler.StepLR
    assert scheduler_class('ReduceLROnPlateau') is torch.optim.lr_scheduler.ReduceLROnPlateau
    assert scheduler_class('Optimizer') is None  # a class of that module, not a scheduler
    assert scheduler_class('math') is None and scheduler_class('Nope') is None and scheduler_class(3) is None


def test_build_optimizer_applies_every_key():
    params = [torch.nn.Parameter(torch.zeros(1))]
    adamw = build_optimizer(params, {'type': 'AdamW', 'lr': 1e-3, 'weight_decay': 0.01, 'betas': [0.8, 0.99]})
    assert isinstance(adamw, torch.optim.AdamW)
    assert adamw.defaults['lr'] == 1e-3 and adamw.defaults['weight_decay'] == 0.01
    assert adamw.defaults['betas'] == (0.8, 0.99)
    sgd = build_optimizer(params, {'type': 'SGD', 'lr': 0.5, 'momentum': 0.9})  # no betas
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults['momentum'] == 0.9
    for bad, message in (({'type': 'Adamm', 'lr': 1e-3}, 'torch.optim class'), ({'lr': 1e-3}, 'None'),
                         ({'type': 'lr_scheduler'}, 'Unknown optimizer'),
                         ({'type': 'SGD', 'lr': 1e-3, 'betas': [0.9, 0.9]}, r'train.optim_g \(SGD\)')):
        with pytest.raises(ValueError, match=message):
            build_optimizer(params, bad)


@pytest.mark.parametrize('scheduler, total, expected', [
    ({'type': 'LinearWarmupCosineLR', 'warmup_iters': 100, 'max_iters': 300}, 100,
     ['train:scheduler:warmup_iters 100 >= train:total_iter 100: the run ends during the linear warm-up, before the '
      'lr reaches train:optim_g:lr; scale the schedule with total_iter']),
    ({'type': 'LinearWarmupCosineLR', 'warmup_iters': 10, 'max_iters': 100}, 150,
     ['train:scheduler:max_iters end at iteration 100, before train:total_iter 150: the last 50 iterations run at '
      'the final lr']),
    ({'type': 'LinearWarmupCosineLR', 'warmup_iters': 10, 'max_iters': 300}, 200, []),  # exactly 2/3: fine
    ({'type': 'LinearWarmupCosineLR', 'warmup_iters': 10, 'max_iters': 300}, 199,
     ['train:total_iter 199 stops at 66% of train:scheduler:max_iters 300: the lr is still high when the run ends; '
      'scale the schedule with total_iter']),
    ({'type': 'LinearWarmupCosineLR', 'warmup_iters': 10, 'max_iters': 300.0}, 300, []),
    ({'type': 'CosineAnnealingRestartCyclicLR', 'periods': [40, 60]}, 120,
     ['train:scheduler:periods (sum 100) end at iteration 100, before train:total_iter 120: the last 20 iterations '
      'run at the final lr']),
    ({'type': 'CosineAnnealingRestartLR', 'periods': [40, 60]}, 50,
     ['train:total_iter 50 stops at 50% of train:scheduler:periods (sum 100) 100: the lr is still high when the run '
      'ends; scale the schedule with total_iter']),
    ({'type': 'CosineAnnealingRestartLR', 'periods': ['40', 60]}, 500, []),  # not numbers: the schema says so
    ({'type': 'CosineAnnealingRestartLR', 'periods': [True, 60]}, 500, []),
    ({'type': 'CosineAnnealingRestartLR', 'periods': 60}, 500, []),
    ({'type': 'CosineAnnealingLR', 'T_max': 80}, 100,
     ['train:scheduler:T_max end at iteration 80, before train:total_iter 100: the last 20 iterations run at the '
      'final lr']),
    ({'type': 'CosineAnnealingLR', 'T_max': 1}, 5,
     ['train:scheduler:T_max end at iteration 1, before train:total_iter 5: the last 4 iterations run at the final lr']),
    ({'type': 'CosineAnnealingLR', 'T_max': True}, 100, []),
    ({'type': 'CosineAnnealingLR', 'T_max': 0}, 100, []),
    ({'type': 'MultiStepRestartLR', 'milestones': [50, 100, 150, 200]}, 100,
     ['train:scheduler:milestones [150, 200] are beyond train:total_iter 100: never reached']),
    ({'type': 'MultiStepLR', 'milestones': (60, 101)}, 100,
     ['train:scheduler:milestones [101] are beyond train:total_iter 100: never reached']),
    ({'type': 'MultiStepLR'}, 100, []),
    ({'type': 'StepLR', 'step_size': 1000}, 100, []),
])
def test_horizon_warnings(scheduler, total, expected):
    assert horizon_warnings(scheduler, {'total_iter': total}) == expected
    assert EARLY_STOP_SHARE == pytest.approx(2 / 3)  # the cosine lr is at a quarter of its peak there
    assert 0.5 * (1 + math.cos(math.pi * EARLY_STOP_SHARE)) == pytest.approx(0.25)
