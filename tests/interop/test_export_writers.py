"""The export writers: ONNX (dynamic sizes, padding and crop kept, AirNet's DeformConv, float16), TorchScript
and safetensors, each checked here independently of the writer's own verification."""
import io
import json
import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from interop_helpers import AIRNET, PROMPTIR, RESTORMER, built, image, run
from safetensors.torch import load as load_safetensors

from promptir_basicsr.errors import UserError
from promptir_basicsr.archs.arch_api import options_from_weights as infer_network_options
from promptir_basicsr.weights.files import network_opt_from_metadata
from promptir_basicsr.interop import export
from promptir_basicsr.interop.spandrel import spandrel_registry


def quiet(*_):
    pass


def onnx_run(model_bytes, x):
    session = ort.InferenceSession(model_bytes, providers=['CPUExecutionProvider'])
    dtype = np.float16 if session.get_inputs()[0].type == 'tensor(float16)' else np.float32
    return torch.from_numpy(session.run(None, {'input': x.numpy().astype(dtype)})[0].astype(np.float32))


@pytest.mark.parametrize('opt', [PROMPTIR, RESTORMER], ids=['PromptIR', 'Restormer-gray-BiasFree'])
def test_onnx_export_has_dynamic_sizes_and_matches_torch(opt):
    """The exported graph keeps the padding to a multiple of 8 and the crop back as computations on the input
    size (a trace that froze them would fail at other sizes): onnxruntime matches torch within 1e-4 at sizes
    other than the traced one, a multiple of 8 and not; the batch axis is dynamic with dynamic_batch."""
    net = built(opt)
    options = infer_network_options(net.state_dict())
    data, differences = export.onnx_bytes(net, options, dynamic_batch=True, log=quiet)
    assert [size for size, _ in differences] == list(export.VERIFY_SIZES)
    assert any(h % 8 or w % 8 for (h, w), _ in differences) and max(d for _, d in differences) <= 1e-4
    model = onnx.load_from_string(data)
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ['batch', options['inp_channels'], 'height', 'width']
    assert model.opset_import[0].version == export.DEFAULT_OPSET
    metadata = {p.key: p.value for p in model.metadata_props}
    assert dict(type=metadata['arch'], **json.loads(metadata['network_options'])) == options
    assert metadata['size_multiple'] == '8'
    for size, batch in (((29, 43), 1), ((16, 24), 2), ((9, 70), 1)):
        x = image(options['inp_channels'], *size, seed=batch, batch=batch)
        assert (onnx_run(data, x) - run(net, x)).abs().max() <= 1e-4, size


def test_airnet_exports_deform_conv_at_opset_19():
    """AirNet's modulated deformable convolution becomes ONNX DeformConv (opset 19) with the right offset and
    mask layout: with offsets of about a pixel, a swapped (dy, dx) or a dropped mask would change the
    output far beyond 1e-4. An opset that lacks DeformConv is refused naming the operator."""
    net = built(AIRNET)
    offsets = []
    dcn = net.R.body[0].body[0].dgm1.dcn
    hook = dcn.conv_offset_mask.register_forward_hook(lambda m, i, out: offsets.append(out[:, :18]))
    x = image(3, 29, 43)
    expected = run(net, x)
    hook.remove()
    assert offsets[0].abs().max() > 0.5  # the deformation is real, not a plain convolution
    data, differences = export.onnx_bytes(net, infer_network_options(net.state_dict()), log=quiet)
    model = onnx.load_from_string(data)
    assert model.opset_import[0].version == 19
    assert sum(node.op_type == 'DeformConv' for node in model.graph.node) == 4  # 2 blocks x 2 DGMs
    assert max(d for _, d in differences) <= 1e-4
    assert (onnx_run(data, x) - expected).abs().max() <= 1e-4
    with pytest.raises(UserError, match=r'--opset 17: .*deform_conv2d.*DeformConv.*--opset 19'):
        export.onnx_bytes(net, infer_network_options(net.state_dict()), opset=17, log=quiet)


def test_onnx_float16():
    """--fp16: a float16 model (input, output, weights) that still matches float32 torch within 1e-2, and
    really is float16 (not a float32 graph with a float16 label)."""
    net = built(PROMPTIR)
    data, differences = export.onnx_bytes(net, infer_network_options(net.state_dict()), fp16=True, log=quiet)
    model = onnx.load_from_string(data)
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    assert max(d for _, d in differences) <= 1e-2
    x = image(3, 27, 35)
    difference = (onnx_run(data, x) - run(net, x)).abs().max()
    assert 1e-5 < difference <= 1e-2


