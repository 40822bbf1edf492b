"""The composer's engine: settings, models, one continuously batched sampler per model, and the
ABC/MIDI/SVG/PDF outputs of a tune.

This is the only module of ``folkrnn_jax.serve`` that imports the library (sampler, ABC writer,
MIDI, abcm2ps, run loading), so that a move of library modules is one edit here.

A tune is fully described by its ``TuneSettings`` (model, seed, tune number, meter, mode, key,
prefix, temperature, top-k, top-p, constrain, maximum length): the engine draws tune
``tune`` of ``seed`` exactly as ``sample_tunes`` and ``python -m experiments.sample
--num_tunes=TUNE --seed=SEED`` do, token for token, and writes it as the command line writes
it (same ``X:``, ``T:`` and body, transposed with ``key`` as ``--key`` does).

``BatchSampler`` runs every tune in flight on one model through one compiled step over a
fixed number of batch rows (slots): a request takes a free row at the next step, a finished or
cancelled tune frees its row at once (continuous batching), so many clients share one
compiled sampler and a client that goes away stops only its own row.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import math
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from folkrnn_jax import files
from folkrnn_jax.errors import InputError
from folkrnn_jax.generate import constraint, sampler
from folkrnn_jax.generate import prefix as prefixes
from folkrnn_jax.model import weights
from folkrnn_jax.model.folkrnn import FolkRNN
from folkrnn_jax.music import abc_out, midi, structure, tools, transpose, vocab
from folkrnn_jax.music import output as output_lib
from folkrnn_jax.training import runs


class FieldError(InputError):
    """A request field with a bad value: ``field`` names it, the message says why."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.reason = message
        super().__init__(f"{field}: {message}")


# ---------------------------------------------------------------------------------------------
# Settings and limits.

