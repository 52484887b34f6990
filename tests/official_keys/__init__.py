"""The official state-dict key lists (``<name>_official.tsv``: key TAB shape) of this folder, and the
official checkpoint containers."""
import ast
from pathlib import Path

import torch

KEYS_DIR = Path(__file__).resolve().parent


def official_key_shapes(name):
    """{key: shape tuple} of ``<name>_official.tsv``, in file order (name: promptir, restormer, airnet, adair)."""
    keys = {}
    for line in (KEYS_DIR / f'{name}_official.tsv').read_text().splitlines():
        if line.strip():
            key, shape = line.split('\t')
            keys[key] = tuple(ast.literal_eval(shape))
    return keys


def lightning_checkpoint(state_dict):
    """A Lightning 2 checkpoint as trainer.save_checkpoint writes it (plain entries only)."""
    return {
        'epoch': 119, 'global_step': 534000, 'pytorch-lightning_version': '2.0.1',
        'state_dict': {f'net.{k}': v for k, v in state_dict.items()},
        'loops': {'fit_loop': {'state_dict': {}, 'epoch_progress': {'total': {'ready': 120, 'completed': 119}}}},
        'callbacks': {"ModelCheckpoint{'monitor': None, 'mode': 'min'}": {
            'best_model_score': None, 'dirpath': '/ckpt', 'last_model_path': '/ckpt/last.ckpt'}},
        'optimizer_states': [{'state': {0: {'step': torch.tensor(5.0), 'exp_avg': torch.zeros(3)}},
                              'param_groups': [{'lr': 2e-4, 'betas': (0.9, 0.999), 'weight_decay': 0.01,
                                                'amsgrad': False, 'params': [0]}]}],
        'lr_schedulers': [{'warmup_epochs': 15, 'max_epochs': 150, 'base_lrs': [2e-4], 'last_epoch': 119}],
        'hparams_name': 'kwargs', 'hyper_parameters': {},
    }
