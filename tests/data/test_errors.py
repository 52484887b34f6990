"""Bad data is reported with the option, the files and the fix; nothing is skipped silently."""
import logging
import os

import pytest
from data_helpers import mix_options, write_pairs, write_tree

from promptir_basicsr.data.all_in_one_dataset import AllInOneDataset
from promptir_basicsr.data.degraded_dataset import DegradedImageDataset
from promptir_basicsr.data.sources import DatasetError


def train_set(*sources, **extra):
    opt = {'name': 'mix', 'phase': 'train', 'gt_size': 16, 'sources': list(sources)}
    opt.update(extra)
    return AllInOneDataset(opt)


def noise_source(root, **extra):
    source = {'name': 'noise', 'dataroot_gt': str(root), 'degradation': [{'type': 'gaussian_noise', 'sigma': 25}]}
    source.update(extra)
    return source


def test_missing_folders(tmp_path):
    with pytest.raises(DatasetError, match=r"sources\[0\] \(noise\)\.dataroot_gt: folder .*nowhere does not exist"):
        train_set(noise_source(tmp_path / 'nowhere'))
    write_tree(tmp_path / 'gt', ['a.png'], size=(16, 16))
    with pytest.raises(DatasetError, match=r"sources\[0\] \(rain\)\.dataroot_lq: folder .*rainy does not exist"):
        train_set({'name': 'rain', 'dataroot_lq': str(tmp_path / 'rainy'), 'dataroot_gt': str(tmp_path / 'gt')})
    with pytest.raises(DatasetError, match=r"val_1 \(sots\)\.dataroot_gt: folder"):
        DegradedImageDataset({'name': 'sots', 'phase': 'val_1', 'dataroot_lq': str(tmp_path / 'gt'),
                              'dataroot_gt': str(tmp_path / 'no_gt')})


def test_empty_sources(tmp_path):
    (tmp_path / 'empty').mkdir()
    (tmp_path / 'empty' / 'notes.txt').write_text('not an image')
    with pytest.raises(DatasetError, match=r'\(noise\)\.dataroot_gt: no images found in .*empty.*the source is empty'):
        train_set(noise_source(tmp_path / 'empty'))
    with pytest.raises(DatasetError, match='non-empty list of sources'):
        train_set()
    write_tree(tmp_path / 'gt', ['a.png'], size=(16, 16))
    (tmp_path / 'list.txt').write_text('\n\n')
    with pytest.raises(DatasetError, match='lists no images; the source is empty'):
        train_set(noise_source(tmp_path / 'gt', list_file=str(tmp_path / 'list.txt')))
    with pytest.raises(DatasetError, match='every source has a zero share'):
        train_set(noise_source(tmp_path / 'gt', repeat=0))


def test_lq_gt_count_mismatch_lists_names(tmp_path):
    lq, gt = write_pairs(tmp_path, ['a.png', 'b.png'], ['a.png', 'b.png'], size=(16, 16))
    write_tree(gt, ['extra1.png', 'extra2.png'], size=(16, 16))
    with pytest.raises(DatasetError) as err:
        train_set({'name': 'blur', 'dataroot_lq': lq, 'dataroot_gt': gt})
    text = str(err.value)
    assert '(blur)' in text and '2 lq images' in text and '4 gt images' in text
    assert 'extra1.png, extra2.png' in text and 'list_file' in text


def test_lq_without_gt_lists_names_and_the_rule(tmp_path):
    lq, gt = write_pairs(tmp_path, ['rain-1.png', 'rain-2.png'], ['norain-1.png', 'norain-2.png'], size=(16, 16))
    with pytest.raises(DatasetError) as err:  # forgot `pairing: rain100l`
        train_set({'name': 'rain', 'dataroot_lq': lq, 'dataroot_gt': gt})
    text = str(err.value)
    assert '2 of 2 lq images have no gt' in text and 'rain-1.png -> rain-1.png' in text
    assert 'pairing: same name' in text and '`pairing:`' in text
    os.remove(os.path.join(gt, 'norain-2.png'))
    with pytest.raises(DatasetError, match=r'1 of 2 lq images have no gt.*rain-2\.png -> norain-2\.png'):
        train_set({'name': 'rain', 'dataroot_lq': lq, 'dataroot_gt': gt, 'pairing': 'rain100l'})
    with pytest.raises(DatasetError, match='does not fit the pairing rule'):
        train_set({'name': 'rain', 'dataroot_lq': lq, 'dataroot_gt': gt, 'pairing': 'sots'})


