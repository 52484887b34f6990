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
from basicsr.utils.registry import ARCH_REGISTRY

from image_helpers import quantise, read_with_pillow, write_png, write_tiff, write_with_pillow

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
    """Odd sizes, every mode and depth (written from known samples, in RGB order, by other writers than OpenCV's);
    a sub-folder; a corrupt file; a text file."""
    root = tmp_path / 'in'
    (root / 'sub').mkdir(parents=True)
    write_png(root / 'odd.png', quantise(_photo(37, 29, 1), np.uint8))
    write_png(root / 'gray8.png', quantise(_photo(25, 31, 2)[..., 0], np.uint8))
    write_png(root / 'gray16.png', quantise(_photo(33, 21, 3)[..., 1], np.uint16))
    write_png(root / 'gray_alpha.png', quantise(np.dstack([_photo(23, 17, 9)[..., 0], _photo(23, 17, 10)[..., 1]]),
                                                np.uint8))
    write_png(root / 'rgb16.png', quantise(_photo(19, 26, 11), np.uint16))
    rgba = np.concatenate([quantise(_photo(27, 35, 4), np.uint8), np.arange(27 * 35).reshape(27, 35, 1) % 256], 2)
    write_png(root / 'rgba.png', rgba.astype(np.uint8))
    write_with_pillow(root / 'photo.jpg', quantise(_photo(30, 26, 5), np.uint8), quality=95)
    write_with_pillow(root / 'gray.jpg', quantise(_photo(22, 27, 12)[..., 2], np.uint8), quality=95)
    write_tiff(root / 'rgba16.tif', quantise(np.dstack([_photo(21, 18, 13), _photo(21, 18, 14)[..., :1]]), np.uint16))
    write_png(root / 'sub' / 'deep.png', quantise(_photo(19, 23, 6), np.uint8))
    (root / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\n' + b'\x00' * 40)
    (root / 'notes.txt').write_text('not an image')
    return root


def _net_rgb(net, rgb, **tiles):
    """What the network makes of an (H, W, 3) RGB float image (untiled, or with ``tiles``), clamped to [0, 1]."""
    from promptir_basicsr.inference import Restorer
    x = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32))[None]
    if tiles:
        out = Restorer(net, 'cpu', **tiles)(x)
    else:
        with torch.no_grad():
            out = net(x)
    return out[0].clamp(0, 1).permute(1, 2, 0).numpy()


def _read(path):
    """Samples in RGB[A] order (OpenCV stores BGR[A]: turned here)."""
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    return np.concatenate([img[..., 2::-1], img[..., 3:]], axis=2) if img.ndim == 3 else img


def _as_float(samples):
    return samples / (65535. if samples.dtype == np.uint16 else 255.)


def _expected(net, source, **tiles):
    """The samples (float, [0, 1] units) a restore of ``source`` (RGB[A] / gray[ + alpha] samples) should write:
    gray images restored as RGB and averaged, alpha passed through (in the input's units)."""
    gray = source.ndim == 2 or source.shape[2] == 2
    colour = source[..., 0] if gray and source.ndim == 3 else source[..., :3] if source.ndim == 3 else source
    rgb = np.repeat(_as_float(colour)[..., None], 3, 2) if gray else _as_float(colour)
    out = _net_rgb(net, rgb.astype(np.float32), **tiles)
    out = out.mean(axis=2) if gray else out
    if source.ndim == 3 and source.shape[2] in (2, 4):
        out = np.dstack([np.repeat(out[..., None], 3, 2) if gray else out, _as_float(source[..., -1])])
    return out


def _check(out_path, source, expected, atol_levels=0.51):
    """``out_path`` holds ``expected`` in ``source``'s depth, to within ``atol_levels`` of its sample range."""
    back = _read(out_path)
    top = 65535. if source.dtype == np.uint16 else 255.
    assert back.dtype == source.dtype and back.shape == expected.shape, (out_path, back.shape, expected.shape)
    assert np.abs(back.astype(np.float64) - expected * top).max() <= atol_levels, out_path


def _source(path):
    """The known samples of an input (PNG/TIFF: as written; JPEG: as Pillow decodes them), RGB[A] order."""
    if str(path).endswith('.jpg'):
        return read_with_pillow(path)
    img = _read(path)
    if str(path).endswith('gray_alpha.png'):  # OpenCV reads gray + alpha as BGRA: back to (gray, alpha)
        img = img[..., [0, 3]]
    return img


