"""The original's training recipe as it ran (experiments/configs/v2_as_trained.py): per-gate
gradient clipping, learned initial states, Lasagne's RMSprop, constant rate, per-tune loss."""

import json
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import v2, v2_as_trained
from folkrnn_jax.data import batching, v2_format
from folkrnn_jax.model import folkrnn
from folkrnn_jax.training import loss as loss_lib
from folkrnn_jax.training import metrics as metrics_lib
from folkrnn_jax.training import state as state_lib
from folkrnn_jax.training import steps as steps_lib
from tests.conftest import ROOT

H = 8


# ---------------------------------------------------------------------------------------------
# An independent reference: a straightforward LSTM, input projection inside the time loop,
# per-gate clipping through its own custom_vjp.


def _ref_clip(bound):
    @jax.custom_vjp
    def clip(x):
        return x

    clip.defvjp(lambda x: (x, None), lambda _, g: (jnp.clip(g, -bound, bound),))
    return clip


def reference_loss(params, inputs, targets, mask, lengths, num_layers, clip_bound=0.0):
    x = jax.nn.one_hot(inputs, 137)  # [batch, time, vocab]
    clip = _ref_clip(clip_bound) if clip_bound else (lambda z: z)
    for j in range(num_layers):
        w_in, w_hid, b = (params[f"lstm_{j}_{n}"] for n in ("w_in", "w_hid", "bias"))
        c = jnp.broadcast_to(params[f"lstm_{j}_cell_init"], (x.shape[0], H))
        h = jnp.broadcast_to(params[f"lstm_{j}_hid_init"], (x.shape[0], H))
        outs = []
        for t in range(x.shape[1]):
            z = clip(x[:, t] @ w_in + h @ w_hid + b)
            i, f = jax.nn.sigmoid(z[:, :H]), jax.nn.sigmoid(z[:, H : 2 * H])
            g, o = jnp.tanh(z[:, 2 * H : 3 * H]), jax.nn.sigmoid(z[:, 3 * H :])
            c_new = f * c + i * g
            h_new = o * jnp.tanh(c_new)
            keep = mask[:, t : t + 1] > 0
            c, h = jnp.where(keep, c_new, c), jnp.where(keep, h_new, h)
            outs.append(h)
        x = jnp.stack(outs, axis=1)
    logits = x @ params["output"]["kernel"] + params["output"]["bias"]
    logp = jax.nn.log_softmax(logits)
    nll = -jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0] * mask
    return jnp.mean(nll.sum(axis=1) / lengths)  # the original's per-tune normalisation


def small_setup(excerpt_path, clip, num_layers=2, scale=0.1, lengths=(14, 9, 17)):
    model = folkrnn.FolkRNN(
        num_layers=num_layers, hidden_size=H, dropout_rate=0.0, learn_initial_state=True,
        gate_grad_clip=clip, init_scale=scale,
    )
    seqs = v2_format.encode_tunes(v2_format.read_v2_file(excerpt_path))[: len(lengths)]
    batch = batching.make_batch([s[:n] for s, n in zip(seqs, lengths)])
    params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 2), jnp.int32))["params"]
    # Non-zero initial cells, as in a trained checkpoint.
    params = dict(params)
    for j in range(num_layers):
        params[f"lstm_{j}_cell_init"] = 0.5 * jax.random.normal(jax.random.PRNGKey(j + 7), (H,))
    return model, params, batch


def model_loss(model, params, batch, scale=1.0):
    logits = model.apply({"params": params}, batch.inputs, train=False, mask=batch.mask)
    return scale * loss_lib.sequence_loss(logits, batch.targets, batch.mask, batch.lengths, "tune")


def assert_trees_close(a, b, atol=1e-5, rtol=1e-4):
    flat_a, flat_b = jax.tree_util.tree_leaves_with_path(a), jax.tree_util.tree_leaves(b)
    assert len(flat_a) == len(flat_b)
    for (path, x), y in zip(flat_a, flat_b):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=atol, rtol=rtol, err_msg=str(path))


# The default suite keeps the case with clipping and a large loss scale; the others run with -m slow.
@pytest.mark.parametrize("clip,scale,loss_scale", [pytest.param(0.0, 0.1, 1.0, marks=pytest.mark.slow),
                                                   pytest.param(5.0, 0.1, 1.0, marks=pytest.mark.slow),
                                                   (5.0, 1.0, 3000.0)])
