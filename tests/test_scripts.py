"""The scripts in scripts/ run as a user runs them (``python scripts/<name>.py ...``), from another directory.

``convert_checkpoint.py`` is run in tests/utils/test_checkpoints.py, ``create_lmdb.py`` in
tests/data/test_lmdb.py and ``benchmark.py`` by its own quick-mode test.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

from promptir_basicsr.data.demo import TRAIN_PHOTOS, VAL_PHOTOS, scene_of
from promptir_basicsr.utils import results_table as rt

SCRIPTS = Path(__file__).resolve().parents[1] / 'scripts'


def run_script(name, *args, cwd):
    return subprocess.run([sys.executable, str(SCRIPTS / name), *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def test_results_table_script_merges_two_runs(tmp_path):
    """Guards the script's wiring (path setup, arguments, --out) and the merged numbers: the averages are
    recomputed per row and the shared degraded-input row appears once."""
    metrics = ['psnr', 'ssim']
    inputs = rt.make_row(rt.INPUT_ROW, {'Rain': {'psnr': 20.0, 'ssim': 0.6}, 'Haze': {'psnr': 13.0, 'ssim': 0.7}},
                         metrics, reference=True)
    rt.write_table(rt.make_table([rt.make_row('PromptIR', {'Rain': {'psnr': 30.0, 'ssim': 0.9},
                                                           'Haze': {'psnr': 25.0, 'ssim': 0.8}}, metrics), inputs],
                                 metrics), tmp_path / 'results' / 'a')
    rt.write_table(rt.make_table([rt.make_row('AirNet', {'Rain': {'psnr': 28.0, 'ssim': 0.85},
                                                         'Haze': {'psnr': 21.0, 'ssim': 0.75}}, metrics), inputs],
                                 metrics), tmp_path / 'results' / 'b')
    proc = run_script('results_table.py', 'results/a', 'results/b/results_table.json', '--out', 'merged', cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert '| Method | Rain | Haze | Average |' in proc.stdout
    assert '| PromptIR | 30.00/0.9000 | 25.00/0.8000 | 27.50/0.8500 |' in proc.stdout
    assert '| AirNet | 28.00/0.8500 | 21.00/0.7500 | 24.50/0.8000 |' in proc.stdout
    merged = json.loads((tmp_path / 'merged' / rt.JSON_NAME).read_text())
    assert [r['model'] for r in merged['rows']] == ['PromptIR', rt.INPUT_ROW, 'AirNet']
    assert (tmp_path / 'merged' / rt.MD_NAME).read_text().strip() in proc.stdout



def test_results_table_names_a_missing_folder_in_one_line(tmp_path, capsys):
    """Guards the one-line error (exit status 2, no traceback) of the script's entry point."""
    from promptir_basicsr.errors import run_command
    assert run_command('results_table.py', rt.main, [str(tmp_path / 'none')]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f'results_table.py: error: no {rt.JSON_NAME} at {tmp_path / "none"}: give a results folder written by '
        f'`basicsr test` (results/<name>) or its {rt.JSON_NAME}']


def test_make_demo_data_script_writes_the_demo_set(tmp_path):
    """Guards the script's wiring and what it reports: the counts it prints are the files on disk."""
    proc = run_script('make_demo_data.py', '--out', 'somewhere/demo', cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith('Demo data written to somewhere/demo in ')
    root = tmp_path / 'somewhere' / 'demo'
    meta = json.loads((root / 'demo_meta.json').read_text())
    printed = json.loads(proc.stdout.split(':', 1)[1])
    assert printed == meta['files']
    on_disk = {str(Path(folder).relative_to(root)): len(files) for folder, _, files in os.walk(root)
               if any(f.endswith('.png') for f in files)}
    assert on_disk == meta['files'] and meta['files']['train/clean'] == 16 and meta['files']['val/clean'] == 3


def test_demo_train_and_validation_photos_are_different_scenes():
    """Guards the demo's validation numbers against seen data: the stereo motorcycle's two views are one
    scene, so it may appear on one side only (version 1 had the left view in train, the right in val)."""
    assert scene_of('motorcycle_left') == scene_of('motorcycle_right') == 'motorcycle'
    assert {scene_of(p) for p in TRAIN_PHOTOS}.isdisjoint(scene_of(p) for p in VAL_PHOTOS)
    assert len(TRAIN_PHOTOS) == 8 and len(VAL_PHOTOS) == 3
