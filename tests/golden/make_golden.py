"""Golden outputs: what sampling, the raw-ABC converter, the ABC/MIDI writers, the structure
checks, the corpus statistics and a short training run give today, stored as files so that a
refactoring can show it changed none of them.

Run ``python -m tests.golden.make_golden`` to rewrite the files (only when a behaviour change
is intended); ``tests/test_golden.py`` recomputes everything and compares.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import tempfile

import jax

from folkrnn_jax.analysis import statistics
from folkrnn_jax.data import v2_format
from folkrnn_jax.generate import sampler
from folkrnn_jax.model import folkrnn
from folkrnn_jax.music import abc_in, abc_out, midi, structure
from folkrnn_jax.training import loop, metrics
from tests.conftest import FIXTURES, fixture_config

GOLDEN = os.path.dirname(os.path.abspath(__file__))
EXCERPT = os.path.join(FIXTURES, "data_v2_excerpt.txt")
TRAIN_STEPS = 10


def golden_path(name: str) -> str:
    return os.path.join(GOLDEN, name)


def training_config():
    """A tiny model (2 x 32) on the fixture tunes: batch 4, logged every step, crossing epochs."""
    return fixture_config(
        EXCERPT, num_train_steps=TRAIN_STEPS, hidden_size=32, log_every_steps=1,
        eval_every_steps=5, checkpoint_every_steps=100, batching="bucketed",  # as when recorded
    )


def training_run(workdir: str) -> tuple[dict, object]:
    """Per-step training losses and validation losses of the short run, and its final params."""
    config = training_config()
    state = loop.train_and_evaluate(config, workdir)
    records = metrics.read_metrics(workdir)
    losses = {
        "train_loss": [r["train_loss"] for r in records if "train_loss" in r],
        "learning_rate": [r["learning_rate"] for r in records if "learning_rate" in r],
        "valid": [[r["step"], r["valid_loss"], r["valid_loss_per_tune"]] for r in records if "valid_loss" in r],
    }
    return losses, jax.device_get(state.params)


def sampling_outputs(params) -> dict:
    """Token ids of several sampling set-ups with fixed seeds, from the trained tiny model
    (free sampling named as such: the library's default became constrained after these were
    written)."""
    model = folkrnn.model_from_config(training_config())
    key = jax.random.PRNGKey(7)
    out = {}
    plain = sampler.sample_tunes(model, params, key, 6, max_length=120, constrain=False)
    out["plain"] = plain.ids.tolist()
    out["plain_lengths"] = plain.lengths.tolist()
    out["plain_steps"] = plain.steps
    options = dict(prefix="M:6/8 K:Cdor", temperature=0.8, top_k=20, top_p=0.9, token_mask=["(3"], constrain=False)
    out["options"] = sampler.sample_tunes(model, params, key, 4, max_length=100, **options).ids.tolist()
    out["refill"] = sampler.sample_tunes(model, params, key, 5, max_length=80, slots=2, constrain=False).ids.tolist()
    out["constrained"] = sampler.sample_tunes(model, params, key, 4, max_length=150, constrain=True).ids.tolist()
    out["prefixes"] = sampler.sample_tunes(
        model, params, key, 2, max_length=60, prefixes=["M:4/4 K:Cmaj | * * c", "M:3/4 K:Cmin"], constrain=False
    ).ids.tolist()
    out["stream"] = [ids.tolist() for ids in sampler.sample_stream(model, params, key, 3, max_length=40, constrain=False)]
    out["abc"] = [abc_out.tokens_to_abc(plain.tokens(i), index=i + 1) for i in range(len(plain.ids))]
    out["abc_in_D"] = [abc_out.tokens_to_abc(plain.tokens(i), key="D") for i in range(len(plain.ids))]
    return out


def converter_output() -> str:
    """Every fixture tune of ``tests/fixtures/raw_abc`` converted to v2 (or why it was left
    out), one block per tune."""
    blocks = []
    for path in sorted(glob.glob(os.path.join(FIXTURES, "raw_abc", "*.abc"))):
        with open(path, encoding="utf-8") as f:
            text = f.read()
        chunks = text.split("\nX:")
        for number, chunk in enumerate(chunks):
            tune = chunk if number == 0 else "X:" + chunk
            if not tune.strip().startswith("X:"):
                continue
            result = abc_in.convert_tune(tune, f"{os.path.basename(path)}#{number}")
            if result.ok:
                body = " ".join(result.tokens)
                blocks.append(f"{result.where} respelled={result.respelled}\n{body}\n")
            else:
                blocks.append(f"{result.where} LEFT OUT {result.reason}: {result.detail}\n")
    return "\n".join(blocks)


def music_outputs() -> dict:
    """Host-side music code on the fixture tunes: ABC text, MIDI bytes (hashed), structure
    checks, bar lengths and the corpus statistics."""
    tunes = v2_format.read_v2_file(EXCERPT)
    return {
        "abc": [abc_out.tokens_to_abc(t, index=i + 1) for i, t in enumerate(tunes)],
        "abc_in_Bb": [abc_out.tokens_to_abc(t, key="Bb") for t in tunes],
        "midi_sha256": [hashlib.sha256(midi.tokens_to_midi(t)).hexdigest() for t in tunes],
        "midi_in_F#_sha256": [hashlib.sha256(midi.tokens_to_midi(t, key="F#")).hexdigest() for t in tunes],
        "problems": [structure.tune_problems(t) for t in tunes],
        "bar_durations": [[str(d) for d in structure.bar_durations(t)] for t in tunes],
        "part_structure": [str(structure.part_structure(t)) for t in tunes],
        "statistics": statistics.corpus_statistics(tunes),
    }


def main() -> None:
    with tempfile.TemporaryDirectory() as workdir:
        losses, params = training_run(workdir)
    with open(golden_path("training.json"), "w") as f:
        json.dump(losses, f, indent=1)
    with open(golden_path("sampling.json"), "w") as f:
        json.dump(sampling_outputs(params), f, indent=1)
    with open(golden_path("converter.txt"), "w", encoding="utf-8") as f:
        f.write(converter_output())
    with open(golden_path("music.json"), "w") as f:
        json.dump(music_outputs(), f, indent=1, default=str)


if __name__ == "__main__":
    main()
