"""MoCE-IR (``promptir_basicsr/archs/moce_ir_arch.py``) against the official facts and the independent re-statement
``tests/official/moce_ir.py`` (itself checked bit for bit against the official code, see its docstring).

Weights are seeded (``golden_cases.seeded_state``: norm weights, biases and temperatures away from their initial
1/0, experts strong enough that the router's choice matters). The routing noise is random in evaluation too (the
official behaviour), so every comparison seeds torch's RNG right before each forward: the same draws in ours and
the reference.
"""
import math
import random
import re

import numpy as np
import pytest
import torch
from basicsr.archs import build_network
from basicsr.utils.registry import ARCH_REGISTRY

from arch_test_helpers import assert_matches_official
from golden_cases import seeded_state
from official.moce_ir import MoCEIR as Reference
from official_keys import lightning_checkpoint, official_key_shapes
from promptir_basicsr.archs import moce_ir_arch
from promptir_basicsr.utils import fourier
from promptir_basicsr.archs.arch_api import declaration, detect_arch, options_from_weights
from promptir_basicsr.archs.moce_ir_arch import FFTAttention, MoCEIR, RoutingFunction
from promptir_basicsr.utils.acceleration import to_channels_last

TINY = dict(dim=8, num_blocks=[1, 1, 1, 1], num_dec_blocks=[1, 1, 1], heads=[1, 1, 2, 2], num_refinement_blocks=1)
# Every decoder level with blocks, several heads, 3 experts top-2 with 'lin' ranks and depths, biases, BiasFree.
SMALL_TOP2 = dict(dim=8, num_blocks=[1, 1, 1, 2], num_dec_blocks=[1, 2, 1], heads=[1, 2, 2, 4], num_refinement_blocks=1,
                  ffn_expansion_factor=1.5, bias=True, LayerNorm_type='BiasFree', num_experts=3, topk=2, rank=3,
                  rank_type='lin', depth_type='lin', stage_depth=[2, 1, 1], complexity_scale='min',
                  with_complexity=True)
# The released rules (spread ranks, top-1 of 4) at 3 levels.
SMALL_SPREAD = dict(dim=8, levels=3, num_blocks=[1, 2, 1], num_dec_blocks=[2, 1], heads=[2, 2, 4],
                    num_refinement_blocks=2, stage_depth=[1, 1])
TOLERANCE = 1e-4  # float32: max |ours - reference| <= TOLERANCE * max(1, max |reference|)


def seeded(cls, options, seed=3, **extra):
    torch.manual_seed(0)
    net = cls(**options, **extra)
    net.load_state_dict(seeded_state(net.state_dict(), seed), strict=True)
    return net


def pair(options, seed=3, **extra):
    """Our network and the reference with the same seeded weights."""
    ours = seeded(MoCEIR, options, seed, **extra)
    ref = Reference(**options, **extra)
    ref.load_state_dict(ours.state_dict(), strict=True)
    return ours, ref


def run(net, x, noise_seed, weights=None):
    """(output, balance loss, input gradient, {parameter: gradient}) of one forward after manual_seed(noise_seed),
    with the loss mean(output * weights) + balance loss. (A mean, as training's losses: gradients at their training
    scale. With a sum, float32 parameter gradients in the hundreds differ by ~1e-4 between two summation orders,
    and from float64 by as much; float64 agrees to 1e-14, see test_float64_*.)"""
    x = x.clone().requires_grad_()
    net.zero_grad(set_to_none=True)
    torch.manual_seed(noise_seed)
    out = net(x)
    balance = net.total_loss
    weights = torch.ones_like(out) if weights is None else weights
    ((out * weights).mean() + balance).backward()
    grads = {k: p.grad for k, p in net.named_parameters()}
    return out.detach(), float(torch.as_tensor(balance).detach()), x.grad, grads


def assert_close(ours, ref, tol, what):
    scale = max(1.0, ref.abs().max().item())
    worst = (ours - ref).abs().max().item()
    assert worst <= tol * scale, f'{what}: max difference {worst:.3g} (scale {scale:.3g})'


def assert_same_run(ours, ref, tol):
    (out, bal, gin, grads), (r_out, r_bal, r_gin, r_grads) = ours, ref
    assert_close(out, r_out, tol, 'output')
    assert abs(float(bal) - float(r_bal)) <= tol * max(1.0, abs(float(r_bal))), (float(bal), float(r_bal))
    assert_close(gin, r_gin, tol, 'input gradient')
    for key, grad in r_grads.items():
        assert (grad is None) == (grads[key] is None), f'{key}: gradient presence differs'
        if grad is not None:
            assert_close(grads[key], grad, tol, f'gradient of {key}')


