"""Restoring image files: the rules ``basicsr restore`` (and ``basicsr serve``) share, so both write the same
bytes for the same weights and image.

- :func:`open_network`: any weights file (or an ``.onnx`` export) -> a :class:`~promptir_basicsr.inference.Restorer`
  ready on its device, with one line saying what it runs: the backend (torch, or onnxruntime on a cached export,
  :func:`choose_backend`) and the memory budget that picks tiles (:class:`MemoryBudget`).
- :func:`restore_image`: a decoded image (:class:`~promptir_basicsr.utils.images.ImageFile`) -> the restored
  samples in the input's mode and bit depth.
- :func:`restore_file`: one file in, one file out (written atomically), and the ``--compare`` picture.

Memory budget (``--max-memory``). The peak memory of one forward is measured, not modelled: the network runs
on :data:`CALIBRATION_SIDES` images and the rise of the process's peak resident memory (torch's allocations,
onnxruntime's arena, the allocator's slack alike; :mod:`promptir_basicsr.utils.memory`) is fitted as
``fixed + per_pixel * pixels`` (:class:`MemoryModel`). For each image, :class:`MemoryBudget` takes what the
process holds then, adds the two image-sized float copies a forward keeps beside the network (the padded
input and the blended output), and picks the whole image if its forward fits, else the largest tiles that fit,
spread evenly over the image (:func:`~promptir_basicsr.utils.tiling.fitted_tile`), then as many of them per
forward as fit (batches).

Backends. ``torch`` runs the network eagerly; ``onnxruntime`` runs it exported to ONNX once per weights (dynamic
height and width, checked against torch by :func:`~promptir_basicsr.interop.export.onnx_bytes`) and cached under
:func:`cache_folder`, keyed by the hash of the weights and the export options; ``auto`` follows
:func:`choose_backend`'s rule: on the CPU the faster of the two for the network, timed once and remembered.
"""
import hashlib
import json
import math
import os
import os.path as osp
import time

import torch

from .archs.arch_api import declaration
from .errors import UserError
from .inference import Restorer, resolve_device
from .utils import memory
from .utils.files import atomic_write_bytes, atomic_write_text
from .utils.images import encode_image, read_image, to_samples, to_tensor
from .utils.tiling import TileGrid, fitted_tile
from .visual.grids import save_png, side_by_side
from .weights.network import build_from_options, describe_network

BACKENDS = ('auto', 'torch', 'onnxruntime')
CALIBRATION_SIDES = (64, 128)  # square inputs the forward's peak memory is measured at (cheap: the smallest first)
# The measured model times this. torch: its peak per pixel grows a little with the size (full-size PromptIR, 1
# thread: 7.8 kB per pixel at 128 x 128, 8.2 kB at 256 x 256). onnxruntime: its memory arena grows by doubling
# its last extension, so a forward may hold up to twice what it uses (measured: a 4096 x 4096 restore planned for
# 4 GiB with 1.25 peaked at 4.5 GiB).
MEMORY_SAFETY = {'torch': 1.25, 'onnxruntime': 2.0}
DEFAULT_BUDGET_SHARE = 0.75  # no --max-memory: what the process holds plus this share of the available memory
ONNX_EXPORT_VERSION = 1  # part of the cache key: bump when the export itself changes
RACE_SIDE = 128  # auto on the CPU times both backends once on an image of this side


def _exported_network(weights, device, threads, refused_flags):
    """An export run as it is: an ``.onnx`` file by onnxruntime (:class:`~promptir_basicsr.interop.onnx_runtime.
    OnnxNetwork`), else a TorchScript ``.pt`` by torch (:class:`~promptir_basicsr.interop.torchscript_runtime.
    TorchScriptNetwork`). Its network and precision were fixed at export, so the network options and the speed
    flags do not apply."""
    model = 'an .onnx model' if _is_onnx(weights) else 'a TorchScript .pt module'
    for flag, given in refused_flags.items():
        if given:
            raise UserError(f'{flag} does not apply to {model} (its network and precision were fixed by '
                            '`basicsr export`; export with --fp16 for float16)')
    if not osp.isfile(weights):
        raise UserError(f'--weights {weights}: no such file')
    try:
        if not _is_onnx(weights):
            from .interop.torchscript_runtime import TorchScriptNetwork
            return TorchScriptNetwork(weights)
        # onnxruntime is an optional extra: imported only for an .onnx file
        from .interop.onnx_runtime import OnnxNetwork
        return OnnxNetwork(weights, device, threads)
    except UserError as err:
        raise UserError(f'--weights {weights}: {err}') from None


