"""AirNet (Li et al., CVPR 2022, "All-in-one image restoration for unknown corruption") as a basicsr
arch: ``type: AirNet``.

Two parts, named as in the official state dict:

* ``E`` - CBDE, the contrastive degradation encoder: a MoCo pair (``E.E.encoder_q`` trained,
  ``E.E.encoder_k`` a momentum copy) of small ResNet encoders plus a queue of negative keys. The
  query encoder's first block output ``inter`` (B, n_feats, H, W) is the degradation
  representation that guides the restorer.
* ``R`` - DGRN, the degradation-guided restoration network: groups of blocks whose DGM modules
  modulate features with ``inter``, by a deformable conv (offsets and mask predicted from features
  and ``inter``) and an SFT affine transform.

Order below: encoder pieces (ResBlock, ResEncoder, MoCo, CBDE), restorer pieces (DCN, SFT, DGM, DGB,
DGG, DGRN), then the network. The deformable conv uses ``torchvision.ops.deform_conv2d`` (CPU and
GPU, no compiled extension); its offset/mask layout is the one of mmcv's ``modulated_deform_conv2d``
used officially: offsets (B, 2*k*k, H, W) as (dy, dx) pairs per kernel tap, mask (B, k*k, H, W).

No stride constraint on the input size: the restorer runs at full resolution and only the encoder
downsamples (stride-2 convs with padding 1, then global pooling), so any H, W works unpadded.
"""
import math

from basicsr.utils.registry import ARCH_REGISTRY
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torchvision.ops import deform_conv2d

from .arch_api import RestorationArch, count_children
from .grad_checkpoint import StageCheckpointing

LRELU_SLOPE = 0.1


# ----------------------------------------------------------------------------------------------
# Degradation encoder (CBDE)
# ----------------------------------------------------------------------------------------------
class ResBlock(nn.Module):
    """conv3x3(stride)-BN-LReLU-conv3x3-BN plus a 1x1(stride)-BN shortcut, then LReLU."""

    def __init__(self, in_feat, out_feat, stride=1):
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Conv2d(in_feat, out_feat, kernel_size=3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(out_feat),
            nn.LeakyReLU(LRELU_SLOPE, inplace=True),
            nn.Conv2d(out_feat, out_feat, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_feat),
        )
        self.shortcut = nn.Sequential(
            nn.Conv2d(in_feat, out_feat, kernel_size=1, stride=stride, bias=False),
            nn.BatchNorm2d(out_feat),
        )

    def forward(self, x):
        return F.leaky_relu(self.backbone(x) + self.shortcut(x), LRELU_SLOPE)


class ResEncoder(nn.Module):
    """(B, 3, H, W) -> fea (B, C2), out (B, moco_dim), inter (B, C0, H, W); (C0, C1, C2) = widths.

    ``E_pre`` (stride 1) gives ``inter``; ``E`` = two stride-2 ResBlocks and a global average pool;
    ``mlp`` is the MoCo projection head.
    """

    def __init__(self, in_channels=3, widths=(64, 128, 256), moco_dim=256):
        super().__init__()
        c0, c1, c2 = widths
        self.E_pre = ResBlock(in_channels, c0, stride=1)
        self.E = nn.Sequential(ResBlock(c0, c1, stride=2), ResBlock(c1, c2, stride=2), nn.AdaptiveAvgPool2d(1))
        self.mlp = nn.Sequential(nn.Linear(c2, c2), nn.LeakyReLU(LRELU_SLOPE, inplace=True), nn.Linear(c2, moco_dim))

    def forward(self, x):
        inter = self.E_pre(x)
        fea = self.E(inter).flatten(1)
        return fea, self.mlp(fea), inter


