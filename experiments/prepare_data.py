"""Build a v2-format corpus from raw ABC sources, with a report.

python -m experiments.prepare_data --source=oneills1850 --source=ryansMammoth \
    --source=airdsAirs --output=data/folk_corpus.txt --verify_midi

A source is a music21 collection name (oneills1850, ryansMammoth, airdsAirs, essenFolksong,
miscFolk), an .abc file or folder, or The Session's tunes.csv / tunes.json. Writes OUTPUT and
OUTPUT's .report.json / .report.md next to it.
"""

from absl import flags, logging

from experiments import cli
from folkrnn_jax.data import corpus

FLAGS = flags.FLAGS
flags.DEFINE_multi_string("source", None, "A music21 collection name, .abc file/folder, or tunes.csv/.json.")
flags.DEFINE_string("output", None, "The v2 data file to write, e.g. data/NAME.txt.")
flags.DEFINE_bool("verify_midi", False, "Play every kept tune and its original through abc2midi; "
                  "leave out tunes whose notes differ and write the match share into the report.")
flags.DEFINE_integer("workers", 8, "Parallel abc2midi runs for --verify_midi.")
flags.mark_flags_as_required(["source", "output"])


def main(argv):
    del argv
    result = corpus.build_corpus(FLAGS.source, verify_midi=FLAGS.verify_midi, workers=FLAGS.workers, log=logging.info)
    paths = corpus.write_corpus(result, FLAGS.output)
    report = result.report
    logging.info("%d tunes read, %d kept, %d tokens; wrote %s", report["tunes_read"], report["tunes_kept"],
                 report["tokens"], ", ".join(paths))


if __name__ == "__main__":
    cli.run(main)
