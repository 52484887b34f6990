"""Every shipped option file and docs snippet: valid for the option checker, documented, and its datasets build.

The paper-recipe files are checked against a miniature copy of the official folder layout and list
files (a few 136x136 images), so their paths, pairing rules and list files are exercised for real; the
demo files against the generated demo data. (That each train and demo file trains under 2-process DDP is
tests/option_files/test_ddp_shipped_files.py.)
"""
import glob
import json
import os.path as osp
import re
import sys

import numpy as np
import pytest
import torch
from basicsr.data import build_dataset
from basicsr.utils.options import ordered_yaml
from cli_helpers import make_official_layout

import yaml
from promptir_basicsr.options.prepare import validate_options

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
FILES = sorted(glob.glob(osp.join(REPO, 'options', '*', '*.yml')))
RECIPES = sorted(glob.glob(osp.join(REPO, 'options', 'train', '*.yml')))
TESTS = sorted(glob.glob(osp.join(REPO, 'options', 'test', '*.yml')))
DEMOS = sorted(glob.glob(osp.join(REPO, 'options', 'demo', '*.yml')))


def _load(path):
    with open(path, encoding='utf-8') as f:
        return yaml.load(f, Loader=ordered_yaml()[0])


def test_the_files_exist():
    names = {osp.relpath(p, osp.join(REPO, 'options')) for p in FILES}
    for name in ('train/promptir_allinone.yml', 'train/restormer_allinone.yml', 'train/airnet_allinone.yml',
                 'train/promptir_5task.yml', 'test/promptir_allinone.yml', 'test/restormer_allinone.yml',
                 'test/airnet_allinone.yml', 'test/promptir_5task.yml', 'demo/promptir_demo.yml',
                 'demo/restormer_demo.yml', 'demo/airnet_demo.yml'):
        assert name in names


@pytest.mark.parametrize('path', FILES, ids=lambda p: osp.relpath(p, REPO))
def test_valid_and_commented(path):
    opt = _load(path)
    validate_options(opt, path, is_train='/test/' not in path and not path.endswith('_test.yml'), check_paths=False)
    text = open(path, encoding='utf-8').read()
    assert text.startswith('#') and text.count('#') > 20, 'option files document their keys'
    for metric in opt['val']['metrics'].values():
        assert metric['type'] in ('calculate_psnr_protocol', 'calculate_ssim_protocol')


