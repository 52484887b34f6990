"""One module per ``basicsr`` subcommand; ``cli.py`` finds them by file name and only dispatches.

A subcommand module defines ``HELP`` (one line), ``build_parser(prog)`` (argparse; the argument groups several
commands share are in :mod:`.arguments`, so a flag has one spelling everywhere) and ``run(args) -> exit status``.
Its top imports only what parsing needs; ``run`` imports the modules that do the work (they load torch and
basicsr), so ``--help`` and a mistyped flag answer at once. A new subcommand is one new file here.
"""
