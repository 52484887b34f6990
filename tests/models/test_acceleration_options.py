"""The speed options (``amp``, ``channels_last``, ``compile``, ``train: grad_checkpoint``) on the CPU
with every architecture of the package at tiny sizes: a training step and a validation each.

Every combination of amp (off / bf16 / fp16), channels_last and grad_checkpoint runs with each
architecture, and ``compile`` runs with each architecture together with all the others (dynamo's
tracing costs seconds per architecture and mode, so not all 12 combinations get it; the compiled
graph is the same whichever other options are on). The backend is dynamo's ``eager``: the graph
capture, guards and our fallback are exercised without a C++ compiler run, which takes minutes on
this CPU (the inductor backend is measured by ``scripts/benchmark.py``).

Each run is compared with a run without options from the same weights and batch: the options may
change rounding (bf16 / fp16), never the result. Each also checks that its option took effect.
"""
import itertools
import logging

import pytest
import torch

from model_test_helpers import PairSet, build, loader
from promptir_basicsr.errors import UserError

ARCHS = {
    'PromptIR': ('AllInOneModel', {'type': 'PromptIR', 'dim': 8, 'num_blocks': [1, 1, 1, 1], 'num_refinement_blocks': 1,
                                   'heads': [1, 2, 4, 8], 'prompt_len': 3, 'prompt_dims': [8, 16, 24],
                                   'prompt_sizes': [8, 4, 2]}),
    'Restormer': ('AllInOneModel', {'type': 'Restormer', 'dim': 8, 'num_blocks': [1, 1, 1, 1],
                                    'num_refinement_blocks': 1, 'heads': [1, 2, 4, 8]}),
    'AirNet': ('AirNetModel', {'type': 'AirNet', 'n_feats': 8, 'n_groups': 2, 'n_blocks': 1, 'encoder_widths': [8, 8],
                               'moco_dim': 8, 'queue_size': 8}),
    # the all-in-one line: FFTs in AdaIR's frequency modules and MoCE-IR's experts (float16/bfloat16 inputs
    # upcast there), MoCE-IR's routing, BioIR's own stages
    'AdaIR': ('AllInOneModel', {'type': 'AdaIR', 'dim': 8, 'num_blocks': [1, 1, 1, 1], 'num_refinement_blocks': 1,
                                'heads': [1, 2, 4, 8]}),
    'MoCEIR': ('MoCEIRModel', {'type': 'MoCEIR', 'dim': 8, 'num_blocks': [1, 1, 1, 1], 'num_dec_blocks': [1, 1, 1],
                               'num_refinement_blocks': 1, 'heads': [1, 2, 4, 8]}),
    'BioIR': ('AllInOneModel', {'type': 'BioIR', 'dim': 8, 'num_blocks': [1, 1, 1], 'num_refinement_blocks': 1}),
}
# bf16 keeps 8 bits of mantissa: a tiny net's loss and PSNR move by well under these.
LOSS_TOLERANCE = {None: 1e-5, 'bf16': 2e-2, 'fp16': 5e-3}
PSNR_TOLERANCE = {None: 1e-3, 'bf16': 0.3, 'fp16': 0.05}


def _batch(size=16):
    gen = torch.Generator().manual_seed(0)
    gt = torch.rand(2, 3, size, size, generator=gen)
    lq = (gt + 0.1 * torch.randn(2, 3, size, size, generator=gen)).clamp(0, 1)
    return {'lq': lq, 'gt': gt, 'lq2': lq.flip(-1), 'gt2': gt.flip(-1)}


