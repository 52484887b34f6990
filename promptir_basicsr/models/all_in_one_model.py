"""``AllInOneModel``: basicsr's ``SRModel`` for all-in-one restoration (PromptIR, Restormer).

Only what differs from ``SRModel`` is overridden. Option keys (besides basicsr's own):

``train:``
    optim_g: {type: AdamW, lr: 2.0e-4, ...}   any ``torch.optim`` class by name (basicsr knows only Adam)
    scheduler: {type: LinearWarmupCosineLR, ...}   see ``models/schedulers.py`` for the names;
                                                   omit for a constant lr
    pixel_opt: {type: L1Loss}       default when neither pixel_opt nor perceptual_opt is given
    fft_opt: {type: FFTLoss, ...}    optional frequency loss on (restored, gt), logged as l_fft
                                     (``losses/fft_loss.py``: MoCE-IR's one-sided, BioIR's full spectrum)
    ema_decay: 0.999                 optional EMA copy (``net_g_ema``), used for validation and saved
                                     as ``params_ema`` (basicsr's mechanism)
    grad_clip: 0.01                  clip the gradient norm to this value; or ``use_grad_clip: true``
                                     (Restormer's switch, norm 0.01)
    mini_batch_sizes: [8,5,4,2,1,1]  Restormer's progressive patches (also read from ``datasets.train``,
    iters: [92000,64000,48000,36000,36000,24000]   where Restormer's option files keep them). The
    gt_sizes: [128,160,192,256,320,384]   loader delivers batches of ``batch_size_per_gpu`` crops of
                                     ``gt_size`` (the largest); during phase j (the ``iters[j]``
                                     iterations after phase j-1) ``feed_data`` keeps
                                     ``mini_batch_sizes[j]`` random samples and crops one random
                                     ``gt_sizes[j]`` window from all of them, as Restormer's train.py.
                                     After the last phase, the last phase's values stay.
    grad_checkpoint: false           activation checkpointing per network stage: about a third of the
                                     activation memory for one extra forward per step
top level (speed and memory of the network in training, validation and test; see
``utils/acceleration.py``):
    amp: false                       mixed precision: bf16 | fp16 (fp16 with a GradScaler); CPU too
    channels_last: false             channels-last memory for the network's 4-D weights and its inputs
    compile: false                   torch.compile the network (true, or a mapping of torch.compile
                                     arguments); falls back to eager with a warning if compiling fails
    cpu_threads: ~                   torch's intra-op threads when running on the CPU (num_gpu 0)
``val:``
    pad_to_multiple: 8               inputs are reflect-padded to this multiple and the output cropped
    tile_size: ~  /  tile_overlap: 32   restore large images tile by tile (``utils/tiling.py``)
    metrics: {...}                   basicsr metrics get uint8 BGR images; our ``*_protocol`` metrics
                                     get float RGB in [0,1] (see ``metrics/protocol_metric.py``)
    input_metrics: true              also measure the degraded input against the ground truth (once
                                     per set in training; always in testing, as the reference row)
    table_name: ~                    the model's row name in the results table (default: ``name``)

Batches from ``AllInOneDataset`` with ``one_per_source: true`` carry a source axis, lq (B,S,C,H,W):
``feed_data`` flattens it to (B*S,C,H,W). With ``num_crops: 2`` the second crop arrives as
``lq2``/``gt2`` (used by ``AirNetModel``).

Validation images go to ``visualization/<set name>/<image>_<iter>.png`` (basicsr uses the image
name as the folder, so two sets with the same file names overwrite each other). Each validation
also draws one grid per set, degraded | restored | target for the first ``val:grid_images`` (4)
images with their PSNR, cells of at most ``val:grid_size`` (256) pixels:
``visualization/<set>/grid_<iter>.png`` and tensorboard ``grids/<set>`` (``visual/grids.py``;
in ``basicsr test``: ``results/<name>/visualization/<set>/grid_<name>.png``). The validation that
``train_pipeline`` runs after its loop is logged at ``total_iter`` (basicsr passes total_iter + 1 or
more; ``basicsr_patches/behaviour/models_base_model.py`` passes total_iter on), and is skipped, not
recomputed nor logged again, when the weights have not changed since the validation at ``total_iter``. ``val.pbar`` (basicsr's key) shows a tqdm bar over each set's images; by
default it is on when stdout and stderr are a terminal.
In ``basicsr test`` each set's metrics and the degraded input's metrics are collected, and after
every set the results table is written to ``results/<name>/results_table.{md,json}``
(``utils/results_table.py``); it is printed after the last set.
"""
import os.path as osp
import random
import sys
from collections import OrderedDict

