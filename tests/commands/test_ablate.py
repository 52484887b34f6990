"""`basicsr ablate` on two tiny option files: trains each over two seeds, tests each
with one test option file, writes the table (Markdown + JSON) and the chart, and reuses finished runs."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from cli_helpers import paired_set

from promptir_basicsr import cli
from promptir_basicsr.commands.ablate import Slots, command, main
from promptir_basicsr.errors import UserError
from promptir_basicsr.archs.compute_match import network_cost

REPO = Path(__file__).resolve().parents[2]
NETWORKS = {
    'tiny_promptir': dict(type='PromptIR', dim=4, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1,
                          heads=[1, 1, 1, 1], ffn_expansion_factor=2, prompt_len=2, prompt_dims=[4, 4, 4],
                          prompt_sizes=[4, 4, 4], keep_unused_modules=False),
    'tiny_restormer': dict(type='Restormer', dim=4, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1,
                           heads=[1, 1, 1, 1], ffn_expansion_factor=2),
}


def _train_file(root, name):
    train_set = dict(paired_set('train', root / 'data' / 'train', 'train'), batch_size_per_gpu=2, gt_size=16)
    opt = {'name': name, 'model_type': 'AllInOneModel', 'scale': 1, 'num_gpu': 'auto', 'manual_seed': 5,
           'datasets': {'train': train_set}, 'network_g': NETWORKS[name], 'path': {'strict_load_g': True},
           'train': {'total_iter': 40, 'optim_g': {'type': 'Adam', 'lr': 1e-3}},  # forced to 2 by the command
           'val': {'val_freq': 2, 'table_name': name.replace('_', ' ')},
           'logger': {'print_freq': 1, 'save_checkpoint_freq': 2}}
    path = root / f'{name}.yml'
    path.write_text('# a tiny ablation variant\n' + yaml.safe_dump(opt, sort_keys=False))
    return path.name


def _test_file(root):
    metrics = {'psnr': {'type': 'calculate_psnr_protocol'}, 'ssim': {'type': 'calculate_ssim_protocol'}}
    opt = {'name': 'ignored', 'model_type': 'AllInOneModel', 'scale': 1, 'num_gpu': 'auto',
           'datasets': {f'test_{i}': paired_set(name, root / 'data' / name, 'test') for i, name in
                        enumerate(('valA', 'valB'), start=1)},
           'network_g': NETWORKS['tiny_promptir'], 'path': {'pretrain_network_g': None},
           'val': {'metrics': metrics}}
    (root / 'test.yml').write_text('# the common test file\n' + yaml.safe_dump(opt, sort_keys=False))
    return 'test.yml'


def _arguments(root, *files):
    return [*files, '--test-opt', _test_file(root), '--seeds', '2', '--jobs', '2', '-o', 'out', '--force_yml',
            'train:total_iter=2']


@pytest.mark.slow
def test_run_ablation_writes_table_and_chart_and_reuses_runs(tiny_data, monkeypatch, capsys):
    """Guards: seeds that do not change the run (std 0), a mean or std computed over the wrong values, the
    average taken over seeds' means instead of per seed, a reference comparison against the wrong row, missing
    prompt scores, and retraining of finished runs."""
    root = tiny_data
    files = [_train_file(root, name) for name in NETWORKS]
    proc = subprocess.run([sys.executable, '-m', 'promptir_basicsr', 'ablate', *_arguments(root, *files)],
                          cwd=root, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert '0 finished before, 4 to train' in proc.stdout
    models = sorted(p.name for p in (root / 'experiments' / 'tiny_promptir_seed1' / 'models').iterdir())
    assert models == ['net_g_2.pth', 'net_g_latest.pth']  # --force_yml reached the training

    table = json.loads((root / 'out' / 'ablation.json').read_text())
    assert table['sets'] == ['valA', 'valB'] and table['metrics'] == ['psnr', 'ssim']
    assert table['reference'] == 'tiny promptir'
    promptir, restormer = table['rows']
    for row, name in ((promptir, 'tiny_promptir'), (restormer, 'tiny_restormer')):
        assert row['seeds'] == [0, 1]
        per_seed = [json.loads((root / 'results' / f'{name}_seed{s}_test' / 'results_table.json').read_text())
                    for s in (0, 1)]
        for metric in ('psnr', 'ssim'):
            values = {name_: [t['rows'][0]['results'][name_][metric] for t in per_seed] for name_ in ('valA', 'valB')}
            values['Average'] = [t['rows'][0]['average'][metric] for t in per_seed]
            for column, seeds in values.items():
                cell = row['metrics'][metric][column]
                assert cell['values'] == pytest.approx(seeds)
                assert cell['mean'] == pytest.approx(np.mean(seeds)) and cell['std'] == pytest.approx(np.std(seeds, ddof=1))
        assert row['metrics']['psnr']['valA']['std'] > 0  # the seed reached the network and the data
        cost = network_cost(NETWORKS[name])
        assert (row['params'], row['macs']) == (cost.params, cost.macs)
    assert promptir['specialisation']['n'] == 2 and restormer['specialisation'] is None
    versus = restormer['vs_reference']['psnr']['Average']
    assert versus['difference'] == pytest.approx(restormer['metrics']['psnr']['Average']['mean']
                                                 - promptir['metrics']['psnr']['Average']['mean'])
    spread = max(promptir['metrics']['psnr']['Average']['std'], restormer['metrics']['psnr']['Average']['std'])
    assert versus['verdict'] == ('within' if abs(versus['difference']) <= spread else 'beyond')

    markdown = (root / 'out' / 'ablation.md').read_text()
    assert '| tiny restormer | 2 |' in markdown and f'{versus["verdict"]} the seed spread' in markdown
    mark = ' ≈' if versus['verdict'] == 'within' else ''
    assert '| tiny restormer | ' in markdown.split('| PSNR minus tiny promptir |')[1]
    assert f"{versus['difference']:+.2f}{mark} |" in markdown.split('| PSNR minus tiny promptir |')[1]
    chart = cv2.imread(str(root / 'out' / 'ablation.png'))
    assert chart is not None and chart.shape[0] > 200 and chart.shape[1] > 400

    monkeypatch.chdir(root)  # again, in this process: everything is reused
    assert main(_arguments(root, *files)) == 0
    again = capsys.readouterr().out
    assert '4 finished before, 0 to train' in again and 'testing' not in again and 'recording' not in again
    assert not list((root / 'experiments').glob('*archived*'))
    assert json.loads((root / 'out' / 'ablation.json').read_text()) == table


def test_runs_share_out_the_devices():
    """--devices 0,1,2,3 --gpus-per-run 2: two runs side by side, each seeing its own two GPUs and training under
    torchrun with DDP; tests use one GPU; no --devices: the environment's. Guards runs piling onto one GPU."""
    assert Slots(devices='0,1,2,3', gpus_per_run=2).groups == [['0', '1'], ['2', '3']]
    assert Slots(jobs=3).groups == [None, None, None]
    with pytest.raises(UserError, match='groups of --gpus-per-run 2'):
        Slots(devices='0,1,2', gpus_per_run=2)
    argv, env = command(['train', '-opt', 'a.yml'], ['2', '3'], train=True)
    assert env['CUDA_VISIBLE_DEVICES'] == '2,3'
    assert argv[1:6] == ['-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2', '-m']
    assert argv[6:] == ['promptir_basicsr', 'train', '-opt', 'a.yml', '--launcher', 'pytorch']
    argv, env = command(['train', '-opt', 'a.yml'], ['1'], train=True)
    assert argv[1:] == ['-m', 'promptir_basicsr', 'train', '-opt', 'a.yml'] and env['CUDA_VISIBLE_DEVICES'] == '1'
    argv, env = command(['test', '-opt', 't.yml'])
    assert argv[1:] == ['-m', 'promptir_basicsr', 'test', '-opt', 't.yml']
    assert env.get('CUDA_VISIBLE_DEVICES') == os.environ.get('CUDA_VISIBLE_DEVICES')
    assert str(REPO) in env['PYTHONPATH'].split(os.pathsep)  # subprocesses run this very package


