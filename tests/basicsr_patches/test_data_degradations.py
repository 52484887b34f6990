"""basicsr_patches/repairs/data_degradations.py: basicsr imports at all (torchvision alias); float JPEG quality. Each test fails without its patch."""
import subprocess
import sys

import numpy as np


def test_import_basicsr_needs_and_gets_the_functional_tensor_alias():
    # Without the repair basicsr cannot be imported at all on torchvision >= 0.17.
    bare = subprocess.run([sys.executable, '-c', 'import basicsr'], capture_output=True, text=True)
    assert bare.returncode != 0 and 'functional_tensor' in bare.stderr
    fixed = subprocess.run(
        [sys.executable, '-c', 'import promptir_basicsr, basicsr.data.degradations as d; print(d.rgb_to_grayscale)'],
        capture_output=True, text=True)
    assert fixed.returncode == 0, fixed.stderr


def test_jpeg_compression_accepts_float_quality():
    from basicsr.data import degradations
    img = np.random.default_rng(0).random((16, 16, 3), dtype=np.float32)
    out = degradations.add_jpg_compression(img, 30.0)  # OpenCV 5 rejects a float quality
    assert out.shape == img.shape and out.dtype == np.float32
    out2 = degradations.random_add_jpg_compression(img, (30, 40))
    assert np.abs(out2 - img).mean() > 0
