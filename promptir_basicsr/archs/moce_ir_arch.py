"""MoCE-IR (Zamfir et al., CVPR 2025, "Complexity Experts are Task-Discriminative Learners for Any Image
Restoration") as a basicsr arch: ``type: MoCEIR``.

A Restormer-style U-Net whose decoder blocks carry a mixture of "complexity experts": each expert is a
low-rank bottleneck around an attention computed in the Fourier domain over square patches, and the
experts differ in width (rank) and patch size (receptive field), so they differ in cost. A router per
block picks the top-k experts per image from the block's pooled features and a frequency embedding of the
latent. Facts are from the official code, ``eduardzamfir/MoCE-IR`` ``src/net/moce_ir.py`` (cited below as
``moce_ir.py:<line>``), ``src/options.py``, ``src/train.py`` and ``src/utils/loss_utils.py``.

Reading order, as the paper's figure: encoder block (MDTA + GDFN, shared with Restormer) -> cross
attention -> FFT attention -> complexity expert -> router -> adapter (router + experts) -> decoder block
-> frequency embedding -> the network, :class:`MoCEIR`.
"""
import math

from basicsr.utils.registry import ARCH_REGISTRY
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointError
from ..utils import fourier
from ..utils.tiling import pad_to_multiple
from .arch_api import RestorationArch, count_children, expansion_factor
from .grad_checkpoint import StageCheckpointing
from .restormer_blocks import (LAYER_NORM_TYPES, Attention, Downsample, FeedForward, LayerNorm, OverlapPatchEmbed,
                               Upsample, add_residual, as_map, as_tokens, channels_last)

DEPTH_TYPES = ('lin', 'double', 'exp', 'fact', 'constant')  # or an int (moce_ir.py:404-417)
RANK_TYPES = ('constant', 'lin', 'double', 'exp', 'fact', 'spread')  # moce_ir.py:419-432
COMPLEXITY_SCALES = ('max', 'min', 'none')  # 'none': any other official value, the raw counts (moce_ir.py:480-484)


# ================================================================================================
# Attention blocks
# ================================================================================================
class EncoderBlock(nn.Module):
    """x + MDTA(norm(x)), then + GDFN(norm(x)): Restormer's transformer block under MoCE-IR's module names
    (``norms.0``, ``mixer``, ``norms.1``, ``ffn``; moce_ir.py:553-568). (B, C, H, W) -> same, channels-last."""

    def __init__(self, dim, num_heads, ffn_expansion_factor, bias, LayerNorm_type):  # noqa: N803 (official name)
        super().__init__()
        self.norms = nn.ModuleList([LayerNorm(dim, LayerNorm_type), LayerNorm(dim, LayerNorm_type)])
        self.mixer = Attention(dim, num_heads, bias)
        self.ffn = FeedForward(dim, ffn_expansion_factor, bias)

    def forward(self, x):
        x = channels_last(x)
        x = add_residual(self.mixer(self.norms[0](x)), x)
        return add_residual(self.ffn(self.norms[1](x)), x)


class ResidualGroup(nn.Module):
    """``num_blocks`` encoder blocks in ``layers`` (the official EncoderResidualGroup, moce_ir.py:617-637:
    the encoder levels, the latent and the refinement)."""

    def __init__(self, dim, num_heads, num_blocks, ffn_expansion_factor, bias, LayerNorm_type):  # noqa: N803
        super().__init__()
        self.layers = nn.ModuleList([EncoderBlock(dim, num_heads, ffn_expansion_factor, bias, LayerNorm_type)
                                     for _ in range(num_blocks)])

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


def transposed_attention(q, k, v, num_heads, temperature):
    """Channel ("transposed") attention on token views (B, HW, C): per head, softmax over the (C/heads)^2
    map ``temperature * q^ k^T`` of q and k L2-normalised over the pixels, applied to v. Returns (B, HW, C).

    Normalising q and k is folded into the small (C/heads)^2 product (divided by the outer product of
    their norms, each at least 1e-12 as ``F.normalize``), accumulated in at least float32."""
    b, _, c = q.shape
    ch = c // num_heads
    acc = torch.promote_types(q.dtype, torch.float32)
    q_scale = q.square().sum(dim=1, dtype=acc).sqrt().clamp_min(1e-12).reciprocal().view(b, num_heads, ch)
    k_scale = k.square().sum(dim=1, dtype=acc).sqrt().clamp_min(1e-12).reciprocal().view(b, num_heads, ch)
    gram = torch.stack([qh.transpose(1, 2) @ kh for qh, kh in zip(q.split(ch, dim=-1), k.split(ch, dim=-1))], dim=1)
    attn = (gram * (q_scale.unsqueeze(-1) * k_scale.unsqueeze(-2) * temperature)).softmax(dim=-1)
    out = [vh @ ah.transpose(1, 2).to(vh.dtype) for vh, ah in zip(v.split(ch, dim=-1), attn.unbind(1))]
    return out[0] if num_heads == 1 else torch.cat(out, dim=-1)


