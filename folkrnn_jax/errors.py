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


class FieldError(InputError):
    """A named setting or request field with a bad value: ``field`` names it, ``reason`` says
    why (the composer answers 422 with both; the command line prints ``field: reason``)."""

    def __init__(self, field: str, reason: str):
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")
