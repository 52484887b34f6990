"""BioIR (Cui, Ren and Knoll, NeurIPS 2025) re-stated in the official formulation: the reference of our BioIR.

Written for this project from the facts of the official all-in-one network (``c-yn/BioIR``
``All_in_One/net/model.py``, commit ff61e47), computing the way that code computes: every layer norm
through an einops rearrange to (B, HW, C) and back with separate mean / variance ops, the depth-wise
output chunked in two, P2F's (``L2H``) pixel-to-region affinity as an einsum over a (B, 256, H, W)
tensor followed by the 1x1 conv, the neighbourhoods of both dynamic filters taken with ``F.unfold``
of a reflection-padded channel mean, and the downsampling as ``nn.Upsample(scale_factor=0.5)``. It
shares no line with ``promptir_basicsr.archs`` (which folds the 1x1 conv into the regions, slices
the padded map instead of unfolding it, runs the two halves as separate convolutions and pools 2x2
for the downsampling), so a slip there cannot hide here.

Module and parameter names are the official ones, so one state dict loads into the official class, this
one and ours with ``strict=True``. Two conventions of ours are reproduced on purpose, because they are part
of the behaviour under test:

* the input is reflect-padded to a multiple of 4 and the output cropped back (the official network
  itself does not pad; its training loop's validation and ``demo.py`` pad the same way outside it,
  ``All_in_One/train_eval.py:171-175``, ``All_in_One/demo.py:17-24``);
* ``LayerNorm_type`` reaches the blocks. The official constructor takes it but never passes it on
  (``model.py:243`` and the other stages build ``AttBlock`` without it), so its norms are always
  'WithBias', our default; 'BiasFree' is our extension and is compared here, not with the official code.

``heads`` and ``decoder`` are accepted and unused, as in the official constructor. ``keep_unused_modules``
(ours; default True = official) drops ``reduce_chan_level2``, which the official forward never calls.

Checked against the real official code: ``model.py`` copied to /tmp and run with this project's torch and
einops; the official class and this one loaded with one state dict of random weights (convolutions
N(0, 1/fan_in), norm weights 1 + N(0, 0.2^2), biases N(0, 0.1^2)); one random input; loss ``sum(out * w)``
with a random ``w``. At the default configuration (dim 48, num_blocks [6, 6, 14], 4 refinement blocks) on
2 x 3 x 64 x 64, and at dim 16, num_blocks [1, 2, 3], 2 refinement blocks, bias=True on 2 x 3 x 48 x 40 and
1 x 3 x 12 x 12 (the smallest size whose every level can reflect-pad): the outputs are bitwise equal in
float32 and float64 (the same kernels in the same order); the input's and every parameter's gradient agree
within 4.8e-6 (float32) and 1.2e-14 (float64) of the gradient's largest magnitude (backward accumulates
the two formulations' branches in another order); the same parameters (all but ``reduce_chan_level2``)
get a gradient in both.
"""
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


def to_3d(x):
    return rearrange(x, 'b c h w -> b (h w) c')


def to_4d(x, h, w):
    return rearrange(x, 'b (h w) c -> b c h w', h=h, w=w)


class BiasFreeLayerNorm(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x / torch.sqrt(x.var(-1, keepdim=True, unbiased=False) + 1e-5) * self.weight


class WithBiasLayerNorm(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x):
        mean = x.mean(-1, keepdim=True)
        var = x.var(-1, keepdim=True, unbiased=False)
        return (x - mean) / torch.sqrt(var + 1e-5) * self.weight + self.bias


class LayerNorm(nn.Module):
    def __init__(self, dim, LayerNorm_type='WithBias'):  # noqa: N803
        super().__init__()
        self.body = BiasFreeLayerNorm(dim) if LayerNorm_type == 'BiasFree' else WithBiasLayerNorm(dim)

    def forward(self, x):
        h, w = x.shape[-2:]
        return to_4d(self.body(to_3d(x)), h, w)


class FeedForward(nn.Module):
    """Restormer's gated feed-forward with BioIR's expansion: hidden = int(dim * factor)."""

    def __init__(self, dim, ffn_expansion_factor, bias):
        super().__init__()
        hidden = int(dim * ffn_expansion_factor)
        self.project_in = nn.Conv2d(dim, 2 * hidden, 1, bias=bias)
        self.dwconv = nn.Conv2d(2 * hidden, 2 * hidden, 3, 1, 1, groups=2 * hidden, bias=bias)
        self.project_out = nn.Conv2d(hidden, dim, 1, bias=bias)

    def forward(self, x):
        gate, value = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(gate) * value)


