"""Fixtures for the data tests: tiny image trees in tmp dirs (helpers in data_helpers.py)."""
import pytest

from data_helpers import write_pairs, write_tree


@pytest.fixture
def mix_tree(tmp_path):
    """A small mix: 4 clean images, 3 rain pairs (Rain100L names), 2 hazy per gt for 2 gts (OTS names)."""
    clean = write_tree(tmp_path / 'clean', [f'c{i}.png' for i in range(4)], seed=1)
    rain_lq, rain_gt = write_pairs(tmp_path / 'rain', [f'rain-{i}.png' for i in range(1, 4)],
                                   [f'norain-{i}.png' for i in range(1, 4)], seed=2)
    haze_lq, haze_gt = write_pairs(tmp_path / 'haze', ['part1/0001_0.8_0.2.jpg', 'part1/0001_0.9_0.1.jpg',
                                                       'part2/0002_0.8_0.2.jpg', 'part2/0002_1_0.16.jpg'],
                                   ['0001.jpg', '0001.jpg', '0002.jpg', '0002.jpg'], seed=3)
    return {'root': tmp_path, 'clean': str(tmp_path / 'clean'), 'clean_images': clean,
            'rain_lq': rain_lq, 'rain_gt': rain_gt, 'haze_lq': haze_lq, 'haze_gt': haze_gt}
