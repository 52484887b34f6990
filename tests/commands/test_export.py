"""`basicsr export` in this process (promptir_basicsr/commands/export.py), its writers replaced by recorders (the
real writers and their checks have their own tests in tests/interop): the format chosen from --format or the
output's extension, every flag reaching the writer as given, the bytes it returns written to --output, a failed
check writing nothing; --help and the parser's refusals."""
import argparse

import pytest
import torch
from basicsr.archs import build_network

from promptir_basicsr import cli
from promptir_basicsr.commands import export as export_command
from promptir_basicsr.errors import UserError
from promptir_basicsr.interop import INTEROP_INSTALL

TINY_RESTORMER = dict(type='Restormer', dim=8, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1, heads=[1, 1, 1, 1])


def test_choose_format_from_the_flag_or_the_extension():
    def chosen(output, format=None):
        return export_command.choose_format(argparse.Namespace(output=output, format=format))

    assert chosen('m.onnx') == 'onnx' and chosen('out/M.ONNX') == 'onnx'  # any case
    assert chosen('a.b/model.pt') == 'torchscript' and chosen('model.safetensors') == 'safetensors'
    assert chosen('model.pt', format='onnx') == 'onnx'  # the flag wins over the name
    for output in ('model.bin', 'model', 'onnx'):
        with pytest.raises(UserError, match=f'--output {output}: give --format'):
            chosen(output)


@pytest.fixture
def recorded(tmp_path, monkeypatch):
    """The three writers replaced by recorders; weights of a tiny Restormer."""
    from promptir_basicsr.interop import export
    calls = []

    def recorder(name):
        def write(net, network_opt, fp16=False, **kwargs):
            calls.append(dict(writer=name, training=net.training, network_opt=network_opt, fp16=fp16, kwargs=kwargs,
                              state=net.state_dict()))
            return f'{name} bytes'.encode(), None
        return write

    for name in ('onnx_bytes', 'torchscript_bytes', 'safetensors_bytes'):
        monkeypatch.setattr(export, name, recorder(name))
    torch.manual_seed(0)
    net = build_network(dict(TINY_RESTORMER))
    torch.save({'params': net.state_dict()}, tmp_path / 'w.pth')
    return calls, net.state_dict()


def test_every_flag_reaches_the_writer_and_its_bytes_are_written(tmp_path, recorded, capsys):
    calls, state = recorded
    weights = str(tmp_path / 'w.pth')
    out = tmp_path / 'deep' / 'm.onnx'
    assert cli.main(['export', '--weights', weights, '-o', str(out), '--opset', '18', '--dynamic', '--fp16']) == 0
    call = calls[-1]
    assert (call['writer'], call['training'], call['fp16'], call['kwargs']) == ('onnx_bytes', False, True,
                                                                                 {'opset': 18, 'dynamic_batch': True})
    assert {key: call['network_opt'][key] for key in TINY_RESTORMER} == TINY_RESTORMER  # read from the weights
    assert all(torch.equal(call['state'][key], value) for key, value in state.items())
    assert out.read_bytes() == b'onnx_bytes bytes'
    assert f'wrote {out} (onnx, 0.0 MiB)' in capsys.readouterr().out
    assert cli.main(['export', '--weights', weights, '--output', str(tmp_path / 'plain.onnx')]) == 0
    assert (calls[-1]['fp16'], calls[-1]['kwargs']) == (False, {'opset': None, 'dynamic_batch': False})
    for output, writer in (('m.pt', 'torchscript_bytes'), ('m.safetensors', 'safetensors_bytes')):
        assert cli.main(['export', '--weights', weights, '--output', str(tmp_path / output)]) == 0
        assert (calls[-1]['writer'], calls[-1]['fp16'], calls[-1]['kwargs']) == (writer, False, {})
        assert (tmp_path / output).read_bytes() == f'{writer} bytes'.encode()
    assert cli.main(['export', '--weights', weights, '--output', str(tmp_path / 'h.bin'), '--format', 'torchscript',
                     '--fp16']) == 0
    assert (calls[-1]['writer'], calls[-1]['fp16']) == ('torchscript_bytes', True)
    assert (tmp_path / 'h.bin').read_bytes() == b'torchscript_bytes bytes'
    arch_opt = ['--arch-opt', 'dim=16']
    assert cli.main(['export', '--weights', weights, '--output', str(tmp_path / 'x.pt'), *arch_opt]) == 2
    assert 'have dim=8' in capsys.readouterr().err  # the network arguments reach the loader
    assert len(calls) == 5


def test_a_failed_check_writes_nothing_and_exits_1(tmp_path, recorded, monkeypatch, capsys):
    from promptir_basicsr.interop import export

    def failing(net, network_opt, fp16=False, **kwargs):
        raise export.ExportCheckError('64x64 max abs difference 1 exceeds 1e-4; nothing was written')

    monkeypatch.setattr(export, 'torchscript_bytes', failing)
    out = tmp_path / 'm.pt'
    assert cli.main(['export', '--weights', str(tmp_path / 'w.pth'), '--output', str(out)]) == 1
    err = capsys.readouterr().err
    assert err == 'basicsr export: error: 64x64 max abs difference 1 exceeds 1e-4; nothing was written\n'
    assert not out.exists()


def test_flags_that_apply_to_onnx_only_are_refused_before_loading(tmp_path, recorded, capsys):
    calls, _ = recorded
    for extra, message in ((['--output', 'm.pt', '--opset', '17'], '--opset applies to --format onnx only (this '
                            'export is torchscript)'),
                           (['--output', 'm.onnx', '--format', 'safetensors', '--dynamic'],
                            '--dynamic applies to --format onnx only (this export is safetensors)')):
        assert cli.main(['export', '--weights', str(tmp_path / 'nope.pth'), *extra]) == 2
        assert message in capsys.readouterr().err
    assert calls == []


def test_export_parser_help_and_refusals(capsys):
    parser = export_command.build_parser()
    help_text = ' '.join(parser.format_help().split())
    assert parser.description.endswith(f'Needs the interop extra: {INTEROP_INSTALL}.')
    assert "(default: from --output's extension: .onnx, .pt, .safetensors)" in help_text
    assert '-o OUTPUT, --output OUTPUT the file to write' in help_text
    assert 'any weights `basicsr restore` reads (.pth, .ckpt, .safetensors)' in help_text
    args = parser.parse_args(['--weights', 'w', '-o', 'm.onnx'])
    assert (args.format, args.opset, args.dynamic, args.fp16, args.arch_opt) == (None, None, False, False, [])
    args = parser.parse_args(['--weights', 'w', '-o', 'm', '--format', 'onnx', '--opset', '19', '--dynamic', '--fp16'])
    assert (args.format, args.opset, args.dynamic, args.fp16) == ('onnx', 19, True, True)
    for argv, message in ((['--weights', 'w'], 'the following arguments are required: -o/--output'),
                          (['-o', 'm.onnx'], 'the following arguments are required: --weights'),
                          (['--weights', 'w', '-o', 'm', '--format', 'png'], "invalid choice: 'png'"),
                          (['--weights', 'w', '-o', 'm', '--opset', 'x'], "invalid int value: 'x'")):
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args(argv)
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
