"""Training throughput of folkrnn_jax's jit train step against PyTorch nn.LSTM, same process.

    python -m benchmarks.train_bench [--batch_size=64 --seq_len=160 --rounds=3 --steps=4]

The model is v2 (3 x 512 LSTM, vocab 137, dropout 0.5 after each layer), float32, one step =
forward + backward + RMSprop update behind global-norm clipping 5. The two frameworks are
timed in alternating rounds (``--rounds`` x ``--steps`` timed steps each, after a warm-up
step) and the medians of the per-round tokens/s are reported, because the machine's CPUs are
shared with other processes. The original figure used 256 steps (``--rounds=8 --steps=32``);
the default is 3 rounds of 4 steps so that it finishes in a few minutes on a 2-core CPU.

PyTorch's RMSprop puts epsilon outside the square root (Lasagne and optax's default put it
inside); its eps is set to sqrt(1e-6) = 1e-3 as an approximation, which costs the same.

Numerics: the optimised step's float32 losses are compared with an unoptimised reference
step (one-hot @ W inside a plain lax.scan over a straightforward cell, autodiff backward);
``tests/test_speed_numerics.py`` checks the same on a smaller model.

Peak memory: each framework runs two steps in its own subprocess (``--memory_only=jax|torch``)
and reports its resident-set peak (``VmHWM``, including the interpreter and imports) and the
growth during the steps; for JAX also the compiled step's temporary buffer size from XLA's
memory analysis, and on a GPU both frameworks' peak device memory.

torch is not a project dependency: it is imported only here.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

from experiments.configs import v2
from folkrnn_jax.data import batching
from folkrnn_jax.model.lstm import resolve_schedule
from folkrnn_jax.training import loss as loss_lib
from folkrnn_jax.training import state as state_lib
from folkrnn_jax.training import steps as steps_lib

FLAGS = flags.FLAGS
flags.DEFINE_integer("batch_size", 64, "Tunes per batch.")
flags.DEFINE_integer("seq_len", 160, "Tokens per tune (the v2 median length is 152).")
flags.DEFINE_integer("hidden_size", 512, "LSTM units per layer.")
flags.DEFINE_integer("num_layers", 3, "LSTM layers.")
flags.DEFINE_integer("rounds", 3, "Alternating timing rounds per framework.")
flags.DEFINE_integer("steps", 4, "Timed steps per round.")
flags.DEFINE_integer("round_warmup", 1, "Untimed steps at the start of each round: the first step after the "
                     "other framework ran is slow (see benchmarks/RESULTS.md).")
flags.DEFINE_integer("unroll", 1, "lax.scan unroll of the LSTM time loop.")
flags.DEFINE_boolean("fused_backward", True, "Hand-written LSTM backward pass (custom_vjp).")
flags.DEFINE_string("matmul_dtype", "float32", "float32, or bfloat16 (GPU).")
flags.DEFINE_enum("lstm_schedule", "auto", ["auto", "layerwise", "wavefront"], "LSTM scan schedule (ours).")
flags.DEFINE_boolean("bf16", False, "Also time ours with bfloat16 matmuls and torch under bfloat16 autocast, "
                     "in the same alternating rounds, and print bf16 ours vs torch float32 and vs torch bf16.")
flags.DEFINE_integer("numerics_steps", 3, "Steps of the optimised vs reference loss comparison.")
flags.DEFINE_enum("memory_only", None, ["jax", "torch"], "Internal: peak-memory subprocess.")
flags.DEFINE_boolean("torch", True, "Also time PyTorch.")
flags.DEFINE_string("torch_device", "cpu", "PyTorch device: cpu, or cuda on a GPU machine.")


def bench_config(hidden_size=512, num_layers=3, batch_size=64, unroll=4, fused_backward=True,
                 matmul_dtype="float32", dropout_rate=0.5, lstm_schedule="auto"):
    config = v2.get_config()
    config.hidden_size = hidden_size
    config.num_layers = num_layers
    config.batch_size = batch_size
    config.dropout_rate = dropout_rate
    config.unroll = unroll
    config.matmul_dtype = matmul_dtype
    config.lr_decay = 1.0
    config.lstm_schedule = lstm_schedule
    with config.unlocked():
        config.fused_backward = fused_backward
    return config


def synthetic_batch(batch_size: int, seq_len: int, seed: int = 0) -> batching.Batch:
    rng = np.random.RandomState(seed)
    tokens = rng.randint(0, 137, (batch_size, seq_len + 1)).astype(np.int32)
    # A few shorter tunes so that the mask is exercised.
    lengths = np.full((batch_size,), seq_len + 1, np.int32)
    lengths[: batch_size // 4] = rng.randint(seq_len // 2, seq_len, batch_size // 4)
    mask = (np.arange(seq_len)[None, :] < (lengths[:, None] - 1)).astype(np.float32)
    return batching.Batch(tokens[:, :-1] * mask.astype(np.int32), tokens[:, 1:] * mask.astype(np.int32), mask, lengths)


# ---------------------------------------------------------------------------------------------
# The unoptimised reference: one-hot @ W inside a plain scan, autodiff backward.


def reference_logits(params: dict, inputs, mask, num_layers: int, vocab_size: int = 137):
    x = jax.nn.one_hot(inputs.T, vocab_size, dtype=jnp.float32)  # [time, batch, vocab]
    m = mask.T
    hp = jax.lax.Precision.HIGHEST
    for j in range(num_layers):
        w_in, w_hid, b = params[f"lstm_{j}_w_in"], params[f"lstm_{j}_w_hid"], params[f"lstm_{j}_bias"]
        H = w_hid.shape[0]
        batch = x.shape[1]

        def cell(carry, inp, w_in=w_in, w_hid=w_hid, b=b):
            c, h = carry
            xt, mt = inp
            z = jnp.dot(xt, w_in, precision=hp) + jnp.dot(h, w_hid, precision=hp) + b
            zi, zf, zg, zo = jnp.split(z, 4, axis=-1)
            c_new = jax.nn.sigmoid(zf) * c + jax.nn.sigmoid(zi) * jnp.tanh(zg)
            h_new = jax.nn.sigmoid(zo) * jnp.tanh(c_new)
            keep = mt[:, None] > 0
            c = jnp.where(keep, c_new, c)
            h = jnp.where(keep, h_new, h)
            return (c, h), h

        zeros = jnp.zeros((batch, H), jnp.float32)
        _, x = jax.lax.scan(cell, (zeros, zeros), (x, m))
    logits = jnp.dot(x, params["output"]["kernel"], precision=hp) + params["output"]["bias"]
    return jnp.swapaxes(logits, 0, 1)


def make_reference_train_step(num_layers: int, normalization: str = "token"):
    """An unoptimised train step (no dropout) over the same TrainState."""

    def step(state, batch):
        def loss_fn(params):
            logits = reference_logits(params, batch.inputs, batch.mask, num_layers)
            return loss_lib.sequence_loss(logits, batch.targets, batch.mask, batch.lengths, normalization)

        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return state.replace(step=state.step + 1, params=params, opt_state=opt_state), loss

    return jax.jit(step)


def compare_with_reference(config, batches, steps: int, per_step: bool = False):
    """Max abs difference of the per-step losses, optimised vs reference (dropout off); with
    ``per_step`` the list of differences."""
    config = config.copy_and_resolve_references()
    config.dropout_rate = 0.0
    model, state = state_lib.create_train_state(config, jax.random.PRNGKey(0), 100)
    ref_state = jax.tree_util.tree_map(jnp.copy, state)  # train_step donates its state
    fast = steps_lib.make_train_step(model, config.loss_normalization)
    ref = make_reference_train_step(config.num_layers, config.loss_normalization)
    diffs = []
    for i in range(steps):
        batch = batches[i % len(batches)]
        state, loss = fast(state, batch, jax.random.PRNGKey(i))
        ref_state, ref_loss = ref(ref_state, batch)
        diffs.append(abs(float(loss) - float(ref_loss)))
    return diffs if per_step else max(diffs)


def gradient_difference(config, batch) -> float:
    """Max abs difference between the optimised model's and the reference's gradients at the
    initial parameters (dropout off): the cleanest check of the hand-written backward pass,
    since RMSprop's first steps (g / sqrt(0.1 g^2 + eps)) amplify float32 rounding in tiny
    gradient components into visibly different losses after a few steps."""
    config = config.copy_and_resolve_references()
    config.dropout_rate = 0.0
    model, state = state_lib.create_train_state(config, jax.random.PRNGKey(0), 100)

    def fast_loss(params):
        logits = model.apply({"params": params}, batch.inputs, mask=batch.mask)
        return loss_lib.sequence_loss(logits, batch.targets, batch.mask, batch.lengths)

    def ref_loss(params):
        logits = reference_logits(params, batch.inputs, batch.mask, config.num_layers)
        return loss_lib.sequence_loss(logits, batch.targets, batch.mask, batch.lengths)

    ga = jax.jit(jax.grad(fast_loss))(state.params)
    gb = jax.jit(jax.grad(ref_loss))(state.params)
    return max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree_util.tree_leaves(ga), jax.tree_util.tree_leaves(gb)))


# ---------------------------------------------------------------------------------------------
# PyTorch


def make_torch_step(hidden_size, num_layers, dropout_rate=0.5, device="cpu", autocast_bf16=False,
                    lr=0.003, clip=5.0):
    """A PyTorch nn.LSTM training step (RMSprop, global-norm clipping, dropout after each layer);
    with ``autocast_bf16`` the forward runs under ``torch.autocast(dtype=bfloat16)`` (float32
    master weights and optimiser, as ours)."""
    import contextlib

    import torch

    class TorchFolkRNN(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = torch.nn.LSTM(137, hidden_size, num_layers, dropout=dropout_rate)
            self.drop = torch.nn.Dropout(dropout_rate)
            self.out = torch.nn.Linear(hidden_size, 137)

        def forward(self, x):  # [time, batch, vocab]
            h, _ = self.lstm(x)
            return self.out(self.drop(h))

    torch.manual_seed(0)
    net = TorchFolkRNN().to(device)
    opt = torch.optim.RMSprop(net.parameters(), lr=lr, alpha=0.9, eps=1e-3)
    device_type = "cuda" if str(device).startswith("cuda") else "cpu"

    def to_torch(batch):
        x = torch.nn.functional.one_hot(torch.from_numpy(batch.inputs.T.astype(np.int64)), 137).float()
        y, m = torch.from_numpy(batch.targets.T.astype(np.int64)), torch.from_numpy(batch.mask.T)
        return x.to(device), y.to(device), m.to(device)

    def step(tb):
        x, y, m = tb
        opt.zero_grad(set_to_none=True)
        with contextlib.ExitStack() as ctx:
            if autocast_bf16:
                if step.onednn_off:
                    ctx.enter_context(torch.backends.mkldnn.flags(enabled=False))
                ctx.enter_context(torch.autocast(device_type, dtype=torch.bfloat16))
            try:
                logits = net(x)
            except RuntimeError as e:  # oneDNN has no bf16 LSTM primitive without avx512_bf16
                if not autocast_bf16 or step.onednn_off or "primitive" not in str(e):
                    raise
                step.onednn_off = True
                print("torch: oneDNN cannot run a bfloat16 LSTM here; autocast runs with oneDNN off "
                      "(the LSTM then stays float32, the output layer runs in bfloat16)", flush=True)
                return step(tb)
        nll = torch.nn.functional.cross_entropy(logits.float().reshape(-1, 137), y.reshape(-1), reduction="none")
        loss = (nll * m.reshape(-1)).sum() / m.sum().clamp(min=1.0)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
        opt.step()
        return float(loss.detach())  # waits for the device

    step.net = net
    step.onednn_off = False
    return step, to_torch


# ---------------------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _maxrss_mb() -> float:
    # VmHWM belongs to this address space; ru_maxrss is inherited across fork+exec on Linux,
    # so a subprocess would report its parent's peak.
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _memory_only(which: str) -> None:
    batch = synthetic_batch(FLAGS.batch_size, FLAGS.seq_len)
    out = {}
    if which == "jax":
        config = bench_config(FLAGS.hidden_size, FLAGS.num_layers, FLAGS.batch_size, FLAGS.unroll,
                              FLAGS.fused_backward, FLAGS.matmul_dtype, lstm_schedule=FLAGS.lstm_schedule)
        model, state = state_lib.create_train_state(config, jax.random.PRNGKey(0), 100)
        step = steps_lib.make_train_step(model, config.loss_normalization)
        jbatch = jax.device_put(batch)
        analysis = step.lower(state, jbatch, jax.random.PRNGKey(0)).compile().memory_analysis()
        if analysis is not None:
            out["xla_temp_mb"] = analysis.temp_size_in_bytes / 2**20
        base = _maxrss_mb()
        for i in range(2):
            state, loss = step(state, jbatch, jax.random.PRNGKey(i))
            loss.block_until_ready()
        stats = jax.devices()[0].memory_stats()  # None on CPU
        if stats and "peak_bytes_in_use" in stats:
            out["device_peak_mb"] = stats["peak_bytes_in_use"] / 2**20
    else:
        import torch

        step, to_torch = make_torch_step(FLAGS.hidden_size, FLAGS.num_layers, device=FLAGS.torch_device)
        tb = to_torch(batch)
        base = _maxrss_mb()
        for _ in range(2):
            step(tb)
        if FLAGS.torch_device.startswith("cuda"):
            out["device_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    out["peak_rss_mb"] = _maxrss_mb()
    out["peak_above_start_mb"] = out["peak_rss_mb"] - base
    print(json.dumps(out))


def _subprocess_memory(which: str) -> dict:
    args = [sys.executable, "-m", "benchmarks.train_bench", f"--memory_only={which}",
            f"--batch_size={FLAGS.batch_size}", f"--seq_len={FLAGS.seq_len}",
            f"--hidden_size={FLAGS.hidden_size}", f"--num_layers={FLAGS.num_layers}",
            f"--unroll={FLAGS.unroll}", f"--fused_backward={FLAGS.fused_backward}",
            f"--matmul_dtype={FLAGS.matmul_dtype}", f"--torch_device={FLAGS.torch_device}",
            f"--lstm_schedule={FLAGS.lstm_schedule}"]
    proc = subprocess.run(args, capture_output=True, text=True)
    if proc.returncode:
        return {"error": proc.stderr[-500:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv):
    del argv
    if FLAGS.memory_only:
        _memory_only(FLAGS.memory_only)
        return
    B, T = FLAGS.batch_size, FLAGS.seq_len
    batches = [synthetic_batch(B, T, seed) for seed in range(2)]
    tokens = int(batches[0].mask.sum())
    config = bench_config(FLAGS.hidden_size, FLAGS.num_layers, B, FLAGS.unroll, FLAGS.fused_backward,
                          FLAGS.matmul_dtype, lstm_schedule=FLAGS.lstm_schedule)

    model, state = state_lib.create_train_state(config, jax.random.PRNGKey(0), 100)
    jax_step = steps_lib.make_train_step(model, config.loss_normalization)
    jbatches = [jax.device_put(b) for b in batches]
    t0 = time.perf_counter()
    state, loss = jax_step(state, jbatches[0], jax.random.PRNGKey(0))
    loss.block_until_ready()
    compile_s = time.perf_counter() - t0

    if FLAGS.torch:
        import torch

        torch_step, to_torch = make_torch_step(FLAGS.hidden_size, FLAGS.num_layers, device=FLAGS.torch_device)
        tbatches = [to_torch(b) for b in batches]
        torch_step(tbatches[0])

    def time_jax(step_fn, state, n, offset):
        for i in range(FLAGS.round_warmup):
            state, loss = step_fn(state, jbatches[i % 2], jax.random.PRNGKey(offset - 1 - i))
        if FLAGS.round_warmup:
            loss.block_until_ready()
        t = time.perf_counter()
        for i in range(n):
            state, loss = step_fn(state, jbatches[i % 2], jax.random.PRNGKey(offset + i))
        loss.block_until_ready()
        return state, tokens * n / (time.perf_counter() - t)

    def time_torch(step_fn, n):
        for i in range(FLAGS.round_warmup):
            step_fn(tbatches[i % 2])
        t = time.perf_counter()
        for i in range(n):
            step_fn(tbatches[i % 2])
        return tokens * n / (time.perf_counter() - t)

    bf16 = {}
    if FLAGS.bf16:
        bf16_config = config.copy_and_resolve_references()
        bf16_config.matmul_dtype = "bfloat16"
        bf16_model, bf16_state = state_lib.create_train_state(bf16_config, jax.random.PRNGKey(0), 100)
        bf16["jax_step"] = steps_lib.make_train_step(bf16_model, config.loss_normalization)
        bf16["state"], loss = bf16["jax_step"](bf16_state, jbatches[0], jax.random.PRNGKey(0))
        if FLAGS.torch:
            bf16["torch_step"], _ = make_torch_step(FLAGS.hidden_size, FLAGS.num_layers, device=FLAGS.torch_device,
                                                    autocast_bf16=True)
            bf16["torch_step"](tbatches[0])

    rates = {"jax": [], "torch": [], "jax_bf16": [], "torch_bf16": []}
    ratios = []
    for r in range(FLAGS.rounds):
        state, jr = time_jax(jax_step, state, FLAGS.steps, 1000 * (r + 1))
        rates["jax"].append(jr)
        line = f"round {r}: jax {jr:.0f} tok/s"
        if FLAGS.torch:
            tr = time_torch(torch_step, FLAGS.steps)
            rates["torch"].append(tr)
            ratios.append(jr / tr)
            line += f", torch {tr:.0f} tok/s, ratio {jr / tr:.2f}"
        if bf16:
            bf16["state"], br = time_jax(bf16["jax_step"], bf16["state"], FLAGS.steps, 1000 * (r + 1))
            rates["jax_bf16"].append(br)
            line += f"; bf16: jax {br:.0f}"
            if FLAGS.torch:
                rates["torch_bf16"].append(time_torch(bf16["torch_step"], FLAGS.steps))
                line += f", torch autocast {rates['torch_bf16'][-1]:.0f}"
        print(line, flush=True)
    jax_rates, torch_rates = rates["jax"], rates["torch"]

    diffs = compare_with_reference(config, jbatches, FLAGS.numerics_steps, per_step=True)
    grad_diff = gradient_difference(config, jbatches[0])
    mem_jax = _subprocess_memory("jax")
    mem_torch = _subprocess_memory("torch") if FLAGS.torch else {}

    print()
    print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs visible, jax {jax.__version__} "
          f"({jax.devices()[0].platform}, {jax.device_count()} device(s))"
          + (f", torch {torch.__version__} ({torch.get_num_threads()} threads)" if FLAGS.torch else "")
          + f", GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', '(unset)')}"
          + f", OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}")
    print(f"model {FLAGS.num_layers}x{FLAGS.hidden_size}, vocab 137, batch {B}, seq_len {T}, "
          f"{tokens} real tokens/step, float32, unroll {FLAGS.unroll}, fused_backward {FLAGS.fused_backward}, "
          f"{FLAGS.rounds} rounds x {FLAGS.steps} steps (+{FLAGS.round_warmup} untimed), jax compile {compile_s:.1f} s")
    print()
    print("| framework | tokens/s (median) | per-round | peak RSS growth in steps (MB) |")
    print("|---|---|---|---|")
    print(f"| folkrnn_jax | {statistics.median(jax_rates):.0f} | {', '.join(f'{x:.0f}' for x in jax_rates)} | "
          f"{mem_jax.get('peak_above_start_mb', float('nan')):.0f} (XLA temp {mem_jax.get('xla_temp_mb', float('nan')):.0f}) |")
    if FLAGS.torch:
        print(f"| torch nn.LSTM | {statistics.median(torch_rates):.0f} | {', '.join(f'{x:.0f}' for x in torch_rates)} | "
              f"{mem_torch.get('peak_above_start_mb', float('nan')):.0f} |")
        print(f"\nratio jax/torch: median {statistics.median(ratios):.2f} (per round {', '.join(f'{x:.2f}' for x in ratios)})")
    if bf16:
        med = {k: statistics.median(v) for k, v in rates.items() if v}
        print("\n| contender | tokens/s (median) | per-round |")
        print("|---|---|---|")
        for k, v in rates.items():
            if v:
                print(f"| {k} | {med[k]:.0f} | {', '.join(f'{x:.0f}' for x in v)} |")
        print(f"\nratios of medians: ours f32 / torch f32 {med['jax'] / med.get('torch', float('nan')):.2f}; "
              f"ours bf16 / torch f32 {med['jax_bf16'] / med.get('torch', float('nan')):.2f}; "
              f"ours bf16 / torch bf16 autocast {med['jax_bf16'] / med.get('torch_bf16', float('nan')):.2f}; "
              f"ours bf16 / ours f32 {med['jax_bf16'] / med['jax']:.2f}")
    print(f"lstm_schedule {FLAGS.lstm_schedule} (resolved: {resolve_schedule(FLAGS.lstm_schedule)}), load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"numerics: |loss(optimised) - loss(reference)| per step: {', '.join(f'{d:.1e}' for d in diffs)}; "
          f"max |grad difference| at step 0: {grad_diff:.1e}")
    print(f"peak RSS of a 2-step run in its own process (MB): jax {mem_jax.get('peak_rss_mb', float('nan')):.0f}"
          + (f", torch {mem_torch.get('peak_rss_mb', float('nan')):.0f}" if FLAGS.torch else ""))
    if "device_peak_mb" in mem_jax or "device_peak_mb" in mem_torch:
        print(f"peak device memory (MB): jax {mem_jax.get('device_peak_mb', float('nan')):.0f}, "
              f"torch {mem_torch.get('device_peak_mb', float('nan')):.0f}")


if __name__ == "__main__":
    app.run(main)
