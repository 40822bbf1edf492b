"""Time to quality: folkrnn_jax and a PyTorch nn.LSTM training loop of the same size, recipe,
data, batches and initial weights, trained for the same wall time in one run; prints the
validation NLL each reached and the ratio of tokens trained.

    python -m benchmarks.time_to_loss [--minutes=5 --slice_seconds=45 --preset=small]

The two alternate in time slices (``--slice_seconds`` each, each framework keeping its own
state and its place in the batch order), so that both see the same machine load; the load
average is printed at every slice. Wall time counts everything a user waits for, XLA's
compilation of each new batch shape included (reported separately). Validation (the same
validation tunes for both, no dropout) runs after the budget, outside it.

Recipe (the ``--preset`` config): RMSprop (lr, decay 0.9; torch's eps sits outside the square
root, so 1e-3 = sqrt(1e-6) stands in for Lasagne's 1e-6 inside), global-norm clipping 5,
dropout after each LSTM layer, per-token loss normalisation. torch gets our initial weights
(same gate order; torch's second bias is zero). torch is not a project dependency
(benchmarks/requirements.txt); it is imported only in benchmarks/.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import time

import jax
import numpy as np
from absl import app, flags

from benchmarks.train_bench import cpu_model, make_torch_step
from folkrnn_jax.data import batching
from folkrnn_jax.model.lstm import resolve_schedule
from folkrnn_jax.training import loop
from folkrnn_jax.training import state as state_lib
from folkrnn_jax.training import steps as steps_lib

flags.DEFINE_string("preset", "small", "experiments/configs preset (recipe, size, data).")
flags.DEFINE_float("minutes", 5.0, "Training wall time per framework.")
flags.DEFINE_float("slice_seconds", 45.0, "Length of each alternating time slice.")
# (train_bench, imported for the torch loop, defines --hidden_size, --matmul_dtype ...: these
# flags have their own names.)
flags.DEFINE_integer("hidden", 0, "Override the preset's hidden size (0: keep).")
flags.DEFINE_integer("layers", 0, "Override the preset's number of layers (0: keep).")
flags.DEFINE_integer("batch", 0, "Override the preset's batch size (0: keep).")
flags.DEFINE_string("data", "", "Override the preset's data (comma-separated files).")
flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Ours: matmul dtype.")
flags.DEFINE_enum("schedule", "auto", ["auto", "layerwise", "wavefront"], "Ours: LSTM scan schedule.")
flags.DEFINE_enum("batching", "", ["", "packed", "bucketed"], "Ours: batching (default: the preset's).")
flags.DEFINE_integer("max_valid_batches", 0, "Validate on at most this many batches (0: all).")
FLAGS = flags.FLAGS


def make_config():
    config = importlib.import_module(f"experiments.configs.{FLAGS.preset}").get_config()
    for flag, name in (("hidden", "hidden_size"), ("layers", "num_layers"), ("batch", "batch_size"), ("data", "data_path")):
        if getattr(FLAGS, flag):
            config[name] = getattr(FLAGS, flag)
    config.matmul_dtype = FLAGS.dtype
    config.lstm_schedule = FLAGS.schedule
    if FLAGS.batching:
        config.batching = FLAGS.batching
    return config


def copy_weights_to_torch(params, net, num_layers: int) -> None:
    """Our parameters into the torch model (gate order (i, f, g, o) in both)."""
    import torch

    with torch.no_grad():
        for j in range(num_layers):
            getattr(net.lstm, f"weight_ih_l{j}").copy_(torch.from_numpy(np.asarray(params[f"lstm_{j}_w_in"]).T.copy()))
            getattr(net.lstm, f"weight_hh_l{j}").copy_(torch.from_numpy(np.asarray(params[f"lstm_{j}_w_hid"]).T.copy()))
            getattr(net.lstm, f"bias_ih_l{j}").copy_(torch.from_numpy(np.asarray(params[f"lstm_{j}_bias"])))
            getattr(net.lstm, f"bias_hh_l{j}").zero_()
        net.out.weight.copy_(torch.from_numpy(np.asarray(params["output"]["kernel"]).T.copy()))
        net.out.bias.copy_(torch.from_numpy(np.asarray(params["output"]["bias"])))


def torch_valid_nll(net, to_torch, batches) -> float:
    import torch

    net.eval()
    total, tokens = 0.0, 0.0
    with torch.inference_mode():
        for batch in batches:
            x, y, m = to_torch(batch)
            logits = net(x)
            nll = torch.nn.functional.cross_entropy(logits.reshape(-1, 137), y.reshape(-1), reduction="none")
            total += float((nll * m.reshape(-1)).sum())
            tokens += float(m.sum())
    net.train()
    return total / tokens


class Runner:
    """One framework's training state, its place in the batch order and its clock."""

    def __init__(self, name, step_fn, batch_iter):
        self.name, self.step_fn, self.batches = name, step_fn, batch_iter
        self.seconds = self.tokens = self.steps = 0
        self.first_shape_seconds = 0.0
        self.shapes: set = set()

    def run_for(self, seconds: float) -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            batch = next(self.batches)
            start = time.perf_counter()
            self.step_fn(batch, self.steps)
            took = time.perf_counter() - start
            self.seconds += took
            if batch.inputs.shape not in self.shapes:
                self.first_shape_seconds += took
                self.shapes.add(batch.inputs.shape)
            self.tokens += batch.num_tokens
            self.steps += 1


