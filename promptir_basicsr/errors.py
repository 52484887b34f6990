"""The error type for user mistakes: a bad option, file, argument or path.

Any subcommand may raise :class:`UserError` (or a subclass, such as ``options.OptionError``); ``cli.main``
prints it as one line, ``basicsr <subcommand>: error: <message>``, and exits with status 2. The message
names the file or option at fault and says how to fix it. Bugs stay ordinary exceptions with tracebacks.
"""


class UserError(ValueError):
    """A mistake the user can fix; the message says what and how."""
