"""AllInOneDataset: mix proportions, samples, crops, augmentation, one_per_source, reproducibility."""
import collections

import numpy as np
import pytest
import torch
from data_helpers import mix_options, write_pairs, write_tree

from promptir_basicsr.data.all_in_one_dataset import AllInOneDataset
from promptir_basicsr.data.transforms import augment_mode


def build(opt):
    torch.manual_seed(0)
    return AllInOneDataset(opt)


def test_repeat_mix_over_an_epoch(mix_tree):
    ds = build(mix_options(mix_tree))
    assert len(ds) == 4 * 3 + 3 * 2 + 4 * 1
    counts = collections.Counter(ds[i]['deg_name'] for i in range(len(ds)))
    assert counts == {'noise25': 12, 'rain': 6, 'haze': 4}
    # every image of a source appears exactly `repeat` times
    per_image = collections.Counter(ds.source_of_index(i) for i in range(len(ds)))
    assert set(per_image.values()) == {3, 2, 1}
    assert all(per_image[(0, j)] == 3 for j in range(4)) and all(per_image[(1, j)] == 2 for j in range(3))


def _weighted(tree, weights, samples=None):
    opt = mix_options(tree) if samples is None else mix_options(tree, samples_per_epoch=samples)
    for source, weight in zip(opt['sources'], weights):
        source.pop('repeat')
        source['weight'] = weight
    return build(opt)


def test_weight_mix_over_an_epoch(mix_tree):
    ds = _weighted(mix_tree, (0.5, 0.3, 0.2), samples=50)
    assert len(ds) == 50
    counts = collections.Counter(int(ds[i]['deg_index']) for i in range(len(ds)))
    assert counts == {0: 25, 1: 15, 2: 10}


def test_weight_mix_gives_the_leftover_samples_to_the_largest_remainders(mix_tree):
    """Guards the largest-remainder rounding: weights 5:3:2 of 7 samples are exactly 3.5, 2.1, 1.4;
    the floors 3, 2, 1 leave one sample, which goes to the largest remainder (0.5, source 0) -> 4, 2, 1.
    Giving it to the smallest (0.1) would make 3, 3, 1; equal weights never have distinct remainders."""
    ds = _weighted(mix_tree, (5, 3, 2), samples=7)
    assert ds.counts == [4, 2, 1] and len(ds) == 7
    assert collections.Counter(int(ds[i]['deg_index']) for i in range(7)) == {0: 4, 1: 2, 2: 1}
    # two leftovers: 2:5:3 of 9 is 1.8, 4.5, 2.7 -> floors 1, 4, 2 (7), the remainders 0.8 and 0.7 win
    assert _weighted(mix_tree, (2, 5, 3), samples=9).counts == [2, 4, 3]
    # default epoch length: the number of images (4 + 3 + 4 = 11); 1:1:1 is 3.67 each -> 4, 4, 3
    assert _weighted(mix_tree, (1, 1, 1)).counts == [4, 4, 3]
    # a zero weight gets nothing, and its index range is skipped
    ds = _weighted(mix_tree, (1, 0, 1), samples=4)
    assert ds.counts == [2, 0, 2] and [ds.source_of_index(i)[0] for i in range(4)] == [0, 0, 2, 2]


def test_sample_contents(mix_tree):
    ds = build(mix_options(mix_tree))
    s = ds[0]
    assert set(s) == {'lq', 'gt', 'lq_path', 'gt_path', 'deg_name', 'deg_index'}
    assert s['lq'].shape == s['gt'].shape == (3, 16, 16) and s['lq'].dtype == torch.float32
    assert 0 <= float(s['lq'].min()) and float(s['lq'].max()) <= 1
    assert s['deg_name'] == 'noise25' and s['deg_index'] == 0
    noise = (s['lq'] - s['gt']) * 255
    assert 15 < float(noise.std()) < 35  # sigma 25 noise added to the clean crop
    rain = ds[12]
    assert rain['deg_name'] == 'rain' and rain['lq_path'].endswith('rain-1.png') and rain['gt_path'].endswith(
        'norain-1.png')
    # paired rain: lq = gt darkened by 40 grey levels (where gt >= 40), at the same crop and flip
    diff = (rain['gt'] - rain['lq']) * 255
    assert float((diff - 40).abs()[rain['gt'] * 255 > 41].max()) < 0.6
    haze = ds[len(ds) - 1]
    assert haze['deg_name'] == 'haze' and haze['gt_path'].endswith('0002.jpg')


def test_crop_and_flips_are_identical_on_lq_and_gt(tmp_path):
    # lq == gt exactly: any mismatch in crop position or flip mode would show
    names = [f'i{i}.png' for i in range(3)]
    imgs = write_tree(tmp_path / 'gt', names, size=(40, 48), seed=5)
    write_tree(tmp_path / 'lq', names, size=(40, 48), seed=5)
    for augment in ('official7', 'basicsr', 'none'):
        ds = build({'name': 'x', 'phase': 'train', 'gt_size': 16, 'augment': augment, 'sources': [
            {'name': 'same', 'dataroot_lq': str(tmp_path / 'lq'), 'dataroot_gt': str(tmp_path / 'gt'), 'repeat': 5}]})
        for i in range(len(ds)):
            s = ds[i]
            assert torch.equal(s['lq'], s['gt'])
            if augment == 'none':  # the crop is a window of the original image
                full = torch.from_numpy(imgs[names[i % 3]].astype(np.float32) / 255).permute(2, 0, 1)
                windows = full.unfold(1, 16, 1).unfold(2, 16, 1)
                assert (windows - s['gt'][:, None, None]).abs().amax(dim=(0, 3, 4)).min() < 1e-6


