"""Weather: rain streaks and haze by the atmospheric scattering model."""
import numpy as np

from . import DEGRADATION_REGISTRY
from .blur import _filter, motion_kernel


def rain_layer(shape, rng, density=0.02, length=15, angle=None, width=1, brightness=0.8):
    """An HxW streak layer in [0, brightness]: sparse random drops smeared along ``angle``."""
    h, w = shape
    if angle is None:
        angle = float(rng.uniform(60, 120))  # near vertical, degrees from the horizontal
    drops = (rng.random((h, w)) < float(density)).astype(np.float32) * rng.uniform(0.5, 1.0, (h, w))
    width = max(1, int(round(width)))
    if width > 1:
        drops = _filter(drops[..., None], np.ones((width, width), np.float32))[..., 0]
    streaks = _filter(drops[..., None], motion_kernel(length, angle))[..., 0]
    peak = streaks.max()
    if peak > 0:
        streaks = streaks / peak
    return np.clip(streaks * float(brightness), 0, 1)


@DEGRADATION_REGISTRY.register()
def rain(img, rng, density=0.02, length=15, angle=None, width=1, brightness=0.8):
    """Additive bright rain streaks: ``clip(img + streaks, 0, 1)`` (same streaks on R, G, B).

    ``density``: fraction of pixels seeding a drop; ``length`` pixels; ``angle`` degrees from the
    horizontal (random near-vertical if None); ``width`` pixels; ``brightness`` peak streak value.
    """
    layer = rain_layer(img.shape[:2], rng, density, length, angle, width, brightness)
    return np.clip(img + layer[..., None], 0, 1).astype(np.float32)


def depth_proxy(shape, kind='center'):
    """A depth map in [0, 1] for images without one.

    ``center``: grows towards the image centre (the RESIDE/AOD-Net style synthetic depth, far scene in
    the middle); ``vertical``: grows towards the top (sky and horizon far, ground near);
    ``uniform``: all ones (homogeneous haze, t = exp(-beta)).
    """
    h, w = shape
    if kind == 'uniform':
        return np.ones((h, w), np.float32)
    if kind == 'vertical':
        return np.repeat(np.linspace(1, 0, h, dtype=np.float32)[:, None], w, axis=1)
    if kind == 'center':
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        dist = np.sqrt((yy - (h - 1) / 2) ** 2 + (xx - (w - 1) / 2) ** 2)
        return (1 - dist / max(dist.max(), 1e-6)).astype(np.float32)
    raise ValueError(f"haze: unknown depth proxy {kind!r}; use 'center', 'vertical', 'uniform' or an HxW array")


@DEGRADATION_REGISTRY.register()
def haze(img, rng, beta=1.0, A=0.9, depth='center', depth_scale=1.0):
    """Atmospheric scattering: ``I = J*t + A*(1 - t)``, ``t = exp(-beta * depth_scale * d)``.

    ``depth`` is an HxW array (relative depth d, e.g. from a depth sensor or estimator) or the name of
    a proxy (:func:`depth_proxy`); ``A`` the airlight (scalar, same for R, G, B); ``beta`` the
    scattering coefficient. Deterministic: ``rng`` is unused.
    """
    if isinstance(depth, str):
        d = depth_proxy(img.shape[:2], depth)
    else:
        d = np.asarray(depth, np.float32)
        if d.shape != img.shape[:2]:
            raise ValueError(f'haze: depth map of shape {d.shape} does not match the image {img.shape[:2]}')
    t = np.exp(-float(beta) * float(depth_scale) * d)[..., None]
    return (img * t + float(A) * (1 - t)).astype(np.float32)
