"""The degradation library: physics and statistics of each op, the pipeline builder, the registry."""
import numpy as np
import pytest
from data_helpers import smooth_image

from promptir_basicsr.data.degradations import (DEGRADATION_REGISTRY, build_pipeline, known_degradations,
                                                resolve_param)


def op(name):
    return DEGRADATION_REGISTRY.get(name)


@pytest.fixture(scope='module')
def photo():
    """A 48x48 float RGB crop of a real photo (scikit-image's astronaut, bundled in the wheel)."""
    from skimage import data
    return np.ascontiguousarray(data.astronaut()[200:296:2, 180:276:2]).astype(np.float32) / 255.


def mid_grey(h=48, w=48):
    return np.full((h, w, 3), 0.5, np.float32)


def test_every_family_is_registered():
    assert {'gaussian_noise', 'gaussian_noise_uint8', 'gaussian_blur', 'motion_blur', 'jpeg', 'rain', 'haze',
            'low_light'} <= set(known_degradations())


@pytest.mark.parametrize('name', ['gaussian_noise', 'gaussian_noise_uint8', 'gaussian_blur', 'motion_blur', 'jpeg',
                                  'rain', 'haze', 'low_light'])
def test_ops_are_pure_float32_and_deterministic_given_the_rng(name, photo):
    before = photo.copy()
    a = op(name)(photo, np.random.default_rng(7))
    b = op(name)(photo, np.random.default_rng(7))
    assert a.dtype == np.float32 and a.shape == photo.shape
    assert a.min() >= 0 and a.max() <= 1
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(photo, before)  # input untouched


@pytest.mark.parametrize('sigma', [15, 25, 50])
def test_gaussian_noise_std_is_sigma_over_255(sigma):
    clean = mid_grey(64, 64)
    noisy = op('gaussian_noise')(clean, np.random.default_rng(0), sigma=sigma)
    residual = noisy - clean
    assert abs(residual.std() - sigma / 255.) < 0.03 * sigma / 255. + 0.002
    assert abs(residual.mean()) < 0.01


def test_official_uint8_noise_matches_the_formula_clips_and_truncates():
    """Guards the uint8 recipe's clip to [0, 255] and its truncation: the image holds black and white
    bands, where sigma 50 pushes most values out of range (mid-grey alone never reaches the clip, and
    without it astype(uint8) wraps -20 to 236)."""
    clean = np.full((48, 48, 3), 128 / 255., np.float32)
    clean[:12], clean[-12:] = 0.0, 1.0
    noisy = op('gaussian_noise_uint8')(clean, np.random.default_rng(3), sigma=50)
    draws = np.random.default_rng(3).standard_normal(clean.shape) * 50
    expected = np.clip(np.round(clean * 255) + draws, 0, 255).astype(np.uint8).astype(np.float32) / 255.
    np.testing.assert_array_equal(noisy, expected)
    assert np.allclose(noisy * 255, np.round(noisy * 255), atol=1e-4)  # on the uint8 grid
    black, white = noisy[:12], noisy[-12:]
    # clipped, not wrapped: about half of the black band is exactly 0, half of the white band exactly 1,
    # and no black pixel jumps to the top of the range
    assert 0.4 < (black == 0).mean() < 0.6 and 0.4 < (white == 1).mean() < 0.6
    assert black.max() < 0.8 and white.min() > 0.2
    # astype(uint8) truncates (rounding would not): on mid-grey, where the clip never fires, the noise
    # has a bias of -0.5 grey levels (standard error here 0.014)
    grey = np.full((200, 200, 3), 128 / 255., np.float32)
    residual = (op('gaussian_noise_uint8')(grey, np.random.default_rng(4), sigma=5) - grey) * 255
    assert -0.6 < residual.mean() < -0.4 and abs(residual.std() - 5) < 0.1


def test_blur_preserves_mean_and_removes_high_frequencies(photo):
    def high_freq_energy(img):
        return float(np.abs(np.diff(img, axis=0)).mean() + np.abs(np.diff(img, axis=1)).mean())

    for name, params in [('gaussian_blur', {'sigma': 2.0}), ('motion_blur', {'length': 9, 'angle': 30})]:
        blurred = op(name)(photo, np.random.default_rng(0), **params)
        assert abs(blurred.mean() - photo.mean()) < 5e-3, name
        assert high_freq_energy(blurred) < 0.6 * high_freq_energy(photo), name
    # a constant image stays constant (kernels sum to one)
    np.testing.assert_allclose(op('gaussian_blur')(mid_grey(), None, sigma=3), mid_grey(), atol=1e-6)


