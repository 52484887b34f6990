"""scripts/create_lmdb.py: every source of an option file to LMDB; folder and LMDB give identical tensors."""
import copy
import os
import runpy
import sys

import pytest
import torch
import yaml
from data_helpers import mix_options, write_tree

from promptir_basicsr.data.all_in_one_dataset import AllInOneDataset
from promptir_basicsr.data.degraded_dataset import DegradedImageDataset
from promptir_basicsr.data.lmdb_tools import create_lmdbs

SCRIPT = os.path.join(os.path.dirname(__file__), '..', '..', 'scripts', 'create_lmdb.py')


def to_lmdb(opt):
    """The option dict with every folder replaced by its ``.lmdb`` (what create_lmdb prints)."""
    opt = copy.deepcopy(opt)
    for source in opt['sources'] if 'sources' in opt else [opt]:
        for key in ('dataroot_lq', 'dataroot_gt'):
            if key in source:
                source[key] = os.path.normpath(source[key]) + '.lmdb'
        source['io_backend'] = {'type': 'lmdb'}
    return opt


@pytest.fixture
def option_file(mix_tree, tmp_path):
    write_tree(tmp_path / 'val_clean', ['v1.png', 'sub/v2.png'], size=(20, 24), seed=9)
    train = mix_options(mix_tree, num_crops=2)
    # two noise sources share one clean folder (as sigma 15/25/50 do): written once
    train['sources'].append({'name': 'noise50', 'dataroot_gt': mix_tree['clean'],
                             'degradation': [{'type': 'gaussian_noise', 'sigma': 50}]})
    val = {'name': 'val_noise', 'type': 'DegradedImageDataset', 'dataroot_gt': str(tmp_path / 'val_clean'),
           'degradation': [{'type': 'gaussian_noise_uint8', 'sigma': 25}]}
    val_haze = {'name': 'val_haze', 'type': 'DegradedImageDataset', 'dataroot_lq': mix_tree['haze_lq'],
                'dataroot_gt': mix_tree['haze_gt'], 'pairing': 'ots'}
    opt = {'name': 'x', 'datasets': {'train': train, 'val_1': val, 'val_2': val_haze}}
    path = tmp_path / 'opt.yml'
    path.write_text(yaml.safe_dump(opt, sort_keys=False))
    return path, opt


def test_folder_and_lmdb_give_identical_tensors(option_file, capsys):
    path, opt = option_file
    sys_argv = sys.argv
    try:
        sys.argv = [SCRIPT, '-opt', str(path)]
        with pytest.raises(SystemExit) as done:
            runpy.run_path(SCRIPT, run_name='__main__')
        assert done.value.code == 0
    finally:
        sys.argv = sys_argv
    printed = capsys.readouterr().out
    assert 'io_backend: {type: lmdb}' in printed and 'dataroot_lq:' in printed and 'rain/lq.lmdb' in printed
    # the gt of the hazy images is stored once per gt image
    haze_gt_meta = open(os.path.normpath(opt['datasets']['train']['sources'][2]['dataroot_gt']) + '.lmdb/meta_info.txt')
    keys = [line.split(' ')[0] for line in haze_gt_meta]
    assert len(keys) == 2 and all(k.count('.') == 1 for k in keys)  # '<key>.png', the key without dots

    train = opt['datasets']['train']
    folder, lmdb = AllInOneDataset(copy.deepcopy(train)), AllInOneDataset(to_lmdb(train))
    assert len(folder) == len(lmdb) == 4 * 3 + 3 * 2 + 4 + 4
    for ds in (folder, lmdb):
        ds._rng_cache.clear()
    torch.manual_seed(0)
    a = [folder[i] for i in range(len(folder))]
    torch.manual_seed(0)
    b = [lmdb[i] for i in range(len(lmdb))]
    for x, y in zip(a, b):
        for key in ('lq', 'gt', 'lq2', 'gt2'):
            assert torch.equal(x[key], y[key]), (key, x['lq_path'], y['lq_path'])
        assert x['deg_name'] == y['deg_name']

    for val in (opt['datasets']['val_1'], opt['datasets']['val_2']):
        folder, lmdb = DegradedImageDataset(copy.deepcopy(val)), DegradedImageDataset(to_lmdb(val))
        assert len(folder) == len(lmdb) in (2, 4)
        for i in range(len(folder)):
            assert torch.equal(folder[i]['lq'], lmdb[i]['lq']) and torch.equal(folder[i]['gt'], lmdb[i]['gt'])
        assert len({os.path.basename(lmdb[i]['lq_path']) for i in range(len(lmdb))}) == len(lmdb)


def test_existing_lmdbs_are_kept_or_rebuilt(option_file):
    _, opt = option_file
    logs = []
    create_lmdbs(opt, log=logs.append)
    create_lmdbs(opt, log=logs.append)
    assert any('kept' in line for line in logs)
    # a source that now needs more images than the LMDB holds
    clean = opt['datasets']['train']['sources'][0]['dataroot_gt']
    write_tree(clean, ['c9.png'], size=(24, 32), seed=7)
    with pytest.raises(ValueError, match='lacks 1 of the 5 images.*--overwrite'):
        create_lmdbs(opt, log=logs.append)
    create_lmdbs(opt, overwrite=True, log=logs.append)


