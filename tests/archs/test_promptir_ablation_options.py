"""PromptIR's ablation options: ``prompt_learnable``, ``prompt_levels``, ``prompt_source`` (issue 12).

Their defaults must stay the official network (keys, shapes, outputs); each variant must build, train a
step with every trainable parameter reached (DDP runs with find_unused_parameters: false) and carry the
keys its description promises.
"""
import pytest
import torch

from arch_test_helpers import TINY_PROMPTIR, assert_matches_official
from official_formulation import reference_like
from promptir_basicsr.archs.promptir_arch import PromptIR

TINY_CBDE = dict(prompt_source='cbde', cbde_widths=[8, 8, 16], cbde_dim=8, cbde_queue_size=12)
DIM = TINY_PROMPTIR['dim']


def _train_step(net, x, *extra):
    """One Adam step on the trainable parameters; returns the parameters before the step."""
    before = {name: p.detach().clone() for name, p in net.named_parameters()}
    optimizer = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-2)
    out = net(x, *extra)
    out = out[0] if isinstance(out, tuple) else out
    (out - x).abs().mean().backward()
    optimizer.step()
    return before


def test_defaults_are_the_official_network_and_its_outputs():
    """Official keys still load with the defaults, and the output is the official formulation's (guards a
    default that silently changes the network, e.g. a prompt block left out or fed the wrong features)."""
    net = PromptIR()
    assert_matches_official(net, 'promptir')
    assert all(p.requires_grad for name, p in net.named_parameters() if 'prompt_param' in name)
    torch.manual_seed(0)
    small = PromptIR(**TINY_PROMPTIR, prompt_learnable=True, prompt_levels=[4, 3, 2], prompt_source='pgm').eval()
    reference = reference_like(small, 'PromptIR', **TINY_PROMPTIR).eval()
    x = torch.rand(2, 3, 24, 16)
    with torch.no_grad():
        torch.testing.assert_close(small(x), reference(x), atol=1e-5, rtol=1e-5)
    reference.load_state_dict(PromptIR(**TINY_PROMPTIR).state_dict(), strict=True)  # same keys without the options


def test_fixed_prompts_get_no_gradient_stay_fixed_and_are_in_the_state_dict():
    """prompt_learnable: false: the components are saved (so a checkpoint restores them) but never trained;
    the weights that mix them still learn. Guards a flag that freezes nothing, or drops the components from
    the state dict (a reloaded network would draw other random prompts)."""
    torch.manual_seed(0)
    net = PromptIR(**TINY_PROMPTIR, prompt_learnable=False)
    before = _train_step(net, torch.rand(2, 3, 16, 16))
    for i in (1, 2, 3):
        block = getattr(net, f'prompt{i}')
        assert block.prompt_param.grad is None and not block.prompt_param.requires_grad
        assert torch.equal(block.prompt_param, before[f'prompt{i}.prompt_param'])
        assert not torch.equal(block.linear_layer.weight, before[f'prompt{i}.linear_layer.weight'])
        assert f'prompt{i}.prompt_param' in net.state_dict()
    reloaded = PromptIR(**TINY_PROMPTIR, prompt_learnable=False)
    reloaded.load_state_dict(net.state_dict(), strict=True)
    assert torch.equal(reloaded.prompt3.prompt_param, net.prompt3.prompt_param)


