"""AdaIR (archs/adair_arch.py): the official facts (c-yn/AdaIR net/model.py, train.py), and equality with the
independent re-statement of the official network (tests/official/adair.py, itself checked bitwise against the
official code): outputs and gradients, several configurations and sizes, the low-pass window closed (every size
below 512) and open (the window unit lowered in both networks, and once at the real 512 x 512)."""
import inspect
import io
import re
import warnings

import numpy as np
import pytest
import torch
from basicsr.archs import build_network
from basicsr.utils.registry import ARCH_REGISTRY

from arch_test_helpers import TINY_AIRNET, TINY_PROMPTIR, TINY_RESTORMER, assert_matches_official
from cli_helpers import run_cli
from official.adair import AdaIR as ReferenceAdaIR
from official.adair import FreModule as ReferenceFreModule
from official_keys import lightning_checkpoint
from promptir_basicsr.archs.adair_arch import AdaIR, FreModule, centred_window, low_pass_mask
from promptir_basicsr.archs.arch_api import detect_arch, options_from_weights

TINY_ADAIR = dict(dim=8, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1, heads=[1, 2, 2, 4])
FROZEN = ('conv.weight', 'score_gen.weight', 'score_gen.bias', 'rate_conv.0.weight', 'rate_conv.2.weight')