class FakeRunner:
    """Stands for the `basicsr train` / `basicsr test` subprocesses of ablate (their own tests run them): records
    each call and writes what a finished run leaves, with numbers a test can compute. Run ``v`` (index of its
    variant in NETWORKS), seed ``s``: PSNR 20 + v + 0.5 s + 0.25 k on test set k, SSIM 0.5 + 0.1 v + 0.01 s;
    trained in 30 + s seconds; prompt specialisation scores 0.2 and 0.4 (mean 0.3)."""

    def __init__(self, fail=(), seconds=30.0, fail_tests=(), weights_on_failure=False, prompts=True):
        self.calls, self.fail, self.seconds, self.fail_tests = [], set(fail), seconds, set(fail_tests)
        self.weights_on_failure, self.prompts = weights_on_failure, prompts

    def _weights(self, name):
        (Path('experiments') / name / 'models').mkdir(parents=True, exist_ok=True)
        (Path('experiments') / name / 'models' / 'net_g_latest.pth').write_bytes(b'weights')

    def __call__(self, args, log_path, devices=None, train=False):
        from promptir_basicsr.utils import results_table as rt
        os.makedirs(os.path.dirname(log_path), exist_ok=True)
        Path(log_path).write_text('output of ' + ' '.join(args))
        if args[0] == 'train':
            forced = dict(entry.split('=', 1) for entry in args[args.index('--force_yml') + 1:])
            name, seed = forced['name'], int(forced['manual_seed'])
            self.calls.append(('train', name, devices, train, forced))
            if name in self.fail:
                if self.weights_on_failure:  # e.g. a crash after the first checkpoint
                    self._weights(name)
                return 1, 1.0
            self._weights(name)
            return 0, self.seconds + seed
        opt = yaml.safe_load(Path(args[2]).read_text())
        name = opt['name']
        self.calls.append(('test', name, devices, train, opt))
        if name in self.fail_tests:
            return 1, 1.0
        variant = next((i for i, v in enumerate(NETWORKS) if name.startswith(v)), 0)
        seed = int(name.split('_seed')[1].split('_')[0])
        metrics = list(opt['val']['metrics'])
        results = {s: {'psnr': 20 + variant + 0.5 * seed + 0.25 * k, 'ssim': 0.5 + 0.1 * variant + 0.01 * seed}
                   for k, s in enumerate(('valA', 'valB'))}
        inputs = {s: {'psnr': 10.0, 'ssim': 0.1} for s in results}
        folder = Path('results') / name
        # the degraded input's row first: the model's row is the one not marked as the reference
        rt.write_table(rt.make_table([rt.make_row(rt.INPUT_ROW, inputs, metrics, reference=True),
                                      rt.make_row(opt['val']['table_name'], results, metrics)], metrics), folder)
        if self.prompts:
            (folder / 'prompts').mkdir(exist_ok=True)
            (folder / 'prompts' / 'prompts.json').write_text(json.dumps(
                {'specialisation': {'prompt1': {'normalised': 0.2}, 'prompt2': {'normalised': 0.4}}}))
        return 0, 2.0