@pytest.mark.parametrize('levels, blocks', [([4], {3}), ([4, 3], {3, 2}), ([2], {1}), ([], set())])
def test_prompt_levels_build_train_and_have_the_expected_keys(levels, blocks):
    """Each level in the paper's numbering gets its block at the right depth (4: the latent, H/8; 3: H/4; 2: H/2:
    a swapped mapping fails the shapes); absent levels have no prompt or interaction keys; at level 4 the 1x1
    reduction 8d -> 4d stays; one step reaches every trainable parameter."""
    torch.manual_seed(0)
    net = PromptIR(**TINY_PROMPTIR, prompt_levels=levels)
    keys = net.state_dict()
    for i in (1, 2, 3):
        present = i in blocks
        assert (f'prompt{i}.prompt_param' in keys) == present
        assert (f'noise_level{i}.attn.temperature' in keys) == present
    assert ('reduce_noise_level3.weight' in keys) and ('reduce_noise_level1.weight' in keys) == (1 in blocks)
    if 3 not in blocks:
        assert tuple(keys['reduce_noise_level3.weight'].shape) == (4 * DIM, 8 * DIM, 1, 1)
    seen = {}
    for i in blocks:
        getattr(net, f'prompt{i}').register_forward_hook(
            lambda module, inputs, output, i=i: seen.__setitem__(i, tuple(inputs[0].shape)))
    x = torch.rand(2, 3, 32, 16)
    before = _train_step(net, x)
    widths = {3: 8 * DIM, 2: 4 * DIM, 1: 2 * DIM}
    assert seen == {i: (2, widths[i], 32 // 2 ** i, 16 // 2 ** i) for i in blocks}
    for name, param in net.named_parameters():
        if param.requires_grad:
            assert param.grad is not None and param.grad.abs().sum() > 0, f'{name} is unused'
            assert not torch.equal(param, before[name]), name
    assert net(x).shape == x.shape


def test_cbde_source_builds_trains_and_drives_the_prompt_weights():
    """prompt_source: cbde: AirNet's encoder (keys cbde.E.*) feeds every block's linear layer; the training
    forward with a key crop returns InfoNCE logits, updates the queue, trains the query encoder only; in eval
    the prompt weights are softmax(linear(encoder features)) (guards prompts still reading pooled features)."""
    torch.manual_seed(0)
    net = PromptIR(**TINY_PROMPTIR, **TINY_CBDE)
    keys = net.state_dict()
    assert {'cbde.E.queue', 'cbde.E.queue_ptr', 'cbde.E.encoder_q.mlp.2.weight',
            'cbde.E.encoder_k.E_pre.backbone.0.weight'} <= set(keys)
    assert all(getattr(net, f'prompt{i}').linear_layer.in_features == 16 for i in (1, 2, 3))

    x, x_key = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    queue = net.cbde.E.queue.clone()
    net.train()
    restored, logits, labels = net(x, x_key)
    assert restored.shape == x.shape and logits.shape == (2, 1 + 12) and labels.tolist() == [0, 0]
    assert not torch.equal(queue, net.cbde.E.queue)
    (restored.abs().mean() + torch.nn.functional.cross_entropy(logits, labels)).backward()
    for name, param in net.named_parameters():
        if param.requires_grad:
            assert param.grad is not None, f'{name} is unused in the contrastive training forward'
    assert all(p.grad is None and not p.requires_grad for p in net.cbde.E.encoder_k.parameters())
    logits_only, _ = net.contrastive(x, x_key)
    assert logits_only.shape == (2, 13)

    net.eval()
    recorded = []
    net.prompt2.linear_layer.register_forward_hook(lambda m, inputs, out: recorded.append(inputs[0]))
    with torch.no_grad():
        out = net(x)
        expected = net.cbde.E.encoder_q(x)[0]
    assert torch.is_tensor(out) and out.shape == x.shape
    torch.testing.assert_close(recorded[0], expected)


@pytest.mark.parametrize('options, message', [
    (dict(prompt_levels=[1]), 'prompt_levels'), (dict(prompt_levels=[4, 4]), 'prompt_levels'),
    (dict(prompt_source='clip'), 'prompt_source'), (dict(prompt_source='cbde', prompt_levels=[]), 'cbde')])
def test_bad_values_are_refused_with_the_option_named(options, message):
    with pytest.raises(ValueError, match=message):
        PromptIR(**TINY_PROMPTIR, **options)
    assert any(message in problem for problem in PromptIR.option_problems(options))


@pytest.mark.parametrize('options', [dict(prompt_levels=[4]), dict(prompt_levels=[3, 2], **TINY_CBDE)],
                         ids=['latent-only', 'cbde'])
def test_variant_weights_load_in_spandrel_by_themselves(options):
    """An ablation variant's weights are read like any PromptIR's (detection, options from the keys): spandrel
    builds the same network and gives the same output. Guards detection keyed on a prompt block the variant
    lacks, or options the keys do not tell."""
    spandrel = pytest.importorskip('spandrel')
    from promptir_basicsr.interop.spandrel import spandrel_registry
    torch.manual_seed(0)
    net = PromptIR(**TINY_PROMPTIR, **options).eval()
    registry = spandrel.MAIN_REGISTRY.copy()
    registry.add(*spandrel_registry(), ignore_duplicates=True)
    model = spandrel.ModelLoader(registry=registry).load_from_state_dict(net.state_dict())
    assert model.architecture.id == 'PromptIR'
    x = torch.rand(1, 3, 16, 24)
    with torch.no_grad():
        torch.testing.assert_close(model(x), net(x).clamp(0, 1))  # spandrel clamps to [0, 1]
