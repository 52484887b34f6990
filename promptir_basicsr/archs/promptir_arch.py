"""PromptIR (Potlapalli et al., NeurIPS 2023) as a basicsr arch: ``type: PromptIR``.

A Restormer encoder (blocks shared from :mod:`.restormer_blocks`) whose decoder is conditioned on
the degradation by prompt blocks: each looks at the decoder features, mixes ``prompt_len`` learned
prompt tensors with weights predicted from those features, and the result is concatenated to the
features and fused by one extra TransformerBlock ("prompt interaction") plus a 1x1 conv.

Three options make the paper's open questions experiments (defaults: the official network):
``prompt_learnable`` (fixed random components), ``prompt_levels`` (which decoder levels get a
prompt block) and ``prompt_source`` (the prompt weights from PGM's linear layer on pooled features,
or from AirNet's contrastive degradation encoder, CBDE). See :class:`PromptIR`.
"""
import functools

from basicsr.utils.registry import ARCH_REGISTRY
import torch
import torch.nn.functional as F
from torch import nn

from ..utils.tiling import pad_to_multiple
from .airnet_arch import CBDE, adapt_moco_queues, res_encoder_options
from .arch_api import RestorationArch
from .restormer_blocks import (RestormerEncoder, TransformerBlock, Upsample, channels_last, restormer_body_options,
                               transformer_stage)
# In the official state dict, never called by forward (see PromptIR's docstring).
UNUSED_OFFICIAL_MODULES = ('chnl_reduce1', 'chnl_reduce2', 'chnl_reduce3', 'reduce_noise_channel_1',
                           'reduce_noise_channel_2', 'reduce_noise_channel_3')
# The paper's decoder levels that can get a prompt block -> the index i of its modules (``prompt<i>``,
# ``noise_level<i>``, ``reduce_noise_level<i>``, official names): level 4 is the latent (H/8), level 3
# follows decoder_level3 (H/4), level 2 follows decoder_level2 (H/2).
PROMPT_LEVELS = {4: 3, 3: 2, 2: 1}
PROMPT_SOURCES = ('pgm', 'cbde')


class PromptGenBlock(nn.Module):
    """Prompt generation: features (B, C, h, w) -> prompt (B, prompt_dim, h, w).

    ``prompt_param`` holds ``prompt_len`` components of (prompt_dim, S, S), S=prompt_size.
    Weights = softmax(Linear(e)) over the components, where e (B, lin_dim) is the global average of
    the features (PGM, the paper's) or, when given, an embedding of the image from elsewhere (a
    degradation encoder); their weighted sum is resized (bilinear) to the feature size and passed
    through a 3x3 conv.

    The components are used as a Parameter in the graph, so they receive gradients (the official
    code before commit 20eff77 read ``.data`` and never trained them). ``learnable=False`` keeps
    them fixed at their random initialisation: still a Parameter in the state dict, but with
    ``requires_grad=False``, so no optimizer or DDP reducer ever sees them.
    """

    def __init__(self, prompt_dim=128, prompt_len=5, prompt_size=96, lin_dim=192, learnable=True):
        super().__init__()
        # (1, len, D, S, S): the official shape, kept so checkpoints load; uniform [0, 1) like theirs.
        self.prompt_param = nn.Parameter(torch.rand(1, prompt_len, prompt_dim, prompt_size, prompt_size),
                                         requires_grad=learnable)
        self.linear_layer = nn.Linear(lin_dim, prompt_len)
        self.conv3x3 = nn.Conv2d(prompt_dim, prompt_dim, kernel_size=3, padding=1, bias=False)

    def forward(self, x, embedding=None):
        h, w = x.shape[-2:]
        if embedding is None:
            embedding = x.mean(dim=(-2, -1))
        weights = F.softmax(self.linear_layer(embedding), dim=1)  # (B, len)
        # Weighted sum over the components as one matmul instead of materialising (B, len, D, S, S).
        components = self.prompt_param[0]  # (len, D, S, S)
        prompt = (weights @ components.flatten(1)).view(-1, *components.shape[1:])  # (B, D, S, S)
        prompt = channels_last(prompt)  # the layout of the features it joins
        if prompt.shape[-2:] != (h, w):  # at S == size, bilinear (align_corners=False) is the identity
            prompt = F.interpolate(prompt, (h, w), mode='bilinear', align_corners=False)
        return self.conv3x3(prompt)


