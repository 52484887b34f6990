"""Helpers for tests that run the real `basicsr` command on tiny data (imported by test modules)."""
import subprocess
import sys
from pathlib import Path

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


def _noise_image(path, size, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8))


def make_official_layout(root):
    """A miniature copy of the official data layout under ``root/datasets`` (what options/train and
    options/test expect): a few 136x136 training and 40x40 test images, and PromptIR's list files."""
    d = root / 'datasets'
    for name in ('a.png', 'b.png'):
        _noise_image(d / 'Train' / 'Denoise' / name, 136)
    lists = {'noisy/denoise.txt': 'a.png\nb.png\n', 'rainy/rainTrain.txt': 'rainy/rain-1.png\n',
             'hazy/hazy_outside.txt': 'synthetic/part1/0001_0.8_0.2.jpg\n'}
    for rel, text in lists.items():
        (d / 'data_dir' / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / 'data_dir' / rel).write_text(text)
    for rel in ('Derain/rainy/rain-1.png', 'Derain/gt/norain-1.png', 'Dehaze/synthetic/part1/0001_0.8_0.2.jpg',
                'Dehaze/original/0001.jpg', 'Deblur/GoPro/input/x.png', 'Deblur/GoPro/target/x.png',
                'LowLight/LOL/low/x.png', 'LowLight/LOL/high/x.png',
                # BioIR's five-task folders (c-yn/BioIR All_in_One/INSTALL.md)
                'Deblur/blur/x.png', 'Deblur/sharp/x.png', 'Enhance/low/x.png', 'Enhance/gt/x.png'):
        _noise_image(d / 'Train' / rel, 136)
    for rel in ('denoise/bsd68/test001.png', 'derain/Rain100L/input/1.png', 'derain/Rain100L/target/1.png',
                'dehaze/input/0001_0.8_0.2.jpg', 'dehaze/target/0001.png', 'deblur/GoPro/input/y.png',
                'deblur/GoPro/target/y.png', 'lowlight/LOL/low/y.png', 'lowlight/LOL/high/y.png',
                'deblur/gopro/input/y.png', 'deblur/gopro/target/y.png', 'enhance/lol/input/y.png',
                'enhance/lol/target/y.png'):
        _noise_image(d / 'test' / rel, 40)
    return root


def torchrun_train(opt_file, *extra):
    """The command that trains ``opt_file`` with 2 processes under torchrun (gloo on the CPU)."""
    script = Path(sys.executable).parent / 'basicsr'
    basicsr = [str(script)] if script.exists() else ['-m', 'promptir_basicsr']
    return [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2', *basicsr, 'train',
            '-opt', str(opt_file), '--launcher', 'pytorch', *extra]


# A plugin (write it as rank_weights.py beside the run): our models, saving each rank's final weights to
# rank<r>.pt, so a test can check that the DDP replicas stayed identical.
RANK_WEIGHTS_PLUGIN = '''
import torch
from basicsr.utils.registry import MODEL_REGISTRY
from promptir_basicsr.models.airnet_model import AirNetModel
from promptir_basicsr.models.all_in_one_model import AllInOneModel
from promptir_basicsr.models.contrastive_model import ContrastiveModel
from promptir_basicsr.models.moce_ir_model import MoCEIRModel


class _SavesRankWeights:
    def save(self, epoch, current_iter):
        super().save(epoch, current_iter)
        if current_iter == -1:  # basicsr's final save, reached by every rank
            torch.save(self.get_bare_model(self.net_g).state_dict(), f"rank{self.opt['rank']}.pt")


@MODEL_REGISTRY.register()
class RankWeightsAllInOneModel(_SavesRankWeights, AllInOneModel):
    pass


@MODEL_REGISTRY.register()
class RankWeightsAirNetModel(_SavesRankWeights, AirNetModel):
    pass


@MODEL_REGISTRY.register()
class RankWeightsContrastiveModel(_SavesRankWeights, ContrastiveModel):
    pass


@MODEL_REGISTRY.register()
class RankWeightsMoCEIRModel(_SavesRankWeights, MoCEIRModel):
    pass
'''
