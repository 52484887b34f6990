"""Restormer's building blocks, shared by :class:`Restormer` and :class:`PromptIR`.

Every block takes and returns feature maps shaped (B, C, H, W), basicsr's layout, held in
channels-last memory: the patch embedding converts the 3-channel image once, and every later step
keeps that layout, so the 1x1 and depth-wise convolutions (most of the time) run oneDNN's
channels-last kernels (~7x faster at full resolution than on (B, C, H, W) memory, see
``shared/reference/cpu-speed.md``), the layer norm normalises the contiguous last axis, and MDTA reads
q, k, v as column blocks of one (B, HW, 3C) view. The numbers equal the official formulation's
(``tests/archs/test_fast_paths.py``). Module and parameter names are the official ones
(``norm1.body.weight``, ``attn.qkv``, ``ffn.project_in``, ...) so official checkpoints load with
``strict=True``.

Order, as in the paper's figure: channel layer norm -> MDTA attention -> GDFN feed-forward ->
TransformerBlock (the two with pre-norm residuals) -> patch embedding and the resizing steps.
"""
import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from .arch_api import count_children, expansion_factor
from .grad_checkpoint import StageCheckpointing

LAYER_NORM_TYPES = ('WithBias', 'BiasFree')
NORM_EPS = 1e-5  # the official value
# Feed-forward hidden widths run widened to a multiple of this (see FeedForward).
CHANNEL_MULTIPLE = 16
_EXACT_WIDTHS = False


@contextlib.contextmanager
def exact_widths():
    """Run FeedForward at its official widths (no zero channels): for counting the architecture's MACs."""
    global _EXACT_WIDTHS
    previous, _EXACT_WIDTHS = _EXACT_WIDTHS, True
    try:
        yield
    finally:
        _EXACT_WIDTHS = previous


def channels_last(x):
    """``x`` (B, C, H, W) in channels-last memory; no copy when it already is."""
    return x.contiguous(memory_format=torch.channels_last)