class MoCo(nn.Module):
    """Momentum contrast around two ResEncoders; buffers ``queue`` (moco_dim, K) and ``queue_ptr``.

    :meth:`contrast` is one training step of the contrastive task: query features with gradients,
    then (no gradients) the momentum update of the key encoder, the keys, InfoNCE logits
    (B, 1 + K) = [q.k, q.queue] / T with label 0, and the enqueue of the keys.
    """

    def __init__(self, encoder_kwargs, moco_dim=256, queue_size=1280, momentum=0.999, temperature=0.07):
        super().__init__()
        self.K = queue_size
        self.m = momentum
        self.T = temperature
        self.encoder_q = ResEncoder(**encoder_kwargs, moco_dim=moco_dim)
        self.encoder_k = ResEncoder(**encoder_kwargs, moco_dim=moco_dim)
        # The key encoder starts as a copy and then only follows the query encoder by momentum.
        self.encoder_k.load_state_dict(self.encoder_q.state_dict())
        self.encoder_k.requires_grad_(False)
        self.register_buffer('queue', F.normalize(torch.randn(moco_dim, queue_size), dim=0))
        self.register_buffer('queue_ptr', torch.zeros(1, dtype=torch.long))

    @torch.no_grad()
    def _momentum_update_key_encoder(self):
        # k <- m * k + (1 - m) * q, i.e. lerp towards q by (1 - m).
        for param_q, param_k in zip(self.encoder_q.parameters(), self.encoder_k.parameters()):
            param_k.lerp_(param_q.detach(), 1.0 - self.m)

    @torch.no_grad()
    def _dequeue_and_enqueue(self, keys):
        # Under DDP every rank enqueues the keys of all ranks (MoCo's concat_all_gather), so the queues stay
        # identical and hold world_size x B new negatives per step.
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            gathered = [torch.empty_like(keys) for _ in range(dist.get_world_size())]
            dist.all_gather(gathered, keys.contiguous())
            keys = torch.cat(gathered)
        # Write the B keys at the pointer, wrapping around: the official code asserts K % B == 0 and
        # gives the same result then; wrapping also accepts a smaller last batch.
        # The pointer stays a tensor (no .item()): torch.compile captures the step in one graph.
        n = min(keys.shape[0], self.K)
        idx = (torch.arange(n, device=keys.device) + self.queue_ptr) % self.K
        self.queue[:, idx] = keys[-n:].t().to(self.queue.dtype)
        self.queue_ptr.copy_((self.queue_ptr + n) % self.K)

    def contrast(self, im_q, im_k):
        """-> (query, logits (B, 1+K), labels (B,) zeros); updates the key encoder and the queue.

        ``query`` is the query encoder's output ``(fea, q, inter)`` (see :class:`ResEncoder`): AirNet's
        restorer reads ``inter``, PromptIR's CBDE prompts read ``fea``.
        """
        query = self.encoder_q(im_q)
        q = F.normalize(query[1], dim=1)
        with torch.no_grad():
            self._momentum_update_key_encoder()
            _, k, _ = self.encoder_k(im_k)
            k = F.normalize(k, dim=1)
        l_pos = (q * k).sum(dim=1, keepdim=True)
        l_neg = q @ self.queue.clone()  # clone: the enqueue below writes the queue in place
        logits = torch.cat([l_pos, l_neg], dim=1) / self.T
        labels = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
        self._dequeue_and_enqueue(k)
        return query, logits, labels

    def forward(self, im_q):
        """Inference: the query encoder's ``inter`` only (the key encoder and queue are unused)."""
        return self.encoder_q(im_q)[2]


class CBDE(nn.Module):
    """Holder of the MoCo module as ``E`` (official key prefix ``E.E.``)."""

    def __init__(self, **moco_kwargs):
        super().__init__()
        self.E = MoCo(**moco_kwargs)


def res_encoder_options(state_dict, prefix):
    """(widths (C0, C1, C2), projection size) of a ResEncoder whose keys start with ``prefix``."""
    widths = [int(state_dict[f'{prefix}.{block}.backbone.0.weight'].shape[0]) for block in ('E_pre', 'E.0', 'E.1')]
    return widths, int(state_dict[f'{prefix}.mlp.2.weight'].shape[0])


def _resize_queue(queue, ptr, target_queue):
    """MoCo queue (dim, K) -> (dim, K'), keeping the newest keys; -> (queue, ptr).

    The queue is a ring buffer whose oldest column sits at ``ptr``. Rolled into age order, the
    newest K' keys are kept when shrinking; when growing, the target's own (random, normalised)
    columns fill the front as the "oldest" entries. The new pointer is 0: the next write replaces
    the oldest column.
    """
    new_size = target_queue.shape[1]
    ordered = torch.roll(queue, shifts=-int(ptr), dims=1)
    if new_size <= queue.shape[1]:
        resized = ordered[:, queue.shape[1] - new_size:]
    else:
        resized = torch.cat([target_queue[:, :new_size - queue.shape[1]].to(queue.dtype), ordered], dim=1)
    return resized.contiguous(), torch.zeros(1, dtype=torch.long)


