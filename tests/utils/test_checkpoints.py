"""Conversion of official checkpoints (synthetic, built from the official key lists) to basicsr files.

Each official format is written exactly as its release ships it (PromptIR: Lightning dict with
'net.' keys and training entries; AirNet: plain state dict with its MoCo queue; Restormer:
{'params': ...}); the converted file must load through basicsr's build_network with strict=True.
"""
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from basicsr.archs import build_network
from basicsr.models.base_model import BaseModel
from official_keys import official_key_shapes

from promptir_basicsr.utils.checkpoints import (CheckpointError, _resize_queue, convert_checkpoint,
                                                convert_main)

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY_RESTORMER = dict(dim=8, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1, heads=[1, 1, 2, 2])


def official_state_dict(name, seed=0):
    """Random tensors with every official key and shape of ``<name>_official.tsv``."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in official_key_shapes(name).items():
        if key.endswith(('num_batches_tracked', 'queue_ptr')):
            state[key] = torch.zeros(shape, dtype=torch.long)
        else:
            state[key] = torch.randn(shape, generator=gen)
    return state


def load_strict(path, arch, **opt):
    """What basicsr does with network_g + path.pretrain_network_g + strict_load_g: true."""
    net = build_network(dict(type=arch, **opt))
    BaseModel({'num_gpu': 0, 'is_train': False}).load_network(net, str(path), strict=True, param_key='params')
    return net


def quiet(*args, **kwargs):
    pass


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


def assert_same_weights(net, state_dict):
    ours = net.state_dict()
    for key, value in state_dict.items():
        assert torch.equal(ours[key], value), key


def test_promptir_lightning_checkpoint(tmp_path):
    state = official_state_dict('promptir')
    src, out = tmp_path / 'model.ckpt', tmp_path / 'promptir.pth'
    torch.save(lightning_checkpoint(state), src)
    report = convert_checkpoint(src, out, arch='PromptIR', log=quiet)
    assert report['source'].startswith('Lightning')
    assert any("'net.'" in note for note in report['notes'])
    assert_same_weights(load_strict(out, 'PromptIR'), state)


def test_airnet_plain_state_dict_any_queue_size(tmp_path):
    state = official_state_dict('airnet')
    src = tmp_path / 'All.pth'
    torch.save(state, src)
    convert_checkpoint(src, tmp_path / 'same.pth', arch='AirNet', log=quiet)
    assert_same_weights(load_strict(tmp_path / 'same.pth', 'AirNet'), state)

    notes = []
    report = convert_checkpoint(src, tmp_path / 'bigger.pth', arch='AirNet', arch_opt={'queue_size': 2560},
                                log=notes.append)
    net = load_strict(tmp_path / 'bigger.pth', 'AirNet', queue_size=2560)
    assert net.E.E.queue.shape == (256, 2560)
    assert torch.equal(net.E.E.queue[:, 1280:], state['E.E.queue'])  # ptr 0: already in age order
    assert any('queue resized' in note for note in report['notes'])
    assert any('queue resized' in line for line in notes)  # printed, not only returned
    assert_same_weights(net, {k: v for k, v in state.items() if 'queue' not in k})


def test_queue_resize_keeps_newest_keys():
    queue = torch.arange(6.0).view(1, 6)  # written in order 0..5, then 6, 7 overwrote slots 0, 1
    queue[0, :2] = torch.tensor([6.0, 7.0])
    smaller, ptr = _resize_queue(queue, 2, torch.zeros(1, 4))
    assert smaller.tolist() == [[4.0, 5.0, 6.0, 7.0]] and int(ptr) == 0
    larger, _ = _resize_queue(queue, 2, torch.full((1, 8), -1.0))
    assert larger.tolist() == [[-1.0, -1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]]


def test_restormer_params(tmp_path):
    state = official_state_dict('restormer')
    src = tmp_path / 'deraining.pth'
    torch.save({'params': state}, src)
    convert_checkpoint(src, tmp_path / 'restormer.pth', arch='Restormer', log=quiet)
    assert_same_weights(load_strict(tmp_path / 'restormer.pth', 'Restormer'), state)


def test_params_ema_and_module_prefix(tmp_path):
    torch.manual_seed(0)
    params = build_network(dict(type='Restormer', **TINY_RESTORMER)).state_dict()
    ema = {k: v + 1 if v.is_floating_point() else v for k, v in params.items()}
    src = tmp_path / 'net_g_latest.pth'
    torch.save({'params': {f'module.{k}': v for k, v in params.items()}, 'params_ema': ema}, src)
    report = convert_checkpoint(src, tmp_path / 'p.pth', arch='Restormer', arch_opt=TINY_RESTORMER, log=quiet)
    assert any('params_ema' in note for note in report['notes'])
    assert_same_weights(load_strict(tmp_path / 'p.pth', 'Restormer', **TINY_RESTORMER), params)
    convert_checkpoint(src, tmp_path / 'e.pth', arch='Restormer', arch_opt=TINY_RESTORMER, param_key='params_ema',
                       log=quiet)
    assert_same_weights(load_strict(tmp_path / 'e.pth', 'Restormer', **TINY_RESTORMER), ema)
    # an already converted file converts to the same weights again
    convert_checkpoint(tmp_path / 'e.pth', tmp_path / 'again.pth', arch='Restormer', arch_opt=TINY_RESTORMER,
                       log=quiet)
    assert_same_weights(load_strict(tmp_path / 'again.pth', 'Restormer', **TINY_RESTORMER), ema)


def test_arch_detected_from_keys(tmp_path):
    torch.manual_seed(0)
    tiny = dict(n_feats=8, n_groups=1, n_blocks=1, encoder_widths=[8, 16], moco_dim=8, queue_size=12)
    torch.save(build_network(dict(type='AirNet', **tiny)).state_dict(), tmp_path / 'a.pth')
    notes = []
    convert_checkpoint(tmp_path / 'a.pth', tmp_path / 'b.pth', arch_opt=tiny, log=notes.append)
    assert 'architecture (detected from the keys): AirNet' in notes


def test_mismatch_is_refused_listing_keys_unless_allowed(tmp_path):
    torch.manual_seed(0)
    state = build_network(dict(type='Restormer', **TINY_RESTORMER)).state_dict()
    del state['output.weight']
    state['patch_embed.proj.weight'] = torch.zeros(9, 3, 3, 3)
    state['extra.weight'] = torch.zeros(1)
    src, out = tmp_path / 'bad.pth', tmp_path / 'out.pth'
    torch.save({'params': state}, src)
    with pytest.raises(CheckpointError) as err:
        convert_checkpoint(src, out, arch='Restormer', arch_opt=TINY_RESTORMER, log=quiet)
    message = str(err.value)
    for key in ('output.weight', 'patch_embed.proj.weight', 'extra.weight', '--allow-mismatch'):
        assert key in message
    assert not out.exists()
    report = convert_checkpoint(src, out, arch='Restormer', arch_opt=TINY_RESTORMER, allow_mismatch=True, log=quiet)
    assert report['missing'] == ['output.weight'] and report['unexpected'] == ['extra.weight']
    net = load_strict(out, 'Restormer', **TINY_RESTORMER)
    assert torch.equal(net.state_dict()['encoder_level1.0.attn.qkv.weight'], state['encoder_level1.0.attn.qkv.weight'])


class NotPlainData:
    pass


def test_pickled_objects_are_refused_with_the_globals_named(tmp_path):
    src = tmp_path / 'unsafe.ckpt'
    torch.save({'state_dict': {'net.a': torch.zeros(1)}, 'hyper_parameters': NotPlainData()}, src)
    with pytest.raises(CheckpointError, match='NotPlainData'):
        convert_checkpoint(src, tmp_path / 'out.pth', arch='Restormer', log=quiet)


def test_cli_end_to_end(tmp_path):
    torch.manual_seed(0)
    state = build_network(dict(type='Restormer', **TINY_RESTORMER)).state_dict()
    src, out = tmp_path / 'tiny.pth', tmp_path / 'tiny_converted.pth'
    torch.save({'params': state}, src)
    opts = ['--arch-opt', 'dim=8', '--arch-opt', 'num_blocks=[1,1,1,1]', '--arch-opt', 'num_refinement_blocks=1',
            '--arch-opt', 'heads=[1,1,2,2]']
    proc = subprocess.run([sys.executable, '-m', 'promptir_basicsr', 'convert', '--arch', 'Restormer', *opts,
                           str(src), str(out)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert 'strict=True' in proc.stdout
    assert_same_weights(load_strict(out, 'Restormer', **TINY_RESTORMER), state)
    # the script shares the parser; a mismatch (wrong dim) is a user error: one line, exit 2, the keys listed
    proc = subprocess.run([sys.executable, str(REPO_ROOT / 'scripts' / 'convert_checkpoint.py'), '--arch',
                           'Restormer', *opts[2:], '--arch-opt', 'dim=16', str(src), str(tmp_path / 'no.pth')],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 2 and 'patch_embed.proj.weight' in proc.stderr and 'Traceback' not in proc.stderr
    assert proc.stderr.startswith('convert_checkpoint.py: error: ')
    assert not (tmp_path / 'no.pth').exists()


def test_convert_main_usage_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        convert_main(['in.pth', 'out.pth', '--arch-opt', 'no-equals-sign'])
    assert exit_info.value.code == 2
    # a missing input is a user error (cli.main prints it in one line, exit 2), not a traceback
    with pytest.raises(CheckpointError, match='Checkpoint not found: .*missing.pth$'):
        convert_main([str(tmp_path / 'missing.pth'), str(tmp_path / 'o.pth'), '--arch', 'Restormer'])


def test_convert_main_takes_the_network_from_an_option_file(tmp_path, capsys):
    import yaml

    torch.manual_seed(0)
    tiny = dict(TINY_RESTORMER, LayerNorm_type='BiasFree')
    state = build_network(dict(type='Restormer', **tiny)).state_dict()
    torch.save({'params': state}, tmp_path / 'in.pth')
    (tmp_path / 'train.yml').write_text(yaml.safe_dump({'network_g': dict(type='Restormer', **tiny)}))
    assert convert_main([str(tmp_path / 'in.pth'), str(tmp_path / 'out.pth'), '--opt', str(tmp_path / 'train.yml')]) == 0
    assert 'strict=True' in capsys.readouterr().out
    assert_same_weights(load_strict(tmp_path / 'out.pth', 'Restormer', **tiny), state)
