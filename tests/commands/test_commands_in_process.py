"""The subcommands run in this process on tiny inputs (their end-to-end runs on the demo are slow tests elsewhere):
`basicsr train`/`test` handing basicsr its flags, `plot` on a written log, `prompts` on a tiny PromptIR, `export`
applying an architecture's export options, `table`. Each checks what the command prints and writes."""
import json

import cv2
import numpy as np
import pytest
import torch
import yaml
from basicsr.archs import build_network
from cli_helpers import paired_set, write_pairs

from promptir_basicsr import cli
from promptir_basicsr.utils import results_table as rt

TINY_PROMPTIR = dict(type='PromptIR', dim=8, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1, heads=[1, 1, 1, 1],
                     ffn_expansion_factor=2, prompt_len=3, prompt_dims=[4, 8, 8], prompt_sizes=[4, 4, 4])


def test_train_and_test_hand_basicsr_its_flags(tmp_path, monkeypatch, capsys):
    """After the option check, basicsr's pipeline gets the flags as its parse_options reads them (--local_rank with
    an underscore, --auto_resume/--debug only when given, --force_yml entries), the current folder as root, and
    the command's name; a file with a mistake never reaches it."""
    import promptir_basicsr.basicsr_patches.behaviour.pipelines as pipelines
    import promptir_basicsr.options.prepare as prepare
    calls = []
    monkeypatch.setattr(pipelines, 'run_pipeline', lambda argv, root, is_train, prog: calls.append(
        (argv, root, is_train, prog)))
    monkeypatch.setattr(prepare, 'prepare_run', lambda path, is_train, force_yml: calls.append(
        ('prepared', path, is_train, force_yml)))
    monkeypatch.chdir(tmp_path)
    write_pairs(tmp_path / 'data', 1, 16, seed=0)
    opt = {'name': 'x', 'model_type': 'SRModel', 'datasets': {'test_1': paired_set('t', tmp_path / 'data', 'test')},
           'network_g': {'type': 'Restormer'}, 'path': {}, 'train': {'total_iter': 2, 'optim_g': {'type': 'Adam'}},
           'val': {'val_freq': 1}, 'logger': {'print_freq': 1, 'save_checkpoint_freq': 1}}
    (tmp_path / 'o.yml').write_text(yaml.safe_dump(opt))
    assert cli.main(['test', '-opt', 'o.yml']) == 0
    assert calls == [('prepared', 'o.yml', False, None),
                     (['-opt', 'o.yml', '--launcher', 'none', '--local_rank', '0'], str(tmp_path), False,
                      'basicsr test')]
    calls.clear()
    assert cli.main(['train', '-opt', 'o.yml', '--launcher', 'pytorch', '--local-rank', '1', '--auto_resume',
                     '--debug', '--force_yml', 'train:total_iter=3', 'name=y']) == 0
    assert calls == [('prepared', 'o.yml', True, ['train:total_iter=3', 'name=y']),
                     (['-opt', 'o.yml', '--launcher', 'pytorch', '--local_rank', '1', '--auto_resume', '--debug',
                       '--force_yml', 'train:total_iter=3', 'name=y'], str(tmp_path), True, 'basicsr train')]
    calls.clear()
    assert cli.main(['train', '-opt', 'o.yml', '--force_yml', 'manual_seed=one']) == 2
    assert "`manual_seed` must be a whole number or ~ (null), got 'one'" in capsys.readouterr().err and calls == []


def _log(path, iterations, psnr):
    """A basicsr training log: its options, one loss line per iteration, a validation of set A at the end."""
    line = '2026 INFO: [x..][epoch:  0, iter:      {}, lr:(1.000e-03,)] [eta: 0:00:01, time (data): 0.1 (0.0)] ' \
           'l_pix: {:.1e} '
    text = ['  val:', '    val_freq: 4', '  train:', '    total_iter: 4',
            '2026 INFO: Start training from epoch: 0, iter: 0']
    text += [line.format(i, 1.0 / i) for i in range(1, iterations + 1)]
    text += ['2026 INFO: Validation A', f'\t # psnr: {psnr:.4f}\tBest: {psnr:.4f} @ 4 iter', '']
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('\n'.join(text))


