"""PromptIR, Restormer and AirNet in the official formulation: an independent reference for our networks.

Written for this project from the papers and the facts of the official code (``va1shn9v/PromptIR``
``net/model.py``, ``swz30/Restormer`` ``restormer_arch.py``, ``XLearning-SCU/2022-CVPR-AirNet`` ``net/``;
see ``shared/reference/anchors.md``). It computes what the official code computes, the way it
computes it: einops rearranges to (B, HW, C) around every layer norm, separate mean/var/normalise
ops, q/k/v chunked and rearranged per head, the prompt components repeated per sample and summed,
AirNet's offsets split in three chunks. It does not share a line with ``promptir_basicsr.archs``, so
a bug there cannot hide here.

Module and parameter names equal the official ones (and ours), so weights move between the two with
``load_state_dict(strict=True)``; constructor arguments have our names, so one options dict builds
both (:func:`build_reference`).

Used by the golden-output tests (``tests/archs``), the equality tests of our fast paths, and
``scripts/benchmark.py`` (the speed reference). Two conventions of ours are reproduced on purpose,
because they are part of the behaviour under test: PromptIR and Restormer reflect-pad inputs to a
multiple of 8 and crop the output back (the official code needs such sizes; its test crops to 16),
and AirNet's deformable convolution is ``torchvision.ops.deform_conv2d`` (mmcv's layout, which the
official code compiles).
"""
import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from torchvision.ops import deform_conv2d


# ================================================================================================
# Restormer blocks (official formulation)
# ================================================================================================
def to_3d(x):
    return rearrange(x, 'b c h w -> b (h w) c')


def to_4d(x, h, w):
    return rearrange(x, 'b (h w) c -> b c h w', h=h, w=w)


class BiasFreeLayerNorm(nn.Module):
    """x / sqrt(var + 1e-5) * weight over the last axis; x is not centred (the official variant)."""

    def __init__(self, dim):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        sigma = x.var(-1, keepdim=True, unbiased=False)
        return x / torch.sqrt(sigma + 1e-5) * self.weight


class WithBiasLayerNorm(nn.Module):
    """(x - mean) / sqrt(var + 1e-5) * weight + bias over the last axis."""

    def __init__(self, dim):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x):
        mu = x.mean(-1, keepdim=True)
        sigma = x.var(-1, keepdim=True, unbiased=False)
        return (x - mu) / torch.sqrt(sigma + 1e-5) * self.weight + self.bias


class LayerNorm(nn.Module):
    """Channel layer norm of a (B, C, H, W) map: to (B, HW, C), normalise, back."""

    def __init__(self, dim, LayerNorm_type):  # noqa: N803
        super().__init__()
        self.body = BiasFreeLayerNorm(dim) if LayerNorm_type == 'BiasFree' else WithBiasLayerNorm(dim)

    def forward(self, x):
        h, w = x.shape[-2:]
        return to_4d(self.body(to_3d(x)), h, w)


class FeedForward(nn.Module):
    """GDFN: 1x1 conv to 2*hidden, depth-wise 3x3, chunk, gelu(x1) * x2, 1x1 conv back."""

    def __init__(self, dim, ffn_expansion_factor, bias):
        super().__init__()
        hidden_features = int(dim * ffn_expansion_factor)
        self.project_in = nn.Conv2d(dim, hidden_features * 2, kernel_size=1, bias=bias)
        self.dwconv = nn.Conv2d(hidden_features * 2, hidden_features * 2, kernel_size=3, stride=1, padding=1,
                                groups=hidden_features * 2, bias=bias)
        self.project_out = nn.Conv2d(hidden_features, dim, kernel_size=1, bias=bias)

    def forward(self, x):
        x = self.project_in(x)
        x1, x2 = self.dwconv(x).chunk(2, dim=1)
        x = F.gelu(x1) * x2
        return self.project_out(x)


