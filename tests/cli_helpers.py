"""Helpers for tests that run the real `basicsr` command on tiny data (imported by test modules)."""
import subprocess
import sys

import cv2
import numpy as np
import yaml


def run_cli(args, cwd, check=True, timeout=300, env=None):
    """Run `python -m promptir_basicsr <args>` (the `basicsr` console script) in ``cwd``."""
    proc = subprocess.run([sys.executable, '-m', 'promptir_basicsr', *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f'basicsr {" ".join(args)} exited {proc.returncode}\n{proc.stdout[-3000:]}\n'
                             f'{proc.stderr[-3000:]}')
    return proc


def write_pairs(folder, count, size, seed):
    """Tiny smooth images (gt) and their noisy versions (lq), same names."""
    rng = np.random.default_rng(seed)
    for sub in ('gt', 'lq'):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        gt = cv2.GaussianBlur(rng.random((size, size, 3)).astype(np.float32), (0, 0), 2)
        gt = (gt - gt.min()) / (gt.max() - gt.min() + 1e-6)
        lq = np.clip(gt + rng.normal(0, 0.1, gt.shape), 0, 1)
        cv2.imwrite(str(folder / 'gt' / f'img{i:02d}.png'), (gt * 255).round().astype(np.uint8))
        cv2.imwrite(str(folder / 'lq' / f'img{i:02d}.png'), (lq * 255).round().astype(np.uint8))


def paired_set(name, root, phase):
    opt = {'name': name, 'type': 'PairedImageDataset', 'dataroot_gt': str(root / 'gt'),
           'dataroot_lq': str(root / 'lq'), 'io_backend': {'type': 'disk'}}
    if phase == 'train':
        opt.update(gt_size=16, use_hflip=True, use_rot=True, num_worker_per_gpu=0, batch_size_per_gpu=2,
                   dataset_enlarge_ratio=1, prefetch_mode=None)
    return opt


TINY_NET = {'type': 'SRVGGNetCompact', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_conv': 2,
            'upscale': 1, 'act_type': 'relu'}


def train_options(tmp_path, name='tiny', total_iter=20, network=None):
    return {
        'name': name, 'model_type': 'SRModel', 'scale': 1, 'num_gpu': 'auto', 'manual_seed': 0,
        'datasets': {
            'train': paired_set('train', tmp_path / 'data' / 'train', 'train'),
            'val_1': paired_set('valA', tmp_path / 'data' / 'valA', 'val'),
            'val_2': paired_set('valB', tmp_path / 'data' / 'valB', 'val'),
        },
        'network_g': network or dict(TINY_NET),
        'path': {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None},
        'train': {'optim_g': {'type': 'Adam', 'lr': 1e-3}, 'scheduler': {'type': 'MultiStepLR', 'milestones': [1000],
                                                                          'gamma': 0.5},
                  'total_iter': total_iter, 'warmup_iter': -1, 'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0}},
        'val': {'val_freq': 10, 'save_img': False,
                'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': 0, 'test_y_channel': False}}},
        'logger': {'print_freq': 5, 'save_checkpoint_freq': 10},
    }


def dump(opt, path):
    path.write_text(yaml.safe_dump(opt, sort_keys=False))
    return str(path)
