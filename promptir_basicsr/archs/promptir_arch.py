"""PromptIR (Potlapalli et al., NeurIPS 2023) as a basicsr arch: ``type: PromptIR``.

A Restormer encoder (blocks shared from :mod:`.restormer_blocks`) whose decoder is conditioned on
the degradation by three prompt blocks: each looks at the decoder features, mixes ``prompt_len``
learned prompt tensors with weights predicted from those features, and the result is concatenated
to the features and fused by one extra TransformerBlock ("prompt interaction") plus a 1x1 conv.
"""
import functools

from basicsr.utils.registry import ARCH_REGISTRY
import torch
import torch.nn.functional as F
from torch import nn

from ..utils.tiling import pad_to_multiple
from .restormer_blocks import RestormerEncoder, TransformerBlock, Upsample, channels_last, transformer_stage

# Three 2x downsamplings: every level must see an even size.
SIZE_MULTIPLE = 8
# In the official state dict, never called by forward (see PromptIR's docstring).
UNUSED_OFFICIAL_MODULES = ('chnl_reduce1', 'chnl_reduce2', 'chnl_reduce3', 'reduce_noise_channel_1',
                           'reduce_noise_channel_2', 'reduce_noise_channel_3')


class PromptGenBlock(nn.Module):
    """Prompt generation: features (B, lin_dim, h, w) -> prompt (B, prompt_dim, h, w).

    ``prompt_param`` holds ``prompt_len`` learned components of (prompt_dim, S, S), S=prompt_size.
    Weights = softmax(Linear(global average of the features)) over the components; their weighted
    sum is resized (bilinear) to the feature size and passed through a 3x3 conv.

    The components are used as a Parameter in the graph, so they receive gradients (the official
    code before commit 20eff77 read ``.data`` and never trained them).
    """

    def __init__(self, prompt_dim=128, prompt_len=5, prompt_size=96, lin_dim=192):
        super().__init__()
        # (1, len, D, S, S): the official shape, kept so checkpoints load; uniform [0, 1) like theirs.
        self.prompt_param = nn.Parameter(torch.rand(1, prompt_len, prompt_dim, prompt_size, prompt_size))
        self.linear_layer = nn.Linear(lin_dim, prompt_len)
        self.conv3x3 = nn.Conv2d(prompt_dim, prompt_dim, kernel_size=3, padding=1, bias=False)

    def forward(self, x):
        h, w = x.shape[-2:]
        weights = F.softmax(self.linear_layer(x.mean(dim=(-2, -1))), dim=1)  # (B, len)
        # Weighted sum over the components as one matmul instead of materialising (B, len, D, S, S).
        components = self.prompt_param[0]  # (len, D, S, S)
        prompt = (weights @ components.flatten(1)).view(-1, *components.shape[1:])  # (B, D, S, S)
        prompt = channels_last(prompt)  # the layout of the features it joins
        if prompt.shape[-2:] != (h, w):  # at S == size, bilinear (align_corners=False) is the identity
            prompt = F.interpolate(prompt, (h, w), mode='bilinear', align_corners=False)
        return self.conv3x3(prompt)