def _is_onnx(path):
    return path.lower().endswith('.onnx')


# ---- backends ---------------------------------------------------------------------------------------------------
def cache_folder():
    """Where exports are cached: ``$XDG_CACHE_HOME/promptir-basicsr`` (default ``~/.cache/promptir-basicsr``)."""
    root = os.environ.get('XDG_CACHE_HOME') or osp.join(osp.expanduser('~'), '.cache')
    return osp.join(root, 'promptir-basicsr')


def weights_digest(net):
    """sha256 of the network's weights (names, dtypes, shapes, values): the same weights give the same digest
    whichever file (.pth, .ckpt, .safetensors) they came from."""
    digest = hashlib.sha256()
    for name, tensor in net.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f'{name}:{tensor.dtype}:{tuple(tensor.shape)};'.encode())
        # flattened first: a 0-d tensor (BatchNorm's counter, in AirNet) cannot be viewed as bytes
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def export_variant(net, network_opt):
    """The network as exported: rebuilt with its architecture's ``export_options`` (MoCE-IR: no routing noise, a
    deterministic graph), the same weights."""
    extra = {k: v for k, v in declaration(network_opt['type'], 'export_options').items() if network_opt.get(k) != v}
    if not extra:
        return net, network_opt
    network_opt = {**network_opt, **extra}
    rebuilt = build_from_options(network_opt)
    rebuilt.load_state_dict(net.state_dict(), strict=True)
    return rebuilt.eval(), network_opt


def cached_onnx_export(net, network_opt, log=print):
    """The path of ``net`` exported to ONNX (dynamic height and width), exported and checked against torch on the
    first call for these weights and options, read from the cache folder afterwards."""
    from .interop.export import onnx_bytes  # the optional interop extra: only for the onnxruntime backend
    net, network_opt = export_variant(net, network_opt)
    key = hashlib.sha256(json.dumps({'weights': weights_digest(net), 'network': network_opt,
                                     'export': ONNX_EXPORT_VERSION}, sort_keys=True).encode()).hexdigest()
    path = osp.join(cache_folder(), 'onnx', f'{network_opt["type"]}-{key[:20]}.onnx')
    if osp.isfile(path):
        log(f'onnxruntime: the export of these weights from {path}')
        return path
    log(f'onnxruntime: exporting {network_opt["type"]} to ONNX once for these weights (checked against torch) ...')
    data, _ = onnx_bytes(net.cpu().eval(), network_opt, log=lambda line: log(f'onnxruntime: {line}'))
    atomic_write_bytes(path, data)
    log(f'onnxruntime: cached {path} ({len(data) / 2**20:.1f} MiB)')
    return path


def interop_installed():
    import importlib.util
    return all(importlib.util.find_spec(name) is not None for name in ('onnx', 'onnxruntime'))


def choose_backend(backend, device, torch_only_flags):
    """``(backend, reason)``: 'torch' or 'onnxruntime' for ``--backend`` ``backend``.

    The rule of ``auto``: torch where onnxruntime cannot apply (the interop extra missing, a torch-only option
    given (``torch_only_flags``: {flag: given}), CUDA: torch uses cuDNN there and the extra installs onnxruntime's
    CPU build only); on the CPU 'measure': the faster of the two for this network on this machine
    (:func:`measured_backend`; onnxruntime was 1.2-5x faster for most networks here, but 0.66x for MoCE-IR, so
    no fixed rule holds). ``onnxruntime`` asked for by name: a :class:`UserError` where it cannot apply.
    """
    given = [flag for flag, value in torch_only_flags.items() if value]
    try:
        device_type = resolve_device(device).type
    except ValueError as err:  # --device cuda without CUDA: one line, before anything is exported or read
        raise UserError(str(err)) from None
    if backend == 'torch':
        return 'torch', 'asked for'
    if backend == 'onnxruntime':
        from .interop import require
        require('onnxruntime', '--backend onnxruntime')
        require('onnx', '--backend onnxruntime')
        if given:
            raise UserError(f'{", ".join(given)} apply to the torch backend only (--backend onnxruntime runs the '
                            'exported float32 graph); leave them out or use --backend torch')
        return 'onnxruntime', 'asked for'
    if not interop_installed():
        return 'torch', 'the interop extra (onnxruntime) is not installed'
    if given:
        return 'torch', f'{", ".join(given)} apply to torch only'
    if device_type != 'cpu':
        return 'torch', 'the network runs on CUDA'
    return 'measure', 'the faster here'


