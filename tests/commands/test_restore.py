"""`basicsr restore`: outputs keep size, mode and bit depth; bad files are listed; weights of every kind."""
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from basicsr.archs import build_network

from promptir_basicsr import cli
from promptir_basicsr.visual.grids import GAP

REPO = Path(__file__).resolve().parents[2]
TINY = dict(type='PromptIR', dim=8, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1, heads=[1, 1, 1, 1],
            ffn_expansion_factor=2, prompt_len=3, prompt_dims=[4, 8, 8], prompt_sizes=[4, 4, 4])


@pytest.fixture(scope='module')
def tiny_net():
    torch.manual_seed(0)
    net = build_network(dict(TINY)).eval()
    with torch.no_grad():
        net.output.weight.mul_(5)  # a visible, channel-dependent change, so a BGR/RGB swap shows
    return net


@pytest.fixture
def weights(tmp_path, tiny_net):
    path = tmp_path / 'net_g_latest.pth'
    torch.save({'params': tiny_net.state_dict()}, path)
    return path


def _photo(h, w, seed):
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.random((h, w, 3)).astype(np.float32), (0, 0), 2)
    return (img - img.min()) / (img.max() - img.min())


@pytest.fixture
def photos(tmp_path):
    """Odd sizes, every mode and depth; a sub-folder; a corrupt file; a text file."""
    root = tmp_path / 'in'
    (root / 'sub').mkdir(parents=True)
    cv2.imwrite(str(root / 'odd.png'), (_photo(37, 29, 1) * 255).round().astype(np.uint8))
    cv2.imwrite(str(root / 'gray8.png'), (_photo(25, 31, 2)[..., 0] * 255).round().astype(np.uint8))
    cv2.imwrite(str(root / 'gray16.png'), (_photo(33, 21, 3)[..., 1] * 65535).round().astype(np.uint16))
    rgba = np.concatenate([(_photo(27, 35, 4) * 255).round(), np.arange(27 * 35).reshape(27, 35, 1) % 256], 2)
    cv2.imwrite(str(root / 'rgba.png'), rgba.astype(np.uint8))
    cv2.imwrite(str(root / 'photo.jpg'), (_photo(30, 26, 5) * 255).round().astype(np.uint8))
    cv2.imwrite(str(root / 'sub' / 'deep.png'), (_photo(19, 23, 6) * 255).round().astype(np.uint8))
    (root / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\n' + b'\x00' * 40)
    (root / 'notes.txt').write_text('not an image')
    return root


def _net_rgb(net, rgb):
    """What the network makes of an (H, W, 3) RGB float image, untiled: (H, W, 3) clamped."""
    with torch.no_grad():
        out = net(torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32))[None])
    return out[0].clamp(0, 1).permute(1, 2, 0).numpy()


def _read(path):
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def test_restore_keeps_size_mode_depth_and_values(photos, weights, tiny_net, tmp_path, capsys):
    """Untiled: every output equals the network's result on the input, stored in the input's mode and
    depth (guards the 8/16-bit scales, RGB/BGR order, gray averaging, alpha pass-through); the corrupt
    file is named, the others are written, the exit status is 1; sub-folders are mirrored."""
    out = tmp_path / 'out'
    status = cli.main(['restore', '-i', str(photos), '-o', str(out), '--weights', str(weights)])
    printed = capsys.readouterr().out
    assert status == 1
    assert 'failed 1 file(s)' in printed and 'broken.png' in printed.split('failed 1 file(s)')[1]
    assert 'notes.txt' in printed and 'restored 6 image(s)' in printed
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob('*') if p.is_file()) == \
        ['gray16.png', 'gray8.png', 'odd.png', 'photo.jpg', 'rgba.png', 'sub/deep.png']

    odd = _read(out / 'odd.png')
    assert odd.shape == (37, 29, 3) and odd.dtype == np.uint8
    expected = _net_rgb(tiny_net, _read(photos / 'odd.png')[..., ::-1] / 255.)
    np.testing.assert_allclose(odd[..., ::-1] / 255., expected, atol=1.01 / 255)

    gray16 = _read(out / 'gray16.png')
    assert gray16.shape == (33, 21) and gray16.dtype == np.uint16
    source = _read(photos / 'gray16.png') / 65535.
    expected = _net_rgb(tiny_net, np.repeat(source[..., None], 3, 2).astype(np.float32)).mean(2)
    np.testing.assert_allclose(gray16 / 65535., expected, atol=1.01 / 65535)
    assert np.abs(gray16 / 65535. - source).mean() > 1e-3  # restored, not copied

    gray8 = _read(out / 'gray8.png')
    assert gray8.shape == (25, 31) and gray8.dtype == np.uint8

    rgba, rgba_in = _read(out / 'rgba.png'), _read(photos / 'rgba.png')
    assert rgba.shape == (27, 35, 4) and rgba.dtype == np.uint8
    np.testing.assert_array_equal(rgba[..., 3], rgba_in[..., 3])
    np.testing.assert_allclose(rgba[..., 2::-1] / 255., _net_rgb(tiny_net, rgba_in[..., 2::-1] / 255.),
                               atol=1.01 / 255)

    jpg = _read(out / 'photo.jpg')
    assert jpg.shape == (30, 26, 3) and jpg.dtype == np.uint8
    expected = _net_rgb(tiny_net, _read(photos / 'photo.jpg')[..., ::-1] / 255.)
    expected = (expected[..., ::-1] * 255).round().astype(np.uint8)  # BGR, then as JPEG quality 95
    expected = cv2.imdecode(cv2.imencode('.jpg', expected, [cv2.IMWRITE_JPEG_QUALITY, 95])[1], cv2.IMREAD_COLOR)
    assert np.abs(jpg.astype(float) - expected).mean() < 1
    assert _read(out / 'sub' / 'deep.png').shape == (19, 23, 3)


