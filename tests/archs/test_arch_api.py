"""The shared helpers of ``promptir_basicsr/archs/arch_api.py`` that read options back from weights."""
import pytest

from promptir_basicsr.archs.arch_api import CheckpointError, expansion_factor


@pytest.mark.parametrize('pairs, preferred, expected', [
    ([(48, 127), (96, 255)], 2.66, 2.66),   # Restormer's 2.66 fits: int(48 * 2.66) = 127, int(96 * 2.66) = 255
    ([(48, 96)], 2.66, 2.0),                # the shortest decimal >= 96 / 48
    ([(48, 110)], 2.66, 2.3),               # 2.2917 <= f < 2.3125: no integer, one decimal fits
    ([(10, 15), (20, 31)], 2.66, 1.55),     # [1.5, 1.6) and [1.55, 1.6): two decimals
    ([(8, 12)], 1.5, 1.5),                  # another preferred value
    ([], 2, 2), ([], 3, 3), ([], 2.66, 2.66),  # no feed-forward network: any factor fits, the preferred one
])
def test_expansion_factor_is_the_preferred_or_the_shortest_decimal_that_fits(pairs, preferred, expected):
    factor = expansion_factor(pairs, preferred=preferred)
    assert factor == expected
    assert all(int(width * factor) == hidden for width, hidden in pairs)


def test_expansion_factor_refuses_hidden_sizes_no_factor_fits():
    with pytest.raises(CheckpointError, match=r'\(10, 15\), \(20, 29\)'):
        expansion_factor([(10, 15), (20, 29)])  # [1.5, 1.6) and [1.45, 1.5) do not meet
