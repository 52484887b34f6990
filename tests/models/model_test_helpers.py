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


class _TestBatchNormNet(nn.Module):
    """A conv and a BatchNorm: training forwards change its buffers (running mean and variance, the batch count),
    which the EMA network must follow."""

    size_multiple = 8

    def __init__(self, channels=3):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm = nn.BatchNorm2d(channels, momentum=0.5)

    def forward(self, x):
        return x + self.norm(self.conv(x))


class _TestContrastNet(nn.Module):
    """The contrastive network contract (models/contrastive_model.py) with logits a test can compute: for sample i,
    ``[scale * <q_i, k_i>, scale * <q_i, k_j> for the other samples j, 0]`` with q, k the per-channel means of the
    query and key crops; labels 0. Restores by one 1x1 conv."""

    def __init__(self, channels=3):
        super().__init__()
        self.restore = nn.Conv2d(channels, channels, 1)
        self.scale = nn.Parameter(torch.tensor(2.0))

    @staticmethod
    def uses_contrastive_encoder(options):
        return True

    def contrastive(self, lq, lq2):
        q, k = lq.mean(dim=(2, 3)), lq2.mean(dim=(2, 3))
        similarity = self.scale * q @ k.t()  # (B, B): the positives on the diagonal
        batch = lq.shape[0]
        others = similarity[~torch.eye(batch, dtype=torch.bool)].view(batch, batch - 1)
        logits = torch.cat([similarity.diagonal()[:, None], others, torch.zeros(batch, 1)], dim=1)
        return logits, torch.zeros(batch, dtype=torch.long)

    def forward(self, lq, lq2=None):
        if lq2 is None:
            return self.restore(lq)
        return (self.restore(lq), *self.contrastive(lq, lq2))


for _net in (_TestConvNet, _TestBatchNormNet, _TestContrastNet):
    if _net.__name__ not in ARCH_REGISTRY:
        ARCH_REGISTRY.register(_net)


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


def build(opt, seed=0):
    """The model of ``opt``, its networks initialised from ``seed`` (the same weights whatever ran before)."""
    from basicsr.models import build_model
    torch.manual_seed(seed)
    return build_model(opt)


class PairSet(torch.utils.data.Dataset):
    """A validation set of fixed pairs with given file names; ``opt['name']`` like basicsr's."""

    def __init__(self, name, names, size=16, seed=0):
        gen = torch.Generator().manual_seed(seed)
        self.opt = {'name': name}
        self.names = names
        height, width = (size, size) if isinstance(size, int) else size
        self.gt = [torch.rand(3, height, width, generator=gen) for _ in names]
        self.lq = [(g + 0.1 * torch.randn(3, height, width, generator=gen)).clamp(0, 1) for g in self.gt]

    def __len__(self):
        return len(self.names)

    def __getitem__(self, i):
        return {'lq': self.lq[i], 'gt': self.gt[i], 'lq_path': f'/x/{self.names[i]}.png',
                'gt_path': f'/y/{self.names[i]}.png'}


def loader(dataset):
    return torch.utils.data.DataLoader(dataset, batch_size=1, shuffle=False)


