"""Continuous batching for interactive use: one compiled step over a fixed number of batch rows
(slots), each row another request's tune with its own settings; a request takes a free row at
the next step and a finished or cancelled tune frees its row at once.

Every step is ``sampler.sample_step``, the step of ``sample_tunes``, with the options as
per-row arrays; tune ``tune`` of ``seed`` draws with the key ``fold_in(PRNGKey(seed), tune -
1)`` as ``sample_tunes`` draws its tune ``tune - 1``: the same settings give the same tune,
token for token, by construction.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import threading
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from folkrnn_jax.generate import constraint, sampler
from folkrnn_jax.generate.options import SamplingOptions, SamplingSettings
from folkrnn_jax.model.folkrnn import FolkRNN
from folkrnn_jax.music import vocab


class QueueFullError(RuntimeError):
    """The batcher's queue holds ``max_waiting`` tunes already: try again later."""


@dataclasses.dataclass
class Result:
    """A finished tune: its tokens (``<s>`` ... ``</s>``, or cut at the maximum length)."""

    tokens: list[str]
    truncated: bool


class Job:
    """One tune in the batcher. ``on_token(token, position)`` is called from the batcher's
    thread for every token after ``<s>``, then ``on_done(result)`` once (or ``on_error``)."""

    def __init__(self, settings: SamplingSettings, tune: int, prompt: Sequence[int],
                 on_token: Callable[[str, int], None] | None, on_done: Callable[[Result], None],
                 on_error: Callable[[BaseException], None]):
        self.settings = settings
        self.tune = tune
        self.prompt = tuple(prompt)
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
    """The key of tune ``tune`` (from 1) of ``seed``: ``sampler.tune_keys``' key for index
    tune - 1. Compiled once (unjitted, the vmap inside is slow per request)."""
    return np.asarray(_tune_key(np.int32(seed), np.int32(tune - 1)))


@functools.partial(jax.jit, static_argnames=("model",))
def _batch_step(model: FolkRNN, params: Any, options: SamplingOptions, tunes: sampler.TuneInputs,
                position: jax.Array, rows: sampler.RowState, reset: jax.Array) -> sampler.RowState:
    """Fresh state for the rows in ``reset`` ([slots]: a new tune), then ``sampler.sample_step``
    for every row at its own ``position`` ([slots])."""
    variables = {"params": params}
    slots = reset.shape[0]
    fresh_carry = model.apply(variables, slots, method=FolkRNN.initial_carry)
    carry = jax.tree_util.tree_map(lambda c, c0: jnp.where(reset[:, None], c0, c), rows.carry, fresh_carry)
    structure = jax.tree_util.tree_map(lambda s, s0: jnp.where(reset, s0, s), rows.structure,
                                       constraint.initial_state(slots))
    rows = sampler.RowState(rows.token, carry, jnp.zeros_like(reset), structure)
    return sampler.sample_step(model, variables, options, tunes, position, rows)


class BatchSampler:
    """Continuous batching over ``slots`` rows for one model, on its own thread.

    Args:
        model, params: the model.
        slots: batch rows (the most tunes in flight; more wait in a queue).
        prompt_width: room for the longest prompt (``<s>``, header and prefix ids).
        max_waiting: the longest queue; ``submit`` raises ``QueueFullError`` beyond it.
        name: names the thread.
    """

    def __init__(self, model: FolkRNN, params: Any, slots: int = 32, prompt_width: int = 256,
                 max_waiting: int = 256, name: str = "model"):
        self.slots = slots
        self.max_waiting = max_waiting
        self._model = model
        self._params = sampler.sampling_params(model, params)
        self._cond = threading.Condition()
        self._queue: collections.deque[Job] = collections.deque()
        self._rows: list[Job | None] = [None] * slots
        self._closed = False
        self._keys = np.zeros((slots, 2), np.uint32)
        self._prompt = np.zeros((slots, prompt_width), np.int32)
        self._prompt_len = np.zeros((slots,), np.int32)
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
        self._carry = jax.device_put(model.apply({"params": self._params}, slots, method=FolkRNN.initial_carry),
                                     device)
        self._structure = jax.device_put(constraint.initial_state(slots), device)
        self.ready = threading.Event()  # set once the step is compiled
        self.steps = 0
        self.tokens = 0
        # (seconds to the first token, seconds to the whole tune) of recent tunes.
        self.latencies: collections.deque[tuple[float, float]] = collections.deque(maxlen=1000)
        self._thread = threading.Thread(target=self._run, name=f"sampler-{name}", daemon=True)
        self._thread.start()

    def submit(self, settings: SamplingSettings, tune: int, prompt: Sequence[int],
               on_token: Callable[[str, int], None] | None, on_done: Callable[[Result], None],
               on_error: Callable[[BaseException], None]) -> Job:
        """Queue tune ``tune`` of ``settings.seed`` (checked settings; ``prompt`` the ids of
        ``<s>``, header and prefix, ``WILDCARD_ID`` where the model fills in); it takes the next
        free row. Returns its job (for ``cancel``).

        Raises:
            QueueFullError: ``max_waiting`` tunes wait already.
        """
        job = Job(settings, tune, prompt, on_token, on_done, on_error)
        with self._cond:
            if self._closed:
                raise RuntimeError("the sampler is closed")
            if len(self._queue) >= self.max_waiting:
                raise QueueFullError(f"{len(self._queue)} tunes are waiting")
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
        last 1,000 tunes."""
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

    def generate(self, settings: SamplingSettings, tune: int, prompt: Sequence[int],
                 timeout: float = 600.0) -> Result:
        """Sample one tune and wait for it (for scripts and tests)."""
        done = threading.Event()
        box: list[Any] = []

        def finish(value):
            box.append(value)
            done.set()

        self.submit(settings, tune, prompt, None, finish, finish)
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
            row, settings = free[0], job.settings
            self._rows[row] = job
            self._keys[row] = tune_key(settings.seed, job.tune)
            self._prompt[row] = 0
            self._prompt[row, : len(job.prompt)] = job.prompt
            self._prompt_len[row] = len(job.prompt)
            self._temperature[row] = settings.temperature
            self._top_k[row] = settings.top_k
            self._top_p[row] = settings.top_p
            self._constrain[row] = settings.constrain
            self._position[row] = 1
            self._token[row] = vocab.START_ID
            self._reset[row] = True

    def _step(self) -> sampler.RowState:
        options = SamplingOptions(temperature=self._temperature, top_p=self._top_p, bias=None,
                                  top_k=self._top_k, constrain=self._constrain)
        tunes = sampler.TuneInputs(self._keys, self._prompt, self._prompt_len)
        rows = sampler.RowState(self._token, self._carry, None, self._structure)
        return _batch_step(self._model, self._params, options, tunes, self._position, rows, self._reset)

    def _run(self) -> None:
        # Compile at start-up, not on the first client's time (every row idle and reset).
        try:
            np.asarray(self._step().token)
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
                state = self._step()
                new = np.asarray(state.token)
                self._carry, self._structure = state.carry, state.structure
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
                if token == vocab.END_ID or position >= job.settings.max_length - 1:
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
