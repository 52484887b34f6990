"""A Restormer with the compute of a given PromptIR: the baseline the PromptIR paper did not report.

PromptIR (35.6 M parameters, 172.7 GMACs at 256x256) is Restormer (26.1 M, 154.9) plus prompt blocks,
so part of any gain could be the extra compute. :func:`search` looks through a small space of Restormer
configurations around PromptIR's own backbone (width ``dim``, blocks per level, refinement blocks,
feed-forward expansion, heads) for those whose parameters and GMACs at ``size`` x ``size`` are within
the tolerances (3 % and 5 % by default) of the PromptIR's, and ranks them: within tolerance first, then
by how many kinds of change they make to PromptIR's backbone (depth, width, expansion, heads: the fewer,
the more it is "the same Restormer, deeper"), then by the larger of the two relative errors in units of
its tolerance.

Counting uses :mod:`.complexity` (``count_parameters``, ``count_macs``) on networks built on the
``meta`` device (shapes only: no memory, no arithmetic). A candidate's cost is the sum of the cost of
Restormer without transformer blocks and of one block per level times the number of blocks there
(blocks of a level are identical), so the search counts each kind of block once; :func:`network_cost`
counts a whole network, and the printed candidates are counted whole.

    python scripts/match_compute.py                                   # the official PromptIR
    python scripts/match_compute.py --opt options/demo/promptir_demo.yml   # the demo's tiny one
"""
import itertools
from dataclasses import dataclass, field

import torch

from .complexity import count_macs, count_parameters
from .restormer_blocks import TransformerBlock

DEFAULT_PARAM_TOL = 0.03
DEFAULT_MAC_TOL = 0.05
_BACKBONE_KEYS = ('inp_channels', 'out_channels', 'dim', 'num_blocks', 'num_refinement_blocks', 'heads',
                  'ffn_expansion_factor', 'bias', 'LayerNorm_type')


@dataclass(frozen=True)
class Cost:
    params: int
    macs: int
    trainable: int = 0  # parameters with requires_grad

    def __add__(self, other):
        return Cost(self.params + other.params, self.macs + other.macs, self.trainable + other.trainable)

    def __mul__(self, count):
        return Cost(self.params * count, self.macs * count, self.trainable * count)

    def relative_to(self, target):
        """(parameter error, MAC error) relative to ``target``, signed."""
        return self.params / target.params - 1, self.macs / target.macs - 1


def module_cost(module, input_shape):
    """Parameters (all, trainable) and MACs of ``module`` on an input of ``input_shape``."""
    return Cost(count_parameters(module), count_macs(module, input_shape), count_parameters(module, True))


def network_cost(network_opt, size=256):
    """Parameters and MACs at ``size`` x ``size`` of the network ``{'type': ..., **options}``, built on the meta
    device (or, for an operation without a meta kernel, on the CPU)."""
    from basicsr.archs import build_network
    shape = (1, network_opt.get('inp_channels', 3), size, size)
    try:
        with torch.device('meta'):
            return module_cost(build_network(dict(network_opt)), shape)
    except (NotImplementedError, RuntimeError):
        return module_cost(build_network(dict(network_opt)), shape)


def restormer_backbone(network_opt):
    """The Restormer options of a PromptIR's (or Restormer's) ``network_g``: its encoder/decoder backbone."""
    defaults = {'inp_channels': 3, 'out_channels': 3, 'dim': 48, 'num_blocks': [4, 6, 6, 8],
                'num_refinement_blocks': 4, 'heads': [1, 2, 4, 8], 'ffn_expansion_factor': 2.66, 'bias': False,
                'LayerNorm_type': 'WithBias'}
    backbone = {key: network_opt.get(key, defaults[key]) for key in _BACKBONE_KEYS}
    backbone['num_blocks'], backbone['heads'] = list(backbone['num_blocks']), list(backbone['heads'])
    return {'type': 'Restormer', **backbone}