def perturbed(net, seed=0, scale=0.05):
    """``net`` with every parameter moved off its initialisation (para1 = 0 would hide the frequency modules)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in net.parameters():
            param.add_(scale * torch.randn(param.shape, generator=gen, dtype=param.dtype))
    return net


def pair(options, seed=0):
    """(ours, reference) with the same perturbed weights."""
    torch.manual_seed(seed)
    ours = perturbed(AdaIR(**options), seed)
    reference = ReferenceAdaIR(**options)
    reference.load_state_dict(ours.state_dict(), strict=True)
    return ours, reference


@pytest.fixture
def window_unit(monkeypatch):
    """Set the official n=128 of the low-pass rule to another value in ours and in the reference alike."""
    def set_unit(unit):
        monkeypatch.setattr(FreModule, 'window_unit', unit)
        monkeypatch.setattr(ReferenceFreModule, 'WINDOW_UNIT', unit)
    return set_unit


def open_windows(net):
    """({level size: [window open, per sample]}, undo): what each frequency module's bands show in the next
    forwards (a module's low band is non-zero exactly when its window is open)."""
    seen = {}
    modules = [getattr(net, f'fre{i}') for i in (1, 2, 3)]
    for fre in modules:
        def recording(image, bands=fre.bands):
            high, low = bands(image)
            seen[tuple(image.shape[-2:])] = [bool((band > 0).any()) for band in low]
            return high, low
        fre.bands = recording

    def undo():
        for fre in modules:
            del fre.bands

    return seen, undo


def run_with_grads(net, x, w):
    """Output, and the gradients of sum(output * w) w.r.t. the input and every parameter (None kept)."""
    x = x.clone().requires_grad_()
    out = net(x)
    (out * w).sum().backward()
    return out.detach(), {'input': x.grad, **{k: p.grad for k, p in net.named_parameters()}}


def assert_same(ours, reference, x, tol):
    """Outputs and gradients equal within ``tol`` (relative to the largest magnitude, when above 1)."""
    w = torch.randn(x.shape, generator=torch.Generator().manual_seed(9), dtype=x.dtype)
    out, grads = run_with_grads(ours, x, w)
    ref_out, ref_grads = run_with_grads(reference, x, w)
    torch.testing.assert_close(out, ref_out, rtol=0, atol=tol)
    assert {k for k, g in grads.items() if g is None} == {k for k, g in ref_grads.items() if g is None}
    for key, ref in ref_grads.items():
        if ref is not None:
            scale = max(1.0, ref.abs().max().item())
            assert (grads[key] - ref).abs().max().item() <= tol * scale, key


# ---- the official configuration and constructor ---------------------------------------------------------------
def test_default_is_official_configuration():
    """587 keys and shapes as the official AdaIR() (net/model.py:373-424), 28,784,824 parameters."""
    net = AdaIR()
    assert net.decoder is True
    assert_matches_official(net, 'adair')
    assert len(net.state_dict()) == 587
    assert sum(p.numel() for p in net.parameters()) == 28_784_824


def test_constructor_names_and_defaults_are_official():
    """The official AdaIR.__init__ (net/model.py:373-384), plus keep_unused_modules (ours, default: official keys)."""
    official = dict(inp_channels=3, out_channels=3, dim=48, num_blocks=[4, 6, 6, 8], num_refinement_blocks=4,
                    heads=[1, 2, 4, 8], ffn_expansion_factor=2.66, bias=False, LayerNorm_type='WithBias', decoder=True)
    params = inspect.signature(AdaIR).parameters
    assert list(params) == list(official) + ['keep_unused_modules']
    for name, default in official.items():
        value = params[name].default
        assert (list(value) if isinstance(value, tuple) else value) == default, name
    assert params['keep_unused_modules'].default is True
    assert ARCH_REGISTRY.get('AdaIR') is AdaIR
    assert isinstance(build_network(dict(type='AdaIR', decoder=True, **TINY_ADAIR)), AdaIR)


def test_frequency_modules_use_heads2_and_their_levels_widths():
    """fre1/fre2/fre3 at 8d/4d/2d channels, all with heads[2] (net/model.py:391-394)."""
    net = AdaIR(dim=8, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1, heads=[1, 2, 4, 8])
    for i, width in ((1, 64), (2, 32), (3, 16)):
        fre = getattr(net, f'fre{i}')
        assert fre.conv1.weight.shape == (width, 3, 3, 3)
        for name in ('channel_cross_l', 'channel_cross_h', 'channel_cross_agg'):
            assert getattr(fre, name).temperature.shape == (4, 1, 1)


def test_decoder_false_is_restormer():
    """decoder=False builds no frequency module: Restormer's 494 keys, and Restormer's output with its weights;
    such weights are read as Restormer's (they carry nothing of AdaIR's)."""
    net = AdaIR(decoder=False)
    assert_matches_official(net, 'restormer')
    torch.manual_seed(0)
    tiny = perturbed(AdaIR(decoder=False, **TINY_ADAIR)).eval()
    restormer = build_network(dict(type='Restormer', **TINY_ADAIR)).eval()
    restormer.load_state_dict(tiny.state_dict(), strict=True)
    x = torch.rand(1, 3, 20, 27)
    with torch.no_grad():
        torch.testing.assert_close(tiny(x), restormer(x), rtol=0, atol=0)
    assert detect_arch(tiny.state_dict()) == 'Restormer'
    assert AdaIR.options_from_weights(tiny.state_dict())['decoder'] is False


def test_untrained_module_passes_features_through():
    """para1 starts at 0 and para2 at 1 (net/model.py:298-299): a new AdaIR computes what its Restormer body does."""
    torch.manual_seed(0)
    net = AdaIR(**TINY_ADAIR).eval()
    assert all(torch.equal(getattr(net, f'fre{i}').para1, torch.zeros_like(getattr(net, f'fre{i}').para1))
               for i in (1, 2, 3))
    body = AdaIR(decoder=False, **TINY_ADAIR).eval()
    body.load_state_dict({k: v for k, v in net.state_dict().items() if not k.startswith('fre')}, strict=True)
    x = torch.rand(2, 3, 24, 32)
    with torch.no_grad():
        torch.testing.assert_close(net(x), body(x), rtol=0, atol=0)


# ---- equality with the official formulation -------------------------------------------------------------------
CONFIGURATIONS = {
    'tiny': TINY_ADAIR,
    'biases, BiasFree, ffn 2': dict(dim=16, num_blocks=[1, 2, 1, 1], num_refinement_blocks=1, heads=[2, 2, 4, 4],
                                    bias=True, ffn_expansion_factor=2.0, LayerNorm_type='BiasFree'),
    'deeper, 8 heads': dict(dim=8, num_blocks=[2, 1, 1, 2], num_refinement_blocks=2, heads=[1, 1, 8, 2],
                            ffn_expansion_factor=1.5),
}


@pytest.mark.parametrize('dtype, tol', [(torch.float32, 1e-4), (torch.float64, 1e-10)], ids=['float32', 'float64'])
@pytest.mark.parametrize('size, batch', [((20, 27), 2), ((33, 17), 1), ((16, 16), 1)], ids=str)
@pytest.mark.parametrize('name', sorted(CONFIGURATIONS))
def test_matches_the_official_formulation(name, size, batch, dtype, tol):
    """Windows closed (every size here is below 512): the low band is zero, the high band the whole embedding."""
    ours, reference = pair(CONFIGURATIONS[name])
    x = torch.rand(batch, 3, *size, generator=torch.Generator().manual_seed(1)).to(dtype)
    assert_same(ours.to(dtype), reference.to(dtype), x, tol)


@pytest.mark.parametrize('dtype, tol', [(torch.float32, 1e-4), (torch.float64, 1e-10)], ids=['float32', 'float64'])
@pytest.mark.parametrize('name, size, unit', [('tiny', (64, 72), 4), ('biases, BiasFree, ffn 2', (48, 41), 4),
                                              ('deeper, 8 heads', (40, 56), 2)], ids=str)
def test_matches_the_official_formulation_with_open_windows(window_unit, name, size, unit, dtype, tol):
    """The window unit lowered in both networks, so the low-pass windows open at these sizes (checked), with rates
    that differ between the two samples of the batch."""
    window_unit(unit)
    ours, reference = pair(CONFIGURATIONS[name], seed=3)
    x = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(1)).to(dtype)
    x[1] = 0.3 * x[1]
    ours, reference = ours.to(dtype), reference.to(dtype)
    seen, undo = open_windows(ours)
    assert_same(ours, reference, x, tol)
    undo()
    assert sum(map(sum, seen.values())) >= 3, seen


