"""Writers from a built network to ONNX, TorchScript and safetensors, each checked before it is written.

Each writer returns the file's bytes and the differences it measured; nothing reaches the disk here
(``basicsr export`` writes the bytes atomically), so a file that fails its check is never written.

- :func:`onnx_bytes`: ONNX with dynamic height and width (and batch with ``dynamic_batch``), run by
  onnxruntime at :data:`VERIFY_SIZES` against the PyTorch network.
- :func:`torchscript_bytes`: a traced TorchScript module, checked the same way.
- :func:`safetensors_bytes`: the state dict, with the architecture and its options in the metadata
  (what ``basicsr restore`` and spandrel need to rebuild the network), read back and compared.

Tracing. The networks pad their input to a multiple of 8 and crop the output back, choosing by
Python ``if`` whether padding is needed at all. A trace records the branch its example input takes, so
the example (:data:`TRACE_SIZE`) is deliberately not a multiple of 8: the padding and the crop are
recorded with sizes computed from the input's shape, and at a multiple of 8 they pad by zero and crop
nothing. :data:`VERIFY_SIZES` checks both cases.

Why torch's TorchScript-based ONNX exporter (``dynamo=False``) and not the newer ``torch.export`` one
(torch 2.14, tiny PromptIR, measured here): the TorchScript exporter took about 1 s, the dynamo exporter
about 40 s (over 20 s of CPU time); and with the batch axis declared dynamic, the dynamo graph still
failed in onnxruntime at batch 2 (a reshape specialised to the example's batch of 1), while the traced
graph runs any batch.
"""
import copy
import io
import json
import math
import warnings

import torch
from torch.overrides import TorchFunctionMode

from ..errors import UserError
from ..archs.arch_api import size_multiple
from ..weights.files import network_metadata
from . import require
from .onnx_runtime import ONNX_ARCH_KEY, ONNX_MULTIPLE_KEY, ONNX_OPTIONS_KEY, OnnxNetwork

TRACE_SIZE = (37, 53)  # neither side a multiple of 8, so the trace records padding and cropping
VERIFY_SIZES = ((64, 64), (45, 61))  # a multiple of 8 (nothing to pad) and one that is not
#: Largest accepted max |exported - PyTorch float32| on [0, 1] images. float16 keeps ~3 decimal
#: digits, and a deep network accumulates a few of its rounding steps (measured: about 1e-3).
TOLERANCE = {'float32': 1e-4, 'float16': 1e-2}
DEFAULT_OPSET = 17  # LayerNormalization is an ONNX operator from 17 on
OPSET_RANGE = range(11, 21)  # reflect Pad with computed pads needs 11; torch's TorchScript exporter stops at 20
DEFORM_CONV_OPSET = 19  # ONNX DeformConv (AirNet's modulated deformable convolution) exists from 19 on
#: operators (as a forward pass names them) that need a newer opset than DEFAULT_OPSET, and why
OPSET_NEEDED_BY = {'torchvision.deform_conv2d': (
    DEFORM_CONV_OPSET, "this network's deformable convolution (torchvision::deform_conv2d) exports to the ONNX "
    'operator DeformConv')}


class ExportCheckError(RuntimeError):
    """An exported model whose outputs do not match the PyTorch network (nothing was written)."""


def verification_image(channels, size, seed=0):
    """A seeded (1, C, H, W) image in [0, 1] (locally smooth, like a photo, with fine detail)."""
    gen = torch.Generator().manual_seed(seed)
    noise = torch.rand(1, channels, *size, generator=gen)
    return 0.5 * noise + 0.5 * torch.nn.functional.avg_pool2d(noise, 5, 1, 2, count_include_pad=False)


def max_differences(net, candidate, channels, sizes=VERIFY_SIZES):
    """``[(size, max |candidate(x) - net(x)|)]`` on :func:`verification_image` at each size (``net``: the
    float32 network in eval mode)."""
    results = []
    with torch.inference_mode():
        for i, size in enumerate(sizes):
            x = verification_image(channels, size, seed=i)
            expected = net(x)
            results.append((size, float((candidate(x).float() - expected).abs().max())))
    return results


def check_differences(differences, precision, what):
    """Raise :class:`ExportCheckError` when a difference exceeds :data:`TOLERANCE`; else return them."""
    failing = [diff for _, diff in differences if not diff <= TOLERANCE[precision]]  # NaN compares False: fails
    if failing:
        # not max(): a NaN after a finite difference would lose to it (max keeps its first argument on NaN)
        worst = float('nan') if any(math.isnan(diff) for diff in failing) else max(failing)
        shown = ', '.join(f'{h}x{w}: {diff:.2e}' for (h, w), diff in differences)
        raise ExportCheckError(f'the {what} differs from the PyTorch network by up to {worst:.2e} ({shown}), more '
                               f'than the {TOLERANCE[precision]:.0e} allowed for {precision}; nothing was written')
    return differences