METERS: tuple[str, ...] = tuple(t[2:] for t in vocab.METER_TOKENS)
MODES: tuple[str, ...] = tuple(t[3:] for t in vocab.MODE_TOKENS)  # maj, min, dor, mix
# The 12 roots the page offers, one spelling each (tokens_to_abc respells where a key would
# need more than 7 sharps or flats).
ROOTS: tuple[str, ...] = ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
ALL_ROOTS: tuple[str, ...] = transpose.ROOTS
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one request may ask for; a request outside them gets a 4xx naming the field."""

    max_prefix_tokens: int = 256  # after parsing, <s> and header tokens included
    max_prefix_chars: int = 4000  # checked before parsing, so a huge prefix costs nothing
    max_tunes_per_request: int = 8
    max_length: int = 1000  # tokens per tune, as the CLI's --max_length default
    min_length: int = 16
    min_temperature: float = 0.05
    max_temperature: float = 5.0
    max_seed: int = 2**31 - 1
    max_tune: int = 10_000  # the tune number within a seed
    max_title_chars: int = 200


@dataclasses.dataclass(frozen=True)
class TuneSettings:
    """Everything that determines one tune. ``tune`` numbers the tunes of a seed from 1, as
    the command line numbers them; ``key`` None writes the tune in C as sampled (the CLI
    without ``--key``)."""

    model: str = "default"
    seed: int = 0
    tune: int = 1
    meter: str | None = None
    mode: str | None = None
    key: str | None = None
    prefix: str = ""
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    constrain: bool = True
    max_length: int = 1000


@dataclasses.dataclass(frozen=True)
class Prepared:
    """Validated settings with the parsed prefix (tokens and ids, ``*`` as a wildcard id)."""

    settings: TuneSettings
    prefix_tokens: tuple[str, ...]
    prefix_ids: tuple[int, ...]


def _number(field: str, value: Any, low: float, high: float, *, integer: bool = False,
            low_open: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FieldError(field, f"must be a number (got {value!r})")
    if integer and not float(value).is_integer():
        raise FieldError(field, f"must be a whole number (got {value!r})")
    if not math.isfinite(value):
        raise FieldError(field, f"must be a finite number (got {value!r})")
    below = value <= low if low_open else value < low
    if below or value > high:
        bracket = "(" if low_open else "["
        raise FieldError(field, f"must be in {bracket}{low:g}, {high:g}] (got {value!r})")


def check_model_name(name: Any, known: Sequence[str]) -> str:
    """``name`` if it is one of the ``known`` model names. Names are never paths: a name with
    a slash, a dot-dot or any character outside ``[A-Za-z0-9_.-]`` is refused before lookup.

    Raises:
        FieldError: on ``model``, with the names on offer.
    """
    if not isinstance(name, str) or not _MODEL_NAME.match(name) or ".." in name:
        raise FieldError("model", f"{name!r} is not a model name (letters, digits, '_', '.', '-'); "
                                  f"one of {', '.join(known)}")
    if name not in known:
        raise FieldError("model", f"unknown model {name!r}; one of {', '.join(known)}")
    return name


def prepare(settings: TuneSettings, limits: Limits, models: Sequence[str]) -> Prepared:
    """Check every field of ``settings`` against ``limits`` and parse the prefix.

    Args:
        settings: the request.
        limits: the server's limits.
        models: the model names on offer.

    Returns:
        The settings with the prefix as tokens and ids.

    Raises:
        FieldError: naming the first bad field.
    """
    check_model_name(settings.model, models)
    _number("seed", settings.seed, 0, limits.max_seed, integer=True)
    _number("tune", settings.tune, 1, limits.max_tune, integer=True)
    _number("temperature", settings.temperature, limits.min_temperature, limits.max_temperature)
    _number("top_k", settings.top_k, 0, vocab.VOCAB_SIZE, integer=True)
    _number("top_p", settings.top_p, 0, 1, low_open=True)
    _number("max_length", settings.max_length, limits.min_length, limits.max_length, integer=True)
    if settings.meter is not None and settings.meter not in METERS:
        raise FieldError("meter", f"unknown meter {settings.meter!r}; one of {', '.join(METERS)}")
    if settings.mode is not None and settings.mode not in MODES:
        raise FieldError("mode", f"unknown mode {settings.mode!r}; one of {', '.join(MODES)}")
    if settings.key is not None and settings.key not in ALL_ROOTS:
        raise FieldError("key", f"unknown key root {settings.key!r}; one of {', '.join(ROOTS)}")
    if not isinstance(settings.prefix, str):
        raise FieldError("prefix", "must be text")
    if len(settings.prefix) > limits.max_prefix_chars:
        raise FieldError("prefix", f"{len(settings.prefix)} characters; at most {limits.max_prefix_chars}")
    tokens = parse_prefix(settings.prefix, settings.meter, settings.mode)
    if len(tokens) > limits.max_prefix_tokens:
        raise FieldError("prefix", f"{len(tokens)} tokens; at most {limits.max_prefix_tokens}")
    if len(tokens) >= settings.max_length:
        raise FieldError("prefix", f"{len(tokens)} tokens leave no room under max_length={settings.max_length}")
    ids = tuple(int(i) for i in prefixes.prefix_ids(tokens))
    if settings.key is None:
        # An ABC prefix typed in D comes back in D, as on the command line.
        settings = dataclasses.replace(settings, key=prefixes.prefix_key(settings.prefix))
    return Prepared(settings, tuple(tokens), ids)


def parse_prefix(text: str, meter: str | None = None, mode: str | None = None) -> list[str]:
    """Prefix tokens as the command line reads ``--prefix`` (v2 tokens, ``*`` wildcards, or ABC
    text transposed to C), with ``<s>`` and the ``meter``/``mode`` header tokens.

    Raises:
        FieldError: on ``prefix`` naming an unknown token (or ``meter``/``mode`` when the
            prefix gives them too).
    """
    try:
        return prefixes.header_prefix(text, meter, mode, "prefix")
    except vocab.UnknownTokenError as error:
        raise FieldError("prefix", f"unknown token {error.token!r}: not in the 137-token v2 vocabulary") from None
    except InputError as error:
        message = str(error)
        field = "meter" if "meter" in message else "mode" if "mode" in message else "prefix"
        raise FieldError(field, message) from None


def check_tokens(words: Sequence[str]) -> list[int]:
    """Indices of the words that are neither v2 tokens nor ``*`` (what the page marks)."""
    return [i for i, w in enumerate(words) if w != prefixes.WILDCARD and w not in vocab.TOKEN_TO_ID]


def vocabulary() -> list[str]:
    """The 137 v2 tokens in the model's index order."""
    return list(vocab.TOKENS)


