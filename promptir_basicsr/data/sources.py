"""Finding and reading the images of a source: folders or LMDBs, list files, pairing, clear errors.

Shared by :mod:`all_in_one_dataset`, :mod:`degraded_dataset` and ``scripts/create_lmdb.py``. Every
problem with the data raises :class:`DatasetError` whose message names the option (``where``), the
offending paths or names, and the fix; nothing is skipped silently.
"""
import os
import os.path as osp

import cv2
import numpy as np
from basicsr.utils import FileClient, get_root_logger, imfrombytes, scandir

from ..errors import UserError
from ..utils.option_keys import Key
from .pairing import PairingRule, lmdb_key, name_from_lmdb_key

IMG_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp', '.ppm', '.pgm')
_ALL_EXTENSIONS = tuple(IMG_EXTENSIONS) + tuple(ext.upper() for ext in IMG_EXTENSIONS)
_SHOW = 5  # names listed in an error message

#: The keys of one image source (folder or LMDB, list file, pairing rule or degradation ops), read by the
#: functions below; the datasets declare them as part of their ``OPTIONS`` (checked before a run).
SOURCE_OPTIONS = {
    'dataroot_gt': Key(str, required=True), 'dataroot_lq': Key(str, None), 'io_backend': Key(dict, None),
    'meta_info_file': Key(str, None), 'list_file': Key(str, None), 'list_root': Key(str, None),
    'pairing': Key(str, dict, None), 'filename_tmpl': Key(str, None), 'degradation': Key(list, dict, None),
    'allow_missing': Key(bool), 'recursive': Key(bool),
}


class DatasetError(UserError):
    """Bad data or data options; the message says which option, which files, and how to fix it."""


def _few(items, n=_SHOW):
    items = list(items)
    text = ', '.join(str(v) for v in items[:n])
    return text + (f', ... ({len(items) - n} more)' if len(items) > n else '')


def backend_of(opt, where):
    """The io_backend dict of an option dict (default ``{type: disk}``), checked."""
    backend = dict(opt.get('io_backend') or {'type': 'disk'})
    kind = backend.get('type')
    if kind not in ('disk', 'lmdb'):
        raise DatasetError(f'{where}.io_backend: type must be disk or lmdb, got {kind!r}')
    return backend


def list_names(root, backend_type, where, key, recursive=True):
    """Relative image names under a dataroot ('/' separators, with extension), sorted.

    Folder: every image file (extensions :data:`IMG_EXTENSIONS`), in sub-folders too when
    ``recursive``. LMDB: the names recorded in its ``meta_info.txt`` (keys decoded by
    :func:`name_from_lmdb_key`).
    """
    if root is None:
        raise DatasetError(f'{where}: `{key}` is required')
    root = str(root)
    if backend_type == 'lmdb':
        meta = osp.join(root, 'meta_info.txt')
        if not root.rstrip('/').endswith('.lmdb') or not osp.isfile(meta):
            raise DatasetError(f'{where}.{key}: {root} is not an LMDB made by basicsr/create_lmdb.py '
                               '(a folder ending in .lmdb with a meta_info.txt). Fix the path, run '
                               'scripts/create_lmdb.py, or use io_backend: {type: disk} for a folder.')
        with open(meta, encoding='utf-8') as f:
            names = sorted(name_from_lmdb_key(line.split(' ')[0].split('.')[0]) for line in f if line.strip())
    else:
        if not osp.isdir(root):
            raise DatasetError(f'{where}.{key}: folder {root} does not exist (fix the path, or run '
                               'scripts/make_demo_data.py for the demo data)')
        names = sorted(p.replace(os.sep, '/') for p in scandir(root, suffix=_ALL_EXTENSIONS, recursive=recursive))
    if not names:
        raise DatasetError(f'{where}.{key}: no images found in {root} (looked for {", ".join(IMG_EXTENSIONS)}'
                           f'{" in sub-folders too" if recursive else ""}); the source is empty')
    return names


