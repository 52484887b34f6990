"""BioIR (``type: BioIR``): the official keys and defaults, equality with the independent re-statement
``tests/official/bioir.py`` (outputs and gradients, float32 and float64, several configurations and sizes),
the facts of the official network (three levels and a size multiple of 4, expansion 3, P2F's global region
pooling, no FFT, Restormer's norm and feed-forward, the unused official module), options read back from
weights, architecture detection, channels-last, activation checkpointing, train/eval, half precision, and
through the real command: ONNX export, and an official-layout Lightning ``.ckpt`` restored, converted and
exported with nothing but ``--weights``.
"""
import inspect
import random

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from basicsr.archs import build_network
from basicsr.utils.registry import ARCH_REGISTRY
from torch.overrides import TorchFunctionMode

from arch_test_helpers import TINY_AIRNET, TINY_PROMPTIR, TINY_RESTORMER, assert_matches_official
from cli_helpers import run_cli
from golden_cases import seeded_state
from official.bioir import BioIR as Reference
from official_keys import lightning_checkpoint
from promptir_basicsr.archs import bioir_arch
from promptir_basicsr.archs.arch_api import detect_arch, options_from_weights
from promptir_basicsr.archs.bioir_arch import BioIR, export_formulation, region_pool
from promptir_basicsr.archs.restormer_blocks import Attention, FeedForward, LayerNorm

TINY_BIOIR = dict(dim=8, num_blocks=[1, 1, 1], num_refinement_blocks=1, ffn_expansion_factor=2.0)
SMALL_BIOIR = dict(dim=8, num_blocks=[1, 2, 1], num_refinement_blocks=1, ffn_expansion_factor=2.5, bias=True)


def scaled_weights(net, seed, scale=0.5):
    """Seeded weights (golden_cases.seeded_state) with every convolution weight times ``scale``: BioIR's
    multiplicative mixers amplify N(0, 1/fan_in) weights 10-100x per block, half of that keeps every
    output and gradient O(1), as in a trained network (see golden_cases.CASES['bioir'])."""
    state = seeded_state(net.state_dict(), seed)
    return {k: v * scale if v.dim() > 1 else v for k, v in state.items()}


def pair(options, seed=0, dtype=torch.float32):
    """(ours, reference) of ``options`` carrying the same seeded weights, in ``dtype``."""
    torch.manual_seed(seed)
    ours = BioIR(**options)
    ours.load_state_dict(scaled_weights(ours, seed), strict=True)
    reference = Reference(**options)
    reference.load_state_dict(ours.state_dict(), strict=True)
    return ours.to(dtype), reference.to(dtype)


def forward_backward(net, x, w):
    """(output, input gradient, {parameter: gradient}) of the loss sum(net(x) * w)."""
    net.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_()
    out = net(x)
    (out * w).sum().backward()
    return out.detach(), x.grad, {k: p.grad for k, p in net.named_parameters() if p.grad is not None}


def assert_same_results(ours, reference, shape, tol, seed=0):
    gen = torch.Generator().manual_seed(seed)
    dtype = next(ours.parameters()).dtype
    x = torch.rand(shape, generator=gen).to(dtype)
    w = torch.randn(shape, generator=gen).to(dtype)
    out, grad_x, grads = forward_backward(ours, x, w)
    ref_out, ref_grad_x, ref_grads = forward_backward(reference, x, w)
    assert out.shape == shape
    assert sorted(grads) == sorted(ref_grads)
    assert (out - ref_out).abs().max() <= tol, 'outputs differ'
    assert (grad_x - ref_grad_x).abs().max() <= tol * max(1.0, ref_grad_x.abs().max()), 'input gradients differ'
    for key, ref in ref_grads.items():
        assert (grads[key] - ref).abs().max() <= tol * max(1.0, ref.abs().max()), f'gradient of {key} differs'


# ---- the official configuration -----------------------------------------------------------------------------
def test_defaults_are_the_official_network():
    net = BioIR()
    assert_matches_official(net, 'bioir')  # every key and shape of model.py's BioIR()
    assert len(net.state_dict()) == 907
    assert sum(p.numel() for p in net.parameters()) == 15_847_328
    # the official constructor's defaults (model.py:227-238)
    options = {name: value.default for name, value in inspect.signature(BioIR).parameters.items()}
    assert options == dict(inp_channels=3, out_channels=3, dim=48, num_blocks=(6, 6, 14), num_refinement_blocks=4,
                           ffn_expansion_factor=3, heads=(1, 2, 4, 8), bias=False, LayerNorm_type='WithBias',
                           decoder=False, keep_unused_modules=True)
    assert ARCH_REGISTRY.get('BioIR') is BioIR


