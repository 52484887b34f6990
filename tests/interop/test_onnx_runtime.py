"""OnnxNetwork: foreign .onnx files, the refusal naming an operator onnxruntime cannot run, CUDA requests."""
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

from promptir_basicsr.errors import UserError
from promptir_basicsr.interop.onnx_runtime import OnnxNetwork, providers_for


def model_bytes(nodes, inputs, elem_type=TensorProto.FLOAT, opset=17, initializers=()):
    """A small ONNX model; inputs (name, shape) with dynamic height and width."""
    graph = helper.make_graph(
        nodes, 'g', [helper.make_tensor_value_info(name, elem_type, shape) for name, shape in inputs],
        [helper.make_tensor_value_info('y', elem_type, None)], initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', opset)])
    model.ir_version = 9  # what onnxruntime 1.31 reads (onnx 1.23 writes 14 by default)
    return model.SerializeToString()


def test_a_foreign_model_runs_without_our_metadata():
    """Any one-input image model runs; without our metadata nothing is padded and no network is claimed."""
    two = helper.make_tensor('two', TensorProto.FLOAT, [], [2.0])
    net = OnnxNetwork(model_bytes([helper.make_node('Mul', ['x', 'two'], ['y'])], [('x', [1, 3, 'h', 'w'])],
                                  initializers=[two]))
    assert net.network_opt is None and net.size_multiple == 1
    x = torch.rand(1, 3, 5, 7)
    assert torch.equal(net(x), 2 * x)


def test_an_operator_onnxruntime_cannot_run_is_named():
    """onnxruntime has no float64 Conv kernel: the refusal is one line naming the operator and opset."""
    weight = helper.make_tensor('w', TensorProto.DOUBLE, [3, 3, 1, 1], [1.0] * 9)
    data = model_bytes([helper.make_node('Conv', ['x', 'w'], ['y'])], [('x', [1, 3, 'h', 'w'])],
                       elem_type=TensorProto.DOUBLE, opset=11, initializers=[weight])
    with pytest.raises(UserError, match=rf'onnxruntime {ort.__version__} cannot run the ONNX operator Conv '
                                        r'\(opset 11\) in this model$'):
        OnnxNetwork(data)


def test_models_that_are_not_image_to_image_are_refused():
    """Two inputs, or bytes that are no ONNX model: a one-line refusal, not an onnxruntime traceback."""
    data = model_bytes([helper.make_node('Add', ['a', 'b'], ['y'])], [('a', [1, 3, 'h', 'w']), ('b', [1, 3, 'h', 'w'])])
    with pytest.raises(UserError, match='one float32 or float16 input, found a: tensor'):
        OnnxNetwork(data)
    with pytest.raises(UserError, match='cannot load this model'):
        OnnxNetwork(b'not an onnx file')


def test_cuda_needs_onnxruntime_gpu():
    """--device cuda with a CPU-only onnxruntime names the package to install instead of running elsewhere;
    'auto' takes CUDA only when onnxruntime has the provider and torch sees a GPU."""
    assert providers_for('cpu', ort) == ['CPUExecutionProvider']
    cuda = 'CUDAExecutionProvider' in ort.get_available_providers()
    assert (providers_for('auto', ort)[0] == 'CUDAExecutionProvider') == (cuda and torch.cuda.is_available())
    if cuda:
        assert providers_for('cuda', ort)[0] == 'CUDAExecutionProvider'
    else:
        with pytest.raises(UserError, match='pip install onnxruntime-gpu'):
            providers_for('cuda', ort)