import numpy as np
import torch
from basicsr.losses import build_loss
from basicsr.metrics import calculate_metric
from basicsr.models.sr_model import SRModel
from basicsr.utils import get_root_logger, imwrite, tensor2img
from basicsr.utils.registry import METRIC_REGISTRY, MODEL_REGISTRY
from tqdm import tqdm

from ..archs.arch_api import uses_contrastive_encoder
from ..inference import Restorer
from ..utils.option_keys import Key
from ..utils import acceleration, results_table
from ..visual.grids import ValidationGrid
from .schedulers import build_optimizer, build_scheduler
from .training_guards import TrainingGuardsMixin

_PAIRED_KEYS = ('lq', 'gt', 'lq2', 'gt2')
_PROGRESSIVE_KEYS = ('mini_batch_sizes', 'iters', 'gt_sizes')


def flatten_sources(data):
    """(B,S,...) -> (B*S,...) for batches of ``one_per_source`` datasets (lq has 5 dims).

    Tensors with the source axis are reshaped; ``deg_index`` (B,S) is flattened; lists of path
    lists are flattened in the same order. Other batches are returned unchanged.
    """
    lq = data.get('lq')
    if not torch.is_tensor(lq) or lq.dim() != 5:
        return data
    batch, sources = lq.shape[:2]
    out = dict(data)
    for key, value in data.items():
        if torch.is_tensor(value) and value.dim() >= 2 and tuple(value.shape[:2]) == (batch, sources):
            out[key] = value.reshape(batch * sources, *value.shape[2:])
        elif isinstance(value, (list, tuple)) and len(value) == sources and all(
                isinstance(v, (list, tuple)) and len(v) == batch for v in value):
            # default_collate turns B lists of S items into S lists of B items
            out[key] = [value[s][b] for b in range(batch) for s in range(sources)]
    return out


def wants_float_rgb(metric_opt):
    """True for metric functions that take float RGB images in [0,1] (``input_format = 'float_rgb'``)."""
    try:
        fn = METRIC_REGISTRY.get(metric_opt['type'])
    except KeyError:
        return False
    return getattr(fn, 'input_format', None) == 'float_rgb'


def _wants_pbar(val_opt):
    """``val.pbar``; by default on when stdout and stderr (where tqdm and the log write) are a terminal."""
    pbar = val_opt.get('pbar')
    return (sys.stdout.isatty() and sys.stderr.isatty()) if pbar is None else bool(pbar)


def _float_rgb(tensor):
    """(C,H,W) tensor -> float32 (H,W,C) RGB array clamped to [0,1] (not quantised)."""
    return tensor.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()


