"""Sample new tunes from a trained run as ABC, MIDI or SVG.

python -m experiments.sample --workdir=runs/tiny --num_tunes=10 --temperature=1.0 --seed=0 \
    --prefix="M:6/8 K:Cdor" --output=runs/tiny/tunes.abc
python -m experiments.sample --workdir=runs/tiny --meter=6/8 --mode=dor --key=D --top_p=0.95 \
    --valid_only --format=midi --output=runs/tiny/midi
python -m experiments.sample --best_of=4 --num_tunes=10   # each tune the best of 4

Tunes are well formed by default (structure-constrained sampling); --noconstrain samples freely
from the model. The sampling flags, their defaults and ranges are those of
folkrnn_jax.generate.options.SamplingSettings, as in experiments.book and the composer.
"""

import os
import sys
import time

import jax
from absl import flags, logging

from experiments import cli
from folkrnn_jax.errors import InputError
from folkrnn_jax.generate import prefix as prefix_lib
from folkrnn_jax.generate import rerank, sampler
from folkrnn_jax.music import output as output_lib
from folkrnn_jax.music import structure, tools, transpose
from folkrnn_jax.training import runs

FLAGS = flags.FLAGS
flags.DEFINE_string(
    "workdir", None, "Run directory or model folder (default: the shipped model, models/default)."
)
flags.DEFINE_integer("num_tunes", 10, "How many tunes to sample (in chunks of --chunk_size).", lower_bound=1)
cli.define_sampling_flags()
cli.define_tokens("mask_tokens", [], "v2 tokens never to emit, separated by spaces, e.g. "
                  "--mask_tokens='B, =A, |:' (the tokens below C hold a comma); the old comma "
                  "form '|:,:|' is read where it is unambiguous.")
flags.DEFINE_bool("valid_only", False, "Keep sampling until --num_tunes tunes pass the structure checks.")
flags.DEFINE_enum("matmul_dtype", None, ["float32", "bfloat16"], "Matmul precision for sampling (default: "
                  "the run's). bfloat16 keeps float32 state and accumulation; faster on CPUs with "
                  "avx512_bf16 (measurements: benchmarks/RESULTS.md).")
flags.DEFINE_integer("best_of", 1, "Draw this many candidates per tune and keep the one the model itself "
                     "scores highest (--ranking); costs about N times the sampling, and a scoring pass.")
flags.DEFINE_enum("ranking", "tune", list(rerank.RANKINGS), "What --best_of ranks by: the mean "
                  "log-probability per token of the whole tune (tune) or of its closing bars, the last "
                  "bar of each part with its closing bar line (cadence).")
flags.DEFINE_integer("chunk_size", 256, "Tunes sampled together in one batch.")
flags.DEFINE_bool("stream", False, "Print the tokens as they are sampled (one line per step: "
                  "'TUNE:TOKEN' for every tune still running); all tunes in one batch.")
flags.DEFINE_enum("format", "abc", list(output_lib.FORMATS), "abc: one file; midi: tune_001.mid ... in "
                  "a folder (abc2midi, or mido when abc2midi is missing); svg: tune_001.svg ... "
                  "(abcm2ps) in a folder; musicxml: tune_001.musicxml ... (music21, for MuseScore, "
                  "Finale, Sibelius) in a folder; each with the tune's ABC beside it (tune_001.abc).")
flags.DEFINE_string("output", None, "File (abc) or folder (midi, svg, musicxml) to write (default: "
                    "WORKDIR/samples.abc, WORKDIR/samples_midi, WORKDIR/samples_svg, WORKDIR/samples_musicxml).")