def adapt_moco_queues(state_dict, target_state_dict, notes):
    """Fit every '<prefix>queue' buffer (AirNet's 'E.E.queue') to the target network's queue size.

    The queue only stores negative keys for the contrastive loss during training; inference never
    reads it. Its size is the official batch x 256, so a file trained at another batch has another
    size. Same feature dimension: resized (see :func:`_resize_queue`). Otherwise: dropped, the
    target's freshly initialised queue is used. Either way a note says so.
    """
    for key in [k for k in state_dict if k == 'queue' or k.endswith('.queue')]:
        target = target_state_dict.get(key)
        if target is None or state_dict[key].shape == target.shape:
            continue
        ptr_key = key + '_ptr'
        source = state_dict[key]
        ptr = state_dict.get(ptr_key, torch.zeros(1, dtype=torch.long))
        if source.dim() == 2 and source.shape[0] == target.shape[0]:
            state_dict[key], state_dict[ptr_key] = _resize_queue(source, int(ptr), target)
            notes.append(f'{key}: MoCo queue resized from {tuple(source.shape)} to {tuple(target.shape)} '
                         '(newest keys kept; training-only buffer)')
        else:
            state_dict[key] = target.clone()
            state_dict[ptr_key] = torch.zeros_like(target_state_dict.get(ptr_key, ptr))
            notes.append(f"{key}: MoCo queue {tuple(source.shape)} dropped (the network's is "
                         f'{tuple(target.shape)}); using a fresh queue (training-only buffer)')
    return state_dict


# ----------------------------------------------------------------------------------------------
# Degradation-guided restorer (DGRN)
# ----------------------------------------------------------------------------------------------
def default_conv(in_channels, out_channels, kernel_size, bias=True):
    return nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias)


class DCNLayer(nn.Module):
    """Modulated deformable conv guided by ``inter`` (official ``DCN_layer``, no bias).

    ``conv_offset_mask`` (zero-initialised, so training starts as a plain conv with mask 0.5) reads
    cat(x, inter) (B, 2C, H, W) and predicts 3*k*k maps: the first 2*k*k are the offsets, the last
    k*k the mask logits.
    """

    def __init__(self, channels, kernel_size=3):
        super().__init__()
        self.padding = (kernel_size - 1) // 2
        self.weight = nn.Parameter(torch.empty(channels, channels, kernel_size, kernel_size))
        self.conv_offset_mask = nn.Conv2d(channels * 2, 3 * kernel_size * kernel_size, kernel_size,
                                          padding=self.padding, bias=True)
        # The official initialisation: weight ~ U(-1/sqrt(n), 1/sqrt(n)), n = C*k*k; offsets zero.
        bound = 1.0 / math.sqrt(channels * kernel_size * kernel_size)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.zeros_(self.conv_offset_mask.weight)
        nn.init.zeros_(self.conv_offset_mask.bias)

    def forward(self, x, inter):
        out = self.conv_offset_mask(torch.cat([x, inter], dim=1))
        n_offset = out.shape[1] * 2 // 3
        offset, mask = out[:, :n_offset], torch.sigmoid(out[:, n_offset:])
        # Under autocast the features arrive in bf16/fp16, which torchvision's CPU kernel lacks (its
        # CUDA autocast wrapper does the same): the deformable conv runs in the weight's precision.
        dtype = self.weight.dtype
        return deform_conv2d(x.to(dtype), offset.to(dtype), self.weight, None, padding=self.padding,
                             mask=mask.to(dtype))


class SFTLayer(nn.Module):
    """Spatial feature transform: x * gamma(inter) + beta(inter), each 1x1 conv-LReLU-1x1 conv."""

    def __init__(self, channels):
        super().__init__()

        def branch():
            return nn.Sequential(
                nn.Conv2d(channels, channels, 1, bias=False), nn.LeakyReLU(LRELU_SLOPE, inplace=True),
                nn.Conv2d(channels, channels, 1, bias=False))

        self.conv_gamma = branch()
        self.conv_beta = branch()

    def forward(self, x, inter):
        return x * self.conv_gamma(inter) + self.conv_beta(inter)


class DGM(nn.Module):
    """Degradation-guided module: x + DCN(x, inter) + SFT(x, inter)."""

    def __init__(self, channels, kernel_size=3):
        super().__init__()
        self.dcn = DCNLayer(channels, kernel_size)
        self.sft = SFTLayer(channels)

    def forward(self, x, inter):
        return x + self.dcn(x, inter) + self.sft(x, inter)


