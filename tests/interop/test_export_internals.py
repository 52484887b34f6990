"""The export writers and runners on tiny networks (seconds, not minutes): ONNX metadata, axes, opsets and the
check's log line; the DeformConv translation with every attribute away from its default; the safetensors
read-back; the TorchScript runner's metadata, precision and refusals. The real networks are exported in
test_export_writers.py."""
import io
import json
import re
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torchvision
from torch import nn

from promptir_basicsr.errors import UserError
from promptir_basicsr.interop import MissingExtraError, export
from promptir_basicsr.interop.onnx_runtime import OnnxNetwork
from promptir_basicsr.interop.torchscript_runtime import TorchScriptNetwork
from promptir_basicsr.utils.tiling import pad_to_multiple


class PadNet(nn.Module):
    """Pads to 8 as our networks do, with an operation that sees the padded image (its mean)."""
    size_multiple = 8

    def __init__(self, channels=3):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        padded, (h, w) = pad_to_multiple(x, 8)
        return (self.conv(padded) + padded.mean())[..., :h, :w]


def _lines():
    lines = []
    return lines, lines.append


def test_onnx_bytes_metadata_axes_and_log():
    """Metadata (architecture, options, multiple), a fixed or dynamic batch, float16, an older opset a network
    without newer operators can use (it was refused, naming None as the reason), the log line."""
    net = PadNet().eval()
    lines, log = _lines()
    data, differences = export.onnx_bytes(net, {'type': 'PadNet', 'width': 3}, log=log)
    assert [size for size, _ in differences] == [(64, 64), (45, 61)] and max(d for _, d in differences) <= 1e-5
    model = onnx.load_from_string(data)
    assert model.opset_import[0].version == 17
    assert {p.key: p.value for p in model.metadata_props} == {'arch': 'PadNet', 'network_options': '{"width": 3}',
                                                               'size_multiple': '8'}
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 'height', 'width']  # a fixed batch without dynamic_batch
    assert lines == [f'onnxruntime {ort.__version__}, opset 17, float32: '
                     + export.describe_differences(differences)]
    assert export.describe_differences([((64, 64), 2.5e-7), ((45, 61), 0.0)]) == \
        '64x64 max abs difference 2.50e-07, 45x61 max abs difference 0.00e+00'
    data, _ = export.onnx_bytes(net, {'type': 'PadNet'}, dynamic_batch=True, opset=11, fp16=True, log=log)
    model = onnx.load_from_string(data)
    assert model.opset_import[0].version == 11 and lines[-1].startswith(f'onnxruntime {ort.__version__}, opset 11, '
                                                                        'float16: ')
    assert [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim][0] == 'batch'
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    runner = OnnxNetwork(data)
    x = torch.rand(2, 3, 20, 19)
    with torch.no_grad():
        assert (runner(x) - net(x)).abs().max() < 1e-2 and runner.input_dtype == np.float16
    assert next(net.parameters()).dtype == torch.float32  # the caller's network is left as it was


@pytest.mark.parametrize('opset', [10, 21])
def test_opsets_the_exporter_cannot_write(opset):
    with pytest.raises(UserError, match=rf'^--opset {opset}: the exporter writes opsets 11 to 20$'):
        export.onnx_bytes(PadNet().eval(), {'type': 'PadNet'}, opset=opset, log=print)


class DeformNet(nn.Module):
    """torchvision's deform_conv2d with every attribute away from its default: stride 2, padding (2, 1),
    dilation 2, 2 groups, 2 offset groups; with or without a mask."""

    def __init__(self, use_mask):
        super().__init__()
        torch.manual_seed(1)
        self.use_mask = use_mask
        self.weight = nn.Parameter(torch.randn(4, 2, 3, 3) * 0.3)
        self.bias = nn.Parameter(torch.randn(4) * 0.1)
        self.offsets = nn.Conv2d(4, 2 * 2 * 9, 3, stride=2, padding=(2, 1), dilation=2)
        self.masks = nn.Conv2d(4, 2 * 9, 3, stride=2, padding=(2, 1), dilation=2)

    def forward(self, x):
        offset = 2 * torch.tanh(self.offsets(x))
        mask = torch.sigmoid(self.masks(x)) if self.use_mask else None
        return torchvision.ops.deform_conv2d(x, offset, self.weight, self.bias, stride=2, padding=(2, 1), dilation=2,
                                             mask=mask)


