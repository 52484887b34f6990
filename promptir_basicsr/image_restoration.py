"""Restoring image files: the rules ``basicsr restore`` (and ``basicsr serve``) share, so both write the same
bytes for the same weights and image.

- :func:`open_network`: any weights file (or an ``.onnx`` export) -> a :class:`~promptir_basicsr.inference.Restorer`
  ready on its device, with one line saying what it runs.
- :func:`restore_image`: a decoded image (:class:`~promptir_basicsr.utils.images.ImageFile`) -> the restored
  samples in the input's mode and bit depth.
- :func:`restore_file`: one file in, one file out (written atomically), and the ``--compare`` picture.
"""
import os.path as osp

import torch

from .errors import UserError
from .inference import Restorer
from .utils.files import atomic_write_bytes
from .utils.images import encode_image, read_image, to_samples, to_tensor
from .visual.grids import save_png, side_by_side
from .weights.network import describe_network


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


def open_network(net_or_onnx, device='auto', threads=None, amp=None, tile_size=0, tile_overlap=32,
                 channels_last=False, compile_backend=None, log=print, refused_flags=None):
    """A :class:`Restorer` for ``net_or_onnx``: a built network, or the path of an ``.onnx`` or TorchScript export
    (then ``refused_flags``, ``{flag: given}``, names the options that cannot apply to it)."""
    exported = isinstance(net_or_onnx, str)
    onnx = exported and _is_onnx(net_or_onnx)
    net = _exported_network(net_or_onnx, device, threads, refused_flags or {}) if exported else net_or_onnx
    if exported:
        network = describe_network(net.network_opt) if net.network_opt else 'not recorded in the file'
        log(f'weights: {net_or_onnx} ({"ONNX" if onnx else "TorchScript"}); network: {network}')
    if threads:
        torch.set_num_threads(threads)
    device = 'cpu' if onnx else device  # an ONNX model takes its input from host memory, wherever it runs
    try:
        restorer = Restorer(net, device, amp, tile_size or None, tile_overlap, channels_last=channels_last,
                            compile_options=None if compile_backend is None else {'backend': compile_backend})
    except ValueError as err:
        raise UserError(str(err)) from None
    tiles = f'tiles of {tile_size} px overlapping {tile_overlap} px' if tile_size else 'whole images'
    where = f'onnxruntime {", ".join(net.providers)}' if onnx else restorer.device
    speed = [f'autocast {amp}'] * bool(amp) + ['channels-last weights'] * bool(channels_last)
    speed += [f'torch.compile (backend {compile_backend})'] * (compile_backend is not None)
    log(f'device: {where}{"".join(", " + s for s in speed)}; {tiles}')
    return restorer


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
