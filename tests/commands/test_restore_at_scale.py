"""Restore at scale: ``--max-memory`` (tiles and batches picked by a measured memory model), the tile overhead in
the closing line, and the onnxruntime backend (a cached, checked export; images within one grey level of torch)."""
import json
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


# ---- the memory model on known numbers (the measurement replaced, so the arithmetic is checked) -----------------
class _Recording(torch.nn.Module):
    """The identity, recording its inputs; ``onnx``: carries a ``session`` as an OnnxNetwork does."""

    def __init__(self, onnx=False):
        super().__init__()
        self.inputs = []
        if onnx:
            self.session = None

    def forward(self, x):
        self.inputs.append(x.clone())
        return x


def _calibrated(monkeypatch, peaks, sides, onnx=False, channels=None):
    """calibrate() with _forward_peak answering ``peaks[side]``; returns (model, restorer, what was measured)."""
    asked = []

    def fake_peak(restorer, side, channels, device):
        asked.append((side, channels, device))
        return peaks[side]

    monkeypatch.setattr(image_restoration, '_forward_peak', fake_peak)
    restorer = Restorer(_Recording(onnx), 'cpu', multiple=8)
    model = calibrate(restorer, sides) if channels is None else calibrate(restorer, sides, channels)
    return model, restorer, asked


def test_calibration_fits_the_line_through_two_sizes(monkeypatch):
    """Sides 60 and 124 run padded to 64 and 128 (4096 and 16 384 pixels). A forward needing 1000 + 100 per pixel
    (410 600 and 1 639 400 bytes) gives exactly that line; a flat pair (1.2 and 1.3 MB: slope 8.1 bytes per pixel)
    takes the floor of half the larger's bytes per pixel (0.5 * 1 300 000 / 16 384 = 39.67) and the fixed part
    that puts the line through the larger point (1 300 000 - 39.67 * 16 384 = 650 000); a line whose fixed part
    would be negative keeps 0."""
    model, restorer, asked = _calibrated(monkeypatch, {60: 410_600, 124: 1_639_400}, (60, 124))
    assert model.per_pixel == pytest.approx(100) and model.fixed == pytest.approx(1000)
    assert model.measured == [(4096, 410_600), (16384, 1_639_400)] and model.safety == 1.25
    assert asked == [(60, 3, torch.device('cpu')), (124, 3, torch.device('cpu'))]
    # the first forward (made before measuring): a seeded 32 x 32 image of the calibration's channels
    assert len(restorer.net.inputs) == 1
    torch.testing.assert_close(restorer.net.inputs[0], torch.rand(1, 3, 32, 32,
                                                                   generator=torch.Generator().manual_seed(32)))
    model = _calibrated(monkeypatch, {60: 1_200_000, 124: 1_300_000}, (60, 124))[0]
    assert model.per_pixel == pytest.approx(1_300_000 / 16384 / 2) and model.fixed == pytest.approx(650_000)
    model = _calibrated(monkeypatch, {60: 100, 124: 1_639_400}, (60, 124))[0]
    assert model.per_pixel == pytest.approx((1_639_400 - 100) / 12288) and model.fixed == 0


def test_calibration_of_one_size_and_of_an_onnx_network(monkeypatch):
    """One size: all of its rise per pixel (409 600 bytes over 64 x 64 pixels: 100), no fixed part. An ONNX
    network (one with a session) gets onnxruntime's safety factor 2; a rise too small to see counts 1 byte."""
    model = _calibrated(monkeypatch, {60: 409_600}, (60,))[0]
    assert (model.fixed, model.per_pixel, model.measured, model.safety) == (0, 100, [(4096, 409_600)], 1.25)
    model = _calibrated(monkeypatch, {60: 409_600}, (60,), onnx=True)[0]
    assert (model.fixed, model.per_pixel, model.measured, model.safety) == (0, 100, [(4096, 409_600)], 2.0)
    model = _calibrated(monkeypatch, {60: 1_200_000, 124: 1_300_000}, (60, 124), onnx=True)[0]
    assert model.safety == 2.0 and model.peak(100) == pytest.approx(2 * (650_000 + 100 * 1_300_000 / 32768))
    model = _calibrated(monkeypatch, {60: 0}, (60,))[0]
    assert model.measured == [(4096, 1)] and model.per_pixel == 1 / 4096
    model, restorer, asked = _calibrated(monkeypatch, {60: 409_600}, (60,), channels=1)
    assert asked == [(60, 1, torch.device('cpu'))] and restorer.net.inputs[0].shape == (1, 1, 32, 32)


def test_calibration_runs_whole_images_and_puts_the_restorer_back(monkeypatch):
    """Calibrating a restorer set to tiles with a planner: the forwards run untiled and unplanned, and its tiles,
    batch, planner and pixel counts are as they were afterwards."""
    planned = []

    def planner(height, width, channels):
        planned.append((height, width))
        return 16, 2

    restorer = Restorer(_Recording(), 'cpu', multiple=8, tile_size=16, tile_batch=2, tile_planner=planner)
    restorer.pixels_computed, restorer.pixels_restored = 50, 40
    model = calibrate(restorer, (40,))
    assert [tuple(x.shape[-2:]) for x in restorer.net.inputs] == [(32, 32), (40, 40)]  # whole images
    assert planned == []
    assert (restorer.tile_size, restorer.tile_batch, restorer.tile_planner) == (16, 2, planner)
    assert (restorer.pixels_computed, restorer.pixels_restored) == (50, 40)
    assert model.measured[0][0] == 1600


