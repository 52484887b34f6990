"""Reliability end to end through the real CLI: kill -9 and resume, a kill during a checkpoint write,
SIGTERM pre-emption, non-finite losses, 2-process DDP on CPU (gloo), determinism."""
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from cli_helpers import dump, paired_set, run_cli, torchrun_train, train_options, write_pairs

pytestmark = pytest.mark.slow

TINY_RESTORMER = {'type': 'Restormer', 'dim': 8, 'num_blocks': [1, 1, 1, 1], 'num_refinement_blocks': 1,
                  'heads': [1, 1, 1, 1], 'ffn_expansion_factor': 1.0}

# Test-only plugin: a loss that turns NaN on chosen calls, a torch.save that dies mid-write at a chosen
# iteration, and a model that records per-rank weights and the samples it trained on.
PLUGIN = textwrap.dedent('''
    import os, signal
    import torch
    from basicsr.losses.basic_loss import L1Loss
    from basicsr.utils.registry import LOSS_REGISTRY, MODEL_REGISTRY
    from promptir_basicsr.models.all_in_one_model import AllInOneModel
    import promptir_basicsr.utils.checkpoints as checkpoints

    @LOSS_REGISTRY.register()
    class NaNOnCallsLoss(L1Loss):
        """L1, but NaN on the calls listed in the env var NAN_CALLS (1-based)."""
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.calls = 0
            self.nan_calls = {int(v) for v in os.environ.get('NAN_CALLS', '').split(',') if v}
        def forward(self, pred, target, **kwargs):
            self.calls += 1
            loss = super().forward(pred, target, **kwargs)
            return loss * float('nan') if self.calls in self.nan_calls else loss

    DIE_AT = int(os.environ.get('DIE_DURING_STATE_SAVE', '0'))
    if DIE_AT:
        _real_save = torch.save
        class _DyingTorch:
            def __getattr__(self, name):
                return getattr(torch, name)
            @staticmethod
            def save(obj, f, *args, **kwargs):
                if isinstance(obj, dict) and obj.get('iter') == DIE_AT and 'optimizers' in obj:
                    f.write(b'half a training state')
                    f.flush()
                    os.kill(os.getpid(), signal.SIGKILL)
                return _real_save(obj, f, *args, **kwargs)
        checkpoints.torch = _DyingTorch()

    @MODEL_REGISTRY.register()
    class RankRecordingModel(AllInOneModel):
        """Records, per rank, the lq paths of every training batch and the final weights."""
        def feed_data(self, data):
            super().feed_data(data)
            if self.is_train and not self._validating:
                self.seen = getattr(self, 'seen', []) + [list(data['lq_path'])]
        def save(self, epoch, current_iter):
            super().save(epoch, current_iter)
            if current_iter == -1:
                state = self.get_bare_model(self.net_g).state_dict()
                torch.save({'seen': self.seen, 'params': state}, f"rank{self.opt['rank']}.pt")
''')


def make_run(tmp_path, name, total_iter, save_freq=5, print_freq=1, model='AllInOneModel', extra=None):
    """Tiny Restormer + AllInOneModel option file beside the test plugin; returns its path."""
    (tmp_path / 'reliability_plugin.py').write_text(PLUGIN)
    opt = train_options(tmp_path, name=name, total_iter=total_iter, network=dict(TINY_RESTORMER))
    opt = {'plugins': ['reliability_plugin'], **opt}
    opt['model_type'] = model
    opt['datasets'].pop('val_2')
    opt['train']['scheduler'] = {'type': 'MultiStepLR', 'milestones': [8], 'gamma': 0.5}
    opt['logger'].update(print_freq=print_freq, save_checkpoint_freq=save_freq)
    opt['val']['val_freq'] = 1000
    for key, value in (extra or {}).items():
        section, _, leaf = key.rpartition(':')
        node = opt
        for part in filter(None, section.split(':')):
            node = node[part]
        node[leaf] = value
    return dump(opt, tmp_path / f'{name}.yml')