def test_ablate_plans_trains_tests_tabulates_and_reuses_in_process(tiny_data, monkeypatch, capsys):
    """The command in this process with its subprocesses replaced (FakeRunner): seed by seed, the training
    arguments (file, --force_yml entries given and the run's name and seed), the test options (the run's network,
    model, weights, table name), the table's means and standard deviations over seeds (computed here), the training
    time and prompt scores; everything reused on a second call; a changed forced option trains again; a failed
    training gives exit status 1 and a table of the runs that finished."""
    from promptir_basicsr.commands import ablate
    monkeypatch.chdir(tiny_data)
    files = [_train_file(tiny_data, name) for name in NETWORKS]
    fake = FakeRunner()
    monkeypatch.setattr(ablate, '_run_command', fake)
    assert main(_arguments(tiny_data, *files)) == 0
    printed = capsys.readouterr().out
    assert '4 runs (2 variants x 2 seeds [0, 1]): 0 finished before, 4 to train' in printed
    trains = [call for call in fake.calls if call[0] == 'train']
    assert {call[1] for call in trains[:2]} == {'tiny_promptir_seed0', 'tiny_restormer_seed0'}  # seed by seed
    assert {call[1] for call in trains[2:]} == {'tiny_promptir_seed1', 'tiny_restormer_seed1'}  # (--jobs 2)
    trains.sort(key=lambda call: call[1])
    assert all(call[4]['train:total_iter'] == '2' and call[3] and call[2] is None for call in trains)
    assert [call[4]['manual_seed'] for call in trains] == ['0', '1', '0', '1']
    tests = {call[1]: call[4] for call in fake.calls if call[0] == 'test'}
    restormer_test = tests['tiny_restormer_seed1_test']
    assert restormer_test['network_g'] == NETWORKS['tiny_restormer'] and restormer_test['model_type'] == 'AllInOneModel'
    assert restormer_test['path']['pretrain_network_g'] == os.path.join('experiments', 'tiny_restormer_seed1', 'models',
                                                                       'net_g_latest.pth')
    assert restormer_test['path']['param_key_g'] == 'params' and restormer_test['val']['table_name'] == 'tiny restormer'
    table = json.loads((tiny_data / 'out' / 'ablation.json').read_text())
    assert table['sets'] == ['valA', 'valB'] and table['reference'] == 'tiny promptir'
    for v, row in enumerate(table['rows']):
        per_seed = {s: [20 + v + 0.5 * s + 0.25 * k for k in (0, 1)] for s in (0, 1)}
        for k, name in enumerate(('valA', 'valB')):
            cell = row['metrics']['psnr'][name]
            assert cell['values'] == pytest.approx([per_seed[0][k], per_seed[1][k]])
            assert cell['mean'] == pytest.approx(20 + v + 0.25 + 0.25 * k)
            assert cell['std'] == pytest.approx(0.5 / 2 ** 0.5)  # two values 0.5 apart, ddof 1
        average = row['metrics']['psnr']['Average']
        assert average['values'] == pytest.approx([np.mean(per_seed[0]), np.mean(per_seed[1])])
        assert row['metrics']['ssim']['valB']['mean'] == pytest.approx(0.5 + 0.1 * v + 0.005)
        assert row['train_seconds']['mean'] == pytest.approx(30.5) and row['seeds'] == [0, 1]
    assert table['rows'][0]['specialisation']['mean'] == pytest.approx(0.3)  # PromptIR: prompt blocks
    assert table['rows'][1]['specialisation'] is None  # Restormer: none
    assert table['rows'][1]['vs_reference']['psnr']['Average']['difference'] == pytest.approx(1.0)
    assert (tiny_data / 'out' / 'ablation.png').is_file() and (tiny_data / 'out' / 'logs').is_dir()

    fake.calls.clear()
    assert main(_arguments(tiny_data, *files)) == 0  # again: every run reused, nothing called
    assert '4 finished before, 0 to train' in capsys.readouterr().out and fake.calls == []
    assert json.loads((tiny_data / 'out' / 'ablation.json').read_text()) == table

    changed = _arguments(tiny_data, *files)
    changed[changed.index('train:total_iter=2')] = 'train:total_iter=3'
    fake = FakeRunner()
    monkeypatch.setattr(ablate, '_run_command', fake)
    assert main(changed) == 0
    assert '0 finished before, 4 to train' in capsys.readouterr().out and len(fake.calls) == 8

    for folder in ('experiments', 'results'):  # (a failed run with an earlier test's results is not covered here)
        shutil.rmtree(tiny_data / folder)
    fake = FakeRunner(fail={'tiny_restormer_seed1'})
    monkeypatch.setattr(ablate, '_run_command', fake)
    assert main(changed) == 1
    out, err = capsys.readouterr()
    assert '0 finished before, 4 to train' in out
    assert 'error: training tiny_restormer_seed1 failed (exit status 1); see ' in err
    table = json.loads((tiny_data / 'out' / 'ablation.json').read_text())
    assert [row['seeds'] for row in table['rows']] == [[0, 1], [0]]
    assert sorted(c[1] for c in fake.calls if c[0] == 'test') == ['tiny_promptir_seed0_test', 'tiny_promptir_seed1_test',
                                                                  'tiny_restormer_seed0_test']


