"""AdaIR (Cui et al., ICLR 2025, "Adaptive All-in-One Image Restoration via Frequency Mining and
Modulation") as a basicsr arch: ``type: AdaIR``.

Restormer's U-shaped transformer (blocks shared from :mod:`.restormer_blocks`) with one frequency
module (the paper's AFLB, official class ``FreModule``) after the latent and after each of the first two
decoder levels. Each one splits the degraded image, resized to its level, into a low and a high band
with a Fourier mask whose size the network predicts per image, lets each band attend to the decoder
features (channel cross attention), modulates the two bands by each other (FMoM: a spatial gate from
the high band on the low, a channel gate from the low band on the high) and adds the result, scaled by
a learned per-channel weight that starts at zero, to the features.

Facts of the official code (``c-yn/AdaIR``, MIT licence) are cited as ``net/model.py:<line>``.
Complex numbers are (real, imaginary) pairs of :mod:`.fourier`, so the network exports to ONNX.
See :class:`AdaIR`.
"""
from basicsr.utils.registry import ARCH_REGISTRY
import torch
import torch.nn.functional as F
from torch import nn

from ..utils import fourier
from ..utils.tiling import pad_to_multiple
from .arch_api import RestorationArch
from .restormer_blocks import (RestormerEncoder, Upsample, as_map, as_tokens, channels_last, restormer_body_options,
                               transformer_stage)

# Modules of the official FreModule that its forward never calls (``conv``, ``score_gen``; net/model.py:293,296),
# and the one whose output reaches the result only through an integer truncation, so it never gets a gradient
# (``rate_conv``, net/model.py:343-347). Kept in the state dict, frozen (see AdaIR's docstring).
UNUSED_OFFICIAL_MODULES = ('conv', 'score_gen')
UNTRAINED_OFFICIAL_MODULES = ('rate_conv', )
#: The official ``fft(self, x, n=128)`` (net/model.py:337): the low-pass half-size at a level of height h
#: is ``int(h // 128 * rate)``, rate in (0, 1).
WINDOW_UNIT = 128