def test_restore_keeps_size_mode_depth_and_values(photos, weights, tiny_net, tmp_path, capsys):
    """Untiled: every output equals the network's result on the input, stored in the input's mode and depth:
    8/16-bit gray, gray + alpha, 8/16-bit RGB, RGBA (alpha untouched), 16-bit RGBA TIFF, RGB and gray JPEG (after
    JPEG's own rounding); the corrupt file is named, the others written, exit status 1; sub-folders mirrored."""
    out = tmp_path / 'out'
    status = cli.main(['restore', '-i', str(photos), '-o', str(out), '--weights', str(weights)])
    printed = capsys.readouterr().out
    assert status == 1
    assert 'failed 1 file(s)' in printed and 'broken.png' in printed.split('failed 1 file(s)')[1]
    assert 'notes.txt' in printed and 'restored 10 image(s)' in printed
    names = ['gray.jpg', 'gray16.png', 'gray8.png', 'gray_alpha.png', 'odd.png', 'photo.jpg', 'rgb16.png', 'rgba.png',
             'rgba16.tif', 'sub/deep.png']
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob('*') if p.is_file()) == names
    for name in names:
        source = _source(photos / name)
        expected = _expected(tiny_net, source)
        if name.endswith('.jpg'):  # JPEG: compare after the same quality-95 encoding (a level here and there)
            samples = np.rint(expected * 255).astype(np.uint8)
            encoded = cv2.imencode('.jpg', samples[..., ::-1] if samples.ndim == 3 else samples,
                                   [cv2.IMWRITE_JPEG_QUALITY, 95])[1]
            as_jpeg = cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED)
            back = _read(out / name)
            assert back.shape == samples.shape and back.dtype == np.uint8, name
            assert np.abs(back.astype(float) - (as_jpeg[..., ::-1] if as_jpeg.ndim == 3 else as_jpeg)).mean() < 1, name
            continue
        _check(out / name, source, expected)
        first = (lambda img: img[..., 0] if img.ndim == 3 else img)
        assert np.abs(_as_float(first(_read(out / name))) - _as_float(first(source))).mean() > 1e-3, name  # restored
    rgba = _read(out / 'rgba.png')
    np.testing.assert_array_equal(rgba[..., 3], _read(photos / 'rgba.png')[..., 3])


def test_tiled_restore_writes_the_tiled_network_result(photos, weights, tiny_net, tmp_path, capsys):
    """With tiles smaller than every image (several tiles each, blended): each output holds what the Restorer's
    tiled run gives (and differs from the untiled one: the tiles were used), in the input's mode and depth; alpha
    untouched; --suffix; files get the usual permissions, not mkstemp's 0600."""
    (photos / 'broken.png').unlink()
    out = tmp_path / 'tiled'
    status = cli.main(['restore', '-i', str(photos), '-o', str(out), '--weights', str(weights), '--tile-size', '16',
                       '--tile-overlap', '8', '--suffix', '_r'])
    assert status == 0
    assert 'tiles of 16 px overlapping 8 px' in capsys.readouterr().out
    for name in ('odd', 'gray8', 'gray16', 'gray_alpha', 'rgb16', 'rgba', 'sub/deep'):
        source = _source(photos / f'{name}.png')
        tiled = _expected(tiny_net, source, tile_size=16, tile_overlap=8)
        _check(out / f'{name}_r.png', source, tiled)
        top = 65535. if source.dtype == np.uint16 else 255.
        assert np.abs(_read(out / f'{name}_r.png') - _expected(tiny_net, source) * top).max() > 1, name
    _check(out / 'rgba16_r.tif', _source(photos / 'rgba16.tif'),
           _expected(tiny_net, _source(photos / 'rgba16.tif'), tile_size=16, tile_overlap=8))
    assert _read(out / 'photo_r.jpg').shape == (30, 26, 3) and _read(out / 'gray_r.jpg').shape == (22, 27)
    umask = os.umask(0)
    os.umask(umask)
    assert (out / 'odd_r.png').stat().st_mode & 0o777 == 0o666 & ~umask  # as any new file, not mkstemp's 0600