@MODEL_REGISTRY.register()
class AllInOneModel(TrainingGuardsMixin, SRModel):
    """PromptIR / Restormer training and testing in basicsr; see the module docstring for options."""

    #: the option keys this model reads, per section; checked before a run (``promptir_basicsr.options.schema``)
    OPTIONS = {
        '': {'cpu_threads': Key(int, None), 'channels_last': Key(bool), 'compile': Key(bool, dict, None),
             'amp': Key(bool, str, None, choices=(False, None, *acceleration.AMP_DTYPES))},
        'train': {**{key: Key(list, None) for key in _PROGRESSIVE_KEYS}, 'grad_checkpoint': Key(bool),
                  'fft_opt': Key(dict, None),
                  'grad_clip': Key(float, None), 'use_grad_clip': Key(bool)},
        'datasets:train': {key: Key(list, None) for key in _PROGRESSIVE_KEYS},  # where Restormer's files keep them
        'val': {'tile_size': Key(int, None), 'tile_overlap': Key(int), 'pad_to_multiple': Key(int),
                'input_metrics': Key(bool), 'table_name': Key(str, None),
                'grid_images': Key(int), 'grid_size': Key(int)},  # the validation grid (visual/grids.py)
    }

    @classmethod
    def option_problems(cls, opt, is_train):
        """Rules across keys, checked before a run: the progressive-patch lists agree with each other and with
        the training crops."""
        if not is_train:
            return []
        train_set = (opt.get('datasets') or {}).get('train') or {}
        source, where = opt['train'], 'train'
        if source.get('mini_batch_sizes') is None:
            source, where = train_set, 'datasets:train'
        if source.get('mini_batch_sizes') is None:
            return []
        lists = [list(source.get(key) or []) for key in _PROGRESSIVE_KEYS]
        if not len(lists[0]) == len(lists[1]) == len(lists[2]) > 0:
            return [f'{where}: mini_batch_sizes, iters and gt_sizes need the same length (one value per phase), got '
                    f'{", ".join(str(v) for v in lists)}']
        problems = []
        if isinstance(train_set.get('gt_size'), int) and max(lists[2]) > train_set['gt_size']:
            problems.append(f'{where}:gt_sizes {lists[2]} go beyond datasets:train:gt_size {train_set["gt_size"]}: the '
                            'loader must crop the largest patch (set gt_size to max(gt_sizes))')
        if isinstance(train_set.get('batch_size_per_gpu'), int) and max(lists[0]) > train_set['batch_size_per_gpu']:
            problems.append(f'{where}:mini_batch_sizes {lists[0]} go beyond datasets:train:batch_size_per_gpu '
                            f'{train_set["batch_size_per_gpu"]}: the loader must deliver the largest batch')
        return problems

    @classmethod
    def option_warnings(cls, opt):
        """Options that run but most likely not as meant (logged before training starts)."""
        if uses_contrastive_encoder(opt.get('network_g')):
            return [f'network_g {opt["network_g"]["type"]} has a contrastive degradation encoder, which model_type '
                    f'{opt["model_type"]} trains without its contrastive loss (and DDP would need '
                    'find_unused_parameters: true for its unused projection head); use model_type: ContrastiveModel']
        return []

    def __init__(self, opt):
        self.current_iter = 0
        self._train_steps = 0
        self._validating = False
        self.results_by_set = OrderedDict()
        self.input_results_by_set = OrderedDict()
        self._last_validation = {}
        self.amp_dtype = acceleration.parse_amp(opt.get('amp'))
        self.channels_last = bool(opt.get('channels_last', False))
        self.compile_options = acceleration.compile_options(opt.get('compile'))
        self.grad_checkpoint = bool(opt['is_train'] and (opt.get('train') or {}).get('grad_checkpoint', False))
        if opt.get('cpu_threads') and opt.get('num_gpu', 0) == 0:
            # On a shared CPU, several intra-op threads that wait on each other can be 10-20x slower
            # than one; the demo files ask for 1.
            torch.set_num_threads(int(opt['cpu_threads']))
        super().__init__(opt)

    # ---- training setup ----------------------------------------------------------------------
    def init_training_settings(self):
        train_opt = self.opt['train']
        if not train_opt.get('pixel_opt') and not train_opt.get('perceptual_opt'):
            train_opt['pixel_opt'] = {'type': 'L1Loss', 'loss_weight': 1.0, 'reduction': 'mean'}
        self.cri_fft = build_loss(train_opt['fft_opt']).to(self.device) if train_opt.get('fft_opt') else None
        self.grad_clip = train_opt.get('grad_clip')
        if self.grad_clip is None and train_opt.get('use_grad_clip'):
            self.grad_clip = 0.01  # Restormer's clip_grad_norm_(..., 0.01)
        self.progressive = self._progressive_schedule()
        self.grad_scaler = acceleration.grad_scaler(self.device, self.amp_dtype)
        super().init_training_settings()
        if hasattr(self, 'net_g_ema'):  # basicsr builds it without model_to_device
            self.prepare_network(self.net_g_ema, training=False)

    def prepare_network(self, net, training):
        """The speed options on the bare network: channels-last weights, checkpointing (``training``
        only), compile last (it captures the network as it then is)."""
        if self.channels_last:
            acceleration.to_channels_last(net)
        if training and self.grad_checkpoint:
            acceleration.enable_grad_checkpoint(net, 'train:grad_checkpoint')
        if self.compile_options is not None:
            acceleration.compile_network(net, self.compile_options)
        return net

    def model_to_device(self, net):
        """basicsr's (device, then DDP when distributed), with the speed options applied before DDP."""
        return super().model_to_device(self.prepare_network(net.to(self.device), training=self.is_train))

    def _progressive_schedule(self):
        source = self.opt['train']
        if source.get('mini_batch_sizes') is None:
            source = self.opt.get('datasets', {}).get('train', {})
        if source.get('mini_batch_sizes') is None:
            return None
        sizes, iters, gt_sizes = (list(source.get(k) or []) for k in ('mini_batch_sizes', 'iters', 'gt_sizes'))
        if not (len(sizes) == len(iters) == len(gt_sizes) > 0):
            raise ValueError('Progressive training needs mini_batch_sizes, iters and gt_sizes of the same length, got '
                             f'{sizes}, {iters}, {gt_sizes}')
        logger = get_root_logger()
        logger.info(f'Progressive training: mini_batch_sizes {sizes}, iters {iters}, gt_sizes {gt_sizes}')
        return {'mini_batch_sizes': sizes, 'ends': np.cumsum(iters).tolist(), 'gt_sizes': gt_sizes}

    def optimized_parameters(self):
        """The parameters the optimizer gets (trainable ones); the others are summarised in one log line."""
        params, frozen = [], []
        for name, param in self.net_g.named_parameters():
            (params if param.requires_grad else frozen).append(param if param.requires_grad else name)
        if frozen:
            get_root_logger().info(f'{len(frozen)} parameter tensors are not optimized (requires_grad False: a '
                                   'momentum encoder, unused official modules, fixed prompts): '
                                   f'{", ".join(frozen[:3])}{", ..." if len(frozen) > 3 else ""}')
        return params

    def setup_optimizers(self):
        self.optimizer_g = build_optimizer(self.optimized_parameters(), self.opt['train']['optim_g'])
        self.optimizers.append(self.optimizer_g)

    def setup_schedulers(self):
        train_opt = self.opt['train']
        if not train_opt.get('scheduler'):
            return  # constant learning rate
        for optimizer in self.optimizers:
            self.schedulers.append(build_scheduler(optimizer, train_opt['scheduler'], train_opt))

    def update_learning_rate(self, current_iter, warmup_iter=-1):
        # train_pipeline calls this right before feed_data: remember the iteration for feed_data
        self.current_iter = current_iter
        super().update_learning_rate(current_iter, warmup_iter)

    # ---- data ----------------------------------------------------------------------------------
    def feed_data(self, data):
        data = flatten_sources(data)
        self.lq = self._to_device(data['lq'])
        for key in ('gt', 'lq2', 'gt2'):
            if key in data:
                setattr(self, key, self._to_device(data[key]))
            elif hasattr(self, key):
                delattr(self, key)
        self.deg_index = data.get('deg_index')
        if self.is_train and not self._validating and getattr(self, 'progressive', None):
            self._progressive_crop()

    def _to_device(self, tensor):
        tensor = tensor.to(self.device)
        if self.channels_last:
            tensor = tensor.contiguous(memory_format=torch.channels_last)
        return tensor

    def progressive_phase(self, current_iter):
        """(mini_batch_size, gt_size) of the progressive schedule at ``current_iter``."""
        schedule = self.progressive
        phase = next((j for j, end in enumerate(schedule['ends']) if current_iter <= end), len(schedule['ends']) - 1)
        return schedule['mini_batch_sizes'][phase], schedule['gt_sizes'][phase]

    def _progressive_crop(self):
        mini_batch, mini_size = self.progressive_phase(self.current_iter)
        present = [k for k in _PAIRED_KEYS if hasattr(self, k)]
        batch = self.lq.size(0)
        if mini_batch < batch:
            keep = sorted(random.sample(range(batch), k=mini_batch))
            for key in present:
                setattr(self, key, getattr(self, key)[keep])
            if torch.is_tensor(self.deg_index):
                self.deg_index = self.deg_index[keep]
        height, width = self.lq.shape[-2:]
        if mini_size < height or mini_size < width:
            scale = self.opt.get('scale', 1)
            top = random.randint(0, max(height - mini_size, 0))
            left = random.randint(0, max(width - mini_size, 0))
            for key in present:
                factor = scale if key.startswith('gt') else 1
                value = getattr(self, key)
                setattr(self, key, value[..., top * factor:(top + mini_size) * factor,
                                         left * factor:(left + mini_size) * factor])

    # ---- one iteration -------------------------------------------------------------------------
    def _autocast(self):
        return acceleration.autocast(self.device, self.amp_dtype)

    def compute_losses(self, output, target):
        """SRModel's pixel + perceptual losses, and the frequency loss of ``fft_opt``: (total, OrderedDict of logged
        terms)."""
        l_total = 0
        loss_dict = OrderedDict()
        if self.cri_pix:
            l_pix = self.cri_pix(output, target)
            l_total = l_total + l_pix
            loss_dict['l_pix'] = l_pix
        if self.cri_perceptual:
            l_percep, l_style = self.cri_perceptual(output, target)
            if l_percep is not None:
                l_total = l_total + l_percep
                loss_dict['l_percep'] = l_percep
            if l_style is not None:
                l_total = l_total + l_style
                loss_dict['l_style'] = l_style
        if getattr(self, 'cri_fft', None) is not None:
            l_fft = self.cri_fft(output, target)
            l_total = l_total + l_fft
            loss_dict['l_fft'] = l_fft
        return l_total, loss_dict

    def forward_and_loss(self, current_iter):
        """Training forward and total loss: (total, loss_dict). Subclasses change this only."""
        self.output = self.net_g(self.lq)
        return self.compute_losses(self.output.float(), self.gt)

    def backward_and_step(self, l_total):
        if self.grad_scaler is not None:
            self.grad_scaler.scale(l_total).backward()
            self.sync_gradients()
            if self.grad_clip:
                self.grad_scaler.unscale_(self.optimizer_g)
                torch.nn.utils.clip_grad_norm_(self.net_g.parameters(), self.grad_clip)
            self.grad_scaler.step(self.optimizer_g)
            self.grad_scaler.update()
        else:
            l_total.backward()
            self.sync_gradients()
            if self.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.net_g.parameters(), self.grad_clip)
            self.optimizer_g.step()

    def sync_gradients(self):
        """Called after backward; DDP already averaged the gradients of its forward. Subclasses that
        run a sub-network outside DDP's forward (AirNet's encoder stage) average them here."""

    def model_ema(self, decay=0.999):
        """basicsr's EMA of the parameters, plus a copy of the buffers (BatchNorm statistics, queues),
        which basicsr leaves at their initial values in ``net_g_ema``."""
        super().model_ema(decay)
        net_g = self.get_bare_model(self.net_g)
        ema_buffers = dict(self.net_g_ema.named_buffers())
        for name, buffer in net_g.named_buffers():
            if name in ema_buffers:
                ema_buffers[name].data.copy_(buffer.data)

    def optimize_parameters(self, current_iter):
        self.current_iter = current_iter
        self.optimizer_g.zero_grad(set_to_none=True)
        with self._autocast():
            l_total, loss_dict = self.forward_and_loss(current_iter)
        if self.loss_is_finite(l_total, current_iter):
            self.backward_and_step(l_total)
            self._train_steps += 1
            if self.ema_decay > 0:
                self.model_ema(decay=self.ema_decay)
        self.log_dict = self.reduce_loss_dict(loss_dict)
        self.after_iteration(current_iter)

    # ---- inference -----------------------------------------------------------------------------
    def inference_net(self):
        """The EMA network if any, else net_g unwrapped from (D)DP: validation runs on rank 0 alone,
        and a DDP forward there could wait for the other ranks (buffer broadcast)."""
        return self.net_g_ema if hasattr(self, 'net_g_ema') else self.get_bare_model(self.net_g)

    def test(self):
        """Restore ``self.lq`` with the inference network through the one inference path (``Restorer``:
        padding to ``val: pad_to_multiple`` or the network's size multiple, ``val: tile_size`` tiles,
        autocast), into ``self.output`` (float32, CPU)."""
        net = self.inference_net()
        was_training = net.training
        val_opt = self.opt.get('val') or {}
        restorer = Restorer(net, self.device, self.amp_dtype, val_opt.get('tile_size'), val_opt.get('tile_overlap', 32),
                            multiple=val_opt.get('pad_to_multiple'), scale=self.opt.get('scale', 1))
        self.output = restorer(self.lq)
        if was_training and not hasattr(self, 'net_g_ema'):
            net.train()

    # ---- validation ----------------------------------------------------------------------------
    def nondist_validation(self, dataloader, current_iter, tb_logger, save_img):
        dataset_name = dataloader.dataset.opt['name']
        val_opt = self.opt['val']
        metrics_opt = val_opt.get('metrics') or {}
        with_metrics = bool(metrics_opt)

        stamp = (current_iter, self._train_steps)
        if self.is_train and with_metrics and self._last_validation.get(dataset_name, (None, ))[0] == stamp:
            # train_pipeline's end-of-training validation of weights just validated at total_iter: that report
            # is the final one; repeating it would print every set twice
            self.metric_results = dict(self._last_validation[dataset_name][1])
            return

        if with_metrics:
            self.metric_results = {name: 0.0 for name in metrics_opt}
            self._initialize_best_metric_results(dataset_name)
        want_input = with_metrics and val_opt.get('input_metrics', True) and (
            not self.is_train or dataset_name not in self.input_results_by_set)
        input_sums = {name: 0.0 for name in metrics_opt}
        float_metric = {name: wants_float_rgb(m) for name, m in metrics_opt.items()}

        pbar = tqdm(total=len(dataloader), unit='image', leave=False) if _wants_pbar(val_opt) else None
        grid = ValidationGrid.from_options(val_opt)
        count = measured = input_measured = 0  # images; of them with a target; with a target of the input's size
        self._validating = True
        try:
            for val_data in dataloader:
                self.feed_data(val_data)
                self.test()
                output = self.output.detach().cpu()
                lq = self.lq.detach().cpu()
                gt = self.gt.detach().cpu() if hasattr(self, 'gt') else None
                paths = val_data.get('lq_path') or val_data.get('gt_path')
                for b in range(output.size(0)):
                    img_name = osp.splitext(osp.basename(paths[b]))[0] if paths else f'{count:05d}'
                    sr_img = tensor2img([output[b]])
                    if save_img:
                        imwrite(sr_img, self._image_path(dataset_name, img_name, current_iter))
                    grid.add(img_name, lq[b], output[b], None if gt is None else gt[b])
                    if with_metrics and gt is not None:
                        gt_img = tensor2img([gt[b]])
                        self._add_metrics(self.metric_results, metrics_opt, float_metric, output[b], sr_img, gt[b],
                                          gt_img)
                        measured += 1
                        if want_input and lq[b].shape == gt[b].shape:
                            self._add_metrics(input_sums, metrics_opt, float_metric, lq[b], tensor2img([lq[b]]), gt[b],
                                              gt_img)
                            input_measured += 1
                    count += 1
                    if pbar:
                        pbar.update(1)
                        pbar.set_description(f'Test {img_name}')
                for key in ('lq', 'output', 'gt', 'lq2', 'gt2'):
                    if hasattr(self, key):
                        delattr(self, key)
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
        finally:
            self._validating = False
            if pbar:
                pbar.close()

        if self.opt.get('rank', 0) == 0:
            grid.write(self.opt['path']['visualization'], dataset_name, current_iter, tb_logger)
        if not with_metrics or count == 0:
            return
        if measured == 0:
            # a set of inputs alone (no gt): averaging nothing would log 0 for every metric and record it as a best
            get_root_logger().warning(f'Validation set {dataset_name} has no targets (gt): its metrics are not '
                                      'computed (remove val:metrics, or give the set its gt images).')
            return
        for name in self.metric_results:
            self.metric_results[name] /= measured
            self._update_best_metric_result(dataset_name, name, self.metric_results[name], current_iter)
        self.results_by_set[dataset_name] = dict(self.metric_results)
        if want_input and input_measured:
            self.input_results_by_set[dataset_name] = {k: v / input_measured for k, v in input_sums.items()}
            get_root_logger().info(f'Input (degraded) {dataset_name}: ' + ', '.join(
                f'{k}: {v:.4f}' for k, v in self.input_results_by_set[dataset_name].items()))
        self._last_validation[dataset_name] = (stamp, dict(self.metric_results))
        self._log_validation_metric_values(current_iter, dataset_name, tb_logger)
        if not self.is_train:
            self._write_results_table()

    @staticmethod
    def _add_metrics(sums, metrics_opt, float_metric, result, result_img, gt, gt_img):
        for name, metric_opt in metrics_opt.items():
            if float_metric[name]:
                data = {'img': _float_rgb(result), 'img2': _float_rgb(gt)}
            else:
                data = {'img': result_img, 'img2': gt_img}
            sums[name] += calculate_metric(data, metric_opt)

    def _image_path(self, dataset_name, img_name, current_iter):
        folder = osp.join(self.opt['path']['visualization'], dataset_name)
        if self.opt['is_train']:
            return osp.join(folder, f'{img_name}_{current_iter}.png')
        suffix = self.opt['val'].get('suffix') or self.opt['name']
        return osp.join(folder, f'{img_name}_{suffix}.png')

    # ---- results table (basicsr test) ----------------------------------------------------------
    def results_table(self):
        """The table of this run: the model's row and the degraded input's row."""
        metrics = list((self.opt['val'].get('metrics') or {}).keys())
        name = self.opt['val'].get('table_name') or self.opt['name']
        rows = [results_table.make_row(name, dict(self.results_by_set), metrics)]
        if self.input_results_by_set:
            rows.append(
                results_table.make_row(results_table.INPUT_ROW, dict(self.input_results_by_set), metrics,
                                       reference=True))
        return results_table.make_table(rows, metrics, list(self.results_by_set))

    def _write_results_table(self):
        if self.opt.get('rank', 0) != 0:
            return
        folder = self.opt['path'].get('results_root')
        if not folder:
            return
        text = results_table.write_table(self.results_table(), folder)
        expected = [d.get('name') for d in (self.opt.get('datasets') or {}).values()]
        if all(n in self.results_by_set for n in expected):
            get_root_logger().info(f'Results table ({osp.join(folder, results_table.MD_NAME)}):\n{text}')
