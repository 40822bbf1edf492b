"""Scoring memory (issue 13 item 12): a very long tune is scored in a batch of its own, not
padded to batch_size rows at its length; scores do not depend on the batching."""

import numpy as np

from folkrnn_jax.analysis import scoring
from folkrnn_jax.data import batching
from folkrnn_jax.music import vocab


def _tune(length, offset=0):
    body = [vocab.TOKEN_TO_ID["A"] + (offset + k) % 5 for k in range(length - 2)]
    return np.asarray([vocab.START_ID, *body, vocab.END_ID], np.int32)


def test_long_tune_is_not_padded_to_batch_size(monkeypatch):
    shapes = []

    def fake(model, params, batch):
        shapes.append(batch.inputs.shape)
        return np.zeros(batch.inputs.shape[0])

    monkeypatch.setattr(scoring, "_batch_log_probs", fake)
    sequences = [_tune(40, k) for k in range(70)] + [_tune(100_000)]
    scoring.score_sequences(None, None, sequences, batch_size=64)
    cells = [rows * length for rows, length in shapes]
    # The old batching asked for 64 x padded_length(99_999) cells here.
    assert max(cells) <= max(64 * scoring.TOKENS_PER_ROW, batching.padded_length(99_999)), shapes
    assert sum(rows for rows, _ in shapes) >= len(sequences)
    assert any(rows == 1 and length >= 99_999 for rows, length in shapes), shapes


def test_scores_do_not_depend_on_the_batching():
    import jax

    from folkrnn_jax.model import folkrnn

    model = folkrnn.FolkRNN(num_layers=1, hidden_size=8)
    sequences = [_tune(n, n) for n in (5, 9, 9, 14, 30, 31, 3)]
    params = model.init(jax.random.PRNGKey(0), np.asarray([sequences[0][:-1]]))["params"]
    one_by_one = [scoring.score_sequences(model, params, [s], batch_size=1)[0] for s in sequences]
    together = scoring.score_sequences(model, params, sequences, batch_size=4)
    np.testing.assert_allclose(together, one_by_one, rtol=1e-5)