class Attention(nn.Module):
    """MDTA: channel attention per head, q and k L2-normalised over pixels, learned temperature."""

    def __init__(self, dim, num_heads, bias):
        super().__init__()
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.qkv = nn.Conv2d(dim, dim * 3, kernel_size=1, bias=bias)
        self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, kernel_size=3, stride=1, padding=1, groups=dim * 3, bias=bias)
        self.project_out = nn.Conv2d(dim, dim, kernel_size=1, bias=bias)

    def forward(self, x):
        b, c, h, w = x.shape
        qkv = self.qkv_dwconv(self.qkv(x))
        q, k, v = qkv.chunk(3, dim=1)
        q = rearrange(q, 'b (head c) h w -> b head c (h w)', head=self.num_heads)
        k = rearrange(k, 'b (head c) h w -> b head c (h w)', head=self.num_heads)
        v = rearrange(v, 'b (head c) h w -> b head c (h w)', head=self.num_heads)
        q = F.normalize(q, dim=-1)
        k = F.normalize(k, dim=-1)
        attn = (q @ k.transpose(-2, -1)) * self.temperature
        attn = attn.softmax(dim=-1)
        out = attn @ v
        out = rearrange(out, 'b head c (h w) -> b (head c) h w', head=self.num_heads, h=h, w=w)
        return self.project_out(out)


class TransformerBlock(nn.Module):

    def __init__(self, dim, num_heads, ffn_expansion_factor, bias, LayerNorm_type):  # noqa: N803
        super().__init__()
        self.norm1 = LayerNorm(dim, LayerNorm_type)
        self.attn = Attention(dim, num_heads, bias)
        self.norm2 = LayerNorm(dim, LayerNorm_type)
        self.ffn = FeedForward(dim, ffn_expansion_factor, bias)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        x = x + self.ffn(self.norm2(x))
        return x


class OverlapPatchEmbed(nn.Module):

    def __init__(self, in_c=3, embed_dim=48, bias=False):
        super().__init__()
        self.proj = nn.Conv2d(in_c, embed_dim, kernel_size=3, stride=1, padding=1, bias=bias)

    def forward(self, x):
        return self.proj(x)


class Downsample(nn.Module):

    def __init__(self, n_feat):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(n_feat, n_feat // 2, kernel_size=3, stride=1, padding=1, bias=False),
                                  nn.PixelUnshuffle(2))

    def forward(self, x):
        return self.body(x)


class Upsample(nn.Module):

    def __init__(self, n_feat):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(n_feat, n_feat * 2, kernel_size=3, stride=1, padding=1, bias=False),
                                  nn.PixelShuffle(2))

    def forward(self, x):
        return self.body(x)


def _blocks(dim, heads, count, ffn_expansion_factor, bias, LayerNorm_type):  # noqa: N803
    return nn.Sequential(*[
        TransformerBlock(dim=dim, num_heads=heads, ffn_expansion_factor=ffn_expansion_factor, bias=bias,
                         LayerNorm_type=LayerNorm_type) for _ in range(count)
    ])


def _reflect_pad_to(x, multiple):
    """Reflect-pad bottom/right to a multiple (our networks' documented convention)."""
    h, w = x.shape[-2:]
    pad_h, pad_w = (-h) % multiple, (-w) % multiple
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h), mode='reflect')
    return x, h, w


