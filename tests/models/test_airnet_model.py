import torch

from model_test_helpers import build

TINY_AIRNET = {'type': 'AirNet', 'n_feats': 8, 'n_groups': 1, 'n_blocks': 1, 'encoder_widths': [8, 8],
               'moco_dim': 8, 'queue_size': 8}


def _batch(n=4, size=16, seed=0):
    gen = torch.Generator().manual_seed(seed)
    gt = torch.rand(n, 3, size, size, generator=gen)
    lq = (gt + 0.1 * torch.randn(n, 3, size, size, generator=gen)).clamp(0, 1)
    return {'lq': lq, 'gt': gt, 'lq2': lq.flip(-1), 'gt2': gt.flip(-1)}


def _grads(model):
    bare = model.get_bare_model(model.net_g)
    return {name: p.grad for name, p in bare.named_parameters() if p.requires_grad}


def test_stage_switch(tiny_opt):
    opt = tiny_opt(model_type='AirNetModel', network=TINY_AIRNET,
                   train={'encoder_iters': 2, 'contrastive_weight': 0.1,
                          'scheduler': {'type': 'AirNetStepLR', 'encoder_step': 1, 'restore_step': 10,
                                        'restore_lr': 2e-4}})
    model = build(opt)
    r_before = {k: v.detach().clone() for k, v in model.net_g.R.named_parameters()}
    for it in (1, 2):
        model.update_learning_rate(it)
        model.feed_data(_batch(seed=it))
        model.optimize_parameters(it)
        grads = _grads(model)
        assert all(g is None for k, g in grads.items() if k.startswith('R.')), 'restorer must not get gradients'
        assert any(g is not None for k, g in grads.items() if k.startswith('E.'))
        assert set(model.get_current_log()) == {'l_contrast'}
    assert all(torch.equal(v, r_before[k]) for k, v in model.net_g.R.named_parameters())
    assert model.get_current_learning_rate()[0] == 1e-3 * 0.1  # encoder step after one iteration

    model.update_learning_rate(3)
    model.feed_data(_batch(seed=3))
    model.optimize_parameters(3)
    grads = _grads(model)
    assert all(g is not None for k, g in grads.items() if k.startswith('R.'))
    assert set(model.get_current_log()) == {'l_pix', 'l_contrast'}
    assert model.get_current_learning_rate()[0] == 2e-4  # restore_lr: not the encoder stage's 1e-3 x 0.1
    # the key encoder never gets gradients
    assert all(not p.requires_grad for p in model.net_g.E.E.encoder_k.parameters())


def test_one_per_source_two_crops_and_eval(tiny_opt):
    """A one_per_source batch (B=2 samples x S=2 sources) arrives flattened in sample-major order, both crops
    alike; after a training step, test() restores in eval mode (the AirNet output computed here) and leaves
    the network training."""
    model = build(tiny_opt(model_type='AirNetModel', network=TINY_AIRNET, train={'encoder_iters': 0}))
    data = _batch(4)
    per_source = {k: v.view(2, 2, *v.shape[1:]) for k, v in data.items()}  # (B=2, S=2, ...)
    model.update_learning_rate(1)
    model.feed_data(per_source)
    for key in ('lq', 'gt', 'lq2', 'gt2'):
        assert torch.equal(getattr(model, key), data[key]), key  # b0s0, b0s1, b1s0, b1s1: the rows of data
    model.optimize_parameters(1)
    x = torch.rand(1, 3, 13, 11)
    net = model.get_bare_model(model.net_g)
    net.eval()
    with torch.no_grad():
        expected = net(x)
    net.train()
    model.feed_data({'lq': x})
    model.test()
    torch.testing.assert_close(model.output, expected, rtol=0, atol=1e-6)
    assert model.net_g.training


def test_resume_restores_queue_optimizer_and_scheduler(tiny_opt, tmp_path):
    from promptir_basicsr.weights.files import load_checkpoint
    train = {'encoder_iters': 1, 'scheduler': {'type': 'AirNetStepLR', 'encoder_step': 1, 'restore_step': 1}}
    model = build(tiny_opt(model_type='AirNetModel', network=TINY_AIRNET, train=train))
    for it in (1, 2, 3):
        model.update_learning_rate(it)
        model.feed_data(_batch(seed=it))
        model.optimize_parameters(it)
    model.save(0, 3)
    state = load_checkpoint(tmp_path / 'training_states' / '3.state')

    opt = tiny_opt(model_type='AirNetModel', network=TINY_AIRNET, train=train)
    opt['path']['pretrain_network_g'] = str(tmp_path / 'models' / 'net_g_3.pth')
    resumed = build(opt)
    resumed.resume_training(state)
    assert torch.equal(resumed.net_g.E.E.queue, model.net_g.E.E.queue)
    assert torch.equal(resumed.net_g.E.E.queue_ptr, model.net_g.E.E.queue_ptr)
    assert resumed.schedulers[0].last_epoch == model.schedulers[0].last_epoch
    assert resumed.get_current_learning_rate() == model.get_current_learning_rate()
    exp_avg = [s['exp_avg'] for s in model.optimizer_g.state_dict()['state'].values()]
    exp_avg_resumed = [s['exp_avg'] for s in resumed.optimizer_g.state_dict()['state'].values()]
    assert all(torch.equal(a, b) for a, b in zip(exp_avg, exp_avg_resumed))
