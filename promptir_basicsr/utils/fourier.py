"""2-D discrete Fourier transforms that also export to ONNX: complex numbers as (real, imaginary) pairs.

The FFT-based networks (AdaIR's frequency modules, MoCE-IR's FFT attention) compute with these functions
instead of ``torch.fft`` directly. Run eagerly they *are* ``torch.fft`` (the same kernels, the same numbers,
the same gradients); while torch's ONNX exporter traces a network, where neither complex tensors nor
``fft2``/``rfft2`` can be exported, each transform becomes products with DFT matrices built from the input's
own (dynamic) size: cosine and sine tables and real matrix multiplications, operators every ONNX runtime
has. :func:`matmul_transforms` turns that formulation on outside an export too (tests compare the two).

Conventions follow ``torch.fft``: transforms act on the last two axes, ``norm`` is 'backward' (the forward
transform unscaled, the inverse divided by H*W), 'forward' (the reverse) or 'ortho' (both divided by
sqrt(H*W)); :func:`rfft2` keeps the W//2 + 1 non-negative frequencies of the last axis and :func:`irfft2`
takes them back to a real signal of the given size (the imaginary parts of the zero and Nyquist
frequencies are ignored, as ``torch.fft.irfft2`` does).
"""
import contextlib
import math

import torch

_FORCED = False


@contextlib.contextmanager
def matmul_transforms():
    """Compute every transform as DFT-matrix products (what an ONNX export records), inside this block."""
    global _FORCED
    previous, _FORCED = _FORCED, True
    try:
        yield
    finally:
        _FORCED = previous


def uses_matmul():
    """True while the DFT-matrix formulation is in use: during an ONNX export, or in :func:`matmul_transforms`."""
    return _FORCED or torch.onnx.is_in_onnx_export()


def _scale(n, norm, inverse):
    """The factor a transform of length ``n`` is multiplied by."""
    if norm == 'ortho':
        return 1.0 / math.sqrt(n) if isinstance(n, int) else n.float().rsqrt()
    if (norm == 'forward') != inverse:  # forward+forward, or backward+inverse
        return 1.0 / n
    return 1.0


def _dft(n, like, inverse=False, rows=None):
    """(cos, sin) of the angles 2*pi*j*k/n, signed for the transform's direction: exp(-+i*angle) =
    cos -+ i*sin. ``rows`` (default ``n``) frequencies j by n samples k, built from ``arange`` of the size
    itself, so a traced graph keeps the size dynamic."""
    dtype = torch.float64 if like.dtype == torch.float64 else torch.float32  # half precision: tables in float32
    k = torch.arange(n, device=like.device, dtype=dtype)
    j = k if rows is None else torch.arange(rows, device=like.device, dtype=dtype)
    # j*k mod n keeps the angles small (exact cos/sin tables for large n)
    angle = (2 * math.pi / n) * torch.remainder(j[:, None] * k[None, :], n)
    sign = 1.0 if inverse else -1.0
    return torch.cos(angle).to(like.dtype), (sign * torch.sin(angle)).to(like.dtype)


def _along_last(re, im, cos, sin):
    """(re + i*im) @ (cos + i*sin)^T along the last axis: the complex product as four real ones."""
    if im is None:
        return re @ cos.t(), re @ sin.t()
    return re @ cos.t() - im @ sin.t(), re @ sin.t() + im @ cos.t()


def _along_rows(re, im, cos, sin):
    """(cos + i*sin) @ (re + i*im) along the second-to-last axis."""
    if im is None:
        return cos @ re, sin @ re
    return cos @ re - sin @ im, sin @ re + cos @ im


def _matmul_fft2(re, im, norm, inverse):
    h, w = re.shape[-2], re.shape[-1]
    re, im = _along_last(re, im, *_dft(w, re, inverse))
    re, im = _along_rows(re, im, *_dft(h, re, inverse))
    scale = _scale(h * w, norm, inverse)
    return re * scale, im * scale


def fft2(x, norm='backward'):
    """The 2-D DFT of a real ``x`` (..., H, W): ``(real, imaginary)``, each (..., H, W)."""
    if uses_matmul():
        return _matmul_fft2(x, None, norm, inverse=False)
    spectrum = torch.fft.fft2(x, norm=norm)
    return spectrum.real, spectrum.imag


