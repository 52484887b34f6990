#!/usr/bin/env python
"""Mutation testing of the core modules with mutmut: do the tests fail when the code is changed?

    python scripts/mutation_test.py metrics              # one area (see AREAS below)
    python scripts/mutation_test.py all                  # every area, one after the other
    python scripts/mutation_test.py archs --max-children 1

Not part of CI (an area takes minutes to an hour on 2 CPU cores). Needs mutmut (``pip install
--no-build-isolation -r requirements-mutation.txt -e ".[mutation]"``). Each area runs in its own copy
of the repository's files under ``build/mutation/<area>/`` (git-ignored), whose ``setup.cfg`` asks
mutmut to mutate only that area and to select tests only among those that cover it; the slow end-to-end tests are left out (they run the
command line in subprocesses, which import the installed, unmutated package). The script prints, per
area, the mutants killed and survived and the kill rate, twice: over all mutants, and over the
behaviour mutants, leaving out those that only change the wording of a message, note, log line or
--help text (their strings, or a message replaced by None). It lists the text survivors by name and
the behaviour survivors with their diffs (``cd build/mutation/<area> && mutmut show <name>`` shows
one again). A behaviour survivor is either an equivalent mutant (the change cannot alter behaviour)
or a missing test.
"""
import argparse
import collections
import json
import os
import re
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


# Run inside the work folder: every mutant's status and diff, from mutmut's own records (mutmut 3.8).
_LIST_MUTANTS = """
import json
from mutmut.mutation.diff_apply import get_diff_for_mutant
from mutmut.mutation.data import SourceFileMutationData
from mutmut.stats import status_by_exit_code
from mutmut.utils.file_utils import walk_mutatable_files
out = {}
for path in walk_mutatable_files():
    data = SourceFileMutationData(path=path)
    data.load()
    for name, code in data.exit_code_by_key.items():
        out[name] = [status_by_exit_code[code], get_diff_for_mutant(name, path=path)]
print(json.dumps(out))
"""

_STRING = re.compile(r"""[rbfRBF]{0,2}("([^"\\\n]|\\.)*"|'([^'\\\n]|\\.)*')""")
_MESSAGE_STATEMENT = re.compile(r'^\s*(raise |log\(|logger\.|get_root_logger\(\)\.|print\(|notes\.append\(|'
                                r'parser\.error\(|warnings\.warn\()')
_HELP_ARGUMENT = re.compile(r'\b(help|description|epilog|metavar|prog)=(S|None|prog),?')


def is_text_mutant(diff):
    """True when a mutant only changes wording: inside string literals, in a message statement, or in
    an argparse help/description/metavar/prog argument."""
    old = [line[1:] for line in diff.splitlines() if line.startswith('-') and not line.startswith('---')]
    new = [line[1:] for line in diff.splitlines() if line.startswith('+') and not line.startswith('+++')]
    if not old:
        return False
    if [_STRING.sub('S', line) for line in old] == [_STRING.sub('S', line) for line in new]:
        return True
    if _MESSAGE_STATEMENT.match(old[0]):
        return True

    def without_help(lines):
        text = re.sub(r'S(\s*S)+', 'S', _STRING.sub('S', ' '.join(lines)))  # implicit concatenation
        return re.sub(r'\s', '', _HELP_ARGUMENT.sub('', text))

    return without_help(old) == without_help(new)


def run_area(area, max_children):
    work = prepare(area)
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}  # mutmut puts mutants/ on sys.path itself
    env.setdefault('OMP_NUM_THREADS', '1')
    cmd = [sys.executable, '-m', 'mutmut', 'run'] + (['--max-children', str(max_children)] if max_children else [])
    subprocess.run(cmd, cwd=work, env=env, check=False)
    return work, load_results(work, env)


def load_results(work, env=None):
    """{mutant name: (status, diff)} of a finished run in ``work``."""
    env = env or {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    listing = subprocess.run([sys.executable, '-c', _LIST_MUTANTS], cwd=work, env=env, capture_output=True,
                             text=True, check=True).stdout
    return {name: tuple(value) for name, value in json.loads(listing).items()}


def _rate(counts):
    judged = counts['killed'] + counts['survived']
    return f'{100 * counts["killed"] / judged:.1f}%' if judged else 'n/a'


def report(area, work, results):
    counts = collections.Counter(status for status, _ in results.values())
    behaviour = collections.Counter(status for status, diff in results.values() if not is_text_mutant(diff))
    other = {k: v for k, v in counts.items() if k not in ('killed', 'survived')}
    print(f'\n== {area}: {len(results)} mutants, killed {counts["killed"]}, survived {counts["survived"]}'
          f'{f", other {other}" if other else ""}; kill rate {_rate(counts)}')
    print(f'   behaviour mutants (not message/help wording): {sum(behaviour.values())}, killed {behaviour["killed"]}, '
          f'survived {behaviour["survived"]}; kill rate {_rate(behaviour)}')
    text = sorted(n for n, (s, d) in results.items() if s == 'survived' and is_text_mutant(d))
    print(f'   surviving wording mutants ({len(text)}): {", ".join(n.rsplit(".", 1)[-1] for n in text)}')
    for name, (status, diff) in sorted(results.items()):
        if status != 'killed' and name not in text:
            print(f'   -- {status}: {name}')
            print('\n'.join('      ' + line for line in diff.splitlines() if line[:1] in '+-' and line[:3] not in
                            ('---', '+++')))
    print(f'   inspect: cd {os.path.relpath(work, os.getcwd())} && mutmut show <name>')
    return counts


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('area', choices=sorted(AREAS) + ['all'])
    parser.add_argument('--max-children', type=int, default=None,
                        help='parallel mutant runs (default: mutmut\'s, the number of CPUs)')
    parser.add_argument('--report-only', action='store_true',
                        help='print the report of the last run in build/mutation/<area>/ without running again')
    args = parser.parse_args(argv)
    for area in sorted(AREAS) if args.area == 'all' else [args.area]:
        if args.report_only:
            work = os.path.join(REPO, 'build', 'mutation', area)
            report(area, work, load_results(work))
        else:
            report(area, *run_area(area, args.max_children))
    return 0


if __name__ == '__main__':
    sys.exit(main())
