"""A tiny all-in-one demo data set made from the photos scikit-image ships (no download).

    from promptir_basicsr.data.demo import ensure_demo_data, make_demo_data
    ensure_demo_data('datasets/demo')   # make it if missing (or from an older generator version)

Layout (names mirror the official data sets, so the option files show the real pairing rules)::

    <root>/
      train/
        clean/                  16 clean 160x160 crops   (noise or any op, degraded on the fly)
        rain/rainy/rain-N.png   8 rainy  -> rain/gt/norain-N.png   (pairing: rain100l)
        haze/hazy/NNNN_A_B.png  16 hazy  -> haze/gt/NNNN.png       (pairing: sots; 2 hazy per gt)
        blur/lq/, blur/gt/      8 motion-blur pairs, same names
        lowlight/lq/, lowlight/gt/  8 low-light pairs, same names
      val/
        clean/                  3 clean 96x96 images     (noise sigma 15/25/50 made by DegradedImageDataset)
        rain/input/, rain/target/   3 pairs, same names (Rain100L test style)
        haze/hazy/NNNN_A_B.png -> haze/gt/NNNN.png        3 pairs (SOTS style, pairing: sots)
        blur/lq/, blur/gt/      3 pairs
        lowlight/lq/, lowlight/gt/  3 pairs
      demo_meta.json            generator version, seed, counts

Train and val come from different scenes (:func:`scene_of`: the two views of scikit-image's stereo
motorcycle are one scene, so only the validation set has it), so the validation numbers are measured on
unseen images. Every synthetic image uses a generator seeded from its name (:func:`promptir_basicsr.data.transforms.image_rng`), so the data are identical on every machine.
"""
import json
import os
import os.path as osp
import shutil
import time

import cv2
import numpy as np

from .degradations import DEGRADATION_REGISTRY
from .transforms import image_rng

VERSION = 2  # 2: the train set no longer holds motorcycle_left (the same scene as val's motorcycle_right)
TRAIN_PHOTOS = ('astronaut', 'coffee', 'rocket', 'hubble_deep_field', 'immunohistochemistry', 'brick', 'retina',
                'camera')
VAL_PHOTOS = ('chelsea', 'motorcycle_right', 'coins')
TRAIN_SIZE, VAL_SIZE = 160, 96


def scene_of(name):
    """The scene a photo shows: the stereo views ``motorcycle_left``/``motorcycle_right`` are one."""
    for view in ('_left', '_right'):
        if name.endswith(view):
            return name[:-len(view)]
    return name


def _photo(name):
    from skimage import data as skdata
    if name.startswith('motorcycle_'):
        left, right, _ = skdata.stereo_motorcycle()
        img = left if name.endswith('left') else right
    else:
        img = getattr(skdata, name)()
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return img[..., :3].astype(np.float32) / 255.


