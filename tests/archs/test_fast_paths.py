"""Our fast PromptIR / Restormer / AirNet against the official formulation (``tests/official_formulation.py``).

Our networks run channels-last inside, fold q/k normalisation into the attention map, widen the
feed-forward's odd hidden width with zero channels and checkpoint stages on request; every one of
those must give the official numbers. Each test compares outputs AND the gradients of the input and
of every parameter (1e-4 max abs, float32) on weights where every detail matters: layer-norm
weights and biases and attention temperatures away from their 1/0 initial values, several heads,
odd hidden widths (the zero-channel path), odd image sizes (the padding path), a batch of two.
"""
import pytest
import torch

from official_formulation import reference_like
from promptir_basicsr.archs import restormer_blocks
from promptir_basicsr.archs.airnet_arch import AirNet
from promptir_basicsr.archs.promptir_arch import PromptIR
from promptir_basicsr.archs.restormer_arch import Restormer
from promptir_basicsr.utils.acceleration import to_channels_last

# Several heads at every level (head splitting), hidden widths 21, 42, 85, 170 (all widened), and the
# prompt interaction widths 16+8, 32+16, 64+24 divisible by heads[2].
SMALL = dict(dim=8, num_blocks=[1, 2, 1, 2], num_refinement_blocks=1, heads=[2, 2, 4, 8])
SMALL_PROMPTIR = dict(SMALL, prompt_len=3, prompt_dims=[8, 16, 24], prompt_sizes=[6, 4, 2])
SMALL_AIRNET = dict(n_feats=8, n_groups=2, n_blocks=1, encoder_widths=[8, 16], moco_dim=8, queue_size=12)
TOLERANCE = 1e-4

CASES = {
    'PromptIR': (PromptIR, SMALL_PROMPTIR),
    'PromptIR-BiasFree-bias': (PromptIR, dict(SMALL_PROMPTIR, LayerNorm_type='BiasFree', bias=True)),
    'Restormer': (Restormer, SMALL),
    'Restormer-BiasFree-bias': (Restormer, dict(SMALL, LayerNorm_type='BiasFree', bias=True)),
    'Restormer-dual-pixel': (Restormer, dict(SMALL, inp_channels=6, dual_pixel_task=True)),
}


def _perturbed(net, seed=0):
    """Move the parameters that start as constants (norm weights 1, biases 0, temperatures 1)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in net.named_parameters():
            if 'norm' in name or 'temperature' in name or name.endswith('bias'):
                param.copy_(0.5 + torch.rand(param.shape, generator=gen))
    return net


def _max_abs(a, b):
    return (a - b).abs().max().item()


def _compare(ours, ref, inputs, call=lambda net, x: net(x)):
    """max |difference| of outputs, input gradients and parameter gradients, as a dict."""
    xs = [x.clone().requires_grad_() for x in inputs], [x.clone().requires_grad_() for x in inputs]
    outs = [call(net, *x) for net, x in zip((ours, ref), xs)]
    # The upstream gradient of a mean loss, as in training: gradients at their training scale, where
    # float32 rounding of sums over thousands of pixels stays far below the tolerance (with a unit
    # upstream gradient, a weight gradient of ~400 differs by ~3e-4 between two float32 orders of
    # summation, and from float64 by as much).
    grad = torch.randn(outs[0].shape, generator=torch.Generator().manual_seed(1)) / outs[0].numel()
    for out in outs:
        out.backward(grad)
    ref_params = dict(ref.named_parameters())
    param_diff = max(_max_abs(p.grad, ref_params[n].grad) for n, p in ours.named_parameters() if p.grad is not None)
    missing = [n for n, p in ours.named_parameters() if (p.grad is None) != (ref_params[n].grad is None)]
    assert all((a.grad is None) == (b.grad is None) for a, b in zip(*xs))
    input_diff = max(_max_abs(a.grad, b.grad) for a, b in zip(*xs) if a.grad is not None)
    return {'output': _max_abs(*outs), 'input grad': input_diff,
            'param grad': param_diff, 'grad presence differs': missing}


@pytest.mark.parametrize('case', CASES)
def test_equals_official_formulation_with_gradients(case):
    cls, options = CASES[case]
    torch.manual_seed(0)
    ours = _perturbed(cls(**options))
    ref = reference_like(ours, cls.__name__, **options)
    x = torch.rand(2, options.get('inp_channels', 3), 29, 22)  # padded to 32x24 inside
    diffs = _compare(ours, ref, [x])
    assert diffs.pop('grad presence differs') == []
    assert max(diffs.values()) < TOLERANCE, diffs


@pytest.mark.parametrize('cls,options', [(PromptIR, SMALL_PROMPTIR), (Restormer, SMALL)], ids=['PromptIR', 'Restormer'])
def test_grad_checkpoint_and_channels_last_weights_change_nothing(cls, options):
    """Checkpointed stages recompute the same activations; channels-last weights hold the same values."""
    torch.manual_seed(0)
    ours = to_channels_last(_perturbed(cls(**options))).set_grad_checkpointing(True)
    assert ours.patch_embed.proj.weight.is_contiguous(memory_format=torch.channels_last)
    ref = reference_like(ours, cls.__name__, **options)
    diffs = _compare(ours, ref, [torch.rand(2, 3, 24, 16)])
    assert diffs.pop('grad presence differs') == []
    assert max(diffs.values()) < TOLERANCE, diffs


def test_airnet_training_step_equals_official_formulation_with_checkpointing():
    """AirNet's training forward (query/key crops, contrastive logits) with its groups checkpointed."""
    torch.manual_seed(0)
    ours = AirNet(**SMALL_AIRNET).train().set_grad_checkpointing(True)
    ref = reference_like(ours, 'AirNet', **SMALL_AIRNET)
    x_query, x_key = torch.rand(2, 3, 20, 18), torch.rand(2, 3, 20, 18)

    def restored_and_logits(net, q, k):
        restored, logits, _ = net(q, k)
        return torch.cat([restored.flatten(), logits.flatten()])

    diffs = _compare(ours, ref, [x_query, x_key], restored_and_logits)
    assert diffs.pop('grad presence differs') == []
    assert max(diffs.values()) < TOLERANCE, diffs
    torch.testing.assert_close(ours.E.E.queue, ref.E.E.queue)


