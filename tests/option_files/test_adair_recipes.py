"""AdaIR's option files (options/{train,test,demo}/adair_*.yml) carry the official recipe's numbers (c-yn/AdaIR
options.py, train.py, utils/dataset_utils.py): epochs converted to iterations as Lightning's DDP loader counts
them, the schedule, the optimizer, the loss, the data mixes, and test files that read what training validates.
(That they are valid, documented and build their datasets is tests/option_files/test_shipped_files.py; that the
train and demo files train under DDP is tests/option_files/test_ddp_shipped_files.py.)"""
import os.path as osp

import pytest

from official_recipes import IMAGES, REPEATS, REPO, iterations_per_epoch, load_options


@pytest.mark.parametrize('name, sources, samples, per_epoch', [
    ('adair_allinone.yml', ['noise15', 'noise25', 'noise50', 'rain', 'haze'], 142431, 4451),
    ('adair_5task.yml', ['noise15', 'noise25', 'noise50', 'rain', 'haze', 'blur', 'lowlight'], 162646, 5082),
])
def test_recipe_numbers(name, sources, samples, per_epoch):
    opt = load_options('train', name)
    train = opt['datasets']['train']
    assert [s['name'] for s in train['sources']] == sources
    assert {s['name']: s.get('repeat', 1) for s in train['sources']} == {k: REPEATS[k] for k in sources}
    assert sum(IMAGES[s['name']] * s.get('repeat', 1) for s in train['sources']) == samples
    assert iterations_per_epoch(samples, gpus=4, batch=8) == per_epoch
    assert train['gt_size'] == 128 and train['batch_size_per_gpu'] == 8 and train['augment'] == 'official7'
    assert opt['train']['total_iter'] == 150 * per_epoch  # options.py:8
    scheduler = opt['train']['scheduler']
    assert scheduler == {'type': 'LinearWarmupCosineLR', 'warmup_iters': 15 * per_epoch, 'max_iters': 180 * per_epoch,
                         'warmup_start_lr': 0, 'eta_min': 0, 'step_size': per_epoch}  # train.py:43
    assert opt['train']['optim_g'] == {'type': 'AdamW', 'lr': 2e-4, 'weight_decay': 0.01, 'betas': [0.9, 0.999]}
    assert opt['train']['pixel_opt']['type'] == 'L1Loss' and opt['train']['ema_decay'] == 0
    assert opt['train']['grad_clip'] is None
    assert opt['logger']['save_checkpoint_freq'] == per_epoch
    assert opt['find_unused_parameters'] is False  # the frozen modules: see archs/adair_arch.py
    assert opt['network_g'] == load_options('test', name)['network_g']
    assert opt['network_g'] == {'type': 'AdaIR', 'inp_channels': 3, 'out_channels': 3, 'dim': 48,
                                'num_blocks': [4, 6, 6, 8], 'num_refinement_blocks': 4, 'heads': [1, 2, 4, 8],
                                'ffn_expansion_factor': 2.66, 'bias': False, 'LayerNorm_type': 'WithBias',
                                'decoder': True, 'keep_unused_modules': True}


@pytest.mark.parametrize('name, sets, paper', [
    ('adair_allinone.yml', ['BSD68_sigma15', 'BSD68_sigma25', 'BSD68_sigma50', 'Rain100L', 'SOTS_outdoor'], '32.69'),
    ('adair_5task.yml', ['SOTS_outdoor', 'Rain100L', 'BSD68_sigma25', 'GoPro', 'LOL'], '30.20'),
])
def test_test_files_are_the_trainings_validation_and_quote_the_paper(name, sets, paper):
    train, test = load_options('train', name), load_options('test', name)
    loader_keys = {'num_worker_per_gpu', 'batch_size_per_gpu'}
    val_sets = [{k: v for k, v in d.items() if k not in loader_keys} for k, d in train['datasets'].items()
                if k.startswith('val')]
    assert [{k: v for k, v in d.items() if k not in loader_keys} for d in test['datasets'].values()] == val_sets
    assert [d['name'] for d in val_sets] == sets
    assert test['path']['pretrain_network_g'] == f'experiments/{train["name"]}/models/net_g_latest.pth'
    text = open(osp.join(REPO, 'options', 'test', name), encoding='utf-8').read()
    assert f'average {paper}' in text and 'drive.google.com/drive/folders/1x2LN4kWkO3S65jJlH-1INUFiYt8KFzPH' in text
    assert test['val']['tile_size'] is None  # AdaIR's output depends on the size it sees


def test_demo_is_a_tiny_adair():
    demo = load_options('demo', 'adair_demo.yml')
    assert demo['network_g']['type'] == 'AdaIR' and demo['network_g']['decoder'] is True
    assert demo['demo_data'] is True and demo['num_gpu'] == 0 and demo['train']['total_iter'] <= 500