def test_compare_picture_shows_input_and_restored_and_alpha(photos, weights, tiny_net, tmp_path):
    """--compare: input | restored side by side under their labels, at the images' own pixels; an RGBA input's
    transparency over a grey checkerboard (alpha 0: the board alone; 255: the image)."""
    from promptir_basicsr.visual.grids import CHECKER_CELL, CHECKER_DARK, CHECKER_LIGHT
    (photos / 'broken.png').unlink()
    rgb = quantise(_photo(24, 40, 15), np.uint8)
    alpha = np.zeros((24, 40), np.uint8)
    alpha[:, 20:] = 255
    alpha[:, 18:20] = 128
    write_png(photos / 'half.png', np.dstack([rgb, alpha]))
    out = tmp_path / 'cmp'
    assert cli.main(['restore', '-i', str(photos / 'half.png'), '-o', str(out), '--weights', str(weights),
                     '--compare']) == 0
    picture = _read(out / "half_compare.png")
    assert picture.shape[1] == 2 * 40 + GAP and picture.shape[2] == 3
    top = picture.shape[0] - 24  # the label bars (one height: the images are level) are above the images
    panels = picture[top:, :40], picture[top:, 40 + GAP:]
    restored = np.rint(_expected(tiny_net, np.dstack([rgb, alpha]))[..., :3] * 255)
    rows, cols = np.indices((24, 40)) // CHECKER_CELL
    board = np.where((rows + cols) % 2, CHECKER_DARK, CHECKER_LIGHT)
    for panel, colour in zip(panels, (rgb.astype(float), restored)):
        np.testing.assert_array_equal(panel[:, :18], np.repeat(board[:, :18, None], 3, 2))  # transparent: the board
        assert np.abs(panel[:, 20:].astype(float) - colour[:, 20:]).max() <= 1  # opaque: the image
        half = (colour[:, 18:20] * 128 / 255 + np.repeat(board[:, 18:20, None], 3, 2) * 127 / 255)
        assert np.abs(panel[:, 18:20] - half).max() <= 1  # alpha 128: half and half
    assert (picture[:top] == 255).mean() > 0.5  # the white label bar
    assert (out / 'half.png').is_file()


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
    # an output folder inside the input folder is not walked: a second run restores the same 11 files
    for _ in range(2):
        assert cli.main(['restore', '-i', str(photos), '-o', str(photos / 'restored'), '--weights',
                         str(weights)]) == 1  # broken.png
        assert 'restored 11 image(s)' in capsys.readouterr().out


def test_bad_arguments_are_one_line_errors(photos, weights, tmp_path, capsys):
    for args, message in [(['--weights', str(tmp_path / 'missing.pth')], 'not found'),
                          (['--weights', str(weights), '--arch-opt', 'dim=16'], 'have dim=8 (read from their shapes)'),
                          (['--weights', str(weights), '--tile-size', '16', '--tile-overlap', '16'], 'tile size > overlap')]:
        status = cli.main(['restore', '-i', str(photos), '-o', str(tmp_path / 'x'), *args])
        err = capsys.readouterr().err
        assert status == 2 and message in err, (args, err)
    empty = tmp_path / 'empty'
    empty.mkdir()
    assert cli.main(['restore', '-i', str(empty), '-o', str(tmp_path / 'x'), '--weights', str(weights)]) == 2
    assert 'no images found' in capsys.readouterr().err


def test_restore_parser_needs_an_output_names_the_exports_and_checks_ext(capsys):
    """The parser itself: -o is required, --weights' help names the exports restore runs, --ext is one of the
    writable formats (each refused by argparse before anything loads)."""
    from promptir_basicsr.commands import restore
    parser = restore.build_parser('basicsr restore')
    for argv, message in [(['-i', 'x', '--weights', 'w.pth'], 'the following arguments are required: -o/--output'),
                          (['-i', 'x', '-o', 'y', '--weights', 'w.pth', '--ext', 'gif'],
                           "argument --ext: invalid choice: 'gif'")]:
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args(argv)
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert parser.parse_args(['-i', 'x', '-o', 'y', '--weights', 'w.pth', '--ext', 'tif']).ext == 'tif'
    help_text = ' '.join(parser.format_help().split())
    assert '.onnx (run by onnxruntime) or TorchScript .pt' in help_text