@dataclass
class Candidate:
    network_opt: dict
    cost: Cost
    param_error: float
    mac_error: float
    changes: int
    within: bool
    counted: bool = False  # cost counted on the whole network (not summed from its parts)
    notes: list = field(default_factory=list)

    def score(self, param_tol, mac_tol):
        return max(abs(self.param_error) / param_tol, abs(self.mac_error) / mac_tol)


class RestormerCostModel:
    """Cost of any Restormer with given width, heads and expansion, from the cost of its parts."""

    def __init__(self, base, size):
        self.base, self.size, self._cache = base, size, {}

    def _cached(self, key, make):
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def cost(self, dim, num_blocks, refinement, heads, ffn):
        stage = dict(ffn_expansion_factor=ffn, bias=self.base['bias'], LayerNorm_type=self.base['LayerNorm_type'])
        skeleton = self._cached(('skeleton', dim), lambda: network_cost(
            dict(self.base, dim=dim, num_blocks=[0, 0, 0, 0], num_refinement_blocks=0), self.size))

        def block(channels, num_heads, scale):
            def make():
                with torch.device('meta'):
                    module = TransformerBlock(channels, num_heads, **stage)
                side = self.size // scale
                return module_cost(module, (1, channels, side, side))
            return self._cached(('block', channels, num_heads, ffn, scale), make)

        # Per level: (blocks of the encoder level, of the decoder level); widths d, 2d, 4d, 8d in the
        # encoder and 2d (level 1: no reduction), 2d, 4d in the decoder; refinement 2d at full size.
        level1 = block(dim, heads[0], 1) + block(dim * 2, heads[0], 1)
        level2 = block(dim * 2, heads[1], 2) * 2
        level3 = block(dim * 4, heads[2], 4) * 2
        latent = block(dim * 8, heads[3], 8)
        return (skeleton + level1 * num_blocks[0] + level2 * num_blocks[1] + level3 * num_blocks[2]
                + latent * num_blocks[3] + block(dim * 2, heads[0], 1) * refinement)


def search_space(base):
    """The configurations tried around the backbone ``base`` (a Restormer ``network_opt``)."""
    dim, blocks, refinement = base['dim'], base['num_blocks'], base['num_refinement_blocks']
    step = max(2, 2 * round(dim / 24))  # 4 for dim 48, 2 for the demo's 16
    dims = sorted({d for d in (dim + k * step for k in range(-2, 3)) if d >= 2 and d % 2 == 0})
    ffns = sorted({float(base['ffn_expansion_factor']), 2.0, 2.66, 3.0})
    heads = [list(base['heads']), [h * 2 for h in base['heads']]]
    return {
        'dim': dims,
        'num_blocks': [list(b) + [latent] for b in itertools.product(*[(n, n + 1, n + 2) for n in blocks[:3]])
                       for latent in range(blocks[3], 2 * blocks[3] + 5)],
        'num_refinement_blocks': list(range(refinement, 2 * refinement + 3)),
        'ffn_expansion_factor': ffns,
        'heads': heads,
    }


def _heads_fit(dim, heads):
    return all((dim * width) % h == 0 for width, h in zip((1, 2, 4, 8), heads))


def _changes(option, base):
    """How many kinds of change from ``base``: depth (any block count, refinement included) counts once,
    and each of width, feed-forward expansion and heads once."""
    depth = option['num_blocks'] != base['num_blocks'] or option['num_refinement_blocks'] != base['num_refinement_blocks']
    return int(depth) + sum(option[key] != base[key] for key in ('dim', 'ffn_expansion_factor', 'heads'))