def test_three_levels_and_a_size_multiple_of_four():
    """Two downsamplings (model.py:246, 252), no latent level: the coarsest features are at H/4 and the input
    size multiple is 4 (the official validation and demo pad to 4: train_eval.py:171, demo.py:17)."""
    net = BioIR(**TINY_BIOIR)
    assert net.size_multiple == 4
    assert not any(k.startswith(('latent', 'down3_4', 'encoder_level4', 'up4_3')) for k in net.state_dict())
    seen = {}
    for name in ('patch_embed', 'encoder_level1', 'encoder_level2', 'encoder_level3', 'decoder_level3', 'refinement'):
        getattr(net, name).register_forward_hook(lambda m, i, o, name=name: seen.__setitem__(name, tuple(o.shape)))
    assert net(torch.rand(1, 3, 20, 28)).shape == (1, 3, 20, 28)
    # 20 x 28 is a multiple of 4 (not of 8): it runs unpadded
    assert seen == {'patch_embed': (1, 8, 20, 28), 'encoder_level1': (1, 8, 20, 28), 'encoder_level2': (1, 16, 10, 14),
                    'encoder_level3': (1, 32, 5, 7), 'decoder_level3': (1, 32, 5, 7), 'refinement': (1, 8, 20, 28)}
    net(torch.rand(1, 3, 21, 26))  # padded to 24 x 28
    assert seen['patch_embed'] == (1, 8, 24, 28)


def test_expansion_factor_three_gives_the_official_hidden_widths():
    net = BioIR()
    for level, width in (('encoder_level1', 48), ('encoder_level2', 96), ('encoder_level3', 192)):
        ffn = getattr(net, level)[0].ffn
        assert ffn.project_in.weight.shape == (2 * 3 * width, width, 1, 1)
        assert ffn.project_out.weight.shape == (width, 3 * width, 1, 1)


def test_restormer_norm_and_feed_forward_are_reused_and_there_is_no_restormer_attention():
    net = BioIR(**TINY_BIOIR)
    blocks = [m for m in net.modules() if isinstance(m, bioir_arch.AttBlock)]
    assert len(blocks) == 2 * 3 + 1  # encoder + decoder levels + refinement
    assert all(type(b.norm1) is LayerNorm and type(b.norm2) is LayerNorm and type(b.ffn) is FeedForward
               for b in blocks)
    assert not any(isinstance(m, Attention) for m in net.modules())