# ---- the low-pass window -----------------------------------------------------------------------------------------
def official_mask(h, w, rates, n):
    """The official rule as net/model.py:340-362 writes it, per sample, on a centred spectrum, then unshifted."""
    mask = torch.zeros(rates.shape[0], 1, h, w, dtype=rates.dtype)
    for i in range(rates.shape[0]):
        h_ = (h // n * rates[i, 0]).int()
        w_ = (w // n * rates[i, 1]).int()
        mask[i, :, h // 2 - h_:h // 2 + h_, w // 2 - w_:w // 2 + w_] = 1
    return torch.roll(mask, shifts=(-int(h / 2), -int(w / 2)), dims=(2, 3))


def test_low_pass_mask_is_the_official_rule():
    """Sizes odd and even, below and above the unit's multiples; rates random and at the truncation boundaries
    (exactly 0.5, just below it, 1/3 times 3 rounding up in float32); float32 and float64."""
    gen = torch.Generator().manual_seed(0)
    below_half = float(np.nextafter(np.float32(0.5), np.float32(0)))
    boundary = torch.tensor([[0.5, 0.5], [below_half, 0.75], [1 / 3, 2 / 3], [0.999999, 0.0001]], dtype=torch.float32)
    for dtype in (torch.float32, torch.float64):
        for h, w in ((8, 8), (9, 13), (16, 7), (33, 40), (12, 5)):
            for n in (2, 3, 4):  # n >= 2 keeps the official slice inside the spectrum (n=1 would wrap around)
                rates = torch.cat([boundary, torch.rand(6, 2, generator=gen)]).to(dtype)
                expected = official_mask(h, w, rates, n)
                assert torch.equal(low_pass_mask(h, w, rates, n), expected), (h, w, n, dtype)
    # the real unit: a window from 256 pixels on, half-size int(h // 128 * rate)
    rates = torch.tensor([[0.5, 0.5], [0.49, 0.9], [0.9, 0.9]])
    assert torch.equal(low_pass_mask(256, 300, rates), official_mask(256, 300, rates, 128))
    assert low_pass_mask(256, 300, rates).flatten(1).sum(1).tolist() == [4.0, 0.0, 4.0]
    assert low_pass_mask(255, 1000, rates).sum() == 0 and low_pass_mask(1000, 255, rates).sum() == 0
    assert low_pass_mask(640, 640, torch.tensor([[0.9, 0.61]])).sum() == 8 * 6  # half-sizes 4 and 3
    # the centred window of a size-5 row with half 1 (n=2): indices 1 and 2 of a centre at 2
    assert centred_window(5, torch.tensor([0.5]), 2).tolist() == [[0.0, 1.0, 1.0, 0.0, 0.0]]


def test_bands_are_the_official_fft_split():
    """fft2 norm='forward', shifted, masked, unshifted, ifft2 norm='forward', torch.abs (net/model.py:351-364),
    with the window open for one sample and closed for the other; and bilinear resizing without align_corners."""
    torch.manual_seed(0)
    fre = FreModule(16, 2)
    with torch.no_grad():
        fre.rate_conv[2].weight.zero_()  # rates exactly 0.5
    image = torch.rand(2, 3, 256, 260, dtype=torch.float64)
    fre.double()
    high, low = fre.bands(image)
    x = fre.conv1(image)
    spectrum = torch.roll(torch.fft.fft2(x, norm='forward'), shifts=(128, 130), dims=(2, 3))
    mask = torch.zeros_like(x)
    mask[:, :, 127:129, 129:131] = 1  # h // 128 * 0.5 = 1, w // 128 * 0.5 = 1
    expected_low = torch.fft.ifft2(torch.roll(spectrum * mask, shifts=(-128, -130), dims=(2, 3)), norm='forward').abs()
    expected_high = torch.fft.ifft2(torch.roll(spectrum * (1 - mask), shifts=(-128, -130), dims=(2, 3)),
                                    norm='forward').abs()
    torch.testing.assert_close(low, expected_low, rtol=0, atol=1e-12)
    torch.testing.assert_close(high, expected_high, rtol=0, atol=1e-12)
    assert low.abs().max() > 0
    # a level below 256 pixels: no low band at all, the high band is |x|
    high, low = fre.bands(image[..., :255, :])
    assert torch.count_nonzero(low) == 0
    torch.testing.assert_close(high, fre.conv1(image[..., :255, :]).abs(), rtol=0, atol=1e-12)
    # the image reaches each level by bilinear resizing with align_corners False
    y = torch.rand(2, 16, 8, 10, dtype=torch.float64)
    seen = {}

    def recording(img):  # the bands replaced by ones: only what reaches them matters here
        seen['image'] = img
        ones = torch.ones(img.shape[0], 16, *img.shape[-2:], dtype=img.dtype)
        return ones, ones

    fre.bands = recording
    fre(image, y)
    resized = torch.nn.functional.interpolate(image, (8, 10), mode='bilinear', align_corners=False)
    torch.testing.assert_close(seen['image'], resized, rtol=0, atol=0)


@pytest.mark.slow
def test_real_window_at_512_matches_the_official_formulation_and_changes_the_output():
    """At 512 x 512 the window of fre3 (a 256 x 256 level) opens with the official unit: ours equals the official
    formulation there, and the low band changes the result, so the output depends on the resolution."""
    ours, reference = pair(TINY_ADAIR, seed=6)
    with torch.no_grad():
        for net in (ours, reference):
            net.fre3.rate_conv[2].weight.zero_()  # rates 0.5: half-size int(2 * 0.5) = 1
            net.fre3.para1.fill_(1.0)  # the module's own output at full weight
    x = torch.rand(1, 3, 512, 512, generator=torch.Generator().manual_seed(1))
    seen, undo = open_windows(ours)
    assert_same(ours, reference, x, 1e-4)
    undo()
    assert seen[(256, 256)] == [True] and seen[(128, 128)] == [False]
    closed = FreModule.window_unit
    try:
        FreModule.window_unit = 10 ** 6
        with torch.no_grad():
            without_low_band = ours(x)
    finally:
        FreModule.window_unit = closed
    with torch.no_grad():
        assert (ours(x) - without_low_band).abs().max() > 1e-5  # 2e-4 measured; the same ops give 0 otherwise


def test_tiling_is_discouraged_with_a_note():
    assert AdaIR.size_multiple == 8
    assert AdaIR.spandrel_tiling == 'discouraged'
    assert 'tile size' in AdaIR.tiling_note and '512' in AdaIR.tiling_note


# ---- modules that are never trained ----------------------------------------------------------------------------
def test_unused_and_untrained_modules_are_frozen_but_load_strictly():
    """conv and score_gen are never called, rate_conv only through an integer truncation: the official training
    gives them no gradient (the reference shows it), so here they are frozen; everything else gets a gradient (DDP
    needs one for every parameter that requires it). Below 512 px the low band is zero, so the one weight that
    multiplies only it, channel_cross_h's q (with biases; without, its q_dwconv and temperature too), gets a zero
    gradient, here as in the official code: the official 128-pixel training never trains it."""
    ours, reference = pair(dict(TINY_ADAIR, bias=True))
    frozen = sorted(k for k, p in ours.named_parameters() if not p.requires_grad)
    assert frozen == sorted(f'fre{i}.{name}' for i in (1, 2, 3) for name in FROZEN)
    x = torch.rand(2, 3, 24, 16)
    _, grads = run_with_grads(ours, x, torch.ones(2, 3, 24, 16))
    _, ref_grads = run_with_grads(reference, x, torch.ones(2, 3, 24, 16))
    assert sorted(k for k, g in ref_grads.items() if g is None) == frozen  # requires_grad there, yet no gradient
    assert all((g is None) == (k in frozen) for k, g in grads.items())
    zero = sorted(k for k, g in grads.items() if g is not None and g.abs().max() == 0)
    assert zero == [f'fre{i}.channel_cross_h.q.weight' for i in (1, 2, 3)]
    assert sorted(k for k, g in ref_grads.items() if g is not None and g.abs().max() == 0) == zero
    # official weights load strictly, and the frozen weights keep what they were given
    torch.manual_seed(1)
    official = {k: torch.randn_like(v) for k, v in ReferenceAdaIR(**TINY_ADAIR, bias=True).state_dict().items()}
    assert ours.load_state_dict(official, strict=True).missing_keys == []
    assert torch.equal(ours.fre2.rate_conv[0].weight, official['fre2.rate_conv.0.weight'])
    assert not ours.fre2.rate_conv[0].weight.requires_grad
    # without the unused modules
    lean = AdaIR(**TINY_ADAIR, keep_unused_modules=False)
    assert not any(k.endswith(('.conv.weight', 'score_gen.weight')) for k in lean.state_dict())
    assert 'fre1.rate_conv.0.weight' in lean.state_dict()


def test_zero_low_band_gives_finite_gradients():
    """Without biases the low band's query is exactly zero below 512 px: F.normalize's gradient there is 0, and
    ours (a norm taken of the clamped sum of squares) must not turn it into NaN."""
    ours, reference = pair(dict(TINY_ADAIR, bias=False))
    _, grads = run_with_grads(ours, torch.rand(1, 3, 16, 24), torch.ones(1, 3, 16, 24))
    assert all(torch.isfinite(g).all() for g in grads.values() if g is not None)
    assert grads['fre3.channel_cross_h.q.weight'].abs().max() == 0


# ---- reading the weights -----------------------------------------------------------------------------------------
ROUND_TRIP = [
    dict(TINY_ADAIR),
    dict(dim=16, num_blocks=[2, 1, 3, 1], num_refinement_blocks=2, heads=[2, 4, 8, 2], bias=True,
         ffn_expansion_factor=1.5, LayerNorm_type='BiasFree', keep_unused_modules=False),
    dict(dim=8, num_blocks=[1, 1, 0, 1], num_refinement_blocks=0, heads=[1, 1, 4, 1], ffn_expansion_factor=2.0),
    dict(dim=8, inp_channels=1, out_channels=1, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1, heads=[1, 2, 2, 4]),
    dict(dim=12, num_blocks=[1, 2, 1, 1], num_refinement_blocks=1, heads=[3, 2, 2, 4], decoder=False),
]


@pytest.mark.parametrize('options', ROUND_TRIP, ids=range(len(ROUND_TRIP)))
def test_options_from_weights_round_trip(options):
    net = AdaIR(**options)
    read = AdaIR.options_from_weights(net.state_dict())
    rebuilt = AdaIR(**read)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in net.state_dict().items()}
    for key in ('dim', 'num_blocks', 'heads', 'bias', 'LayerNorm_type', 'decoder', 'inp_channels', 'out_channels'):
        expected = options.get(key, inspect.signature(AdaIR).parameters[key].default)
        value = read[key]
        assert (list(value) if isinstance(value, (tuple, list)) else value) == \
            (list(expected) if isinstance(expected, (tuple, list)) else expected), key
    if options.get('decoder', True):
        assert read['keep_unused_modules'] == options.get('keep_unused_modules', True)
        assert options_from_weights(net.state_dict())['type'] == 'AdaIR'


def test_detect_arch_tells_adair_from_the_others():
    adair = AdaIR(**TINY_ADAIR).state_dict()
    assert detect_arch(adair) == 'AdaIR'
    assert detect_arch(AdaIR(**TINY_ADAIR, keep_unused_modules=False).state_dict()) == 'AdaIR'
    assert detect_arch(build_network(dict(type='PromptIR', **TINY_PROMPTIR)).state_dict()) == 'PromptIR'
    assert detect_arch(build_network(dict(type='Restormer', **TINY_RESTORMER)).state_dict()) == 'Restormer'
    assert detect_arch(build_network(dict(type='AirNet', **TINY_AIRNET)).state_dict()) == 'AirNet'


# ---- options, memory layouts, checkpointing, precision ---------------------------------------------------------
def test_option_problems_are_refused_with_reasons():
    with pytest.raises(ValueError, match='dim must be at least 8'):
        AdaIR(dim=4, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1, heads=[1, 1, 1, 1])
    with pytest.raises(ValueError, match=r'heads\[2\] \(8\) must divide 2\*dim \(20\)'):
        AdaIR(dim=10, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1, heads=[1, 1, 8, 1])  # 4d and 8d would do
    assert AdaIR.option_problems({'dim': 4}) and AdaIR.option_problems({'dim': 4, 'decoder': False}) == []
    AdaIR(dim=4, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1, heads=[1, 1, 1, 1], decoder=False)


@pytest.mark.parametrize('options, expected', [
    # a key left out takes the constructor's default: dim 48, heads [1, 2, 4, 8] (heads[2] = 4), decoder on
    ({}, []),
    ({'heads': [1, 2, 5, 8]}, ['heads[2] (5) must divide 2*dim (96): the frequency modules use heads[2] at every '
                               'level, fre3 at 2*dim channels']),
    ({'dim': 9}, ['heads[2] (4) must divide 2*dim (18): the frequency modules use heads[2] at every level, fre3 at '
                  '2*dim channels']),
    ({'dim': 4, 'heads': [1, 1, 1, 1]}, ['dim must be at least 8 with decoder: true (the channel gate of fre3 has '
                                         '2*dim//16 channels), got 4']),
    ({'dim': 9, 'decoder': False}, []),
    # too short a heads list is the schema's to refuse; heads[2] is still checked when it is there
    ({'heads': [1, 2, 5]}, ['heads[2] (5) must divide 2*dim (96): the frequency modules use heads[2] at every '
                            'level, fre3 at 2*dim channels']),
    ({'heads': [1, 2]}, []),
])
def test_option_problems_of_the_options_given_and_the_defaults(options, expected):
    assert AdaIR.option_problems(options) == expected


def test_channels_last_checkpointing_and_modes_change_nothing():
    torch.manual_seed(0)
    net = perturbed(AdaIR(**TINY_ADAIR))
    x = torch.rand(2, 3, 20, 27)
    w = torch.randn(2, 3, 20, 27)
    out, grads = run_with_grads(net.train(), x, w)
    with torch.no_grad():
        torch.testing.assert_close(net.eval()(x), out, rtol=0, atol=1e-6)
    net.train().set_grad_checkpointing(True)
    net.zero_grad()
    out_ckpt, grads_ckpt = run_with_grads(net, x, w)
    torch.testing.assert_close(out_ckpt, out, rtol=0, atol=1e-6)
    for key, grad in grads.items():
        assert (grad is None) == (grads_ckpt[key] is None), key
        if grad is not None:
            torch.testing.assert_close(grads_ckpt[key], grad, rtol=1e-5, atol=1e-6)
    net.set_grad_checkpointing(False).zero_grad()
    net.to(memory_format=torch.channels_last)
    out_cl, grads_cl = run_with_grads(net, x.contiguous(memory_format=torch.channels_last), w)
    torch.testing.assert_close(out_cl, out, rtol=0, atol=1e-5)
    torch.testing.assert_close(grads_cl['input'], grads['input'], rtol=1e-4, atol=1e-5)
    assert out_cl.is_contiguous()


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16], ids=['bf16', 'fp16'])
def test_half_precision_runs_with_a_float32_spectrum(dtype):
    """FFTs of float16/bfloat16 are not available everywhere: the spectral part runs in float32, the rest in the
    network's precision (spandrel_supports_half / _bfloat16)."""
    torch.manual_seed(0)
    net = perturbed(AdaIR(**TINY_ADAIR)).eval()
    x = torch.rand(1, 3, 24, 32)
    with torch.no_grad():
        expected = net(x)
        low = net.to(dtype)(x.to(dtype))
    assert low.dtype == dtype and torch.isfinite(low).all()
    assert (low.float() - expected).abs().max() < 0.05
    assert AdaIR.spandrel_supports_half and AdaIR.spandrel_supports_bfloat16