class CrossAttention(nn.Module):
    """MDTA with queries from one map and keys/values from another (moce_ir.py:256-290): q = 3x3 dw(1x1(x)),
    (k, v) = 7x7 dw(1x1(y)) (a 7x7 depth-wise kernel, not MDTA's 3x3), channel attention per head, 1x1 out.
    (B, C, H, W) x2 -> (B, C, H, W), channels-last."""

    def __init__(self, dim, num_heads, bias):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'CrossAttention: dim {dim} is not divisible by num_heads {num_heads}')
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.q = nn.Conv2d(dim, dim, kernel_size=1, bias=bias)
        self.q_dwconv = nn.Conv2d(dim, dim, kernel_size=3, padding=1, groups=dim, bias=bias)
        self.kv = nn.Conv2d(dim, dim * 2, kernel_size=1, bias=bias)
        self.kv_dwconv = nn.Conv2d(dim * 2, dim * 2, kernel_size=7, padding=3, groups=dim * 2, bias=bias)
        self.project_out = nn.Conv2d(dim, dim, kernel_size=1, bias=bias)

    def forward(self, x, y):
        h, w = x.shape[-2:]
        q = as_tokens(self.q_dwconv(self.q(channels_last(x))))  # (B, HW, C) views of channels-last maps
        k, v = as_tokens(self.kv_dwconv(self.kv(channels_last(y)))).chunk(2, dim=-1)
        return self.project_out(as_map(transposed_attention(q, k, v, self.num_heads, self.temperature), h, w))