def test_torchscript_export_runs_any_size_and_spandrel_reads_it():
    """The traced module keeps the padding computations (other sizes and batches match), carries the network
    options, and spandrel (which reads a .pt's state dict) detects and rebuilds it."""
    net = built(PROMPTIR)
    options = infer_network_options(net.state_dict())
    data, differences = export.torchscript_bytes(net, options, log=quiet)
    assert max(d for _, d in differences) <= 1e-5
    extra = {export.TORCHSCRIPT_OPTIONS_FILE: ''}
    traced = torch.jit.load(io.BytesIO(data), _extra_files=extra)
    assert json.loads(extra[export.TORCHSCRIPT_OPTIONS_FILE]) == options
    for size, batch in (((29, 43), 1), ((16, 24), 2)):
        x = image(3, *size, batch=batch)
        assert (run(traced, x) - run(net, x)).abs().max() <= 1e-5
    model = spandrel_registry().load(traced.state_dict())
    assert model.architecture.id == 'PromptIR' and (run(model.model, x) - run(net, x)).abs().max() <= 1e-5


@pytest.mark.parametrize('fp16', [False, True])
def test_safetensors_holds_the_weights_and_the_network(fp16):
    """Every tensor (integer buffers kept integer, floats in the chosen precision) plus the network in the
    metadata, as restore reads it."""
    net = built(AIRNET)
    options = infer_network_options(net.state_dict())
    data, _ = export.safetensors_bytes(net, options, fp16=fp16, log=quiet)
    tensors = load_safetensors(data)
    state = net.state_dict()
    assert tensors.keys() == state.keys()
    for key, value in state.items():
        expected = value.half() if fp16 and value.is_floating_point() else value
        assert tensors[key].dtype == expected.dtype and torch.equal(tensors[key], expected), key
    header_size = int.from_bytes(data[:8], 'little')  # the safetensors layout: size, JSON header, tensors
    metadata = json.loads(data[8:8 + header_size])['__metadata__']
    assert network_opt_from_metadata(metadata) == options


class NoisyNet(torch.nn.Module):
    """A network whose every run differs (noise in the forward pass)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        return self.conv(x) + torch.rand_like(x)


@pytest.mark.parametrize('writer', ['onnx_bytes', 'torchscript_bytes'])
def test_a_mismatching_export_is_refused(writer):
    """The check compares real outputs: an export that does not reproduce the network raises."""
    with pytest.raises(export.ExportCheckError, match='nothing was written'):
        getattr(export, writer)(NoisyNet().eval(), {'type': 'NoisyNet'}, log=quiet)


@pytest.mark.parametrize('differences, worst', [
    ([((64, 64), 0.0), ((45, 61), float('nan'))], 'nan'),  # a NaN after a finite difference
    ([((64, 64), 1.0), ((45, 61), float('nan'))], 'nan'),  # after a failing finite one (max() would keep 1.0)
    ([((64, 64), float('nan')), ((45, 61), 0.0)], 'nan'),
    ([((64, 64), 1e-6), ((45, 61), float('inf'))], 'inf'),
    ([((64, 64), float('-inf')), ((45, 61), 0.0)], None),  # cannot come from abs(), and is within any tolerance
    ([((64, 64), 2e-4), ((45, 61), 5e-4)], '5.00e-04'),
    ([((64, 64), 1e-4), ((45, 61), 0.0)], None),  # exactly the tolerance: accepted
])
def test_the_parity_check_refuses_nan_inf_and_large_differences(differences, worst):
    """check_differences on given differences: any NaN or infinity, or a difference above the float32
    tolerance (1e-4), is refused naming the worst and every size; up to the tolerance it passes them on."""
    if worst is None:
        assert export.check_differences(differences, 'float32', 'ONNX model') == differences
        return
    with pytest.raises(export.ExportCheckError) as err:
        export.check_differences(differences, 'float32', 'ONNX model')
    shown = ', '.join(f'{h}x{w}: {d:.2e}' for (h, w), d in differences)
    assert str(err.value) == (f'the ONNX model differs from the PyTorch network by up to {worst} ({shown}), more '
                              'than the 1e-04 allowed for float32; nothing was written')
    assert export.check_differences([((8, 8), 5e-3)], 'float16', 'x') == [((8, 8), 5e-3)]  # float16: 1e-2


def test_max_differences_measures_nan_outputs():
    """An export that returns NaN at one size is measured as NaN there (so the check refuses it)."""
    def half_broken(x):
        return x * float('nan') if x.shape[-1] == 61 else x.clone()

    measured = export.max_differences(torch.nn.Identity(), half_broken, 3)
    assert measured[0] == ((64, 64), 0.0) and measured[1][0] == (45, 61) and math.isnan(measured[1][1])
