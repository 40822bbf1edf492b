"""Shared start-up for the absl entry points: user errors become one-line messages."""

import sys

from absl import app, logging

from folkrnn_jax.errors import UserError


def run(main) -> None:
    """``app.run(main)``, printing bad input (a ``UserError``: missing file, unknown token,
    malformed data, bad flag value, missing tool) as one line naming the problem; any other
    exception keeps its traceback."""

    def guarded(argv):
        try:
            return main(argv)
        except UserError as error:
            print(f"error: {error.message}", file=sys.stderr)
            sys.exit(2)

    logging.set_verbosity(logging.INFO)
    app.run(guarded)
