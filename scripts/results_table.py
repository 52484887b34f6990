#!/usr/bin/env python
"""Merge the results tables of several `basicsr test` runs into one (the paper's Table 1 layout).

    python scripts/results_table.py results/promptir_allinone_test results/airnet_allinone_test [--out results/table]

Each argument is a results folder (holding results_table.json) or a results_table.json file. Prints
the Markdown table; with --out also writes results_table.md and results_table.json there.
"""
import os.path as osp
import sys

if __name__ == '__main__':
    sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
    from promptir_basicsr.errors import run_command
    from promptir_basicsr.utils.results_table import main
    sys.exit(run_command('results_table.py', main, sys.argv[1:]))
