"""Shared entry point of the experiments/analyze_*.py commands (flags --workdir, --output, --seed)."""

from absl import flags, logging

from experiments import cli
from folkrnn_jax.analysis import probes
from folkrnn_jax.training import runs

flags.DEFINE_string(
    "workdir", None, "Run directory or model folder (default: the shipped model, models/default)."
)
flags.DEFINE_string("output", None, "Directory for the PNG and JSON (default: WORKDIR/analysis, or ./analysis for the shipped model).")
flags.DEFINE_integer("seed", 0, "RNG seed for the generated tune / random controls.")


def main_for(kind: str) -> None:
    """Run ``probes.ANALYSES[kind]`` as an absl program."""

    def main(argv):
        del argv
        fl = flags.FLAGS
        output = fl.output or (f"{fl.workdir}/analysis" if fl.workdir else "analysis")
        paths = probes.ANALYSES[kind](runs.resolve(fl.workdir), output, fl.seed)
        logging.info("wrote %s", ", ".join(paths))

    cli.run(main)