def test_out_dir_and_already_lmdb_sources(option_file, tmp_path):
    _, opt = option_file
    text = create_lmdbs(opt, out_dir=str(tmp_path / 'lmdbs'), log=lambda *_: None)
    made = sorted(str(p) for p in (tmp_path / 'lmdbs').rglob('*.lmdb'))
    assert len(made) == 6 and any(p.endswith('rain/lq.lmdb') for p in made)
    assert str(tmp_path / 'lmdbs') in text
    opt['datasets']['val_1'] = to_lmdb(opt['datasets']['val_1'])
    logs = []
    create_lmdbs(opt, out_dir=str(tmp_path / 'lmdbs'), log=logs.append)
    assert any('already LMDB, skipped' in line for line in logs)


def test_official_list_file_keeps_working_on_the_lmdb(tmp_path):
    derain = tmp_path / 'Train' / 'Derain'
    write_tree(derain / 'rainy', ['rain-1.png', 'rain-2.png', 'rain-3.png'], size=(16, 16))
    write_tree(derain / 'gt', ['norain-1.png', 'norain-2.png', 'norain-3.png'], size=(16, 16), seed=2)
    (tmp_path / 'rainTrain.txt').write_text('rainy/rain-1.png\nrainy/rain-3.png\n')
    source = {'name': 'rain', 'dataroot_lq': str(derain / 'rainy'), 'dataroot_gt': str(derain / 'gt'),
              'pairing': 'rain100l', 'list_file': str(tmp_path / 'rainTrain.txt')}
    opt = {'datasets': {'train': {'name': 'mix', 'type': 'AllInOneDataset', 'gt_size': 16, 'sources': [source]}}}
    for out_dir in (None, str(tmp_path / 'elsewhere')):
        create_lmdbs(opt, out_dir=out_dir, log=lambda *_: None)
        lmdb_source = dict(source, io_backend={'type': 'lmdb'})
        prefix = str(derain) if out_dir is None else os.path.join(out_dir, str(derain).lstrip(os.sep))
        lmdb_source.update(dataroot_lq=prefix + '/rainy.lmdb', dataroot_gt=prefix + '/gt.lmdb')
        ds = AllInOneDataset({'name': 'mix', 'phase': 'train', 'gt_size': 16, 'augment': 'none',
                              'sources': [lmdb_source]})
        folder = AllInOneDataset({'name': 'mix', 'phase': 'train', 'gt_size': 16, 'augment': 'none',
                                  'sources': [source]})
        assert len(ds) == 2
        for i in range(2):
            assert torch.equal(ds[i]['lq'], folder[i]['lq']) and torch.equal(ds[i]['gt'], folder[i]['gt'])


def test_write_opt_gives_a_checked_option_file_with_identical_samples(tmp_path, monkeypatch, capsys):
    """--write-opt: the demo's option file with every folder replaced by its LMDB; it passes the option check
    and its datasets give the same tensors as the folders. Guards against a file that only looks right."""
    from promptir_basicsr.data.demo import make_demo_data
    from promptir_basicsr.options.files import read_option_file
    from promptir_basicsr.options.prepare import validate_options
    demo_file = os.path.join(os.path.dirname(__file__), '..', '..', 'options', 'demo', 'promptir_demo.yml')
    monkeypatch.chdir(tmp_path)
    make_demo_data('datasets/demo')
    sys_argv = sys.argv
    try:
        sys.argv = [SCRIPT, '-opt', demo_file, '--write-opt', 'lmdb.yml']
        with pytest.raises(SystemExit) as done:
            runpy.run_path(SCRIPT, run_name='__main__')
        assert done.value.code == 0
    finally:
        sys.argv = sys_argv
    assert 'wrote lmdb.yml' in capsys.readouterr().out
    assert open('lmdb.yml').read().startswith(f'# The LMDB version of {demo_file}')
    folder_opt, lmdb_opt = read_option_file(demo_file), read_option_file('lmdb.yml')
    validate_options(lmdb_opt, 'lmdb.yml')
    sources = lmdb_opt['datasets']['train']['sources']
    assert sources[3]['dataroot_lq'] == 'datasets/demo/train/rain/rainy.lmdb' and sources[3]['pairing'] == 'rain100l'
    assert all(s['io_backend'] == {'type': 'lmdb'} for s in sources)
    assert lmdb_opt['network_g'] == folder_opt['network_g'] and lmdb_opt['train'] == folder_opt['train']
    for phase in ('train', 'val_5'):
        cls = AllInOneDataset if phase == 'train' else DegradedImageDataset
        datasets = [cls(dict(opt['datasets'][phase], phase=phase.split('_')[0])) for opt in (folder_opt, lmdb_opt)]
        samples = []
        for dataset in datasets:
            torch.manual_seed(0)
            samples.append([dataset[i] for i in range(0, len(dataset), 7)])
        for a, b in zip(*samples):
            assert torch.equal(a['lq'], b['lq']) and torch.equal(a['gt'], b['gt'])
