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


def test_index_bounds_and_a_single_source_per_item(mix_tree):
    """Guards __getitem__'s bounds (DataLoader samplers rely on IndexError past the end) and one_per_source
    with a single source (the stacking must not assume a second one)."""
    ds = build(mix_options(mix_tree))
    for bad in (len(ds), len(ds) + 3, -1):
        with pytest.raises(IndexError):
            ds[bad]
    opt = mix_options(mix_tree, one_per_source=True)
    opt['sources'] = opt['sources'][:1]
    single = build(opt)
    item = single[len(single) - 1]
    assert item['lq'].shape == (1, 3, 16, 16) and item['deg_index'].tolist() == [0] and item['deg_name'] == ['noise25']
    with pytest.raises(IndexError):
        single[len(single)]


def _same_pair_options(tmp_path, **extra):
    """One paired source whose lq equals gt (a 16 x 16 image, gt_size 16: only the flips vary)."""
    write_tree(tmp_path / 'gt', ['a.png'], size=(16, 16), seed=9)
    write_tree(tmp_path / 'lq', ['a.png'], size=(16, 16), seed=9)
    opt = {'name': 'x', 'phase': 'train', 'gt_size': 16, 'sources': [
        {'name': 'same', 'dataroot_lq': str(tmp_path / 'lq'), 'dataroot_gt': str(tmp_path / 'gt'), 'repeat': 80}]}
    opt.update(extra)
    return opt


@pytest.mark.parametrize('flags, distinct', [({}, 8), ({'use_hflip': False}, 4), ({'use_rot': False}, 2)])
def test_basicsr_augment_follows_use_hflip_and_use_rot(tmp_path, flags, distinct):
    """Guards the defaults of use_hflip/use_rot (true) for `augment: basicsr`: hflip, vflip and transpose
    give all 8 orientations; without hflip 4, without rotations 2 (80 draws miss one with p < 1e-3)."""
    ds = build(_same_pair_options(tmp_path, augment='basicsr', **flags))
    seen = {ds[i]['gt'].numpy().tobytes() for i in range(len(ds))}
    assert len(seen) == distinct


def test_both_crops_use_the_same_drawn_degradation(tmp_path):
    """Guards num_crops 2 on clean sources: the degradation parameters are drawn once per sample, so lq
    and lq2 carry the same ones (AirNet's query and key show one degradation)."""
    from promptir_basicsr.data.degradations import DEGRADATION_REGISTRY
    if 'test_level_op' not in DEGRADATION_REGISTRY:
        @DEGRADATION_REGISTRY.register()
        def test_level_op(img, rng, level=0.5):
            return np.full_like(img, level)
    write_tree(tmp_path / 'gt', ['a.png', 'b.png'], size=(24, 24))
    ds = build({'name': 'x', 'phase': 'train', 'gt_size': 16, 'num_crops': 2, 'sources': [
        {'name': 'levels', 'dataroot_gt': str(tmp_path / 'gt'), 'repeat': 10,
         'degradation': [{'type': 'test_level_op', 'level': [0.0, 1.0]}]}]})
    levels = []
    for i in range(len(ds)):
        s = ds[i]
        assert torch.equal(s['lq'], s['lq2'])
        levels.append(float(s['lq'][0, 0, 0]))
    assert len(set(levels)) == len(levels)  # drawn anew for every sample


def test_repeat_mode_walks_each_source_from_its_first_image(mix_tree):
    """Guards the image index of repeat mode: a source's k-th index is its image k % images."""
    opt = mix_options(mix_tree)
    opt['sources'][0]['repeat'] = 1  # noise: 4 indices, so rain starts at 4 (not a multiple of its 3 images)
    ds = build(opt)
    assert [ds.source_of_index(i) for i in range(4, 11)] == [(1, 0), (1, 1), (1, 2), (1, 0), (1, 1), (1, 2), (2, 0)]
    weighted = _weighted(mix_tree, (1, 1, 1), samples=6)
    assert all(weighted.source_of_index(i)[1] is None for i in range(6))  # weight mode: drawn at random


