"""JPEG compression artefacts (OpenCV's encoder, 4:2:0 chroma subsampling by default)."""
import cv2
import numpy as np

from . import DEGRADATION_REGISTRY


@DEGRADATION_REGISTRY.register()
def jpeg(img, rng, quality=40):
    """Encode as JPEG at ``quality`` (1-100, rounded to int) and decode again."""
    quality = int(round(float(quality)))
    if not 1 <= quality <= 100:
        raise ValueError(f'jpeg: quality must be in 1..100, got {quality}')
    bgr = np.round(np.clip(img[..., ::-1], 0, 1) * 255.).astype(np.uint8)
    ok, buf = cv2.imencode('.jpg', bgr, [int(cv2.IMWRITE_JPEG_QUALITY), quality])
    if not ok:
        raise RuntimeError('jpeg: OpenCV failed to encode the image')
    out = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return np.ascontiguousarray(out[..., ::-1]).astype(np.float32) / 255.
