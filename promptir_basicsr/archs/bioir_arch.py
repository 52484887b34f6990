"""BioIR (Cui, Ren and Knoll, "Bio-Inspired Image Restoration", NeurIPS 2025) as a basicsr arch: ``type: BioIR``.

The all-in-one network of ``c-yn/BioIR`` (``All_in_One/net/model.py``, MIT licence): a three-level U-Net
whose blocks keep Restormer's pre-norm layout and gated feed-forward (``LayerNorm`` and ``FeedForward``
from :mod:`.restormer_blocks`, channels-last) but replace its attention by BioIR's mixer, two modules
modelled on human vision:

* P2F, peripheral to foveal (official class ``L2H``): each pixel's 3x3 filter is predicted from its
  affinity to 16 x 16 pooled regions of the whole feature map (large-field context into the fovea);
* F2P, foveal to peripheral (official class ``H2L``): a static 7x7 depth-wise stage modulates the
  features, then a dynamic 5x5 filter predicted from them spreads the detail around each pixel.

Read top-down as the paper's figure: the two helpers of the mixers (region pooling, per-pixel filters),
P2F and F2P, the mixer (``AttModule``), the block (``AttBlock``), the skip fusion (``Fuse``) and the
resizing steps, then the network. Module and parameter names are the official ones, so the released
Lightning checkpoints (keys ``net.*``) load with ``strict=True``.
"""
import contextlib

from basicsr.utils.registry import ARCH_REGISTRY
import torch
import torch.nn.functional as F
from torch import nn

from ..utils.tiling import pad_to_multiple
from .arch_api import RestorationArch, count_children, expansion_factor
from .grad_checkpoint import StageCheckpointing
from .restormer_blocks import LAYER_NORM_TYPES, FeedForward, LayerNorm, OverlapPatchEmbed, as_tokens, channels_last