def test_listed_files_that_do_not_exist(tmp_path):
    write_tree(tmp_path / 'gt', ['a.png', 'b.png'], size=(16, 16))
    (tmp_path / 'list.txt').write_text('a.png\nb.png\nc.png\nd.png\n')
    source = noise_source(tmp_path / 'gt', list_file=str(tmp_path / 'list.txt'))
    with pytest.raises(DatasetError) as err:
        train_set(source)
    text = str(err.value)
    assert '(noise).list_file: 2 of 4 listed images are not in' in text and 'c.png, d.png' in text
    assert 'allow_missing: true' in text
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger('basicsr')
    logger.addHandler(handler)
    try:
        ds = train_set(dict(source, allow_missing=True))
    finally:
        logger.removeHandler(handler)
    assert len(ds) == 2
    warnings = [r.getMessage() for r in records if r.levelno == logging.WARNING]
    assert any('2 of 4 listed images are not in' in w and 'skipped' in w for w in warnings)
    # dataset-wide default
    assert len(train_set(source, allow_missing=True)) == 2


def test_unreadable_image_names_the_path(tmp_path):
    write_tree(tmp_path / 'gt', ['good.png'], size=(16, 16))
    (tmp_path / 'gt' / 'broken.png').write_bytes(b'not a png at all')
    ds = train_set(noise_source(tmp_path / 'gt'))
    with pytest.raises(DatasetError, match=r'\(noise\): gt image .*broken\.png is unreadable'):
        ds[0]
    ds[1]


def test_image_smaller_than_gt_size(tmp_path):
    write_tree(tmp_path / 'gt', ['small.png'], size=(12, 40))
    ds = train_set(noise_source(tmp_path / 'gt'))
    with pytest.raises(DatasetError, match=r'small\.png is 12x40, smaller than gt_size 16.*lower gt_size'):
        ds[0]


def test_unknown_degradation_type_lists_the_known_ones(tmp_path):
    write_tree(tmp_path / 'gt', ['a.png'], size=(16, 16))
    with pytest.raises(KeyError) as err:
        train_set(noise_source(tmp_path / 'gt', degradation=[{'type': 'snow', 'amount': 1}]))
    text = str(err.value)
    assert "sources[0] (noise).degradation[0]: unknown degradation type 'snow'" in text
    assert 'gaussian_noise' in text and 'rain' in text and 'low_light' in text and 'plugins' in text


def test_option_mistakes(tmp_path, mix_tree):
    write_tree(tmp_path / 'gt', ['a.png'], size=(16, 16))
    with pytest.raises(DatasetError, match=r"unknown key\(s\) dataroot_qt"):
        train_set(noise_source(tmp_path / 'gt', dataroot_qt='x'))
    with pytest.raises(DatasetError, match='not both'):
        train_set(noise_source(tmp_path / 'gt', dataroot_lq=str(tmp_path / 'gt')))
    with pytest.raises(DatasetError, match='duplicate source name'):
        train_set(noise_source(tmp_path / 'gt'), noise_source(tmp_path / 'gt'))
    with pytest.raises(DatasetError, match='gt_size'):
        AllInOneDataset({'name': 'x', 'sources': [noise_source(tmp_path / 'gt')]})
    with pytest.raises(DatasetError, match='augment'):
        AllInOneDataset(mix_options(mix_tree, augment='flips'))
    with pytest.raises(DatasetError, match='samples_per_epoch: only for `weight`'):
        AllInOneDataset(mix_options(mix_tree, samples_per_epoch=10))
    with pytest.raises(DatasetError, match='not an LMDB'):
        train_set(noise_source(tmp_path / 'gt', io_backend={'type': 'lmdb'}))


def test_unknown_dataset_keys_are_logged(tmp_path):
    write_tree(tmp_path / 'gt', ['a.png'], size=(16, 16))
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger('basicsr').addHandler(handler)
    try:
        train_set(noise_source(tmp_path / 'gt'), num_crop=2)
        DegradedImageDataset({'name': 'v', 'dataroot_gt': str(tmp_path / 'gt'), 'crop_to_multple': 16,
                              'degradation': [{'type': 'jpeg'}]})
    finally:
        logging.getLogger('basicsr').removeHandler(handler)
    warnings = ' '.join(r.getMessage() for r in records if r.levelno == logging.WARNING)
    assert 'num_crop unused by AllInOneDataset (a typo?)' in warnings
    assert 'crop_to_multple unused by DegradedImageDataset' in warnings


def test_paired_size_mismatch(tmp_path):
    write_tree(tmp_path / 'lq', ['a.png'], size=(16, 20))
    write_tree(tmp_path / 'gt', ['a.png'], size=(16, 16))
    ds = train_set({'name': 'p', 'dataroot_lq': str(tmp_path / 'lq'), 'dataroot_gt': str(tmp_path / 'gt')})
    with pytest.raises(DatasetError, match='paired images must have the same size'):
        ds[0]
