"""``basicsr table``: the results tables of several ``basicsr test`` runs merged into one (the paper's Table 1
layout: one row per model, one column per test set and metric, and the average)."""
import argparse

from ..utils.results_table import merge_tables, read_table, to_markdown, write_table
from . import arguments

HELP = "merge the results tables of several `basicsr test` runs (the paper's Table 1 layout)"


def build_parser(prog='basicsr table'):
    parser = argparse.ArgumentParser(prog=prog, description='Merge results tables of `basicsr test` runs into one table.',
                                     epilog='example: %(prog)s results/promptir_demo_test results/restormer_demo_test')
    parser.add_argument('folders', nargs='+', help='results folders (results/<name>) or results_table.json files')
    arguments.add_output_argument(parser, 'folder to write the merged results_table.{md,json} (default: print only)')
    return parser


def run(args):
    table = merge_tables([read_table(p) for p in args.folders])
    text = write_table(table, args.output) if args.output else to_markdown(table)
    print(text)
    return 0


def main(argv=None):
    return run(build_parser().parse_args(argv))
