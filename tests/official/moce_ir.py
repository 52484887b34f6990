"""MoCE-IR in the official formulation: an independent reference for ``promptir_basicsr.archs.moce_ir_arch``.

Written for this project from the facts of the official code (``eduardzamfir/MoCE-IR`` ``src/net/moce_ir.py``,
cited as ``moce_ir.py:<line>``), computing the way it computes: einops rearranges to (B, HW, C) around every
layer norm, q/k/v rearranged per head and F.normalize'd, complex spectra from ``torch.fft.rfft2`` multiplied as
complex tensors over einops patches, the sparse dispatcher of the training path (nonzero, sort by expert,
split, index_add), the evaluation path that stacks the experts listed in ``top_k_indices.squeeze(0)`` and
applies them to the whole batch, the expert's ``depth`` loop that recomputes from the same input,
``torch.distributions.Normal`` and ``F.one_hot`` in the load loss, and the routing noise drawn in evaluation
too. It shares no line with ``promptir_basicsr.archs``. Module and parameter names are the official ones, so
one state dict loads into the official network, this one and ours with ``strict=True``.

Where it departs from the official code, on purpose (each is a convention of ours that is under test, or
changes nothing in float32):

* inputs are reflect-padded to a multiple of 2^(levels-1) and the output cropped back (ours does it; the
  official code needs such sizes, its test crops to 16);
* float64 stays float64: the official ``q.float()`` before the FFT and the float32 ``zeros`` + ``.float()``
  of the dispatcher's combine would drop float64 to float32 (golden fixtures are float64); in float32 and
  below this is the official code's arithmetic;
* ``routing_noise=False`` (default True, the official behaviour) leaves the noise out in evaluation;
* constructor defaults are the released MoCE-IR (``src/options.py:70-84``), as ours;
  ``expert_layer`` is always FFTAttention.

Verified against the real official code (the file copied to /tmp with its unused ``fvcore`` import
removed, run with this venv's torch 2.14.1 and einops 0.8.2): same seeded state dict (``strict=True``), the
same 24 x 40 input, ``torch.manual_seed`` before each forward: eval batch 1 and 2, train batch 1 and 3, at two
configurations (4 levels topk 1 spread ranks; 3 levels, topk 2, lin ranks, lin depths, BiasFree, bias,
with_complexity, complexity_scale min): outputs, total_loss, the input's and every parameter's gradient
equal bit for bit (max abs difference 0) in float32; in float64 (the official float32 casts removed, default
dtype float64) the same; eval at batch 2 included, so the official evaluation batch effect is reproduced.
"""
import math

import torch
import torch.nn.functional as F
from einops import rearrange
from einops.layers.torch import Rearrange
from torch import nn
from torch.distributions.normal import Normal


def to_3d(x):
    return rearrange(x, 'b c h w -> b (h w) c')


def to_4d(x, h, w):
    return rearrange(x, 'b (h w) c -> b c h w', h=h, w=w)


class BiasFree_LayerNorm(nn.Module):  # noqa: N801 (official name)
    def __init__(self, dim):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x / torch.sqrt(x.var(-1, keepdim=True, unbiased=False) + 1e-5) * self.weight


class WithBias_LayerNorm(nn.Module):  # noqa: N801
    def __init__(self, dim):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x):
        centred = x - x.mean(-1, keepdim=True)
        return centred / torch.sqrt(x.var(-1, keepdim=True, unbiased=False) + 1e-5) * self.weight + self.bias


class LayerNorm(nn.Module):
    def __init__(self, dim, LayerNorm_type):  # noqa: N803
        super().__init__()
        self.body = BiasFree_LayerNorm(dim) if LayerNorm_type == 'BiasFree' else WithBias_LayerNorm(dim)

    def forward(self, x):
        return to_4d(self.body(to_3d(x)), *x.shape[-2:])


class FeedForward(nn.Module):
    def __init__(self, dim, ffn_expansion_factor, bias):
        super().__init__()
        hidden = int(dim * ffn_expansion_factor)
        self.project_in = nn.Conv2d(dim, hidden * 2, 1, bias=bias)
        self.dwconv = nn.Conv2d(hidden * 2, hidden * 2, 3, stride=1, padding=1, groups=hidden * 2, bias=bias)
        self.project_out = nn.Conv2d(hidden, dim, 1, bias=bias)

    def forward(self, x):
        gate, value = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(gate) * value)


