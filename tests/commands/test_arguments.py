"""The argument groups the subcommands share (promptir_basicsr/commands/arguments.py), parsed in this process: each
flag's spellings, types, defaults and choices; the tile check's bounds; ``KEY=VALUE`` parsing; the order of
precedence of ``--opt``, ``--arch`` and ``--arch-opt``; and ``load_network`` handing each of them to the loader."""
import argparse
import sys
import textwrap

import pytest
import torch
import yaml

from promptir_basicsr.commands import arguments
from promptir_basicsr.errors import UserError


def _parser(*groups, **kwargs):
    parser = argparse.ArgumentParser(prog='t')
    for group in groups:
        group(parser, **kwargs)
    return parser


def _refused(parser, argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_output_argument_spellings_required_and_default(capsys):
    parser = _parser(arguments.add_output_argument, help='where the files go')
    assert parser.parse_args([]).output is None  # optional unless asked
    assert parser.parse_args(['-o', 'a']).output == 'a' and parser.parse_args(['--output', 'b']).output == 'b'
    assert 'where the files go' in parser.format_help()
    assert _parser(arguments.add_output_argument, help='h', default='curves.png').parse_args([]).output == \
        'curves.png'
    required = _parser(arguments.add_output_argument, help='h', required=True)
    assert 'the following arguments are required: -o/--output' in _refused(required, [], capsys)
    assert required.parse_args(['-o', 'x']).output == 'x'


def test_network_arguments_spellings_and_defaults(capsys):
    parser = _parser(arguments.add_network_arguments)
    args = parser.parse_args(['--weights', 'w.pth'])
    assert (args.weights, args.opt, args.arch, args.arch_opt, args.param_key) == ('w.pth', None, None, [], None)
    for spelling in ('-opt', '--opt'):
        assert parser.parse_args(['--weights', 'w', spelling, 'o.yml']).opt == 'o.yml'
    args = parser.parse_args(['--weights', 'w', '--arch', 'PromptIR', '--param-key', 'params', '--arch-opt', 'dim=8',
                              '--arch-opt', 'heads=[1, 2]'])
    assert (args.arch, args.param_key, args.arch_opt) == ('PromptIR', 'params', [('dim', 8), ('heads', [1, 2])])
    assert 'the following arguments are required: --weights' in _refused(parser, [], capsys)
    help_text = ' '.join(parser.format_help().split())  # unwrapped
    assert 'an official Lightning .ckpt' in help_text and 'overrides the weights and --opt' in help_text
    optional = _parser(arguments.add_network_arguments, weights_required=False, weights_help='any weights at all')
    optional_help = ' '.join(optional.format_help().split())
    assert optional.parse_args([]).weights is None and 'any weights at all' in optional_help
    assert 'an official Lightning .ckpt' not in optional_help
    bad = _refused(parser, ['--weights', 'w', '--arch-opt', 'dim'], capsys)
    assert "--arch-opt expects KEY=VALUE, got 'dim'" in bad


def test_tile_arguments_and_their_check(capsys):
    parser = _parser(arguments.add_tile_arguments)
    args = parser.parse_args([])
    assert (args.tile_size, args.tile_overlap) == (0, 32)  # whole images; the options' default overlap
    args = parser.parse_args(['--tile-size', '64', '--tile-overlap', '8'])
    assert (args.tile_size, args.tile_overlap) == (64, 8)  # integers, not strings
    _refused(parser, ['--tile-size', '6.5'], capsys)
    for size, overlap, fine in ((0, 32, True), (0, 0, True), (16, 0, True), (16, 15, True), (1, 0, True),
                                (16, 16, False), (16, 17, False), (16, -1, False), (-1, 0, False), (-8, 32, False)):
        args = argparse.Namespace(tile_size=size, tile_overlap=overlap)
        if fine:
            arguments.check_tiles(args)
        else:
            with pytest.raises(UserError, match=f'--tile-size {size} --tile-overlap {overlap}: need tile size > '
                               'overlap >= 0'):
                arguments.check_tiles(args)


def test_scale_arguments_read_sizes_and_name_engines(capsys):
    parser = _parser(arguments.add_scale_arguments)
    args = parser.parse_args([])
    assert args.max_memory is None and args.backend is None  # None: an export refuses only an engine named
    args = parser.parse_args(['--max-memory', '512M', '--backend', 'onnxruntime'])
    assert args.max_memory == 512 * 2 ** 20 and args.backend == 'onnxruntime'
    assert parser.parse_args(['--backend', 'auto']).backend == 'auto'
    assert "invalid choice: 'tensorrt'" in _refused(parser, ['--backend', 'tensorrt'], capsys)


def test_device_arguments_with_and_without_the_speed_options(capsys):
    parser = _parser(arguments.add_device_arguments)
    args = parser.parse_args([])
    assert (args.device, args.threads, args.amp, args.channels_last, args.compile) == ('auto', None, None, False, None)
    args = parser.parse_args(['--device', 'cpu', '--threads', '3', '--amp', 'bf16', '--channels-last', '--compile'])
    assert (args.device, args.threads, args.amp, args.channels_last, args.compile) == ('cpu', 3, 'bf16', True,
                                                                                          'inductor')
    assert parser.parse_args(['--compile', 'eager']).compile == 'eager'
    assert parser.parse_args(['--amp', 'fp16', '--device', 'cuda']).amp == 'fp16'
    assert "invalid choice: 'fp32'" in _refused(parser, ['--amp', 'fp32'], capsys)
    assert "invalid choice: 'gpu'" in _refused(parser, ['--device', 'gpu'], capsys)
    plain = _parser(arguments.add_device_arguments, speed=False)
    assert plain.parse_args(['--device', 'cuda']).device == 'cuda'
    assert not hasattr(plain.parse_args([]), 'threads')
    assert 'unrecognized arguments: --amp bf16' in _refused(plain, ['--amp', 'bf16'], capsys)


def test_parse_arch_opt_reads_yaml_values():
    parse = arguments.parse_arch_opt
    assert parse('dim=8') == ('dim', 8)
    assert parse(' heads = [1, 2]') == ('heads', [1, 2])
    assert parse('bias=false') == ('bias', False) and parse('name=a=b') == ('name', 'a=b')
    assert parse('x=') == ('x', None) and parse('ratio=0.5') == ('ratio', 0.5)
    for bad in ('dim', '=8', '  =8', ''):
        with pytest.raises(argparse.ArgumentTypeError, match='--arch-opt expects KEY=VALUE'):
            parse(bad)


PLUGIN = textwrap.dedent('''
    import torch
    from basicsr.utils.registry import ARCH_REGISTRY


    class ArgumentsTestNet(torch.nn.Module):
        """A network the weights cannot name: only --arch (or an option file) tells what it is."""
        def __init__(self, gain=1.0):
            super().__init__()
            self.gain = gain
            self.conv = torch.nn.Conv2d(3, 3, 1)

        def forward(self, x):
            return self.gain * self.conv(x)


    if 'ArgumentsTestNet' not in ARCH_REGISTRY:
        ARCH_REGISTRY.register(ArgumentsTestNet)
''')


@pytest.fixture
def plugin_folder(tmp_path, monkeypatch):
    """An option folder with a plugin module (which registers ArgumentsTestNet) beside the option files."""
    monkeypatch.setattr(sys, 'path', list(sys.path))
    monkeypatch.delitem(sys.modules, 'arguments_test_plugin', raising=False)
    (tmp_path / 'arguments_test_plugin.py').write_text(PLUGIN)
    yield tmp_path
    sys.modules.pop('arguments_test_plugin', None)


def _args(**given):
    return argparse.Namespace(**{'opt': None, 'arch': None, 'arch_opt': [], 'weights': None, 'param_key': None,
                                 **given})


def _option_file(folder, name, opt):
    path = folder / name
    path.write_text(yaml.safe_dump(opt))
    return str(path)


def test_network_overrides_in_order_of_precedence(plugin_folder):
    """network_g of --opt (its type the architecture, not an option), then --arch, then --arch-opt; a file with
    only plugins: imports them and overrides nothing; a file with neither is refused."""
    full = _option_file(plugin_folder, 'full.yml', {'network_g': {'type': 'PromptIR', 'dim': 8, 'heads': [1, 2]}})
    assert arguments.network_overrides(_args()) == (None, {})
    assert arguments.network_overrides(_args(arch='Restormer', arch_opt=[('dim', 4)])) == ('Restormer', {'dim': 4})
    assert arguments.network_overrides(_args(opt=full)) == ('PromptIR', {'dim': 8, 'heads': [1, 2]})
    assert arguments.network_overrides(_args(opt=full, arch='AdaIR', arch_opt=[('dim', 16), ('bias', True)])) == \
        ('AdaIR', {'dim': 16, 'heads': [1, 2], 'bias': True})
    no_type = _option_file(plugin_folder, 'no_type.yml', {'network_g': {'dim': 8}})
    assert arguments.network_overrides(_args(opt=no_type)) == (None, {'dim': 8})
    plugins_only = _option_file(plugin_folder, 'plugins.yml', {'plugins': ['arguments_test_plugin']})
    assert 'arguments_test_plugin' not in sys.modules
    assert arguments.network_overrides(_args(opt=plugins_only)) == (None, {})
    assert 'arguments_test_plugin' in sys.modules  # imported from beside the option file
    neither = _option_file(plugin_folder, 'neither.yml', {'name': 'x', 'network_g': 'PromptIR'})
    with pytest.raises(UserError, match=f'--opt {neither}: no network_g section \\(nor plugins: to import\\)'):
        arguments.network_overrides(_args(opt=neither))


def test_load_network_hands_the_loader_every_argument(plugin_folder):
    """The architecture (--arch, or the option file's, after its plugin is imported), the options (--arch-opt) and
    the entry (--param-key) all reach the loader; where the network came from is logged; a file the loader
    refuses is a one-line error naming --weights."""
    torch.manual_seed(0)
    params = {'conv.weight': torch.randn(3, 3, 1, 1), 'conv.bias': torch.randn(3)}
    ema = {key: value + 1 for key, value in params.items()}
    weights = plugin_folder / 'w.pth'
    torch.save({'params': params, 'params_ema': ema}, weights)
    sys.path.append(str(plugin_folder))
    import arguments_test_plugin  # noqa: F401 (registers the network)
    logged = []
    net, network_opt = arguments.load_network(_args(weights=str(weights), arch='ArgumentsTestNet',
                                                    arch_opt=[('gain', 2.5)], param_key='params'), logged.append)
    assert network_opt == {'type': 'ArgumentsTestNet', 'gain': 2.5} and net.gain == 2.5
    assert torch.equal(net.conv.weight, params['conv.weight']) and torch.equal(net.conv.bias, params['conv.bias'])
    assert logged[0].startswith(f'weights: {weights} (') and 'ArgumentsTestNet gain=2.5' in logged[0]
    net, network_opt = arguments.load_network(_args(weights=str(weights), arch='ArgumentsTestNet'), logged.append)
    assert network_opt == {'type': 'ArgumentsTestNet'} and net.gain == 1.0
    assert torch.equal(net.conv.weight, ema['conv.weight'])  # basicsr's default entry: the EMA weights
    opt = _option_file(plugin_folder, 'o.yml', {'plugins': ['arguments_test_plugin'],
                                                'network_g': {'type': 'ArgumentsTestNet', 'gain': 0.5}})
    net, network_opt = arguments.load_network(_args(weights=str(weights), opt=opt), logged.append)
    assert network_opt == {'type': 'ArgumentsTestNet', 'gain': 0.5} and net.gain == 0.5
    with pytest.raises(UserError) as error:
        arguments.load_network(_args(weights=str(weights)), logged.append)  # nothing says what network it is
    assert str(error.value).startswith(f'--weights {weights}: ') and '\n' not in str(error.value)
    with pytest.raises(UserError, match=f'^--weights {plugin_folder / "nope.pth"}: '):
        arguments.load_network(_args(weights=str(plugin_folder / 'nope.pth')), logged.append)
