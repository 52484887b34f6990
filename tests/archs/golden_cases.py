"""The golden cases of PromptIR, Restormer, AirNet, AdaIR, MoCE-IR and BioIR, and how their fixtures are made.

A case is a small non-default configuration of a network (widths, depths, heads, prompt sizes, norm
type, bias, MoCo settings all off their defaults), seeded weights (:func:`seeded_state`, from the state
dict's key names and shapes only), fixed inputs of 20 x 27 pixels (neither a multiple of 8, so
PromptIR's and Restormer's padding is exercised) and a fixed loss ``sum(output * w)``. What a case
observes (:func:`observe`): the output, the gradient of the input, the gradient of every parameter,
and for AirNet's training forward also the logits, the MoCo queue and pointer, the momentum-updated
key encoder and the BatchNorm running statistics. Cases run in float64, so the fixtures hold the
formulation's values, not one float32 summation order's rounding (float32 parameter gradients of the
two formulations differ by up to ~1e-4 through cancellation); the output, the input's gradient and the
logits are also checked in float32.

The fixtures ``tests/archs/golden/<case>.npz`` were made ONCE from the independent references
(``tests/official_formulation.py``, and ``tests/official/<name>.py`` for the newer networks, see
:func:`build_reference`), never from ``promptir_basicsr.archs``. To regenerate them
deliberately (after a fix of the reference, a new case, or a change of torch's arithmetic that you
have understood), run from the repository root:

    python tests/archs/golden_cases.py            # rewrites tests/archs/golden/*.npz
    python tests/archs/golden_cases.py adair moce_ir_eval bioir   # only the named cases

then check ``git diff --stat`` and say in the commit why they changed. The output, the input's
gradient, AirNet's logits and tensors of up to :data:`FULL_LIMIT` values are stored whole (float32);
other parameter gradients and states as a fingerprint (sum, L2 norm and the dot products with two
fixed random unit vectors, float64), which moves with any change of the tensor. The inputs are not
stored: they come from numpy's frozen ``RandomState`` stream, and their fingerprints are checked.
"""
import os
import os.path as osp
import sys
import zlib

import numpy as np
import torch

GOLDEN_DIR = osp.join(osp.dirname(osp.abspath(__file__)), 'golden')
FULL_LIMIT = 64  # other tensors with more values are stored as a fingerprint
WHOLE = ('output', 'grad/input', 'logits', 'labels', 'balance')  # always stored whole
TOLERANCE = 1e-5  # largest allowed difference, relative to the tensor's largest magnitude when above 1
SIZE = (20, 27)