# ---- keys, parameters, the released configurations --------------------------------------------------------------
@pytest.mark.parametrize('name, dim, params', [('moce_ir', 48, 25_353_796), ('moce_ir_s', 32, 11_477_752)])
def test_released_configurations_have_the_official_keys_and_read_back_from_them(name, dim, params):
    """MoCE-IR is our default, MoCE-IR-S is dim 32 (src/options.py:54-84): official keys and shapes, parameter
    count, the complexity buffers in the state dict; and the key list alone (the official .ckpt carries no
    hyper-parameters) gives back the configuration, MoCE-IR and MoCE-IR-S told apart by dim."""
    net = MoCEIR() if dim == 48 else MoCEIR(dim=32)
    assert_matches_official(net, name)
    assert len(net.state_dict()) == 1262
    assert sum(p.numel() for p in net.parameters()) == params
    assert sum('routing.complexity' in k for k in net.state_dict()) == 10  # one buffer per decoder block
    from_keys = {k: torch.zeros(shape) for k, shape in official_key_shapes(name).items()}
    options = options_from_weights(from_keys)
    assert options == dict(type='MoCEIR', inp_channels=3, out_channels=3, dim=dim, levels=4, heads=[1, 2, 4, 8],
                           num_blocks=[4, 6, 6, 8], num_dec_blocks=[2, 4, 4], ffn_expansion_factor=2,
                           num_refinement_blocks=4, LayerNorm_type='WithBias', bias=False, num_experts=4,
                           rank_type='spread', rank=2, complexity_scale='max')
    assert_matches_official(build_network(dict(options)), name)
    assert_matches_official(Reference(dim=dim), name)  # the re-statement too


def test_complexity_buffer_is_the_experts_parameter_counts():
    """moce_ir.py:440, 480-484: the router's buffer = each expert's parameter count / the largest ('max'), / the
    smallest ('min'), or raw ('none'); and options_from_weights reads the scale back from it."""
    net = MoCEIR(**TINY)
    adapter = net.dec[0][2].layers[0].adapter
    counts = torch.tensor([float(sum(p.numel() for p in e.parameters())) for e in adapter.experts])
    torch.testing.assert_close(adapter.routing.complexity, counts / counts.max())
    assert options_from_weights(net.state_dict())['complexity_scale'] == 'max'
    for scale, expected in (('min', counts / counts.min()), ('none', counts.long())):
        other = MoCEIR(**TINY, complexity_scale=scale)
        buffer = other.dec[0][2].layers[0].adapter.routing.complexity
        assert buffer.dtype == expected.dtype and torch.equal(buffer, expected)
        assert options_from_weights(other.state_dict())['complexity_scale'] == scale


def random_options(rng):
    levels = rng.choice([2, 3, 4])
    num_experts = rng.choice([2, 3, 4])
    dim = rng.choice([8, 16])
    rank_type = rng.choice(['spread', 'constant', 'lin', 'double', 'exp', 'fact'])
    rank = {'exp': rng.choice([2, 3]), 'fact': rng.choice([1, 2, 3])}.get(rank_type, rng.choice([1, 2, 3, 5]))
    heads = [rng.choice([h for h in (1, 2, 4) if (dim * 2 ** level) % h == 0]) for level in range(levels)]
    num_dec_blocks = [rng.choice([0, 1, 2]) for _ in range(levels - 1)]
    num_dec_blocks[rng.randrange(levels - 1)] = 1
    return dict(inp_channels=rng.choice([1, 3]), dim=dim, levels=levels, heads=heads,
                num_blocks=[rng.choice([0, 1, 2]) for _ in range(levels)], num_dec_blocks=num_dec_blocks,
                ffn_expansion_factor=rng.choice([1.5, 2, 2.66, 3]), num_refinement_blocks=rng.choice([0, 1, 2]),
                LayerNorm_type=rng.choice(['WithBias', 'BiasFree']), bias=rng.choice([True, False]), rank=rank,
                num_experts=num_experts, rank_type=rank_type, topk=rng.randint(1, num_experts),
                complexity_scale=rng.choice(['max', 'min', 'none']), stage_depth=[1] * (levels - 1))


@pytest.mark.parametrize('seed', range(12))
def test_options_round_trip_through_the_weights(seed):
    """Random non-default configurations: the options read from the state dict rebuild a network with exactly the
    same keys and shapes, and every option with a trace is read as it was."""
    options = random_options(random.Random(seed))
    options['out_channels'] = options['inp_channels']
    net = MoCEIR(**options)
    read = options_from_weights(net.state_dict())
    rebuilt = build_network(dict(read))
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in net.state_dict().items()}
    for key in ('inp_channels', 'out_channels', 'dim', 'levels', 'num_blocks', 'num_dec_blocks',
                'num_refinement_blocks',
                'LayerNorm_type', 'bias', 'num_experts', 'complexity_scale'):
        assert read[key] == options[key], key
    for level, (blocks, head) in enumerate(zip(options['num_blocks'], options['heads'])):
        if blocks or (level == 0 and options['num_refinement_blocks']):
            assert read['heads'][level] == head
    for level in range(options['levels'] - 1):
        width = options['dim'] * 2 ** level
        assert (moce_ir_arch.expert_ranks(width, options['num_experts'], read['rank'], read['rank_type'])
                == moce_ir_arch.expert_ranks(width, options['num_experts'], options['rank'], options['rank_type']))



