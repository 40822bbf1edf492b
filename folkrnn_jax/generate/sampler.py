"""Batched sampling of new tunes: all tunes advance together inside one jit-compiled loop.

The loop is a ``while_loop`` around a fixed ``CHUNK``-step ``scan`` (the exit test, "every
tune has emitted ``</s>``", is checked once per chunk, and the chunk's tokens are written
with one slice update). Every step draws each tune's token with the key
``fold_in(fold_in(seed_key, tune_index), position)``, so tune i depends only on the seed and
i, whatever the batch. Options:

* ``temperature`` (an array argument: a new value does not recompile);
* ``top_k`` (static int, 0 = off) and ``top_p`` (nucleus; off when >= 1, the value is an
  array argument): truncation of the distribution before sampling;
* ``token_mask`` (tokens never to emit, an additive ``-inf`` logit bias) and ``logit_bias``;
* prefixes: one for all tunes or one per tune (``prefixes``, lengths may differ). Prefix
  positions are forced; a ``*`` in a prefix is a wildcard the model fills; ``meter`` and
  ``mode`` build the ``M:``/``K:`` header;
* early stop when all tunes have ended, ``steps`` reported; ``truncated`` marks tunes that
  reached ``max_length`` without ``</s>``;
* ``constrain``: structure-constrained sampling (``folkrnn_jax.generate.constraint``), the tokens that
  would break a bar length, repeat or ending masked at every step inside the loop;
* a model with ``matmul_dtype="bfloat16"`` samples with its weight matrices cast once
  (``sampling_params``), float32 state.

* prefixes may also be ABC text (``"M:6/8 K:Dmix |: A>B c2"``), converted by
  ``folkrnn_jax.generate.prefix`` (``abc_prefix``);
* ``slots``: continuous batching for many tunes: ``slots`` batch rows, each starting the next
  tune as soon as its tune ends (``_refill_loop``; the same tunes, no row idles until the
  longest tune of a batch ends). ``sample_many`` uses it in rounds, with a progress callback
  and ``valid_only``.

``sample_stream`` yields the tokens step by step (host loop over one jitted step) for
interactive use, as the folkrnn.org web app streamed them; it draws the same tokens as
``sample_tunes`` for the same arguments. ``stream_many`` collects them with a per-step line
callback (the CLI's ``--stream``).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from typing import Any, Iterator, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from folkrnn_jax.errors import InputError
from folkrnn_jax.generate import constraint
from folkrnn_jax.generate.options import DEFAULTS, MAX_LENGTH_LIMIT, Bounds, SamplingOptions, make_options
from folkrnn_jax.generate.prefix import WILDCARD_ID, PromptBatch, prepare_prompts
from folkrnn_jax.model.folkrnn import FolkRNN
from folkrnn_jax.model.lstm import Carry
from folkrnn_jax.music import structure, vocab

Array = jax.Array
CHUNK = 16


class TuneInputs(NamedTuple):
    """What each tune brings to the loop: its random key and its prefix."""

    keys: Array  # [tunes, 2] one key per tune (``tune_keys``)
    prefix: Array  # [tunes, width] forced ids, WILDCARD_ID where the model fills in
    prefix_len: Array  # [tunes]


class RowState(NamedTuple):
    """The state of each batch row between two steps."""

    token: Array  # [rows] the last token, the next step's input
    carry: Carry  # per layer (c, h), each [rows, hidden]
    done: Array  # [rows] the tune has emitted </s>
    structure: constraint.State | None  # the constraint automaton (None unless constrained)


class LoopState(NamedTuple):
    """``_sample_loop``'s while-loop state."""

    position: Array  # scalar: the position the next chunk starts at
    rows: RowState
    out: Array  # [tunes, max_length + chunk] ids written so far


class RefillState(NamedTuple):
    """``_refill_loop``'s state: which tune each row holds and where it is."""

    tune: Array  # [slots] the tune index of each row (num_tunes: idle)
    position: Array  # [slots] each row's position in its tune
    rows: RowState
    out: Array  # [tunes + 1, max_length] (the spare last row takes idle rows' writes)
    next_tune: Array  # scalar: the first tune no row has started
    steps: Array  # scalar: steps run