def _run(tiny_opt, arch, amp=None, channels_last=False, grad_checkpoint=False, compile_=None):
    """Build with seed 0, one training step, one validation: (model, loss, psnr)."""
    model_type, network = ARCHS[arch]
    opt = tiny_opt(model_type=model_type, network=dict(network),
                   train={'grad_checkpoint': grad_checkpoint, 'encoder_iters': 0,
                          'optim_g': {'type': 'AdamW', 'lr': 1e-3}})
    opt.update(amp=amp, channels_last=channels_last, compile=compile_)
    torch.manual_seed(0)
    model = build(opt)
    if model.grad_scaler is not None:
        # GradScaler's default first scale, 2**16, overflows MoCE-IR's float16 backward, and the step is skipped
        # (test_fp16_overflow_skips_the_step): compare trained networks, from a scale that fits
        model.grad_scaler = torch.amp.GradScaler('cpu', init_scale=2.0 ** 10)
    model.update_learning_rate(1)
    model.feed_data(_batch())
    model.optimize_parameters(1)
    loss = model.get_current_log()['l_pix']
    model.nondist_validation(loader(PairSet('val', ['a'], size=12)), 1, None, False)
    model.feed_data({'lq': torch.rand(1, 3, 12, 12)})
    model.test()
    assert model.output.dtype == torch.float32  # what metrics and image writers get, amp or not
    return model, loss, model.metric_results['psnr']


@pytest.fixture(scope='module')
def baselines():
    return {}


def _baseline(baselines, tiny_opt, arch):
    if arch not in baselines:
        baselines[arch] = _run(tiny_opt, arch)[1:]
    return baselines[arch]


def _check_options_took_effect(model, amp, channels_last, grad_checkpoint):
    net = model.get_bare_model(model.net_g)
    assert net.grad_checkpointing is grad_checkpoint
    conv_weights = [p for p in net.parameters() if p.dim() == 4]
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in conv_weights) is channels_last
    assert (model.grad_scaler is not None) is (amp == 'fp16')
    # the autocast the model runs its forward under
    with model._autocast():
        dtype = torch.nn.functional.conv2d(torch.rand(1, 2, 4, 4), torch.rand(2, 2, 1, 1)).dtype
    assert dtype == {None: torch.float32, 'bf16': torch.bfloat16, 'fp16': torch.float16}[amp]


@pytest.mark.parametrize('arch', ARCHS)
@pytest.mark.parametrize('amp,channels_last,grad_checkpoint', list(itertools.product([None, 'bf16', 'fp16'],
                                                                                     [False, True], [False, True])))
def test_option_combination_trains_and_validates(tiny_opt, baselines, arch, amp, channels_last, grad_checkpoint):
    model, loss, psnr = _run(tiny_opt, arch, amp, channels_last, grad_checkpoint)
    base_loss, base_psnr = _baseline(baselines, tiny_opt, arch)
    _check_options_took_effect(model, amp, channels_last, grad_checkpoint)
    assert loss == pytest.approx(base_loss, abs=LOSS_TOLERANCE[amp])
    assert psnr == pytest.approx(base_psnr, abs=PSNR_TOLERANCE[amp])


@pytest.mark.slow
@pytest.mark.parametrize('arch', ARCHS)
def test_compile_with_all_other_options(tiny_opt, baselines, arch):
    """compile + bf16 + channels_last + grad_checkpoint: compiled without failure (no fallback),
    same numbers as the eager bf16 run."""
    model, loss, psnr = _run(tiny_opt, arch, 'bf16', True, True, {'backend': 'eager'})
    net = model.get_bare_model(model.net_g)
    assert net.forward.compile_failures == []
    eager_model, eager_loss, eager_psnr = _run(tiny_opt, arch, 'bf16', True, True)
    assert loss == pytest.approx(eager_loss, abs=1e-6)
    assert psnr == pytest.approx(eager_psnr, abs=1e-4)
    # the EMA-less model validates with net_g itself: compiled too
    assert model.inference_net() is net


def test_fp16_overflow_skips_the_step(tiny_opt):
    """MoCE-IR at GradScaler's default first scale: the float16 gradients overflow, so the step leaves the
    weights as they were and halves the scale; the next step, at the lower scale, trains."""
    model_type, network = ARCHS['MoCEIR']
    opt = tiny_opt(model_type=model_type, network=dict(network),
                   train={'encoder_iters': 0, 'optim_g': {'type': 'AdamW', 'lr': 1e-3}})
    opt['amp'] = 'fp16'
    torch.manual_seed(0)
    model = build(opt)
    net = model.get_bare_model(model.net_g)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    model.update_learning_rate(1)
    model.feed_data(_batch())
    model.optimize_parameters(1)
    assert model.grad_scaler.get_scale() == 2.0 ** 15
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    model.feed_data(_batch())
    model.optimize_parameters(2)
    assert model.grad_scaler.get_scale() == 2.0 ** 15
    assert not torch.equal(before['output.weight'], net.output.weight)


