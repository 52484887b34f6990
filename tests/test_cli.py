"""The `basicsr` command end to end: train, auto-resume, test, plugins, usage errors."""
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from cli_helpers import TINY_NET, dump, paired_set, run_cli, train_options


def test_help_and_unknown_subcommand(tmp_path):
    top = run_cli(['--help'], tmp_path)
    assert 'train' in top.stdout and 'test' in top.stdout
    sub = run_cli(['train', '--help'], tmp_path)
    for flag in ('-opt', '--launcher', '--auto_resume', '--debug', '--local_rank', '--force_yml'):
        assert flag in sub.stdout
    bad = run_cli(['frobnicate'], tmp_path, check=False)
    assert bad.returncode == 2 and "unknown subcommand 'frobnicate'" in bad.stderr and 'usage:' in bad.stderr


@pytest.mark.slow
def test_train_resume_test_end_to_end(tiny_data):
    tmp_path = tiny_data
    opt_file = dump(train_options(tmp_path), tmp_path / 'train.yml')
    run_cli(['train', '-opt', opt_file, '--force_yml', 'train:total_iter=10'], tmp_path)
    exp = tmp_path / 'experiments' / 'tiny'
    assert (exp / 'training_states' / '10.state').is_file()
    assert (exp / 'models' / 'net_g_10.pth').is_file()
    first_log = next(exp.glob('train_tiny_*.log')).read_text()
    assert 'Running on: CPU' in first_log or 'Running on: CUDA' in first_log
    assert 'Validation valA' in first_log and 'Validation valB' in first_log

    # From another directory --auto_resume cannot find the run (basicsr keeps runs under the current
    # directory's experiments/): it must say where it looked and that it starts from 0, not restart silently.
    other = tmp_path / 'other'
    other.mkdir()
    opt_file_abs = os.path.abspath(opt_file)
    elsewhere = run_cli(['train', '-opt', opt_file_abs, '--auto_resume', '--force_yml', 'train:total_iter=2'], other)
    looked = other / 'experiments' / 'tiny' / 'training_states'
    assert f'--auto_resume: no training state in {looked}; starting from iteration 0' in elsewhere.stderr
    assert 'Resuming training' not in next((other / 'experiments' / 'tiny').glob('train_tiny_*.log')).read_text()

    # Continue to 20 iterations from the directory the run started in: it resumes at 10, not from 0.
    proc = run_cli(['train', '-opt', opt_file_abs, '--auto_resume'], tmp_path)
    assert '--auto_resume: no training state' not in proc.stderr
    logs = sorted(exp.glob('train_tiny_*.log'))
    resumed_log = logs[-1].read_text()
    assert 'Resuming training from epoch' in resumed_log and 'iter: 10' in resumed_log
    assert 'Start training from epoch' in resumed_log and 'iter: 10' in resumed_log.split('Start training')[1]
    assert (exp / 'training_states' / '20.state').is_file()
    assert not list((tmp_path / 'experiments').glob('tiny_archived_*'))
    state = torch.load(exp / 'training_states' / '20.state', weights_only=True)
    assert state['iter'] == 20

    test_opt = {
        'name': 'tiny_test', 'model_type': 'SRModel', 'scale': 1, 'num_gpu': 'auto',
        'datasets': {'test_1': paired_set('valA', tmp_path / 'data' / 'valA', 'test')},
        'network_g': dict(TINY_NET),
        'path': {'pretrain_network_g': str(exp / 'models' / 'net_g_latest.pth'), 'strict_load_g': True},
        'val': {'save_img': True,
                'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': 0, 'test_y_channel': False}}},
    }
    run_cli(['test', '-opt', dump(test_opt, tmp_path / 'test.yml')], tmp_path)
    results = tmp_path / 'results' / 'tiny_test'
    test_log = next(results.glob('test_tiny_test_*.log')).read_text()
    assert 'Validation valA' in test_log and '# psnr:' in test_log
    psnr = float(test_log.split('# psnr:')[1].split()[0])
    assert 10 < psnr < 80
    assert len(list((results / 'visualization' / 'valA').glob('*.png'))) == 2


PLUGIN = textwrap.dedent('''
    import torch
    from basicsr.utils.registry import ARCH_REGISTRY

    @ARCH_REGISTRY.register()
    class ToyPluginNet(torch.nn.Module):
        """A user's own network, registered from outside the package."""
        def __init__(self, width=4):
            super().__init__()
            self.body = torch.nn.Sequential(torch.nn.Conv2d(3, width, 3, padding=1), torch.nn.ReLU(),
                                            torch.nn.Conv2d(width, 3, 3, padding=1))

        def forward(self, x):
            return x + self.body(x)
''')


@pytest.mark.slow
def test_plugins_key_registers_a_users_arch(tiny_data):
    tmp_path = tiny_data
    plugin_dir = tmp_path / 'my_plugins'
    plugin_dir.mkdir()
    (plugin_dir / 'toy_plugin.py').write_text(PLUGIN)
    opt = train_options(tmp_path, name='plugged', total_iter=2, network={'type': 'ToyPluginNet', 'width': 4})
    opt = {'plugins': ['toy_plugin'], **opt}
    opt_file = dump(opt, plugin_dir / 'plugged.yml')  # the plugin sits beside its option file
    run_cli(['train', '-opt', opt_file], tmp_path)
    log = next((tmp_path / 'experiments' / 'plugged').glob('train_*.log')).read_text()
    assert 'Network [ToyPluginNet] is created.' in log


def test_missing_plugin_is_a_clear_error(tmp_path):
    opt_file = dump({'plugins': ['no_such_plugin_module'], 'name': 'x'}, tmp_path / 'bad.yml')
    proc = run_cli(['train', '-opt', opt_file], tmp_path, check=False)
    assert proc.returncode == 2
    assert 'bad.yml' in proc.stderr and "no_such_plugin_module" in proc.stderr


def test_every_command_parses_without_torch():
    """Guards the fast --help (docs/performance.md): importing every subcommand module and building its parser
    loads neither torch nor basicsr (a heavy import at a command module's top would)."""
    code = ('import sys\nfrom promptir_basicsr.cli import subcommands\n'
            'for name, module in subcommands().items():\n    module.build_parser(name)\n'
            'print(len(subcommands()), "torch" in sys.modules, "basicsr" in sys.modules, "cv2" in sys.modules)')
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    count, *loaded = proc.stdout.split()
    assert int(count) >= 9 and loaded == ['False', 'False', 'False']
