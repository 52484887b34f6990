"""inference.py (Restorer) and the network read from weights of every format (image files: tests/utils/test_images.py)."""
import json
import random

import numpy as np
import pytest
import torch
from basicsr.archs import build_network
from official_keys import lightning_checkpoint, official_key_shapes
from safetensors.torch import save_file

from promptir_basicsr.archs.arch_api import options_from_weights as infer_network_options
from promptir_basicsr.weights.files import network_metadata
from promptir_basicsr.weights.network import load_network
from promptir_basicsr.errors import CheckpointError, UserError
from promptir_basicsr.inference import Restorer
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


def test_mismatching_options_say_what_differs(tmp_path):
    """An option that differs from what the weights' shapes tell is named with both values, in one line; keys
    that do not fit for another reason are listed."""
    state = _tiny('Restormer').state_dict()
    torch.save({'params': state}, tmp_path / 'r.pth')
    with pytest.raises(CheckpointError, match=r'Restormer weights have dim=8 .* ask dim=16') as err:
        load_network(tmp_path / 'r.pth', overrides={'dim': 16})
    assert '\n' not in str(err.value)
    torch.save({'params': {**state, 'extra.weight': torch.zeros(1)}}, tmp_path / 'extra.pth')
    with pytest.raises(CheckpointError, match='extra.weight'):
        load_network(tmp_path / 'extra.pth')
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


class _MeanShift(torch.nn.Module):
    """A network that needs multiples of 8 and sees the whole (padded) input: out = x + 2 * mean(x) - 0.5, and the
    second element of a training-style tuple. The padding shows in the mean."""
    size_multiple = 8

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, x):
        self.seen.append(tuple(x.shape[-2:]))
        return x + 2 * x.mean() - 0.5, 'extra output'


def _reflect_mean(x, multiple):
    """The mean of ``x`` (N, C, H, W numpy) reflect-padded at the bottom/right to ``multiple`` (numpy's reflect is
    torch's: the border pixel is not repeated)."""
    h, w = x.shape[-2:]
    pads = ((0, 0), (0, 0), (0, -h % multiple), (0, -w % multiple))
    return np.pad(x, pads, mode='reflect').mean()


def test_restorer_pads_to_the_network_multiple_crops_and_takes_the_image():
    """A 13 x 21 input runs reflect-padded to the network's multiple (8: 16 x 24) or the one given (4: 16 x 24,
    3: 15 x 21, 1: unpadded); the output is cropped back, float32 on the CPU, the image taken from a tuple output.
    The mean of the padded input is computed here with numpy."""
    x = torch.rand(1, 3, 13, 21, generator=torch.Generator().manual_seed(0))
    for multiple, padded in ((None, (16, 24)), (4, (16, 24)), (1, (13, 21)), (3, (15, 21))):
        net = _MeanShift()
        out = Restorer(net, 'cpu', multiple=multiple)(x)
        assert net.seen == [padded] and out.shape == x.shape and out.dtype == torch.float32
        expected = x.numpy() + 2 * _reflect_mean(x.numpy(), multiple or 8) - 0.5
        np.testing.assert_allclose(out.numpy(), expected, atol=1e-6)


def test_restorer_tiles_and_counts_them():
    """Tiles of 16 with overlap 4 over a 40 x 24 image (padded from 37 x 20): rows start at 0, 12, 24 and columns at
    0, 8, so 6 tiles of 16 x 16 reach the network; tile_count says 6 before the run (1 untiled)."""
    net = _MeanShift()
    restorer = Restorer(net, 'cpu', tile_size=16, tile_overlap=4)
    assert restorer.tile_count(37, 20) == 6 and Restorer(_MeanShift(), 'cpu').tile_count(37, 20) == 1
    calls = []
    out = restorer(torch.rand(1, 3, 37, 20), on_tile=lambda done, total: calls.append((done, total)))
    assert net.seen == [(16, 16)] * 6 and calls == [(i, 6) for i in range(1, 7)] and out.shape == (1, 3, 37, 20)


def test_restorer_counts_pixels_computed_and_restored():
    """Two 37 x 20 images: 1480 pixels restored; untiled the network computes the padded 40 x 24 of each (1920);
    in the 6 tiles of 16 x 16 above, 6 x 256 each (3072). The counts add up over calls."""
    x = torch.rand(2, 3, 37, 20)
    whole = Restorer(_MeanShift(), 'cpu')
    whole(x)
    assert (whole.pixels_computed, whole.pixels_restored) == (1920, 1480)
    whole(x[:1])
    assert (whole.pixels_computed, whole.pixels_restored) == (2880, 2220)
    tiled = Restorer(_MeanShift(), 'cpu', tile_size=16, tile_overlap=4)
    tiled(x)
    assert (tiled.pixels_computed, tiled.pixels_restored) == (3072, 1480)


