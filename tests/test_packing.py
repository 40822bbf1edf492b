"""Packed training (issue 21): tunes laid end to end in rows, the LSTM state reset where each
starts, give every tune exactly the numbers it gets alone: per-tune losses and gradients
equal bucketed batches' (one tune per row), for both schedules, the hand-written and the
autodiff backward passes, learned initial states and gradient clipping; and the packed scans
match a float64 numpy LSTM run on each tune alone."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from folkrnn_jax.data import batching, v2_format
from folkrnn_jax.model import folkrnn, lstm
from folkrnn_jax.training import loss as loss_lib
from tests.test_wavefront import check_directional_derivatives


def _tunes(excerpt_path, count=6, longest=70):
    seqs = v2_format.encode_tunes(v2_format.read_v2_file(excerpt_path))
    # Short prefixes of real tunes (ended with </s>): small rows that still pack several.
    return [np.concatenate([s[: min(len(s) - 1, longest - 5 * k)], s[-1:]]) for k, s in enumerate(seqs[:count])]


def _per_tune_nll(model, params, batch, tune_rows):
    """Per tune, its summed NLL; ``tune_rows`` gives (row, start, length) of each tune."""
    logits = model.apply({"params": params}, batch.inputs, mask=batch.mask, resets=batch.resets)
    nll = loss_lib.token_nll(logits, batch.targets) * batch.mask  # [batch, time]
    return jnp.stack([nll[row, start:start + n].sum() for row, start, n in tune_rows])


def _layouts(tunes):
    bucketed = batching.make_batch(tunes)
    rows = [[0, 1, 2], [3, 4], [5]]
    packed = batching.make_packed_batch([[tunes[i] for i in row] for row in rows], time=256)
    packed_at, bucketed_at = [None] * len(tunes), []
    for r, row in enumerate(rows):
        start = 0
        for i in row:
            packed_at[i] = (r, start, len(tunes[i]) - 1)
            start += len(tunes[i]) - 1
    bucketed_at = [(i, 0, len(t) - 1) for i, t in enumerate(tunes)]
    return (bucketed, bucketed_at), (packed, packed_at)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(lstm_schedule="layerwise"),
        dict(lstm_schedule="wavefront", learn_initial_state=True),
        dict(lstm_schedule="layerwise", learn_initial_state=True, gate_grad_clip=1e-3, unroll=2),
        dict(lstm_schedule="layerwise", fused_backward=False, learn_initial_state=True),
    ],
)
def test_packed_equals_bucketed_per_tune(excerpt_path, kwargs):
    tunes = _tunes(excerpt_path)
    model = folkrnn.FolkRNN(num_layers=2, hidden_size=16, dropout_rate=0.0, **kwargs)
    (bucketed, b_at), (packed, p_at) = _layouts(tunes)
    assert packed.inputs.shape[0] < bucketed.inputs.shape[0]  # several tunes share rows
    params = model.init(jax.random.PRNGKey(0), bucketed.inputs)["params"]
    if kwargs.get("learn_initial_state"):  # a non-zero initial cell state too
        params = {**params, **{f"lstm_{j}_cell_init": jnp.full((16,), 0.3) for j in range(2)}}
    per_tune_b = _per_tune_nll(model, params, bucketed, b_at)
    per_tune_p = _per_tune_nll(model, params, packed, p_at)
    np.testing.assert_allclose(np.asarray(per_tune_p), np.asarray(per_tune_b), rtol=1e-5)

    grads_b = jax.grad(lambda p: _per_tune_nll(model, p, bucketed, b_at).sum())(params)
    grads_p = jax.grad(lambda p: _per_tune_nll(model, p, packed, p_at).sum())(params)
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(grads_p), jax.tree_util.tree_leaves(grads_b)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=2e-5, rtol=1e-4, err_msg=str(path))
    # The per-tune gradients too, not only their sum: tune 4 alone (second in its row).
    one_b = jax.grad(lambda p: _per_tune_nll(model, p, bucketed, b_at)[4])(params)
    one_p = jax.grad(lambda p: _per_tune_nll(model, p, packed, p_at)[4])(params)
    for a, b in zip(jax.tree_util.tree_leaves(one_p), jax.tree_util.tree_leaves(one_b)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=2e-5, rtol=1e-4)


def test_without_resets_packed_tunes_would_differ(excerpt_path):
    tunes = _tunes(excerpt_path)
    model = folkrnn.FolkRNN(num_layers=2, hidden_size=16, dropout_rate=0.0)
    (bucketed, b_at), (packed, p_at) = _layouts(tunes)
    params = model.init(jax.random.PRNGKey(0), bucketed.inputs)["params"]
    carried = _per_tune_nll(model, params, packed.replace(resets=None), p_at)
    alone = _per_tune_nll(model, params, bucketed, b_at)
    assert np.abs(np.asarray(carried) - np.asarray(alone))[[1, 2, 4]].min() > 1e-4


# ---------------------------------------------------------------------------------------------
# Against float64 numpy, each tune alone.

H, L, V = 8, 2, 137


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def numpy_alone(params, tokens, c0, h0):
    """float64 LSTM stack over one tune ``tokens`` [T] from (c0, h0) per layer [H]: the top
    layer's h [T, H]."""
    c, h = [np.float64(x) for x in c0], [np.float64(x) for x in h0]
    top = []
    for token in tokens:
        x = np.eye(V)[token]
        for j in range(L):
            z = x @ np.float64(params["w_in"][j]) + h[j] @ np.float64(params["w_hid"][j]) + np.float64(params["bias"][j])
            i, f, g, o = _sigmoid(z[:H]), _sigmoid(z[H:2 * H]), np.tanh(z[2 * H:3 * H]), _sigmoid(z[3 * H:])
            c[j] = f * c[j] + i * g
            h[j] = o * np.tanh(c[j])
            x = h[j]
        top.append(h[-1])
    return np.stack(top)


