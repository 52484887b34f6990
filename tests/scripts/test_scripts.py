"""The scripts in scripts/ run as a user runs them (``python scripts/<name>.py ...``), from another directory.

``create_lmdb.py`` is run in tests/data/test_lmdb.py and ``benchmark.py`` by its own quick-mode test.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

from promptir_basicsr.data.demo import TRAIN_PHOTOS, VAL_PHOTOS, scene_of

SCRIPTS = Path(__file__).resolve().parents[2] / 'scripts'


def run_script(name, *args, cwd):
    return subprocess.run([sys.executable, str(SCRIPTS / name), *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


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