# ---------------------------------------------------------------------------------------------
# Models.


@dataclasses.dataclass(frozen=True)
class LoadedModel:
    """A model on offer: its public ``name``, the module and parameters, the checkpoint step
    (written into titles as the CLI does) and, for runs, the run directory (it lets the page
    show the equivalent command line; None for the shipped model, which the CLI uses when given
    no --workdir)."""

    name: str
    model: FolkRNN
    params: Any
    step: int
    workdir: str | None
    description: str


def load_models(workdirs: Sequence[str] = (), default_dir: str | None = None) -> list[LoadedModel]:
    """The shipped default model (when ``default_dir``, by default ``models/default``, holds one)
    and one model per run directory or model folder, named after the folder (``runs/tiny`` ->
    ``tiny``, ``tiny-2`` on a clash).

    Args:
        workdirs: run directories (config.json and checkpoints).
        default_dir: the shipped model's folder (default ``models/default``).

    Returns:
        The models, the default first.

    Raises:
        InputError: when there is no model at all, or a run directory cannot be read.
    """
    loaded: list[LoadedModel] = []
    directory = default_dir or weights.DEFAULT_MODEL_DIR
    if weights.is_model_dir(directory):
        # Loaded as experiments.sample loads it with no --workdir, so titles carry the same step.
        model, params, step = runs.load_run(directory)
        loaded.append(LoadedModel("default", model, params, int(step), None, f"the shipped default model (step {step})"))
    names = {m.name for m in loaded}
    for workdir in workdirs:
        if not os.path.exists(os.path.join(workdir, weights.CONFIG_FILE)):
            raise InputError(f"--workdir={workdir}: no config.json there (not a run directory)")
        base = re.sub(r"[^A-Za-z0-9_.-]", "_", os.path.basename(os.path.normpath(workdir))).strip(".") or "run"
        name, n = base[:60], 2
        while name in names:
            name, n = f"{base[:57]}-{n}", n + 1
        model, params, step = runs.load_run(workdir)
        names.add(name)
        loaded.append(LoadedModel(name, model, params, int(step), os.path.abspath(workdir),
                                  f"run {os.path.basename(os.path.normpath(workdir))}, step {step}"))
    if not loaded:
        raise InputError(f"no model: {directory}/config.json is missing and no --workdir was given")
    return loaded


# ---------------------------------------------------------------------------------------------
# The batched sampler.


@functools.partial(jax.jit, static_argnames=("model",))
def _batch_step(model: FolkRNN, params: Any, carry: Any, structure_state: Any, reset: jax.Array,
                keys: jax.Array, prefix: jax.Array, prefix_len: jax.Array, temperature: jax.Array,
                top_k: jax.Array, top_p: jax.Array, constrain: jax.Array, position: jax.Array,
                token: jax.Array):
    """One token for every row, each row with its own options.

    The library's step takes one temperature, a static top-k and one constrain switch for a
    whole batch; here every row is another client's tune, so the options are per-row arrays
    and the switches are ``where``s. Each row computes exactly what ``sample_tunes`` computes
    for that tune (same logits, same masks, same key ``fold_in(tune_key, position)``), so the
    tokens are the same."""
    variables = {"params": params}
    rows = reset.shape[0]
    fresh_carry = model.apply(variables, rows, method=FolkRNN.initial_carry)
    carry = jax.tree_util.tree_map(lambda c, c0: jnp.where(reset[:, None], c0, c), carry, fresh_carry)
    fresh_state = constraint.initial_state(rows)
    structure_state = jax.tree_util.tree_map(lambda s, s0: jnp.where(reset, s0, s), structure_state, fresh_state)

    logits, carry = model.apply(variables, token[:, None], carry, method=FolkRNN.decode)
    logits = logits[:, 0].astype(jnp.float32) / temperature[:, None]
    masked = constraint.mask_logits(logits, structure_state)
    nothing = ~jnp.any(jnp.isfinite(masked), axis=-1, keepdims=True)
    masked = jnp.where(nothing & (jnp.arange(logits.shape[-1]) == vocab.END_ID), 0.0, masked)
    logits = jnp.where(constrain[:, None], masked, logits)
    # top-k per row: the k-th largest logit (what lax.top_k's last value is) as a threshold.
    ordered = -jnp.sort(-logits, axis=-1)
    kth = jnp.take_along_axis(ordered, jnp.maximum(top_k - 1, 0)[:, None], axis=-1)
    logits = jnp.where((top_k[:, None] > 0) & (logits < kth), -jnp.inf, logits)
    nucleus = sampler.truncate_logits(logits, 0, top_p[:, None])
    logits = jnp.where(top_p[:, None] < 1, nucleus, logits)

    step_keys = jax.vmap(jax.random.fold_in)(keys, position)
    sampled = jax.vmap(jax.random.categorical)(step_keys, logits).astype(jnp.int32)
    forced_token = jnp.take_along_axis(prefix, jnp.minimum(position, prefix.shape[1] - 1)[:, None], axis=1)[:, 0]
    forced = (position < prefix_len) & (forced_token != prefixes.WILDCARD_ID)
    next_token = jnp.where(forced, forced_token, sampled)
    structure_state = constraint.advance(structure_state, next_token)
    return next_token, carry, structure_state


