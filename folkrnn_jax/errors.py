"""The exceptions that mean bad user input (a file, a token, a flag value) or a missing or
failing external tool, not a bug. The command line prints a ``UserError`` as one line
(``error: MESSAGE``); every other exception keeps its traceback."""


class UserError(Exception):
    """Base class of the input errors the command line prints as one line."""

    @property
    def message(self) -> str:
        """The text printed after ``error:``."""
        return str(self)


class MissingFileError(UserError, FileNotFoundError):
    """A file or folder the user named does not exist."""


class InputError(UserError, ValueError):
    """A value the user gave (a flag, a config field, a prefix, a key) cannot be used."""