def gelu(x):
    """``F.gelu(x)``; a channels-last map goes through its (B, H, W, C) view.

    On channels-last strides torch's CPU GELU leaves its vectorised kernel for a slower one (1.7x forward, 1.66x
    forward + backward on 96 x 128 x 128 here; silu, sigmoid, mul and the others tested are not affected). The
    view takes the vectorised kernel, the one a contiguous NCHW tensor (the official networks') gets; the two
    kernels round differently (at most 4.8e-7 apart on N(0, 9) inputs, both within that of float64's GELU).
    Traced graphs (ONNX, TorchScript) keep the plain call: a view there would become two transposes.
    """
    if _is_channels_last_map(x) and not torch.jit.is_tracing():
        return F.gelu(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    return F.gelu(x)


def gelu_(x):
    """In-place :func:`gelu` of ``x`` (no autograd): returns ``x``."""
    torch.ops.aten.gelu_(x.permute(0, 2, 3, 1) if _is_channels_last_map(x) else x)
    return x


def _is_channels_last_map(x):
    """A (B, C, H, W) tensor laid out channels-last (and not also plain contiguous, as when C or H*W is 1)."""
    return x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


def add_residual(branch, x):
    """``branch + x`` for a branch's fresh output (nothing else holds it): summed into ``branch`` when the two have
    the same dtype and shape, so no new map is made (a fresh CPU map costs a page fault per 4 KiB); otherwise
    (mixed precision, broadcasting) the plain sum and its type promotion."""
    if branch.dtype == x.dtype and branch.shape == x.shape:
        return branch.add_(x)
    return branch + x


def as_tokens(x):
    """(B, C, H, W) channels-last map -> (B, H*W, C) tokens, a view of the same memory."""
    b, c, h, w = x.shape
    return x.permute(0, 2, 3, 1).reshape(b, h * w, c)


def as_map(tokens, h, w):
    """(B, H*W, C) tokens -> (B, C, H, W) channels-last map, a view of the same memory."""
    return tokens.view(tokens.shape[0], h, w, tokens.shape[-1]).permute(0, 3, 1, 2)


class LayerNorm(nn.Module):
    """Layer norm over the channels of a (B, C, H, W) map, at each pixel; eps 1e-5, biased variance.

    ``WithBias``: ``(x - mean) / sqrt(var + eps) * weight + bias`` - exactly ``F.layer_norm`` over
    the last axis of the channels-last view (B, H, W, C), one fused kernel and no copy for the
    channels-last maps the networks pass around. The official code reshapes to (B, HW, C) and back
    with two copies and six element-wise ops instead.

    ``BiasFree`` (official Restormer's denoising variant): ``x / sqrt(var + eps) * weight``, where
    ``var`` is the variance around the mean but ``x`` itself is NOT centred. That is neither layer
    norm nor RMS norm, so no single library kernel computes it; one ``var`` reduction over the
    channel axis, ``rsqrt`` and two multiplies reproduce it without reshaping anything.

    The parameters keep the official path ``body.weight`` / ``body.bias`` (``body`` is a small holder
    module), so checkpoints load unchanged. Output: channels-last.
    """

    def __init__(self, dim, LayerNorm_type='WithBias'):  # noqa: N803 (official argument name)
        super().__init__()
        if LayerNorm_type not in LAYER_NORM_TYPES:
            raise ValueError(f'LayerNorm_type must be one of {LAYER_NORM_TYPES}, got {LayerNorm_type!r}')
        self.dim = dim
        self.bias_free = LayerNorm_type == 'BiasFree'
        self.body = nn.Module()
        self.body.weight = nn.Parameter(torch.ones(dim))
        self.body.bias = None if self.bias_free else nn.Parameter(torch.zeros(dim))

    def forward(self, x):
        x = channels_last(x)
        if self.bias_free:
            var = x.var(dim=1, keepdim=True, correction=0)
            return x * torch.rsqrt(var + NORM_EPS) * self.body.weight[:, None, None]
        y = F.layer_norm(x.permute(0, 2, 3, 1), (self.dim, ), self.body.weight, self.body.bias, NORM_EPS)
        return y.permute(0, 3, 1, 2)

    def extra_repr(self):
        return f'{self.dim}, {"BiasFree" if self.bias_free else "WithBias"}'


class FeedForward(nn.Module):
    """GDFN, gated depth-wise-conv feed-forward: (B, C, H, W) -> (B, C, H, W), channels-last.

    1x1 conv C -> 2*hidden, 3x3 depth-wise conv, split in two halves, gelu(x1) * x2 (the gate), 1x1
    conv hidden -> C, with hidden = int(C * ffn_expansion_factor).

    Run as two branches, x1 and x2 each from its half of the weights: convolutions act per output
    channel, so this is the same math, and each half is then a dense channels-last tensor (one
    buffer split in two would leave the gate's element-wise ops and their backward on strided
    halves, measured 1.2-1.4x slower per FFN here).

    Each half is widened to a multiple of :data:`CHANNEL_MULTIPLE` channels by zero weights (127 ->
    128, 255 -> 256, ...): oneDNN's channels-last convolutions are several times slower on such odd
    widths (a 255 -> 96 1x1 conv took 10x the time of 256 -> 96 here). The extra channels are exact
    zeros all the way (zero weights, gelu(0) * 0 = 0, zero weights out), so the result and the
    gradients of the real weights are those of the official widths; :func:`exact_widths` turns the
    widening off (MAC counts of the architecture).
    """

    def __init__(self, dim, ffn_expansion_factor=2.66, bias=False):
        super().__init__()
        hidden = int(dim * ffn_expansion_factor)
        self.hidden = hidden
        self._widened = None  # (weights' versions, widened weights): the inference cache of _weights
        self.project_in = nn.Conv2d(dim, hidden * 2, kernel_size=1, bias=bias)
        self.dwconv = nn.Conv2d(hidden * 2, hidden * 2, kernel_size=3, padding=1, groups=hidden * 2, bias=bias)
        self.project_out = nn.Conv2d(hidden, dim, kernel_size=1, bias=bias)

    def _weights(self):
        """The two branches' (project_in weight, bias, dwconv weight, bias) and (project_out weight,
        bias), widened by zero channels.

        Without autograd (inference) the widened tensors are kept until a weight changes in place
        (its version counter moves: optimizer step, load_state_dict) or is replaced (.to(), .half()).
        """
        params = (self.project_in.weight, self.project_in.bias, self.dwconv.weight, self.dwconv.bias,
                  self.project_out.weight, self.project_out.bias)
        key = None
        if not torch.is_grad_enabled() and not torch.compiler.is_compiling():  # compiled graphs fold it
            key = (_EXACT_WIDTHS, ) + tuple((t._version, t.data_ptr(), t.dtype) for t in params if t is not None)
            if self._widened is not None and self._widened[0] == key:
                return self._widened[1]
        extra = 0 if _EXACT_WIDTHS else -self.hidden % CHANNEL_MULTIPLE

        def widened(t, dim=0):  # zeros appended along ``dim``; None stays None
            if t is None or not extra:
                return t
            shape = list(t.shape)
            shape[dim] = extra
            return torch.cat([t, t.new_zeros(shape)], dim=dim)

        halves = zip(*(t.chunk(2) if t is not None else (None, None) for t in params[:4]))
        branches = [tuple(widened(t) for t in half) for half in halves]
        weights = (branches, (widened(self.project_out.weight, dim=1), self.project_out.bias))
        if key is not None:
            self._widened = (key, weights)
        return weights

    def forward(self, x):
        branches, (w_out, b_out) = self._weights()
        x = channels_last(x)
        x1, x2 = (F.conv2d(F.conv2d(x, w_in, b_in), w_dw, b_dw, padding=1, groups=w_dw.shape[0])
                  for w_in, b_in, w_dw, b_dw in branches)
        if torch.is_grad_enabled() or torch.jit.is_tracing():
            return F.conv2d(gelu(x1) * x2, w_out, b_out)
        # Without autograd the gate is computed in place, in x1's own buffer: two fewer hidden-wide maps. On CPU
        # a fresh map costs a page fault per 4 KiB on its first write (glibc returns big blocks to the system);
        # this took the FFN from 29 to 21 ms at 48 x 128 x 128 here (the same numbers as the autograd path).
        gelu_(x1)
        return F.conv2d(x1.mul_(x2), w_out, b_out)


class Attention(nn.Module):
    """MDTA, multi-dconv-head transposed attention: (B, C, H, W) -> (B, C, H, W), channels-last.

    Attention runs across channels, not pixels, so its cost is linear in H*W: per head, q and k are
    (C/heads, HW), L2-normalised along HW, and the (C/heads x C/heads) map is scaled by a learned
    per-head ``temperature`` before the softmax.

    Computed on the channels-last qkv map seen as tokens (B, HW, 3C), without copying it: per head,
    ``q_h^T k_h`` is one matrix product of two column slices, and normalising q and k is folded
    into that small (C/heads)^2 product (divide by the outer product of their norms), which equals
    normalising the (C/heads, HW) operands first.
    """

    def __init__(self, dim, num_heads, bias=False):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'Attention: dim {dim} is not divisible by num_heads {num_heads}')
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.qkv = nn.Conv2d(dim, dim * 3, kernel_size=1, bias=bias)
        self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, kernel_size=3, padding=1, groups=dim * 3, bias=bias)
        self.project_out = nn.Conv2d(dim, dim, kernel_size=1, bias=bias)

    def forward(self, x):
        b, c, h, w = x.shape
        heads, ch = self.num_heads, c // self.num_heads
        tokens = as_tokens(self.qkv_dwconv(self.qkv(channels_last(x))))  # (B, HW, 3C), a view
        qk, v = tokens.split([2 * c, c], dim=-1)
        # 1 / max(norm, 1e-12) as F.normalize, of every q and k channel over the pixels, accumulated
        # in at least float32 (half precision would lose the sum; float64 stays float64), square + sum:
        # ~3x faster than vector_norm over this strided axis.
        acc_dtype = torch.promote_types(qk.dtype, torch.float32)
        inv_norm = qk.square().sum(dim=1, dtype=acc_dtype).sqrt().clamp_min(1e-12).reciprocal()
        q_scale, k_scale = inv_norm.view(b, 2, heads, ch).unbind(1)  # (B, heads, ch) each
        qk = qk.split(ch, dim=-1)  # q of each head, then k of each head: (B, HW, ch) views
        gram = torch.stack([qh.transpose(1, 2) @ kh for qh, kh in zip(qk[:heads], qk[heads:])], dim=1)
        attn = (gram * (q_scale.unsqueeze(-1) * k_scale.unsqueeze(-2) * self.temperature)).softmax(dim=-1)
        # out_h = attn_h @ v_h, written as tokens: v_h (HW, ch) @ attn_h^T
        out = [vh @ ah.transpose(1, 2).to(vh.dtype) for vh, ah in zip(v.split(ch, dim=-1), attn.unbind(1))]
        out = out[0] if heads == 1 else torch.cat(out, dim=-1)
        return self.project_out(as_map(out, h, w))