def test_restorer_runs_the_planners_tiles_and_batches():
    """Each call asks the planner (height, width, channels of this input) and runs its tiles, several per forward:
    (16, 24) tiles over a 37 x 20 single-channel input padded to 40 x 24 are 3, in forwards of 2 and 1."""
    asked = []

    def planner(height, width, channels):
        asked.append((height, width, channels))
        return (16, 24), 2

    net = _MeanShift()
    restorer = Restorer(net, 'cpu', tile_overlap=4, tile_planner=planner)
    restorer(torch.rand(1, 1, 37, 20))
    assert asked == [(37, 20, 1)] and (restorer.tile_size, restorer.tile_batch) == ((16, 24), 2)
    assert net.seen == [(16, 24), (16, 24)] and restorer.pixels_computed == 3 * 16 * 24


class _Failing(torch.nn.Module):
    def __init__(self, message):
        super().__init__()
        self.message = message

    def forward(self, x):
        raise RuntimeError(self.message)


def test_restorer_names_an_operation_its_precision_lacks_and_passes_other_errors_on():
    """Under --amp, "not implemented for" is one line with the end (80 characters) of the error's first line;
    any other error, and every error without --amp, goes on as it is."""
    x = torch.rand(1, 3, 8, 8)
    first = 'x' * 50 + '"slow_conv2d_cpu" not implemented for \'BFloat16\''
    with pytest.raises(UserError) as err:
        Restorer(_Failing(first + '\nmore detail'), 'cpu', amp='bf16')(x)
    assert str(err.value) == ('--amp: _Failing has an operation without torch.bfloat16 support on cpu '
                              f'({first[-80:]}); run without --amp')
    for amp, message in ((None, 'not implemented for this input'), ('bf16', 'shapes do not match')):
        with pytest.raises(RuntimeError, match=f'^{message}$'):
            Restorer(_Failing(message), 'cpu', amp=amp)(x)


def test_tile_count_asks_the_planner():
    """With a tile planner (restore's memory budget) the tiles are the planner's for this image (asked with its
    height, width and 3 channels): (16, 24) tiles overlapping 4 over 37 x 20 (padded to 40 x 24) are 3 rows of
    one; a planner that keeps the image whole: 1."""
    asked = []

    def planner(height, width, channels):
        asked.append((height, width, channels))
        return (16, 24), 5

    restorer = Restorer(_MeanShift(), 'cpu', tile_size=8, tile_overlap=4, tile_planner=planner)
    assert restorer.tile_count(37, 20) == 3 and asked == [(37, 20, 3)]
    restorer.tile_planner = lambda height, width, channels: (None, 1)
    assert restorer.tile_count(37, 20) == 1


class _Upscale(torch.nn.Module):
    def forward(self, x):
        return torch.nn.functional.interpolate(x, scale_factor=2, mode='nearest')


def test_restorer_scale_and_eval_mode():
    """scale=2: the output is cropped to twice the input (padded 10 -> 16, cropped to 20); the network runs in eval
    mode (dropout off: two calls agree, and equal the input's upscaling)."""
    x = torch.rand(1, 3, 10, 9)
    out = Restorer(_Upscale(), 'cpu', scale=2, multiple=8)(x)
    torch.testing.assert_close(out, x.repeat_interleave(2, -1).repeat_interleave(2, -2), rtol=0, atol=0)
    dropout = torch.nn.Sequential(torch.nn.Dropout(0.5)).train()
    restorer = Restorer(dropout, 'cpu')
    assert not dropout.training
    torch.testing.assert_close(restorer(x), x)


class _Noisy(torch.nn.Module):
    """Draws random numbers at inference, as MoCE-IR's routing noise does."""

    def forward(self, x):
        return x + torch.rand_like(x)


def test_restorer_seeds_each_call_and_leaves_the_generator_alone():
    """seed 0: every call restores alike (the draws of torch.manual_seed(0)), and the caller's random stream goes on
    as if nothing had drawn; seed None: the draws come from the caller's stream."""
    x = torch.zeros(1, 3, 4, 4)
    torch.manual_seed(123)
    first, second = Restorer(_Noisy(), 'cpu')(x), Restorer(_Noisy(), 'cpu', seed=0)(x)
    after = torch.rand(1)
    torch.manual_seed(0)
    torch.testing.assert_close(first, torch.rand(1, 3, 4, 4), rtol=0, atol=0)
    torch.testing.assert_close(second, first, rtol=0, atol=0)
    torch.manual_seed(123)
    torch.testing.assert_close(after, torch.rand(1))  # the caller's stream was not advanced
    torch.manual_seed(5)
    unseeded = Restorer(_Noisy(), 'cpu', seed=None)(x)
    torch.manual_seed(5)
    torch.testing.assert_close(unseeded, torch.rand(1, 3, 4, 4), rtol=0, atol=0)
    assert Restorer(_Noisy(), 'cpu', seed=7)(x).ne(first).any()


def test_device_and_amp_names():
    from promptir_basicsr.inference import _amp_dtype, resolve_device
    assert resolve_device('auto') == resolve_device(None) == torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    assert resolve_device('cpu') == torch.device('cpu')
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match='no CUDA device is available here; use --device cpu'):
            resolve_device('cuda')
    assert _amp_dtype('bf16') is torch.bfloat16 and _amp_dtype('fp16') is torch.float16
    assert _amp_dtype(None) is None and _amp_dtype(torch.bfloat16) is torch.bfloat16
    with pytest.raises(ValueError, match=r"amp must be one of \['bf16', 'fp16'\], got 'fp32'"):
        _amp_dtype('fp32')
