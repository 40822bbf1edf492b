"""Sampling throughput: folkrnn_jax's batched sampler against a PyTorch nn.LSTM step loop and
one-tune-at-a-time numpy sampling, same process, interleaved rounds, medians.

    python -m benchmarks.sample_bench [--batches=1,16,256 --steps=256 --rounds=5]

The model is v2 size (3 x 512 LSTM, vocab 137), random weights, float32. Every tune runs a
fixed ``--steps`` tokens (``</s>`` gets a -1e9 logit bias, so nothing stops early):

* ours: ``sampler.sample_tunes`` (while_loop over 16-step scan chunks, one jit);
* plain: a plain ``lax.scan`` sampler with none of the features (the issue's reference
  point: "a plain lax.scan sampler measured here gave 9.5x, 3.7x and 1.2x");
* torch: ``nn.LSTM(137, 512, 3)`` stepped one token at a time on one-hot input with
  ``Linear(512, 137)`` + softmax + ``torch.multinomial``, under ``torch.inference_mode``;
* numpy: the same LSTM written in numpy, one tune at a time (its tokens/s does not depend on
  the batch, so it is timed on a few tunes each round), in two styles: "fused" (first layer
  as a row gather, the four gates as one [H, 4H] matvec) and "original" (the style of the
  original folk-rnn numpy sampler: a one-hot int8 input vector dotted with each layer's
  per-gate input matrices, per-gate recurrent matvecs, softmax with temperature,
  ``RandomState.choice(p=...)``). The issue's "50x the one-tune-at-a-time numpy" compares
  with the original style.

``--constrained`` also times ours with ``constrain=True`` (``folkrnn_jax.generate.constraint``: the
structure automaton's mask and update at every step) and prints its cost as a ratio.

tokens/s = tunes x steps / wall time. torch is not a project dependency: imported only here.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from folkrnn_jax.generate import sampler
from folkrnn_jax.model.folkrnn import FolkRNN
from folkrnn_jax.model.lstm import lstm_cell
from folkrnn_jax.music import vocab

flags.DEFINE_list("batches", ["1", "16", "256"], "Batch sizes (tunes sampled together).")
flags.DEFINE_integer("steps", 256, "Tokens sampled per tune.")
flags.DEFINE_integer("rounds", 5, "Interleaved timing rounds.")
flags.DEFINE_integer("numpy_tunes", 2, "Tunes the numpy sampler draws per round.")
flags.DEFINE_integer("torch_threads", 0, "torch.set_num_threads (0: the number of CPUs, os.cpu_count()).")
flags.DEFINE_bool("bfloat16", False, "Also time ours with bfloat16 matmuls (float32 state), as "
                  "experiments.sample --matmul_dtype=bfloat16 runs it.")
flags.DEFINE_bool("constrained", False, "Also time ours with constrain=True (structure-constrained sampling).")
flags.DEFINE_bool("compare_schedules", False, "Also time ours with the model's lstm_schedule forced to "
                  "'layerwise' (today's) and 'wavefront' in the same rounds (issue 16's before/after).")
flags.DEFINE_bool("others", True, "Also time torch, the plain lax.scan sampler and numpy (False: ours only, "
                  "e.g. 30,000 tunes on a GPU).")
flags.DEFINE_float("pause", 0.5, "Seconds to sleep before each timing, so that timings do not follow each other's heat.")
FLAGS = flags.FLAGS

H, L, V = 512, 3, vocab.VOCAB_SIZE


def _weights(params):
    """Per layer (w_in [in, 4H], w_hid [H, 4H], bias [4H]) in (i, f, g, o) order, and output."""
    layers = [tuple(np.asarray(params[f"lstm_{j}_{n}"]) for n in ("w_in", "w_hid", "bias")) for j in range(L)]
    return layers, np.asarray(params["output"]["kernel"]), np.asarray(params["output"]["bias"])


def make_ours(model, params, batch, steps, constrain=False):
    bias = np.zeros(V, np.float32)
    bias[vocab.END_ID] = -1e9

    def run(seed):
        result = sampler.sample_tunes(model, params, jax.random.PRNGKey(seed), batch, (), 1.0, steps + 1,
                                     logit_bias=bias, constrain=constrain)
        assert result.steps == steps + 1
        return result.ids

    return run


def make_plain(params, batch, steps):
    """The issue's reference point: a plain ``lax.scan`` sampler with none of the sampler's
    features (no early stop, prefixes, per-tune keys, truncation or masks; one key per step
    for the whole batch)."""
    hp = jax.lax.Precision.HIGHEST
    out_bias = params["output"]["bias"].at[vocab.END_ID].add(-1e9)

    @jax.jit
    def loop(params, key):
        def step(carry, t):
            token, cs, hs = carry
            x = params["lstm_0_w_in"][token]  # [batch, 4H]
            new_cs, new_hs = [], []
            for j in range(L):
                if j > 0:
                    x = jnp.dot(new_hs[-1], params[f"lstm_{j}_w_in"], precision=hp)
                (c, h), _ = lstm_cell(params[f"lstm_{j}_w_hid"], (cs[j], hs[j]), x + params[f"lstm_{j}_bias"])
                new_cs.append(c)
                new_hs.append(h)
            logits = jnp.dot(new_hs[-1], params["output"]["kernel"], precision=hp) + out_bias
            token = jax.random.categorical(jax.random.fold_in(key, t), logits).astype(jnp.int32)
            return (token, new_cs, new_hs), token

        zeros = [jnp.zeros((batch, H), jnp.float32)] * L
        start = jnp.full((batch,), vocab.START_ID, jnp.int32)
        return jax.lax.scan(step, (start, zeros, zeros), jnp.arange(steps))[1]

    return lambda seed: loop(params, jax.random.PRNGKey(seed))


def make_torch(params, batch, steps):
    import torch

    layers, w_out, b_out = _weights(params)
    lstm = torch.nn.LSTM(V, H, L)
    linear = torch.nn.Linear(H, V)
    with torch.no_grad():
        for j, (w_in, w_hid, b) in enumerate(layers):  # torch gate order is also (i, f, g, o)
            getattr(lstm, f"weight_ih_l{j}").copy_(torch.from_numpy(w_in.T.copy()))
            getattr(lstm, f"weight_hh_l{j}").copy_(torch.from_numpy(w_hid.T.copy()))
            getattr(lstm, f"bias_ih_l{j}").copy_(torch.from_numpy(b))
            getattr(lstm, f"bias_hh_l{j}").zero_()
        linear.weight.copy_(torch.from_numpy(w_out.T.copy()))
        linear.bias.copy_(torch.from_numpy(b_out))
        linear.bias[vocab.END_ID] -= 1e9
    eye = torch.eye(V)

    def run(seed):
        generator = torch.Generator().manual_seed(seed)
        with torch.inference_mode():
            token = torch.full((batch,), vocab.START_ID, dtype=torch.long)
            state = None
            out = torch.empty((batch, steps), dtype=torch.long)
            for t in range(steps):
                h, state = lstm(eye[token][None], state)
                probs = torch.softmax(linear(h[0]), dim=-1)
                token = torch.multinomial(probs, 1, generator=generator)[:, 0]
                out[:, t] = token
        return out

    return run


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _one_tune_at_a_time(params, steps, forward, draw, make_rng):
    """A numpy sampler: ``forward(token, c, h) -> top hidden`` updates the per-layer lists c, h
    in place; ``draw(logits, rng) -> token``. ``</s>`` is masked as on the other sides."""
    _, w_out, b_out = _weights(params)
    b_out = b_out.copy()
    b_out[vocab.END_ID] -= 1e9

    def run(seed, tunes):
        rng = make_rng(seed)
        for _ in range(tunes):
            c = [np.zeros(H, np.float32) for _ in range(L)]
            h = [np.zeros(H, np.float32) for _ in range(L)]
            token = vocab.START_ID
            for _ in range(steps):
                token = draw(np.dot(forward(token, c, h), w_out) + b_out, rng)

    return run


def make_numpy(params, steps):
    """Fused numpy: the first layer's input projection as a row gather, the four gates as one
    [H, 4H] matvec."""
    layers, _, _ = _weights(params)

    def forward(token, c, h):
        x = None
        for j, (w_in, w_hid, b) in enumerate(layers):
            z = (w_in[token] if j == 0 else x @ w_in) + h[j] @ w_hid + b
            i, f, g, o = _sigmoid(z[:H]), _sigmoid(z[H:2 * H]), np.tanh(z[2 * H:3 * H]), _sigmoid(z[3 * H:])
            c[j] = f * c[j] + i * g
            h[j] = o * np.tanh(c[j])
            x = h[j]
        return x

    def draw(logits, rng):
        p = np.exp(logits - logits.max())
        return rng.choice(V, p=p / p.sum())

    return _one_tune_at_a_time(params, steps, forward, draw, np.random.default_rng)


def make_numpy_original(params, steps, temperature=1.0):
    """One tune at a time as the original numpy sampler did it: per-gate weight matrices,
    a one-hot int8 input vector, softmax with temperature and ``RandomState.choice``."""
    layers, _, _ = _weights(params)
    gates = [[(w_in[:, k * H:(k + 1) * H].copy(), w_hid[:, k * H:(k + 1) * H].copy(), b[k * H:(k + 1) * H].copy())
              for k in range(4)] for w_in, w_hid, b in layers]
    idxs = np.arange(V)

    def forward(token, c, h):
        x = np.zeros(V, np.int8)
        x[token] = 1
        for j, ((wi, ui, bi), (wf, uf, bf), (wg, ug, bg), (wo, uo, bo)) in enumerate(gates):
            i = _sigmoid(np.dot(x, wi) + np.dot(h[j], ui) + bi)
            f = _sigmoid(np.dot(x, wf) + np.dot(h[j], uf) + bf)
            c[j] = f * c[j] + i * np.tanh(np.dot(x, wg) + np.dot(h[j], ug) + bg)
            o = _sigmoid(np.dot(x, wo) + np.dot(h[j], uo) + bo)
            h[j] = o * np.tanh(c[j])
            x = h[j]
        return x

    def draw(logits, rng):
        e = np.exp(logits / temperature)
        return rng.choice(idxs, p=e / e.sum())

    return _one_tune_at_a_time(params, steps, forward, draw, np.random.RandomState)


def machine() -> str:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next(l.split(":", 1)[1].strip() for l in lscpu.splitlines() if l.startswith("Model name"))
    except Exception:  # noqa: BLE001 - informational only
        model = platform.processor() or "unknown"
    return f"{model}, {os.cpu_count()} CPUs"


def main(argv):
    del argv
    if FLAGS.others:
        import torch

        torch.set_num_threads(FLAGS.torch_threads or os.cpu_count() or 1)
    steps = FLAGS.steps
    batches = [int(b) for b in FLAGS.batches]
    model = FolkRNN(num_layers=L, hidden_size=H, dropout_rate=0.0)
    params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 2), jnp.int32))["params"]
    runners = {}
    for b in batches:
        runners[("ours", b)] = make_ours(model, params, b, steps)
        if FLAGS.others:
            runners[("torch", b)] = make_torch(params, b, steps)
            runners[("plain", b)] = make_plain(params, b, steps)
        if FLAGS.compare_schedules:
            for schedule in ("layerwise", "wavefront"):
                runners[(schedule, b)] = make_ours(model.clone(lstm_schedule=schedule), params, b, steps)
        if FLAGS.constrained:
            runners[("constrained", b)] = make_ours(model, params, b, steps, constrain=True)
        if FLAGS.bfloat16:
            runners[("bfloat16", b)] = make_ours(model.clone(matmul_dtype="bfloat16"), params, b, steps)
    numpy_run = make_numpy(params, steps) if FLAGS.others else None
    original_run = make_numpy_original(params, steps) if FLAGS.others else None
    for runner in runners.values():  # compile / warm up
        runner(0)
    rates: dict = {k: [] for k in runners}
    if FLAGS.others:
        numpy_run(0, 1)
        original_run(0, 1)
        rates["numpy"] = []
        rates["original"] = []
    for r in range(FLAGS.rounds):
        for (name, b), runner in runners.items():
            time.sleep(FLAGS.pause)
            start = time.perf_counter()
            jax.block_until_ready(runner(r + 1))
            rates[(name, b)].append(b * steps / (time.perf_counter() - start))
        if FLAGS.others:
            time.sleep(FLAGS.pause)
            start = time.perf_counter()
            numpy_run(r + 1, FLAGS.numpy_tunes)
            rates["numpy"].append(FLAGS.numpy_tunes * steps / (time.perf_counter() - start))
            time.sleep(FLAGS.pause)
            start = time.perf_counter()
            original_run(r + 1, FLAGS.numpy_tunes)
            rates["original"].append(FLAGS.numpy_tunes * steps / (time.perf_counter() - start))
        print(f"round {r + 1}: " + ", ".join(
            f"{k if isinstance(k, str) else f'{k[0]}@{k[1]}'} {v[-1]:,.0f}" for k, v in rates.items()), flush=True)
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(f"\nmachine: {machine()}; python {platform.python_version()}, jax {jax.__version__} "
          f"({jax.default_backend()}), numpy {np.__version__}, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}"
          + (f", torch {torch.__version__} ({torch.get_num_threads()} threads)" if FLAGS.others else ""))
    print(f"v2 3x512 random weights, {steps} tokens per tune, medians of {FLAGS.rounds} interleaved rounds\n")
    if FLAGS.compare_schedules:
        print("| batch | ours (auto) tok/s | lstm_schedule=layerwise tok/s | lstm_schedule=wavefront tok/s | "
              "wavefront/layerwise |\n|---|---|---|---|---|")
        for b in batches:
            lw, wf = med[("layerwise", b)], med[("wavefront", b)]
            print(f"| {b} | {med[('ours', b)]:,.0f} | {lw:,.0f} | {wf:,.0f} | {wf / lw:.2f} |")
        print()
    if not FLAGS.others:
        print("| batch | ours tok/s | ours tunes/s |\n|---|---|---|")
        for b in batches:
            print(f"| {b} | {med[('ours', b)]:,.0f} | {med[('ours', b)] / steps:,.1f} |")
        return
    print("| batch | ours tok/s | ours tunes/s | torch tok/s | numpy fused tok/s | numpy original tok/s "
          "| ours/torch | ours/numpy fused | ours/numpy original | ours/torch per round |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for b in batches:
        per_round = ", ".join(f"{o / t:.2f}" for o, t in zip(rates[("ours", b)], rates[("torch", b)]))
        ours = med[("ours", b)]
        print(f"| {b} | {ours:,.0f} | {ours / steps:,.1f} | {med[('torch', b)]:,.0f} | {med['numpy']:,.0f} | "
              f"{med['original']:,.0f} | {ours / med[('torch', b)]:.2f} | {ours / med['numpy']:.1f} | "
              f"{ours / med['original']:.1f} | {per_round} |")
    print("\n| batch | plain lax.scan sampler tok/s | plain/torch | ours/plain |\n|---|---|---|---|")
    for b in batches:
        plain = med[("plain", b)]
        print(f"| {b} | {plain:,.0f} | {plain / med[('torch', b)]:.2f} | {med[('ours', b)] / plain:.2f} |")
    if FLAGS.bfloat16:
        print("\n| batch | ours float32 tok/s | ours bfloat16 matmuls tok/s | bfloat16/float32 | bfloat16/torch |")
        print("|---|---|---|---|---|")
        for b in batches:
            ours, fast = med[("ours", b)], med[("bfloat16", b)]
            print(f"| {b} | {ours:,.0f} | {fast:,.0f} | {fast / ours:.2f} | {fast / med[('torch', b)]:.2f} |")
    if FLAGS.constrained:
        print("\n| batch | ours tok/s | ours with constrain=True tok/s | ratio |\n|---|---|---|---|")
        for b in batches:
            ours, constrained = med[("ours", b)], med[("constrained", b)]
            print(f"| {b} | {ours:,.0f} | {constrained:,.0f} | {constrained / ours:.2f} |")


if __name__ == "__main__":
    app.run(main)
