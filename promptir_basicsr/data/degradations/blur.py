"""Blur: isotropic Gaussian blur and linear motion blur (normalised kernels, reflected borders)."""
import math

import cv2
import numpy as np

from . import DEGRADATION_REGISTRY


def _filter(img, kernel):
    out = cv2.filter2D(np.ascontiguousarray(img, dtype=np.float32), -1, kernel.astype(np.float32),
                       borderType=cv2.BORDER_REFLECT_101)
    return out.reshape(img.shape)


def gaussian_kernel(sigma, kernel_size=None):
    """A normalised 2-D Gaussian kernel; default size covers +-3 sigma (odd)."""
    sigma = float(sigma)
    if kernel_size is None:
        kernel_size = 2 * int(math.ceil(3 * sigma)) + 1
    kernel_size = int(kernel_size) | 1
    ax = np.arange(kernel_size) - kernel_size // 2
    g = np.exp(-(ax ** 2) / (2 * sigma ** 2))
    kernel = np.outer(g, g)
    return kernel / kernel.sum()


def motion_kernel(length, angle):
    """A normalised line kernel of ``length`` pixels at ``angle`` degrees (0 = horizontal)."""
    length = max(1, int(round(length)))
    size = length | 1
    kernel = np.zeros((size, size), np.float32)
    centre = size // 2
    theta = math.radians(angle)
    dx, dy = math.cos(theta), -math.sin(theta)
    for t in np.linspace(-(length - 1) / 2, (length - 1) / 2, 4 * length):
        x, y = int(round(centre + t * dx)), int(round(centre + t * dy))
        kernel[y, x] = 1
    return kernel / kernel.sum()


@DEGRADATION_REGISTRY.register()
def gaussian_blur(img, rng, sigma=1.5, kernel_size=None):
    """Isotropic Gaussian blur of std ``sigma`` pixels (kernel ``kernel_size``, default 6 sigma + 1)."""
    return _filter(img, gaussian_kernel(sigma, kernel_size))


@DEGRADATION_REGISTRY.register()
def motion_blur(img, rng, length=9, angle=None):
    """Uniform linear motion blur over ``length`` pixels; ``angle`` in degrees, random from rng if None."""
    if angle is None:
        angle = float(rng.uniform(0, 180))
    return _filter(img, motion_kernel(length, angle))
