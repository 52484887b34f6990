"""AdaIR (Cui et al., ICLR 2025) in the official formulation: an independent reference for our ``AdaIR``.

Written for this project from the paper and the facts of the official code (``c-yn/AdaIR`` ``net/model.py``,
MIT licence), sharing no line with ``promptir_basicsr.archs``. The Restormer body (layer norm, MDTA, GDFN,
patch embedding, resizing) is the one of ``tests/official_formulation.py``, which the official file repeats
unchanged (``net/model.py:14-227``). What AdaIR adds is restated here the way the official code computes it:

- the image resized to each decoder level with ``F.interpolate(..., mode='bilinear')`` (align_corners left at
  its default, False; ``net/model.py:315``);
- ``fft``: a 3x3 conv of the resized image, the low-pass half-sizes ``(h // n * sigmoid(...)).int()`` read per
  sample in a Python loop over the batch, a mask of the features' shape set to 1 in the slice
  ``[h//2 - h_ : h//2 + h_, w//2 - w_ : w//2 + w_]``, complex ``torch.fft.fft2`` / ``ifft2`` with
  ``norm='forward'``, ``torch.roll`` by ``(int(h/2), int(w/2))`` to centre the spectrum and back, and
  ``torch.abs`` of the two inverse transforms (``net/model.py:327-366``);
- channel cross attention with einops rearranges and ``F.normalize`` (``net/model.py:173-213``), the
  spatial and channel gates and their product (``net/model.py:231-285``), ``out * para1 + y * para2``
  (``net/model.py:325``).

Module and parameter names are the official ones (and ours), so one state dict loads into both.

Two conventions of ours are reproduced on purpose, because they are part of the behaviour under test:
the input is reflect-padded to a multiple of 8 and the output cropped back (the official code needs
such sizes; its test crops to 16), the padded image being what the frequency modules see; and the
frequency modules' first convolutions take ``inp_channels`` channels (the official ``FreModule`` has
``in_dim=3`` fixed, ``net/model.py:290``, so the official network runs with 3 input channels only; at 3
the two are the same). ``keep_unused_modules=False`` leaves out the modules the official forward never
calls (``conv``, ``score_gen``), as ours does.

``WINDOW_UNIT`` is the official ``n=128`` of ``fft`` (``net/model.py:337``), a class attribute here so a test
can make the low-pass window non-empty at small sizes (in ours and here alike).

Checked against the real official ``net/model.py`` (copied to /tmp, run with this venv's torch 2.14.1 and
einops; the script compared the two and is not kept): one state dict (the official network's own random
initialisation, every parameter then perturbed by N(0, 0.3^2)) loaded into both, the same inputs, the loss
``sum(output * w)`` with fixed random ``w``. Configurations: dim 8 (heads [1, 2, 2, 4]) and dim 16 (biases,
BiasFree norm, ffn factor 2, heads [2, 2, 4, 4]) at 32x32, 48x64 (batch 2); with ``n`` set to 4 in both
(official: ``FreModule.fft.__defaults__``) at 32x40 batch 3 (windows still empty), 48x48 and 64x64 batch 2
(non-empty windows for both samples at two and three levels);
at 512x512 batch 2 with ``n`` = 128, where ``fre3``'s window is not empty for either sample; and the default
configuration at 64x64. Float32 and float64 alike, the outputs, the input's gradient and every parameter's
gradient were bitwise equal (max difference 0), and the same parameters had no gradient in both (``conv``,
``score_gen`` and ``rate_conv`` of each module).
"""
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from official_formulation import Downsample, OverlapPatchEmbed, Upsample, _blocks, _reflect_pad_to


