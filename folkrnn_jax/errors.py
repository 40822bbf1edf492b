"""The exceptions that mean bad user input (a file, a token, a flag) or a missing external
tool, not a bug: the entry points print them as one line."""

from folkrnn_jax.abctools import ToolError, ToolMissingError
from folkrnn_jax.data import DataFormatError
from folkrnn_jax.vocab import UnknownTokenError

# ValueError covers the project's own input errors (DataFormatError, UnknownTokenError,
# legacy.LegacyFormatError and UnsafePickleError all derive from it).
USER_ERRORS: tuple[type[BaseException], ...] = (
    FileNotFoundError,
    DataFormatError,
    UnknownTokenError,
    ValueError,
    ToolMissingError,
    ToolError,
)
