"""Beam search against brute-force enumeration on a tiny random model."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from folkrnn_jax.generate import beam as beam_lib
from folkrnn_jax.model.folkrnn import FolkRNN
from folkrnn_jax.music import vocab

ALLOWED = ["c", "d", "|", "2", "</s>"]
MASK = [t for t in vocab.TOKENS if t not in ALLOWED]
PREFIX = ["<s>", "M:4/4", "K:Cmaj", "c"]


@pytest.fixture(scope="module")
def tiny():
    model = FolkRNN(num_layers=2, hidden_size=16, dropout_rate=0.0, init_scale=1.0)
    params = model.init(jax.random.PRNGKey(3), jnp.zeros((1, 2), jnp.int32))["params"]
    return model, params


def _brute_force(model, params, depth):
    """Every continuation over ALLOWED (stopping at </s>) with its log-probability."""
    bias = np.zeros(vocab.VOCAB_SIZE, np.float32)
    bias[vocab.encode(MASK)] = -np.inf
    seen = {}
    for combo in itertools.product(ALLOWED, repeat=depth):
        combo = list(combo)
        if "</s>" in combo:
            combo = combo[: combo.index("</s>") + 1]
        seen[tuple(combo)] = None
    combos = [list(c) for c in seen]
    rows = [PREFIX + c + ["</s>"] * (depth - len(c)) for c in combos]
    ids = np.stack([vocab.encode(r) for r in rows])  # one batch, padded after </s>
    logits = model.apply({"params": params}, jnp.asarray(ids)) + bias
    logp = np.asarray(jax.nn.log_softmax(logits, axis=-1))
    results = []
    for n, combo in enumerate(combos):
        positions = np.arange(len(PREFIX) - 1, len(PREFIX) - 1 + len(combo))
        results.append((float(np.sum(logp[n, positions, ids[n, positions + 1]])), list(combo)))
    results.sort(key=lambda r: -r[0])
    return results


@pytest.mark.parametrize("depth", [2, 3])
def test_exhaustive_beam_equals_brute_force(tiny, depth):
    model, params = tiny
    width = len(ALLOWED) ** (depth - 1)  # wide enough to keep every partial continuation
    brute = _brute_force(model, params, depth)
    result = beam_lib.beam_search(model, params, PREFIX, width=width, depth=depth, token_mask=MASK)
    assert len(result.continuations) == width
    assert result.continuations == [c for _, c in brute[:width]]
    np.testing.assert_allclose(result.log_probs, [s for s, _ in brute[:width]], rtol=1e-5, atol=1e-5)
    assert np.all(np.diff(result.log_probs) <= 0)


def test_narrow_beam_is_valid_and_no_better_than_best(tiny):
    model, params = tiny
    brute = _brute_force(model, params, 3)
    scores = dict((tuple(c), s) for s, c in brute)
    result = beam_lib.beam_search(model, params, PREFIX, width=2, depth=3, token_mask=MASK)
    assert len(result.continuations) == 2
    for cont, logp in zip(result.continuations, result.log_probs):
        assert logp == pytest.approx(scores[tuple(cont)], abs=1e-5)
        assert logp <= brute[0][0] + 1e-6
    full = beam_lib.beam_search(model, params, "M:4/4", width=4, depth=5)  # whole vocabulary
    assert len(full.continuations) == 4 and np.all(np.isfinite(full.log_probs))