def test_test_runs_take_the_options(tiny_opt):
    """`basicsr test` builds the model with is_train false: the options still apply to its network (not
    checkpointing: there is no training), and the metrics match a float32 test run of the same weights.
    (compile goes through the same ``prepare_network``; its tracing is exercised above.)"""
    results = []
    for options in ({}, {'amp': 'bf16', 'channels_last': True}):
        model_type, network = ARCHS['PromptIR']
        opt = tiny_opt(model_type=model_type, network=dict(network), is_train=False)
        opt.update(options)
        torch.manual_seed(0)
        model = build(opt)
        model.nondist_validation(loader(PairSet('test', ['a', 'b'], size=12)), 0, None, False)
        results.append(model.metric_results['psnr'])
    net = model.get_bare_model(model.net_g)
    assert net.grad_checkpointing is False and model.amp_dtype == torch.bfloat16
    assert net.patch_embed.proj.weight.is_contiguous(memory_format=torch.channels_last)
    assert results[1] == pytest.approx(results[0], abs=PSNR_TOLERANCE['bf16'])
    assert results[1] != results[0]  # bf16 really ran (rounding moved the PSNR)


def test_compile_failure_falls_back_to_eager_with_a_warning(tiny_opt, caplog):
    """A backend that cannot compile: one warning naming the error, and the step still runs eagerly."""

    def broken_backend(graph, example_inputs):
        raise RuntimeError('no compiler here')

    opt = tiny_opt(train={'optim_g': {'type': 'Adam', 'lr': 1e-3}})
    opt['compile'] = {'backend': broken_backend}
    model = build(opt)
    logger = logging.getLogger('basicsr')  # basicsr's logger may not propagate to caplog's root handler
    logger.addHandler(caplog.handler)
    try:
        model.update_learning_rate(1)
        model.feed_data(_batch())
        model.optimize_parameters(1)
        model.optimize_parameters(2)
    finally:
        logger.removeHandler(caplog.handler)
    failures = model.net_g.forward.compile_failures
    assert len(failures) == 1 and 'no compiler here' in str(failures[0])
    warnings = [r.getMessage() for r in caplog.records if 'torch.compile failed' in r.getMessage()]
    assert len(warnings) == 1 and 'running without compiling' in warnings[0]
    assert model.get_current_log()['l_pix'] > 0


@pytest.mark.parametrize('key,value,message', [
    ('amp', True, 'bf16'),
    ('amp', 'float8', 'bf16'),
    ('compile', 'yes', 'torch.compile arguments'),
])
def test_bad_values_are_user_errors(tiny_opt, key, value, message):
    opt = tiny_opt()
    opt[key] = value
    with pytest.raises(UserError, match=message):
        build(opt)


def test_grad_checkpoint_on_a_network_without_stages_is_a_user_error(tiny_opt):
    with pytest.raises(UserError, match='train:grad_checkpoint'):
        build(tiny_opt(train={'grad_checkpoint': True}))  # the test conv net has no stages


def test_options_pass_the_option_checker():
    """The keys are declared to the option checker (an undeclared key is an 'unknown key' error), with
    their values checked before a run, and the old places under `train:` are refused with a hint."""
    from promptir_basicsr.options.files import read_option_file
    from promptir_basicsr.options.prepare import validate_options
    opt = read_option_file('options/demo/promptir_demo.yml')
    opt.update(amp='bf16', channels_last=True, compile={'mode': 'max-autotune'})
    opt['train']['grad_checkpoint'] = True
    assert validate_options(opt, 'demo.yml', check_paths=False) is opt
    opt['amp'] = 'bf61'
    opt['train']['amp'] = 'bf16'
    with pytest.raises(UserError) as err:
        validate_options(opt, 'demo.yml', check_paths=False)
    assert "`amp` must be one of" in str(err.value) and 'unknown key `train:amp`' in str(err.value)
