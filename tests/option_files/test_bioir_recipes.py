"""BioIR's shipped option files carry the official recipe (c-yn/BioIR All_in_One/train_eval.py, test.py,
utils/dataset_utils.py), their test files test what the training validates, and the demo trains and tests
through the real command. (That every shipped file passes the option check and its datasets build on the
miniature official layout is tests/option_files/test_shipped_files.py.)"""
import inspect
import json
import os
import os.path as osp
import subprocess
import sys

import pytest

from promptir_basicsr.archs.bioir_arch import BioIR
from official_recipes import IMAGES, REPEATS, REPO, iterations_per_epoch, load_options


@pytest.mark.parametrize('task, samples, per_epoch', [('allinone', 142431, 4451), ('5task', 162646, 5082)])
def test_training_recipe_numbers(task, samples, per_epoch):
    opt = load_options('train', f'bioir_{task}.yml')
    sources = opt['datasets']['train']['sources']
    assert {s['name']: s['repeat'] for s in sources} == {k: v for k, v in REPEATS.items()
                                                        if task == '5task' or k not in ('blur', 'lowlight')}
    assert sum(IMAGES[s['name']] * s['repeat'] for s in sources) == samples
    assert iterations_per_epoch(samples, gpus=2, batch=16) == per_epoch
    train = opt['train']
    assert train['total_iter'] == 150 * per_epoch  # --epochs 150 (train_eval.py:195)
    scheduler = train['scheduler']
    assert (scheduler['type'], scheduler['warmup_iters'], scheduler['max_iters'], scheduler['step_size']) == (
        'LinearWarmupCosineLR', 15 * per_epoch, 180 * per_epoch, per_epoch)  # train_eval.py:70
    assert (scheduler['warmup_start_lr'], scheduler['eta_min']) == (0, 0)
    assert train['optim_g'] == {'type': 'AdamW', 'lr': 2e-4, 'weight_decay': 0.01, 'betas': [0.9, 0.999]}
    assert train['pixel_opt']['type'] == 'L1Loss' and train['pixel_opt']['loss_weight'] == 1.0
    assert train['fft_opt']['type'] == 'FFTLoss' and train['fft_opt']['loss_weight'] == 0.1
    assert train['fft_opt']['onesided'] is False
    assert opt['model_type'] == 'AllInOneModel' and opt['find_unused_parameters'] is False
    assert opt['val']['val_freq'] == 10 * per_epoch and opt['logger']['save_checkpoint_freq'] == per_epoch
    data = opt['datasets']['train']
    assert (data['gt_size'], data['batch_size_per_gpu'], data['augment']) == (128, 16, 'official7')
    defaults = {k: v.default for k, v in inspect.signature(BioIR).parameters.items() if k != 'keep_unused_modules'}
    network = {k: v for k, v in opt['network_g'].items() if k != 'type'}
    assert {k: tuple(v) if isinstance(v, list) else v for k, v in network.items()} == defaults


@pytest.mark.parametrize('task, sets', [
    ('allinone', ['BSD68_sigma15', 'BSD68_sigma25', 'BSD68_sigma50', 'Rain100L', 'SOTS_outdoor']),
    ('5task', ['BSD68_sigma15', 'BSD68_sigma25', 'BSD68_sigma50', 'Rain100L', 'SOTS_outdoor', 'GoPro', 'LOL'])])
def test_test_files_are_the_trainings_validation(task, sets):
    """test.py --mode 5 / 6 (test.py:183-244): the sets the training validates on, read the same way."""
    train, test = load_options('train', f'bioir_{task}.yml'), load_options('test', f'bioir_{task}.yml')
    val_sets = [d for k, d in train['datasets'].items() if k.startswith('val')]
    assert list(test['datasets'].values()) == val_sets
    assert [d['name'] for d in val_sets] == sets
    assert all(d['crop_to_multiple'] == 16 for d in val_sets)
    assert test['network_g'] == train['network_g'] and test['model_type'] == train['model_type']
    assert test['path']['pretrain_network_g'] == f'experiments/bioir_{task}/models/net_g_latest.pth'
    assert test['val']['pad_to_multiple'] == BioIR.size_multiple == 4


def test_demo_test_file_matches_its_training():
    train, test = load_options('demo', 'bioir_demo.yml'), load_options('demo', 'bioir_demo_test.yml')
    assert test['network_g'] == train['network_g'] and test['model_type'] == train['model_type'] == 'AllInOneModel'
    assert test['path']['pretrain_network_g'] == 'experiments/bioir_demo/models/net_g_latest.pth'
    assert [d['name'] for d in test['datasets'].values()] == [d['name'] for k, d in train['datasets'].items()
                                                              if k.startswith('val')]
    assert train['train']['fft_opt'] == {'type': 'FFTLoss', 'loss_weight': 0.1, 'onesided': False}


@pytest.mark.slow
def test_demo_trains_validates_and_tests(tmp_path):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get('PYTHONPATH', ''))

    def cli(*args):
        proc = subprocess.run([sys.executable, '-m', 'promptir_basicsr', *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f'{args}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}'

    cli('train', '-opt', osp.join(REPO, 'options', 'demo', 'bioir_demo.yml'), '--force_yml', 'train:total_iter=4',
        'val:val_freq=2', 'logger:print_freq=1', 'logger:save_checkpoint_freq=4')
    exp = tmp_path / 'experiments' / 'bioir_demo'
    log = open(next(str(exp / n) for n in os.listdir(exp) if n.endswith('.log'))).read()
    assert 'l_pix' in log and 'l_fft' in log and log.count('Validation Haze\n') == 2
    cli('test', '-opt', osp.join(REPO, 'options', 'demo', 'bioir_demo_test.yml'))
    table = json.loads((tmp_path / 'results' / 'bioir_demo_test' / 'results_table.json').read_text())
    assert table['sets'] == ['Noise15', 'Noise25', 'Noise50', 'Rain', 'Haze']
    assert [r['model'] for r in table['rows']] == ['BioIR (demo)', 'Input (degraded)']