# ---- ONNX, official checkpoints, the command line -------------------------------------------------------------
def _onnx(net, trace_size=(37, 53)):
    buffer = io.BytesIO()
    axes = {0: 'batch', 2: 'height', 3: 'width'}
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        torch.onnx.export(net, (torch.rand(1, 3, *trace_size),), buffer, dynamo=False, opset_version=17,
                          input_names=['input'], output_names=['output'],
                          dynamic_axes={'input': axes, 'output': axes})
    import onnxruntime
    return onnxruntime.InferenceSession(buffer.getvalue(), providers=['CPUExecutionProvider'])


def test_onnx_graph_computes_the_window_for_any_size_and_batch(window_unit):
    """Traced at 37 x 53 (windows closed) with batch 1, run at other sizes and batch 2, windows open and closed:
    the window's size comes from the input's size and each sample's rates inside the graph."""
    pytest.importorskip('onnxruntime')
    window_unit(4)
    torch.manual_seed(0)
    net = perturbed(AdaIR(**TINY_ADAIR)).eval()
    session = _onnx(net)
    for size in ((64, 72), (45, 61), (8, 16)):
        x = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(1))
        x[1] = 0.3 * x[1]
        seen, undo = open_windows(net)
        with torch.no_grad():
            expected = net(x)
        undo()
        got = session.run(None, {'input': x.numpy()})[0]
        assert np.abs(got - expected.numpy()).max() < 1e-4, size
        if size == (64, 72):
            assert sum(map(sum, seen.values())) >= 3, seen