def _recorded_runs_without_jobs(tiny_data, monkeypatch):
    """A FakeRunner in place of ablate's commands, the arguments of the tiny networks' files without --jobs, and
    the files."""
    from promptir_basicsr.commands import ablate
    monkeypatch.chdir(tiny_data)
    files = [_train_file(tiny_data, name) for name in NETWORKS]
    fake = FakeRunner()
    monkeypatch.setattr(ablate, '_run_command', fake)
    base = _arguments(tiny_data, *files)
    return fake, base[:base.index('--jobs')] + base[base.index('--jobs') + 2:], files


def test_ablate_shares_devices_and_refuses_bad_arguments(tiny_data, monkeypatch, capsys):
    """--devices 0,1: two runs at a time, each training on its own device and testing on its first; mistakes in
    the arguments are one-line errors (exit 2) before anything runs."""
    fake, base, files = _recorded_runs_without_jobs(tiny_data, monkeypatch)
    assert main(base + ['--devices', '0,1', '--seeds', '1']) == 0
    calls = len(fake.calls)
    devices = {call[1]: call[2] for call in fake.calls}
    assert sorted(map(tuple, (devices['tiny_promptir_seed0'], devices['tiny_restormer_seed0']))) == [('0',), ('1',)]
    assert devices['tiny_promptir_seed0_test'] in (['0'], ['1'])
    capsys.readouterr()
    for extra, message in ((['--seeds', '0'], '--seeds and --jobs must be at least 1'),
                           (['--jobs', '0'], '--seeds and --jobs must be at least 1'),
                           (['--devices', '0,1,2', '--gpus-per-run', '2'], 'do not split into groups')):
        assert cli.main(['ablate', *base, *extra]) == 2
        assert message in capsys.readouterr().err
    assert cli.main(['ablate', *files, '-o', 'x']) == 2
    assert '--test-opt is needed' in capsys.readouterr().err
    same = tiny_data / 'same.yml'
    same.write_text((tiny_data / files[0]).read_text())
    assert cli.main(['ablate', files[0], 'same.yml', '--test-opt', 'test.yml']) == 2
    assert 'option files share the name tiny_promptir' in capsys.readouterr().err
    test = yaml.safe_load((tiny_data / 'test.yml').read_text())
    test['val']['metrics'] = {}
    (tiny_data / 'nometrics.yml').write_text(yaml.safe_dump(test))
    assert cli.main(['ablate', *files, '--test-opt', 'nometrics.yml']) == 2
    assert 'val:metrics is empty' in capsys.readouterr().err
    assert len(fake.calls) == calls  # the refused calls ran nothing