class FFTAttention(nn.Module):
    """The experts' mixer (moce_ir.py:294-343): q = 3x3 dw(1x1(x)), (k, v) = 7x7 dw(1x1(x)); q and k are
    zero-padded at the bottom/right to multiples of ``patch_size`` and cut into patch_size x patch_size
    patches; per patch and channel, irfft2(rfft2(q) * rfft2(k)) (a circular convolution of q with k over the
    patch); the patches are put back, cropped to (H, W), layer-normed (WithBias, always), multiplied by v and
    projected by a 1x1 conv. (B, C, H, W) -> (B, C, H, W).

    The official code runs the transforms on ``q.float()``: half precision (autocast) is computed in float32;
    here float64 stays float64 (the official cast would drop it to float32), which changes nothing in float32.
    The transforms are :mod:`.fourier`'s, so the network exports to ONNX (DFT-matrix products there).
    """

    def __init__(self, dim, patch_size):
        super().__init__()
        self.patch_size = patch_size
        self.q = nn.Conv2d(dim, dim, kernel_size=1, bias=False)
        self.q_dwconv = nn.Conv2d(dim, dim, kernel_size=3, padding=1, groups=dim)
        self.kv = nn.Conv2d(dim, dim * 2, kernel_size=1, bias=False)
        self.kv_dwconv = nn.Conv2d(dim * 2, dim * 2, kernel_size=7, padding=3, groups=dim * 2)
        self.norm = LayerNorm(dim, 'WithBias')
        self.proj_out = nn.Conv2d(dim, dim, kernel_size=1)

    def to_patches(self, x):
        """(B, C, H, W) -> (B, C, H'/p, W'/p, p, p), zero-padded to H', W' multiples of p (moce_ir.py:307-314)."""
        p = self.patch_size
        h, w = x.shape[-2:]
        pad_h, pad_w = (p - h % p) % p, (p - w % p) % p
        if pad_h or pad_w or torch.jit.is_tracing():  # traced: recorded with sizes computed from the input's
            x = F.pad(x, (0, pad_w, 0, pad_h))
        b, c, hp, wp = x.shape
        return x.reshape(b, c, hp // p, p, wp // p, p).permute(0, 1, 2, 4, 3, 5)

    def from_patches(self, patches, h, w):
        """(B, C, nh, nw, p, p) -> (B, C, H, W): the patches put back in place, the padding cropped."""
        b, c, nh, nw, p, _ = patches.shape
        return patches.permute(0, 1, 2, 4, 3, 5).reshape(b, c, nh * p, nw * p)[:, :, :h, :w]

    def forward(self, x):
        h, w = x.shape[-2:]
        x = channels_last(x)
        q = self.q_dwconv(self.q(x))
        k, v = self.kv_dwconv(self.kv(x)).chunk(2, dim=1)
        dtype = torch.promote_types(q.dtype, torch.float32)
        out = fourier.circular_convolution(self.to_patches(q.to(dtype)), self.to_patches(k.to(dtype)))
        out = self.norm(self.from_patches(out, h, w))
        return self.proj_out(out * v if torch.is_grad_enabled() else out.mul_(v))


# ================================================================================================
# Mixture of complexity experts
# ================================================================================================
class ModExpert(nn.Module):
    """One complexity expert (moce_ir.py:349-381): x + 1x1_{r->C}( FFTAttention_r(1x1_{C->r}(x)) *
    silu(1x1_{C->r}(shared)) ), rank r and patch size its own. (B, C, H, W), (B, C, H, W) -> (B, C, H, W).

    ``depth``: the official expert loops ``depth`` times over ``process(feats)``, each pass from the same
    input (moce_ir.py:369-372: ``feat = self.process(feats, shared)``), so the result is one pass whatever
    the depth; depth only multiplied the work. It is kept as an attribute and computed once here.
    """

    def __init__(self, dim, rank, depth, patch_size):
        super().__init__()
        self.depth = depth
        self.proj = nn.ModuleList([nn.Conv2d(dim, rank, kernel_size=1, bias=False),
                                   nn.Conv2d(dim, rank, kernel_size=1, bias=False),
                                   nn.Conv2d(rank, dim, kernel_size=1, bias=False)])
        self.body = FFTAttention(rank, patch_size)

    def forward(self, x, shared):
        if torch.is_grad_enabled():
            y = self.body(self.proj[0](x)) * F.silu(self.proj[1](shared))
        else:  # in place in the fresh maps: without autograd nothing else reads them
            y = self.body(self.proj[0](x)).mul_(F.silu(self.proj[1](shared), inplace=True))
        return add_residual(self.proj[2](y), x)


def expert_depths(num_experts, depth_type, stage_depth):
    """The official depth of each expert (moce_ir.py:404-417); no effect on the result (:class:`ModExpert`)."""
    if isinstance(depth_type, int) and not isinstance(depth_type, bool):
        return [depth_type] * num_experts
    rules = {'lin': lambda i: stage_depth + i, 'double': lambda i: stage_depth + 2 * i, 'exp': lambda i: 2 ** i,
             'fact': lambda i: math.factorial(i + 1), 'constant': lambda i: stage_depth}
    return [rules[depth_type](i) for i in range(num_experts)]


def expert_ranks(dim, num_experts, rank, rank_type):
    """The rank (bottleneck width) of each expert of a block of width ``dim`` (moce_ir.py:419-432).
    'spread' (the released models): dim/2^(E-1), ..., dim/2, dim: the last expert is full width."""
    rules = {'constant': lambda i: rank, 'lin': lambda i: rank + i, 'double': lambda i: rank + 2 * i,
             'exp': lambda i: rank ** (i + 1), 'fact': lambda i: math.factorial(rank + i),
             'spread': lambda i: dim // 2 ** (num_experts - 1 - i)}
    return [rules[rank_type](i) for i in range(num_experts)]


class RoutingFunction(nn.Module):
    """Noisy top-k router (moce_ir.py:470-546): logits = Linear(mean_HW(x)) + Linear(freq_emb), (B, E).

    Gates: softmax(logits + noise) kept at the top ``k`` experts, zero elsewhere (not renormalised). The
    noise is N(0, 1/E^2) drawn by ``torch.randn_like(logits)`` (moce_ir.py:497), in training AND, in the
    official code, in evaluation too (it is outside ``if self.training``): official inference is random.
    ``routing_noise=False`` leaves it out in evaluation (deterministic inference); training always draws it
    (the load loss is defined through it). With noise, the draws are the official ones, call for call.

    Balance loss (training only, else 0): 0.5 * cv^2(importance) + 0.5 * cv^2(load), cv^2 = (std / (mean +
    1e-8))^2 with the unbiased std over the experts. importance = sum over the batch of softmax(logits)
    (times the ``complexity`` buffer when ``use_complexity_bias``); load = mean over the batch of
    P(expert beats the k-th largest noisy logit) = 1 - Phi((kth_noisy - logits) / noise_std).

    ``complexity`` (a buffer, in the state dict): each expert's parameter count divided by the largest
    ('max', the released models) or the smallest ('min'), or the raw counts ('none', int64).
    """

    def __init__(self, dim, freq_dim, num_experts, k, complexity, use_complexity_bias=False, complexity_scale='max',
                 routing_noise=True):
        super().__init__()
        self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(dim, num_experts, bias=False))
        self.freq_gate = nn.Linear(freq_dim, num_experts, bias=False)
        if complexity_scale == 'min':
            complexity = complexity / complexity.min()
        elif complexity_scale == 'max':
            complexity = complexity / complexity.max()
        self.register_buffer('complexity', complexity)
        self.k = k
        self.num_experts = num_experts
        self.noise_std = 1.0 / num_experts  # moce_ir.py:489
        self.use_complexity_bias = use_complexity_bias
        self.routing_noise = routing_noise

    @staticmethod
    def cv_squared(values):
        """(std / (mean + 1e-8))^2 over the experts (unbiased std, as torch.std)."""
        return (values.std() / (values.mean() + 1e-8)) ** 2

    def importance_loss(self, logits):
        importance = logits.softmax(dim=-1).sum(dim=0)
        if self.use_complexity_bias:
            importance = importance * self.complexity  # times tau = 1 (moce_ir.py:514)
        return self.cv_squared(importance)

    def load_loss(self, logits, noisy_logits):
        kth = noisy_logits.topk(self.k, dim=-1).indices[:, -1:]  # the k-th largest noisy logit's expert
        threshold = noisy_logits.gather(1, kth)  # (B, 1)
        z = (threshold - logits) / self.noise_std  # the noise an expert needs to reach the threshold
        beats = 1.0 - 0.5 * (1.0 + torch.erf(z / math.sqrt(2)))  # 1 - Phi(z), Normal(0, 1).cdf's formula
        return self.cv_squared(beats.mean(dim=0))

    def forward(self, x, freq_emb):
        """-> (gates (B, E): the top-k softmax values, 0 elsewhere; balance loss, 0 outside training)."""
        logits = self.gate(x) + self.freq_gate(freq_emb)
        noisy = logits
        if self.training or self.routing_noise:
            noisy = logits + torch.randn_like(logits) * self.noise_std
        values, indices = noisy.softmax(dim=-1).topk(self.k, dim=-1)
        gates = torch.zeros_like(logits).scatter(1, indices, values)
        loss = 0
        if self.training:
            loss = 0.5 * self.importance_loss(logits) + 0.5 * self.load_loss(logits, noisy)
        return gates, loss


class AdapterLayer(nn.Module):
    """The mixture of complexity experts of one decoder block (moce_ir.py:388-466): router, experts, 1x1 out.

    Expert i (of E) has patch size 2^(i+2) (4, 8, 16, 32) and the rank of :func:`expert_ranks`
    (moce_ir.py:401, 434-437; the official per-expert kernel sizes 3+2i are passed to the expert and never
    used). Output: proj_out(sum over experts e of gate[b, e] * expert_e(x[b], shared[b])), the sum over each
    sample's OWN top-k experts, in training and in evaluation alike; experts no sample chose are not run.
    """

    def __init__(self, dim, rank, num_experts=4, top_k=1, stage_depth=1, depth_type='constant', rank_type='spread',
                 freq_dim=384, with_complexity=False, complexity_scale='max', routing_noise=True):
        super().__init__()
        self.top_k = top_k
        self.num_experts = num_experts
        depths = expert_depths(num_experts, depth_type, stage_depth)
        ranks = expert_ranks(dim, num_experts, rank, rank_type)
        # each expert in a one-module container: the official MySequential (keys experts.<i>.0.*)
        self.experts = nn.ModuleList([nn.ModuleList([ModExpert(dim, r, depth, 2 ** (i + 2))])
                                      for i, (depth, r) in enumerate(zip(depths, ranks))])
        self.proj_out = nn.Conv2d(dim, dim, kernel_size=1, bias=False)
        counts = torch.tensor([sum(p.numel() for p in expert.parameters()) for expert in self.experts])
        self.routing = RoutingFunction(dim, freq_dim, num_experts, top_k, counts, with_complexity, complexity_scale,
                                       routing_noise)

    def mix(self, x, shared, gates):
        """sum_e gates[:, e] * expert_e(x, shared), each expert run only on the samples whose gate for it is
        non-zero, accumulated in at least float32 (as the official combine). While traced (ONNX,
        TorchScript) every expert runs on every sample instead, weighted by its gate, zero where not chosen:
        the same numbers without a data-dependent branch."""
        experts = [container[0] for container in self.experts]
        acc = torch.promote_types(x.dtype, torch.float32)
        if torch.jit.is_tracing():
            out = 0
            for e, expert in enumerate(experts):
                out = out + gates[:, e].view(-1, 1, 1, 1) * expert(x, shared).to(acc)
            return out
        # None until an expert contributes: an expert chosen by the whole batch (always so at batch 1 with
        # top-1, the released inference) starts the sum itself, with no zero map to add into
        out = None
        chosen = gates != 0
        for e, expert in enumerate(experts):
            rows = chosen[:, e].nonzero().squeeze(1)
            if rows.numel() == 0:
                continue
            if rows.numel() == x.shape[0]:
                y = (expert(x, shared) * gates[:, e].view(-1, 1, 1, 1)).to(acc)
                out = y if out is None else out + y
                continue
            if out is None:
                out = torch.zeros_like(x, dtype=acc, memory_format=torch.channels_last)
            y = expert(x[rows], shared[rows]) * gates[rows, e].view(-1, 1, 1, 1)
            out = out.index_add(0, rows, y.to(acc))
        return torch.zeros_like(x, dtype=acc, memory_format=torch.channels_last) if out is None else out

    def forward(self, x, freq_emb, shared):
        """-> (adapter output (B, C, H, W), balance loss of the block)."""
        gates, loss = self.routing(x, freq_emb)
        return self.proj_out(self.mix(x, shared, gates)), loss


class DecoderBlock(nn.Module):
    """One decoder block (moce_ir.py:574-611), (B, C, H, W) -> (B, C, H, W):

    n = norm(x); s = MDTA(1x1(n)) (the shared branch); a = adapter(1x1(n), freq_emb, s) (the experts);
    x = CrossAttention(q from a, k/v from s) + x; x = x + GDFN(norm(x)). Returns (x, the adapter's balance loss).
    """

    def __init__(self, dim, num_heads, ffn_expansion_factor, bias, LayerNorm_type, **adapter):  # noqa: N803
        super().__init__()
        self.norms = nn.ModuleList([LayerNorm(dim, LayerNorm_type), LayerNorm(dim, LayerNorm_type)])
        self.proj = nn.ModuleList([nn.Conv2d(dim, dim, kernel_size=1), nn.Conv2d(dim, dim, kernel_size=1)])
        self.shared = Attention(dim, num_heads, bias)
        self.mixer = CrossAttention(dim, num_heads, bias)
        self.ffn = FeedForward(dim, ffn_expansion_factor, bias)
        self.adapter = AdapterLayer(dim, **adapter)

    def forward(self, x, freq_emb):
        x = channels_last(x)
        n = self.norms[0](x)
        shared = self.shared(self.proj[0](n))
        adapted, loss = self.adapter(self.proj[1](n), freq_emb, shared)
        x = add_residual(self.mixer(adapted, shared), x)
        return add_residual(self.ffn(self.norms[1](x)), x), loss


class DecoderResidualGroup(nn.Module):
    """``layers``: the decoder blocks of one level (moce_ir.py:643-670). -> (x, sum of their balance losses)."""

    def __init__(self, dim, num_heads, num_blocks, ffn_expansion_factor, bias, LayerNorm_type, **adapter):  # noqa: N803
        super().__init__()
        self.layers = nn.ModuleList([DecoderBlock(dim, num_heads, ffn_expansion_factor, bias, LayerNorm_type, **adapter)
                                     for _ in range(num_blocks)])

    def forward(self, x, freq_emb):
        total = 0
        for layer in self.layers:
            x, loss = layer(x, freq_emb)
            total = total + loss
        return x, total


# ================================================================================================
# Frequency embedding
# ================================================================================================
class HighPassConv2d(nn.Module):
    """Depth-wise 3x3 conv initialised to the Laplacian [[-1,-1,-1],[-1,8,-1],[-1,-1,-1]] (moce_ir.py:178-200).

    Officially meant to be frozen, but ``self.conv.requires_grad_ = False`` (moce_ir.py:196-197) assigns an
    attribute instead of calling the method: the kernel is a trained parameter (in the state dict and in the
    optimizer). Here too, so official weights and training behave the same.
    """

    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, padding=1, bias=False, groups=channels)
        laplacian = torch.full((3, 3), -1.0)
        laplacian[1, 1] = 8.0
        with torch.no_grad():
            self.conv.weight.copy_(laplacian.expand(channels, 1, 3, 3))

    def forward(self, x):
        return self.conv(x)


