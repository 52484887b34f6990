"""ContrastiveModel: AirNet's contrastive recipe for any network with a contrastive degradation encoder, here
PromptIR with ``prompt_source: cbde`` (AirNetModel is the same model for AirNet; tests/models/test_airnet_model.py)."""
import math

import pytest
import torch

from model_test_helpers import build
from promptir_basicsr.options.schema import collect_problems
from promptir_basicsr.options.prepare import consistency_warnings

CBDE_PROMPTIR = {'type': 'PromptIR', 'dim': 8, 'num_blocks': [1, 1, 1, 1], 'num_refinement_blocks': 1,
                 'heads': [1, 1, 1, 1], 'prompt_len': 3, 'prompt_dims': [8, 8, 8], 'prompt_sizes': [4, 4, 4],
                 'prompt_source': 'cbde', 'cbde_widths': [8, 8, 8], 'cbde_dim': 8, 'cbde_queue_size': 8}


def _batch(seed):
    gen = torch.Generator().manual_seed(seed)
    gt = torch.rand(4, 3, 16, 16, generator=gen)
    lq = (gt + 0.1 * torch.randn(4, 3, 16, 16, generator=gen)).clamp(0, 1)
    return {'lq': lq, 'gt': gt, 'lq2': lq.flip(-1), 'gt2': gt.flip(-1)}


def test_promptir_cbde_trains_with_the_contrastive_term_and_the_encoder_stage(tiny_opt):
    """Iteration 1 (encoder stage): only the CBDE changes, loss = contrastive; iteration 2: L1 + 0.1 x contrastive
    through the whole PromptIR, the MoCo queue advancing. Guards a model that forgets the key crop, the
    contrastive term, or trains the restorer in the encoder stage."""
    model = build(tiny_opt(model_type='ContrastiveModel', network=dict(CBDE_PROMPTIR),
                           train={'encoder_iters': 1, 'contrastive_weight': 0.1}))
    net = model.get_bare_model(model.net_g)
    restorer_before = {k: v.detach().clone() for k, v in net.named_parameters() if not k.startswith('cbde.')}
    queue = net.cbde.E.queue.clone()
    model.update_learning_rate(1)
    model.feed_data(_batch(1))
    model.optimize_parameters(1)
    assert set(model.get_current_log()) == {'l_contrast'}
    assert all(torch.equal(v, restorer_before[k]) for k, v in net.named_parameters() if not k.startswith('cbde.'))
    assert not torch.equal(queue, net.cbde.E.queue)

    model.update_learning_rate(2)
    model.feed_data(_batch(2))
    model.optimize_parameters(2)
    log = model.get_current_log()
    assert set(log) == {'l_pix', 'l_contrast'}
    assert not torch.equal(net.prompt1.linear_layer.weight, restorer_before['prompt1.linear_layer.weight'])
    model.feed_data({'lq': torch.rand(1, 3, 13, 11)})
    model.test()
    assert model.output.shape == (1, 3, 13, 11)


def _opt(model_type, network, num_crops):
    return {'name': 'x', 'model_type': model_type, 'num_gpu': 0, 'network_g': network, 'path': {},
            'datasets': {'train': {'name': 't', 'type': 'AllInOneDataset', 'gt_size': 16, 'batch_size_per_gpu': 2,
                                   'num_worker_per_gpu': 0, 'num_crops': num_crops,
                                   'sources': [{'name': 'a', 'dataroot_gt': 'x'}]}},
            'train': {'total_iter': 10, 'optim_g': {'type': 'Adam', 'lr': 1e-3}},
            'logger': {'print_freq': 1, 'save_checkpoint_freq': 10}, 'val': {'val_freq': 10}}