def read_list_file(path, where, key):
    """Entries of a list file: the first whitespace-separated token of each non-empty line.

    Works for PromptIR's list files (one relative path per line) and basicsr's meta_info files
    (``name (h,w,c) level``). Lines starting with '#' are comments.
    """
    if not osp.isfile(path):
        raise DatasetError(f'{where}.{key}: list file {path} does not exist')
    with open(path, encoding='utf-8') as f:
        entries = [line.split()[0].replace('\\', '/') for line in f if line.strip() and not line.startswith('#')]
    if not entries:
        raise DatasetError(f'{where}.{key}: list file {path} lists no images; the source is empty')
    return entries


def select_listed(entries, names, root, where, key, allow_missing=False, list_root=None):
    """The names of ``entries`` (a list file) that exist among ``names`` (what the dataroot holds).

    An entry is relative to ``list_root`` if given, else to the dataroot; an entry starting with the
    dataroot's own folder name is accepted too (PromptIR's ``rainy/rainTrain.txt`` lists
    ``rainy/rain-1.png`` with ``dataroot_lq: .../Derain/rainy``). For an LMDB whose names have no
    extension (made by other tools) the entry's extension is ignored. Missing entries are an error,
    or a warning with their count when ``allow_missing`` is true.
    """
    available = set(names)
    stems = {osp.splitext(n)[0]: n for n in names} if not any(osp.splitext(n)[1] for n in names) else {}
    base = osp.basename(str(root).rstrip('/'))
    if base.endswith('.lmdb'):
        base = base[:-5]
    found, missing = [], []
    for entry in entries:
        entry = entry[2:] if entry.startswith('./') else entry
        candidates = []
        if list_root is not None:
            candidates.append(osp.relpath(osp.join(list_root, entry), root).replace(os.sep, '/'))
        else:
            candidates.append(entry)
            if entry.startswith(base + '/'):
                candidates.append(entry[len(base) + 1:])
        for cand in candidates:
            if cand in available:
                found.append(cand)
                break
            if stems and osp.splitext(cand)[0] in stems:
                found.append(stems[osp.splitext(cand)[0]])
                break
        else:
            missing.append(entry)
    if missing:
        message = (f'{where}.{key}: {len(missing)} of {len(entries)} listed images are not in {root}: '
                   f'{_few(missing)}')
        if not allow_missing:
            raise DatasetError(message + '. Fix the dataroot or the list (entries are relative to '
                               f'{"list_root " + str(list_root) if list_root else "the dataroot"}), or set '
                               '`allow_missing: true` to skip them with a warning.')
        get_root_logger().warning(message + ' (skipped: allow_missing is true)')
    if not found:
        raise DatasetError(f'{where}.{key}: none of the listed images exist in {root}; the source is empty')
    return found


def collect_clean(opt, where):
    """Names of the clean (gt) images of a source without ``dataroot_lq``."""
    backend = backend_of(opt, where)['type']
    names = list_names(opt.get('dataroot_gt'), backend, where, 'dataroot_gt', opt.get('recursive', True))
    list_key = 'list_file' if opt.get('list_file') else 'meta_info_file'
    if opt.get(list_key):
        entries = read_list_file(opt[list_key], where, list_key)
        names = select_listed(entries, names, opt['dataroot_gt'], where, list_key,
                              opt.get('allow_missing', False), opt.get('list_root'))
    return names