def ifft2(real, imag, norm='backward'):
    """The inverse 2-D DFT of ``real + i*imag`` (..., H, W): ``(real, imaginary)``."""
    if uses_matmul():
        return _matmul_fft2(real, imag, norm, inverse=True)
    signal = torch.fft.ifft2(torch.complex(real, imag), norm=norm)
    return signal.real, signal.imag


def rfft2(x, norm='backward'):
    """The 2-D DFT of a real ``x`` (..., H, W), non-negative frequencies of the last axis only:
    ``(real, imaginary)``, each (..., H, W//2 + 1)."""
    if uses_matmul():
        h, w = x.shape[-2], x.shape[-1]
        re, im = _along_last(x, None, *_dft(w, x, rows=w // 2 + 1))
        re, im = _along_rows(re, im, *_dft(h, x))
        scale = _scale(h * w, norm, inverse=False)
        return re * scale, im * scale
    spectrum = torch.fft.rfft2(x, norm=norm)
    return spectrum.real, spectrum.imag


def irfft2(real, imag, size, norm='backward'):
    """The real signal of size ``size`` = (H, W) whose :func:`rfft2` is ``real + i*imag`` (..., H, W//2+1)."""
    if uses_matmul():
        h, w = size
        re, im = _along_rows(real, imag, *_dft(h, real, inverse=True))
        # Along the last axis only the non-negative frequencies are stored; the others are their complex
        # conjugates, so each stored frequency but the zero one (and W/2 for even W) counts twice, and the
        # real part of the sum is sum_k c_k (re_k cos(2 pi k n / W) - im_k sin(2 pi k n / W)).
        cos, sin = _dft(w, real, inverse=True, rows=w // 2 + 1)  # (W//2+1, W)
        k = torch.arange(w // 2 + 1, device=real.device)
        twice = torch.where((k == 0) | (2 * k == w), 1.0, 2.0).to(real.dtype)[:, None]
        out = re @ (cos * twice) - im @ (sin * twice)
        return out * _scale(h * w, norm, inverse=True)
    return torch.fft.irfft2(torch.complex(real, imag), s=tuple(size), norm=norm)


def multiply(a, b):
    """The complex product of two ``(real, imaginary)`` pairs."""
    (ar, ai), (br, bi) = a, b
    return ar * br - ai * bi, ar * bi + ai * br


def circular_convolution(a, b):
    """The circular convolution of two real signals over their last two axes, through the spectrum:
    ``irfft2(rfft2(a) * rfft2(b))`` at ``a``'s size (..., H, W), norm 'backward' (the forward transform
    unscaled): sum_{m,n} a[m, n] * b[(i - m) % H, (j - n) % W].

    Eagerly one product of the complex ``torch.fft`` spectra, where the (real, imaginary) pairs of
    :func:`rfft2`, :func:`multiply` and :func:`irfft2` cost four real products, two sums and a
    ``torch.complex`` copy of the spectrum; under :func:`uses_matmul` (export) those pair functions, the
    DFT-matrix products."""
    size = (a.shape[-2], a.shape[-1])
    if uses_matmul():
        return irfft2(*multiply(rfft2(a), rfft2(b)), size)
    return torch.fft.irfft2(torch.fft.rfft2(a) * torch.fft.rfft2(b), s=size)


def magnitude(real, imag):
    """|real + i*imag|. Eagerly ``torch.abs`` of the complex number, whose gradient at 0 is 0 (a square root
    of the squares would give NaN there); exported, the square root of the squares."""
    if uses_matmul():
        return torch.sqrt(real * real + imag * imag)
    return torch.abs(torch.complex(real, imag))


def roll(x, shift, dim):
    """``torch.roll(x, shift, dim)``; exported as two slices and a concatenation (a roll by a shift computed
    from the input's size, as in an FFT shift, does not export)."""
    if not uses_matmul():
        return torch.roll(x, shift, dim)
    n = x.shape[dim]
    shift = shift % n
    return torch.cat([x.narrow(dim, n - shift, shift), x.narrow(dim, 0, n - shift)], dim)