def test_forward_peak_is_the_rise_of_the_peak_during_one_forward(monkeypatch):
    """CPU: the peak resident size after the forward less the resident size before it (after resetting the peak);
    CUDA (torch.cuda replaced here: the order and device of its calls): the allocator's peak less what it held.
    The input is a seeded side x side image of the channels asked for."""
    events = []

    def forward(x):
        events.append(('forward', x))

    monkeypatch.setattr(memory, 'reset_peak', lambda: events.append('reset'))
    monkeypatch.setattr(memory, 'resident', lambda: events.append('resident') or 100_000)
    monkeypatch.setattr(memory, 'peak_resident', lambda: events.append('peak') or 350_000)
    assert image_restoration._forward_peak(forward, 40, 2, torch.device('cpu')) == 250_000
    assert [e if isinstance(e, str) else e[0] for e in events] == ['reset', 'resident', 'forward', 'peak']
    torch.testing.assert_close(events[2][1], torch.rand(1, 2, 40, 40, generator=torch.Generator().manual_seed(40)))

    gpu, events = torch.device('cuda', 1), []
    monkeypatch.setattr(torch.cuda, 'synchronize', lambda device: events.append(('sync', device)))
    monkeypatch.setattr(torch.cuda, 'reset_peak_memory_stats', lambda device: events.append(('reset', device)))
    monkeypatch.setattr(torch.cuda, 'memory_allocated', lambda device: events.append(('held', device)) or 1000)
    monkeypatch.setattr(torch.cuda, 'max_memory_allocated', lambda device: events.append(('max', device)) or 4500)
    assert image_restoration._forward_peak(forward, 24, 3, gpu) == 3500
    assert [e[0] for e in events] == ['sync', 'reset', 'held', 'forward', 'max']
    assert all(device == gpu for name, device in events if name != 'forward')
    torch.testing.assert_close(events[3][1], torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(24)))


def test_memory_model_peak_and_largest_forward():
    """safety 2 x (500 + 3 per pixel): 1000 pixels need 7000 bytes; 7010 bytes take (3505 - 500) / 3 = 1001.67 ->
    1001 pixels; 900 bytes not even the fixed part: 0."""
    model = MemoryModel(500, 3, measured=[], safety=2.0)
    assert model.peak(1000) == 7000 and model.peak(0) == 1000
    assert model.largest(7010) == 1001 and model.largest(7000) == 1000 and model.largest(900) == 0
    assert MemoryModel(500, 3, measured=[]).safety == 1.25


def test_a_budget_short_of_one_tile_says_what_it_needs(monkeypatch):
    """4096 x 4096 in 500 MiB while holding 100 MiB: the image's two float copies take 384 MiB, the smallest tile
    (128 x 128: 4 x the overlap 32) 1.25 x (10 MiB + 16 384 000 B) = 32.03 MiB, so at least 516 MiB. --max-memory:
    an error; the default budget: a warning, said once per image size, and the smallest tiles one at a time."""
    mib = 2**20
    model = MemoryModel(10 * mib, 1000, measured=[(1, 1), (2, 2)])
    need = 100 * mib + 384 * mib + 1.25 * (10 * mib + 1000 * 128 * 128)
    text = ('--max-memory 500 MiB is too small for a 4096x4096 image with this network: the process holds 100 MiB, '
            f'the image needs 384 MiB and a tile of 16384 pixels about 32 MiB; give at least {need / mib:.0f} MiB')
    assert f'{need / mib:.0f}' == '516'
    with pytest.raises(image_restoration.UserError) as err:
        _planner(model, 100 * mib, 500 * mib)(4096, 4096)
    assert str(err.value) == text
    lines = []
    planner = _planner(model, 100 * mib, 500 * mib)
    planner.explicit, planner.log = False, lines.append
    monkeypatch.setattr(memory, 'lifetime_peak', lambda: 3 * 2**30)
    assert planner(4096, 4096) == ((128, 128), 1)
    assert planner(4096, 4096) == ((128, 128), 1)
    # per side: tiles of 128 at 0, 96, ..., 41 x 96 and 3968: 43
    assert lines == [f'warning: {text}',
                     '4096x4096: 1849 tiles of 128x128 px, 1 per forward, about 516 MiB at the peak (budget 500 MiB; '
                     'the process peaked at 3.00 GiB so far)']
    planner(4000, 4096)
    assert len(lines) == 4 and lines[2].startswith('warning: --max-memory 500 MiB is too small for a 4096x4000 image')


