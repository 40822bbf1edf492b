"""Shared start-up for the absl entry points: user errors become one-line messages."""

import sys

from absl import app, logging

from folkrnn_jax.errors import USER_ERRORS


def run(main) -> None:
    """``app.run(main)``, printing bad input (missing file, unknown token, malformed data) as
    one line naming the problem instead of a traceback."""

    def guarded(argv):
        try:
            return main(argv)
        except USER_ERRORS as error:
            message = error.args[0] if error.args else str(error)
            print(f"error: {message}", file=sys.stderr)
            sys.exit(2)

    logging.set_verbosity(logging.INFO)
    app.run(guarded)