def _crops(name, size, count):
    """``count`` crops of ``size``: the photo scaled so its short side is ~1.7x size, crops spread out."""
    img = _photo(name)
    h, w = img.shape[:2]
    factor = (1.7 * size) / min(h, w)
    img = cv2.resize(img, (max(size, round(w * factor)), max(size, round(h * factor))), interpolation=cv2.INTER_AREA)
    h, w = img.shape[:2]
    spots = [(0, 0), (h - size, w - size), ((h - size) // 2, (w - size) // 2), (0, w - size)]
    return [np.ascontiguousarray(img[t:t + size, l:l + size]) for t, l in spots[:count]]


def _write(path, img):
    os.makedirs(osp.dirname(path), exist_ok=True)
    bgr = np.round(np.clip(img, 0, 1)[..., ::-1] * 255.).astype(np.uint8)
    if not cv2.imwrite(path, bgr):
        raise OSError(f'make_demo_data: cannot write {path}')


def _rain(img, key):
    rng = image_rng(key)
    return DEGRADATION_REGISTRY.get('rain')(img, rng, density=float(rng.uniform(0.01, 0.03)),
                                           length=int(rng.integers(9, 17)), angle=float(rng.uniform(70, 110)),
                                           brightness=float(rng.uniform(0.5, 0.8)))


def _hazy(img, key):
    rng = image_rng(key)
    a, beta = float(rng.uniform(0.75, 0.95)), float(rng.uniform(0.6, 1.6))
    depth = ('center', 'vertical')[int(rng.integers(2))]
    return DEGRADATION_REGISTRY.get('haze')(img, rng, beta=beta, A=a, depth=depth), a, beta


def _blur(img, key):
    rng = image_rng(key)
    return DEGRADATION_REGISTRY.get('motion_blur')(img, rng, length=int(rng.integers(5, 12)), angle=None)


def _lowlight(img, key):
    rng = image_rng(key)
    return DEGRADATION_REGISTRY.get('low_light')(img, rng, gamma=float(rng.uniform(1.5, 2.5)),
                                                 scale=float(rng.uniform(0.2, 0.45)), noise_sigma=3.0)


def _make_split(root, split, clean, hazy_per_gt, counts):
    """Write one split from its clean crops; ``counts`` collects the number of files per folder."""
    def put(rel, img):
        _write(osp.join(root, split, rel), img)
        folder = osp.dirname(rel)
        counts[f'{split}/{folder}'] = counts.get(f'{split}/{folder}', 0) + 1

    for i, img in enumerate(clean):
        put(f'clean/{i + 1:04d}.png', img)
    half = len(clean) // 2 if split == 'train' else len(clean)
    rain_set = clean[:half]
    haze_set = clean[-half:] if split == 'train' else clean
    blur_set = clean[0::2] if split == 'train' else clean
    low_set = clean[1::2] if split == 'train' else clean
    for i, img in enumerate(rain_set, 1):
        key = f'{split}/rain/{i}'
        if split == 'train':
            put(f'rain/rainy/rain-{i}.png', _rain(img, key))
            put(f'rain/gt/norain-{i}.png', img)
        else:
            put(f'rain/input/{i}.png', _rain(img, key))
            put(f'rain/target/{i}.png', img)
    for i, img in enumerate(haze_set, 1):
        put(f'haze/gt/{i:04d}.png', img)
        for k in range(hazy_per_gt):
            hazy, a, beta = _hazy(img, f'{split}/haze/{i}/{k}')
            put(f'haze/hazy/{i:04d}_{a:.2f}_{beta:.2f}.png', hazy)
    for i, img in enumerate(blur_set, 1):
        put(f'blur/lq/{i:04d}.png', _blur(img, f'{split}/blur/{i}'))
        put(f'blur/gt/{i:04d}.png', img)
    for i, img in enumerate(low_set, 1):
        put(f'lowlight/lq/{i:04d}.png', _lowlight(img, f'{split}/lowlight/{i}'))
        put(f'lowlight/gt/{i:04d}.png', img)


def make_demo_data(root='datasets/demo', overwrite=True):
    """Write the demo data set under ``root`` (layout in the module docstring); returns its metadata.

    Takes about a second. ``overwrite`` removes an existing ``root`` first.
    """
    start = time.time()
    if osp.exists(root):
        if not overwrite:
            raise FileExistsError(f'make_demo_data: {root} exists (pass overwrite=True to rebuild it)')
        shutil.rmtree(root)
    train = [c for name in TRAIN_PHOTOS for c in _crops(name, TRAIN_SIZE, 2)]
    val = [_crops(name, VAL_SIZE, 3)[2] for name in VAL_PHOTOS]
    counts = {}
    _make_split(root, 'train', train, 2, counts)
    _make_split(root, 'val', val, 1, counts)
    meta = {'version': VERSION, 'train_size': TRAIN_SIZE, 'val_size': VAL_SIZE, 'files': dict(sorted(counts.items())),
            'seconds': round(time.time() - start, 2)}
    with open(osp.join(root, 'demo_meta.json'), 'w', encoding='utf-8') as f:
        json.dump(meta, f, indent=2)
    return meta


def is_complete(root):
    """True when ``root`` holds a complete demo set of this generator version (its metadata is written last)."""
    meta_path = osp.join(root, 'demo_meta.json')
    if not osp.isfile(meta_path):
        return False
    try:
        with open(meta_path, encoding='utf-8') as f:
            return json.load(f).get('version') == VERSION
    except (OSError, ValueError):
        return False


def ensure_demo_data(root='datasets/demo'):
    """Make the demo data under ``root`` unless a complete copy of this version is there; returns root."""
    if not is_complete(root):
        make_demo_data(root, overwrite=True)
    return root


# ---- the top-level option ``demo_data`` ---------------------------------------------------------------------
# ``demo_data: true`` creates ``datasets/demo`` (relative to the current directory, where the option files expect
# it) when it is missing or from an older generator; ``demo_data: <folder>`` uses that folder. Called by
# ``options.prepare.prepare_run`` before the options are validated.
DEFAULT_ROOT = 'datasets/demo'


def demo_data_root(opt):
    """The folder ``opt['demo_data']`` asks for, or None when it asks for none."""
    value = opt.get('demo_data')
    if not value:
        return None
    return value if isinstance(value, str) else DEFAULT_ROOT


def prepare_demo_data(opt):
    """Create the demo data if ``opt['demo_data']`` asks for it; returns its folder or None."""
    root = demo_data_root(opt)
    if root is None:
        return None
    # Under torchrun every rank gets here at once: a file lock lets one write, the others then find
    # the data complete (building it removes an incomplete folder first, which would break a writer).
    lock_path = osp.abspath(root).rstrip(os.sep) + '.lock'
    os.makedirs(osp.dirname(lock_path), exist_ok=True)
    with open(lock_path, 'w') as lock:
        try:
            import fcntl
            fcntl.flock(lock, fcntl.LOCK_EX)
        except ImportError:  # not POSIX: no concurrent launches to guard against here
            pass
        return ensure_demo_data(root)
