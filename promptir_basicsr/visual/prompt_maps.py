"""Do PromptIR's prompts learn the degradation type? Statistics, table and heatmaps of the prompt
weights recorded per image (``basicsr prompts``).

Each prompt block mixes its ``prompt_len`` components with softmax weights predicted from the
features. For every block:

- the mean weight per degradation (test set) x component: a heatmap;
- the component with the largest weight (argmax) per image, and the specialisation score: the
  mutual information between the degradation label and that argmax component, I(D; A) in bits,
  and normalised by the label entropy H(D) (0: the choice of component says nothing about the
  degradation; 1: the degradation is known from the component alone).
"""
import io
import json
import os.path as osp

import numpy as np

from ..utils.files import atomic_write_bytes


def mutual_information(labels, choices):
    """``(I(labels; choices) in bits, H(labels) in bits)`` of two equally long sequences."""
    labels, choices = np.asarray(labels), np.asarray(choices)
    _, label_ids = np.unique(labels, return_inverse=True)
    _, choice_ids = np.unique(choices, return_inverse=True)
    joint = np.zeros((label_ids.max() + 1, choice_ids.max() + 1))
    np.add.at(joint, (label_ids, choice_ids), 1)
    joint /= joint.sum()
    p_label, p_choice = joint.sum(1, keepdims=True), joint.sum(0, keepdims=True)
    nonzero = joint > 0
    info = float((joint[nonzero] * np.log2(joint[nonzero] / (p_label @ p_choice)[nonzero])).sum())
    entropy = float(-(p_label[p_label > 0] * np.log2(p_label[p_label > 0])).sum())
    return max(info, 0.0), entropy


def summarise(records, sets, blocks):
    """The table of :func:`write_report` from ``records``: one dict per image, ``{'set', 'name',
    'weights': {block: [w_1..w_len]}}``; ``sets`` and ``blocks`` in display order."""
    rows, scores = [], {}
    for block in blocks:
        labels = [r['set'] for r in records]
        choices = [int(np.argmax(r['weights'][block])) for r in records]
        info, entropy = mutual_information(labels, choices)
        scores[block] = {'mutual_information_bits': info, 'label_entropy_bits': entropy,
                         'normalised': info / entropy if entropy > 0 else 0.0}
    for name in sets:
        mine = [r for r in records if r['set'] == name]
        row = {'degradation': name, 'images': len(mine), 'blocks': {}}
        for block in blocks:
            weights = np.array([r['weights'][block] for r in mine])
            counts = np.bincount(weights.argmax(1), minlength=weights.shape[1])
            row['blocks'][block] = {'mean_weights': weights.mean(0).round(4).tolist(), 'argmax_counts': counts.tolist(),
                                    'dominant': int(counts.argmax()), 'share': float(counts.max() / len(mine))}
        rows.append(row)
    return {'sets': list(sets), 'blocks': list(blocks), 'rows': rows, 'specialisation': scores, 'images': records}


def to_markdown(table):
    blocks = table['blocks']
    lines = ['| degradation | images | ' + ' | '.join(f'{b}: dominant component (share), mean weights' for b in blocks)
             + ' |', '|---|:---:|' + ':---:|' * len(blocks)]
    for row in table['rows']:
        cells = []
        for block in blocks:
            cell = row['blocks'][block]
            weights = ' '.join(f'{w:.2f}' for w in cell['mean_weights'])
            cells.append(f"c{cell['dominant']} ({cell['share']:.0%}), [{weights}]")
        lines.append(f"| {row['degradation']} | {row['images']} | " + ' | '.join(cells) + ' |')
    lines += ['', 'Specialisation: mutual information I(D; A) between the degradation D and the argmax component A, '
              'in bits, and normalised by H(D) (1: the component tells the degradation).', '',
              '| block | I(D; A) bits | H(D) bits | normalised |', '|---|:---:|:---:|:---:|']
    for block in blocks:
        s = table['specialisation'][block]
        lines.append(f"| {block} | {s['mutual_information_bits']:.3f} | {s['label_entropy_bits']:.3f} | "
                     f"{s['normalised']:.3f} |")
    return '\n'.join(lines) + '\n'


def heatmap_png(table, block):
    """PNG bytes: the mean weight of each component (columns) per degradation (rows) for ``block``."""
    from matplotlib.figure import Figure

    matrix = np.array([row['blocks'][block]['mean_weights'] for row in table['rows']])
    figure = Figure(figsize=(1.2 + 0.75 * matrix.shape[1], 1.2 + 0.45 * matrix.shape[0]), dpi=100,
                    layout='constrained')
    ax = figure.subplots()
    # colours span the observed range (weights near 1/len differ by little); the numbers are absolute
    low, high = float(matrix.min()), max(float(matrix.max()), float(matrix.min()) + 1e-6)
    image = ax.imshow(matrix, cmap='viridis', vmin=low, vmax=high, aspect='auto')
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, f'{value:.2f}', ha='center', va='center', fontsize=8,
                color='black' if value > low + 0.6 * (high - low) else 'white')
    ax.set_xticks(range(matrix.shape[1]), [f'c{j}' for j in range(matrix.shape[1])])
    ax.set_yticks(range(matrix.shape[0]), [row['degradation'] for row in table['rows']])
    ax.set_xlabel('prompt component')
    ax.set_title(f"{block}: mean weight (specialisation {table['specialisation'][block]['normalised']:.2f})",
                 fontsize=9)
    figure.colorbar(image, ax=ax, shrink=0.8)
    buffer = io.BytesIO()
    figure.savefig(buffer, format='png')
    return buffer.getvalue()


def write_report(table, folder):
    """``prompts.md``, ``prompts.json`` and ``<block>_heatmap.png`` per block in ``folder``; returns the
    written paths."""
    paths = [osp.join(folder, 'prompts.md'), osp.join(folder, 'prompts.json')]
    atomic_write_bytes(paths[0], to_markdown(table).encode('utf-8'))
    atomic_write_bytes(paths[1], json.dumps(table, indent=1).encode('utf-8'))
    for block in table['blocks']:
        paths.append(osp.join(folder, f'{block}_heatmap.png'))
        atomic_write_bytes(paths[-1], heatmap_png(table, block))
    return paths