def test_a_level_without_blocks_reads_back_its_default_heads():
    """A level with no block keeps no temperature, so its heads cannot be read: the 4 released levels take the
    released heads (1, 2, 4, 8), a fifth level 1. Its value changes no key, so the network rebuilds alike; so does
    stage_depth, which has no trace either and is given one 1 per decoder level (the released default has 3)."""
    net = MoCEIR(dim=8, levels=5, num_blocks=[1, 0, 1, 1, 0], num_dec_blocks=[1, 0, 1, 1], heads=[1, 1, 2, 2, 4],
                 num_refinement_blocks=1, stage_depth=[1, 1, 1, 1])
    read = options_from_weights(net.state_dict())
    # level 1 has no encoder and no decoder block (num_dec_blocks lists the levels from 0); level 4 is the latent
    assert read['levels'] == 5 and read['heads'] == [1, 2, 2, 2, 1] and read['stage_depth'] == [1, 1, 1, 1]
    rebuilt = build_network(dict(read))
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in net.state_dict().items()}

# ---- detection --------------------------------------------------------------------------------------------------
def _placeholders(name):
    return {k: torch.empty(0) for k in official_key_shapes(name)}


def test_detected_on_its_weights_and_only_on_them():
    assert ARCH_REGISTRY.get('MoCEIR') is MoCEIR
    assert detect_arch(MoCEIR(**TINY).state_dict()) == 'MoCEIR'
    assert detect_arch(_placeholders('moce_ir')) == 'MoCEIR'
    assert detect_arch(_placeholders('moce_ir_s')) == 'MoCEIR'
    assert detect_arch(_placeholders('promptir')) == 'PromptIR'
    assert detect_arch(_placeholders('restormer')) == 'Restormer'
    assert detect_arch(_placeholders('airnet')) == 'AirNet'


# ---- equality with the re-statement (= the official code) -------------------------------------------------------
EQUALITY = [
    ('top2-lin-BiasFree-bias', SMALL_TOP2, (20, 27)),
    ('top2-lin-BiasFree-bias', SMALL_TOP2, (32, 40)),
    ('spread-3-levels', SMALL_SPREAD, (13, 11)),
    ('spread-3-levels', SMALL_SPREAD, (36, 20)),
    ('tiny', TINY, (24, 17)),
]


@pytest.mark.parametrize('mode', ['eval', 'train'])
@pytest.mark.parametrize('what, options, size', EQUALITY, ids=[f'{c[0]}-{c[2][0]}x{c[2][1]}' for c in EQUALITY])
def test_outputs_and_gradients_equal_the_reference(what, options, size, mode):
    """float32 within 1e-4 (relative to the largest value when above 1): the output, the balance loss, the input's
    gradient and every parameter's gradient (the same ones present: unchosen experts get none). Eval at batch 1
    (the official evaluation path; bigger batches differ on purpose, see test_a_batch_*), training at batch 3
    through the official dispatcher. Odd sizes exercise the padding and the FFT patches' padding."""
    ours, ref = pair(options)
    ours.train(mode == 'train')
    ref.train(mode == 'train')
    batch = 1 if mode == 'eval' else 3
    gen = torch.Generator().manual_seed(4)
    x = torch.rand(batch, options.get('inp_channels', 3), *size, generator=gen)
    weights = torch.randn(x.shape, generator=gen)
    for noise_seed in (0, 7):
        assert_same_run(run(ours, x, noise_seed, weights), run(ref, x, noise_seed, weights), TOLERANCE)


@pytest.mark.parametrize('mode', ['eval', 'train'])
def test_float64_equals_the_reference_to_1e10(mode):
    ours, ref = pair(SMALL_TOP2)
    ours.double().train(mode == 'train')
    ref.double().train(mode == 'train')
    gen = torch.Generator().manual_seed(5)
    x = torch.rand(1 if mode == 'eval' else 2, 3, 20, 27, dtype=torch.float64, generator=gen)
    assert_same_run(run(ours, x, 3), run(ref, x, 3), 1e-10)


# ---- routing noise ----------------------------------------------------------------------------------------------
def test_routing_noise_is_drawn_in_eval_as_the_official_code_does():
    """moce_ir.py:497: noise outside ``if self.training``. routing_noise=True (default): the seeded output equals the
    official one (the re-statement's) for any seed, and two seeds give two outputs: official inference is random."""
    ours, ref = pair(SMALL_TOP2)
    ours.eval()
    ref.eval()
    assert ours.routing_noise is True
    x = torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(1))
    outputs = []
    with torch.no_grad():
        for seed in (0, 1, 2):
            torch.manual_seed(seed)
            out = ours(x)
            torch.manual_seed(seed)
            assert_close(out, ref(x), TOLERANCE, f'seed {seed}')
            outputs.append(out)
    assert any((a - b).abs().max() > 1e-3 for a, b in zip(outputs, outputs[1:])), 'the noise changed nothing'


def test_routing_noise_false_is_deterministic_and_draws_nothing():
    ours, ref = pair(SMALL_TOP2, routing_noise=False)
    ours.eval()
    ref.eval()
    x = torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.manual_seed(0)
        state = torch.get_rng_state()
        first = ours(x)
        assert torch.equal(torch.get_rng_state(), state), 'an evaluation forward drew random numbers'
        torch.manual_seed(123)
        assert torch.equal(ours(x), first)
        assert_close(first, ref(x), TOLERANCE, 'against the reference without noise')
    # training still draws it (the load loss is defined through it), and set_routing_noise switches it
    assert ours.set_routing_noise(True).routing_noise is True
    assert MoCEIR(**TINY, routing_noise=False).routing_noise is False