class L2H(nn.Module):
    """P2F (peripheral to foveal): each pixel of ``high`` filtered by a 3x3 kernel made from its affinity to
    16 x 16 pooled regions of ``low``, applied to the channel mean of ``high``; ``high * (1 + that)``."""

    def __init__(self, dim):
        super().__init__()
        self.dim = dim
        self.r = 16
        self.kernel = 3
        self.conv = nn.Conv2d(self.r * self.r, self.kernel * self.kernel, 1)
        self.pad = nn.ReflectionPad2d(self.kernel // 2)

    def forward(self, low, high):
        n, c, h, w = high.shape
        regions = F.adaptive_avg_pool2d(low, (self.r, self.r)).reshape(n, c, self.r * self.r)
        affinity = torch.einsum('nchw,ncs->nshw', high, regions)
        kernels = self.conv(affinity).unsqueeze(1)  # (n, 1, 9, h, w)
        mean = high.mean(dim=1, keepdim=True)
        neighbours = F.unfold(self.pad(mean), kernel_size=self.kernel).reshape(n, 1, self.kernel ** 2, h, w)
        return high * (1 + (neighbours * kernels).sum(dim=2))


class H2L(nn.Module):
    """F2P (foveal to peripheral): a static 7x7 depth-wise stage modulates ``low``, then a dynamic 5x5 filter
    predicted from it (1x1 conv to 25 taps) runs over the channel mean of the modulated ``low``."""

    def __init__(self, dim, kernel_size=5):
        super().__init__()
        self.kernel_size = kernel_size
        self.dw_k = 7
        self.pad = nn.ReflectionPad2d(kernel_size // 2)
        self.dw = nn.Conv2d(dim, dim, self.dw_k, padding=self.dw_k // 2, groups=dim)
        self.cv2 = nn.Conv2d(dim, kernel_size * kernel_size, 1)

    def forward(self, low, high):
        high = self.dw(high)
        low = low * (high + 1)
        n, c, h, w = low.shape
        k2 = self.kernel_size * self.kernel_size
        mean = low.mean(dim=1, keepdim=True)
        neighbours = F.unfold(self.pad(mean), kernel_size=self.kernel_size).reshape(n, 1, k2, h, w)
        taps = self.cv2(high).reshape(n, 1, k2, h, w)
        return low + (neighbours * taps).sum(dim=2)


class AttModule(nn.Module):
    def __init__(self, dim, bias):
        super().__init__()
        self.dim = dim
        self.conv = nn.Conv2d(dim, 2 * dim, 1, bias=bias)
        self.dw = nn.Conv2d(2 * dim, 2 * dim, 3, 1, 1, groups=2 * dim, bias=bias)
        self.l2h = L2H(dim)
        self.h2l = H2L(dim)
        self.project_out = nn.Conv2d(dim, dim, 1, bias=bias)

    def forward(self, x):
        low, high = self.dw(self.conv(x)).chunk(2, dim=1)
        foveal = self.l2h(low, high)
        peripheral = self.h2l(low, high)
        return self.project_out(peripheral * foveal)


class AttBlock(nn.Module):
    def __init__(self, dim, ffn_expansion_factor=2.66, bias=False, LayerNorm_type='WithBias'):  # noqa: N803
        super().__init__()
        self.norm1 = LayerNorm(dim, LayerNorm_type)
        self.attn = AttModule(dim, bias)
        self.norm2 = LayerNorm(dim, LayerNorm_type)
        self.ffn = FeedForward(dim, ffn_expansion_factor, bias)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


class Fuse(nn.Module):
    def __init__(self, n_feat):
        super().__init__()
        self.n_feat = n_feat
        self.conv = nn.Conv2d(2 * n_feat, n_feat, 1)

    def forward(self, enc, dnc):
        return self.conv(torch.cat([enc, dnc], dim=1))


class OverlapPatchEmbed(nn.Module):
    def __init__(self, in_c=3, embed_dim=48, bias=False):
        super().__init__()
        self.proj = nn.Conv2d(in_c, embed_dim, 3, 1, 1, bias=bias)

    def forward(self, x):
        return self.proj(x)


class Downsample(nn.Module):
    def __init__(self, n_feat):
        super().__init__()
        self.body = nn.Sequential(nn.Upsample(scale_factor=0.5, mode='bilinear', align_corners=False),
                                  nn.Conv2d(n_feat, 2 * n_feat, 3, 1, 1, bias=False))

    def forward(self, x):
        return self.body(x)


class Upsample(nn.Module):
    def __init__(self, n_feat):
        super().__init__()
        self.body = nn.Sequential(nn.Upsample(scale_factor=2, mode='bilinear', align_corners=False),
                                  nn.Conv2d(n_feat, n_feat // 2, 3, 1, 1, bias=False))

    def forward(self, x):
        return self.body(x)


def _stage(count, dim, ffn_expansion_factor, bias, LayerNorm_type):  # noqa: N803
    return nn.Sequential(*[AttBlock(dim, ffn_expansion_factor, bias, LayerNorm_type) for _ in range(count)])


class BioIR(nn.Module):
    def __init__(self, inp_channels=3, out_channels=3, dim=48, num_blocks=(6, 6, 14), num_refinement_blocks=4,
                 ffn_expansion_factor=3, heads=(1, 2, 4, 8), bias=False, LayerNorm_type='WithBias',  # noqa: N803
                 decoder=False, keep_unused_modules=True):
        super().__init__()
        blocks = dict(ffn_expansion_factor=ffn_expansion_factor, bias=bias, LayerNorm_type=LayerNorm_type)
        self.patch_embed = OverlapPatchEmbed(inp_channels, dim)
        self.encoder_level1 = _stage(num_blocks[0], dim, **blocks)
        self.down1_2 = Downsample(dim)
        self.encoder_level2 = _stage(num_blocks[1], dim * 2, **blocks)
        self.down2_3 = Downsample(dim * 2)
        self.encoder_level3 = _stage(num_blocks[2], dim * 4, **blocks)
        self.decoder_level3 = _stage(num_blocks[2], dim * 4, **blocks)
        self.up3_2 = Upsample(dim * 4)
        if keep_unused_modules:
            self.reduce_chan_level2 = nn.Conv2d(dim * 4, dim * 2, 1, bias=bias)
        self.decoder_level2 = _stage(num_blocks[1], dim * 2, **blocks)
        self.up2_1 = Upsample(dim * 2)
        self.decoder_level1 = _stage(num_blocks[0], dim, **blocks)
        self.refinement = _stage(num_refinement_blocks, dim, **blocks)
        self.fuse2 = Fuse(dim * 2)
        self.fuse1 = Fuse(dim)
        self.output = nn.Conv2d(dim, out_channels, 3, 1, 1, bias=bias)

    def forward(self, inp_img):
        h, w = inp_img.shape[-2:]
        x = F.pad(inp_img, (0, (4 - w % 4) % 4, 0, (4 - h % 4) % 4), mode='reflect')
        enc1 = self.encoder_level1(self.patch_embed(x))
        enc2 = self.encoder_level2(self.down1_2(enc1))
        enc3 = self.encoder_level3(self.down2_3(enc2))
        dec3 = self.decoder_level3(enc3)
        dec2 = self.decoder_level2(self.fuse2(self.up3_2(dec3), enc2))
        dec1 = self.decoder_level1(self.fuse1(self.up2_1(dec2), enc1))
        out = self.output(self.refinement(dec1)) + x
        return out[:, :, :h, :w]