class DGB(nn.Module):
    """Block: DGM, LReLU, conv, LReLU, DGM, LReLU, conv, + x."""

    def __init__(self, channels, kernel_size=3):
        super().__init__()
        self.dgm1 = DGM(channels, kernel_size)
        self.dgm2 = DGM(channels, kernel_size)
        self.conv1 = default_conv(channels, channels, kernel_size)
        self.conv2 = default_conv(channels, channels, kernel_size)

    def forward(self, x, inter):
        out = F.leaky_relu(self.dgm1(x, inter), LRELU_SLOPE)
        out = F.leaky_relu(self.conv1(out), LRELU_SLOPE)
        out = F.leaky_relu(self.dgm2(out, inter), LRELU_SLOPE)
        return self.conv2(out) + x


class DGG(nn.Module):
    """Group: ``body`` = n_blocks DGBs then a conv (official keys ``body.<i>``); + x."""

    def __init__(self, channels, kernel_size, n_blocks):
        super().__init__()
        self.body = nn.Sequential(*[DGB(channels, kernel_size) for _ in range(n_blocks)],
                                  default_conv(channels, channels, kernel_size))

    def forward(self, x, inter):
        res = x
        for block in self.body[:-1]:
            res = block(res, inter)
        return self.body[-1](res) + x


class DGRN(StageCheckpointing, nn.Module):
    """(B, in, H, W), inter (B, n_feats, H, W) -> (B, out, H, W).

    head conv -> n_groups DGGs -> conv, + head output -> tail conv. No residual to the input image
    (as official). Each group is a stage for activation checkpointing (``grad_checkpoint``).
    """

    def __init__(self, in_channels=3, out_channels=3, n_feats=64, n_groups=5, n_blocks=5, kernel_size=3):
        super().__init__()
        self.head = nn.Sequential(default_conv(in_channels, n_feats, kernel_size))
        self.body = nn.Sequential(*[DGG(n_feats, kernel_size, n_blocks) for _ in range(n_groups)],
                                  default_conv(n_feats, n_feats, kernel_size))
        self.tail = nn.Sequential(default_conv(n_feats, out_channels, kernel_size))

    def forward(self, x, inter):
        x = self.head(x)
        res = x
        groups = self.body[:-1]
        for i, group in enumerate(groups):
            res = self.run_stage(group, res, inter, last=i == len(groups) - 1)
        return self.tail(self.body[-1](res) + x)


