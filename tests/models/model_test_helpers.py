"""Tiny networks and option dicts for model tests (no files, no data folders)."""
import os.path as osp


import torch
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn


class _TestConvNet(nn.Module):
    """Two 3x3 convs with a residual: a receptive field radius of 2. Declares the input multiple of PromptIR
    and Restormer (archs/arch_api.py), so the models pad and tile as they do for them."""

    size_multiple = 8

    def __init__(self, channels=3, width=4):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(width, channels, 3, padding=1))

    def forward(self, x):
        return x + self.body(x)


if '_TestConvNet' not in ARCH_REGISTRY:
    ARCH_REGISTRY.register(_TestConvNet)


def make_opt(root, model_type='AllInOneModel', network=None, train=None, val=None, is_train=True, datasets=None):
    root = str(root)
    opt = {
        'name': 'unit',
        'model_type': model_type,
        'num_gpu': 0,
        'dist': False,
        'rank': 0,
        'world_size': 1,
        'is_train': is_train,
        'scale': 1,
        'network_g': network or {'type': '_TestConvNet'},
        'path': {
            'pretrain_network_g': None,
            'strict_load_g': True,
            'resume_state': None,
            'models': osp.join(root, 'models'),
            'training_states': osp.join(root, 'training_states'),
            'visualization': osp.join(root, 'visualization'),
            'results_root': osp.join(root, 'results'),
            'log': root,
        },
        'datasets': datasets or {},
        'val': val or {'metrics': {'psnr': {'type': 'calculate_psnr_protocol'}}},
    }
    if is_train:
        base = {'total_iter': 10, 'optim_g': {'type': 'Adam', 'lr': 1e-3}}
        base.update(train or {})
        opt['train'] = base
    return opt


def build(opt):
    from basicsr.models import build_model
    return build_model(opt)


class PairSet(torch.utils.data.Dataset):
    """A validation set of fixed pairs with given file names; ``opt['name']`` like basicsr's."""

    def __init__(self, name, names, size=16, seed=0):
        gen = torch.Generator().manual_seed(seed)
        self.opt = {'name': name}
        self.names = names
        self.gt = [torch.rand(3, size, size, generator=gen) for _ in names]
        self.lq = [(g + 0.1 * torch.randn(3, size, size, generator=gen)).clamp(0, 1) for g in self.gt]

    def __len__(self):
        return len(self.names)

    def __getitem__(self, i):
        return {'lq': self.lq[i], 'gt': self.gt[i], 'lq_path': f'/x/{self.names[i]}.png',
                'gt_path': f'/y/{self.names[i]}.png'}


def loader(dataset):
    return torch.utils.data.DataLoader(dataset, batch_size=1, shuffle=False)