@pytest.mark.slow
def test_onnx_graph_at_512_with_the_official_unit():
    pytest.importorskip('onnxruntime')
    torch.manual_seed(6)
    net = perturbed(AdaIR(**TINY_ADAIR), 6).eval()
    with torch.no_grad():
        net.fre3.rate_conv[2].weight.zero_()
    session = _onnx(net)
    x = torch.rand(1, 3, 512, 520, generator=torch.Generator().manual_seed(1))
    seen, undo = open_windows(net)
    with torch.no_grad():
        expected = net(x)
    undo()
    assert seen[(256, 260)] == [True]
    assert np.abs(session.run(None, {'input': x.numpy()})[0] - expected.numpy()).max() < 1e-4


@pytest.mark.slow
def test_official_lightning_checkpoint_restores_converts_and_exports(tmp_path):
    """An official-layout .ckpt ({'state_dict': {'net.' + key}}) of a tiny AdaIR: `basicsr restore`, `convert` and
    `export --format onnx` with nothing but the file; the ONNX check at 64x64 and 45x61 within 1e-4."""
    pytest.importorskip('onnxruntime')
    import cv2
    torch.manual_seed(0)
    net = perturbed(ReferenceAdaIR(**TINY_ADAIR)).eval()
    ckpt = tmp_path / 'adair.ckpt'
    torch.save(lightning_checkpoint(net.state_dict()), ckpt)
    image = (np.random.default_rng(0).random((21, 30, 3)) * 255).round().astype(np.uint8)
    (tmp_path / 'in').mkdir()
    cv2.imwrite(str(tmp_path / 'in' / 'a.png'), image)

    run_cli(['restore', '-i', 'in', '-o', 'out', '--weights', str(ckpt)], cwd=tmp_path)
    restored = cv2.imread(str(tmp_path / 'out' / 'a.png'))
    x = torch.from_numpy(image[..., ::-1].copy()).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        expected = (net(x).clamp(0, 1)[0].permute(1, 2, 0).numpy()[..., ::-1] * 255).round()
    assert restored.shape == image.shape and np.abs(restored - expected).max() <= 1

    run_cli(['convert', str(ckpt), str(tmp_path / 'adair.pth')], cwd=tmp_path)
    converted = torch.load(tmp_path / 'adair.pth', weights_only=True)['params']
    rebuilt = build_network(options_from_weights(converted))
    assert isinstance(rebuilt, AdaIR) and rebuilt.load_state_dict(converted, strict=True).missing_keys == []

    proc = run_cli(['export', '--weights', str(ckpt), '--format', 'onnx', '--output', 'adair.onnx'], cwd=tmp_path)
    differences = re.findall(r'(\d+)x(\d+) max abs difference ([0-9.e+-]+)', proc.stdout)
    assert sorted((int(h), int(w)) for h, w, _ in differences) == [(45, 61), (64, 64)]
    assert all(float(d) <= 1e-4 for _, _, d in differences)