def test_restore_hands_the_engine_every_option_it_was_given(photos, weights, tmp_path, monkeypatch):
    """What ``basicsr restore`` passes to ``open_network`` (which applies threads, AMP, tiles, layout, compile,
    backend and memory budget), recorded before any image is restored."""
    from promptir_basicsr import image_restoration

    seen = {}

    class Recorded(Exception):
        pass

    def recording(net, device, threads, amp, tile_size, tile_overlap, channels_last, compile_, log, refused,
                  **rest):
        seen.update(device=device, threads=threads, amp=amp, tile_size=tile_size, tile_overlap=tile_overlap,
                    channels_last=channels_last, compile=compile_, **rest)
        raise Recorded

    monkeypatch.setattr(image_restoration, 'open_network', recording)
    with pytest.raises(Recorded):
        cli.main(['restore', '-i', str(photos / 'odd.png'), '-o', str(tmp_path / 'out'), '--weights', str(weights),
                  '--threads', '1', '--tile-size', '24', '--tile-overlap', '4', '--channels-last',
                  '--max-memory', '3G'])
    assert (seen['device'], seen['threads'], seen['amp'], seen['tile_size'], seen['tile_overlap']) == \
        ('auto', 1, None, 24, 4)
    assert seen['channels_last'] is True and seen['backend'] == 'torch' and seen['max_memory'] == 3 * 2**30
    assert seen['compile'] is None  # no --compile given
    assert not (tmp_path / 'out').exists() or not any((tmp_path / 'out').iterdir())


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
        expected = _net_rgb(tiny_net, _read(src) / 255.)
        np.testing.assert_allclose(_read(out / 'odd.png') / 255., expected, atol=0.51 / 255)
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
    """The flags reach the network: 4-D weights channels-last, the forward compiled with the options (torch.compile
    replaced here by a wrapper that records its options and counts calls); the restored values are the plain
    network's."""
    import copy
    from promptir_basicsr.inference import Restorer
    seen, calls = [], []

    def fake_compile(fn, **options):
        seen.append(options)
        return lambda *args: calls.append(1) or fn(*args)

    monkeypatch.setattr(torch, 'compile', fake_compile)
    restorer = Restorer(copy.deepcopy(tiny_net), 'cpu', channels_last=True, compile_options={'backend': 'eager'})
    assert restorer.net.output.weight.is_contiguous(memory_format=torch.channels_last)
    assert seen == [{'backend': 'eager'}] and hasattr(restorer.net.forward, 'compile_failures')
    x = torch.rand(1, 3, 16, 24, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(restorer(x), tiny_net(x), rtol=0, atol=1e-5)
    assert calls == [1]  # the compiled forward ran
    plain = Restorer(copy.deepcopy(tiny_net), 'cpu')
    assert not plain.net.output.weight.is_contiguous(memory_format=torch.channels_last) and seen == [{'backend': 'eager'}]


def test_an_ext_that_cannot_store_an_input_is_refused_before_anything_runs(photos, weights, tmp_path, capsys,
                                                                           monkeypatch):
    """--ext jpg with 16-bit and alpha inputs: one line naming the first such input and how many more, exit 2,
    before the weights are read or any image restored (both replaced here by failures); --ext tif stores them all."""
    import promptir_basicsr.image_restoration as image_restoration

    def never(*args, **kwargs):
        raise AssertionError('the planning check must refuse before this')

    with monkeypatch.context() as patches:
        patches.setattr(image_restoration, 'restore_file', never)
        patches.setattr(image_restoration, 'open_network', never)
        for ext, more in (('jpg', 4), ('bmp', 2), ('webp', 2)):  # jpg: 16-bit and alpha; bmp, webp: 16-bit
            out = tmp_path / f'refused_{ext}'
            status = cli.main(['restore', '-i', str(photos), '-o', str(out), '--weights', str(weights), '--ext', ext])
            err = capsys.readouterr().err
            assert status == 2 and err.count('\n') == 1, err
            assert (f'--ext {ext}: {photos / "gray16.png"} (and {more} more input(s)): .{ext} cannot store gray uint16 '
                    'samples without loss; use --ext png (or .tif); nothing was restored') in err
            assert not out.exists()
    assert cli.main(['restore', '-i', str(photos), '-o', str(tmp_path / 'tif'), '--weights', str(weights),
                     '--ext', 'tif']) == 1  # only broken.png fails
    assert _read(tmp_path / 'tif' / 'rgb16.tif').dtype == np.uint16
    assert _read(tmp_path / 'tif' / 'gray_alpha.tif').shape == (23, 17, 4)


def test_a_mismatch_hint_names_only_what_the_command_accepts(photos, weights, tmp_path, capsys):
    """Weights whose keys do not fit the network (a key the network lacks): restore points to its network options
    (it has no --allow-mismatch); convert also offers its --allow-mismatch."""
    state = torch.load(weights, weights_only=True)['params']
    extra = tmp_path / 'extra_key.pth'
    torch.save({'params': {**state, 'extra_head.weight': torch.zeros(3)}}, extra)
    status = cli.main(['restore', '-i', str(photos / 'odd.png'), '-o', str(tmp_path / 'x'), '--weights', str(extra)])
    err = capsys.readouterr().err
    assert status == 2 and 'does not match PromptIR' in err and 'extra_head.weight' in err, err
    assert 'Check the network options (-opt, --arch, --arch-opt)' in err and '--allow-mismatch' not in err
    status = cli.main(['convert', str(extra), str(tmp_path / 'c.pth')])
    err = capsys.readouterr().err
    assert status == 2 and 'or pass --allow-mismatch' in err and not (tmp_path / 'c.pth').exists()
    # an option that differs from what the weights' shapes tell: one line from both, no --allow-mismatch
    for args in (['restore', '-i', str(photos / 'odd.png'), '-o', str(tmp_path / 'x'), '--weights', str(weights)],
                 ['convert', str(weights), str(tmp_path / 'c.pth')]):
        assert cli.main(args + ['--arch-opt', 'dim=16']) == 2
        err = capsys.readouterr().err
        assert 'have dim=8' in err and 'ask dim=16' in err and err.count('\n') == 1 and '--allow-mismatch' not in err


def test_an_option_file_given_as_weights_is_named(photos, tmp_path, capsys):
    """An option file passed to --weights (or to convert) is called what it is, with the flag it belongs to, in one
    line; not a pickle that 'could run code'. A YAML mapping is recognised by its content too."""
    (tmp_path / 'train.yml').write_text(yaml.safe_dump({'network_g': TINY, 'name': 'x'}))
    (tmp_path / 'settings.cfg').write_text(yaml.safe_dump({'network_g': TINY}))
    for path in (tmp_path / 'train.yml', tmp_path / 'settings.cfg'):
        status = cli.main(['restore', '-i', str(photos / 'odd.png'), '-o', str(tmp_path / 'x'), '--weights', str(path)])
        err = capsys.readouterr().err
        assert status == 2 and err.count('\n') == 1, err
        assert f'{path} is an option file (YAML), not weights: use -opt for option files' in err
        assert 'could run code' not in err and 'weights_only' not in err
    assert cli.main(['convert', str(tmp_path / 'train.yml'), str(tmp_path / 'c.pth')]) == 2
    assert 'is an option file (YAML), not weights' in capsys.readouterr().err
    (tmp_path / 'notes.pth').write_text('just some text\n')  # text that is no mapping: torch's own refusal stays
    assert cli.main(['restore', '-i', str(photos / 'odd.png'), '-o', str(tmp_path / 'x'), '--weights',
                     str(tmp_path / 'notes.pth')]) == 2
    assert 'option file' not in capsys.readouterr().err


def test_what_restore_says_along_the_way(photos, weights, tmp_path, capsys, monkeypatch):
    """The log: other files listed (ten, then '...'); the network and the device line (whole images, tiles where
    the memory budget needs them); a file that runs out of memory is listed with the fix, the others written; the
    closing line counts images and megapixels."""
    import promptir_basicsr.image_restoration as image_restoration
    for i in range(11):
        (photos / f'note{i:02d}.txt').write_text('x')
    real = image_restoration.restore_file

    def restore_file(restorer, path, *args):
        if path.endswith('gray8.png'):
            raise torch.OutOfMemoryError('CUDA out of memory (simulated)')
        return real(restorer, path, *args)

    monkeypatch.setattr(image_restoration, 'restore_file', restore_file)
    out = tmp_path / 'o'
    assert cli.main(['restore', '-i', str(photos), '-o', str(out), '--weights', str(weights)]) == 1
    log = capsys.readouterr().out
    skipped = log.split('not images (skipped): 12 file(s): ')[1].split('\n')[0]
    assert skipped.count('.txt') == 10 and skipped.endswith(', ... (readable: .png, .jpg, .jpeg, .bmp, .tif, .tiff, '
                                                            '.webp)')
    assert '; whole images, or tiles overlapping 32 px where the memory budget from the free memory needs them' in log
    assert 'gray8.png: out of memory; restore it with --tile-size 512 (or smaller)' in log
    assert 'failed 2 file(s):' in log and 'restored 9 image(s), 0.0' in log
    assert not (out / 'gray8.png').exists() and (out / 'odd.png').is_file()
    assert cli.main(['restore', '-i', str(photos / 'odd.png'), '-o', str(tmp_path / 't'), '--weights', str(weights),
                     '--tile-size', '16', '--tile-overlap', '8']) == 0
    assert '; tiles of 16 px overlapping 8 px\n' in capsys.readouterr().out


def test_speed_flags_that_cannot_run_here_are_one_line_errors(photos, weights, tmp_path, capsys):
    """--amp fp16 on the CPU (and --device cuda without CUDA) are refused in one line before any image is read."""
    status = cli.main(['restore', '-i', str(photos), '-o', str(tmp_path / 'x'), '--weights', str(weights),
                       '--device', 'cpu', '--amp', 'fp16'])
    err = capsys.readouterr().err
    assert status == 2 and '--amp fp16 needs CUDA; on the CPU use --amp bf16' in err and err.count('\n') == 1
    if not torch.cuda.is_available():
        assert cli.main(['restore', '-i', str(photos), '-o', str(tmp_path / 'x'), '--weights', str(weights),
                         '--device', 'cuda']) == 2
        assert 'no CUDA device is available here' in capsys.readouterr().err
    assert not (tmp_path / 'x').exists()


class _PadNet(torch.nn.Module):
    """A tiny network that pads to 8 as ours do (exports in a second); registered, as an architecture is, so a
    TorchScript export of it finds its size multiple."""
    size_multiple = 8

    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.conv = torch.nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        from promptir_basicsr.utils.tiling import pad_to_multiple
        padded, (h, w) = pad_to_multiple(x, 8)
        return (x + 0.5 * self.conv(padded)[..., :h, :w]).clamp(0, 1)


if '_PadNet' not in ARCH_REGISTRY:
    ARCH_REGISTRY.register(_PadNet)


def test_exports_restore_like_the_network_they_came_from(photos, tmp_path, capsys):
    """An .onnx (onnxruntime, on the CPU) and a TorchScript .pt of a tiny network restore each mode and depth to
    what the network gives, tiled too; the log names the runner and the recorded network; the options an
    export cannot take are refused in one line before any image is read."""
    from promptir_basicsr.interop import export
    net = _PadNet().eval()
    quiet = (lambda *args: None)
    (tmp_path / 'pad.onnx').write_bytes(export.onnx_bytes(net, {'type': '_PadNet', 'k': 1}, log=quiet)[0])
    (tmp_path / 'pad.pt').write_bytes(export.torchscript_bytes(net, {'type': '_PadNet', 'k': 1}, log=quiet)[0])
    (photos / 'broken.png').unlink()
    for model, runner, where in (('pad.onnx', 'ONNX', 'onnxruntime CPUExecutionProvider'), ('pad.pt', 'TorchScript',
                                                                                          'cpu')):
        for tiles in ([], ['--tile-size', '16', '--tile-overlap', '8']):
            out = tmp_path / f'{model}{len(tiles)}'
            assert cli.main(['restore', '-i', str(photos), '-o', str(out), '--weights', str(tmp_path / model),
                             '--device', 'cpu', '--threads', '1', *tiles]) == 0
            log = capsys.readouterr().out
            assert f'weights: {tmp_path / model} ({runner}); network: _PadNet k=1' in log
            assert f'device: {where}; {"tiles of 16 px overlapping 8 px" if tiles else "whole images"}' in log
            for name in ('odd.png', 'gray16.png', 'rgba.png'):
                source = _source(photos / name)
                kwargs = dict(tile_size=16, tile_overlap=8) if tiles else {}
                _check(out / name, source, _expected(net, source, **kwargs), atol_levels=1.01)
        # the other engine asked for by name is refused (none asked: the export's own engine runs, above)
        other = ['--backend', 'torch' if model.endswith('.onnx') else 'onnxruntime']
        for flag in (['--arch', 'PromptIR'], ['--param-key', 'params'], ['--channels-last'], ['--amp', 'bf16'], other):
            assert cli.main(['restore', '-i', str(photos), '-o', str(tmp_path / 'x'), '--weights',
                             str(tmp_path / model), *flag]) == 2
            err = capsys.readouterr().err
            assert f'{" ".join(flag) if flag is other else flag[0]} does not apply to ' in err and \
                err.count('\n') == 1
    assert cli.main(['restore', '-i', str(photos), '-o', str(tmp_path / 'x'), '--weights',
                     str(tmp_path / 'missing.pt')]) == 2
    assert 'missing.pt' in capsys.readouterr().err and not (tmp_path / 'x').exists()


def test_the_ext_check_counts_the_other_inputs(tmp_path):
    """One input --ext cannot store: named alone; two: the first and '(and 1 more input(s))'; none: no error."""
    from promptir_basicsr.commands.restore import check_output_format
    from promptir_basicsr.errors import UserError
    write_png(tmp_path / 'a16.png', np.full((3, 4), 500, np.uint16))
    write_png(tmp_path / 'b16.png', np.full((3, 4), 500, np.uint16))
    write_png(tmp_path / 'c8.png', np.full((3, 4), 5, np.uint8))
    plans = [(str(tmp_path / name), 'out', None) for name in ('c8.png', 'a16.png', 'b16.png')]
    problem = '.jpg cannot store gray uint16 samples without loss; use --ext png (or .tif); nothing was restored'
    with pytest.raises(UserError) as one:
        check_output_format(plans[:2], 'jpg')
    assert str(one.value) == f'--ext jpg: {tmp_path / "a16.png"}: {problem}'
    with pytest.raises(UserError) as two:
        check_output_format(plans, 'jpg')
    assert str(two.value) == f'--ext jpg: {tmp_path / "a16.png"} (and 1 more input(s)): {problem}'
    assert check_output_format(plans, 'png') is None


def test_main_parses_the_arguments_it_is_given(tmp_path):
    from promptir_basicsr.commands import restore
    from promptir_basicsr.errors import UserError
    with pytest.raises(UserError, match=f'^--input {tmp_path / "none"}: no such file or folder$'):
        restore.main(['-i', str(tmp_path / 'none'), '-o', str(tmp_path / 'o'), '--weights', 'w.pth'])


def test_other_files_are_listed_ten_at_most(tmp_path, capsys):
    """A folder of 10 text files names all ten; of 11, ten and '...'; either way no images is one error."""
    from promptir_basicsr.commands import restore
    from promptir_basicsr.errors import UserError
    for count in (10, 11):
        folder = tmp_path / f'notes{count}'
        folder.mkdir()
        for i in range(count):
            (folder / f'n{i:02d}.txt').write_text('x')
        with pytest.raises(UserError, match='no images found'):
            restore.main(['-i', str(folder), '-o', str(tmp_path / 'o'), '--weights', 'w.pth'])
        line = capsys.readouterr().out.split(f'not images (skipped): {count} file(s): ')[1].split('\n')[0]
        assert line.count('.txt') == 10 and line.startswith(str(folder / 'n00.txt'))
        assert line.endswith(('.txt, ... ' if count == 11 else 'n09.txt ') + '(readable: .png, .jpg, .jpeg, .bmp, '
                             '.tif, .tiff, .webp)')


def test_a_tiling_note_is_given_for_tile_size(photos, weights, tmp_path, capsys, monkeypatch):
    """An architecture that restores tiles differently (its tiling_note, asked of the network that runs) is warned
    about when --tile-size asks for tiles; not otherwise."""
    from promptir_basicsr.commands import restore
    asked = []

    def declaration(arch, name):
        asked.append((arch, name))
        return 'tiles differ from the whole image' if name == 'tiling_note' else None

    monkeypatch.setattr(restore, 'declaration', declaration)
    for tiles, warned in (([], False), (['--tile-size', '64'], True)):
        assert cli.main(['restore', '-i', str(photos / 'odd.png'), '-o', str(tmp_path / f'o{len(tiles)}'),
                         '--weights', str(weights), *tiles]) == 0
        assert ('warning: tiles differ from the whole image' in capsys.readouterr().out) is warned
        assert type(asked[-1][0]).__name__ == 'PromptIR' and asked[-1][1] == 'tiling_note'


class _FakeBar:
    """Stands for tqdm in restore (progress bars draw nothing in tests): records what each bar is told."""
    bars = []

    def __init__(self, iterable=None, total=None, **kwargs):
        self.iterable, self.total, self.kwargs, self.n, self.events = iterable, total, kwargs, 0, []
        _FakeBar.bars.append(self)

    def __iter__(self):
        return iter(self.iterable)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.events.append('exit')

    def update(self, count):
        self.n += count
        self.events.append(('update', count, self.total))

    def reset(self):
        self.n = 0
        self.events.append('reset')

    def close(self):
        self.events.append('close')

    def set_postfix_str(self, text):
        self.events.append(('postfix', text))

    @staticmethod
    def write(message, file=None):
        print(message, file=file)


def test_progress_bars_count_images_and_tiles(photos, weights, tmp_path, capsys, monkeypatch):
    """One bar over the images (named as they go), one over the tiles of the current image: reset per image, its
    total the image's tile count, advanced by the tiles each forward ran (a memory budget may run several)."""
    import tqdm
    _FakeBar.bars.clear()
    monkeypatch.setattr(tqdm, 'tqdm', _FakeBar)
    folder = tmp_path / 'two'
    folder.mkdir()
    for name in ('odd.png', 'gray8.png'):  # 37 x 29 and 25 x 31
        (folder / name).write_bytes((photos / name).read_bytes())
    assert cli.main(['restore', '-i', str(folder), '-o', str(tmp_path / 'o'), '--weights', str(weights),
                     '--tile-size', '16', '--tile-overlap', '8']) == 0
    images, tiles = _FakeBar.bars
    assert images.kwargs['unit'] == 'image' and tiles.kwargs['unit'] == 'tile'
    assert [e for e in images.events if e != 'exit'] == [('postfix', 'gray8.png'), ('postfix', 'odd.png')]
    # gray8 (25 x 31, padded 32 x 32): 3 x 3 tiles of 16 overlapping 8; odd (37 x 29 -> 40 x 32): 4 x 3
    assert tiles.events == ['reset', *[('update', 1, 9)] * 9, 'reset', *[('update', 1, 12)] * 12, 'close']


def test_a_file_that_cannot_be_written_is_listed_and_the_rest_restored(photos, weights, tmp_path, capsys):
    """An output path taken by a folder (an OSError on writing): that file is listed as failed, exit status 1, the
    other image written."""
    folder = tmp_path / 'two'
    folder.mkdir()
    for name in ('odd.png', 'gray8.png'):
        (folder / name).write_bytes((photos / name).read_bytes())
    (tmp_path / 'o' / 'odd.png').mkdir(parents=True)
    assert cli.main(['restore', '-i', str(folder), '-o', str(tmp_path / 'o'), '--weights', str(weights)]) == 1
    log = capsys.readouterr().out
    assert 'restored 1 image(s)' in log and f'failed 1 file(s):\n  {folder / "odd.png"}: ' in log
    assert cv2.imread(str(tmp_path / 'o' / 'gray8.png')) is not None


def test_inputs_are_collected_in_order_and_outputs_planned(tmp_path):
    """A file alone; a folder walked in sorted order (sub-folders too, any case of extension), other files listed,
    the output folder inside it left out. Outputs: the relative path under -o, --suffix before the extension,
    --ext replacing it, the compare picture beside; a compare picture that would overwrite another output is
    refused, as is an output that is an input."""
    from promptir_basicsr.commands.restore import collect_inputs, plan_outputs
    from promptir_basicsr.errors import UserError
    root = tmp_path / 'in'
    # names whose order on disk (a hash, on ext4) is not sorted
    for rel in ('b/z.png', 'b/a.JPG', 'z.png', 'a.tif', 'y.png', 'c.webp', 'm.png', 'notes.txt', 'out/old.png',
                'a/readme.md'):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b'')
    assert collect_inputs(str(root / 'c.webp'), str(tmp_path / 'o')) == ([(str(root / 'c.webp'), 'c.webp')], [])
    images, skipped = collect_inputs(str(root), str(root / 'out'))
    assert images == [(str(root / rel), rel) for rel in ('a.tif', 'c.webp', 'm.png', 'y.png', 'z.png', 'b/a.JPG',
                                                          'b/z.png')]
    assert skipped == [str(root / 'notes.txt'), str(root / 'a' / 'readme.md')]
    plans = plan_outputs(images[:2] + images[-2:], 'o', '_r', None, True)
    assert plans == [(str(root / 'a.tif'), 'o/a_r.tif', 'o/a_r_compare.png'),
                     (str(root / 'c.webp'), 'o/c_r.webp', 'o/c_r_compare.png'),
                     (str(root / 'b/a.JPG'), 'o/b/a_r.JPG', 'o/b/a_r_compare.png'),
                     (str(root / 'b/z.png'), 'o/b/z_r.png', 'o/b/z_r_compare.png')]
    assert plan_outputs(images[:1], 'o', '', 'png', False) == [(str(root / 'a.tif'), 'o/a.png', None)]
    clash = [('x/p.png', 'p.png'), ('x/p_compare.png', 'p_compare.png')]
    with pytest.raises(UserError, match='x/p.png and x/p_compare.png would both be written to o/p_compare.png'):
        plan_outputs(clash, 'o', '', None, True)
    assert len(plan_outputs(clash, 'o', '', None, False)) == 2
    with pytest.raises(UserError, match=f'^the output {root}/a.tif would overwrite an input'):
        plan_outputs(images, str(root), '', None, False)