def prompt_option_problems(prompt_levels=(4, 3, 2), prompt_source='pgm'):
    """What is wrong with the values of PromptIR's prompt options (empty when they are fine)."""
    problems = []
    levels = list(prompt_levels) if isinstance(prompt_levels, (list, tuple)) else None
    if levels is None or any(level not in PROMPT_LEVELS for level in levels) or len(set(levels)) != len(levels):
        problems.append(f'prompt_levels must list distinct decoder levels among 4 (the latent), 3 and 2 (the '
                        f"paper's numbering; [4, 3, 2] is PromptIR, [4] the latent only), got {prompt_levels!r}")
    if prompt_source not in PROMPT_SOURCES:
        problems.append(f'prompt_source must be one of {", ".join(PROMPT_SOURCES)}, got {prompt_source!r}')
    elif prompt_source == 'cbde' and levels == []:
        problems.append('prompt_source: cbde needs at least one prompt level (the encoder feeds the prompt blocks)')
    return problems


@ARCH_REGISTRY.register()
class PromptIR(RestormerEncoder, RestorationArch, nn.Module):
    """All-in-one restoration with prompts. With ``d = dim``, prompt dims (p1, p2, p3) = prompt_dims
    and an input (B, inp_channels, H, W):

    ==============================  ===================  ==========================================
    stage                           output shape          note
    ==============================  ===================  ==========================================
    pad (reflect)                   (B, in, H8, W8)       H8, W8: H, W rounded up to multiples of 8
    patch_embed + encoder_level1    (B, d, H8, W8)        as Restormer
    down1_2 + encoder_level2        (B, 2d, H8/2, W8/2)
    down2_3 + encoder_level3        (B, 4d, H8/4, W8/4)
    down3_4 + latent                (B, 8d, H8/8, W8/8)
    ++ prompt3(latent)              (B, 8d+p3, H8/8, ..)  level 4: noise_level3 block (heads[2])
    reduce_noise_level3             (B, 4d, H8/8, W8/8)   1x1; note: 4d, not 8d as in Restormer
    up4_3, ++enc3, reduce 1x1       (B, 4d, H8/4, W8/4)   (2d+4d -> 4d), then decoder_level3
    ++ prompt2, noise_level2, 1x1   (B, 4d, H8/4, W8/4)   level 3: (4d+p2 -> 4d)
    up3_2, ++enc2, reduce 1x1       (B, 2d, H8/2, W8/2)   (4d -> 2d), then decoder_level2
    ++ prompt1, noise_level1, 1x1   (B, 2d, H8/2, W8/2)   level 2: (2d+p1 -> 2d)
    up2_1, ++enc1                   (B, 2d, H8, W8)       decoder_level1, refinement
    output (+ input image)          (B, out, H, W)        3x3 conv, global residual, crop back
    ==============================  ===================  ==========================================

    Defaults are the official working configuration (their scripts' ``decoder=True``): 548
    state-dict keys, 35,592,263 parameters. The official constructor default ``decoder=False``
    builds a network whose forward cannot run (its ``up4_3`` expects 4d channels but gets 8d), so
    here ``decoder=False`` is refused with an explanation; the argument stays so official-style
    option files with ``decoder: true`` work.

    Six official modules are never used in the forward pass: ``chnl_reduce1/2/3`` and
    ``reduce_noise_channel_1/2/3`` (215,296 parameters at the defaults). They are kept
    (``keep_unused_modules=True``) so official checkpoints load with ``strict=True``, and frozen
    (``requires_grad=False``): they would never get a gradient anyway, and DDP reduces only parameters
    that require one, so DDP trains PromptIR with ``find_unused_parameters: false`` (no extra graph
    traversal per step) while the replicas stay identical (DDP still broadcasts them at the start).
    With ``keep_unused_modules=False`` they are not built, but official checkpoints then need
    ``strict_load_g: false`` or conversion with ``--allow-mismatch``.

    Ablation options (the defaults are the official network and keys):

    * ``prompt_learnable`` (True): False keeps every prompt block's components (``prompt<i>.prompt_param``)
      fixed at their random initialisation: saved in the state dict, never trained (the weights that
      mix them, ``linear_layer``, still learn).
    * ``prompt_levels`` ([4, 3, 2]): the decoder levels that get a prompt block, in the paper's numbering
      (the table above): 4 = the latent (H/8; modules ``prompt3``, ``noise_level3``, ``reduce_noise_level3``),
      3 = after ``decoder_level3`` (H/4; ``prompt2``, ...), 2 = after ``decoder_level2`` (H/2; ``prompt1``,
      ...); the module index is the level minus one. The paper's ablation compares [4] (latent only),
      [4, 3] and [4, 3, 2]. A level without a prompt block has neither the block nor its interaction
      TransformerBlock; at level 4 the 1x1 ``reduce_noise_level3`` stays (8d -> 4d, the width the
      decoder expects), at levels 3 and 2 the features pass unchanged. ``[]`` leaves PromptIR's decoder
      without prompts.
    * ``prompt_source`` ('pgm'): where the weights over the components come from. 'pgm': each block's
      ``linear_layer`` reads the global average of its features (the paper's prompt generation
      module). 'cbde': one contrastive degradation encoder (AirNet's CBDE, :class:`.airnet_arch.CBDE`,
      keys ``cbde.E.*``) encodes the degraded input image into a (B, cbde_widths[-1]) vector, which every
      block's ``linear_layer`` reads instead; it is trained with AirNet's MoCo loss
      (``model_type: ContrastiveModel``, two crops per sample). ``cbde_widths`` (its three ResBlock
      widths), ``cbde_dim`` (MoCo projection size) and ``cbde_queue_size`` (negatives) set its size.

    With ``prompt_source: cbde``, the training forward follows AirNet's contract: ``forward(x, x_key)``
    (x_key: a second crop of the same degraded image) returns ``(restored, logits, labels)`` and
    updates the key encoder and the queue; :meth:`contrastive` runs the encoder alone. In eval mode, or
    without ``x_key``, forward returns the restored image only.

    Features run in channels-last memory (see :mod:`.restormer_blocks`). For activation
    checkpointing (``set_grad_checkpointing(True)``, option ``train: grad_checkpoint``) the stages are
    the encoder's and decoder's transformer stages and each prompted level (prompt block, interaction
    block and 1x1 conv as one); the refinement, run last, is not recomputed.
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
                 prompt_len=5,
                 prompt_dims=(64, 128, 320),
                 prompt_sizes=(64, 32, 16),
                 keep_unused_modules=True,
                 prompt_learnable=True,
                 prompt_levels=(4, 3, 2),
                 prompt_source='pgm',
                 cbde_widths=(64, 128, 256),
                 cbde_dim=256,
                 cbde_queue_size=1280):
        super().__init__()
        if not decoder:
            raise ValueError(
                'PromptIR(decoder=False) is the official constructor default, but that network cannot run '
                '(no prompt blocks, and up4_3 then receives 8*dim channels where it expects 4*dim). Every '
                'official script uses decoder=True, which is the default here.')
        problems = prompt_option_problems(prompt_levels, prompt_source)
        if problems:
            raise ValueError('PromptIR: ' + '; '.join(problems))
        stage = dict(ffn_expansion_factor=ffn_expansion_factor, bias=bias, LayerNorm_type=LayerNorm_type)
        d = dim
        p1, p2, p3 = prompt_dims
        self.decoder = decoder
        self.prompt_levels = tuple(prompt_levels)
        prompted = {PROMPT_LEVELS[level] for level in prompt_levels}  # module indices 1..3

        # Prompt blocks, named by the module index of the level they serve: prompt1 at H/2 (2d features),
        # prompt2 at H/4 (4d), prompt3 at the latent H/8 (8d). lin_dim = the size of what they read.
        self.cbde = None
        if prompt_source == 'cbde':
            self.cbde = CBDE(encoder_kwargs=dict(in_channels=inp_channels, widths=tuple(cbde_widths)),
                             moco_dim=cbde_dim, queue_size=cbde_queue_size)
        for i, (p, size, width) in enumerate(zip(prompt_dims, prompt_sizes, (d * 2, d * 4, d * 8)), start=1):
            if i in prompted:
                lin_dim = cbde_widths[-1] if self.cbde is not None else width
                setattr(self, f'prompt{i}', PromptGenBlock(p, prompt_len, size, lin_dim, learnable=prompt_learnable))

        if keep_unused_modules:
            # Never called in forward; present in the official state dict (see class docstring).
            # At the defaults: 64->64, 128->128, 320->256, 112->48, 224->96, 448->192.
            self.chnl_reduce1 = nn.Conv2d(p1, p1, kernel_size=1, bias=bias)
            self.chnl_reduce2 = nn.Conv2d(p2, p2, kernel_size=1, bias=bias)
            self.chnl_reduce3 = nn.Conv2d(p3, p2 * 2, kernel_size=1, bias=bias)
            self.reduce_noise_channel_1 = nn.Conv2d(d + p1, d, kernel_size=1, bias=bias)
            self.reduce_noise_channel_2 = nn.Conv2d(d * 2 + p2, d * 2, kernel_size=1, bias=bias)
            self.reduce_noise_channel_3 = nn.Conv2d(d * 4 + p2 * 2, d * 4, kernel_size=1, bias=bias)
            for name in UNUSED_OFFICIAL_MODULES:  # out of DDP's reducer and the optimizer (class docstring)
                getattr(self, name).requires_grad_(False)

        # Encoder: Restormer's.
        self.build_encoder(inp_channels, d, num_blocks, heads, **stage)

        # Decoder with prompt interaction at the prompted levels (all interaction blocks use heads[2],
        # as the official code does).
        self._build_interaction(3, prompted, d * 8, p3, d * 4, heads[2], bias, stage)
        self.up4_3 = Upsample(d * 4)
        self.reduce_chan_level3 = nn.Conv2d(d * 2 + d * 4, d * 4, kernel_size=1, bias=bias)
        self.decoder_level3 = transformer_stage(d * 4, heads[2], num_blocks[2], **stage)

        self._build_interaction(2, prompted, d * 4, p2, d * 4, heads[2], bias, stage)
        self.up3_2 = Upsample(d * 4)
        self.reduce_chan_level2 = nn.Conv2d(d * 4, d * 2, kernel_size=1, bias=bias)
        self.decoder_level2 = transformer_stage(d * 2, heads[1], num_blocks[1], **stage)

        self._build_interaction(1, prompted, d * 2, p1, d * 2, heads[2], bias, stage)
        self.up2_1 = Upsample(d * 2)
        self.decoder_level1 = transformer_stage(d * 2, heads[0], num_blocks[0], **stage)
        self.refinement = transformer_stage(d * 2, heads[0], num_refinement_blocks, **stage)
        self.output = nn.Conv2d(d * 2, out_channels, kernel_size=3, padding=1, bias=bias)

    def _build_interaction(self, i, prompted, channels, prompt_dim, out_channels, num_heads, bias, stage):
        """``noise_level<i>`` (TransformerBlock on features ++ prompt) and ``reduce_noise_level<i>`` (1x1 to
        ``out_channels``) of a prompted level; an unprompted one keeps only a 1x1 conv where the width changes."""
        if i in prompted:
            setattr(self, f'noise_level{i}', TransformerBlock(channels + prompt_dim, num_heads, **stage))
            setattr(self, f'reduce_noise_level{i}', nn.Conv2d(channels + prompt_dim, out_channels, 1, bias=bias))
        elif channels != out_channels:
            setattr(self, f'reduce_noise_level{i}', nn.Conv2d(channels, out_channels, 1, bias=bias))

    # ---- what the rest of the package knows about PromptIR (archs/arch_api.py) --------------------------
    size_multiple = 8  # three 2x downsamplings: every level must see an even size
    # Restormer's key plus one every PromptIR variant has (its prompt levels may not)
    weight_signature = ('patch_embed.proj.weight', 'reduce_noise_level3.weight')
    # The prompt weights come from pooled features (or a pooled encoding): a tile sees only its own degradation.
    # float16 / bfloat16 measured on the CPU at the official configuration with random weights and a 64x64
    # input: within 1.0e-3 (fp16) and 7.7e-3 (bf16) of float32.
    spandrel_supports_half = True
    spandrel_supports_bfloat16 = True
    spandrel_tiling = 'discouraged'

    @classmethod
    def options_from_weights(cls, state_dict):
        sd = state_dict
        present = {i: sd[f'prompt{i}.prompt_param'] for i in (1, 2, 3) if f'prompt{i}.prompt_param' in sd}
        # the prompt interaction blocks use heads[2] (as the official code does)
        options = restormer_body_options(sd, [(2, f'noise_level{i}.attn.temperature') for i in present])
        # An absent level's prompt width is read from the unused official modules when they are kept; otherwise
        # it leaves no trace in the weights (and builds nothing), so the default stays.
        unused_widths = {1: ('chnl_reduce1.weight', 0), 2: ('chnl_reduce2.weight', 0), 3: ('chnl_reduce3.weight', 1)}
        dims, sizes = [64, 128, 320], [64, 32, 16]
        for i in (1, 2, 3):
            key, axis = unused_widths[i]
            if i in present:  # (1, len, dim, size, size)
                dims[i - 1], sizes[i - 1] = int(present[i].shape[2]), int(present[i].shape[3])
            elif key in sd:
                dims[i - 1] = int(sd[key].shape[axis])
        options.update(
            decoder=True,
            prompt_len=int(next(iter(present.values())).shape[1]) if present else 5,
            prompt_dims=dims,
            prompt_sizes=sizes,
            keep_unused_modules='chnl_reduce1.weight' in sd,
            prompt_levels=[level for level, i in PROMPT_LEVELS.items() if i in present],
            prompt_source='cbde' if 'cbde.E.encoder_q.mlp.2.weight' in sd else 'pgm',
        )
        if options['prompt_source'] == 'cbde':
            options['cbde_widths'], options['cbde_dim'] = res_encoder_options(sd, 'cbde.E.encoder_q')
            if 'cbde.E.queue' in sd:  # training-only; files without it get the default queue
                options['cbde_queue_size'] = int(sd['cbde.E.queue'].shape[1])
        return options

    @classmethod
    def adapt_weights(cls, state_dict, target_state_dict, notes):
        return adapt_moco_queues(state_dict, target_state_dict, notes)  # the CBDE variant's queue

    @classmethod
    def option_problems(cls, options):
        """Problems of the values of ``network_g`` (checked before a run by the option schema)."""
        return prompt_option_problems(options.get('prompt_levels', (4, 3, 2)), options.get('prompt_source', 'pgm'))

    @staticmethod
    def uses_contrastive_encoder(options):
        """True when ``network_g`` options build a degradation encoder trained by a contrastive loss."""
        return options.get('prompt_source', 'pgm') == 'cbde'

    @classmethod
    def spandrel_tags(cls, options):
        return [f'{options["dim"]}dim', f'{options["prompt_len"]}prompts']

    def _prompted(self, i, features, embedding=None):
        """Level with module index ``i``: features ++ prompt(features) -> interaction block -> 1x1 conv.
        Without a prompt block only the 1x1 conv (if any) runs."""
        prompt_block = getattr(self, f'prompt{i}', None)
        reduce = getattr(self, f'reduce_noise_level{i}', None)
        if prompt_block is not None:
            features = getattr(self, f'noise_level{i}')(torch.cat([features, prompt_block(features, embedding)], 1))
        return features if reduce is None else reduce(features)

    def contrastive(self, x_query, x_key):
        """The degradation encoder alone (``prompt_source: cbde``): ``(logits (B, 1+K), labels (B,))``; updates
        the key encoder and the queue (AirNet's encoder stage)."""
        if self.cbde is None:
            raise RuntimeError('PromptIR.contrastive needs prompt_source: cbde (a contrastive degradation encoder)')
        _, logits, labels = self.cbde.E.contrast(x_query, x_key)
        return logits, labels

    def _prompted_level(self, i):
        """The prompt step of the level with module index ``i`` as one callable stage (for run_stage)."""
        return functools.partial(self._prompted, i)

    def forward(self, inp_img, x_key=None):
        x, (h, w) = pad_to_multiple(inp_img, self.size_multiple)

        embedding, contrast = None, ()
        if self.cbde is not None:  # the degradation encoder reads the image as it came (AirNet's too)
            if self.training and x_key is not None:
                (embedding, _, _), *contrast = self.cbde.E.contrast(inp_img, x_key)
            else:
                embedding = self.cbde.E.encoder_q(inp_img)[0]

        _, enc1, enc2, enc3, latent = self.encode(x)

        latent = self.run_stage(self._prompted_level(3), latent, embedding)
        dec3 = self.run_stage(self.decoder_level3, self.reduce_chan_level3(torch.cat([self.up4_3(latent), enc3], 1)))
        dec3 = self.run_stage(self._prompted_level(2), dec3, embedding)
        dec2 = self.run_stage(self.decoder_level2, self.reduce_chan_level2(torch.cat([self.up3_2(dec3), enc2], 1)))
        dec2 = self.run_stage(self._prompted_level(1), dec2, embedding)
        dec1 = self.run_stage(self.decoder_level1, torch.cat([self.up2_1(dec2), enc1], 1))
        dec1 = self.run_stage(self.refinement, dec1, last=True)

        out = self.output(dec1) + x
        out = (out[..., :h, :w] if out.shape[-2:] != (h, w) else out).contiguous()
        return (out, *contrast) if contrast else out