@pytest.mark.parametrize("schedule", ["layerwise", "wavefront"])
def test_packed_scans_match_numpy_tunes_alone(schedule):
    rng = np.random.RandomState(0)
    params = {
        "w_in": [rng.normal(0, 0.3, (V if j == 0 else H, 4 * H)) for j in range(L)],
        "w_hid": [rng.normal(0, 0.3, (H, 4 * H)) for j in range(L)],
        "bias": [rng.normal(0, 0.3, (4 * H,)) for j in range(L)],
    }
    c0 = [rng.normal(0, 0.5, H) for _ in range(L)]
    h0 = [rng.normal(0, 0.5, H) for _ in range(L)]
    lengths = [[4, 3, 5], [7, 2], [6]]  # rows of tunes; time 12 with padding at the ends
    T, B = 12, len(lengths)
    tokens, resets, mask = np.zeros((T, B), np.int64), np.zeros((T, B)), np.zeros((T, B))
    tunes = []
    for b, row in enumerate(lengths):
        t = 0
        for n in row:
            seq = rng.randint(0, V, n)
            tokens[t:t + n, b], resets[t, b], mask[t:t + n, b] = seq, 1.0, 1.0
            tunes.append((b, t, seq))
            t += n
    weights = rng.normal(size=(T, B, H)) * mask[..., None]

    def objective_numpy(p, c0_, h0_):
        return sum(float(np.sum(numpy_alone(p, seq, c0_, h0_) * weights[t:t + len(seq), b]))
                   for b, t, seq in tunes)

    def objective_jax(p, c0_, h0_):
        layers = [lstm.LSTMParams(*(jnp.asarray(p[k][j], jnp.float32) for k in ("w_in", "w_hid", "bias")))
                  for j in range(L)]
        carry = tuple((jnp.broadcast_to(c0_[j], (B, H)), jnp.broadcast_to(h0_[j], (B, H))) for j in range(L))
        x_proj = jnp.take(layers[0].w_in, jnp.asarray(tokens), axis=0) + layers[0].bias
        m, r = jnp.asarray(mask, jnp.float32), jnp.asarray(resets, jnp.float32)
        if schedule == "wavefront":
            _, top = lstm.wavefront_scan(layers, x_proj, carry, m, resets=r)
        else:
            xs = None
            for j, layer in enumerate(layers):
                xp = x_proj if j == 0 else lstm.matmul(xs, layer.w_in, jnp.float32) + layer.bias
                _, xs = lstm.lstm_scan(layer.w_hid, xp, carry[j], m, resets=r)
            top = xs
        return jnp.sum(top * weights), top

    args = (jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float32), params),
            [jnp.asarray(x, jnp.float32) for x in c0], [jnp.asarray(x, jnp.float32) for x in h0])
    (value, top), grads = jax.jit(jax.value_and_grad(objective_jax, argnums=(0, 1, 2), has_aux=True))(*args)
    for b, t, seq in tunes:
        np.testing.assert_allclose(np.asarray(top)[t:t + len(seq), b], numpy_alone(params, seq, c0, h0), atol=1e-5)
    # Directional derivatives (weights and initial states) against central differences.
    check_directional_derivatives(lambda point: objective_numpy(*point), (params, c0, h0), grads, rtol=1e-4)