def _heads_attention(q, k, v, num_heads, temperature, h, w):
    q, k, v = (rearrange(t, 'b (head c) h w -> b head c (h w)', head=num_heads) for t in (q, k, v))
    q = F.normalize(q, dim=-1)
    k = F.normalize(k, dim=-1)
    attn = ((q @ k.transpose(-2, -1)) * temperature).softmax(dim=-1)
    return rearrange(attn @ v, 'b head c (h w) -> b (head c) h w', head=num_heads, h=h, w=w)


class Attention(nn.Module):
    def __init__(self, dim, num_heads, bias):
        super().__init__()
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.qkv = nn.Conv2d(dim, dim * 3, 1, bias=bias)
        self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, 3, stride=1, padding=1, groups=dim * 3, bias=bias)
        self.project_out = nn.Conv2d(dim, dim, 1, bias=bias)

    def forward(self, x):
        q, k, v = self.qkv_dwconv(self.qkv(x)).chunk(3, dim=1)
        return self.project_out(_heads_attention(q, k, v, self.num_heads, self.temperature, *x.shape[-2:]))


class CrossAttention(nn.Module):
    def __init__(self, dim, num_heads, bias):
        super().__init__()
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.q = nn.Conv2d(dim, dim, 1, bias=bias)
        self.q_dwconv = nn.Conv2d(dim, dim, 3, stride=1, padding=1, groups=dim, bias=bias)
        self.kv = nn.Conv2d(dim, dim * 2, 1, bias=bias)
        self.kv_dwconv = nn.Conv2d(dim * 2, dim * 2, 7, stride=1, padding=3, groups=dim * 2, bias=bias)
        self.project_out = nn.Conv2d(dim, dim, 1, bias=bias)

    def forward(self, x, y):
        q = self.q_dwconv(self.q(x))
        k, v = self.kv_dwconv(self.kv(y)).chunk(2, dim=1)
        return self.project_out(_heads_attention(q, k, v, self.num_heads, self.temperature, *x.shape[-2:]))


class FFTAttention(nn.Module):
    def __init__(self, dim, patch_size, kernel_size=None):  # kernel_size: passed officially, never used
        super().__init__()
        self.patch_size = patch_size
        self.q = nn.Conv2d(dim, dim, 1, bias=False)
        self.q_dwconv = nn.Conv2d(dim, dim, 3, stride=1, padding=1, groups=dim)
        self.kv = nn.Conv2d(dim, dim * 2, 1, bias=False)
        self.kv_dwconv = nn.Conv2d(dim * 2, dim * 2, 7, stride=1, padding=3, groups=dim * 2)
        self.norm = LayerNorm(dim, 'WithBias')
        self.proj_out = nn.Conv2d(dim, dim, 1, padding=0)

    def patches(self, x):
        p = self.patch_size
        h, w = x.shape[-2:]
        x = F.pad(x, (0, (p - w % p) % p, 0, (p - h % p) % p), mode='constant', value=0)
        return rearrange(x, 'b c (h p1) (w p2) -> b c h w p1 p2', p1=p, p2=p)

    def forward(self, x):
        h, w = x.shape[-2:]
        q = self.q_dwconv(self.q(x))
        kv = self.kv_dwconv(self.kv(x))
        k, v = kv.chunk(2, dim=1)
        # official: .float() (float64 kept here, see the module docstring)
        q = self.patches(q if q.dtype == torch.float64 else q.float())
        k = self.patches(k if k.dtype == torch.float64 else k.float())
        spectrum = torch.fft.rfft2(q) * torch.fft.rfft2(k)
        out = torch.fft.irfft2(spectrum, s=(self.patch_size, self.patch_size))
        out = rearrange(out, 'b c h w p1 p2 -> b c (h p1) (w p2)')[:, :, :h, :w]
        return self.proj_out(self.norm(out) * v)


class ModExpert(nn.Module):
    def __init__(self, dim, rank, depth, patch_size, kernel_size):
        super().__init__()
        self.depth = depth
        self.proj = nn.ModuleList([nn.Conv2d(dim, rank, 1, padding=0, bias=False),
                                   nn.Conv2d(dim, rank, 1, padding=0, bias=False),
                                   nn.Conv2d(rank, dim, 1, padding=0, bias=False)])
        self.body = FFTAttention(rank, kernel_size=kernel_size, patch_size=patch_size)

    def process(self, x, shared):
        shortcut = x
        x = self.proj[0](x)
        x = self.body(x) * F.silu(self.proj[1](shared))
        x = self.proj[2](x)
        return x + shortcut

    def forward(self, x, shared):
        if x.shape[0] == 0:  # no sample routed here
            return x
        for _ in range(self.depth):  # each pass from the same input, as the official loop
            result = self.process(x, shared)
        return result