def describe_differences(differences):
    """'64x64 max abs difference 2.98e-07, 45x61 max abs difference ...' (what `basicsr export` prints)."""
    return ', '.join(f'{h}x{w} max abs difference {diff:.2e}' for (h, w), diff in differences)


def _traceable(net, fp16):
    """A copy of ``net`` for tracing (eval, float16 with ``fp16``); the caller's network is left as it was."""
    model = copy.deepcopy(net).eval()
    return model.half() if fp16 else model.float()


def _example(channels, fp16):
    return verification_image(channels, TRACE_SIZE).to(torch.float16 if fp16 else torch.float32)


def _run_in_float32(module):
    """``module`` as a float32-in, float32-out function (its own precision inside)."""
    dtype = next(module.parameters()).dtype

    def run(x):
        return module(x.to(dtype)).float()

    return run


# ----------------------------------------------------------------------------------------------
# ONNX
# ----------------------------------------------------------------------------------------------
def _deform_conv2d_symbolic(g, inp, weight, offset, mask, bias, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w,
                            groups, offset_groups, use_mask):
    """torchvision's ``deform_conv2d`` as ONNX DeformConv: the same offset layout ((dy, dx) per kernel
    tap, per offset group) and mask layout, so the arguments map one to one."""
    inputs = [inp, weight, offset, bias] + ([mask] if use_mask else [])
    return g.op('DeformConv', *inputs, strides_i=[stride_h, stride_w], pads_i=[pad_h, pad_w, pad_h, pad_w],
                dilations_i=[dil_h, dil_w], group_i=groups, offset_group_i=offset_groups)


def _register_deform_conv2d():
    from torch.onnx import symbolic_helper
    symbolic = symbolic_helper.parse_args('v', 'v', 'v', 'v', 'v', 'i', 'i', 'i', 'i', 'i', 'i', 'i', 'i', 'b')(
        _deform_conv2d_symbolic)
    torch.onnx.register_custom_op_symbolic('torchvision::deform_conv2d', symbolic, DEFORM_CONV_OPSET)


def _trace_to_onnx(model, example, opset, dynamic_batch):
    axes = {0: 'batch', 2: 'height', 3: 'width'} if dynamic_batch else {2: 'height', 3: 'width'}
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # Expected: the padding branch is recorded from TRACE_SIZE on purpose (module docstring), and the
        # TorchScript exporter's deprecation notice (the reason for using it is in the module docstring).
        warnings.simplefilter('ignore', torch.jit.TracerWarning)
        warnings.simplefilter('ignore', DeprecationWarning)
        torch.onnx.export(model, (example,), buffer, dynamo=False, opset_version=opset, input_names=['input'],
                          output_names=['output'], dynamic_axes={'input': axes, 'output': axes})
    return buffer.getvalue()


def _with_metadata(model_bytes, metadata):
    onnx = require('onnx', 'ONNX export')
    model = onnx.load_from_string(model_bytes)
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    return model.SerializeToString()


class _CallRecorder(TorchFunctionMode):
    """Records the name of every torch function and operator a forward pass calls."""

    def __init__(self):
        super().__init__()
        self.names = set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.names.add(str(func))
        return func(*args, **(kwargs or {}))


def minimum_opset(model, channels):
    """``(opset, reason)``: the lowest opset covering every operator ``model`` calls (one small forward
    pass tells), and why when above :data:`DEFAULT_OPSET`. Found before exporting, because the exporter
    prints the whole graph when an operator fails to convert."""
    recorder = _CallRecorder()
    with torch.no_grad(), recorder:
        model(verification_image(channels, (16, 16)).to(next(model.parameters()).dtype))
    needs = [(opset, reason) for op, (opset, reason) in OPSET_NEEDED_BY.items() if op in recorder.names]
    return max(needs, default=(DEFAULT_OPSET, None))