def test_recipe_numbers():
    promptir = _load(osp.join(REPO, 'options', 'train', 'promptir_allinone.yml'))
    per_epoch = -(-142431 // 32)
    assert per_epoch == 4451
    assert promptir['train']['total_iter'] == 120 * per_epoch
    assert promptir['train']['scheduler']['warmup_iters'] == 15 * per_epoch
    assert promptir['train']['scheduler']['max_iters'] == 150 * per_epoch
    assert promptir['train']['optim_g'] == {'type': 'AdamW', 'lr': 2e-4, 'weight_decay': 0.01, 'betas': [0.9, 0.999]}
    assert promptir['find_unused_parameters'] is False  # its unused official modules are frozen
    sources = promptir['datasets']['train']['sources']
    counts = {'noise15': 5144, 'noise25': 5144, 'noise50': 5144, 'rain': 200, 'haze': 72135}
    assert sum(counts[s['name']] * s['repeat'] for s in sources) == 142431
    airnet = _load(osp.join(REPO, 'options', 'train', 'airnet_allinone.yml'))
    assert airnet['train']['encoder_iters'] == 40000 and airnet['train']['total_iter'] == 400000
    assert airnet['datasets']['train']['one_per_source'] and airnet['datasets']['train']['num_crops'] == 2


@pytest.fixture
def official_layout(in_tmp_dir):
    return make_official_layout(in_tmp_dir)


def build_datasets(opt):
    """Build every dataset of ``opt`` as basicsr does; {phase: (dataset, its first sample)}."""
    built = {}
    for phase, dataset_opt in opt['datasets'].items():
        dataset_opt = dict(dataset_opt, phase=phase.split('_')[0], scale=1)
        dataset = build_dataset(dataset_opt)
        built[phase] = dataset, dataset[0]
        if phase == 'train':
            size = dataset_opt['gt_size']
            sources = len(dataset_opt['sources'])
            shape = (sources, 3, size, size) if dataset_opt.get('one_per_source') else (3, size, size)
            assert built[phase][1]['lq'].shape == built[phase][1]['gt'].shape == shape
            if dataset_opt.get('num_crops') == 2:
                assert built[phase][1]['lq2'].shape == shape
        else:
            assert torch.is_tensor(built[phase][1]['lq']) and built[phase][1]['lq'].shape == built[phase][1]['gt'].shape
    return built


@pytest.mark.parametrize('path', RECIPES + TESTS, ids=lambda p: osp.relpath(p, REPO))
def test_recipe_datasets_build_on_the_official_layout(path, official_layout):
    opt = _load(path)
    is_train = '/train/' in path
    opt['path']['pretrain_network_g'] = None  # test files point at weights a training writes
    validate_options(opt, path, is_train=is_train, check_paths=True)
    for phase, (_, sample) in build_datasets(opt).items():
        if phase != 'train':
            assert sample['lq'].shape[-1] == 32  # 40 px centre-cropped to a multiple of 16


@pytest.fixture(scope='module')
def demo_root(tmp_path_factory):
    from promptir_basicsr.data.demo import make_demo_data
    root = tmp_path_factory.mktemp('demo_layout')
    make_demo_data(str(root / 'datasets' / 'demo'))
    return root


@pytest.mark.parametrize('path', DEMOS, ids=lambda p: osp.relpath(p, REPO))
def test_demo_datasets_build_on_the_demo_data(path, demo_root, monkeypatch):
    monkeypatch.chdir(demo_root)
    opt = _load(path)
    opt['path']['pretrain_network_g'] = None
    validate_options(opt, path, is_train=not path.endswith('_test.yml'), check_paths=True)
    built = build_datasets(opt)
    assert [len(dataset) for phase, (dataset, _) in built.items() if phase != 'train'] == [3] * 5


def test_five_task_test_file_is_the_training_files_validation():
    """The five-task test protocol and the five-task training's validation: the same sets, read the same way."""
    train = _load(osp.join(REPO, 'options', 'train', 'promptir_5task.yml'))
    test = _load(osp.join(REPO, 'options', 'test', 'promptir_5task.yml'))
    loader_keys = {'num_worker_per_gpu', 'batch_size_per_gpu'}
    val_sets = [{k: v for k, v in d.items() if k not in loader_keys} for k, d in train['datasets'].items()
                if k.startswith('val')]
    assert list(test['datasets'].values()) == val_sets
    assert [d['name'] for d in val_sets] == ['SOTS_outdoor', 'Rain100L', 'BSD68_sigma25', 'GoPro', 'LOL']
    assert test['network_g'] == train['network_g']
    assert test['path']['pretrain_network_g'] == 'experiments/promptir_5task/models/net_g_latest.pth'


def training_doc_blocks(language):
    """The ```language blocks of docs/training.md (the page that shows option fragments and a plugin)."""
    text = open(osp.join(REPO, 'docs', 'training.md'), encoding='utf-8').read()
    return re.findall(rf'^```{language}\n(.*?)^```', text, flags=re.S | re.M)


def merge_fragment(base, fragment):
    """A docs fragment into an option dict: mappings merge key by key, lists (``sources``) are extended."""
    for key, value in fragment.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge_fragment(base[key], value)
        elif isinstance(value, list) and isinstance(base.get(key), list):
            base[key].extend(value)
        else:
            base[key] = value
    return base


def test_training_doc_yaml_snippets_run_as_written(official_layout, monkeypatch):
    """Every ```yaml block of docs/training.md is a fragment of options/train/promptir_allinone.yml (as the page
    says where it shows them); with the ```python blocks written to the file their first line names, each
    passes the option check (plugins imported, paths on the official layout) and its datasets build, the
    sources it adds included. Guards against snippets that name missing folders, keys or degradations."""
    from promptir_basicsr.data.degradations import DEGRADATION_REGISTRY
    from promptir_basicsr.options.prepare import prepare_run
    python_files = []
    for block in training_doc_blocks('python'):
        named = re.match(r'# (\w+)\.py\b', block)
        if named:
            (official_layout / f'{named.group(1)}.py').write_text(block)
            python_files.append(named.group(1))
    yaml_blocks = training_doc_blocks('yaml')
    assert len(yaml_blocks) >= 2 and python_files
    for i, block in enumerate(yaml_blocks):
        fragment = yaml.safe_load(block)
        opt = merge_fragment(_load(osp.join(REPO, 'options', 'train', 'promptir_allinone.yml')), fragment)
        path = official_layout / f'readme_snippet_{i}.yml'
        path.write_text(yaml.safe_dump(json.loads(json.dumps(opt)), sort_keys=False))
        registered = set(DEGRADATION_REGISTRY.keys())
        for module in python_files:
            monkeypatch.delitem(sys.modules, module, raising=False)
        try:
            checked = prepare_run(str(path))
            train_set, _ = build_datasets(checked)['train']
        finally:  # a plugin registers its ops once per import
            for name in set(DEGRADATION_REGISTRY.keys()) - registered:
                DEGRADATION_REGISTRY._obj_map.pop(name)
        added = [s['name'] for s in fragment.get('datasets', {}).get('train', {}).get('sources', [])]
        for name in added:
            index = [s.name for s in train_set.sources].index(name)
            sample = train_set.load(index, 0, np.random.default_rng(0))
            assert not torch.equal(sample['lq'], sample['gt']), f'docs/training.md source {name} is not degraded'


@pytest.mark.parametrize('model', ['promptir', 'restormer', 'airnet', 'adair', 'moce_ir'])
def test_demo_test_files_match_their_training(model):
    train = _load(osp.join(REPO, 'options', 'demo', f'{model}_demo.yml'))
    test = _load(osp.join(REPO, 'options', 'demo', f'{model}_demo_test.yml'))
    assert test['network_g'] == train['network_g'] and test['model_type'] == train['model_type']
    assert test['path']['pretrain_network_g'] == f'experiments/{train["name"]}/models/net_g_latest.pth'
    assert [d['name'] for d in test['datasets'].values()] == [d['name'] for k, d in train['datasets'].items()
                                                              if k.startswith('val')]


@pytest.mark.parametrize('variant, dim', [('moce_ir', 48), ('moce_ir_s', 32)])
@pytest.mark.parametrize('task, per_epoch, samples', [('allinone', 4451, 142431), ('5task', 5083, 162646)])
def test_moce_ir_recipes(variant, dim, task, per_epoch, samples):
    """MoCE-IR / MoCE-IR-S, three and five tasks (eduardzamfir/MoCE-IR src/options.py, src/train.py, README): the
    released network, 120 of 150 planned epochs with a 15-epoch warm-up stepped per epoch, AdamW 2e-4, L1 + 0.01 x
    balance, DDP allowed unused experts; the test file's network and sets are the training's."""
    train = _load(osp.join(REPO, 'options', 'train', f'{variant}_{task}.yml'))
    assert -(-samples // 32) == per_epoch
    counts = {'noise15': 5144, 'noise25': 5144, 'noise50': 5144, 'rain': 200, 'haze': 72135, 'blur': 2103,
              'lowlight': 485}
    assert sum(counts[s['name']] * s['repeat'] for s in train['datasets']['train']['sources']) == samples
    assert train['model_type'] == 'MoCEIRModel' and train['find_unused_parameters'] is True
    assert train['train']['total_iter'] == 120 * per_epoch
    assert train['train']['scheduler'] == {'type': 'LinearWarmupCosineLR', 'warmup_iters': 15 * per_epoch,
                                           'max_iters': 150 * per_epoch, 'warmup_start_lr': 0, 'eta_min': 0,
                                           'step_size': per_epoch}
    assert train['train']['optim_g'] == {'type': 'AdamW', 'lr': 2e-4, 'weight_decay': 0.01, 'betas': [0.9, 0.999]}
    assert train['train']['balance_loss_weight'] == 0.01 and 'fft_opt' not in train['train']
    assert train['datasets']['train']['gt_size'] == 128 and train['datasets']['train']['batch_size_per_gpu'] == 8
    network = dict(train['network_g'])
    assert network.pop('dim') == dim
    from promptir_basicsr.archs.moce_ir_arch import _DEFAULTS
    assert {k: list(v) if isinstance(v, tuple) else v for k, v in _DEFAULTS.items() if k != 'dim'} == \
        {k: v for k, v in network.items() if k != 'type'}
    test = _load(osp.join(REPO, 'options', 'test', f'{variant}_{task}.yml'))
    assert test['network_g'] == train['network_g']
    assert test['path']['pretrain_network_g'] == f'experiments/{variant}_{task}/models/net_g_latest.pth'
    loader_keys = {'num_worker_per_gpu', 'batch_size_per_gpu'}
    val_sets = [{k: v for k, v in d.items() if k not in loader_keys} for k, d in train['datasets'].items()
                if k.startswith('val')]
    assert list(test['datasets'].values()) == val_sets
    assert test['val']['metrics'] == train['val']['metrics']
    # one protocol for the whole line: the uniform window (MoCE-IR's own test, src/test.py:48-49, uses a Gaussian one)
    assert train['val']['metrics']['ssim']['gaussian_weights'] is False
