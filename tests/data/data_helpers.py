"""Helpers for the data tests: tiny images (16-48 px) written into tmp dirs."""
import os

import cv2
import numpy as np


def smooth_image(h, w, seed):
    """A smooth colourful uint8 RGB image (blurred noise stretched to 0-255)."""
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.random((h, w, 3)).astype(np.float32), (0, 0), 2)
    img = (img - img.min()) / (img.max() - img.min() + 1e-6)
    return (img * 255).round().astype(np.uint8)


def write_rgb(path, img):
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    assert cv2.imwrite(str(path), np.ascontiguousarray(img[..., ::-1]))
    return str(path)


def write_tree(root, files, size=(24, 32), seed=0):
    """Write images named by ``files`` (relative paths) under ``root``; returns ``{name: RGB uint8}``."""
    out = {}
    for i, name in enumerate(files):
        img = smooth_image(size[0], size[1], seed * 1000 + i)
        write_rgb(os.path.join(str(root), name), img)
        out[name] = img
    return out


def write_pairs(root, lq_names, gt_names, size=(24, 32), seed=0, lq_offset=40):
    """Paired folders ``root/lq`` and ``root/gt``; lq = gt darkened by ``lq_offset`` (so they differ)."""
    gts = {}
    for i, (lq_name, gt_name) in enumerate(zip(lq_names, gt_names)):
        gt = gts.get(gt_name)
        if gt is None:
            gt = gts[gt_name] = smooth_image(size[0], size[1], seed * 1000 + i)
            write_rgb(os.path.join(str(root), 'gt', gt_name), gt)
        lq = np.clip(gt.astype(int) - lq_offset, 0, 255).astype(np.uint8)
        write_rgb(os.path.join(str(root), 'lq', lq_name), lq)
    return str(os.path.join(str(root), 'lq')), str(os.path.join(str(root), 'gt'))


def mix_options(tree, **extra):
    """AllInOneDataset options over ``mix_tree``: noise x3, rain x2 (rain100l preset), haze x1 (ots preset)."""
    opt = {
        'name': 'mix', 'type': 'AllInOneDataset', 'phase': 'train', 'gt_size': 16,
        'sources': [
            {'name': 'noise25', 'dataroot_gt': tree['clean'], 'repeat': 3,
             'degradation': [{'type': 'gaussian_noise_uint8', 'sigma': 25}]},
            {'name': 'rain', 'dataroot_lq': tree['rain_lq'], 'dataroot_gt': tree['rain_gt'], 'pairing': 'rain100l',
             'repeat': 2},
            {'name': 'haze', 'dataroot_lq': tree['haze_lq'], 'dataroot_gt': tree['haze_gt'], 'pairing': 'ots',
             'repeat': 1},
        ],
    }
    opt.update(extra)
    return opt
