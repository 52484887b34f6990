"""AllInOneDataset: the all-in-one training mix (several degradations, one dataset)."""
import bisect
import math
import os.path as osp

import numpy as np
import torch
from basicsr.utils import get_root_logger, img2tensor
from basicsr.utils.registry import DATASET_REGISTRY
from torch.utils import data as data

from ..utils.option_keys import Key, dataset_keys
from .degradations import build_pipeline
from .pairing import build_pairing
from .sources import (SOURCE_OPTIONS, DatasetError, ImageReader, backend_of, collect_clean, collect_paired,
                      to_unit_float)
from .transforms import AUGMENT_MODES, Augmenter, process_rng, random_crop_box

#: The keys of one entry of ``sources``: an image source, its name and its share of the mix.
SOURCE_ENTRY_OPTIONS = {'name': Key(str, required=True), **SOURCE_OPTIONS, 'repeat': Key(int, None),
                        'weight': Key(float, None)}


class Source:
    """One entry of ``sources``: its images, reader, pairing/degradation and share of the mix."""

    def __init__(self, opt, index, dataset_opt, where):
        self.index = index
        self.where = where
        unknown = sorted(set(opt) - set(SOURCE_ENTRY_OPTIONS))
        if unknown:
            raise DatasetError(f'{where}: unknown key(s) {", ".join(unknown)}; a source takes '
                               f'{", ".join(SOURCE_ENTRY_OPTIONS)}')
        self.name = str(opt['name'])
        opt = dict(opt)
        for key in ('dataroot_lq', 'dataroot_gt', 'list_file', 'meta_info_file', 'list_root'):
            if isinstance(opt.get(key), str):  # basicsr expands '~' only in dataset-level dataroots
                opt[key] = osp.expanduser(opt[key])
        opt.setdefault('allow_missing', dataset_opt.get('allow_missing', False))
        backend = backend_of(opt, where)
        has_lq, has_deg = opt.get('dataroot_lq') is not None, opt.get('degradation') is not None
        if has_lq and has_deg:
            raise DatasetError(f'{where}: give either dataroot_lq (paired data) or degradation (clean images '
                               'degraded on the fly), not both')
        if not has_lq and not has_deg:
            raise DatasetError(f'{where}: needs dataroot_lq + dataroot_gt (paired data) or dataroot_gt + '
                               'degradation: [{type: ..., ...}] (clean images degraded on the fly)')
        if opt.get('dataroot_gt') is None:
            raise DatasetError(f'{where}: `dataroot_gt` is required')
        if has_lq:
            self.paired = True
            self.pairing = build_pairing(opt, where)
            self.items = collect_paired(opt, self.pairing, where)
            self.reader = ImageReader(backend, {'lq': opt['dataroot_lq'], 'gt': opt['dataroot_gt']}, where)
            self.pipeline = None
        else:
            self.paired = False
            self.pipeline = build_pipeline(opt['degradation'], f'{where}.degradation')
            self.items = [(None, name) for name in collect_clean(opt, where)]
            self.reader = ImageReader(backend, {'gt': opt['dataroot_gt']}, where)
        if opt.get('repeat') is not None and opt.get('weight') is not None:
            raise DatasetError(f'{where}: give `repeat` or `weight`, not both')
        self.repeat = opt.get('repeat')
        self.weight = opt.get('weight')
        if self.repeat is not None and (not isinstance(self.repeat, int) or self.repeat < 0):
            raise DatasetError(f'{where}.repeat: must be an integer >= 0, got {self.repeat!r}')
        if self.weight is not None and (not isinstance(self.weight, (int, float)) or self.weight < 0):
            raise DatasetError(f'{where}.weight: must be a number >= 0, got {self.weight!r}')

    def __len__(self):
        return len(self.items)

    def describe(self):
        if self.paired:
            return f'paired, {self.pairing.describe()}'
        return f'clean + {self.pipeline.describe()}'