@dataclasses.dataclass
class Result:
    """A finished tune: its tokens (``<s>`` ... ``</s>``, or cut at the maximum length)."""

    tokens: list[str]
    truncated: bool


class Job:
    """One tune in the sampler. ``on_token(token, position)`` is called from the sampler's
    thread for every token after ``<s>``, then ``on_done(result)`` once (or ``on_error``)."""

    def __init__(self, prepared: Prepared, key: np.ndarray | None, on_token: Callable[[str, int], None] | None,
                 on_done: Callable[[Result], None], on_error: Callable[[BaseException], None]):
        self.prepared = prepared
        self.key = key
        self.on_token = on_token
        self.on_done = on_done
        self.on_error = on_error
        self.ids: list[int] = [vocab.START_ID]
        self.cancelled = False
        self.submitted = time.perf_counter()
        self.first_token: float | None = None  # seconds from submit to the first token


@jax.jit
def _tune_key(seed: jax.Array, index: jax.Array) -> jax.Array:
    # What sampler.tune_keys gives tune ``index``: fold_in(seed key, index), here unbatched.
    return jax.random.fold_in(jax.random.PRNGKey(seed), index)


def tune_key(seed: int, tune: int) -> np.ndarray:
    """The key of tune ``tune`` (from 1) of ``seed``: ``sampler.tune_keys``' key for index tune-1.
    Compiled once: unjitted, the vmap inside took ~0.3 s per request on a busy CPU, all of it on
    the server's event loop."""
    return np.asarray(_tune_key(np.int32(seed), np.int32(tune - 1)))