def search(target_opt, size=256, param_tol=DEFAULT_PARAM_TOL, mac_tol=DEFAULT_MAC_TOL, top=10, space=None):
    """``(target cost, baseline, candidates)``: the PromptIR ``target_opt``'s cost, the plain Restormer with
    its backbone (a Candidate), and the ``top`` best Restormer candidates (whole-network counts) of ``space``
    (default :func:`search_space` around the backbone)."""
    target = network_cost(target_opt, size)
    base = restormer_backbone(target_opt)
    model = RestormerCostModel(base, size)
    space = space or search_space(base)
    found = []
    for dim, ffn, heads in itertools.product(space['dim'], space['ffn_expansion_factor'], space['heads']):
        if not _heads_fit(dim, heads):
            continue
        for blocks, refinement in itertools.product(space['num_blocks'], space['num_refinement_blocks']):
            cost = model.cost(dim, blocks, refinement, heads, ffn)
            option = dict(base, dim=dim, num_blocks=blocks, num_refinement_blocks=refinement, heads=heads,
                          ffn_expansion_factor=ffn)
            found.append(_candidate(option, cost, target, base, param_tol, mac_tol))
    found.sort(key=lambda c: (not c.within, c.changes, c.score(param_tol, mac_tol)))
    best = [_counted(c, target, base, param_tol, mac_tol, size) for c in found[:top]]
    baseline = _counted(_candidate(base, model.cost(base['dim'], base['num_blocks'], base['num_refinement_blocks'],
                                                    base['heads'], base['ffn_expansion_factor']),
                                   target, base, param_tol, mac_tol), target, base, param_tol, mac_tol, size)
    return target, baseline, best


def _candidate(option, cost, target, base, param_tol, mac_tol):
    param_error, mac_error = cost.relative_to(target)
    return Candidate(option, cost, param_error, mac_error, _changes(option, base),
                     abs(param_error) <= param_tol and abs(mac_error) <= mac_tol)


def _counted(candidate, target, base, param_tol, mac_tol, size):
    """The candidate with its cost counted on the whole network (and a note if the parts disagreed)."""
    cost = network_cost(candidate.network_opt, size)
    counted = _candidate(candidate.network_opt, cost, target, base, param_tol, mac_tol)
    counted.counted = True
    if cost != candidate.cost:
        counted.notes.append(f'summed from parts: {candidate.cost}')
    return counted


def _gmacs(macs):
    return f'{macs / 1e9:.2f}' if macs >= 1e9 else f'{macs / 1e9:.4f}'


def describe(option, keys=('dim', 'num_blocks', 'num_refinement_blocks', 'ffn_expansion_factor', 'heads')):
    return ', '.join(f'{key}: {option[key]}' for key in keys)


def format_report(target_opt, target, baseline, candidates, size, param_tol, mac_tol):
    """The printed report: the target, the plain Restormer, the candidates, the best one's ``network_g``."""
    lines = [f'Target: {target_opt["type"]} ({describe(restormer_backbone(target_opt))}): '
             f'{target.params / 1e6:.3f} M parameters, {_gmacs(target.macs)} GMACs at {size}x{size}',
             f'Tolerances: parameters within {param_tol:.0%}, GMACs within {mac_tol:.0%}', '',
             '| # | dim | num_blocks | refinement | ffn | heads | params (M) | vs target | GMACs | vs target | kinds changed '
             '| within |', '|---|---|---|---|---|---|---|---|---|---|---|---|']

    def row(label, c):
        o = c.network_opt
        return (f'| {label} | {o["dim"]} | {o["num_blocks"]} | {o["num_refinement_blocks"]} | '
                f'{o["ffn_expansion_factor"]} | {o["heads"]} | {c.cost.params / 1e6:.3f} | {c.param_error:+.1%} | '
                f'{_gmacs(c.cost.macs)} | {c.mac_error:+.1%} | {c.changes} | {"yes" if c.within else "no"} |')

    lines.append(row('Restormer (same backbone)', baseline))
    lines += [row(i, c) for i, c in enumerate(candidates, start=1)]
    notes = [f'candidate {i}: {note}' for i, c in enumerate(candidates, start=1) for note in c.notes]
    lines += ([''] + notes) if notes else []
    if candidates and candidates[0].within:
        best = candidates[0].network_opt
        lines += ['', 'network_g of candidate 1:', '  type: Restormer']
        lines += [f'  {key}: {str(value).lower() if isinstance(value, bool) else value}' for key, value in best.items()
                  if key != 'type']
    else:
        lines += ['', 'No candidate is within both tolerances: widen the search or the tolerances.']
    return '\n'.join(lines)
