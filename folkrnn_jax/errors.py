"""The exceptions that mean bad user input (a file, a token, a flag), not a bug."""

from folkrnn_jax.data import DataFormatError
from folkrnn_jax.vocab import UnknownTokenError

USER_ERRORS: tuple[type[BaseException], ...] = (
    FileNotFoundError,
    DataFormatError,
    UnknownTokenError,
    ValueError,
)
