import pytest
import torch
import torch.nn.functional as F

from promptir_basicsr.archs.restormer_blocks import Attention, FeedForward, LayerNorm, add_residual, gelu, gelu_


def reference_channel_norm(x, weight, bias):
    """The official formula, written out: per pixel over channels, eps 1e-5, biased variance.
    BiasFree (bias None) divides x itself - not x minus its mean - by the standard deviation."""
    mu = x.mean(dim=1, keepdim=True)
    var = ((x - mu) ** 2).mean(dim=1, keepdim=True)
    w = weight.view(1, -1, 1, 1)
    if bias is None:
        return x / torch.sqrt(var + 1e-5) * w
    return (x - mu) / torch.sqrt(var + 1e-5) * w + bias.view(1, -1, 1, 1)


@pytest.mark.parametrize('norm_type', ['WithBias', 'BiasFree'])
@pytest.mark.parametrize('std', [3.0, 0.003])
def test_fused_layer_norm_matches_reference_formula(norm_type, std):
    """Guards the official eps (1e-5) and the biased variance: at std 0.003 the per-pixel variance
    (~1e-5) is the size of eps, so eps 1e-6 changes the output by ~30% (at std 3 it is invisible)."""
    torch.manual_seed(0)
    norm = LayerNorm(6, norm_type)
    with torch.no_grad():
        norm.body.weight.uniform_(0.5, 1.5)
        if norm.body.bias is not None:
            norm.body.bias.normal_()
    # A non-zero mean per pixel, so BiasFree's "no centring" actually matters.
    x = (torch.randn(2, 6, 5, 7) * std + 2 * std / 3).requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    out = norm(x)
    ref = reference_channel_norm(x_ref, norm.body.weight, norm.body.bias)
    assert out.shape == x.shape
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    grad = torch.randn_like(out)
    out.backward(grad)
    ref.backward(grad)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-4, atol=1e-4)


def test_bias_free_norm_does_not_centre():
    norm = LayerNorm(4, 'BiasFree')
    x = torch.full((1, 4, 2, 2), 3.0) + torch.tensor([1.0, -1.0, 1.0, -1.0]).view(1, 4, 1, 1)
    # var = 1 at each pixel, so BiasFree returns x / sqrt(1 + eps) ~ x (a centred norm would give +-1).
    torch.testing.assert_close(norm(x), x / (1 + 1e-5) ** 0.5)
    assert norm.body.bias is None and list(norm.state_dict()) == ['body.weight']


def test_attention_matches_per_head_formula():
    torch.manual_seed(0)
    attn = Attention(8, num_heads=2)
    with torch.no_grad():
        attn.temperature.copy_(torch.tensor([0.5, 2.0]).view(2, 1, 1))
    x = torch.randn(1, 8, 3, 5)
    qkv = attn.qkv_dwconv(attn.qkv(x))
    q, k, v = qkv.chunk(3, dim=1)
    heads = []
    for h in range(2):
        qh, kh, vh = (t[0, 4 * h:4 * h + 4].reshape(4, 15) for t in (q, k, v))
        a = (F.normalize(qh, dim=-1) @ F.normalize(kh, dim=-1).t()) * attn.temperature[h]
        heads.append(a.softmax(-1) @ vh)
    expected = attn.project_out(torch.cat(heads).reshape(1, 8, 3, 5))
    torch.testing.assert_close(attn(x), expected)


def test_gelu_of_a_channels_last_map_is_the_contiguous_kernel_s():
    """gelu/gelu_ run a channels-last map through its NHWC view: the values of F.gelu on the same numbers laid out
    contiguously (torch's strided kernel rounds differently, so equality tells which kernel ran), the layout kept."""
    x = torch.randn(2, 16, 9, 7) * 3
    cl = x.contiguous(memory_format=torch.channels_last)
    out = gelu(cl)
    assert torch.equal(out, F.gelu(x)) and out.is_contiguous(memory_format=torch.channels_last)
    assert not torch.equal(F.gelu(cl), F.gelu(x))  # else this test could not tell the kernels apart
    inplace = cl.clone()
    assert gelu_(inplace) is inplace and torch.equal(inplace, F.gelu(x))
    assert torch.equal(gelu(x), F.gelu(x)) and torch.equal(gelu_(x.clone()), F.gelu(x))  # NCHW: plain


def test_feed_forward_without_autograd_equals_its_autograd_path():
    """Without autograd the gate is computed in place (gelu_(x1).mul_(x2)): the same numbers as gelu(x1) * x2,
    at a width that is widened (hidden 11 -> 16 zero channels) and one that is not."""
    torch.manual_seed(0)
    for dim, factor in ((8, 1.4), (8, 2.0)):
        ffn = FeedForward(dim, factor, bias=True)
        x = torch.randn(2, dim, 6, 5).contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            fast = ffn(x)
        plain = ffn(x)
        assert plain.requires_grad and torch.equal(fast, plain.detach())
        # against the formula itself, on the unwidened weights
        h = F.conv2d(x, ffn.project_in.weight, ffn.project_in.bias)
        h = F.conv2d(h, ffn.dwconv.weight, ffn.dwconv.bias, padding=1, groups=h.shape[1])
        x1, x2 = h.chunk(2, dim=1)
        expected = F.conv2d(F.gelu(x1) * x2, ffn.project_out.weight, ffn.project_out.bias)
        assert torch.allclose(fast, expected, atol=1e-5)


def test_add_residual_sums_in_place_only_when_the_result_is_the_same():
    x = torch.randn(1, 4, 3, 3)
    branch = torch.randn(1, 4, 3, 3)
    expected = x + branch
    out = add_residual(branch, x)
    assert out is branch and torch.equal(out, expected)
    # mixed precision: a bfloat16 branch and a float32 stream promote to float32, as x + branch does
    half = torch.randn(1, 4, 3, 3).to(torch.bfloat16)
    out = add_residual(half, x)
    assert out is not half and out.dtype == torch.float32 and torch.equal(out, half + x)
    # broadcasting: the sum's shape, not the branch's
    small = torch.randn(1, 4, 1, 1)
    out = add_residual(small, x)
    assert out.shape == x.shape and torch.equal(out, small + x)