@dataclasses.dataclass
class SampledTunes:
    """Sampled token ids [num_tunes, max_length] (prefix included, padded with ``</s>``),
    each tune's length up to and including ``</s>``, and which tunes hit the maximum length.
    ``steps`` is the position the batch loop reached (< max_length when all tunes ended)."""

    ids: np.ndarray
    lengths: np.ndarray
    truncated: np.ndarray
    steps: int

    def tokens(self, i: int) -> list[str]:
        return vocab.decode(self.ids[i, : self.lengths[i]])

    def all_tokens(self) -> list[list[str]]:
        return [self.tokens(i) for i in range(len(self.ids))]


def tune_keys(key: Array, num_tunes: int, offset: int = 0) -> Array:
    """One key per tune, a function of the seed key and the tune's index only, so that tune i
    is the same whatever the batch size."""
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(offset, offset + num_tunes))


def sampling_params(model: FolkRNN, params: Any) -> Any:
    """``params`` with the LSTM weight matrices stored in the model's ``matmul_dtype``: a
    bfloat16 model then reads half the bytes per step and casts nothing inside the loop
    (state, biases and the softmax stay float32). Float32 models are returned unchanged."""
    dtype = jnp.dtype(model.matmul_dtype)
    if dtype == jnp.float32:
        return params
    return {name: value.astype(dtype) if re.fullmatch(r"lstm_\d+_w_(in|hid)", name) else value
            for name, value in params.items()}


def _per_row(value: Array) -> Array:
    """An option of shape [] or [rows] as [1] or [rows, 1], to broadcast against [rows, vocab]."""
    value = jnp.asarray(value)
    return jnp.reshape(value, value.shape + (1,))


def truncate_logits(logits: Array, top_k: Array | int | None, top_p: Array | None) -> Array:
    """Set to -inf the logits outside the ``top_k`` largest and outside the smallest set whose
    probability reaches ``top_p``. logits: [rows, vocab]; ``top_k`` int32 [] or [rows] (0: off
    for that row) or None; ``top_p`` float32 [] or [rows] (>= 1: off for that row) or None.
    The k-th largest logit is read from the sorted logits (the value ``lax.top_k`` gives), so
    one row's k can differ from another's."""
    if top_k is not None and not (isinstance(top_k, int) and top_k == 0):
        k = _per_row(top_k)  # [rows or 1, 1]
        ordered = -jnp.sort(-logits, axis=-1)
        kth = jnp.take_along_axis(ordered, jnp.broadcast_to(jnp.maximum(k - 1, 0), logits.shape[:-1] + (1,)),
                                  axis=-1)
        logits = jnp.where((k > 0) & (logits < kth), -jnp.inf, logits)
    if top_p is not None:
        p = _per_row(top_p)
        ordered = -jnp.sort(-logits, axis=-1)
        probs = jax.nn.softmax(ordered, axis=-1)
        before = jnp.cumsum(probs, axis=-1) - probs  # mass of the tokens ranked above
        keep = before < p
        keep = keep.at[..., 0].set(True)
        threshold = jnp.min(jnp.where(keep, ordered, jnp.inf), axis=-1, keepdims=True)
        # At p = 1 rounding can leave "before" at 1 for the least likely tokens: off means off.
        logits = jnp.where((p < 1) & (logits < threshold), -jnp.inf, logits)
    return logits


