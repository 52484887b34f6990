"""TrainingGuardsMixin inside AllInOneModel: non-finite weights are never saved, ``nan_max_skips`` bounds
the skipped steps, ``deterministic: true`` switches torch to deterministic algorithms."""
import os

import pytest
import torch

from model_test_helpers import build
from promptir_basicsr.models.training_guards import NonFiniteLossError, configure_determinism

NAN = torch.tensor(float('nan'))


def test_non_finite_weights_are_never_written_over_good_checkpoints(tiny_opt, tmp_path):
    """Guards the refusal in save(): a NaN weight must not replace the last good net_g/state files."""
    model = build(tiny_opt())
    model.save(0, 5)
    model.save(0, -1)  # the end of a run: net_g_latest.pth
    good = {name: (tmp_path / sub / name).read_bytes() for sub, name in
            (('models', 'net_g_5.pth'), ('models', 'net_g_latest.pth'), ('training_states', '5.state'))}
    with torch.no_grad():
        model.net_g.body[0].weight[0, 0, 0, 0] = float('inf')
    with pytest.raises(NonFiniteLossError, match=r'Not saving iteration 6: weight body\.0\.weight is not finite'):
        model.save(0, 6)
    with pytest.raises(NonFiniteLossError):
        model.save(0, -1)  # nor over net_g_latest.pth
    for sub, name in (('models', 'net_g_5.pth'), ('models', 'net_g_latest.pth'), ('training_states', '5.state')):
        assert (tmp_path / sub / name).read_bytes() == good[name], name
    assert sorted(os.listdir(tmp_path / 'models')) == ['net_g_5.pth', 'net_g_latest.pth']
    assert os.listdir(tmp_path / 'training_states') == ['5.state']


def test_nan_max_skips_stops_after_that_many_consecutive_skips(tiny_opt, tmp_path):
    """Guards the bound of nan_policy: skip: with nan_max_skips 2 the third non-finite loss in a row stops
    the run and saves the state of the last good iteration (before the three), and a finite loss in
    between resets the count."""
    model = build(tiny_opt(train={'nan_policy': 'skip', 'nan_max_skips': 2}))
    assert model.loss_is_finite(torch.tensor(1.0), 1)
    assert not model.loss_is_finite(NAN, 2)
    assert model.loss_is_finite(torch.tensor(1.0), 3)  # resets the count
    assert not model.loss_is_finite(NAN, 4)
    assert not model.loss_is_finite(torch.tensor(float('inf')), 5)
    with pytest.raises(NonFiniteLossError, match='Loss is nan at iteration 6: the last good state '
                                                 r'\(iteration 3\) was saved'):
        model.loss_is_finite(NAN, 6)
    assert os.listdir(tmp_path / 'training_states') == ['3.state']
    assert torch.load(tmp_path / 'training_states' / '3.state', weights_only=True)['iter'] == 3


def test_skipped_step_clears_the_gradients(tiny_opt):
    """A skipped step must not leave this step's (NaN) gradients for the next optimizer step."""
    model = build(tiny_opt(train={'nan_policy': 'skip'}))
    model.net_g(torch.rand(1, 3, 8, 8)).mean().backward()
    assert not model.loss_is_finite(NAN, 1)
    assert all(p.grad is None for p in model.net_g.parameters())


def test_deterministic_option_turns_on_deterministic_algorithms():
    """Guards `deterministic: true` against becoming a no-op (the end-to-end check is in tests/basicsr_patches/test_reliability_end_to_end.py)."""
    before = torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark, \
        torch.backends.cudnn.deterministic
    try:
        torch.use_deterministic_algorithms(False)
        configure_determinism({})
        assert not torch.are_deterministic_algorithms_enabled()
        configure_determinism({'deterministic': True})
        assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = before[1], before[2]


