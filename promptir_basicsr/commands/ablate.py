"""``basicsr ablate``: a comparison of variants: train each over seeds, test each with the same test option
file, write one comparison table and one bar chart.

    basicsr ablate COMPARISON.yml [--seeds 2] [--first-seed 0] [-o results/ablation/<comparison>]
                   [--jobs 1 | --devices 0,1,2,3 [--gpus-per-run 1]] [--force_yml key=value ...]
    basicsr ablate A.yml B.yml ... --test-opt TEST.yml [...]       (one training option file per variant)

A comparison file names a reference training option file, a test option file and the variants, each the
reference (or another training file) plus a few overrides::

    train: ../../demo/promptir_demo.yml      # paths relative to the comparison file
    test: ../../demo/promptir_demo_test.yml
    variants:                                # the first is the reference row of the table
      demo_promptir: {}                      # the variant's run name: the reference file as it is
      demo_promptir_fixed:
        set: {network_g: {prompt_learnable: false}, val: {table_name: 'PromptIR, fixed prompts'}}
      demo_restormer: {train: ../../demo/restormer_demo.yml}

``set`` merges into the options key by key (mappings merge, any other value, lists included, replaces; a mapping
with another ``type``, e.g. another network, replaces the base's); the variant's key becomes its ``name``. The composed option files are written to ``<output>/options/``.

For each variant and seed S (``--first-seed`` .. ``--first-seed + --seeds - 1``, the same for every
file), the run ``<name>_seed<S>`` is trained by ``basicsr train`` (option ``name`` and ``manual_seed``
forced, after the ``--force_yml`` entries given for every file) in a subprocess, unless
``experiments/<name>_seed<S>`` already holds a finished run of the same options (its ``ablation_run.json``
records them); runs are shared across comparisons. ``--jobs`` runs side by side; with ``--devices`` each
run gets ``--gpus-per-run`` of the listed CUDA devices (``CUDA_VISIBLE_DEVICES``), as many runs side by
side as there are groups, and a run on several GPUs trains under ``torch.distributed.run`` (DDP,
``--launcher pytorch``). Runs go seed by seed, and each is tested right after its training by
``basicsr test`` with the test option file, its ``network_g``, ``model_type`` and weights replaced by the
run's (reused when already tested with these weights); for a PromptIR with prompt blocks, ``basicsr
prompts`` adds the specialisation score. Parameters and GMACs are counted at 256x256
(:func:`promptir_basicsr.archs.compute_match.network_cost`).

Writes to ``-o`` (default ``results/ablation/<comparison file's name>``, or ``results/ablation``): ``ablation.md``, ``ablation.json``
(:mod:`promptir_basicsr.utils.ablation_table`), ``ablation.png``
(:mod:`promptir_basicsr.visual.ablation_chart`) and ``logs/`` (each subprocess' output). The first
option file is the reference the others are compared with. Exit status 1 if a run failed (the table
then has the runs that finished), 2 for a mistake in the arguments or option files.
"""
import argparse
import contextlib
import hashlib
import json
import os
import os.path as osp
import queue
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import yaml

from ..errors import UserError
from ..options.files import apply_force_yml, options_yaml, read_option_file
from ..utils.ablation_table import make_table, write_table
from ..utils.files import atomic_write_bytes, atomic_write_text
from ..utils.results_table import read_table
from . import arguments
from .prompts import main as prompts_main

HELP = 'train variants over seeds, test them alike: one comparison table (mean ± std) and one chart'
MARKER = 'ablation_run.json'  # in experiments/<run>/: the options a finished training ran with
TEST_MARKER = 'ablation_test.json'  # in results/<run>_test/: the test options and weights it ran with
TEST_OPTION_FILE = 'ablation_test.yml'  # in experiments/<run>/: the composed test options