# Constants of the official blocks (c-yn/BioIR All_in_One/net/model.py), not constructor options there.
REGIONS = 16  # P2F pools to REGIONS x REGIONS regions (L2H.r, model.py:109)
P2F_KERNEL = 3  # P2F's per-pixel filter (L2H.kernel, model.py:110)
F2P_KERNEL = 5  # F2P's per-pixel filter (H2L kernel_size, model.py:130)
F2P_STATIC_KERNEL = 7  # F2P's static depth-wise conv (H2L.dw_k, model.py:134)
# Both filters reflect-pad their maps, by 2 pixels at most (F2P), which needs 3 pixels at the coarsest
# level, H/4: inputs are padded to at least this size.
MIN_SIZE = 4 * (F2P_KERNEL // 2 + 1)

_EXPORT_FORMULATION = False


@contextlib.contextmanager
def export_formulation():
    """Pool regions as matrix products (what an ONNX export records) inside this block, also when eager."""
    global _EXPORT_FORMULATION
    previous, _EXPORT_FORMULATION = _EXPORT_FORMULATION, True
    try:
        yield
    finally:
        _EXPORT_FORMULATION = previous


def _pooling_matrix(n, regions, like):
    """(regions, n): row i averages samples floor(i*n/regions) .. ceil((i+1)*n/regions)-1, the bins of
    ``F.adaptive_avg_pool2d`` (overlapping when n < regions). Built with tensor ops from ``arange(n)``, so a
    traced graph keeps ``n`` dynamic."""
    i = torch.arange(regions, device=like.device)
    j = torch.arange(n, device=like.device)
    start = (i * n) // regions
    end = ((i + 1) * n + regions - 1) // regions
    inside = ((j[None, :] >= start[:, None]) & (j[None, :] < end[:, None])).to(like.dtype)
    return inside / inside.sum(dim=1, keepdim=True)


def region_pool(x, regions=REGIONS):
    """(B, C, H, W) -> (B, C, regions, regions) average of each region of the whole map:
    ``F.adaptive_avg_pool2d``. torch's ONNX exporter cannot write adaptive pooling to a fixed size for
    dynamic H and W (it refuses: "input size not accessible"), so during an export (or
    :func:`export_formulation`) it is two products with averaging matrices built from the input's own size."""
    if not (_EXPORT_FORMULATION or torch.onnx.is_in_onnx_export()):
        return F.adaptive_avg_pool2d(x, regions)
    h, w = x.shape[-2], x.shape[-1]
    return _pooling_matrix(h, regions, x) @ x @ _pooling_matrix(w, regions, x).t()


def per_pixel_filter(plane, taps, kernel):
    """``sum_k taps[..., k] * plane[neighbour k]``: a k x k filter of its own at every pixel.

    ``plane`` (B, H, W) is reflect-padded by kernel // 2; ``taps`` (B, H, W, kernel**2) are ordered as
    ``F.unfold`` orders a patch (row by row), as the official code reads them. The neighbours are slices
    of the padded plane whose ends are counted from the far side (constants), so an exported graph
    handles any size; no (B, k*k, H*W) unfold buffer is written.
    """
    pad = kernel // 2
    padded = F.pad(plane.unsqueeze(1), (pad, pad, pad, pad), mode='reflect')[:, 0]
    last = kernel - 1
    neighbours = [padded[:, dy:dy - last or None, dx:dx - last or None] for dy in range(kernel) for dx in range(kernel)]
    return (torch.stack(neighbours, dim=-1) * taps).sum(dim=-1)


class L2H(nn.Module):
    """P2F, peripheral to foveal: ``high * (1 + f)``, (B, C, H, W) -> (B, C, H, W), channels-last.

    The regions: ``low`` averaged over 16 x 16 regions of the whole map, (B, C, 256). Each pixel's affinity
    to every region is the dot product of its ``high`` feature with the region's, (B, 256, H, W); a 1x1 conv
    (``conv``, 256 -> 9, with bias) turns it into the pixel's 3x3 filter, and f is that filter applied to
    the channel mean of ``high`` (reflect-padded).

    The affinity and the 1x1 conv are both linear in the regions, so the conv is applied to the regions
    first: ``taps = high^T (regions W^T) + b``. The same sum, without the (B, 256, H, W) affinity tensor:
    9C instead of 256(C + 9) multiplications per pixel (30-34x fewer at the default widths 48, 96, 192).
    """

    def __init__(self, dim):
        super().__init__()
        self.dim = dim
        self.conv = nn.Conv2d(REGIONS * REGIONS, P2F_KERNEL * P2F_KERNEL, kernel_size=1)

    def forward(self, low, high):
        b, c, h, w = high.shape
        high = channels_last(high)
        regions = region_pool(low).reshape(b, c, REGIONS * REGIONS)
        mixed = regions @ self.conv.weight.flatten(1).t()  # (B, C, 9)
        taps = torch.baddbmm(self.conv.bias.expand(b, 1, -1), as_tokens(high), mixed)  # (B, HW, 9)
        f = per_pixel_filter(high.mean(dim=1), taps.view(b, h, w, -1), P2F_KERNEL)
        return high * (1 + f.unsqueeze(1))


class H2L(nn.Module):
    """F2P, foveal to peripheral: (B, C, H, W) -> (B, C, H, W), channels-last.

    Static stage: s = dw7x7(high) (depth-wise, with bias), ``low' = low * (1 + s)``. Dynamic stage: a 1x1
    conv (``cv2``, C -> 25, with bias) of s gives each pixel a 5x5 filter, applied to the channel mean of
    low' (reflect-padded); the result is added to every channel of low'.
    """

    def __init__(self, dim, kernel_size=F2P_KERNEL):
        super().__init__()
        self.kernel_size = kernel_size
        self.dw = nn.Conv2d(dim, dim, F2P_STATIC_KERNEL, padding=F2P_STATIC_KERNEL // 2, groups=dim)
        self.cv2 = nn.Conv2d(dim, kernel_size * kernel_size, kernel_size=1)

    def forward(self, low, high):
        static = self.dw(channels_last(high))
        low = low * (static + 1)
        taps = self.cv2(static).permute(0, 2, 3, 1)  # (B, H, W, 25): a view of the channels-last map
        return low + per_pixel_filter(low.mean(dim=1), taps, self.kernel_size).unsqueeze(1)


class AttModule(nn.Module):
    """BioIR's mixer (in place of Restormer's attention): (B, C, H, W) -> (B, C, H, W), channels-last.

    A 1x1 conv C -> 2C and a 3x3 depth-wise conv give two halves, low and high; the output is
    ``project_out(F2P(low, high) * P2F(low, high))``.

    The halves run as two branches, each from its half of the weights (convolutions act per output
    channel, so the numbers are the same): each is then a dense channels-last tensor, not a strided half
    of one buffer (as in :class:`.restormer_blocks.FeedForward`).
    """

    def __init__(self, dim, bias):
        super().__init__()
        self.dim = dim
        self.conv = nn.Conv2d(dim, dim * 2, kernel_size=1, bias=bias)
        self.dw = nn.Conv2d(dim * 2, dim * 2, kernel_size=3, padding=1, groups=dim * 2, bias=bias)
        self.l2h = L2H(dim)
        self.h2l = H2L(dim)
        self.project_out = nn.Conv2d(dim, dim, kernel_size=1, bias=bias)

    def forward(self, x):
        x = channels_last(x)
        halves = zip(*(t.chunk(2) if t is not None else (None, None)
                       for t in (self.conv.weight, self.conv.bias, self.dw.weight, self.dw.bias)))
        low, high = (F.conv2d(F.conv2d(x, w_in, b_in), w_dw, b_dw, padding=1, groups=self.dim)
                     for w_in, b_in, w_dw, b_dw in halves)
        return self.project_out(self.h2l(low, high) * self.l2h(low, high))


class AttBlock(nn.Module):
    """x + mixer(norm1(x)), then + GDFN(norm2(x)): (B, C, H, W) -> (B, C, H, W), channels-last."""

    def __init__(self, dim, ffn_expansion_factor=2.66, bias=False, LayerNorm_type='WithBias'):  # noqa: N803
        super().__init__()
        self.norm1 = LayerNorm(dim, LayerNorm_type)
        self.attn = AttModule(dim, bias)
        self.norm2 = LayerNorm(dim, LayerNorm_type)
        self.ffn = FeedForward(dim, ffn_expansion_factor, bias)

    def forward(self, x):
        x = channels_last(x)
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


def att_stage(count, dim, ffn_expansion_factor, bias, LayerNorm_type):  # noqa: N803
    """``count`` AttBlocks in an ``nn.Sequential`` (official keys ``<stage>.<i>.*``)."""
    return nn.Sequential(*[AttBlock(dim, ffn_expansion_factor, bias, LayerNorm_type) for _ in range(count)])


class Fuse(nn.Module):
    """Skip fusion: 1x1 conv (with bias) of [upsampled decoder features, encoder features], 2C -> C."""

    def __init__(self, n_feat):
        super().__init__()
        self.n_feat = n_feat
        self.conv = nn.Conv2d(n_feat * 2, n_feat, kernel_size=1)

    def forward(self, enc, dnc):  # official names; enc is the upsampled decoder output, dnc the skip
        return self.conv(torch.cat([enc, dnc], dim=1))


class Downsample(nn.Module):
    """(B, C, H, W) -> (B, 2C, H/2, W/2): bilinear x0.5, then a 3x3 conv C -> 2C.

    Officially ``nn.Upsample(scale_factor=0.5, mode='bilinear', align_corners=False)``: at even sizes (the
    network pads to a multiple of 4) output pixel i samples input coordinate 2i + 0.5, i.e. the mean of
    each 2x2 block, which is what ``AvgPool2d(2)`` computes (one kernel, and an ONNX AveragePool).
    """

    def __init__(self, n_feat):
        super().__init__()
        self.body = nn.Sequential(nn.AvgPool2d(2), nn.Conv2d(n_feat, n_feat * 2, kernel_size=3, padding=1, bias=False))

    def forward(self, x):
        return self.body(x)


class Upsample(nn.Module):
    """(B, C, H, W) -> (B, C/2, 2H, 2W): bilinear x2 (align_corners=False), then a 3x3 conv C -> C/2."""

    def __init__(self, n_feat):
        super().__init__()
        self.body = nn.Sequential(nn.Upsample(scale_factor=2, mode='bilinear', align_corners=False),
                                  nn.Conv2d(n_feat, n_feat // 2, kernel_size=3, padding=1, bias=False))

    def forward(self, x):
        return self.body(x)


def bioir_option_problems(num_blocks=(6, 6, 14), LayerNorm_type='WithBias'):  # noqa: N803
    """What is wrong with the values of BioIR's options (empty when they are fine)."""
    problems = []
    if not isinstance(num_blocks, (list, tuple)) or len(num_blocks) != 3:
        problems.append(f'num_blocks must give the blocks of BioIR\'s three levels (official [6, 6, 14]), got '
                        f'{num_blocks!r}')
    if LayerNorm_type not in LAYER_NORM_TYPES:
        problems.append(f'LayerNorm_type must be one of {", ".join(LAYER_NORM_TYPES)}, got {LayerNorm_type!r}')
    return problems


@ARCH_REGISTRY.register()
class BioIR(StageCheckpointing, RestorationArch, nn.Module):
    """Bio-inspired all-in-one restoration. With ``d = dim`` and an input (B, inp_channels, H, W):

    ==============================  ===================  ==========================================
    stage                           output shape          note
    ==============================  ===================  ==========================================
    pad (reflect)                   (B, in, H4, W4)       H4, W4: H, W rounded up to multiples of 4
                                                          (and to at least 12)
    patch_embed                     (B, d, H4, W4)        3x3 conv, no bias
    encoder_level1                  (B, d, H4, W4)        num_blocks[0] AttBlocks
    down1_2 + encoder_level2        (B, 2d, H4/2, W4/2)   2x2 mean + 3x3 conv; num_blocks[1]
    down2_3 + encoder_level3        (B, 4d, H4/4, W4/4)   num_blocks[2]; the coarsest level
    decoder_level3                  (B, 4d, H4/4, W4/4)   num_blocks[2] more, no latent level
    up3_2, fuse2(., enc2)           (B, 2d, H4/2, W4/2)   bilinear x2 + 3x3 conv; 1x1 conv of the concat
    decoder_level2                  (B, 2d, H4/2, W4/2)   num_blocks[1]
    up2_1, fuse1(., enc1)           (B, d, H4, W4)        level 1 stays at d channels (Restormer: 2d)
    decoder_level1, refinement      (B, d, H4, W4)        num_blocks[0], num_refinement_blocks
    output (+ input image)          (B, out, H, W)        3x3 conv, global residual, crop back
    ==============================  ===================  ==========================================

    Defaults are the official constructor's (``model.py:227-238``, the configuration ``train_eval.py:44``,
    ``test.py:21`` and ``demo.py:53`` build): 907 state-dict keys, 15,847,328 parameters. Two
    downsamplings, so the size multiple is 4 (the official validation and demo pad to 4, ``train_eval.py:171``,
    ``demo.py:17``); the network pads itself (reflect) and crops back. Inputs smaller than 12 pixels are
    padded further (replicate) to 12, the least size at which every level can reflect-pad by 2 (the
    official network fails below it).

    Official arguments without effect, kept so official option sets carry over: ``heads`` and ``decoder``
    (BioIR has no attention heads and no decoder switch; the official constructor ignores both). The
    official constructor also ignores ``LayerNorm_type`` (``model.py:243`` builds every ``AttBlock``
    without it, so its norms are always 'WithBias', the default); here 'BiasFree' builds bias-free norms
    (no ``norm*.body.bias`` keys, so such weights are told apart and official ones refuse to load into
    it).

    ``reduce_chan_level2`` (1x1 conv 4d -> 2d) is built by the official constructor (``model.py:264``)
    but never called by its forward (``fuse2`` took its place). It is kept so official checkpoints load
    with ``strict=True``, and frozen (``requires_grad=False``): it never gets a gradient, and frozen it
    stays out of DDP's reducer, so DDP trains BioIR with ``find_unused_parameters: false``. With
    ``keep_unused_modules=False`` (ours) it is not built.

    Features run in channels-last memory (see :mod:`.restormer_blocks`). For activation checkpointing
    (``set_grad_checkpointing(True)``, option ``train: grad_checkpoint``) the stages are the seven
    ``AttBlock`` stages; the refinement, run last, is not recomputed.
    """

    def __init__(self,
                 inp_channels=3,
                 out_channels=3,
                 dim=48,
                 num_blocks=(6, 6, 14),
                 num_refinement_blocks=4,
                 ffn_expansion_factor=3,
                 heads=(1, 2, 4, 8),
                 bias=False,
                 LayerNorm_type='WithBias',  # noqa: N803 (official name)
                 decoder=False,
                 keep_unused_modules=True):
        super().__init__()
        problems = bioir_option_problems(num_blocks, LayerNorm_type)
        if problems:
            raise ValueError('BioIR: ' + '; '.join(problems))
        stage = dict(ffn_expansion_factor=ffn_expansion_factor, bias=bias, LayerNorm_type=LayerNorm_type)
        d = dim
        self.heads, self.decoder = heads, decoder  # official arguments without effect (class docstring)

        # In the official order, so state_dict() lists the keys as the official network does.
        self.patch_embed = OverlapPatchEmbed(inp_channels, d)  # bias=False whatever `bias` says (model.py:240)
        self.encoder_level1 = att_stage(num_blocks[0], d, **stage)
        self.down1_2 = Downsample(d)
        self.encoder_level2 = att_stage(num_blocks[1], d * 2, **stage)
        self.down2_3 = Downsample(d * 2)
        self.encoder_level3 = att_stage(num_blocks[2], d * 4, **stage)
        self.decoder_level3 = att_stage(num_blocks[2], d * 4, **stage)
        self.up3_2 = Upsample(d * 4)
        if keep_unused_modules:
            self.reduce_chan_level2 = nn.Conv2d(d * 4, d * 2, kernel_size=1, bias=bias)
            self.reduce_chan_level2.requires_grad_(False)  # never used in forward (class docstring)
        self.decoder_level2 = att_stage(num_blocks[1], d * 2, **stage)
        self.up2_1 = Upsample(d * 2)
        self.decoder_level1 = att_stage(num_blocks[0], d, **stage)
        self.refinement = att_stage(num_refinement_blocks, d, **stage)
        self.fuse2 = Fuse(d * 2)
        self.fuse1 = Fuse(d)
        self.output = nn.Conv2d(d, out_channels, kernel_size=3, padding=1, bias=bias)

    # ---- what the rest of the package knows about BioIR (archs/arch_api.py) -----------------------------
    size_multiple = 4  # two 2x downsamplings
    # Restormer's key (BioIR's weights carry it too) plus two that only BioIR has: its skip fusion and its
    # downsampling conv after the pooling (Restormer's down1_2 conv is body.0)
    weight_signature = ('patch_embed.proj.weight', 'fuse1.conv.weight', 'down1_2.body.1.weight')
    tiling_note = ("BioIR's P2F blocks average every feature map over 16 x 16 regions spanning the whole input, "
                   'so a tile sees the regions of its own part only: tiled results differ from whole-image ones '
                   '(more so with small tiles); use tiles as large as memory allows.')
    # float16 / bfloat16 measured on the CPU at the official configuration with random weights and a 64x64
    # input: within 2.4e-3 (fp16) and 1.8e-2 (bf16) of float32 (tests/archs/test_bioir_arch.py checks a
    # small configuration).
    spandrel_supports_half = True
    spandrel_supports_bfloat16 = True
    spandrel_tiling = 'discouraged'

    @classmethod
    def options_from_weights(cls, state_dict):
        sd = state_dict
        embed = sd['patch_embed.proj.weight']  # (dim, inp_channels, 3, 3)
        hidden_by_width = [(int(v.shape[1]), int(v.shape[0]) // 2) for k, v in sd.items()
                           if k.endswith('ffn.project_in.weight')]
        norm_weights = [k for k in sd if k.endswith('norm1.body.weight')]
        bias_free = bool(norm_weights) and not any(k[:-len('weight')] + 'bias' in sd for k in norm_weights)
        return dict(
            inp_channels=int(embed.shape[1]),
            out_channels=int(sd['output.weight'].shape[0]),
            dim=int(embed.shape[0]),
            # the decoder levels repeat the encoder's counts (model.py:258, 266, 272)
            num_blocks=[count_children(sd, f'encoder_level{level}') for level in (1, 2, 3)],
            num_refinement_blocks=count_children(sd, 'refinement'),
            ffn_expansion_factor=expansion_factor(hidden_by_width, preferred=3),
            bias='output.bias' in sd,
            LayerNorm_type='BiasFree' if bias_free else 'WithBias',
            keep_unused_modules='reduce_chan_level2.weight' in sd,
        )

    @classmethod
    def option_problems(cls, options):
        return bioir_option_problems(options.get('num_blocks', (6, 6, 14)), options.get('LayerNorm_type', 'WithBias'))

    @classmethod
    def spandrel_tags(cls, options):
        return [f'{options["dim"]}dim']

    def forward(self, inp_img):
        x, (h, w) = pad_to_multiple(inp_img, self.size_multiple)
        if min(x.shape[-2], x.shape[-1]) < MIN_SIZE:
            x = F.pad(x, (0, max(MIN_SIZE - x.shape[-1], 0), 0, max(MIN_SIZE - x.shape[-2], 0)), mode='replicate')

        enc1 = self.run_stage(self.encoder_level1, self.patch_embed(x))
        enc2 = self.run_stage(self.encoder_level2, self.down1_2(enc1))
        enc3 = self.run_stage(self.encoder_level3, self.down2_3(enc2))
        dec3 = self.run_stage(self.decoder_level3, enc3)
        dec2 = self.run_stage(self.decoder_level2, self.fuse2(self.up3_2(dec3), enc2))
        dec1 = self.run_stage(self.decoder_level1, self.fuse1(self.up2_1(dec2), enc1))
        dec1 = self.run_stage(self.refinement, dec1, last=True)

        out = self.output(dec1) + x
        return (out[..., :h, :w] if out.shape[-2:] != (h, w) else out).contiguous()
