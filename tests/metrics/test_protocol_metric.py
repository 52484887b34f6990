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


def test_not_quantised_and_registered():
    out, gt = _pair()
    quantised = np.round(np.clip(out, 0, 1) * 255) / 255
    assert calculate_psnr_protocol(out, gt) != pytest.approx(calculate_psnr_protocol(quantised, gt), abs=1e-6)
    assert calculate_metric({'img': out, 'img2': gt, 'extra': 1}, {'type': 'calculate_psnr_protocol'}) == \
        pytest.approx(calculate_psnr_protocol(out, gt))
    assert calculate_psnr_protocol.input_format == 'float_rgb'
    # uint8 input (a model that is not ours) is scaled to [0, 1]
    u8 = (gt * 255).round().astype(np.uint8)
    assert calculate_psnr_protocol(u8, u8) == np.inf or calculate_psnr_protocol(u8, u8) > 100