@pytest.mark.parametrize('use_mask', [True, False])
def test_deform_conv_exports_with_all_its_attributes(use_mask):
    """The DeformConv node carries stride, pads, dilation, groups and offset groups (AirNet uses the defaults, so
    dropping one would go unnoticed there); onnxruntime computes what torchvision does; the mask is optional."""
    net = DeformNet(use_mask).eval()
    assert export.minimum_opset(net, 4)[0] == 19 and export.minimum_opset(PadNet(), 3) == (17, None)
    data, differences = export.onnx_bytes(net, {'type': 'DeformNet', 'inp_channels': 4}, log=lambda *a: None)
    nodes = [n for n in onnx.load_from_string(data).graph.node if n.op_type == 'DeformConv']
    assert len(nodes) == 1 and len(nodes[0].input) == 4 + use_mask
    attributes = {a.name: list(a.ints) if a.ints else a.i for a in nodes[0].attribute}
    assert attributes == {'strides': [2, 2], 'pads': [2, 1, 2, 1], 'dilations': [2, 2], 'group': 2,
                          'offset_group': 2}
    assert max(d for _, d in differences) <= 1e-4


def test_minimum_opset_names_why():
    opset, reason = export.minimum_opset(DeformNet(True).eval(), 4)
    assert (opset, reason) == (19, "this network's deformable convolution (torchvision::deform_conv2d) exports to the "
                                   'ONNX operator DeformConv')
    with pytest.raises(UserError, match=rf'^--opset 18: {re.escape(reason)}, which needs --opset 19 or newer$'):
        export.onnx_bytes(DeformNet(True).eval(), {'type': 'D', 'inp_channels': 4}, opset=18, log=print)


def test_verification_image_is_seeded_and_smooth():
    """0.5 x uniform noise + 0.5 x its 5 x 5 local mean (borders averaged over what is inside)."""
    image = export.verification_image(3, (9, 11), seed=4)
    assert image.shape == (1, 3, 9, 11) and torch.equal(image, export.verification_image(3, (9, 11), seed=4))
    noise = torch.rand(1, 3, 9, 11, generator=torch.Generator().manual_seed(4))
    assert torch.allclose(image[0, :, 4, 5], 0.5 * noise[0, :, 4, 5] + 0.5 * noise[0, :, 2:7, 3:8].mean((1, 2)))
    assert torch.allclose(image[0, :, 0, 0], 0.5 * noise[0, :, 0, 0] + 0.5 * noise[0, :, :3, :3].mean((1, 2)))
    assert not torch.equal(image, export.verification_image(3, (9, 11), seed=5))


def test_safetensors_read_back_and_missing_package(monkeypatch):
    """What is read back must equal what was written (a changed tensor is refused); without safetensors the
    refusal names the extra."""
    net = PadNet().eval()
    lines, log = _lines()
    data, differences = export.safetensors_bytes(net, {'type': 'PadNet'}, log=log)
    assert differences == [] and lines == ['safetensors: 2 tensors, float32 weights, the network in the metadata']
    import safetensors.torch as st
    real_load = st.load
    monkeypatch.setattr(st, 'load', lambda raw: {k: v + (k == 'conv.bias') for k, v in real_load(raw).items()})
    with pytest.raises(export.ExportCheckError, match='the safetensors data read back differs from the network'):
        export.safetensors_bytes(net, {'type': 'PadNet'}, log=log)
    monkeypatch.setattr(st, 'load', lambda raw: dict(real_load(raw), extra=torch.zeros(1)))
    with pytest.raises(export.ExportCheckError):
        export.safetensors_bytes(net, {'type': 'PadNet'}, log=log)
    monkeypatch.setitem(sys.modules, 'safetensors.torch', None)
    with pytest.raises(MissingExtraError, match='safetensors export needs the optional "interop" extra'):
        export.safetensors_bytes(net, {'type': 'PadNet'}, log=log)


def test_torchscript_runner(tmp_path):
    """An archive of `basicsr export` gives its network and the architecture's multiple; one written elsewhere
    (no options file) runs with multiple 1; a float16 archive takes and returns float32; a file that is no
    archive is refused in one line."""
    net = PadNet().eval()
    data, _ = export.torchscript_bytes(net, {'type': 'Restormer', 'dim': 8}, log=lambda *a: None)
    (tmp_path / 'ours.pt').write_bytes(data)
    ours = TorchScriptNetwork(str(tmp_path / 'ours.pt'))
    assert ours.network_opt == {'type': 'Restormer', 'dim': 8} and ours.size_multiple == 8
    assert ours.dtype == torch.float32
    x = torch.rand(1, 3, 21, 30)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), net(x))
    traced = torch.jit.trace(nn.Conv2d(3, 3, 1).half(), torch.rand(1, 3, 4, 4).half())
    buffer = io.BytesIO()
    torch.jit.save(traced, buffer)
    (tmp_path / 'foreign.pt').write_bytes(buffer.getvalue())
    foreign = TorchScriptNetwork(str(tmp_path / 'foreign.pt'))
    assert foreign.network_opt is None and foreign.size_multiple == 1 and foreign.dtype == torch.float16
    with torch.no_grad():
        out = foreign(x)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, traced(x.half()).float())
    no_params = torch.jit.trace(nn.ReLU(), torch.rand(1, 3, 4, 4))
    torch.jit.save(no_params, str(tmp_path / 'relu.pt'))
    assert TorchScriptNetwork(str(tmp_path / 'relu.pt')).dtype == torch.float32
    (tmp_path / 'junk.pt').write_bytes(b'PK\x03\x04 not really a zip')
    with pytest.raises(UserError, match=r'^cannot load this TorchScript archive: '):
        TorchScriptNetwork(str(tmp_path / 'junk.pt'))
    assert '\n' not in str(pytest.raises(UserError, TorchScriptNetwork, str(tmp_path / 'junk.pt')).value)