def _saved_bytes(net, x):
    """Bytes of the tensors autograd keeps for the backward of one forward (activation memory)."""
    total = [0]

    def pack(tensor):
        total[0] += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        net(x).sum().backward()
    return total[0]


@pytest.mark.parametrize('cls,options', [(PromptIR, SMALL_PROMPTIR), (Restormer, SMALL),
                                         (AirNet, dict(SMALL_AIRNET, n_groups=4))],
                         ids=['PromptIR', 'Restormer', 'AirNet'])
def test_grad_checkpoint_keeps_far_fewer_activations(cls, options):
    """Guards against a checkpointing switch that silently does nothing (or checkpoints nothing big):
    counted at the forward (the recompute in the backward is not counted), checkpointing keeps
    under half the bytes. The memory peak itself is measured by scripts/benchmark.py."""
    torch.manual_seed(0)
    net = cls(**options).train()
    x = torch.rand(2, 3, 32, 32)
    plain = _saved_bytes(net, x)
    checkpointed = _saved_bytes(net.set_grad_checkpointing(True), x)
    assert checkpointed < 0.5 * plain, (checkpointed, plain)
    # no checkpointing outside training mode (an eval forward with gradients saves what it would without)
    net.eval()
    assert _saved_bytes(net, x) == _saved_bytes(net.set_grad_checkpointing(False), x)


def test_exact_widths_switch_gives_the_same_network(monkeypatch):
    """The zero-channel widening is invisible: same output with and without it (and it is really
    switched: the widened run convolves more channels)."""
    torch.manual_seed(0)
    ffn = _perturbed(restormer_blocks.FeedForward(8, 2.66, bias=True))  # hidden 21 -> 32
    x = torch.randn(2, 8, 5, 7)
    seen = []
    conv2d = restormer_blocks.F.conv2d

    def spy(inp, weight, *args, **kwargs):
        seen.append(weight.shape[0])
        return conv2d(inp, weight, *args, **kwargs)

    monkeypatch.setattr(restormer_blocks.F, 'conv2d', spy)
    widened = ffn(x)
    with restormer_blocks.exact_widths():
        exact = ffn(x)
    assert seen == [32, 32, 32, 32, 8] + [21, 21, 21, 21, 8]  # two branches of (1x1, depth-wise), then out
    torch.testing.assert_close(widened, exact, rtol=0, atol=1e-6)


def test_widened_weights_follow_parameter_updates_in_inference():
    """The inference cache of widened weights must not serve stale weights after an optimizer step
    or load_state_dict (guards a cache keyed on the wrong thing)."""
    torch.manual_seed(0)
    ffn = restormer_blocks.FeedForward(8, 2.66)
    x = torch.randn(1, 8, 4, 4)
    with torch.no_grad():
        before = ffn(x)
        ffn.project_out.weight.mul_(2)  # in place, like an optimizer step
        assert torch.allclose(ffn(x), 2 * before, atol=1e-6)
        other = restormer_blocks.FeedForward(8, 2.66)
        ffn.load_state_dict(other.state_dict())
        torch.testing.assert_close(ffn(x), other(x))


def test_modules_keep_official_layout_of_the_state_dict():
    """Nothing of the fast paths leaks into the state dict (no widened or cached tensors)."""
    ours = PromptIR(**SMALL_PROMPTIR)
    with torch.no_grad():
        ours(torch.rand(1, 3, 16, 16))
    ref = reference_like(ours, 'PromptIR', **SMALL_PROMPTIR)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in ref.state_dict().items()}
