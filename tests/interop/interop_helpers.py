"""Tiny, non-default networks for the interop tests, and the files spandrel and `basicsr export` read."""
import torch
from basicsr.archs import build_network

# Non-default hyper-parameters everywhere: widths, heads, ffn factor, bias, norm type, prompt sizes, channels.
PROMPTIR = dict(type='PromptIR', dim=8, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1, heads=[1, 2, 1, 2],
                ffn_expansion_factor=2.0, bias=True, prompt_len=3, prompt_dims=[4, 8, 8], prompt_sizes=[4, 4, 2])
RESTORMER = dict(type='Restormer', dim=8, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1, heads=[1, 2, 2, 4],
                 ffn_expansion_factor=1.5, LayerNorm_type='BiasFree', inp_channels=1, out_channels=1)
AIRNET = dict(type='AirNet', n_feats=8, n_groups=1, n_blocks=2, encoder_widths=[8, 16], moco_dim=8, queue_size=12)
AIRNET_GRAY = dict(AIRNET, inp_channels=1, out_channels=1)


def built(opt, seed=0):
    """The network of ``opt`` in eval mode, every parameter moved away from its initialisation.

    AirNet's offset predictor starts at zero, which makes its deformable convolution a plain one: a
    wrong offset layout would then go unnoticed. The perturbation gives offsets of about a pixel.
    """
    torch.manual_seed(seed)
    net = build_network(dict(opt)).eval()
    with torch.no_grad():
        for param in net.parameters():
            param.add_(0.05 * torch.randn_like(param))
    return net


def image(channels, height, width, seed=0, batch=1):
    """A seeded image batch in [0, 1]."""
    return torch.rand(batch, channels, height, width, generator=torch.Generator().manual_seed(seed))


def run(net, x):
    with torch.inference_mode():
        return net(x)