def test_spandrel_loads_an_official_checkpoint(tmp_path):
    """spandrel (with our install and its extra arches, whose Restormer also matches Restormer's keys) finds AdaIR
    in an official-layout .ckpt, builds it from the keys, and declares its facts: tiling discouraged, multiple 8."""
    spandrel = pytest.importorskip('spandrel')
    extra = pytest.importorskip('spandrel_extra_arches')
    from promptir_basicsr.interop.spandrel import spandrel_registry
    registry = spandrel.MAIN_REGISTRY.copy()
    registry.add(*extra.EXTRA_REGISTRY, ignore_duplicates=True)
    registry.add(*spandrel_registry(), ignore_duplicates=True)
    torch.manual_seed(0)
    net = perturbed(ReferenceAdaIR(**TINY_ADAIR)).eval()
    torch.save(lightning_checkpoint(net.state_dict()), tmp_path / 'adair.ckpt')
    model = spandrel.ModelLoader(registry=registry).load_from_file(tmp_path / 'adair.ckpt')
    assert type(model.model) is AdaIR and model.architecture.id == 'AdaIR'
    assert model.tiling is spandrel.ModelTiling.DISCOURAGED and model.size_requirements.multiple_of == 8
    assert model.supports_half and model.supports_bfloat16 and model.tags == ['8dim']
    x = torch.rand(1, 3, 21, 30)
    with torch.no_grad():
        assert (model.model(x) - net(x)).abs().max() <= 1e-5


