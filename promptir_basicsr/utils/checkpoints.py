"""Saving and loading checkpoints: atomic writes, and loads that never run pickled code.

Every ``torch.load`` of this project goes through :func:`load_checkpoint` (``weights_only=True``),
and every checkpoint or training state is written by :func:`atomic_save`.
"""
import contextlib
import os
import os.path as osp
import pickle
import tempfile

import torch

from ..errors import CheckpointError, CheckpointNotFoundError


def _new_file_mode():
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def _atomic_file(path, mode):
    """An open temporary file beside ``path``; on success fsync'd and renamed over ``path``, else removed.

    A reader never sees a half-written file: either the old file or the complete new one. The temporary
    name starts with '.' and ends in '.tmp', so no scan for ``*.pth``/``*.state``/``*.png`` ever picks it
    up. The file gets the permissions a plain ``open`` would give (mkstemp makes 0600).
    """
    path = os.fspath(path)
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp_path = tempfile.mkstemp(prefix=f'.{osp.basename(path)}.', suffix='.tmp', dir=folder)
    try:
        with os.fdopen(fd, mode, **({} if 'b' in mode else {'encoding': 'utf-8'})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp_path, _new_file_mode())
        os.replace(tmp_path, path)
    except BaseException:
        if osp.exists(tmp_path):
            os.remove(tmp_path)
        raise


def atomic_save(obj, path, *args, **kwargs):
    """``torch.save`` to a temporary file beside ``path``, fsync, then rename over ``path``."""
    with _atomic_file(path, 'wb') as f:
        torch.save(obj, f, *args, **kwargs)


def atomic_write_text(path, text):
    """Write ``text`` (UTF-8) to ``path`` the same way: a temporary file, fsync, rename."""
    with _atomic_file(path, 'w') as f:
        f.write(text)


def atomic_write_bytes(path, data):
    """Write ``data`` (bytes: images, plots) to ``path`` the same way."""
    with _atomic_file(path, 'wb') as f:
        f.write(data)


def load_checkpoint(path, map_location='cpu'):
    """Load a checkpoint with ``weights_only=True``: tensors and plain containers only.

    A file that would need arbitrary pickled objects (code) is refused with a clear message,
    never executed.
    """
    path = os.fspath(path)
    if not osp.isfile(path):
        raise CheckpointNotFoundError(f'Checkpoint not found: {path}')
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f'Refusing to load {path}: it contains pickled objects other than tensors and plain containers, '
            f'which could run code when loaded (weights_only=True rejected it: {str(err).splitlines()[0]}). '
            'If you trust the file, re-save its state dict with plain types; see `basicsr convert`.') from err


# ----------------------------------------------------------------------------------------------
# Converting official checkpoints to basicsr's {'params': state_dict}
# ----------------------------------------------------------------------------------------------
# What each official release looks like:
#   PromptIR  - Lightning 2 ``.ckpt``: ckpt['state_dict'] with keys 'net.<key>' (the LightningModule
#               holds the network as ``self.net``), plus optimizer/loop/callback entries we ignore.
#   AirNet    - a plain state dict ('R.*', 'E.*'); its MoCo queue (256, batch*256) fixes the batch.
#   Restormer - {'params': state_dict} (basicsr's own format; basicsr runs may add 'params_ema').
# Files this converter wrote are {'params': ...} too, so converting them again is a no-op check.
_LIST_LIMIT = 30  # keys listed per category in a report


def load_checkpoint_for_conversion(path):
    """:func:`load_checkpoint`, with the offending Python globals named when weights_only refuses.

    A real Lightning checkpoint holds only plain entries (numbers, strings, dicts, lists, tensors),
    which weights_only loads. Some also pickle objects (an argparse Namespace or a custom class
    in ``hyper_parameters``, numpy scalars in callbacks); those are refused, never executed.
    """
    try:
        return load_checkpoint(path)
    except CheckpointNotFoundError:
        raise
    except CheckpointError as err:
        try:
            names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        except Exception:  # noqa: BLE001 (older torch, or not a zip file: keep the first message)
            names = []
        hint = (f' The file needs these Python globals: {", ".join(names)}.' if names else '')
        raise CheckpointError(
            f'{err}{hint} To convert it anyway, in an environment you trust run '
            "`ckpt = torch.load(path, weights_only=False)` and save only the weights, e.g. "
            "`torch.save({'state_dict': ckpt['state_dict']}, 'weights.ckpt')`, then convert that file.") from err


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


def convert_state_dict(ckpt, net, param_key=None, allow_mismatch=False):
    """A loaded official checkpoint -> a state dict that ``net.load_state_dict(strict=True)`` accepts.

    Returns ``(state_dict, report)``; report has 'source', 'notes' and the differences
    (:func:`compare_state_dicts`). Any difference raises :class:`CheckpointError` listing the keys,
    unless ``allow_mismatch``: then matching tensors are taken from the file and everything else keeps
    the network's own initial values (and the report says which).
    """
    from ..archs.arch_api import declaration
    state_dict, source, notes = extract_state_dict(ckpt, param_key)
    target = net.state_dict()
    state_dict = declaration(net, 'adapt_weights')(state_dict, target, notes)
    diff = compare_state_dicts(state_dict, target)
    report = dict(source=source, notes=notes, **diff)
    problems = format_differences(diff)
    if problems and not allow_mismatch:
        raise CheckpointError(f'The checkpoint does not match {type(net).__name__} as configured:\n  '
                              + '\n  '.join(problems)
                              + '\nCheck the architecture options (--arch, --arch-opt), or pass --allow-mismatch '
                              "to keep the network's initial values for these keys.")
    mismatched = {k for k, _, _ in diff['mismatched']}
    converted = {}
    for key, value in target.items():
        if key in state_dict and key not in mismatched:
            source_value = state_dict[key]
            converted[key] = source_value.to(value.dtype) if source_value.is_floating_point() else source_value
        else:
            converted[key] = value.detach().clone()
    return converted, report


