"""basicsr_patches/behaviour/models_base_model.py: atomic checkpoint writes, any weights file as pretrain_network_g."""
import os

import pytest
import torch

from promptir_basicsr.utils.files import atomic_save


def test_checkpoints_are_written_atomically(tmp_path, monkeypatch):
    from basicsr.models import base_model
    target = tmp_path / 'net_g_1.pth'
    base_model.torch.save({'params': {'w': torch.ones(2)}}, target)
    good = target.read_bytes()

    def dies_mid_write(obj, f, *args, **kwargs):
        f.write(b'half a checkpoint')
        raise KeyboardInterrupt  # a kill arriving during the write

    monkeypatch.setattr(torch, 'save', dies_mid_write)
    with pytest.raises(KeyboardInterrupt):
        base_model.torch.save({'params': {'w': torch.zeros(2)}}, target)
    assert target.read_bytes() == good
    assert os.listdir(tmp_path) == ['net_g_1.pth']  # no temporary file left behind


def _tiny(arch, **options):
    from basicsr.archs import build_network
    torch.manual_seed(0)
    return build_network({'type': arch, **options})


def test_official_layouts_load_as_pretrain_network_g(tmp_path):
    """`path: pretrain_network_g` may name an official release as it is: a Lightning .ckpt (keys net.*, plus the
    trainer's entries) and AirNet's plain state dict with another queue size (batch 5's 1280 -> this run's)."""
    from basicsr.models.base_model import BaseModel
    model = BaseModel({'num_gpu': 0, 'is_train': False, 'dist': False})
    tiny = dict(dim=8, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1, heads=[1, 1, 1, 1],
                prompt_dims=[4, 8, 8], prompt_sizes=[4, 4, 4])
    source = _tiny('PromptIR', **tiny)
    ckpt = {'state_dict': {f'net.{k}': v for k, v in source.state_dict().items()}, 'epoch': 3, 'global_step': 9}
    torch.save(ckpt, tmp_path / 'model.ckpt')
    target = _tiny('PromptIR', **tiny)
    torch.nn.init.zeros_(target.output.weight)
    model.load_network(target, str(tmp_path / 'model.ckpt'), strict=True, param_key='params')
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key

    airnet = dict(n_feats=8, n_groups=1, n_blocks=1, encoder_widths=[8, 8], moco_dim=8)
    official = _tiny('AirNet', **airnet, queue_size=20).state_dict()
    torch.save(official, tmp_path / 'All.pth')
    net = _tiny('AirNet', **airnet, queue_size=12)
    model.load_network(net, str(tmp_path / 'All.pth'), strict=True, param_key='params')
    assert net.state_dict()['E.E.queue'].shape == (8, 12)
    assert torch.equal(net.state_dict()['R.head.0.weight'], official['R.head.0.weight'])


def test_not_strict_loads_the_matching_tensors_and_says_which_differ(tmp_path, caplog):
    from basicsr.models.base_model import BaseModel
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Conv2d(4, 3, 1))
    source = {'0.weight': torch.ones(4, 3, 3, 3), '0.bias': torch.ones(4), '1.weight': torch.ones(3, 2)}
    atomic_save({'params': source}, tmp_path / 'partial.pth')
    before = net.state_dict()['1.weight'].clone()
    BaseModel({'num_gpu': 0, 'is_train': False, 'dist': False}).load_network(net, str(tmp_path / 'partial.pth'),
                                                                             strict=False)
    assert torch.equal(net.state_dict()['0.weight'], source['0.weight'])
    assert torch.equal(net.state_dict()['1.weight'], before)  # mis-shaped in the file: kept
