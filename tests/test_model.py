"""FolkRNN against an independent numpy implementation of the blog's equations."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from experiments.configs import v2
from folkrnn_jax.model import folkrnn
from folkrnn_jax.model.folkrnn import FolkRNN, count_params
from folkrnn_jax.music import vocab


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def blog_forward(params, tokens, num_layers, hidden):
    """The blog's column-vector equations, one token at a time, per-gate matrices."""
    H = hidden
    gates = {}
    for j in range(num_layers):
        w_in = np.asarray(params[f"lstm_{j}_w_in"], np.float64)
        w_hid = np.asarray(params[f"lstm_{j}_w_hid"], np.float64)
        b = np.asarray(params[f"lstm_{j}_bias"], np.float64)
        gates[j] = {
            name: (w_in[:, k * H:(k + 1) * H].T, w_hid[:, k * H:(k + 1) * H].T, b[k * H:(k + 1) * H])
            for k, name in enumerate("ifco")
        }
    V = np.asarray(params["output"]["kernel"], np.float64).T
    v = np.asarray(params["output"]["bias"], np.float64)
    h = [np.zeros(H) for _ in range(num_layers)]
    c = [np.zeros(H) for _ in range(num_layers)]
    probs = []
    for token in tokens:
        x = np.zeros(vocab.VOCAB_SIZE)
        x[token] = 1.0
        for j in range(num_layers):
            g = gates[j]
            pre = {k: W_x @ x + W_h @ h[j] + bias for k, (W_x, W_h, bias) in g.items()}
            i, f, o = sigmoid(pre["i"]), sigmoid(pre["f"]), sigmoid(pre["o"])
            c[j] = f * c[j] + i * np.tanh(pre["c"])
            h[j] = o * np.tanh(c[j])
            x = h[j]
        logits = V @ x + v
        e = np.exp(logits - logits.max())
        probs.append(e / e.sum())
    return np.stack(probs)


def test_default_parameter_count():
    model = FolkRNN()
    params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 3), jnp.int32))["params"]
    assert count_params(params) == 5_599_881
    assert (model.num_layers, model.hidden_size, model.vocab_size, model.dropout_rate) == (3, 512, 137, 0.5)


def test_model_fields_come_from_the_folkrnn_defaults():
    # An older run's config.json with fewer fields builds with the FolkRNN defaults.
    model = folkrnn.model_from_config(ml_collections.ConfigDict({"hidden_size": 16, "dropout_rate": 0.1}))
    assert (model.hidden_size, model.dropout_rate) == (16, 0.1)
    assert (model.num_layers, model.init_scale, model.unroll) == (FolkRNN.num_layers, FolkRNN.init_scale, FolkRNN.unroll)
    assert model.lstm_schedule in ("layerwise", "wavefront")  # resolved before any tracing
    config = v2.get_config()
    assert {name: config[name] for name in folkrnn.MODEL_FIELDS} == folkrnn.model_defaults()
    assert config.lstm_schedule == "auto"
    resolved = folkrnn.with_resolved_schedule(config)
    assert resolved.lstm_schedule == model.lstm_schedule and config.lstm_schedule == "auto"


@pytest.mark.parametrize("schedule", ["layerwise", "wavefront"])
def test_matches_numpy_blog_equations_full_size(schedule):
    model = FolkRNN(lstm_schedule=schedule)
    tokens = np.array([vocab.START_ID, 104, 86, 64, 53, 71, 48, 59])
    params = model.init(jax.random.PRNGKey(1), jnp.zeros((1, 2), jnp.int32))["params"]
    # Non-zero biases so that every term of the equations is exercised.
    params = jax.tree_util.tree_map(lambda x: x, params)
    for j in range(3):
        params[f"lstm_{j}_bias"] = jax.random.normal(jax.random.PRNGKey(10 + j), (2048,)) * 0.5
    logits = model.apply({"params": params}, jnp.asarray(tokens)[None])
    probs = np.asarray(jax.nn.softmax(logits, -1))[0]
    expected = blog_forward(params, tokens, 3, 512)
    assert np.abs(probs - expected).max() < 1e-5


def test_step_by_step_equals_full_sequence():
    model = FolkRNN(num_layers=2, hidden_size=32)
    tokens = jax.random.randint(jax.random.PRNGKey(2), (3, 9), 0, 137)
    variables = model.init(jax.random.PRNGKey(0), tokens)
    full = model.apply(variables, tokens)
    carry = model.apply(variables, 3, method=FolkRNN.initial_carry)
    steps = []
    for t in range(9):
        logits, carry = model.apply(variables, tokens[:, t:t + 1], carry, method=FolkRNN.decode)
        steps.append(logits)
    np.testing.assert_allclose(np.concatenate(steps, 1), full, atol=1e-5)


def test_mask_keeps_state_and_one_hot_float_input_equals_tokens():
    model = FolkRNN(num_layers=2, hidden_size=16)
    tokens = jax.random.randint(jax.random.PRNGKey(3), (2, 6), 0, 137)
    variables = model.init(jax.random.PRNGKey(0), tokens)
    carry = model.apply(variables, 2, method=FolkRNN.initial_carry)
    mask = jnp.array([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1]], jnp.float32)
    _, masked_carry = model.apply(variables, tokens, carry, mask, method=FolkRNN.decode)
    _, short_carry = model.apply(variables, tokens[:, :3], carry, method=FolkRNN.decode)
    np.testing.assert_allclose(masked_carry[1][1][0], short_carry[1][1][0], atol=1e-6)
    one_hot = jax.nn.one_hot(tokens, 137)
    np.testing.assert_allclose(model.apply(variables, one_hot), model.apply(variables, tokens), atol=1e-5)


def test_dropout_only_in_training():
    model = FolkRNN(num_layers=1, hidden_size=16, dropout_rate=0.5)
    tokens = jnp.ones((2, 5), jnp.int32)
    variables = model.init(jax.random.PRNGKey(0), tokens)
    eval_a = model.apply(variables, tokens)
    eval_b = model.apply(variables, tokens)
    np.testing.assert_array_equal(eval_a, eval_b)
    train = model.apply(variables, tokens, train=True, rngs={"dropout": jax.random.PRNGKey(1)})
    assert not np.allclose(train, eval_a)