# ----------------------------------------------------------------------------------------------
# The network
# ----------------------------------------------------------------------------------------------
@ARCH_REGISTRY.register()
class AirNet(StageCheckpointing, RestorationArch, nn.Module):
    """AirNet: ``E`` (CBDE/MoCo degradation encoder) guides ``R`` (DGRN restorer).

    Shapes for an input (B, 3, H, W), any H and W, at the defaults:

    ======================  ==================  ===================================================
    stage                   output              note
    ======================  ==================  ===================================================
    E.E.encoder_q.E_pre     inter (B,64,H,W)    ResBlock stride 1: the degradation map
    E.E.encoder_q.E         fea (B, 256)        ResBlocks stride 2, 2, global pool (H/4 inside)
    E.E.encoder_q.mlp       q (B, 256)          projection for the contrastive loss (training)
    R.head                  (B, 64, H, W)       3x3 conv
    R.body[0..4]            (B, 64, H, W)       5 groups x 5 blocks, each block 2 DGMs with inter
    R.body[5] + head        (B, 64, H, W)       conv, residual
    R.tail                  (B, 3, H, W)        3x3 conv (no image residual)
    ======================  ==================  ===================================================

    Forward contract (the AirNet model relies on it):

    * ``forward(x_query)`` or eval mode: returns the restored image (B, out, H, W) only.
    * training mode with ``x_key`` (a second crop of the same degraded image): returns
      ``(restored, logits, labels)``; restored from ``x_query``, logits (B, 1+queue_size) InfoNCE
      logits, labels (B,) long zeros. The key encoder gets its momentum update and the queue its
      enqueue inside this call; the key encoder never receives gradients.
    * :meth:`contrastive` runs only the encoder (the first training stage): ``(logits, labels)``.

    Defaults are the official configuration: 584 state-dict keys, 8,930,313 parameters of which
    7,610,377 trainable (the key encoder's are frozen), queue 1280 = batch 5 x 256. The official
    code sets queue_size = batch_size * 256; here it is its own argument (any batch size works:
    the enqueue wraps around).

    ``set_grad_checkpointing(True)`` (option ``train: grad_checkpoint``) checkpoints the restorer's
    groups (``R.body[i]``) but the last. Unlike Restormer and PromptIR, AirNet runs in the official
    (B, C, H, W) layout: torchvision's deformable convolution, most of its time, takes no other.

    DDP: the queue receives the keys of every rank (all-gathered), so it stays the same on every
    rank; the key encoder's parameters are frozen (DDP ignores them); a training ``forward`` with
    ``x_key`` uses every other parameter, so ``find_unused_parameters: false`` works. ``AirNetModel``
    runs its encoder-only first stage (:meth:`contrastive`) on the unwrapped network, outside DDP's
    forward, and averages those gradients itself. (A training ``forward`` without ``x_key`` leaves the
    projection head unused and would need ``find_unused_parameters: true``.)

    Hyper-parameters: ``n_feats`` (restorer width; also the encoder's first width, because DGMs
    combine features and ``inter`` channel-wise), ``n_groups``, ``n_blocks``, ``kernel_size``,
    ``encoder_widths`` (the two stride-2 stages), ``moco_dim``, ``queue_size``, ``moco_momentum``,
    ``moco_temperature``.
    """

    def __init__(self,
                 inp_channels=3,
                 out_channels=3,
                 n_feats=64,
                 n_groups=5,
                 n_blocks=5,
                 kernel_size=3,
                 encoder_widths=(128, 256),
                 moco_dim=256,
                 queue_size=1280,
                 moco_momentum=0.999,
                 moco_temperature=0.07):
        super().__init__()
        self.R = DGRN(inp_channels, out_channels, n_feats, n_groups, n_blocks, kernel_size)
        self.E = CBDE(encoder_kwargs=dict(in_channels=inp_channels, widths=(n_feats, *encoder_widths)),
                      moco_dim=moco_dim, queue_size=queue_size, momentum=moco_momentum,
                      temperature=moco_temperature)

    # ---- what the rest of the package knows about AirNet (archs/arch_api.py) ---------------------------
    size_multiple = 1  # any size: only the encoder downsamples (padding would change its pooled code)
    weight_signature = ('R.head.0.weight', )
    # The degradation code is pooled from the whole input: a tile sees only its own degradation. float16
    # measured within 1.0e-3 of float32 (CPU, official configuration, random weights, 64x64); torchvision's
    # deformable convolution has no bfloat16 kernel.
    spandrel_supports_half = True
    spandrel_tiling = 'discouraged'

    @classmethod
    def options_from_weights(cls, state_dict):
        sd = state_dict
        head = sd['R.head.0.weight']  # (n_feats, in, k, k)
        widths, moco_dim = res_encoder_options(sd, 'E.E.encoder_q')
        options = dict(
            inp_channels=int(head.shape[1]),
            out_channels=int(sd['R.tail.0.weight'].shape[0]),
            n_feats=int(head.shape[0]),
            n_groups=count_children(sd, 'R.body') - 1,  # the groups, then one conv
            n_blocks=count_children(sd, 'R.body.0.body') - 1,  # the blocks, then one conv
            kernel_size=int(head.shape[-1]),
            encoder_widths=widths[1:],  # the first width is n_feats
            moco_dim=moco_dim,
        )
        if 'E.E.queue' in sd:  # training-only; files without it get the default queue
            options['queue_size'] = int(sd['E.E.queue'].shape[1])
        return options

    @classmethod
    def adapt_weights(cls, state_dict, target_state_dict, notes):
        return adapt_moco_queues(state_dict, target_state_dict, notes)  # official All.pth: batch 5's queue

    @staticmethod
    def uses_contrastive_encoder(options):
        """AirNet always trains its degradation encoder with the contrastive loss (``AirNetModel``)."""
        return True

    @classmethod
    def spandrel_tags(cls, options):
        return [f'{options["n_feats"]}nf']

    def contrastive(self, x_query, x_key):
        """Encoder only: ``(logits (B, 1+K), labels (B,))``; updates the key encoder and queue."""
        _, logits, labels = self.E.E.contrast(x_query, x_key)
        return logits, labels

    def forward(self, x_query, x_key=None):
        if self.training and x_key is not None:
            (_, _, inter), logits, labels = self.E.E.contrast(x_query, x_key)
            return self.R(x_query, inter), logits, labels
        return self.R(x_query, self.E.E(x_query))
