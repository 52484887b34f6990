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
from official_keys import lightning_checkpoint, official_key_shapes

from promptir_basicsr.archs.airnet_arch import _resize_queue, adapt_moco_queues
from promptir_basicsr.commands.arguments import parse_arch_opt as _parse_arch_opt
from promptir_basicsr.commands.convert import main as convert_main
from promptir_basicsr.errors import CheckpointError, UserError
from promptir_basicsr.weights.convert import convert_checkpoint
from promptir_basicsr.weights.state_dict import extract_state_dict, format_differences

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY_RESTORMER = dict(dim=8, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1, heads=[1, 1, 2, 2])


def small_random(shape, gen):
    """A random tensor of ``shape`` whose elements share a small storage: strides 1, 3, 7, 11, 13 from the last
    dimension on, so neighbours differ along every dimension (a transpose still shows) while the file of an
    official-size network stays small (the 35M-parameter PromptIR: 9 MB instead of 142 MB)."""
    strides = (13, 11, 7, 3, 1)[-len(shape):] if shape else ()
    storage = torch.randn(sum((n - 1) * st for n, st in zip(shape, strides)) + 1, generator=gen)
    return storage.as_strided(shape, strides)


def official_state_dict(name, seed=0):
    """Random tensors with every official key and shape of ``<name>_official.tsv`` (:func:`small_random`)."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in official_key_shapes(name).items():
        if key.endswith(('num_batches_tracked', 'queue_ptr')):
            state[key] = torch.zeros(shape, dtype=torch.long)
        else:
            state[key] = small_random(shape, gen)
    return state


def load_strict(path, arch, **opt):
    """What basicsr does with network_g + path.pretrain_network_g + strict_load_g: true."""
    net = build_network(dict(type=arch, **opt))
    BaseModel({'num_gpu': 0, 'is_train': False}).load_network(net, str(path), strict=True, param_key='params')
    return net


def quiet(*args, **kwargs):
    pass


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
    # a mismatch (wrong dim) is a user error: one line, exit 2, naming the weights' value and the one asked for
    proc = subprocess.run([sys.executable, '-m', 'promptir_basicsr', 'convert', '--arch',
                           'Restormer', *opts[2:], '--arch-opt', 'dim=16', str(src), str(tmp_path / 'no.pth')],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 2 and 'Traceback' not in proc.stderr and len(proc.stderr.splitlines()) == 1
    assert 'have dim=8' in proc.stderr and 'ask dim=16' in proc.stderr
    assert proc.stderr.startswith('basicsr convert: error: ')
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


# ---- details that mutation testing (scripts/mutation_test.py checkpoints) found untested -------------
def test_extract_state_dict_refuses_what_holds_no_weights():
    """Guards each refusal of extract_state_dict, with the entries it lists."""
    with pytest.raises(CheckpointError, match='Expected a dict checkpoint, got list'):
        extract_state_dict([torch.zeros(1)])
    with pytest.raises(CheckpointError, match=r"No entry 'params_ema' in the checkpoint; its entries: \['params'\]"):
        extract_state_dict({'params': {'w': torch.zeros(1)}}, param_key='params_ema')
    with pytest.raises(CheckpointError, match=r"plain state dict; top-level entries: \['epoch', 'lr'\]"):
        extract_state_dict({'epoch': 3, 'lr': 0.1})
    with pytest.raises(CheckpointError, match=r"non-tensor values: \['step'\]"):
        extract_state_dict({'params': {'w': torch.zeros(1), 'step': 3}})


def test_extract_state_dict_formats_and_prefixes():
    """Guards the format detection order and the prefix rule (only keys that carry the prefix lose it)."""
    w = torch.ones(2)
    state, source, notes = extract_state_dict({'params_ema': {'a': w}})
    assert source == "basicsr format (entry 'params_ema')" and state == {'a': w}
    state, source, notes = extract_state_dict({'state_dict': {'net.a': w, 'net.b': w}, 'epoch': 1, 'callbacks': {}})
    assert source == "Lightning checkpoint (entry 'state_dict')" and list(state) == ['a', 'b']
    assert notes == ['ignored Lightning entries: callbacks, epoch', "removed the prefix 'net.' from 2 key(s)"]
    state, _, notes = extract_state_dict({'module.a': w, 'other': w})
    assert list(state) == ['a', 'other'] and notes == ["removed the prefix 'module.' from 1 key(s)"]
    _, source, notes = extract_state_dict({'params': {'a': w}, 'params_ema': {'a': w}})
    assert source == "basicsr format (entry 'params')" and 'params_ema' in notes[0]


def _queues(ptr, width=6, dim=2):
    queue = torch.arange(float(dim * width)).view(dim, width)
    return {'E.E.queue': queue, 'E.E.queue_ptr': torch.tensor([ptr])}


def test_moco_queue_adaptation_keeps_rolls_or_drops():
    """Guards adapt_moco_queues: a queue of the right shape is left as it is (pointer too); another length
    is resized in age order from its pointer; another feature size is dropped for the network's own."""
    notes = []
    same = adapt_moco_queues(_queues(3), {'E.E.queue': torch.zeros(2, 6), 'E.E.queue_ptr': torch.zeros(1)}, notes)
    assert torch.equal(same['E.E.queue'], _queues(3)['E.E.queue']) and int(same['E.E.queue_ptr']) == 3 and notes == []
    target = {'E.E.queue': torch.full((2, 4), -1.0), 'E.E.queue_ptr': torch.zeros(1, dtype=torch.long)}
    smaller = adapt_moco_queues(_queues(2), target, notes)
    assert smaller['E.E.queue'].tolist() == [[4., 5., 0., 1.], [10., 11., 6., 7.]]  # the newest 4, oldest first
    assert int(smaller['E.E.queue_ptr']) == 0 and 'resized from (2, 6) to (2, 4)' in notes[-1]
    no_ptr = adapt_moco_queues({'E.E.queue': _queues(0)['E.E.queue']}, target, notes)  # pointer missing: 0
    assert no_ptr['E.E.queue'].tolist() == [[2., 3., 4., 5.], [8., 9., 10., 11.]]
    other_dim = {'E.E.queue': torch.randn(3, 4), 'E.E.queue_ptr': torch.tensor([1])}
    dropped = adapt_moco_queues(_queues(5), other_dim, notes)
    assert torch.equal(dropped['E.E.queue'], other_dim['E.E.queue']) and int(dropped['E.E.queue_ptr']) == 0
    assert notes[-1] == ("E.E.queue: MoCo queue (2, 6) dropped (the network's is (3, 4)); using a fresh queue "
                         '(training-only buffer)')
    # several queues: each is handled; one the network does not have is left for the key comparison
    many = {'a.queue': torch.zeros(2, 6), 'b.queue': torch.zeros(2, 6), 'c.queue': torch.zeros(2, 6)}
    out = adapt_moco_queues(dict(many), {'a.queue': torch.zeros(2, 6), 'b.queue': torch.zeros(2, 3)}, [])
    assert out['a.queue'].shape == (2, 6) and out['b.queue'].shape == (2, 3) and out['c.queue'].shape == (2, 6)


