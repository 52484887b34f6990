"""Golden outputs: our networks against fixtures made once from the independent references (the official
formulation ``tests/official_formulation.py`` of PromptIR, Restormer and AirNet; the re-statements
``tests/official/<name>.py`` of the newer networks), at small non-default configurations with seeded
weights and 20 x 27 inputs (cases in ``golden_cases.py``).

Guards against any arithmetic change in the networks: a swapped concatenation, a wrong constant, a
missing residual, a changed padding, prompt or MoCo detail. Each case compares the output, the input's
gradient, every parameter's gradient (and AirNet's logits, queue, momentum update and BatchNorm statistics
after a training forward) and fails on any difference above 1e-5 (relative to the tensor's largest
magnitude when that is above 1; gradients too large to store are compared through fingerprints). The
fixtures hold float64 values: everything is compared in float64, and the output, the input's gradient
and AirNet's logits also in float32 (the precision training runs at).

To regenerate the fixtures deliberately (a fixed reference, a new case), from the repository root:
``python tests/archs/golden_cases.py``; then say in the commit why they changed. Never make them from
``promptir_basicsr.archs``.
"""
import numpy as np
import pytest
import torch
from basicsr.archs import build_network

from golden_cases import (CASES, WHOLE, build_reference, differences, fingerprint, fixture_path, from_npz,
                          load_case_weights, make_inputs, observe)


def _check_inputs(name, fixture):
    stored = from_npz(fixture)
    for key, value in make_inputs(name).items():
        np.testing.assert_allclose(fingerprint('input:' + key, value), stored[f'fingerprint:input:{key}'], rtol=1e-9,
                                   err_msg=f'{name}: the inputs differ from those the fixture was made with')


@pytest.mark.parametrize('dtype', [torch.float64, torch.float32], ids=['float64', 'float32'])
@pytest.mark.parametrize('name', sorted(CASES))
def test_our_network_matches_the_golden_fixture(name, dtype):
    case = CASES[name]
    torch.manual_seed(0)  # construction draws random init values; the seeded weights replace them all
    net = load_case_weights(build_network({'type': case['arch'], **case['options']}), name)
    with np.load(fixture_path(name)) as fixture:
        _check_inputs(name, fixture)
        problems = differences(observe(net, name, make_inputs(name), dtype), fixture,
                               only=None if dtype == torch.float64 else WHOLE)
    assert problems == [], f'{name}: our {case["arch"]} differs from the official formulation:\n' + '\n'.join(problems)


@pytest.mark.parametrize('name', sorted(CASES))
def test_the_reference_still_gives_its_fixture(name):
    """The fixtures and the references stay in step (a reference edited without
    regenerating the fixtures, or a torch upgrade that changes the arithmetic, shows here)."""
    case = CASES[name]
    net = load_case_weights(build_reference(case['arch'], **case['options']), name)
    with np.load(fixture_path(name)) as fixture:
        assert differences(observe(net, name, make_inputs(name)), fixture) == []


# Options the fixtures do not vary, compared directly with the reference (float64, seeded weights).
# Found by mutation testing: an option dropped on the way to a sub-module went unnoticed where the
# fixtures' configuration happened to equal the default or a neighbouring value.
MORE_CONFIGURATIONS = [
    ('AirNet', dict(n_feats=8, n_groups=1, n_blocks=2, kernel_size=5, encoder_widths=[8, 8], moco_dim=4,
                    queue_size=4), 'kernel size 5, two blocks per group'),
    ('AirNet', dict(inp_channels=1, out_channels=1, n_feats=8, n_groups=1, n_blocks=1, encoder_widths=[8, 8],
                    moco_dim=4, queue_size=4), 'grey images'),
    ('PromptIR', dict(dim=8, num_blocks=[1, 2, 3, 1], num_refinement_blocks=2, heads=[1, 2, 2, 4],
                      prompt_len=2, prompt_dims=[8, 8, 16], prompt_sizes=[4, 4, 4]), 'every stage a different depth'),
    ('Restormer', dict(dim=8, num_blocks=[2, 1, 3, 1], num_refinement_blocks=2, heads=[1, 2, 2, 4]),
     'every stage a different depth'),
    ('Restormer', dict(inp_channels=6, dim=8, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1, heads=[1, 1, 2, 2],
                       bias=True, dual_pixel_task=True), 'dual-pixel with biases'),
    ('BioIR', dict(inp_channels=1, out_channels=1, dim=8, num_blocks=[2, 0, 1], num_refinement_blocks=0,
                   ffn_expansion_factor=2.0), 'grey images, an empty level, no refinement'),
]


@pytest.mark.parametrize('arch, options, what', MORE_CONFIGURATIONS, ids=[c[2] for c in MORE_CONFIGURATIONS])
def test_our_network_matches_the_reference_at_more_configurations(arch, options, what):
    from golden_cases import seeded_state
    torch.manual_seed(0)
    ours = build_network({'type': arch, **options}).double().eval()
    state = seeded_state(ours.state_dict(), 7)
    if arch == 'BioIR':  # its multiplicative mixers need smaller weights (golden_cases.CASES['bioir'])
        state = {k: v * 0.5 if v.dim() > 1 else v for k, v in state.items()}
    ours.load_state_dict(state)
    reference = build_reference(arch, **options).double().eval()
    reference.load_state_dict(ours.state_dict())
    x = torch.rand(2, options.get('inp_channels', 3), 12, 19, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize('arch', ['AdaIR', 'MoCEIR', 'BioIR'])
def test_constructor_defaults_are_the_official_ones(arch):
    """Official option sets carry over unchanged only if every default is the official constructor's: the
    re-statement under ``tests/official/`` copies that signature (names and defaults, file and line there)."""
    import importlib
    import inspect

    from basicsr.utils.registry import ARCH_REGISTRY
    module = importlib.import_module({'AdaIR': 'official.adair', 'MoCEIR': 'official.moce_ir',
                                      'BioIR': 'official.bioir'}[arch])
    ours, official = (inspect.signature(cls).parameters for cls in (ARCH_REGISTRY.get(arch), getattr(module, arch)))
    assert list(ours) == list(official)
    assert {k: p.default for k, p in ours.items()} == {k: p.default for k, p in official.items()}
