"""The one path that runs a network on whole images: validation, ``basicsr test``, ``restore``, ``prompts``,
``serve`` and the parity check of ``basicsr export`` all call :class:`Restorer`.

A :class:`Restorer` prepares a network once (eval mode, device, channels-last weights, ``torch.compile``) and
runs it on (N, C, H, W) images: padded to the network's size multiple (its ``size_multiple``,
``archs/arch_api.py``), cut into overlapping tiles when ``tile_size`` is set and blended back
(:func:`promptir_basicsr.utils.tiling.tiled_forward`), under autocast for mixed precision, with the restored
image taken from networks that return more (AirNet's training tuple).
"""
import contextlib

import torch

from .archs.arch_api import size_multiple
from .errors import UserError
from .utils import acceleration
from .utils.tiling import TileGrid, computed_pixels, tiled_forward

AMP_DTYPES = acceleration.AMP_DTYPES  # the speed options' one table of amp names


def resolve_device(device='auto'):
    """'auto' -> CUDA when available, else the CPU; asking for CUDA without it is a ValueError."""
    if device in (None, 'auto'):
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    device = torch.device(device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise ValueError('--device cuda, but no CUDA device is available here; use --device cpu (or auto)')
    return device


def _amp_dtype(amp):
    """``amp`` ('bf16', 'fp16', one of their dtypes, or None) -> the autocast dtype or None."""
    if amp is None or amp in AMP_DTYPES.values():
        return amp
    if amp in AMP_DTYPES:
        return AMP_DTYPES[amp]
    raise ValueError(f'amp must be one of {sorted(AMP_DTYPES)}, got {amp!r}')


class Restorer:
    """A network prepared for inference, and the one call that runs it on whole images.

    Preparing (:meth:`__init__`): eval mode, the device, the precision, channels-last weights and
    ``torch.compile`` when asked (``compile_options``: the keyword arguments of ``torch.compile``); a network
    already prepared (a model's, on its device) is left as it is. ``multiple``: pad inputs to this multiple
    instead of the network's ``size_multiple`` (option ``val: pad_to_multiple``); ``scale``: output/input size.
    Running (:meth:`__call__`): padding, tiles when ``tile_size`` is set, autocast for ``amp``. Each call runs with
    torch's random generator seeded to ``seed`` (and put back afterwards), so a network that draws random numbers
    at inference (MoCE-IR's routing noise) restores an image the same way every time; ``seed=None`` leaves the
    generator alone.

    Tiles: ``tile_batch`` tiles run in one forward; ``tile_planner`` (``basicsr restore --max-memory``), when
    set, is asked ``tile_planner(height, width, channels) -> (tile_size, tile_batch)`` for each input and
    overrides both.
    ``pixels_computed`` / ``pixels_restored`` add up what the calls computed (tiles in full, overlaps each time,
    padding) and what they returned: their ratio is the tile overhead ``restore`` reports.
    """

    def __init__(self, net, device='auto', amp=None, tile_size=None, tile_overlap=32, channels_last=False,
                 compile_options=None, multiple=None, scale=1, seed=0, tile_batch=1, tile_planner=None):
        self.device = resolve_device(device)
        if amp == 'fp16' and self.device.type != 'cuda':  # asked for by name (a command line): CPU fp16 is slow
            raise ValueError('--amp fp16 needs CUDA; on the CPU use --amp bf16')
        self.amp_dtype = _amp_dtype(amp)
        self.multiple = int(multiple or size_multiple(net))
        self.scale = scale
        self.seed = seed
        self.tile_size, self.tile_overlap, self.tile_batch = tile_size, tile_overlap, tile_batch
        self.tile_planner = tile_planner
        self.pixels_computed = self.pixels_restored = 0
        self.net = net.eval().to(self.device)
        # The speed options of training and test (utils/acceleration.py), on the network as it will run.
        if channels_last:
            acceleration.to_channels_last(self.net)
        if compile_options is not None:
            acceleration.compile_network(self.net, compile_options)

    def _forward(self, x):
        out = self.net(x)
        return out[0] if isinstance(out, (tuple, list)) else out

    @torch.inference_mode()
    def __call__(self, x, on_tile=None):
        """(N, C, H, W) float in [0, 1] (any device) -> restored (N, C, H*scale, W*scale) float32 on the CPU."""
        x = x.to(self.device)
        height, width = x.shape[-2:]
        if self.tile_planner is not None:
            self.tile_size, self.tile_batch = self.tile_planner(height, width, x.shape[1])
        try:
            with self._seeded(), acceleration.autocast(self.device, self.amp_dtype):
                out = tiled_forward(self._forward, x, self.tile_size, self.tile_overlap, self.multiple, self.scale,
                                    on_tile=on_tile, tile_batch=self.tile_batch)
        except RuntimeError as err:
            if self.amp_dtype is not None and 'not implemented for' in str(err):  # no kernel in that precision
                reason = str(err).splitlines()[0][-80:]
                raise UserError(f'--amp: {type(self.net).__name__} has an operation without {self.amp_dtype} support '
                                f'on {self.device.type} ({reason}); run without --amp') from None
            raise
        self.pixels_computed += x.shape[0] * computed_pixels(height, width, self.tile_size, self.tile_overlap,
                                                             self.multiple)
        self.pixels_restored += x.shape[0] * height * width
        return out.cpu()

    @contextlib.contextmanager
    def _seeded(self):
        if self.seed is None:
            yield
            return
        with torch.random.fork_rng(devices=[self.device] if self.device.type == 'cuda' else []):
            torch.manual_seed(self.seed)
            yield

    def tile_count(self, height, width):
        """How many tiles an image of this size is cut into (1 without tiling)."""
        tile_size = self.tile_planner(height, width, 3)[0] if self.tile_planner is not None else self.tile_size
        if not tile_size:
            return 1
        padded_h, padded_w = (-(-side // self.multiple) * self.multiple for side in (height, width))
        return len(TileGrid(padded_h, padded_w, tile_size, self.tile_overlap, self.multiple))
