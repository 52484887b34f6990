"""From a weights file to a ready network: the architecture and options read from the file (its metadata, else
its keys), overridden where the user says, built by basicsr's ``build_network`` and loaded strictly."""
from basicsr.archs import build_network

from ..archs.arch_api import options_from_weights
from ..errors import CheckpointError
from .files import read_weights
from .state_dict import convert_state_dict, extract_state_dict


def default_param_key(ckpt):
    """basicsr files: ``params_ema`` (the EMA weights, what basicsr validates with) when present."""
    return 'params_ema' if isinstance(ckpt, dict) and isinstance(ckpt.get('params_ema'), dict) else None


def resolve_network_opt(state_dict, file_opt=None, arch=None, overrides=None):
    """The network to build: from the file's metadata, else read from the weights, then overridden.

    ``arch`` (``--arch``) different from the weights' architecture drops what was read from them;
    ``overrides`` (an option file's ``network_g``, ``--arch-opt``) win over everything.
    """
    overrides = dict(overrides or {})
    arch = overrides.pop('type', None) or arch
    try:
        base = dict(file_opt) if file_opt else options_from_weights(state_dict)
    except CheckpointError:
        if arch is None:
            raise
        base = {'type': arch}
    if arch is not None and arch != base['type']:
        base = {'type': arch}
    base.update(overrides)
    return base


def misfit(state_dict, file_opt, network_opt):
    """One line saying why weights do not fit the network asked for, when what is read from them tells (None
    otherwise): they are another architecture's, or options read from them differ from those given."""
    try:
        read = dict(file_opt) if file_opt else options_from_weights(state_dict)
    except CheckpointError:
        return None
    asked = network_opt['type']
    if read['type'] != asked:
        return (f'these are {read["type"]} weights (told from their keys), not {asked}: leave out --arch (or the '
                f'option file\'s network_g type {asked}) to use them as {read["type"]}')
    differing = [k for k in network_opt if k != 'type' and k in read and read[k] != network_opt[k]]
    if not differing:
        return None
    weights = ', '.join(f'{k}={read[k]}' for k in differing)
    given = ', '.join(f'{k}={network_opt[k]}' for k in differing)
    return (f'these {asked} weights have {weights} (read from their shapes), but the options given ask {given} '
            '(--arch-opt or an option file\'s network_g): leave those options out to use the weights\' own')


def build_and_fit(ckpt, state_dict, file_opt, network_opt, param_key=None, allow_mismatch=None):
    """``(net, converted state dict, report)``: the network of ``network_opt`` and the file's weights fitted to it
    (:func:`convert_state_dict`); weights that do not fit raise :class:`CheckpointError`, in one line when
    :func:`misfit` can say why, else listing the keys. ``allow_mismatch`` None: the caller has no such option, and
    the hint does not offer it (only ``basicsr convert`` passes True or False)."""
    try:
        net = build_from_options(network_opt)
        converted, report = convert_state_dict(ckpt, net, param_key=param_key, allow_mismatch=allow_mismatch)
    except CheckpointError:
        why = misfit(state_dict, file_opt, network_opt)
        if why is None:
            raise
        raise CheckpointError(why) from None
    return net, converted, report


def build_from_options(network_opt):
    """basicsr's ``build_network`` of ``{'type': arch, **options}``; an unknown architecture or options its
    constructor refuses are a :class:`CheckpointError` (they came with, or were read from, a weights file)."""
    try:
        return build_network(dict(network_opt))
    except KeyError as err:
        raise CheckpointError(f'Unknown architecture {network_opt["type"]!r}: {err}') from err
    except (TypeError, ValueError) as err:
        options = {k: v for k, v in network_opt.items() if k != 'type'}
        raise CheckpointError(f'Cannot build {network_opt["type"]} with options {options}: {err}') from err


def load_network(path, arch=None, overrides=None, param_key=None):
    """Build the network for a weights file and load them strictly.

    Returns ``(net, network_opt, report)``; ``report`` as :func:`convert_state_dict`'s, plus
    ``'read_from'``: where the options came from. Raises :class:`CheckpointError` (listing missing,
    unexpected and mis-shaped keys) when the weights do not fit the network.
    """
    ckpt, file_opt = read_weights(path)
    param_key = param_key or default_param_key(ckpt)
    state_dict = extract_state_dict(ckpt, param_key)[0]
    network_opt = resolve_network_opt(state_dict, file_opt, arch, overrides)
    net, converted, report = build_and_fit(ckpt, state_dict, file_opt, network_opt, param_key)
    net.load_state_dict(converted, strict=True)
    report['read_from'] = 'the file metadata' if file_opt else 'the weights'
    if overrides:
        report['read_from'] += ' + your options'
    return net.eval(), network_opt, report


def describe_network(network_opt):
    """One line: ``PromptIR dim=16 num_blocks=[1, 1, 1, 2] ...``."""
    return ' '.join([network_opt['type']] + [f'{k}={v}' for k, v in network_opt.items() if k != 'type'])