def collect_paired(opt, rule, where):
    """``[(lq_name, gt_name), ...]`` of a paired source, every lq matched to an existing gt.

    Errors: an lq whose gt does not exist (or whose name does not fit the pairing rule); with the
    ``same`` rule and no list file, gt images without an lq too (the folders should match one to one).
    """
    backend = backend_of(opt, where)['type']
    recursive = opt.get('recursive', True)
    lq_names = list_names(opt.get('dataroot_lq'), backend, where, 'dataroot_lq', recursive)
    gt_names = list_names(opt.get('dataroot_gt'), backend, where, 'dataroot_gt', recursive)
    list_key = 'list_file' if opt.get('list_file') else 'meta_info_file'
    listed = bool(opt.get(list_key))
    if listed:
        entries = read_list_file(opt[list_key], where, list_key)
        lq_names = select_listed(entries, lq_names, opt['dataroot_lq'], where, list_key,
                                 opt.get('allow_missing', False), opt.get('list_root'))
    gt_set = set(gt_names)
    gt_stems = {osp.splitext(n)[0]: n for n in gt_names} if not any(osp.splitext(n)[1] for n in gt_names) else {}
    pairs, unmatched = [], []
    for lq in lq_names:
        gt = rule.gt_name(lq)
        if gt is not None and gt not in gt_set and gt_stems:
            gt = gt_stems.get(osp.splitext(gt)[0], gt)
        if gt is None:
            unmatched.append(f'{lq} (does not fit the pairing rule)')
        elif gt not in gt_set:
            unmatched.append(f'{lq} -> {gt}')
        else:
            pairs.append((lq, gt))
    if unmatched:
        raise DatasetError(
            f'{where}: {len(unmatched)} of {len(lq_names)} lq images have no gt in {opt["dataroot_gt"]} '
            f'(pairing: {rule.describe()}; {len(lq_names)} lq, {len(gt_names)} gt images): {_few(unmatched)}. '
            'Fix the folders, or set the pairing rule (`pairing:` same | a preset | {type: regex, ...}, or '
            '`filename_tmpl`).')
    if type(rule) is PairingRule and not listed:
        extra = sorted(gt_set - {gt for _, gt in pairs})
        if extra:
            raise DatasetError(
                f'{where}: lq/gt mismatch: {len(lq_names)} lq images in {opt["dataroot_lq"]} but {len(gt_names)} '
                f'gt images in {opt["dataroot_gt"]}; gt without an lq of the same name: {_few(extra)}. '
                'Remove the extra files, give a `list_file`, or set a `pairing` rule.')
    return pairs


class ImageReader:
    """Reads named images of one source through basicsr's FileClient (disk or LMDB).

    ``roots`` maps a client key ('lq', 'gt') to its dataroot. The FileClient is made lazily in the
    process that reads (each DataLoader worker opens its own LMDB environments).
    """

    def __init__(self, backend_opt, roots, where):
        self.backend_opt = dict(backend_opt)
        self.roots = {key: str(root) for key, root in roots.items()}
        self.where = where
        self._client = None
        self._pid = None

    @property
    def is_lmdb(self):
        return self.backend_opt['type'] == 'lmdb'

    def path(self, key, name):
        """What the sample reports as ``<key>_path``: the file path, or the LMDB key (as basicsr does)."""
        return lmdb_key(name) if self.is_lmdb else osp.join(self.roots[key], name)

    def _get_client(self):
        if self._client is None or self._pid != os.getpid():
            opt = {k: v for k, v in self.backend_opt.items() if k != 'type'}
            if self.is_lmdb:
                opt['db_paths'] = list(self.roots.values())
                opt['client_keys'] = list(self.roots.keys())
            self._client = FileClient(self.backend_opt['type'], **opt)
            self._pid = os.getpid()
        return self._client

    def read(self, key, name, float32=True):
        """The image as HxWx3 RGB, decoded as basicsr decodes it (8-bit colour): float32 in [0, 1],
        or with ``float32=False`` the uint8 values.

        A training sample uses a crop: reading uint8 and converting only the crop
        (:func:`to_unit_float`) gives the same numbers for a fraction of the work (the full-image
        float conversion was a third of a sample's time).
        """
        location = f'{self.roots[key]}/{lmdb_key(name)} (LMDB key of {name})' if self.is_lmdb \
            else osp.join(self.roots[key], name)
        try:
            content = self._get_client().get(self.path(key, name), key)
        except Exception as err:  # noqa: BLE001 - re-raised with the path
            raise DatasetError(f'{self.where}: cannot read {key} image {location}: {err}') from err
        if content is None:
            raise DatasetError(f'{self.where}: {key} image {location} is missing from the LMDB; rebuild it '
                               'with scripts/create_lmdb.py')
        try:
            img = imfrombytes(content, float32=float32)
        except Exception:  # noqa: BLE001
            img = None
        if img is None:
            raise DatasetError(f'{self.where}: {key} image {location} is unreadable (corrupt or not an image); '
                               'replace it or remove it from the source')
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        return np.ascontiguousarray(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))


def to_unit_float(img):
    """uint8 image -> float32 in [0, 1], exactly as basicsr's ``imfrombytes(..., float32=True)``."""
    return img.astype(np.float32) / 255.