def test_option_check_pairs_the_model_with_the_network():
    """Before a run: ContrastiveModel needs a network with a contrastive encoder and two crops; AllInOneModel with
    one is a warning (its projection head would idle and DDP would stop). Guards silent mismatches."""
    pgm = {k: v for k, v in CBDE_PROMPTIR.items() if not k.startswith(('prompt_source', 'cbde'))}
    problems = collect_problems(_opt('ContrastiveModel', pgm, 2), is_train=True)
    assert any('has none (set network_g:prompt_source: cbde)' in p for p in problems), problems
    problems = collect_problems(_opt('ContrastiveModel', dict(CBDE_PROMPTIR), 1), is_train=True)
    assert any('num_crops must be 2 for ContrastiveModel' in p for p in problems), problems
    assert not [p for p in collect_problems(_opt('ContrastiveModel', dict(CBDE_PROMPTIR), 2), is_train=True)
                if 'cbde' in p or 'num_crops' in p]
    warnings = consistency_warnings(_opt('AllInOneModel', dict(CBDE_PROMPTIR), 1))
    assert any('use model_type: ContrastiveModel' in w for w in warnings), warnings
    assert not consistency_warnings(_opt('AllInOneModel', pgm, 1))
    bad_levels = dict(pgm, prompt_levels=[4, 1])
    assert any(p.startswith('network_g: prompt_levels must list') for p in
               collect_problems(_opt('AllInOneModel', bad_levels, 1), is_train=True))


def _cross_entropy_by_hand(logits, labels):
    """-log softmax(logits)[label] per row, written out: log(sum(exp(row))) - row[label]."""
    return [math.log(sum(math.exp(v) for v in row)) - row[label] for row, label in zip(logits, labels)]


def test_contrastive_loss_values_by_hand():
    """InfoNCE as cross entropy over the logits, the positive at each label: values by hand, each reduction,
    loss_weight, float16 logits computed in float32, float labels read as indices."""
    from promptir_basicsr.losses.contrastive_loss import ContrastiveLoss
    logits = [[2.0, 0.0, 1.0], [0.5, 1.5, -1.0]]
    labels = [0, 1]
    per_sample = _cross_entropy_by_hand(logits, labels)  # 0.4076, 0.3982
    tensor, index = torch.tensor(logits), torch.tensor(labels)
    assert ContrastiveLoss()(tensor, index).item() == pytest.approx(sum(per_sample) / 2, rel=1e-6)
    assert ContrastiveLoss(0.5, 'sum')(tensor, index).item() == pytest.approx(0.5 * sum(per_sample), rel=1e-6)
    assert ContrastiveLoss(reduction='none')(tensor, index).tolist() == pytest.approx(per_sample, rel=1e-6)
    half = ContrastiveLoss()(tensor.half(), index.float())
    assert half.dtype == torch.float32 and half.item() == pytest.approx(sum(per_sample) / 2, rel=1e-3)
    with pytest.raises(ValueError, match='Unsupported reduction mode: max'):
        ContrastiveLoss(reduction='max')


def _contrast_batch(seed):
    gen = torch.Generator().manual_seed(seed)
    gt = torch.rand(3, 3, 8, 8, generator=gen)
    lq = (gt + 0.2 * torch.randn(3, 3, 8, 8, generator=gen)).clamp(0, 1)
    return {'lq': lq, 'gt': gt, 'lq2': (lq + 0.05 * torch.randn(3, 3, 8, 8, generator=gen)).clamp(0, 1)}


def _logits_by_hand(scale, lq, lq2):
    """_TestContrastNet's logits, from its docstring: [s <q_i, k_i>, s <q_i, k_j> (j != i), 0]."""
    q, k = lq.mean(dim=(2, 3)).tolist(), lq2.mean(dim=(2, 3)).tolist()
    dot = (lambda a, b: sum(x * y for x, y in zip(a, b)))
    return [[scale * dot(q[i], k[i])] + [scale * dot(q[i], k[j]) for j in range(len(q)) if j != i] + [0.0]
            for i in range(len(q))]


