"""The comparison table of an ablation (``basicsr ablate``): variants x test sets, mean +- std over seeds.

Input, one dict per variant (one option file), in display order::

    {'label': str, 'option_file': str, 'network': str (the arch), 'params': int, 'trainable_params': int,
     'macs': int (at 256x256), 'seeds': [int], 'sets': [set names],
     'runs': [{'seed': int, 'results': {set: {metric: value}}, 'train_seconds': float,
               'specialisation': float or None}]}

:func:`make_table` turns them into the table dict written as ``ablation.json``: per variant and set
(and for the average over the sets, computed per seed first) the mean and the sample standard deviation
over seeds of every metric, the training time, the prompt specialisation score (mean over the
network's prompt blocks of ``basicsr prompts``' normalised I(D; A)), and the difference of each metric
to the reference variant (the first one) with its verdict: ``within`` when it is not larger than the
seed-to-seed spread (the larger of the two variants' standard deviations), ``beyond`` when it is,
``unknown`` with a single seed. :func:`to_markdown` writes the same as ``ablation.md``.
"""
import math

import numpy as np

from . import results_table
from .results_table import decimals, format_value

AVERAGE = 'Average'
MD_NAME = 'ablation.md'
JSON_NAME = 'ablation.json'


def mean_std(values):
    """``{'mean', 'std', 'n'}`` of the finite ``values``; std is the sample one (ddof 1), None below 2 values."""
    values = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not values:
        return {'mean': None, 'std': None, 'n': 0}
    std = float(np.std(values, ddof=1)) if len(values) > 1 else None
    return {'mean': float(np.mean(values)), 'std': std, 'n': len(values)}


def _per_set_values(runs, sets, metric):
    """{set or AVERAGE: [value per seed]}; the average is taken per seed over the sets it has."""
    values = {name: [run['results'].get(name, {}).get(metric) for run in runs] for name in sets}
    averages = []
    for run in runs:
        found = [run['results'].get(name, {}).get(metric) for name in sets]
        found = [v for v in found if v is not None]
        averages.append(sum(found) / len(found) if len(found) == len(sets) else None)
    values[AVERAGE] = averages
    return values


def compare(value, reference):
    """The difference ``value - reference`` of two ``mean_std`` dicts and whether seeds can tell it apart."""
    if value['mean'] is None or reference['mean'] is None:
        return None
    difference = value['mean'] - reference['mean']
    stds = [s for s in (value['std'], reference['std']) if s is not None]
    if len(stds) < 2:
        return {'difference': difference, 'spread': None, 'verdict': 'unknown'}
    spread = max(stds)
    return {'difference': difference, 'spread': spread, 'verdict': 'within' if abs(difference) <= spread else 'beyond'}


def make_table(variants, metrics):
    """The ablation table dict (see the module docstring) from the variants' runs."""
    sets = []
    for variant in variants:
        sets += [s for s in variant['sets'] if s not in sets]
    columns = sets + [AVERAGE]
    rows = []
    for variant in variants:
        runs = variant['runs']
        row = {key: variant.get(key) for key in ('label', 'option_file', 'network', 'params', 'trainable_params',
                                                 'macs')}
        row['seeds'] = [run['seed'] for run in runs]
        row['metrics'] = {}
        for metric in metrics:
            values = _per_set_values(runs, sets, metric)
            row['metrics'][metric] = {name: dict(mean_std(values[name]), values=values[name]) for name in columns}
        row['train_seconds'] = mean_std([run.get('train_seconds') for run in runs])
        specialisation = [run.get('specialisation') for run in runs]
        row['specialisation'] = mean_std(specialisation) if any(s is not None for s in specialisation) else None
        rows.append(row)
    reference = rows[0] if rows else None
    for row in rows[1:]:
        row['vs_reference'] = {metric: {name: compare(row['metrics'][metric][name], reference['metrics'][metric][name])
                                        for name in columns} for metric in metrics}
    return {'metrics': list(metrics), 'sets': sets, 'reference': reference['label'] if reference else None,
            'rows': rows}


