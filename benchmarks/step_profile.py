"""Where a training step's time goes: the full jit train step against its parts, timed in the
same process in alternating rounds (medians).

    python -m benchmarks.step_profile [--hidden_size=512 --batch_size=64 --seq_len=160]

Parts, each one jit-compiled function on the same shapes:

* ``step``: forward + hand-written backward + RMSprop (``training.steps.make_train_step``);
* ``forward``: the loss alone (no gradient);
* ``recurrent GEMMs``: only the recurrent matmuls of the step in a ``lax.scan`` of the same
  length (forward h @ W_hid and backward dz @ W_hid^T for every layer and time step, nothing
  else), i.e. the part no schedule can hoist out of the loop;
* ``hoisted GEMMs``: the matmuls outside the loop (layer inputs, weight gradients, output);

for ``--dtypes`` (float32 and bfloat16 matmul inputs) and ``--schedules``. What is left of the
step after the two GEMM parts is the loop's bookkeeping (gates, masks, slicing, carries).
"""

from __future__ import annotations

import os
import statistics
import time

import jax
import jax.numpy as jnp
from absl import app, flags

from benchmarks.train_bench import bench_config, synthetic_batch
from folkrnn_jax.training import loss as loss_lib
from folkrnn_jax.training import state as state_lib
from folkrnn_jax.training import steps as steps_lib

# --hidden_size, --num_layers, --batch_size, --seq_len and --rounds are train_bench's flags.
flags.DEFINE_integer("reps", 2, "Calls per timing.")
flags.DEFINE_list("dtypes", ["float32", "bfloat16"], "Matmul dtypes.")
flags.DEFINE_list("schedules", ["layerwise", "wavefront"], "LSTM schedules (full step and forward only).")
FLAGS = flags.FLAGS


def _gemm_parts(H: int, L: int, B: int, T: int, dtype):
    key = jax.random.PRNGKey(0)
    w = jax.random.normal(key, (L, H, 4 * H)).astype(dtype)
    acc = jnp.float32
    prec = jax.lax.Precision.HIGHEST if dtype == jnp.float32 else None

    @jax.jit
    def recurrent(h0):
        def fwd(h, _):
            z = jnp.einsum("lbh,lhn->lbn", h.astype(dtype), w, preferred_element_type=acc, precision=prec)
            return jnp.tanh(z[..., :H]), None

        def bwd(d, _):
            z = jnp.concatenate([d] * 4, axis=-1)
            return jnp.einsum("lbn,lhn->lbh", z.astype(dtype), w, preferred_element_type=acc, precision=prec), None

        h, _ = jax.lax.scan(fwd, h0, None, length=T)
        d, _ = jax.lax.scan(bwd, h, None, length=T)
        return d

    @jax.jit
    def hoisted(xs):
        # Layer inputs (L-1) [T*B, H] @ [H, 4H]; weight gradients 2L-1 [H, T*B] @ [T*B, 4H];
        # output layer and its gradients 3 x [T*B, H] @ [H, 137]-sized.
        x = xs.reshape(T * B, H).astype(dtype)
        dz = jnp.tile(x, (1, 4))  # stands in for the gate gradients [T*B, 4H]
        wo = w[0, :, :137]
        out = 0.0
        for j in range(L - 1):
            out = out + jnp.dot(x, w[j], preferred_element_type=acc, precision=prec).sum()
        for _ in range(2 * L - 1):
            out = out + jnp.dot(x.T, dz, preferred_element_type=acc, precision=prec).sum()
        for _ in range(3):
            out = out + jnp.dot(x, wo, preferred_element_type=acc, precision=prec).sum()
        return out

    h0 = jnp.ones((L, B, H), jnp.float32) * 0.01
    xs = jnp.ones((T, B, H), jnp.float32) * 0.01
    return {"recurrent GEMMs": lambda: recurrent(h0), "hoisted GEMMs": lambda: hoisted(xs)}


def main(argv):
    del argv
    H, L, B, T = FLAGS.hidden_size, FLAGS.num_layers, FLAGS.batch_size, FLAGS.seq_len
    batch = jax.device_put(synthetic_batch(B, T, 0))
    parts = {}
    for dtype in FLAGS.dtypes:
        for schedule in FLAGS.schedules:
            config = bench_config(H, L, B, unroll=1, matmul_dtype=dtype, lstm_schedule=schedule)
            model, state = state_lib.create_train_state(config, jax.random.PRNGKey(0), 100)
            step = steps_lib.make_train_step(model, config.loss_normalization)
            holder = {"state": state}

            def run_step(step=step, holder=holder):
                holder["state"], loss = step(holder["state"], batch, jax.random.PRNGKey(1))
                return loss

            fwd = jax.jit(lambda p, model=model: loss_lib.sequence_loss(
                model.apply({"params": p}, batch.inputs, train=True, mask=batch.mask,
                            rngs={"dropout": jax.random.PRNGKey(1)}),
                batch.targets, batch.mask, batch.lengths))
            parts[(dtype, f"step {schedule}")] = run_step
            parts[(dtype, f"forward {schedule}")] = lambda fwd=fwd, holder=holder: fwd(holder["state"].params)
        for name, fn in _gemm_parts(H, L, B, T, jnp.dtype(dtype)).items():
            parts[(dtype, name)] = fn
    for fn in parts.values():
        jax.block_until_ready(fn())
    times = {k: [] for k in parts}
    loads = []
    for _ in range(FLAGS.rounds):
        for k, fn in parts.items():
            start = time.perf_counter()
            for _ in range(FLAGS.reps):
                out = fn()
            jax.block_until_ready(out)
            times[k].append((time.perf_counter() - start) / FLAGS.reps)
        loads.append(os.getloadavg()[0])
    print(f"{L}x{H}, batch {B}, seq_len {T}, jax {jax.__version__} ({jax.default_backend()}), "
          f"load average {statistics.mean(loads):.2f} during the timings")
    print("| dtype | part | ms (median) | per round |\n|---|---|---|---|")
    for (dtype, name), ts in times.items():
        print(f"| {dtype} | {name} | {1000 * statistics.median(ts):.0f} | {', '.join(f'{1000 * t:.0f}' for t in ts)} |")


if __name__ == "__main__":
    app.run(main)
