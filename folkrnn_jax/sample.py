"""Batched sampling of new tunes: all tunes advance together inside one jit-compiled loop."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from folkrnn_jax import vocab
from folkrnn_jax.model import FolkRNN

Array = jax.Array


@dataclasses.dataclass
class SampledTunes:
    """Sampled token ids [num_tunes, max_length] (prefix included, padded with ``</s>``),
    each tune's length up to and including ``</s>``, and which tunes hit the maximum length."""

    ids: np.ndarray
    lengths: np.ndarray
    truncated: np.ndarray
    steps: int

    def tokens(self, i: int) -> list[str]:
        return vocab.decode(self.ids[i, : self.lengths[i]])


def parse_prefix(prefix: str | Sequence[str], where: str = "--prefix") -> list[str]:
    """Prefix tokens, always starting with ``<s>``; unknown tokens raise an error naming them."""
    tokens = prefix.split() if isinstance(prefix, str) else list(prefix)
    vocab.encode(tokens, where)
    if not tokens or tokens[0] != vocab.START:
        tokens = [vocab.START] + tokens
    return tokens


def tune_keys(key: Array, num_tunes: int, offset: int = 0) -> Array:
    """One key per tune, a function of the seed key and the tune's index only, so that tune i
    is the same whatever the batch size."""
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(offset, offset + num_tunes))


@functools.partial(jax.jit, static_argnames=("model", "max_length"))
def _sample_loop(
    model: FolkRNN, params: Any, keys: Array, prefix: Array, temperature: Array, max_length: int
):
    num_tunes, prefix_length = prefix.shape
    variables = {"params": params}
    carry = model.apply(variables, num_tunes, method=FolkRNN.initial_carry)
    if prefix_length > 1:
        _, carry = model.apply(variables, prefix[:, :-1], carry, method=FolkRNN.decode)
    out = jnp.full((num_tunes, max_length), vocab.END_ID, jnp.int32)
    out = out.at[:, :prefix_length].set(prefix)
    done = jnp.zeros((num_tunes,), bool)

    def cond(state):
        position, _, _, _, done = state
        return (position < max_length) & ~jnp.all(done)

    def body(state):
        position, token, carry, out, done = state
        logits, carry = model.apply(variables, token[:, None], carry, method=FolkRNN.decode)
        logits = logits[:, 0] / temperature  # [tunes, vocab]
        step_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, position)
        next_token = jax.vmap(jax.random.categorical)(step_keys, logits).astype(jnp.int32)
        next_token = jnp.where(done, vocab.END_ID, next_token)
        out = jax.lax.dynamic_update_slice(out, next_token[:, None], (0, position))
        done = done | (next_token == vocab.END_ID)
        return position + 1, next_token, carry, out, done

    state = (jnp.asarray(prefix_length), prefix[:, -1], carry, out, done)
    steps, _, _, out, done = jax.lax.while_loop(cond, body, state)
    return out, done, steps


def sample_tunes(
    model: FolkRNN,
    params: Any,
    key: Array,
    num_tunes: int,
    prefix: str | Sequence[str] = (),
    temperature: float = 1.0,
    max_length: int = 1000,
) -> SampledTunes:
    """Sample ``num_tunes`` tunes continuing ``prefix`` (e.g. ``"M:6/8 K:Cdor"``), each ending
    at ``</s>`` or at ``max_length`` tokens (counting ``<s>`` and the prefix)."""
    prefix_ids = vocab.encode(parse_prefix(prefix))
    if len(prefix_ids) >= max_length:
        raise ValueError(f"prefix of {len(prefix_ids)} tokens leaves no room under max_length={max_length}")
    prefix_batch = jnp.broadcast_to(jnp.asarray(prefix_ids), (num_tunes, len(prefix_ids)))
    out, done, steps = _sample_loop(
        model, params, tune_keys(key, num_tunes), prefix_batch, jnp.float32(temperature), max_length
    )
    ids = np.asarray(out)
    done = np.asarray(done)
    ends = np.argmax(ids[:, 1:] == vocab.END_ID, axis=1) + 2  # include </s>
    lengths = np.where(done, ends, max_length)
    return SampledTunes(ids=ids, lengths=lengths, truncated=~done, steps=int(steps))