def test_a_tiled_image_measures_the_slope_then_plans(monkeypatch):
    """The first image calibrates one size (64); one that needs tiles calibrates again at 64 and at the largest side
    the one-size bound allows (a multiple of 8 up to 128), then plans with the line; the whole image when the
    line says it fits after all. Without a budget (no /proc): tiles of 512 (or --tile-size), one per forward."""
    mib = 2**20
    calls = []

    def fake_calibrate(restorer, sides, channels):
        calls.append((tuple(sides), channels))
        if len(sides) == 1:  # the coarse bound: 3000 bytes per pixel, no fixed part
            return MemoryModel(0, 3000, measured=[(4096, 3000 * 4096)])
        return MemoryModel(2 * mib, 200, measured=[(4096, 1), (16384, 2)])

    monkeypatch.setattr(image_restoration, 'calibrate', fake_calibrate)
    restorer = Restorer(torch.nn.Identity(), 'cpu', tile_overlap=32, multiple=8)
    planner = MemoryBudget(restorer, 100 * mib, explicit=True, log=lambda line: None)
    planner._holding = lambda: 20 * mib
    # 1000 x 1000: room 100 - 20 - 24 000 000 B = 57.11 MiB; the bound 1.25 x 3000 x 10^6 does not fit; the bound
    # allows (57.11 MiB / 1.25) / 3000 = 15 970 pixels: side 126 -> 120; the line 1.25 x (2 MiB + 200 x 10^6) =
    # 240.9 MiB does not fit either: (57.11 MiB / 1.25 - 2 MiB) / 200 = 229 055 pixels -> side 472 (isqrt 478) ->
    # 1000 in 3 tiles: ceil((1000 + 2 * 32) / 3) = 355 -> 360; 229 055 // 360^2 = 1
    assert planner(1000, 1000, 3) == ((360, 360), 1)
    assert calls == [((64,), 3), ((64, 120), 3)]
    # a 200 x 200 image with the line: 1.25 x (2 MiB + 200 x 40 000) = 12.1 MiB fits
    assert planner(200, 200, 3) == (None, 1) and len(calls) == 2
    # 400 x 400 first: room 80 MiB - 3 840 000 B = 76.3 MiB; the bound (572 MiB) does not fit, and allows 21 346
    # pixels: side 144, so the slope is measured at 128; the line (1.25 x (2 MiB + 32 000 000 B) = 40.6 MiB) fits
    calls.clear()
    planner = MemoryBudget(restorer, 100 * mib, explicit=True, log=lambda line: None)
    planner._holding = lambda: 20 * mib
    assert planner(400, 400, 3) == (None, 1) and calls == [((64,), 3), ((64, 128), 3)]
    # the same, but the process holds 70 MiB after calibrating (measured again): room 26.3 MiB, the line does not
    # fit: (26.3 MiB / 1.25 - 2 MiB) / 200 = 99 983 pixels -> side 312 -> 400 in 2 tiles: ceil(432 / 2) = 216;
    # 99 983 // 216^2 = 2 of the 4 per forward
    held = iter([20 * mib, 70 * mib])
    planner = MemoryBudget(restorer, 100 * mib, explicit=True, log=lambda line: None)
    planner._holding = lambda: next(held)
    assert planner(400, 400, 3) == ((216, 216), 2)
    monkeypatch.setattr(image_restoration, 'default_budget', lambda device: None)
    unbounded = MemoryBudget(restorer, None, log=lambda line: None)
    assert unbounded(5000, 5000) == (512, 1)
    unbounded.fixed_tile = 256
    assert unbounded(5000, 5000) == (256, 1)


# ---- the backends: the export cache, the timed choice -----------------------------------------------------------
def test_cache_folder_follows_xdg_cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'xdg'))
    assert image_restoration.cache_folder() == str(tmp_path / 'xdg' / 'promptir-basicsr')
    monkeypatch.setenv('HOME', str(tmp_path / 'home'))
    for unset in (lambda: monkeypatch.setenv('XDG_CACHE_HOME', ''), lambda: monkeypatch.delenv('XDG_CACHE_HOME')):
        unset()
        assert image_restoration.cache_folder() == str(tmp_path / 'home' / '.cache' / 'promptir-basicsr')


class _WithBuffers(torch.nn.Module):
    """Weights of several kinds: float parameters, BatchNorm's 0-d int64 counter, an empty buffer, bfloat16."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 3, 1)
        self.norm = torch.nn.BatchNorm2d(3)
        self.register_buffer('empty', torch.zeros(0))
        self.register_buffer('brain_float', torch.arange(4, dtype=torch.bfloat16))


def _digest_by_hand(net):
    """sha256 of 'name:dtype:shape;' then the raw bytes, per weight in order (the documented digest)."""
    import hashlib
    digest = hashlib.sha256()
    for name, tensor in net.state_dict().items():
        digest.update(f'{name}:{tensor.dtype}:{tuple(tensor.shape)};'.encode())
        raw = tensor.reshape(-1).view(torch.uint8) if tensor.numel() else torch.zeros(0, dtype=torch.uint8)
        digest.update(bytes(raw.tolist()))
    return digest.hexdigest()


def test_weights_digest_is_the_weights_not_the_object():
    """The same weights in another object: the same digest (computed here by hand); any value, name, dtype or shape
    changed: another. BatchNorm's 0-d counter is hashed too (it made the digest fail: AirNet has BatchNorms)."""
    torch.manual_seed(0)
    net, twin = _WithBuffers(), _WithBuffers()
    twin.load_state_dict(net.state_dict())
    digest = image_restoration.weights_digest(net)
    assert digest == image_restoration.weights_digest(twin) == _digest_by_hand(net)
    with torch.no_grad():
        twin.norm.num_batches_tracked.add_(1)
    assert image_restoration.weights_digest(twin) != digest
    twin.load_state_dict(net.state_dict())
    with torch.no_grad():
        twin.conv.bias[2] += 1e-6
    assert image_restoration.weights_digest(twin) != digest

    class Plain(torch.nn.Module):
        def __init__(self, **tensors):
            super().__init__()
            for name, tensor in tensors.items():
                self.register_buffer(name, tensor)

    ones = torch.ones(2, 3)
    digests = {image_restoration.weights_digest(Plain(**t)) for t in (
        {'a': ones}, {'b': ones}, {'a': ones.reshape(3, 2)}, {'a': ones.view(torch.int32)})}
    assert len(digests) == 4  # the same bytes under another name, shape or dtype