def test_tiled_restore_keeps_size_mode_and_depth(photos, weights, tmp_path, capsys):
    """With tiles smaller than every image (several tiles each, blended): same files, sizes, modes and
    depths; alpha untouched; --suffix and --compare (input and restored side by side, labelled)."""
    (photos / 'broken.png').unlink()
    out = tmp_path / 'tiled'
    status = cli.main(['restore', '-i', str(photos), '-o', str(out), '--weights', str(weights), '--tile-size', '16',
                       '--tile-overlap', '8', '--suffix', '_r', '--compare'])
    assert status == 0, capsys.readouterr()
    assert 'tiles of 16 px overlapping 8 px' in capsys.readouterr().out
    for name, shape, dtype in [('odd', (37, 29, 3), np.uint8), ('gray8', (25, 31), np.uint8),
                               ('gray16', (33, 21), np.uint16), ('rgba', (27, 35, 4), np.uint8)]:
        img = _read(out / f'{name}_r.png')
        assert img.shape == shape and img.dtype == dtype, name
    assert _read(out / 'photo_r.jpg').shape == (30, 26, 3)
    np.testing.assert_array_equal(_read(out / 'rgba_r.png')[..., 3], _read(photos / 'rgba.png')[..., 3])
    umask = os.umask(0)
    os.umask(umask)
    assert (out / 'odd_r.png').stat().st_mode & 0o777 == 0o666 & ~umask  # as any new file, not mkstemp's 0600
    compare = _read(out / 'odd_r_compare.png')
    assert compare.shape[1] == 2 * 29 + GAP and compare.shape[0] > 37 and compare.shape[2] == 3
    assert (out / 'sub' / 'deep_r_compare.png').is_file()


def test_outputs_never_overwrite_inputs(photos, weights, capsys):
    """-o the input folder with no suffix would overwrite every input: refused before anything runs."""
    before = {p: p.read_bytes() for p in photos.rglob('*.png')}
    status = cli.main(['restore', '-i', str(photos), '-o', str(photos), '--weights', str(weights)])
    assert status == 2
    assert 'would overwrite an input' in capsys.readouterr().err
    assert {p: p.read_bytes() for p in photos.rglob('*.png')} == before
    # two inputs that --ext would write to one file
    cv2.imwrite(str(photos / 'odd.bmp'), np.zeros((4, 4, 3), np.uint8))
    status = cli.main(['restore', '-i', str(photos), '-o', str(photos.parent / 'o'), '--weights', str(weights),
                       '--ext', 'png'])
    assert status == 2 and 'both be written' in capsys.readouterr().err
    # an output folder inside the input folder is not walked: a second run restores the same 7 files
    for _ in range(2):
        assert cli.main(['restore', '-i', str(photos), '-o', str(photos / 'restored'), '--weights',
                         str(weights)]) == 1  # broken.png
        assert 'restored 7 image(s)' in capsys.readouterr().out


def test_bad_arguments_are_one_line_errors(photos, weights, tmp_path, capsys):
    for args, message in [(['--weights', str(tmp_path / 'missing.pth')], 'not found'),
                          (['--weights', str(weights), '--arch-opt', 'dim=16'], 'does not match'),
                          (['--weights', str(weights), '--tile-size', '16', '--tile-overlap', '16'], 'tile size > overlap')]:
        status = cli.main(['restore', '-i', str(photos), '-o', str(tmp_path / 'x'), *args])
        err = capsys.readouterr().err
        assert status == 2 and message in err, (args, err)
    empty = tmp_path / 'empty'
    empty.mkdir()
    assert cli.main(['restore', '-i', str(empty), '-o', str(tmp_path / 'x'), '--weights', str(weights)]) == 2
    assert 'no images found' in capsys.readouterr().err


