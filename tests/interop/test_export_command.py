"""`basicsr export` end to end, and `basicsr restore` with what it writes: safetensors with no options, ONNX
through onnxruntime with restore's own tiling and files; refusals; the missing extra in one line."""
import importlib
import re
import sys

import cv2
import numpy as np
import pytest
import torch
from interop_helpers import PROMPTIR, built

from promptir_basicsr import cli
from promptir_basicsr.interop import INTEROP_INSTALL, MissingExtraError, export


@pytest.fixture(scope='module')
def net():
    return built(PROMPTIR)


@pytest.fixture
def weights(tmp_path, net):
    path = tmp_path / 'net_g_latest.pth'
    torch.save({'params': net.state_dict()}, path)
    return path


@pytest.fixture
def photos(tmp_path):
    """Odd sizes (not multiples of 8), RGB 16-bit (exact comparisons) and 8-bit gray."""
    rng = np.random.default_rng(0)
    root = tmp_path / 'in'
    root.mkdir()
    rgb = cv2.GaussianBlur(rng.random((37, 45, 3)).astype(np.float32), (0, 0), 1.5)
    cv2.imwrite(str(root / 'rgb16.png'), (rgb * 65535).round().astype(np.uint16))
    cv2.imwrite(str(root / 'gray.png'), (rng.random((21, 30)) * 255).round().astype(np.uint8))
    return root


def restore(photos, out, weights, *extra):
    status = cli.main(['restore', '-i', str(photos), '-o', str(out), '--weights', str(weights), *extra])
    assert status == 0
    return {name: cv2.imread(str(out / name), cv2.IMREAD_UNCHANGED).astype(np.int64)
            for name in ('rgb16.png', 'gray.png')}


def test_safetensors_round_trip_through_restore_with_no_options(tmp_path, weights, photos, capsys):
    """export -> .safetensors -> restore with nothing but --weights: the network comes from the file's
    metadata and the images equal those restored from the original .pth, sample for sample."""
    out_file = tmp_path / 'promptir.safetensors'
    assert cli.main(['export', '--weights', str(weights), '--output', str(out_file)]) == 0
    assert f'wrote {out_file} (safetensors' in capsys.readouterr().out
    from_pth = restore(photos, tmp_path / 'pth', weights)
    capsys.readouterr()
    from_safetensors = restore(photos, tmp_path / 'st', out_file)
    assert 'network from the file metadata' in capsys.readouterr().out
    for name, expected in from_pth.items():
        np.testing.assert_array_equal(from_safetensors[name], expected, err_msg=name)


def test_onnx_export_and_restore_through_onnxruntime(tmp_path, weights, photos, capsys):
    """export prints onnxruntime's max abs difference at two sizes (one not a multiple of 8, <= 1e-4);
    restore --weights model.onnx, tiled, gives what restore gives with the .pth (within one 16-bit level)."""
    model = tmp_path / 'promptir.onnx'
    assert cli.main(['export', '--weights', str(weights), '--format', 'onnx', '--output', str(model),
                     '--dynamic']) == 0
    printed = capsys.readouterr().out
    differences = re.findall(r'(\d+)x(\d+) max abs difference ([0-9.e+-]+)', printed)
    assert len(differences) == 2 and any(int(h) % 8 or int(w) % 8 for h, w, _ in differences)
    assert all(float(d) <= 1e-4 for _, _, d in differences)
    tiles = ('--tile-size', '24', '--tile-overlap', '8')
    from_pth = restore(photos, tmp_path / 'pth', weights, *tiles)
    capsys.readouterr()
    from_onnx = restore(photos, tmp_path / 'onnx', model, *tiles)
    assert 'device: onnxruntime CPUExecutionProvider' in capsys.readouterr().out
    for name, expected in from_pth.items():
        assert from_onnx[name].shape == expected.shape and np.abs(from_onnx[name] - expected).max() <= 1, name