def test_queue_resize_rolls_along_the_queue_axis_only():
    queue = torch.tensor([[0., 1., 2., 3.], [10., 11., 12., 13.]])
    resized, _ = _resize_queue(queue, 1, torch.zeros(2, 3))
    assert resized.tolist() == [[2., 3., 0.], [12., 13., 10.]]


def test_convert_main_in_process_flags(tmp_path, capsys):
    """Guards convert_main's flags (run in-process, unlike the subprocess test): repeated --arch-opt values
    parsed as YAML, --param-key, --allow-mismatch, --arch taking precedence over detection, and the option
    file's type used without detection."""
    import yaml

    torch.manual_seed(0)
    tiny = dict(TINY_RESTORMER, LayerNorm_type='BiasFree')
    params = build_network(dict(type='Restormer', **tiny)).state_dict()
    ema = {k: v + 1 for k, v in params.items()}
    torch.save({'params': params, 'params_ema': ema}, tmp_path / 'in.pth')
    opts = [f'--arch-opt={k}={yaml.safe_dump(v, default_flow_style=True).strip()}' for k, v in tiny.items()]
    assert convert_main([str(tmp_path / 'in.pth'), str(tmp_path / 'ema.pth'), '--arch', 'Restormer',
                         '--param-key', 'params_ema', *opts]) == 0
    out = capsys.readouterr().out
    assert "entry 'params_ema'" in out and 'LayerNorm_type=BiasFree' in out
    assert_same_weights(load_strict(tmp_path / 'ema.pth', 'Restormer', **tiny), ema)

    (tmp_path / 'train.yml').write_text(yaml.safe_dump({'network_g': dict(type='Restormer', **tiny)}))
    assert convert_main([str(tmp_path / 'in.pth'), str(tmp_path / 'p.pth'), '--opt', str(tmp_path / 'train.yml')]) == 0
    assert 'LayerNorm_type=BiasFree' in capsys.readouterr().out

    partial = {k: v for k, v in params.items() if k != 'output.weight'}
    torch.save({'params': partial}, tmp_path / 'partial.pth')
    opts += ['--arch', 'Restormer', '--arch-opt', 'out_channels=3']  # what the missing key would have told
    with pytest.raises(CheckpointError, match='output.weight'):
        convert_main([str(tmp_path / 'partial.pth'), str(tmp_path / 'no.pth'), *opts])
    assert not (tmp_path / 'no.pth').exists()
    assert convert_main([str(tmp_path / 'partial.pth'), str(tmp_path / 'yes.pth'), '--allow-mismatch', *opts]) == 0
    assert 'allowed (Restormer keeps its initial values): missing in the file (1): output.weight' in \
        capsys.readouterr().out

    (tmp_path / 'empty.yml').write_text('name: x\n')
    # a user error (cli.main prints it in one line, exit 2); the --opt handling is the one of every command
    with pytest.raises(UserError, match=r'empty\.yml: no network_g section \(nor plugins: to import\)$'):
        convert_main([str(tmp_path / 'in.pth'), str(tmp_path / 'q.pth'), '--opt', str(tmp_path / 'empty.yml')])
    with pytest.raises(SystemExit):
        convert_main(['in.pth', 'out.pth', '--arch-opt', '=1'])
    assert "--arch-opt expects KEY=VALUE, got '=1'" in capsys.readouterr().err


