"""The one base class of the errors a user can cause (bad input, missing files...).

Command lines print these as one ``error: ...`` line; any other exception is a bug and keeps
its traceback (``core.cli.run_cli``).
"""


class UserError(Exception):
    """Base of every MolScope error that a user's input or environment can cause.

    >>> issubclass(__import__("core.generate").generate.GenerationError, UserError)
    True
    """