def _cell(stat, metric):
    """``mean ± std`` with the mean's number of decimals."""
    if stat['mean'] is None:
        return '-'
    digits = decimals(metric, stat['mean'])
    text = format_value(metric, stat['mean'], digits)
    return text if stat['std'] is None else f"{text} ± {format_value(metric, stat['std'], digits)}"


def _verdict(comparison, metric, reference_mean):
    if comparison is None:
        return '-'
    digits = decimals(metric, reference_mean)
    text = f"{comparison['difference']:+.{digits}f}"
    if comparison['verdict'] == 'unknown':
        return f'{text} (1 seed: spread unknown)'
    spread = format_value(metric, comparison['spread'], digits)
    return f'{text} (within the seed spread {spread})' if comparison['verdict'] == 'within' else \
        f'{text} (beyond the seed spread {spread})'


def _difference(comparison, metric, reference_mean):
    """A per-set cell: the difference, then ``≈`` when the seeds cannot tell it apart (``?`` with one seed)."""
    if comparison is None:
        return '-'
    mark = {'within': ' ≈', 'beyond': '', 'unknown': ' ?'}[comparison['verdict']]
    return f"{comparison['difference']:+.{decimals(metric, reference_mean)}f}{mark}"


def to_markdown(table):
    """Three tables: the metrics per set (mean ± std over seeds); size, time, prompts and the difference of the
    average to the reference; the difference of the first metric per set."""
    metrics, sets = table['metrics'], table['sets']
    unit = ' / '.join(m.upper() if m.lower() in ('psnr', 'ssim') else m for m in metrics)
    columns = sets + [AVERAGE]
    lines = [f'Per cell: {unit}, mean ± standard deviation over seeds.', '',
             '| Variant | seeds | ' + ' | '.join(columns) + ' |', '|---|:---:|' + ':---:|' * len(columns)]
    for row in table['rows']:
        cells = [' / '.join(_cell(row['metrics'][m][name], m) for m in metrics) for name in columns]
        lines.append(f"| {row['label']} | {len(row['seeds'])} | " + ' | '.join(cells) + ' |')
    first = metrics[0]
    lines += ['', f'| Variant | parameters (trainable) | GMACs at 256x256 | training time | prompt specialisation | '
              f'{AVERAGE} {first.upper()} vs {table["reference"]} |', '|---|:---:|:---:|:---:|:---:|:---|']
    for row in table['rows']:
        params = f"{row['params'] / 1e6:.3f} M"
        if row['trainable_params'] != row['params']:
            params += f" ({row['trainable_params'] / 1e6:.3f} M)"
        seconds = row['train_seconds']
        time = '-' if seconds['mean'] is None else f"{seconds['mean'] / 60:.1f} min"
        spec = row['specialisation']
        spec = '-' if spec is None else _cell(spec, 'score')
        if 'vs_reference' in row:
            versus = _verdict(row['vs_reference'][first][AVERAGE], first, row['metrics'][first][AVERAGE]['mean'] or 0)
        else:
            versus = 'reference'
        lines.append(f"| {row['label']} | {params} | {row['macs'] / 1e9:.2f} | {time} | {spec} | {versus} |")
    if len(table['rows']) > 1:
        reference = table['rows'][0]['metrics'][first]
        lines += ['', f'| {first.upper()} minus {table["reference"]} | ' + ' | '.join(columns) + ' |',
                  '|---|' + ':---:|' * len(columns)]
        for row in table['rows'][1:]:
            lines.append(f"| {row['label']} | " + ' | '.join(
                _difference(row['vs_reference'][first][name], first, reference[name]['mean'] or 0)
                for name in columns) + ' |')
    lines += ['', 'A difference is "within the seed spread" (≈) when it is not larger than the larger of the two '
              'variants\' standard deviations over seeds: the seeds cannot tell the variants apart. Prompt '
              'specialisation: the mean over prompt blocks of I(D; A) / H(D) from `basicsr prompts` (0: the '
              'chosen component says nothing about the degradation, 1: it identifies it). Training time: wall '
              'clock of `basicsr train`.']
    return '\n'.join(lines) + '\n'


def write_table(table, folder):
    """``ablation.json`` and ``ablation.md`` in ``folder``; returns the Markdown text."""
    return results_table.write_table(table, folder, to_markdown, JSON_NAME, MD_NAME)