class _Calls(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.names = set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.names.add(getattr(func, '__name__', str(func)))
        return func(*args, **(kwargs or {}))


def test_no_fourier_transform_and_global_region_pooling():
    """The all-in-one network has no FFT (its loss has, train_eval.py:31); P2F pools every map to 16 x 16
    regions (model.py:116): adaptive average pooling, resolution-dependent, global."""
    net = BioIR(**TINY_BIOIR).eval()
    with torch.no_grad(), _Calls() as calls:
        net(torch.rand(1, 3, 24, 20))
    assert not any('fft' in name for name in calls.names)
    assert 'adaptive_avg_pool2d' in calls.names
    assert net.tiling_note and '16 x 16 regions' in net.tiling_note and net.spandrel_tiling == 'discouraged'


def test_one_corner_changes_the_far_corner_through_p2f():
    """A single level-1 block: its convolutions see 12 pixels around (3x3 dw, 7x7 dw, 5x5 filter...), yet a
    change in one corner of a 96 x 96 image moves the opposite corner, through P2F's regions of the whole
    map. Why tiles differ from whole images (tiling_note)."""
    torch.manual_seed(0)
    net = BioIR(dim=8, num_blocks=[1, 0, 0], num_refinement_blocks=0, ffn_expansion_factor=2).eval()
    x = torch.rand(1, 3, 96, 96)
    y = x.clone()
    y[..., :8, :8] = 1 - y[..., :8, :8]
    with torch.no_grad():
        change = (net(x) - net(y)).abs()
    assert change[..., -16:, -16:].max() > 1e-6
    with torch.no_grad(), export_formulation():
        assert (net(x) - net(y)).abs()[..., -16:, -16:].max() > 1e-6


@pytest.mark.parametrize('size', [(5, 7), (12, 12), (16, 16), (33, 17), (45, 61), (64, 64), (100, 3)])
def test_region_pooling_as_matrices_is_adaptive_average_pooling(size):
    """The formulation an ONNX export records (averaging matrices from the size), at sizes below 16
    (overlapping bins), divisible and not."""
    x = torch.randn(2, 5, *size, dtype=torch.float64)
    expected = F.adaptive_avg_pool2d(x, 16)
    with export_formulation():
        pooled = region_pool(x)
    torch.testing.assert_close(pooled, expected, rtol=1e-12, atol=1e-12)


def test_export_formulation_gives_the_same_network():
    ours, _ = pair(SMALL_BIOIR, seed=3)
    x = torch.rand(1, 3, 29, 38)
    with torch.no_grad():
        expected = ours(x)
        with export_formulation():
            assert (ours(x) - expected).abs().max() <= 1e-5


def test_downsampling_is_the_official_bilinear_half():
    """Downsample's 2x2 mean equals the official nn.Upsample(scale_factor=0.5, bilinear) at even sizes."""
    torch.manual_seed(0)
    down = bioir_arch.Downsample(4)
    x = torch.randn(2, 4, 10, 14, dtype=torch.float64)
    official = F.interpolate(x, scale_factor=0.5, mode='bilinear', align_corners=False)
    torch.testing.assert_close(down.body[0](x), official, rtol=1e-12, atol=1e-12)


def test_bias_option_reaches_what_the_official_code_gives_it():
    """``bias`` sets the mixer's and feed-forward's convolutions, reduce_chan_level2 and output; the patch
    embedding never has one (model.py:240), P2F's and F2P's convolutions and Fuse always have one."""
    for bias in (False, True):
        keys = set(BioIR(**dict(TINY_BIOIR, bias=bias)).state_dict())
        assert 'patch_embed.proj.bias' not in keys
        for always in ('encoder_level1.0.attn.l2h.conv.bias', 'encoder_level1.0.attn.h2l.dw.bias',
                       'encoder_level1.0.attn.h2l.cv2.bias', 'fuse1.conv.bias', 'fuse2.conv.bias'):
            assert always in keys
        for optional in ('encoder_level1.0.attn.conv.bias', 'encoder_level1.0.attn.dw.bias',
                         'encoder_level1.0.attn.project_out.bias', 'encoder_level1.0.ffn.project_in.bias',
                         'reduce_chan_level2.bias', 'output.bias'):
            assert (optional in keys) == bias


def test_unused_official_module_is_kept_frozen_and_can_be_left_out():
    torch.manual_seed(0)
    net = BioIR(**TINY_BIOIR)
    assert sorted(n for n, p in net.named_parameters() if not p.requires_grad) == ['reduce_chan_level2.weight']
    net(torch.rand(1, 3, 16, 16)).sum().backward()
    assert net.reduce_chan_level2.weight.grad is None
    assert all(p.grad is not None for n, p in net.named_parameters() if p.requires_grad)
    lean = BioIR(**TINY_BIOIR, keep_unused_modules=False)
    assert set(net.state_dict()) - set(lean.state_dict()) == {'reduce_chan_level2.weight'}
    lean.load_state_dict({k: v for k, v in net.state_dict().items() if not k.startswith('reduce_chan_level2')})
    x = torch.rand(1, 3, 16, 20)
    with torch.no_grad():
        torch.testing.assert_close(lean(x), net(x), rtol=0, atol=0)


def test_official_arguments_without_effect_and_refused_values():
    torch.manual_seed(0)
    plain = BioIR(**TINY_BIOIR)
    torch.manual_seed(0)
    other = BioIR(**TINY_BIOIR, heads=[2, 2, 2, 2], decoder=True)
    assert plain.state_dict().keys() == other.state_dict().keys()
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(plain(x), other(x), rtol=0, atol=0)
    with pytest.raises(ValueError, match='three levels'):
        BioIR(num_blocks=[4, 6, 6, 8])
    with pytest.raises(ValueError, match='LayerNorm_type'):
        BioIR(LayerNorm_type='Nope')
    assert BioIR.option_problems({'num_blocks': [1, 1]}) and BioIR.option_problems({}) == []
    assert BioIR.option_problems({'LayerNorm_type': 'Nope'}) == [
        "LayerNorm_type must be one of WithBias, BiasFree, got 'Nope'"]  # num_blocks left out: the official 3 levels
    assert BioIR.option_problems({'num_blocks': [1, 1], 'LayerNorm_type': 'BiasFree'}) == [
        "num_blocks must give the blocks of BioIR's three levels (official [6, 6, 14]), got [1, 1]"]


def test_bias_free_norms_have_no_bias_keys():
    keys = set(BioIR(**TINY_BIOIR, LayerNorm_type='BiasFree').state_dict())
    assert not any('norm' in k and k.endswith('.bias') for k in keys)
    assert 'encoder_level1.0.norm1.body.weight' in keys


# ---- equality with the re-statement of the official network -------------------------------------------------
CONFIGURATIONS = [
    (SMALL_BIOIR, (2, 3, 20, 27)),
    (SMALL_BIOIR, (1, 3, 13, 17)),  # odd sides: padded to 16 x 20
    (dict(SMALL_BIOIR, LayerNorm_type='BiasFree', bias=False), (1, 3, 33, 18)),
    (dict(dim=12, num_blocks=[2, 1, 3], num_refinement_blocks=2, ffn_expansion_factor=3), (1, 3, 12, 12)),
    (dict(inp_channels=1, out_channels=1, dim=8, num_blocks=[1, 0, 1], num_refinement_blocks=0,
          ffn_expansion_factor=2.66), (2, 1, 25, 19)),
]


@pytest.mark.parametrize('options, shape', CONFIGURATIONS, ids=[f'{i}' for i in range(len(CONFIGURATIONS))])
@pytest.mark.parametrize('dtype, tol', [(torch.float32, 1e-4), (torch.float64, 1e-10)], ids=['float32', 'float64'])
def test_outputs_and_gradients_equal_the_reference(options, shape, dtype, tol):
    ours, reference = pair(options, seed=len(shape) + shape[-1], dtype=dtype)
    assert_same_results(ours, reference, shape, tol)


def test_official_configuration_equals_the_reference_in_float32():
    ours, reference = pair({}, seed=5)
    assert_same_results(ours, reference, (1, 3, 24, 20), 1e-4)


def test_tiny_inputs_are_padded_to_twelve():
    """The official network cannot reflect-pad below 12 pixels (H/4 >= 3); ours pads up to 12 (replicate)."""
    ours, reference = pair(TINY_BIOIR, seed=1)
    x = torch.rand(1, 3, 5, 9)
    with torch.no_grad():
        out = ours(x)
        assert out.shape == x.shape
        # reflect to the multiple of 4 (8 x 12), as every size; then replicate to 12 x 12
        padded = F.pad(F.pad(x, (0, 3, 0, 3), mode='reflect'), (0, 0, 0, 4), mode='replicate')
        torch.testing.assert_close(out, ours(padded)[..., :5, :9])
        with pytest.raises(RuntimeError):
            reference(torch.rand(1, 3, 8, 8))


# ---- options from weights, detection ----------------------------------------------------------------------------
def random_options(rng):
    return dict(
        inp_channels=rng.choice([1, 3, 4]), out_channels=rng.choice([1, 3]), dim=rng.choice([4, 6, 8, 12]),
        num_blocks=[rng.randint(0, 2) for _ in range(3)], num_refinement_blocks=rng.randint(0, 2),
        ffn_expansion_factor=rng.choice([1.5, 2.0, 2.5, 2.66, 3]), bias=rng.random() < 0.5,
        LayerNorm_type=rng.choice(['WithBias', 'BiasFree']), keep_unused_modules=rng.random() < 0.7)


@pytest.mark.parametrize('seed', range(8))
def test_options_from_weights_round_trip(seed):
    options = random_options(random.Random(seed))
    if not any(options['num_blocks']) and not options['num_refinement_blocks']:
        options['num_refinement_blocks'] = 1
    net = BioIR(**options)
    read = options_from_weights(net.state_dict())
    assert read.pop('type') == 'BioIR'
    rebuilt = BioIR(**read)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in net.state_dict().items()}
    for key in ('inp_channels', 'out_channels', 'dim', 'num_blocks', 'num_refinement_blocks', 'bias',
                'keep_unused_modules'):
        assert read[key] == options[key], key
    if 'encoder_level1.0.norm1.body.weight' in net.state_dict() or any(options['num_blocks']):
        assert read['LayerNorm_type'] == options['LayerNorm_type']


