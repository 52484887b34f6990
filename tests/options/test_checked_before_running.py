"""Option files are checked before anything runs, and every problem is reported at once."""
import pytest
import torch
import yaml

from promptir_basicsr.errors import OptionError
from promptir_basicsr.options.files import apply_force_yml
from promptir_basicsr.options.prepare import prepare_run, validate_options


def good_options(tmp_path):
    (tmp_path / 'gt').mkdir(exist_ok=True)
    (tmp_path / 'lq').mkdir(exist_ok=True)
    return {
        'name': 'ok', 'model_type': 'SRModel', 'num_gpu': 'auto',
        'datasets': {'train': {'name': 't', 'type': 'PairedImageDataset', 'dataroot_gt': str(tmp_path / 'gt'),
                               'dataroot_lq': str(tmp_path / 'lq'), 'io_backend': {'type': 'disk'}, 'gt_size': 16,
                               'use_hflip': True, 'use_rot': True, 'batch_size_per_gpu': 2,
                               'num_worker_per_gpu': 0}},
        'network_g': {'type': 'SRVGGNetCompact'},
        'path': {'pretrain_network_g': None},
        'train': {'optim_g': {'type': 'Adam', 'lr': 1e-3}, 'total_iter': 10,
                  'pixel_opt': {'type': 'L1Loss'}},
        'val': {'val_freq': 5, 'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': 0}}},
        'logger': {'print_freq': 1, 'save_checkpoint_freq': 5},
    }


def test_good_options_pass(tmp_path):
    opt = good_options(tmp_path)
    assert validate_options(opt, 'x.yml') is opt


def test_all_problems_reported_together_with_the_file_name(tmp_path):
    opt = good_options(tmp_path)
    opt['trian'] = opt.pop('train')
    opt['network_g']['type'] = 'PromptIr'
    opt['datasets']['train']['dataroot_lq'] = str(tmp_path / 'missing_lq')
    opt['val']['metrics']['psnr']['type'] = 'calculate_psnrr'
    opt['logger']['print_freq'] = 'often'
    opt['model_type'] = 'NoSuchModel'
    with pytest.raises(OptionError) as err:
        validate_options(opt, 'configs/bad.yml')
    msg = str(err.value)
    assert msg.startswith('configs/bad.yml: ')
    assert "unknown key `trian` (did you mean 'train'?)" in msg
    assert 'missing required key `train`' in msg
    assert "unknown architecture 'PromptIr' (did you mean 'PromptIR'?)" in msg and 'known: ' in msg
    assert f"datasets:train:dataroot_lq: {tmp_path / 'missing_lq'} does not exist" in msg
    assert "unknown metric 'calculate_psnrr' (did you mean 'calculate_psnr'?)" in msg
    assert '`logger:print_freq` must be a number' in msg
    assert "unknown model 'NoSuchModel'" in msg
    assert '7 problem(s)' in msg


def test_unknown_dataset_and_degradation_names(tmp_path):
    opt = good_options(tmp_path)
    opt['datasets']['train'] = {'name': 'mix', 'type': 'AllInOneDatset', 'sources': [
        {'name': 'noise', 'dataroot_gt': str(tmp_path / 'gt'), 'degradation': [{'type': 'gausian_noise'}]}]}
    with pytest.raises(OptionError) as err:
        validate_options(opt, 'x.yml')
    msg = str(err.value)
    assert "datasets:train:type: unknown dataset 'AllInOneDatset' (did you mean 'AllInOneDataset'?)" in msg
    assert "datasets:train:sources[0]:degradation[0]: unknown degradation 'gausian_noise'" in msg
    assert 'known: ' in msg and 'motion_blur' in msg


def test_unknown_keys_in_sections_and_missing_checkpoint(tmp_path):
    opt = good_options(tmp_path)
    opt['val']['val_frq'] = 3
    opt['path']['pretrain_network_g'] = str(tmp_path / 'nope.pth')
    with pytest.raises(OptionError) as err:
        validate_options(opt, 'x.yml')
    assert "unknown key `val:val_frq` (did you mean 'val_freq'?)" in str(err.value)
    assert f"path:pretrain_network_g: {tmp_path / 'nope.pth'} does not exist" in str(err.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the message on a machine without CUDA')
def test_num_gpu_larger_than_the_machine(tmp_path):
    opt = good_options(tmp_path)
    opt['num_gpu'] = 4
    with pytest.raises(OptionError, match=r'`num_gpu: 4` but this machine has 0 CUDA device\(s\); use `num_gpu: auto`'):
        validate_options(opt, 'x.yml')


def test_force_yml_is_checked_too(tmp_path):
    opt = good_options(tmp_path)
    path = tmp_path / 'o.yml'
    path.write_text(yaml.safe_dump(opt))
    assert prepare_run(str(path), force_yml=['train:total_iter=3'])['train']['total_iter'] == 3
    with pytest.raises(OptionError, match='unknown architecture'):
        prepare_run(str(path), force_yml=['network_g:type=Nope'])
    with pytest.raises(OptionError, match='no option section'):
        apply_force_yml(opt, ['nosection:key=1'])


def test_malformed_and_missing_files(tmp_path):
    bad = tmp_path / 'bad.yml'
    bad.write_text('name: [unclosed\n')
    with pytest.raises(OptionError, match='bad.yml: not valid YAML'):
        prepare_run(str(bad))
    with pytest.raises(OptionError, match='Option file not found'):
        prepare_run(str(tmp_path / 'none.yml'))
