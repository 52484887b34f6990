"""Crops, flips/rotations and random number generators for the datasets (numpy HWC images).

Randomness comes from a ``numpy.random.Generator`` passed in, never from global state, so a sample is
a deterministic function of its generator (see :func:`process_rng` and :func:`image_rng`).
"""
import os
import zlib

import numpy as np
import torch

AUGMENT_MODES = ('official7', 'basicsr', 'none')


def augment_mode(img, mode):
    """PromptIR/AirNet's ``data_augmentation(image, mode)`` for HWC arrays, modes 0-7.

    0 identity, 1 flip up-down, 2 rot90, 3 rot90 + flip up-down, 4 rot180, 5 rot180 + flip up-down,
    6 rot270, 7 rot270 + flip up-down (rotations counter-clockwise, as ``np.rot90``).
    """
    if mode == 0:
        out = img
    elif mode == 1:
        out = np.flipud(img)
    elif mode % 2 == 0:
        out = np.rot90(img, k=mode // 2)
    else:
        out = np.flipud(np.rot90(img, k=mode // 2))
    return np.ascontiguousarray(out)


def basicsr_flips(img, hflip, vflip, rot90):
    """basicsr's ``augment`` for one HWC image: horizontal flip, vertical flip, transpose (in that order)."""
    if hflip:
        img = img[:, ::-1]
    if vflip:
        img = img[::-1]
    if rot90:
        img = img.transpose(1, 0, 2)
    return np.ascontiguousarray(img)


class Augmenter:
    """Picks one geometric transform per crop from ``rng`` and applies it identically to lq and gt.

    ``official7``: one of PromptIR's 7 non-identity modes (``random.randint(1, 7)``, every crop is
    transformed). ``basicsr``: basicsr's ``augment`` (hflip with p=0.5 if ``use_hflip``, vflip and
    transpose each with p=0.5 if ``use_rot``), drawn from ``rng`` instead of Python's ``random``.
    ``none``: identity.
    """

    def __init__(self, kind='official7', use_hflip=True, use_rot=True):
        if kind not in AUGMENT_MODES:
            raise ValueError(f'augment must be one of {", ".join(AUGMENT_MODES)}, got {kind!r}')
        self.kind, self.use_hflip, self.use_rot = kind, use_hflip, use_rot

    def draw(self, rng):
        if self.kind == 'official7':
            return ('mode', int(rng.integers(1, 8)))
        if self.kind == 'basicsr':
            return ('flips', self.use_hflip and rng.random() < 0.5, self.use_rot and rng.random() < 0.5,
                    self.use_rot and rng.random() < 0.5)
        return ('none',)

    @staticmethod
    def apply(img, drawn):
        if drawn[0] == 'mode':
            return augment_mode(img, drawn[1])
        if drawn[0] == 'flips':
            return basicsr_flips(img, *drawn[1:])
        return img


def random_crop_box(h, w, size, rng):
    """(top, left) of a ``size`` x ``size`` crop, uniform over valid positions."""
    return int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))


def center_crop_to_multiple(img, multiple):
    """Centre crop so both sides are multiples of ``multiple`` (the official test's ``crop_img``)."""
    if not multiple or multiple <= 1:
        return img
    h, w = img.shape[:2]
    dh, dw = h % multiple, w % multiple
    return img[dh // 2:h - dh + dh // 2, dw // 2:w - dw + dw // 2]


def process_rng(cache):
    """The training generator of the current process, created once per process (``cache`` is a dict).

    In a DataLoader worker it is seeded with ``torch.utils.data.get_worker_info().seed``
    (= base_seed + worker_id, where base_seed is drawn from the main process's torch RNG each time the
    workers start; basicsr seeds that RNG with ``manual_seed + rank``). So sampling is reproducible for a
    given ``manual_seed``, distinct per worker, per rank and per epoch (new workers each epoch unless
    ``persistent_workers``). basicsr's own ``worker_init_fn`` reseeds ``random``/``np.random`` with the
    same value every epoch; we do not use those. Without workers (``num_worker_per_gpu: 0``) the seed is
    drawn once from torch's global RNG in the main process.
    """
    info = torch.utils.data.get_worker_info()
    key = ('worker', info.seed, info.id) if info is not None else ('main', os.getpid())
    if cache.get('key') != key:
        seed = info.seed if info is not None else int(torch.randint(0, 2**62, (1,)).item())
        cache['key'] = key
        cache['rng'] = np.random.default_rng(seed)
    return cache['rng']


def image_seed(name, seed=0):
    """A stable per-image seed: ``zlib.crc32`` of the image's relative name, combined with ``seed``."""
    return [int(seed), zlib.crc32(str(name).encode('utf-8'))]


def image_rng(name, seed=0):
    """The generator of one validation image: same noise for the same name and seed, anywhere."""
    return np.random.default_rng(image_seed(name, seed))
