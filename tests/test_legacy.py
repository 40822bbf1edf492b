"""Original folk-rnn checkpoints: safe loading, the exact layout, and the imported model's
forward pass against an independent numpy implementation of Lasagne's LSTM."""

import json
import os
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from folkrnn_jax.data import v2_format
from folkrnn_jax.generate import sampler
from folkrnn_jax.model import folkrnn, legacy
from folkrnn_jax.music import vocab
from folkrnn_jax.training import loop as loop_lib
from folkrnn_jax.training import rundir
from folkrnn_jax.training import runs as runs_lib
from tests.conftest import run_module

NAMES = legacy.PER_LAYER_NAMES


def make_original(seed=0, hidden=16, num_layers=3, shuffle=True, scale=0.3):
    """A dict in the exact layout of folkrnn_v2.pkl: random weights, shuffled token2idx,
    non-zero cell_init/hid_init."""
    rng = np.random.RandomState(seed)
    V = vocab.VOCAB_SIZE
    order = list(vocab.TOKENS)
    if shuffle:
        rng.shuffle(order)
    token2idx = {t: i for i, t in enumerate(order)}

    def f32(*shape, s=scale):
        return (s * rng.randn(*shape)).astype(np.float32)

    values = [np.eye(V, dtype=np.float32)]
    for j in range(num_layers):
        n_in = V if j == 0 else hidden
        for _ in range(4):
            values += [f32(n_in, hidden), f32(hidden, hidden), f32(hidden)]
        values += [f32(1, hidden, s=0.5), f32(1, hidden, s=0.5)]
    values += [f32(hidden, V), f32(V)]
    return {
        "configuration": "config5", "experiment_id": "folkrnn_v2-test", "epoch_since_start": 7,
        "iters_since_start": 1234, "losses_train": [4.9, 3.1, 2.2],
        "losses_eval_valid": [4.8, 3.0], "learning_rate": 0.003,
        "token2idx": token2idx, "param_values": values,
    }


def write(path, obj):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)
    return str(path)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def lasagne_forward(obj, tokens):
    """Independent numpy forward pass in the pickle's own token order (row vectors, per-gate
    matrices, every layer starting from its cell_init/hid_init). Returns the softmax after
    each input token, [len(tokens), V], columns in the file's order."""
    pv = [np.asarray(a, np.float64) for a in obj["param_values"]]
    num_layers = (len(pv) - 3) // 14
    x = pv[0][[obj["token2idx"][t] for t in tokens]]  # embedding lookup, [T, V]
    for j in range(num_layers):
        p = dict(zip(NAMES, pv[1 + 14 * j : 15 + 14 * j]))
        c, h = p["cell_init"][0], p["hid_init"][0]
        outs = []
        for xt in x:
            pre = {g: xt @ p[f"W_in_to_{g}"] + h @ p[f"W_hid_to_{g}"] + p[f"b_{g}"] for g in legacy.GATES}
            i, f, o = sigmoid(pre["ingate"]), sigmoid(pre["forgetgate"]), sigmoid(pre["outgate"])
            c = f * c + i * np.tanh(pre["cell"])
            h = o * np.tanh(c)
            outs.append(h)
        x = np.stack(outs)
    logits = x @ pv[-2] + pv[-1]
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)


def lasagne_log_prob(obj, tokens):
    probs = lasagne_forward(obj, tokens[:-1])
    return float(sum(np.log(probs[t, obj["token2idx"][tok]]) for t, tok in enumerate(tokens[1:])))


def imported_probs(ckpt, tokens):
    model = folkrnn.FolkRNN(
        num_layers=ckpt.num_layers, hidden_size=ckpt.hidden_size, learn_initial_state=True
    )
    logits = model.apply({"params": ckpt.params}, jnp.asarray([vocab.encode(tokens)]))
    return np.asarray(jax.nn.softmax(logits[0], axis=-1))


def to_file_order(obj, probs_ours):
    perm = [obj["token2idx"][t] for t in vocab.TOKENS]
    out = np.zeros_like(probs_ours)
    out[:, perm] = probs_ours
    return out


def fixture_tune(excerpt_path, index=0):
    return [vocab.START, *v2_format.read_v2_file(excerpt_path)[index], vocab.END]