def test_routing_matches_hand_computation(monkeypatch):
    """RoutingFunction on fixed logits and noise: gates = top-k of softmax(logits + noise), zero elsewhere, not
    renormalised; balance = 0.5 cv^2(importance) + 0.5 cv^2(load) computed here by hand (numpy, math.erf)."""
    routing = RoutingFunction(dim=2, freq_dim=3, num_experts=4, k=2, complexity=torch.tensor([10., 20., 30., 40.]),
                              use_complexity_bias=True, complexity_scale='max').train()
    logits = torch.tensor([[0.2, -0.1, 0.5, 0.0], [1.0, 0.3, -0.4, 0.0], [-0.2, 0.4, 0.1, 0.0]])
    noise = torch.tensor([[0.1, -0.2, 0.0, 0.25], [-0.1, 0.2, 0.4, -0.3], [0.05, 0.0, -0.1, 0.2]])
    with torch.no_grad():
        routing.gate[2].weight.zero_()  # the pooled features add nothing
        routing.freq_gate.weight.copy_(torch.eye(4, 3))  # freq_emb (B, 3) -> logits: copied, the fourth 0
    monkeypatch.setattr(torch, 'randn_like', lambda t: noise / routing.noise_std)
    gates, loss = routing(torch.zeros(3, 2, 4, 4), logits[:, :3])
    lg, noisy = logits.double().numpy(), (logits + noise).double().numpy()
    soft = np.exp(noisy) / np.exp(noisy).sum(1, keepdims=True)
    expected = np.zeros_like(soft)
    for b in range(3):
        top = np.argsort(-soft[b])[:2]
        expected[b, top] = soft[b, top]
    np.testing.assert_allclose(gates.detach().numpy(), expected, rtol=1e-6, atol=1e-7)

    def cv2(v):
        return (np.std(v, ddof=1) / (np.mean(v) + 1e-8)) ** 2
    importance = (np.exp(lg) / np.exp(lg).sum(1, keepdims=True)).sum(0) * np.array([0.25, 0.5, 0.75, 1.0])
    kth = np.array([np.sort(row)[-2] for row in noisy])  # the 2nd largest noisy logit of each sample
    z = (kth[:, None] - lg) / 0.25
    load = np.array([[1 - 0.5 * (1 + math.erf(v / math.sqrt(2))) for v in row] for row in z]).mean(0)
    assert float(loss.detach()) == pytest.approx(0.5 * cv2(importance) + 0.5 * cv2(load), rel=1e-5)
    routing.eval()
    assert routing(torch.zeros(3, 2, 4, 4), logits[:, :3])[1] == 0


def test_balance_loss_is_the_mean_over_decoder_blocks_and_zero_in_eval():
    """moce_ir.py:850-855: the sum of every block's loss over sum(num_dec_blocks); 0 after an evaluation forward."""
    net = seeded(MoCEIR, SMALL_TOP2).train()
    seen = []
    original = RoutingFunction.forward

    def recording(self, x, freq_emb):
        gates, loss = original(self, x, freq_emb)
        seen.append(loss)
        return gates, loss

    RoutingFunction.forward = recording
    try:
        net(torch.rand(2, 3, 16, 16))
    finally:
        RoutingFunction.forward = original
    assert len(seen) == sum(SMALL_TOP2['num_dec_blocks']) == 4
    torch.testing.assert_close(net.balance_loss, sum(seen) / 4)
    assert net.total_loss is net.balance_loss and net.balance_loss.requires_grad
    with torch.no_grad():
        net.eval()(torch.rand(1, 3, 16, 16))
    assert net.balance_loss == 0


# ---- per-sample experts -----------------------------------------------------------------------------------------
def _two_images():
    gen = torch.Generator().manual_seed(0)
    flat = torch.full((1, 3, 24, 24), 0.5) + 0.01 * torch.rand(1, 3, 24, 24, generator=gen)
    busy = torch.rand(1, 3, 24, 24, generator=gen)
    return torch.cat([flat, busy])


def _picks(net, x):
    """The experts each router picks for each sample (B lists of the top-k indices per router)."""
    seen = []
    original = RoutingFunction.forward

    def recording(self, x, freq_emb):
        gates, loss = original(self, x, freq_emb)
        seen.append((gates != 0).nonzero().tolist())
        return gates, loss

    RoutingFunction.forward = recording
    try:
        with torch.no_grad():
            net(x)
    finally:
        RoutingFunction.forward = original
    return seen


def test_a_batch_equals_its_images_run_alone_in_ours_but_not_in_the_official_eval():
    """The official evaluation path (moce_ir.py:458-463) applies the experts of every sample to every sample: a
    batch of 2 whose samples choose different experts (here in all three blocks) differs from the 2 images run
    alone (the re-statement shows it). Ours gives each sample its own experts: the batch equals the runs alone, to
    rounding (float64: 1e-12; the batch-size dependent kernels round differently)."""
    ours, ref = pair(dict(TINY, num_experts=4, topk=1), seed=24, routing_noise=False)
    ours.eval()
    ref.eval()
    x = _two_images()
    picks = _picks(ours, x)
    assert all(sorted(e for b, e in p if b == 0) != sorted(e for b, e in p if b == 1) for p in picks), picks
    with torch.no_grad():
        batch, alone = ours(x), torch.cat([ours(x[:1]), ours(x[1:])])
        ref_batch, ref_alone = ref(x), torch.cat([ref(x[:1]), ref(x[1:])])
        assert_close(batch, alone, 1e-5, 'ours, float32: batch vs alone')
        assert_close(ref_alone, alone, TOLERANCE, 'alone: ours vs reference')
        assert (ref_batch - ref_alone).abs().max() > 1e-2, 'the official batch effect did not show'
        ours.double()
        x = x.double()
        assert_close(ours(x), torch.cat([ours(x[:1]), ours(x[1:])]), 1e-12, 'ours, float64: batch vs alone')