def sample_step(
    model: FolkRNN, variables: dict, options: SamplingOptions, tunes: TuneInputs, position: Array,
    rows: RowState,
) -> RowState:
    """One token for every row at ``position`` (a scalar, or [rows] when each row is at its own
    position) given the previous token: the one step of every sampler (``sample_tunes``'
    loops, ``sample_stream`` and the continuous batcher of ``folkrnn_jax.generate.batcher``),
    so that the same settings give the same tune whichever runs it. Options are one value for
    all rows or one per row. Where ``options.constrain`` holds, the tokens that would break a
    tune are masked before truncation; the automaton (tracked when ``rows.structure`` is not
    None) advances by the emitted tokens."""
    logits, carry = model.apply(variables, rows.token[:, None], rows.carry, method=FolkRNN.decode)
    logits = logits[:, 0].astype(jnp.float32) / _per_row(options.temperature)  # [rows, vocab]
    if options.bias is not None:
        logits = logits + options.bias
    if rows.structure is not None:
        masked = constraint.mask_logits(logits, rows.structure)
        # A user mask can leave nothing: end the tune rather than sample from nothing.
        nothing = ~jnp.any(jnp.isfinite(masked), axis=-1, keepdims=True)
        masked = jnp.where(nothing & (jnp.arange(logits.shape[-1]) == vocab.END_ID), 0.0, masked)
        logits = jnp.where(_per_row(options.constrain), masked, logits)
    logits = truncate_logits(logits, options.top_k, options.top_p)
    last = tunes.prefix.shape[1] - 1
    if jnp.ndim(position) == 0:
        step_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(tunes.keys, position)
        forced_token = jax.lax.dynamic_index_in_dim(tunes.prefix, jnp.minimum(position, last), axis=1, keepdims=False)
    else:  # one position per row (refill sampling)
        step_keys = jax.vmap(jax.random.fold_in)(tunes.keys, position)
        forced_token = jnp.take_along_axis(tunes.prefix, jnp.minimum(position, last)[:, None], axis=1)[:, 0]
    sampled = jax.vmap(jax.random.categorical)(step_keys, logits).astype(jnp.int32)
    forced = (position < tunes.prefix_len) & (forced_token != WILDCARD_ID)
    token = jnp.where(forced, forced_token, sampled)
    token = jnp.where(rows.done, vocab.END_ID, token)  # [rows]
    structure_state = None if rows.structure is None else constraint.advance(rows.structure, token)
    return RowState(token, carry, rows.done | (token == vocab.END_ID), structure_state)


@functools.partial(jax.jit, static_argnames=("model", "max_length", "start", "chunk"))
def _sample_loop(
    model: FolkRNN, params: Any, options: SamplingOptions, tunes: TuneInputs, max_length: int, start: int,
    chunk: int = CHUNK,
) -> tuple[Array, Array]:
    """All tunes in one batch until every tune has ended or ``max_length``: the ids
    [tunes, max_length] and the position reached. Positions < ``start`` are forced for every
    tune and run as one decode call."""
    num_tunes = tunes.keys.shape[0]
    variables = {"params": params}
    prefix = tunes.prefix
    carry = model.apply(variables, num_tunes, method=FolkRNN.initial_carry)
    if start > 1:
        _, carry = model.apply(variables, prefix[:, : start - 1], carry, method=FolkRNN.decode)
    out = jnp.full((num_tunes, max_length + chunk), vocab.END_ID, jnp.int32)
    out = out.at[:, :start].set(prefix[:, :start])
    done = jnp.any(prefix[:, 1:start] == vocab.END_ID, axis=1)
    structure_state = constraint.run(prefix[:, 1:start]) if options.constrain is not None else None

    def cond(state: LoopState) -> Array:
        return (state.position < max_length) & ~jnp.all(state.rows.done)

    def body(state: LoopState) -> LoopState:
        def one(c, _):
            position, rows = c
            rows = sample_step(model, variables, options, tunes, position, rows)
            return (position + 1, rows), rows.token

        (position, rows), tokens = jax.lax.scan(one, (state.position, state.rows), None, length=chunk)
        out = jax.lax.dynamic_update_slice(state.out, tokens.T, (0, state.position))  # tokens: [chunk, tunes]
        return LoopState(position, rows, out)

    rows = RowState(prefix[:, start - 1], carry, done, structure_state)
    state = jax.lax.while_loop(cond, body, LoopState(jnp.asarray(start, jnp.int32), rows, out))
    return state.out[:, :max_length], jnp.minimum(state.position, max_length)