# ================================================================================================
# Restormer
# ================================================================================================
class Restormer(nn.Module):

    def __init__(self, inp_channels=3, out_channels=3, dim=48, num_blocks=(4, 6, 6, 8), num_refinement_blocks=4,
                 heads=(1, 2, 4, 8), ffn_expansion_factor=2.66, bias=False, LayerNorm_type='WithBias',  # noqa: N803
                 dual_pixel_task=False):
        super().__init__()
        kw = dict(ffn_expansion_factor=ffn_expansion_factor, bias=bias, LayerNorm_type=LayerNorm_type)
        self.patch_embed = OverlapPatchEmbed(inp_channels, dim)
        self.encoder_level1 = _blocks(dim, heads[0], num_blocks[0], **kw)
        self.down1_2 = Downsample(dim)
        self.encoder_level2 = _blocks(int(dim * 2**1), heads[1], num_blocks[1], **kw)
        self.down2_3 = Downsample(int(dim * 2**1))
        self.encoder_level3 = _blocks(int(dim * 2**2), heads[2], num_blocks[2], **kw)
        self.down3_4 = Downsample(int(dim * 2**2))
        self.latent = _blocks(int(dim * 2**3), heads[3], num_blocks[3], **kw)
        self.up4_3 = Upsample(int(dim * 2**3))
        self.reduce_chan_level3 = nn.Conv2d(int(dim * 2**3), int(dim * 2**2), kernel_size=1, bias=bias)
        self.decoder_level3 = _blocks(int(dim * 2**2), heads[2], num_blocks[2], **kw)
        self.up3_2 = Upsample(int(dim * 2**2))
        self.reduce_chan_level2 = nn.Conv2d(int(dim * 2**2), int(dim * 2**1), kernel_size=1, bias=bias)
        self.decoder_level2 = _blocks(int(dim * 2**1), heads[1], num_blocks[1], **kw)
        self.up2_1 = Upsample(int(dim * 2**1))
        self.decoder_level1 = _blocks(int(dim * 2**1), heads[0], num_blocks[0], **kw)
        self.refinement = _blocks(int(dim * 2**1), heads[0], num_refinement_blocks, **kw)
        self.dual_pixel_task = dual_pixel_task
        if self.dual_pixel_task:
            self.skip_conv = nn.Conv2d(dim, int(dim * 2**1), kernel_size=1, bias=bias)
        self.output = nn.Conv2d(int(dim * 2**1), out_channels, kernel_size=3, stride=1, padding=1, bias=bias)

    def forward(self, inp_img):
        inp_img, h, w = _reflect_pad_to(inp_img, 8)
        inp_enc_level1 = self.patch_embed(inp_img)
        out_enc_level1 = self.encoder_level1(inp_enc_level1)
        inp_enc_level2 = self.down1_2(out_enc_level1)
        out_enc_level2 = self.encoder_level2(inp_enc_level2)
        inp_enc_level3 = self.down2_3(out_enc_level2)
        out_enc_level3 = self.encoder_level3(inp_enc_level3)
        inp_enc_level4 = self.down3_4(out_enc_level3)
        latent = self.latent(inp_enc_level4)

        inp_dec_level3 = self.up4_3(latent)
        inp_dec_level3 = torch.cat([inp_dec_level3, out_enc_level3], 1)
        inp_dec_level3 = self.reduce_chan_level3(inp_dec_level3)
        out_dec_level3 = self.decoder_level3(inp_dec_level3)
        inp_dec_level2 = self.up3_2(out_dec_level3)
        inp_dec_level2 = torch.cat([inp_dec_level2, out_enc_level2], 1)
        inp_dec_level2 = self.reduce_chan_level2(inp_dec_level2)
        out_dec_level2 = self.decoder_level2(inp_dec_level2)
        inp_dec_level1 = self.up2_1(out_dec_level2)
        inp_dec_level1 = torch.cat([inp_dec_level1, out_enc_level1], 1)
        out_dec_level1 = self.decoder_level1(inp_dec_level1)
        out_dec_level1 = self.refinement(out_dec_level1)

        if self.dual_pixel_task:
            out_dec_level1 = out_dec_level1 + self.skip_conv(inp_enc_level1)
            out_dec_level1 = self.output(out_dec_level1)
        else:
            out_dec_level1 = self.output(out_dec_level1) + inp_img
        return out_dec_level1[..., :h, :w]