def _best_seconds(runner, x, rounds=2):
    """Best wall time of ``runner(x)`` over ``rounds``, after a first call (onnxruntime plans a shape's memory
    on its first run; torch warms its allocator)."""
    runner(x)
    best = math.inf
    for _ in range(rounds):
        start = time.perf_counter()
        runner(x)
        best = min(best, time.perf_counter() - start)
    return best


def measured_backend(net, model_path, threads, log=print):
    """``(backend, reason)``: whichever of torch and onnxruntime (the export at ``model_path``) restores a
    :data:`RACE_SIDE` square image faster for this network with these threads, timed on the first call and
    remembered beside the export (later runs read the verdict: no timing, the same choice every time)."""
    from .interop.onnx_runtime import OnnxNetwork  # the interop extra: only for auto on the CPU
    threads = threads or torch.get_num_threads()
    record = f'{osp.splitext(model_path)[0]}.speed-{threads}-threads.json'
    try:
        with open(record, encoding='utf-8') as f:
            verdict = json.load(f)
    except (OSError, ValueError):
        x = torch.rand(1, 3, RACE_SIDE, RACE_SIDE, generator=torch.Generator().manual_seed(0))
        torch_seconds = _best_seconds(Restorer(net, 'cpu'), x)
        ort_seconds = _best_seconds(Restorer(OnnxNetwork(model_path, 'cpu', threads), 'cpu'), x)
        verdict = {'torch': torch_seconds, 'onnxruntime': ort_seconds, 'side': RACE_SIDE, 'threads': threads}
        atomic_write_text(record, json.dumps(verdict, indent=1))
        log(f'backend: timed once at {RACE_SIDE} x {RACE_SIDE}, {threads} thread(s): torch {torch_seconds:.3g} s, '
            f'onnxruntime {ort_seconds:.3g} s (remembered in {record})')
    faster = 'onnxruntime' if verdict['onnxruntime'] < verdict['torch'] else 'torch'
    ratio = verdict['torch'] / max(verdict['onnxruntime'], 1e-12)
    return faster, f'auto: onnxruntime {ratio:.2f}x the speed of torch for this network here'


# ---- memory budget ----------------------------------------------------------------------------------------------
class MemoryModel:
    """The extra memory one forward needs: ``safety * (fixed + per_pixel * pixels)`` bytes (pixels of the whole
    batch), measured by :func:`calibrate`; ``safety`` from :data:`MEMORY_SAFETY`."""

    def __init__(self, fixed, per_pixel, measured, safety=MEMORY_SAFETY['torch']):
        self.fixed, self.per_pixel, self.measured, self.safety = fixed, per_pixel, measured, safety

    def peak(self, pixels):
        return self.safety * (self.fixed + self.per_pixel * pixels)

    def largest(self, extra_bytes):
        """The most pixels one forward may take within ``extra_bytes`` (0 when not even one)."""
        return max(0, int((extra_bytes / self.safety - self.fixed) / self.per_pixel))


def _forward_peak(restorer, side, channels, device):
    """The rise of peak memory (bytes) while ``restorer`` restores a seeded side x side image, untiled."""
    x = torch.rand(1, channels, side, side, generator=torch.Generator().manual_seed(side))
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        restorer(x)
        return torch.cuda.max_memory_allocated(device) - base
    memory.reset_peak()
    base = memory.resident()
    restorer(x)
    return memory.peak_resident() - base