def test_option_values_are_checked(mix_tree):
    """Guards the checks of gt_size, scale, samples_per_epoch, weights, repeat/weight values and names."""
    def refused(match, **extra):
        with pytest.raises(ValueError, match=match):
            build(mix_options(mix_tree, **extra))

    refused(r'gt_size: a positive integer patch size is required, got 0', gt_size=0)
    assert len(build(mix_options(mix_tree, gt_size=1))) == 22  # 1 is a valid patch size
    refused(r'scale must be 1 for restoration \(got 2\)', scale=2)
    for samples in (0, 2.5):
        with pytest.raises(ValueError, match=r'samples_per_epoch: a positive integer'):
            _weighted(mix_tree, (1, 1, 1), samples=samples)
    assert len(_weighted(mix_tree, (1, 1, 1), samples=1)) == 1
    with pytest.raises(ValueError, match='the weights sum to 0'):
        _weighted(mix_tree, (0, 0, 0))
    for key, value, match in (('repeat', -1, r'repeat: must be an integer >= 0, got -1'),
                              ('repeat', 1.5, r'repeat: must be an integer >= 0, got 1.5'),
                              ('weight', -0.5, r'weight: must be a number >= 0, got -0.5'),
                              ('weight', 'a', r"weight: must be a number >= 0, got 'a'")):
        opt = mix_options(mix_tree)
        opt['sources'][1].pop('repeat')
        opt['sources'][1][key] = value
        with pytest.raises(ValueError, match=match):
            build(opt)
    opt = mix_options(mix_tree)
    opt['sources'][1]['weight'] = 1
    with pytest.raises(ValueError, match=r'sources\[1\] \(rain\): give `repeat` or `weight`, not both'):
        build(opt)
    opt = mix_options(mix_tree)
    opt['sources'][2].pop('name')
    with pytest.raises(ValueError, match=r'sources\[2\] \(\?\): each source must be a mapping with a `name`'):
        build(opt)


@pytest.fixture
def basicsr_log(caplog):
    """The INFO messages of basicsr's logger (it does not propagate to the root logger)."""
    import logging
    logger = logging.getLogger('basicsr')
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(caplog.handler)
    yield lambda: [r.getMessage() for r in caplog.records if r.name == 'basicsr']
    logger.removeHandler(caplog.handler)
    logger.setLevel(level)


def test_the_source_table_logged_at_start(mix_tree, basicsr_log):
    """Guards the table the README promises at start: one aligned row per source with its kind, images
    found, share and samples per epoch, in each of the three modes."""
    build(mix_options(mix_tree))
    ds = _weighted(mix_tree, (5, 3, 2), samples=7)
    build(mix_options(mix_tree, one_per_source=True))
    repeat, weight, stacked = (m.splitlines() for m in basicsr_log()[-3:])
    assert repeat[0] == ('AllInOneDataset mix: 22 samples per epoch (mode: repeat), gt_size 16, augment official7, '
                         'num_crops 1')
    assert [c.strip() for c in repeat[1].split('|')] == ['#', 'source', 'kind', 'images found', 'repeat/weight',
                                                          'samples per epoch']
    assert set(repeat[2]) == {'-', '+'} and len({len(line) for line in repeat[1:]}) == 1  # aligned columns
    assert [c.strip() for c in repeat[3].split('|')] == ['0', 'noise25', 'clean + gaussian_noise_uint8_sigma25', '4',
                                                          'repeat 3', '12']
    assert [c.strip() for c in repeat[5].split('|')][3:] == ['4', 'repeat 1', '4']
    assert repeat[3].startswith('0 | noise25 | clean')  # left-aligned
    assert weight[0].startswith('AllInOneDataset mix: 7 samples per epoch (mode: weight)')
    assert [c.strip() for c in weight[4].split('|')][3:] == ['3', 'weight 3', str(ds.counts[1])]
    assert stacked[0].startswith('AllInOneDataset mix: 4 samples per epoch (one_per_source: each item stacks 3 '
                                 'samples)')
    assert [c.strip() for c in stacked[3].split('|')][3:] == ['4', '-', '4']


def test_use_sources_trains_on_the_named_sources_only(mix_tree):
    """Guards the comparisons that train on part of a mix (options/ablation/*/d_*): only the named sources, each with
    its own repeat, renumbered in the mix's order; an unknown name is an error naming the known ones."""
    ds = build(mix_options(mix_tree, use_sources=['haze', 'noise25']))
    counts = collections.Counter((ds[i]['deg_name'], int(ds[i]['deg_index'])) for i in range(len(ds)))
    assert counts == {('noise25', 0): 12, ('haze', 1): 4}
    from promptir_basicsr.data.sources import DatasetError
    with pytest.raises(DatasetError, match=r"use_sources: \['snow'\] not among the sources; they are: noise25, rain, "
                                           r'haze$'):
        build(mix_options(mix_tree, use_sources=['rain', 'snow']))