class TransformerBlock(nn.Module):
    """x + MDTA(norm1(x)), then + GDFN(norm2(x)): (B, C, H, W) -> (B, C, H, W), channels-last."""

    def __init__(self, dim, num_heads, ffn_expansion_factor=2.66, bias=False, LayerNorm_type='WithBias'):  # noqa: N803
        super().__init__()
        self.norm1 = LayerNorm(dim, LayerNorm_type)
        self.attn = Attention(dim, num_heads, bias)
        self.norm2 = LayerNorm(dim, LayerNorm_type)
        self.ffn = FeedForward(dim, ffn_expansion_factor, bias)

    def forward(self, x):
        x = channels_last(x)
        x = add_residual(self.attn(self.norm1(x)), x)
        return add_residual(self.ffn(self.norm2(x)), x)


def transformer_stage(dim, num_heads, num_blocks, ffn_expansion_factor, bias, LayerNorm_type):  # noqa: N803
    """``num_blocks`` TransformerBlocks in an ``nn.Sequential`` (official keys ``<stage>.<i>.*``)."""
    return nn.Sequential(*[
        TransformerBlock(dim, num_heads, ffn_expansion_factor, bias, LayerNorm_type) for _ in range(num_blocks)
    ])


class OverlapPatchEmbed(nn.Module):
    """3x3 conv image -> features: (B, in_c, H, W) -> (B, embed_dim, H, W)."""

    def __init__(self, in_c=3, embed_dim=48, bias=False):
        super().__init__()
        self.proj = nn.Conv2d(in_c, embed_dim, kernel_size=3, padding=1, bias=bias)

    def forward(self, x):
        # The networks run channels-last from here on: converting the 3-channel image is cheap.
        return self.proj(channels_last(x))


