"""Reliability end to end through the real CLI: kill -9 and resume, a kill during a checkpoint write,
SIGTERM and SIGINT pre-emption (a second signal quits at once), non-finite losses, EMA weights and best
metrics across a resume, 2-process DDP on CPU (gloo), determinism with threads and data workers."""
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from cli_helpers import dump, run_cli, torchrun_train, train_options, write_pairs

pytestmark = pytest.mark.slow

TINY_RESTORMER = {'type': 'Restormer', 'dim': 8, 'num_blocks': [1, 1, 1, 1], 'num_refinement_blocks': 1,
                  'heads': [1, 1, 1, 1], 'ffn_expansion_factor': 1.0}

# Test-only plugin: a loss that turns NaN on chosen calls, a torch.save that dies mid-write at a chosen
# iteration, a model that records per-rank weights and the samples it trained on, one that records what a
# resume restored, one whose stop-signal save is slow, and a network whose backward is racy on CPU threads.
PLUGIN = textwrap.dedent('''
    import os, signal, time
    import torch
    from basicsr.losses.basic_loss import L1Loss
    from basicsr.utils.registry import ARCH_REGISTRY, LOSS_REGISTRY, MODEL_REGISTRY
    from promptir_basicsr.models.all_in_one_model import AllInOneModel

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
        def _dying_save(obj, f, *args, **kwargs):
            if isinstance(obj, dict) and obj.get('iter') == DIE_AT and 'optimizers' in obj:
                f.write(b'half a training state')
                f.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            return _real_save(obj, f, *args, **kwargs)
        torch.save = _dying_save  # utils/files.atomic_save looks torch.save up at each call

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

    @MODEL_REGISTRY.register()
    class ResumeRecordingModel(AllInOneModel):
        """Writes what basicsr's resume gave the model: best metrics and EMA weights (resumed.pt)."""
        def resume_training(self, resume_state):
            super().resume_training(resume_state)
            torch.save({'best': self.best_metric_results, 'iter': resume_state['iter'],
                        'ema': self.net_g_ema.state_dict(), 'params': self.net_g.state_dict()}, 'resumed.pt')

    @MODEL_REGISTRY.register()
    class SlowStopSaveModel(AllInOneModel):
        """The save after a stop signal takes SLOW_STOP_SAVE seconds (a large checkpoint on a slow disk)."""
        def save(self, epoch, current_iter):
            if self._stop_signal is not None:
                time.sleep(float(os.environ.get('SLOW_STOP_SAVE', '0')))
            super().save(epoch, current_iter)

    @ARCH_REGISTRY.register()
    class LookupNet(torch.nn.Module):
        """A 3x3 conv plus a learned offset looked up, embedding-style, at 2M fixed indices into 4 slots.
        The lookup's backward adds 2M gradient entries into 4 slots with index_put_(accumulate=True), whose
        CPU kernel adds from several threads in a racy order unless deterministic algorithms are on."""
        def __init__(self, slots=4, lookups=2000000):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 3, 3, padding=1)
            self.table = torch.nn.Parameter(torch.zeros(slots))
            gen = torch.Generator().manual_seed(0)
            self.register_buffer('index', torch.randint(0, slots, (lookups,), generator=gen), persistent=False)
            self.register_buffer('coef', torch.randn(lookups, generator=gen), persistent=False)
        def forward(self, x):
            return x + self.conv(x) + (self.table[self.index] * self.coef).mean()
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


def start_training(opt_file, cwd, env=None, extra_args=()):
    return subprocess.Popen([sys.executable, '-m', 'promptir_basicsr', 'train', '-opt', opt_file, *extra_args],
                            cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


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
    assert 'Resuming training from epoch' in resumed_text and f'iter: {newest}.' in resumed_text
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


def _final_weights(tmp_path, run):
    return torch.load(tmp_path / 'experiments' / run / 'models' / 'net_g_latest.pth', weights_only=True)['params']


def test_deterministic_option_gives_bitwise_equal_weights_with_threads_and_workers(tiny_data):
    """Guards `deterministic: true` (a no-op fails here): 2 torch threads, 2 data-loader workers drawing
    random crops and noise, and a network whose backward accumulates with racy CPU atomics. With the option
    two runs end with bitwise-equal weights; without it the same two runs differ."""
    tmp_path = tiny_data
    data = tmp_path / 'data' / 'train'
    dataset = {'name': 'mix', 'type': 'AllInOneDataset', 'gt_size': 16, 'sources': [
        {'name': 'pairs', 'dataroot_lq': str(data / 'lq'), 'dataroot_gt': str(data / 'gt')},
        {'name': 'noise', 'dataroot_gt': str(data / 'gt'),
         'degradation': [{'type': 'gaussian_noise', 'sigma': [10, 30]}]},
    ], 'num_worker_per_gpu': 2, 'batch_size_per_gpu': 2, 'use_shuffle': True, 'dataset_enlarge_ratio': 1,
        'prefetch_mode': None}
    weights = {}
    for run, deterministic in (('det_a', True), ('det_b', True), ('free_a', False), ('free_b', False)):
        opt_file = make_run(tmp_path, run, total_iter=6, save_freq=100, print_freq=100,
                            extra={'deterministic': deterministic, 'cpu_threads': 2, 'datasets:train': dataset,
                                   'network_g': {'type': 'LookupNet'}})
        run_cli(['train', '-opt', opt_file], tmp_path)
        weights[run] = _final_weights(tmp_path, run)
    assert weights['det_a'].keys() == {'conv.weight', 'conv.bias', 'table'}
    assert not torch.equal(weights['det_a']['table'], torch.zeros(4))  # the racy path really trained
    for key in weights['det_a']:
        assert torch.equal(weights['det_a'][key], weights['det_b'][key]), key
    assert any(not torch.equal(weights['free_a'][key], weights['free_b'][key]) for key in weights['free_a'])


def test_sigint_saves_a_state_and_a_second_signal_quits_at_once(tiny_data):
    """Guards Ctrl-C: the first SIGINT saves the state of the current iteration and exits 130; a second
    one during that save (here made slow) ends the process at once with SIGINT's default action, writing
    nothing (the handler must restore the default after the first signal)."""
    tmp_path = tiny_data
    opt_file = make_run(tmp_path, 'ctrl_c', total_iter=100000, save_freq=100000, model='SlowStopSaveModel')
    exp = tmp_path / 'experiments' / 'ctrl_c'

    def new_log(logs_before):
        logs = sorted(set(exp.glob('train_*.log')) - logs_before)
        return logs[-1].read_text() if logs else ''

    def trained_to(iteration, logs_before):
        return max(logged_iters(new_log(logs_before)) or [0]) >= iteration

    proc = start_training(opt_file, tmp_path)
    assert wait_for(lambda: trained_to(2, set()), proc), proc.stdout.read()[-3000:]
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGINT, out[-3000:]
    states = sorted(int(p.stem) for p in (exp / 'training_states').glob('*.state'))
    assert len(states) == 1 and states[0] >= 2 and 'Traceback' not in out
    assert (exp / 'models' / f'net_g_{states[0]}.pth').exists()

    logs_before = set(exp.glob('train_*.log'))
    proc = start_training(opt_file, tmp_path, env=dict(os.environ, SLOW_STOP_SAVE='60'), extra_args=['--auto_resume'])
    assert wait_for(lambda: trained_to(states[0] + 2, logs_before), proc), proc.stdout.read()[-3000:]
    proc.send_signal(signal.SIGINT)
    assert wait_for(lambda: 'Received SIGINT: saving the training state' in new_log(logs_before), proc)
    start = time.time()
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGINT, out[-3000:]
    assert time.time() - start < 30  # at once, not after the 60 s save
    assert sorted(int(p.stem) for p in (exp / 'training_states').glob('*.state')) == states  # nothing new written
    assert not list((exp / 'training_states').glob('.*.tmp'))


def test_ema_weights_and_best_metrics_survive_a_resume(tiny_data):
    """Guards resume of the EMA copy (net_g_ema from params_ema, not from the raw weights or a fresh copy)
    and of the best metrics (kept in our training states): what the resumed model holds equals what the
    interrupted run saved."""
    tmp_path = tiny_data
    opt_file = make_run(tmp_path, 'ema_run', total_iter=6, save_freq=6, model='ResumeRecordingModel',
                        extra={'train:ema_decay': 0.5, 'val:val_freq': 3})
    run_cli(['train', '-opt', opt_file], tmp_path)
    exp = tmp_path / 'experiments' / 'ema_run'
    state = torch.load(exp / 'training_states' / '6.state', weights_only=True)
    saved = torch.load(exp / 'models' / 'net_g_6.pth', weights_only=True)
    best = state['best_metric_results']['valA']['psnr']
    assert best['iter'] in (3, 6) and best['val'] > 10

    run_cli(['train', '-opt', opt_file, '--auto_resume', '--force_yml', 'train:total_iter=7'], tmp_path)
    resumed = torch.load(tmp_path / 'resumed.pt', weights_only=True)
    assert resumed['iter'] == 6 and resumed['best'] == state['best_metric_results']
    assert any(not torch.equal(saved['params'][k], saved['params_ema'][k]) for k in saved['params'])
    for key, value in saved['params_ema'].items():
        assert torch.equal(resumed['ema'][key], value), key
    for key, value in saved['params'].items():
        assert torch.equal(resumed['params'][key], value), key