def test_plot_reads_logs_and_refuses_what_it_cannot_plot(tmp_path, monkeypatch, capsys):
    """Two runs of the same name overlay (named by their folders), a run alone is named by its folder's name; the
    metric and smoothing asked for reach the plot; what was read is printed; mistakes are one line each."""
    import promptir_basicsr.visual.curves as curves
    plotted, real_plot_runs = [], curves.plot_runs
    monkeypatch.setattr(curves, 'plot_runs', lambda runs, output, **kwargs: plotted.append(kwargs) or
                        real_plot_runs(runs, output, **kwargs))
    _log(tmp_path / 'a' / 'run' / 'train_run.log', 4, 25.0)
    _log(tmp_path / 'b' / 'run' / 'train_run.log', 4, 27.0)
    out = tmp_path / 'curves.png'
    assert cli.main(['plot', str(tmp_path / 'a' / 'run'), str(tmp_path / 'b' / 'run'), '-o', str(out),
                     '--smooth', '0.5']) == 0
    printed = capsys.readouterr().out
    assert f'{tmp_path / "a" / "run"}: 3 curves, 1 psnr values, from {tmp_path / "a" / "run" / "train_run.log"}' in \
        printed
    assert f'wrote {out}: 3 panels (loss l_pix, learning rate, A psnr)' in printed
    assert cv2.imread(str(out)) is not None
    assert cli.main(['plot', str(tmp_path / 'a' / 'run'), '-o', str(tmp_path / 'ssim.png'), '--metric', 'ssim']) == 0
    assert capsys.readouterr().out.startswith('run: 3 curves, 0 ssim values, from ')
    assert plotted == [{'metric': 'psnr', 'smooth': 0.5}, {'metric': 'ssim', 'smooth': 0.0}]
    (tmp_path / 'empty').mkdir()
    for argv, message in ((['--smooth', '1'], '--smooth 1.0: must be in [0, 1)'),
                          ([], 'empty: no training log (*.log) or tensorboard file with curves found')):
        assert cli.main(['plot', str(tmp_path / 'empty'), '-o', str(tmp_path / 'x.png'), *argv]) == 2
        assert message in capsys.readouterr().err
    assert cli.main(['plot', str(tmp_path / 'none'), '-o', str(tmp_path / 'x.png')]) == 2
    assert 'none: no such run folder (give experiments/<name>)' in capsys.readouterr().err
    validation_only = tmp_path / 'v' / 'run' / 'train_run.log'
    validation_only.parent.mkdir(parents=True)
    validation_only.write_text('2026 INFO: Validation A\n\t # ssim: 0.5000\tBest: 0.5000 @ 4 iter\n')
    assert cli.main(['plot', str(validation_only.parent), '-o', str(tmp_path / 'x.png')]) == 2
    assert "no curves to plot (no losses, learning rate or 'psnr' values)" in capsys.readouterr().err


