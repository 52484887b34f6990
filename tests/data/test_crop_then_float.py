"""AllInOneDataset converts only its crops to float (a speed change): samples must be bit-identical
to converting the whole decoded image first, the way basicsr reads images."""
import torch
from data_helpers import mix_options

from promptir_basicsr.data import all_in_one_dataset, sources
from promptir_basicsr.data.all_in_one_dataset import AllInOneDataset


def _samples(opt, count):
    torch.manual_seed(0)  # the dataset's generator is seeded from torch's in the main process
    ds = AllInOneDataset(opt)
    return [ds[i] for i in range(count)]


def test_samples_equal_whole_image_float_conversion(mix_tree, monkeypatch):
    """Guards the uint8 path against a changed scale (/256), rounding, a colour swap or a crop of the
    wrong image: every field of every sample (noise on the fly, two paired presets, two crops each,
    flips) equals the float-first reading."""
    opt = mix_options(mix_tree, num_crops=2)
    fast = _samples(opt, 22)

    read = sources.ImageReader.read
    monkeypatch.setattr(sources.ImageReader, 'read', lambda self, key, name, float32=True: read(self, key, name))
    monkeypatch.setattr(all_in_one_dataset, 'to_unit_float', lambda img: img)  # already float
    float_first = _samples(opt, 22)

    assert len({s['deg_name'] for s in fast}) == 3
    for a, b in zip(fast, float_first):
        assert a.keys() == b.keys()
        for key in a:
            if torch.is_tensor(a[key]):
                assert a[key].dtype == torch.float32 and torch.equal(a[key], b[key]), key
            else:
                assert a[key] == b[key], key