def onnx_bytes(net, network_opt, opset=None, dynamic_batch=False, fp16=False, log=print):
    """``net`` as an ONNX model (bytes) checked by onnxruntime; returns ``(bytes, differences)``.

    ``opset`` None: the lowest that covers the network (:func:`minimum_opset`: 17, or 19 for AirNet's
    deformable convolution). The file's metadata records the architecture, its options and the input
    size multiple (read by :class:`OnnxNetwork`). Raises :class:`UserError` for an opset that cannot
    express the network or an operator onnxruntime cannot run, :class:`ExportCheckError` when
    onnxruntime's outputs differ from the network's.
    """
    require('onnx', 'ONNX export')
    ort = require('onnxruntime', 'ONNX export')  # it checks the exported model
    if opset is not None and opset not in OPSET_RANGE:
        raise UserError(f'--opset {opset}: the exporter writes opsets {OPSET_RANGE.start} to {OPSET_RANGE.stop - 1}')
    _register_deform_conv2d()
    channels = network_opt.get('inp_channels', 3)
    needed, reason = minimum_opset(net, channels)  # in float32: quicker on the CPU, the same operators
    if opset is not None and reason and opset < needed:  # no reason: DEFAULT_OPSET is a default, not a need
        raise UserError(f'--opset {opset}: {reason}, which needs --opset {needed} or newer')
    opset = opset or needed
    model_bytes = _trace_to_onnx(_traceable(net, fp16), _example(channels, fp16), opset, dynamic_batch)
    options = {k: v for k, v in network_opt.items() if k != 'type'}
    model_bytes = _with_metadata(model_bytes, {ONNX_ARCH_KEY: network_opt['type'],
                                               ONNX_OPTIONS_KEY: json.dumps(options),
                                               ONNX_MULTIPLE_KEY: str(size_multiple(net))})
    try:
        runner = OnnxNetwork(model_bytes)
    except UserError as err:  # e.g. an operator this onnxruntime has no kernel for
        raise UserError(f'{err} (exported at --opset {opset}); nothing was written') from None
    # The graph's own padding is what is being checked, so the runner must not pre-pad here.
    runner.size_multiple = 1
    precision = 'float16' if fp16 else 'float32'
    differences = check_differences(max_differences(net, runner, channels), precision, f'ONNX model (opset {opset})')
    log(f'onnxruntime {ort.__version__}, opset {opset}, {precision}: {describe_differences(differences)}')
    return model_bytes, differences


# ----------------------------------------------------------------------------------------------
# TorchScript
# ----------------------------------------------------------------------------------------------
TORCHSCRIPT_OPTIONS_FILE = 'network_options.json'  # in the .pt's extra files: {'type': arch, ...options}


def torchscript_bytes(net, network_opt, fp16=False, log=print):
    """``net`` traced to TorchScript (bytes of ``torch.jit.save``), checked at :data:`VERIFY_SIZES`.

    The traced module takes any batch, height and width (shapes are traced, see the module docstring);
    its extra file :data:`TORCHSCRIPT_OPTIONS_FILE` records the architecture and options. Returns
    ``(bytes, differences)``.
    """
    channels = network_opt.get('inp_channels', 3)
    model = _traceable(net, fp16)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter('ignore', torch.jit.TracerWarning)  # the padding branch, on purpose
        warnings.simplefilter('ignore', FutureWarning)  # torch.jit's deprecation notice
        traced = torch.jit.trace(model, _example(channels, fp16), check_trace=False)
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer, _extra_files={TORCHSCRIPT_OPTIONS_FILE: json.dumps(network_opt)})
        reloaded = torch.jit.load(io.BytesIO(buffer.getvalue()))
    precision = 'float16' if fp16 else 'float32'
    differences = check_differences(max_differences(net, _run_in_float32(reloaded), channels), precision,
                                    'TorchScript module')
    log(f'TorchScript, {precision}: {describe_differences(differences)}')
    return buffer.getvalue(), differences


# ----------------------------------------------------------------------------------------------
# safetensors
# ----------------------------------------------------------------------------------------------
def safetensors_bytes(net, network_opt, fp16=False, log=print):
    """``net``'s state dict as safetensors (floating tensors in float16 with ``fp16``), with
    :func:`~promptir_basicsr.weights.files.network_metadata` in the header. Read back and compared
    before it is returned."""
    st = require('safetensors.torch', 'safetensors export')
    dtype = torch.float16 if fp16 else torch.float32
    tensors = {key: (value.to(dtype) if value.is_floating_point() else value).detach().contiguous().clone()
               for key, value in net.state_dict().items()}
    data = st.save(tensors, metadata=network_metadata(network_opt))
    back = st.load(data)
    if back.keys() != tensors.keys() or any(not torch.equal(back[k], v) for k, v in tensors.items()):
        raise ExportCheckError('the safetensors data read back differs from the network; nothing was written')
    log(f'safetensors: {len(tensors)} tensors, {"float16" if fp16 else "float32"} weights, the network in the '
        'metadata')
    return data, []