def test_parse_arch_opt_splits_at_the_first_equals_sign():
    assert _parse_arch_opt('heads=[1, 2]') == ('heads', [1, 2])
    assert _parse_arch_opt(' name =a=b') == ('name', 'a=b')


def test_conversion_casts_to_the_network_dtype_and_caps_long_key_lists(tmp_path):
    """Guards the cast of floating tensors to the network's dtype (a float64 file gives a float32 .pth) and
    the capped key listing of a mismatch report."""
    torch.manual_seed(0)
    state = {k: v.double() for k, v in build_network(dict(type='Restormer', **TINY_RESTORMER)).state_dict().items()}
    torch.save({'params': state}, tmp_path / 'f64.pth')
    convert_checkpoint(tmp_path / 'f64.pth', tmp_path / 'f32.pth', arch='Restormer', arch_opt=TINY_RESTORMER, log=quiet)
    written = torch.load(tmp_path / 'f32.pth', weights_only=True)['params']
    assert {v.dtype for v in written.values()} == {torch.float32}
    diff = {'missing': [f'k{i}' for i in range(32)], 'unexpected': [f'u{i}' for i in range(30)], 'mismatched': []}
    lines = format_differences(diff)
    assert lines[0].startswith('missing in the file (32): k0, k1,') and lines[0].endswith('k29, ... and 2 more')
    assert lines[1].endswith('u28, u29')  # exactly the limit: nothing left out


def test_convert_checkpoint_refusals_name_the_problem(tmp_path):
    torch.save([torch.zeros(1)], tmp_path / 'list.pth')
    with pytest.raises(CheckpointError, match=r'^Expected a dict checkpoint, got list\.$'):
        convert_checkpoint(tmp_path / 'list.pth', tmp_path / 'o.pth', log=quiet)
    torch.save({'params': {'w': torch.zeros(1)}}, tmp_path / 'w.pth')
    with pytest.raises(CheckpointError, match=r'^Cannot tell the architecture from the weights \(known: '):
        convert_checkpoint(tmp_path / 'w.pth', tmp_path / 'o.pth', log=quiet)
    with pytest.raises(CheckpointError, match=r"^Unknown architecture 'NoSuchNet': "):
        convert_checkpoint(tmp_path / 'w.pth', tmp_path / 'o.pth', arch='NoSuchNet', log=quiet)
    with pytest.raises(CheckpointError, match=r"^Cannot build Restormer with options \{'no_such_option': 1\}: "):
        convert_checkpoint(tmp_path / 'w.pth', tmp_path / 'o.pth', arch='Restormer', arch_opt={'no_such_option': 1},
                           log=quiet)
    assert not (tmp_path / 'o.pth').exists()