def main(argv):
    del argv
    import torch

    config = make_config()
    mix = loop.load_sequences(config)
    seqs = mix.train
    ours_batching = loop.batching_options(config, None)
    steps_per_epoch = batching.steps_per_epoch(seqs, ours_batching)
    valid = [b for seqs_ in mix.valid.values() for b in batching.evaluation_batches(seqs_, config.batch_size)]
    if FLAGS.max_valid_batches:
        valid = valid[: FLAGS.max_valid_batches]

    rng = jax.random.PRNGKey(config.seed)
    init_rng, dropout_rng, eval_rng = jax.random.split(rng, 3)
    model, state = state_lib.create_train_state(config, init_rng, steps_per_epoch)
    initial_params = jax.device_get(state.params)
    jax_train = steps_lib.make_train_step(model, config.loss_normalization)
    holder = {"state": state}

    def jax_step(batch, i):
        holder["state"], loss = jax_train(holder["state"], batch, jax.random.fold_in(dropout_rng, i))
        loss.block_until_ready()

    torch_step, to_torch = make_torch_step(config.hidden_size, config.num_layers, config.dropout_rate,
                                           lr=config.learning_rate, clip=config.grad_clip_norm)
    copy_weights_to_torch(initial_params, torch_step.net, config.num_layers)

    runners = [
        Runner("folkrnn_jax", jax_step, batching.training_batches(seqs, ours_batching)),
        # torch's nn.LSTM has no state reset inside a sequence: its batches stay bucketed.
        Runner("torch nn.LSTM", lambda batch, i: torch_step(to_torch(batch)),
               batching.training_batches(seqs, dataclasses.replace(ours_batching, kind="bucketed"))),
    ]
    budget = FLAGS.minutes * 60.0
    loads = [os.getloadavg()[0]]
    print(f"{FLAGS.preset}: {config.num_layers}x{config.hidden_size}, batch {config.batch_size}, dropout "
          f"{config.dropout_rate}, lr {config.learning_rate}, {len(seqs)} training tunes, {len(valid)} validation "
          f"batches; {FLAGS.minutes:g} min each in {FLAGS.slice_seconds:g} s slices; ours {config.matmul_dtype}, "
          f"lstm_schedule {resolve_schedule(config.lstm_schedule)}, {ours_batching.kind} batches "
          f"(packed_length {ours_batching.packed_length})", flush=True)
    while any(r.seconds < budget for r in runners):
        for r in runners:
            if r.seconds < budget:
                r.run_for(min(FLAGS.slice_seconds, budget - r.seconds))
                loads.append(os.getloadavg()[0])
                print(f"  {r.name}: {r.seconds:.0f} s, {r.steps} steps, {r.tokens} tokens, load {loads[-1]:.2f}",
                      flush=True)

    eval_step = steps_lib.make_eval_step(model)
    ours = steps_lib.evaluate(eval_step, holder["state"].params, valid, eval_rng)["valid_loss"]
    theirs = torch_valid_nll(torch_step.net, to_torch, valid)
    print()
    print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs, jax {jax.__version__}, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads); load average during the run: mean {np.mean(loads):.2f}, "
          f"min {min(loads):.2f}, max {max(loads):.2f}")
    print("| framework | wall s | steps | tokens | tokens/s | first-of-shape steps s | valid NLL (nats/token) |")
    print("|---|---|---|---|---|---|---|")
    for r, nll in zip(runners, (ours, theirs)):
        print(f"| {r.name} | {r.seconds:.0f} | {r.steps} | {r.tokens} | {r.tokens / r.seconds:.0f} | "
              f"{r.first_shape_seconds:.0f} | {nll:.4f} |")
    print(f"\ntokens trained ours/torch: {runners[0].tokens / max(runners[1].tokens, 1):.2f}; "
          f"valid NLL ours - torch: {ours - theirs:+.4f} ({'ours lower' if ours < theirs else 'torch lower'})")


if __name__ == "__main__":
    app.run(main)
