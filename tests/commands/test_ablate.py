"""`basicsr ablate` on two tiny option files: trains each over two seeds, tests each
with one test option file, writes the table (Markdown + JSON) and the chart, and reuses finished runs."""
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from cli_helpers import paired_set

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