def test_prompts_records_each_blocks_weights_per_set(tmp_path, monkeypatch, capsys):
    """A tiny PromptIR over two labelled sets: one row per set, every image's weights (per block, over its
    prompt_len components) a softmax that sums to 1, one heatmap per block; weights from --weights or the file's
    path; a network without prompt blocks, or no weights, refused in one line."""
    monkeypatch.chdir(tmp_path)
    for name, seed in (('Noise', 1), ('Rain', 2)):
        write_pairs(tmp_path / 'data' / name, 2, 16, seed=seed)
    torch.manual_seed(0)
    torch.save({'params': build_network(dict(TINY_PROMPTIR)).state_dict()}, tmp_path / 'w.pth')
    torch.save({'params': build_network(dict(type='Restormer', dim=8, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1,
                                             heads=[1, 1, 1, 1])).state_dict()}, tmp_path / 'r.pth')
    opt = {'name': 'p', 'model_type': 'AllInOneModel', 'num_gpu': 0,
           'datasets': {f'test_{i}': paired_set(name, tmp_path / 'data' / name, 'test')
                        for i, name in enumerate(('Noise', 'Rain'), start=1)},
           'network_g': dict(TINY_PROMPTIR), 'path': {'pretrain_network_g': None}, 'val': {'tile_size': 8,
                                                                                          'tile_overlap': 4}}
    (tmp_path / 'test.yml').write_text(yaml.safe_dump(opt))
    assert cli.main(['prompts', '--weights', 'w.pth', '-opt', 'test.yml', '--device', 'cpu']) == 0
    printed = capsys.readouterr().out
    assert 'weights: w.pth; network: PromptIR' in printed
    folder = tmp_path / 'results' / 'p' / 'prompts'
    table = json.loads((folder / 'prompts.json').read_text())
    assert [row['degradation'] for row in table['rows']] == ['Noise', 'Rain'] and table['weights_file'] == 'w.pth'
    assert table['blocks'] == ['prompt1', 'prompt2', 'prompt3'] and len(table['images']) == 4
    assert [image['set'] for image in table['images']] == ['Noise', 'Noise', 'Rain', 'Rain']
    assert sorted(image['name'] for image in table['images']) == ['img00.png'] * 2 + ['img01.png'] * 2
    for image in table['images']:
        assert sorted(image['weights']) == table['blocks']
        assert all(len(w) == 3 and abs(sum(w) - 1) < 1e-5 and min(w) > 0 for w in image['weights'].values())
    assert {p.name for p in folder.iterdir()} >= {'prompts.json', 'prompts.md', 'prompt1_heatmap.png'}
    assert f'wrote {folder / "prompts.md"}' in printed or 'prompts.md' in printed
    opt['path']['pretrain_network_g'] = 'w.pth'
    (tmp_path / 'test.yml').write_text(yaml.safe_dump(opt))
    assert cli.main(['prompts', '-opt', 'test.yml', '-o', 'elsewhere']) == 0
    assert (tmp_path / 'elsewhere' / 'prompts.json').is_file()
    opt['path']['pretrain_network_g'] = None
    (tmp_path / 'test.yml').write_text(yaml.safe_dump(opt))
    assert cli.main(['prompts', '-opt', 'test.yml']) == 2
    assert 'test.yml: no weights: pass --weights or set path:pretrain_network_g' in capsys.readouterr().err
    opt['network_g'] = {'type': 'Restormer', 'dim': 8, 'num_blocks': [1, 1, 1, 1], 'num_refinement_blocks': 1,
                        'heads': [1, 1, 1, 1]}
    (tmp_path / 'test.yml').write_text(yaml.safe_dump(opt))
    assert cli.main(['prompts', '--weights', 'r.pth', '-opt', 'test.yml']) == 2
    assert '--weights r.pth: Restormer has no prompt blocks; `basicsr prompts` needs a PromptIR network' in \
        capsys.readouterr().err


def test_prompts_restores_with_the_files_tiles_on_the_device_asked(tmp_path, monkeypatch, capsys):
    """The file's val: tile_size and tile_overlap (32 unless given; no val: whole images) and --device reach the
    Restorer; the file's network_g must agree with the weights (a differing option is named in one line)."""
    import promptir_basicsr.inference as inference
    made = []

    class Recording(inference.Restorer):
        def __init__(self, net, device, **tiles):
            made.append((device, tiles))
            super().__init__(net, device, **tiles)

    monkeypatch.setattr(inference, 'Restorer', Recording)
    monkeypatch.chdir(tmp_path)
    write_pairs(tmp_path / 'data' / 'Noise', 1, 16, seed=1)
    torch.manual_seed(0)
    torch.save({'params': build_network(dict(TINY_PROMPTIR)).state_dict()}, tmp_path / 'w.pth')
    opt = {'name': 'p', 'model_type': 'AllInOneModel', 'num_gpu': 0,
           'datasets': {'test_1': paired_set('Noise', tmp_path / 'data' / 'Noise', 'test')},
           'network_g': dict(TINY_PROMPTIR), 'path': {'pretrain_network_g': 'w.pth'}}
    for val, tiles in (({'tile_size': 8, 'tile_overlap': 4}, {'tile_size': 8, 'tile_overlap': 4}),
                       ({'tile_size': 40}, {'tile_size': 40, 'tile_overlap': 32}),
                       (None, {'tile_size': None, 'tile_overlap': 32})):
        (tmp_path / 'test.yml').write_text(yaml.safe_dump(dict(opt, **({'val': val} if val else {}))))
        assert cli.main(['prompts', '-opt', 'test.yml', '--device', 'cpu']) == 0
        assert made[-1] == ('cpu', tiles)
    capsys.readouterr()
    (tmp_path / 'test.yml').write_text(yaml.safe_dump(dict(opt, network_g=dict(TINY_PROMPTIR, dim=16))))
    assert cli.main(['prompts', '-opt', 'test.yml']) == 2
    err = capsys.readouterr().err
    assert 'have dim=8' in err and 'ask dim=16' in err and err.count('\n') == 1


