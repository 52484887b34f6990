"""Noise: additive white Gaussian noise, float and the official PromptIR/AirNet uint8 variant."""
import numpy as np

from . import DEGRADATION_REGISTRY


@DEGRADATION_REGISTRY.register()
def gaussian_noise(img, rng, sigma=25, clip=True):
    """``img + N(0, (sigma/255)^2)`` per pixel and channel; ``sigma`` on the 0-255 scale; clipped to [0, 1]."""
    noisy = img + rng.standard_normal(img.shape) * (float(sigma) / 255.)
    if clip:
        noisy = np.clip(noisy, 0, 1)
    return noisy.astype(np.float32)


@DEGRADATION_REGISTRY.register()
def gaussian_noise_uint8(img, rng, sigma=25):
    """The official denoising recipe: ``clip(uint8 + randn*sigma, 0, 255)`` truncated to uint8.

    The clean image is first rounded to uint8 (as read from disk), noise is added on the 0-255 scale,
    clipped, and cast with ``astype(uint8)``, which truncates (PromptIR's ``_add_gaussian_noise``).
    """
    clean = np.round(np.clip(img, 0, 1) * 255.)
    noisy = np.clip(clean + rng.standard_normal(img.shape) * float(sigma), 0, 255).astype(np.uint8)
    return noisy.astype(np.float32) / 255.
