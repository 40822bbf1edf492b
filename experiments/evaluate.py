"""Evaluate a model (its report card): validation NLL, and tunes sampled freely and with
--constrain beside the training split and folk-rnn v2's published figures, as report.md (the
table), report.json and PNG plots in --output_dir.

python -m experiments.evaluate                      # the shipped model: 1,000 free + 1,000 constrained
python -m experiments.evaluate --num_tunes=200 --output_dir=eval
python -m experiments.evaluate --constrain          # constrained sampling only (--modes=constrained)
python -m experiments.evaluate --workdir=runs/tiny --samples=runs/tiny/samples.abc
python -m experiments.evaluate --constrain --best_of=4 --ranking=cadence \
    --compare=../shared/data/original_samples_config5_seed24_T1.txt

--samples takes a v2-format file or an ABC file written by experiments.sample instead of
sampling. The training column is the training split of the run's data (the tunes it trained
on, without its validation tunes); --data replaces the run's data_path. --compare adds a
column for each tune file given (v2 format or our ABC), e.g. the original v2 model's samples.
"""

import os

from absl import flags, logging

from experiments import cli
from folkrnn_jax.analysis import novelty as novelty_lib
from folkrnn_jax.analysis import report as report_lib
from folkrnn_jax.errors import InputError
from folkrnn_jax.generate import rerank

FLAGS = flags.FLAGS
flags.DEFINE_string(
    "workdir", None, "Run directory or model folder (default: the shipped model, models/default)."
)
flags.DEFINE_string("samples", None, "Generated tunes (v2 format or our ABC) to report instead of sampling.")
flags.DEFINE_string("data", None, "Training data, one v2 file or several comma-separated (default: the run's "
                    "data_path); its training split is the training column.")
flags.DEFINE_string("output_dir", None, "Report folder (default: WORKDIR/eval, or ./eval for the shipped model).")
flags.DEFINE_alias("output", "output_dir")
flags.DEFINE_list("modes", list(report_lib.SAMPLING_MODES), "Sampling modes, one column each: free, "
                  "constrained, or both (free,constrained).")
flags.DEFINE_bool("constrain", False, "Sample with the structure constraint only (--modes=constrained).")
flags.DEFINE_integer("num_tunes", 1000, "Tunes to sample in each mode.")
flags.DEFINE_float("temperature", 1.0, "Sampling temperature.")
flags.DEFINE_integer("seed", 0, "Sampling seed.")
flags.DEFINE_integer("max_length", 1000, "Maximum tokens per sampled tune.")
flags.DEFINE_integer("novelty_threshold", novelty_lib.DEFAULT_NOVELTY_THRESHOLD,
                     "Flag generated tunes sharing this many consecutive tokens with a training tune.")
flags.DEFINE_integer("abc2midi_training_tunes", 1000, "Training tunes (a fixed random subset) that abc2midi checks.")
flags.DEFINE_integer("abc2midi_workers", 2, "abc2midi processes run at once (one per tune).")
flags.DEFINE_bool("validation", True, "Compute the validation NLL of the model.")
flags.DEFINE_list("compare", [], "Tune files (v2 format or our ABC) to set beside the others, one column each.")
flags.DEFINE_integer("best_of", 1, "Draw this many candidates per sampled tune and keep the one the model "
                     "scores highest (--ranking).")
flags.DEFINE_enum("ranking", "tune", list(rerank.RANKINGS), "--best_of keeps the candidate with the highest "
                  "mean log-probability per token of the whole tune (tune) or of its closing bars (cadence).")


def main(argv):
    del argv
    modes = tuple(FLAGS.modes)
    if FLAGS.constrain:
        if FLAGS["modes"].present and modes != ("constrained",):
            raise InputError("--constrain means --modes=constrained; give one of them")
        modes = ("constrained",)
    unknown = [m for m in modes if m not in report_lib.SAMPLING_MODES]
    if unknown or not modes:
        raise InputError(f"--modes={','.join(modes)}: choose from {', '.join(report_lib.SAMPLING_MODES)}")
    if FLAGS.num_tunes < 1:
        raise InputError(f"--num_tunes must be at least 1 (got {FLAGS.num_tunes})")
    output = FLAGS.output_dir or (f"{FLAGS.workdir}/eval" if FLAGS.workdir else "eval")
    if os.path.exists(output) and not os.path.isdir(output):
        raise InputError(f"--output_dir={output} is a file, not a folder")
    options = report_lib.EvaluateOptions(
        modes=modes, num_tunes=FLAGS.num_tunes, temperature=FLAGS.temperature, seed=FLAGS.seed,
        max_length=FLAGS.max_length, samples=FLAGS.samples, data=FLAGS.data, validation=FLAGS.validation,
        novelty_threshold=FLAGS.novelty_threshold, abc2midi_training=FLAGS.abc2midi_training_tunes,
        abc2midi_workers=FLAGS.abc2midi_workers, compare=tuple(FLAGS.compare), best_of=FLAGS.best_of,
        ranking=FLAGS.ranking,
    )
    report = report_lib.evaluate_model(FLAGS.workdir, options, log=logging.info)
    cli.note_new_folder(output)
    paths = report_lib.write_report(report, output)
    print(f"wrote {paths['markdown']}, {paths['json']} and {len(paths['images'])} plots", flush=True)


if __name__ == "__main__":
    cli.run(main)