@functools.partial(jax.jit, static_argnames=("model", "max_length", "slots", "chunk"))
def _refill_loop(
    model: FolkRNN, params: Any, options: SamplingOptions, tunes: TuneInputs, max_length: int, slots: int,
    chunk: int = CHUNK,
) -> tuple[Array, Array]:
    """``len(tunes.keys)`` tunes through ``slots`` batch rows: a row whose tune ends (``</s>``
    or ``max_length``) starts the next unsampled tune at the next step (state reset, position
    1). Tune i still uses the keys ``fold_in(keys[i], position)`` and its own prefix, so it is
    the same tune as ``_sample_loop`` draws. Returns the ids [tunes, max_length] and the steps
    run."""
    num_tunes = tunes.keys.shape[0]
    variables = {"params": params}
    initial = model.apply(variables, slots, method=FolkRNN.initial_carry)
    out = jnp.full((num_tunes + 1, max_length), vocab.END_ID, jnp.int32).at[:, 0].set(vocab.START_ID)
    first = jnp.arange(slots, dtype=jnp.int32)
    fresh = constraint.initial_state(slots) if options.constrain is not None else None

    def one(state: RefillState, _) -> tuple[RefillState, None]:
        active = state.tune < num_tunes  # [slots]
        row_tunes = jax.tree_util.tree_map(lambda x: x[jnp.minimum(state.tune, num_tunes - 1)], tunes)
        rows = sample_step(model, variables, options, row_tunes, state.position, state.rows._replace(done=~active))
        out = state.out.at[state.tune, state.position].set(rows.token)  # idle rows write to the spare row
        ended = active & ((rows.token == vocab.END_ID) | (state.position + 1 >= max_length))
        new_tune = state.next_tune + jnp.cumsum(ended) - 1
        tune = jnp.where(ended, jnp.where(new_tune < num_tunes, new_tune, num_tunes), state.tune)
        next_tune = jnp.minimum(state.next_tune + jnp.sum(ended), num_tunes)
        carry = jax.tree_util.tree_map(lambda c, c0: jnp.where(ended[:, None], c0, c), rows.carry, initial)
        structure_state = jax.tree_util.tree_map(lambda s, s0: jnp.where(ended, s0, s), rows.structure, fresh)
        token = jnp.where(ended, vocab.START_ID, rows.token)
        position = jnp.where(ended, 1, jnp.where(active, state.position + 1, state.position))
        rows = RowState(token, carry, rows.done, structure_state)
        return RefillState(tune, position, rows, out, next_tune, state.steps + 1), None

    def body(state: RefillState) -> RefillState:
        state, _ = jax.lax.scan(one, state, None, length=chunk)
        return state

    rows = RowState(jnp.full((slots,), vocab.START_ID, jnp.int32), initial, jnp.zeros((slots,), bool), fresh)
    state = RefillState(
        tune=jnp.where(first < num_tunes, first, num_tunes), position=jnp.ones((slots,), jnp.int32), rows=rows,
        out=out, next_tune=jnp.int32(min(slots, num_tunes)), steps=jnp.int32(0),
    )
    state = jax.lax.while_loop(lambda s: jnp.any(s.tune < num_tunes), body, state)
    return state.out[:num_tunes], state.steps


def _result(ids: np.ndarray, steps: int, max_length: int) -> SampledTunes:
    ended = ids[:, 1:] == vocab.END_ID
    done = ended.any(axis=1)
    lengths = np.where(done, np.argmax(ended, axis=1) + 2, max_length)  # include </s>
    ids = np.where(np.arange(ids.shape[1]) < lengths[:, None], ids, vocab.END_ID).astype(np.int32)
    return SampledTunes(ids=ids, lengths=lengths, truncated=~done, steps=int(steps))


@dataclasses.dataclass(frozen=True)
class Request:
    """What ``sample_tunes`` and ``sample_stream`` start from, prepared once: the checked
    options, the parameters as sampled (``sampling_params``), each tune's key and prefix, and
    the prompt batch."""

    options: SamplingOptions
    params: Any
    tunes: TuneInputs
    prompts: PromptBatch
    max_length: int


