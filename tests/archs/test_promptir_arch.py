import pytest
import torch
from basicsr.archs import build_network
from basicsr.utils.registry import ARCH_REGISTRY

from arch_test_helpers import TINY_PROMPTIR, assert_matches_official
from promptir_basicsr.archs.promptir_arch import PromptIR

UNUSED = ('chnl_reduce1', 'chnl_reduce2', 'chnl_reduce3', 'reduce_noise_channel_1', 'reduce_noise_channel_2',
          'reduce_noise_channel_3')


def test_default_is_official_working_configuration():
    net = PromptIR()
    assert net.decoder is True
    assert_matches_official(net, 'promptir')
    assert len(net.state_dict()) == 548
    assert sum(p.numel() for p in net.parameters()) == 35_592_263
    # the six modules forward never uses are there, for strict loading of official weights
    unused = sum(p.numel() for name in UNUSED for p in getattr(net, name).parameters())
    assert unused == 215_296


def test_unused_modules_can_be_left_out():
    net = PromptIR(**TINY_PROMPTIR, keep_unused_modules=False)
    assert not any(hasattr(net, name) for name in UNUSED)


def test_official_decoder_false_is_refused_with_a_reason():
    with pytest.raises(ValueError, match='decoder=True'):
        PromptIR(decoder=False)


def test_registered_and_built_from_official_style_options():
    assert ARCH_REGISTRY.get('PromptIR') is PromptIR
    net = build_network(dict(type='PromptIR', inp_channels=3, out_channels=3, decoder=True, **TINY_PROMPTIR))
    assert isinstance(net, PromptIR)


def test_odd_sizes_give_same_size_output():
    torch.manual_seed(0)
    net = PromptIR(**TINY_PROMPTIR)
    assert net(torch.rand(1, 3, 37, 53)).shape == (1, 3, 37, 53)


def test_prompts_receive_gradients():
    torch.manual_seed(0)
    net = PromptIR(**TINY_PROMPTIR)
    net(torch.rand(2, 3, 24, 16)).abs().mean().backward()
    for name in ('prompt1', 'prompt2', 'prompt3'):
        block = getattr(net, name)
        for param_name in ('prompt_param', 'linear_layer.weight', 'conv3x3.weight'):
            grad = block.get_parameter(param_name).grad
            assert grad is not None and grad.abs().sum() > 0, f'{name}.{param_name} got no gradient'
    # the unused official modules really are unused: no gradient, and frozen so DDP does not wait for one
    assert all(p.grad is None for name in UNUSED for p in getattr(net, name).parameters())


def test_unused_official_modules_are_frozen_but_load_strictly():
    """They stay in the state dict (official weights load with strict=True) but require no gradient, so DDP
    leaves them out of its reducer (find_unused_parameters: false works); everything else is trained.
    Guards against dropping them from the state dict, or freezing too much or too little."""
    torch.manual_seed(0)
    net = PromptIR(**TINY_PROMPTIR)
    frozen = sorted(name for name, p in net.named_parameters() if not p.requires_grad)
    assert frozen == sorted(f'{name}.weight' for name in UNUSED)
    torch.manual_seed(1)
    official = {key: torch.randn_like(value) for key, value in PromptIR(**TINY_PROMPTIR).state_dict().items()}
    assert net.load_state_dict(official, strict=True).missing_keys == []
    assert all(torch.equal(net.state_dict()[key], value) for key, value in official.items())
    assert not any(p.requires_grad for name in UNUSED for p in getattr(net, name).parameters())
    # the full official configuration keeps the official key list
    assert_matches_official(PromptIR(), 'promptir')


def test_prompt_block_is_weighted_sum_of_components():
    torch.manual_seed(0)
    block = PromptIR(**TINY_PROMPTIR).prompt1
    x = torch.rand(2, 16, 6, 6)
    weights = torch.softmax(block.linear_layer(x.mean(dim=(-2, -1))), dim=1)
    mixed = (weights[:, :, None, None, None] * block.prompt_param).sum(dim=1)  # the official formula
    expected = block.conv3x3(torch.nn.functional.interpolate(mixed, (6, 6), mode='bilinear'))
    torch.testing.assert_close(block(x), expected)