class Chanel_Cross_Attention(nn.Module):  # noqa: N801 (official name, official spelling)
    """q from ``x``, k and v from ``y``; per head a (c x c) attention over L2-normalised pixel vectors."""

    def __init__(self, dim, num_head, bias):
        super().__init__()
        self.num_head = num_head
        self.temperature = nn.Parameter(torch.ones(num_head, 1, 1))
        self.q = nn.Conv2d(dim, dim, kernel_size=1, bias=bias)
        self.q_dwconv = nn.Conv2d(dim, dim, kernel_size=3, stride=1, padding=1, groups=dim, bias=bias)
        self.kv = nn.Conv2d(dim, dim * 2, kernel_size=1, bias=bias)
        self.kv_dwconv = nn.Conv2d(dim * 2, dim * 2, kernel_size=3, stride=1, padding=1, groups=dim * 2, bias=bias)
        self.project_out = nn.Conv2d(dim, dim, kernel_size=1, bias=bias)

    def forward(self, x, y):
        assert x.shape == y.shape
        b, c, h, w = x.shape
        q = self.q_dwconv(self.q(x))
        k, v = self.kv_dwconv(self.kv(y)).chunk(2, dim=1)
        q = rearrange(q, 'b (head c) h w -> b head c (h w)', head=self.num_head)
        k = rearrange(k, 'b (head c) h w -> b head c (h w)', head=self.num_head)
        v = rearrange(v, 'b (head c) h w -> b head c (h w)', head=self.num_head)
        q = F.normalize(q, dim=-1)
        k = F.normalize(k, dim=-1)
        attn = (q @ k.transpose(-2, -1) * self.temperature).softmax(dim=-1)
        out = rearrange(attn @ v, 'b head c (h w) -> b (head c) h w', head=self.num_head, h=h, w=w)
        return self.project_out(out)


class SpatialGate(nn.Module):
    """sigmoid(7x7 conv of [channel max, channel mean]): (B, 1, H, W)."""

    def __init__(self):
        super().__init__()
        self.spatial = nn.Conv2d(2, 1, kernel_size=7, padding=3, bias=False)

    def forward(self, x):
        stacked = torch.cat((torch.max(x, 1, keepdim=True)[0], torch.mean(x, 1, keepdim=True)), dim=1)
        return torch.sigmoid(self.spatial(stacked))


