"""The optimised LSTM (hoisted projections, fused gates, hand-written backward) computes the
same numbers as straightforward code."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import train_bench
from folkrnn_jax.model import folkrnn
from folkrnn_jax.training import loss as loss_lib


def _batch(batch_size=4, seq_len=12, seed=0):
    return jax.device_put(train_bench.synthetic_batch(batch_size, seq_len, seed))


@pytest.mark.parametrize("unroll,schedule", [(1, "layerwise"), (3, "layerwise"), (1, "wavefront")])
def test_optimised_step_matches_reference_step(unroll, schedule):
    config = train_bench.bench_config(hidden_size=32, num_layers=2, batch_size=4, unroll=unroll, lstm_schedule=schedule)
    batches = [_batch(seed=s) for s in range(2)]
    diff = train_bench.compare_with_reference(config, batches, steps=4)
    assert diff < 1e-5


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(),
        dict(gate_grad_clip=1e-4),
        dict(learn_initial_state=True, unroll=2),
        dict(unit_mask=True, gate_grad_clip=2e-4),
    ],
)
def test_fused_backward_matches_autodiff(kwargs):
    kwargs = dict(kwargs)
    use_unit_mask = kwargs.pop("unit_mask", False)
    common = dict(num_layers=2, hidden_size=16, dropout_rate=0.0, **kwargs)
    fused = folkrnn.FolkRNN(fused_backward=True, **common)
    plain = folkrnn.FolkRNN(fused_backward=False, **common)
    batch = _batch(seq_len=10, seed=3)
    params = fused.init(jax.random.PRNGKey(1), batch.inputs)["params"]
    unit_mask = None
    if use_unit_mask:
        unit_mask = jnp.asarray(np.random.RandomState(0).rand(2, 16) > 0.3, jnp.float32)

    def loss(m, p):
        logits = m.apply({"params": p}, batch.inputs, mask=batch.mask, unit_mask=unit_mask)
        return loss_lib.sequence_loss(logits, batch.targets, batch.mask, batch.lengths)

    lf, gf = jax.value_and_grad(lambda p: loss(fused, p))(params)
    lp, gp = jax.value_and_grad(lambda p: loss(plain, p))(params)
    assert abs(float(lf) - float(lp)) < 1e-6
    for a, b in zip(jax.tree_util.tree_leaves(gf), jax.tree_util.tree_leaves(gp)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6, rtol=1e-5)
    if kwargs.get("gate_grad_clip"):
        # The clip binds at this bound: without it the gradients differ.
        free = folkrnn.FolkRNN(fused_backward=True, **{**common, "gate_grad_clip": 0.0})
        g_free = jax.grad(lambda p: loss(free, p))(params)
        assert any(
            not np.allclose(a, b, atol=1e-6)
            for a, b in zip(jax.tree_util.tree_leaves(g_free), jax.tree_util.tree_leaves(gf))
        )


def test_remat_matches():
    common = dict(num_layers=2, hidden_size=16, dropout_rate=0.0)
    batch = _batch(seq_len=10, seed=4)
    a = folkrnn.FolkRNN(remat=True, **common)
    b = folkrnn.FolkRNN(**common)
    params = a.init(jax.random.PRNGKey(2), batch.inputs)["params"]

    def loss(m, p):
        logits = m.apply({"params": p}, batch.inputs, mask=batch.mask)
        return loss_lib.sequence_loss(logits, batch.targets, batch.mask, batch.lengths)

    ga = jax.grad(lambda p: loss(a, p))(params)
    gb = jax.grad(lambda p: loss(b, p))(params)
    for x, y in zip(jax.tree_util.tree_leaves(ga), jax.tree_util.tree_leaves(gb)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=1e-6, rtol=1e-5)


def test_fast_dropout_keeps_half_and_scales():
    m = folkrnn.FolkRNN(num_layers=1, hidden_size=64, dropout_rate=0.5)
    x = jnp.ones((200, 16, 64))
    params = m.init(jax.random.PRNGKey(0), jnp.zeros((1, 2), jnp.int32))
    y = m.apply(params, x, True, method=lambda mod, x, t: mod._dropout(x, t), rngs={"dropout": jax.random.PRNGKey(3)})
    y = np.asarray(y)
    assert set(np.unique(y)) <= {0.0, 2.0}
    assert abs((y > 0).mean() - 0.5) < 0.02
    # Units are not correlated along the hidden axis (each bit of a word is used once).
    assert abs(np.corrcoef((y[:, :, :32] > 0).reshape(-1, 32).T)[np.triu_indices(32, 1)]).max() < 0.1
