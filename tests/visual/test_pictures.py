"""Pictures of what the models do: validation grids (files and tensorboard), `basicsr plot` and
`basicsr prompts`, from a short run of the PromptIR demo in a temporary folder."""
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from promptir_basicsr import cli
from promptir_basicsr.visual.curves import RunCurves, read_log, read_run
from promptir_basicsr.visual.grids import GAP, ValidationGrid
from promptir_basicsr.visual.prompt_maps import mutual_information

REPO = Path(__file__).resolve().parents[2]
SETS = ['Noise15', 'Noise25', 'Noise50', 'Rain', 'Haze']


@pytest.fixture(scope='module')
def demo_run(tmp_path_factory):
    """4 iterations of options/demo/promptir_demo.yml (tensorboard and grids on), validating at 2 and 4."""
    root = tmp_path_factory.mktemp('demo')
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get('PYTHONPATH', ''))
    proc = subprocess.run([sys.executable, '-m', 'promptir_basicsr', 'train', '-opt',
                           str(REPO / 'options' / 'demo' / 'promptir_demo.yml'), '--force_yml', 'train:total_iter=4',
                           'val:val_freq=2', 'logger:print_freq=1', 'logger:save_checkpoint_freq=4'],
                          cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root


def _png(path):
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert img is not None, path
    return img


@pytest.mark.slow
def test_validation_grids_in_files_and_tensorboard(demo_run):
    """One grid per set and validation: 3 rows (grid_images) of degraded | restored | target, each cell the
    96 px image at 2x (grid_size 192), plus label bars; also in tensorboard as grids/<set>."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    for name in SETS:
        for iteration in (2, 4):
            grid = _png(demo_run / 'experiments' / 'promptir_demo' / 'visualization' / name / f'grid_{iteration}.png')
            assert grid.shape[1] == 3 * 192 + 2 * GAP and grid.shape[2] == 3
            assert 3 * 192 + 2 * GAP < grid.shape[0] < 3 * 192 + 200  # three rows, captions, header and title
    events = EventAccumulator(str(demo_run / 'tb_logger' / 'promptir_demo'), size_guidance={'images': 0})
    events.Reload()
    assert sorted(events.Tags()['images']) == sorted(f'grids/{name}' for name in SETS)
    assert [e.step for e in events.Images('grids/Rain')] == [2, 4]


def test_grid_captions_carry_psnr():
    """The captions are the protocol PSNR against the target: 0.1 off everywhere is 20 dB, 0.01 is 40 dB;
    only the first grid_images images are kept."""
    grid = ValidationGrid(num_images=2, cell_size=64)
    target = torch.full((3, 20, 30), 0.5)
    for i in range(3):
        grid.add(f'img{i}', target + 0.1, target + 0.01, target)
    assert [[caption for _, caption in row] for row in grid.rows] == [['20.00 dB', '40.00 dB', 'img0'],
                                                                      ['20.00 dB', '40.00 dB', 'img1']]
    picture = grid.render('Set @ 7')
    assert picture.shape[1] == 3 * 60 + 2 * GAP  # 30 px wide images, enlarged 2x (64 // 30)


def test_log_parsing_places_validations_at_their_iteration(tmp_path):
    """basicsr does not log a validation's iteration: the last logged iteration rounded up to val_freq,
    capped at total_iter; 'weights unchanged' lines pin it; a resumed run continues from its iteration."""
    log = tmp_path / 'train_x.log'
    line = '2026 INFO: [x..][epoch:  {}, iter:      {:2d}, lr:({})] [eta: 0:00:01, time (data): 0.1 (0.0)] l_pix: {} '
    log.write_text('\n'.join([
        '  val:', '    val_freq: 4', '  train:', '    total_iter: 10',
        '2026 INFO: Start training from epoch: 0, iter: 0',
        line.format(0, 3, '1.000e-03,', '5.0e-01'),
        '2026 INFO: Input (degraded) A: psnr: 20.0000, ssim: 0.5000',
        '2026 INFO: Validation A', '\t # psnr: 25.0000\tBest: 25.0000 @ 4 iter', '',
        line.format(1, 9, '5.000e-04,', '2.5e-01'),
        '2026 INFO: Validation A', '\t # psnr: 26.0000\tBest: 26.0000 @ 10 iter', '',
        '2026 INFO: Validation A at iter 8: weights unchanged since the last validation, results repeated.',
        '2026 INFO: Validation A', '\t # psnr: 24.0000\tBest: 26.0000 @ 10 iter', '',
        '2026 INFO: Resuming training from epoch: 1, iter: 11',
        line.format(1, 12, '2.000e-04,', '1.0e-01'),
    ]))
    curves = RunCurves('x')
    read_log(log, curves)
    assert curves.series[('metric', 'A', 'psnr')] == {4: 25.0, 10: 26.0, 8: 24.0}
    assert curves.series[('loss', 'l_pix')] == {3: 0.5, 9: 0.25, 12: 0.1}
    assert curves.series[('lr', 'lr')] == {3: 1e-3, 9: 5e-4, 12: 2e-4}
    assert curves.references == {('A', 'psnr'): 20.0, ('A', 'ssim'): 0.5}


@pytest.mark.slow
def test_plot_one_and_several_runs(demo_run, tmp_path, capsys):
    """Panels: l_pix, learning rate, and PSNR of the 5 sets = 7 panels in 3 columns x 3 rows of 4.2 x 3.2
    inches at 100 dpi; validations at 2 and 4 read from the log and tensorboard alike; runs overlay."""
    run = demo_run / 'experiments' / 'promptir_demo'
    assert cli.main(['plot', str(run), '-o', str(tmp_path / 'curves.png')]) == 0
    printed = capsys.readouterr().out
    assert '7 panels (loss l_pix, learning rate, Noise15 psnr, Noise25 psnr, Noise50 psnr, Rain psnr, Haze psnr)' \
        in printed and 'tb_logger' in printed and '10 psnr values' in printed
    assert _png(tmp_path / 'curves.png').shape[:2] == (960, 1260)
    other = tmp_path / 'other' / 'promptir_demo'  # a copy of the log only: another run with the same name
    other.mkdir(parents=True)
    for log in run.glob('*.log'):
        (other / log.name).write_text(log.read_text())
    from_log = read_run(str(other))  # the log alone places the validations at 2 and 4 too
    assert from_log.sources == [str(p) for p in sorted(other.glob('*.log'))]
    assert sorted(from_log.series[('metric', 'Rain', 'psnr')]) == [2, 4]
    assert cli.main(['plot', str(run), str(other), '-o', str(tmp_path / 'two.png')]) == 0
    assert _png(tmp_path / 'two.png').shape[:2] == (960, 1260)
    assert cli.main(['plot', str(tmp_path / 'nothing_here'), '-o', str(tmp_path / 'x.png')]) == 2


@pytest.mark.slow
def test_prompts_table_and_heatmaps(demo_run, tmp_path, monkeypatch):
    """One table row per degradation (test set), every image's weights summing to 1, and one heatmap per
    prompt block (5 degradations x 5 components)."""
    monkeypatch.chdir(demo_run)  # the option file's data paths are relative
    out = tmp_path / 'prompts'
    assert cli.main(['prompts', '--weights', 'experiments/promptir_demo/models/net_g_latest.pth', '-opt',
                     str(REPO / 'options' / 'demo' / 'promptir_demo_test.yml'), '-o', str(out)]) == 0
    table = json.loads((out / 'prompts.json').read_text())
    assert [row['degradation'] for row in table['rows']] == SETS and table['blocks'] == ['prompt1', 'prompt2',
                                                                                         'prompt3']
    assert all(row['images'] == 3 for row in table['rows']) and len(table['images']) == 15
    for image in table['images']:
        assert all(len(w) == 5 and abs(sum(w) - 1) < 1e-5 for w in image['weights'].values())
    for block, score in table['specialisation'].items():
        assert 0 <= score['normalised'] <= 1 and abs(score['label_entropy_bits'] - np.log2(5)) < 1e-9
    md = (out / 'prompts.md').read_text().splitlines()
    assert sum(line.startswith(f'| {name} | 3 |') for name in SETS for line in md) == 5
    for block in table['blocks']:
        assert _png(out / f'{block}_heatmap.png').shape[:2] == (345, 495)


def test_mutual_information():
    """Components that identify the degradation give I = H(D); a component shared by all gives 0."""
    labels = ['noise', 'noise', 'rain', 'rain', 'haze', 'haze']
    info, entropy = mutual_information(labels, [0, 0, 3, 3, 1, 1])
    assert abs(entropy - np.log2(3)) < 1e-9 and abs(info - entropy) < 1e-9
    assert mutual_information(labels, [2] * 6)[0] == 0
    info, _ = mutual_information(labels, [0, 1, 0, 1, 0, 1])  # independent of the label
    assert abs(info) < 1e-9