class TwoInputSequential(nn.Sequential):
    """The official MySequential: each layer gets (x, shared)."""

    def forward(self, x, shared):
        for layer in self:
            x = layer(x, shared)
        return x


class Dispatcher:
    """The official SparseDispatcher's arithmetic: samples grouped by expert, recombined by index_add."""

    def __init__(self, gates):
        self.gates = gates
        pairs = torch.nonzero(gates)  # (n, 2): (sample, expert)
        sorted_pairs, order = pairs.sort(0)
        self.expert_index = sorted_pairs[:, 1:2]
        self.batch_index = pairs[order[:, 1], 0]
        self.part_sizes = (gates > 0).sum(0).tolist()
        self.nonzero_gates = torch.gather(gates[self.batch_index], 1, self.expert_index)

    def dispatch(self, inp):
        return torch.split(inp[self.batch_index], self.part_sizes, dim=0)

    def combine(self, outputs):
        stitched = torch.cat(outputs, 0) * self.nonzero_gates[:, :, None, None]
        dtype = torch.float64 if stitched.dtype == torch.float64 else torch.float32  # official: float32
        zeros = torch.zeros((self.gates.shape[0],) + tuple(outputs[-1].shape[1:]), dtype=dtype,
                            device=stitched.device, requires_grad=True)
        return zeros.index_add(0, self.batch_index, stitched.to(dtype))


class RoutingFunction(nn.Module):
    def __init__(self, dim, freq_dim, num_experts, k, complexity, use_complexity_bias, complexity_scale, routing_noise):
        super().__init__()
        self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(1), Rearrange('b c 1 1 -> b c'),
                                  nn.Linear(dim, num_experts, bias=False))
        self.freq_gate = nn.Linear(freq_dim, num_experts, bias=False)
        if complexity_scale in ('min', 'max'):
            complexity = complexity / (complexity.min() if complexity_scale == 'min' else complexity.max())
        self.register_buffer('complexity', complexity)
        self.k = k
        self.tau = 1
        self.num_experts = num_experts
        self.noise_std = (1.0 / num_experts) * 1.0
        self.use_complexity_bias = use_complexity_bias
        self.routing_noise = routing_noise

    def forward(self, x, freq_emb):
        logits = self.gate(x) + self.freq_gate(freq_emb)
        if self.training:
            importance = logits.softmax(dim=-1).sum(dim=0)
            if self.use_complexity_bias:
                importance = importance * (self.complexity * self.tau)
            loss_imp = (importance.std() / (importance.mean() + 1e-8)) ** 2
        draw = self.training or self.routing_noise  # the official code always draws
        noise = torch.randn_like(logits) * self.noise_std if draw else torch.zeros_like(logits)
        noisy_logits = logits + noise
        top_k_values, top_k_indices = torch.topk(noisy_logits.softmax(dim=-1), self.k, dim=-1)
        aux_loss = 0
        if self.training:
            kth = torch.topk(noisy_logits, self.k, dim=-1).indices[:, -1]
            threshold = torch.sum(F.one_hot(kth, self.num_experts) * noisy_logits, dim=-1)
            needed = (threshold.unsqueeze(-1) - logits) / self.noise_std
            p_mean = (1. - Normal(0, 1).cdf(needed)).mean(dim=0)
            loss_load = (p_mean.std() / (p_mean.mean() + 1e-8)) ** 2
            aux_loss = 0.5 * loss_imp + 0.5 * loss_load
        gates = torch.zeros_like(logits).scatter_(1, top_k_indices, top_k_values)
        return gates, top_k_indices, aux_loss


