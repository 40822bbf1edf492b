"""Shared entry point of the experiments/analyze_*.py commands: the model (--workdir), where
the PNG and JSON go (--output), and what the analysis looks at (--tunes, --indices,
--num_tunes, --layer, --seed, --prefix, --max_length; ``probes.AnalysisOptions``). Each command
prints one line saying what it looked at: model, step, n tunes and where they came from, layer."""

from absl import flags, logging

from experiments import cli
from folkrnn_jax.analysis import probes
from folkrnn_jax.errors import InputError
from folkrnn_jax.training import runs

flags.DEFINE_string(
    "workdir", None, "Run directory or model folder (default: the shipped model, models/default)."
)
flags.DEFINE_string("output", None, "Directory for the PNG and JSON (default: WORKDIR/analysis, or ./analysis for the shipped model).")
flags.DEFINE_integer("seed", 0, "RNG seed of sampled tunes and of the random controls (random units, random pitches).")
flags.DEFINE_string("tunes", "", "Where the tunes come from: a v2 or ABC file, or 'sampled' (drawn from the model "
                    "with --seed after --prefix). Default: analyze_bars the first file of the run's training "
                    "data; the others sampled.")
flags.DEFINE_list("indices", [], "Tunes of the --tunes file, numbered from 1 in file order, e.g. 1,5,9 "
                  "(default: the first --num_tunes of at most --max_length tokens).")
flags.DEFINE_integer("num_tunes", 0, "How many tunes (0: the analysis's default: bars 8, forcing 4 per "
                     "setting, record and gram 1).")
flags.DEFINE_integer("layer", 0, "Layer to probe, 1 = the first (nearest the input), as the blog counts. 0: "
                     "analyze_bars picks the layer with the most bar-period power; record and gram show every layer.")
flags.DEFINE_string("prefix", "M:4/4 K:Cmaj", "What sampled tunes start with (as --prefix of experiments.sample).")
flags.DEFINE_integer("max_length", 400, "Tokens per tune at most (sampled tunes stop there; longer file tunes "
                     "are passed over unless --indices names them).")


def options_from_flags() -> probes.AnalysisOptions:
    """The analysis options the flags give."""
    fl = flags.FLAGS
    try:
        indices = tuple(int(i) for i in fl.indices)
    except ValueError:
        raise InputError(f"--indices={','.join(fl.indices)}: tune numbers from 1, separated by commas") from None
    return probes.AnalysisOptions(seed=fl.seed, tunes=fl.tunes, indices=indices, num_tunes=fl.num_tunes,
                                  layer=fl.layer, prefix=fl.prefix, max_length=fl.max_length)


def main_for(kind: str) -> None:
    """Run ``probes.ANALYSES[kind]`` as an absl program."""

    def main(argv):
        del argv
        fl = flags.FLAGS
        options = options_from_flags()
        output = fl.output or (f"{fl.workdir}/analysis" if fl.workdir else "analysis")
        cli.note_new_folder(output)
        paths = probes.ANALYSES[kind](runs.resolve(fl.workdir), output, options, print)
        logging.info("wrote %s", ", ".join(paths))

    cli.run(main)