def test_imported_model_matches_lasagne_forward(tmp_path, excerpt_path):
    obj = make_original(hidden=16)
    ckpt = legacy.load_folkrnn_pickle(write(tmp_path / "v2.pkl", obj))
    assert (ckpt.num_layers, ckpt.hidden_size, ckpt.vocab_size) == (3, 16, 137)
    assert ckpt.metadata["iters_since_start"] == 1234
    tokens = fixture_tune(excerpt_path)[:80]
    expected = lasagne_forward(obj, tokens)
    got = to_file_order(obj, imported_probs(ckpt, tokens))
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    # The initial states matter: zeroing them changes the first prediction.
    zeroed = dict(ckpt.params, lstm_0_hid_init=np.zeros(16, np.float32))
    ckpt_zero = legacy.LegacyCheckpoint(zeroed, 3, 16, 137, ckpt.token2idx, ckpt.metadata)
    assert np.abs(to_file_order(obj, imported_probs(ckpt_zero, tokens))[0] - expected[0]).max() > 1e-4


def test_full_size_v2_layout(tmp_path):
    obj = make_original(seed=1, hidden=512, scale=0.1)  # the Lasagne init scale
    assert len(obj["param_values"]) == 45
    ckpt = legacy.load_folkrnn_pickle(write(tmp_path / "v2.pkl", obj))
    assert folkrnn.count_params(ckpt.params) == 5_599_881 + 2 * 3 * 512
    tokens = ["<s>", "M:6/8", "K:Cdor", "|:", "G", "E", "C"]
    np.testing.assert_allclose(
        to_file_order(obj, imported_probs(ckpt, tokens)), lasagne_forward(obj, tokens), atol=1e-5, rtol=0
    )


def test_save_then_load_is_exact(tmp_path):
    obj = make_original(seed=2, hidden=8)
    ckpt = legacy.load_folkrnn_pickle(write(tmp_path / "a.pkl", obj))
    out = str(tmp_path / "b.pkl")
    legacy.save_folkrnn_pickle(out, ckpt.params, token2idx=ckpt.token2idx, metadata=ckpt.metadata)
    # Plain unpickling with latin1, as the original files are read: the original layout back.
    with open(out, "rb") as f:
        raw = pickle.load(f, encoding="latin1")
    assert set(raw) == set(legacy.REQUIRED_KEYS)
    assert raw["token2idx"] == obj["token2idx"]
    assert len(raw["param_values"]) == len(obj["param_values"])
    for a, b in zip(raw["param_values"], obj["param_values"]):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    for key in legacy.METADATA_KEYS:
        assert raw[key] == obj[key]
    again = legacy.load_folkrnn_pickle(out)
    for key, value in ckpt.params.items():
        if isinstance(value, dict):
            for k in value:
                assert np.array_equal(again.params[key][k], value[k])
        else:
            assert np.array_equal(again.params[key], value), key
    assert again.token2idx == ckpt.token2idx and again.metadata == ckpt.metadata
    # Default token order is ours; Python 2 style strings (BINSTRING), numpy.core globals.
    legacy.save_folkrnn_pickle(out, ckpt.params)
    with open(out, "rb") as f:
        blob = f.read()
    assert blob[:2] == b"\x80\x02" and b"numpy.core.multiarray" in blob and b"_codecs" not in blob
    again = legacy.load_folkrnn_pickle(out)
    assert again.token2idx == vocab.TOKEN_TO_ID
    assert np.array_equal(again.params["lstm_0_w_in"], ckpt.params["lstm_0_w_in"])


def test_cli_import_then_score_matches_lasagne(tmp_path, excerpt_path):
    obj = make_original(seed=3, hidden=16)
    path = write(tmp_path / "v2.pkl", obj)
    workdir = str(tmp_path / "run")
    proc = run_module("experiments.import_folkrnn", f"--pickle={path}", f"--workdir={workdir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    config = json.load(open(os.path.join(workdir, "config.json")))
    assert config["learn_initial_state"] and config["hidden_size"] == 16 and config["num_layers"] == 3
    model, params, step = runs_lib.load_run(workdir)
    assert step == 1234 and model.learn_initial_state
    tunes_out = sampler.sample_tunes(model, params, jax.random.PRNGKey(0), 2, "M:6/8 K:Cdor", 1.0, 30)
    assert [t for t in tunes_out.tokens(0) if t != vocab.START][:2] == ["M:6/8", "K:Cdor"]
    np.testing.assert_array_equal(params["lstm_2_hid_init"], obj["param_values"][42][0])
    np.testing.assert_array_equal(params["lstm_1_cell_init"], obj["param_values"][27][0])

    out = str(tmp_path / "scores.jsonl")
    proc = run_module("experiments.score", f"--workdir={workdir}", f"--data={excerpt_path}",
                      f"--output={out}", "--batch_size=8")
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(line) for line in open(out)]
    tunes = v2_format.read_v2_file(excerpt_path)
    assert [r["index"] for r in records] == list(range(len(tunes)))
    for record, tune in zip(records, tunes):
        tokens = [vocab.START, *tune, vocab.END]
        assert record["tokens"] == len(tokens)
        expected = lasagne_log_prob(obj, tokens)
        assert abs(record["log_prob"] - expected) < 1e-4 * abs(expected), (record, expected)


