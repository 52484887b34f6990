"""The demo data set: generated from scikit-image's photos, deterministic, usable by the datasets."""
import hashlib
import json
import os
import time

import pytest
import torch
import yaml

from promptir_basicsr.data.all_in_one_dataset import AllInOneDataset
from promptir_basicsr.data.degraded_dataset import DegradedImageDataset
from promptir_basicsr.data.demo import ensure_demo_data, make_demo_data

# The datasets part of a demo option file (also the example in the README / report).
DEMO_DATASETS = """
train:
  name: demo_5task
  type: AllInOneDataset
  gt_size: 64
  augment: official7
  sources:
    - {name: noise15, dataroot_gt: ROOT/train/clean, degradation: [{type: gaussian_noise_uint8, sigma: 15}], repeat: 1}
    - {name: noise25, dataroot_gt: ROOT/train/clean, degradation: [{type: gaussian_noise_uint8, sigma: 25}], repeat: 1}
    - {name: noise50, dataroot_gt: ROOT/train/clean, degradation: [{type: gaussian_noise_uint8, sigma: 50}], repeat: 1}
    - {name: rain, dataroot_lq: ROOT/train/rain/rainy, dataroot_gt: ROOT/train/rain/gt, pairing: rain100l, repeat: 2}
    - {name: haze, dataroot_lq: ROOT/train/haze/hazy, dataroot_gt: ROOT/train/haze/gt, pairing: sots, repeat: 1}
    - {name: blur, dataroot_lq: ROOT/train/blur/lq, dataroot_gt: ROOT/train/blur/gt, repeat: 2}
    - {name: lowlight, dataroot_lq: ROOT/train/lowlight/lq, dataroot_gt: ROOT/train/lowlight/gt, repeat: 2}
val_1: {name: demo_noise25, type: DegradedImageDataset, dataroot_gt: ROOT/val/clean,
        degradation: [{type: gaussian_noise_uint8, sigma: 25}], seed: 0}
val_2: {name: demo_rain, type: DegradedImageDataset, dataroot_lq: ROOT/val/rain/input,
        dataroot_gt: ROOT/val/rain/target}
val_3: {name: demo_haze, type: DegradedImageDataset, dataroot_lq: ROOT/val/haze/hazy, dataroot_gt: ROOT/val/haze/gt,
        pairing: sots}
val_4: {name: demo_blur, type: DegradedImageDataset, dataroot_lq: ROOT/val/blur/lq, dataroot_gt: ROOT/val/blur/gt}
val_5: {name: demo_lowlight, type: DegradedImageDataset, dataroot_lq: ROOT/val/lowlight/lq,
        dataroot_gt: ROOT/val/lowlight/gt}
"""


def digest(root):
    h = hashlib.sha256()
    for folder, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            if name.endswith('.png'):
                h.update(name.encode())
                h.update(open(os.path.join(folder, name), 'rb').read())
    return h.hexdigest()


@pytest.fixture(scope='module')
def demo_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('demo') / 'demo')
    start = time.time()
    meta = make_demo_data(root)
    meta['measured'] = time.time() - start
    return root, meta


def test_demo_layout_and_speed(demo_root):
    root, meta = demo_root
    assert meta['measured'] < 15  # about a second on one core
    files = meta['files']
    assert files['train/clean'] == 16 and files['train/rain/rainy'] == files['train/rain/gt'] == 8
    assert files['train/haze/hazy'] == 16 and files['train/haze/gt'] == 8
    for task in ('rain/input', 'rain/target', 'haze/hazy', 'blur/lq', 'lowlight/lq', 'clean'):
        assert files[f'val/{task}'] == 3
    assert json.load(open(os.path.join(root, 'demo_meta.json')))['version'] >= 1
    assert os.path.isfile(os.path.join(root, 'train', 'rain', 'rainy', 'rain-1.png'))


def test_demo_is_deterministic_and_ensure_keeps_it(demo_root, tmp_path):
    root, _ = demo_root
    stamp = os.path.getmtime(os.path.join(root, 'demo_meta.json'))
    assert ensure_demo_data(root) == root and os.path.getmtime(os.path.join(root, 'demo_meta.json')) == stamp
    other = str(tmp_path / 'again')
    ensure_demo_data(other)
    assert digest(other) == digest(root)


def test_demo_option_datasets_build(demo_root):
    root, _ = demo_root
    opts = yaml.safe_load(DEMO_DATASETS.replace('ROOT', root))
    train = AllInOneDataset(dict(opts['train'], phase='train'))
    assert len(train) == 16 * 3 + 8 * 2 + 16 + 8 * 2 + 8 * 2
    torch.manual_seed(0)
    sample = train[len(train) - 1]
    assert sample['deg_name'] == 'lowlight' and sample['lq'].shape == (3, 64, 64)
    assert float(sample['lq'].mean()) < float(sample['gt'].mean())
    for key in ('val_1', 'val_2', 'val_3', 'val_4', 'val_5'):
        val = DegradedImageDataset(dict(opts[key], phase='val'))
        assert len(val) == 3 and val[0]['lq'].shape == val[0]['gt'].shape == (3, 96, 96)