def test_prompt_recorder_averages_the_calls_of_one_image():
    """Tiles call a block several times per image: the recorded weights are the mean of the softmaxes."""
    from promptir_basicsr.commands.prompts import PromptRecorder, prompt_blocks
    net = build_network(dict(TINY_PROMPTIR)).eval()
    blocks = prompt_blocks(net)
    assert list(blocks) == ['prompt1', 'prompt2', 'prompt3']
    recorder = PromptRecorder(blocks)
    seen = []
    blocks['prompt1'].linear_layer.register_forward_hook(lambda m, i, out: seen.append(out.softmax(dim=1).mean(0)))
    with torch.no_grad():
        net(torch.rand(2, 3, 16, 16))
        net(torch.rand(1, 3, 16, 16))
    weights = recorder.take()
    torch.testing.assert_close(torch.tensor(weights['prompt1']), (seen[0] + seen[1]) / 2)
    assert recorder.take() == {}
    recorder.close()
    with torch.no_grad():
        net(torch.rand(1, 3, 8, 8))
    assert recorder.take() == {}
    assert prompt_blocks(torch.nn.Conv2d(1, 1, 1)) == {}


def test_export_applies_the_architecture_export_options(tmp_path, capsys):
    """MoCE-IR declares routing_noise: false for export: the exported network is rebuilt with it (said once),
    unless the user sets it; the weights are the same."""
    from safetensors import safe_open
    net = build_network(dict(type='MoCEIR', dim=8, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1,
                             heads=[1, 1, 1, 1], num_experts=2, topk=1, depth_type='lin'))
    torch.save({'params': net.state_dict()}, tmp_path / 'm.pth')

    def exported(*extra):
        out = tmp_path / f'm{len(extra)}.safetensors'
        assert cli.main(['export', '--weights', str(tmp_path / 'm.pth'), '--output', str(out), *extra]) == 0
        with safe_open(str(out), framework='pt') as f:
            return json.loads(f.metadata()['network_options']), f.get_tensor('output.weight')

    options, weight = exported()
    assert options['routing_noise'] is False and torch.equal(weight, net.state_dict()['output.weight'])
    assert 'export: MoCEIR exported with routing_noise=False (declared by the architecture for export' in \
        capsys.readouterr().out
    options, _ = exported('--arch-opt', 'routing_noise=true')
    assert options['routing_noise'] is True and 'exported with' not in capsys.readouterr().out
    again = tmp_path / 'again.safetensors'  # weights that already say routing_noise: false need no rebuild
    assert cli.main(['export', '--weights', str(tmp_path / 'm0.safetensors'), '--output', str(again)]) == 0
    assert 'exported with' not in capsys.readouterr().out
    torch.save({'params': build_network(dict(TINY_PROMPTIR)).state_dict()}, tmp_path / 'p.pth')
    assert cli.main(['export', '--weights', str(tmp_path / 'p.pth'), '--output', str(tmp_path / 'p.safetensors')]) == 0
    assert 'exported with' not in capsys.readouterr().out  # PromptIR declares nothing for export


