"""DegradedImageDataset: validation / test pairs, paired files or clean images + a seeded degradation."""
import os.path as osp

from basicsr.utils import get_root_logger, img2tensor
from basicsr.utils.registry import DATASET_REGISTRY
from torch.utils import data as data

from ..utils.option_keys import Key, dataset_keys
from .degradations import build_pipeline
from .pairing import build_pairing
from .sources import SOURCE_OPTIONS, DatasetError, ImageReader, backend_of, collect_clean, collect_paired
from .transforms import center_crop_to_multiple, image_rng


@DATASET_REGISTRY.register()
class DegradedImageDataset(data.Dataset):
    """Full-image validation/test pairs, reproducible anywhere.

    Two modes, chosen by the keys given:

    - paired: ``dataroot_lq`` + ``dataroot_gt`` + optional ``pairing`` / ``filename_tmpl`` (the rules of
      :mod:`promptir_basicsr.data.pairing`, e.g. ``pairing: sots`` for SOTS outdoor ``0001_0.8_0.2.jpg``
      -> ``0001.png``; Rain100L test has the same names in input/ and target/, the default);
    - synthetic: ``dataroot_gt`` (clean images) + ``degradation: [{type: ..., ...}]``. Each image is
      degraded with a generator seeded by ``[seed, zlib.crc32(relative name)]`` (``seed`` option, default
      0), so the noisy BSD68 at sigma 25 is the same whatever the listing order, worker or machine.
      ``lq_path`` is the clean path with ``_<lq_suffix>`` before the extension (default: the ops and their
      parameters, e.g. ``test001_gaussian_noise_uint8_sigma25.png``), unique per image.

    Common keys: ``io_backend`` (disk | lmdb), ``list_file`` / ``meta_info_file``, ``list_root``,
    ``allow_missing``, ``recursive``; ``crop_to_multiple: 16`` centre-crops clean (before degrading) and
    paired images to a multiple of 16, the official PromptIR test protocol.

    A sample is ``{lq, gt: float32 (3, H, W) RGB in [0, 1], lq_path, gt_path, deg_name}`` (``deg_name``
    is the dataset's ``name``).
    """

    #: the keys it reads (besides basicsr's loader keys), checked before a run (``options/schema.py``)
    OPTIONS = {**SOURCE_OPTIONS, 'seed': Key(int), 'lq_suffix': Key(str, None), 'crop_to_multiple': Key(int, None)}

    def __init__(self, opt):
        super().__init__()
        opt = dict(opt)
        for key in ('list_file', 'meta_info_file', 'list_root'):
            if isinstance(opt.get(key), str):  # basicsr expands '~' only in the dataroots
                opt[key] = osp.expanduser(opt[key])
        self.opt = opt
        self.name = opt.get('name', 'DegradedImageDataset')
        where = self.where = f'datasets.{opt.get("phase", "val")} ({self.name})'
        known = dataset_keys(type(self), opt.get('phase', 'val'))
        unknown = sorted(set(opt) - set(known))
        if unknown:  # a warning, not an error: the option check has already refused unknown keys in runs
            get_root_logger().warning(f'{where}: key(s) {", ".join(unknown)} unused by DegradedImageDataset '
                                      f'(a typo?); it reads {", ".join(known)}')
        backend = backend_of(opt, where)
        has_lq, has_deg = opt.get('dataroot_lq') is not None, opt.get('degradation') is not None
        if has_lq == has_deg:
            raise DatasetError(f'{where}: give dataroot_lq (paired mode) or degradation (clean images + seeded '
                               'degradation), exactly one of them')
        if opt.get('dataroot_gt') is None:
            raise DatasetError(f'{where}: `dataroot_gt` is required')
        self.multiple = int(opt.get('crop_to_multiple') or 0)
        self.seed = int(opt.get('seed', 0))
        if has_lq:
            self.pairing = build_pairing(opt, where)
            self.items = collect_paired(opt, self.pairing, where)
            self.reader = ImageReader(backend, {'lq': opt['dataroot_lq'], 'gt': opt['dataroot_gt']}, where)
            self.pipeline = None
            kind = f'paired, {self.pairing.describe()}'
        else:
            self.pipeline = build_pipeline(opt['degradation'], f'{where}.degradation')
            self.items = [(None, name) for name in collect_clean(opt, where)]
            self.reader = ImageReader(backend, {'gt': opt['dataroot_gt']}, where)
            self.suffix = str(opt.get('lq_suffix') or self.pipeline.describe())
            kind = f'clean + {self.pipeline.describe()} (seed {self.seed})'
        get_root_logger().info(f'DegradedImageDataset {self.name}: {len(self.items)} images, {kind}'
                               f'{f", centre crop to a multiple of {self.multiple}" if self.multiple else ""}')

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        lq_name, gt_name = self.items[index]
        gt = center_crop_to_multiple(self.reader.read('gt', gt_name), self.multiple)
        gt_path = self.reader.path('gt', gt_name)
        if self.pipeline is None:
            lq = center_crop_to_multiple(self.reader.read('lq', lq_name), self.multiple)
            lq_path = self.reader.path('lq', lq_name)
            if lq.shape != gt.shape:
                raise DatasetError(f'{self.where}: lq {lq_path} is {lq.shape[:2]} but its gt {gt_path} is '
                                   f'{gt.shape[:2]}; paired images must have the same size')
        else:
            lq = self.pipeline(gt, image_rng(gt_name, self.seed))
            stem, ext = osp.splitext(gt_path)
            lq_path = f'{stem}_{self.suffix}{ext}'
        lq_t, gt_t = img2tensor([lq, gt], bgr2rgb=False, float32=True)
        return {'lq': lq_t, 'gt': gt_t, 'lq_path': lq_path, 'gt_path': gt_path, 'deg_name': self.name}
