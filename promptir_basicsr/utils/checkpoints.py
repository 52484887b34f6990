"""Saving and loading checkpoints: atomic writes, and loads that never run pickled code.

Every ``torch.load`` of this project goes through :func:`load_checkpoint` (``weights_only=True``),
and every checkpoint or training state is written by :func:`atomic_save`.
"""
import os
import os.path as osp
import pickle
import tempfile

import torch


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read safely or does not match the network."""


def atomic_save(obj, path, *args, **kwargs):
    """``torch.save`` to a temporary file beside ``path``, fsync, then rename over ``path``.

    A reader never sees a half-written file: either the old file or the complete new one.
    The temporary name starts with '.' and ends in '.tmp', so no scan for ``*.pth``/``*.state``
    ever picks it up.
    """
    path = os.fspath(path)
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp_path = tempfile.mkstemp(prefix=f'.{osp.basename(path)}.', suffix='.tmp', dir=folder)
    try:
        with os.fdopen(fd, 'wb') as f:
            torch.save(obj, f, *args, **kwargs)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        if osp.exists(tmp_path):
            os.remove(tmp_path)
        raise


def load_checkpoint(path, map_location='cpu'):
    """Load a checkpoint with ``weights_only=True``: tensors and plain containers only.

    A file that would need arbitrary pickled objects (code) is refused with a clear message,
    never executed.
    """
    path = os.fspath(path)
    if not osp.isfile(path):
        raise FileNotFoundError(f'Checkpoint not found: {path}')
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f'Refusing to load {path}: it contains pickled objects other than tensors and plain containers, '
            f'which could run code when loaded (weights_only=True rejected it: {str(err).splitlines()[0]}). '
            'If you trust the file, re-save its state dict with plain types; see `basicsr convert`.') from err