def test_contrastive_model_logs_and_weights_the_losses(tiny_opt):
    """Iteration 1 (encoder stage): the logged loss is the InfoNCE of the network's logits, computed here, and the
    restoring conv is untouched; iteration 2: l_pix = mean |restored - gt| and l_contrast by hand, and the total
    is l_pix + 0.25 x l_contrast: with SGD at lr 1 the contrastive parameter moves by 0.25 x its gradient
    (computed here from the hand formula), the restorer by the L1 gradient alone."""
    model = build(tiny_opt(model_type='ContrastiveModel', network={'type': '_TestContrastNet'},
                           train={'encoder_iters': 1, 'contrastive_weight': 0.25,
                                  'optim_g': {'type': 'SGD', 'lr': 1.0}}))
    net = model.get_bare_model(model.net_g)
    data = _contrast_batch(1)
    conv_before = net.restore.weight.detach().clone()
    model.update_learning_rate(1)
    model.feed_data(data)
    model.optimize_parameters(1)
    log = model.get_current_log()
    assert set(log) == {'l_contrast'}
    expected = _cross_entropy_by_hand(_logits_by_hand(2.0, data['lq'], data['lq2']), [0, 0, 0])
    assert log['l_contrast'] == pytest.approx(sum(expected) / 3, rel=1e-5)
    assert torch.equal(net.restore.weight, conv_before)

    data = _contrast_batch(2)
    scale = net.scale.detach().clone().requires_grad_(True)
    q, k = data['lq'].mean(dim=(2, 3)), data['lq2'].mean(dim=(2, 3))
    similarity = scale * q @ k.t()
    rows = [torch.cat([similarity[i, i:i + 1], similarity[i, [j for j in range(3) if j != i]], torch.zeros(1)])
            for i in range(3)]
    contrast = sum(torch.logsumexp(row, 0) - row[0] for row in rows) / 3
    contrast.backward()
    with torch.no_grad():
        l1 = (net.restore(data['lq']) - data['gt']).abs().mean()
    scale_before = net.scale.item()
    model.update_learning_rate(2)
    model.feed_data(data)
    model.optimize_parameters(2)
    log = model.get_current_log()
    assert log['l_contrast'] == pytest.approx(contrast.item(), rel=1e-5)
    assert log['l_pix'] == pytest.approx(float(l1), rel=1e-5)
    assert net.scale.item() == pytest.approx(scale_before - 0.25 * scale.grad.item(), rel=1e-5)
    with pytest.raises(ValueError, match='num_crops: 2'):
        model.feed_data({'lq': data['lq'], 'gt': data['gt']})
        model.optimize_parameters(3)


def test_contrastive_settings_default_to_the_recipe(tiny_opt):
    """Without them in the file: no encoder stage (iteration 1 trains the restorer), weight 0.1, AirNet's
    ContrastiveLoss; a contrastive_opt given is the loss built."""
    model = build(tiny_opt(model_type='ContrastiveModel', network=dict(CBDE_PROMPTIR)))
    assert (model.encoder_iters, model.contrastive_weight) == (0, 0.1) and not model.in_encoder_stage(1)
    assert type(model.cri_contrast).__name__ == 'ContrastiveLoss'
    model = build(tiny_opt(model_type='ContrastiveModel', network=dict(CBDE_PROMPTIR),
                           train={'contrastive_opt': {'type': 'L1Loss'}}))
    assert type(model.cri_contrast).__name__ == 'L1Loss'


class _FakeTwoRanks:
    """torch.distributed as two ranks would look to rank 0: all_reduce (a sum) adds the other rank's gradient,
    ``other`` x the tensor's shape of ones, and records the tensors it was given."""

    def __init__(self, initialized=True, other=4.0):
        self.initialized, self.other, self.reduced = initialized, other, []

    def install(self, monkeypatch):
        import torch.distributed as dist
        monkeypatch.setattr(dist, 'is_available', lambda: True)
        monkeypatch.setattr(dist, 'is_initialized', lambda: self.initialized)
        monkeypatch.setattr(dist, 'get_world_size', lambda group=None: 2)
        monkeypatch.setattr(dist, 'all_reduce', self.all_reduce)

    def all_reduce(self, tensor, op=None, group=None, async_op=False):
        self.reduced.append(tensor)
        tensor.add_(torch.full_like(tensor, self.other))


