"""One module per ``basicsr`` subcommand (argument parsing and work); ``cli.py`` only dispatches.

Each module exposes ``main(argv) -> exit status``. Subcommands whose work belongs to a concept
module elsewhere (``convert`` in ``utils/checkpoints.py``, ``table`` in ``utils/results_table.py``)
are listed in ``cli.SUBCOMMANDS`` by that module's entry point instead.
"""