def test_a_comparison_file_composes_its_variants(tiny_data, monkeypatch, capsys):
    """A comparison file: each variant is the reference training file (or its own) with its `set` overrides merged
    key by key (lists replaced), named after its key, written to <output>/options/; relative paths are from the
    comparison file; the default output is results/ablation/<comparison>. Its mistakes are one-line errors."""
    from promptir_basicsr.commands import ablate
    monkeypatch.chdir(tiny_data)
    for name in NETWORKS:
        _train_file(tiny_data, name)
    _test_file(tiny_data)
    (tiny_data / 'cmp').mkdir()
    comparison = {'train': '../tiny_promptir.yml', 'test': '../test.yml', 'variants': {
        'base': {}, 'fixed': {'set': {'network_g': {'prompt_learnable': False, 'heads': [1, 1, 1, 2]},
                                      'val': {'table_name': 'fixed prompts'}}},
        'other': {'train': '../tiny_restormer.yml'}}}
    (tiny_data / 'cmp' / 'study.yml').write_text(yaml.safe_dump(comparison))
    fake = FakeRunner()
    monkeypatch.setattr(ablate, '_run_command', fake)
    variants, test_path = ablate.read_comparison(str(tiny_data / 'cmp' / 'study.yml'), 'composed')
    assert variants == [os.path.join('composed', 'options', f'{n}.yml') for n in ('base', 'fixed', 'other')]
    assert test_path == str(tiny_data / 'test.yml')
    fixed = yaml.safe_load(Path(variants[1]).read_text())
    assert fixed['name'] == 'fixed' and fixed['network_g']['prompt_learnable'] is False
    assert fixed['network_g']['heads'] == [1, 1, 1, 2] and fixed['network_g']['dim'] == 4  # merged key by key
    assert fixed['val'] == {'val_freq': 2, 'table_name': 'fixed prompts'}
    assert yaml.safe_load(Path(variants[2]).read_text())['network_g'] == NETWORKS['tiny_restormer']
    assert ablate.merge_options({'a': {'b': 1, 'c': [1]}}, {'a': {'c': [2]}, 'd': 3}, 'x') == {'a': {'b': 1, 'c': [2]},
                                                                                             'd': 3}
    assert ablate.merge_options({'a': 1}, {'a': {'b': 2}, 'n': {'m': 3}}, 'x') == {'a': {'b': 2}, 'n': {'m': 3}}
    network = {'type': 'PromptIR', 'dim': 4, 'prompt_len': 2}  # another type: replaced whole, not merged
    assert ablate.merge_options({'network_g': network}, {'network_g': {'type': 'Restormer', 'dim': 8}}, 'x') == \
        {'network_g': {'type': 'Restormer', 'dim': 8}}
    assert ablate.merge_options({'network_g': network}, {'network_g': {'type': 'PromptIR', 'dim': 8}}, 'x') == \
        {'network_g': {'type': 'PromptIR', 'dim': 8, 'prompt_len': 2}}
    for bad, message in (({'train': 'a.yml', 'variants': {'x': {}}}, '`test` (the test option file'),
                         ({'test': 'a.yml', 'variants': {}}, 'a comparison file has `train`'),
                         ({'test': 'a.yml', 'variants': {'x': {}}, 'extra': 1}, 'unknown: extra'),
                         ({'test': 'a.yml', 'variants': {'x': {'sets': {}}}}, 'variants:x: expected `train` and/or'),
                         ({'test': 'a.yml', 'variants': {'x': {}}}, 'variants:x: no training option file'),
                         ({'train': '../tiny_promptir.yml', 'test': 'a.yml', 'variants': {'x': {'set': [1]}}},
                          'bad.yml: variants:x:set: expected a mapping of option overrides, got [1]'),
                         ({'test': 'a.yml', 'variants': ['x']}, 'a comparison file has `train`'),
                         ({'test': 'a.yml', 'variants': {'x': ['set']}}, 'variants:x: expected `train` and/or `set`, '
                          'got (not a mapping)')):
        (tiny_data / 'cmp' / 'bad.yml').write_text(yaml.safe_dump(bad))
        with pytest.raises(UserError, match=re.escape(message)):
            ablate.read_comparison(str(tiny_data / 'cmp' / 'bad.yml'), 'composed')
    assert cli.main(['ablate', 'cmp/study.yml', '--test-opt', 'test.yml']) == 2
    assert 'is a comparison file, which names its test option file' in capsys.readouterr().err
    assert cli.main(['ablate', 'cmp/study.yml', '--seeds', '1']) == 0
    assert (tiny_data / 'results' / 'ablation' / 'study' / 'ablation.json').is_file()
    assert sorted(c[1] for c in fake.calls if c[0] == 'train') == ['base_seed0', 'fixed_seed0', 'other_seed0']


def test_run_command_runs_this_package_and_keeps_its_output(tmp_path):
    """The real subprocess: `basicsr --help` of this very package, its output in the log file (folders made)."""
    from promptir_basicsr.commands.ablate import _run_command
    status, seconds = _run_command(['--help'], str(tmp_path / 'logs' / 'help.log'))
    assert status == 0 and seconds > 0
    assert 'usage: basicsr' in (tmp_path / 'logs' / 'help.log').read_text()


def test_run_command_logs_both_streams_of_the_command_it_is_given(tmp_path, monkeypatch):
    """_run_command runs what command() builds for its arguments, devices and kind (its environment too), with
    stdout and stderr in the log, folders made (and reused), and returns the exit status and the seconds taken."""
    import time

    from promptir_basicsr.commands import ablate
    asked = []

    def fake_command(args, devices=None, train=False):
        asked.append((args, devices, train))
        code = ('import os, sys; print("out", os.environ["ABLATE_MARK"], flush=True); print("err", file=sys.stderr); '
                'sys.exit(3)')
        return [sys.executable, '-c', code], dict(os.environ, ABLATE_MARK='from the command')

    monkeypatch.setattr(ablate, 'command', fake_command)
    log = tmp_path / 'logs' / 'a.log'
    before = time.perf_counter()
    status, seconds = ablate._run_command(['train', '-opt', 'x.yml'], str(log), ['1', '2'], train=True)
    assert status == 3 and 0 < seconds <= time.perf_counter() - before
    assert log.read_text().splitlines() == ['out from the command', 'err']
    status, _ = ablate._run_command(['test'], str(tmp_path / 'logs' / 'b.log'))  # the folder exists now
    assert status == 3 and (tmp_path / 'logs' / 'b.log').is_file()
    assert asked == [(['train', '-opt', 'x.yml'], ['1', '2'], True), (['test'], None, False)]


