"""The paper's Table 1 from test runs: one row per model, one column per test set, plus the average.

``basicsr test`` (through ``AllInOneModel``/``AirNetModel``) writes, in ``results/<name>/``:

- ``results_table.json``: ``{"metrics": [...], "sets": [...], "rows": [{"model": str,
  "reference": bool, "results": {set: {metric: value}}, "average": {metric: value}}]}``
- ``results_table.md``: the same as a Markdown table, cells ``PSNR/SSIM`` (the metric names of
  ``val.metrics`` joined by '/'), a row ``Input (degraded)`` for reference.

Several results folders merge into one table (the input row kept once per distinct set of values)::

    python scripts/results_table.py results/promptir results/airnet [--out merged]
"""
import json
import math
import os.path as osp

from ..errors import UserError
from .files import atomic_write_text

INPUT_ROW = 'Input (degraded)'
JSON_NAME = 'results_table.json'
MD_NAME = 'results_table.md'


def decimals(metric, value):
    """Digits after the point for ``metric``: 4 for SSIM and values below 1.5 (SSIM-like), else 2 (PSNR)."""
    return 4 if 'ssim' in metric.lower() or abs(value) < 1.5 else 2


def format_value(metric, value, digits=None):
    """``value`` as shown in tables (``digits``: override :func:`decimals`); '-' for a missing value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return '-'
    return f'{value:.{decimals(metric, value) if digits is None else digits}f}'


def make_row(model, results, metrics, reference=False):
    """A row: ``results`` is {set: {metric: value}}; the average is over the sets that have a value."""
    average = {}
    for metric in metrics:
        values = [r[metric] for r in results.values() if r.get(metric) is not None and math.isfinite(r[metric])]
        average[metric] = sum(values) / len(values) if values else None
    return {'model': model, 'reference': bool(reference), 'results': results, 'average': average}


def make_table(rows, metrics=None, sets=None):
    """Table dict from rows; metrics and sets default to those found in the rows, in first-seen order."""
    if metrics is None:
        metrics = []
        for row in rows:
            for res in row['results'].values():
                metrics += [m for m in res if m not in metrics]
    if sets is None:
        sets = []
        for row in rows:
            sets += [s for s in row['results'] if s not in sets]
    return {'metrics': list(metrics), 'sets': list(sets), 'rows': list(rows)}


def to_markdown(table):
    metrics, sets = table['metrics'], table['sets']
    unit = '/'.join(m.upper() if m.lower() in ('psnr', 'ssim') else m for m in metrics)
    header = ['Method'] + sets + ['Average']
    lines = [f'Metrics per cell: {unit}', '', '| ' + ' | '.join(header) + ' |',
             '|' + '|'.join(['---'] + [':---:'] * (len(header) - 1)) + '|']
    rows = sorted(table['rows'], key=lambda r: not r.get('reference'))  # reference row first
    for row in rows:
        cells = [row['model'] + (' (reference)' if row.get('reference') and row['model'] != INPUT_ROW else '')]
        for name in sets:
            res = row['results'].get(name, {})
            cells.append('/'.join(format_value(m, res.get(m)) for m in metrics) if res else '-')
        cells.append('/'.join(format_value(m, row['average'].get(m)) for m in metrics))
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def write_table(table, folder, markdown=None, json_name=JSON_NAME, md_name=MD_NAME):
    """Write ``table`` as ``json_name`` and its Markdown (``markdown(table)``, default :func:`to_markdown`) as
    ``md_name`` into ``folder`` (``results_table.json`` and ``.md`` by default); returns the Markdown text."""
    text = (markdown or to_markdown)(table)
    atomic_write_text(osp.join(folder, json_name), json.dumps(table, indent=2))
    atomic_write_text(osp.join(folder, md_name), text)
    return text


def read_table(path):
    """A table from a results folder or a ``results_table.json`` path."""
    if osp.isdir(path):
        path = osp.join(path, JSON_NAME)
    if not osp.isfile(path):
        raise UserError(f'no {JSON_NAME} at {path}: give a results folder written by `basicsr test` '
                        '(results/<name>) or its results_table.json')
    try:
        with open(path, encoding='utf-8') as f:
            table = json.load(f)
    except ValueError as err:
        raise UserError(f'{path} is not a results table (invalid JSON: {err}); rerun `basicsr test`') from err
    if not isinstance(table, dict) or not {'metrics', 'sets', 'rows'} <= set(table):
        raise UserError(f'{path} is not a results table written by `basicsr test` (needs metrics, sets, rows)')
    return table


def merge_tables(tables):
    """One table from several: all model rows, each distinct reference row once."""
    rows, seen_refs = [], []
    metrics, sets = [], []
    for table in tables:
        metrics += [m for m in table['metrics'] if m not in metrics]
        sets += [s for s in table['sets'] if s not in sets]
        for row in table['rows']:
            if row.get('reference'):
                key = json.dumps(row['results'], sort_keys=True)
                if key in seen_refs:
                    continue
                seen_refs.append(key)
            rows.append(row)
    # recompute averages over the merged metric list
    rows = [make_row(r['model'], r['results'], metrics, r.get('reference')) for r in rows]
    return make_table(rows, metrics, sets)
