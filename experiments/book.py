"""A printed book of new tunes, numbered like the folk-rnn session books.

python -m experiments.book --num_tunes=20 --output=book.pdf                 # the shipped default model
python -m experiments.book --workdir=runs/small --num_tunes=50 --seed=3 --meter=6/8 --key=D --output=jigs.pdf

Tune i of the book is tune i of ``python -m experiments.sample`` with the same settings and seed
(the same sampling flags and defaults: well-formed tunes unless --noconstrain), typeset with
abcm2ps and Ghostscript. Each tune carries N: lines naming model, seed, temperature and prefix
(printed with --notes).
"""

import os
import sys

import jax
from absl import flags

from experiments import cli
from folkrnn_jax import files
from folkrnn_jax.generate import prefix as prefix_lib
from folkrnn_jax.generate import sampler
from folkrnn_jax.music import abc_out, output, structure, tools, transpose, typeset
from folkrnn_jax.training import runs

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Run directory to sample from (default: the shipped default model).")
flags.DEFINE_integer("num_tunes", 20, "How many tunes.", lower_bound=1)
cli.define_sampling_flags()
flags.DEFINE_string("title", "The folkrnn_jax Session Book", "The book's title.")
flags.DEFINE_bool("notes", False, "Print each tune's N: lines (model, seed, temperature, prefix).")
flags.DEFINE_string("output", "book.pdf", "The PDF to write; the ABC goes beside it (.abc).")


def main(argv):
    del argv
    settings = cli.sampling_settings()
    key = settings.key if settings.key is not None else prefix_lib.prefix_key(settings.prefix)
    if key is not None:
        transpose.parse_root(key)
    for tool in ("abcm2ps", "gs"):  # a missing typesetter fails before any sampling
        tools.require(tool)
    model, params, step = runs.load_run(FLAGS.workdir)
    name = os.path.basename(os.path.normpath(FLAGS.workdir)) if FLAGS.workdir else "default"

    def progress(kept, sampled):
        print(f"sampled {sampled} tunes", file=sys.stderr, flush=True)

    many = sampler.sample_many(model, params, jax.random.PRNGKey(settings.seed), FLAGS.num_tunes,
                               chunk_size=256, progress=progress, **settings.sampler_arguments())
    texts = []
    for i, tokens in zip(many.indices, many.tunes):
        title = output.tune_title(step, settings.seed, i + 1, settings.constrain, key)
        abc = abc_out.tokens_to_abc(tokens, index=i + 1, title=title, key=key)
        texts.append(output.with_notes(abc, output.notes_lines(name, step, i + 1, settings),
                                       title=output.describe_tune(tokens, key)))
    subtitle = (f"{len(texts)} tunes from folkrnn_jax ({name}, step {step}), seed {settings.seed}, "
                f"temperature {settings.temperature:g}")
    abc_path = os.path.splitext(FLAGS.output)[0] + ".abc"
    files.atomic_write_text(abc_path, typeset.book_abc(texts, FLAGS.title, subtitle, FLAGS.notes))
    typeset.typeset_book(texts, FLAGS.output, FLAGS.title, subtitle, FLAGS.notes)
    valid = sum(structure.is_valid_tune(t) for t in many.tunes)
    print(f"wrote {FLAGS.output} and {abc_path}: {len(texts)} tunes, {valid} pass the structure checks")


if __name__ == "__main__":
    cli.run(main)