def test_export_variant_rebuilds_only_what_export_options_change():
    """PromptIR declares no export options: the same network and options back. MoCE-IR exports without routing
    noise: rebuilt with routing_noise False, the same weights, in eval mode (the options given are not changed);
    already without noise: returned as it is."""
    from promptir_basicsr.archs.moce_ir_arch import MoCEIR
    tiny = dict(dim=8, num_blocks=[1, 1, 1, 1], num_dec_blocks=[1, 1, 1], heads=[1, 1, 2, 2], num_refinement_blocks=1)
    net = build_network(dict(TINY))
    assert image_restoration.export_variant(net, dict(TINY)) == (net, dict(TINY))
    torch.manual_seed(0)
    noisy = MoCEIR(**tiny).train()
    options = dict(type='MoCEIR', **tiny)
    rebuilt, rebuilt_options = image_restoration.export_variant(noisy, options)
    assert rebuilt is not noisy and rebuilt_options == {**options, 'routing_noise': False}
    assert 'routing_noise' not in options and not rebuilt.training
    assert all(not module.routing_noise for module in rebuilt.modules() if hasattr(module, 'routing_noise'))
    assert rebuilt.state_dict().keys() == noisy.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(rebuilt.state_dict().values(), noisy.state_dict().values()))
    quiet_options = {**options, 'routing_noise': False}
    assert image_restoration.export_variant(rebuilt, quiet_options)[0] is rebuilt


def test_cached_onnx_export_is_keyed_by_weights_options_and_export_version(tmp_path, monkeypatch):
    """The export (here a stand-in for onnx_bytes: 1.5 MiB of bytes) is written once per weights and options, as
    <type>-<20 hex>.onnx under the cache folder, and read back afterwards; other weights, other options or
    another export version get another file. onnx_bytes is given the network in eval mode on the CPU."""
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path))
    exported = []

    def fake_onnx_bytes(net, network_opt, log):
        exported.append((net.training, next(net.parameters()).device.type, dict(network_opt)))
        log('parity checked')
        return bytes([len(exported)]) * (3 * 2**19), None

    monkeypatch.setattr('promptir_basicsr.interop.export.onnx_bytes', fake_onnx_bytes)
    lines = []
    torch.manual_seed(0)
    net = build_network(dict(TINY)).train()
    path = image_restoration.cached_onnx_export(net, dict(TINY), lines.append)
    folder = tmp_path / 'promptir-basicsr' / 'onnx'
    assert re.fullmatch(re.escape(str(folder)) + r'/PromptIR-[0-9a-f]{20}\.onnx', path)
    assert open(path, 'rb').read() == b'\x01' * (3 * 2**19)
    assert exported == [(False, 'cpu', dict(TINY))]
    assert lines == ['onnxruntime: exporting PromptIR to ONNX once for these weights (checked against torch) ...',
                     'onnxruntime: parity checked', f'onnxruntime: cached {path} (1.5 MiB)']
    lines.clear()
    assert image_restoration.cached_onnx_export(net, dict(TINY), lines.append) == path and len(exported) == 1
    assert lines == [f'onnxruntime: the export of these weights from {path}']
    reordered = dict(reversed(list(TINY.items())))  # the same options written in another order: the same export
    assert image_restoration.cached_onnx_export(net, reordered, lines.append) == path and len(exported) == 1
    twin = build_network(dict(TINY))
    twin.load_state_dict(net.state_dict())
    assert image_restoration.cached_onnx_export(twin, dict(TINY), lines.append) == path and len(exported) == 1
    with torch.no_grad():
        twin.output.weight[0, 0, 0, 0] += 0.5
    paths = {path, image_restoration.cached_onnx_export(twin, dict(TINY), lines.append)}
    paths.add(image_restoration.cached_onnx_export(net, dict(TINY, bias=True), lines.append))
    monkeypatch.setattr(image_restoration, 'ONNX_EXPORT_VERSION', image_restoration.ONNX_EXPORT_VERSION + 1)
    paths.add(image_restoration.cached_onnx_export(net, dict(TINY), lines.append))
    assert len(paths) == 4 == len(exported) and sorted(os.listdir(folder)) == sorted(map(os.path.basename, paths))


def test_best_seconds_is_the_best_timed_round_after_a_first_call(monkeypatch):
    """Calls taking 10 (the untimed first), 3, 5 and 1 s: the best of the 2 timed rounds is 3; of 3 rounds 1."""
    clock, seen = [0.0], []

    def runner_of(durations):
        durations = iter(durations)

        def runner(x):
            seen.append(x)
            clock[0] += next(durations)
        return runner

    monkeypatch.setattr(image_restoration.time, 'perf_counter', lambda: clock[0])
    x = torch.zeros(1)
    assert image_restoration._best_seconds(runner_of([10, 3, 5, 1]), x) == 3
    assert len(seen) == 3 and all(item is x for item in seen)
    assert image_restoration._best_seconds(runner_of([10, 3, 5, 1]), x, rounds=3) == 1


