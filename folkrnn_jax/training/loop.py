"""The train-and-evaluate loop: data, steps, evaluation, metrics and checkpoints, resumable."""

from __future__ import annotations

import os
import time

import jax
import ml_collections
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from folkrnn_jax.data import batching
from folkrnn_jax.data.mix import TrainingMix, load_training_mix
from folkrnn_jax.errors import InputError
from folkrnn_jax.model import folkrnn, lstm
from folkrnn_jax.training import checkpoints, parallel, rundir
from folkrnn_jax.training.metrics import MetricsWriter, epochs_without_improvement, read_metrics
from folkrnn_jax.training.state import Array, TrainState, create_train_state, current_learning_rate
from folkrnn_jax.training.steps import evaluate_sources, make_eval_step, make_train_step


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
                   "max_checkpoints_to_keep", "packed_length")


def progress_bar(step: int, total: int, width: int = 20) -> str:
    """``step 120/500 [####................] 24%``: the console's progress line starts so."""
    done = int(width * step / max(total, 1))
    return f"step {step}/{total} [{'#' * done}{'.' * (width - done)}] {100 * step // max(total, 1)}%"


def duration(seconds: float) -> str:
    """``45s``, ``3m20s`` or ``2h05m``."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def time_left(seconds: float, steps_measured: int, steps_left: int) -> str:
    """``, about 3m20s left`` at the pace of the measured steps (those that did not compile)
    of this invocation; empty before the first one."""
    if steps_measured <= 0 or steps_left <= 0:
        return ""
    return f", about {duration(seconds / steps_measured * steps_left)} left"


# What the console shows of a metrics record, in this order: field -> label (plain numbers;
# metrics.jsonl keeps every field at full precision).
CONSOLE_FIELDS = {"train_loss": "loss", "valid_loss": "valid", "valid_loss_per_tune": "valid/tune"}


def console_line(record: dict, total_steps: int, left: str) -> str:
    """The progress line of a metrics record: ``step 100/500 [####....] 20% epoch 1.28 loss
    2.345 valid 2.101 43,440 tok/s lr 0.003, about 3m20s left``."""
    parts = [progress_bar(record["step"], total_steps), f"epoch {record['epoch']:.2f}"]
    parts += [f"{label} {record[key]:.3f}" for key, label in CONSOLE_FIELDS.items() if key in record]
    parts += [f"valid {key.split('/', 1)[1]} {value:.3f}" for key, value in record.items()
              if key.startswith("valid_loss/")]
    if "tokens_per_s" in record:
        parts.append(f"{record['tokens_per_s']:,.0f} tok/s")
    if "learning_rate" in record:
        parts.append(f"lr {record['learning_rate']:.3g}")
    return " ".join(parts) + left


def run_summary(workdir: str, history: list[dict], last_step: int, checkpoint_dir: str) -> str:
    """The lines that close a training run: best and last validation loss, where the
    checkpoint is, and the command that samples from it."""
    lines = []
    valid = [r for r in history if "valid_loss" in r]
    if valid:
        best = min(valid, key=lambda r: (r["valid_loss"], r["step"]))
        lines.append(f"validation loss: best {best['valid_loss']:.4f} (step {best['step']}), "
                     f"last {valid[-1]['valid_loss']:.4f} (step {valid[-1]['step']})")
    else:
        lines.append("validation loss: none measured (no validation tunes)")
    lines.append(f"checkpoint: {os.path.join(checkpoint_dir, str(last_step))}")
    lines.append(f"sample from it: python -m experiments.sample --workdir={workdir} --num_tunes=10")
    return "\n".join(lines)


def check_config(config: ml_collections.ConfigDict) -> None:
    """Refuse config values that cannot train, naming the ``--config.FIELD`` flag.

    Args:
      config: the training config.

    Raises:
      InputError: a field that must be positive is not, a share is outside [0, 1), neither
        ``num_epochs`` nor ``num_train_steps`` asks for any step, or the batching is unknown
        or packed with per-tune loss normalisation.
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
    kind = config.get("batching", "bucketed")
    if kind not in batching.BATCHING_KINDS:
        raise InputError(f"--config.batching must be one of {', '.join(batching.BATCHING_KINDS)}, got {kind!r}")
    if kind == "packed" and config.get("loss_normalization", "token") != "token":
        raise InputError("--config.batching=packed needs --config.loss_normalization=token (a packed row holds "
                         "several tunes); use --config.batching=bucketed for per-tune normalisation")
    if config.get("lstm_schedule", "auto") not in lstm.SCHEDULES:
        raise InputError(f"--config.lstm_schedule must be one of {', '.join(lstm.SCHEDULES)}, got {config.lstm_schedule!r}")


def batching_options(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh | None) -> batching.BatchingOptions:
    """The training batches ``config`` asks for; every batch's rows divide over the mesh."""
    return batching.BatchingOptions(
        kind=config.get("batching", "bucketed"), batch_size=config.batch_size,
        packed_length=config.get("packed_length", 256), row_multiple=1 if mesh is None else mesh.size,
        seed=config.seed,
    )


class _Pace:
    """Wall time and steps of the log windows in which nothing compiled, for the time left."""

    def __init__(self):
        self.seconds, self.steps = 0.0, 0

    def add(self, seconds: float, steps: int, compiled: bool) -> None:
        if not compiled:
            self.seconds, self.steps = self.seconds + seconds, self.steps + steps


def warn_if_epochs_changed(history: list[dict], steps_per_epoch: int, start_step: int) -> None:
    """Log a warning when a resumed run's epochs are now another number of steps long (other
    batching, e.g. bucketed -> packed, or other data): epochs are counted in steps, so the epoch
    number of ``start_step`` and the learning-rate schedule (which decays per epoch) jump."""
    records = [r for r in history if r.get("epoch") and r.get("step")]
    if not records or not start_step:
        return
    before = records[-1]["step"] / records[-1]["epoch"]
    if abs(before - steps_per_epoch) > 0.5:
        logging.warning(
            "this run's epochs were %.0f steps long and are now %d (batching or data changed): step %d "
            "is now epoch %.2f (was %.2f), and the learning-rate schedule, counted in epochs of steps, "
            "moves with it", before, steps_per_epoch, start_step, start_step / steps_per_epoch, start_step / before)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> TrainState:
    """Train on ``config.data_path``, evaluating, logging and checkpointing into ``workdir``.
    Started again with the same workdir, it resumes from the latest checkpoint.

    On a multi-process run (``config.coordinator_address`` set, see ``parallel``) every process
    calls this with the same config and shared workdir; process 0 writes the config, metrics
    and checksums, and orbax coordinates the checkpoint writes.
    """
    check_config(config)
    parallel.maybe_initialize_distributed(config)  # before anything touches the JAX backend
    # "auto" becomes the schedule that runs here, so that config.json records it.
    config = folkrnn.with_resolved_schedule(config)
    os.makedirs(workdir, exist_ok=True)
    # Held until this function returns: a second training on the workdir stops here.
    _workdir_lock = rundir.lock_workdir(workdir, jax.process_index())
    rundir.check_resume_config(workdir, config)
    mesh = parallel.mesh_from_config(config)
    parallel.check_batch_size(config.batch_size, mesh)
    if mesh is not None:
        logging.info("data parallel over %d devices (%d processes)", mesh.size, jax.process_count())
    mix = load_sequences(config)
    train_seqs = mix.train
    options = batching_options(config, mesh)
    steps_per_epoch = batching.steps_per_epoch(train_seqs, options)
    total_steps = config.num_train_steps or config.num_epochs * steps_per_epoch
    logging.info(
        "data %s: %d training tunes, %d validation tunes; %s batches, %d steps per epoch, %d steps",
        config.data_path, len(train_seqs), len(mix.all_valid), options.kind, steps_per_epoch, total_steps,
    )

    rng = jax.random.PRNGKey(config.seed)
    init_rng, dropout_rng, eval_rng = jax.random.split(rng, 3)
    model, state = create_train_state(config, init_rng, steps_per_epoch)
    state = parallel.replicate(state, mesh)
    logging.info("model: %s parameters", f"{folkrnn.count_params(state.params):,}")

    manager = checkpoints.make_manager(workdir, config.max_checkpoints_to_keep)
    if jax.process_index() == 0:
        rundir.save_config(workdir, config)
    state = checkpoints.restore_latest(manager, state)
    start_step = int(state.step)
    if start_step >= total_steps:
        logging.info("%s has already trained %d steps, and %d are asked: nothing to train. To train "
                     "further, ask for more (--config.num_train_steps or --config.num_epochs)",
                     workdir, start_step, total_steps)
    elif start_step:
        logging.info("resumed from the checkpoint at step %d of %s: training steps %d to %d",
                     start_step, workdir, start_step + 1, total_steps)
    # Process 0 keeps the metrics; the others read them (shared workdir) for early stopping.
    metrics = MetricsWriter(workdir, start_step) if jax.process_index() == 0 else None
    metrics_path = os.path.join(workdir, "metrics.jsonl")
    # Early stopping watches one validation metric; its history survives a resume.
    patience = config.get("early_stopping_epochs", 0)
    watched = config.get("early_stopping_metric", "valid_loss")
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices("metrics truncated to the restored step")
    history = read_metrics(workdir) if start_step and os.path.exists(metrics_path) else []
    warn_if_epochs_changed(history, steps_per_epoch, start_step)

    train_step = make_train_step(model, config.loss_normalization, mesh)
    eval_step = make_eval_step(model, dropout=config.eval_dropout, mesh=mesh)
    valid_batches = {
        name: batching.evaluation_batches(seqs, config.batch_size) for name, seqs in mix.valid.items()
    }
    eval_shapes = {b.inputs.shape for bs in valid_batches.values() for b in bs}

    window_losses: list[Array] = []
    window_tokens = 0
    window_start = time.time()
    window_compiled = False
    pace = _Pace()
    time_budget = config.get("max_train_seconds", 0)
    trained_seconds, compiled_shapes, evaluated = 0.0, set(), False
    step = start_step
    batches = batching.training_batches(train_seqs, options, start_step)
    for step, batch in zip(range(start_step + 1, total_steps + 1), batches):
        # ``step`` counts the steps done once this one has run, as ``state.step`` will.
        compiles = batch.inputs.shape not in compiled_shapes
        if compiles:
            logging.info("compiling the train step for batches of %d x %d tokens ...", *batch.inputs.shape)
        step_start = time.time()
        state, loss = train_step(state, parallel.shard_batch(batch, mesh), jax.random.fold_in(dropout_rng, step - 1))
        window_losses.append(loss)
        window_tokens += batch.num_tokens
        if compiles or time_budget:
            # The budget counts training time, not compilation: a step of a batch shape seen
            # before counts, the first step of each shape (compile + run) does not, so that
            # short runs of different sizes compare what the same compute buys.
            jax.block_until_ready(loss)
            if compiles:
                logging.info("compiled in %s", duration(time.time() - step_start))
            else:
                trained_seconds += time.time() - step_start
        window_compiled = window_compiled or compiles
        compiled_shapes.add(batch.inputs.shape)
        out_of_time = bool(time_budget) and trained_seconds > time_budget
        is_last = step == total_steps or out_of_time
        end_of_epoch = step % steps_per_epoch == 0
        record = {}
        if step % config.log_every_steps == 0 or is_last:
            # Reading the losses waits for the steps to finish, so the clock is read after.
            train_loss = float(np.mean(jax.device_get(window_losses)))
            elapsed = time.time() - window_start
            pace.add(elapsed, len(window_losses), window_compiled)
            record.update(
                train_loss=train_loss,
                learning_rate=float(current_learning_rate(state.opt_state)),
                tokens_per_s=window_tokens / max(elapsed, 1e-9),
            )
            window_losses, window_tokens, window_compiled = [], 0, False
        if valid_batches and (
            is_last or end_of_epoch or (config.eval_every_steps and step % config.eval_every_steps == 0)
        ):
            if not evaluated:
                logging.info("compiling the evaluation step for %d batch shapes ...", len(eval_shapes))
                evaluated = True
            record.update(evaluate_sources(eval_step, state.params, valid_batches, eval_rng, mesh))
        if record:
            record = {"step": step, "epoch": step / steps_per_epoch, **record}
            if metrics is not None:
                metrics.write(record)
            logging.info("%s", console_line(record, total_steps, time_left(pace.seconds, pace.steps, total_steps - step)))
            history.append(record)
        stop_early = False
        if patience and watched in record:
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
    if jax.process_index() == 0:
        logging.info("done: %s\n%s", workdir, run_summary(workdir, history, step, str(manager.directory)))
    return state