def test_a_training_batch_is_per_sample_too(monkeypatch):
    """In training (the official dispatcher is per sample as well) a batch equals its images alone; the routing noise,
    drawn for the whole batch at once, is zeroed here to compare."""
    monkeypatch.setattr(torch, 'randn_like', torch.zeros_like)
    ours = seeded(MoCEIR, dict(TINY, num_experts=4, topk=1), seed=24).double().train()
    x = _two_images().double()
    with torch.no_grad():
        assert_close(ours(x), torch.cat([ours(x[:1]), ours(x[1:])]), 1e-12, 'train: batch vs alone')



def test_a_mixed_batch_runs_under_autocast_and_each_sample_keeps_its_experts():
    """Under mixed precision (CPU bfloat16 autocast here) the experts return half precision while the mixture sums
    in float32 (the official combine's dtype); a batch whose samples choose different experts sums each expert's
    rows into the float32 map, so the half-precision rows must be cast first. The batch still equals its images
    run alone, to bfloat16's rounding."""
    ours = seeded(MoCEIR, dict(TINY, num_experts=4, topk=1), seed=24, routing_noise=False).eval()
    x = _two_images()
    picks = _picks(ours, x)
    assert any(sorted(e for b, e in p if b == 0) != sorted(e for b, e in p if b == 1) for p in picks), picks
    mixtures = []  # the dtype of each mixture, as the adapter's output convolution receives it
    hooks = [m.proj_out.register_forward_pre_hook(lambda module, args: mixtures.append(args[0].dtype))
             for m in ours.modules() if type(m).__name__ == 'AdapterLayer']
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        batch, alone = ours(x), torch.cat([ours(x[:1]), ours(x[1:])])
    for hook in hooks:
        hook.remove()
    assert len(mixtures) == 3 * 3 and set(mixtures) == {torch.float32}  # 3 blocks, 3 forwards
    assert batch.dtype == torch.float32  # the bfloat16 output convolution plus the float32 input
    assert_close(batch, alone, 0.05, 'bfloat16: batch vs alone')

# ---- the other official facts -----------------------------------------------------------------------------------
def test_expert_depth_changes_nothing():
    """moce_ir.py:369-372: each of the ``depth`` passes starts from the same input, so depth 1 and 'exp' depths
    (1, 2, 4, 8) give the same result (ours computes one pass; the re-statement loops)."""
    x = torch.rand(1, 3, 16, 16)
    outs = []
    for depth in ({'depth_type': 'constant'}, {'depth_type': 'exp'}, {'depth_type': 3}):
        ours, ref = pair(dict(TINY, **depth))
        ours.eval()
        ref.eval()
        assert [e[0].depth for e in ref.dec[0][2].layers[0].adapter.experts] == \
            [e[0].depth for e in ours.dec[0][2].layers[0].adapter.experts]
        with torch.no_grad():
            torch.manual_seed(0)
            outs.append(ours(x))
            torch.manual_seed(0)
            assert_close(outs[-1], ref(x), TOLERANCE, f'{depth}')
    assert torch.equal(outs[0], outs[1]) and torch.equal(outs[0], outs[2])


def test_high_pass_kernel_starts_as_laplacian_and_is_trained():
    """moce_ir.py:191-197: initialised to the 3x3 Laplacian, meant to be frozen but ``requires_grad_ = False``
    only sets an attribute, so it is a trained parameter."""
    net = MoCEIR(**TINY).train()
    weight = net.freq_embed.high_conv[0].conv.weight
    expected = torch.tensor([[-1., -1., -1.], [-1., 8., -1.], [-1., -1., -1.]])
    assert weight.shape == (64, 1, 3, 3) and all(torch.equal(w[0], expected) for w in weight)
    assert weight.requires_grad
    torch.manual_seed(0)
    out = net(torch.rand(2, 3, 16, 16))
    (out.mean() + net.balance_loss).backward()
    assert weight.grad is not None and weight.grad.abs().sum() > 0


def test_fft_attention_computes_in_at_least_float32(monkeypatch):
    """moce_ir.py:332-335: rfft2(q.float()): half precision is transformed in float32; float64 stays float64."""
    seen = []
    original = fourier.circular_convolution

    def recording(a, b):
        seen.extend([a.dtype, b.dtype])
        return original(a, b)

    monkeypatch.setattr(fourier, 'circular_convolution', recording)
    block = FFTAttention(4, patch_size=8)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert torch.isfinite(block(torch.rand(1, 4, 12, 10)).float()).all()
    block.double()(torch.rand(1, 4, 12, 10, dtype=torch.float64))
    assert seen == [torch.float32, torch.float32, torch.float64, torch.float64]