def prepare_request(
    model: FolkRNN,
    params: Any,
    key: Array,
    num_tunes: int,
    prefix: str | Sequence[str] = DEFAULTS.prefix,
    temperature: float = DEFAULTS.temperature,
    max_length: int = DEFAULTS.max_length,
    *,
    top_k: int = DEFAULTS.top_k,
    top_p: float = DEFAULTS.top_p,
    token_mask: Sequence[str] = (),
    logit_bias: Any = None,
    prefixes: Sequence[str | Sequence[str]] | None = None,
    meter: str | None = DEFAULTS.meter,
    mode: str | None = DEFAULTS.mode,
    offset: int = 0,
    constrain: bool = DEFAULTS.constrain,
) -> Request:
    """Check and prepare the sampling arguments shared by ``sample_tunes`` and ``sample_stream``.

    Args:
      model, params: the model and its parameters.
      key: the seed key; tune ``offset + i`` draws with ``fold_in(key, offset + i)``.
      num_tunes: how many tunes.
      prefix: tokens every tune starts with (``"M:6/8 K:Cdor"``, ``*`` for positions the
        model fills, or ABC text); ``prefixes`` gives one per tune instead.
      temperature, top_k, top_p, token_mask, logit_bias, constrain: see ``make_options``
        (defaults: ``options.SamplingSettings``, so ``constrain`` is on unless set False).
      max_length: tokens per tune at most, counting ``<s>`` and the prefix.
      meter, mode: the ``M:``/``K:`` header (``"6/8"``, ``"dor"``).
      offset: the index of the first tune under the seed, for sampling in chunks.

    Returns:
      The prepared ``Request``.
    """
    if num_tunes < 1:
        raise InputError(f"the number of tunes must be at least 1 (got {num_tunes})")
    # The output buffer is [tunes, max_length]: a huge value aborts inside XLA.
    Bounds(2, MAX_LENGTH_LIMIT, integer=True).check("max_length", max_length)
    options = make_options(temperature, top_k, top_p, token_mask, logit_bias, constrain)
    prompts = prepare_prompts(num_tunes, prefix, prefixes, meter, mode, max_length)
    tunes = TuneInputs(tune_keys(key, num_tunes, offset), jnp.asarray(prompts.ids), jnp.asarray(prompts.lengths))
    return Request(options, sampling_params(model, params), tunes, prompts, max_length)


def sample_tunes(
    model: FolkRNN, params: Any, key: Array, num_tunes: int, *args: Any, chunk: int = CHUNK,
    slots: int | None = None, **kwargs: Any,
) -> SampledTunes:
    """Sample ``num_tunes`` tunes, each ending at ``</s>`` or at ``max_length`` tokens; the
    other arguments are those of ``prepare_request`` (``prefix``, ``temperature``,
    ``max_length`` may be given by position).

    With ``slots`` < ``num_tunes``, the tunes go through ``slots`` batch rows and a row starts
    the next tune as soon as its tune ends (continuous batching: no row waits for the longest
    tune of a batch); the tunes are the same, ``steps`` is then the total number of steps.

    With ``constrain``, every step masks the tokens that would make the tune fail the
    structure checks (``folkrnn_jax.generate.constraint``): the model's distribution
    renormalised over the tokens that keep bar lengths, repeats and endings right.

    Returns:
      ``SampledTunes``: ids [num_tunes, max_length], lengths, truncated, steps.
    """
    request = prepare_request(model, params, key, num_tunes, *args, **kwargs)
    if slots is not None and slots < num_tunes:
        out, steps = _refill_loop(model, request.params, request.options, request.tunes, request.max_length,
                                  int(slots), chunk)
    else:
        out, steps = _sample_loop(model, request.params, request.options, request.tunes, request.max_length,
                                  request.prompts.start, chunk)
    return _result(np.asarray(out), int(steps), request.max_length)


_stream_step = jax.jit(sample_step, static_argnames=("model",))


def sample_stream(model: FolkRNN, params: Any, key: Array, num_tunes: int, *args: Any, **kwargs: Any
                  ) -> Iterator[np.ndarray]:
    """Yield, for positions 1, 2, ..., the token id of every tune at that position ([num_tunes];
    ``</s>`` for tunes that have ended), until all tunes have ended or ``max_length``. Prefix
    tokens are yielded as they are forced. One jitted step per position, run from the host;
    the same tokens as ``sample_tunes`` with the same ``prepare_request`` arguments."""
    request = prepare_request(model, params, key, num_tunes, *args, **kwargs)
    variables = {"params": request.params}
    rows = RowState(
        token=jnp.full((num_tunes,), vocab.START_ID, jnp.int32),
        carry=model.apply(variables, num_tunes, method=FolkRNN.initial_carry),
        done=jnp.zeros((num_tunes,), bool),
        structure=constraint.initial_state(num_tunes) if request.options.constrain is not None else None,
    )
    for position in range(1, request.max_length):
        rows = _stream_step(model, variables, request.options, request.tunes, jnp.int32(position), rows)
        yield np.asarray(rows.token)
        if bool(jnp.all(rows.done)):
            return


@dataclasses.dataclass
class ManyTunes:
    """Tunes from ``sample_many``: the kept tunes (token lists) with their indices under the
    seed, how many were sampled in all, and how many of the kept ones were truncated."""

    tunes: list[list[str]]
    indices: list[int]
    sampled: int
    truncated: int


