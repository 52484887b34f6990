"""DegradedImageDataset: seeded synthetic val sets reproducible anywhere, paired SOTS/Rain100L, crops."""
import numpy as np
import pytest
import torch
from data_helpers import write_pairs, write_tree

from promptir_basicsr.data.degraded_dataset import DegradedImageDataset


@pytest.fixture
def bsd(tmp_path):
    names = [f'test{i:03d}.png' for i in range(1, 6)]
    write_tree(tmp_path / 'BSD68', names, size=(20, 36), seed=4)
    return tmp_path, names


def noisy_set(root, sigma=25, **extra):
    opt = {'name': f'bsd68_s{sigma}', 'type': 'DegradedImageDataset', 'phase': 'val', 'dataroot_gt': str(root),
           'degradation': [{'type': 'gaussian_noise_uint8', 'sigma': sigma}]}
    opt.update(extra)
    return DegradedImageDataset(opt)


def by_name(ds):
    return {s['gt_path'].split('/')[-1]: s for s in (ds[i] for i in range(len(ds)))}


def test_noise_depends_on_the_name_and_seed_only(bsd):
    tmp_path, names = bsd
    ds = noisy_set(tmp_path / 'BSD68')
    first = by_name(ds)
    # a reversed list file (another order) gives the same tensors per image
    (tmp_path / 'reversed.txt').write_text('\n'.join(reversed(names)) + '\n')
    rev = noisy_set(tmp_path / 'BSD68', list_file=str(tmp_path / 'reversed.txt'))
    assert [rev[i]['gt_path'].split('/')[-1] for i in range(len(rev))] == list(reversed(names))
    for name, s in by_name(rev).items():
        assert torch.equal(s['lq'], first[name]['lq'])
    # other workers, other global seeds: still the same
    torch.manual_seed(123)
    np.random.seed(5)
    loader = torch.utils.data.DataLoader(ds, batch_size=1, num_workers=2, shuffle=True)
    for batch in loader:
        assert torch.equal(batch['lq'][0], first[batch['gt_path'][0].split('/')[-1]]['lq'])
    # another seed option changes it; each image has its own noise
    other = by_name(noisy_set(tmp_path / 'BSD68', seed=1))
    assert not torch.equal(other[names[0]]['lq'], first[names[0]]['lq'])
    assert not torch.equal(first[names[0]]['lq'] - first[names[0]]['gt'], first[names[1]]['lq'] - first[names[1]]['gt'])


def test_sample_fields_and_unique_lq_names(bsd):
    tmp_path, names = bsd
    ds = noisy_set(tmp_path / 'BSD68', sigma=50)
    s = ds[0]
    assert set(s) == {'lq', 'gt', 'lq_path', 'gt_path', 'deg_name'}
    assert s['lq'].shape == s['gt'].shape == (3, 20, 36)
    assert s['lq_path'].endswith('test001_gaussian_noise_uint8_sigma50.png') and s['deg_name'] == 'bsd68_s50'
    assert abs(float((s['lq'] - s['gt']).std()) * 255 - 50) < 8
    basenames = {ds[i]['lq_path'].split('/')[-1] for i in range(len(ds))}
    assert len(basenames) == len(ds)
    assert noisy_set(tmp_path / 'BSD68', lq_suffix='s50')[0]['lq_path'].endswith('test001_s50.png')


def test_crop_to_multiple_is_a_centre_crop_before_degrading(bsd):
    tmp_path, _ = bsd
    full = noisy_set(tmp_path / 'BSD68')[0]['gt']
    cropped = noisy_set(tmp_path / 'BSD68', crop_to_multiple=16)[0]
    assert cropped['gt'].shape == cropped['lq'].shape == (3, 16, 32)
    assert torch.equal(cropped['gt'], full[:, 2:18, 2:34])


def test_paired_sots_and_rain100l_test_sets(tmp_path):
    lq, gt = write_pairs(tmp_path / 'sots', ['0001_0.8_0.2.jpg', '0002_1_0.08.jpg'], ['0001.png', '0002.png'],
                         size=(20, 20))
    ds = DegradedImageDataset({'name': 'sots', 'dataroot_lq': lq, 'dataroot_gt': gt, 'pairing': 'sots',
                               'crop_to_multiple': 16})
    assert len(ds) == 2
    s = ds[1]
    assert s['lq'].shape == (3, 16, 16) and s['gt_path'].endswith('0002.png') and s['lq_path'].endswith('.jpg')
    lq, gt = write_pairs(tmp_path / 'rain', ['1.png', '2.png'], ['1.png', '2.png'], size=(16, 16))
    rain = DegradedImageDataset({'name': 'rain100l', 'dataroot_lq': lq, 'dataroot_gt': gt})
    assert rain[0]['lq_path'].endswith('lq/1.png') and rain[0]['gt_path'].endswith('gt/1.png')


def test_mode_must_be_unambiguous(tmp_path):
    write_tree(tmp_path / 'gt', ['a.png'], size=(16, 16))
    with pytest.raises(ValueError, match='exactly one of them'):
        DegradedImageDataset({'name': 'v', 'dataroot_gt': str(tmp_path / 'gt')})
    with pytest.raises(ValueError, match='exactly one of them'):
        DegradedImageDataset({'name': 'v', 'dataroot_gt': str(tmp_path / 'gt'), 'degradations': []})