def test_fft_attention_is_a_circular_convolution_per_zero_padded_patch():
    """Each p x p patch of q (zero-padded at the bottom/right) is circularly convolved with the same patch of k."""
    torch.manual_seed(0)
    block = FFTAttention(2, patch_size=4).double()
    q = torch.rand(1, 2, 6, 5, dtype=torch.float64)
    k = torch.rand(1, 2, 6, 5, dtype=torch.float64)
    out = block.from_patches(fourier.circular_convolution(block.to_patches(q), block.to_patches(k)), 6, 5)
    qp = torch.nn.functional.pad(q, (0, 3, 0, 2))
    kp = torch.nn.functional.pad(k, (0, 3, 0, 2))
    expected = torch.zeros_like(qp)
    for ty in range(2):
        for tx in range(2):
            qs, ks = (t[..., 4 * ty:4 * ty + 4, 4 * tx:4 * tx + 4] for t in (qp, kp))
            for i in range(4):
                for j in range(4):
                    expected[..., 4 * ty + i, 4 * tx + j] = sum(
                        qs[..., a, b] * ks[..., (i - a) % 4, (j - b) % 4] for a in range(4) for b in range(4))
    torch.testing.assert_close(out, expected[..., :6, :5])


def test_odd_sizes_give_same_size_output_and_levels_set_the_multiple():
    torch.manual_seed(0)
    net = MoCEIR(**TINY).eval()
    assert net.size_multiple == 8 and MoCEIR(**SMALL_SPREAD).size_multiple == 4
    with torch.no_grad():
        assert net(torch.rand(1, 3, 37, 53)).shape == (1, 3, 37, 53)
        assert net(torch.rand(1, 3, 5, 3)).shape == (1, 3, 5, 3)


@pytest.mark.parametrize('options, problem', [
    (dict(TINY, topk=5), 'topk must be between 1 and num_experts'),
    (dict(TINY, num_experts=1, topk=1), 'num_experts must be >= 2'),
    (dict(TINY, num_blocks=[1, 1, 1]), 'num_blocks must list 4 values'),
    (dict(TINY, rank_type='spread', num_experts=5, dim=8), 'every rank must be >= 1'),
    (dict(TINY, depth_type='constant', stage_depth=[0, 1, 1]), 'expert depth < 1'),
    # the smallest number of experts still has its ranks and depths checked
    (dict(TINY, num_experts=2, rank_type='constant', rank=0), 'every rank must be >= 1'),
    (dict(TINY, num_experts=2, depth_type='lin', stage_depth=[0, 1, 1]), 'expert depth < 1'),
    (dict(TINY, num_dec_blocks=[0, 0, 0]), 'at least one decoder block'),
    (dict(TINY, heads=[3, 1, 2, 2]), 'heads[0] = 3 does not divide'),
    (dict(TINY, out_channels=1), 'out_channels (1) must equal inp_channels'),
    (dict(TINY, complexity_scale='mean'), 'complexity_scale must be one of'),
])
def test_impossible_options_are_refused_with_a_reason(options, problem):
    assert any(problem in p for p in MoCEIR.option_problems(options))
    with pytest.raises(ValueError, match=re.escape(problem)):
        MoCEIR(**options)


_EXPERT_DEPTH = 'gives an expert depth < 1 (the official expert then fails: it returns a result it never computed)'