def test_official7_uses_the_seven_non_identity_modes():
    img = np.arange(2 * 3 * 1).reshape(2, 3, 1)
    outs = {augment_mode(img, m).tobytes() + bytes(augment_mode(img, m).shape) for m in range(8)}
    assert len(outs) == 8  # all 8 dihedral transforms are distinct
    from promptir_basicsr.data.transforms import Augmenter
    rng = np.random.default_rng(0)
    modes = collections.Counter(Augmenter('official7').draw(rng)[1] for _ in range(700))
    assert set(modes) == set(range(1, 8))


def test_two_crops_per_sample(mix_tree):
    ds = build(mix_options(mix_tree, num_crops=2))
    for i in (0, 12):
        s = ds[i]
        assert {'lq2', 'gt2'} <= set(s) and s['lq2'].shape == (3, 16, 16)
        assert not torch.equal(s['gt'], s['gt2'])  # independent crops (24x32 image, 16 px patches)
    s = ds[12]  # paired rain: second crop keeps lq/gt aligned too
    diff = (s['gt2'] - s['lq2']) * 255
    assert float((diff - 40).abs()[s['gt2'] * 255 > 41].max()) < 0.6


def test_one_per_source_stacks_every_source(mix_tree):
    ds = build(mix_options(mix_tree, one_per_source=True, num_crops=2))
    assert len(ds) == 4  # the largest source
    s = ds[3]
    assert s['lq'].shape == (3, 3, 16, 16) and s['gt2'].shape == (3, 3, 16, 16)
    assert s['deg_index'].tolist() == [0, 1, 2] and s['deg_index'].dtype == torch.int64
    assert s['deg_name'] == ['noise25', 'rain', 'haze'] and len(s['lq_path']) == 3
    loader = torch.utils.data.DataLoader(ds, batch_size=2, shuffle=True)
    batch = next(iter(loader))
    assert batch['lq'].shape == (2, 3, 3, 16, 16) and batch['deg_index'].shape == (2, 3)
    flat = batch['lq'].flatten(0, 1)
    assert flat.shape == (6, 3, 16, 16) and batch['deg_index'].flatten().tolist() == [0, 1, 2, 0, 1, 2]
    ds = build(mix_options(mix_tree, one_per_source=True, samples_per_epoch=10))
    assert len(ds) == 10


def test_sampling_is_reproducible_with_the_torch_seed(mix_tree):
    def epoch(seed):
        ds = AllInOneDataset(mix_options(mix_tree))
        torch.manual_seed(seed)
        return [ds[i]['lq'] for i in range(6)]

    a, b, c = epoch(1), epoch(1), epoch(2)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))


def test_workers_get_distinct_reproducible_streams(mix_tree):
    ds = AllInOneDataset(mix_options(mix_tree))
    ds.sources = ds.sources[:1]  # noise only, 12 indices
    ds.counts, ds.starts, ds.length = [4], [0], 4

    def run():
        torch.manual_seed(0)
        loader = torch.utils.data.DataLoader(ds, batch_size=1, num_workers=2, shuffle=False)
        return [b['lq'][0] for b in loader]

    first, second = run(), run()
    assert all(torch.equal(x, y) for x, y in zip(first, second))
    # worker 0 serves items 0 and 2, worker 1 items 1 and 3, each from its own generator
    assert not torch.equal(first[0], first[1])
    assert not torch.equal(run_with_seed(ds, 1)[0], first[0])  # another manual_seed, other samples


def run_with_seed(ds, seed):
    torch.manual_seed(seed)
    return [b['lq'][0] for b in torch.utils.data.DataLoader(ds, batch_size=1, num_workers=2, shuffle=False)]


def test_mixing_repeat_and_weight_is_an_error(mix_tree):
    opt = mix_options(mix_tree)
    opt['sources'][0]['weight'] = 1
    opt['sources'][0].pop('repeat')
    with pytest.raises(ValueError, match='`repeat` on all sources or `weight` on all'):
        AllInOneDataset(opt)


def test_plugin_op_used_from_a_source(tmp_path):
    from promptir_basicsr.data.degradations import DEGRADATION_REGISTRY
    if 'test_constant_op' not in DEGRADATION_REGISTRY:
        @DEGRADATION_REGISTRY.register()
        def test_constant_op(img, rng, value=0.25):
            return np.full_like(img, value)
    write_tree(tmp_path / 'gt', ['a.png'], size=(16, 16))
    ds = build({'name': 'x', 'phase': 'train', 'gt_size': 16, 'sources': [
        {'name': 'const', 'dataroot_gt': str(tmp_path / 'gt'), 'degradation': [{'type': 'test_constant_op',
                                                                               'value': 0.5}]}]})
    assert torch.allclose(ds[0]['lq'], torch.full((3, 16, 16), 0.5))


def test_paired_sources_in_subfolders(tmp_path):
    lq, gt = write_pairs(tmp_path, ['x/a.png', 'y/a.png'], ['x/a.png', 'y/a.png'], size=(16, 16))
    ds = build({'name': 'x', 'phase': 'train', 'gt_size': 16, 'sources': [
        {'name': 'p', 'dataroot_lq': lq, 'dataroot_gt': gt}]})
    assert len(ds) == 2 and ds[1]['lq_path'].endswith('y/a.png')