def test_command_puts_this_package_first_and_keeps_the_environment(monkeypatch):
    """The subprocesses import the package this process runs (its folder first on PYTHONPATH, the user's entries
    after it), with the rest of the environment; a test on two devices is one process (only training uses DDP)."""
    import promptir_basicsr
    root = os.path.dirname(os.path.dirname(os.path.abspath(promptir_basicsr.__file__)))
    monkeypatch.setenv('ABLATE_OTHER', 'kept')
    monkeypatch.setenv('PYTHONPATH', os.pathsep.join(['/elsewhere', '/more']))
    argv, env = command(['test', '-opt', 't.yml'], ['0', '1'])
    assert env['PYTHONPATH'].split(os.pathsep) == [root, '/elsewhere', '/more'] and env['ABLATE_OTHER'] == 'kept'
    assert argv == [sys.executable, '-m', 'promptir_basicsr', 'test', '-opt', 't.yml']
    assert env['CUDA_VISIBLE_DEVICES'] == '0,1'
    monkeypatch.delenv('PYTHONPATH')
    assert command(['test'])[1]['PYTHONPATH'] == root


def test_slots_defaults_and_device_lists():
    assert Slots().groups == [None]  # one run at a time
    assert Slots(devices='0,1,2').groups == [['0'], ['1'], ['2']]  # one GPU per run unless told
    assert Slots(devices=' 3 , 5,').groups == [['3'], ['5']]
    for devices, per_run in ((',', 1), ('0,1', 0), ('0,1', -2)):
        with pytest.raises(UserError, match='do not split into groups of --gpus-per-run'):
            Slots(devices=devices, gpus_per_run=per_run)


def test_ablate_parser_defaults_and_types():
    from promptir_basicsr.commands.ablate import build_parser
    args = build_parser().parse_args(['a.yml'])
    assert (args.files, args.test_opt, args.seeds, args.first_seed, args.output, args.jobs, args.devices,
            args.gpus_per_run, args.force_yml, args.title) == (['a.yml'], None, 2, 0, None, 1, None, 1, [], None)
    args = build_parser().parse_args(['a.yml', 'b.yml', '--seeds', '3', '--first-seed', '5', '--jobs', '4',
                                      '--gpus-per-run', '2', '--force_yml', 'x=1', 'y=2', '--title', 'T'])
    assert (args.files, args.seeds, args.first_seed, args.jobs, args.gpus_per_run, args.force_yml, args.title) == \
        (['a.yml', 'b.yml'], 3, 5, 4, 2, ['x=1', 'y=2'], 'T')


def _flat_file(root):
    """A PromptIR without prompt blocks (prompt_levels: []), trained with an EMA of its weights."""
    opt = yaml.safe_load((root / 'tiny_promptir.yml').read_text())
    opt['name'] = 'tiny_flat'
    opt['network_g']['prompt_levels'] = []
    opt['train']['ema_decay'] = 0.999
    opt['val']['table_name'] = 'flat'
    (root / 'tiny_flat.yml').write_text(yaml.safe_dump(opt, sort_keys=False))
    return 'tiny_flat.yml'