def test_gradients_equal_independent_lstm(excerpt_path, clip, scale, loss_scale):
    """Plain autodiff of the straightforward LSTM; the last case has clipping active."""
    model, params, batch = small_setup(excerpt_path, clip, scale=scale)
    args = (batch.inputs, batch.targets, batch.mask, batch.lengths.astype(np.float32))
    ours = jax.grad(lambda p: model_loss(model, p, batch, loss_scale))(params)
    ref = jax.grad(lambda p: loss_scale * reference_loss(p, *args, num_layers=2, clip_bound=clip))(params)
    assert_trees_close(ours, ref)
    # And the same through the plain autodiff scan (remat path, clip_gradient inside the cell).
    remat = model.clone(remat=True)
    assert_trees_close(jax.grad(lambda p: model_loss(remat, p, batch, loss_scale))(params), ref)
    if clip and loss_scale > 1:  # clipping really acted: the unclipped gradients differ
        plain = jax.grad(lambda p: loss_scale * reference_loss(p, *args, num_layers=2))(params)
        assert np.abs(np.asarray(plain["lstm_1_w_hid"]) - np.asarray(ref["lstm_1_w_hid"])).max() > 0.1


def test_gate_gradient_clipping_bounds_every_cotangent(excerpt_path):
    """With one token in one tune, each layer's bias gradient is that step's gate
    pre-activation cotangent; big weights and a scaled loss make it exceed 5 unclipped."""
    grads = {}
    for clip in (0.0, 5.0):
        model, params, batch = small_setup(excerpt_path, clip, num_layers=3, scale=2.0, lengths=(2,))
        grads[clip] = jax.grad(lambda p, model=model, batch=batch: model_loss(model, p, batch, scale=1000.0))(params)
    for j in range(3):
        unclipped = np.abs(np.asarray(grads[0.0][f"lstm_{j}_bias"]))
        clipped = np.abs(np.asarray(grads[5.0][f"lstm_{j}_bias"]))
        assert unclipped.max() > 5.0, (j, unclipped.max())
        assert clipped.max() <= 5.0 + 1e-6, (j, clipped.max())
    # Layer 2 (the last) sees the loss directly: clipping there is plain elementwise clipping.
    np.testing.assert_allclose(
        np.asarray(grads[5.0]["lstm_2_bias"]), np.clip(np.asarray(grads[0.0]["lstm_2_bias"]), -5, 5), rtol=1e-5
    )


@pytest.mark.parametrize("fused", [True, False])
def test_lstm_scan_clips_each_step(fused):
    """d loss / d x_proj[t] is the cotangent of z[t] (z = x_proj + h @ W_hid) at every step."""
    rng = np.random.RandomState(0)
    T, B = 6, 2
    w_hid = jnp.asarray(2.0 * rng.randn(H, 4 * H), jnp.float32)
    x_proj = jnp.asarray(2.0 * rng.randn(T, B, 4 * H), jnp.float32)
    carry = (jnp.zeros((B, H)), jnp.zeros((B, H)))
    weights = jnp.asarray(50.0 * rng.randn(T, B, H), jnp.float32)

    def loss(xp, clip):
        options = folkrnn.ScanOptions(gate_grad_clip=clip, fused_backward=fused)
        _, hs = folkrnn.lstm_scan(w_hid, xp, carry, options=options)
        return (hs * weights).sum()

    dz_plain = np.abs(np.asarray(jax.grad(loss)(x_proj, 0.0)))
    dz_clipped = np.abs(np.asarray(jax.grad(loss)(x_proj, 5.0)))
    assert (dz_plain > 5.0).any(axis=(1, 2)).sum() >= T // 2  # many steps exceed the bound...
    assert dz_clipped.max() <= 5.0 + 1e-6  # ...and none does when clipped
    assert np.isclose(dz_clipped.max(), 5.0)


def test_initial_states_are_learned(excerpt_path):
    config = v2_as_trained.get_config()
    config.num_layers, config.hidden_size, config.batch_size = 2, H, 4
    model, state = state_lib.create_train_state(config, jax.random.PRNGKey(0), steps_per_epoch=10)
    names = [f"lstm_{j}_{k}" for j in range(2) for k in ("cell_init", "hid_init")]
    before = {n: np.asarray(state.params[n]).copy() for n in names}
    assert not before["lstm_0_cell_init"].any() and np.isclose(np.linalg.norm(before["lstm_0_hid_init"]), 1.0)
    seqs = v2_format.encode_tunes(v2_format.read_v2_file(excerpt_path))[:4]
    batch = batching.make_batch(seqs)
    grads = jax.grad(
        lambda p: loss_lib.sequence_loss(
            model.apply({"params": p}, batch.inputs, train=False, mask=batch.mask),
            batch.targets, batch.mask, batch.lengths, "tune",
        )
    )(state.params)
    for n in names:
        assert np.abs(np.asarray(grads[n])).max() > 0, n
    step = steps_lib.make_train_step(model, config.loss_normalization)
    state, _ = step(state, batch, jax.random.PRNGKey(1))
    for n in names:
        assert not np.array_equal(np.asarray(state.params[n]), before[n]), n


