"""scripts/mutation_test.py's arithmetic: the kill rate and the 95 % interval of a random sample."""
import importlib.util
import os

import pytest

_PATH = os.path.join(os.path.dirname(__file__), '..', '..', 'scripts', 'mutation_test.py')


@pytest.fixture(scope='module')
def script():
    spec = importlib.util.spec_from_file_location('mutation_test_script', _PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_samples_rate_has_the_wilson_interval(script):
    """scipy's Wilson interval of 90 of 100 is 82.56-94.48 %; 20 of 20 gives 83.89-100 %."""
    assert script._rate(90, 100, 1000) == '90.0% (82.6-94.5%)'
    assert script._rate(20, 20, 500) == '100.0% (83.9-100.0%)'
    assert script._rate(0, 20, 500) == '0.0% (0.0-16.1%)'


def test_a_complete_or_stopped_run_has_no_interval(script):
    assert script._rate(90, 100) == '90.0%'
    assert script._rate(90, 100, 100) == '90.0%'
    assert script._rate(0, 0, 10) == 'n/a'


def test_the_summary_table_gives_the_sample_and_the_rate_without_the_equivalent(script):
    """57 killed of 60 run, 2 of the 3 survivors equivalent: scipy's Wilson intervals of 57/60 and 57/58 are
    86.30-98.29 % and 90.86-99.69 %."""
    row = dict(area='x', mutants=1500, behaviour=1100, killed=57, judged=60, equivalent=2, whole=1100)
    assert script.summary_table([row]).splitlines()[-1] == (
        '| x | 1500 | 1100 | 60 | 57 | 3 (2) | 95.0% (86.3-98.3%) | 98.3% (90.9-99.7%) |')
