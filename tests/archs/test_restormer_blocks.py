import pytest
import torch
import torch.nn.functional as F

from promptir_basicsr.archs.restormer_blocks import Attention, LayerNorm


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
