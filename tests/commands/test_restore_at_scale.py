"""Restore at scale: ``--max-memory`` (tiles and batches picked by a measured memory model), the tile overhead in
the closing line, and the onnxruntime backend (a cached, checked export; images within one grey level of torch)."""
import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from basicsr.archs import build_network

from promptir_basicsr import cli, image_restoration
from promptir_basicsr.image_restoration import MemoryBudget, MemoryModel, calibrate, choose_backend
from promptir_basicsr.inference import Restorer
from promptir_basicsr.utils import memory
from promptir_basicsr.utils.tiling import TileGrid

REPO = Path(__file__).resolve().parents[2]
TINY = dict(type='PromptIR', dim=8, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1, heads=[1, 1, 1, 1],
            ffn_expansion_factor=2, prompt_len=3, prompt_dims=[4, 8, 8], prompt_sizes=[4, 4, 4])


def _weights(path, seed=0):
    torch.manual_seed(seed)
    net = build_network(dict(TINY)).eval()
    with torch.no_grad():
        net.output.weight.mul_(5)  # a visible change of the image
    torch.save({'params': net.state_dict()}, path)
    return path


def _photo(path, height, width, seed=0):
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.random((height, width, 3)).astype(np.float32), (0, 0), 3)
    img = (img - img.min()) / (img.max() - img.min())
    cv2.imwrite(str(path), (img * 255).round().astype(np.uint8))
    return path


