"""Training curves of basicsr runs: each loss term, the learning rate and each validation set's
metric against iteration, one panel each; several runs overlay (``basicsr plot``).

Sources, per run folder (``experiments/<name>``):

- its log files (``*.log``; a resumed run has several, read in name order = time order): losses and
  learning rate from the training lines, metrics from the ``Validation <set>`` blocks, the degraded
  input's metrics from ``Input (degraded) <set>`` lines (drawn as a dashed reference). basicsr does
  not print the iteration of a validation; it is the last logged iteration rounded up to the
  option ``val_freq`` (read from the options the log starts with) and capped at ``total_iter``.
- its tensorboard files, when present (``tb_logger/<name>`` beside ``experiments/``, or inside the
  folder): exact iterations for the losses and metrics basicsr writes there (it does not write the
  learning rate).
"""
import glob
import io
import math
import os.path as osp
import re
from collections import defaultdict

from ..utils.files import atomic_write_bytes

_NUMBER = r'[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|nan|inf)'
TRAIN_LINE = re.compile(r'\]\[epoch:\s*\d+, iter:\s*([\d,]+), lr:\(([^)]*)\)\]')
LOG_VALUE = re.compile(rf'(\w+): ({_NUMBER})')
RESUME_LINE = re.compile(r'(?:Resuming|Start) training from epoch: \d+, iter: (\d+)')
UNCHANGED_LINE = re.compile(r'Validation (.+) at iter (\d+): weights unchanged')
VALIDATION_LINE = re.compile(r'INFO: Validation (.+?)\s*$')
METRIC_LINE = re.compile(rf'^\s*# (\w+): ({_NUMBER})')
INPUT_LINE = re.compile(r'INFO: Input \(degraded\) (.+?): (.*)$')
OPTION_LINE = re.compile(r'^\s+(val_freq|total_iter): (\d+)\s*$')


class RunCurves:
    """The curves of one run: ``series[key] = {iteration: value}`` and reference values.

    Keys: ``('loss', name)`` per loss term (and other logged scalars), ``('lr', 'lr')``,
    ``('metric', set, metric)``. ``references[(set, metric)]``: the degraded input's value.
    """

    def __init__(self, name):
        self.name = name
        self.series = defaultdict(dict)
        self.references = {}
        self.sources = []

    def add(self, key, iteration, value):
        self.series[key][int(iteration)] = float(value)


def _validation_iter(last_iter, options):
    val_freq, total = options.get('val_freq'), options.get('total_iter')
    iteration = last_iter
    if val_freq and last_iter % val_freq:
        iteration = math.ceil(last_iter / val_freq) * val_freq
    return min(iteration, total) if total else iteration


def read_log(path, curves):
    """Add the curves of one basicsr training log to ``curves``."""
    options, last_iter, current_set, pinned_iter = {}, 0, None, {}
    with open(path, encoding='utf-8', errors='replace') as f:
        for line in f:
            option = OPTION_LINE.match(line)
            if option and option.group(1) not in options:
                options[option.group(1)] = int(option.group(2))
                continue
            train = TRAIN_LINE.search(line)
            if train:
                last_iter = int(train.group(1).replace(',', ''))
                lrs = [v for v in train.group(2).split(',') if v.strip()]
                if lrs:
                    curves.add(('lr', 'lr'), last_iter, lrs[0])
                for key, value in LOG_VALUE.findall(line[line.rindex(']') + 1:]):
                    curves.add(('loss', key), last_iter, value)
                current_set = None
                continue
            resume = RESUME_LINE.search(line)
            if resume:
                last_iter = int(resume.group(1))
                continue
            unchanged = UNCHANGED_LINE.search(line)
            if unchanged:
                pinned_iter[unchanged.group(1)] = int(unchanged.group(2))
                continue
            validation = VALIDATION_LINE.search(line)
            if validation:
                current_set = validation.group(1)
                current_iter = pinned_iter.pop(current_set, None) or _validation_iter(last_iter, options)
                continue
            metric = METRIC_LINE.match(line)
            if metric and current_set is not None:
                curves.add(('metric', current_set, metric.group(1)), current_iter, metric.group(2))
                continue
            reference = INPUT_LINE.search(line)
            if reference:
                for key, value in LOG_VALUE.findall(reference.group(2)):
                    curves.references[(reference.group(1), key)] = float(value)
            elif line.strip() and not line.startswith(('\t', ' ')):
                current_set = None