def test_motion_blur_smears_along_its_angle():
    img = np.zeros((31, 31, 3), np.float32)
    img[15, 15] = 1.0
    horizontal = op('motion_blur')(img, None, length=9, angle=0)[..., 0]
    assert np.count_nonzero(horizontal[15]) == 9 and np.count_nonzero(horizontal[14]) == 0
    vertical = op('motion_blur')(img, None, length=9, angle=90)[..., 0]
    assert np.count_nonzero(vertical[:, 15]) == 9 and np.count_nonzero(vertical[:, 14]) == 0


def test_jpeg_error_falls_as_quality_rises(photo):
    errors = [float(np.abs(op('jpeg')(photo, None, quality=q) - photo).mean()) for q in (10, 30, 60, 95)]
    assert errors == sorted(errors, reverse=True) and errors[0] > 2 * errors[-1]
    with pytest.raises(ValueError, match='quality'):
        op('jpeg')(photo, None, quality=0)


def test_haze_follows_the_atmospheric_scattering_model_exactly(photo):
    rng = np.random.default_rng(0)
    depth = rng.random(photo.shape[:2]).astype(np.float32)
    hazy = op('haze')(photo, None, beta=1.3, A=0.85, depth=depth)
    t = np.exp(-1.3 * depth)[..., None]
    np.testing.assert_allclose(hazy, photo * t + 0.85 * (1 - t), atol=1e-6)
    # uniform depth: one transmission everywhere, so I - A = (J - A) * exp(-beta)
    uniform = op('haze')(photo, None, beta=0.7, A=1.0, depth='uniform')
    np.testing.assert_allclose(uniform - 1.0, (photo - 1.0) * np.exp(-0.7), atol=1e-6)
    # centre proxy: depth 0 in the corners (no haze), 1 in the middle (t = exp(-beta))
    centre = op('haze')(photo, None, beta=2.0, A=0.9, depth='center')
    np.testing.assert_allclose(centre[0, 0], photo[0, 0], atol=1e-6)
    small = op('haze')(photo[:47, :47], None, beta=2.0, A=0.9, depth='center')
    np.testing.assert_allclose(small[23, 23], photo[23, 23] * np.exp(-2.0) + 0.9 * (1 - np.exp(-2.0)), atol=1e-6)
    with pytest.raises(ValueError, match='depth map'):
        op('haze')(photo, None, depth=np.ones((3, 3)))


def test_low_light_darkens(photo):
    dark = op('low_light')(photo, np.random.default_rng(0), gamma=2.0, scale=0.4, noise_sigma=0)
    assert dark.mean() < 0.5 * photo.mean()
    np.testing.assert_allclose(dark, 0.4 * photo ** 2, atol=1e-6)
    noisy_dark = op('low_light')(photo, np.random.default_rng(0), gamma=2.0, scale=0.4, noise_sigma=5)
    assert noisy_dark.mean() < photo.mean() and 2 / 255 < (noisy_dark - dark).std() < 8 / 255


def test_rain_adds_bright_streaks(photo):
    rainy = op('rain')(photo, np.random.default_rng(1), density=0.03, length=11, angle=90, brightness=0.8)
    diff = rainy - photo
    assert diff.min() >= -1e-6  # additive: never darker
    assert diff.mean() > 0.005 and diff.max() > 0.3
    # vertical streaks: the added layer correlates far more along columns than along rows
    layer = diff[..., 0]
    along = np.corrcoef(layer[:-1].ravel(), layer[1:].ravel())[0, 1]
    across = np.corrcoef(layer[:, :-1].ravel(), layer[:, 1:].ravel())[0, 1]
    assert along > across + 0.3


def test_param_specs_value_range_choice():
    rng = np.random.default_rng(0)
    assert resolve_param(25, rng) == 25
    ints = {resolve_param([15, 17], rng) for _ in range(200)}
    assert ints == {15, 16, 17}
    floats = [resolve_param([0.5, 1.5], rng) for _ in range(200)]
    assert all(0.5 <= v < 1.5 for v in floats) and len(set(floats)) > 100
    assert {resolve_param({'choice': [15, 25, 50]}, rng) for _ in range(200)} == {15, 25, 50}


