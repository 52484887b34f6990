#!/usr/bin/env python
"""A Restormer with the parameters and GMACs of a PromptIR: a small search, the candidates printed.

    python scripts/match_compute.py                                        # the official PromptIR
    python scripts/match_compute.py --opt options/demo/promptir_demo.yml   # the demo's tiny PromptIR

Parameters within 3 % and GMACs at 256x256 within 5 % by default (--param-tol, --mac-tol); see
promptir_basicsr/archs/compute_match.py for the space and the ranking.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from promptir_basicsr.archs.compute_match import (DEFAULT_MAC_TOL, DEFAULT_PARAM_TOL, format_report,  # noqa: E402
                                                  search)
from promptir_basicsr.errors import UserError, run_command  # noqa: E402
from promptir_basicsr.options.files import read_option_file  # noqa: E402


def main(argv=None, prog='match_compute.py'):
    parser = argparse.ArgumentParser(prog=prog, description='Search Restormer configurations with the parameters '
                                     'and GMACs of a PromptIR (a compute-matched baseline).')
    parser.add_argument('--opt', metavar='X.yml', help="an option file whose network_g is the target PromptIR "
                        '(default: the official PromptIR)')
    parser.add_argument('--size', type=int, default=256, help='input size for the GMACs (default 256)')
    parser.add_argument('--param-tol', type=float, default=DEFAULT_PARAM_TOL, help='relative (default 0.03)')
    parser.add_argument('--mac-tol', type=float, default=DEFAULT_MAC_TOL, help='relative (default 0.05)')
    parser.add_argument('--top', type=int, default=10, help='candidates to print (default 10)')
    args = parser.parse_args(argv)
    target_opt = {'type': 'PromptIR'}
    if args.opt:
        target_opt = dict(read_option_file(args.opt).get('network_g') or {})
        if target_opt.get('type') != 'PromptIR':
            raise UserError(f'{args.opt}: network_g must be a PromptIR (the network to match), got '
                            f'{target_opt.get("type")!r}')
    target, baseline, candidates = search(target_opt, args.size, args.param_tol, args.mac_tol, args.top)
    print(format_report(target_opt, target, baseline, candidates, args.size, args.param_tol, args.mac_tol))
    return 0


if __name__ == '__main__':
    sys.exit(run_command('match_compute.py', main, sys.argv[1:]))

