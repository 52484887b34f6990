"""utils/fourier.py: the DFT-matrix formulation equals torch.fft, and exports to ONNX with dynamic sizes."""
import io
import warnings

import numpy as np
import pytest
import torch

from promptir_basicsr.utils import fourier

SIZES = ((8, 8), (7, 10), (5, 9))  # even and odd sides: the Nyquist column of rfft exists only for even W


def _both(fn, *args, **kwargs):
    eager = fn(*args, **kwargs)
    with fourier.matmul_transforms():
        assert fourier.uses_matmul()
        matmul = fn(*args, **kwargs)
    assert not fourier.uses_matmul()
    return eager, matmul


def _close(a, b, tol=1e-12):
    a, b = (a if isinstance(a, tuple) else (a, )), (b if isinstance(b, tuple) else (b, ))
    for x, y in zip(a, b):
        assert x.shape == y.shape
        assert (x - y).abs().max().item() < tol


@pytest.mark.parametrize('norm', ['backward', 'forward', 'ortho'])
@pytest.mark.parametrize('size', SIZES)
def test_transforms_equal_torch_fft(norm, size):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, *size, generator=gen, dtype=torch.float64)
    spectrum = torch.fft.fft2(x, norm=norm)
    eager, matmul = _both(fourier.fft2, x, norm)
    _close(eager, (spectrum.real, spectrum.imag))
    _close(matmul, eager)
    # a spectrum that is not Hermitian, so the imaginary part of the inverse matters
    re, im = torch.randn(2, 2, 3, *size, generator=gen, dtype=torch.float64)
    signal = torch.fft.ifft2(torch.complex(re, im), norm=norm)
    eager, matmul = _both(fourier.ifft2, re, im, norm)
    _close(eager, (signal.real, signal.imag))
    _close(matmul, eager)
    half = torch.fft.rfft2(x, norm=norm)
    eager, matmul = _both(fourier.rfft2, x, norm)
    _close(eager, (half.real, half.imag))
    _close(matmul, eager)
    # random half spectra, imaginary parts at the zero and Nyquist frequencies included (ignored by both)
    re, im = torch.randn(2, *half.shape, generator=gen, dtype=torch.float64)
    expected = torch.fft.irfft2(torch.complex(re, im), s=size, norm=norm)
    eager, matmul = _both(fourier.irfft2, re, im, size, norm)
    _close(eager, expected)
    _close(matmul, expected)


def test_round_trips_and_helpers():
    x = torch.rand(1, 2, 6, 7, dtype=torch.float64)
    for matmul in (False, True):
        with (fourier.matmul_transforms() if matmul else warnings.catch_warnings()):
            re, im = fourier.fft2(x, 'forward')
            back_re, back_im = fourier.ifft2(re, im, 'forward')
            _close(back_re, x)
            _close(back_im, torch.zeros_like(x))
            _close(fourier.irfft2(*fourier.rfft2(x), (6, 7)), x)
            _close(fourier.magnitude(torch.tensor([3.0]), torch.tensor([-4.0])), torch.tensor([5.0]))
            _close(fourier.roll(x, 2, 2), torch.roll(x, 2, 2))
            _close(fourier.roll(x, -3, 3), torch.roll(x, -3, 3))
    a, b = (torch.tensor([1.0]), torch.tensor([2.0])), (torch.tensor([3.0]), torch.tensor([-1.0]))
    _close(fourier.multiply(a, b), (torch.tensor([5.0]), torch.tensor([5.0])))  # (1+2i)(3-i) = 5+5i


@pytest.mark.parametrize('size', SIZES)
def test_circular_convolution_is_the_direct_sum_eagerly_and_as_matrices(size):
    """sum_{m,n} a[m, n] b[(i - m) % H, (j - n) % W], computed here by loops; the eager complex product and the
    DFT-matrix pairs agree with it (and with each other) on a batch of channels."""
    gen = torch.Generator().manual_seed(3)
    a, b = torch.randn(2, 2, 3, *size, generator=gen, dtype=torch.float64)
    h, w = size
    expected = torch.zeros_like(a)
    for i in range(h):
        for j in range(w):
            expected[..., i, j] = sum(a[..., m, n] * b[..., (i - m) % h, (j - n) % w]
                                      for m in range(h) for n in range(w))
    eager, matmul = _both(fourier.circular_convolution, a, b)
    _close(eager, expected, tol=1e-10)
    _close(matmul, expected, tol=1e-10)


def test_magnitude_gradient_is_finite_at_zero():
    re = torch.zeros(3, requires_grad=True)
    im = torch.zeros(3, requires_grad=True)
    fourier.magnitude(re, im).sum().backward()
    assert torch.isfinite(re.grad).all() and torch.isfinite(im.grad).all()


def test_float32_tables_for_float32_inputs():
    x = torch.rand(1, 1, 16, 16)
    eager, matmul = _both(fourier.fft2, x)
    assert matmul[0].dtype == torch.float32
    _close(matmul, eager, tol=1e-4)


def test_exports_to_onnx_with_dynamic_size():
    ort = pytest.importorskip('onnxruntime')

    class Spectral(torch.nn.Module):
        def forward(self, x):
            h, w = x.shape[-2], x.shape[-1]
            re, im = fourier.fft2(x, 'forward')
            re, im = fourier.roll(re, h // 2, 2), fourier.roll(im, -(w // 2), 3)
            a = fourier.magnitude(*fourier.ifft2(re * 0.5, im, 'forward'))
            q = fourier.rfft2(x, 'ortho')
            return a + fourier.irfft2(*fourier.multiply(q, q), (h, w), 'ortho')

    model = Spectral()
    buffer = io.BytesIO()
    axes = {2: 'height', 3: 'width'}
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        torch.onnx.export(model, (torch.rand(1, 3, 16, 12), ), buffer, dynamo=False, opset_version=17,
                          input_names=['input'], output_names=['output'],
                          dynamic_axes={'input': axes, 'output': axes})
    session = ort.InferenceSession(buffer.getvalue())
    for size in ((16, 12), (9, 13), (32, 20)):  # the traced size, odd sides, a larger one
        x = torch.rand(1, 3, *size)
        out = session.run(None, {'input': x.numpy()})[0]
        assert out.shape == (1, 3, *size)
        assert np.abs(out - model(x).numpy()).max() < 1e-4