class _FakeOnnxNetwork(torch.nn.Module):
    """Stands for onnx_runtime.OnnxNetwork (no export needed): the identity, recording how it was made."""
    made = []

    def __init__(self, path, device, threads):
        super().__init__()
        _FakeOnnxNetwork.made.append((path, device, threads))

    def forward(self, x):
        return x


def test_measured_backend_times_once_and_keeps_the_verdict(tmp_path, monkeypatch):
    """Both backends timed on the same seeded 128 x 128 image; the verdict is written beside the export, named by
    the thread count (the default: torch's), and read back (no timing) later; the faster wins, torch on a tie;
    the reason gives torch's time over onnxruntime's."""
    monkeypatch.setattr('promptir_basicsr.interop.onnx_runtime.OnnxNetwork', _FakeOnnxNetwork)
    timings, inputs = {'torch': 2.0, 'onnxruntime': 0.5}, []

    def fake_seconds(runner, x):
        inputs.append(x)
        return timings['onnxruntime' if isinstance(runner.net, _FakeOnnxNetwork) else 'torch']

    monkeypatch.setattr(image_restoration, '_best_seconds', fake_seconds)
    model, lines = str(tmp_path / 'PromptIR-abc.onnx'), []
    _FakeOnnxNetwork.made.clear()
    verdict = image_restoration.measured_backend(torch.nn.Identity(), model, 3, lines.append)
    assert verdict == ('onnxruntime', 'auto: onnxruntime 4.00x the speed of torch for this network here')
    record = tmp_path / 'PromptIR-abc.speed-3-threads.json'
    assert json.loads(record.read_text()) == {'torch': 2.0, 'onnxruntime': 0.5, 'side': 128, 'threads': 3}
    assert _FakeOnnxNetwork.made == [(model, 'cpu', 3)]
    assert lines == [f'backend: timed once at 128 x 128, 3 thread(s): torch 2 s, onnxruntime 0.5 s '
                     f'(remembered in {record})']
    expected_x = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    assert len(inputs) == 2 and all(torch.equal(x, expected_x) for x in inputs)
    monkeypatch.setattr(image_restoration, '_best_seconds', lambda runner, x: pytest.fail('timed again'))
    assert image_restoration.measured_backend(torch.nn.Identity(), model, 3, lines.append) == verdict
    assert len(lines) == 1
    # a tie (and the default thread count, torch's) -> torch; a broken record is timed again
    monkeypatch.setattr(image_restoration, '_best_seconds', fake_seconds)
    timings['onnxruntime'] = 2.0
    threads = torch.get_num_threads()
    (tmp_path / f'PromptIR-abc.speed-{threads}-threads.json').write_text('{broken')
    assert image_restoration.measured_backend(torch.nn.Identity(), model, None, lines.append) == (
        'torch', 'auto: onnxruntime 1.00x the speed of torch for this network here')
    assert json.loads((tmp_path / f'PromptIR-abc.speed-{threads}-threads.json').read_text())['threads'] == threads
    timings['onnxruntime'] = 2.5
    (tmp_path / 'PromptIR-abc.speed-3-threads.json').unlink()
    assert image_restoration.measured_backend(torch.nn.Identity(), model, 3, lines.append)[0] == 'torch'


def test_interop_installed_needs_both_packages(monkeypatch):
    import importlib.util
    for missing, expected in ((set(), True), ({'onnx'}, False), ({'onnxruntime'}, False)):
        monkeypatch.setattr(importlib.util, 'find_spec', lambda name: None if name in missing else object())
        assert image_restoration.interop_installed() is expected


def test_an_export_runs_on_the_device_and_threads_asked_for(tmp_path, monkeypatch):
    """An .onnx file is opened by onnxruntime with the device and threads given; a flag that cannot apply names the
    kind of export (ONNX or TorchScript); a missing file is one line."""
    monkeypatch.setattr('promptir_basicsr.interop.onnx_runtime.OnnxNetwork', _FakeOnnxNetwork)
    _FakeOnnxNetwork.made.clear()
    model = tmp_path / 'm.ONNX'
    model.write_bytes(b'')
    net = image_restoration._exported_network(str(model), 'cuda', 5, {'--amp': None})
    assert isinstance(net, _FakeOnnxNetwork) and _FakeOnnxNetwork.made == [(str(model), 'cuda', 5)]
    with pytest.raises(image_restoration.UserError, match=r'^--amp does not apply to an \.onnx model '):
        image_restoration._exported_network(str(model), 'cpu', None, {'--amp': 'bf16'})
    with pytest.raises(image_restoration.UserError, match=r'^--compile does not apply to a TorchScript \.pt module '):
        image_restoration._exported_network(str(tmp_path / 'm.pt'), 'cpu', None, {'--amp': None, '--compile': True})
    with pytest.raises(image_restoration.UserError, match=r'm\.pt: no such file$'):
        image_restoration._exported_network(str(tmp_path / 'm.pt'), 'cpu', None, {})


# ---- open_network: the backend, the tiles, what it says ---------------------------------------------------------
def _opened(**kwargs):
    lines = []
    restorer = image_restoration.open_network(kwargs.pop('net', None) or torch.nn.Identity(), device='cpu',
                                              log=lines.append, **kwargs)
    return restorer, lines