def test_onnx_runner_pads_to_its_multiple_and_crops(tmp_path):
    """OnnxNetwork pads inputs to the multiple in the file's metadata (replicate where reflect cannot: a 3-pixel
    side) and crops the output back."""
    data, _ = export.onnx_bytes(PadNet().eval(), {'type': 'PadNet'}, log=lambda *a: None)
    runner = OnnxNetwork(data)
    assert runner.size_multiple == 8 and runner.network_opt == {'type': 'PadNet'}
    x = torch.rand(1, 3, 3, 13)
    with torch.no_grad():
        expected = PadNet().eval()(pad_to_multiple(x, 8)[0])[..., :3, :13]
    torch.testing.assert_close(runner(x), expected, rtol=0, atol=1e-5)
    assert json.loads(json.dumps(runner.network_opt)) == {'type': 'PadNet'}


def test_onnx_runner_options_threads_providers_and_input_types(monkeypatch):
    """The export names its graph's input and output 'input' and 'output' (what other tools address); the runner
    reads the network options back with the architecture (a file without options: the architecture alone), hands
    onnxruntime the threads and the providers asked for, and runs bfloat16 and float64 inputs (converted to the
    model's float32), returning float32."""
    net = PadNet().eval()
    data, _ = export.onnx_bytes(net, {'type': 'PadNet', 'width': 3}, log=lambda *a: None)
    model = onnx.load_from_string(data)
    assert [i.name for i in model.graph.input] == ['input'] and [o.name for o in model.graph.output] == ['output']
    sessions, real = [], ort.InferenceSession

    def recording(model, options=None, providers=None):
        sessions.append((options, providers))
        return real(model, options, providers=providers)

    monkeypatch.setattr(ort, 'InferenceSession', recording)
    runner = OnnxNetwork(data, device='cpu', threads=2)
    assert runner.network_opt == {'type': 'PadNet', 'width': 3}
    options, providers = sessions[-1]
    assert options.intra_op_num_threads == 2 and providers == ['CPUExecutionProvider']
    x = torch.rand(1, 3, 12, 10)
    for dtype in (torch.bfloat16, torch.float64):
        with torch.no_grad():
            expected = net(x.to(dtype).float())
        out = runner(x.to(dtype))
        assert out.dtype == torch.float32
        torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)
    keys = [p.key for p in model.metadata_props]
    del model.metadata_props[keys.index('network_options')]
    assert OnnxNetwork(model.SerializeToString()).network_opt == {'type': 'PadNet'}


def test_providers_follow_the_device_and_what_is_installed(monkeypatch):
    """'cuda' and 'auto' (with the CUDA provider and a GPU) put CUDA first with the CPU behind it; 'auto' without
    either, and 'cpu', run on the CPU."""
    from types import SimpleNamespace

    from promptir_basicsr.interop.onnx_runtime import providers_for
    both = SimpleNamespace(get_available_providers=lambda: ['CUDAExecutionProvider', 'CPUExecutionProvider'])
    cpu_only = SimpleNamespace(get_available_providers=lambda: ['CPUExecutionProvider'], __version__='1')
    cuda_first = ['CUDAExecutionProvider', 'CPUExecutionProvider']
    for gpu in (True, False):
        monkeypatch.setattr(torch.cuda, 'is_available', lambda: gpu)
        assert providers_for('cuda', both) == cuda_first
        assert providers_for('auto', both) == (cuda_first if gpu else ['CPUExecutionProvider'])
        assert providers_for('cpu', both) == ['CPUExecutionProvider']
        assert providers_for('auto', cpu_only) == ['CPUExecutionProvider']
        with pytest.raises(UserError, match='pip install onnxruntime-gpu'):
            providers_for('cuda', cpu_only)
