"""The compute-matched Restormer (issue 12): the shipped configurations meet their tolerances, counted here with
``count_parameters``/``count_macs``; the search's sum of parts equals the whole network's count."""
import os.path as osp

import pytest
import torch
from basicsr.archs import build_network

from promptir_basicsr.commands.ablate import read_comparison
from promptir_basicsr.options.files import read_option_file
from promptir_basicsr.archs.complexity import count_macs, count_parameters
from promptir_basicsr.archs.compute_match import (DEFAULT_MAC_TOL, DEFAULT_PARAM_TOL, RestormerCostModel, format_report,
                                                  network_cost, restormer_backbone, search)

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
# comparison (a) of options/ablation/: PromptIR, the Restormer with its backbone, the compute-matched Restormer
COMPARISONS = ['options/ablation/full/a_prompts_or_compute.yml', 'options/ablation/demo/a_prompts_or_compute.yml']


def _count(path):
    """(parameters, MACs at 256x256) of the option file's network_g, built on the meta device."""
    with torch.device('meta'):
        net = build_network(dict(read_option_file(osp.join(REPO, path))['network_g']))
    return count_parameters(net), count_macs(net, (1, 3, 256, 256))


@pytest.mark.parametrize('comparison', COMPARISONS, ids=['full', 'demo'])
def test_compute_matched_restormer_meets_the_tolerances(comparison, tmp_path):
    """Parameters within 3 % and GMACs at 256x256 within 5 % of the PromptIR of the same comparison; the plain
    Restormer of that comparison is not (so the check can fail)."""
    promptir, plain, matched = read_comparison(osp.join(REPO, comparison), str(tmp_path))[0]
    target_params, target_macs = _count(promptir)
    params, macs = _count(matched)
    assert abs(params / target_params - 1) <= DEFAULT_PARAM_TOL, (params, target_params)
    assert abs(macs / target_macs - 1) <= DEFAULT_MAC_TOL, (macs, target_macs)
    plain_params, plain_macs = _count(plain)
    assert plain_params / target_params - 1 < -DEFAULT_PARAM_TOL and plain_macs / target_macs - 1 < -DEFAULT_MAC_TOL
    if '/full/' in comparison:  # the published figures of the official PromptIR and Restormer
        assert (target_params, round(target_macs / 1e9, 2)) == (35_592_263, 172.71)
        assert (plain_params, round(plain_macs / 1e9, 2)) == (26_126_644, 154.88)


def test_sum_of_parts_equals_the_whole_network():
    """The search adds up a skeleton and per-level blocks; that must equal the count of the whole network for
    uneven depths, widths, heads and expansions (guards a level given the wrong width, heads or resolution)."""
    base = restormer_backbone({'type': 'PromptIR', 'dim': 8, 'num_blocks': [1, 1, 1, 1],
                               'num_refinement_blocks': 1, 'heads': [1, 2, 4, 8]})
    model = RestormerCostModel(base, 64)
    for dim, blocks, refinement, heads, ffn in [(8, [2, 1, 3, 2], 2, [1, 2, 4, 8], 2.66),
                                                (12, [1, 3, 1, 4], 0, [2, 2, 4, 4], 2.0)]:
        option = dict(base, dim=dim, num_blocks=blocks, num_refinement_blocks=refinement, heads=heads,
                      ffn_expansion_factor=ffn)
        assert model.cost(dim, blocks, refinement, heads, ffn) == network_cost(option, 64)


def test_search_ranks_candidates_within_tolerance_first():
    """On a tiny PromptIR the search returns candidates whose whole-network counts are within tolerance, the
    fewest kinds of change first, and prints the best one's network_g."""
    target_opt = {'type': 'PromptIR', 'dim': 4, 'num_blocks': [1, 1, 1, 1], 'num_refinement_blocks': 1,
                  'heads': [1, 1, 1, 1], 'prompt_len': 2, 'prompt_dims': [4, 4, 8], 'prompt_sizes': [4, 4, 4]}
    space = {'dim': [4, 6], 'ffn_expansion_factor': [2.66, 3.0], 'heads': [[1, 1, 1, 1]],
             'num_blocks': [[1, b, 1, n] for b in (1, 2, 3) for n in (1, 2)], 'num_refinement_blocks': [1, 2]}
    target, baseline, candidates = search(target_opt, size=32, top=3, space=space)
    assert target == network_cost(target_opt, 32) and not baseline.within
    assert candidates[0].within and all(c.counted for c in candidates)
    order = [(not c.within, c.changes) for c in candidates]
    assert order == sorted(order)
    best = candidates[0]
    assert abs(best.cost.params / target.params - 1) <= DEFAULT_PARAM_TOL
    report = format_report(target_opt, target, baseline, candidates, 32, DEFAULT_PARAM_TOL, DEFAULT_MAC_TOL)
    assert f'  num_blocks: {best.network_opt["num_blocks"]}' in report and '| 1 |' in report