class Downsample(nn.Module):
    """(B, C, H, W) -> (B, 2C, H/2, W/2): 3x3 conv C -> C/2, then PixelUnshuffle(2)."""

    def __init__(self, n_feat):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(n_feat, n_feat // 2, kernel_size=3, padding=1, bias=False), nn.PixelUnshuffle(2))

    def forward(self, x):
        return self.body(x)


class Upsample(nn.Module):
    """(B, C, H, W) -> (B, C/2, 2H, 2W): 3x3 conv C -> 2C, then PixelShuffle(2)."""

    def __init__(self, n_feat):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(n_feat, n_feat * 2, kernel_size=3, padding=1, bias=False), nn.PixelShuffle(2))

    def forward(self, x):
        return self.body(x)


class RestormerEncoder(StageCheckpointing):
    """Restormer's encoder, shared by Restormer and PromptIR as a mixin of their ``nn.Module``.

    Its modules are attributes of the network itself (``patch_embed``, ``encoder_level1``,
    ``down1_2``, ... ``latent``), so the official state-dict keys stay unchanged. Each transformer
    stage runs through :meth:`run_stage` (activation checkpointing when enabled).
    """

    def build_encoder(self, inp_channels, dim, num_blocks, heads, **stage):
        """patch_embed, then three levels each halving the size and doubling the width, then the latent."""
        d = dim
        self.patch_embed = OverlapPatchEmbed(inp_channels, d)
        self.encoder_level1 = transformer_stage(d, heads[0], num_blocks[0], **stage)
        self.down1_2 = Downsample(d)
        self.encoder_level2 = transformer_stage(d * 2, heads[1], num_blocks[1], **stage)
        self.down2_3 = Downsample(d * 2)
        self.encoder_level3 = transformer_stage(d * 4, heads[2], num_blocks[2], **stage)
        self.down3_4 = Downsample(d * 4)
        self.latent = transformer_stage(d * 8, heads[3], num_blocks[3], **stage)

    def encode(self, x):
        """(B, in, H, W) -> embedded (B, d, H, W), enc1 (B, d, H, W), enc2 (B, 2d, H/2, W/2),
        enc3 (B, 4d, H/4, W/4), latent (B, 8d, H/8, W/8)."""
        embedded = self.patch_embed(x)
        enc1 = self.run_stage(self.encoder_level1, embedded)
        enc2 = self.run_stage(self.encoder_level2, self.down1_2(enc1))
        enc3 = self.run_stage(self.encoder_level3, self.down2_3(enc2))
        latent = self.run_stage(self.latent, self.down3_4(enc3))
        return embedded, enc1, enc2, enc3, latent


