"""Pairing rules (same, basicsr's filename_tmpl, regex, presets), official list files, LMDB keys."""
import pytest
from data_helpers import write_pairs, write_tree

from promptir_basicsr.data.pairing import build_pairing, lmdb_key, name_from_lmdb_key
from promptir_basicsr.data.sources import collect_clean, collect_paired


def pairs_of(opt):
    return collect_paired(opt, build_pairing(opt, 'src'), 'src')


def test_same_name_is_the_default(tmp_path):
    lq, gt = write_pairs(tmp_path, ['a.png', 'b.png', 'sub/c.png'], ['a.png', 'b.png', 'sub/c.png'], size=(16, 16))
    assert pairs_of({'dataroot_lq': lq, 'dataroot_gt': gt}) == [('a.png', 'a.png'), ('b.png', 'b.png'),
                                                                  ('sub/c.png', 'sub/c.png')]


def test_basicsr_filename_tmpl_read_backwards(tmp_path):
    lq, gt = write_pairs(tmp_path, ['a_rain.png', 'sub/b_rain.png'], ['a.png', 'sub/b.png'], size=(16, 16))
    rule = build_pairing({'filename_tmpl': '{}_rain'})
    assert rule.gt_name('sub/b_rain.png') == 'sub/b.png' and rule.gt_name('b.png') is None
    assert pairs_of({'dataroot_lq': lq, 'dataroot_gt': gt, 'filename_tmpl': '{}_rain'}) == [
        ('a_rain.png', 'a.png'), ('sub/b_rain.png', 'sub/b.png')]
    tmpl = build_pairing({'pairing': {'type': 'tmpl', 'filename_tmpl': 'x{}'}})
    assert tmpl.gt_name('x12.jpg') == '12.jpg'


def test_regex_rules_and_presets():
    sots = build_pairing({'pairing': {'type': 'regex', 'pattern': r'(\d+)_.*\.jpg', 'repl': r'\1.png'}})
    assert sots.gt_name('0001_0.8_0.2.jpg') == '0001.png'
    assert sots.gt_name('0001_0.8_0.2.png') is None  # the whole name must match
    assert build_pairing({'pairing': 'sots'}).gt_name('1400_0.9_0.2.jpg') == '1400.png'
    assert build_pairing({'pairing': 'rain100l'}).gt_name('rain-1.png') == 'norain-1.png'
    assert build_pairing({'pairing': 'rain100l'}).gt_name('sub/rain-12.png') == 'sub/norain-12.png'
    assert build_pairing({'pairing': 'ots'}).gt_name('part3/0025_0.8_0.16.jpg') == '0025.jpg'
    assert build_pairing({'pairing': 'same'}).gt_name('x/y.png') == 'x/y.png'


def test_bad_pairing_options_are_explained():
    with pytest.raises(ValueError, match="unknown pairing 'sot'.*rain100l"):
        build_pairing({'pairing': 'sot'}, 'datasets.val_1')
    with pytest.raises(ValueError, match='invalid regular expression'):
        build_pairing({'pairing': {'type': 'regex', 'pattern': '(', 'repl': ''}})
    with pytest.raises(ValueError, match="needs the key 'repl'"):
        build_pairing({'pairing': {'type': 'regex', 'pattern': 'a'}})
    with pytest.raises(ValueError, match='not both'):
        build_pairing({'pairing': 'same', 'filename_tmpl': '{}_x'})


def test_official_promptir_list_files_work_as_they_are(tmp_path):
    # data/Train/Derain/{rainy,gt}, data_dir/rainy/rainTrain.txt lists "rainy/rain-N.png"
    derain = tmp_path / 'Train' / 'Derain'
    write_tree(derain / 'rainy', ['rain-1.png', 'rain-2.png', 'rain-3.png'], size=(16, 16))
    write_tree(derain / 'gt', ['norain-1.png', 'norain-2.png', 'norain-3.png'], size=(16, 16))
    (tmp_path / 'rainTrain.txt').write_text('rainy/rain-1.png\nrainy/rain-3.png\n')
    pairs = pairs_of({'dataroot_lq': str(derain / 'rainy'), 'dataroot_gt': str(derain / 'gt'), 'pairing': 'rain100l',
                      'list_file': str(tmp_path / 'rainTrain.txt')})
    assert pairs == [('rain-1.png', 'norain-1.png'), ('rain-3.png', 'norain-3.png')]

    # data/Train/Dehaze/{synthetic/partK, original}, hazy/hazy_outside.txt lists "synthetic/partK/..."
    dehaze = tmp_path / 'Train' / 'Dehaze'
    write_tree(dehaze / 'synthetic', ['part1/0001_0.8_0.2.jpg', 'part2/0002_1_0.16.jpg'], size=(16, 16))
    write_tree(dehaze / 'original', ['0001.jpg', '0002.jpg'], size=(16, 16))
    (tmp_path / 'hazy_outside.txt').write_text('synthetic/part1/0001_0.8_0.2.jpg\nsynthetic/part2/0002_1_0.16.jpg\n')
    pairs = pairs_of({'dataroot_lq': str(dehaze / 'synthetic'), 'dataroot_gt': str(dehaze / 'original'),
                      'pairing': 'ots', 'list_file': str(tmp_path / 'hazy_outside.txt')})
    assert pairs == [('part1/0001_0.8_0.2.jpg', '0001.jpg'), ('part2/0002_1_0.16.jpg', '0002.jpg')]
    # the same list with an explicit list_root
    pairs2 = pairs_of({'dataroot_lq': str(dehaze / 'synthetic'), 'dataroot_gt': str(dehaze / 'original'),
                       'pairing': 'ots', 'list_file': str(tmp_path / 'hazy_outside.txt'), 'list_root': str(dehaze)})
    assert pairs2 == pairs

    # data/Train/Denoise/ (BSD400 + WED), noisy/denoise.txt lists bare file names
    write_tree(tmp_path / 'Denoise', ['test_001.bmp', '00001.bmp', '00002.bmp'], size=(16, 16))
    (tmp_path / 'denoise.txt').write_text('00001.bmp\ntest_001.bmp\n')
    assert collect_clean({'dataroot_gt': str(tmp_path / 'Denoise'), 'list_file': str(tmp_path / 'denoise.txt')},
                         'src') == ['00001.bmp', 'test_001.bmp']


def test_basicsr_meta_info_file_uses_the_first_token(tmp_path):
    write_tree(tmp_path / 'gt', ['a.png', 'b.png'], size=(16, 16))
    (tmp_path / 'meta.txt').write_text('b.png (16,16,3)\n')
    assert collect_clean({'dataroot_gt': str(tmp_path / 'gt'), 'meta_info_file': str(tmp_path / 'meta.txt')},
                         'src') == ['b.png']


@pytest.mark.parametrize('name', ['a.png', 'part1/0001_0.8_0.2.jpg', 'we ird/x%y.5.png', 'ü/ö.png', 'a..b/.c'])
def test_lmdb_keys_have_no_dots_and_are_reversible(name):
    key = lmdb_key(name)
    assert '.' not in key and '/' not in key and ' ' not in key and key.isascii()
    assert name_from_lmdb_key(key) == name
