"""ContrastiveModel: AirNet's contrastive recipe for any network with a contrastive degradation encoder, here
PromptIR with ``prompt_source: cbde`` (AirNetModel is the same model for AirNet; tests/models/test_airnet_model.py)."""
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