def main(argv):
    del argv
    settings = cli.sampling_settings()
    # An ABC prefix typed in D comes back in D: its K: is the default key of the output.
    key = settings.key if settings.key is not None else prefix_lib.prefix_key(settings.prefix)
    if key is not None:
        transpose.parse_root(key)  # a bad --key fails before sampling
    if FLAGS.format == "svg":
        tools.require("abcm2ps")  # so does a missing abcm2ps
    model, params, step = runs.load_run(FLAGS.workdir)
    if FLAGS.matmul_dtype:
        model = model.clone(matmul_dtype=FLAGS.matmul_dtype)

    started = time.time()

    def progress(kept, sampled):
        if FLAGS.num_tunes > FLAGS.chunk_size or FLAGS.valid_only:
            seconds = time.time() - started
            done = kept / FLAGS.num_tunes
            bar = "#" * int(30 * done) + "." * (30 - int(30 * done))
            eta = f", about {seconds * (1 - done) / done:.0f} s left" if 0 < done < 1 else ""
            print(f"[{bar}] drawn {sampled} tunes, kept {kept} of {FLAGS.num_tunes} "
                  f"({sampled / max(seconds, 1e-9):.0f} tunes/s{eta})", file=sys.stderr, flush=True)

    if FLAGS.stream:
        if FLAGS.valid_only or FLAGS.best_of > 1:
            raise InputError("--stream cannot be combined with --valid_only or --best_of")
        many = sampler.stream_many(
            model, params, jax.random.PRNGKey(settings.seed), FLAGS.num_tunes,
            on_step=lambda line: print(line, flush=True), token_mask=FLAGS.mask_tokens,
            **settings.sampler_arguments(),
        )
    elif FLAGS.best_of > 1:
        many = rerank.best_of(
            model, params, jax.random.PRNGKey(settings.seed), FLAGS.num_tunes, FLAGS.best_of,
            ranking=FLAGS.ranking, chunk_size=FLAGS.chunk_size, valid_only=FLAGS.valid_only,
            progress=lambda kept, sampled: progress(kept // FLAGS.best_of, sampled), token_mask=FLAGS.mask_tokens,
            **settings.sampler_arguments(),
        )
        print(f"best of {FLAGS.best_of} by {FLAGS.ranking}: {many.sampled} candidates sampled in "
              f"{many.sampling_seconds:.1f} s, scored in {many.scoring_seconds:.1f} s "
              f"({FLAGS.best_of}x the candidates of plain sampling)", flush=True)
    else:
        many = sampler.sample_many(
            model, params, jax.random.PRNGKey(settings.seed), FLAGS.num_tunes, chunk_size=FLAGS.chunk_size,
            valid_only=FLAGS.valid_only, progress=progress, token_mask=FLAGS.mask_tokens,
            **settings.sampler_arguments(),
        )
    # T: says how each tune was drawn, so free, constrained and transposed tunes tell apart.
    titles = [output_lib.tune_title(step, settings.seed, i + 1, settings.constrain, key, FLAGS.best_of)
              for i in many.indices]
    default = "samples.abc" if FLAGS.format == "abc" else f"samples_{FLAGS.format}"
    # The shipped model's folder is not a place for samples: they go to the current folder.
    output = FLAGS.output or (os.path.join(FLAGS.workdir, default) if FLAGS.workdir else default)
    cli.note_new_folder(output if FLAGS.format != "abc" else os.path.dirname(os.path.abspath(output)))
    written = output_lib.write_tunes(many.tunes, titles, output, FLAGS.format, key=key)
    passing = sum(structure.is_valid_tune(t) for t in many.tunes)
    kept = len(many.tunes)
    print(f"kept {kept} of {many.sampled} tunes drawn" + (" (only those passing the structure checks)"
          if FLAGS.valid_only else "") + f"; {passing} of {kept} ({100.0 * passing / max(1, kept):.1f}%) pass the "
          f"structure checks; {many.truncated} of {kept} reached --max_length", flush=True)
    logging.info("wrote %d tunes to %s%s", kept, output, "" if FLAGS.format == "abc" else f" ({written} files)")


if __name__ == "__main__":
    cli.run(main)