def test_safetensors_and_option_file(photos, tiny_net, tmp_path, capsys):
    """A .safetensors file restores (options read from its keys); --opt takes network_g from a file."""
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in tiny_net.state_dict().items()}, str(tmp_path / 'w.safetensors'))
    (tmp_path / 'net.yml').write_text(yaml.safe_dump({'network_g': TINY}))
    src = photos / 'odd.png'
    for extra in ([], ['--opt', str(tmp_path / 'net.yml')]):
        out = tmp_path / f'out{len(extra)}'
        assert cli.main(['restore', '-i', str(src), '-o', str(out), '--weights', str(tmp_path / 'w.safetensors'),
                         *extra]) == 0
        expected = _net_rgb(tiny_net, _read(src)[..., ::-1] / 255.)
        np.testing.assert_allclose(_read(out / 'odd.png')[..., ::-1] / 255., expected, atol=1.01 / 255)
    assert 'network from the weights + your options' in capsys.readouterr().out


@pytest.mark.slow
def test_demo_size_weights_restore_with_no_options(tmp_path):
    """The real command on a demo-trained-size PromptIR (network_g of options/demo/promptir_demo.yml) saved
    as basicsr does: nothing but --weights is needed; a closing line reports images and speed."""
    network = yaml.safe_load((REPO / 'options' / 'demo' / 'promptir_demo.yml').read_text())['network_g']
    torch.manual_seed(0)
    state = build_network(network).state_dict()
    torch.save({'params': state, 'params_ema': state}, tmp_path / 'net_g_latest.pth')
    cv2.imwrite(str(tmp_path / 'photo.png'), (_photo(41, 53, 7) * 255).round().astype(np.uint8))
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get('PYTHONPATH', ''))
    proc = subprocess.run([sys.executable, '-m', 'promptir_basicsr', 'restore', '-i', 'photo.png', '-o', 'out',
                           '--weights', 'net_g_latest.pth'], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'dim=16' in proc.stdout and "entry 'params_ema'" in proc.stdout
    assert 'restored 1 image(s), 0.00 megapixels' in proc.stdout and 'megapixels/s' in proc.stdout
    assert _read(tmp_path / 'out' / 'photo.png').shape == (41, 53, 3)


@pytest.mark.slow
def test_channels_last_and_compile_flags_keep_the_output(photos, weights, tmp_path, capsys, caplog):
    """--channels-last and --compile (dynamo's ``eager`` backend here: the graph capture without a C++ build)
    give the same pixels as a plain run, tiled and untiled, and the log says they are on; an ONNX model
    refuses them."""
    two = tmp_path / 'two'  # an 8-bit RGB and a 16-bit gray image (each new size costs a trace)
    two.mkdir()
    for name in ('odd.png', 'gray16.png'):
        (two / name).write_bytes((photos / name).read_bytes())
    outputs = {}
    for name, flags in (('plain', []), ('fast', ['--channels-last', '--compile', 'eager'])):
        for tile in ('0', '16'):
            out = tmp_path / f'{name}_{tile}'
            status = cli.main(['restore', '-i', str(two), '-o', str(out), '--weights', str(weights),
                               '--tile-size', tile, '--tile-overlap', '8', *flags])
            log = capsys.readouterr().out
            assert status == 0, log
            if flags:
                assert 'channels-last weights, torch.compile (backend eager)' in log
                assert 'torch.compile failed' not in caplog.text  # compiled, not the eager fallback
            outputs[name, tile] = {p.relative_to(out): _read(p) for p in sorted(out.rglob('*.*'))}
    for tile in ('0', '16'):
        plain, fast = outputs['plain', tile], outputs['fast', tile]
        assert plain.keys() == fast.keys() and len(plain) == 2
        for key in plain:
            assert plain[key].shape == fast[key].shape
            # compiled kernels may round differently: at most one level of 8 bits, a few of 16 bits
            assert np.abs(plain[key].astype(np.int64) - fast[key].astype(np.int64)).max() <= (
                300 if plain[key].dtype == np.uint16 else 1), key
    onnx = tmp_path / 'model.onnx'
    onnx.write_bytes(b'not used')
    status = cli.main(['restore', '-i', str(two), '-o', str(tmp_path / 'x'), '--weights', str(onnx), '--compile'])
    assert status == 2 and '--compile does not apply to an .onnx model' in capsys.readouterr().err


def test_restorer_applies_channels_last_and_compile(tiny_net, monkeypatch):
    """The flags reach the network: 4-D weights channels-last, the forward compiled with the options."""
    import copy
    from promptir_basicsr.inference import Restorer
    seen = []
    monkeypatch.setattr(torch, 'compile', lambda fn, **options: seen.append(options) or fn)
    restorer = Restorer(copy.deepcopy(tiny_net), 'cpu', channels_last=True, compile_options={'backend': 'eager'})
    assert restorer.net.output.weight.is_contiguous(memory_format=torch.channels_last)
    assert seen == [{'backend': 'eager'}] and hasattr(restorer.net.forward, 'compile_failures')
    assert restorer(torch.rand(1, 3, 16, 16)).shape == (1, 3, 16, 16)
    assert not Restorer(copy.deepcopy(tiny_net), 'cpu').net.output.weight.is_contiguous(
        memory_format=torch.channels_last)