class BatchSampler:
    """Continuous batching over ``slots`` rows for one model, on its own thread.

    Args:
        loaded: the model.
        slots: batch rows (the most tunes in flight; more wait in a queue).
        prefix_width: room for the longest prefix (``Limits.max_prefix_tokens``).
    """

    def __init__(self, loaded: LoadedModel, slots: int = 32, prefix_width: int = 256):
        self.loaded = loaded
        self.slots = slots
        self._model = loaded.model
        self._params = sampler.sampling_params(loaded.model, loaded.params)
        self._cond = threading.Condition()
        self._queue: collections.deque[Job] = collections.deque()
        self._rows: list[Job | None] = [None] * slots
        self._closed = False
        self._keys = np.zeros((slots, 2), np.uint32)
        self._prefix = np.zeros((slots, prefix_width), np.int32)
        self._prefix_len = np.zeros((slots,), np.int32)
        self._temperature = np.ones((slots,), np.float32)
        self._top_k = np.zeros((slots,), np.int32)
        self._top_p = np.ones((slots,), np.float32)
        self._constrain = np.zeros((slots,), bool)
        self._position = np.ones((slots,), np.int32)
        self._token = np.full((slots,), vocab.START_ID, np.int32)
        self._reset = np.ones((slots,), bool)
        # Committed to the device like the step's outputs, so the first step compiles the same
        # program as every later one (uncommitted inputs compiled a second time).
        device = jax.devices()[0]
        self._carry = jax.device_put(
            self._model.apply({"params": self._params}, slots, method=FolkRNN.initial_carry), device)
        self._state = jax.device_put(constraint.initial_state(slots), device)
        self.ready = threading.Event()  # set once the step is compiled
        self.steps = 0
        self.tokens = 0
        # (seconds to the first token, seconds to the whole tune) of recent tunes, for /api/status.
        self.latencies: collections.deque[tuple[float, float]] = collections.deque(maxlen=1000)
        self._thread = threading.Thread(target=self._run, name=f"sampler-{loaded.name}", daemon=True)
        self._thread.start()

    def submit(self, prepared: Prepared, on_token: Callable[[str, int], None] | None,
               on_done: Callable[[Result], None], on_error: Callable[[BaseException], None]) -> Job:
        """Queue a tune; it takes the next free row. Returns its job (for ``cancel``)."""
        job = Job(prepared, None, on_token, on_done, on_error)  # its key is made on the sampler's thread
        with self._cond:
            if self._closed:
                raise RuntimeError("the sampler is closed")
            self._queue.append(job)
            self._cond.notify()
        return job

    def cancel(self, job: Job) -> None:
        """Stop ``job``: its row is freed before the next step (other rows go on)."""
        with self._cond:
            job.cancelled = True
            self._cond.notify()

    def latency_summary(self) -> dict[str, float]:
        """p50/p95 seconds from submission to the first token and to the whole tune, over the
        last 1,000 tunes (measured inside the server: no HTTP, no client)."""
        recent = list(self.latencies)
        if not recent:
            return {}
        firsts, wholes = np.asarray([r[0] for r in recent]), np.asarray([r[1] for r in recent])
        return {"tunes": len(recent), "first_token_p50": float(np.percentile(firsts, 50)),
                "first_token_p95": float(np.percentile(firsts, 95)),
                "whole_tune_p50": float(np.percentile(wholes, 50)),
                "whole_tune_p95": float(np.percentile(wholes, 95))}

    def busy(self) -> tuple[int, int]:
        """(tunes in rows, tunes waiting)."""
        with self._cond:
            return sum(j is not None for j in self._rows), len(self._queue)

    def close(self) -> None:
        """Stop the thread; jobs still queued or running get ``on_error``."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout=30)

    def generate(self, prepared: Prepared, timeout: float = 600.0) -> Result:
        """Sample one tune and wait for it (for scripts and tests)."""
        done = threading.Event()
        box: list[Any] = []

        def finish(value):
            box.append(value)
            done.set()

        self.submit(prepared, None, finish, finish)
        if not done.wait(timeout):
            raise TimeoutError(f"no tune after {timeout} s")
        if isinstance(box[0], BaseException):
            raise box[0]
        return box[0]

    def _admit(self) -> None:
        """Under the lock: drop cancelled jobs, put queued jobs into free rows."""
        for row, job in enumerate(self._rows):
            if job is not None and job.cancelled:
                self._rows[row] = None
        while self._queue:
            free = [r for r, j in enumerate(self._rows) if j is None]
            if not free:
                return
            job = self._queue.popleft()
            if job.cancelled:
                continue
            row = free[0]
            options = job.prepared.settings
            if job.key is None:
                job.key = tune_key(options.seed, options.tune)
            ids = job.prepared.prefix_ids
            self._rows[row] = job
            self._keys[row] = job.key
            self._prefix[row] = 0
            self._prefix[row, : len(ids)] = ids
            self._prefix_len[row] = len(ids)
            self._temperature[row] = options.temperature
            self._top_k[row] = options.top_k
            self._top_p[row] = options.top_p
            self._constrain[row] = options.constrain
            self._position[row] = 1
            self._token[row] = vocab.START_ID
            self._reset[row] = True

    def _step(self):
        return _batch_step(
            self._model, self._params, self._carry, self._state, self._reset, self._keys, self._prefix,
            self._prefix_len, self._temperature, self._top_k, self._top_p, self._constrain,
            self._position, self._token,
        )

    def _run(self) -> None:
        # Compile at start-up, not on the first client's time (every row idle and reset).
        try:
            np.asarray(self._step()[0])
        finally:
            self.ready.set()
        while True:
            with self._cond:
                while not self._closed:
                    self._admit()
                    if any(j is not None for j in self._rows):
                        break
                    self._cond.wait()
                if self._closed:
                    pending = [j for j in self._rows if j is not None] + list(self._queue)
                    self._rows = [None] * self.slots
                    self._queue.clear()
                    break
                rows = list(self._rows)
            try:
                new, self._carry, self._state = self._step()
                new = np.asarray(new)
            except Exception as error:  # noqa: BLE001 - fail the tunes in flight, keep serving
                self._fail([j for j in rows if j is not None], error)
                with self._cond:
                    self._rows = [None if j in rows else j for j in self._rows]
                    self._reset[:] = True
                continue
            self._reset[:] = False
            self.steps += 1
            finished = []
            for row, job in enumerate(rows):
                if job is None or job.cancelled:
                    continue
                token, position = int(new[row]), int(self._position[row])
                job.ids.append(token)
                if job.first_token is None:
                    job.first_token = time.perf_counter() - job.submitted
                self.tokens += 1
                self._token[row] = token
                self._position[row] = position + 1
                if job.on_token is not None:
                    try:
                        job.on_token(vocab.TOKENS[token], position)
                    except Exception:  # noqa: BLE001 - a listener that is gone stops its own tune
                        job.cancelled = True
                        finished.append((row, job))
                        continue
                if token == vocab.END_ID or position >= job.prepared.settings.max_length - 1:
                    finished.append((row, job))
            with self._cond:
                for row, _ in finished:
                    self._rows[row] = None
            for _, job in finished:
                if job.cancelled:
                    continue
                truncated = job.ids[-1] != vocab.END_ID
                self.latencies.append((job.first_token or 0.0, time.perf_counter() - job.submitted))
                try:
                    job.on_done(Result(vocab.decode(job.ids), truncated))
                except Exception:  # noqa: BLE001 - a failing callback must not stop other tunes
                    pass
        self._fail(pending, RuntimeError("the server is shutting down"))

    @staticmethod
    def _fail(jobs: Sequence[Job], error: BaseException) -> None:
        for job in jobs:
            try:
                job.on_error(error)
            except Exception:  # noqa: BLE001
                pass


# ---------------------------------------------------------------------------------------------
# Outputs.


def cli_title(step: int, settings: TuneSettings) -> str:
    """The title ``experiments.sample`` gives tune ``settings.tune`` of ``settings.seed``."""
    return output_lib.tune_title(step, settings.seed, settings.tune, settings.constrain, settings.key)


def tune_abc(tokens: Sequence[str], settings: TuneSettings, step: int, title: str | None = None,
             index: int | None = None) -> str:
    """The tune as the command line writes it (``X:`` = the tune number, the CLI's title,
    transposed to ``settings.key``), or with another ``title``/``index``."""
    return abc_out.tokens_to_abc(tokens, index=settings.tune if index is None else index,
                               title=title or cli_title(step, settings), key=settings.key)


def cli_command(settings: TuneSettings, workdir: str | None) -> str:
    """The ``experiments.sample`` command whose tune number ``settings.tune`` is this tune
    (``workdir`` None: the shipped model, the command's default)."""
    parts = ["python -m experiments.sample"] + ([f"--workdir={workdir}"] if workdir else [])
    parts += [f"--num_tunes={settings.tune}",
             f"--seed={settings.seed}", f"--temperature={settings.temperature!r}"]
    for name in ("meter", "mode", "key"):
        if getattr(settings, name):
            parts.append(f"--{name}={getattr(settings, name)}")
    if settings.prefix.strip():
        parts.append("--prefix=" + _shell_quote(settings.prefix))
    if settings.top_k:
        parts.append(f"--top_k={settings.top_k}")
    if settings.top_p < 1:
        parts.append(f"--top_p={settings.top_p!r}")
    if settings.constrain:
        parts.append("--constrain")
    if settings.max_length != 1000:
        parts.append(f"--max_length={settings.max_length}")
    return " ".join(parts)


def _shell_quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


def notes_lines(model: str, step: int, settings: TuneSettings) -> list[str]:
    """The ``N:`` lines a saved tune carries: model, seed, temperature, prefix and the rest."""
    prefix = settings.prefix.strip() or "(none)"
    return [
        f"N:model {model} (step {step})",
        f"N:seed {settings.seed}, tune {settings.tune}",
        f"N:temperature {settings.temperature:g}, top_k {settings.top_k}, top_p {settings.top_p:g}, "
        f"constrain {'on' if settings.constrain else 'off'}, max_length {settings.max_length}",
        f"N:meter {settings.meter or 'sampled'}, mode {settings.mode or 'sampled'}, key {settings.key or 'C'}",
        f"N:prefix {prefix}",
    ]


def with_notes(abc_text: str, lines: Sequence[str], title: str | None = None, index: int | None = None) -> str:
    """``abc_text`` with ``lines`` after its ``T:`` line (and a new title or ``X:``)."""
    out = []
    for line in abc_text.splitlines():
        if line.startswith("X:") and index is not None:
            line = f"X:{index}"
        if line.startswith("T:"):
            out.append(f"T:{title}" if title is not None else line)
            out.extend(lines)
            continue
        out.append(line)
    return "\n".join(out) + "\n"


def midi_bytes(abc_text: str, tokens: Sequence[str], key: str | None) -> bytes:
    """MIDI of the tune: abc2midi on the ABC, or the library's mido writer without abc2midi."""
    if tools.have("abc2midi"):
        return tools.abc_to_midi(abc_text)
    return midi.tokens_to_midi(tokens, key=key)


def svg_text(abc_text: str) -> str:
    """The first page of the tune engraved by abcm2ps, as SVG text.

    Raises:
        ToolMissingError: abcm2ps is not installed.
    """
    with tempfile.TemporaryDirectory(prefix="folkrnn_svg_") as folder:
        paths = tools.render_svg(abc_text, folder)
        with open(paths[0], encoding="utf-8") as f:
            return f.read()


TOOL_ERRORS: tuple[type[BaseException], ...] = (tools.ToolMissingError, tools.ToolError)


def typeset_pdf(abc_text: str, output: str, timeout: float = 120.0) -> str:
    """Typeset ``abc_text`` (any number of tunes) as a PDF: abcm2ps to PostScript, then
    ghostscript's ps2pdf. Writes ``output`` whole or not at all.

    Returns:
        ``output``.

    Raises:
        ToolMissingError: abcm2ps or ps2pdf is missing (the message names the package).
        ToolError: either tool failed.
    """
    abcm2ps = tools.require("abcm2ps")
    ps2pdf = shutil.which("ps2pdf")
    if ps2pdf is None:
        raise tools.ToolMissingError("ps2pdf is not installed (on Debian/Ubuntu: apt-get install ghostscript)")
    with tempfile.TemporaryDirectory(prefix="folkrnn_pdf_") as folder:
        source, ps, pdf = (os.path.join(folder, name) for name in ("book.abc", "book.ps", "book.pdf"))
        with open(source, "w", encoding="utf-8") as f:
            f.write(abc_text)
        for command in ([abcm2ps, source, "-O", ps], [ps2pdf, ps, pdf]):
            try:
                result = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=timeout)
            except subprocess.TimeoutExpired as error:
                raise tools.ToolError(f"{os.path.basename(command[0])} took longer than {timeout} s") from error
            made = command[-1]
            if result.returncode != 0 or not os.path.exists(made) or os.path.getsize(made) == 0:
                message = (result.stdout + result.stderr).strip()[-2000:]
                raise tools.ToolError(f"{os.path.basename(command[0])} failed (exit {result.returncode}): {message}")
        with open(pdf, "rb") as f:
            files.atomic_write_bytes(output, f.read())
    return output