# ================================================================================================
# PromptIR
# ================================================================================================
class PromptGenBlock(nn.Module):
    """Prompt generation as the official code writes it: weights from the pooled features, the
    components repeated for every sample, weighted, summed, resized, convolved."""

    def __init__(self, prompt_dim=128, prompt_len=5, prompt_size=96, lin_dim=192):
        super().__init__()
        self.prompt_param = nn.Parameter(torch.rand(1, prompt_len, prompt_dim, prompt_size, prompt_size))
        self.linear_layer = nn.Linear(lin_dim, prompt_len)
        self.conv3x3 = nn.Conv2d(prompt_dim, prompt_dim, kernel_size=3, stride=1, padding=1, bias=False)

    def forward(self, x):
        B, C, H, W = x.shape  # noqa: N806
        emb = x.mean(dim=(-2, -1))
        prompt_weights = F.softmax(self.linear_layer(emb), dim=1)
        prompt = prompt_weights.unsqueeze(-1).unsqueeze(-1).unsqueeze(-1) * \
            self.prompt_param.unsqueeze(0).repeat(B, 1, 1, 1, 1, 1).squeeze(1)
        prompt = torch.sum(prompt, dim=1)
        prompt = F.interpolate(prompt, (H, W), mode='bilinear')
        prompt = self.conv3x3(prompt)
        return prompt


