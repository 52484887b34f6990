#!/usr/bin/env python
"""Mutation testing of the core modules with mutmut: do the tests fail when the code is changed?

    python scripts/mutation_test.py metrics              # one area (see AREAS below)
    python scripts/mutation_test.py all                  # every area, one after the other
    python scripts/mutation_test.py archs --max-children 1

Not part of CI (an area takes minutes to an hour on 2 CPU cores). Needs mutmut (``pip install -e
".[mutation]"``). Each area runs in its own copy of the repository's files under
``build/mutation/<area>/`` (git-ignored), whose ``setup.cfg`` asks mutmut to mutate only that area and
to select tests only among those that cover it; the slow end-to-end tests are left out (they run the
command line in subprocesses, which import the installed, unmutated package). The script prints, per
area, the mutants killed and survived and the kill rate, and lists the survivors; look at one with
``cd build/mutation/<area> && mutmut show <name>``. A survivor is either an equivalent mutant (the
change cannot alter behaviour) or a missing test.
"""
import argparse
import collections
import os
import shutil
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# area -> (files to mutate, as mutmut's only_mutate globs; the tests that may cover them)
AREAS = {
    'archs': (['promptir_basicsr/archs/*'], ['tests/archs']),
    'degradations': (['promptir_basicsr/data/degradations/*'], ['tests/data/test_degradations.py',
                                                                'tests/data/test_all_in_one_dataset.py']),
    'dataset': (['promptir_basicsr/data/all_in_one_dataset.py'], ['tests/data/test_all_in_one_dataset.py',
                                                                  'tests/data/test_errors.py']),
    'checkpoints': (['promptir_basicsr/utils/checkpoints.py'], ['tests/utils/test_checkpoints.py',
                                                               'tests/utils/test_checkpoint_safety.py']),
    'metrics': (['promptir_basicsr/metrics/*'], ['tests/metrics']),
}


def _lines(key, values):
    return f'{key} =\n' + ''.join(f'    {v}\n' for v in values)


def prepare(area):
    """A fresh copy of the repository's files (tracked and new, not ignored) with the area's setup.cfg."""
    mutate, tests = AREAS[area]
    work = os.path.join(REPO, 'build', 'mutation', area)
    if os.path.exists(work):
        shutil.rmtree(work)
    files = subprocess.run(['git', 'ls-files', '--cached', '--others', '--exclude-standard'], cwd=REPO, check=True,
                           capture_output=True, text=True).stdout.split()
    for rel in files:
        if os.path.isfile(os.path.join(REPO, rel)):
            os.makedirs(os.path.dirname(os.path.join(work, rel)) or work, exist_ok=True)
            shutil.copy2(os.path.join(REPO, rel), os.path.join(work, rel))
    config = ('[mutmut]\nsource_paths = promptir_basicsr\n' + _lines('only_mutate', mutate)
              + _lines('also_copy', ['pytest.ini', 'options', 'scripts'])
              + _lines('pytest_add_cli_args_test_selection', tests)
              + _lines('pytest_add_cli_args', ['-m', 'not slow', '-p', 'no:cacheprovider']))
    with open(os.path.join(work, 'setup.cfg'), 'w', encoding='utf-8') as f:
        f.write(config)
    return work


def run_area(area, max_children):
    work = prepare(area)
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}  # mutmut puts mutants/ on sys.path itself
    env.setdefault('OMP_NUM_THREADS', '1')
    cmd = [sys.executable, '-m', 'mutmut', 'run'] + (['--max-children', str(max_children)] if max_children else [])
    subprocess.run(cmd, cwd=work, env=env, check=False)
    listing = subprocess.run([sys.executable, '-m', 'mutmut', 'results', '--all', 'true'], cwd=work, env=env,
                             capture_output=True, text=True, check=True).stdout
    status = {}
    for line in listing.splitlines():
        name, sep, result = line.strip().rpartition(': ')
        if sep:
            status[name] = result
    return work, status


def report(area, work, status):
    counts = collections.Counter(status.values())
    judged = counts['killed'] + counts['survived']
    rate = f'{100 * counts["killed"] / judged:.1f}%' if judged else 'n/a'
    print(f'\n== {area}: {len(status)} mutants, killed {counts["killed"]}, survived {counts["survived"]}, '
          f'other {dict((k, v) for k, v in counts.items() if k not in ("killed", "survived"))}; '
          f'kill rate {rate} (killed / (killed + survived))')
    for name in sorted(n for n, s in status.items() if s != 'killed'):
        print(f'   {status[name]:>10}  {name}')
    print(f'   inspect: cd {os.path.relpath(work, os.getcwd())} && mutmut show <name>')
    return counts


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('area', choices=sorted(AREAS) + ['all'])
    parser.add_argument('--max-children', type=int, default=None,
                        help='parallel mutant runs (default: mutmut\'s, the number of CPUs)')
    args = parser.parse_args(argv)
    for area in sorted(AREAS) if args.area == 'all' else [args.area]:
        work, status = run_area(area, args.max_children)
        report(area, work, status)
    return 0


if __name__ == '__main__':
    sys.exit(main())