def test_pipeline_applies_ops_in_order_with_resolved_params(photo):
    pipeline = build_pipeline([{'type': 'gaussian_blur', 'sigma': [1.0, 2.0]},
                               {'type': 'gaussian_noise', 'sigma': {'choice': [10, 20]}}])
    assert pipeline.names == ['gaussian_blur', 'gaussian_noise']
    resolved = pipeline.sample(np.random.default_rng(5))
    out = pipeline.apply(photo, np.random.default_rng(9), resolved)
    by_hand = op('gaussian_blur')(photo, None, **resolved[0])
    by_hand = op('gaussian_noise')(by_hand, np.random.default_rng(9), **resolved[1])
    np.testing.assert_allclose(out, by_hand, atol=1e-7)
    assert pipeline.describe() == 'gaussian_blur_sigma1to2+gaussian_noise_sigma10or20'


def test_pipeline_errors_name_the_option_and_list_known_names():
    with pytest.raises(KeyError) as err:
        build_pipeline([{'type': 'gausian_noise', 'sigma': 25}], where='datasets.train.sources[0] (noise)')
    text = str(err.value)
    assert 'sources[0] (noise)' in text and "unknown degradation type 'gausian_noise'" in text
    assert 'gaussian_noise' in text and 'jpeg' in text and 'haze' in text
    with pytest.raises(ValueError, match="no parameter 'sigmaa'.*takes: sigma, clip"):
        build_pipeline([{'type': 'gaussian_noise', 'sigmaa': 25}])
    with pytest.raises(ValueError, match=r'\[low, high\]'):
        build_pipeline([{'type': 'gaussian_noise', 'sigma': [1, 2, 3]}])
    with pytest.raises(ValueError, match='choice'):
        build_pipeline([{'type': 'gaussian_noise', 'sigma': {'pick': [1, 2]}}])
    with pytest.raises(ValueError, match='`type`'):
        build_pipeline([{'sigma': 25}])


def test_a_user_op_registers_and_is_used_by_name(photo):
    if 'test_invert_op' not in DEGRADATION_REGISTRY:
        @DEGRADATION_REGISTRY.register()
        def test_invert_op(img, rng, amount=1.0):
            return (1 - img) * amount + img * (1 - amount)
    pipeline = build_pipeline([{'type': 'test_invert_op', 'amount': [0.9, 1.0]}])
    out = pipeline(photo, np.random.default_rng(0))
    assert np.corrcoef(out.ravel(), photo.ravel())[0, 1] < -0.9
    assert 'test_invert_op' in known_degradations()


def test_smooth_helper_is_small():
    assert smooth_image(16, 16, 0).shape == (16, 16, 3)