class FrequencyEmbedding(nn.Module):
    """(B, C, h, w) latent -> (B, C): mean over the pixels of gelu(high-pass(x)), then an MLP C -> 2C -> C
    (gelu between; moce_ir.py:715-735). Despite the name no Fourier transform is involved (the official
    ``SparseDispatcher.to_spatial``, an inverse FFT, is never called)."""

    def __init__(self, dim):
        super().__init__()
        self.high_conv = nn.Sequential(HighPassConv2d(dim), nn.GELU())
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x):
        return self.mlp(self.high_conv(x).mean(dim=(-2, -1)))


# ================================================================================================
# The network
# ================================================================================================
def moce_option_problems(options):
    """What is wrong with the values of MoCE-IR's options (empty when they are fine)."""
    get = {**_DEFAULTS, **options}.get
    problems = []
    levels = get('levels')
    if not isinstance(levels, int) or levels < 2:
        return [f'levels must be an integer >= 2, got {levels!r}']
    for key, length in (('num_blocks', levels), ('heads', levels), ('num_dec_blocks', levels - 1)):
        value = get(key)
        if not isinstance(value, (list, tuple)) or len(value) != length:
            problems.append(f'{key} must list {length} values (levels {levels}), got {value!r}')
    stage_depth = get('stage_depth')
    if not isinstance(stage_depth, (list, tuple)) or len(stage_depth) < levels - 1:
        problems.append(f'stage_depth must list at least {levels - 1} values (one per decoder level), got '
                        f'{stage_depth!r}')
    if problems:
        return problems
    if sum(get('num_dec_blocks')) < 1:
        problems.append('num_dec_blocks must give at least one decoder block (the balance loss is their mean)')
    dim, heads = get('dim'), list(get('heads'))
    for level, head in enumerate(heads):
        if (dim * 2 ** level) % head:
            problems.append(f'heads[{level}] = {head} does not divide the width {dim * 2 ** level} of level {level}')
    if get('LayerNorm_type') not in LAYER_NORM_TYPES:
        problems.append(f'LayerNorm_type must be one of {", ".join(LAYER_NORM_TYPES)}, got {get("LayerNorm_type")!r}')
    num_experts, topk = get('num_experts'), get('topk')
    if not isinstance(num_experts, int) or num_experts < 2:
        problems.append(f'num_experts must be >= 2 (the balance loss is a variance over the experts), got '
                        f'{num_experts!r}')
    elif not isinstance(topk, int) or not 1 <= topk <= num_experts:
        problems.append(f'topk must be between 1 and num_experts ({num_experts}), got {topk!r}')
    rank_type, depth_type = get('rank_type'), get('depth_type')
    if rank_type not in RANK_TYPES:
        problems.append(f'rank_type must be one of {", ".join(RANK_TYPES)}, got {rank_type!r}')
    elif isinstance(num_experts, int) and num_experts >= 2:
        for level in range(levels - 1):
            ranks = expert_ranks(dim * 2 ** level, num_experts, get('rank'), rank_type)
            if min(ranks) < 1:
                problems.append(f'rank_type {rank_type} with rank {get("rank")} gives the experts of decoder level '
                                f'{level} the ranks {ranks}; every rank must be >= 1')
                break
    if not (depth_type in DEPTH_TYPES or (isinstance(depth_type, int) and not isinstance(depth_type, bool))):
        problems.append(f'depth_type must be one of {", ".join(DEPTH_TYPES)} or an integer, got {depth_type!r}')
    elif isinstance(num_experts, int) and num_experts >= 2:
        for level in range(levels - 1):
            if min(expert_depths(num_experts, depth_type, stage_depth[level])) < 1:
                problems.append(f'depth_type {depth_type!r} with stage_depth {list(stage_depth)} gives an expert '
                                'depth < 1 (the official expert then fails: it returns a result it never computed)')
                break
    if get('complexity_scale') not in COMPLEXITY_SCALES:
        problems.append(f'complexity_scale must be one of {", ".join(COMPLEXITY_SCALES)}, got '
                        f'{get("complexity_scale")!r}')
    if get('inp_channels') != get('out_channels'):
        problems.append(f'out_channels ({get("out_channels")}) must equal inp_channels ({get("inp_channels")}): the '
                        'output adds the input image')
    return problems


