"""spandrel loads PromptIR and AirNet weights of every kind we produce or the authors released, and runs our
own network with identical outputs; the descriptor's metadata is right; detection order and install()."""
import pytest
import spandrel
import spandrel_extra_arches
import torch
from interop_helpers import AIRNET, AIRNET_GRAY, PROMPTIR, RESTORMER, built, image, run
from official_keys import lightning_checkpoint
from spandrel import MAIN_REGISTRY, ModelLoader, ModelTiling, UnsupportedDtypeError

from promptir_basicsr.archs.arch_api import options_from_weights as infer_network_options
from promptir_basicsr.weights.network import load_network
from promptir_basicsr.interop.export import safetensors_bytes
from promptir_basicsr.interop.spandrel import spandrel_registry, install


def registry(extras_first=True):
    """spandrel's main registry plus the extra arches and ours, in either order (ComfyUI adds the extra
    arches when its upscale nodes load; a user's install() may run before or after)."""
    parts = [spandrel_extra_arches.EXTRA_REGISTRY, spandrel_registry()]
    reg = MAIN_REGISTRY.copy()
    for part in (parts if extras_first else parts[::-1]):
        reg.add(*part, ignore_duplicates=True)
    return reg


def write(path, net, kind):
    """``net`` as a basicsr .pth whose EMA weights differ from its params (spandrel, like restore, must take
    params_ema), or as our .safetensors export."""
    if kind == 'pth':
        other = {k: v + 1 if v.is_floating_point() else v for k, v in net.state_dict().items()}
        torch.save({'params': other, 'params_ema': net.state_dict()}, path)
    else:
        path.write_bytes(safetensors_bytes(net, infer_network_options(net.state_dict()), log=lambda *_: None)[0])
    return path


@pytest.mark.parametrize('opt', [PROMPTIR, AIRNET_GRAY], ids=['PromptIR', 'AirNet-gray'])
@pytest.mark.parametrize('kind', ['pth', 'safetensors'])
def test_spandrel_loads_our_files_and_runs_our_network(tmp_path, opt, kind):
    """Guards detection, the options read from the keys (a wrong one fails the strict load or changes
    outputs), the EMA choice and every metadata field spandrel's users (chaiNNer, ComfyUI) read."""
    net = built(opt)
    model = ModelLoader(registry=registry()).load_from_file(write(tmp_path / f'w.{kind}', net, kind))
    channels = opt.get('inp_channels', 3)
    assert type(model.model) is type(net) and model.architecture.id == opt['type'] and not model.model.training
    assert (model.purpose, model.scale, model.input_channels, model.output_channels) == \
        ('Restoration', 1, channels, opt.get('out_channels', 3))
    assert model.size_requirements.multiple_of == (8 if opt['type'] == 'PromptIR' else 1)
    assert model.size_requirements.minimum == 0 and not model.size_requirements.square
    assert model.tiling is ModelTiling.DISCOURAGED
    assert (model.supports_half, model.supports_bfloat16) == (True, opt['type'] == 'PromptIR')
    x = image(channels, 37, 45)  # not a multiple of 8: spandrel pads, PromptIR would pad the same way
    expected = run(net, x)
    assert (run(model.model, x) - expected).abs().max() <= 1e-5
    assert (model(x) - expected.clamp(0, 1)).abs().max() <= 1e-5


@pytest.mark.parametrize('arch', ['PromptIR', 'AirNet'])
def test_spandrel_loads_the_official_release_formats(tmp_path, arch):
    """The official PromptIR Lightning .ckpt ('net.' keys, training entries) and AirNet plain .pth (with its
    MoCo queue), at the official sizes: spandrel's outputs equal `basicsr restore`'s network's."""
    net = built({'type': arch})
    if arch == 'PromptIR':
        path = tmp_path / 'model.ckpt'
        torch.save(lightning_checkpoint(net.state_dict()), path)
    else:
        path = tmp_path / 'All.pth'
        torch.save(net.state_dict(), path)
    model = ModelLoader(registry=registry()).load_from_file(path)
    ours = load_network(path)[0]
    assert model.architecture.id == arch and type(model.model) is type(ours)
    x = image(3, 21, 27)
    assert (model(x) - run(ours, x).clamp(0, 1)).abs().max() <= 1e-5
    assert (run(ours, x) - run(net, x)).abs().max() <= 1e-5


@pytest.mark.parametrize('extras_first', [True, False])
def test_detection_order_with_the_extra_arches(tmp_path, extras_first):
    """PromptIR's keys satisfy the extra arches' Restormer detection: ours must still win, whatever order the
    registries were added in; a Restormer file stays with the extra arches (we do not take it over), which
    run our (gray, BiasFree, non-default) Restormer weights with our outputs."""
    reg = registry(extras_first)
    promptir = ModelLoader(registry=reg).load_from_file(write(tmp_path / 'p.pth', built(PROMPTIR), 'pth'))
    assert promptir.architecture.id == 'PromptIR' and type(promptir.model).__module__.startswith('promptir_basicsr')
    ours = built(RESTORMER)
    restormer = ModelLoader(registry=reg).load_from_file(write(tmp_path / 'r.pth', ours, 'pth'))
    assert restormer.architecture.id == 'Restormer'
    assert type(restormer.model).__module__.startswith('spandrel_extra_arches')
    x = image(1, 37, 45)  # the extra arches' own Restormer gives our Restormer's outputs (README's claim)
    assert (restormer(x) - run(ours, x).clamp(0, 1)).abs().max() <= 1e-5


def test_detection_leaves_other_files_alone():
    """spandrel asks every architecture about every file: ours answer no (without raising) for others."""
    for arch in spandrel_registry():
        assert not arch.detect({'conv_first.weight': torch.zeros(1), 'body.0.weight': torch.zeros(1)})
        assert not arch.detect({'meta': 'not a tensor', 'R.head.0.weight': torch.zeros(1)})
        assert not arch.detect(built(RESTORMER).state_dict())


def test_install_adds_to_the_main_registry_once():
    """install() is what chaiNNer/ComfyUI-style hosts call: after it, a plain ModelLoader() knows ours."""
    install(ignore_duplicates=True)
    assert 'PromptIR' in MAIN_REGISTRY and 'AirNet' in MAIN_REGISTRY
    assert install(ignore_duplicates=True) == []
    with pytest.raises(spandrel.DuplicateArchitectureError):
        install()


def test_precision_metadata_holds_on_the_cpu():
    """supports_half / supports_bfloat16 are true claims: outputs stay within 1e-2 of float32; AirNet's
    deformable convolution has no bfloat16 kernel, so spandrel must refuse it."""
    reg = registry()
    promptir = reg.load({'params': built(PROMPTIR).state_dict()})
    x = image(3, 24, 32)
    expected = promptir(x)
    for dtype in (torch.float16, torch.bfloat16):
        promptir.to(dtype)
        assert (promptir(x.to(dtype)).float() - expected).abs().max() <= 1e-2
    airnet = reg.load(built(AIRNET).state_dict())
    expected = airnet(x)
    assert (airnet.half()(x.half()).float() - expected).abs().max() <= 1e-2
    with pytest.raises(UnsupportedDtypeError):
        airnet.bfloat16()
