#!/usr/bin/env python
"""A Restormer with the parameters and GMACs of a PromptIR: a small search, the candidates printed.

    python scripts/match_compute.py                                        # the official PromptIR
    python scripts/match_compute.py --opt options/demo/promptir_demo.yml   # the demo's tiny PromptIR

Parameters within 3 % and GMACs at 256x256 within 5 % by default (--param-tol, --mac-tol); see
promptir_basicsr/utils/compute_match.py for the space and the ranking.
"""
import os.path as osp
import sys

if __name__ == '__main__':
    sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
    from promptir_basicsr.errors import run_command
    from promptir_basicsr.utils.compute_match import main
    sys.exit(run_command('match_compute.py', main, sys.argv[1:]))