def test_imported_run_resumes_training(tmp_path, excerpt_path):
    from experiments.import_folkrnn import import_checkpoint
    from folkrnn_jax.training import runs as runs_lib

    obj = make_original(seed=5, hidden=16)
    workdir = str(tmp_path / "run")
    import_checkpoint(write(tmp_path / "v2.pkl", obj), workdir)
    _, imported, step = runs_lib.load_run(workdir)
    config = rundir.load_config(workdir)
    config.data_path = excerpt_path
    config.batch_size = 4
    config.valid_fraction = 0.2
    config.num_train_steps = step + 3
    config.log_every_steps = 1
    state = loop_lib.train_and_evaluate(config, workdir)
    assert int(state.step) == step + 3
    injected = (optax.InjectHyperparamsState, optax.InjectStatefulHyperparamsState)
    counts = [s.count for s in jax.tree_util.tree_leaves(state.opt_state, is_leaf=lambda s: isinstance(s, injected))
              if isinstance(s, injected)]
    assert [int(c) for c in counts] == [step + 3]  # the schedule went on from the imported step
    logged = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    assert min(r["step"] for r in logged if "train_loss" in r) == step + 1
    # Three RMSprop steps moved the imported weights a little, nothing like a new start.
    moved = max(float(np.abs(np.asarray(state.params[k]) - imported[k]).max())
                for k in imported if k != "output")
    assert 0 < moved < 0.1


class _Evil:
    def __init__(self, func, arg):
        self.func, self.arg = func, arg

    def __reduce__(self):
        return (self.func, (self.arg,))


@pytest.mark.parametrize("func", [os.system, eval])
def test_malicious_pickle_is_refused(tmp_path, func):
    target = tmp_path / "SOMEFILE"
    arg = f"touch {target}" if func is os.system else f"__import__('os').system('touch {target}')"
    obj = make_original(hidden=4)
    obj["configuration"] = _Evil(func, arg)  # hidden inside an otherwise valid checkpoint
    path = write(tmp_path / "evil.pkl", obj)
    with pytest.raises(legacy.UnsafePickleError) as info:
        legacy.load_folkrnn_pickle(path)
    message = str(info.value)
    assert path in message and "refusing" in message
    assert (".system" in message) if func is os.system else ("builtin__.eval" in message)  # py2 name
    assert not target.exists()


