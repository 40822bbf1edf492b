"""Training state, jit-compiled train/eval steps, and the train-and-evaluate loop."""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any, Callable, Iterable

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging

from folkrnn_jax import checkpoints, data, model as model_lib, parallel

Array = jax.Array


class TrainState(flax.struct.PyTreeNode):
    step: Array
    params: Any
    opt_state: Any
    tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)


# ---------------------------------------------------------------------------------------------
# Optimiser


def learning_rate_schedule(config: ml_collections.ConfigDict, steps_per_epoch: int) -> optax.Schedule:
    """The v2 schedule: constant, then x``lr_decay`` per epoch after ``lr_decay_after_epochs``."""
    if config.lr_decay == 1.0:
        return optax.constant_schedule(config.learning_rate)
    return optax.exponential_decay(
        config.learning_rate,
        transition_steps=steps_per_epoch,
        decay_rate=config.lr_decay,
        transition_begin=config.lr_decay_after_epochs * steps_per_epoch,
        staircase=True,
    )


def make_optimizer(config: ml_collections.ConfigDict, steps_per_epoch: int) -> optax.GradientTransformation:
    """RMSprop (epsilon inside the square root, as Lasagne) behind optional global-norm clipping."""
    rmsprop = optax.inject_hyperparams(optax.rmsprop)(
        learning_rate=learning_rate_schedule(config, steps_per_epoch),
        decay=config.rmsprop_decay,
        eps=config.rmsprop_eps,
    )
    if config.grad_clip_norm > 0:
        return optax.chain(optax.clip_by_global_norm(config.grad_clip_norm), rmsprop)
    return rmsprop


def current_learning_rate(opt_state: Any) -> Array:
    """The rate the last update used, read from the inject_hyperparams state."""
    injected = (optax.InjectHyperparamsState, optax.InjectStatefulHyperparamsState)
    for state in jax.tree_util.tree_leaves(opt_state, is_leaf=lambda s: isinstance(s, injected)):
        if isinstance(state, injected):
            return state.hyperparams["learning_rate"]
    raise ValueError("optimizer state has no injected learning rate")


def optimizer_state_at(config: ml_collections.ConfigDict, params: Any, step: int) -> Any:
    """An optimiser state for ``params`` trained elsewhere (an imported checkpoint): zero
    RMSprop statistics, as a fresh Lasagne run has, and the learning-rate schedule at ``step``,
    so that training resumes at the rate of that point of the recipe."""
    tx = make_optimizer(config, steps_per_epoch=1)  # the schedule's shape does not enter the state
    state = tx.init(jax.tree_util.tree_map(jnp.asarray, params))
    injected = (optax.InjectHyperparamsState, optax.InjectStatefulHyperparamsState)
    return jax.tree_util.tree_map(
        lambda s: s._replace(count=jnp.asarray(step, s.count.dtype)) if isinstance(s, injected) else s,
        state, is_leaf=lambda s: isinstance(s, injected),
    )


def create_train_state(
    config: ml_collections.ConfigDict, rng: Array, steps_per_epoch: int
) -> tuple[model_lib.FolkRNN, TrainState]:
    model = model_lib.model_from_config(config)
    params = model.init(rng, jnp.zeros((1, 2), jnp.int32))["params"]
    tx = make_optimizer(config, steps_per_epoch)
    return model, TrainState(step=jnp.asarray(0, jnp.int32), params=params, opt_state=tx.init(params), tx=tx)


# ---------------------------------------------------------------------------------------------
# Loss and steps


