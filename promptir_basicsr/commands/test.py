"""``basicsr test -opt T.yml``: basicsr's test pipeline (per-set metrics, results table), our checks first."""
from . import _pipeline

HELP = 'test a model from an option file (basicsr flags)'


def build_parser(prog='basicsr test'):
    return _pipeline.build_parser(prog, 'Test with basicsr.test.test_pipeline (root: current directory).')


def run(args):
    return _pipeline.run_pipeline(args, is_train=False)