def test_torchscript_export_restores_like_its_weights(tmp_path, weights, photos, capsys):
    """The .pt that `basicsr export` writes is accepted by `basicsr restore` (torch.jit.load: nothing unpickled),
    its network read from the archive, tiled as the .pth is (same multiple of 8): the same samples, 16-bit ones
    within a level. Options it cannot take are refused in one line; the other commands name the files they need,
    never torch's advice of an unsafe load."""
    model = tmp_path / 'promptir.pt'
    assert cli.main(['export', '--weights', str(weights), '--output', str(model)]) == 0
    assert 'TorchScript, float32: 64x64 max abs difference' in capsys.readouterr().out
    tiles = ('--tile-size', '24', '--tile-overlap', '8')
    for extra in ((), tiles):
        from_pth = restore(photos, tmp_path / f'pth{len(extra)}', weights, *extra)
        capsys.readouterr()
        from_pt = restore(photos, tmp_path / f'pt{len(extra)}', model, *extra)
        log = capsys.readouterr().out
        assert f'weights: {model} (TorchScript); network: PromptIR ' in log and ' dim=8 ' in log.split('network:')[1]
        assert 'device: cpu' in log
        for name, expected in from_pth.items():
            assert from_pt[name].shape == expected.shape and np.abs(from_pt[name] - expected).max() <= 1, name
    half = tmp_path / 'half.pt'
    assert cli.main(['export', '--weights', str(weights), '--output', str(half), '--fp16']) == 0
    from_half = restore(photos, tmp_path / 'half', half)
    untiled = restore(photos, tmp_path / 'pth0', weights)
    assert 0 < np.abs(from_half['rgb16.png'] - untiled['rgb16.png']).mean() < 65535e-3  # float16 inside: 3 digits
    capsys.readouterr()
    for flags, message in ((['--arch-opt', 'dim=4'], '--arch-opt does not apply to a TorchScript .pt module'),
                           (['--compile'], '--compile does not apply to a TorchScript .pt module')):
        assert cli.main(['restore', '-i', str(photos), '-o', str(tmp_path / 'x'), '--weights', str(model),
                         *flags]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count('\n') == 1, err
    for argv in (['export', '--weights', str(model), '--output', str(tmp_path / 'again.onnx')],
                 ['convert', str(model), str(tmp_path / 'again.pth')]):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert err.count('\n') == 1 and f'{model} is a TorchScript module' in err, err
        assert '(.pth, .ckpt or .safetensors)' in err and 'weights_only' not in err


def test_flags_and_refusals(tmp_path, weights, capsys, monkeypatch):
    """Misused flags are one-line errors (exit 2); an export that fails its check exits 1 and writes nothing."""
    cases = [(['--format', 'safetensors', '--opset', '17'], '--opset applies to --format onnx only'),
             (['--format', 'torchscript', '--dynamic'], '--dynamic applies to --format onnx only'),
             (['--opset', '9'], '--opset 9: the exporter writes opsets 11 to 20')]
    for extra, message in cases:
        assert cli.main(['export', '--weights', str(weights), '--output', str(tmp_path / 'm.onnx'), *extra]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count('\n') == 1, err
    assert cli.main(['export', '--weights', str(weights), '--output', str(tmp_path / 'model.bin')]) == 2
    assert 'give --format' in capsys.readouterr().err
    assert cli.main(['export', '--weights', str(tmp_path / 'nope.pth'), '--output', str(tmp_path / 'm.pt')]) == 2
    assert 'nope.pth' in capsys.readouterr().err
    cv2.imwrite(str(tmp_path / 'a.png'), np.zeros((8, 8, 3), np.uint8))
    assert cli.main(['restore', '-i', str(tmp_path / 'a.png'), '-o', str(tmp_path / 'o'), '--weights',
                     str(tmp_path / 'x.onnx')]) == 2
    assert 'x.onnx: no such file' in capsys.readouterr().err
    assert cli.main(['restore', '-i', str(tmp_path / 'a.png'), '-o', str(tmp_path / 'o'), '--weights',
                     str(tmp_path / 'x.onnx'), '--amp', 'bf16']) == 2
    assert '--amp does not apply to an .onnx model' in capsys.readouterr().err

    monkeypatch.setitem(export.TOLERANCE, 'float32', -1.0)  # no export can pass: the check must stop it
    target = tmp_path / 'checked' / 'm.pt'
    assert cli.main(['export', '--weights', str(weights), '--output', str(target)]) == 1
    assert 'nothing was written' in capsys.readouterr().err
    assert not target.parent.exists() or list(target.parent.iterdir()) == []


@pytest.mark.parametrize('missing, argv', [
    ('onnxruntime', ['export', '--format', 'onnx']),
    ('onnx', ['export', '--format', 'onnx']),
    ('safetensors', ['export', '--format', 'safetensors']),
    ('onnxruntime', ['restore']),
])
def test_missing_extra_is_one_line_naming_pip(tmp_path, weights, capsys, monkeypatch, missing, argv):
    """Without the interop extra (simulated: the module cannot be imported), the command fails in one line,
    exit 2, naming the module and the pip command that installs it."""
    for name in [m for m in sys.modules if m == missing or m.startswith(missing + '.')]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, missing, None)
    if argv[0] == 'export':
        argv = argv + ['--weights', str(weights), '--output', str(tmp_path / 'model')]
    else:
        (tmp_path / 'model.onnx').write_bytes(b'not used')
        cv2.imwrite(str(tmp_path / 'a.png'), np.zeros((8, 8, 3), np.uint8))
        argv = argv + ['-i', str(tmp_path / 'a.png'), '-o', str(tmp_path / 'o'), '--weights',
                       str(tmp_path / 'model.onnx')]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and INTEROP_INSTALL in err and f'{missing} is not installed' in err, err


def test_spandrel_support_without_spandrel_names_pip(monkeypatch):
    """Importing the spandrel support without spandrel: an ImportError (what library users catch) whose one
    line names the pip command."""
    monkeypatch.setitem(sys.modules, 'spandrel', None)
    monkeypatch.delitem(sys.modules, 'promptir_basicsr.interop.spandrel', raising=False)
    with pytest.raises(ImportError) as info:
        importlib.import_module('promptir_basicsr.interop.spandrel')
    assert isinstance(info.value, MissingExtraError) and INTEROP_INSTALL in str(info.value)
    assert '\n' not in str(info.value)