def build_parser(prog='basicsr ablate'):
    parser = argparse.ArgumentParser(
        prog=prog, description='Train variants over seeds, test them with one test option file, and write one '
        'comparison table (Markdown + JSON: per test set and the average, mean ± std over seeds, parameters, GMACs, '
        'training time, prompt specialisation) and one bar chart.',
        epilog='example: %(prog)s options/ablation/demo/b_fixed_prompts.yml --seeds 2')
    parser.add_argument('files', nargs='+', metavar='FILE',
                        help='a comparison file (train, test, variants), or training option files, one per variant '
                        '(the first is the reference) with --test-opt')
    parser.add_argument('--test-opt', default=None, metavar='TEST.yml',
                        help='with training option files: the test option file every variant is tested with')
    parser.add_argument('--seeds', type=int, default=2, help='seeds per variant (default 2)')
    parser.add_argument('--first-seed', type=int, default=0, help='the first seed (default 0)')
    arguments.add_output_argument(parser, 'folder of the table, chart, logs and composed option files (default '
                                  'results/ablation/<comparison>, or results/ablation)')
    parser.add_argument('--jobs', type=int, default=1, help='runs trained/tested at the same time (default 1)')
    parser.add_argument('--devices', default=None, metavar='0,1,...',
                        help='CUDA devices to share out: each run gets --gpus-per-run of them; as many runs at the same '
                        'time as there are groups (instead of --jobs)')
    parser.add_argument('--gpus-per-run', type=int, default=1,
                        help='with --devices: GPUs per run (default 1); more than 1 trains with DDP under torchrun')
    parser.add_argument('--force_yml', nargs='+', default=[], metavar='KEY=VALUE',
                        help="options forced in every training file (basicsr's syntax, e.g. "
                        'datasets:train:batch_size_per_gpu=32); they are part of the run, like the file')
    parser.add_argument('--title', default=None, help="the chart's title (default: the metric per test set)")
    return parser


def _sha(obj):
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode('utf-8')).hexdigest()


def _read_json(path):
    try:
        with open(path, encoding='utf-8') as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _plain(node):
    """The option dict as plain dicts and lists (for hashing and YAML)."""
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [_plain(v) for v in node]
    return node


@dataclass
class Variant:
    option_file: str
    opt: dict  # the file's options with the --force_yml entries applied

    @property
    def name(self):
        return self.opt['name']

    @property
    def label(self):
        return (self.opt.get('val') or {}).get('table_name') or self.name

    @property
    def network_opt(self):
        return dict(self.opt['network_g'])

    def has_prompts(self):
        network = self.opt['network_g']
        return network.get('type') == 'PromptIR' and bool(list(network.get('prompt_levels', (4, 3, 2))))


@dataclass
class Run:
    variant: Variant
    seed: int
    forced: tuple = ()  # --force_yml entries for every file

    @property
    def name(self):
        return f'{self.variant.name}_seed{self.seed}'

    @property
    def experiment(self):
        return osp.join('experiments', self.name)

    @property
    def weights(self):
        return osp.join(self.experiment, 'models', 'net_g_latest.pth')

    @property
    def results(self):
        return osp.join('results', f'{self.name}_test')

    def force_yml(self):
        return [*self.forced, f'name={self.name}', f'manual_seed={self.seed}']

    def train_options(self):
        """The options this run trains with (the variant's are the file's with the forced entries)."""
        return dict(_plain(self.variant.opt), name=self.name, manual_seed=self.seed)

    def trained(self):
        """The record of a finished training of these options, or None."""
        marker = _read_json(osp.join(self.experiment, MARKER))
        if osp.isfile(self.weights) and marker and marker.get('options_sha256') == _sha(self.train_options()):
            return marker
        return None


class Slots:
    """Where runs go: ``jobs`` anonymous slots, or the groups of ``gpus_per_run`` CUDA devices of ``devices``.
    :meth:`take` blocks until a slot is free and yields it (None, or a list of device ids)."""

    def __init__(self, jobs=1, devices=None, gpus_per_run=1):
        if devices:
            ids = [d.strip() for d in str(devices).split(',') if d.strip()]
            if gpus_per_run < 1 or not ids or len(ids) % gpus_per_run:
                raise UserError(f'--devices {devices}: {len(ids)} device(s) do not split into groups of --gpus-per-run '
                                f'{gpus_per_run}')
            self.groups = [ids[i:i + gpus_per_run] for i in range(0, len(ids), gpus_per_run)]
        else:
            self.groups = [None] * jobs
        self.free = queue.Queue()
        for group in self.groups:
            self.free.put(group)

    @contextlib.contextmanager
    def take(self):
        group = self.free.get()
        try:
            yield group
        finally:
            self.free.put(group)


