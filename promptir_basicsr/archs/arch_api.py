"""What the rest of the package asks of an architecture, and where it asks.

An architecture is one file, ``archs/<name>_arch.py``: the network class registered with basicsr's
``@ARCH_REGISTRY.register()``, and on that class everything the rest of the package needs to know about it.
:class:`RestorationArch` lists those declarations with their defaults; a network may inherit it (ours do,
for the docstrings) or simply define the same names (a plugin's network need not import anything of ours):

=========================  ===============================================================================
declaration                used by
=========================  ===============================================================================
``size_multiple``          padding in validation, test, restore and tiling; ONNX metadata; spandrel
``weight_signature``       telling the architecture from a weights file (:func:`detect_arch`)
``options_from_weights``   restore, convert, export, prompts, spandrel: the network rebuilt from weights alone
``adapt_weights``          convert and every load of an official file: its layout -> our keys and shapes
``option_problems``        the option check of ``network_g`` (values the constructor's signature cannot say)
``uses_contrastive_encoder``  the option check: which model trains the network (``ContrastiveModel``)
``tiling_note``            ``basicsr restore`` warns with it when tiles are asked for
``export_options``         options a network is rebuilt with for export (a deterministic variant)
``spandrel_tags`` ...      spandrel's descriptor: tags, float16/bfloat16 support, tiling advice
=========================  ===============================================================================

The functions below find these through basicsr's registry, never through a table of architectures: a new
architecture, ours or a plugin's, is found the moment its module is imported.
"""
import math
import re

from ..errors import CheckpointError


class RestorationArch:
    """The declarations of an architecture (mixin of its ``nn.Module``); see the module docstring.

    Every declaration has a default that suits a network taking any input size whose options cannot be read
    from its weights; override what differs.
    """

    #: input height and width must be multiples of this (the networks pad themselves; tiles are cut to it)
    size_multiple = 1
    #: state-dict keys that together identify this architecture's weights. When several architectures'
    #: signatures are all present (PromptIR's keys include Restormer's), the longest signature wins, so a
    #: network that extends another lists the other's signature plus a key of its own.
    weight_signature = ()
    #: a warning for ``basicsr restore --tile`` (None: tiles are expected to agree with whole images closely)
    tiling_note = None
    #: options a network is rebuilt with for ``basicsr export`` (e.g. a deterministic variant); {} for none
    export_options = {}
    #: spandrel's descriptor: whether the network runs in float16 / bfloat16, and its tiling advice
    #: ('supported', 'discouraged' or 'internal', spandrel's ModelTiling names)
    spandrel_supports_half = False
    spandrel_supports_bfloat16 = False
    spandrel_tiling = 'supported'
    #: True when spandrel (with spandrel_extra_arches) loads this architecture's weights itself, so our
    #: spandrel support does not add it again
    spandrel_native = False

    @classmethod
    def options_from_weights(cls, state_dict):
        """The constructor options that leave a trace in ``state_dict`` (keys, shapes). The network built
        from them has exactly the state dict's keys and shapes; options without a trace keep their defaults.
        A key it needs but cannot find raises ``KeyError`` (reported as a :class:`CheckpointError`)."""
        return {}

    @classmethod
    def adapt_weights(cls, state_dict, target_state_dict, notes):
        """``state_dict`` of an official file (its prefixes removed) made to fit ``target_state_dict`` (the
        network's own), for differences that are not errors (a training-only buffer of another size);
        appends one line per change to ``notes``. Returns the state dict."""
        return state_dict

    @classmethod
    def option_problems(cls, options):
        """What is wrong with the values of ``network_g`` (``options``), beyond names and types."""
        return []

    @staticmethod
    def uses_contrastive_encoder(options):
        """True when ``options`` build a degradation encoder trained by a contrastive loss."""
        return False

    @classmethod
    def spandrel_tags(cls, options):
        """spandrel's short tags for a network of ``options`` (e.g. ``['48dim']``)."""
        return []


def _declared(cls, name):
    """``cls``'s declaration ``name``, or :class:`RestorationArch`'s default for a class that has none."""
    return getattr(cls, name, getattr(RestorationArch, name))


def arch_registry():
    from basicsr.utils.registry import ARCH_REGISTRY
    return ARCH_REGISTRY


def arch_class(name):
    """The registered network class ``name`` (basicsr's ``<name>_basicsr`` fallback too), or None."""
    registry = arch_registry()
    for key in (name, f'{name}_basicsr'):
        if isinstance(name, str) and key in registry:
            return registry.get(key)
    return None


