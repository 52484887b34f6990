"""Restormer (Zamir et al., CVPR 2022) as a basicsr arch: ``type: Restormer``.

The building blocks (layer norm, MDTA, GDFN, TransformerBlock, patch embedding, resizing) live in
:mod:`.restormer_blocks` and are shared with PromptIR. Argument and module names are the official
ones, so official option files and ``{'params': ...}`` checkpoints work unchanged.
"""
from basicsr.utils.registry import ARCH_REGISTRY
import torch
from torch import nn

from ..utils.tiling import pad_to_multiple
from .arch_api import RestorationArch
from .restormer_blocks import RestormerEncoder, Upsample, restormer_body_options, transformer_stage


@ARCH_REGISTRY.register()
class Restormer(RestormerEncoder, RestorationArch, nn.Module):
    """Four-level U-shaped transformer. With ``d = dim`` and an input (B, inp_channels, H, W):

    ============================  =====================  ==========================================
    stage                         output shape            note
    ============================  =====================  ==========================================
    pad (reflect)                 (B, in, H8, W8)         H8, W8: H, W rounded up to multiples of 8
    patch_embed                   (B, d, H8, W8)          3x3 conv
    encoder_level1                (B, d, H8, W8)          num_blocks[0] blocks, heads[0]
    down1_2 + encoder_level2      (B, 2d, H8/2, W8/2)     num_blocks[1], heads[1]
    down2_3 + encoder_level3      (B, 4d, H8/4, W8/4)     num_blocks[2], heads[2]
    down3_4 + latent              (B, 8d, H8/8, W8/8)     num_blocks[3], heads[3]
    up4_3, ++enc3, reduce 1x1     (B, 4d, H8/4, W8/4)     then decoder_level3 (num_blocks[2])
    up3_2, ++enc2, reduce 1x1     (B, 2d, H8/2, W8/2)     then decoder_level2 (num_blocks[1])
    up2_1, ++enc1                 (B, 2d, H8, W8)         no reduction; decoder_level1 (num_blocks[0])
    refinement                    (B, 2d, H8, W8)         num_refinement_blocks, heads[0]
    output (+ input image)        (B, out, H, W)          3x3 conv, global residual, crop back
    ============================  =====================  ==========================================

    ``dual_pixel_task`` (defocus deblurring from two views, inp_channels 6): the refinement output
    gets ``skip_conv(patch embedding)`` added and there is no image residual.

    Defaults are the official configuration: 26,126,644 parameters, 494 state-dict keys. Features
    run in channels-last memory (see :mod:`.restormer_blocks`); the output is a contiguous tensor.
    ``set_grad_checkpointing(True)`` (option ``train: grad_checkpoint``) checkpoints every
    transformer stage but the last (:mod:`.grad_checkpoint`).
    """

    size_multiple = 8  # three 2x downsamplings: every level must see an even size
    weight_signature = ('patch_embed.proj.weight', )  # PromptIR and the networks built on it add their keys
    spandrel_native = True  # spandrel_extra_arches loads Restormer's weights as they are

    @classmethod
    def options_from_weights(cls, state_dict):
        options = restormer_body_options(state_dict)
        options['dual_pixel_task'] = 'skip_conv.weight' in state_dict
        return options

    def __init__(self,
                 inp_channels=3,
                 out_channels=3,
                 dim=48,
                 num_blocks=(4, 6, 6, 8),
                 num_refinement_blocks=4,
                 heads=(1, 2, 4, 8),
                 ffn_expansion_factor=2.66,
                 bias=False,
                 LayerNorm_type='WithBias',  # noqa: N803 (official name; 'BiasFree' for its denoisers)
                 dual_pixel_task=False):
        super().__init__()
        stage = dict(ffn_expansion_factor=ffn_expansion_factor, bias=bias, LayerNorm_type=LayerNorm_type)
        d = dim
        self.dual_pixel_task = dual_pixel_task

        self.build_encoder(inp_channels, d, num_blocks, heads, **stage)

        self.up4_3 = Upsample(d * 8)
        self.reduce_chan_level3 = nn.Conv2d(d * 8, d * 4, kernel_size=1, bias=bias)
        self.decoder_level3 = transformer_stage(d * 4, heads[2], num_blocks[2], **stage)
        self.up3_2 = Upsample(d * 4)
        self.reduce_chan_level2 = nn.Conv2d(d * 4, d * 2, kernel_size=1, bias=bias)
        self.decoder_level2 = transformer_stage(d * 2, heads[1], num_blocks[1], **stage)
        self.up2_1 = Upsample(d * 2)  # level 1 keeps 2d channels: no 1x1 reduction here
        self.decoder_level1 = transformer_stage(d * 2, heads[0], num_blocks[0], **stage)
        self.refinement = transformer_stage(d * 2, heads[0], num_refinement_blocks, **stage)

        if dual_pixel_task:
            self.skip_conv = nn.Conv2d(d, d * 2, kernel_size=1, bias=bias)
        self.output = nn.Conv2d(d * 2, out_channels, kernel_size=3, padding=1, bias=bias)

    def forward(self, inp_img):
        x, (h, w) = pad_to_multiple(inp_img, self.size_multiple)

        enc1_in, enc1, enc2, enc3, latent = self.encode(x)

        dec3 = self.run_stage(self.decoder_level3, self.reduce_chan_level3(torch.cat([self.up4_3(latent), enc3], 1)))
        dec2 = self.run_stage(self.decoder_level2, self.reduce_chan_level2(torch.cat([self.up3_2(dec3), enc2], 1)))
        dec1 = self.run_stage(self.decoder_level1, torch.cat([self.up2_1(dec2), enc1], 1))
        dec1 = self.run_stage(self.refinement, dec1, last=True)

        if self.dual_pixel_task:
            out = self.output(dec1 + self.skip_conv(enc1_in))
        else:
            out = self.output(dec1) + x
        return (out[..., :h, :w] if out.shape[-2:] != (h, w) else out).contiguous()
