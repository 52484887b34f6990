"""A new degradation source added by YAML alone trains through the real `basicsr train` CLI."""
import subprocess
import sys
import textwrap

import pytest
import yaml
from data_helpers import write_pairs, write_tree

PLUGIN = '''
import numpy as np
from promptir_basicsr.data.degradations import DEGRADATION_REGISTRY


@DEGRADATION_REGISTRY.register()
def cli_test_vignette(img, rng, strength=0.5):
    """Darken towards the corners (a user op from a plugins: module)."""
    h, w = img.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    r = np.sqrt(((yy - h / 2) / h) ** 2 + ((xx - w / 2) / w) ** 2)
    return img * (1 - strength * r[..., None] / r.max())
'''


@pytest.mark.slow
def test_jpeg_and_plugin_sources_train_through_the_cli(tmp_path):
    write_tree(tmp_path / 'data' / 'clean', [f'c{i}.png' for i in range(4)], size=(32, 32), seed=1)
    rain_lq, rain_gt = write_pairs(tmp_path / 'data' / 'rain', ['rain-1.png', 'rain-2.png'],
                                   ['norain-1.png', 'norain-2.png'], size=(32, 32), seed=2)
    write_tree(tmp_path / 'data' / 'val', ['v1.png', 'v2.png'], size=(24, 24), seed=3)
    (tmp_path / 'my_degradations.py').write_text(textwrap.dedent(PLUGIN))
    clean = str(tmp_path / 'data' / 'clean')
    opt = {
        'name': 'jpeg_source', 'model_type': 'SRModel', 'scale': 1, 'num_gpu': 0, 'manual_seed': 0,
        'plugins': ['my_degradations'],
        'datasets': {
            'train': {
                'name': 'mix', 'type': 'AllInOneDataset', 'gt_size': 16, 'augment': 'official7',
                'num_worker_per_gpu': 0, 'batch_size_per_gpu': 2, 'dataset_enlarge_ratio': 1, 'prefetch_mode': None,
                'sources': [
                    {'name': 'jpeg', 'dataroot_gt': clean, 'repeat': 2,
                     'degradation': [{'type': 'jpeg', 'quality': [10, 40]}]},
                    {'name': 'vignette', 'dataroot_gt': clean, 'degradation': [{'type': 'cli_test_vignette',
                                                                               'strength': {'choice': [0.3, 0.6]}}]},
                    {'name': 'rain', 'dataroot_lq': rain_lq, 'dataroot_gt': rain_gt, 'pairing': 'rain100l'},
                ],
            },
            'val_1': {'name': 'val_jpeg20', 'type': 'DegradedImageDataset',
                      'dataroot_gt': str(tmp_path / 'data' / 'val'),
                      'degradation': [{'type': 'jpeg', 'quality': 20}], 'crop_to_multiple': 8},
        },
        'network_g': {'type': 'SRVGGNetCompact', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 4, 'num_conv': 1,
                      'upscale': 1, 'act_type': 'relu'},
        'path': {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None},
        'train': {'optim_g': {'type': 'Adam', 'lr': 1e-3},
                  'scheduler': {'type': 'MultiStepLR', 'milestones': [100], 'gamma': 0.5},
                  'total_iter': 4, 'warmup_iter': -1, 'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0}},
        'val': {'val_freq': 4, 'save_img': False,
                'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': 0, 'test_y_channel': False}}},
        'logger': {'print_freq': 2, 'save_checkpoint_freq': 4, 'use_tb_logger': False},
    }
    path = tmp_path / 'train_jpeg.yml'
    path.write_text(yaml.safe_dump(opt, sort_keys=False))
    proc = subprocess.run([sys.executable, '-m', 'promptir_basicsr', 'train', '-opt', str(path)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    exp = tmp_path / 'experiments' / 'jpeg_source'
    log = next(exp.glob('train_jpeg_source_*.log')).read_text()
    assert (exp / 'models' / 'net_g_4.pth').is_file()
    # the start-up table of the mix, then validation on the seeded JPEG set
    assert 'AllInOneDataset mix: 14 samples per epoch' in log
    for row in ('jpeg', 'vignette', 'rain'):
        assert f'| {row}' in log
    assert 'clean + jpeg_quality10to40' in log and 'cli_test_vignette' in log
    assert 'Validation val_jpeg20' in log and 'psnr' in log
