"""The ``basicsr`` command: ``basicsr <subcommand> [options]``. A dispatcher only.

A subcommand is one module ``commands/<name>.py`` with ``HELP`` (its line in the usage), ``build_parser(prog)``
and ``run(args) -> exit status``; this finds them by file name. A command module imports only what parsing
needs, so ``basicsr --help``, ``basicsr <cmd> --help`` and a wrong flag answer before torch loads; ``run``
imports the modules that do the work.
"""
import importlib
import pkgutil
import sys

from . import commands
from .errors import run_command


def subcommands():
    """``{name: module}`` of every subcommand module (those with ``HELP`` and ``run``), by name."""
    found = {}
    for info in pkgutil.iter_modules(commands.__path__):
        module = importlib.import_module(f'{commands.__name__}.{info.name}')
        if hasattr(module, 'HELP') and hasattr(module, 'run'):
            found[info.name] = module
    return dict(sorted(found.items()))


def _usage(found):
    lines = ['usage: basicsr <subcommand> [options]', '', 'subcommands:']
    width = max(len(name) for name in found)
    lines += [f'  {name.ljust(width)}  {module.HELP}' for name, module in found.items()]
    lines += ['', "Run 'basicsr <subcommand> --help' for a subcommand's options."]
    return '\n'.join(lines)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    found = subcommands()
    if not argv or argv[0] in ('-h', '--help'):
        print(_usage(found))
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in found:
        print(f"basicsr: unknown subcommand '{name}'\n\n{_usage(found)}", file=sys.stderr)
        return 2
    prog = f'basicsr {name}'
    args = found[name].build_parser(prog).parse_args(rest)
    return run_command(prog, found[name].run, args)


if __name__ == '__main__':
    sys.exit(main())