CASES = {
    'promptir': dict(
        arch='PromptIR', batch=2, seed=1,
        options=dict(dim=8, num_blocks=[1, 1, 1, 2], num_refinement_blocks=1, heads=[1, 2, 2, 4],
                     ffn_expansion_factor=2.66, bias=True, LayerNorm_type='WithBias', prompt_len=3,
                     prompt_dims=[8, 16, 24], prompt_sizes=[8, 6, 4])),
    'restormer': dict(
        arch='Restormer', batch=1, seed=2,
        options=dict(dim=8, num_blocks=[1, 2, 1, 1], num_refinement_blocks=1, heads=[2, 2, 4, 4],
                     ffn_expansion_factor=1.5, bias=True, LayerNorm_type='BiasFree')),
    'restormer_dual_pixel': dict(
        arch='Restormer', batch=1, seed=3, channels=6,
        options=dict(inp_channels=6, dim=8, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1, heads=[1, 2, 2, 4],
                     ffn_expansion_factor=2.0, bias=False, LayerNorm_type='WithBias', dual_pixel_task=True)),
    # eval: the query encoder's code guides the restorer; train: MoCo logits, queue, momentum update too.
    # queue_ptr starts at 4 (not 0) so the ring-buffer write position is part of the check.
    'airnet_eval': dict(
        arch='AirNet', batch=1, seed=4, train=False,
        options=dict(n_feats=8, n_groups=2, n_blocks=1, encoder_widths=[8, 16], moco_dim=8, queue_size=12,
                     moco_momentum=0.99, moco_temperature=0.2)),
    'airnet_train': dict(
        arch='AirNet', batch=2, seed=5, train=True,
        options=dict(n_feats=8, n_groups=2, n_blocks=1, encoder_widths=[8, 16], moco_dim=8, queue_size=12,
                     moco_momentum=0.99, moco_temperature=0.2)),
    # AdaIR (reference: tests/official/adair.py). At 20 x 27 every low-pass window is empty (the official rule
    # needs 256 pixels at a level), so the low band is zero: without biases its cross attention then has an
    # all-zero q (F.normalize's gradient at 0 is part of the check); with biases q is the bias.
    'adair': dict(
        arch='AdaIR', batch=2, seed=6,
        options=dict(dim=8, num_blocks=[1, 1, 2, 1], num_refinement_blocks=1, heads=[1, 2, 2, 4],
                     ffn_expansion_factor=2.0, bias=False, LayerNorm_type='BiasFree')),
    'adair_bias': dict(
        arch='AdaIR', batch=1, seed=7,
        options=dict(dim=8, num_blocks=[1, 2, 1, 1], num_refinement_blocks=2, heads=[2, 1, 4, 2],
                     ffn_expansion_factor=1.5, bias=True, LayerNorm_type='WithBias')),
    # MoCE-IR's routers draw noise in evaluation too (the official behaviour), so the forward runs right after
    # torch.manual_seed(noise_seed): the same draws in ours and the reference. eval: batch 1 (the official
    # evaluation path; the two samples of a batch would get each other's experts there), top-2 of 3 experts;
    # train: batch 2 through the sparse dispatcher (noise_seed 22: the two samples pick different experts in every
    # block, all four used), the balance loss (observed as 'balance') joins the loss.
    'moce_ir_eval': dict(
        arch='MoCEIR', batch=1, seed=6, noise_seed=11,
        options=dict(dim=8, heads=[1, 2, 2, 4], num_blocks=[1, 1, 1, 2], num_dec_blocks=[1, 2, 1],
                     ffn_expansion_factor=1.5, num_refinement_blocks=1, bias=True, rank=3, num_experts=3,
                     depth_type='lin', stage_depth=[2, 1, 1], rank_type='lin', topk=2, complexity_scale='min')),
    'moce_ir_train': dict(
        arch='MoCEIR', batch=2, seed=7, train=True, balance=True, noise_seed=22,
        options=dict(dim=8, heads=[2, 2, 4, 4], num_blocks=[1, 1, 2, 1], num_dec_blocks=[2, 1, 1],
                     num_refinement_blocks=1, LayerNorm_type='BiasFree', num_experts=4, rank_type='spread', topk=1,
                     with_complexity=True)),
    # BioIR's mixers multiply features (P2F's pixel-to-region affinity is quadratic in them, and the mixer
    # multiplies its two branches), so at seeded_state's N(0, 1/fan_in) weights each block amplifies its
    # input 10-100x and float32 keeps only ~1e-4 of the output (float64 ~1e-13). ``weight_scale`` halves
    # every convolution weight: outputs and gradients stay O(1), as in a trained network. Level 3 of a
    # 20 x 27 input (padded to 20 x 28) is 5 x 7: smaller than the 16 x 16 pooled regions, so P2F's
    # overlapping bins are exercised.
    'bioir': dict(
        arch='BioIR', batch=2, seed=6, weight_scale=0.5,
        options=dict(dim=8, num_blocks=[1, 2, 1], num_refinement_blocks=1, ffn_expansion_factor=2.5, bias=True,
                     LayerNorm_type='WithBias')),
    'bioir_bias_free': dict(
        arch='BioIR', batch=1, seed=7, weight_scale=0.5,
        options=dict(dim=12, num_blocks=[1, 1, 2], num_refinement_blocks=2, ffn_expansion_factor=3, bias=False,
                     LayerNorm_type='BiasFree')),
}


