"""One bar chart of an ablation (``basicsr ablate``): a group of bars per test set and for the average, one
bar per variant, its height the mean over seeds of a metric and its error bar the standard deviation."""
import io

import numpy as np

from ..utils.ablation_table import AVERAGE


def ablation_chart_png(table, metric=None, title=None):
    """PNG bytes of the chart of ``table`` (:func:`promptir_basicsr.utils.ablation_table.make_table`)."""
    from matplotlib.figure import Figure

    metric = metric or table['metrics'][0]
    columns = table['sets'] + [AVERAGE]
    rows = table['rows']
    means = np.array([[row['metrics'][metric][c]['mean'] or np.nan for c in columns] for row in rows], dtype=float)
    stds = np.array([[row['metrics'][metric][c]['std'] or 0.0 for c in columns] for row in rows], dtype=float)

    legend_rows = -(-len(rows) // 3)
    figure = Figure(figsize=(max(6.0, 1.1 * len(columns) * max(1, len(rows)) / 2.5 + 2), 4.0 + 0.22 * legend_rows),
                    dpi=100, layout='constrained')
    ax = figure.subplots()
    width = 0.8 / max(len(rows), 1)
    positions = np.arange(len(columns))
    for i, row in enumerate(rows):
        ax.bar(positions + (i - (len(rows) - 1) / 2) * width, means[i], width, yerr=stds[i], capsize=2,
               label=row['label'])
    finite = means[np.isfinite(means)]
    if finite.size:  # bars start near the lowest value: the differences, not the absolute level, are the point
        spread = max(float(finite.max() - finite.min()), 0.05 * float(abs(finite.max())) or 0.01)
        ax.set_ylim(float(finite.min()) - 0.3 * spread, float((means + stds)[np.isfinite(means)].max()) + 0.15 * spread)
    ax.set_xticks(positions, columns)
    ax.set_ylabel(f'{metric.upper()} (mean ± std over seeds)')
    ax.set_title(title or f'{metric.upper()} per test set', fontsize=10)
    ax.legend(fontsize=8, ncols=min(len(rows), 3), loc='upper center', bbox_to_anchor=(0.5, -0.1), frameon=False)
    ax.grid(axis='y', alpha=0.3)
    buffer = io.BytesIO()
    figure.savefig(buffer, format='png')
    return buffer.getvalue()