def restormer_body_options(sd, more_heads_keys=()):
    """The options of the Restormer body read from a state dict: what Restormer, PromptIR and the networks
    built on them share (``patch_embed``, the encoder and decoder stages, the refinement, ``output``).

    ``more_heads_keys``: (level, temperature key) of other blocks that use a level's heads.
    """
    embed = sd['patch_embed.proj.weight']  # (dim, inp_channels, 3, 3)
    levels = (('encoder_level1', 'decoder_level1', 'refinement'), ('encoder_level2', 'decoder_level2'),
              ('encoder_level3', 'decoder_level3'), ('latent', ))
    heads = []
    for level, (stages, default) in enumerate(zip(levels, (1, 2, 4, 8))):
        keys = [f'{s}.0.attn.temperature' for s in stages] + [k for lv, k in more_heads_keys if lv == level]
        key = next((k for k in keys if k in sd), None)
        heads.append(int(sd[key].shape[0]) if key else default)  # a level without blocks keeps the default
    hidden_by_width = [(int(v.shape[1]), int(v.shape[0]) // 2) for k, v in sd.items()
                       if k.endswith('ffn.project_in.weight')]
    norm_weights = [k for k in sd if k.endswith('norm1.body.weight')]
    bias_free = bool(norm_weights) and not any(k[:-len('weight')] + 'bias' in sd for k in norm_weights)
    return dict(
        inp_channels=int(embed.shape[1]),
        out_channels=int(sd['output.weight'].shape[0]),
        dim=int(embed.shape[0]),
        num_blocks=[count_children(sd, stages[0]) for stages in levels],
        num_refinement_blocks=count_children(sd, 'refinement'),
        heads=heads,
        ffn_expansion_factor=expansion_factor(hidden_by_width),
        bias='output.bias' in sd,
        LayerNorm_type='BiasFree' if bias_free else 'WithBias',
    )