def seeded_state(state_dict, seed):
    """Weights for every key of ``state_dict`` from ``seed``, by name and shape only (sorted keys,
    numpy's frozen ``RandomState`` stream), so a network built in another order gets the same ones.

    Values are in the ranges the networks meet in training: convolution and linear weights
    N(0, 1/fan_in), norm and BatchNorm scales U(0.5, 1.5), biases and running means N(0, 0.1^2),
    running variances U(0.5, 1.5), attention temperatures U(0.5, 2), prompt components U(0, 1),
    MoCo queue columns of unit norm, integer buffers 0 (AirNet's queue pointer 4).
    """
    rs = np.random.RandomState(seed)
    out = {}
    for key in sorted(state_dict):
        shape = tuple(state_dict[key].shape)
        leaf = key.rsplit('.', 1)[-1]
        if not state_dict[key].is_floating_point():
            value = np.full(shape, 4 if leaf == 'queue_ptr' else 0, np.int64)
        elif leaf == 'queue':
            value = rs.standard_normal(shape)
            value /= np.linalg.norm(value, axis=0, keepdims=True)
        elif leaf == 'prompt_param':
            value = rs.uniform(0, 1, shape)
        elif leaf == 'temperature':
            value = rs.uniform(0.5, 2.0, shape)
        elif leaf == 'running_var' or (len(shape) == 1 and leaf == 'weight'):
            value = rs.uniform(0.5, 1.5, shape)
        elif len(shape) == 1:  # biases, running means
            value = 0.1 * rs.standard_normal(shape)
        else:
            value = rs.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))
        out[key] = torch.from_numpy(np.asarray(value)).to(state_dict[key].dtype)
    return out


def make_inputs(name):
    """The case's fixed inputs (float32): ``x`` (and ``x_key``), the loss weights ``w`` (``w_logits``)."""
    case = CASES[name]
    rs = np.random.RandomState(1000 + case['seed'])
    shape = (case['batch'], case.get('channels', 3)) + SIZE
    inputs = {'x': rs.uniform(0, 1, shape), 'w': rs.standard_normal((case['batch'], 3) + SIZE)}
    if case.get('train') and not case.get('balance'):  # AirNet's training forward: a key crop, logit weights
        inputs['x_key'] = rs.uniform(0, 1, shape)
        inputs['w_logits'] = rs.standard_normal((case['batch'], 1 + case['options']['queue_size']))
    return {k: v.astype(np.float32) for k, v in inputs.items()}


def load_case_weights(net, name):
    """Put the case's seeded weights into ``net`` (strict: every key, every shape), the weights of more than one
    dimension times the case's ``weight_scale`` (default 1)."""
    case = CASES[name]
    state = seeded_state(net.state_dict(), case['seed'])
    scale = case.get('weight_scale', 1)
    if scale != 1:
        state = {k: v * scale if v.dim() > 1 and v.is_floating_point() else v for k, v in state.items()}
    net.load_state_dict(state, strict=True)
    return net


def build_reference(arch, **options):
    """The independent reference network of ``arch`` with our option names
    (``tests/official_formulation.py``'s ``build_reference``: that file's networks, or a re-statement in
    ``tests/official/``)."""
    tests_dir = osp.dirname(osp.dirname(osp.abspath(__file__)))
    if tests_dir not in sys.path:
        sys.path.insert(0, tests_dir)
    from official_formulation import build_reference as build
    return build(arch, **options)


def observe(net, name, inputs, dtype=torch.float64):
    """{name: float64 array} of everything the case checks, for ``net`` carrying the case's weights,
    computed in ``dtype``."""
    case = CASES[name]
    net.to(dtype).train(bool(case.get('train', False)))
    given = {k: torch.from_numpy(v).to(dtype) for k, v in inputs.items()}
    x = given['x'].requires_grad_()
    seen = {}
    if case.get('noise_seed') is not None:  # MoCE-IR's routing noise: the same draws in every network observed
        torch.manual_seed(case['noise_seed'])
    if case.get('balance'):  # MoCE-IR's training forward: its balance loss (total_loss) joins the loss
        restored = net(x)
        loss = (restored * given['w']).sum() + net.total_loss
        seen['balance'] = net.total_loss.reshape(1)
    elif case.get('train'):
        restored, logits, labels = net(x, given['x_key'])
        loss = (restored * given['w']).sum() + (logits * given['w_logits']).sum()
        seen['logits'] = logits
        seen['labels'] = labels
    else:
        restored = net(x)
        loss = (restored * given['w']).sum()
    seen['output'] = restored
    loss.backward()
    seen['grad/input'] = x.grad
    for key, param in net.named_parameters():
        if param.grad is not None:
            seen[f'grad/{key}'] = param.grad
    if case.get('train') and not case.get('balance'):  # what AirNet's training forward changed: queue, pointer,
        # key encoder, BN statistics
        for key, value in net.state_dict().items():
            if 'encoder_k' in key or key.endswith(('queue', 'queue_ptr', 'running_mean', 'running_var')):
                seen[f'after/{key}'] = value
    return {k: v.detach().double().numpy() if v.is_floating_point() else v.detach().numpy() for k, v in seen.items()}


