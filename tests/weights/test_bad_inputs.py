"""Weights that do not fit what was asked: one clear line from restore, convert and export, and nothing written."""
import cv2
import numpy as np
import pytest
import torch
from basicsr.archs import build_network
from cli_helpers import run_cli

TINY_ADAIR = {'type': 'AdaIR', 'dim': 8, 'num_blocks': [1, 1, 1, 1], 'num_refinement_blocks': 1, 'heads': [1, 1, 1, 1]}
TINY_MOCE_S = {'type': 'MoCEIR', 'dim': 8, 'num_blocks': [1, 1, 1, 1], 'num_dec_blocks': [1, 1, 1],
               'num_refinement_blocks': 1, 'heads': [1, 1, 1, 1]}


def _lightning(opt, path):
    torch.manual_seed(0)
    state = build_network(dict(opt)).state_dict()
    torch.save({'state_dict': {f'net.{k}': v for k, v in state.items()}, 'epoch': 1}, path)


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp('bad')
    _lightning(TINY_ADAIR, root / 'adair.ckpt')
    _lightning(TINY_MOCE_S, root / 'moce_s.ckpt')
    data = (root / 'adair.ckpt').read_bytes()
    (root / 'truncated.ckpt').write_bytes(data[:len(data) // 2])
    cv2.imwrite(str(root / 'x.png'), (np.random.default_rng(0).random((20, 20, 3)) * 255).astype(np.uint8))
    return root


def _one_line_error(proc, prog):
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith(f'basicsr {prog}: error: '), proc.stderr
    return lines[0]


CASES = [
    # an AdaIR checkpoint given --arch MoCEIR: the architecture told from its keys, not a list of 1000 keys
    (['--weights', 'adair.ckpt', '--arch', 'MoCEIR'], 'these are AdaIR weights (told from their keys), not MoCEIR: '
     'leave out --arch'),
    # a small MoCE-IR checkpoint (dim 8 here, as MoCE-IR-S's 32) with the big one's width
    (['--weights', 'moce_s.ckpt', '--arch-opt', 'dim=48'], 'these MoCEIR weights have dim=8 (read from their shapes), '
     'but the options given ask dim=48'),
    (['--weights', 'truncated.ckpt'], 'truncated.ckpt'),
]


@pytest.mark.parametrize('flags, expected', CASES, ids=['arch', 'options', 'truncated'])
def test_restore_export_and_convert_say_it_in_one_line_and_write_nothing(files, flags, expected):
    restore = run_cli(['restore', '-i', 'x.png', '-o', 'out', *flags], cwd=files, check=False)
    assert expected in _one_line_error(restore, 'restore')
    export = run_cli(['export', *flags, '-o', 'x.safetensors'], cwd=files, check=False)
    assert expected in _one_line_error(export, 'export')
    weights, rest = flags[1], flags[2:]
    convert = run_cli(['convert', weights, 'x.pth', *rest], cwd=files, check=False)
    assert expected.replace('--weights ', '') in convert.stderr.strip().splitlines()[-1]
    assert convert.returncode == 2 and 'Traceback' not in convert.stderr
    assert not (files / 'out').exists() and not (files / 'x.safetensors').exists() and not (files / 'x.pth').exists()
