"""PSNR and SSIM as the PromptIR paper computes them (its ``utils/val_utils.py``).

RGB images as float arrays in [0, 1] (H, W, 3): the network output clamped to [0, 1] and NOT
quantised to uint8, the ground truth as loaded (uint8 / 255); no border crop, no Y channel;
scikit-image's ``peak_signal_noise_ratio`` and ``structural_similarity`` with ``data_range=1``
and ``channel_axis=-1`` (the official ``multichannel=True`` fails on scikit-image >= 0.19).

basicsr's own ``calculate_psnr``/``calculate_ssim`` take uint8 BGR images (0..255) instead and
can stay beside these in one option file. ``calculate_metric(data, opt)`` passes the ``data`` keys
as arguments; our models (``AllInOneModel``, ``AirNetModel``) look at the attribute
``input_format`` of each metric function: for ``'float_rgb'`` they pass ``img`` (result) and
``img2`` (ground truth) as float32 RGB arrays in [0, 1], otherwise basicsr's uint8 BGR images.
In an option file::

    val:
      metrics:
        psnr: {type: calculate_psnr_protocol}
        ssim: {type: calculate_ssim_protocol}

A model that is not ours gives uint8 images: these functions detect an integer dtype and divide
by 255. Such images are BGR, which changes neither value: PSNR is over all pixels and channels, and
SSIM is the mean of the per-channel SSIMs.
"""
import numpy as np
from basicsr.utils.registry import METRIC_REGISTRY
from skimage.metrics import peak_signal_noise_ratio, structural_similarity


def _as_float(img):
    img = np.asarray(img)
    if np.issubdtype(img.dtype, np.integer):
        img = img.astype(np.float32) / 255.
    img = np.clip(img, 0, 1)
    if img.ndim == 2:
        img = img[..., None]
    return img


def _check(img, img2):
    if img.shape != img2.shape:
        raise ValueError(f'Image shapes differ: {img.shape} vs {img2.shape}')


@METRIC_REGISTRY.register()
def calculate_psnr_protocol(img, img2, **kwargs):
    """PSNR (dB) of ``img`` against ``img2`` (float RGB in [0, 1], H x W x C), data range 1."""
    img, img2 = _as_float(img), _as_float(img2)
    _check(img, img2)
    return float(peak_signal_noise_ratio(img2, img, data_range=1))


@METRIC_REGISTRY.register()
def calculate_ssim_protocol(img, img2, gaussian_weights=False, **kwargs):
    """SSIM of ``img`` against ``img2`` (float RGB in [0, 1], H x W x C): skimage defaults
    (7x7 uniform window), ``data_range=1``, ``channel_axis=-1``. ``gaussian_weights: true``: skimage's
    Gaussian window (sigma 1.5) instead, as MoCE-IR's test computes it (``eduardzamfir/MoCE-IR``
    ``src/test.py:48-49``)."""
    img, img2 = _as_float(img), _as_float(img2)
    _check(img, img2)
    return float(structural_similarity(img2, img, data_range=1, channel_axis=-1,
                                       gaussian_weights=bool(gaussian_weights)))


calculate_psnr_protocol.input_format = 'float_rgb'
calculate_ssim_protocol.input_format = 'float_rgb'