def _peak_of(args, cwd):
    """Run `basicsr restore` in a child that prints, last, its peak resident memory over its whole life (VmHWM,
    with what the calibration's resets of VmHWM erased); returns (bytes, output)."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get('PYTHONPATH', ''), OMP_NUM_THREADS='1')
    code = ('import sys\nfrom promptir_basicsr import cli\nfrom promptir_basicsr.utils import memory\n'
            'status = cli.main(sys.argv[1:])\nprint("lifetime peak", memory.lifetime_peak())\nsys.exit(status)')
    proc = subprocess.run([sys.executable, '-c', code, 'restore', *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return int(re.search(r'lifetime peak (\d+)', proc.stdout).group(1)), proc.stdout


@pytest.mark.slow
@pytest.mark.skipif(memory.peak_resident() is None, reason='peak resident memory is read from /proc (Linux)')
def test_max_memory_keeps_the_peak_under_the_budget(tmp_path):
    """A 1024 x 1024 photo restored whole takes the process above 1.4 GiB (measured: the control run); with
    --max-memory 1.4G the same restore stays under it (the process's own VmHWM over its whole life), in tiles
    (the closing line's overhead above 1), and the result stays close to the whole-image one."""
    weights, photo = _weights(tmp_path / 'tiny.pth'), _photo(tmp_path / 'big.png', 1024, 1024)
    budget = int(1.4 * 2**30)
    common = ['-i', str(photo), '--weights', str(weights), '--backend', 'torch', '--threads', '1']
    whole_peak, whole_out = _peak_of(common + ['-o', str(tmp_path / 'whole'), '--max-memory', '64G'], tmp_path)
    assert 'tile overhead 1.00' in whole_out
    assert whole_peak > budget, f'the control run peaked at {whole_peak / 2**30:.2f} GiB: the test proves nothing'
    peak, out = _peak_of(common + ['-o', str(tmp_path / 'tiled'), '--max-memory', '1.4G'], tmp_path)
    assert peak < budget, f'peak {peak / 2**30:.2f} GiB over the 1.4 GiB budget\n{out[-2000:]}'
    reported = re.search(r'; peak memory ([0-9.]+) GiB', out)  # the closing line says the same peak
    assert reported and abs(float(reported.group(1)) * 2**30 - peak) < 0.02 * 2**30
    overhead = float(re.search(r'tile overhead ([0-9.]+) \(pixels computed / pixels restored\)', out).group(1))
    assert 1.0 < overhead < 1.6
    assert re.search(r'1024x1024: \d+ tiles of \d+x\d+ px, \d+ per forward', out)
    whole, tiled = (cv2.imread(str(tmp_path / d / 'big.png')).astype(float) for d in ('whole', 'tiled'))
    assert np.abs(whole - tiled).mean() < 3  # PromptIR's global operations see tiles: close, not equal


def test_a_budget_too_small_is_one_line(tmp_path, capsys):
    weights, photo = _weights(tmp_path / 'tiny.pth'), _photo(tmp_path / 'p.png', 300, 200)
    status = cli.main(['restore', '-i', str(photo), '-o', str(tmp_path / 'o'), '--weights', str(weights),
                       '--backend', 'torch', '--max-memory', '50M'])
    lines = capsys.readouterr().err.replace('\r', '\n').splitlines()
    err = [line for line in lines if line.strip() and 'it/s' not in line and 'image/s' not in line]  # no progress
    assert status == 2 and len(err) == 1 and err[0].startswith('basicsr restore: error: ')
    err = err[0]
    assert re.search(r'--max-memory 50 MiB is too small for a 200x300 image .* give at least [0-9.]+ [MG]iB', err)
    assert not (tmp_path / 'o' / 'p.png').exists()


def test_sizes_are_read_as_people_write_them():
    assert memory.parse_size('4G') == 4 * 2**30 and memory.parse_size('512M') == 512 * 2**20
    assert memory.parse_size('1.5GiB') == int(1.5 * 2**30) and memory.parse_size('2048mb') == 2**31
    assert memory.parse_size('1000') == 1000
    for bad in ('', 'G', '-1G', '4X', '0'):
        with pytest.raises(Exception, match='expected a size'):
            memory.parse_size(bad)


class _Holding:
    """A network that allocates ``bytes_per_pixel`` bytes per input pixel and touches them (so they are resident),
    plus a fixed block, then returns its input."""

    def __init__(self, bytes_per_pixel, fixed):
        self.bytes_per_pixel, self.fixed = bytes_per_pixel, fixed

    def __call__(self, x):
        block = np.ones(int(self.bytes_per_pixel * x.shape[-1] * x.shape[-2] + self.fixed), np.uint8)
        x = x + float(block[-1] - 1)
        del block
        return x


@pytest.mark.skipif(memory.peak_resident() is None, reason='peak resident memory is read from /proc (Linux)')
def test_calibration_measures_what_a_forward_holds():
    """A forward that holds 3000 bytes per pixel and 40 MB besides: the measured model finds both (to within
    what the rest of the forward adds), so the budget rests on measured memory, not on a guess."""
    net = torch.nn.Identity()
    restorer = Restorer(net, 'cpu')
    restorer._forward = _Holding(3000, 40 * 2**20)
    model = calibrate(restorer, sides=(128, 256))
    assert model.per_pixel == pytest.approx(3000, rel=0.15)
    assert model.fixed == pytest.approx(40 * 2**20, rel=0.3)
    assert restorer.pixels_computed == restorer.pixels_restored == 0  # calibration is not counted as work


def _planner(model, held, budget, overlap=32, multiple=8):
    restorer = Restorer(torch.nn.Identity(), 'cpu', tile_overlap=overlap, multiple=multiple)
    planner = MemoryBudget(restorer, budget, explicit=True, log=lambda line: None)
    planner.model, planner._holding = model, lambda: held
    return planner


def test_the_budget_picks_the_whole_image_or_the_largest_fitted_tiles_and_batches():
    """Worked by hand: a forward needs 1.25 x (10 MiB + 1000 bytes per pixel); the process holds 100 MiB; the
    image's two float32 RGB copies take 24 bytes per pixel."""
    mib = 2**20
    model = MemoryModel(10 * mib, 1000, measured=[(1, 1), (2, 2)])
    # 512 x 512 in 500 MiB: room 500 - 100 - 6 = 394 MiB; the whole forward 1.25 x (10 MiB + 262 144 000 B)
    # = 325 MiB fits
    assert _planner(model, 100 * mib, 500 * mib)(512, 512) == (None, 1)
    # 4096 x 4096 in 1 GiB: room 1024 - 100 - 384 = 540 MiB -> (540 MiB / 1.25 - 10 MiB) / 1000 B = 442 499 pixels
    # per forward -> sides of at most 664 (isqrt 665, a multiple of 8) -> 4096 needs 7 of them overlapping 32:
    # fitted side ceil((4096 + 6 * 32) / 7) = 613 -> 616; 442 499 // 616^2 = 1 per forward
    tile, batch = _planner(model, 100 * mib, 1024 * mib)(4096, 4096)
    assert tile == (616, 616) and batch == 1
    assert len(TileGrid(4096, 4096, 616, 32).rows) == 7
    # a strip of 256 x 4096: room 1024 - 100 - 24 = 900 MiB -> 744 488 pixels -> sides of at most 856; the height
    # is one tile of 256; 4096 in 5 tiles: ceil((4096 + 4 * 32) / 5) = 845 -> 848; 744 488 // (256 * 848) = 3
    tile, batch = _planner(model, 100 * mib, 1024 * mib)(256, 4096)
    assert tile == (256, 848) and batch == 3
    # a fixed --tile-size 128 in 1 GiB: only the batch, 442 499 // 128^2 = 27
    fixed = _planner(model, 100 * mib, 1024 * mib)
    fixed.fixed_tile = 128
    assert fixed(4096, 4096) == ((128, 128), 27)
    with pytest.raises(image_restoration.UserError, match='too small'):
        _planner(model, 100 * mib, 500 * mib)(4096, 4096)  # room 16 MiB: not one tile of 128 x 128


def test_auto_backend_rule(monkeypatch):
    pytest.importorskip('onnxruntime')
    assert choose_backend('auto', 'cpu', {})[0] == 'measure'
    assert choose_backend('auto', 'cpu', {'--amp': 'bf16'}) == ('torch', '--amp apply to torch only')
    assert choose_backend('torch', 'cpu', {})[0] == 'torch'
    with pytest.raises(image_restoration.UserError, match='--compile apply to the torch backend only'):
        choose_backend('onnxruntime', 'cpu', {'--compile': True})
    monkeypatch.setattr(image_restoration, 'interop_installed', lambda: False)
    assert choose_backend('auto', 'cpu', {})[0] == 'torch'


def test_the_default_backend_is_torch(tmp_path, monkeypatch, capsys):
    """No --backend: torch, and nothing exported or cached (the first export of a full-size network takes minutes)."""
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'cache'))
    photo = _photo(tmp_path / 'p.png', 40, 48)
    weights = _weights(tmp_path / 'w.pth', seed=0)
    assert cli.main(['restore', '-i', str(photo), '--weights', str(weights), '-o', str(tmp_path / 'o')]) == 0
    log = capsys.readouterr().out
    assert 'backend: torch (asked for)' in log and 'onnxruntime' not in log
    assert not (tmp_path / 'cache').exists()


