"""inference.py: network options read from weights, every weights format, image files in and out."""
import json
import random

import cv2
import numpy as np
import pytest
import torch
from basicsr.archs import build_network
from official_keys import lightning_checkpoint, official_key_shapes
from safetensors.torch import save_file

from promptir_basicsr.archs.arch_api import options_from_weights as infer_network_options
from promptir_basicsr.utils.images import ImageError, encode_image, read_image, to_samples
from promptir_basicsr.weights.files import network_metadata
from promptir_basicsr.weights.network import load_network
from promptir_basicsr.errors import CheckpointError
from promptir_basicsr.weights.convert import convert_checkpoint


def random_config(arch, rng):
    """A random, non-default, small configuration of ``arch``."""
    if arch == 'AirNet':
        return dict(n_feats=rng.choice([4, 6, 8]), n_groups=rng.randint(1, 2), n_blocks=rng.randint(1, 2),
                    kernel_size=rng.choice([3, 5]), encoder_widths=[rng.choice([4, 8]), rng.choice([8, 12])],
                    moco_dim=rng.choice([4, 8]), queue_size=rng.choice([6, 10]), inp_channels=rng.choice([1, 3]),
                    out_channels=rng.choice([1, 3]))
    heads = [rng.choice([1, 2]) for _ in range(4)]
    config = dict(dim=4 * rng.randint(1, 3), num_blocks=[rng.randint(0, 2) for _ in range(4)],
                  num_refinement_blocks=rng.randint(0, 2), heads=heads,
                  ffn_expansion_factor=rng.choice([1.0, 1.5, 2.3, 2.66, 3.1]), bias=rng.random() < 0.5,
                  LayerNorm_type=rng.choice(['WithBias', 'BiasFree']), inp_channels=rng.choice([1, 3]),
                  out_channels=rng.choice([1, 3]))
    if arch == 'PromptIR':
        config.update(prompt_len=rng.randint(2, 6), prompt_dims=[rng.choice([4, 8]) for _ in range(3)],
                      prompt_sizes=[rng.choice([2, 4, 8]) for _ in range(3)],
                      keep_unused_modules=rng.random() < 0.5, prompt_learnable=rng.random() < 0.5,
                      prompt_levels=rng.choice([[4, 3, 2], [4], [4, 3], [3, 2], [2], []]))
        if config['prompt_levels'] and rng.random() < 0.5:  # the ablation variants round-trip too
            config.update(prompt_source='cbde', cbde_widths=[rng.choice([4, 8]) for _ in range(3)],
                          cbde_dim=rng.choice([4, 8]), cbde_queue_size=rng.choice([6, 10]))
        config['heads'][2] = 1  # PromptIR's prompt-interaction blocks need (8d + prompt dim) % heads[2] == 0
    else:
        config['dual_pixel_task'] = rng.random() < 0.5
    return config


def shapes(state_dict):
    return {k: tuple(v.shape) for k, v in state_dict.items()}


@pytest.mark.parametrize('arch', ['PromptIR', 'Restormer', 'AirNet'])
def test_infer_network_options_round_trips_random_configs(arch):
    """Build a random non-default network, read its options back from the state dict alone, rebuild:
    the same keys and shapes (guards every per-option reader: counts, widths, heads, ffn factor, norms)."""
    rng = random.Random(arch)
    for _ in range(6):
        config = random_config(arch, rng)
        state = build_network(dict(type=arch, **config)).state_dict()
        options = infer_network_options(state)
        assert options['type'] == arch
        rebuilt = build_network(dict(options)).state_dict()
        assert shapes(rebuilt) == shapes(state), (config, options)
        for key in ('num_blocks', 'heads', 'bias', 'LayerNorm_type', 'prompt_len', 'n_blocks', 'queue_size',
                    'prompt_levels', 'prompt_source', 'cbde_widths', 'cbde_dim', 'cbde_queue_size'):
            if key in config and key != 'heads' and (key != 'prompt_len' or config['prompt_levels']):
                assert options[key] == config[key], key
        if 'heads' in config:  # a level without blocks has no attention: its heads leave no trace
            levels = [config['num_blocks'][i] > 0 for i in range(4)]
            assert [h for h, used in zip(options['heads'], levels) if used] == \
                [h for h, used in zip(config['heads'], levels) if used]


@pytest.mark.parametrize('name, arch', [('promptir', 'PromptIR'), ('restormer', 'Restormer'), ('airnet', 'AirNet')])
def test_official_key_shapes_read_as_the_official_defaults(name, arch):
    """The official releases' keys and shapes give exactly the constructor defaults (official config)."""
    state = {key: torch.empty(shape) for key, shape in official_key_shapes(name).items()}
    options = infer_network_options(state)
    net_defaults = build_network({'type': arch}).state_dict()
    assert shapes(build_network(dict(options)).state_dict()) == shapes(net_defaults)
    if arch == 'PromptIR':
        assert options['ffn_expansion_factor'] == 2.66 and options['prompt_dims'] == [64, 128, 320]
        assert options['num_blocks'] == [4, 6, 6, 8] and options['keep_unused_modules'] is True
    if arch == 'AirNet':
        assert options['queue_size'] == 1280 and options['encoder_widths'] == [128, 256]