def convert_checkpoint(in_path, out_path, arch=None, arch_opt=None, param_key=None, allow_mismatch=False, log=print):
    """Convert an official checkpoint file to basicsr's ``{'params': state_dict}`` at ``out_path``.

    The network is read from the weights (:func:`promptir_basicsr.inference.infer_network_options`:
    architecture and every hyper-parameter); ``arch`` (a registered arch name) and ``arch_opt``
    override what was read, and are needed only for architectures it cannot read. It is built
    through basicsr's ``build_network``; the written file is loaded back into that network with
    ``strict=True`` before this returns, so ``pretrain_network_g`` + ``strict_load_g: true`` work.
    Returns the report of :func:`convert_state_dict`.
    """
    from basicsr.archs import build_network

    from ..inference import describe_network, resolve_network_opt

    from ..archs.arch_api import detect_arch
    ckpt = load_checkpoint_for_conversion(in_path)
    weights = extract_state_dict(ckpt, param_key)[0]
    detected = detect_arch(weights)
    network_opt = resolve_network_opt(weights, arch=arch, overrides=arch_opt)
    arch = network_opt.pop('type')
    if detected == arch:
        log(f'architecture (detected from the keys): {arch}')
    log(f'network: {describe_network(dict(type=arch, **network_opt))}')
    try:
        net = build_network({'type': arch, **network_opt})
    except KeyError as err:
        raise CheckpointError(f'Unknown architecture {arch!r}: {err}') from err
    except (TypeError, ValueError) as err:
        raise CheckpointError(f'Cannot build {arch} with options {network_opt}: {err}') from err
    state_dict, report = convert_state_dict(ckpt, net, param_key=param_key, allow_mismatch=allow_mismatch)
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


def _parse_arch_opt(item):
    import yaml

    key, sep, value = item.partition('=')
    if not sep or not key:
        raise ValueError(f'--arch-opt expects KEY=VALUE, got {item!r}')
    return key.strip(), yaml.safe_load(value)


def build_convert_parser(prog='basicsr convert'):
    """The one parser of ``basicsr convert`` and ``scripts/convert_checkpoint.py``."""
    import argparse

    parser = argparse.ArgumentParser(
        prog=prog,
        description='Convert an official PromptIR (Lightning .ckpt), AirNet (plain state dict) or Restormer '
        "({'params': ...}) checkpoint to basicsr's {'params': state_dict} .pth. Loading never runs pickled "
        'code (weights_only=True).',
        epilog='example: %(prog)s --arch PromptIR model.ckpt experiments/pretrained/promptir.pth')
    parser.add_argument('input', help='official checkpoint (.ckpt / .pth)')
    parser.add_argument('output', help='converted file to write (.pth)')
    parser.add_argument('--arch', default=None,
                        help='registered architecture: PromptIR, Restormer, AirNet, ... (default: detected from the keys)')
    parser.add_argument('--arch-opt', action='append', default=[], metavar='KEY=VALUE',
                        help='architecture option, YAML value, repeatable (e.g. queue_size=2560); overrides what is '
                        'read from the weights (PromptIR, Restormer and AirNet options are read from them)')
    parser.add_argument('--opt', default=None, metavar='YML',
                        help="take the architecture from an option file's network_g (--arch/--arch-opt override)")
    parser.add_argument('--param-key', default=None,
                        help="entry holding the weights (default: state_dict, params, params_ema, or the file itself)")
    parser.add_argument('--allow-mismatch', action='store_true',
                        help="write the file even if keys are missing/unexpected or shapes differ (mismatched keys "
                        "keep the network's initial values)")
    return parser


def convert_main(argv=None, prog='basicsr convert'):
    """Command-line entry: returns 0 on success; a refused or missing checkpoint raises :class:`CheckpointError`
    (a :class:`~promptir_basicsr.errors.UserError`: one line and exit status 2 through ``cli.main``)."""
    parser = build_convert_parser(prog)
    args = parser.parse_args(argv)
    arch, arch_opt = args.arch, {}
    if args.opt:
        from ..options import read_option_file
        network_opt = dict(read_option_file(args.opt).get('network_g') or {})
        if not network_opt:
            parser.error(f'{args.opt} has no network_g section')
        arch = arch or network_opt.pop('type', None)
        network_opt.pop('type', None)
        arch_opt.update(network_opt)
    try:
        arch_opt.update(_parse_arch_opt(item) for item in args.arch_opt)
    except ValueError as err:
        parser.error(str(err))
    convert_checkpoint(args.input, args.output, arch=arch, arch_opt=arch_opt, param_key=args.param_key,
                       allow_mismatch=args.allow_mismatch)
    return 0
