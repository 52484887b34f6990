"""Low light: darkening by a gamma curve and a gain, plus sensor noise."""
import numpy as np

from . import DEGRADATION_REGISTRY


@DEGRADATION_REGISTRY.register()
def low_light(img, rng, gamma=2.0, scale=0.4, noise_sigma=3.0):
    """``scale * img**gamma + N(0, (noise_sigma/255)^2)``, clipped to [0, 1].

    ``gamma > 1`` crushes shadows more than highlights, ``scale < 1`` lowers the exposure;
    ``noise_sigma`` (0-255 scale, 0 for none) mimics the read noise of a dark capture.
    """
    dark = float(scale) * np.power(np.clip(img, 0, 1), float(gamma))
    if noise_sigma:
        dark = dark + rng.standard_normal(img.shape) * (float(noise_sigma) / 255.)
    return np.clip(dark, 0, 1).astype(np.float32)