class PromptIR(nn.Module):
    """The official ``PromptIR(decoder=True)``, with the widths written in terms of ``dim`` and the
    prompt dims (the official file spells them out for dim 48: 704 = 384 + 320, 320 = 192 + 128,
    160 = 96 + 64). The six modules the official forward never calls are built too."""

    def __init__(self, inp_channels=3, out_channels=3, dim=48, num_blocks=(4, 6, 6, 8), num_refinement_blocks=4,
                 heads=(1, 2, 4, 8), ffn_expansion_factor=2.66, bias=False, LayerNorm_type='WithBias',  # noqa: N803
                 decoder=True, prompt_len=5, prompt_dims=(64, 128, 320), prompt_sizes=(64, 32, 16),
                 keep_unused_modules=True):
        super().__init__()
        assert decoder, 'the official decoder=False network cannot run'
        kw = dict(ffn_expansion_factor=ffn_expansion_factor, bias=bias, LayerNorm_type=LayerNorm_type)
        p1, p2, p3 = prompt_dims
        self.patch_embed = OverlapPatchEmbed(inp_channels, dim)
        self.decoder = decoder
        self.prompt1 = PromptGenBlock(prompt_dim=p1, prompt_len=prompt_len, prompt_size=prompt_sizes[0],
                                      lin_dim=int(dim * 2**1))
        self.prompt2 = PromptGenBlock(prompt_dim=p2, prompt_len=prompt_len, prompt_size=prompt_sizes[1],
                                      lin_dim=int(dim * 2**2))
        self.prompt3 = PromptGenBlock(prompt_dim=p3, prompt_len=prompt_len, prompt_size=prompt_sizes[2],
                                      lin_dim=int(dim * 2**3))
        if keep_unused_modules:
            self.chnl_reduce1 = nn.Conv2d(p1, p1, kernel_size=1, bias=bias)
            self.chnl_reduce2 = nn.Conv2d(p2, p2, kernel_size=1, bias=bias)
            self.chnl_reduce3 = nn.Conv2d(p3, p2 * 2, kernel_size=1, bias=bias)
            self.reduce_noise_channel_1 = nn.Conv2d(dim + p1, dim, kernel_size=1, bias=bias)
            self.reduce_noise_channel_2 = nn.Conv2d(int(dim * 2**1) + p2, int(dim * 2**1), kernel_size=1, bias=bias)
            self.reduce_noise_channel_3 = nn.Conv2d(int(dim * 2**2) + p2 * 2, int(dim * 2**2), kernel_size=1,
                                                    bias=bias)

        self.encoder_level1 = _blocks(dim, heads[0], num_blocks[0], **kw)
        self.down1_2 = Downsample(dim)
        self.encoder_level2 = _blocks(int(dim * 2**1), heads[1], num_blocks[1], **kw)
        self.down2_3 = Downsample(int(dim * 2**1))
        self.encoder_level3 = _blocks(int(dim * 2**2), heads[2], num_blocks[2], **kw)
        self.down3_4 = Downsample(int(dim * 2**2))
        self.latent = _blocks(int(dim * 2**3), heads[3], num_blocks[3], **kw)

        self.up4_3 = Upsample(int(dim * 2**2))
        self.reduce_chan_level3 = nn.Conv2d(int(dim * 2**1) + int(dim * 2**2), int(dim * 2**2), kernel_size=1,
                                            bias=bias)
        self.noise_level3 = TransformerBlock(dim=int(dim * 2**3) + p3, num_heads=heads[2], **kw)
        self.reduce_noise_level3 = nn.Conv2d(int(dim * 2**3) + p3, int(dim * 2**2), kernel_size=1, bias=bias)
        self.decoder_level3 = _blocks(int(dim * 2**2), heads[2], num_blocks[2], **kw)

        self.up3_2 = Upsample(int(dim * 2**2))
        self.reduce_chan_level2 = nn.Conv2d(int(dim * 2**2), int(dim * 2**1), kernel_size=1, bias=bias)
        self.noise_level2 = TransformerBlock(dim=int(dim * 2**2) + p2, num_heads=heads[2], **kw)
        self.reduce_noise_level2 = nn.Conv2d(int(dim * 2**2) + p2, int(dim * 2**2), kernel_size=1, bias=bias)
        self.decoder_level2 = _blocks(int(dim * 2**1), heads[1], num_blocks[1], **kw)

        self.up2_1 = Upsample(int(dim * 2**1))
        self.noise_level1 = TransformerBlock(dim=int(dim * 2**1) + p1, num_heads=heads[2], **kw)
        self.reduce_noise_level1 = nn.Conv2d(int(dim * 2**1) + p1, int(dim * 2**1), kernel_size=1, bias=bias)
        self.decoder_level1 = _blocks(int(dim * 2**1), heads[0], num_blocks[0], **kw)
        self.refinement = _blocks(int(dim * 2**1), heads[0], num_refinement_blocks, **kw)
        self.output = nn.Conv2d(int(dim * 2**1), out_channels, kernel_size=3, stride=1, padding=1, bias=bias)

    def forward(self, inp_img):
        inp_img, h, w = _reflect_pad_to(inp_img, 8)
        inp_enc_level1 = self.patch_embed(inp_img)
        out_enc_level1 = self.encoder_level1(inp_enc_level1)
        inp_enc_level2 = self.down1_2(out_enc_level1)
        out_enc_level2 = self.encoder_level2(inp_enc_level2)
        inp_enc_level3 = self.down2_3(out_enc_level2)
        out_enc_level3 = self.encoder_level3(inp_enc_level3)
        inp_enc_level4 = self.down3_4(out_enc_level3)
        latent = self.latent(inp_enc_level4)

        dec3_param = self.prompt3(latent)
        latent = torch.cat([latent, dec3_param], 1)
        latent = self.noise_level3(latent)
        latent = self.reduce_noise_level3(latent)

        inp_dec_level3 = self.up4_3(latent)
        inp_dec_level3 = torch.cat([inp_dec_level3, out_enc_level3], 1)
        inp_dec_level3 = self.reduce_chan_level3(inp_dec_level3)
        out_dec_level3 = self.decoder_level3(inp_dec_level3)

        dec2_param = self.prompt2(out_dec_level3)
        out_dec_level3 = torch.cat([out_dec_level3, dec2_param], 1)
        out_dec_level3 = self.noise_level2(out_dec_level3)
        out_dec_level3 = self.reduce_noise_level2(out_dec_level3)

        inp_dec_level2 = self.up3_2(out_dec_level3)
        inp_dec_level2 = torch.cat([inp_dec_level2, out_enc_level2], 1)
        inp_dec_level2 = self.reduce_chan_level2(inp_dec_level2)
        out_dec_level2 = self.decoder_level2(inp_dec_level2)

        dec1_param = self.prompt1(out_dec_level2)
        out_dec_level2 = torch.cat([out_dec_level2, dec1_param], 1)
        out_dec_level2 = self.noise_level1(out_dec_level2)
        out_dec_level2 = self.reduce_noise_level1(out_dec_level2)

        inp_dec_level1 = self.up2_1(out_dec_level2)
        inp_dec_level1 = torch.cat([inp_dec_level1, out_enc_level1], 1)
        out_dec_level1 = self.decoder_level1(inp_dec_level1)
        out_dec_level1 = self.refinement(out_dec_level1)
        out_dec_level1 = self.output(out_dec_level1) + inp_img
        return out_dec_level1[..., :h, :w]