def test_unknown_weights_are_refused_with_the_fix():
    with pytest.raises(CheckpointError, match='--arch'):
        infer_network_options({'conv.weight': torch.zeros(3, 3, 3, 3)})


TINY_PROMPTIR = dict(dim=8, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1, heads=[1, 1, 1, 1],
                     ffn_expansion_factor=2, prompt_len=3, prompt_dims=[4, 8, 8], prompt_sizes=[4, 4, 4])


def _tiny(arch, **extra):
    torch.manual_seed(0)
    configs = {'PromptIR': TINY_PROMPTIR,
               'Restormer': dict(dim=8, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1, heads=[1, 1, 2, 2],
                                 LayerNorm_type='BiasFree'),
               'AirNet': dict(n_feats=8, n_groups=1, n_blocks=1, encoder_widths=[8, 16], moco_dim=8, queue_size=40)}
    return build_network(dict(type=arch, **configs[arch], **extra))


@pytest.mark.parametrize('arch, container', [('PromptIR', 'lightning'), ('AirNet', 'plain'),
                                             ('Restormer', 'params')])
def test_official_formats_load_with_no_options(tmp_path, arch, container):
    """Each official release format (PromptIR Lightning .ckpt with 'net.' keys and training entries,
    AirNet's plain state dict with its MoCo queue, Restormer's {'params'}) loads with no options and
    gives the same output as the network it came from."""
    net = _tiny(arch).eval()
    state = net.state_dict()
    wrapped = {'lightning': lightning_checkpoint, 'plain': dict, 'params': lambda s: {'params': s}}[container](state)
    path = tmp_path / ('model.ckpt' if container == 'lightning' else 'model.pth')
    torch.save(wrapped, path)
    loaded, network_opt, report = load_network(path)
    assert network_opt['type'] == arch and report['read_from'] == 'the weights'
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x))


def test_basicsr_file_prefers_params_ema(tmp_path):
    """basicsr's EMA weights are what it validates with: restore takes params_ema before params."""
    net = _tiny('PromptIR')
    ema = {k: v + 0.01 if v.is_floating_point() else v for k, v in net.state_dict().items()}
    torch.save({'params': net.state_dict(), 'params_ema': ema}, tmp_path / 'net_g_latest.pth')
    loaded, _, report = load_network(tmp_path / 'net_g_latest.pth')
    assert 'params_ema' in report['source']
    torch.testing.assert_close(loaded.state_dict()['output.weight'], ema['output.weight'])
    loaded, _, _ = load_network(tmp_path / 'net_g_latest.pth', param_key='params')
    torch.testing.assert_close(loaded.state_dict()['output.weight'], net.state_dict()['output.weight'])


def test_safetensors_with_and_without_metadata(tmp_path):
    """The metadata's architecture and options win (2.01 is not what the shapes alone give: 2.0);
    without metadata, the options are read from the keys."""
    net = _tiny('PromptIR', keep_unused_modules=False)
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    network_opt = dict(type='PromptIR', **TINY_PROMPTIR, keep_unused_modules=False)
    network_opt['ffn_expansion_factor'] = 2.01  # int(8 * 2.01) == int(8 * 2) for every width: same shapes
    save_file(state, str(tmp_path / 'with.safetensors'), metadata=network_metadata(network_opt))
    save_file(state, str(tmp_path / 'without.safetensors'))
    _, opt_meta, report = load_network(tmp_path / 'with.safetensors')
    assert opt_meta == network_opt and report['read_from'] == 'the file metadata'
    assert json.loads(network_metadata(network_opt)['network_options'])['prompt_dims'] == [4, 8, 8]
    loaded, opt_keys, report = load_network(tmp_path / 'without.safetensors')
    assert report['read_from'] == 'the weights' and opt_keys['ffn_expansion_factor'] == 2.0
    assert opt_keys['keep_unused_modules'] is False
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net.eval()(x))


def test_mismatching_options_list_the_keys(tmp_path):
    torch.save({'params': _tiny('Restormer').state_dict()}, tmp_path / 'r.pth')
    with pytest.raises(CheckpointError, match='patch_embed.proj.weight'):
        load_network(tmp_path / 'r.pth', overrides={'dim': 16})
    (tmp_path / 'junk.pth').write_bytes(b'not a checkpoint')
    with pytest.raises(CheckpointError, match='junk.pth'):
        load_network(tmp_path / 'junk.pth')