def test_options_from_the_official_weights_are_the_defaults():
    read = options_from_weights(BioIR().state_dict())
    assert read == dict(type='BioIR', inp_channels=3, out_channels=3, dim=48, num_blocks=[6, 6, 14],
                        num_refinement_blocks=4, ffn_expansion_factor=3, bias=False, LayerNorm_type='WithBias',
                        keep_unused_modules=True)


def test_detection_tells_bioir_from_promptir_restormer_and_airnet():
    ours = BioIR(**TINY_BIOIR).state_dict()
    assert detect_arch(ours) == 'BioIR'
    assert detect_arch(BioIR().state_dict()) == 'BioIR'
    for arch, options in (('PromptIR', TINY_PROMPTIR), ('Restormer', TINY_RESTORMER), ('AirNet', TINY_AIRNET)):
        assert detect_arch(build_network({'type': arch, **options}).state_dict()) == arch
    # without its fusion BioIR's keys would be taken as Restormer's (patch_embed.proj.weight): the signature
    # needs BioIR's own keys
    assert detect_arch({k: v for k, v in ours.items() if not k.startswith('fuse1')}) == 'Restormer'


# ---- memory layout, checkpointing, modes, precision --------------------------------------------------------------
def test_channels_last_weights_and_inputs_give_the_same_output():
    ours, _ = pair(SMALL_BIOIR, seed=2)
    x = torch.rand(1, 3, 20, 24)
    with torch.no_grad():
        expected = ours(x)
        ours.to(memory_format=torch.channels_last)
        out = ours(x.contiguous(memory_format=torch.channels_last))
    assert out.is_contiguous() and (out - expected).abs().max() <= 1e-6


