"""Folder -> LMDB conversion of every source of an option file (``scripts/create_lmdb.py``).

Each image folder used by a source (training ``sources`` of an ``AllInOneDataset``, and every other
dataset with a ``dataroot_gt``/``dataroot_lq``: ``DegradedImageDataset``, basicsr's paired datasets)
becomes one ``<folder>.lmdb`` beside it (or ``<out_dir>/<folder path>.lmdb``), written with basicsr's ``LmdbMaker``:
PNG-encoded values, a ``meta_info.txt`` of ``<key>.png (h,w,c) <level>`` lines.

Keys are :func:`promptir_basicsr.data.pairing.lmdb_key` of the image's relative name (percent-encoded,
no '.', no '/', reversible), so an LMDB source has exactly the names of its folder: the same pairing
rule, list file and per-image validation seeds apply, and lq/gt keys match through the pairing rule
(identical keys for ``same``; a gt shared by several lq images, as in OTS, is stored once). Images are
decoded the way the datasets decode them (``cv2.IMREAD_COLOR``), so folder and LMDB give identical
tensors.
"""
import copy
import os
import os.path as osp
import shutil

import cv2
import numpy as np
from basicsr.utils.lmdb_util import LmdbMaker

from .pairing import build_pairing, lmdb_key, name_from_lmdb_key
from .sources import DatasetError, backend_of, collect_clean, collect_paired


def _sources_of(opt):
    """(label, source option dict) for every folder-backed source of an option file."""
    for phase, dataset_opt in (opt.get('datasets') or {}).items():
        if not isinstance(dataset_opt, dict):
            continue
        label = f'datasets.{phase} ({dataset_opt.get("name", dataset_opt.get("type", "?"))})'
        if dataset_opt.get('sources') is not None:
            for i, source in enumerate(dataset_opt['sources']):
                yield f'{label}.sources[{i}] ({source.get("name", "?")})', source
        elif dataset_opt.get('dataroot_gt') is not None:
            yield label, dataset_opt


def _lmdb_path(folder, out_dir):
    folder = osp.normpath(folder)
    if out_dir is None:
        return folder + '.lmdb'
    # mirror the folder's path under out_dir: no collisions, and the LMDB keeps the folder's name
    # (list files whose entries start with that name, like PromptIR's, keep working)
    rel = osp.relpath(folder) if not osp.isabs(folder) else folder.lstrip(os.sep)
    parts = ['up' if part == '..' else part for part in rel.split(os.sep)]
    return osp.join(out_dir, *parts) + '.lmdb'


def _existing_names(lmdb_path):
    with open(osp.join(lmdb_path, 'meta_info.txt'), encoding='utf-8') as f:
        return {name_from_lmdb_key(line.split(' ')[0].split('.')[0]) for line in f if line.strip()}


def write_lmdb(folder, names, lmdb_path, compress_level=1, map_size=None):
    """Write ``names`` (relative to ``folder``) into a new LMDB at ``lmdb_path``; returns its size in bytes."""
    if map_size is None:
        total = sum(osp.getsize(osp.join(folder, n)) for n in names)
        map_size = max(total * 30, 1) + (256 << 20)
    maker = LmdbMaker(lmdb_path, map_size=map_size, compress_level=compress_level)
    try:
        for name in sorted(names):
            path = osp.join(folder, name)
            img = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR) if osp.isfile(path) else None
            if img is None:
                raise DatasetError(f'create_lmdb: cannot read image {path} (missing, corrupt or not an image)')
            ok, buf = cv2.imencode('.png', img, [cv2.IMWRITE_PNG_COMPRESSION, compress_level])
            if not ok:
                raise DatasetError(f'create_lmdb: cannot PNG-encode {path}')
            maker.put(buf.tobytes(), lmdb_key(name), img.shape)
    finally:
        maker.close()
    return sum(osp.getsize(osp.join(lmdb_path, f)) for f in os.listdir(lmdb_path))


def lmdb_options(opt, out_dir=None):
    """A copy of the option dict ``opt`` whose folder-backed sources read the LMDBs :func:`create_lmdbs` writes
    (``dataroot_*`` -> ``<folder>.lmdb``, ``io_backend: {type: lmdb}``); everything else unchanged."""
    lmdb_opt = copy.deepcopy(opt)
    for label, source in _sources_of(lmdb_opt):
        if backend_of(source, label)['type'] == 'lmdb':
            continue
        for key in ('dataroot_lq', 'dataroot_gt'):
            if source.get(key) is not None:
                source[key] = _lmdb_path(osp.normpath(str(source[key])), out_dir)
        source['io_backend'] = {'type': 'lmdb'}
    return lmdb_opt


def create_lmdbs(opt, out_dir=None, overwrite=False, compress_level=1, log=print):
    """Convert every folder-backed source of ``opt`` (an option dict); returns the option text to use.

    A folder used by several sources (e.g. one clean set for three noise levels) is written once with
    the union of their images. An existing LMDB holding every needed image is kept; one missing some is
    an error unless ``overwrite``.
    """
    folders = {}  # folder -> set of names
    plans = []  # (label, {key: lmdb path})
    for label, source in _sources_of(opt):
        if backend_of(source, label)['type'] == 'lmdb':
            log(f'{label}: already LMDB, skipped')
            continue
        if source.get('dataroot_lq') is not None:
            pairs = collect_paired(source, build_pairing(source, label), label)
            needed = {'dataroot_lq': [lq for lq, _ in pairs], 'dataroot_gt': [gt for _, gt in pairs]}
        else:
            needed = {'dataroot_gt': collect_clean(source, label)}
        targets = {}
        for key, names in needed.items():
            folder = osp.normpath(str(source[key]))
            folders.setdefault(folder, set()).update(names)
            targets[key] = _lmdb_path(folder, out_dir)
        plans.append((label, targets))
    if not plans:
        raise DatasetError('create_lmdb: the option file has no folder-backed dataset or source to convert')
    for folder, names in folders.items():
        target = _lmdb_path(folder, out_dir)
        if osp.exists(target):
            if not overwrite:
                have = _existing_names(target) if osp.isfile(osp.join(target, 'meta_info.txt')) else set()
                missing = names - have
                if not missing:
                    log(f'{target}: exists with all {len(names)} images, kept')
                    continue
                raise DatasetError(f'create_lmdb: {target} exists but lacks {len(missing)} of the {len(names)} '
                                   'images needed; run again with --overwrite to rebuild it')
            shutil.rmtree(target)
        if osp.dirname(target):
            os.makedirs(osp.dirname(target), exist_ok=True)
        size = write_lmdb(folder, names, target, compress_level)
        log(f'{target}: {len(names)} images from {folder} ({size / 2**20:.1f} MiB)')
    lines = ['# Use the LMDBs: replace these keys in the option file (pairing, list_file etc. stay as they are)']
    for label, targets in plans:
        lines.append(f'# {label}')
        for key, path in targets.items():
            lines.append(f'{key}: {path}')
        lines.append('io_backend: {type: lmdb}')
    return '\n'.join(lines)
