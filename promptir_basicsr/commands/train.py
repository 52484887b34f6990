"""``basicsr train -opt X.yml``: basicsr's training pipeline (its loop, logger, resume, DDP), our checks first."""
from . import _pipeline

HELP = 'train a model from an option file (basicsr flags)'


def build_parser(prog='basicsr train'):
    return _pipeline.build_parser(prog, 'Train with basicsr.train.train_pipeline (root: current directory).')


def run(args):
    return _pipeline.run_pipeline(args, is_train=True)
