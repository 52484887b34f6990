"""An architecture is one file: a toy network in a ``plugins:`` module of a temporary folder goes through training,
conversion, restoring, ONNX export and a spandrel load with no other change to the package. Everything the package
asks of it is declared on its class and found through basicsr's registry (``archs/arch_api.py``)."""
import textwrap

import cv2
import numpy as np
import pytest
import torch
import yaml
from cli_helpers import run_cli, write_pairs

from promptir_basicsr.utils.tiling import pad_to_multiple

TOY = '''
"""A toy restoration network from a user's plugin module: nothing of promptir_basicsr imported."""
import torch.nn.functional as F
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn


@ARCH_REGISTRY.register()
class ToyUNet(nn.Module):
    """conv -> 2x down -> conv -> 2x up, plus the input; inputs padded to a multiple of 4."""

    size_multiple = 4
    weight_signature = ('toy_head.weight', 'toy_tail.weight')

    def __init__(self, channels=3, width=6):
        super().__init__()
        self.toy_head = nn.Conv2d(channels, width, 3, padding=1)
        self.toy_mid = nn.Conv2d(width, width, 3, stride=2, padding=1)
        self.toy_tail = nn.Conv2d(width, channels, 3, padding=1)

    @classmethod
    def options_from_weights(cls, state_dict):
        width, channels = state_dict['toy_head.weight'].shape[:2]
        return {'channels': int(channels), 'width': int(width)}

    def forward(self, x):
        h, w = x.shape[-2:]
        padded = F.pad(x, (0, -w % 4, 0, -h % 4), mode='replicate')
        y = F.relu(self.toy_head(padded))
        y = F.interpolate(F.relu(self.toy_mid(y)), scale_factor=2.0, mode='nearest')
        return (padded + self.toy_tail(y))[..., :h, :w]
'''


@pytest.fixture
def plugin_run(tmp_path):
    (tmp_path / 'toy_arch.py').write_text(textwrap.dedent(TOY))
    write_pairs(tmp_path / 'data' / 'train', 4, 24, seed=1)
    write_pairs(tmp_path / 'data' / 'val', 1, 19, seed=2)
    pair = lambda name, sub: {'name': name, 'type': 'PairedImageDataset', 'dataroot_gt': str(tmp_path / 'data' / sub / 'gt'),
                              'dataroot_lq': str(tmp_path / 'data' / sub / 'lq'), 'io_backend': {'type': 'disk'}}
    train = dict(pair('train', 'train'), gt_size=16, use_hflip=True, use_rot=False, num_worker_per_gpu=0,
                 batch_size_per_gpu=2, dataset_enlarge_ratio=1, prefetch_mode=None)
    opt = {'name': 'toy', 'model_type': 'AllInOneModel', 'scale': 1, 'num_gpu': 'auto', 'manual_seed': 0,
           'plugins': ['toy_arch'], 'datasets': {'train': train, 'val': pair('val', 'val')},
           'network_g': {'type': 'ToyUNet', 'width': 5}, 'path': {'pretrain_network_g': None},
           'train': {'optim_g': {'type': 'Adam', 'lr': 1e-3}, 'total_iter': 2, 'warmup_iter': -1,
                     'pixel_opt': {'type': 'L1Loss'}},
           'val': {'val_freq': 2, 'save_img': False, 'metrics': {'psnr': {'type': 'calculate_psnr_protocol'}}},
           'logger': {'print_freq': 1, 'save_checkpoint_freq': 2, 'use_tb_logger': False}}
    (tmp_path / 'toy.yml').write_text(yaml.safe_dump(opt, sort_keys=False))
    (tmp_path / 'plugin_only.yml').write_text('plugins: [toy_arch]\n')
    run_cli(['train', '-opt', 'toy.yml'], cwd=tmp_path)
    return tmp_path


@pytest.mark.slow
def test_a_plugin_architecture_trains_converts_restores_and_exports(plugin_run):
    root = plugin_run
    weights = root / 'experiments' / 'toy' / 'models' / 'net_g_latest.pth'
    state = torch.load(weights, weights_only=True)['params']
    assert state['toy_head.weight'].shape == (5, 3, 3, 3)  # width 5 from network_g, trained 2 iterations

    # convert: the architecture and its options read from the keys (the option file only imports the plugin)
    out = run_cli(['convert', str(weights), 'converted.pth', '--opt', 'plugin_only.yml'], cwd=root).stdout
    assert 'architecture (detected from the keys): ToyUNet' in out and 'ToyUNet channels=3 width=5' in out
    assert torch.equal(torch.load(root / 'converted.pth', weights_only=True)['params']['toy_tail.bias'],
                       state['toy_tail.bias'])

    # restore: an odd-sized image through the padding the class declares (size_multiple 4)
    image = (np.random.default_rng(0).random((13, 17, 3)) * 255).astype(np.uint8)
    (root / 'in').mkdir()
    cv2.imwrite(str(root / 'in' / 'a.png'), image)
    run_cli(['restore', '-i', 'in', '-o', 'out', '--weights', 'converted.pth', '--opt', 'plugin_only.yml'], cwd=root)
    restored = cv2.imread(str(root / 'out' / 'a.png'), cv2.IMREAD_UNCHANGED)
    assert restored.shape == image.shape
    import importlib
    import sys
    sys.path.insert(0, str(root))
    try:
        toy = importlib.import_module('toy_arch')
        net = toy.ToyUNet(width=5).eval()
        net.load_state_dict(state)
        with torch.no_grad():  # restore pads to the declared multiple (reflect), as for every network
            x = torch.from_numpy(image[..., ::-1].astype(np.float32) / 255).permute(2, 0, 1)[None]
            expected = net(pad_to_multiple(x, 4)[0])[..., :13, :17].clamp(0, 1)[0].permute(1, 2, 0).numpy()[..., ::-1]
        assert np.abs(restored.astype(np.float32) - np.rint(expected * 255)).max() <= 1

        # export to ONNX (checked by onnxruntime inside the command), its metadata naming the toy
        pytest.importorskip('onnxruntime')
        out = run_cli(['export', '--weights', 'converted.pth', '--opt', 'plugin_only.yml', '-o', 'toy.onnx'],
                      cwd=root).stdout
        assert 'max abs difference' in out and (root / 'toy.onnx').is_file()
        import onnx
        meta = {p.key: p.value for p in onnx.load(str(root / 'toy.onnx')).metadata_props}
        assert meta['arch'] == 'ToyUNet' and meta['size_multiple'] == '4'

        # spandrel: install() adds every registered architecture with a weight signature
        spandrel = pytest.importorskip('spandrel')
        from promptir_basicsr.interop.spandrel import spandrel_registry
        model = spandrel.ModelLoader(registry=spandrel_registry()).load_from_file(str(root / 'converted.pth'))
        assert model.architecture.id == 'ToyUNet' and model.size_requirements.multiple_of == 4
        with torch.no_grad():  # at a multiple of 4 nobody pads
            x = x[..., :12, :16]
            torch.testing.assert_close(model(x), net(x).clamp(0, 1))
    finally:
        sys.path.remove(str(root))