# ================================================================================================
# AirNet
# ================================================================================================
class ResBlock(nn.Module):

    def __init__(self, in_feat, out_feat, stride=1):
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Conv2d(in_feat, out_feat, kernel_size=3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(out_feat),
            nn.LeakyReLU(0.1, True),
            nn.Conv2d(out_feat, out_feat, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_feat),
        )
        self.shortcut = nn.Sequential(
            nn.Conv2d(in_feat, out_feat, kernel_size=1, stride=stride, bias=False),
            nn.BatchNorm2d(out_feat),
        )

    def forward(self, x):
        return nn.LeakyReLU(0.1, True)(self.backbone(x) + self.shortcut(x))


class ResEncoder(nn.Module):

    def __init__(self, in_channels=3, widths=(64, 128, 256), moco_dim=256):
        super().__init__()
        self.E_pre = ResBlock(in_feat=in_channels, out_feat=widths[0], stride=1)
        self.E = nn.Sequential(
            ResBlock(in_feat=widths[0], out_feat=widths[1], stride=2),
            ResBlock(in_feat=widths[1], out_feat=widths[2], stride=2),
            nn.AdaptiveAvgPool2d(1),
        )
        self.mlp = nn.Sequential(nn.Linear(widths[2], widths[2]), nn.LeakyReLU(0.1, True),
                                 nn.Linear(widths[2], moco_dim))

    def forward(self, x):
        inter = self.E_pre(x)
        fea = self.E(inter).squeeze(-1).squeeze(-1)
        out = self.mlp(fea)
        return fea, out, inter


class MoCo(nn.Module):

    def __init__(self, in_channels, widths, dim=256, K=1280, m=0.999, T=0.07):  # noqa: N803
        super().__init__()
        self.K, self.m, self.T = K, m, T
        self.encoder_q = ResEncoder(in_channels, widths, dim)
        self.encoder_k = ResEncoder(in_channels, widths, dim)
        for param_q, param_k in zip(self.encoder_q.parameters(), self.encoder_k.parameters()):
            param_k.data.copy_(param_q.data)
            param_k.requires_grad = False
        self.register_buffer('queue', torch.randn(dim, K))
        self.queue = nn.functional.normalize(self.queue, dim=0)
        self.register_buffer('queue_ptr', torch.zeros(1, dtype=torch.long))

    @torch.no_grad()
    def _momentum_update_key_encoder(self):
        for param_q, param_k in zip(self.encoder_q.parameters(), self.encoder_k.parameters()):
            param_k.data = param_k.data * self.m + param_q.data * (1. - self.m)

    @torch.no_grad()
    def _dequeue_and_enqueue(self, keys):
        batch_size = keys.shape[0]
        ptr = int(self.queue_ptr)
        assert self.K % batch_size == 0
        self.queue[:, ptr:ptr + batch_size] = keys.transpose(0, 1)
        ptr = (ptr + batch_size) % self.K
        self.queue_ptr[0] = ptr

    def forward(self, im_q, im_k):
        if self.training:
            embedding, q, inter = self.encoder_q(im_q)
            q = nn.functional.normalize(q, dim=1)
            with torch.no_grad():
                self._momentum_update_key_encoder()
                _, k, _ = self.encoder_k(im_k)
                k = nn.functional.normalize(k, dim=1)
            l_pos = torch.einsum('nc,nc->n', [q, k]).unsqueeze(-1)
            l_neg = torch.einsum('nc,ck->nk', [q, self.queue.clone().detach()])
            logits = torch.cat([l_pos, l_neg], dim=1)
            logits /= self.T
            labels = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
            self._dequeue_and_enqueue(k)
            return embedding, logits, labels, inter
        embedding, _, inter = self.encoder_q(im_q)
        return embedding, inter


