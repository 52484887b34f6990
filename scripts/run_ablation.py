#!/usr/bin/env python
"""An ablation from option files (the same as `basicsr ablate`): train each over seeds (reusing finished runs),
test each with one test option file, write one comparison table (Markdown + JSON) and one bar chart.

    python scripts/run_ablation.py A.yml B.yml ... --test-opt TEST.yml [--seeds 2] [-o results/ablation] [--jobs 1]

See promptir_basicsr/commands/ablate.py.
"""
import os.path as osp
import sys

if __name__ == '__main__':
    sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
    from promptir_basicsr.commands.ablate import main
    from promptir_basicsr.errors import run_command
    sys.exit(run_command('run_ablation.py', lambda argv: main(argv, prog='run_ablation.py'), sys.argv[1:]))