def command(args, devices=None, train=False):
    """``(argv, env)`` that run ``basicsr <args>`` with this very package on ``devices`` (CUDA ids, or None: as the
    environment says); a training on several devices runs under ``torch.distributed.run``, one process each."""
    package_root = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (package_root, os.environ.get('PYTHONPATH')) if p))
    argv = [sys.executable, '-m', 'promptir_basicsr', *args]
    if devices:
        env['CUDA_VISIBLE_DEVICES'] = ','.join(devices)
        if train and len(devices) > 1:
            argv = [sys.executable, '-m', 'torch.distributed.run', '--standalone', f'--nproc_per_node={len(devices)}',
                    '-m', 'promptir_basicsr', *args, '--launcher', 'pytorch']
    return argv, env


def _run_command(args, log_path, devices=None, train=False):
    """Run :func:`command` with its output in ``log_path``: (exit status, seconds)."""
    os.makedirs(osp.dirname(osp.abspath(log_path)), exist_ok=True)
    argv, env = command(args, devices, train)
    start = time.perf_counter()
    with open(log_path, 'w', encoding='utf-8') as log:
        status = subprocess.call(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
    return status, time.perf_counter() - start


def _train(run, logs, slots):
    log_path = osp.join(logs, f'{run.name}_train.log')
    with slots.take() as devices:
        where = f', CUDA devices {",".join(devices)}' if devices else ''
        print(f'training {run.name} ({run.variant.option_file}, seed {run.seed}{where}); output: {log_path}', flush=True)
        status, seconds = _run_command(['train', '-opt', run.variant.option_file, '--force_yml', *run.force_yml()],
                                       log_path, devices, train=True)
    if status != 0 or not osp.isfile(run.weights):
        return f'training {run.name} failed (exit status {status}); see {log_path}'
    record = {'option_file': run.variant.option_file, 'seed': run.seed, 'train_seconds': round(seconds, 1),
              'options_sha256': _sha(run.train_options())}
    atomic_write_text(osp.join(run.experiment, MARKER), json.dumps(record, indent=1))
    print(f'trained {run.name} in {seconds / 60:.1f} min', flush=True)
    return None


def test_options(test_opt, run):
    """The test options of ``run``: the test file with the run's network, model and weights."""
    variant = run.variant
    opt = _plain(test_opt)
    opt['name'] = f'{run.name}_test'
    opt['model_type'] = variant.opt['model_type']
    opt['network_g'] = _plain(variant.network_opt)
    ema = float((variant.opt.get('train') or {}).get('ema_decay') or 0) > 0
    opt['path'] = dict(opt.get('path') or {}, pretrain_network_g=run.weights, strict_load_g=True,
                       param_key_g='params_ema' if ema else 'params')
    opt['val'] = dict(opt.get('val') or {}, table_name=variant.label)
    opt['val'].pop('pad_to_multiple', None)  # each network pads to its own size multiple (AirNet: none)
    return opt


def _test(run, test_opt, logs, slots):
    """``basicsr test`` of a trained run (unless already done with these options and weights); then, for a
    PromptIR with prompt blocks, ``basicsr prompts``. Returns an error message or None."""
    options = test_options(test_opt, run)
    stat = os.stat(run.weights)
    record = {'options_sha256': _sha(options), 'weights_mtime_ns': stat.st_mtime_ns, 'weights_size': stat.st_size}
    marker = _read_json(osp.join(run.results, TEST_MARKER))
    if marker != record or not osp.isfile(osp.join(run.results, 'results_table.json')):
        option_file = osp.join(run.experiment, TEST_OPTION_FILE)
        atomic_write_text(option_file, yaml.safe_dump(options, sort_keys=False))
        log_path = osp.join(logs, f'{run.name}_test.log')
        with slots.take() as devices:
            print(f'testing {run.name}; output: {log_path}', flush=True)
            status, _ = _run_command(['test', '-opt', option_file], log_path, devices[:1] if devices else None)
        if status != 0 or not osp.isfile(osp.join(run.results, 'results_table.json')):
            return f'testing {run.name} failed (exit status {status}); see {log_path}'
        atomic_write_text(osp.join(run.results, TEST_MARKER), json.dumps(record, indent=1))
    return None


def _prompts(run, logs):
    """``(score, error)``: the specialisation score (mean over prompt blocks of I(D; A)/H(D)) of a tested PromptIR
    run from ``basicsr prompts`` (run here, in this process, unless its report exists), or an error message."""
    folder = osp.join(run.results, 'prompts')
    report = osp.join(folder, 'prompts.json')
    if not osp.isfile(report):
        log_path = osp.join(logs, f'{run.name}_prompts.log')
        print(f'recording the prompts of {run.name}; output: {log_path}', flush=True)
        os.makedirs(logs, exist_ok=True)
        try:
            with open(log_path, 'w', encoding='utf-8') as log, contextlib.redirect_stdout(log), \
                    contextlib.redirect_stderr(log):
                prompts_main(['--weights', run.weights, '-opt', osp.join(run.experiment, TEST_OPTION_FILE),
                              '-o', folder])
        except UserError as err:
            return None, f'basicsr prompts for {run.name} failed: {err}'
    scores = [s['normalised'] for s in (_read_json(report) or {}).get('specialisation', {}).values()]
    return (sum(scores) / len(scores) if scores else None), None


def _collect(run, metrics):
    """The run's ``{set: {metric: value}}`` from its results table (the model's row)."""
    table = read_table(run.results)
    row = next(r for r in table['rows'] if not r.get('reference'))
    return table['sets'], {name: {m: row['results'][name].get(m) for m in metrics} for name in row['results']}


def merge_options(base, overrides, where):
    """``base`` with ``overrides`` merged in: mappings key by key, any other value (a list too) replaced. A mapping
    whose ``type`` differs from the base's (another network, optimizer, scheduler) replaces it whole: another class
    reads other keys."""
    if not isinstance(overrides, dict):
        raise UserError(f'{where}: expected a mapping of option overrides, got {overrides!r}')
    merged = dict(base)
    for key, value in overrides.items():
        old = merged.get(key)
        if isinstance(value, dict) and isinstance(old, dict) and value.get('type', old.get('type')) == old.get('type'):
            merged[key] = merge_options(old, value, f'{where}:{key}')
        else:
            merged[key] = value
    return merged


def read_comparison(path, output):
    """``(variants, test option file)`` of a comparison file: each variant's options (its training file plus its
    ``set`` overrides, named after its key) written to ``<output>/options/<name>.yml``, the file it trains from."""
    comparison = read_option_file(path)
    folder = osp.dirname(osp.abspath(path))
    unknown = sorted(set(comparison) - {'train', 'test', 'variants'})
    if unknown or not isinstance(comparison.get('variants'), dict) or not comparison['variants']:
        raise UserError(f'{path}: a comparison file has `train` (the reference training option file), `test` and '
                        f'`variants` (a mapping of run names to {{train, set}}){"; unknown: " + ", ".join(unknown) if unknown else ""}')
    if not comparison.get('test'):
        raise UserError(f'{path}: `test` (the test option file every variant is tested with) is missing')
    variants = []
    for name, spec in comparison['variants'].items():
        spec = spec or {}
        extra = sorted(set(spec) - {'train', 'set'}) if isinstance(spec, dict) else ['(not a mapping)']
        if extra:
            raise UserError(f'{path}: variants:{name}: expected `train` and/or `set`, got {", ".join(extra)}')
        train = spec.get('train') or comparison.get('train')
        if not train:
            raise UserError(f'{path}: variants:{name}: no training option file (`train` of the variant or the file)')
        train = osp.normpath(osp.join(folder, train))
        opt = merge_options(read_option_file(train), spec.get('set') or {}, f'{path}: variants:{name}:set')
        opt['name'] = name
        option_file = osp.join(output, 'options', f'{name}.yml')
        atomic_write_text(option_file, f'# {name}: {train} with the overrides of {path} (written by basicsr ablate)\n'
                          + options_yaml(opt))
        variants.append(option_file)
    return variants, osp.normpath(osp.join(folder, comparison['test']))


def _read_variants(paths, test_opt_path, seeds, forced):
    from ..options.prepare import prepare_run  # the full check loads torch and basicsr: after parsing
    variants = []
    for path in paths:
        variants.append(Variant(path, apply_force_yml(read_option_file(path), forced)))
        # every problem of every file before hours of training (and the demo data, if the file asks for it)
        prepare_run(path, is_train=True, force_yml=Run(variants[-1], seeds[0], forced).force_yml())
    names = [v.name for v in variants]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise UserError(f'option files share the name {", ".join(repeated)}: their runs would be one; give each '
                        'variant its own `name`')
    test_opt = read_option_file(test_opt_path)
    prepare_run(test_opt_path, is_train=False, force_yml=['path:pretrain_network_g=~'])
    return variants, test_opt


def run(args):
    if args.seeds < 1 or args.jobs < 1:
        raise UserError('--seeds and --jobs must be at least 1')
    comparison = len(args.files) == 1 and isinstance(read_option_file(args.files[0]).get('variants'), dict)
    if comparison:
        if args.test_opt:
            raise UserError(f'--test-opt: {args.files[0]} is a comparison file, which names its test option file')
        output = args.output or osp.join('results', 'ablation', osp.splitext(osp.basename(args.files[0]))[0])
        option_files, test_opt_path = read_comparison(args.files[0], output)
    else:
        if not args.test_opt:
            raise UserError('--test-opt is needed with training option files (or give one comparison file)')
        output, option_files, test_opt_path = args.output or osp.join('results', 'ablation'), args.files, args.test_opt
    slots = Slots(args.jobs, args.devices, args.gpus_per_run)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    forced = tuple(args.force_yml)
    variants, test_opt = _read_variants(option_files, test_opt_path, seeds, forced)
    metrics = list(((test_opt.get('val') or {}).get('metrics') or {}).keys())
    if not metrics:
        raise UserError(f'{test_opt_path}: val:metrics is empty; the table needs at least one metric')
    logs = osp.join(output, 'logs')
    # seed by seed, each run tested as soon as it is trained: every variant's first seeds are complete soonest
    runs = [Run(v, s, forced) for s in seeds for v in variants]

    to_train = [r for r in runs if not r.trained()]
    print(f'{len(runs)} runs ({len(variants)} variants x {len(seeds)} seeds {seeds}): {len(runs) - len(to_train)} '
          f'finished before, {len(to_train)} to train', flush=True)

    def train_and_test(run):
        return (None if run.trained() else _train(run, logs, slots)) or _test(run, test_opt, logs, slots)

    with ThreadPoolExecutor(len(slots.groups)) as pool:
        outcomes = list(pool.map(train_and_test, runs))
    failures = [failure for failure in outcomes if failure]
    # only the runs trained and tested with these options and weights: a failed (re)training or test may have left
    # an earlier test's results, which are not this run's
    finished = [run for run, failure in zip(runs, outcomes) if not failure]

    # counting the networks and drawing the chart load torch and matplotlib
    from ..archs.compute_match import network_cost
    from ..visual.ablation_chart import ablation_chart_png
    entries = []
    for variant in variants:
        cost = network_cost(variant.network_opt)
        entry = {'label': variant.label, 'option_file': variant.option_file, 'network': variant.network_opt['type'],
                 'params': cost.params, 'trainable_params': cost.trainable, 'macs': cost.macs, 'sets': [],
                 'runs': []}
        for run in finished:
            if run.variant is not variant:
                continue
            sets, results = _collect(run, metrics)
            entry['sets'] += [s for s in sets if s not in entry['sets']]
            score, error = _prompts(run, logs) if variant.has_prompts() else (None, None)
            failures += [error] if error else []
            entry['runs'].append({'seed': run.seed, 'results': results,
                                  'train_seconds': run.trained()['train_seconds'], 'specialisation': score})
        entries.append(entry)
    table = make_table([e for e in entries if e['runs']], metrics)
    if not table['rows']:
        raise UserError('no run finished: nothing to tabulate\n' + '\n'.join(failures))
    text = write_table(table, output)
    chart = osp.join(output, 'ablation.png')
    atomic_write_bytes(chart, ablation_chart_png(table, title=args.title))
    print(text)
    print(f'wrote {osp.join(output, "ablation.md")}, {osp.join(output, "ablation.json")}, {chart}')
    for failure in failures:
        print(f'error: {failure}', file=sys.stderr)
    return 1 if failures else 0


def main(argv=None):
    return run(build_parser().parse_args(argv))