def test_auto_takes_the_backend_measured_faster_once_and_remembers_it(tmp_path, monkeypatch, capsys):
    """auto on the CPU times both backends once per network (here: made-up timings, torch faster for one
    network, onnxruntime for the other) and reads the verdict back on later runs (no timing again)."""
    pytest.importorskip('onnxruntime')
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'cache'))
    photo = _photo(tmp_path / 'p.png', 40, 48)
    timings = {'torch_faster': {'Restorer-torch': 1.0, 'Restorer-ort': 2.0},
               'ort_faster': {'Restorer-torch': 3.0, 'Restorer-ort': 1.0}}
    for seed, (case, expected) in enumerate([('torch_faster', 'torch'), ('ort_faster', 'onnxruntime')]):
        weights = _weights(tmp_path / f'{case}.pth', seed=seed)

        def fake_seconds(runner, x, table=timings[case]):
            ort = type(runner.net).__name__ == 'OnnxNetwork'
            return table['Restorer-ort' if ort else 'Restorer-torch']

        monkeypatch.setattr(image_restoration, '_best_seconds', fake_seconds)
        command = ['restore', '-i', str(photo), '--weights', str(weights), '--threads', '1', '--backend', 'auto']
        assert cli.main(command + ['-o', str(tmp_path / f'{case}_1')]) == 0
        first = capsys.readouterr().out
        assert 'timed once at 128 x 128, 1 thread(s)' in first and f'backend: {expected} (auto: ' in first

        def no_timing(*args):
            raise AssertionError('timed again')

        monkeypatch.setattr(image_restoration, '_best_seconds', no_timing)
        assert cli.main(command + ['-o', str(tmp_path / f'{case}_2')]) == 0
        second = capsys.readouterr().out
        assert 'timed once' not in second and f'backend: {expected} (auto: ' in second
    assert len(list((tmp_path / 'cache' / 'promptir-basicsr' / 'onnx').glob('*.speed-1-threads.json'))) == 2


def test_onnxruntime_backend_matches_torch_and_reuses_its_cached_export(tmp_path, monkeypatch, capsys):
    """The onnxruntime backend writes images within one grey level of torch's (and not the input); its export is
    made once per weights under $XDG_CACHE_HOME and read back afterwards (the second run never exports); other
    weights get their own export."""
    pytest.importorskip('onnxruntime')
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'cache'))
    weights, photo = _weights(tmp_path / 'tiny.pth'), _photo(tmp_path / 'p.png', 90, 130)
    common = ['restore', '-i', str(photo), '--weights', str(weights)]
    assert cli.main(common + ['-o', str(tmp_path / 'torch'), '--backend', 'torch']) == 0
    assert cli.main(common + ['-o', str(tmp_path / 'ort'), '--backend', 'onnxruntime']) == 0
    first = capsys.readouterr().out
    assert 'exporting PromptIR to ONNX once' in first and 'backend: onnxruntime' in first
    exports = list((tmp_path / 'cache' / 'promptir-basicsr' / 'onnx').glob('*.onnx'))
    assert len(exports) == 1
    stamp = exports[0].stat().st_mtime_ns

    def no_export(*args, **kwargs):
        raise AssertionError('exported again')

    monkeypatch.setattr('promptir_basicsr.interop.export.onnx_bytes', no_export)
    assert cli.main(common + ['-o', str(tmp_path / 'ort2'), '--backend', 'onnxruntime']) == 0
    second = capsys.readouterr().out
    assert 'exporting' not in second and f'the export of these weights from {exports[0]}' in second
    assert exports[0].stat().st_mtime_ns == stamp

    torch_img, ort_img, ort2_img, source = (cv2.imread(str(p)).astype(int) for p in (
        tmp_path / 'torch' / 'p.png', tmp_path / 'ort' / 'p.png', tmp_path / 'ort2' / 'p.png', photo))
    assert np.abs(torch_img - ort_img).max() <= 1
    assert np.array_equal(ort_img, ort2_img)
    assert np.abs(torch_img - source).mean() > 5  # restored, not copied

    monkeypatch.undo()
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'cache'))
    other = _weights(tmp_path / 'other.pth', seed=1)
    assert cli.main(['restore', '-i', str(photo), '--weights', str(other), '-o', str(tmp_path / 'o3'),
                     '--backend', 'onnxruntime']) == 0
    assert 'exporting' in capsys.readouterr().out
    assert len(list((tmp_path / 'cache' / 'promptir-basicsr' / 'onnx').glob('*.onnx'))) == 2