# ---- details that mutation testing (scripts/mutation_test.py degradations) found untested -----------
def _impulse(size=31):
    img = np.zeros((size, size, 3), np.float32)
    img[size // 2, size // 2] = 1.0
    return img


@pytest.mark.parametrize('sigma, kernel_size', [(1.5, None), (0.8, None), (2.0, 7), (1.0, 6)])
def test_gaussian_blur_impulse_response_is_the_sampled_gaussian(sigma, kernel_size):
    """Guards the kernel: exp(-x^2 / (2 sigma^2)) sampled at integer offsets, normalised, separable, over
    2*ceil(3 sigma)+1 pixels by default (an even kernel_size is made odd by adding one)."""
    size = kernel_size | 1 if kernel_size else 2 * int(np.ceil(3 * sigma)) + 1
    x = np.arange(size) - size // 2
    g = np.exp(-x ** 2 / (2 * sigma ** 2))
    expected = np.zeros((31, 31), np.float32)
    window = slice(15 - size // 2, 15 + size // 2 + 1)
    expected[window, window] = np.outer(g, g) / np.outer(g, g).sum()
    out = op('gaussian_blur')(_impulse(), None, sigma=sigma, kernel_size=kernel_size)
    for c in range(3):
        np.testing.assert_allclose(out[..., c], expected, atol=1e-7)


def test_blur_borders_are_reflected_without_the_edge_pixel():
    """Guards BORDER_REFLECT_101 (cba|bcd, not cba|abc, not zeros): a step at the image edge."""
    img = np.zeros((1, 5, 3), np.float32)
    img[0, 0] = 1.0
    out = op('gaussian_blur')(img, None, sigma=1.0, kernel_size=3)[0, :, 0]
    g = np.exp(-np.arange(-1, 2) ** 2 / 2.0)
    g2 = np.outer(g, g) / np.outer(g, g).sum()
    # one row: the vertical taps all see the same row, so the row kernel is the column sums of g2
    row = g2.sum(axis=0)
    np.testing.assert_allclose(out[:3], [row[1], row[0], 0.0], atol=1e-7)  # left neighbour reflects pixel 1 (0)
    assert out.dtype == np.float32


@pytest.mark.parametrize('length, angle, points', [
    (5, 0, [(2, 0), (2, 1), (2, 2), (2, 3), (2, 4)]),
    (5, 90, [(0, 2), (1, 2), (2, 2), (3, 2), (4, 2)]),
    (3, 45, [(0, 2), (1, 1), (2, 0)]),  # 45 degrees: up and to the right (image rows grow downwards)
])
def test_motion_kernel_is_a_normalised_line_at_the_angle(length, angle, points):
    from promptir_basicsr.data.degradations.blur import motion_kernel
    kernel = motion_kernel(length, angle)
    expected = np.zeros((length | 1, length | 1), np.float32)
    for y, x in points:
        expected[y, x] = 1.0 / len(points)
    np.testing.assert_allclose(kernel, expected, atol=1e-7)
    assert kernel.dtype == np.float32


def test_vertical_and_center_depth_proxies():
    """Guards the 'vertical' proxy (far at the top, 1 -> 0 down the rows) and the centre proxy's range."""
    from promptir_basicsr.data.degradations.weather import depth_proxy
    assert depth_proxy((2, 3), 'uniform').dtype == np.float32 and depth_proxy((2, 3), 'uniform').min() == 1.0
    vertical = depth_proxy((5, 3), 'vertical')
    np.testing.assert_allclose(vertical, np.repeat(np.array([1, 0.75, 0.5, 0.25, 0], np.float32)[:, None], 3, axis=1))
    assert vertical.dtype == np.float32
    centre = depth_proxy((5, 7), 'center')
    assert centre.shape == (5, 7) and centre.dtype == np.float32
    assert centre[2, 3] == 1.0 and centre.min() == 0.0 and centre[0, 0] == centre[4, 6] == 0.0
    np.testing.assert_allclose(depth_proxy((1, 1), 'center'), [[1.0]])  # one pixel: no division by zero
    with pytest.raises(ValueError, match="unknown depth proxy 'sky'"):
        depth_proxy((2, 2), 'sky')


def test_rain_layer_defaults_width_and_brightness():
    """Guards rain_layer: drops of density d, each 0.5-1.0 bright, widened by width, smeared along the
    angle, scaled so the brightest streak is `brightness`."""
    from promptir_basicsr.data.degradations.weather import rain_layer
    layer = rain_layer((64, 64), np.random.default_rng(0), angle=90)
    assert layer.shape == (64, 64) and abs(float(layer.max()) - 0.8) < 1e-6 and layer.min() == 0.0
    drops = rain_layer((200, 200), np.random.default_rng(1), density=0.02, length=1, angle=0, brightness=1.0)
    assert 0.015 < (drops > 0).mean() < 0.025  # length 1: the drops themselves, 2% of the pixels
    values = drops[drops > 0]  # each drop's value is uniform in 0.5..1 (over the brightest): mean 0.75
    assert drops.max() == 1.0 and values.min() > 0.49 and 0.73 < values.mean() < 0.77 and values.std() > 0.1
    wide = rain_layer((200, 200), np.random.default_rng(1), density=0.02, length=1, angle=0, width=3)
    assert 0.12 < (wide > 0).mean() < 0.2  # each drop now covers up to 3 x 3 pixels
    two = rain_layer((200, 200), np.random.default_rng(1), density=0.02, length=1, angle=0, width=2)
    assert 0.05 < (two > 0).mean() < 0.1  # up to 2 x 2
    dim = rain_layer((64, 64), np.random.default_rng(0), angle=90, brightness=0.3)
    np.testing.assert_allclose(dim, layer * (0.3 / 0.8), atol=1e-6)
    assert rain_layer((8, 8), np.random.default_rng(0), density=0.0).max() == 0.0  # no drops, no NaN


def test_rain_default_angle_is_near_vertical():
    """Guards the default angle (uniform in 60..120 degrees): streaks run more down than across."""
    from promptir_basicsr.data.degradations.weather import rain_layer
    for seed in range(5):
        layer = rain_layer((96, 96), np.random.default_rng(seed), density=0.01, length=21)
        along = np.corrcoef(layer[:-1].ravel(), layer[1:].ravel())[0, 1]
        across = np.corrcoef(layer[:, :-1].ravel(), layer[:, 1:].ravel())[0, 1]
        assert along > across


def test_param_specs_are_checked_and_mixed_ranges_are_floats():
    """Guards the range checks (low > high refused, low == high allowed), {choice} checks, the float draw
    of a range with one float end, and a single op given as a mapping."""
    with pytest.raises(ValueError, match=r'low > high: \[2, 1\]'):
        build_pipeline([{'type': 'gaussian_noise', 'sigma': [2, 1]}])
    assert build_pipeline([{'type': 'gaussian_noise', 'sigma': [5, 5]}]).sample(np.random.default_rng(0)) == [
        {'sigma': 5}]
    for bad in ({'choice': []}, {'choice': 5}, {'choice': [1], 'extra': 2}):
        with pytest.raises(ValueError, match='choice'):
            build_pipeline([{'type': 'gaussian_noise', 'sigma': bad}])
    rng = np.random.default_rng(0)
    values = [resolve_param([10, 20.0], rng) for _ in range(50)]
    assert all(isinstance(v, float) for v in values) and len(set(values)) == 50 and all(10 <= v < 20 for v in values)
    single = build_pipeline({'type': 'gaussian_noise', 'sigma': 5})
    assert single.names == ['gaussian_noise']
    for bad in ([], 'gaussian_noise', None):
        with pytest.raises(ValueError, match='expected a non-empty list of ops'):
            build_pipeline(bad)


def test_pipeline_refuses_an_op_that_returns_no_image_and_keeps_float32():
    if 'test_bad_output_op' not in DEGRADATION_REGISTRY:
        @DEGRADATION_REGISTRY.register()
        def test_bad_output_op(img, rng, kind='list'):
            return img.tolist() if kind == 'list' else img[..., 0]

        @DEGRADATION_REGISTRY.register()
        def test_float64_op(img, rng, **kwargs):
            return img.astype(np.float64) * 2

    img = np.full((4, 4, 3), 0.4, np.float32)
    for kind in ('list', 'plane'):
        with pytest.raises(TypeError, match=r"^where: degradation 'test_bad_output_op' must return an HxWxC"):
            build_pipeline([{'type': 'test_bad_output_op', 'kind': kind}], where='where')(img, None)
    out = build_pipeline([{'type': 'test_float64_op', 'anything': 1}])(img, None)  # **kwargs: any parameter
    assert out.dtype == np.float32 and np.all(out == np.float32(0.8))
    # every op's output is clipped to [0, 1] before the next op sees it
    steps = [{'type': 'test_float64_op'}, {'type': 'test_float64_op'}]
    assert np.all(build_pipeline(steps)(np.full((2, 2, 3), 0.7, np.float32), None) == 1.0)
    if 'test_offset_op' not in DEGRADATION_REGISTRY:
        @DEGRADATION_REGISTRY.register()
        def test_offset_op(img, rng, offset=-1.0):
            return img + offset
    below = build_pipeline([{'type': 'test_offset_op'}, {'type': 'test_offset_op', 'offset': 0.5}])(img, None)
    assert np.all(below == 0.5)  # -0.6 was clipped to 0 before the second op


def test_describe_makes_file_name_safe_text():
    """Guards describe(): ranges, choices, negative and fractional values spelled with letters, and any
    other character (a slash, a space) replaced by '_'."""
    pipeline = build_pipeline([{'type': 'haze', 'beta': [0.5, 1.5], 'A': {'choice': [0.8, 1]}, 'depth': 'a/b c'},
                               {'type': 'gaussian_noise', 'sigma': -2}])
    assert pipeline.describe() == 'haze_beta0p5to1p5_A0p8or1_deptha_b_c+gaussian_noise_sigmam2'
