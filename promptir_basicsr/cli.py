"""The ``basicsr`` command: ``basicsr <subcommand> [options]``. A dispatcher only.

Each subcommand is one entry of :data:`SUBCOMMANDS`: a one-line help and the entry point
``'module:function'`` (relative to this package), a function taking the remaining argv and returning
the exit status. The module is imported only when its subcommand runs. Adding a subcommand means
adding its module (usually under ``commands/``) and one entry here.
"""
import importlib
import sys

# name -> (one-line help, 'module:function' relative to promptir_basicsr)
SUBCOMMANDS = {
    'train': ('train a model from an option file (basicsr flags)', 'commands.pipeline:train'),
    'test': ('test a model from an option file (basicsr flags)', 'commands.pipeline:test'),
    'convert': ('convert an official PromptIR/AirNet/Restormer checkpoint to a basicsr .pth',
                'utils.checkpoints:convert_main'),
    'restore': ('restore your own images with any weights, at any size (tiles, 8/16-bit, gray, alpha)',
                'commands.restore:main'),
    'plot': ('plot loss, learning rate and per-set metrics of training runs (several runs overlay)',
             'commands.plot:main'),
    'prompts': ("record a trained PromptIR's prompt weights per degradation: heatmaps and a specialisation table",
                'commands.prompts:main'),
    'export': ('export weights to ONNX (checked with onnxruntime), TorchScript or safetensors',
               'commands.export:main'),
    'table': ("merge the results tables of several `basicsr test` runs (the paper's Table 1 layout)",
              'utils.results_table:main'),
}


def _usage():
    lines = ['usage: basicsr <subcommand> [options]', '', 'subcommands:']
    width = max(len(name) for name in SUBCOMMANDS)
    lines += [f'  {name.ljust(width)}  {text}' for name, (text, _) in SUBCOMMANDS.items()]
    lines += ['', "Run 'basicsr <subcommand> --help' for a subcommand's options."]
    return '\n'.join(lines)


def entry_point(name):
    """The function behind subcommand ``name``."""
    module_name, function_name = SUBCOMMANDS[name][1].split(':')
    module = importlib.import_module(f'{__package__}.{module_name}')
    return getattr(module, function_name)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ('-h', '--help'):
        print(_usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"basicsr: unknown subcommand '{name}'\n\n{_usage()}", file=sys.stderr)
        return 2
    import promptir_basicsr  # noqa: F401  (compat fixes and registrations before anything runs)
    from .errors import run_command
    return run_command(f'basicsr {name}', entry_point(name), rest)


if __name__ == '__main__':
    sys.exit(main())
