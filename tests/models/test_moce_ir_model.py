"""MoCEIRModel and FFTLoss: MoCE-IR's training loss (src/train.py:59-77, src/utils/loss_utils.py:90-103) from the
option file: L1 + FFTLoss (fft_opt) + balance_loss_weight x the network's balance loss."""
import cmath

import numpy as np
import pytest
import torch
from basicsr.losses import build_loss

from model_test_helpers import build
from promptir_basicsr.losses.fft_loss import FFTLoss
from promptir_basicsr.options.schema import collect_problems

TINY_MOCE = {'type': 'MoCEIR', 'dim': 8, 'num_blocks': [1, 1, 1, 1], 'num_dec_blocks': [1, 1, 1],
             'heads': [1, 1, 2, 2], 'num_refinement_blocks': 1}


def _hand_rfft2(image):
    """The 2-D DFT of a (H, W) array by its definition, the W//2+1 non-negative frequencies of the last axis."""
    h, w = image.shape
    return np.array([[sum(image[y, x] * cmath.exp(-2j * cmath.pi * (u * y / h + v * x / w))
                          for y in range(h) for x in range(w)) for v in range(w // 2 + 1)] for u in range(h)])


def test_fft_loss_is_the_l1_of_real_and_imaginary_parts():
    gen = torch.Generator().manual_seed(0)
    pred, target = torch.rand(2, 3, 3, 5, generator=gen), torch.rand(2, 3, 3, 5, generator=gen)
    diffs = []
    for b in range(2):
        for c in range(3):
            d = _hand_rfft2(pred[b, c].double().numpy()) - _hand_rfft2(target[b, c].double().numpy())
            diffs += [np.abs(d.real), np.abs(d.imag)]
    total = sum(float(d.sum()) for d in diffs)
    count = sum(d.size for d in diffs)  # 2 x 3 channels x 3 x 3 frequencies x (re, im)
    assert count == 2 * 3 * 3 * 3 * 2
    assert float(FFTLoss()(pred, target)) == pytest.approx(total / count, rel=1e-5)
    assert float(FFTLoss(loss_weight=0.1, reduction='sum')(pred, target)) == pytest.approx(0.1 * total, rel=1e-5)
    assert FFTLoss(reduction='none')(pred, target).shape == (2, 3, 3, 3, 2)
    assert isinstance(build_loss({'type': 'FFTLoss', 'loss_weight': 0.1}), FFTLoss)  # registered
    with pytest.raises(ValueError):
        FFTLoss(reduction='max')


def _batch(seed):
    gen = torch.Generator().manual_seed(seed)
    gt = torch.rand(2, 3, 16, 16, generator=gen)
    return {'lq': (gt + 0.1 * torch.randn(2, 3, 16, 16, generator=gen)).clamp(0, 1), 'gt': gt}


def test_the_loss_is_l1_plus_fft_plus_weighted_balance(tiny_opt):
    """One training forward: total = L1 + 0.1 x FFT-L1 + 0.03 x balance (not the default weight), each term
    recomputed here from the same forward (the same routing noise); logged as l_pix, l_fft, l_balance (unweighted,
    as the official 'Balance')."""
    model = build(tiny_opt(model_type='MoCEIRModel', network=dict(TINY_MOCE),
                           train={'balance_loss_weight': 0.03, 'fft_opt': {'type': 'FFTLoss', 'loss_weight': 0.1}}))
    net = model.get_bare_model(model.net_g)
    model.feed_data(_batch(1))
    torch.manual_seed(5)
    total, logged = model.forward_and_loss(1)
    assert set(logged) == {'l_pix', 'l_fft', 'l_balance'}
    torch.manual_seed(5)
    restored = net(model.lq)
    l1 = (restored - model.gt).abs().mean()
    spectra = [torch.fft.rfft2(t) for t in (restored, model.gt)]
    fft = 0.1 * torch.cat([(spectra[0] - spectra[1]).real.abs().flatten(),
                           (spectra[0] - spectra[1]).imag.abs().flatten()]).mean()
    balance = net.balance_loss.detach()
    assert float(balance) > 0
    for key, expected in (('l_pix', l1), ('l_fft', fft), ('l_balance', balance)):
        assert float(logged[key].detach()) == pytest.approx(float(expected.detach()), rel=1e-5), key
    assert float(total.detach()) == pytest.approx(float((l1 + fft + 0.03 * balance).detach()), rel=1e-6)


def test_training_steps_update_the_routers_and_the_default_weight(tiny_opt):
    """Without fft_opt: L1 + 0.01 (the default) x balance; a step changes the routers (the balance loss and the gates
    reach them) and the high-pass kernel (trained, as officially)."""
    model = build(tiny_opt(model_type='MoCEIRModel', network=dict(TINY_MOCE)))
    assert model.balance_loss_weight == 0.01 and model.cri_fft is None
    net = model.get_bare_model(model.net_g)
    before = {k: v.detach().clone() for k, v in net.named_parameters()}
    for it in (1, 2):
        model.update_learning_rate(it)
        model.feed_data(_batch(it))
        model.optimize_parameters(it)
    assert set(model.get_current_log()) == {'l_pix', 'l_balance'}
    changed = {k for k, v in net.named_parameters() if not torch.equal(v, before[k])}
    assert 'dec.0.2.layers.0.adapter.routing.gate.2.weight' in changed
    assert 'dec.0.2.layers.0.adapter.routing.freq_gate.weight' in changed
    assert 'freq_embed.high_conv.0.conv.weight' in changed
    model.feed_data({'lq': torch.rand(1, 3, 13, 11)})
    model.test()
    assert model.output.shape == (1, 3, 13, 11)


def _opt(network):
    return {'name': 'x', 'model_type': 'MoCEIRModel', 'num_gpu': 0, 'network_g': network, 'path': {},
            'datasets': {'train': {'name': 't', 'type': 'AllInOneDataset', 'gt_size': 16, 'batch_size_per_gpu': 2,
                                   'num_worker_per_gpu': 0, 'sources': [{'name': 'a', 'dataroot_gt': 'x'}]}},
            'train': {'total_iter': 10, 'optim_g': {'type': 'Adam', 'lr': 1e-3}, 'balance_loss_weight': 0.01,
                      'fft_opt': {'type': 'FFTLoss', 'loss_weight': 0.1}},
            'logger': {'print_freq': 1, 'save_checkpoint_freq': 10}, 'val': {'val_freq': 10}}


def test_option_check_knows_the_keys_and_pairs_the_model_with_the_network():
    problems = collect_problems(_opt(dict(TINY_MOCE)), is_train=True)
    assert problems == []
    promptir = {'type': 'PromptIR', 'dim': 8, 'num_blocks': [1, 1, 1, 1], 'num_refinement_blocks': 1,
                'heads': [1, 1, 1, 1], 'prompt_len': 3, 'prompt_dims': [8, 8, 8], 'prompt_sizes': [4, 4, 4]}
    assert any('balance loss' in p for p in collect_problems(_opt(promptir), is_train=True))
    wrong = _opt(dict(TINY_MOCE))
    wrong['train']['fft_opt'] = {'type': 'FFTLoss', 'weight': 0.1}
    assert any('weight' in p for p in collect_problems(wrong, is_train=True))