def _expect_error(path, *fragments):
    with pytest.raises(legacy.LegacyFormatError) as info:
        legacy.load_folkrnn_pickle(str(path))
    message = str(info.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, message


def test_bad_files_give_clear_errors(tmp_path):
    obj = make_original(hidden=4)
    missing = dict(obj)
    del missing["token2idx"]
    _expect_error(write(tmp_path / "missing.pkl", missing), "missing key", "token2idx")

    wrong = make_original(hidden=4)
    wrong["param_values"][16] = np.zeros((4, 5), np.float32)  # layer 1 W_hid_to_ingate
    _expect_error(write(tmp_path / "shape.pkl", wrong), "param_values[16]", "W_hid_to_ingate", "(4, 5)")

    short = make_original(hidden=4)
    short["param_values"] = short["param_values"][:44]
    _expect_error(write(tmp_path / "count.pkl", short), "44 arrays")

    unknown = make_original(hidden=4)
    unknown["token2idx"]["H"] = unknown["token2idx"].pop("d'")
    _expect_error(write(tmp_path / "token.pkl", unknown), "'H'", "not in the 137-token")

    full = write(tmp_path / "full.pkl", obj)
    truncated = tmp_path / "truncated.pkl"
    truncated.write_bytes(open(full, "rb").read()[:5000])
    _expect_error(truncated, "truncated")

    with pytest.raises(FileNotFoundError, match="nowhere.pkl"):
        legacy.load_folkrnn_pickle(str(tmp_path / "nowhere.pkl"))


# ---------------------------------------------------------------------------------------------
# Crafted pickles (issue 13): each attack kept as a test


class _Reduce:
    """Pickles as ``func(*args)`` followed by BUILD with ``state`` (when given)."""

    def __init__(self, func, args, state=None):
        self.func, self.args, self.state = func, args, state

    def __reduce__(self):
        return (self.func, self.args) if self.state is None else (self.func, self.args, self.state)


def _forged_array():
    """An 8-byte array whose dtype state names an object field while its flags say "no
    objects": numpy would read the 8 data bytes as a pointer."""
    from numpy._core import multiarray

    forged = _Reduce(np.dtype, ("f8", False, True),
                     (3, "<", None, ("a",), {"a": (np.dtype("O"), 0)}, 8, 1, 0))
    return _Reduce(multiarray._reconstruct, (np.ndarray, (0,), b"b"),
                   (1, (1,), forged, False, b"\x41" * 8))


def test_forged_dtype_is_refused(tmp_path):
    obj = make_original(hidden=4)
    obj["losses_train"] = [_forged_array()]
    path = write(tmp_path / "forged.pkl", obj)
    with pytest.raises(legacy.UnsafePickleError, match="dtype") as info:
        legacy.load_folkrnn_pickle(path)
    assert str(info.value).startswith(path) and "\n" not in str(info.value)
    # Object dtypes are refused outright, and so is calling numpy.ndarray for an allocation.
    obj["losses_train"] = [np.array([None, 1], dtype=object)]
    with pytest.raises(legacy.UnsafePickleError, match="object"):
        legacy.load_folkrnn_pickle(write(tmp_path / "object.pkl", obj))
    obj["losses_train"] = [_Reduce(np.ndarray, ((10**6, 10**6),))]
    with pytest.raises(legacy.LegacyFormatError):
        legacy.load_folkrnn_pickle(write(tmp_path / "alloc.pkl", obj))


def test_memo_bomb_and_deep_nesting_are_refused_quickly(tmp_path):
    import time

    bomb = ["x" * 100]
    for _ in range(40):
        bomb = [bomb, bomb]  # shared: ~1 KB of pickle, 2**40 strings when printed
    obj = make_original(hidden=4)
    obj["configuration"] = bomb
    path = write(tmp_path / "bomb.pkl", obj)
    plain = write(tmp_path / "plain.pkl", make_original(hidden=4))
    assert os.path.getsize(path) - os.path.getsize(plain) < 2_000
    start = time.perf_counter()
    with pytest.raises(legacy.LegacyFormatError, match="configuration is too large"):
        legacy.load_folkrnn_pickle(path)
    assert time.perf_counter() - start < 5
    deep = []
    for _ in range(100):  # the pickler itself recurses, so not much deeper
        deep = [deep]
    obj["configuration"] = deep
    with pytest.raises(legacy.LegacyFormatError, match="too deeply nested"):
        legacy.load_folkrnn_pickle(write(tmp_path / "deep.pkl", obj))


def test_memo_bomb_import_is_one_line(tmp_path):
    bomb = ["x" * 100]
    for _ in range(40):
        bomb = [bomb, bomb]
    obj = make_original(hidden=4)
    obj["configuration"] = bomb
    path = write(tmp_path / "bomb.pkl", obj)
    proc = run_module("experiments.import_folkrnn", f"--pickle={path}",
                      f"--workdir={tmp_path / 'run'}", timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "too large" in lines[0]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("key, value, fragment", [
    ("iters_since_start", "12", "iters_since_start"),
    ("iters_since_start", 1.5, "iters_since_start"),
    ("iters_since_start", -4, "iters_since_start"),
    ("iters_since_start", 10**40, "iters_since_start"),
    ("epoch_since_start", float("nan"), "epoch_since_start"),
    ("learning_rate", [1], "learning_rate"),
])
def test_odd_metadata_is_refused(tmp_path, key, value, fragment):
    obj = make_original(hidden=4)
    obj[key] = value
    _expect_error(write(tmp_path / "odd.pkl", obj), fragment)


def test_bad_weights_and_indices_are_refused(tmp_path):
    nan = make_original(hidden=4)
    nan["param_values"][5][0] = np.nan
    _expect_error(write(tmp_path / "nan.pkl", nan), "param_values[5]", "NaN or infinite")
    inf = make_original(hidden=4)
    inf["param_values"][-1][3] = np.inf
    _expect_error(write(tmp_path / "inf.pkl", inf), "output b", "NaN or infinite")
    for dtype in (np.float16, np.complex64, np.bool_, np.int32):
        odd = make_original(hidden=4)
        odd["param_values"][2] = odd["param_values"][2].astype(dtype)
        _expect_error(write(tmp_path / "dtype.pkl", odd), "param_values[2]", "float32 or float64")
    for index in (3.0, 3.5, True, "3", None):
        frac = make_original(hidden=4)
        frac["token2idx"]["d'"] = index
        _expect_error(write(tmp_path / "index.pkl", frac), "token2idx", "not a whole number")
    frac = make_original(hidden=4)
    frac["token2idx"][("a",) * 3] = 1
    _expect_error(write(tmp_path / "key.pkl", frac), "token strings")
    # float64 weights (Theano with floatX=float64) still load.
    wide = make_original(hidden=4)
    wide["param_values"] = [a.astype(np.float64) for a in wide["param_values"]]
    assert legacy.load_folkrnn_pickle(write(tmp_path / "f64.pkl", wide)).hidden_size == 4