def keep_bars(tokens: Sequence[str], bars: int | None = None, part: str | None = None) -> list[str]:
    """The start of a tune to vary: its header and first ``bars`` bars, or its A part.

    A bar ends at a bar line after at least one note or rest; the bar line is kept. The A part
    runs to the first ``:|`` (through the ``|2`` ending that follows it, to that ending's bar
    line), or is the first 8 bars of a tune without repeats.

    Args:
        tokens: the tune (``<s>`` ... ``</s>``).
        bars: how many bars to keep (>= 1).
        part: ``"A"`` for the A part (instead of ``bars``).

    Returns:
        The kept tokens, from ``<s>``, without ``</s>``.

    Raises:
        FieldError: on ``bars`` when the tune has fewer bars, or a bad ``part``.
    """
    body = [t for t in tokens if t != vocab.END]
    if part is not None and part != "A":
        raise FieldError("part", f"{part!r}: only 'A' (or give bars)")
    ends: list[int] = []  # index of each bar's closing bar line
    used = False
    for i, token in enumerate(body):
        if token in vocab.BAR_TOKENS:
            if used:
                ends.append(i)
            used = False
        elif token[:2] not in ("M:", "K:") and token != vocab.START and (token[0].isalpha() or token[0] in "^_="):
            used = True
    if part == "A":
        for i, token in enumerate(body):
            if token == ":|":
                if i + 1 < len(body) and body[i + 1] == "|2":
                    later = [e for e in ends if e > i + 1]
                    return body[: later[0] + 1] if later else body
                return body[: i + 1]
        bars = 8
    if bars is None or bars < 1:
        raise FieldError("bars", "give a number of bars >= 1, or part='A'")
    if bars > len(ends):
        raise FieldError("bars", f"the tune has {len(ends)} complete bars; keep at most that many")
    return body[: ends[bars - 1] + 1]