def test_encoder_stage_gradients_are_averaged_over_the_ranks(tiny_opt, monkeypatch):
    """Stage 1 runs the encoder outside DDP's forward, so the model averages its gradients itself: in a distributed
    run each gradient becomes (this rank's + the other rank's) / 2; parameters without a gradient are left alone.
    Not in stage 2 (DDP averaged them), not when the run is not distributed or torch.distributed not set up."""
    model = build(tiny_opt(model_type='ContrastiveModel', network={'type': '_TestContrastNet'},
                           train={'encoder_iters': 2}))
    net = model.get_bare_model(model.net_g)

    def set_gradients():
        net.scale.grad = torch.tensor(1.0)
        net.restore.weight.grad = torch.arange(9.0).view(3, 3, 1, 1)
        net.restore.bias.grad = None

    for dist_opt, initialized, iteration, averaged in ((True, True, 2, True), (True, True, 3, False),
                                                        (False, True, 1, False), (True, False, 1, False)):
        fake = _FakeTwoRanks(initialized)
        fake.install(monkeypatch)
        model.opt['dist'] = dist_opt
        model.current_iter = iteration
        set_gradients()
        model.sync_gradients()
        case = (dist_opt, initialized, iteration)
        if averaged:
            assert net.scale.grad.item() == (1.0 + 4.0) / 2, case
            assert torch.equal(net.restore.weight.grad, (torch.arange(9.0).view(3, 3, 1, 1) + 4.0) / 2), case
            assert net.restore.bias.grad is None and len(fake.reduced) == 2, case
        else:
            assert net.scale.grad.item() == 1.0 and fake.reduced == [], case
            assert torch.equal(net.restore.weight.grad, torch.arange(9.0).view(3, 3, 1, 1)), case


def test_stage_two_keeps_the_restored_batch_as_the_output(tiny_opt):
    """After a joint step, ``output`` (what basicsr's visuals and logs read) is the restored batch of that step."""
    model = build(tiny_opt(model_type='ContrastiveModel', network={'type': '_TestContrastNet'},
                           train={'optim_g': {'type': 'SGD', 'lr': 0.0}}))
    net = model.get_bare_model(model.net_g)
    data = _contrast_batch(3)
    model.feed_data(data)
    model.optimize_parameters(1)
    with torch.no_grad():
        expected = net.restore(data['lq'])
    torch.testing.assert_close(model.output.detach(), expected, rtol=0, atol=1e-7)


def test_contrastive_option_rules_name_the_network_and_default_to_one_crop():
    """A network without a contrastive encoder is named (the PromptIR hint only for PromptIR); a training set
    without num_crops has one crop, which the model refuses; a test run needs none."""
    from promptir_basicsr.models.contrastive_model import ContrastiveModel
    opt = {'model_type': 'ContrastiveModel', 'network_g': {'type': 'Restormer'}, 'train': {'total_iter': 10},
           'datasets': {'train': {'gt_size': 16, 'batch_size_per_gpu': 2}}}
    assert ContrastiveModel.option_problems(opt, True) == [
        'model_type ContrastiveModel trains a contrastive degradation encoder, but network_g Restormer has none',
        'datasets:train:num_crops must be 2 for ContrastiveModel: its contrastive loss compares two crops of each '
        'degraded image (MoCo query and key)']
    opt['network_g'] = {'type': '_TestContrastNet'}
    assert ContrastiveModel.option_problems(opt, False) == []
    assert len(ContrastiveModel.option_problems(opt, True)) == 1
    assert ContrastiveModel.option_warnings({'train': {'total_iter': 0}}) == [  # no encoder_iters: 0
        'train:encoder_iters 0 >= train:total_iter 0: only the contrastive encoder stage runs; the restorer is never '
        'trained']