def test_convert_reads_the_network_from_the_weights(tmp_path):
    """`basicsr convert` on a run's own net_g_latest.pth with no --opt (it used to fail with 385 missing
    keys): the architecture and every option come from the weights."""
    state = _tiny('PromptIR').state_dict()
    torch.save({'params': state}, tmp_path / 'net_g_latest.pth')
    lines = []
    convert_checkpoint(tmp_path / 'net_g_latest.pth', tmp_path / 'out.pth', log=lines.append)
    assert any(line.startswith('network: PromptIR') and 'dim=8' in line for line in lines)
    converted = torch.load(tmp_path / 'out.pth', weights_only=True)['params']
    assert all(torch.equal(converted[k], v) for k, v in state.items())


# ---- image files -------------------------------------------------------------------------------
def test_image_round_trip_keeps_mode_depth_and_alpha(tmp_path):
    """read_image -> to_samples -> encode_image with the identity 'network' gives the file back: gray
    8/16-bit, RGB (channel order), RGBA (alpha untouched) and float32 TIFF."""
    rng = np.random.default_rng(0)
    cases = {
        'gray8.png': rng.integers(0, 256, (5, 7), dtype=np.uint8),
        'gray16.png': rng.integers(0, 65536, (5, 7), dtype=np.uint16),
        'bgr16.tif': rng.integers(0, 65536, (5, 7, 3), dtype=np.uint16),
        'bgra8.png': rng.integers(0, 256, (5, 7, 4), dtype=np.uint8),
        'float.tiff': rng.random((5, 7, 3), dtype=np.float32),
        'bgr8.bmp': rng.integers(0, 256, (5, 7, 3), dtype=np.uint8),
    }
    for name, samples in cases.items():
        cv2.imwrite(str(tmp_path / name), samples)
        image = read_image(tmp_path / name)
        assert image.dtype is samples.dtype.type
        encoded = encode_image(to_samples(image.rgb, image), '.' + name.rsplit('.', 1)[1])
        back = cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_UNCHANGED)
        assert back.dtype == samples.dtype and back.shape == samples.shape, name
        np.testing.assert_array_equal(back, samples)
    rgb = read_image(tmp_path / 'bgra8.png').rgb
    np.testing.assert_allclose(rgb[..., 0], cases['bgra8.png'][..., 2] / 255.)  # RGB for the network
    cv2.imwrite(str(tmp_path / 'lossy.webp'), cases['bgra8.png'])  # WebP (lossy at quality 95): RGBA kept
    image = read_image(tmp_path / 'lossy.webp')
    assert image.alpha is not None and image.rgb.shape == (5, 7, 3) and not image.gray
    assert encode_image(to_samples(image.rgb, image), '.webp')[:4] == b'RIFF'


def test_formats_that_cannot_store_a_result_are_refused():
    """OpenCV would silently write 8 bits, or drop alpha: refused with the fix instead."""
    with pytest.raises(ImageError, match='--ext png'):
        encode_image(np.zeros((4, 4, 3), np.uint16), '.jpg')
    with pytest.raises(ImageError, match='--ext png'):
        encode_image(np.zeros((4, 4, 4), np.uint8), '.jpg')


def test_jpeg_orientation_is_applied(tmp_path):
    """A phone photo stored sideways with EXIF orientation 6 is restored upright, as viewers show it."""
    from PIL import Image
    pixels = np.zeros((8, 16, 3), np.uint8)
    pixels[:, :8] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.fromarray(pixels).save(tmp_path / 'phone.jpg', exif=exif, quality=100)
    image = read_image(tmp_path / 'phone.jpg')
    assert image.rgb.shape == (16, 8, 3)
    assert image.rgb[:4].mean() > 0.9 and image.rgb[-4:].mean() < 0.1  # the white half is on top now


class _NoBFloat16Op(torch.nn.Module):
    """Stands for an operation without a bfloat16 kernel: fails as torch does when autocast is on."""

    def forward(self, x):
        if torch.is_autocast_enabled('cpu'):
            raise RuntimeError('"some_kernel" not implemented for \'BFloat16\'')
        return x


def test_restorer_bf16_autocast_and_unsupported_ops():
    """--amp bf16 runs PromptIR and AirNet (its deformable conv in float32, which torchvision's CPU kernel
    needs) in bfloat16 on the CPU, close to float32, float32 out; an operation without a bfloat16 kernel
    gives a one-line user error instead of a traceback."""
    from promptir_basicsr.errors import UserError
    from promptir_basicsr.inference import Restorer
    x = torch.rand(1, 3, 20, 28)
    for arch in ('PromptIR', 'AirNet'):
        net = _tiny(arch)
        full, half = Restorer(net, 'cpu')(x), Restorer(net, 'cpu', amp='bf16')(x)
        assert half.dtype == torch.float32 and 0 < (full - half).abs().max() < 0.1, arch
    with pytest.raises(UserError, match='--amp: _NoBFloat16Op has an operation without'):
        Restorer(_NoBFloat16Op(), 'cpu', amp='bf16')(x)
    net = _tiny('PromptIR')
    with pytest.raises(ValueError, match='fp16 needs CUDA'):
        Restorer(net, 'cpu', amp='fp16')