class CBDE(nn.Module):

    def __init__(self, in_channels, widths, moco_dim, queue_size, momentum, temperature):
        super().__init__()
        self.E = MoCo(in_channels, widths, dim=moco_dim, K=queue_size, m=momentum, T=temperature)

    def forward(self, x_query, x_key):
        if self.training:
            return self.E(x_query, x_key)
        return self.E(x_query, x_query)


class DCN_layer(nn.Module):  # noqa: N801 (official name)
    """Modulated deformable conv whose offsets and mask come from cat(x, inter); no bias."""

    def __init__(self, in_channels, out_channels, kernel_size, padding):
        super().__init__()
        self.padding = padding
        self.weight = nn.Parameter(torch.Tensor(out_channels, in_channels, kernel_size, kernel_size))
        self.conv_offset_mask = nn.Conv2d(in_channels * 2, 3 * kernel_size * kernel_size, kernel_size,
                                          stride=1, padding=padding, bias=True)
        n = in_channels * kernel_size * kernel_size
        stdv = 1. / math.sqrt(n)
        self.weight.data.uniform_(-stdv, stdv)
        self.conv_offset_mask.weight.data.zero_()
        self.conv_offset_mask.bias.data.zero_()

    def forward(self, input_feat, inter):
        feat_degradation = torch.cat([input_feat, inter], dim=1)
        out = self.conv_offset_mask(feat_degradation)
        o1, o2, mask = torch.chunk(out, 3, dim=1)
        offset = torch.cat((o1, o2), dim=1)
        mask = torch.sigmoid(mask)
        return deform_conv2d(input_feat.contiguous(), offset, self.weight, None, stride=1, padding=self.padding,
                             mask=mask)


class SFT_layer(nn.Module):  # noqa: N801

    def __init__(self, channels_in, channels_out):
        super().__init__()
        self.conv_gamma = nn.Sequential(nn.Conv2d(channels_in, channels_out, 1, 1, 0, bias=False),
                                        nn.LeakyReLU(0.1, True),
                                        nn.Conv2d(channels_out, channels_out, 1, 1, 0, bias=False))
        self.conv_beta = nn.Sequential(nn.Conv2d(channels_in, channels_out, 1, 1, 0, bias=False),
                                       nn.LeakyReLU(0.1, True),
                                       nn.Conv2d(channels_out, channels_out, 1, 1, 0, bias=False))

    def forward(self, x, inter):
        gamma = self.conv_gamma(inter)
        beta = self.conv_beta(inter)
        return x * gamma + beta


