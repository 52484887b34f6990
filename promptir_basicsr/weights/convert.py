"""``basicsr convert``'s work: an official checkpoint file -> basicsr's ``{'params': state_dict}`` file that loads
strictly into the network read from it."""
from ..archs.arch_api import detect_arch
from ..utils.files import atomic_save
from .files import load_checkpoint, load_checkpoint_for_conversion
from .network import build_and_fit, describe_network, resolve_network_opt
from .state_dict import extract_state_dict, format_differences


def convert_checkpoint(in_path, out_path, arch=None, arch_opt=None, param_key=None, allow_mismatch=False, log=print):
    """Convert an official checkpoint file to basicsr's ``{'params': state_dict}`` at ``out_path``.

    The network is read from the weights (:func:`promptir_basicsr.archs.arch_api.options_from_weights`:
    architecture and every hyper-parameter); ``arch`` (a registered arch name) and ``arch_opt``
    override what was read, and are needed only for architectures it cannot read. It is built
    through basicsr's ``build_network``; the written file is loaded back into that network with
    ``strict=True`` before this returns, so ``pretrain_network_g`` + ``strict_load_g: true`` work.
    Returns the report of :func:`convert_state_dict`.
    """
    ckpt = load_checkpoint_for_conversion(in_path)
    weights = extract_state_dict(ckpt, param_key)[0]
    detected = detect_arch(weights)
    network_opt = resolve_network_opt(weights, arch=arch, overrides=arch_opt)
    arch = network_opt.pop('type')
    if detected == arch:
        log(f'architecture (detected from the keys): {arch}')
    log(f'network: {describe_network(dict(type=arch, **network_opt))}')
    net, state_dict, report = build_and_fit(ckpt, weights, None, {'type': arch, **network_opt}, param_key,
                                            allow_mismatch)
    log(f'read {in_path}: {report["source"]}')
    for note in report['notes']:
        log(f'note: {note}')
    for line in format_differences(report):
        log(f'allowed ({arch} keeps its initial values): {line}')
    atomic_save({'params': state_dict}, out_path)
    net.load_state_dict(load_checkpoint(out_path)['params'], strict=True)
    log(f'wrote {out_path}: {len(state_dict)} tensors for {arch}, loads with strict=True '
        f'(option file: network_g type {arch}, path.pretrain_network_g: {out_path}, strict_load_g: true)')
    return report