class ChannelGate(nn.Module):
    """sigmoid(mlp(global average) + mlp(global max)): (B, C, 1, 1)."""

    def __init__(self, dim):
        super().__init__()
        self.avg = nn.AdaptiveAvgPool2d((1, 1))
        self.max = nn.AdaptiveMaxPool2d((1, 1))
        self.mlp = nn.Sequential(nn.Conv2d(dim, dim // 16, 1, bias=False), nn.ReLU(),
                                 nn.Conv2d(dim // 16, dim, 1, bias=False))

    def forward(self, x):
        return torch.sigmoid(self.mlp(self.avg(x)) + self.mlp(self.max(x)))


class FreRefine(nn.Module):
    """The high band weighted per channel by the low band, the low band per pixel by the high band; summed."""

    def __init__(self, dim):
        super().__init__()
        self.SpatialGate = SpatialGate()
        self.ChannelGate = ChannelGate(dim)
        self.proj = nn.Conv2d(dim, dim, kernel_size=1)

    def forward(self, low, high):
        spatial_weight = self.SpatialGate(high)
        channel_weight = self.ChannelGate(low)
        return self.proj(low * spatial_weight + high * channel_weight)


class FreModule(nn.Module):
    """AFLB: bands of the resized image guide the features ``y`` of one decoder level."""

    WINDOW_UNIT = 128  # the official fft(self, x, n=128)

    def __init__(self, dim, num_heads, bias, in_dim=3, keep_unused_modules=True):
        super().__init__()
        if keep_unused_modules:
            self.conv = nn.Conv2d(in_dim, dim, kernel_size=3, stride=1, padding=1, bias=False)
        self.conv1 = nn.Conv2d(in_dim, dim, kernel_size=3, stride=1, padding=1, bias=False)
        if keep_unused_modules:
            self.score_gen = nn.Conv2d(2, 2, 7, padding=3)
        self.para1 = nn.Parameter(torch.zeros(dim, 1, 1))
        self.para2 = nn.Parameter(torch.ones(dim, 1, 1))
        self.channel_cross_l = Chanel_Cross_Attention(dim, num_head=num_heads, bias=bias)
        self.channel_cross_h = Chanel_Cross_Attention(dim, num_head=num_heads, bias=bias)
        self.channel_cross_agg = Chanel_Cross_Attention(dim, num_head=num_heads, bias=bias)
        self.frequency_refine = FreRefine(dim)
        self.rate_conv = nn.Sequential(nn.Conv2d(dim, dim // 8, 1, bias=False), nn.GELU(),
                                       nn.Conv2d(dim // 8, 2, 1, bias=False))

    def forward(self, x, y):
        H, W = y.shape[-2:]  # noqa: N806
        x = F.interpolate(x, (H, W), mode='bilinear')
        high, low = self.fft(x)
        high = self.channel_cross_l(high, y)  # (sic: the "_l" attention takes the high band)
        low = self.channel_cross_h(low, y)
        agg = self.frequency_refine(low, high)
        out = self.channel_cross_agg(y, agg)
        return out * self.para1 + y * self.para2

    @staticmethod
    def shift(x):
        h, w = x.shape[-2:]
        return torch.roll(x, shifts=(int(h / 2), int(w / 2)), dims=(2, 3))

    @staticmethod
    def unshift(x):
        h, w = x.shape[-2:]
        return torch.roll(x, shifts=(-int(h / 2), -int(w / 2)), dims=(2, 3))

    def fft(self, x):
        n = self.WINDOW_UNIT
        x = self.conv1(x)
        mask = torch.zeros(x.shape, dtype=x.dtype, device=x.device)
        h, w = x.shape[-2:]
        threshold = self.rate_conv(F.adaptive_avg_pool2d(x, 1)).sigmoid()
        for i in range(mask.shape[0]):
            h_ = int((h // n * threshold[i, 0, :, :]).int())
            w_ = int((w // n * threshold[i, 1, :, :]).int())
            mask[i, :, h // 2 - h_:h // 2 + h_, w // 2 - w_:w // 2 + w_] = 1
        spectrum = self.shift(torch.fft.fft2(x, norm='forward', dim=(-2, -1)))
        high = torch.abs(torch.fft.ifft2(self.unshift(spectrum * (1 - mask)), norm='forward', dim=(-2, -1)))
        low = torch.abs(torch.fft.ifft2(self.unshift(spectrum * mask), norm='forward', dim=(-2, -1)))
        return high, low


class AdaIR(nn.Module):
    """The official ``AdaIR``: Restormer with a frequency module after the latent (``fre1``, 8d channels),
    after ``decoder_level3`` (``fre2``, 4d) and after ``decoder_level2`` (``fre3``, 2d), all with heads[2]
    (``net/model.py:391-394``); ``decoder=False`` builds none of them (Restormer itself)."""

    def __init__(self, inp_channels=3, out_channels=3, dim=48, num_blocks=(4, 6, 6, 8), num_refinement_blocks=4,
                 heads=(1, 2, 4, 8), ffn_expansion_factor=2.66, bias=False, LayerNorm_type='WithBias',  # noqa: N803
                 decoder=True, keep_unused_modules=True):
        super().__init__()
        kw = dict(ffn_expansion_factor=ffn_expansion_factor, bias=bias, LayerNorm_type=LayerNorm_type)
        self.patch_embed = OverlapPatchEmbed(inp_channels, dim)
        self.decoder = decoder
        if decoder:
            fre = dict(num_heads=heads[2], bias=bias, in_dim=inp_channels, keep_unused_modules=keep_unused_modules)
            self.fre1 = FreModule(dim * 2**3, **fre)
            self.fre2 = FreModule(dim * 2**2, **fre)
            self.fre3 = FreModule(dim * 2**1, **fre)
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
        if self.decoder:
            latent = self.fre1(inp_img, latent)

        inp_dec_level3 = torch.cat([self.up4_3(latent), out_enc_level3], 1)
        out_dec_level3 = self.decoder_level3(self.reduce_chan_level3(inp_dec_level3))
        if self.decoder:
            out_dec_level3 = self.fre2(inp_img, out_dec_level3)

        inp_dec_level2 = torch.cat([self.up3_2(out_dec_level3), out_enc_level2], 1)
        out_dec_level2 = self.decoder_level2(self.reduce_chan_level2(inp_dec_level2))
        if self.decoder:
            out_dec_level2 = self.fre3(inp_img, out_dec_level2)

        inp_dec_level1 = torch.cat([self.up2_1(out_dec_level2), out_enc_level1], 1)
        out_dec_level1 = self.refinement(self.decoder_level1(inp_dec_level1))
        out_dec_level1 = self.output(out_dec_level1) + inp_img
        return out_dec_level1[..., :h, :w]


def build_reference(**options):
    """The reference AdaIR with our option names."""
    return AdaIR(**options)