def is_valid(tokens: Sequence[str]) -> bool:
    """Whether the tune passes the library's structure checks (bars, repeats, endings)."""
    return structure.is_valid_tune(tokens)


def sample_collection(loaded: LoadedModel, settings: TuneSettings, num_tunes: int,
                      progress: Callable[[int, int], None] | None = None) -> list[list[str]]:
    """Tunes 1..``num_tunes`` of ``settings.seed``, sampled as ``experiments.sample`` samples
    them (``sample_many`` in rounds of 256 rows): the same tunes as that command.

    Args:
        loaded: the model.
        settings: the options (``settings.tune`` is ignored: the tunes are numbered from 1).
        num_tunes: how many.
        progress: called with (kept, sampled) after each round.

    Returns:
        The tunes as token lists.
    """
    many = sampler.sample_many(
        loaded.model, loaded.params, jax.random.PRNGKey(settings.seed), num_tunes, chunk_size=256,
        progress=progress, prefix=settings.prefix, temperature=settings.temperature,
        max_length=settings.max_length, top_k=settings.top_k, top_p=settings.top_p, meter=settings.meter,
        mode=settings.mode, constrain=settings.constrain,
    )
    return many.tunes


def write_text(path: str, text: str) -> str:
    """Write ``text`` to ``path`` atomically (the library's one atomic write)."""
    return files.atomic_write_text(path, text)


# A tune's likely dance from its meter, as the session books' readers would name it.
DANCES = {"M:4/4": "Reel", "M:6/8": "Jig", "M:3/4": "Waltz", "M:2/4": "Polka", "M:9/8": "Slip jig",
          "M:12/8": "Slide", "M:3/2": "Hornpipe"}
MODE_NAMES = {"K:Cmaj": "major", "K:Cmin": "minor", "K:Cdor": "dorian", "K:Cmix": "mixolydian"}


def describe_tune(tokens: Sequence[str], key: str | None = None) -> str:
    """A plain title from the tune's header: ``"Jig in D dorian"`` (meter and mode as sampled,
    root ``key`` or C)."""
    meter = next((t for t in tokens if t.startswith("M:")), "M:4/4")
    mode = next((t for t in tokens if t.startswith("K:")), "K:Cmaj")
    return f"{DANCES.get(meter, 'Tune')} in {key or 'C'} {MODE_NAMES.get(mode, '')}".strip()
