"""Golden outputs: our PromptIR, Restormer and AirNet against fixtures made once from the independent
official formulation (``tests/official_formulation.py``), at small non-default configurations with seeded
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

from golden_cases import (CASES, WHOLE, differences, fingerprint, fixture_path, from_npz, load_case_weights,
                          make_inputs, observe)
from official_formulation import build_reference


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
    """The fixtures and tests/official_formulation.py stay in step (a reference edited without
    regenerating the fixtures, or a torch upgrade that changes the arithmetic, shows here)."""
    case = CASES[name]
    net = load_case_weights(build_reference(case['arch'], **case['options']), name)
    with np.load(fixture_path(name)) as fixture:
        assert differences(observe(net, name, make_inputs(name)), fixture) == []
