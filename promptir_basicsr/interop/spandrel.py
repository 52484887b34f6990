"""spandrel support for every registered architecture that can be read from its weights.

    import spandrel
    from promptir_basicsr.interop.spandrel import install
    install()                                    # once per process, like spandrel_extra_arches.install()
    model = spandrel.ModelLoader().load_from_file('net_g_latest.pth')
    restored = model(image)                      # (1, C, H, W) in [0, 1]

spandrel is the architecture-detecting loader behind chaiNNer and ComfyUI. It has no PromptIR or
AirNet (its main package takes only permissively licensed architectures, and PromptIR's code and
weights are non-commercial); Restormer is in ``spandrel_extra_arches``, which loads our Restormer
weights as they are (so Restormer declares ``spandrel_native``).

One path from weights to network, shared with ``basicsr restore``: :func:`install` adds one spandrel
architecture per registered network class that declares a ``weight_signature`` (``archs/arch_api.py``):
the architecture is told from the keys by :func:`~promptir_basicsr.archs.arch_api.detect_arch` (as
``basicsr convert`` does), its options are read by the class's ``options_from_weights``, and the network is
built by basicsr's ``build_network``: what spandrel returns wraps our own network class. A plugin's network
imported before :func:`install` is added the same way. The files spandrel reads this way: basicsr ``.pth`` (it
unwraps ``params_ema``, else ``params``), our ``.safetensors`` exports, official Lightning ``.ckpt`` files
(keys ``net.*``) and the official AirNet ``.pth``.
"""
from basicsr.archs import build_network

from . import require

require('spandrel', 'spandrel support')

from spandrel import (MAIN_REGISTRY, Architecture, ArchRegistry, ArchSupport,  # noqa: E402
                      ImageModelDescriptor, ModelTiling, SizeRequirements)

from ..archs.arch_api import (declaration, detect_arch, options_from_weights,  # noqa: E402
                              registered_archs, size_multiple)
from ..errors import CheckpointError  # noqa: E402
from ..weights.state_dict import extract_state_dict  # noqa: E402


def _network_weights(state_dict):
    """The network's keys (prefixes 'net.' of PromptIR's Lightning file and 'module.' removed), or None
    when the dict is no state dict of ours at all (spandrel asks every architecture about every file)."""
    try:
        return extract_state_dict(state_dict)[0]
    except CheckpointError:
        return None


class BasicsrArchitecture(Architecture):
    """One of our registered architectures as spandrel sees it: detection, loading, and the descriptor's
    metadata, all from the class's declarations (``archs/arch_api.py``)."""

    def __init__(self, arch):
        super().__init__(id=arch, detect=self._is_ours)

    def _is_ours(self, state_dict):
        weights = _network_weights(state_dict)
        try:
            return weights is not None and detect_arch(weights) == self.id
        except CheckpointError:  # the keys of two architectures alike: not ours to guess
            return False

    def load(self, state_dict):
        weights = _network_weights(state_dict)
        network_opt = options_from_weights(weights, self.id)
        net = build_network(dict(network_opt)).eval()  # inference (AirNet's batch norms use their statistics)
        channels = network_opt.get('inp_channels', 3), network_opt.get('out_channels', 3)
        return ImageModelDescriptor(
            net, weights, architecture=self, purpose='Restoration', 
            tags=declaration(self.id, 'spandrel_tags')(network_opt),
            supports_half=declaration(self.id, 'spandrel_supports_half'),
            supports_bfloat16=declaration(self.id, 'spandrel_supports_bfloat16'), scale=1,
            input_channels=channels[0], output_channels=channels[1],
            # The networks pad themselves; declaring the multiple lets tilers pick tiles that need none.
            size_requirements=SizeRequirements(multiple_of=size_multiple(net)),
            tiling=ModelTiling[declaration(self.id, 'spandrel_tiling').upper()])


def spandrel_architectures():
    """A spandrel architecture for each registered network class that declares a ``weight_signature`` and is
    not loaded by spandrel itself (``spandrel_native``), most specific signature first."""
    archs = [(len(cls.weight_signature), name) for name, cls in registered_archs().items()
             if getattr(cls, 'weight_signature', ()) and not declaration(cls, 'spandrel_native')]
    return [BasicsrArchitecture(name) for _, name in sorted(archs, key=lambda item: (-item[0], item[1]))]


def spandrel_registry():
    """A spandrel ``ArchRegistry`` of :func:`spandrel_architectures`, each placed before spandrel_extra_arches'
    Restormer (their keys include every key its detection asks for)."""
    registry = ArchRegistry()
    registry.add(*(ArchSupport.from_architecture(arch, before=('Restormer', )) for arch in spandrel_architectures()))
    return registry


def install(*, ignore_duplicates=False):
    """Add our architectures (:func:`spandrel_registry`) to spandrel's main registry, what
    ``spandrel.ModelLoader()`` uses.

    Returns the added entries. As ``spandrel_extra_arches.install``: with ``ignore_duplicates`` an id
    already present is kept (not replaced) instead of raising ``DuplicateArchitectureError``.
    """
    return MAIN_REGISTRY.add(*spandrel_registry(), ignore_duplicates=ignore_duplicates)