@pytest.mark.parametrize('options, expected', [
    # every key left out takes the released default (dim 48, 4 levels, 4 experts top-1, spread ranks, depth 1)
    ({}, []),
    ({'levels': 1}, ['levels must be an integer >= 2, got 1']),
    ({'levels': '4'}, ["levels must be an integer >= 2, got '4'"]),
    ({'levels': 2, 'num_blocks': [1, 1], 'heads': [1, 1], 'num_dec_blocks': [1], 'stage_depth': [1]}, []),
    # the lengths come first: with one wrong, nothing else is looked at
    ({'num_blocks': [1, 1, 1], 'heads': 4, 'num_dec_blocks': (1, 1, 1, 1), 'stage_depth': [1, 1],
      'LayerNorm_type': 'Nope'},
     ['num_blocks must list 4 values (levels 4), got [1, 1, 1]', 'heads must list 4 values (levels 4), got 4',
      'num_dec_blocks must list 3 values (levels 4), got (1, 1, 1, 1)',
      'stage_depth must list at least 3 values (one per decoder level), got [1, 1]']),
    ({'stage_depth': 5}, ['stage_depth must list at least 3 values (one per decoder level), got 5']),
    ({'stage_depth': [1, 1, 1, 0]}, []),  # one value per decoder level is read; a fourth is not
    ({'num_dec_blocks': [0, 0, 0]},
     ['num_dec_blocks must give at least one decoder block (the balance loss is their mean)']),
    ({'num_dec_blocks': [0, 0, 1]}, []),
    ({'dim': 8, 'heads': [3, 2, 4, 6]},  # widths 8, 16, 32, 64
     ['heads[0] = 3 does not divide the width 8 of level 0', 'heads[3] = 6 does not divide the width 64 of level 3']),
    ({'LayerNorm_type': 'Nope'}, ["LayerNorm_type must be one of WithBias, BiasFree, got 'Nope'"]),
    # too few experts: their ranks and depths are not looked at
    ({'num_experts': 1, 'rank_type': 'constant', 'rank': 0, 'stage_depth': [0, 0, 0]},
     ['num_experts must be >= 2 (the balance loss is a variance over the experts), got 1']),
    ({'num_experts': '4'}, ["num_experts must be >= 2 (the balance loss is a variance over the experts), got '4'"]),
    ({'num_experts': 2, 'topk': 2}, []),
    ({'topk': 4}, []),
    ({'topk': 0}, ['topk must be between 1 and num_experts (4), got 0']),
    ({'topk': 5}, ['topk must be between 1 and num_experts (4), got 5']),
    ({'topk': 1.0}, ['topk must be between 1 and num_experts (4), got 1.0']),
    ({'rank_type': 'bogus'}, ["rank_type must be one of constant, lin, double, exp, fact, spread, got 'bogus'"]),
    # ranks: the first decoder level with a rank < 1 is named (spread: width // 2^(E-1-i) for expert i)
    ({'rank_type': 'constant', 'rank': 0},
     ['rank_type constant with rank 0 gives the experts of decoder level 0 the ranks [0, 0, 0, 0]; every rank must '
      'be >= 1']),
    ({'dim': 4, 'heads': [1, 1, 1, 1]},
     ['rank_type spread with rank 2 gives the experts of decoder level 0 the ranks [0, 1, 2, 4]; every rank must be '
      '>= 1']),
    ({'rank_type': 'lin', 'rank': 1}, []),
    ({'depth_type': 'bogus'},
     ["depth_type must be one of lin, double, exp, fact, constant or an integer, got 'bogus'"]),
    ({'depth_type': True}, ['depth_type must be one of lin, double, exp, fact, constant or an integer, got True']),
    ({'depth_type': 3}, []),
    ({'depth_type': 0}, [f'depth_type 0 with stage_depth [1, 1, 1] {_EXPERT_DEPTH}']),
    ({'stage_depth': [1, 0, 1]}, [f"depth_type 'constant' with stage_depth [1, 0, 1] {_EXPERT_DEPTH}"]),
    ({'stage_depth': [1, 1, 0]}, [f"depth_type 'constant' with stage_depth [1, 1, 0] {_EXPERT_DEPTH}"]),
    ({'depth_type': 'lin', 'stage_depth': [0, 1, 1]}, [f"depth_type 'lin' with stage_depth [0, 1, 1] {_EXPERT_DEPTH}"]),
    ({'depth_type': 'exp', 'stage_depth': [0, 0, 0]}, []),  # exp and fact depths do not read stage_depth
    ({'complexity_scale': 'mean'}, ["complexity_scale must be one of max, min, none, got 'mean'"]),
    ({'out_channels': 1}, ['out_channels (1) must equal inp_channels (3): the output adds the input image']),
    ({'inp_channels': 1, 'out_channels': 1}, []),
    # every problem at once, in this order
    ({'LayerNorm_type': 'Nope', 'complexity_scale': 'mean', 'out_channels': 1, 'topk': 9, 'rank_type': 'x',
      'depth_type': 'y'},
     ["LayerNorm_type must be one of WithBias, BiasFree, got 'Nope'",
      'topk must be between 1 and num_experts (4), got 9',
      "rank_type must be one of constant, lin, double, exp, fact, spread, got 'x'",
      "depth_type must be one of lin, double, exp, fact, constant or an integer, got 'y'",
      "complexity_scale must be one of max, min, none, got 'mean'",
      'out_channels (1) must equal inp_channels (3): the output adds the input image']),
])
def test_option_problems_list_every_problem_of_the_values_given_and_the_defaults(options, expected):
    assert MoCEIR.option_problems(options) == expected


# ---- speed paths: channels-last, checkpointing, the export formulation ------------------------------------------
def test_channels_last_weights_and_grad_checkpoint_change_nothing():
    """Checkpointing recomputes the decoder levels in the backward pass; the routing noise is replayed (the RNG state
    is restored), so the same experts are chosen and the gradients agree."""
    plain = seeded(MoCEIR, SMALL_TOP2).train()
    fast = to_channels_last(seeded(MoCEIR, SMALL_TOP2)).set_grad_checkpointing(True).train()
    x = torch.rand(2, 3, 20, 27, generator=torch.Generator().manual_seed(2))
    weights = torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
    assert_same_run(run(fast, x.contiguous(memory_format=torch.channels_last), 5, weights),
                    run(plain, x, 5, weights), 1e-5)


def test_train_and_eval_forward_agree_under_the_same_seed():
    """Both draw the same noise and give each sample its own experts: the same output; only training has a loss."""
    net = seeded(MoCEIR, SMALL_TOP2)
    x = torch.rand(2, 3, 16, 24)
    with torch.no_grad():
        torch.manual_seed(9)
        trained = net.train()(x)
        torch.manual_seed(9)
        evaluated = net.eval()(x)
    assert_close(evaluated, trained, 1e-6, 'eval vs train')