def test_ablate_runs_seed_by_seed_with_each_runs_test_options(tiny_data, monkeypatch, capsys):
    """The defaults (two seeds from --first-seed, one run at a time, results/ablation): the calls strictly in turn
    (each run trained, then tested); the test options of each run (the run's weights loaded strictly, the EMA's when
    it trained one, the test file's other options kept in their order, the file's pad_to_multiple left to the
    network), training times to a tenth of a second, prompt scores only for prompt blocks, --title on the chart."""
    from promptir_basicsr.commands import ablate
    from promptir_basicsr.visual import ablation_chart
    monkeypatch.chdir(tiny_data)
    files = [_train_file(tiny_data, 'tiny_promptir'), _flat_file(tiny_data)]
    test = yaml.safe_load((tiny_data / _test_file(tiny_data)).read_text())
    test['datasets'] = dict(reversed(list(test['datasets'].items())))  # test_2 first: the file's order is kept
    test['path'] = {'pretrain_network_g': 'nowhere/missing.pth', 'visualization': 'pictures'}
    test['val']['pad_to_multiple'] = 16
    (tiny_data / 'test.yml').write_text(yaml.safe_dump(test, sort_keys=False))
    charts = []
    monkeypatch.setattr(ablation_chart, 'ablation_chart_png', lambda table, title=None: charts.append(title) or b'png')
    fake = FakeRunner(seconds=30.26)
    monkeypatch.setattr(ablate, '_run_command', fake)
    assert main([*files, '--test-opt', 'test.yml', '--first-seed', '3', '--force_yml', 'train:total_iter=2',
                 '--title', 'My chart']) == 0
    assert '4 runs (2 variants x 2 seeds [3, 4]): 0 finished before, 4 to train' in capsys.readouterr().out
    assert [call[:2] for call in fake.calls] == [
        ('train', 'tiny_promptir_seed3'), ('test', 'tiny_promptir_seed3_test'), ('train', 'tiny_flat_seed3'),
        ('test', 'tiny_flat_seed3_test'), ('train', 'tiny_promptir_seed4'), ('test', 'tiny_promptir_seed4_test'),
        ('train', 'tiny_flat_seed4'), ('test', 'tiny_flat_seed4_test')]
    tests = {call[1]: call[4] for call in fake.calls if call[0] == 'test'}
    flat = tests['tiny_flat_seed4_test']
    assert list(flat) == list(test) and list(flat['datasets']) == ['test_2', 'test_1']
    assert flat['path'] == {'pretrain_network_g': os.path.join('experiments', 'tiny_flat_seed4', 'models',
                                                               'net_g_latest.pth'),
                            'visualization': 'pictures', 'strict_load_g': True, 'param_key_g': 'params_ema'}
    assert 'pad_to_multiple' not in flat['val'] and flat['val']['table_name'] == 'flat'
    assert tests['tiny_promptir_seed3_test']['path']['param_key_g'] == 'params'
    written = yaml.safe_load((tiny_data / 'experiments' / 'tiny_flat_seed4' / 'ablation_test.yml').read_text())
    assert list(written) == list(flat)
    table = json.loads((tiny_data / 'results' / 'ablation' / 'ablation.json').read_text())
    promptir, flat_row = table['rows']
    assert promptir['seeds'] == [3, 4] and promptir['train_seconds']['mean'] == pytest.approx(33.8)  # 33.3, 34.3
    assert promptir['specialisation']['mean'] == pytest.approx(0.3) and flat_row['specialisation'] is None
    assert charts == ['My chart']


def test_ablate_trains_again_what_did_not_finish_and_reports_what_failed(tiny_data, monkeypatch, capsys):
    """A finished run is reused whatever the order of its option file's keys; a run whose weights or record is
    missing trains again; a training that exits non-zero fails even if it left weights; a test that exits non-zero
    fails even if an earlier test's table is there."""
    from promptir_basicsr.commands import ablate
    monkeypatch.chdir(tiny_data)
    files = [_train_file(tiny_data, name) for name in NETWORKS]
    arguments = [*_arguments(tiny_data, *files), '--seeds', '1']

    def again(fake, status=0):
        monkeypatch.setattr(ablate, '_run_command', fake)
        assert main(arguments) == status
        return capsys.readouterr()

    again(FakeRunner())
    opt = yaml.safe_load((tiny_data / files[0]).read_text())
    (tiny_data / files[0]).write_text(yaml.safe_dump(dict(reversed(list(opt.items()))), sort_keys=False))
    fake = FakeRunner()
    assert '2 finished before, 0 to train' in again(fake).out and fake.calls == []
    experiment = tiny_data / 'experiments' / 'tiny_promptir_seed0'
    (experiment / 'ablation_run.json').unlink()  # weights without the record of a finished training
    fake = FakeRunner()
    assert '1 finished before, 1 to train' in again(fake).out
    assert [call[1] for call in fake.calls if call[0] == 'train'] == ['tiny_promptir_seed0']
    (experiment / 'models' / 'net_g_latest.pth').unlink()  # the record without the weights
    fake = FakeRunner()
    assert '1 finished before, 1 to train' in again(fake).out
    weights = experiment / 'models' / 'net_g_latest.pth'
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10 ** 9))  # new weights: test again
    fake = FakeRunner(fail_tests={'tiny_promptir_seed0_test'})
    err = again(fake, status=1).err
    assert 'error: testing tiny_promptir_seed0 failed (exit status 1)' in err
    rows = json.loads((tiny_data / 'out' / 'ablation.json').read_text())['rows']
    assert [row['label'] for row in rows] == ['tiny restormer']  # not the earlier weights' results
    arguments[arguments.index('train:total_iter=2')] = 'train:total_iter=3'
    fake = FakeRunner(fail={'tiny_restormer_seed0'}, weights_on_failure=True)
    err = again(fake, status=1).err
    assert 'error: training tiny_restormer_seed0 failed (exit status 1)' in err
    assert 'tiny_restormer_seed0_test' not in [call[1] for call in fake.calls]
    rows = json.loads((tiny_data / 'out' / 'ablation.json').read_text())['rows']
    assert [row['label'] for row in rows] == ['tiny promptir']  # not the earlier training's results


