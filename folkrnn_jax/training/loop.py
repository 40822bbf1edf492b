"""The train-and-evaluate loop: data, steps, evaluation, metrics and checkpoints, resumable."""

from __future__ import annotations

import os
import time

import jax
import ml_collections
import numpy as np
from absl import logging

from folkrnn_jax.data import batching
from folkrnn_jax.data.mix import TrainingMix, load_training_mix
from folkrnn_jax.errors import InputError
from folkrnn_jax.model import folkrnn, lstm
from folkrnn_jax.training import checkpoints, parallel
from folkrnn_jax.training.metrics import MetricsWriter, epochs_without_improvement, read_metrics
from folkrnn_jax.training.state import Array, TrainState, create_train_state, current_learning_rate
from folkrnn_jax.training.steps import batch_to_dict, evaluate_sources, make_eval_step, make_train_step


def load_sequences(config: ml_collections.ConfigDict) -> TrainingMix:
    """The training mix of ``config.data_path`` (one file or several, comma-separated)."""
    mix = load_training_mix(
        config.data_path, config.valid_fraction, config.batch_size, seed=config.split_seed,
        max_length=config.get("max_tune_length", 0), drop_duplicates=config.get("drop_duplicates", False),
    )
    if len(mix.train) < config.batch_size:
        raise InputError(
            f"{config.data_path}: {len(mix.train)} training tunes, fewer than one batch of "
            f"{config.batch_size}; lower --config.batch_size or use more data"
        )
    return mix


# Config fields that must be at least 1 (a 0 would divide by zero or build an empty model).
POSITIVE_FIELDS = ("batch_size", "num_layers", "hidden_size", "log_every_steps", "checkpoint_every_steps",
                   "max_checkpoints_to_keep")


def progress_bar(step: int, total: int, width: int = 20) -> str:
    """``step 120/500 [####................] 24%``: the console's progress line starts so."""
    done = int(width * step / max(total, 1))
    return f"step {step}/{total} [{'#' * done}{'.' * (width - done)}] {100 * step // max(total, 1)}%"


def time_left(seconds: float, steps_done: int, steps_left: int) -> str:
    """``, about 3m20s left`` at the pace of the steps run so far in this invocation."""
    if steps_done <= 0 or steps_left <= 0:
        return ""
    left = int(seconds / steps_done * steps_left)
    return f", about {left // 60}m{left % 60:02d}s left" if left >= 60 else f", about {left}s left"


def check_config(config: ml_collections.ConfigDict) -> None:
    """Refuse config values that cannot train, naming the ``--config.FIELD`` flag.

    Args:
      config: the training config.

    Raises:
      InputError: a field that must be positive is not, a share is outside [0, 1), or neither
        ``num_epochs`` nor ``num_train_steps`` asks for any step.
    """
    for name in POSITIVE_FIELDS:
        if name in config and config[name] < 1:
            raise InputError(f"--config.{name} must be at least 1, got {config[name]}")
    for name in ("dropout_rate", "valid_fraction"):
        if name in config and not 0 <= config[name] < 1:
            raise InputError(f"--config.{name} must be in [0, 1), got {config[name]}")
    if config.get("num_train_steps", 0) < 0 or config.get("num_epochs", 1) < 0:
        raise InputError("--config.num_epochs and --config.num_train_steps cannot be negative")
    if config.get("num_train_steps", 0) == 0 and config.get("num_epochs", 1) == 0:
        raise InputError("--config.num_epochs is 0 and --config.num_train_steps is 0: nothing to train")
    if config.get("learning_rate", 1.0) <= 0:
        raise InputError(f"--config.learning_rate must be positive, got {config.learning_rate}")
    if config.get("lstm_schedule", "auto") not in lstm.SCHEDULES:
        raise InputError(f"--config.lstm_schedule must be one of {', '.join(lstm.SCHEDULES)}, got {config.lstm_schedule!r}")


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> TrainState:
    """Train on ``config.data_path``, evaluating, logging and checkpointing into ``workdir``.
    Started again with the same workdir, it resumes from the latest checkpoint."""
    check_config(config)
    # "auto" becomes the schedule that runs here, so that config.json records it.
    config = folkrnn.with_resolved_schedule(config)
    parallel.maybe_initialize_distributed(config)
    os.makedirs(workdir, exist_ok=True)
    # Held until this function returns: a second training on the workdir stops here.
    _workdir_lock = checkpoints.lock_workdir(workdir)
    checkpoints.check_resume_config(workdir, config)
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
    logging.info("model: %d parameters", folkrnn.count_params(state.params))

    manager = checkpoints.make_manager(workdir, config.max_checkpoints_to_keep)
    checkpoints.save_config(workdir, config)
    state = checkpoints.restore_latest(manager, state)
    start_step = int(state.step)
    if start_step:
        logging.info("resumed from the checkpoint at step %d", start_step)
    metrics = MetricsWriter(workdir, start_step)
    # Early stopping watches one validation metric; its history survives a resume.
    patience = config.get("early_stopping_epochs", 0)
    watched = config.get("early_stopping_metric", "valid_loss")
    history = read_metrics(workdir) if start_step and os.path.exists(metrics.path) else []

    train_step = make_train_step(model, config.loss_normalization, mesh)
    eval_step = make_eval_step(model, dropout=config.eval_dropout, mesh=mesh)
    valid_batches = {
        name: batching.evaluation_batches(seqs, config.batch_size) for name, seqs in mix.valid.items()
    }

    window_losses: list[Array] = []
    window_tokens = 0
    window_start = run_start = time.time()
    time_budget = config.get("max_train_seconds", 0)
    trained_seconds, compiled_shapes = 0.0, set()
    batches = batching.batches_from(train_seqs, config.batch_size, config.seed, start_step)
    for step, indices in zip(range(start_step + 1, total_steps + 1), batches):
        # ``step`` counts the steps done once this one has run, as ``state.step`` will.
        batch = batching.make_batch([train_seqs[i] for i in indices])
        step_start = time.time()
        state, loss = train_step(
            state, parallel.shard_batch(batch_to_dict(batch), mesh), jax.random.fold_in(dropout_rng, step - 1)
        )
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
            is_last or end_of_epoch or (config.eval_every_steps and step % config.eval_every_steps == 0)
        ):
            record.update(evaluate_sources(eval_step, state.params, valid_batches, eval_rng, mesh))
        if record:
            record = {"step": step, "epoch": step / steps_per_epoch, **record}
            if jax.process_index() == 0:
                metrics.write(record)
            logging.info(
                "%s epoch %.2f %s%s", progress_bar(step, total_steps), record["epoch"],
                " ".join(f"{k} {v:.4g}" for k, v in record.items() if k not in ("step", "epoch")),
                time_left(time.time() - run_start, step - start_step, total_steps - step),
            )
        stop_early = False
        if patience and watched in record:
            history.append(record)
            best, stale = epochs_without_improvement(history, watched)
            stop_early = stale >= patience
        if step % config.checkpoint_every_steps == 0 or is_last or stop_early:
            checkpoints.save(manager, step, state)
        if "train_loss" in record:
            window_start = time.time()  # evaluation and saving do not count as training time
        if out_of_time:
            logging.info("stopping at step %d: max_train_seconds=%s reached", step, time_budget)
            break
        if stop_early:
            logging.info("stopping at step %d: %s has not improved on %.4f for %g epochs",
                         step, watched, best, patience)
            break
    manager.wait_until_finished()
    manager.close()
    return state