def test_table_prints_or_writes_the_merged_table(tmp_path, capsys):
    metrics = ['psnr']
    for name, value in (('A', 30.0), ('B', 28.0)):
        rt.write_table(rt.make_table([rt.make_row(name, {'Rain': {'psnr': value}}, metrics)], metrics),
                       tmp_path / name)
    assert cli.main(['table', str(tmp_path / 'A'), str(tmp_path / 'B' / rt.JSON_NAME)]) == 0
    printed = capsys.readouterr().out
    assert '| A | 30.00 | 30.00 |' in printed and '| B | 28.00 | 28.00 |' in printed
    assert not (tmp_path / 'merged').exists()
    assert cli.main(['table', str(tmp_path / 'A'), str(tmp_path / 'B'), '-o', str(tmp_path / 'merged')]) == 0
    assert (tmp_path / 'merged' / rt.MD_NAME).read_text().strip() in capsys.readouterr().out
    assert [r['model'] for r in json.loads((tmp_path / 'merged' / rt.JSON_NAME).read_text())['rows']] == ['A', 'B']
    np.testing.assert_allclose(
        [r['average']['psnr'] for r in json.loads((tmp_path / 'merged' / rt.JSON_NAME).read_text())['rows']], [30, 28])


def test_serve_hands_the_page_its_networks_examples_and_flags(tmp_path, monkeypatch, capsys):
    """`basicsr serve` in this process, the page and the networks' loading replaced by recorders: every flag
    reaches them as given (defaults: 127.0.0.1, port 7860, 100 megapixels, torch, the demo root made absolute); each
    network is named; --demo-root none offers no examples; a port or tiles out of range, or no gradio, are one-line
    errors before anything loads."""
    import importlib.util
    import os
    import sys
    import types

    import promptir_basicsr.serving as serving
    calls = []
    def load_networks(*args):
        args[7]('loading')  # the log reaches the loader and the page
        calls.append(('load', args[:7]))
        return [types.SimpleNamespace(label='A'), types.SimpleNamespace(label='B')]

    def demo_pairs(root, scratch):
        assert os.path.isdir(scratch)  # a temporary folder for the examples' copies
        calls.append(('demo', root))
        return [('lq.png', 'gt.png')]

    def serve(*args):
        args[6]('serving')
        calls.append(('serve', [n.label for n in args[0]], *args[1:6]))
        return 0

    service = types.SimpleNamespace(load_networks=load_networks, demo_pairs=demo_pairs)
    page = types.SimpleNamespace(serve=serve)
    for name, module in (('service', service), ('page', page)):  # never imports gradio
        monkeypatch.setattr(serving, name, module, raising=False)
        monkeypatch.setitem(sys.modules, f'promptir_basicsr.serving.{name}', module)
    real_find_spec = importlib.util.find_spec
    gradio = {'installed': True}
    monkeypatch.setattr(importlib.util, 'find_spec', lambda name, *a: (object() if gradio['installed'] else None)
                        if name == 'gradio' else real_find_spec(name, *a))
    monkeypatch.chdir(tmp_path)
    assert cli.main(['serve', '--weights', 'a.pth', 'b.onnx']) == 0
    assert calls == [('load', (['a.pth', 'b.onnx'], 'auto', None, 'torch', None, 0, 32)),
                     ('demo', str(tmp_path / 'datasets' / 'demo')),
                     ('serve', ['A', 'B'], [['lq.png', 'gt.png']], '127.0.0.1', 7860, 100.0, None)]
    assert capsys.readouterr().out.splitlines() == ['loading', 'network: A', 'network: B', 'serving']
    calls.clear()
    assert cli.main(['serve', '--weights', 'w', '--host', '0.0.0.0', '--port', '1', '--demo-root', 'none',
                     '--max-megapixels', '2.5', '--exit-after', '3', '--tile-size', '64', '--tile-overlap', '8',
                     '--device', 'cpu', '--threads', '2', '--max-memory', '1G', '--backend', 'torch']) == 0
    assert calls == [('load', (['w'], 'cpu', 2, 'torch', 1024 ** 3, 64, 8)),
                     ('serve', ['A', 'B'], [], '0.0.0.0', 1, 2.5, 3.0)]
    calls.clear()
    for args, message in ((['--port', '0'], '--port 0: choose a port between 1 and 65535'),
                          (['--port', '65536'], '--port 65536: choose a port'),
                          (['--tile-size', '16', '--tile-overlap', '16'], '--tile-size 16 --tile-overlap 16: need'),
                          (['--tile-size', '-1'], '--tile-size -1 --tile-overlap 32: need')):
        assert cli.main(['serve', '--weights', 'w', *args]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count('\n') == 1, (args, err)
    assert cli.main(['serve', '--weights', 'w', '--port', '65535', '--demo-root', 'none']) == 0
    assert calls[-1][4] == 65535
    gradio['installed'] = False
    assert cli.main(['serve', '--weights', 'w']) == 2
    assert 'gradio is not installed' in capsys.readouterr().err and len(calls) == 2


def test_flags_that_must_be_given_and_the_spellings_basicsr_reads(tmp_path, capsys):
    """-opt (train, test) and --weights (serve) are required; --launcher takes only basicsr's launchers;
    --local_rank and --local-rank are one integer flag; convert takes -opt as --opt; plot writes curves.png
    unless told; a test run's file needs no train or logger section (the quick check knows it is a test)."""
    from promptir_basicsr.cli import subcommands
    found = subcommands()

    def parsed(command, *argv):
        return found[command].build_parser(f'basicsr {command}').parse_args(list(argv))

    for command, argv in (('train', []), ('test', []), ('serve', []),
                          ('train', ['-opt', 'o.yml', '--launcher', 'mpi'])):
        with pytest.raises(SystemExit) as exit_info:
            parsed(command, *argv)
        assert exit_info.value.code == 2, (command, argv)
    capsys.readouterr()
    for flag in ('--local_rank', '--local-rank'):
        assert parsed('train', '-opt', 'o.yml', flag, '3').local_rank == 3
    assert parsed('test', '-opt', 'o.yml').launcher == 'none'
    assert parsed('convert', 'in.pth', 'out.pth', '-opt', 'o.yml').opt == 'o.yml'
    assert parsed('convert', 'in.pth', 'out.pth', '--opt', 'o.yml').opt == 'o.yml'
    assert parsed('plot', 'run').output == 'curves.png'


def test_a_test_run_file_without_training_sections_reaches_basicsr(tmp_path, monkeypatch):
    import promptir_basicsr.basicsr_patches.behaviour.pipelines as pipelines
    import promptir_basicsr.options.prepare as prepare
    calls = []
    monkeypatch.setattr(pipelines, 'run_pipeline', lambda argv, root, is_train, prog: calls.append(prog))
    monkeypatch.setattr(prepare, 'prepare_run', lambda path, is_train, force_yml: None)
    monkeypatch.chdir(tmp_path)
    write_pairs(tmp_path / 'data', 1, 16, seed=0)
    opt = {'name': 'x', 'model_type': 'SRModel', 'datasets': {'test_1': paired_set('t', tmp_path / 'data', 'test')},
           'network_g': {'type': 'Restormer'}, 'path': {}}
    (tmp_path / 'o.yml').write_text(yaml.safe_dump(opt))
    assert cli.main(['test', '-opt', 'o.yml']) == 0 and calls == ['basicsr test']
    assert cli.main(['train', '-opt', 'o.yml']) == 2 and calls == ['basicsr test']  # a training needs them


@pytest.mark.parametrize('name', ['convert', 'export', 'plot', 'prompts', 'serve', 'table'])
def test_each_command_module_parses_the_arguments_it_is_given(name, capsys):
    """``python -m promptir_basicsr.commands.<name>``: main(argv) parses argv (here --help), not sys.argv."""
    import importlib
    module = importlib.import_module(f'promptir_basicsr.commands.{name}')
    with pytest.raises(SystemExit) as exit_info:
        module.main(['--help'])
    assert exit_info.value.code == 0 and capsys.readouterr().out.startswith('usage: ')


@pytest.mark.parametrize('command', ['train', 'test', 'restore', 'export', 'convert', 'prompts', 'plot', 'table',
                                     'ablate'])
def test_every_command_answers_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, '--help'])
    assert exit_info.value.code == 0 and f'usage: basicsr {command}' in capsys.readouterr().out