def test_rmsprop_is_lasagnes():
    """One update: p - 0.003 * g / sqrt(0.9 * 0 + 0.1 * g^2 + 1e-6) (epsilon inside the root)."""
    config = v2_as_trained.get_config()
    tx = state_lib.make_optimizer(config, steps_per_epoch=10)
    params = {"w": jnp.asarray([1.0, -2.0, 0.5])}
    g = {"w": jnp.asarray([0.3, -0.001, 2.0])}
    updates, _ = tx.update(g, tx.init(params), params)
    expected = -0.003 * g["w"] / jnp.sqrt(0.1 * g["w"] ** 2 + 1e-6)
    np.testing.assert_allclose(np.asarray(updates["w"]), np.asarray(expected), rtol=1e-6)


def test_presets_differ_only_in_the_quirks():
    as_ran, configured = v2_as_trained.get_config(), v2.get_config()
    assert (as_ran.batch_size, configured.batch_size) == (50, 64)
    assert as_ran.lr_decay == 1.0 and configured.lr_decay == 0.97
    assert (as_ran.gate_grad_clip, as_ran.grad_clip_norm) == (5.0, 0.0)
    assert (configured.gate_grad_clip, configured.grad_clip_norm) == (0.0, 5.0)
    assert as_ran.loss_normalization == "tune" and configured.loss_normalization == "token"
    assert as_ran.learn_initial_state and not configured.learn_initial_state
    assert not as_ran.eval_dropout
    assert (as_ran.rmsprop_decay, as_ran.rmsprop_eps, as_ran.init_scale) == (0.9, 1e-6, 0.1)
    assert set(as_ran.keys()) == set(configured.keys())
    # The rate stays 0.003 at epoch 60 as it ran; as configured it has decayed by then.
    assert state_lib.learning_rate_schedule(as_ran, 10)(600) == pytest.approx(0.003)
    assert state_lib.learning_rate_schedule(configured, 10)(600) == pytest.approx(0.003 * 0.97**40, rel=1e-5)


def _launch(config_file, workdir, data_path, steps, *extra):
    args = [
        sys.executable, "-m", "experiments.train", f"--config={config_file}", f"--workdir={workdir}",
        f"--config.data_path={data_path}", f"--config.num_train_steps={steps}", *extra,
    ]
    return subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow  # 40 s on 2 cores; test_presets_differ_only_in_the_quirks keeps the configs honest
def test_both_presets_train_from_the_launcher(tmp_path, excerpt_path):
    small = ["--config.hidden_size=16", "--config.num_layers=1", "--config.batch_size=4",
             "--config.log_every_steps=2"]
    procs = {
        name: _launch(f"experiments/configs/{name}.py", tmp_path / name, excerpt_path, 4, *small)
        for name in ("v2", "v2_as_trained")
    }
    for name, proc in procs.items():
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, (name, err[-3000:])
    cfg = json.load(open(tmp_path / "v2_as_trained" / "config.json"))
    assert (cfg["gate_grad_clip"], cfg["grad_clip_norm"], cfg["loss_normalization"]) == (5.0, 0.0, "tune")
    assert cfg["learn_initial_state"] and cfg["hidden_size"] == 16
    cfg = json.load(open(tmp_path / "v2" / "config.json"))
    assert (cfg["gate_grad_clip"], cfg["grad_clip_norm"], cfg["learn_initial_state"]) == (0.0, 5.0, False)
    for name in procs:
        records = metrics_lib.read_metrics(str(tmp_path / name))
        assert records[-1]["step"] == 4 and "valid_loss" in records[-1]
        rates = [r["learning_rate"] for r in records if "learning_rate" in r]
        assert rates and all(r == pytest.approx(0.003) for r in rates)


@pytest.mark.slow
def test_v2_as_trained_learns_on_the_default_corpus(tmp_path):
    corpus = os.path.join(ROOT, "data", "folk_corpus.txt")
    if not os.path.exists(corpus):
        pytest.skip("data/folk_corpus.txt is not present")
    proc = _launch(
        "experiments/configs/v2_as_trained.py", tmp_path / "run", corpus, 300,
        "--config.hidden_size=64", "--config.num_layers=2", "--config.eval_every_steps=100",
        "--config.max_tune_length=500",
    )
    _, err = proc.communicate(timeout=3000)
    assert proc.returncode == 0, err[-3000:]
    records = metrics_lib.read_metrics(str(tmp_path / "run"))
    evals = [r["valid_loss"] for r in records if "valid_loss" in r]
    assert len(evals) >= 2 and evals[-1] < evals[0] < math.log(137)
    assert all(r["learning_rate"] == pytest.approx(0.003) for r in records if "learning_rate" in r)
