#!/usr/bin/env python
"""How fast the ``basicsr`` command answers: ``--help``, each subcommand's ``--help``, and option-file mistakes.

Each command runs as a fresh process (``python -m promptir_basicsr ...``, what the console script runs) ``--repeats``
times; the table gives the wall time's best, median and worst, and the exit status. The option mistakes are made in
a temporary copy of ``options/demo/promptir_demo.yml``: a misspelt basicsr key, architecture option and dataset key
and a key a model declares (``train: grad_checkpoint``), all found by the check that needs no torch; and an optimizer
that does not exist (``optim_g: type: AdamQ``), found by the full check, which loads torch, basicsr, the models and
the datasets.

    python scripts/benchmark_cli.py                  # 5 repeats
    python scripts/benchmark_cli.py --repeats 3

Not a test: times depend on the machine, its load and its disk cache (the first run of a command reads the files
from disk), so the table is headed by the CPU and the load average at the start.
"""
import argparse
import os
import os.path as osp
import statistics
import subprocess
import sys
import tempfile
import time

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO)


def cpu_name():
    try:
        with open('/proc/cpuinfo', encoding='utf-8') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return 'unknown CPU'


def load_average():
    try:
        return os.getloadavg()[0]
    except OSError:
        return float('nan')


def typo_files(folder):
    """Copies of the demo option file, each with one mistake: a misspelt key of basicsr's, the architecture's, the
    dataset's, a model's; an optimizer that does not exist."""
    with open(osp.join(REPO, 'options', 'demo', 'promptir_demo.yml'), encoding='utf-8') as f:
        text = f.read()
    files = {}
    for name, old, new in (('basicsr_key.yml', '  print_freq:', '  print_frq:'),
                           ('network_key.yml', '  prompt_len:', '  prompt_lenght:'),
                           ('dataset_key.yml', '    gt_size:', '    gt_sise:'),
                           ('model_key.yml', '  total_iter: 500', '  grad_chekpoint: true\n  total_iter: 500'),
                           ('optimizer.yml', '    type: AdamW', '    type: AdamQ')):
        assert old in text, old
        path = osp.join(folder, name)
        with open(path, 'w', encoding='utf-8') as f:
            f.write(text.replace(old, new, 1))
        files[name] = path
    return files


def commands(files):
    from promptir_basicsr.cli import subcommands
    rows = [('basicsr --help', ['--help'])]
    rows += [(f'basicsr {name} --help', [name, '--help']) for name in subcommands()]
    rows += [('train, typo in a basicsr key (logger:print_frq)', ['train', '-opt', files['basicsr_key.yml']]),
             ('train, typo in an architecture option (network_g:prompt_lenght)',
              ['train', '-opt', files['network_key.yml']]),
             ('train, typo in a dataset key (datasets:train:gt_sise)', ['train', '-opt', files['dataset_key.yml']]),
             ('train, typo in a model key (train:grad_chekpoint)', ['train', '-opt', files['model_key.yml']]),
             ('train, no such optimizer (train:optim_g:type AdamQ; the full check)',
              ['train', '-opt', files['optimizer.yml']])]
    return rows


def time_command(args, cwd):
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, '-m', 'promptir_basicsr', *args], cwd=cwd, capture_output=True, text=True)
    return time.perf_counter() - start, proc.returncode


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--repeats', type=int, default=5, help='runs of each command (default 5)')
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        rows = commands(typo_files(folder))
        print(f'{cpu_name()}, {os.cpu_count()} cores; load average {load_average():.1f} at the start; '
              f'{args.repeats} runs each, wall seconds')
        print()
        print('| command | best | median | worst | exit status |')
        print('|---|:---:|:---:|:---:|:---:|')
        for label, command in rows:
            times, statuses = [], set()
            for _ in range(args.repeats):
                seconds, status = time_command(command, folder)
                times.append(seconds)
                statuses.add(status)
            print(f'| `{label}` | {min(times):.2f} | {statistics.median(times):.2f} | {max(times):.2f} | '
                  f'{", ".join(map(str, sorted(statuses)))} |')
    return 0


if __name__ == '__main__':
    sys.exit(main())
