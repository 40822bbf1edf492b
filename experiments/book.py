"""A printed book of new tunes, numbered like the folk-rnn session books.

python -m experiments.book --num_tunes=20 --output=book.pdf                 # the shipped default model
python -m experiments.book --workdir=runs/small --num_tunes=50 --seed=3 --meter=6/8 --key=D --output=jigs.pdf

Tune i of the book is tune i of ``python -m experiments.sample`` with the same settings and seed
(sampled with --constrain unless --noconstrain), typeset with abcm2ps and ghostscript's ps2pdf.
Each tune carries N: lines naming model, seed, temperature and prefix (printed with --notes).
"""

import dataclasses
import os
import sys

from absl import flags

from experiments import cli
from folkrnn_jax.generate import prefix as prefix_lib
from folkrnn_jax.serve import book, engine

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Run directory to sample from (default: the shipped default model).")
flags.DEFINE_integer("num_tunes", 20, "How many tunes.")
flags.DEFINE_integer("seed", 0, "RNG seed: the same seed gives the same book.")
flags.DEFINE_float("temperature", 1.0, "Softmax temperature.")
flags.DEFINE_string("prefix", "", "Tokens (or ABC) every tune starts with.")
flags.DEFINE_string("meter", None, "Meter, e.g. 6/8 (default: the model chooses).")
flags.DEFINE_string("mode", None, "maj, min, dor or mix (default: the model chooses).")
flags.DEFINE_string("key", None, "Root to write the tunes in (C, Db, D ... B; default: the K: of an ABC "
                    "--prefix, else C).")
flags.DEFINE_integer("top_k", 0, "Sample among the k most probable tokens (0: off).")
flags.DEFINE_float("top_p", 1.0, "Nucleus sampling mass (1: off).")
flags.DEFINE_bool("constrain", True, "Only tunes that pass the structure checks.")
flags.DEFINE_integer("max_length", 1000, "Most tokens per tune.")
flags.DEFINE_string("title", "The folkrnn_jax Session Book", "The book's title.")
flags.DEFINE_bool("notes", False, "Print each tune's N: lines (model, seed, temperature, prefix).")
flags.DEFINE_string("output", "book.pdf", "The PDF to write; the ABC goes beside it (.abc).")


def main(argv):
    del argv
    models = engine.load_models([FLAGS.workdir] if FLAGS.workdir else [])
    loaded = models[-1] if FLAGS.workdir else models[0]
    settings = engine.TuneSettings(
        model=loaded.name, seed=FLAGS.seed, meter=FLAGS.meter, mode=FLAGS.mode,
        key=FLAGS.key if FLAGS.key is not None else prefix_lib.prefix_key(FLAGS.prefix),
        prefix=FLAGS.prefix, temperature=FLAGS.temperature, top_k=FLAGS.top_k, top_p=FLAGS.top_p,
        constrain=FLAGS.constrain, max_length=FLAGS.max_length,
    )
    limits = engine.Limits(max_tunes_per_request=FLAGS.num_tunes, max_tune=max(FLAGS.num_tunes, 1))
    engine.prepare(settings, limits, [loaded.name])  # bad settings stop here, naming the flag's field
    if FLAGS.num_tunes < 1:
        raise engine.FieldError("num_tunes", "must be at least 1")

    def progress(kept, sampled):
        print(f"sampled {sampled} tunes", file=sys.stderr, flush=True)

    tunes = engine.sample_collection(loaded, settings, FLAGS.num_tunes, progress)
    texts = []
    for i, tokens in enumerate(tunes):
        tune_settings = dataclasses.replace(settings, tune=i + 1)
        abc = engine.tune_abc(tokens, tune_settings, loaded.step)
        texts.append(engine.with_notes(abc, engine.notes_lines(loaded.name, loaded.step, tune_settings),
                                       title=engine.describe_tune(tokens, settings.key)))
    subtitle = (f"{len(tunes)} tunes from folkrnn_jax ({loaded.description}), seed {FLAGS.seed}, "
                f"temperature {FLAGS.temperature:g}")
    abc_path = os.path.splitext(FLAGS.output)[0] + ".abc"
    engine.write_text(abc_path, book.book_abc(texts, FLAGS.title, subtitle, FLAGS.notes))
    book.typeset(texts, FLAGS.output, FLAGS.title, subtitle, FLAGS.notes)
    valid = sum(engine.is_valid(t) for t in tunes)
    print(f"wrote {FLAGS.output} and {abc_path}: {len(tunes)} tunes, {valid} pass the structure checks")


if __name__ == "__main__":
    cli.run(main)
