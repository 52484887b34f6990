"""Each demo option file through the real CLI: a few training iterations with validation, then
``basicsr test`` with its demo test file and the results table. The demo data are created by the
option ``demo_data: true`` in the temporary working directory."""
import json
import os
import os.path as osp
import subprocess
import sys

import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SETS = ['Noise15', 'Noise25', 'Noise50', 'Rain', 'Haze']


def _cli(cwd, *args):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get('PYTHONPATH', ''))
    proc = subprocess.run([sys.executable, '-m', 'promptir_basicsr', *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, f'{args}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-5000:]}'
    return proc


@pytest.mark.slow
@pytest.mark.parametrize('model', ['promptir', 'restormer', 'airnet', 'moce_ir'])
def test_demo_trains_validates_and_tests(model, tmp_path):
    force = ['train:total_iter=4', 'val:val_freq=2', 'logger:print_freq=1', 'logger:save_checkpoint_freq=4']
    if model == 'airnet':
        force.append('train:encoder_iters=2')  # both stages within 4 iterations
    _cli(tmp_path, 'train', '-opt', osp.join(REPO, 'options', 'demo', f'{model}_demo.yml'), '--force_yml', *force)
    assert osp.isfile(tmp_path / 'datasets' / 'demo' / 'demo_meta.json')
    exp = tmp_path / 'experiments' / f'{model}_demo'
    assert osp.isfile(exp / 'models' / 'net_g_latest.pth')
    log = open(next(str(exp / n) for n in os.listdir(exp) if n.endswith('.log'))).read()
    for name in SETS:
        assert f'Input (degraded) {name}: psnr' in log
        # at 2 and at total_iter 4; train_pipeline's extra validation after its loop is not reported again
        assert log.count(f'Validation {name}\n') == 2
    assert '@ 4 iter' in log and '@ 5 iter' not in log  # the final validation is reported at total_iter
    assert 'Multiple validation datasets' not in log  # basicsr's warning, false for our models
    assert f"Demo data (option demo_data): {tmp_path / 'datasets' / 'demo'} (written now" in log
    assert 'OrderedDict' not in log and '    sources:\n    - {name: noise15, ' in log  # the options echoed as YAML
    if model == 'airnet':
        assert 'l_contrast' in log and 'l_pix' in log
    if model == 'moce_ir':
        assert 'l_balance' in log and 'l_pix' in log  # MoCEIRModel: L1 + 0.01 x the routers' balance loss

    _cli(tmp_path, 'test', '-opt', osp.join(REPO, 'options', 'demo', f'{model}_demo_test.yml'))
    results = tmp_path / 'results' / f'{model}_demo_test'
    table = json.loads((results / 'results_table.json').read_text())
    assert table['sets'] == SETS and table['metrics'] == ['psnr', 'ssim']
    assert [r['model'] for r in table['rows']][1] == 'Input (degraded)'
    md = (results / 'results_table.md').read_text()
    assert '| Method | Noise15 | Noise25 | Noise50 | Rain | Haze | Average |' in md
    for name in SETS:
        files = sorted(os.listdir(results / 'visualization' / name))
        assert len(files) == 4 and f'grid_{model}_demo_test.png' in files  # 3 images and their grid