def logged_iters(log_text):
    """{iteration: (lr, l_pix)} from basicsr's message logger lines."""
    found = {}
    for m in re.finditer(r'iter:\s*([\d,]+), lr:\(([\d.e+-]+),\)\].*?l_pix: ([\d.e+-]+|nan)', log_text):
        found[int(m.group(1).replace(',', ''))] = (float(m.group(2)), float(m.group(3)))
    return found


def start_training(opt_file, cwd, env=None):
    return subprocess.Popen([sys.executable, '-m', 'promptir_basicsr', 'train', '-opt', opt_file], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def wait_for(predicate, proc, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        if proc.poll() is not None:
            return predicate()
        time.sleep(0.05)
    return False


def test_kill_9_then_auto_resume_continues_the_run(tiny_data):
    tmp_path = tiny_data
    opt_file = make_run(tmp_path, 'killed', total_iter=30)
    states = tmp_path / 'experiments' / 'killed' / 'training_states'
    proc = start_training(opt_file, tmp_path)
    assert wait_for(lambda: (states / '10.state').exists(), proc), proc.stdout.read()[-3000:]
    proc.kill()  # SIGKILL, at whatever moment training is in
    proc.wait()
    newest = max(int(p.stem) for p in states.glob('*.state'))
    assert 10 <= newest < 30
    first_log = logged_iters(next((tmp_path / 'experiments' / 'killed').glob('train_*.log')).read_text())

    run_cli(['train', '-opt', opt_file, '--auto_resume'], tmp_path)
    logs = sorted((tmp_path / 'experiments' / 'killed').glob('train_*.log'))
    resumed_text = logs[-1].read_text()
    assert f'Resuming training from epoch' in resumed_text and f'iter: {newest}.' in resumed_text
    resumed = logged_iters(resumed_text)
    assert min(resumed) == newest + 1 and max(resumed) == 30  # continues, not from zero
    # Same schedule: after the milestone at 8 the lr is halved, also in the resumed process.
    assert resumed[newest + 1][0] == pytest.approx(5e-4)
    # The loss curve continues from where it was, far below the untrained start.
    assert resumed[newest + 1][1] < first_log[1][1]
    assert (states / '30.state').exists()
    assert not list((tmp_path / 'experiments').glob('killed_archived_*'))


def test_kill_during_a_state_write_leaves_resume_working(tiny_data):
    tmp_path = tiny_data
    opt_file = make_run(tmp_path, 'torn', total_iter=20)
    env = dict(os.environ, DIE_DURING_STATE_SAVE='15')
    proc = start_training(opt_file, tmp_path, env=env)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL, out[-3000:]
    states = tmp_path / 'experiments' / 'torn' / 'training_states'
    assert sorted(p.name for p in states.glob('*.state')) == ['10.state', '5.state']
    assert list(states.glob('.15.state.*.tmp'))  # the torn write stayed a temporary file

    run_cli(['train', '-opt', opt_file, '--auto_resume'], tmp_path)
    resumed_text = sorted((tmp_path / 'experiments' / 'torn').glob('train_*.log'))[-1].read_text()
    assert 'iter: 10.' in resumed_text.split('Resuming training from epoch')[1].splitlines()[0]
    assert (states / '20.state').exists()


def test_sigterm_saves_a_state_and_stops(tiny_data):
    tmp_path = tiny_data
    opt_file = make_run(tmp_path, 'preempted', total_iter=100000, save_freq=100000, print_freq=1)
    exp = tmp_path / 'experiments' / 'preempted'
    proc = start_training(opt_file, tmp_path)

    def trained_a_few():
        logs = list(exp.glob('train_*.log'))
        return bool(logs) and max(logged_iters(logs[0].read_text()) or [0]) >= 3

    assert wait_for(trained_a_few, proc), proc.stdout.read()[-3000:]
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, out[-3000:]
    states = list((exp / 'training_states').glob('*.state'))
    assert len(states) == 1
    saved_iter = int(states[0].stem)
    assert saved_iter >= 3
    assert (exp / 'models' / f'net_g_{saved_iter}.pth').exists()
    log = next(exp.glob('train_*.log')).read_text()
    assert f'Received SIGTERM: saving the training state of iteration {saved_iter}' in log
    assert 'Traceback' not in out


def test_nan_loss_stops_after_saving_the_last_good_state(tiny_data):
    tmp_path = tiny_data
    opt_file = make_run(tmp_path, 'nan_stop', total_iter=20, save_freq=100,
                        extra={'train:pixel_opt': {'type': 'NaNOnCallsLoss'}})
    proc = run_cli(['train', '-opt', opt_file], tmp_path, check=False, env=dict(os.environ, NAN_CALLS='7'))
    assert proc.returncode != 0
    assert 'Loss is nan at iteration 7: the last good state (iteration 6) was saved' in proc.stderr
    exp = tmp_path / 'experiments' / 'nan_stop'
    assert [p.name for p in (exp / 'training_states').glob('*.state')] == ['6.state']
    weights = torch.load(exp / 'models' / 'net_g_6.pth', weights_only=True)['params']
    assert all(torch.isfinite(v).all() for v in weights.values())


def test_nan_loss_skip_policy_drops_the_steps(tiny_data):
    tmp_path = tiny_data
    opt_file = make_run(tmp_path, 'nan_skip', total_iter=10, save_freq=100,
                        extra={'train:pixel_opt': {'type': 'NaNOnCallsLoss'}, 'train:nan_policy': 'skip'})
    run_cli(['train', '-opt', opt_file], tmp_path, env=dict(os.environ, NAN_CALLS='3,4'))
    exp = tmp_path / 'experiments' / 'nan_skip'
    log = next(exp.glob('train_*.log')).read_text()
    assert 'Non-finite loss (nan) at iteration 3: step skipped' in log
    assert 'Non-finite loss (nan) at iteration 4: step skipped (2 in a row' in log
    weights = torch.load(exp / 'models' / 'net_g_latest.pth', weights_only=True)['params']
    assert all(torch.isfinite(v).all() for v in weights.values())


def test_two_process_ddp_on_cpu(tmp_path):
    write_pairs(tmp_path / 'data' / 'train', 8, 32, seed=5)
    write_pairs(tmp_path / 'data' / 'valA', 2, 24, seed=6)
    opt_file = make_run(tmp_path, 'ddp', total_iter=6, save_freq=100, print_freq=2, model='RankRecordingModel',
                        extra={'datasets:train:batch_size_per_gpu': 1})
    proc = subprocess.run(torchrun_train(opt_file), cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rank0, rank1 = (torch.load(tmp_path / f'rank{r}.pt', weights_only=True) for r in (0, 1))
    for key, value in rank0['params'].items():
        assert torch.equal(value, rank1['params'][key]), key  # DDP kept the replicas identical
    assert len(rank0['seen']) == len(rank1['seen']) == 6
    # The distributed sampler gives each rank its own samples: an epoch is 8 images over 2 ranks.
    first_epoch = [set(sum(rank['seen'][:4], [])) for rank in (rank0, rank1)]
    assert not first_epoch[0] & first_epoch[1]
    assert len(first_epoch[0] | first_epoch[1]) == 8
    log = next((tmp_path / 'experiments' / 'ddp').glob('train_*.log')).read_text()
    assert 'World size (gpu number): 2' in log


def test_deterministic_runs_give_identical_losses(tiny_data):
    tmp_path = tiny_data
    losses = []
    for run in ('det_a', 'det_b'):
        opt_file = make_run(tmp_path, run, total_iter=6, save_freq=100, extra={'deterministic': True})
        run_cli(['train', '-opt', opt_file], tmp_path)
        log = next((tmp_path / 'experiments' / run).glob('train_*.log')).read_text()
        losses.append([v[1] for _, v in sorted(logged_iters(log).items())])
    assert len(losses[0]) == 6
    assert losses[0] == losses[1]