def read_tensorboard(folder, curves):
    """Add the scalars of the tensorboard files under ``folder`` (exact iterations win over the log)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(folder, size_guidance={'scalars': 0})
    accumulator.Reload()
    for tag in accumulator.Tags().get('scalars', []):
        parts = tag.split('/')
        if parts[0] == 'metrics' and len(parts) == 3:
            key = ('metric', parts[1], parts[2])
        else:
            key = ('loss', parts[-1])
        curves.series[key] = {event.step: float(event.value) for event in accumulator.Scalars(tag)}


def tensorboard_folders(run_dir):
    """Folders holding tensorboard event files of ``run_dir``: inside it, or basicsr's
    ``<root>/tb_logger/<name>`` beside ``<root>/experiments/<name>``."""
    candidates = [run_dir, osp.join(osp.dirname(osp.dirname(osp.abspath(run_dir))), 'tb_logger',
                                    osp.basename(osp.normpath(run_dir)))]
    folders = []
    for candidate in candidates:
        for event_file in sorted(glob.glob(osp.join(candidate, '**', 'events.out.tfevents.*'), recursive=True)):
            if osp.dirname(event_file) not in folders:
                folders.append(osp.dirname(event_file))
    return folders


def read_run(run_dir, name=None):
    """The :class:`RunCurves` of a run folder (logs, then tensorboard); ``sources`` lists what was read."""
    curves = RunCurves(name or osp.basename(osp.normpath(run_dir)))
    logs = sorted(p for p in glob.glob(osp.join(run_dir, '*.log')) if not osp.basename(p).startswith('test_'))
    for log in logs:
        read_log(log, curves)
        curves.sources.append(log)
    for folder in tensorboard_folders(run_dir):
        read_tensorboard(folder, curves)
        curves.sources.append(folder)
    return curves


def _panel_order(key):
    return {'loss': 0, 'lr': 1, 'metric': 2}[key[0]]  # a stable sort: sets stay in the log's order


def _smoothed(values, weight):
    """tensorboard's exponential moving average (``weight`` 0: raw values)."""
    out, last = [], None
    for value in values:
        last = value if last is None else last * weight + value * (1 - weight)
        out.append(last)
    return out


def plot_runs(runs, path, metric='psnr', smooth=0.0):
    """Write the figure of ``runs`` (:class:`RunCurves`) to ``path`` (PNG, atomically); returns the
    panel titles in order."""
    from matplotlib.figure import Figure

    keys = list(dict.fromkeys(k for run in runs for k in run.series if k[0] != 'metric' or k[2] == metric))
    keys.sort(key=_panel_order)
    if not keys:
        raise ValueError('no curves to plot')
    cols = min(3, len(keys))
    rows = math.ceil(len(keys) / cols)
    figure = Figure(figsize=(4.2 * cols, 3.2 * rows), dpi=100, layout='constrained')
    axes = figure.subplots(rows, cols, squeeze=False).ravel()
    titles = []
    for ax, key in zip(axes, keys):
        title = {'loss': f'loss {key[1]}', 'lr': 'learning rate'}.get(key[0]) or f'{key[1]} {key[2]}'
        titles.append(title)
        for index, run in enumerate(runs):
            points = sorted(run.series.get(key, {}).items())
            if points:
                ys = [y for _, y in points]
                ys = _smoothed(ys, smooth) if key[0] == 'loss' else ys
                ax.plot([x for x, _ in points], ys, color=f'C{index}', label=run.name,
                        marker='o' if key[0] == 'metric' else None, markersize=3)
        if key[0] == 'metric':
            reference = next((run.references[key[1:]] for run in runs if key[1:] in run.references), None)
            if reference is not None:
                ax.axhline(reference, color='0.5', linestyle='--', linewidth=1, label='degraded input')
        if key[0] == 'loss' and all(y > 0 for run in runs for y in run.series.get(key, {}).values()):
            ax.set_yscale('log')
        ax.set_title(title)
        ax.set_xlabel('iteration')
        ax.grid(alpha=0.3)
    for ax in axes[len(keys):]:
        ax.set_visible(False)
    handles = {}  # one legend for the figure: runs, and the degraded-input reference
    for ax in axes[:len(keys)]:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    figure.legend(list(handles.values()), list(handles.keys()), loc='outside upper center',
                  ncols=min(len(handles), 4))
    buffer = io.BytesIO()
    figure.savefig(buffer, format='png')
    atomic_write_bytes(path, buffer.getvalue())
    return titles
