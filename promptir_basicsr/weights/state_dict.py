"""The network's weights inside a loaded file of any supported layout, and how they fit a network.

What each official release looks like:
  PromptIR, AdaIR, MoCE-IR, BioIR - Lightning ``.ckpt``: ckpt['state_dict'] with keys 'net.<key>' (the
              LightningModule holds the network as ``self.net``), plus optimizer/loop/callback entries we ignore.
  AirNet    - a plain state dict ('R.*', 'E.*'); its MoCo queue (256, batch*256) fixes the batch.
  Restormer - {'params': state_dict} (basicsr's own format; basicsr runs may add 'params_ema').
What differs for one architecture (AirNet's queue size) is fitted by the architecture's ``adapt_weights``
(``archs/arch_api.py``).
"""
import torch

from ..archs.arch_api import declaration
from ..errors import CheckpointError

_LIST_LIMIT = 30  # keys listed per category in a report


def _strip_prefix(state_dict, prefix, notes):
    if not any(key.startswith(prefix) for key in state_dict):
        return state_dict
    n = sum(key.startswith(prefix) for key in state_dict)
    notes.append(f"removed the prefix '{prefix}' from {n} key(s)")
    return {key[len(prefix):] if key.startswith(prefix) else key: value for key, value in state_dict.items()}


def extract_state_dict(ckpt, param_key=None):
    """Find the network weights in a loaded checkpoint of any supported format.

    Returns ``(state_dict, source_format, notes)``. ``param_key`` picks an entry explicitly
    (e.g. 'params_ema'); otherwise: Lightning 'state_dict', then 'params', then 'params_ema', then
    the whole dict if all its values are tensors (AirNet's plain state dict). Prefixes 'net.'
    (Lightning module attribute) and 'module.' (DDP) are removed.
    """
    if not isinstance(ckpt, dict):
        raise CheckpointError(f'Expected a dict checkpoint, got {type(ckpt).__name__}.')
    notes = []
    if param_key is not None:
        if param_key not in ckpt:
            raise CheckpointError(f"No entry '{param_key}' in the checkpoint; its entries: {sorted(map(str, ckpt))}")
        state_dict, source = ckpt[param_key], f"entry '{param_key}'"
    elif isinstance(ckpt.get('state_dict'), dict):
        state_dict, source = ckpt['state_dict'], "Lightning checkpoint (entry 'state_dict')"
        ignored = sorted(str(k) for k in ckpt if k != 'state_dict')
        if ignored:
            notes.append(f'ignored Lightning entries: {", ".join(ignored)}')
    elif isinstance(ckpt.get('params'), dict):
        state_dict, source = ckpt['params'], "basicsr format (entry 'params')"
        if 'params_ema' in ckpt:
            notes.append("the file also has 'params_ema' (EMA weights); --param-key params_ema converts those")
    elif isinstance(ckpt.get('params_ema'), dict):
        state_dict, source = ckpt['params_ema'], "basicsr format (entry 'params_ema')"
    elif ckpt and all(torch.is_tensor(v) for v in ckpt.values()):
        state_dict, source = ckpt, 'plain state dict'
    else:
        raise CheckpointError('Cannot find network weights: expected a Lightning checkpoint (state_dict), a basicsr '
                              f"file (params / params_ema) or a plain state dict; top-level entries: "
                              f'{sorted(map(str, ckpt))[:_LIST_LIMIT]}')
    non_tensors = [k for k, v in state_dict.items() if not torch.is_tensor(v)]
    if non_tensors:
        raise CheckpointError(f'The weights entry holds non-tensor values: {non_tensors[:_LIST_LIMIT]}')
    state_dict = _strip_prefix(state_dict, 'net.', notes)
    state_dict = _strip_prefix(state_dict, 'module.', notes)
    return dict(state_dict), source, notes


def compare_state_dicts(state_dict, target_state_dict):
    """-> dict(missing=[keys], unexpected=[keys], mismatched=[(key, shape_in_file, shape_in_net)])."""
    missing = [k for k in target_state_dict if k not in state_dict]
    unexpected = [k for k in state_dict if k not in target_state_dict]
    mismatched = [(k, tuple(v.shape), tuple(target_state_dict[k].shape)) for k, v in state_dict.items()
                  if k in target_state_dict and v.shape != target_state_dict[k].shape]
    return dict(missing=missing, unexpected=unexpected, mismatched=mismatched)


def format_differences(diff):
    """Human-readable lines for :func:`compare_state_dicts`' result (every category, capped)."""

    def listing(items):
        shown = ', '.join(items[:_LIST_LIMIT])
        return shown + (f', ... and {len(items) - _LIST_LIMIT} more' if len(items) > _LIST_LIMIT else '')

    lines = []
    if diff['missing']:
        lines.append(f'missing in the file ({len(diff["missing"])}): {listing(diff["missing"])}')
    if diff['unexpected']:
        lines.append(f'unexpected in the file ({len(diff["unexpected"])}): {listing(diff["unexpected"])}')
    if diff['mismatched']:
        items = [f'{k} {src} vs network {dst}' for k, src, dst in diff['mismatched']]
        lines.append(f'shape mismatches ({len(items)}): {listing(items)}')
    return lines


def convert_state_dict(ckpt, net, param_key=None, allow_mismatch=None):
    """A loaded official checkpoint -> a state dict that ``net.load_state_dict(strict=True)`` accepts.

    Returns ``(state_dict, report)``; report has 'source', 'notes' and the differences
    (:func:`compare_state_dicts`). Any difference raises :class:`CheckpointError` listing the keys,
    unless ``allow_mismatch``: then matching tensors are taken from the file and everything else keeps
    the network's own initial values (and the report says which). ``allow_mismatch`` None (restore, export,
    prompts, serve: no such option) or False (``basicsr convert`` without its ``--allow-mismatch``): the error's
    hint names only what the caller accepts, so ``--allow-mismatch`` is suggested by ``convert`` alone.
    """
    state_dict, source, notes = extract_state_dict(ckpt, param_key)
    target = net.state_dict()
    state_dict = declaration(net, 'adapt_weights')(state_dict, target, notes)
    diff = compare_state_dicts(state_dict, target)
    report = dict(source=source, notes=notes, **diff)
    problems = format_differences(diff)
    if problems and not allow_mismatch:
        hint = ('Check the architecture options (-opt, --arch, --arch-opt), or pass --allow-mismatch to keep the '
                "network's initial values for these keys." if allow_mismatch is False else
                'Check the network options (-opt, --arch, --arch-opt): the weights were made for another '
                'configuration.')
        raise CheckpointError(f'The checkpoint does not match {type(net).__name__} as configured:\n  '
                              + '\n  '.join(problems) + '\n' + hint)
    mismatched = {k for k, _, _ in diff['mismatched']}
    converted = {}
    for key, value in target.items():
        if key in state_dict and key not in mismatched:
            source_value = state_dict[key]
            converted[key] = source_value.to(value.dtype) if source_value.is_floating_point() else source_value
        else:
            converted[key] = value.detach().clone()
    return converted, report