# The released MoCE-IR configuration (src/options.py:70-84 with src/train.py:33-47), our defaults.
_DEFAULTS = dict(inp_channels=3, out_channels=3, dim=48, levels=4, heads=(1, 2, 4, 8), num_blocks=(4, 6, 6, 8),
                 num_dec_blocks=(2, 4, 4), ffn_expansion_factor=2, num_refinement_blocks=4, LayerNorm_type='WithBias',
                 bias=False, rank=2, num_experts=4, depth_type='constant', stage_depth=(1, 1, 1), rank_type='spread',
                 topk=1, with_complexity=False, complexity_scale='max', routing_noise=True)


@ARCH_REGISTRY.register()
class MoCEIR(StageCheckpointing, RestorationArch, nn.Module):
    """MoCE-IR: a U-Net of MDTA blocks whose decoder blocks route each image to complexity experts.
    With ``d = dim``, 4 levels (the released models) and an input (B, inp_channels, H, W):

    ============================  ====================  ===============================================
    stage                         output shape           note
    ============================  ====================  ===============================================
    pad (reflect)                 (B, in, H8, W8)        H8, W8: H, W rounded up to multiples of 8
    patch_embed                   (B, d, H8, W8)         3x3 conv
    enc.0 (blocks, Downsample)    (B, d, H8, W8)         num_blocks[0] encoder blocks, heads[0] -> skip 1
    enc.1                         (B, 2d, H8/2, W8/2)    num_blocks[1], heads[1] -> skip 2
    enc.2                         (B, 4d, H8/4, W8/4)    num_blocks[2], heads[2] -> skip 3
    latent                        (B, 8d, H8/8, W8/8)    num_blocks[3], heads[3]
    freq_embed(latent)            (B, 8d)                read by every router
    dec.0: up, ++skip 3, 1x1      (B, 4d, H8/4, W8/4)    then num_dec_blocks[2] decoder blocks, heads[2]
    dec.1                         (B, 2d, H8/2, W8/2)    num_dec_blocks[1], heads[1]
    dec.2                         (B, d, H8, W8)         num_dec_blocks[0], heads[0]
    refinement                    (B, d, H8, W8)         num_refinement_blocks encoder blocks, heads[0]
    output (+ input image)        (B, out, H, W)         3x3 conv, global residual, crop back
    ============================  ====================  ===============================================

    The encoder, latent and refinement blocks always have biases (moce_ir.py:786, 797, 827); ``bias`` sets
    those of the decoder blocks, the fusion 1x1 convs and the output conv. In a decoder block of width C the
    expert i has rank C/2^(3-i) (rank_type 'spread') and FFT patches of 2^(i+2) pixels: at d=48, dec.2's
    experts are 6/12/24/48 wide over 4/8/16/32-pixel patches. See :class:`DecoderBlock`, :class:`AdapterLayer`.

    Defaults: the released MoCE-IR (dim 48, src/options.py:70-84): 1262 state-dict keys, 25,353,796
    parameters. MoCE-IR-S is ``dim: 32`` (src/options.py:54-68): 11,477,752 parameters. The official
    constructor's own defaults (dim 32, num_blocks [1,1,1,3], heads [1,1,1,1], rank_type 'constant', ...;
    moce_ir.py:741-762) are a configuration no official script builds; the weights carry no hyper-parameters,
    so the options they leave no trace of (topk, with_complexity, depth_type, stage_depth) take these
    defaults, the released ones. ``expert_layer`` (a class; FFTAttention, the only one) is not an option.

    Routing, and where this network differs from the official code (on purpose):

    * ``routing_noise`` (True, official): the router adds N(0, 1/E^2) noise to its logits in evaluation
      too (moce_ir.py:497), so the official inference is random; the draws here are the official ones call
      for call, so ``torch.manual_seed(s)`` before a forward reproduces the official output. False: no noise
      in evaluation, deterministic inference (what ``basicsr export`` builds: ``export_options``). Training
      always draws the noise.
    * Per-sample experts: here each sample of a batch is restored by its OWN top-k experts, in training and
      in evaluation, so a batch of N equals N images run alone (exactly so without routing noise). The
      official evaluation path (moce_ir.py:458-463) applies the experts chosen by every sample of the batch
      to every sample (each weighted by the sample's own top gates), so its batch of N differs from N runs
      alone (with topk > 1 it fails at batch > 1); the official test runs batch 1 (src/test.py:81), where
      both agree, and the official training path (a sparse dispatcher, moce_ir.py:452-457) is per sample
      like ours. The expert depth (``depth_type``, ``stage_depth``) has no effect (see :class:`ModExpert`).
    * ``balance_loss``: after a training forward, the auxiliary loss the official training adds with weight
      ``balance_loss_weight`` (src/train.py:62, 71): the mean over all decoder blocks of each router's
      0.5 * cv^2(importance) + 0.5 * cv^2(load) (:class:`RoutingFunction`; moce_ir.py:850-855); 0 after an
      evaluation forward. ``total_loss`` (the official attribute name) is the same value.
      :class:`~promptir_basicsr.models.moce_ir_model.MoCEIRModel` adds it to the loss.

    Features run in channels-last memory (see :mod:`.restormer_blocks`). ``set_grad_checkpointing(True)``
    (option ``train: grad_checkpoint``) checkpoints the encoder levels, the latent and the decoder levels;
    their recomputation replays the routing noise (the RNG state is restored), so the experts chosen agree.
    """

    size_multiple = 8  # three 2x downsamplings at the default 4 levels (an instance has 2^(levels-1))
    # Restormer's key plus one only MoCE-IR has (the frequency embedding's MLP, at every configuration)
    weight_signature = ('patch_embed.proj.weight', 'freq_embed.mlp.0.weight')
    tiling_note = ('MoCE-IR routes each tile to its experts from what the tile sees (pooled features), and the '
                   'channel attention is global: tiles can pick other experts than the whole image.')
    export_options = {'routing_noise': False}  # an exported graph is deterministic
    spandrel_tiling = 'discouraged'
    #: the balance loss of the last forward (a 0-d tensor after a training forward, 0.0 after an evaluation
    #: one); read by MoCEIRModel (a model checks that its network declares it)
    balance_loss = 0.0

    def __init__(self,
                 inp_channels=3,
                 out_channels=3,
                 dim=48,
                 levels=4,
                 heads=(1, 2, 4, 8),
                 num_blocks=(4, 6, 6, 8),
                 num_dec_blocks=(2, 4, 4),
                 ffn_expansion_factor=2,
                 num_refinement_blocks=4,
                 LayerNorm_type='WithBias',  # noqa: N803 (official name)
                 bias=False,
                 rank=2,
                 num_experts=4,
                 depth_type='constant',
                 stage_depth=(1, 1, 1),
                 rank_type='spread',
                 topk=1,
                 with_complexity=False,
                 complexity_scale='max',
                 routing_noise=True):
        given = dict(locals())
        super().__init__()
        problems = moce_option_problems({k: v for k, v in given.items() if k in _DEFAULTS})
        if problems:
            raise ValueError('MoCEIR: ' + '; '.join(problems))
        self.levels = levels
        self.num_dec_blocks = list(num_dec_blocks)
        self.size_multiple = 2 ** (levels - 1)
        dims = [dim * 2 ** i for i in range(levels)]
        body = dict(ffn_expansion_factor=ffn_expansion_factor, LayerNorm_type=LayerNorm_type)

        self.patch_embed = OverlapPatchEmbed(inp_channels, dim)
        self.freq_embed = FrequencyEmbedding(dims[-1])
        # encoder levels: blocks (always with biases), then Downsample (C -> 2C, half size)
        self.enc = nn.ModuleList([
            nn.ModuleList([ResidualGroup(dims[i], heads[i], num_blocks[i], bias=True, **body), Downsample(dims[i])])
            for i in range(levels - 1)])
        self.latent = ResidualGroup(dims[-1], heads[-1], num_blocks[-1], bias=True, **body)
        # decoder levels, deepest first: dec.i serves level l = levels - 2 - i (width dims[l])
        adapter = dict(rank=rank, num_experts=num_experts, top_k=topk, depth_type=depth_type, rank_type=rank_type,
                       freq_dim=dims[-1], with_complexity=with_complexity, complexity_scale=complexity_scale,
                       routing_noise=routing_noise)
        self.dec = nn.ModuleList()
        for i in range(levels - 1):
            level = levels - 2 - i
            self.dec.append(nn.ModuleList([
                Upsample(dims[level + 1]),
                nn.Conv2d(dims[level + 1], dims[level], kernel_size=1, bias=bias),
                DecoderResidualGroup(dims[level], heads[level], num_dec_blocks[level], bias=bias,
                                     stage_depth=stage_depth[i], **body, **adapter)]))
        self.refinement = ResidualGroup(dim, heads[0], num_refinement_blocks, bias=True, **body)
        self.output = nn.Conv2d(dim, out_channels, kernel_size=3, padding=1, bias=bias)

    @property
    def total_loss(self):
        """The official name of :attr:`balance_loss`."""
        return self.balance_loss

    @property
    def routing_noise(self):
        """Whether the routers add their noise in evaluation (see the class docstring)."""
        return next(m.routing_noise for m in self.modules() if isinstance(m, RoutingFunction))

    def set_routing_noise(self, enabled):
        """Turn the evaluation-time routing noise on (official) or off (deterministic) in every router."""
        for module in self.modules():
            if isinstance(module, RoutingFunction):
                module.routing_noise = bool(enabled)
        return self

    # ---- what the rest of the package knows about MoCE-IR (archs/arch_api.py) ---------------------------
    @classmethod
    def option_problems(cls, options):
        return moce_option_problems(options)

    @classmethod
    def spandrel_tags(cls, options):
        return [f'{options.get("dim", 48)}dim', f'{options.get("num_experts", 4)}experts']

    @classmethod
    def options_from_weights(cls, state_dict):
        """Every option with a trace in the keys and shapes (topk, with_complexity, depth_type, stage_depth and
        routing_noise have none and keep the released defaults; beyond 4 levels, stage_depth gives each decoder
        level a 1). MoCE-IR and MoCE-IR-S differ in ``dim``."""
        sd = state_dict
        embed = sd['patch_embed.proj.weight']  # (dim, inp_channels, 3, 3)
        dim = int(embed.shape[0])
        levels = count_children(sd, 'enc') + 1
        dec_level = {i: levels - 2 - i for i in range(levels - 1)}
        num_dec = {dec_level[i]: count_children(sd, f'dec.{i}.2.layers') for i in range(levels - 1)}
        # the heads of level l: from any block of that level
        heads = []
        for level in range(levels):
            groups = [f'enc.{level}.0.layers.0.mixer' if level < levels - 1 else 'latent.layers.0.mixer']
            groups += [f'dec.{i}.2.layers.0.shared' for i, lv in dec_level.items() if lv == level]
            groups += ['refinement.layers.0.mixer'] if level == 0 else []
            key = next((f'{g}.temperature' for g in groups if f'{g}.temperature' in sd), None)
            heads.append(int(sd[key].shape[0]) if key else (_DEFAULTS['heads'][level] if level < 4 else 1))
        hidden = [(int(v.shape[1]), int(v.shape[0]) // 2) for k, v in sd.items() if k.endswith('ffn.project_in.weight')]
        norms = [k for k in sd if k.endswith('norms.0.body.weight')]
        options = dict(
            inp_channels=int(embed.shape[1]),
            out_channels=int(sd['output.weight'].shape[0]),
            dim=dim,
            levels=levels,
            heads=heads,
            num_blocks=[count_children(sd, f'enc.{lv}.0.layers') for lv in range(levels - 1)]
            + [count_children(sd, 'latent.layers')],
            num_dec_blocks=[num_dec[lv] for lv in range(levels - 1)],
            ffn_expansion_factor=expansion_factor(hidden, preferred=2),
            num_refinement_blocks=count_children(sd, 'refinement.layers'),
            LayerNorm_type='BiasFree' if norms and not any(k[:-len('weight')] + 'bias' in sd for k in norms)
            else 'WithBias',
            bias='output.bias' in sd,
        )
        if levels - 1 > len(_DEFAULTS['stage_depth']):  # no trace (an expert's passes all start from its input)
            options['stage_depth'] = [1] * (levels - 1)
        # the experts of the first block of each decoder level: (block width, the experts' ranks)
        blocks = [f'dec.{i}.2.layers.0.adapter' for i in range(levels - 1)
                  if f'dec.{i}.2.layers.0.adapter.proj_out.weight' in sd]
        if blocks:
            num_experts = count_children(sd, f'{blocks[0]}.experts')
            widths_ranks = [(int(sd[f'{b}.proj_out.weight'].shape[0]),
                             [int(sd[f'{b}.experts.{e}.0.proj.0.weight'].shape[0]) for e in range(num_experts)])
                            for b in blocks]
            options.update(num_experts=num_experts, **_rank_options(widths_ranks))
            complexity = sd.get(f'{blocks[0]}.routing.complexity')
            if complexity is not None:
                options['complexity_scale'] = _complexity_scale(complexity)
        return options

    # ---- forward -------------------------------------------------------------------------------------------
    def forward(self, inp_img):
        x, (h, w) = pad_to_multiple(inp_img, self.size_multiple)
        feats = self.patch_embed(x)
        skips = []
        for group, down in self.enc:
            feats = self.run_stage(group, feats)
            skips.append(feats)
            feats = down(feats)
        feats = self.run_stage(self.latent, feats)
        freq_emb = self.freq_embed(feats)
        balance = 0
        for up, fusion, group in self.dec:
            feats = fusion(torch.cat([up(feats), skips.pop()], dim=1))
            feats, loss = self.run_stage(group, feats, freq_emb)
            balance = balance + loss
        feats = self.run_stage(self.refinement, feats, last=True)
        out = self.output(feats) + x
        self.balance_loss = balance / sum(self.num_dec_blocks)
        return (out[..., :h, :w] if out.shape[-2:] != (h, w) else out).contiguous()


def _rank_options(widths_ranks):
    """(rank_type, rank) that give every block of width w in ``widths_ranks`` [(w, expert ranks), ...] its
    experts' ranks (the released 'spread' first; a rule without ``rank`` keeps the default)."""
    first = widths_ranks[0][1]
    candidates = [('spread', _DEFAULTS['rank']), ('constant', first[0]), ('lin', first[0]), ('double', first[0]),
                  ('exp', first[0])]
    candidates += [('fact', r) for r in range(13) if math.factorial(r) == first[0]]
    for rank_type, rank in candidates:
        if all(expert_ranks(width, len(ranks), rank, rank_type) == ranks for width, ranks in widths_ranks):
            return {'rank_type': rank_type, 'rank': rank}
    raise CheckpointError(f'MoCEIR: no rank_type fits the experts\' ranks (block width, ranks) {widths_ranks}')


def _complexity_scale(complexity):
    """'max' / 'min' / 'none' from the values of a router's ``complexity`` buffer."""
    if not complexity.is_floating_point():
        return 'none'
    if abs(float(complexity.max()) - 1.0) < 1e-6:
        return 'max'
    return 'min' if abs(float(complexity.min()) - 1.0) < 1e-6 else 'max'