def calibrate(restorer, sides=CALIBRATION_SIDES, channels=3):
    """A :class:`MemoryModel` for ``restorer``'s network, from forwards at ``sides`` (square images, untiled).

    One size: all of it per pixel (an upper bound at larger sizes, where the fixed part weighs less). Two: the
    line through both (its slope at least half the larger one's bytes per pixel, against a noisy first point)."""
    saved = restorer.tile_size, restorer.tile_batch, restorer.tile_planner
    counts = restorer.pixels_computed, restorer.pixels_restored
    restorer.tile_size, restorer.tile_batch, restorer.tile_planner = None, 1, None
    measured = []
    try:
        # A first forward allocates what stays (weight layouts, kernel caches, onnxruntime's plan): held from then
        # on, not a cost per forward, so it is made before measuring.
        restorer(torch.rand(1, channels, 32, 32, generator=torch.Generator().manual_seed(32)))
        for side in sides:
            padded = -(-side // restorer.multiple) * restorer.multiple
            measured.append((padded * padded, max(_forward_peak(restorer, side, channels, restorer.device), 1)))
    finally:
        restorer.tile_size, restorer.tile_batch, restorer.tile_planner = saved
        restorer.pixels_computed, restorer.pixels_restored = counts
    safety = MEMORY_SAFETY['onnxruntime' if hasattr(restorer.net, 'session') else 'torch']  # an OnnxNetwork
    if len(measured) == 1:
        pixels, peak = measured[0]
        return MemoryModel(0, peak / pixels, measured, safety)
    (n1, p1), (n2, p2) = measured[0], measured[-1]
    per_pixel = max((p2 - p1) / (n2 - n1), 0.5 * p2 / n2)
    return MemoryModel(max(p2 - per_pixel * n2, 0), per_pixel, measured, safety)


def default_budget(device):
    """No ``--max-memory``: what the process holds now plus :data:`DEFAULT_BUDGET_SHARE` of what the machine
    (or the GPU) still has free; None when that is unknown."""
    if device.type == 'cuda':
        free, _ = torch.cuda.mem_get_info(device)
        return torch.cuda.memory_allocated(device) + int(DEFAULT_BUDGET_SHARE * free)
    held, free = memory.resident(), memory.available()
    return None if held is None or free is None else held + int(DEFAULT_BUDGET_SHARE * free)


class MemoryBudget:
    """``restorer.tile_planner`` for a memory budget: ``(height, width, channels) -> (tile_size, tile_batch)``.

    Args:
        restorer: the :class:`Restorer` it plans for (calibrated on its first image).
        budget: bytes the process may hold at its peak (None: :func:`default_budget`, asked per image).
        tile_size: a fixed tile side (``--tile-size``): then only the batch is chosen.
        explicit: the budget was asked for (``--max-memory``): one that cannot be met is a :class:`UserError`
            (else a warning, and the smallest tiles).
        log: where the plan of a tiled image is said (once per distinct plan).
    """

    def __init__(self, restorer, budget=None, tile_size=None, explicit=False, log=print):
        self.restorer, self.budget, self.fixed_tile, self.explicit, self.log = restorer, budget, tile_size, \
            explicit, log
        self.model = None
        self.min_tile = max(64, 4 * restorer.tile_overlap)
        self._said = set()

    def _holding(self):
        """Bytes held now (the network, the decoded image and its input tensor, ...)."""
        device = self.restorer.device
        if device.type == 'cuda':
            return torch.cuda.memory_allocated(device)
        memory.trim()
        return memory.resident() or 0

    def _say(self, plan, text):
        if plan not in self._said:
            self._said.add(plan)
            self.log(text)

    def __call__(self, height, width, channels=3):
        budget = self.budget or default_budget(self.restorer.device)
        if budget is None:  # no /proc: the smallest plan that is sure to be bounded
            return (self.fixed_tile or 512), 1
        if self.model is None:
            self.model = calibrate(self.restorer, CALIBRATION_SIDES[:1], channels)
        multiple = self.restorer.multiple
        padded_h, padded_w = (-(-side // multiple) * multiple for side in (height, width))
        # Beside the network: the padded input and the blended output, float32 each.
        image_bytes = 2 * 4 * channels * padded_h * padded_w
        held = self._holding()
        room = budget - held - image_bytes
        whole = padded_h * padded_w
        if not self.fixed_tile and self.model.peak(whole) <= room:
            return None, 1
        if len(self.model.measured) == 1:
            # A tiled image: measure the slope too (the one-size bound is coarse), at a size whose forward fits
            # the budget by the one-size bound (the calibration must not break the budget itself).
            second = min(CALIBRATION_SIDES[-1], (math.isqrt(self.model.largest(room)) // multiple) * multiple)
            if second > CALIBRATION_SIDES[0]:
                self.model = calibrate(self.restorer, (CALIBRATION_SIDES[0], second), channels)
                held = self._holding()
                room = budget - held - image_bytes
                if not self.fixed_tile and self.model.peak(whole) <= room:
                    return None, 1
        largest = self.model.largest(room)
        overlap = self.restorer.tile_overlap
        if self.fixed_tile:
            tile_h, tile_w = min(self.fixed_tile, padded_h), min(self.fixed_tile, padded_w)
        else:
            side = max((math.isqrt(largest) // multiple) * multiple, self.min_tile)
            tile_h, tile_w = (fitted_tile(length, side, overlap, multiple) for length in (padded_h, padded_w))
        if largest < tile_h * tile_w:
            self._short(budget, held, image_bytes, tile_h * tile_w, height, width)
        tiles = len(TileGrid(padded_h, padded_w, (tile_h, tile_w), overlap, multiple))
        batch = max(1, min(largest // (tile_h * tile_w), tiles))
        peak = held + image_bytes + self.model.peak(batch * tile_h * tile_w)
        # The architecture's warning about tiles (an ONNX export records its architecture); restore gives it
        # itself for --tile-size.
        arch = (getattr(self.restorer.net, 'network_opt', None) or {}).get('type') or self.restorer.net
        note = declaration(arch, 'tiling_note')
        if not self.fixed_tile and note:
            self._say('note', f'warning: {note}')
        self._say((height, width, tile_h, tile_w, batch),
                  f'{width}x{height}: {tiles} tiles of {tile_w}x{tile_h} px, {batch} per forward, about '
                  f'{memory.format_size(peak)} at the peak (budget {memory.format_size(budget)}; the process '
                  f'peaked at {memory.format_size(memory.lifetime_peak() or 0)} so far)')
        return (tile_h, tile_w), batch

    def _short(self, budget, held, image_bytes, tile_pixels, height, width):
        need = held + image_bytes + self.model.peak(tile_pixels)
        text = (f'--max-memory {memory.format_size(budget)} is too small for a {width}x{height} image with this '
                f'network: the process holds {memory.format_size(held)}, the image needs '
                f'{memory.format_size(image_bytes)} and a tile of {tile_pixels} pixels about '
                f'{memory.format_size(self.model.peak(tile_pixels))}; give at least {memory.format_size(need)}')
        if self.explicit:
            raise UserError(text)
        self._say(('short', height, width), f'warning: {text}')


# ---- the network, the image, the file -------------------------------------------------------------------------
def open_network(net_or_onnx, device='auto', threads=None, amp=None, tile_size=0, tile_overlap=32,
                 channels_last=False, compile_backend=None, log=print, refused_flags=None, backend='torch',
                 network_opt=None, max_memory=None):
    """A :class:`Restorer` for ``net_or_onnx``: a built network, or the path of an ``.onnx`` or TorchScript export
    (then ``refused_flags``, ``{flag: given}``, names the options that cannot apply to it).

    ``backend`` ('torch', 'onnxruntime', 'auto'; :func:`choose_backend`) for a built network: onnxruntime runs
    its cached export (``network_opt``: what it was built from). ``max_memory`` (bytes) or no ``tile_size``: a
    :class:`MemoryBudget` picks tiles and batches per image (no ``max_memory``: from the free memory);
    ``tile_size`` alone: those tiles, one per forward.
    """
    exported = isinstance(net_or_onnx, str)  # a file of `basicsr export` given as --weights: run as it is
    onnx = exported and _is_onnx(net_or_onnx)
    if not exported:
        flags = {'--amp': amp, '--channels-last': channels_last, '--compile': compile_backend is not None}
        if threads:
            torch.set_num_threads(threads)
        backend, reason = choose_backend(backend, device, flags)
        if backend in ('onnxruntime', 'measure'):
            try:
                model_path = cached_onnx_export(net_or_onnx, network_opt or {'type': type(net_or_onnx).__name__},
                                                log)
            except Exception as err:  # noqa: BLE001 (any failure to trace or check: auto falls back to torch)
                if backend == 'onnxruntime':
                    raise
                log(f'note: the ONNX export failed ({str(err).splitlines()[0][:160]}); restoring with torch')
                backend, reason = 'torch', 'auto: the network does not export to ONNX'
            else:
                if backend == 'measure':
                    backend, reason = measured_backend(net_or_onnx, model_path, threads, log)
                if backend == 'onnxruntime':
                    net_or_onnx = model_path
            onnx = backend == 'onnxruntime'
        log(f'backend: {backend} ({reason})')
    net = _exported_network(net_or_onnx, device, threads, refused_flags or {}) if exported or onnx else net_or_onnx
    if exported:
        network = describe_network(net.network_opt) if net.network_opt else 'not recorded in the file'
        log(f'weights: {net_or_onnx} ({"ONNX" if onnx else "TorchScript"}); network: {network}')
    if threads:
        torch.set_num_threads(threads)
    run_device = 'cpu' if onnx else device  # an ONNX model takes its input from host memory, wherever it runs
    try:
        restorer = Restorer(net, run_device, amp, tile_size or None, tile_overlap, channels_last=channels_last,
                            compile_options=None if compile_backend is None else {'backend': compile_backend})
    except ValueError as err:
        raise UserError(str(err)) from None
    if max_memory or not tile_size:
        restorer.tile_planner = MemoryBudget(restorer, max_memory, tile_size or None, explicit=bool(max_memory),
                                             log=log)
    budget = f'the memory budget {memory.format_size(max_memory)}' if max_memory else \
        'the memory budget from the free memory'
    if tile_size:
        tiles = f'tiles of {tile_size} px overlapping {tile_overlap} px'
        tiles += f', as many per forward as {budget} allows' if max_memory else ''
    else:
        tiles = f'whole images, or tiles overlapping {tile_overlap} px where {budget} needs them'
    where = f'onnxruntime {", ".join(net.providers)}' if onnx else restorer.device
    speed = [f'autocast {amp}'] * bool(amp) + ['channels-last weights'] * bool(channels_last)
    speed += [f'torch.compile (backend {compile_backend})'] * (compile_backend is not None)
    log(f'device: {where}{"".join(", " + s for s in speed)}; {tiles}')
    return restorer


def tile_overhead(restorer):
    """Pixels computed / pixels restored so far (tiles' overlaps and padding), or None before any image."""
    return restorer.pixels_computed / restorer.pixels_restored if restorer.pixels_restored else None


def scale_summary(restorer):
    """'; tile overhead 1.15 (pixels computed / pixels restored); peak memory 3.52 GiB' for restore's closing
    line: the peak is the process's whole life (:func:`~promptir_basicsr.utils.memory.lifetime_peak`)."""
    overhead, peak = tile_overhead(restorer), memory.lifetime_peak()
    text = f'; tile overhead {overhead:.2f} (pixels computed / pixels restored)' if overhead else ''
    return text + (f'; peak memory {memory.format_size(peak)}' if peak else '')


def restore_image(restorer, image, on_tile=None, keep_input=False):
    """The restored samples of ``image`` (an :class:`ImageFile`) in its mode and bit depth, and the restored float
    RGB when ``keep_input`` (for the compare picture; else None).

    Large images: each float copy of a 4096 x 4096 RGB image is 200 MB, so copies are dropped as soon as they are
    not needed and the result is converted in place.
    """
    x = to_tensor(image.rgb)
    if not keep_input:
        image.rgb = None  # the tensor holds the pixels now
    restored = restorer(x, on_tile=on_tile)[0].permute(1, 2, 0).numpy()
    del x
    picture = side_by_side([image.rgb, restored], ['input', 'restored'], alpha=image.alpha) if keep_input else None
    return to_samples(restored, image), picture


def restore_file(restorer, path, out_path, compare_path=None, on_tile=None):
    """Restore one file to ``out_path`` (and the ``compare_path`` picture); returns its megapixels. Raises
    :class:`~promptir_basicsr.utils.images.ImageError` / ``OSError`` for this file's problems."""
    image = read_image(path)
    height, width = image.rgb.shape[:2]
    samples, picture = restore_image(restorer, image, on_tile, keep_input=bool(compare_path))
    if compare_path:
        save_png(picture, compare_path)
    atomic_write_bytes(out_path, encode_image(samples, osp.splitext(out_path)[1]))
    return height * width / 1e6