def test_open_network_sets_the_tiles_and_the_budget_and_says_so():
    """--tile-size alone: those tiles, no planner; with --max-memory: a planner for the batch (explicit, the
    budget given); neither: a planner from the free memory (not explicit); the device line says which."""
    restorer, lines = _opened(tile_size=16, tile_overlap=8)
    assert (restorer.tile_size, restorer.tile_overlap, restorer.tile_planner) == (16, 8, None)
    assert lines == ['backend: torch (asked for)', 'device: cpu; tiles of 16 px overlapping 8 px']
    restorer, lines = _opened(tile_size=16, tile_overlap=8, max_memory=2**30)
    planner = restorer.tile_planner
    assert (planner.budget, planner.fixed_tile, planner.explicit, planner.restorer) == (2**30, 16, True, restorer)
    assert lines[1] == ('device: cpu; tiles of 16 px overlapping 8 px, as many per forward as the memory budget '
                        '1.00 GiB allows')
    restorer, lines = _opened(max_memory=3 * 2**29)
    planner = restorer.tile_planner
    assert (restorer.tile_size, planner.budget, planner.fixed_tile, planner.explicit) == (None, 3 * 2**29, None, True)
    assert lines[1] == ('device: cpu; whole images, or tiles overlapping 32 px where the memory budget 1.50 GiB needs '
                        'them')
    restorer, lines = _opened()
    planner = restorer.tile_planner
    assert (planner.budget, planner.fixed_tile, planner.explicit) == (None, None, False)
    assert lines[1] == ('device: cpu; whole images, or tiles overlapping 32 px where the memory budget from the free '
                        'memory needs them')
    planner.log('x')
    assert lines[-1] == 'x'  # the planner says its plans where the command logs


def test_open_network_speed_options_and_threads():
    threads = torch.get_num_threads()
    try:
        restorer, lines = _opened(net=torch.nn.Conv2d(3, 3, 1), amp='bf16', channels_last=True, threads=1,
                                  compile_backend='eager', tile_size=64)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    assert restorer.amp_dtype is torch.bfloat16
    assert lines == ['backend: torch (asked for)',
                     'device: cpu, autocast bf16, channels-last weights, torch.compile (backend eager); tiles of 64 px '
                     'overlapping 32 px']
    with pytest.raises(image_restoration.UserError, match='^--amp fp16 needs CUDA'):
        _opened(amp='fp16')


def test_open_network_auto_falls_back_to_torch_when_the_export_fails(monkeypatch):
    """auto: an export that fails is a note and torch; onnxruntime asked for by name: the failure itself. The
    export is asked for with the options given, else the network's class name as its type."""
    asked = []

    def failing(net, network_opt, log):
        asked.append(network_opt)
        raise RuntimeError('cannot trace this\nsecond line')

    monkeypatch.setattr(image_restoration, 'interop_installed', lambda: True)
    monkeypatch.setattr(image_restoration, 'cached_onnx_export', failing)
    restorer, lines = _opened(backend='auto', tile_size=64)
    assert isinstance(restorer.net, torch.nn.Identity) and asked == [{'type': 'Identity'}]
    assert lines[:2] == ['note: the ONNX export failed (cannot trace this); restoring with torch',
                         'backend: torch (auto: the network does not export to ONNX)']
    pytest.importorskip('onnxruntime')
    with pytest.raises(RuntimeError, match='cannot trace this'):
        _opened(backend='onnxruntime', network_opt={'type': 'Identity', 'dim': 3})
    assert asked[-1] == {'type': 'Identity', 'dim': 3}


def _fake_onnx_file(model, monkeypatch):
    """An empty ``model`` file that onnxruntime's wrapper opens as a :class:`_FakeOnnxNetwork` on the CPU: (the
    file, the fake class)."""
    class FakeOnnx(_FakeOnnxNetwork):
        providers = ['CPUExecutionProvider']
        network_opt = None

    model.write_bytes(b'')
    monkeypatch.setattr('promptir_basicsr.interop.onnx_runtime.OnnxNetwork', FakeOnnx)
    return model, FakeOnnx


def test_open_network_runs_the_export_that_auto_measured_faster(tmp_path, monkeypatch):
    """auto, the export made: the measured verdict decides; onnxruntime runs the cached export (on the CPU, whatever
    the device) and the device line names its providers; torch keeps the network."""
    model, FakeOnnx = _fake_onnx_file(tmp_path / 'PromptIR-x.onnx', monkeypatch)
    monkeypatch.setattr(image_restoration, 'interop_installed', lambda: True)
    monkeypatch.setattr(image_restoration, 'cached_onnx_export', lambda net, network_opt, log: str(model))
    for verdict in ('onnxruntime', 'torch'):
        measured, timed_threads = [], []

        def fake_measured(net, model_path, threads, log, verdict=verdict):
            measured.append((model_path, threads))
            timed_threads.append(torch.get_num_threads())
            return verdict, 'auto: measured'

        monkeypatch.setattr(image_restoration, 'measured_backend', fake_measured)
        FakeOnnx.made.clear()
        restorer, lines = _opened(backend='auto', tile_size=64, threads=None)
        assert measured == [(str(model), None)] and lines[0] == f'backend: {verdict} (auto: measured)'
        if verdict == 'onnxruntime':
            assert isinstance(restorer.net, FakeOnnx) and FakeOnnx.made == [(str(model), 'cpu', None)]
            # --threads applies to torch before the two are timed
            threads, timed_threads = torch.get_num_threads(), []
            try:
                torch.set_num_threads(1)
                _opened(backend='auto', tile_size=64, threads=2)
                assert timed_threads == [2] and measured[-1] == (str(model), 2)
            finally:
                torch.set_num_threads(threads)
            assert lines[1] == 'device: onnxruntime CPUExecutionProvider; tiles of 64 px overlapping 32 px'
        else:
            assert isinstance(restorer.net, torch.nn.Identity) and FakeOnnx.made == []
            assert lines[1] == 'device: cpu; tiles of 64 px overlapping 32 px'


