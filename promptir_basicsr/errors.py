"""The error type for user mistakes: a bad option, file, argument or path.

Any subcommand may raise :class:`UserError` (or a subclass, such as :class:`OptionError`,
``data.sources.DatasetError`` or :class:`CheckpointError`); ``cli.main`` (and every script, through
:func:`run_command`) prints it as one line, ``<prog>: error: <message>``, and exits with status 2. The message
names the file or option at fault and says how to fix it. Bugs stay ordinary exceptions with tracebacks.
"""
import sys


class UserError(ValueError):
    """A mistake the user can fix; the message says what and how."""


class OptionError(UserError):
    """An option file that cannot run; the message names the file and every problem found."""


class CheckpointError(UserError):
    """A weights file that cannot be read safely, whose architecture or options cannot be told from its keys,
    or that does not match the network."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The checkpoint file does not exist."""


def run_command(prog, function, argv):
    """``function(argv)``'s exit status; a :class:`UserError` becomes one line on stderr and status 2."""
    try:
        return function(argv)
    except UserError as err:
        print(f'{prog}: error: {err}', file=sys.stderr)
        return 2