# ---- the low-pass mask ----------------------------------------------------------------------------------------
def half_sizes(n, rate, unit=WINDOW_UNIT):
    """(B,) low-pass half-sizes along a side of ``n``: the official ``(n // unit * rate).int()`` (see
    :func:`centred_window`), as floats of the rate's type."""
    return torch.floor((n // unit) * rate)


def centred_window(n, rate, unit=WINDOW_UNIT):
    """(B, n) 0/1 rows of a centred spectrum (frequency 0 at index n // 2) inside the low-pass window.

    The official half-size is ``(h // n * threshold[i, 0]).int()`` per sample i (net/model.py:346-347; its
    h is the size, called ``n`` here, and its n the unit): the integer ``size // unit`` times the rate in the
    rate's float type, truncated toward zero (``floor`` here: the rate is a sigmoid, so the product is never
    negative). The window is the slice ``[n//2 - half,
    n//2 + half)`` (net/model.py:349), empty when half is 0: whenever ``n < 2 * unit``, since the rate is
    below 1. Written as comparisons of an ``arange`` with per-sample bounds, not Python integers or a loop
    over the batch, so a traced (ONNX) graph computes it for any size and batch.
    """
    half = half_sizes(n, rate, unit)[:, None]  # (B, 1)
    index = torch.arange(n, device=rate.device, dtype=rate.dtype)
    centre = n // 2
    return ((index >= centre - half) & (index < centre + half)).to(rate.dtype)


def windows_all_empty(h, w, rates, unit=WINDOW_UNIT):
    """True when no sample's low-pass window holds a frequency, so the mask of :func:`low_pass_mask` is zero:
    known from the sizes alone when ``h`` or ``w`` is below ``unit`` (the half-size is then 0 for any rate),
    otherwise read from the rates (a half-size is 0 below ``2 * unit`` unless the rate rounds to 1).

    A Python answer, for eager code only: a traced or compiled graph must not branch on it."""
    if h // unit == 0 or w // unit == 0:
        return True
    rows, cols = half_sizes(h, rates[:, 0], unit), half_sizes(w, rates[:, 1], unit)
    return not bool(((rows > 0) & (cols > 0)).any())


def low_pass_mask(h, w, rates, unit=WINDOW_UNIT):
    """(B, 1, h, w) 0/1 mask of the low band, laid out like the unshifted spectrum ``fft2`` returns.

    ``rates`` (B, 2): the predicted (row, column) rates. The official code sets the window in a
    spectrum rolled by (int(h/2), int(w/2)) (its ``shift``) and rolls the product back (``unshift``,
    net/model.py:327-335,352-362). A roll only permutes, so rolling the mask back instead gives the same
    products, and the mask is the outer product of a row and a column window: two rolls of (B, h) and (B, w)
    windows instead of three of the complex (B, C, h, w) spectrum.
    """
    rows = fourier.roll(centred_window(h, rates[:, 0], unit), -(h // 2), -1)  # the official unshift
    cols = fourier.roll(centred_window(w, rates[:, 1], unit), -(w // 2), -1)
    return (rows[:, :, None] * cols[:, None, :])[:, None]


# ---- the blocks of a frequency module -----------------------------------------------------------------------
def _inverse_norms(tokens):
    """1 / max(||column||, 1e-12) of every column of (B, HW, C) tokens (``F.normalize``'s divisor), accumulated in
    at least float32. The square root is taken of the sum clamped at 1e-24, not clamped after it: a channel that
    is zero everywhere (the low band of a small image, see :class:`FreModule`) then gets the gradient 0, as
    ``F.normalize`` gives it, where sqrt's derivative at 0 would make it 0 * inf = NaN."""
    acc_dtype = torch.promote_types(tokens.dtype, torch.float32)
    return tokens.square().sum(dim=1, dtype=acc_dtype).clamp_min(1e-24).rsqrt()


class ChannelCrossAttention(nn.Module):
    """The official ``Chanel_Cross_Attention`` (net/model.py:173-213): MDTA's transposed attention with q from
    ``x`` and k, v from ``y``, both (B, C, H, W); the output is (B, C, H, W), channels-last.

    Per head, q and k are (C/heads, HW), L2-normalised along HW, and the (C/heads)^2 map, scaled by a learned
    per-head ``temperature``, is softmaxed over k's channels and applied to v. Computed as :class:`Attention`
    of :mod:`.restormer_blocks` computes MDTA: on channels-last tokens, normalisation folded into the small
    product of q and k.
    """

    def __init__(self, dim, num_head, bias=False):
        super().__init__()
        if dim % num_head:
            raise ValueError(f'ChannelCrossAttention: dim {dim} is not divisible by num_head {num_head}')
        self.num_head = num_head
        self.temperature = nn.Parameter(torch.ones(num_head, 1, 1))
        self.q = nn.Conv2d(dim, dim, kernel_size=1, bias=bias)
        self.q_dwconv = nn.Conv2d(dim, dim, kernel_size=3, padding=1, groups=dim, bias=bias)
        self.kv = nn.Conv2d(dim, dim * 2, kernel_size=1, bias=bias)
        self.kv_dwconv = nn.Conv2d(dim * 2, dim * 2, kernel_size=3, padding=1, groups=dim * 2, bias=bias)
        self.project_out = nn.Conv2d(dim, dim, kernel_size=1, bias=bias)

    def forward(self, x, y):
        b, c, h, w = y.shape
        heads, ch = self.num_head, c // self.num_head
        q = as_tokens(self.q_dwconv(self.q(channels_last(x))))  # (B, HW, C) views
        k, v = as_tokens(self.kv_dwconv(self.kv(channels_last(y)))).split([c, c], dim=-1)
        q_scale, k_scale = (_inverse_norms(t).view(b, heads, ch) for t in (q, k))
        gram = torch.stack([qh.transpose(1, 2) @ kh for qh, kh in zip(q.split(ch, -1), k.split(ch, -1))], dim=1)
        attn = (gram * (q_scale.unsqueeze(-1) * k_scale.unsqueeze(-2) * self.temperature)).softmax(dim=-1)
        out = [vh @ ah.transpose(1, 2).to(vh.dtype) for vh, ah in zip(v.split(ch, dim=-1), attn.unbind(1))]
        out = out[0] if heads == 1 else torch.cat(out, dim=-1)
        return self.project_out(as_map(out, h, w))


class SpatialGate(nn.Module):
    """(B, C, H, W) -> (B, 1, H, W) weights: sigmoid of a 7x7 conv of the channel max and the channel mean
    (the official "H-L unit", net/model.py:231-243)."""

    def __init__(self):
        super().__init__()
        self.spatial = nn.Conv2d(2, 1, kernel_size=7, padding=3, bias=False)

    def forward(self, x):
        pooled = torch.cat([torch.max(x, 1, keepdim=True)[0], x.mean(1, keepdim=True)], dim=1)
        return torch.sigmoid(self.spatial(pooled))


class ChannelGate(nn.Module):
    """(B, C, H, W) -> (B, C, 1, 1) weights: sigmoid of one bottleneck MLP (C -> C/16 -> C) applied to the
    global average and to the global max, summed (the official "L-H unit", net/model.py:247-265)."""

    def __init__(self, dim):
        super().__init__()
        self.mlp = nn.Sequential(nn.Conv2d(dim, dim // 16, 1, bias=False), nn.ReLU(),
                                 nn.Conv2d(dim // 16, dim, 1, bias=False))

    def forward(self, x):
        return torch.sigmoid(self.mlp(F.adaptive_avg_pool2d(x, 1)) + self.mlp(F.adaptive_max_pool2d(x, 1)))


class FreRefine(nn.Module):
    """FMoM, the bidirectional modulation (net/model.py:269-285): ``proj(low * SpatialGate(high) +
    high * ChannelGate(low))``; ``proj`` is a 1x1 conv with a bias (always, as in the official code)."""

    def __init__(self, dim):
        super().__init__()
        self.SpatialGate = SpatialGate()  # noqa: N815 (official names: the state dict's keys)
        self.ChannelGate = ChannelGate(dim)  # noqa: N815
        self.proj = nn.Conv2d(dim, dim, kernel_size=1)

    def forward(self, low, high):
        return self.proj(low * self.SpatialGate(high) + high * self.ChannelGate(low))


class FreModule(nn.Module):
    """AFLB, the adaptive frequency learning block (official ``FreModule``, net/model.py:289-366):
    (image (B, in, H, W), features y (B, C, h, w)) -> (B, C, h, w).

    1. The image is resized to (h, w), bilinear with align_corners False (``F.interpolate`` with
       ``mode='bilinear'`` and the default align_corners, net/model.py:315) and embedded by a 3x3 conv
       (``conv1``) into C channels.
    2. ``rate_conv`` (1x1 C -> C/8, GELU, 1x1 -> 2) of the embedding's global average, through a sigmoid,
       gives each image a row and a column rate; the low-pass window's half-sizes are
       ``int(h // 128 * rate)`` and ``int(w // 128 * rate)`` (:func:`low_pass_mask`). Below 256 at a level
       (h or w) the window is empty: the low band is zero and the high band is the whole embedding.
    3. The embedding's spectrum (``fft2`` with norm='forward') times the mask and times one minus the
       mask, transformed back (``ifft2``, norm='forward'), gives the two bands as magnitudes (``torch.abs``
       of the complex inverse, net/model.py:351-364). Computed with one inverse transform (the high band's is
       x minus the low band's), and eagerly with none when every window is empty (:func:`windows_all_empty`:
       the bands are then |x| and 0); an exported graph computes the transforms for every size.
    4. Each band attends to the features (q from the band; ``channel_cross_l`` takes the HIGH band and
       ``channel_cross_h`` the LOW one, as in the official code), :class:`FreRefine` merges them, and the
       features attend to the result (``channel_cross_agg``, q from the features).
    5. Output ``out * para1 + y * para2``: para1 starts at 0 and para2 at 1, so an untrained module passes
       the features through.

    ``keep_unused_modules`` builds ``conv`` and ``score_gen``, which the official forward never calls, so
    official weights load with ``strict=True``. ``in_dim`` is the image's channel count (the official class
    fixes it at 3). The spectral part runs in at least float32 (FFTs of float16/bfloat16 are not available
    on every device, and the window's truncation wants the rate's precision).
    """

    def __init__(self, dim, num_heads, bias=False, in_dim=3, keep_unused_modules=True):
        super().__init__()
        if keep_unused_modules:
            self.conv = nn.Conv2d(in_dim, dim, kernel_size=3, padding=1, bias=False)
        self.conv1 = nn.Conv2d(in_dim, dim, kernel_size=3, padding=1, bias=False)
        if keep_unused_modules:
            self.score_gen = nn.Conv2d(2, 2, 7, padding=3)
        self.para1 = nn.Parameter(torch.zeros(dim, 1, 1))
        self.para2 = nn.Parameter(torch.ones(dim, 1, 1))
        self.channel_cross_l = ChannelCrossAttention(dim, num_heads, bias)
        self.channel_cross_h = ChannelCrossAttention(dim, num_heads, bias)
        self.channel_cross_agg = ChannelCrossAttention(dim, num_heads, bias)
        self.frequency_refine = FreRefine(dim)
        self.rate_conv = nn.Sequential(nn.Conv2d(dim, dim // 8, 1, bias=False), nn.GELU(),
                                       nn.Conv2d(dim // 8, 2, 1, bias=False))

    #: the official n=128 (:data:`WINDOW_UNIT`); a class attribute, so a test can open the window at small sizes
    window_unit = WINDOW_UNIT

    def bands(self, image):
        """(high, low) bands of ``image`` (B, in, h, w) resized to its level: each (B, C, h, w), non-negative."""
        embedded = self.conv1(channels_last(image))  # channels-last bands: what the attentions read
        rates = torch.sigmoid(self.rate_conv(F.adaptive_avg_pool2d(embedded, 1))).flatten(1)  # (B, 2)
        dtype = embedded.dtype
        if dtype in (torch.float16, torch.bfloat16):
            embedded, rates = embedded.float(), rates.float()
        h, w = embedded.shape[-2:]
        eager = not (fourier.uses_matmul() or torch.jit.is_tracing() or torch.compiler.is_compiling())
        if eager and windows_all_empty(h, w, rates, self.window_unit):
            # the mask is zero (every level below 256 px, for any rate): the low band is |ifft2(0)| = 0 and the
            # high band |ifft2(fft2(x))| = |x|, with no transform at all
            return embedded.abs().to(dtype), torch.zeros_like(embedded, dtype=dtype)
        mask = low_pass_mask(h, w, rates, self.window_unit)
        re, im = fourier.fft2(embedded.contiguous(), norm='forward')
        # the inverse transform is linear and inverts fft2: ifft2(F * (1 - mask)) = x - ifft2(F * mask), so one
        # inverse transform gives both bands
        low_re, low_im = fourier.ifft2(re * mask, im * mask, norm='forward')
        high = fourier.magnitude(embedded - low_re, -low_im)
        low = fourier.magnitude(low_re, low_im)
        return high.to(dtype), low.to(dtype)

    def forward(self, image, y):
        image = F.interpolate(image, y.shape[-2:], mode='bilinear', align_corners=False)
        high, low = self.bands(image)
        high = self.channel_cross_l(high, y)
        low = self.channel_cross_h(low, y)
        out = self.channel_cross_agg(y, self.frequency_refine(low, high))
        return out * self.para1 + y * self.para2


# ---- the network -----------------------------------------------------------------------------------------------
def adair_option_problems(dim=48, heads=(1, 2, 4, 8), decoder=True):
    """What is wrong with the values of AdaIR's options (empty when they are fine)."""
    problems = []
    if decoder and isinstance(dim, int) and dim < 8:
        problems.append(f'dim must be at least 8 with decoder: true (the channel gate of fre3 has 2*dim//16 '
                        f'channels), got {dim}')
    if decoder and isinstance(dim, int) and isinstance(heads, (list, tuple)) and len(heads) > 2 \
            and isinstance(heads[2], int) and heads[2] > 0 and (2 * dim) % heads[2]:
        problems.append(f'heads[2] ({heads[2]}) must divide 2*dim ({2 * dim}): the frequency modules use heads[2] at '
                        'every level, fre3 at 2*dim channels')
    return problems


@ARCH_REGISTRY.register()
class AdaIR(RestormerEncoder, RestorationArch, nn.Module):
    """All-in-one restoration by frequency mining and modulation. With ``d = dim`` and an input
    (B, inp_channels, H, W):

    ============================  =====================  ===========================================
    stage                         output shape            note
    ============================  =====================  ===========================================
    pad (reflect)                 (B, in, H8, W8)         H8, W8: H, W rounded up to multiples of 8;
                                                          the padded image also feeds fre1..fre3
    patch_embed + encoder_level1  (B, d, H8, W8)          as Restormer
    down1_2 + encoder_level2      (B, 2d, H8/2, W8/2)
    down2_3 + encoder_level3      (B, 4d, H8/4, W8/4)
    down3_4 + latent              (B, 8d, H8/8, W8/8)
    fre1(image, latent)           (B, 8d, H8/8, W8/8)     image resized to H8/8; heads[2]
    up4_3, ++enc3, reduce 1x1     (B, 4d, H8/4, W8/4)     (8d -> 4d), then decoder_level3
    fre2(image, dec3)             (B, 4d, H8/4, W8/4)     image resized to H8/4; heads[2]
    up3_2, ++enc2, reduce 1x1     (B, 2d, H8/2, W8/2)     (4d -> 2d), then decoder_level2
    fre3(image, dec2)             (B, 2d, H8/2, W8/2)     image resized to H8/2; heads[2]
    up2_1, ++enc1                 (B, 2d, H8, W8)         decoder_level1, refinement
    output (+ input image)        (B, out, H, W)          3x3 conv, global residual, crop back
    ============================  =====================  ===========================================

    Inside fre<i> at a level of size (h, w) with C channels: image (B, in, h, w) -> conv1 (B, C, h, w) ->
    spectrum, mask (B, 1, h, w) -> high and low bands (B, C, h, w) each -> cross attention with the features,
    gates, cross attention -> (B, C, h, w). See :class:`FreModule`.

    Constructor options and defaults are the official ones (net/model.py:373-384; ``decoder=True`` builds
    the frequency modules, every official script uses it: train.py:20, test.py:21): 587 state-dict keys,
    28,784,824 parameters. ``decoder=False`` builds the official network without them, which is exactly
    Restormer (the same 494 keys, the same forward); its weights are therefore read as Restormer's.

    **Resolution.** The low-pass window at a level of height h is ``int(h // 128 * rate)`` rows (and
    alike for the width), zero unless the level is at least 256 pixels in both directions: below a
    512 x 512 input (1024 for fre2, 2048 for fre1) every low band is zero, and the official training
    patches (128) never see a non-empty one. The output therefore depends on the image size (larger
    images get a low band), and tiles are restored differently from the whole image (:attr:`tiling_note`).
    With a zero low band, what only it feeds gets zero gradients: ``channel_cross_h.q`` (and without
    biases also its ``q_dwconv`` and ``temperature``) of each module, in the official training as here.

    **Modules without training.** The official ``FreModule`` builds ``conv`` and ``score_gen`` and never
    calls them, and ``rate_conv`` reaches the output only through the truncation to an integer window,
    which has no gradient: the official training (AdamW skips parameters without a gradient) leaves all
    three at their random initialisation (18,738 parameters in ``conv`` and ``score_gen``, 24,360 in
    ``rate_conv`` at the defaults). Here they are frozen (``requires_grad=False``): the same training, and
    DDP can run with ``find_unused_parameters: false`` (the official code needed
    ``ddp_find_unused_parameters_true``, train.py:63). ``rate_conv`` still computes the window from the
    weights it was given (official ones included). ``keep_unused_modules=False`` leaves ``conv`` and
    ``score_gen`` out (official checkpoints then need ``strict_load_g: false``).

    ``inp_channels`` other than 3 is accepted (the frequency modules then embed that many image
    channels); the official code fixes their input at 3 channels and so runs with RGB only.

    Features run in channels-last memory (see :mod:`.restormer_blocks`). For activation checkpointing
    (``train: grad_checkpoint``) the stages are the transformer stages and the three frequency modules;
    the refinement, run last, is not recomputed.
    """

    def __init__(self,
                 inp_channels=3,
                 out_channels=3,
                 dim=48,
                 num_blocks=(4, 6, 6, 8),
                 num_refinement_blocks=4,
                 heads=(1, 2, 4, 8),
                 ffn_expansion_factor=2.66,
                 bias=False,
                 LayerNorm_type='WithBias',  # noqa: N803 (official name)
                 decoder=True,
                 keep_unused_modules=True):
        super().__init__()
        problems = adair_option_problems(dim, heads, decoder)
        if problems:
            raise ValueError('AdaIR: ' + '; '.join(problems))
        stage = dict(ffn_expansion_factor=ffn_expansion_factor, bias=bias, LayerNorm_type=LayerNorm_type)
        d = dim
        self.decoder = decoder

        self.build_encoder(inp_channels, d, num_blocks, heads, **stage)
        if decoder:
            # All three with heads[2] and the network's bias in their attentions (net/model.py:391-394).
            fre = dict(num_heads=heads[2], bias=bias, in_dim=inp_channels, keep_unused_modules=keep_unused_modules)
            self.fre1 = FreModule(d * 8, **fre)
            self.fre2 = FreModule(d * 4, **fre)
            self.fre3 = FreModule(d * 2, **fre)
            for i in (1, 2, 3):  # out of DDP's reducer and the optimizer (class docstring)
                for name in UNUSED_OFFICIAL_MODULES + UNTRAINED_OFFICIAL_MODULES:
                    module = getattr(getattr(self, f'fre{i}'), name, None)
                    if module is not None:
                        module.requires_grad_(False)

        # Restormer's decoder (net/model.py:409-424).
        self.up4_3 = Upsample(d * 8)
        self.reduce_chan_level3 = nn.Conv2d(d * 8, d * 4, kernel_size=1, bias=bias)
        self.decoder_level3 = transformer_stage(d * 4, heads[2], num_blocks[2], **stage)
        self.up3_2 = Upsample(d * 4)
        self.reduce_chan_level2 = nn.Conv2d(d * 4, d * 2, kernel_size=1, bias=bias)
        self.decoder_level2 = transformer_stage(d * 2, heads[1], num_blocks[1], **stage)
        self.up2_1 = Upsample(d * 2)
        self.decoder_level1 = transformer_stage(d * 2, heads[0], num_blocks[0], **stage)
        self.refinement = transformer_stage(d * 2, heads[0], num_refinement_blocks, **stage)
        self.output = nn.Conv2d(d * 2, out_channels, kernel_size=3, padding=1, bias=bias)

    # ---- what the rest of the package knows about AdaIR (archs/arch_api.py) ------------------------------
    size_multiple = 8  # three 2x downsamplings: every level must see an even size
    # Restormer's key plus one of fre1 that every AdaIR with its frequency modules has
    weight_signature = ('patch_embed.proj.weight', 'fre1.frequency_refine.proj.weight')
    tiling_note = ('AdaIR restores each tile on its own: its low-pass window grows with the size of what it sees '
                   '(none below 512 x 512 pixels) and its attentions and gates pool over the whole tile, so the '
                   'output depends on the tile size; use tiles as large as memory allows.')
    spandrel_tiling = 'discouraged'
    # float16 / bfloat16 measured on the CPU at the official configuration with random weights (para1 ~ N(0, 0.1^2),
    # so the frequency modules count) and a 64x64 input: within 1.0e-3 (fp16) and 9.2e-3 (bf16) of float32. The
    # spectral part runs in float32 either way (FreModule.bands).
    spandrel_supports_half = True
    spandrel_supports_bfloat16 = True

    @classmethod
    def options_from_weights(cls, state_dict):
        sd = state_dict
        decoder = 'fre1.frequency_refine.proj.weight' in sd
        # the frequency modules use heads[2] (a network without level-3 blocks still has their temperatures)
        options = restormer_body_options(sd, [(2, f'fre{i}.channel_cross_l.temperature') for i in (1, 2, 3)])
        options.update(decoder=decoder, keep_unused_modules='fre1.conv.weight' in sd if decoder else True)
        return options

    @classmethod
    def option_problems(cls, options):
        """Problems of the values of ``network_g`` (checked before a run by the option schema)."""
        return adair_option_problems(options.get('dim', 48), options.get('heads', (1, 2, 4, 8)),
                                     options.get('decoder', True))

    @classmethod
    def spandrel_tags(cls, options):
        return [f'{options["dim"]}dim'] + ([] if options.get('decoder', True) else ['no-frequency-modules'])

    def forward(self, inp_img):
        x, (h, w) = pad_to_multiple(inp_img, self.size_multiple)

        _, enc1, enc2, enc3, latent = self.encode(x)
        if self.decoder:
            latent = self.run_stage(self.fre1, x, latent)
        dec3 = self.run_stage(self.decoder_level3, self.reduce_chan_level3(torch.cat([self.up4_3(latent), enc3], 1)))
        if self.decoder:
            dec3 = self.run_stage(self.fre2, x, dec3)
        dec2 = self.run_stage(self.decoder_level2, self.reduce_chan_level2(torch.cat([self.up3_2(dec3), enc2], 1)))
        if self.decoder:
            dec2 = self.run_stage(self.fre3, x, dec2)
        dec1 = self.run_stage(self.decoder_level1, torch.cat([self.up2_1(dec2), enc1], 1))
        dec1 = self.run_stage(self.refinement, dec1, last=True)

        out = self.output(dec1) + x
        return (out[..., :h, :w] if out.shape[-2:] != (h, w) else out).contiguous()
