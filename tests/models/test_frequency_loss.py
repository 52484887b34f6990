"""BioIR's training loss: ``FFTLoss(onesided=False)`` (the official ``FFTLoss`` of ``All_in_One/train_eval.py:24-37``)
added by ``AllInOneModel``'s ``train: fft_opt`` to L1 (``train_eval.py:53-62``)."""
import pytest
import torch

from promptir_basicsr.losses.fft_loss import FFTLoss

from model_test_helpers import build


def official_fft_loss(pred, target, loss_weight=0.1):
    """The official formula: L1Loss (mean) of the stacked real and imaginary parts of fft2, times 0.1."""
    pred_fft = torch.fft.fft2(pred, dim=(-2, -1))
    target_fft = torch.fft.fft2(target, dim=(-2, -1))
    pred_fft = torch.stack([pred_fft.real, pred_fft.imag], dim=-1)
    target_fft = torch.stack([target_fft.real, target_fft.imag], dim=-1)
    return loss_weight * torch.nn.L1Loss()(pred_fft, target_fft)


def test_full_spectrum_fft_loss_is_bioirs_official_loss():
    gen = torch.Generator().manual_seed(0)
    pred, target = torch.rand(2, 3, 12, 15, generator=gen), torch.rand(2, 3, 12, 15, generator=gen)
    pred.requires_grad_()
    loss = FFTLoss(loss_weight=0.1, onesided=False)(pred, target)
    expected = official_fft_loss(pred, target)
    torch.testing.assert_close(loss, expected)
    grad, = torch.autograd.grad(loss, pred)
    expected_grad, = torch.autograd.grad(expected, pred)
    torch.testing.assert_close(grad, expected_grad)
    # not the one-sided spectrum's mean (MoCE-IR's FFTLoss): the full spectrum weighs frequencies otherwise
    half = torch.fft.rfft2(pred.detach()) - torch.fft.rfft2(target)
    one_sided = 0.1 * torch.stack([half.real, half.imag], -1).abs().mean()
    assert abs(loss.item() - one_sided.item()) > 1e-4
    assert FFTLoss(reduction='none', onesided=False)(pred, target).shape == (2, 3, 12, 15, 2)
    with pytest.raises(ValueError):
        FFTLoss(reduction='max', onesided=False)


def _step(model, seed=0):
    gen = torch.Generator().manual_seed(seed)
    gt = torch.rand(2, 3, 16, 16, generator=gen)
    model.update_learning_rate(1)
    model.feed_data({'lq': (gt + 0.1 * torch.randn(2, 3, 16, 16, generator=gen)).clamp(0, 1), 'gt': gt})
    model.optimize_parameters(1)
    return model.get_current_log()


def test_all_in_one_model_adds_the_frequency_loss(tiny_opt):
    train = {'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0}, 'fft_opt': {'type': 'FFTLoss', 'loss_weight': 0.1,
                                                                              'onesided': False}}
    model = build(tiny_opt(model_type='AllInOneModel', train=train))
    torch.manual_seed(0)
    output = torch.rand(2, 3, 16, 16)
    target = torch.rand(2, 3, 16, 16)
    total, terms = model.compute_losses(output, target)
    assert list(terms) == ['l_pix', 'l_fft']
    torch.testing.assert_close(terms['l_fft'], official_fft_loss(output, target))
    torch.testing.assert_close(total, (output - target).abs().mean() + official_fft_loss(output, target))
    log = _step(model)
    assert 'l_pix' in log and 'l_fft' in log


def test_without_fft_opt_no_frequency_loss(tiny_opt):
    model = build(tiny_opt(model_type='AllInOneModel'))
    assert model.cri_fft is None
    log = _step(model)
    assert 'l_pix' in log and 'l_fft' not in log