class AdapterLayer(nn.Module):
    def __init__(self, dim, rank, num_experts, top_k, stage_depth, depth_type, rank_type, freq_dim, with_complexity,
                 complexity_scale, routing_noise):
        super().__init__()
        self.num_experts = num_experts
        if isinstance(depth_type, int):
            depths = [depth_type] * num_experts
        else:
            depths = {'lin': [stage_depth + i for i in range(num_experts)],
                      'double': [stage_depth + 2 * i for i in range(num_experts)],
                      'exp': [2 ** i for i in range(num_experts)],
                      'fact': [math.factorial(i + 1) for i in range(num_experts)],
                      'constant': [stage_depth] * num_experts}[depth_type]
        ranks = {'constant': [rank] * num_experts, 'lin': [rank + i for i in range(num_experts)],
                 'double': [rank + 2 * i for i in range(num_experts)],
                 'exp': [rank ** (i + 1) for i in range(num_experts)],
                 'fact': [math.factorial(rank + i) for i in range(num_experts)],
                 'spread': [dim // (2 ** i) for i in range(num_experts)][::-1]}[rank_type]
        self.experts = nn.ModuleList([
            TwoInputSequential(ModExpert(dim, ranks[i], depths[i], patch_size=2 ** (i + 2), kernel_size=3 + 2 * i))
            for i in range(num_experts)])
        self.proj_out = nn.Conv2d(dim, dim, 1, padding=0, bias=False)
        expert_complexity = torch.tensor([sum(p.numel() for p in e.parameters()) for e in self.experts])
        self.routing = RoutingFunction(dim, freq_dim, num_experts, top_k, expert_complexity, with_complexity,
                                       complexity_scale, routing_noise)
        self.loss = None

    def forward(self, x, freq_emb, shared):
        gates, top_k_indices, self.loss = self.routing(x, freq_emb)
        if self.training:
            dispatcher = Dispatcher(gates)
            inputs, shared_inputs = dispatcher.dispatch(x), dispatcher.dispatch(shared)
            out = dispatcher.combine([self.experts[e](inputs[e], shared_inputs[e]) for e in range(self.num_experts)])
        else:
            # the official evaluation path: the experts listed for the whole batch, each applied to every sample
            selected = [self.experts[index] for index in top_k_indices.squeeze(0)]
            stacked = torch.stack([expert(x, shared) for expert in selected], dim=1)
            weights = gates.gather(1, top_k_indices)[:, :, None, None, None]
            out = (weights * stacked).sum(dim=1)
        return self.proj_out(out)


class EncoderBlock(nn.Module):
    def __init__(self, dim, num_heads, ffn_expansion_factor, bias, LayerNorm_type):  # noqa: N803
        super().__init__()
        self.norms = nn.ModuleList([LayerNorm(dim, LayerNorm_type), LayerNorm(dim, LayerNorm_type)])
        self.mixer = Attention(dim, num_heads, bias)
        self.ffn = FeedForward(dim, ffn_expansion_factor, bias)

    def forward(self, x):
        x = x + self.mixer(self.norms[0](x))
        x = x + self.ffn(self.norms[1](x))
        return x


class DecoderBlock(nn.Module):
    def __init__(self, dim, num_heads, ffn_expansion_factor, bias, LayerNorm_type, adapter):  # noqa: N803
        super().__init__()
        self.norms = nn.ModuleList([LayerNorm(dim, LayerNorm_type), LayerNorm(dim, LayerNorm_type)])
        self.proj = nn.ModuleList([nn.Conv2d(dim, dim, 1, padding=0), nn.Conv2d(dim, dim, 1, padding=0)])
        self.shared = Attention(dim, num_heads, bias)
        self.mixer = CrossAttention(dim, num_heads, bias)
        self.ffn = FeedForward(dim, ffn_expansion_factor, bias)
        self.adapter = AdapterLayer(dim, **adapter)

    def forward(self, x, freq_emb):
        shortcut = x
        normed = self.norms[0](x)
        x_s = self.shared(self.proj[0](normed))
        x_a = self.adapter(self.proj[1](normed), freq_emb, x_s)
        x = self.mixer(x_a, x_s) + shortcut
        return x + self.ffn(self.norms[1](x)), self.adapter.loss


class EncoderResidualGroup(nn.Module):
    def __init__(self, dim, num_heads, num_blocks, ffn_expansion, LayerNorm_type, bias):  # noqa: N803
        super().__init__()
        self.layers = nn.ModuleList([EncoderBlock(dim, num_heads, ffn_expansion, bias, LayerNorm_type)
                                     for _ in range(num_blocks)])

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


class DecoderResidualGroup(nn.Module):
    def __init__(self, dim, num_heads, num_blocks, ffn_expansion, LayerNorm_type, bias, adapter):  # noqa: N803
        super().__init__()
        self.layers = nn.ModuleList([DecoderBlock(dim, num_heads, ffn_expansion, bias, LayerNorm_type, adapter)
                                     for _ in range(num_blocks)])
        self.loss = None

    def forward(self, x, freq_emb):
        i = 0
        self.loss = 0
        while i < len(self.layers):
            x, block_loss = self.layers[i](x, freq_emb)
            self.loss += block_loss
            i += 1
        return x


class HighPassConv2d(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, kernel_size=3, padding=1, bias=False, groups=c)
        kernel = torch.tensor([[[[-1., -1., -1.], [-1., 8., -1.], [-1., -1., -1.]]]])
        self.conv.weight.data = kernel.repeat(c, 1, 1, 1)  # trained: the official "freeze" never happens

    def forward(self, x):
        return self.conv(x)


class FrequencyEmbedding(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.high_conv = nn.Sequential(HighPassConv2d(dim), nn.GELU())
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x):
        x = self.high_conv(x)
        x = x.mean(dim=(-2, -1))
        return self.mlp(x)


class OverlapPatchEmbed(nn.Module):
    def __init__(self, in_c, embed_dim):
        super().__init__()
        self.proj = nn.Conv2d(in_c, embed_dim, kernel_size=3, stride=1, padding=1, bias=False)

    def forward(self, x):
        return self.proj(x)


class Downsample(nn.Module):
    def __init__(self, n_feat):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(n_feat, n_feat // 2, 3, stride=1, padding=1, bias=False),
                                  nn.PixelUnshuffle(2))

    def forward(self, x):
        return self.body(x)


class Upsample(nn.Module):
    def __init__(self, n_feat):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(n_feat, n_feat * 2, 3, stride=1, padding=1, bias=False),
                                  nn.PixelShuffle(2))

    def forward(self, x):
        return self.body(x)


class MoCEIR(nn.Module):
    def __init__(self, inp_channels=3, out_channels=3, dim=48, levels=4, heads=(1, 2, 4, 8), num_blocks=(4, 6, 6, 8),
                 num_dec_blocks=(2, 4, 4), ffn_expansion_factor=2, num_refinement_blocks=4,
                 LayerNorm_type='WithBias', bias=False, rank=2, num_experts=4, depth_type='constant',  # noqa: N803
                 stage_depth=(1, 1, 1), rank_type='spread', topk=1, with_complexity=False, complexity_scale='max',
                 routing_noise=True):
        super().__init__()
        self.levels = levels
        self.num_dec_blocks = list(num_dec_blocks)
        dims = [dim * 2 ** i for i in range(levels)]
        self.patch_embed = OverlapPatchEmbed(inp_channels, dim)
        self.freq_embed = FrequencyEmbedding(dims[-1])
        self.enc = nn.ModuleList([
            nn.ModuleList([EncoderResidualGroup(dims[i], heads[i], num_blocks[i], ffn_expansion_factor, LayerNorm_type,
                                                bias=True),
                           Downsample(dim * 2 ** i)]) for i in range(levels - 1)])
        self.latent = EncoderResidualGroup(dims[-1], heads[-1], num_blocks[-1], ffn_expansion_factor, LayerNorm_type,
                                           bias=True)
        r_dims, r_heads, r_dec = dims[::-1], list(heads)[::-1], list(num_dec_blocks)[::-1]
        self.dec = nn.ModuleList()
        for i in range(levels - 1):
            adapter = dict(rank=rank, num_experts=num_experts, top_k=topk, stage_depth=stage_depth[i],
                           depth_type=depth_type, rank_type=rank_type, freq_dim=r_dims[0],
                           with_complexity=with_complexity, complexity_scale=complexity_scale,
                           routing_noise=routing_noise)
            self.dec.append(nn.ModuleList([
                Upsample(r_dims[i]),
                nn.Conv2d(r_dims[i], r_dims[i + 1], kernel_size=1, bias=bias),
                DecoderResidualGroup(r_dims[i + 1], r_heads[i + 1], r_dec[i], ffn_expansion_factor, LayerNorm_type,
                                     bias, adapter)]))
        self.refinement = EncoderResidualGroup(dim, heads[0], num_refinement_blocks, ffn_expansion_factor,
                                               LayerNorm_type, bias=True)
        self.output = nn.Conv2d(dim, out_channels, kernel_size=3, stride=1, padding=1, bias=bias)
        self.total_loss = None

    def forward(self, x):
        h, w = x.shape[-2:]
        multiple = 2 ** (self.levels - 1)
        pad_h, pad_w = -h % multiple, -w % multiple
        if pad_h or pad_w:  # our convention (module docstring): reflect, or replicate when the image is too small
            mode = 'reflect' if pad_h < h and pad_w < w else 'replicate'
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        feats = self.patch_embed(x)
        self.total_loss = 0
        enc_feats = []
        for block, downsample in self.enc:
            feats = block(feats)
            enc_feats.append(feats)
            feats = downsample(feats)
        feats = self.latent(feats)
        freq_emb = self.freq_embed(feats)
        for upsample, fusion, block in self.dec:
            feats = fusion(torch.cat([upsample(feats), enc_feats.pop()], dim=1))
            feats = block(feats, freq_emb)
            self.total_loss += block.loss
        out = self.output(self.refinement(feats)) + x
        self.total_loss /= sum(self.num_dec_blocks)
        return out[:, :, :h, :w]
