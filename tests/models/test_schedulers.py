import math


import pytest
import torch

from promptir_basicsr.models.schedulers import (AirNetStepLR, CosineAnnealingRestartCyclicLR, LinearWarmupCosineLR,
                                                build_optimizer, build_scheduler)

# stepping a scheduler without optimizer steps is the point of these tests
pytestmark = pytest.mark.filterwarnings('ignore:Detected call of `lr_scheduler.step')


def _optimizer(lr=2e-4):
    return torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def _lrs(scheduler, upto):
    """lr after 0..upto-1 scheduler steps (basicsr steps once per iteration from iteration 2)."""
    values = []
    for _ in range(upto):
        values.append(scheduler.optimizer.param_groups[0]['lr'])
        scheduler.step()
    return values


def test_warmup_cosine_values_at_chosen_iterations():
    sched = LinearWarmupCosineLR(_optimizer(2e-4), warmup_iters=10, max_iters=110)
    lrs = _lrs(sched, 131)
    assert lrs[0] == 0.0  # Lightning-bolts' default warmup_start_lr
    assert lrs[5] == pytest.approx(1e-4)
    assert lrs[10] == pytest.approx(2e-4)
    assert lrs[60] == pytest.approx(1e-4)  # half-way down the cosine
    assert lrs[35] == pytest.approx(1e-4 * (1 + math.cos(math.pi * 0.25)))
    assert lrs[110] == pytest.approx(0.0, abs=1e-12)
    assert lrs[130] == pytest.approx(0.0, abs=1e-12)  # stays at eta_min after max_iters


def test_warmup_cosine_official_epoch_staircase_and_resume():
    per_epoch = 4451
    sched = LinearWarmupCosineLR(_optimizer(2e-4), warmup_iters=15 * per_epoch, max_iters=150 * per_epoch,
                                 step_size=per_epoch)
    assert sched.lr_at(per_epoch - 1, 2e-4) == 0.0
    assert sched.lr_at(per_epoch, 2e-4) == pytest.approx(2e-4 / 15)
    assert sched.lr_at(120 * per_epoch, 2e-4) == pytest.approx(1e-4 * (1 + math.cos(math.pi * 105 / 135)))
    # a resumed scheduler continues from its state
    opt = _optimizer()
    first = LinearWarmupCosineLR(opt, warmup_iters=4, max_iters=20)
    _lrs(first, 7)
    second = LinearWarmupCosineLR(_optimizer(), warmup_iters=4, max_iters=20)
    second.load_state_dict(first.state_dict())
    second.step()
    first.step()
    assert second.get_last_lr() == pytest.approx(first.get_last_lr())


def test_cyclic_cosine_restormer():
    sched = CosineAnnealingRestartCyclicLR(_optimizer(3e-4), periods=[10, 20], restart_weights=[1, 1],
                                           eta_mins=[3e-4, 1e-6])
    lrs = _lrs(sched, 35)
    assert lrs[0] == pytest.approx(3e-4) and lrs[10] == pytest.approx(3e-4)  # eta_min = lr: flat first period
    assert lrs[20] == pytest.approx(1e-6 + 0.5 * (3e-4 - 1e-6))
    assert lrs[30] == pytest.approx(1e-6)
    assert lrs[34] == pytest.approx(1e-6)


def test_airnet_steps():
    sched = AirNetStepLR(_optimizer(1e-3), encoder_iters=100, encoder_step=60, restore_lr=1e-4, restore_step=125)
    assert sched.lr_at(0, 1e-3) == pytest.approx(1e-3)
    assert sched.lr_at(59, 1e-3) == pytest.approx(1e-3)
    assert sched.lr_at(60, 1e-3) == pytest.approx(1e-4)
    assert sched.lr_at(100, 1e-3) == pytest.approx(1e-4)
    assert sched.lr_at(224, 1e-3) == pytest.approx(1e-4)
    assert sched.lr_at(225, 1e-3) == pytest.approx(5e-5)
    assert sched.lr_at(350, 1e-3) == pytest.approx(2.5e-5)


def test_build_by_name():
    opt = _optimizer()
    assert isinstance(build_scheduler(opt, {'type': 'AirNetStepLR', 'encoder_step': 5, 'restore_step': 5},
                                      {'encoder_iters': 7}), AirNetStepLR)
    assert type(build_scheduler(_optimizer(), {'type': 'CosineAnnealingRestartLR', 'periods': [5]})).__name__ == \
        'CosineAnnealingRestartLR'
    assert type(build_scheduler(_optimizer(), {'type': 'MultiStepRestartLR', 'milestones': [3]})).__name__ == \
        'MultiStepRestartLR'
    assert type(build_scheduler(_optimizer(), {'type': 'StepLR', 'step_size': 3})).__name__ == 'StepLR'
    with pytest.raises(ValueError, match='Unknown scheduler'):
        build_scheduler(_optimizer(), {'type': 'Nope'})
    params = [torch.nn.Parameter(torch.zeros(1))]
    adamw = build_optimizer(params, {'type': 'AdamW', 'lr': 1e-3, 'weight_decay': 0.01, 'betas': [0.9, 0.999]})
    assert isinstance(adamw, torch.optim.AdamW) and adamw.defaults['betas'] == (0.9, 0.999)
    with pytest.raises(ValueError, match='torch.optim'):
        build_optimizer(params, {'type': 'Adamm', 'lr': 1e-3})
