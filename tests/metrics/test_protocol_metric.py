import numpy as np
import pytest
from basicsr.metrics import calculate_metric
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from promptir_basicsr.metrics.protocol_metric import calculate_psnr_protocol, calculate_ssim_protocol


def _pair():
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 256, (24, 20, 3)).astype(np.float32) / 255.
    out = gt + rng.normal(0, 0.05, gt.shape).astype(np.float32)  # not clamped: the metric clamps
    return out, gt


def test_against_skimage_on_a_known_pair():
    out, gt = _pair()
    clamped = np.clip(out, 0, 1)
    assert calculate_psnr_protocol(out, gt) == pytest.approx(peak_signal_noise_ratio(gt, clamped, data_range=1))
    assert calculate_ssim_protocol(out, gt) == pytest.approx(
        structural_similarity(gt, clamped, data_range=1, channel_axis=-1))
    # a hand-computed value: uniform error 0.1 gives exactly 20 dB
    assert calculate_psnr_protocol(np.full((8, 8, 3), 0.6), np.full((8, 8, 3), 0.5)) == pytest.approx(20.0)


def test_ssim_with_gaussian_weights_as_moce_ir_tests():
    """MoCE-IR's test (src/test.py:48-49): structural_similarity(..., gaussian_weights=True), from the option file."""
    out, gt = _pair()
    expected = structural_similarity(gt, np.clip(out, 0, 1), data_range=1, channel_axis=-1, gaussian_weights=True)
    assert calculate_ssim_protocol(out, gt, gaussian_weights=True) == pytest.approx(expected)
    metric_opt = {'type': 'calculate_ssim_protocol', 'gaussian_weights': True}
    assert calculate_metric({'img': out, 'img2': gt}, metric_opt) == pytest.approx(expected)
    assert expected != pytest.approx(calculate_ssim_protocol(out, gt), abs=1e-4)


def test_not_quantised_and_registered():
    out, gt = _pair()
    quantised = np.round(np.clip(out, 0, 1) * 255) / 255
    assert calculate_psnr_protocol(out, gt) != pytest.approx(calculate_psnr_protocol(quantised, gt), abs=1e-6)
    assert calculate_metric({'img': out, 'img2': gt, 'extra': 1}, {'type': 'calculate_psnr_protocol'}) == \
        pytest.approx(calculate_psnr_protocol(out, gt))
    assert calculate_psnr_protocol.input_format == 'float_rgb'


def test_uint8_images_are_divided_by_255():
    """Guards the uint8 path (a model that is not ours passes basicsr's uint8 images): a constant offset
    of 10 grey levels is exactly 20*log10(255/10) dB. Without the division both images clip to 1 and the
    PSNR is infinite; comparing an image with itself could never tell."""
    gt = np.random.default_rng(1).integers(20, 200, (16, 12, 3)).astype(np.uint8)
    assert calculate_psnr_protocol(gt + 10, gt) == pytest.approx(20 * np.log10(255 / 10), abs=1e-4)
    # the same pair as floats gives the same value; grey (H, W) images work too
    assert calculate_psnr_protocol((gt + 10) / 255., gt / 255.) == pytest.approx(20 * np.log10(255 / 10), abs=1e-4)
    assert calculate_psnr_protocol(gt[..., 0] + 10, gt[..., 0]) == pytest.approx(20 * np.log10(255 / 10), abs=1e-4)
    expected_ssim = structural_similarity(gt / 255., (gt + 10) / 255., data_range=1, channel_axis=-1)
    assert calculate_ssim_protocol(gt + 10, gt) == pytest.approx(expected_ssim, abs=1e-6)
    assert expected_ssim < 0.999  # an offset lowers SSIM (its luminance term) at data range 1, not at 255


def test_output_is_clamped_before_the_metric():
    """Guards the clamp of the output to [0, 1]: out-of-range values must count as 0 or 1."""
    gt = np.full((8, 8, 3), 0.9)
    out = np.full((8, 8, 3), 1.4)  # clamped to 1.0: error 0.1, 20 dB (unclamped: 0.5, 6.02 dB)
    assert calculate_psnr_protocol(out, gt) == pytest.approx(20.0)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match='shapes differ'):
        calculate_psnr_protocol(np.zeros((8, 8, 3)), np.zeros((8, 9, 3)))
    with pytest.raises(ValueError, match='shapes differ'):
        calculate_ssim_protocol(np.zeros((8, 8, 3)), np.zeros((8, 9, 3)))