def round_size(needed: int, kept: int, sampled: int, valid_only: bool, largest: int) -> int:
    """How many tunes the next round of ``sample_many`` draws.

    Without ``valid_only``, exactly the ``needed`` ones. With it, enough for ``needed`` more
    valid tunes at the pass rate seen so far, ``(kept + 1) / (sampled + 2)`` (one in two before
    the first round), with a quarter more for luck, rounded up to a power of two from 8 so that
    a few shapes are compiled; never more than ``largest``.

    Args:
      needed: tunes still to keep.
      kept, sampled: tunes kept and drawn so far.
      valid_only: whether only tunes passing the structure checks are kept.
      largest: the most tunes a round may draw.

    Returns:
      The number of tunes to draw, at least 1.
    """
    if not valid_only:
        return max(1, min(needed, largest))
    pass_rate = (kept + 1) / (sampled + 2)
    wanted = math.ceil(1.25 * needed / pass_rate)
    return max(1, min(largest, 1 << max(3, (wanted - 1).bit_length())))


def sample_many(
    model: FolkRNN,
    params: Any,
    key: Array,
    num_tunes: int,
    *,
    chunk_size: int = 256,
    chunks_per_round: int = 8,
    valid_only: bool = False,
    max_sampled: int | None = None,
    progress: Any = None,
    **options: Any,
) -> ManyTunes:
    """``num_tunes`` tunes in rounds of at most ``chunk_size * chunks_per_round`` tunes, each
    round through ``chunk_size`` batch rows with continuous batching (``sample_tunes(...,
    slots=chunk_size)``); tune i of the seed is the same whatever the sizes. Rounds draw only
    what is still needed (``round_size``): 10 tunes are 10 draws. With ``valid_only``, rounds
    are sampled until ``num_tunes`` tunes pass ``structure.is_valid_tune``, each sized to the
    pass rate seen so far (at most ``max_sampled``, default ``max(50 * num_tunes, 1024)``, are
    tried); the kept tunes are the first ``num_tunes`` valid ones under the seed.
    ``progress(kept, sampled)`` is called after each round; ``options`` go to
    ``sample_tunes``."""
    slots = max(1, chunk_size)
    largest = slots * max(1, chunks_per_round)
    limit = max_sampled or max(50 * num_tunes, 1024)
    kept: list[list[str]] = []
    indices: list[int] = []
    truncated = sampled = 0
    while len(kept) < num_tunes:
        if sampled >= limit:
            raise InputError(
                f"only {len(kept)} of {num_tunes} tunes passed the structure checks in {sampled} sampled"
            )
        batch = round_size(num_tunes - len(kept), len(kept), sampled, valid_only, min(largest, limit - sampled))
        result = sample_tunes(model, params, key, batch, offset=sampled, slots=slots, **options)
        for i in range(batch):
            if len(kept) == num_tunes:
                break
            tokens = result.tokens(i)
            if valid_only and not structure.is_valid_tune(tokens):
                continue
            kept.append(tokens)
            indices.append(sampled + i)
            truncated += bool(result.truncated[i])
        sampled += batch
        if progress is not None:
            progress(len(kept), sampled)
    return ManyTunes(kept, indices, sampled, truncated)


def stream_many(
    model: FolkRNN, params: Any, key: Array, num_tunes: int, *, on_step: Any = None, **options: Any
) -> ManyTunes:
    """``sample_stream`` for ``num_tunes`` tunes in one batch, collected as ``ManyTunes`` (the
    same tunes as ``sample_tunes`` draws). ``on_step(line)`` gets, at every step, a line
    ``"TUNE:TOKEN ..."`` (tunes numbered from 1) with the token of every tune still running."""
    rows = [[vocab.START_ID] for _ in range(num_tunes)]
    ended = np.zeros((num_tunes,), bool)
    for ids in sample_stream(model, params, key, num_tunes, **options):
        running = np.flatnonzero(~ended)
        for i in running:
            rows[i].append(int(ids[i]))
        ended |= ids == vocab.END_ID
        if on_step is not None:
            on_step(" ".join(f"{i + 1}:{vocab.TOKENS[ids[i]]}" for i in running))
    tunes = [vocab.decode(r) for r in rows]
    truncated = int(sum(t[-1] != vocab.END for t in tunes))
    return ManyTunes(tunes, list(range(num_tunes)), num_tunes, truncated)