def fingerprint(name, array):
    """(sum, L2 norm, two projections on fixed random unit vectors) of ``array``, in float64."""
    flat = np.asarray(array, np.float64).ravel()
    rs = np.random.RandomState(zlib.crc32(name.encode()))
    vectors = rs.standard_normal((2, flat.size))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.array([flat.sum(), np.linalg.norm(flat), *(vectors @ flat)])


def summarise(seen):
    """{key: array}: the WHOLE keys and small arrays as they are, the others as ``fingerprint:<key>``."""
    out = {}
    for key, value in seen.items():
        if key in WHOLE or value.size <= FULL_LIMIT:
            out[key] = value.astype(np.float32) if value.dtype == np.float64 else value
        else:
            out['fingerprint:' + key] = fingerprint(key, value)
    return out


def to_npz(summary):
    """The fingerprints as one table (``fingerprint_names``, ``fingerprints``), the rest as entries."""
    names = sorted(k for k in summary if k.startswith('fingerprint:'))
    stored = {k: v for k, v in summary.items() if k not in names}
    stored['fingerprint_names'] = np.array([n[len('fingerprint:'):] for n in names])
    stored['fingerprints'] = np.stack([summary[n] for n in names])
    return stored


def from_npz(fixture):
    """The inverse of :func:`to_npz`: {key: array} as :func:`summarise` gives it."""
    out = {k: fixture[k] for k in fixture.files if k not in ('fingerprint_names', 'fingerprints')}
    out.update({f'fingerprint:{n}': row for n, row in zip(fixture['fingerprint_names'], fixture['fingerprints'])})
    return out


def differences(seen, fixture, only=None):
    """Lines describing every difference above TOLERANCE between ``seen`` (observe()) and ``fixture``
    (only the keys in ``only``, if given)."""
    summary = summarise(seen)
    expected = {k: v for k, v in from_npz(fixture).items() if not k.startswith('fingerprint:input:')}
    if only is not None:
        summary = {k: v for k, v in summary.items() if k in only}
        expected = {k: v for k, v in expected.items() if k in only}
    lines = []
    for key in sorted(set(expected) - set(summary)):
        lines.append(f'{key}: in the fixture, not produced (a gradient that vanished?)')
    for key in sorted(set(summary) - set(expected)):
        lines.append(f'{key}: produced, not in the fixture (a gradient that appeared?)')
    for key in sorted(set(summary) & set(expected)):
        ours, ref = summary[key].astype(np.float64), expected[key].astype(np.float64)
        if ours.shape != ref.shape:
            lines.append(f'{key}: shape {ours.shape}, fixture {ref.shape}')
            continue
        scale = max(1.0, float(np.abs(ref).max()) if ref.size else 1.0)
        if key.startswith('fingerprint:'):
            scale = max(1.0, float(ref[1]))  # the L2 norm bounds sum/projections' noise
        worst = float(np.abs(ours - ref).max()) if ref.size else 0.0
        if worst > TOLERANCE * scale:
            lines.append(f'{key}: max difference {worst:.3g} (allowed {TOLERANCE * scale:.3g})')
    return lines


def fixture_path(name):
    return osp.join(GOLDEN_DIR, f'{name}.npz')


def main(names=None):
    """Regenerate the fixtures of ``names`` (default: every case) from the references (:func:`build_reference`)."""
    torch.set_num_threads(1)
    os.makedirs(GOLDEN_DIR, exist_ok=True)
    unknown = sorted(set(names or ()) - set(CASES))
    if unknown:
        raise SystemExit(f'unknown cases: {", ".join(unknown)} (known: {", ".join(CASES)})')
    for name, case in CASES.items():
        if names and name not in names:
            continue
        inputs = make_inputs(name)
        net = load_case_weights(build_reference(case['arch'], **case['options']), name)
        summary = summarise(observe(net, name, inputs))
        summary.update({f'fingerprint:input:{k}': fingerprint('input:' + k, v) for k, v in inputs.items()})
        stored = to_npz(summary)
        np.savez_compressed(fixture_path(name), **stored)
        print(f'{fixture_path(name)}: {len(stored)} arrays, {os.path.getsize(fixture_path(name)) / 1024:.0f} KiB')
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
