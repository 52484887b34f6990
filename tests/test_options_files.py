"""Every shipped option file: valid for the option checker, documented, and its datasets build.

The paper-recipe files are checked against a miniature copy of the official folder layout and list
files (a few 136x136 images), so their paths, pairing rules and list files are exercised for real.
"""
import glob
import os
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from basicsr.data import build_dataset
from basicsr.utils.options import ordered_yaml

import yaml
from promptir_basicsr.options import validate_options

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
FILES = sorted(glob.glob(osp.join(REPO, 'options', '*', '*.yml')))
RECIPES = sorted(glob.glob(osp.join(REPO, 'options', 'train', '*.yml')))
TESTS = sorted(glob.glob(osp.join(REPO, 'options', 'test', '*.yml')))


def _load(path):
    with open(path, encoding='utf-8') as f:
        return yaml.load(f, Loader=ordered_yaml()[0])


def test_the_files_exist():
    names = {osp.relpath(p, osp.join(REPO, 'options')) for p in FILES}
    for name in ('train/promptir_allinone.yml', 'train/restormer_allinone.yml', 'train/airnet_allinone.yml',
                 'train/promptir_5task.yml', 'test/promptir_allinone.yml', 'test/restormer_allinone.yml',
                 'test/airnet_allinone.yml', 'demo/promptir_demo.yml', 'demo/restormer_demo.yml',
                 'demo/airnet_demo.yml'):
        assert name in names


@pytest.mark.parametrize('path', FILES, ids=lambda p: osp.relpath(p, REPO))
def test_valid_and_commented(path):
    opt = _load(path)
    validate_options(opt, path, is_train='/test/' not in path and not path.endswith('_test.yml'), check_paths=False)
    text = open(path, encoding='utf-8').read()
    assert text.startswith('#') and text.count('#') > 20, 'option files document their keys'
    for metric in opt['val']['metrics'].values():
        assert metric['type'] in ('calculate_psnr_protocol', 'calculate_ssim_protocol')


def test_recipe_numbers():
    promptir = _load(osp.join(REPO, 'options', 'train', 'promptir_allinone.yml'))
    per_epoch = -(-142431 // 32)
    assert per_epoch == 4451
    assert promptir['train']['total_iter'] == 120 * per_epoch
    assert promptir['train']['scheduler']['warmup_iters'] == 15 * per_epoch
    assert promptir['train']['scheduler']['max_iters'] == 150 * per_epoch
    assert promptir['train']['optim_g'] == {'type': 'AdamW', 'lr': 2e-4, 'weight_decay': 0.01, 'betas': [0.9, 0.999]}
    assert promptir['find_unused_parameters'] is True
    sources = promptir['datasets']['train']['sources']
    counts = {'noise15': 5144, 'noise25': 5144, 'noise50': 5144, 'rain': 200, 'haze': 72135}
    assert sum(counts[s['name']] * s['repeat'] for s in sources) == 142431
    airnet = _load(osp.join(REPO, 'options', 'train', 'airnet_allinone.yml'))
    assert airnet['train']['encoder_iters'] == 40000 and airnet['train']['total_iter'] == 400000
    assert airnet['datasets']['train']['one_per_source'] and airnet['datasets']['train']['num_crops'] == 2


def _img(path, size=136, seed=0):
    os.makedirs(osp.dirname(path), exist_ok=True)
    rng = np.random.default_rng(seed)
    cv2.imwrite(path, rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


def _write(path, text):
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        f.write(text)


@pytest.fixture
def official_layout(in_tmp_dir):
    d = 'datasets'
    for name in ('a.png', 'b.png'):
        _img(f'{d}/Train/Denoise/{name}')
    _write(f'{d}/data_dir/noisy/denoise.txt', 'a.png\nb.png\n')
    _img(f'{d}/Train/Derain/rainy/rain-1.png')
    _img(f'{d}/Train/Derain/gt/norain-1.png')
    _write(f'{d}/data_dir/rainy/rainTrain.txt', 'rainy/rain-1.png\n')
    _img(f'{d}/Train/Dehaze/synthetic/part1/0001_0.8_0.2.jpg')
    _img(f'{d}/Train/Dehaze/original/0001.jpg')
    _write(f'{d}/data_dir/hazy/hazy_outside.txt', 'synthetic/part1/0001_0.8_0.2.jpg\n')
    for folder in ('Deblur/GoPro/input', 'Deblur/GoPro/target', 'LowLight/LOL/low', 'LowLight/LOL/high'):
        _img(f'{d}/Train/{folder}/x.png')
    _img(f'{d}/test/denoise/bsd68/test001.png', 40)
    _img(f'{d}/test/derain/Rain100L/input/1.png', 40)
    _img(f'{d}/test/derain/Rain100L/target/1.png', 40)
    _img(f'{d}/test/dehaze/input/0001_0.8_0.2.jpg', 40)
    _img(f'{d}/test/dehaze/target/0001.png', 40)
    for folder in ('deblur/GoPro/input', 'deblur/GoPro/target', 'lowlight/LOL/low', 'lowlight/LOL/high'):
        _img(f'{d}/test/{folder}/y.png', 40)
    return in_tmp_dir


@pytest.mark.parametrize('path', RECIPES + TESTS, ids=lambda p: osp.relpath(p, REPO))
def test_recipe_datasets_build_on_the_official_layout(path, official_layout):
    opt = _load(path)
    is_train = '/train/' in path
    opt['path']['pretrain_network_g'] = None  # test files point at weights a training writes
    validate_options(opt, path, is_train=is_train, check_paths=True)
    for phase, dataset_opt in opt['datasets'].items():
        dataset_opt = dict(dataset_opt, phase='train' if phase == 'train' else 'val', scale=1)
        dataset = build_dataset(dataset_opt)
        sample = dataset[0]
        if phase == 'train':
            size = dataset_opt['gt_size']
            if dataset_opt.get('one_per_source'):
                assert sample['lq'].shape == (len(dataset_opt['sources']), 3, size, size)
                assert sample['lq2'].shape == sample['lq'].shape
            else:
                assert sample['lq'].shape == (3, size, size)
        else:
            assert sample['lq'].shape == sample['gt'].shape and sample['lq'].shape[-1] == 32  # crop to 16
            assert torch.is_tensor(sample['lq'])


@pytest.mark.parametrize('model', ['promptir', 'restormer', 'airnet'])
def test_demo_test_files_match_their_training(model):
    train = _load(osp.join(REPO, 'options', 'demo', f'{model}_demo.yml'))
    test = _load(osp.join(REPO, 'options', 'demo', f'{model}_demo_test.yml'))
    assert test['network_g'] == train['network_g'] and test['model_type'] == train['model_type']
    assert test['path']['pretrain_network_g'] == f'experiments/{train["name"]}/models/net_g_latest.pth'
    assert [d['name'] for d in test['datasets'].values()] == [d['name'] for k, d in train['datasets'].items()
                                                              if k.startswith('val')]