def test_open_network_of_an_export_file_names_it(tmp_path, monkeypatch):
    model, FakeOnnx = _fake_onnx_file(tmp_path / 'm.onnx', monkeypatch)
    lines = []
    restorer = image_restoration.open_network(str(model), device='cpu', log=lines.append, tile_size=32)
    assert isinstance(restorer.net, FakeOnnx) and restorer.device.type == 'cpu'
    assert lines == [f'weights: {model} (ONNX); network: not recorded in the file',
                     'device: onnxruntime CPUExecutionProvider; tiles of 32 px overlapping 32 px']
    # onnxruntime takes its input from host memory whichever device it runs on; --threads applies to torch too
    threads = torch.get_num_threads()
    try:
        FakeOnnx.made.clear()
        torch.set_num_threads(1)
        restorer = image_restoration.open_network(str(model), device='cuda', threads=2, log=lines.append)
        assert restorer.device.type == 'cpu' and FakeOnnx.made == [(str(model), 'cuda', 2)]
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)


# ---- the backend rule, the default budget, the summary -----------------------------------------------------------
def test_choose_backend_on_cuda_and_without_the_extra(monkeypatch):
    monkeypatch.setattr(image_restoration, 'interop_installed', lambda: True)
    monkeypatch.setattr(image_restoration, 'resolve_device', lambda device: torch.device('cuda'))
    assert choose_backend('auto', 'cuda', {'--amp': None}) == ('torch', 'the network runs on CUDA')
    assert choose_backend('auto', 'cuda', {'--amp': 'bf16', '--compile': True, '--channels-last': False}) == (
        'torch', '--amp, --compile apply to torch only')
    monkeypatch.setattr(image_restoration, 'resolve_device', lambda device: torch.device('cpu'))
    assert choose_backend('auto', 'cpu', {'--amp': None}) == ('measure', 'the faster here')
    monkeypatch.setattr(image_restoration, 'interop_installed', lambda: False)
    assert choose_backend('auto', 'cpu', {}) == ('torch', 'the interop extra (onnxruntime) is not installed')
    monkeypatch.undo()
    if not torch.cuda.is_available():
        with pytest.raises(image_restoration.UserError, match='^--device cuda, but no CUDA device'):
            choose_backend('torch', 'cuda', {})
    pytest.importorskip('onnxruntime')
    assert choose_backend('onnxruntime', 'cpu', {'--amp': None}) == ('onnxruntime', 'asked for')


def test_default_budget_is_what_is_held_plus_three_quarters_of_the_free(monkeypatch):
    monkeypatch.setattr(memory, 'resident', lambda: 1000)
    monkeypatch.setattr(memory, 'available', lambda: 4001)
    assert image_restoration.default_budget(torch.device('cpu')) == 1000 + 3000
    monkeypatch.setattr(memory, 'available', lambda: None)
    assert image_restoration.default_budget(torch.device('cpu')) is None
    monkeypatch.setattr(memory, 'available', lambda: 4001)
    monkeypatch.setattr(memory, 'resident', lambda: None)
    assert image_restoration.default_budget(torch.device('cpu')) is None
    gpu = torch.device('cuda', 1)
    monkeypatch.setattr(torch.cuda, 'mem_get_info', lambda device: (8001, 16000) if device == gpu else (0, 0))
    monkeypatch.setattr(torch.cuda, 'memory_allocated', lambda device: 500 if device == gpu else 0)
    assert image_restoration.default_budget(gpu) == 500 + 6000


def test_the_budget_counts_what_is_held_now(monkeypatch):
    """CPU: the resident size after giving freed memory back (0 if unknown); CUDA: the allocator's bytes."""
    events = []
    monkeypatch.setattr(memory, 'trim', lambda: events.append('trim'))
    monkeypatch.setattr(memory, 'resident', lambda: events.append('resident') or 7000)
    planner = MemoryBudget(Restorer(torch.nn.Identity(), 'cpu'), 2**30)
    assert planner._holding() == 7000 and events == ['trim', 'resident']
    monkeypatch.setattr(memory, 'resident', lambda: None)
    assert planner._holding() == 0
    planner.restorer.device = torch.device('cuda', 1)
    monkeypatch.setattr(torch.cuda, 'memory_allocated', lambda device: 900 if device == torch.device('cuda', 1) else 0)
    assert planner._holding() == 900


