"""Shared entry point of the experiments/analyze_*.py commands (flags --workdir, --output, --seed)."""

from absl import flags, logging

from experiments import cli
from folkrnn_jax.analysis import probes

flags.DEFINE_string("workdir", None, "Run directory holding config.json and checkpoints.")
flags.DEFINE_string("output", None, "Directory for the PNG and JSON (default: WORKDIR/analysis).")
flags.DEFINE_integer("seed", 0, "RNG seed for the generated tune / random controls.")
flags.mark_flags_as_required(["workdir"])


def main_for(kind: str) -> None:
    """Run ``probes.ANALYSES[kind]`` as an absl program."""

    def main(argv):
        del argv
        fl = flags.FLAGS
        paths = probes.ANALYSES[kind](fl.workdir, fl.output or f"{fl.workdir}/analysis", fl.seed)
        logging.info("wrote %s", ", ".join(paths))

    cli.run(main)
