import torch
from basicsr.archs import build_network
from basicsr.utils.registry import ARCH_REGISTRY

from arch_test_helpers import TINY_RESTORMER, assert_matches_official
from promptir_basicsr.archs import restormer_blocks
from promptir_basicsr.archs.restormer_arch import Restormer


def test_default_is_official_configuration():
    net = Restormer()
    assert_matches_official(net, 'restormer')
    assert len(net.state_dict()) == 494
    assert sum(p.numel() for p in net.parameters()) == 26_126_644


def test_registered_and_built_from_official_options():
    assert ARCH_REGISTRY.get('Restormer') is Restormer
    net = build_network(dict(type='Restormer', inp_channels=3, out_channels=3, dim=8, num_blocks=[1, 1, 1, 1],
                             num_refinement_blocks=1, heads=[1, 1, 2, 2], ffn_expansion_factor=2.66, bias=False,
                             LayerNorm_type='BiasFree', dual_pixel_task=False))
    assert isinstance(net, Restormer)
    assert 'encoder_level1.0.norm1.body.bias' not in net.state_dict()  # BiasFree has no bias


def test_odd_sizes_give_same_size_output():
    torch.manual_seed(0)
    net = Restormer(**TINY_RESTORMER)
    out = net(torch.rand(1, 3, 37, 53))
    assert out.shape == (1, 3, 37, 53)
    dual = Restormer(**TINY_RESTORMER, inp_channels=6, dual_pixel_task=True)
    assert dual(torch.rand(1, 6, 21, 10)).shape == (1, 3, 21, 10)


def test_no_padding_when_already_multiple(monkeypatch):
    net = Restormer(**TINY_RESTORMER)
    monkeypatch.setattr(restormer_blocks.F, 'pad', lambda *a, **k: (_ for _ in ()).throw(AssertionError('padded')))
    assert net(torch.rand(1, 3, 16, 24)).shape == (1, 3, 16, 24)
