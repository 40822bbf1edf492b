"""Best of N (``folkrnn_jax.generate.rerank``) on a tiny random model: the scores are the
model's log-probabilities, the kept candidate is the best one, and n = 1 is plain sampling."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from folkrnn_jax.analysis import scoring
from folkrnn_jax.errors import InputError
from folkrnn_jax.generate import rerank, sampler
from folkrnn_jax.model.folkrnn import FolkRNN
from folkrnn_jax.music import vocab


@pytest.fixture(scope="module")
def tiny():
    model = FolkRNN(num_layers=2, hidden_size=16, dropout_rate=0.0, init_scale=1.0)
    params = model.init(jax.random.PRNGKey(3), jnp.zeros((1, 2), jnp.int32))["params"]
    return model, params


def test_closing_positions():
    tune = "<s> M:4/4 K:Cmaj |: c 8 | d 8 :| |: e 8 | f 8 | g 8 | c 8 :| </s>".split()
    closing = [tune[i] for i in rerank.closing_positions(tune)]
    # The bar before each ':|' with its bar line, and the last bar through </s>.
    assert closing == ["d", "8", ":|", "c", "8", ":|", "</s>"]
    plain = "<s> M:4/4 K:Cmaj c 8 | d 8 | e 8 |: f 8 | g 8 | </s>".split()
    assert [plain[i] for i in rerank.closing_positions(plain)] == ["e", "8", "|:", "g", "8", "|", "</s>"]


def test_token_log_probs_add_up_to_the_tune_scores(tiny):
    model, params = tiny
    tunes = ["<s> M:4/4 K:Cmaj c d e f | g 8 | </s>".split(), "<s> M:6/8 K:Cdor A B c | d 3 e 3 :| </s>".split()]
    ids = [vocab.encode(t) for t in tunes]
    per_token = rerank.token_log_probs(model, params, ids)
    assert [len(p) for p in per_token] == [len(t) - 1 for t in tunes]
    totals = scoring.score_sequences(model, params, ids)
    np.testing.assert_allclose([p.sum() for p in per_token], totals, rtol=1e-5)
    assert rerank.score_tune(tunes[0], per_token[0], "tune") == pytest.approx(per_token[0].mean())
    closing = rerank.closing_positions(tunes[1])
    assert rerank.score_tune(tunes[1], per_token[1], "cadence") == pytest.approx(per_token[1][closing - 1].mean())


def test_best_of_keeps_the_best_candidate(tiny):
    model, params = tiny
    key, options = jax.random.PRNGKey(0), dict(max_length=40, constrain=True)
    result = rerank.best_of(model, params, key, 3, 4, ranking="tune", **options)
    candidates = sampler.sample_many(model, params, key, 12, **options).tunes
    scores = [rerank.score_tune(t, lp, "tune") for t, lp in
              zip(candidates, rerank.token_log_probs(model, params, [vocab.encode(t) for t in candidates]))]
    for i in range(3):
        best = int(np.argmax(scores[4 * i: 4 * i + 4]))
        assert result.indices[i] == 4 * i + best
        assert result.tunes[i] == candidates[4 * i + best]
        assert result.scores[i] == pytest.approx(scores[4 * i + best], rel=1e-5)
    assert result.sampled == 12
    single = rerank.best_of(model, params, key, 3, 1, **options)
    assert single.tunes == candidates[:3]  # n = 1: the plain sampler's tunes
    with pytest.raises(InputError, match="best_of"):
        rerank.best_of(model, params, key, 3, 0)
    with pytest.raises(InputError, match="ranking"):
        rerank.best_of(model, params, key, 3, 2, ranking="loudest")