def test_grad_checkpointing_gives_the_same_output_and_gradients(monkeypatch):
    ours, _ = pair(SMALL_BIOIR, seed=4)
    ours.train()
    gen = torch.Generator().manual_seed(0)
    x, w = torch.rand(2, 3, 16, 20, generator=gen), torch.randn(2, 3, 16, 20, generator=gen)
    out, grad_x, grads = forward_backward(ours, x, w)
    calls = []
    from promptir_basicsr.archs import grad_checkpoint
    original = grad_checkpoint.checkpoint
    monkeypatch.setattr(grad_checkpoint, 'checkpoint', lambda fn, *a, **k: calls.append(fn) or original(fn, *a, **k))
    ours.set_grad_checkpointing(True)
    out2, grad_x2, grads2 = forward_backward(ours, x, w)
    assert len(calls) == 6  # every AttBlock stage but the refinement, run last
    torch.testing.assert_close(out2, out, rtol=0, atol=1e-6)
    torch.testing.assert_close(grad_x2, grad_x, rtol=0, atol=1e-6)
    for key in grads:
        torch.testing.assert_close(grads2[key], grads[key], rtol=1e-5, atol=1e-6)


def test_train_and_eval_modes_compute_the_same():
    ours, _ = pair(SMALL_BIOIR, seed=6)
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(ours.train()(x), ours.eval()(x), rtol=0, atol=0)


@pytest.mark.parametrize('dtype, tol', [(torch.float16, 2e-2), (torch.bfloat16, 1e-1)])
def test_half_precision_runs_close_to_float32(dtype, tol):
    """spandrel_supports_half / _bfloat16 (measured at the official configuration, 64x64: 2.4e-3 and 1.8e-2)."""
    torch.manual_seed(0)
    net = BioIR(dim=16, num_blocks=[1, 1, 2], num_refinement_blocks=1).eval()
    x = torch.rand(1, 3, 32, 28)
    with torch.no_grad():
        expected = net(x)
        out = net.to(dtype)(x.to(dtype)).float()
    assert BioIR.spandrel_supports_half and BioIR.spandrel_supports_bfloat16
    assert (out - expected).abs().max() <= tol