def test_export_formulation_equals_the_eager_one(monkeypatch):
    """While traced, every expert runs on every sample, weighted by its (zero or not) gate, and the transforms are
    DFT-matrix products: the same numbers as the eager path."""
    net = seeded(MoCEIR, SMALL_TOP2, routing_noise=False).eval()
    x = torch.rand(2, 3, 21, 30)
    with torch.no_grad():
        eager = net(x)
        monkeypatch.setattr(torch.jit, 'is_tracing', lambda: True)
        with fourier.matmul_transforms():
            traced_path = net(x)
    assert_close(traced_path, eager, 1e-5, 'dense + DFT matrices vs eager')


def test_declarations():
    assert declaration('MoCEIR', 'export_options') == {'routing_noise': False}
    assert declaration('MoCEIR', 'weight_signature') == ('patch_embed.proj.weight', 'freq_embed.mlp.0.weight')
    assert declaration('MoCEIR', 'tiling_note')
    assert MoCEIR.spandrel_tags({'dim': 32, 'num_experts': 4}) == ['32dim', '4experts']


# ---- the command line: official .ckpt -> restore, convert, export -----------------------------------------------
@pytest.fixture(scope='module')
def official_ckpt(tmp_path_factory):
    """A tiny MoCE-IR in the official Lightning layout ({'state_dict': {'net.<key>': ...}}, no hyper-parameters)."""
    root = tmp_path_factory.mktemp('moce_ckpt')
    net = seeded(MoCEIR, dict(TINY, num_experts=3, topk=2), seed=1)
    path = root / 'moce_ir_tiny.ckpt'
    torch.save(lightning_checkpoint(net.state_dict()), path)
    return path, net


def _onnx_differences(printed):
    found = re.findall(r'(\d+)x(\d+) max abs difference ([0-9.e+-]+)', printed)
    return [(int(h), int(w), float(d)) for h, w, d in found]


@pytest.mark.slow
def test_official_ckpt_restores_and_converts(official_ckpt, tmp_path):
    import cv2
    from cli_helpers import run_cli
    ckpt, net = official_ckpt
    (tmp_path / 'in').mkdir()
    cv2.imwrite(str(tmp_path / 'in' / 'a.png'), np.random.default_rng(0).integers(0, 256, (21, 30, 3), np.uint8))
    proc = run_cli(['restore', '-i', 'in', '-o', 'out', '--weights', str(ckpt)], cwd=tmp_path)
    assert 'MoCEIR' in proc.stdout and cv2.imread(str(tmp_path / 'out' / 'a.png')).shape == (21, 30, 3)
    run_cli(['convert', str(ckpt), 'moce.pth'], cwd=tmp_path)
    converted = torch.load(tmp_path / 'moce.pth', weights_only=True)['params']
    assert converted.keys() == net.state_dict().keys()
    assert all(torch.equal(converted[k], v) for k, v in net.state_dict().items())


@pytest.mark.slow
def test_official_ckpt_exports_to_onnx_deterministically(official_ckpt, tmp_path):
    """ONNX through the real CLI: onnxruntime within 1e-4 of PyTorch at 64x64 and an odd size (45x61). The graph
    has no routing noise (routing_noise false), dense experts and DFT-matrix transforms."""
    from cli_helpers import run_cli
    ckpt, _ = official_ckpt
    proc = run_cli(['export', '--weights', str(ckpt), '--format', 'onnx', '--output', 'moce.onnx',
                    '--arch-opt', 'routing_noise=false'], cwd=tmp_path)
    differences = _onnx_differences(proc.stdout)
    assert {(h, w) for h, w, _ in differences} == {(64, 64), (45, 61)}
    assert all(d <= 1e-4 for _, _, d in differences), proc.stdout


@pytest.mark.slow
def test_official_ckpt_exports_with_nothing_but_weights(official_ckpt, tmp_path):
    """The export rebuilds MoCE-IR with its declared export_options (routing_noise: false) and says so."""
    from cli_helpers import run_cli
    ckpt, _ = official_ckpt
    proc = run_cli(['export', '--weights', str(ckpt), '--format', 'onnx', '--output', 'moce.onnx'], cwd=tmp_path)
    assert 'exported with routing_noise=False' in proc.stdout
    assert all(d <= 1e-4 for _, _, d in _onnx_differences(proc.stdout))


def test_expert_depths_follow_the_official_rules():
    """Each depth rule of moce_ir.py:404-417 for four experts at a stage depth of 3, by hand."""
    expected = {'lin': [3, 4, 5, 6], 'double': [3, 5, 7, 9], 'exp': [1, 2, 4, 8], 'fact': [1, 2, 6, 24],
                'constant': [3, 3, 3, 3], 2: [2, 2, 2, 2]}
    for depth_type, depths in expected.items():
        assert moce_ir_arch.expert_depths(4, depth_type, 3) == depths, depth_type


def test_expert_ranks_follow_the_official_rules():
    """Each rank rule of moce_ir.py:419-432 for four experts of a 64-wide block at rank 2, by hand."""
    expected = {'constant': [2, 2, 2, 2], 'lin': [2, 3, 4, 5], 'double': [2, 4, 6, 8], 'exp': [2, 4, 8, 16],
                'fact': [2, 6, 24, 120], 'spread': [8, 16, 32, 64]}
    for rank_type, ranks in expected.items():
        assert moce_ir_arch.expert_ranks(64, 4, 2, rank_type) == ranks, rank_type
