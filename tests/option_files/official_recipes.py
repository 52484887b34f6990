"""What the official AdaIR and BioIR trainers (both built on PromptIR's data code) count, for the tests of our
recipes: images per source, repeats per source, iterations per epoch under Lightning's DDP; and the shipped option
files as basicsr reads them."""
import os.path as osp

import yaml
from basicsr.utils.options import ordered_yaml

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

# images per source in the official training folders and lists: data_dir/noisy/denoise.txt (5,144),
# rainy/rainTrain.txt (200), hazy/hazy_outside.txt (72,135); GoPro train 2,103 pairs, LOL our485 485 pairs
# (PromptIR's utils/dataset_utils.py:60-74, 83, 96, 106, 115, as AdaIR and BioIR copy it)
IMAGES = {'noise15': 5144, 'noise25': 5144, 'noise50': 5144, 'rain': 200, 'haze': 72135, 'blur': 2103,
          'lowlight': 485}
# repeats per source (utils/dataset_utils.py:62-72, 96, 106, 115; haze once, :83)
REPEATS = {'noise15': 3, 'noise25': 3, 'noise50': 3, 'rain': 120, 'haze': 1, 'blur': 5, 'lowlight': 20}


def load_options(*parts):
    """options/<parts...> as basicsr reads it (ordered)."""
    with open(osp.join(REPO, 'options', *parts), encoding='utf-8') as f:
        return yaml.load(f, Loader=ordered_yaml()[0])


def iterations_per_epoch(samples, gpus, batch):
    """Lightning's DistributedSampler pads each replica to ceil(N / gpus); the loader drops each rank's last
    partial batch (drop_last=True: AdaIR train.py:58-59, BioIR train_eval.py:235-236)."""
    return -(-samples // gpus) // batch