def test_spandrel_tags_name_the_width_and_a_network_without_frequency_modules():
    """spandrel's tags: the width, and 'no-frequency-modules' only where decoder is false (the default is true)."""
    assert AdaIR.spandrel_tags({'dim': 48}) == ['48dim']
    assert AdaIR.spandrel_tags({'dim': 48, 'decoder': True}) == ['48dim']
    assert AdaIR.spandrel_tags({'dim': 24, 'decoder': False}) == ['24dim', 'no-frequency-modules']


def test_windows_all_empty_reads_the_half_sizes_of_every_sample():
    """The half-size of a window is floor((h // 128) * rate): at 256 px a rate below 0.5 gives 0 rows, one of 0.5 or
    more gives 1; a window is empty when its rows or its columns are 0, and the shortcut holds only when every
    sample's is; below 128 px it is empty whatever the rate."""
    from promptir_basicsr.archs.adair_arch import windows_all_empty
    rates = torch.tensor
    assert windows_all_empty(256, 256, rates([[0.4, 0.9]]))
    assert windows_all_empty(256, 256, rates([[0.9, 0.4]]))
    assert not windows_all_empty(256, 256, rates([[0.6, 0.6]]))
    assert not windows_all_empty(256, 256, rates([[0.4, 0.9], [0.6, 0.6]]))
    assert windows_all_empty(256, 127, rates([[0.99, 0.99]]))
    assert windows_all_empty(384, 256, rates([[0.3, 0.6]]))
    assert not windows_all_empty(384, 256, rates([[0.34, 0.6]]))
    # between 128 and 255 px a side's half-size is floor(rate): 0, unless the sigmoid rounded to exactly 1
    # (it does in float32 from about 17); then that side's window holds one frequency
    assert windows_all_empty(256, 200, rates([[0.9, 0.99]]))
    assert not windows_all_empty(256, 200, rates([[0.9, torch.sigmoid(torch.tensor(17.0)).item()]]))
    assert not windows_all_empty(200, 256, rates([[1.0, 0.6]]))
