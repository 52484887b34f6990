import pytest
import torch
import torch.nn.functional as F
from basicsr.archs import build_network
from basicsr.utils.registry import ARCH_REGISTRY

from arch_test_helpers import TINY_AIRNET, assert_matches_official
from promptir_basicsr.archs.airnet_arch import AirNet, DCNLayer


def test_default_is_official_configuration():
    net = AirNet()
    assert_matches_official(net, 'airnet')
    assert len(net.state_dict()) == 584
    assert sum(p.numel() for p in net.parameters()) == 8_930_313
    assert sum(p.numel() for p in net.parameters() if p.requires_grad) == 7_610_377
    assert net.E.E.queue.shape == (256, 1280) and int(net.E.E.queue_ptr) == 0


def test_registered():
    assert ARCH_REGISTRY.get('AirNet') is AirNet
    assert isinstance(build_network(dict(type='AirNet', **TINY_AIRNET)), AirNet)


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    return AirNet(**TINY_AIRNET)


def test_eval_returns_image_at_any_size(tiny):
    tiny.eval()
    with torch.no_grad():
        out = tiny(torch.rand(1, 3, 37, 53), torch.rand(1, 3, 37, 53))
    assert torch.is_tensor(out) and out.shape == (1, 3, 37, 53)
    tiny.train()
    assert tiny(torch.rand(2, 3, 9, 7)).shape == (2, 3, 9, 7)  # training without a key: image only


def test_training_contract_key_encoder_and_queue(tiny):
    tiny.train()
    moco = tiny.E.E
    with torch.no_grad():  # make the encoders differ, to see the momentum update
        for p in moco.encoder_q.parameters():
            p.add_(0.1)
    q_before = [p.detach().clone() for p in moco.encoder_q.parameters()]
    k_before = [p.detach().clone() for p in moco.encoder_k.parameters()]
    queue_before = moco.queue.clone()

    x_query, x_key = torch.rand(4, 3, 13, 11), torch.rand(4, 3, 13, 11)
    restored, logits, labels = tiny(x_query, x_key)
    assert restored.shape == (4, 3, 13, 11)
    assert logits.shape == (4, 1 + 12)
    assert labels.dtype == torch.long and labels.shape == (4,) and not labels.any()
    (F.l1_loss(restored, x_query) + F.cross_entropy(logits, labels)).backward()

    assert all(p.grad is None and not p.requires_grad for p in moco.encoder_k.parameters())
    assert all(p.grad is not None for p in moco.encoder_q.parameters())
    for k0, q0, k1 in zip(k_before, q_before, moco.encoder_k.parameters()):
        torch.testing.assert_close(k1, 0.999 * k0 + 0.001 * q0)
    assert int(moco.queue_ptr) == 4
    assert torch.equal(moco.queue[:, 4:], queue_before[:, 4:])
    torch.testing.assert_close(moco.queue[:, :4].norm(dim=0), torch.ones(4))  # normalised keys enqueued
    tiny(x_query, x_key)
    tiny(x_query, x_key)
    assert int(moco.queue_ptr) == 0  # 12 slots, 3 batches of 4: wrapped around


def test_contrastive_runs_only_the_encoder(tiny):
    tiny.train()
    logits, labels = tiny.contrastive(torch.rand(5, 3, 16, 16), torch.rand(5, 3, 16, 16))
    assert logits.shape == (5, 13) and labels.shape == (5,)
    F.cross_entropy(logits, labels).backward()
    assert all(p.grad is None for p in tiny.R.parameters())
    assert tiny.E.E.encoder_q.mlp[0].weight.grad is not None
    assert int(tiny.E.E.queue_ptr) == 5


def test_deformable_conv_zero_offsets_is_half_masked_conv():
    torch.manual_seed(0)
    dcn = DCNLayer(4)  # offsets/mask conv zero-initialised: offsets 0, mask sigmoid(0) = 0.5
    x, inter = torch.rand(1, 4, 6, 7), torch.rand(1, 4, 6, 7)
    torch.testing.assert_close(dcn(x, inter), 0.5 * F.conv2d(x, dcn.weight, padding=1))


def test_deformable_conv_offset_layout_is_dy_dx_pairs():
    torch.manual_seed(0)
    dcn = DCNLayer(2)
    with torch.no_grad():
        bias = torch.zeros(27)
        bias[1:18:2] = 1.0  # dx = +1 at every tap (odd offset channels), dy = 0
        bias[18:] = 30.0  # mask ~ 1
        dcn.conv_offset_mask.bias.copy_(bias)
    x, inter = torch.rand(1, 2, 5, 8), torch.rand(1, 2, 5, 8)
    shifted = F.pad(x[..., 1:], (0, 1))  # shifted[..., w] = x[..., w + 1]
    expected = F.conv2d(shifted, dcn.weight, padding=1)
    torch.testing.assert_close(dcn(x, inter)[..., 1:-1], expected[..., 1:-1], rtol=1e-4, atol=1e-5)


def test_official_moco_constants_and_initial_state():
    """Guards AirNet's official MoCo settings (momentum 0.999, temperature 0.07), the unit-norm columns of
    the initial queue, and the deformable convolution's initial weights (uniform in +-1/sqrt(C*k*k), as
    DCN_layer.reset_parameters) with a zero offset/mask predictor."""
    torch.manual_seed(0)
    net = AirNet(**TINY_AIRNET)
    assert net.E.E.m == 0.999 and net.E.E.T == 0.07
    torch.testing.assert_close(net.E.E.queue.norm(dim=0), torch.ones(12))
    dcn = DCNLayer(16)
    bound = 1 / (16 * 9) ** 0.5
    assert dcn.weight.shape == (16, 16, 3, 3)
    weight = dcn.weight.detach()
    assert -bound <= float(weight.min()) < -0.95 * bound and 0.95 * bound < float(weight.max()) <= bound
    assert not dcn.conv_offset_mask.weight.any() and not dcn.conv_offset_mask.bias.any()
