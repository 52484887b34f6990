"""Reading any weights file safely: PyTorch files with ``weights_only=True`` (pickled code is refused, never run),
``.safetensors`` files with the network recorded in their metadata.

Every ``torch.load`` of this project goes through :func:`load_checkpoint`.
"""
import json
import os
import os.path as osp
import pickle
import zipfile

import torch
import yaml

from ..errors import CheckpointError, CheckpointNotFoundError


OPTION_FILE_EXTENSIONS = ('.yml', '.yaml')


class NotWeightsError(CheckpointError):
    """A file of another kind (an option file, a TorchScript module) given where weights were expected."""


class PickledObjectsError(CheckpointError):
    """A PyTorch file that pickles Python objects besides tensors and plain containers (refused: they could run
    code when loaded)."""


def is_torchscript_archive(path):
    """True for a TorchScript archive (``torch.jit.save``: a zip with ``constants.pkl`` and ``code/``), which
    ``torch.load`` cannot read with ``weights_only=True``."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.split('/', 1)[-1] == 'constants.pkl' for name in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def _is_option_file(path):
    """True for a YAML mapping (an option file given where weights were expected, e.g. ``--weights x.yml``)."""
    if path.lower().endswith(OPTION_FILE_EXTENSIONS):
        return True
    with open(path, 'rb') as f:
        head = f.read(1 << 16)
    try:
        return b'\0' not in head and isinstance(yaml.safe_load(head.decode('utf-8')), dict)
    except (UnicodeDecodeError, yaml.YAMLError):
        return False


# What a file given where weights go turns out to be: saying so helps more than torch's refusal (which, for a
# TorchScript archive, suggests an unsafe load).
TORCHSCRIPT_FILE = ('{path} is a TorchScript module (as `basicsr export --format torchscript` writes), not a weights '
                    'file: `basicsr restore` runs it; other commands need the weights it was exported from (.pth, '
                    '.ckpt or .safetensors)')
OPTION_FILE = ('{path} is an option file (YAML), not weights: use -opt for option files, and --weights for a .pth, '
               '.ckpt or .safetensors file')


def load_checkpoint(path, map_location='cpu'):
    """Load a checkpoint with ``weights_only=True``: tensors and plain containers only.

    A file that would need arbitrary pickled objects (code) is refused with a clear message,
    never executed; an option file or a TorchScript module is named as what it is.
    """
    path = os.fspath(path)
    if not osp.isfile(path):
        raise CheckpointNotFoundError(f'Checkpoint not found: {path}')
    if is_torchscript_archive(path):  # before torch.load, which warns, then refuses it with unsafe advice
        raise NotWeightsError(TORCHSCRIPT_FILE.format(path=path))
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 (a file torch.save did not write fails in many ways: KeyError, EOF...)
        if _is_option_file(path):
            raise NotWeightsError(OPTION_FILE.format(path=path)) from None
        if isinstance(err, pickle.UnpicklingError) and 'GLOBAL' in str(err):  # it pickles Python objects
            raise PickledObjectsError(
                f'Refusing to load {path}: it contains pickled objects other than tensors and plain containers, '
                f'which could run code when loaded (weights_only=True rejected it: {_torch_reason(err)}). '
                'If you trust the file, re-save its state dict with plain types; see `basicsr convert`.') from err
        raise CheckpointError(f'Cannot read {path} as PyTorch weights (.pth/.ckpt): {_torch_reason(err)}') from err


def _torch_reason(err):
    """What torch.load found wrong, in its first sentence, without torch's general advice (which suggests
    ``weights_only=False``)."""
    if not isinstance(err, pickle.UnpicklingError):
        return f'{type(err).__name__}: {err}'.splitlines()[0]
    text = str(err).split('WeightsUnpickler error:', 1)[-1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    reason = next((line for line in lines if 'GLOBAL' in line), None) or next(
        (line for line in lines if not line.startswith(('Weights only load failed', 'Check the documentation'))),
        'not a file torch.save wrote')
    return reason.split('. ')[0].rstrip('.')


def load_checkpoint_for_conversion(path):
    """:func:`load_checkpoint`, with the offending Python globals named when weights_only refuses.

    A real Lightning checkpoint holds only plain entries (numbers, strings, dicts, lists, tensors),
    which weights_only loads. Some also pickle objects (an argparse Namespace or a custom class
    in ``hyper_parameters``, numpy scalars in callbacks); those are refused, never executed.
    """
    try:
        return load_checkpoint(path)
    except PickledObjectsError as err:
        try:
            names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        except Exception:  # noqa: BLE001 (older torch, or not a zip file: keep the first message)
            names = []
        hint = (f' The file needs these Python globals: {", ".join(names)}.' if names else '')
        raise CheckpointError(
            f'{err}{hint} To convert it anyway, in an environment you trust run '
            "`ckpt = torch.load(path, weights_only=False)` and save only the weights, e.g. "
            "`torch.save({'state_dict': ckpt['state_dict']}, 'weights.ckpt')`, then convert that file.") from err


#: safetensors metadata keys (strings only): the architecture name and its options as JSON
SAFETENSORS_ARCH_KEY = 'arch'
SAFETENSORS_OPTIONS_KEY = 'network_options'


def network_metadata(network_opt):
    """The safetensors metadata that records ``network_opt`` (``{'type': arch, ...}``)."""
    options = {k: v for k, v in network_opt.items() if k != 'type'}
    return {SAFETENSORS_ARCH_KEY: network_opt['type'], SAFETENSORS_OPTIONS_KEY: json.dumps(options)}


def network_opt_from_metadata(metadata):
    """``{'type': arch, ...}`` from safetensors metadata written by :func:`network_metadata`, or None."""
    if not metadata or SAFETENSORS_ARCH_KEY not in metadata:
        return None
    options = json.loads(metadata.get(SAFETENSORS_OPTIONS_KEY) or '{}')
    return {'type': metadata[SAFETENSORS_ARCH_KEY], **options}


def read_weights(path):
    """``(checkpoint dict, network_opt from the file's metadata or None)`` for any supported file."""
    path = str(path)
    if not osp.isfile(path):
        raise FileNotFoundError(f'Weights file not found: {path}')
    if path.lower().endswith('.safetensors'):
        from safetensors import SafetensorError, safe_open
        try:
            with safe_open(path, framework='pt', device='cpu') as f:
                return {key: f.get_tensor(key) for key in f.keys()}, network_opt_from_metadata(f.metadata())
        except (SafetensorError, OSError, ValueError) as err:
            raise CheckpointError(f'Cannot read {path} as a safetensors file: {err}') from err
    try:
        return load_checkpoint_for_conversion(path), None
    except CheckpointError:
        raise
    except Exception as err:  # noqa: BLE001 (not a torch file at all: say so, with torch's reason)
        raise CheckpointError(f'Cannot read {path} as PyTorch weights (.pth/.ckpt) or .safetensors: '
                              f'{str(err).splitlines()[0]}') from err