def test_the_budget_pads_counts_channels_and_caps_batches():
    """Worked by hand as above (1.25 x (10 MiB + 1000 B per pixel), 100 MiB held). 1001 x 999 pads to 1008 x 1000,
    whose whole forward needs 1.25 x (10 MiB + 1 008 000 000 B) = 1214.1 MiB. In 1330 MiB its two 1-channel float
    copies (8 064 000 B) leave 1222.3 MiB: whole; 3 channels (24 192 000 B) leave 1206.9 MiB: tiles, of at most
    1 001 959 pixels: sides of 1000; 1008 rows in 2 tiles overlapping 32: ceil((1008 + 32) / 2) = 520; the 1000
    columns in one. A fixed tile of 128 on a 200 x 200 image with room for hundreds: its 4 tiles in one forward.
    Overlap 8: the smallest tile is 64 (4 x the overlap would be 32)."""
    mib = 2**20
    model = MemoryModel(10 * mib, 1000, measured=[(1, 1), (2, 2)])
    assert _planner(model, 100 * mib, 1330 * mib)(1001, 999, 1) == (None, 1)
    assert _planner(model, 100 * mib, 1330 * mib)(1001, 999, 3) == ((520, 1000), 1)
    fixed = _planner(model, 100 * mib, 1024 * mib)
    fixed.fixed_tile = 128
    assert fixed(200, 200) == ((128, 128), 4)
    small = _planner(model, 100 * mib, 120 * mib, overlap=8)  # room for 1258 pixels: a side of 32 -> 64
    small.explicit = False
    assert small.min_tile == 64 and small(512, 512) == ((64, 64), 1)


def test_tile_overhead_and_the_closing_summary(monkeypatch):
    restorer = Restorer(torch.nn.Identity(), 'cpu')
    monkeypatch.setattr(memory, 'lifetime_peak', lambda: 3 * 2**30)
    assert image_restoration.tile_overhead(restorer) is None
    assert image_restoration.scale_summary(restorer) == '; peak memory 3.00 GiB'
    restorer.pixels_computed, restorer.pixels_restored = 150, 100
    assert image_restoration.tile_overhead(restorer) == 1.5
    assert image_restoration.scale_summary(restorer) == ('; tile overhead 1.50 (pixels computed / pixels restored); '
                                                         'peak memory 3.00 GiB')
    monkeypatch.setattr(memory, 'lifetime_peak', lambda: None)
    assert image_restoration.scale_summary(restorer) == '; tile overhead 1.50 (pixels computed / pixels restored)'


class _Noted(torch.nn.Identity):
    tiling_note = 'tiles are restored differently'


def test_the_budget_warns_once_of_an_architecture_that_tiles_differently():
    """When the budget cuts an image into tiles: the architecture's tiling note, once (the network's own, or the one
    its export records); not for whole images, nor for --tile-size (restore gives it then)."""
    mib = 2**20
    model = MemoryModel(10 * mib, 1000, measured=[(1, 1), (2, 2)])
    for net, note in ((_Noted(), 'tiles are restored differently'), (torch.nn.Identity(), None)):
        lines = []
        planner = _planner(model, 100 * mib, 1024 * mib)
        planner.restorer.net, planner.log = net, lines.append
        planner(512, 512)  # whole
        assert lines == []
        planner(4096, 4096)
        planner(4096, 2048)
        assert [line for line in lines if line.startswith('warning')] == ([f'warning: {note}'] if note else [])
        assert len(lines) == 2 + bool(note)
    exported = torch.nn.Identity()
    exported.network_opt = {'type': 'AdaIR'}
    lines = []
    planner = _planner(model, 100 * mib, 1024 * mib)
    planner.restorer.net, planner.log = exported, lines.append
    planner(4096, 4096)
    assert lines[0].startswith('warning: AdaIR restores each tile on its own')
    lines = []
    planner = _planner(model, 100 * mib, 1024 * mib)
    planner.restorer.net, planner.log, planner.fixed_tile = exported, lines.append, 128
    planner(4096, 2048)
    assert len(lines) == 1 and not lines[0].startswith('warning')


def test_a_forward_that_needs_exactly_the_room_left_runs_whole(monkeypatch):
    """1.25 x 1 byte per pixel: a 64 x 64 RGB image needs 5120 bytes beside its two float copies (98 304 B). The
    same after measuring the slope: a 200 x 200 image (960 000 B of copies) whose one-size bound (2 B per pixel:
    100 000 B) does not fit in 50 000 B of room, but whose line (1 B per pixel: 50 000 B) just does."""
    model = MemoryModel(0, 1, measured=[(1, 1), (2, 2)])
    assert _planner(model, 1000, 1000 + 98_304 + 5120)(64, 64) == (None, 1)
    with pytest.raises(image_restoration.UserError, match='too small'):  # a byte less: not even as one tile
        _planner(model, 1000, 1000 + 98_304 + 5119)(64, 64)
    monkeypatch.setattr(image_restoration, 'calibrate', lambda restorer, sides, channels: model)
    planner = _planner(MemoryModel(0, 2, measured=[(4096, 8192)]), 1000, 1000 + 960_000 + 50_000)
    assert planner(200, 200) == (None, 1) and planner.model is model


def test_open_network_asks_the_backend_rule_about_the_device_given(monkeypatch):
    """The backend rule sees the --device given (auto means torch on CUDA), with the torch-only flags as given."""
    asked = []

    def rule(backend, device, flags):
        asked.append((backend, device, flags))
        return 'torch', 'recorded'

    monkeypatch.setattr(image_restoration, 'choose_backend', rule)
    restorer, lines = _opened(backend='auto', channels_last=True)
    assert asked == [('auto', 'cpu', {'--amp': None, '--channels-last': True, '--compile': False})]
    assert lines[0] == 'backend: torch (recorded)'