@DATASET_REGISTRY.register()
class AllInOneDataset(data.Dataset):
    """All-in-one training mix: several sources, each paired data or clean images + degradation ops.

    Options (``datasets.train``; basicsr adds ``phase``/``scale``):

    - ``sources`` (list, required): each source has ``name`` (unique; reported as ``deg_name``) and
        - paired data: ``dataroot_lq``, ``dataroot_gt``, optional ``pairing`` (``same`` default, a preset
          ``rain100l``/``sots``/``ots``, ``{type: regex, pattern, repl}``, ``{type: tmpl, filename_tmpl}``)
          or basicsr's ``filename_tmpl``; see :mod:`promptir_basicsr.data.pairing`;
        - or clean images: ``dataroot_gt`` + ``degradation: [{type: op, <param>: value | [low, high] |
          {choice: [...]}}, ...]`` applied on the fly to each crop (after crop and flips, as the official
          denoising code adds noise);
        - ``io_backend`` (``{type: disk}`` default, or ``{type: lmdb}`` with ``.lmdb`` dataroots made by
          ``scripts/create_lmdb.py``), optional ``list_file`` / ``meta_info_file`` (first token per line; lq
          names for paired sources, gt names for clean ones; PromptIR's list files work as they are;
          ``list_root`` if entries are relative to another folder), ``allow_missing`` (listed files absent:
          error by default, warning with the count if true), ``recursive`` (scan sub-folders, default true);
        - its share: ``repeat: N`` (the source's images N times per epoch; default 1) or ``weight: w``.
          All sources use ``repeat`` or all use ``weight``.
    - ``use_sources`` (list of names): train on these sources only (the others are defined but unused): a
      variant of a comparison trained on part of the mix names the parts.
    - ``samples_per_epoch`` (weight mode; default the total number of images): the epoch length. Source
      ``i`` gets exactly ``round(w_i / sum(w) * samples_per_epoch)`` indices (largest remainder), so an
      epoch holds the weighted proportions exactly; the image within the source is drawn uniformly.
      In repeat mode the epoch is ``sum(images_i * repeat_i)`` and every image appears ``repeat_i`` times.
    - ``gt_size`` (int, required): square patch size, paired random crop (same position in lq and gt).
    - ``augment``: ``official7`` (default; one of PromptIR's 7 non-identity flip/rot90 modes),
      ``basicsr`` (hflip / vflip+transpose with ``use_hflip`` / ``use_rot``) or ``none``.
    - ``num_crops`` (1 or 2): 2 adds ``lq2``/``gt2``, a second independent crop (own position and flip)
      of the same image, degraded with the same drawn parameters (AirNet's contrastive pairs).
    - ``one_per_source`` (bool): see below. ``allow_missing``: default for every source.

    A sample is ``{lq, gt: float32 (3, gt_size, gt_size) RGB in [0, 1], lq_path, gt_path, deg_name (source
    name), deg_index (source index)}`` (+ ``lq2``, ``gt2``). For synthetic sources ``lq_path`` is the clean path.

    ``one_per_source: true`` (AirNet's "a batch holds one sample per degradation"): item ``k`` holds one
    sample of EVERY source (source ``i`` gives its image ``k % images_i``), stacked along a new first dim:
    ``lq``/``gt`` (S, 3, h, w), ``deg_index`` (S,) int64, ``deg_name``/``lq_path``/``gt_path`` lists of S.
    The DataLoader adds the batch dim, so a batch is (B, S, 3, h, w): the model flattens it to (B*S, ...)
    (and ``deg_index`` to (B*S,)); ``batch_size_per_gpu: 1`` gives one sample per degradation.
    The epoch is ``samples_per_epoch`` or the largest source; ``repeat``/``weight`` are ignored.

    Randomness (crop, flips, image choice in weight mode, degradation parameters and noise) comes from a
    per-process ``numpy.random.Generator``, see :func:`promptir_basicsr.data.transforms.process_rng`:
    reproducible for a given ``manual_seed``, different per worker, rank and epoch.
    """

    #: the keys it reads (besides basicsr's loader keys), checked before a run (``options/schema.py``)
    OPTIONS = {
        'sources': Key(list, required=True, items=SOURCE_ENTRY_OPTIONS), 'gt_size': Key(int, required=True),
        'augment': Key(str, choices=AUGMENT_MODES), 'use_hflip': Key(bool), 'use_rot': Key(bool),
        'num_crops': Key(int, choices=(1, 2)), 'one_per_source': Key(bool), 'samples_per_epoch': Key(int, None),
        'allow_missing': Key(bool), 'use_sources': Key(list, None),
    }

    def __init__(self, opt):
        super().__init__()
        self.opt = opt
        where = f'datasets.{opt.get("phase", "train")} ({opt.get("name", "AllInOneDataset")})'
        known = dataset_keys(type(self))
        unknown = sorted(set(opt) - set(known))
        if unknown:  # a warning, not an error: a model may read its own keys here (progressive patches)
            get_root_logger().warning(f'{where}: key(s) {", ".join(unknown)} unused by AllInOneDataset (a typo?); '
                                      f'it reads {", ".join(known)}')
        sources = opt.get('sources')
        if not isinstance(sources, (list, tuple)) or not sources:
            raise DatasetError(f'{where}.sources: a non-empty list of sources is required')
        sources = self._used_sources(sources, opt.get('use_sources'), where)
        self.gt_size = opt.get('gt_size')
        if not isinstance(self.gt_size, int) or self.gt_size <= 0:
            raise DatasetError(f'{where}.gt_size: a positive integer patch size is required, got {self.gt_size!r}')
        if opt.get('scale', 1) != 1:
            raise DatasetError(f'{where}: scale must be 1 for restoration (got {opt.get("scale")})')
        self.num_crops = opt.get('num_crops', 1)
        if self.num_crops not in (1, 2):
            raise DatasetError(f'{where}.num_crops: 1 or 2, got {self.num_crops!r}')
        try:
            self.augmenter = Augmenter(opt.get('augment', 'official7'), opt.get('use_hflip', True),
                                       opt.get('use_rot', True))
        except ValueError as err:
            raise DatasetError(f'{where}.augment: {err}') from err
        self.sources = []
        names = set()
        for i, source_opt in enumerate(sources):
            label = source_opt.get('name', '?') if isinstance(source_opt, dict) else '?'
            here = f'{where}.sources[{i}] ({label})'
            if not isinstance(source_opt, dict) or 'name' not in source_opt:
                raise DatasetError(f'{here}: each source must be a mapping with a `name`')
            if source_opt['name'] in names:
                raise DatasetError(f'{here}: duplicate source name {source_opt["name"]!r}')
            names.add(source_opt['name'])
            self.sources.append(Source(source_opt, i, opt, here))
        self.one_per_source = bool(opt.get('one_per_source', False))
        self._build_index(where)
        self._rng_cache = {}
        self._log_table()

    @staticmethod
    def _used_sources(sources, use, where):
        """The entries of ``sources`` named in ``use_sources`` (in the order of ``sources``; all when it is not
        set): a variant trained on part of a mix names the parts instead of repeating their definitions."""
        if use is None:
            return sources
        named = [s.get('name') for s in sources if isinstance(s, dict)]
        unknown = [name for name in use if name not in named]
        if unknown or not use:
            raise DatasetError(f'{where}.use_sources: {unknown or use!r} not among the sources; they are: '
                               f'{", ".join(map(str, named))}')
        return [s for s in sources if isinstance(s, dict) and s.get('name') in use]

    # --- epoch layout ----------------------------------------------------------------------------
    def _build_index(self, where):
        uses_weight = [s.weight is not None for s in self.sources]
        samples = self.opt.get('samples_per_epoch')
        if samples is not None and (not isinstance(samples, int) or samples <= 0):
            raise DatasetError(f'{where}.samples_per_epoch: a positive integer, got {samples!r}')
        if self.one_per_source:
            self.mode = 'one_per_source'
            self.counts = [samples or max(len(s) for s in self.sources)] * len(self.sources)
            self.length = self.counts[0]
            return
        if any(uses_weight) and not all(uses_weight):
            raise DatasetError(f'{where}.sources: use `repeat` on all sources or `weight` on all, not a mix '
                               f'(weight given for {[s.name for s in self.sources if s.weight is not None]})')
        if all(uses_weight):
            self.mode = 'weight'
            total_weight = float(sum(s.weight for s in self.sources))
            if total_weight <= 0:
                raise DatasetError(f'{where}.sources: the weights sum to 0')
            samples = samples or sum(len(s) for s in self.sources)
            exact = [s.weight / total_weight * samples for s in self.sources]
            counts = [int(math.floor(v)) for v in exact]
            order = sorted(range(len(exact)), key=lambda i: exact[i] - counts[i], reverse=True)
            for i in order[:samples - sum(counts)]:
                counts[i] += 1
        else:
            if samples is not None:
                raise DatasetError(f'{where}.samples_per_epoch: only for `weight` sources or one_per_source; with '
                                   '`repeat` the epoch is sum(images * repeat)')
            self.mode = 'repeat'
            counts = [len(s) * (1 if s.repeat is None else s.repeat) for s in self.sources]
        if sum(counts) == 0:
            raise DatasetError(f'{where}.sources: every source has a zero share (repeat 0 / weight 0)')
        self.counts = counts
        self.starts = np.cumsum([0] + counts[:-1]).tolist()
        self.length = sum(counts)

    def source_of_index(self, index):
        """(source index, image index or None if drawn at random) of a dataset index."""
        i = bisect.bisect_right(self.starts, index) - 1
        while self.counts[i] == 0:  # skip zero-share sources that share a start
            i += 1
        if self.mode == 'weight':
            return i, None
        return i, (index - self.starts[i]) % len(self.sources[i])

    def _log_table(self):
        rows = [('#', 'source', 'kind', 'images found', 'repeat/weight', 'samples per epoch')]
        for s, count in zip(self.sources, self.counts):
            share = '-' if self.mode == 'one_per_source' else (
                f'weight {s.weight:g}' if self.mode == 'weight' else f'repeat {1 if s.repeat is None else s.repeat}')
            rows.append((str(s.index), s.name, s.describe(), str(len(s)), share, str(count)))
        widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
        lines = [' | '.join(v.ljust(w) for v, w in zip(r, widths)) for r in rows]
        lines.insert(1, '-+-'.join('-' * w for w in widths))
        extra = (f'one_per_source: each item stacks {len(self.sources)} samples' if self.mode == 'one_per_source'
                 else f'mode: {self.mode}')
        get_root_logger().info(f'AllInOneDataset {self.opt.get("name", "")}: {self.length} samples per epoch '
                               f'({extra}), gt_size {self.gt_size}, augment {self.augmenter.kind}, '
                               f'num_crops {self.num_crops}\n' + '\n'.join(lines))

    def __len__(self):
        return self.length

    # --- samples ---------------------------------------------------------------------------------
    def load(self, source_index, image_index, rng):
        """One sample (numpy crops turned into tensors) of a source's image."""
        s = self.sources[source_index]
        lq_name, gt_name = s.items[image_index]
        gt_img = s.reader.read('gt', gt_name, float32=False)  # crops become float
        gt_path = s.reader.path('gt', gt_name)
        if s.paired:
            lq_img = s.reader.read('lq', lq_name, float32=False)
            lq_path = s.reader.path('lq', lq_name)
            if lq_img.shape != gt_img.shape:
                raise DatasetError(f'{s.where}: lq {lq_path} is {lq_img.shape[:2]} but its gt {gt_path} is '
                                   f'{gt_img.shape[:2]}; paired images must have the same size')
            resolved = None
        else:
            lq_img, lq_path = None, gt_path
            resolved = s.pipeline.sample(rng)
        out = {'lq_path': lq_path, 'gt_path': gt_path, 'deg_name': s.name, 'deg_index': s.index}
        for c in range(self.num_crops):
            h, w = gt_img.shape[:2]
            if h < self.gt_size or w < self.gt_size:
                raise DatasetError(f'{s.where}: image {gt_path} is {h}x{w}, smaller than gt_size {self.gt_size}. '
                                   'Remove it from the source or lower gt_size.')
            top, left = random_crop_box(h, w, self.gt_size, rng)
            box = (slice(top, top + self.gt_size), slice(left, left + self.gt_size))
            drawn = self.augmenter.draw(rng)
            gt = to_unit_float(Augmenter.apply(gt_img[box], drawn))
            if s.paired:
                lq = to_unit_float(Augmenter.apply(lq_img[box], drawn))
            else:
                lq = s.pipeline.apply(gt, rng, resolved)
            lq_t, gt_t = img2tensor([lq, gt], bgr2rgb=False, float32=True)
            suffix = '' if c == 0 else str(c + 1)
            out['lq' + suffix], out['gt' + suffix] = lq_t, gt_t
        return out

    def __getitem__(self, index):
        if index < 0 or index >= self.length:
            raise IndexError(index)
        rng = process_rng(self._rng_cache)
        if self.mode == 'one_per_source':
            samples = [self.load(i, index % len(s), rng) for i, s in enumerate(self.sources)]
            out = {}
            for key in samples[0]:
                values = [sample[key] for sample in samples]
                if torch.is_tensor(values[0]):
                    out[key] = torch.stack(values)
                elif key == 'deg_index':
                    out[key] = torch.tensor(values, dtype=torch.int64)
                else:
                    out[key] = values
            return out
        source_index, image_index = self.source_of_index(index)
        if image_index is None:
            image_index = int(rng.integers(len(self.sources[source_index])))
        return self.load(source_index, image_index, rng)