@ARCH_REGISTRY.register()
class PromptIR(RestormerEncoder, nn.Module):
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
    ++ prompt3(latent)              (B, 8d+p3, H8/8, ..)  noise_level3 block (heads[2])
    reduce_noise_level3             (B, 4d, H8/8, W8/8)   1x1; note: 4d, not 8d as in Restormer
    up4_3, ++enc3, reduce 1x1       (B, 4d, H8/4, W8/4)   (2d+4d -> 4d), then decoder_level3
    ++ prompt2, noise_level2, 1x1   (B, 4d, H8/4, W8/4)   (4d+p2 -> 4d)
    up3_2, ++enc2, reduce 1x1       (B, 2d, H8/2, W8/2)   (4d -> 2d), then decoder_level2
    ++ prompt1, noise_level1, 1x1   (B, 2d, H8/2, W8/2)   (2d+p1 -> 2d)
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
                 keep_unused_modules=True):
        super().__init__()
        if not decoder:
            raise ValueError(
                'PromptIR(decoder=False) is the official constructor default, but that network cannot run '
                '(no prompt blocks, and up4_3 then receives 8*dim channels where it expects 4*dim). Every '
                'official script uses decoder=True, which is the default here.')
        stage = dict(ffn_expansion_factor=ffn_expansion_factor, bias=bias, LayerNorm_type=LayerNorm_type)
        d = dim
        p1, p2, p3 = prompt_dims
        self.decoder = decoder

        # Prompt blocks, named by the level they serve: prompt1 at H/2 (2d features), prompt2 at
        # H/4 (4d), prompt3 at the latent H/8 (8d). lin_dim = channels of the features they read.
        self.prompt1 = PromptGenBlock(p1, prompt_len, prompt_sizes[0], lin_dim=d * 2)
        self.prompt2 = PromptGenBlock(p2, prompt_len, prompt_sizes[1], lin_dim=d * 4)
        self.prompt3 = PromptGenBlock(p3, prompt_len, prompt_sizes[2], lin_dim=d * 8)

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

        # Decoder with prompt interaction at each level (all three interaction blocks use heads[2],
        # as the official code does).
        self.noise_level3 = TransformerBlock(d * 8 + p3, heads[2], **stage)
        self.reduce_noise_level3 = nn.Conv2d(d * 8 + p3, d * 4, kernel_size=1, bias=bias)
        self.up4_3 = Upsample(d * 4)
        self.reduce_chan_level3 = nn.Conv2d(d * 2 + d * 4, d * 4, kernel_size=1, bias=bias)
        self.decoder_level3 = transformer_stage(d * 4, heads[2], num_blocks[2], **stage)

        self.noise_level2 = TransformerBlock(d * 4 + p2, heads[2], **stage)
        self.reduce_noise_level2 = nn.Conv2d(d * 4 + p2, d * 4, kernel_size=1, bias=bias)
        self.up3_2 = Upsample(d * 4)
        self.reduce_chan_level2 = nn.Conv2d(d * 4, d * 2, kernel_size=1, bias=bias)
        self.decoder_level2 = transformer_stage(d * 2, heads[1], num_blocks[1], **stage)

        self.noise_level1 = TransformerBlock(d * 2 + p1, heads[2], **stage)
        self.reduce_noise_level1 = nn.Conv2d(d * 2 + p1, d * 2, kernel_size=1, bias=bias)
        self.up2_1 = Upsample(d * 2)
        self.decoder_level1 = transformer_stage(d * 2, heads[0], num_blocks[0], **stage)
        self.refinement = transformer_stage(d * 2, heads[0], num_refinement_blocks, **stage)
        self.output = nn.Conv2d(d * 2, out_channels, kernel_size=3, padding=1, bias=bias)

    @staticmethod
    def _prompted(features, prompt_block, interaction, reduce):
        """features ++ prompt(features) -> interaction TransformerBlock -> 1x1 conv."""
        return reduce(interaction(torch.cat([features, prompt_block(features)], 1)))

    def _prompted_level(self, level):
        """The prompt step of decoder level 3, 2 or 1 as one callable stage (for run_stage)."""
        return functools.partial(self._prompted, prompt_block=getattr(self, f'prompt{level}'),
                                 interaction=getattr(self, f'noise_level{level}'),
                                 reduce=getattr(self, f'reduce_noise_level{level}'))

    def forward(self, inp_img):
        x, (h, w) = pad_to_multiple(inp_img, SIZE_MULTIPLE)

        _, enc1, enc2, enc3, latent = self.encode(x)

        latent = self.run_stage(self._prompted_level(3), latent)
        dec3 = self.run_stage(self.decoder_level3, self.reduce_chan_level3(torch.cat([self.up4_3(latent), enc3], 1)))
        dec3 = self.run_stage(self._prompted_level(2), dec3)
        dec2 = self.run_stage(self.decoder_level2, self.reduce_chan_level2(torch.cat([self.up3_2(dec3), enc2], 1)))
        dec2 = self.run_stage(self._prompted_level(1), dec2)
        dec1 = self.run_stage(self.decoder_level1, torch.cat([self.up2_1(dec2), enc1], 1))
        dec1 = self.run_stage(self.refinement, dec1, last=True)

        out = self.output(dec1) + x
        return (out[..., :h, :w] if out.shape[-2:] != (h, w) else out).contiguous()