def test_codec_errors_and_out_of_memory_are_listed_and_the_gpu_cache_emptied(photos, weights, tmp_path, capsys,
                                                                             monkeypatch):
    """An OpenCV error on one file and running out of memory on another: both listed, the third written; after
    running out of memory on a GPU machine its cache is emptied (torch.cuda stood in for here)."""
    import promptir_basicsr.image_restoration as image_restoration
    folder = tmp_path / 'three'
    folder.mkdir()
    for name in ('odd.png', 'gray8.png', 'rgba.png'):
        (folder / name).write_bytes((photos / name).read_bytes())
    real, emptied = image_restoration.restore_file, []

    def restore_file(restorer, path, *args):
        if path.endswith('gray8.png'):
            raise cv2.error('codec trouble')
        if path.endswith('odd.png'):
            raise torch.OutOfMemoryError('out of memory (simulated)')
        return real(restorer, path, *args)

    monkeypatch.setattr(image_restoration, 'restore_file', restore_file)
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'empty_cache', lambda: emptied.append(True))
    assert cli.main(['restore', '-i', str(folder), '-o', str(tmp_path / 'o'), '--weights', str(weights),
                     '--device', 'cpu']) == 1
    log = capsys.readouterr().out
    assert 'restored 1 image(s)' in log and 'failed 2 file(s):' in log and 'codec trouble' in log
    assert emptied == [True] and (tmp_path / 'o' / 'rgba.png').is_file()