def _types(value):
    """The value's structure with each leaf replaced by its type."""
    if isinstance(value, dict):
        return {k: _types(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_types(v) for v in value]
    return type(value)


def test_best_metric_records_are_saved_as_plain_python_and_resumed(tiny_opt, tmp_path):
    """The training state keeps the best-metric records as plain Python (keys str; numpy and torch numbers float;
    ints, bools, None and strings as they are; tuples as lists), so it loads with weights_only=True, and a resumed
    model gets them back."""
    import numpy as np
    from promptir_basicsr.models.training_guards import _plain
    record = {'setA': {'psnr': {'better': 'higher', 'val': np.float64(30.25), 'iter': 7}},
              5: [np.float32(0.5), (True, None, 'x', 3), torch.tensor(2.5)]}
    plain = {'setA': {'psnr': {'better': 'higher', 'val': 30.25, 'iter': 7}}, '5': [0.5, [True, None, 'x', 3], 2.5]}
    assert _plain(record) == plain
    assert _types(_plain(record)) == {'setA': {'psnr': {'better': str, 'val': float, 'iter': int}},
                                      '5': [float, [bool, type(None), str, int], float]}
    model = build(tiny_opt())
    model.best_metric_results = record
    model.save_training_state(4, 9)
    state = torch.load(tmp_path / 'training_states' / '9.state', weights_only=True)
    assert (state['epoch'], state['iter'], state['best_metric_results']) == (4, 9, plain)
    resumed = build(tiny_opt())
    resumed.resume_training(state)
    assert resumed.best_metric_results == plain
    resumed.resume_training(dict(state, best_metric_results={}))  # a state without records keeps the model's
    assert resumed.best_metric_results == plain


def test_a_state_saved_by_the_guards_records_the_samplers_epoch(tiny_opt, tmp_path, monkeypatch):
    """The last good state saved before a non-finite loss stops the run carries the epoch train_pipeline is in
    (EnlargedSampler.current_epoch), 0 when no epoch was recorded."""
    from basicsr.data.data_sampler import EnlargedSampler
    for epoch, expected in ((7, 7), (None, 0)):
        if epoch is None:
            monkeypatch.delattr(EnlargedSampler, 'current_epoch', raising=False)
        else:
            monkeypatch.setattr(EnlargedSampler, 'current_epoch', epoch, raising=False)
        model = build(tiny_opt())
        with pytest.raises(NonFiniteLossError):
            model.loss_is_finite(NAN, 3)
        assert torch.load(tmp_path / 'training_states' / '2.state', weights_only=True)['epoch'] == expected


def test_a_stop_signal_saves_this_iteration_and_exits(tiny_opt, tmp_path, basicsr_log_warnings):
    """SIGTERM (pre-emption) during training: the handler records it and gives the next signal its default action;
    at the end of the iteration the weights and training state of that iteration are saved and the run exits with
    128 + 15. In a distributed run the ranks agree first (a stop on any rank stops all)."""
    import signal
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        model = build(tiny_opt())
        model.after_iteration(4)  # no signal: goes on, nothing saved
        assert not (tmp_path / 'training_states').exists()
        handler = signal.getsignal(signal.SIGTERM)
        assert signal.getsignal(signal.SIGINT) is handler
        handler(signal.SIGTERM, None)
        assert model._stop_signal == signal.SIGTERM and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
        with pytest.raises(SystemExit) as stopped:
            model.after_iteration(5)
        assert stopped.value.code == 128 + 15
        assert os.listdir(tmp_path / 'training_states') == ['5.state']
        assert os.listdir(tmp_path / 'models') == ['net_g_5.pth']
        assert basicsr_log_warnings[0].startswith('Received SIGTERM: saving the training state of iteration 5')
        assert basicsr_log_warnings[-1] == 'Training state of iteration 5 saved; stopped.'
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class _FakeRanks:
    """torch.distributed set up, with all_reduce(MAX) taking the other rank's flag ``other``."""

    def __init__(self, other):
        self.other, self.ops = other, []

    def install(self, monkeypatch):
        import torch.distributed as dist
        monkeypatch.setattr(dist, 'is_available', lambda: True)
        monkeypatch.setattr(dist, 'is_initialized', lambda: True)
        monkeypatch.setattr(dist, 'all_reduce', self.all_reduce)
        monkeypatch.setattr(dist, 'barrier', lambda: None)
        monkeypatch.setattr(dist, 'get_rank', lambda group=None: 0)  # basicsr's get_dist_info, for master_only
        monkeypatch.setattr(dist, 'get_world_size', lambda group=None: 2)

    def all_reduce(self, tensor, op=None):
        self.ops.append(op)
        tensor.copy_(torch.maximum(tensor, torch.full_like(tensor, float(self.other))))


def test_ranks_stop_and_skip_together(tiny_opt, tmp_path, monkeypatch):
    """Distributed: a stop signal or a non-finite loss on the other rank only stops (or skips) this rank too, so
    no rank waits for the others in a collective; neither on either rank: training goes on."""
    import torch.distributed as dist
    from promptir_basicsr.models.training_guards import _any_rank
    assert _any_rank(True, 'cpu') is True and _any_rank(False, 'cpu') is False  # not distributed: this rank's
    model = build(tiny_opt(train={'nan_policy': 'skip'}))
    model.opt['dist'] = True
    for other in (False, True):
        fake = _FakeRanks(other)
        fake.install(monkeypatch)
        assert _any_rank(False, 'cpu') is other and _any_rank(True, 'cpu') is True
        assert fake.ops == [dist.ReduceOp.MAX] * 2
        assert model.loss_is_finite(torch.tensor(1.0), 3) is (not other)
        if other:
            with pytest.raises(SystemExit) as stopped:
                model.after_iteration(3)
            assert stopped.value.code == 128 + 15  # the other rank's signal is not known here: as SIGTERM
            assert os.listdir(tmp_path / 'training_states') == ['3.state']
        else:
            model.after_iteration(3)
            assert not (tmp_path / 'training_states').exists()