def test_ablate_records_the_prompts_it_has_not_recorded(tiny_data, monkeypatch, capsys):
    """Without a prompts report, `basicsr prompts` runs in this process on the run's weights and composed test
    file, into results/<run>_test/prompts, its output (both streams) in the log; its refusal is a failure of
    the ablation; a report without scores gives none."""
    from promptir_basicsr.commands import ablate
    monkeypatch.chdir(tiny_data)
    files = [_train_file(tiny_data, 'tiny_promptir')]
    called = []

    def prompts(argv):
        called.append(argv)
        print('recording prompts')
        print('a warning', file=sys.stderr)
        folder = Path(argv[argv.index('-o') + 1])
        folder.mkdir(parents=True, exist_ok=True)
        (folder / 'prompts.json').write_text(json.dumps(
            {'specialisation': {'prompt1': {'normalised': 0.1}, 'prompt2': {'normalised': 0.6}}}))
        return 0

    monkeypatch.setattr(ablate, 'prompts_main', prompts)
    monkeypatch.setattr(ablate, '_run_command', FakeRunner(prompts=False))
    arguments = [*_arguments(tiny_data, *files), '--seeds', '1']
    assert main(arguments) == 0
    assert 'recording the prompts of tiny_promptir_seed0' in capsys.readouterr().out
    run = os.path.join('experiments', 'tiny_promptir_seed0')
    assert called == [['--weights', os.path.join(run, 'models', 'net_g_latest.pth'), '-opt',
                       os.path.join(run, 'ablation_test.yml'), '-o', os.path.join('results', 'tiny_promptir_seed0_test',
                                                                                  'prompts')]]
    log = (tiny_data / 'out' / 'logs' / 'tiny_promptir_seed0_prompts.log').read_text()
    assert 'recording prompts' in log and 'a warning' in log
    table = json.loads((tiny_data / 'out' / 'ablation.json').read_text())
    assert table['rows'][0]['specialisation']['mean'] == pytest.approx(0.35)

    report = tiny_data / 'results' / 'tiny_promptir_seed0_test' / 'prompts' / 'prompts.json'
    report.unlink()

    def refusing(argv):
        raise UserError('no prompt blocks here')

    monkeypatch.setattr(ablate, 'prompts_main', refusing)
    assert main(arguments) == 1
    assert 'error: basicsr prompts for tiny_promptir_seed0 failed: no prompt blocks here' in capsys.readouterr().err
    report.write_text('{}')
    assert main(arguments) == 0
    assert json.loads((tiny_data / 'out' / 'ablation.json').read_text())['rows'][0]['specialisation'] is None


def test_ablate_gives_each_run_a_group_of_devices(tiny_data, monkeypatch):
    """--devices 0,1,2,3 --gpus-per-run 2: each training gets a group of two, each test the first device of a
    free group."""
    fake, base, files = _recorded_runs_without_jobs(tiny_data, monkeypatch)
    assert main(base + ['--devices', '0,1,2,3', '--gpus-per-run', '2', '--seeds', '1']) == 0
    devices = {call[1]: call[2] for call in fake.calls}
    assert sorted([devices['tiny_promptir_seed0'], devices['tiny_restormer_seed0']]) == [['0', '1'], ['2', '3']]
    for name in NETWORKS:
        assert devices[f'{name}_seed0_test'] in (['0'], ['2'])


def test_ablate_checks_every_file_as_it_will_run_before_training(tiny_data, monkeypatch, capsys):
    """Each training file is checked as a training (with the --force_yml entries), the test file as a test: a
    mistake in either is one line, exit 2, before anything runs; without -o the table goes to results/ablation."""
    from promptir_basicsr.commands import ablate
    monkeypatch.chdir(tiny_data)
    files = [_train_file(tiny_data, name) for name in NETWORKS]
    _test_file(tiny_data)
    fake = FakeRunner()
    monkeypatch.setattr(ablate, '_run_command', fake)
    common = ['--test-opt', 'test.yml', '--seeds', '1']
    assert cli.main(['ablate', *files, *common, '--force_yml', 'train:total_iter=many']) == 2
    assert 'total_iter' in capsys.readouterr().err
    opt = yaml.safe_load((tiny_data / files[1]).read_text())
    del opt['logger']  # what a training needs, a test does not
    (tiny_data / 'no_logger.yml').write_text(yaml.safe_dump(opt))
    assert cli.main(['ablate', files[0], 'no_logger.yml', *common]) == 2
    assert 'logger' in capsys.readouterr().err
    assert fake.calls == []
    assert cli.main(['ablate', *files, *common]) == 0
    assert (tiny_data / 'results' / 'ablation' / 'ablation.json').is_file()


def test_options_hash_alike_whatever_their_order_and_values_json_cannot_hold():
    """A finished run's record: the same options give the same hash in any key order; a value JSON cannot hold (a
    YAML date) is hashed as its text rather than refused."""
    import datetime

    from promptir_basicsr.commands.ablate import _sha
    assert _sha({'a': 1, 'b': {'c': 2, 'd': 3}}) == _sha({'b': {'d': 3, 'c': 2}, 'a': 1})
    assert _sha({'a': 1}) != _sha({'a': 2})
    assert _sha({'when': datetime.date(2026, 1, 2)}) == _sha({'when': '2026-01-02'})