class DGM(nn.Module):

    def __init__(self, channels_in, channels_out, kernel_size):
        super().__init__()
        self.dcn = DCN_layer(channels_in, channels_out, kernel_size, padding=(kernel_size - 1) // 2)
        self.sft = SFT_layer(channels_in, channels_out)

    def forward(self, x, inter):
        dcn_out = self.dcn(x, inter)
        sft_out = self.sft(x, inter)
        out = dcn_out + sft_out
        return x + out


def default_conv(in_channels, out_channels, kernel_size, bias=True):
    return nn.Conv2d(in_channels, out_channels, kernel_size, padding=(kernel_size // 2), bias=bias)


class DGB(nn.Module):

    def __init__(self, n_feat, kernel_size):
        super().__init__()
        self.dgm1 = DGM(n_feat, n_feat, kernel_size)
        self.dgm2 = DGM(n_feat, n_feat, kernel_size)
        self.conv1 = default_conv(n_feat, n_feat, kernel_size)
        self.conv2 = default_conv(n_feat, n_feat, kernel_size)
        self.relu = nn.LeakyReLU(0.1, True)

    def forward(self, x, inter):
        out = self.relu(self.dgm1(x, inter))
        out = self.relu(self.conv1(out))
        out = self.relu(self.dgm2(out, inter))
        out = self.conv2(out) + x
        return out


class DGG(nn.Module):

    def __init__(self, n_feat, kernel_size, n_blocks):
        super().__init__()
        self.n_blocks = n_blocks
        modules_body = [DGB(n_feat, kernel_size) for _ in range(n_blocks)]
        modules_body.append(default_conv(n_feat, n_feat, kernel_size))
        self.body = nn.Sequential(*modules_body)

    def forward(self, x, inter):
        res = x
        for i in range(self.n_blocks):
            res = self.body[i](res, inter)
        res = self.body[-1](res)
        return res + x


class DGRN(nn.Module):

    def __init__(self, in_channels, out_channels, n_feats, n_groups, n_blocks, kernel_size):
        super().__init__()
        self.n_groups = n_groups
        self.head = nn.Sequential(default_conv(in_channels, n_feats, kernel_size))
        modules_body = [DGG(n_feats, kernel_size, n_blocks) for _ in range(n_groups)]
        modules_body.append(default_conv(n_feats, n_feats, kernel_size))
        self.body = nn.Sequential(*modules_body)
        self.tail = nn.Sequential(default_conv(n_feats, out_channels, kernel_size))

    def forward(self, x, inter):
        x = self.head(x)
        res = x
        for i in range(self.n_groups):
            res = self.body[i](res, inter)
        res = self.body[-1](res)
        res = res + x
        return self.tail(res)


class AirNet(nn.Module):
    """``forward(x_query, x_key)``: training mode -> (restored, logits, labels); eval -> restored."""

    def __init__(self, inp_channels=3, out_channels=3, n_feats=64, n_groups=5, n_blocks=5, kernel_size=3,
                 encoder_widths=(128, 256), moco_dim=256, queue_size=1280, moco_momentum=0.999, moco_temperature=0.07):
        super().__init__()
        self.R = DGRN(inp_channels, out_channels, n_feats, n_groups, n_blocks, kernel_size)
        self.E = CBDE(inp_channels, (n_feats, *encoder_widths), moco_dim, queue_size, moco_momentum,
                      moco_temperature)

    def forward(self, x_query, x_key=None):
        if self.training:
            fea, logits, labels, inter = self.E(x_query, x_key)
            restored = self.R(x_query, inter)
            return restored, logits, labels
        fea, inter = self.E(x_query, x_query)
        return self.R(x_query, inter)


REFERENCES = {'PromptIR': PromptIR, 'Restormer': Restormer, 'AirNet': AirNet}


# The re-statements of the newer networks, in tests/official/: arch -> (module, class or builder), imported when
# asked for.
NEWER_REFERENCES = {'AdaIR': ('official.adair', 'build_reference'), 'MoCEIR': ('official.moce_ir', 'MoCEIR'),
                    'BioIR': ('official.bioir', 'BioIR')}


def build_reference(arch, **options):
    """The reference network of ``arch`` ('PromptIR', 'Restormer', 'AirNet', or one of NEWER_REFERENCES) with our
    option names."""
    if arch in NEWER_REFERENCES:
        import importlib
        module, name = NEWER_REFERENCES[arch]
        return getattr(importlib.import_module(module), name)(**options)
    return REFERENCES[arch](**options)


def reference_like(net, arch, **options):
    """A reference network built with ``options`` carrying ``net``'s weights (strict key match)."""
    ref = build_reference(arch, **options)
    ref.load_state_dict(net.state_dict(), strict=True)
    return ref.train(net.training)