# ---- through the real command ----------------------------------------------------------------------------------
def tiny_weights():
    torch.manual_seed(0)
    net = BioIR(**dict(TINY_BIOIR, bias=True)).eval()
    net.load_state_dict(scaled_weights(net, 9))
    return net


@pytest.mark.slow
def test_onnx_export_matches_at_any_size(tmp_path):
    """`basicsr export` checks onnxruntime against the network at 64x64 and 45x61 itself (1e-4); here also at
    29x38 and 12x20, sizes the trace never saw (the region pooling's bins change with the size)."""
    import onnxruntime
    net = tiny_weights()
    torch.save({'params': net.state_dict()}, tmp_path / 'tiny.pth')
    proc = run_cli(['export', '--weights', 'tiny.pth', '--format', 'onnx', '--output', 'tiny.onnx'], cwd=tmp_path)
    assert '64x64 max abs difference' in proc.stdout + proc.stderr
    session = onnxruntime.InferenceSession(str(tmp_path / 'tiny.onnx'), providers=['CPUExecutionProvider'])
    for size in ((29, 38), (12, 20)):
        x = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(size[0]))
        with torch.no_grad():
            expected = net(x).numpy()
        got = session.run(None, {'input': x.numpy()})[0]
        assert np.abs(got - expected).max() <= 1e-4, size


@pytest.mark.slow
def test_official_lightning_checkpoint_restores_converts_and_exports(tmp_path):
    net = tiny_weights()
    torch.save(lightning_checkpoint(net.state_dict()), tmp_path / 'BioIR3D.ckpt')
    image = (np.random.default_rng(0).random((23, 30, 3)) * 255).astype(np.uint8)
    (tmp_path / 'in').mkdir()
    cv2.imwrite(str(tmp_path / 'in' / 'photo.png'), image)

    run_cli(['restore', '-i', 'in', '-o', 'out', '--weights', 'BioIR3D.ckpt'], cwd=tmp_path)
    restored = cv2.imread(str(tmp_path / 'out' / 'photo.png'))
    x = torch.from_numpy(image[..., ::-1].astype(np.float32) / 255).permute(2, 0, 1)[None]
    with torch.no_grad():
        expected = net(x).clamp(0, 1)[0].permute(1, 2, 0).numpy()[..., ::-1] * 255
    assert restored.shape == image.shape and np.abs(restored - expected).max() <= 1.0

    run_cli(['convert', 'BioIR3D.ckpt', 'bioir.pth'], cwd=tmp_path)
    converted = torch.load(tmp_path / 'bioir.pth', weights_only=True)['params']
    assert all(torch.equal(converted[k], v) for k, v in net.state_dict().items()) and len(converted) == len(
        net.state_dict())

    run_cli(['export', '--weights', 'BioIR3D.ckpt', '--format', 'onnx', '--output', 'bioir.onnx'], cwd=tmp_path)
    assert (tmp_path / 'bioir.onnx').stat().st_size > 0


def test_spandrel_loads_bioir_weights_with_its_facts(tmp_path):
    """spandrel (with our architectures added) tells BioIR from the weights alone, and its descriptor carries
    the size multiple 4, the discouraged tiling (global region pooling) and float16/bfloat16 support."""
    import spandrel
    from spandrel import ModelLoader, ModelTiling

    from promptir_basicsr.interop.spandrel import spandrel_registry
    registry = spandrel.MAIN_REGISTRY.copy()
    registry.add(*spandrel_registry(), ignore_duplicates=True)
    net = tiny_weights()
    torch.save({'params': net.state_dict()}, tmp_path / 'bioir.pth')
    model = ModelLoader(registry=registry).load_from_file(tmp_path / 'bioir.pth')
    assert model.architecture.id == 'BioIR' and type(model.model) is BioIR
    assert model.size_requirements.multiple_of == 4 and model.tiling is ModelTiling.DISCOURAGED
    assert model.supports_half and model.supports_bfloat16 and model.tags == ['8dim']
    x = torch.rand(1, 3, 21, 26)
    with torch.no_grad():
        assert (model(x) - net(x).clamp(0, 1)).abs().max() <= 1e-5
