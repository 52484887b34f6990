"""An exported ``.onnx`` network run by onnxruntime, behind the interface of a torch network.

:class:`OnnxNetwork` is an ``nn.Module`` without parameters whose forward hands the batch to an
onnxruntime session, so whatever runs our torch networks on images (``basicsr restore``'s
:class:`~promptir_basicsr.inference.Restorer`: padding, tiles, file handling) runs an ONNX export the
same way, and the exporter verifies its files with the very runner ``restore`` uses.
"""
import json
import re

import numpy as np
import torch
from torch import nn

from ..errors import UserError
from ..utils.tiling import pad_to_multiple
from . import require

#: ONNX metadata keys written by :func:`promptir_basicsr.interop.export.onnx_bytes`
ONNX_ARCH_KEY = 'arch'
ONNX_OPTIONS_KEY = 'network_options'
ONNX_MULTIPLE_KEY = 'size_multiple'

_NUMPY_TYPES = {'tensor(float)': np.float32, 'tensor(float16)': np.float16}


def providers_for(device, ort):
    """onnxruntime execution providers for ``device``: 'cpu'; 'cuda' (an error without onnxruntime's CUDA
    provider, from the onnxruntime-gpu package); 'auto': CUDA when that provider and a GPU are there."""
    cuda = 'CUDAExecutionProvider' in ort.get_available_providers()
    if device == 'cuda' and not cuda:
        raise UserError('--device cuda with an .onnx model needs onnxruntime with CUDA: pip install onnxruntime-gpu '
                        f'(this onnxruntime {ort.__version__} offers {", ".join(ort.get_available_providers())})')
    if device == 'cuda' or (device == 'auto' and cuda and torch.cuda.is_available()):
        return ['CUDAExecutionProvider', 'CPUExecutionProvider']
    return ['CPUExecutionProvider']


def _session(model, options, providers, ort):
    """The onnxruntime session, or a one-line :class:`UserError` saying why onnxruntime refuses the model."""
    try:
        return ort.InferenceSession(model, options, providers=providers)
    except Exception as err:  # noqa: BLE001 (onnxruntime's own exception types, not importable by name)
        missing = re.search(r'implementation for (\w+)\((\d+)\)', str(err))
        if missing:
            raise UserError(f'onnxruntime {ort.__version__} cannot run the ONNX operator {missing.group(1)} '
                            f'(opset {missing.group(2)}) in this model') from None
        raise UserError(f'onnxruntime {ort.__version__} cannot load this model: '
                        f'{str(err).strip().splitlines()[0]}') from None


class OnnxNetwork(nn.Module):
    """``model`` (a path or the file's bytes) as a network: (N, C, H, W) float in, float32 out.

    Args:
        model: an ``.onnx`` file (path or bytes), e.g. from ``basicsr export --format onnx``.
        device: 'cpu', 'cuda' (onnxruntime's CUDA provider, from the onnxruntime-gpu package) or 'auto'
            (CUDA when available, else the CPU); see :func:`providers_for`. Inputs and outputs are torch
            tensors on any device: they pass through host memory.
        threads: onnxruntime's intra-op threads (None: its default, one per physical core).

    Attributes: ``network_opt`` (the architecture and options recorded at export, or None for a
    foreign file), ``size_multiple`` (inputs are padded to it here, as the network pads itself; 1
    when unknown), ``input_dtype`` (float32 or float16 models).
    """

    def __init__(self, model, device='auto', threads=None):
        super().__init__()
        ort = require('onnxruntime', 'running .onnx models')
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        self.session = _session(model, options, providers_for(device, ort), ort)
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or inputs[0].type not in _NUMPY_TYPES:
            found = ', '.join(f'{i.name}: {i.type}' for i in inputs)
            raise UserError(f'expected an image-to-image model with one float32 or float16 input, found {found}')
        self.input_name = inputs[0].name
        self.input_dtype = _NUMPY_TYPES[inputs[0].type]
        metadata = self.session.get_modelmeta().custom_metadata_map
        self.network_opt = (dict(type=metadata[ONNX_ARCH_KEY], **json.loads(metadata.get(ONNX_OPTIONS_KEY, '{}')))
                            if ONNX_ARCH_KEY in metadata else None)
        self.size_multiple = int(metadata.get(ONNX_MULTIPLE_KEY, 1))

    @property
    def providers(self):
        return self.session.get_providers()

    def forward(self, x):
        # Padding here (replicate where a side is too short to reflect) keeps tiny inputs working: the
        # graph's own reflect padding, traced from the network, needs sides of at least 5 pixels.
        padded, (h, w) = pad_to_multiple(x, self.size_multiple)
        batch = padded.detach().to('cpu', torch.float32).numpy().astype(self.input_dtype)
        out = self.session.run(None, {self.input_name: batch})[0]
        return torch.from_numpy(out.astype(np.float32, copy=False)).to(x.device)[..., :h, :w]