def registered_archs():
    """``{name: class}`` of every registered network class."""
    registry = arch_registry()
    return {name: registry.get(name) for name in sorted(registry.keys()) if isinstance(registry.get(name), type)}


def size_multiple(net):
    """The input size multiple of a network (an instance or a class): its ``size_multiple``, 1 if it has none."""
    return int(getattr(net, 'size_multiple', None) or 1)


def detect_arch(state_dict):
    """The registered architecture whose ``weight_signature`` the keys carry (the longest such signature), or
    None. Two different signatures of the same length that both match make the weights ambiguous
    (:class:`CheckpointError`: the user names the architecture with ``--arch``)."""
    keys = set(state_dict)
    matches = [(len(cls.weight_signature), name) for name, cls in registered_archs().items()
               if _declared(cls, 'weight_signature') and set(cls.weight_signature) <= keys]
    if not matches:
        return None
    matches.sort(reverse=True)
    best = [name for length, name in matches if length == matches[0][0]]
    signatures = {tuple(sorted(registered_archs()[name].weight_signature)) for name in best}
    if len(signatures) > 1:
        raise CheckpointError(f'The weights carry the keys of {" and ".join(best)} alike; name the architecture '
                              'with --arch.')
    return best[0]


def options_from_weights(state_dict, arch=None):
    """``{'type': arch, **options}`` for basicsr's ``build_network``, read from the keys and shapes alone.

    ``arch`` None: detected (:func:`detect_arch`). Raises :class:`CheckpointError` when the architecture cannot
    be told or a key its reader needs is missing."""
    arch = arch or detect_arch(state_dict)
    cls = arch_class(arch) if arch else None
    if cls is None:
        readable = [name for name, c in registered_archs().items() if _declared(c, 'weight_signature')]
        raise CheckpointError(f'Cannot tell the architecture from the weights (known: {", ".join(readable)}); give it '
                              'with --arch/--arch-opt or --opt.')
    try:
        return {'type': arch, **_declared(cls, 'options_from_weights')(state_dict)}
    except KeyError as err:
        raise CheckpointError(f'The weights look like {arch} but lack the key {err}, so its options cannot be read '
                              'from them; give them with --arch-opt or --opt.') from None


def uses_contrastive_encoder(network_opt):
    """True / False for a ``network_g`` option dict (its class's ``uses_contrastive_encoder``), None when the
    architecture is unknown (the option check reports that)."""
    cls = arch_class((network_opt or {}).get('type'))
    if cls is None:
        return None
    return bool(_declared(cls, 'uses_contrastive_encoder')(network_opt))


def declaration(arch, name):
    """Declaration ``name`` of the architecture ``arch`` (a registered name, a class or a network)."""
    cls = arch_class(arch) if isinstance(arch, str) else (arch if isinstance(arch, type) else type(arch))
    return _declared(cls, name) if cls is not None else getattr(RestorationArch, name)


# ---- helpers for options_from_weights -----------------------------------------------------------------------
def count_children(state_dict, prefix):
    """How many numbered children ``<prefix>.<i>.`` (an ``nn.Sequential`` or ``nn.ModuleList``) the keys have."""
    pattern = re.compile(re.escape(prefix) + r'\.(\d+)\.')
    return len({m.group(1) for m in map(pattern.match, state_dict) if m})


def expansion_factor(hidden_by_width, preferred=2.66):
    """A factor f with ``int(width * f) == hidden`` for every (width, hidden) pair.

    Only ``int(width * f)`` is stored in the weights, so f is known up to an interval: ``preferred`` (the
    official value) when it fits, else the shortest decimal in the interval (2.0, 2.3, ...). Weights without a
    feed-forward network (no pairs) fit any factor and get ``preferred``.
    """
    def fits(f):
        return all(int(width * f) == hidden for width, hidden in hidden_by_width)

    if fits(preferred):
        return preferred
    low = max(hidden / width for width, hidden in hidden_by_width)
    for decimals in range(7):  # the smallest number of this many decimals that is >= low
        scale = 10 ** decimals
        candidate = round(math.ceil(low * scale - 1e-9) / scale, decimals)
        if fits(candidate):
            return candidate
    raise CheckpointError(f'No feed-forward expansion factor fits the hidden sizes {hidden_by_width}')
