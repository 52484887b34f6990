"""spandrel support for PromptIR and AirNet: after :func:`install`, spandrel loads our weights.

    import spandrel
    from promptir_basicsr.interop.spandrel import install
    install()                                    # once per process, like spandrel_extra_arches.install()
    model = spandrel.ModelLoader().load_from_file('net_g_latest.pth')
    restored = model(image)                      # (1, C, H, W) in [0, 1]

spandrel is the architecture-detecting loader behind chaiNNer and ComfyUI. It has no PromptIR or
AirNet (its main package takes only permissively licensed architectures, and PromptIR's code and
weights are non-commercial); Restormer is in ``spandrel_extra_arches``, which loads our Restormer
weights as they are.

One path from weights to network, shared with ``basicsr restore``: the architecture is told from the
keys by :func:`~promptir_basicsr.utils.checkpoints.detect_arch` (as ``basicsr convert`` does), its
hyper-parameters are read by :func:`~promptir_basicsr.inference.infer_network_options`, and the network
is built by basicsr's ``build_network``: what spandrel returns wraps our own network class. The files
spandrel reads this way: basicsr ``.pth`` (it unwraps ``params_ema``, else ``params``), our
``.safetensors`` and TorchScript ``.pt`` exports, the official PromptIR Lightning ``.ckpt`` (keys
``net.*``) and the official AirNet ``.pth``.
"""
from basicsr.archs import build_network

from . import require

require('spandrel', 'spandrel support')

from spandrel import (MAIN_REGISTRY, Architecture, ArchRegistry, ArchSupport,  # noqa: E402
                      ImageModelDescriptor, ModelTiling, SizeRequirements)

from ..inference import infer_network_options, size_multiple  # noqa: E402
from ..utils.checkpoints import CheckpointError, detect_arch, extract_state_dict  # noqa: E402


def _network_weights(state_dict):
    """The network's keys (prefixes 'net.' of PromptIR's Lightning file and 'module.' removed), or None
    when the dict is no state dict of ours at all (spandrel asks every architecture about every file)."""
    try:
        return extract_state_dict(state_dict)[0]
    except CheckpointError:
        return None


class BasicsrArchitecture(Architecture):
    """One of our architectures as spandrel sees it: detection, loading, and the descriptor's metadata.

    Args:
        arch: the basicsr registry name (also spandrel's id).
        tags: ``fn(network_opt) -> [str]``, spandrel's short size tags.
        supports_half, supports_bfloat16: whether the network runs in float16 / bfloat16.
        tiling: spandrel's tiling advice for the network.
    """

    def __init__(self, arch, tags, supports_half, supports_bfloat16, tiling):
        super().__init__(id=arch, detect=self._is_ours)
        self._tags = tags
        self._supports_half = supports_half
        self._supports_bfloat16 = supports_bfloat16
        self._tiling = tiling

    def _is_ours(self, state_dict):
        weights = _network_weights(state_dict)
        return weights is not None and detect_arch(weights) == self.id

    def load(self, state_dict):
        weights = _network_weights(state_dict)
        network_opt = infer_network_options(weights)
        net = build_network(dict(network_opt)).eval()  # inference (AirNet's batch norms use their statistics)
        return ImageModelDescriptor(
            net, weights, architecture=self, purpose='Restoration', tags=self._tags(network_opt),
            supports_half=self._supports_half, supports_bfloat16=self._supports_bfloat16, scale=1,
            input_channels=network_opt['inp_channels'], output_channels=network_opt['out_channels'],
            # PromptIR pads to a multiple of 8 itself; declaring it lets tilers pick tiles that need none.
            size_requirements=SizeRequirements(multiple_of=size_multiple(net)), tiling=self._tiling)


# Both networks derive a global degradation code from the whole input (PromptIR: prompt weights from
# pooled features; AirNet: a pooled contrastive encoding), so a tile sees only its own degradation:
# tiling works but is discouraged. float16 and bfloat16: measured on the CPU at the official
# configurations with their initial (random) weights and a 64x64 input, outputs within 1.0e-3 (fp16;
# PromptIR and AirNet) and 7.7e-3 (bf16, PromptIR) of float32; AirNet's deformable convolution
# (torchvision's deform_conv2d) has no bfloat16 kernel.
PROMPTIR = BasicsrArchitecture('PromptIR', tags=lambda opt: [f'{opt["dim"]}dim', f'{opt["prompt_len"]}prompts'],
                               supports_half=True, supports_bfloat16=True, tiling=ModelTiling.DISCOURAGED)
AIRNET = BasicsrArchitecture('AirNet', tags=lambda opt: [f'{opt["n_feats"]}nf'],
                             supports_half=True, supports_bfloat16=False, tiling=ModelTiling.DISCOURAGED)

#: Our architectures for spandrel. PromptIR's keys include every key that spandrel_extra_arches'
#: Restormer detection asks for, so PromptIR is detected before it.
PROMPTIR_BASICSR_REGISTRY = ArchRegistry()
PROMPTIR_BASICSR_REGISTRY.add(ArchSupport.from_architecture(PROMPTIR, before=('Restormer',)),
                              ArchSupport.from_architecture(AIRNET))


def install(*, ignore_duplicates=False):
    """Add PromptIR and AirNet to spandrel's main registry (what ``spandrel.ModelLoader()`` uses).

    Returns the added entries. As ``spandrel_extra_arches.install``: with ``ignore_duplicates`` an id
    already present is kept (not replaced) instead of raising ``DuplicateArchitectureError``.
    """
    return MAIN_REGISTRY.add(*PROMPTIR_BASICSR_REGISTRY, ignore_duplicates=ignore_duplicates)