def token_nll(logits: Array, targets: Array) -> Array:
    """Negative log-likelihood of each target token, [batch, time]."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, targets)


def sequence_loss(
    logits: Array, targets: Array, mask: Array, lengths: Array, normalization: str = "token"
) -> Array:
    """Mean NLL over real tokens (``token``), or each tune's summed NLL divided by its full
    length including ``<s>`` and ``</s>`` and then averaged over tunes (``tune``, as the
    original computed it). Padding never counts."""
    nll = token_nll(logits, targets) * mask  # [batch, time]
    if normalization == "token":
        return nll.sum() / jnp.maximum(mask.sum(), 1.0)
    if normalization == "tune":
        real = (mask.sum(axis=1) > 0).astype(nll.dtype)  # [batch]
        per_tune = nll.sum(axis=1) / jnp.maximum(lengths, 1)
        return (per_tune * real).sum() / jnp.maximum(real.sum(), 1.0)
    raise ValueError(f"unknown loss normalization {normalization!r} (use 'token' or 'tune')")


def make_train_step(
    model: model_lib.FolkRNN, normalization: str, mesh: jax.sharding.Mesh | None = None
) -> Callable:
    """A jit-compiled step: forward with dropout, backward, optimiser update. The state is
    donated (updated in place). With a ``mesh``, the batch is sharded along its 'data' axis and
    the state replicated (see ``parallel``)."""

    def train_step(state: TrainState, batch: dict, dropout_key: Array) -> tuple[TrainState, Array]:
        def loss_fn(params):
            logits = model.apply(
                {"params": params}, batch["inputs"], train=True, mask=batch["mask"],
                rngs={"dropout": dropout_key},
            )  # [batch, time, vocab]
            return sequence_loss(logits, batch["targets"], batch["mask"], batch["lengths"], normalization)

        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return state.replace(step=state.step + 1, params=params, opt_state=opt_state), loss

    if mesh is None:
        return jax.jit(train_step, donate_argnums=(0,))
    rep, shard = parallel.replicated(mesh), parallel.data_sharding(mesh)
    return jax.jit(
        train_step, donate_argnums=(0,), in_shardings=(rep, shard, rep), out_shardings=(rep, rep)
    )


def make_eval_step(
    model: model_lib.FolkRNN, dropout: bool = False, mesh: jax.sharding.Mesh | None = None
) -> Callable:
    """A jit-compiled step returning summed NLL, token count, summed per-tune-normalised NLL
    and tune count, so that any number of batches can be combined exactly."""

    def eval_step(params: Any, batch: dict, dropout_key: Array) -> dict:
        logits = model.apply(
            {"params": params}, batch["inputs"], train=dropout, mask=batch["mask"],
            rngs={"dropout": dropout_key},
        )
        nll = token_nll(logits, batch["targets"]) * batch["mask"]
        real = (batch["mask"].sum(axis=1) > 0).astype(nll.dtype)
        return {
            "nll_sum": nll.sum(),
            "tokens": batch["mask"].sum(),
            "tune_nll_sum": (nll.sum(axis=1) / jnp.maximum(batch["lengths"], 1) * real).sum(),
            "tunes": real.sum(),
        }

    if mesh is None:
        return jax.jit(eval_step)
    rep, shard = parallel.replicated(mesh), parallel.data_sharding(mesh)
    return jax.jit(eval_step, in_shardings=(rep, shard, rep), out_shardings=rep)


def batch_to_dict(batch: data.Batch) -> dict:
    return {"inputs": batch.inputs, "targets": batch.targets, "mask": batch.mask, "lengths": batch.lengths}


def evaluate(
    eval_step: Callable, params: Any, batches: Iterable[data.Batch], key: Array,
    mesh: jax.sharding.Mesh | None = None,
) -> dict:
    """Validation NLL in nats per token, per-tune-normalised NLL, and perplexity."""
    totals = {"nll_sum": 0.0, "tokens": 0.0, "tune_nll_sum": 0.0, "tunes": 0.0}
    for i, batch in enumerate(batches):
        out = eval_step(params, parallel.shard_batch(batch_to_dict(batch), mesh), jax.random.fold_in(key, i))
        for k in totals:
            totals[k] += float(out[k])
    per_token = totals["nll_sum"] / max(totals["tokens"], 1.0)
    return {
        "valid_loss": per_token,
        "valid_loss_per_tune": totals["tune_nll_sum"] / max(totals["tunes"], 1.0),
        "valid_perplexity": math.exp(per_token),
        "valid_tokens": int(totals["tokens"]),
    }


# ---------------------------------------------------------------------------------------------
# The loop


def load_sequences(config: ml_collections.ConfigDict) -> data.TrainingMix:
    """The training mix of ``config.data_path`` (one file or several, comma-separated)."""
    mix = data.load_training_mix(
        config.data_path, config.valid_fraction, config.batch_size, seed=config.split_seed,
        max_length=config.get("max_tune_length", 0),
    )
    if len(mix.train) < config.batch_size:
        raise ValueError(
            f"{config.data_path}: {len(mix.train)} training tunes, fewer than one batch of "
            f"{config.batch_size}; lower --config.batch_size or use more data"
        )
    return mix


def evaluate_sources(
    eval_step: Callable, params: Any, batches: dict[str, list[data.Batch]], key: Array,
    mesh: jax.sharding.Mesh | None = None,
) -> dict:
    """``evaluate`` over all validation batches together (``valid_loss`` ...) and, when there
    are several sources, per source as ``valid_loss/NAME`` and ``valid_loss_per_tune/NAME``."""
    combined = evaluate(eval_step, params, [b for bs in batches.values() for b in bs], key, mesh)
    if len(batches) > 1:
        for name, source_batches in batches.items():
            m = evaluate(eval_step, params, source_batches, key, mesh)
            combined[f"valid_loss/{name}"] = m["valid_loss"]
            combined[f"valid_loss_per_tune/{name}"] = m["valid_loss_per_tune"]
    return combined


class MetricsWriter:
    """Appends one JSON object per line to ``workdir/metrics.jsonl``. On resume, records
    past the restored step are dropped, since the resumed run writes them again."""

    def __init__(self, workdir: str, restored_step: int):
        self.path = os.path.join(workdir, "metrics.jsonl")
        if os.path.exists(self.path):
            with open(self.path) as f:
                kept = [line for line in f if line.strip() and json.loads(line)["step"] <= restored_step]
            tmp = self.path + ".tmp"
            with open(tmp, "w") as f:
                f.writelines(kept)
            os.replace(tmp, self.path)

    def write(self, record: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")


def read_metrics(workdir: str) -> list[dict]:
    path = os.path.join(workdir, "metrics.jsonl")
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> TrainState:
    """Train on ``config.data_path``, evaluating, logging and checkpointing into ``workdir``.
    Started again with the same workdir, it resumes from the latest checkpoint."""
    parallel.maybe_initialize_distributed(config)
    os.makedirs(workdir, exist_ok=True)
    mesh = parallel.mesh_from_config(config)
    parallel.check_batch_size(config.batch_size, mesh)
    if mesh is not None:
        logging.info("data parallel over %d devices (%d processes)", mesh.size, jax.process_count())
    mix = load_sequences(config)
    train_seqs = mix.train
    steps_per_epoch = len(train_seqs) // config.batch_size
    total_steps = config.num_train_steps or config.num_epochs * steps_per_epoch
    logging.info(
        "data %s: %d training tunes, %d validation tunes, %d steps per epoch, %d steps",
        config.data_path, len(train_seqs), len(mix.all_valid), steps_per_epoch, total_steps,
    )

    rng = jax.random.PRNGKey(config.seed)
    init_rng, dropout_rng, eval_rng = jax.random.split(rng, 3)
    model, state = create_train_state(config, init_rng, steps_per_epoch)
    state = parallel.replicate(state, mesh)
    logging.info("model: %d parameters", model_lib.count_params(state.params))

    manager = checkpoints.make_manager(workdir, config.max_checkpoints_to_keep)
    checkpoints.save_config(workdir, config)
    state = checkpoints.restore_latest(manager, state)
    start_step = int(state.step)
    if start_step:
        logging.info("resumed from the checkpoint at step %d", start_step)
    metrics = MetricsWriter(workdir, start_step)

    train_step = make_train_step(model, config.loss_normalization, mesh)
    eval_step = make_eval_step(model, dropout=config.eval_dropout, mesh=mesh)
    valid_batches = {
        name: data.evaluation_batches(seqs, config.batch_size) for name, seqs in mix.valid.items()
    }

    step = start_step
    window_losses: list[Array] = []
    window_tokens = 0
    window_start = time.time()
    time_budget = config.get("max_train_seconds", 0)
    trained_seconds, compiled_shapes = 0.0, set()
    out_of_time = False
    while step < total_steps and not out_of_time:
        epoch = step // steps_per_epoch
        batches = data.epoch_batches(train_seqs, config.batch_size, config.seed, epoch)
        for indices in batches[step - epoch * steps_per_epoch :]:
            if step >= total_steps:
                break
            batch = data.make_batch([train_seqs[i] for i in indices])
            step_start = time.time()
            state, loss = train_step(
                state, parallel.shard_batch(batch_to_dict(batch), mesh), jax.random.fold_in(dropout_rng, step)
            )
            step += 1
            window_losses.append(loss)
            window_tokens += batch.num_tokens
            if time_budget:
                # The budget counts training time, not compilation: a step of a batch shape
                # seen before counts, the first step of each shape (compile + run) does not,
                # so that short runs of different sizes compare what the same compute buys.
                jax.block_until_ready(loss)
                if batch.inputs.shape in compiled_shapes:
                    trained_seconds += time.time() - step_start
                compiled_shapes.add(batch.inputs.shape)
            out_of_time = bool(time_budget) and trained_seconds > time_budget
            is_last = step == total_steps or out_of_time
            end_of_epoch = step % steps_per_epoch == 0
            record = {}
            if step % config.log_every_steps == 0 or is_last:
                # Reading the losses waits for the steps to finish, so the clock is read after.
                train_loss = float(np.mean(jax.device_get(window_losses)))
                elapsed = time.time() - window_start
                record.update(
                    train_loss=train_loss,
                    learning_rate=float(current_learning_rate(state.opt_state)),
                    tokens_per_s=window_tokens / max(elapsed, 1e-9),
                )
                window_losses, window_tokens = [], 0
            if valid_batches and (
                is_last
                or end_of_epoch
                or (config.eval_every_steps and step % config.eval_every_steps == 0)
            ):
                record.update(evaluate_sources(eval_step, state.params, valid_batches, eval_rng, mesh))
            if record:
                record = {"step": step, "epoch": step / steps_per_epoch, **record}
                if jax.process_index() == 0:
                    metrics.write(record)
                logging.info(
                    "step %d/%d epoch %.2f %s", step, total_steps, record["epoch"],
                    " ".join(f"{k} {v:.4g}" for k, v in record.items() if k not in ("step", "epoch")),
                )
            if step % config.checkpoint_every_steps == 0 or is_last:
                checkpoints.save(manager, step, state)
            if "train_loss" in record:
                window_start = time.time()  # evaluation and saving do not count as training time
            if out_of_time:
                logging.info("stopping at step %d: max_train_seconds=%s reached", step, time_budget)
                break
    manager.wait_until_finished()
    manager.close()
    return state
