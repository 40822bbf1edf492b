"""Beam search: the most probable continuations of a prefix under the model.

``beam_search(model, params, prefix, width, depth)`` keeps the ``width`` most probable
partial continuations at each of ``depth`` steps (one jit-compiled ``scan``; all beams are
one batch of the model) and returns them with their log-probabilities, best first. A beam
that emits ``</s>`` is finished: it stays in the beam with its score and competes with the
longer ones. ``token_mask`` removes tokens (the distribution is renormalised over the rest).
With ``width >= V**(depth - 1)`` over the allowed vocabulary the search is exhaustive.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from folkrnn_jax.errors import InputError
from folkrnn_jax.generate import prefix as prefix_lib
from folkrnn_jax.generate.options import token_bias
from folkrnn_jax.model.folkrnn import FolkRNN
from folkrnn_jax.music import vocab

Array = jax.Array


@dataclasses.dataclass
class Beams:
    """Continuations (token lists after the prefix, up to and including ``</s>`` where it was
    emitted), their log-probabilities given the prefix, best first."""

    continuations: list[list[str]]
    log_probs: np.ndarray


@functools.partial(jax.jit, static_argnames=("model", "width", "depth"))
def _beam_search(model: FolkRNN, params: Any, prefix: Array, bias: Array | None, width: int, depth: int):
    variables = {"params": params}
    V = model.vocab_size

    def log_probs(logits):
        logits = logits.astype(jnp.float32)
        if bias is not None:
            logits = logits + bias
        return jax.nn.log_softmax(logits, axis=-1)

    carry = model.apply(variables, 1, method=FolkRNN.initial_carry)
    logits, carry = model.apply(variables, prefix[None], carry, method=FolkRNN.decode)
    carry = jax.tree_util.tree_map(lambda x: jnp.repeat(x, width, axis=0), carry)
    next_logp = jnp.broadcast_to(log_probs(logits[0, -1]), (width, V))
    scores = jnp.full((width,), -jnp.inf).at[0].set(0.0)  # one live beam to start from
    only_end = jnp.where(jnp.arange(V) == vocab.END_ID, 0.0, -jnp.inf)

    def step(state, position):
        scores, seqs, finished, next_logp, carry = state
        expand = jnp.where(finished[:, None], only_end, next_logp)  # finished: pad with </s>
        candidates = (scores[:, None] + expand).reshape(-1)
        scores, flat = jax.lax.top_k(candidates, width)
        parent, token = flat // V, (flat % V).astype(jnp.int32)
        seqs = seqs[parent].at[:, position].set(token)
        finished = finished[parent] | (token == vocab.END_ID)
        carry = jax.tree_util.tree_map(lambda x: x[parent], carry)
        logits, carry = model.apply(variables, token[:, None], carry, method=FolkRNN.decode)
        return (scores, seqs, finished, log_probs(logits[:, 0]), carry), None

    seqs = jnp.full((width, depth), vocab.END_ID, jnp.int32)
    state = (scores, seqs, jnp.zeros((width,), bool), next_logp, carry)
    (scores, seqs, _, _, _), _ = jax.lax.scan(step, state, jnp.arange(depth))
    return seqs, scores


def beam_search(
    model: FolkRNN,
    params: Any,
    prefix: str | Sequence[str] = (),
    width: int = 8,
    depth: int = 16,
    token_mask: Sequence[str] = (),
) -> Beams:
    """The ``width`` most probable ``depth``-token continuations of ``prefix`` found by beam
    search (fewer if fewer have non-zero probability), best first."""
    if width < 1 or depth < 1:
        raise InputError(f"width and depth must be >= 1 (got {width}, {depth})")
    tokens = prefix_lib.parse_prefix(prefix)
    if prefix_lib.WILDCARD in tokens:
        raise InputError("beam search prefixes may not hold '*' wildcards")
    bias = token_bias(token_mask)
    seqs, scores = _beam_search(
        model, params, jnp.asarray(vocab.encode(tokens)), None if bias is None else jnp.asarray(bias),
        width, depth,
    )
    seqs, scores = np.asarray(seqs), np.asarray(scores)
    continuations = []
    keep = np.isfinite(scores)
    for row in seqs[keep]:
        ids = list(row)
        if vocab.END_ID in ids:
            ids = ids[: ids.index(vocab.END_ID) + 1]
        continuations.append(vocab.decode(ids))
    return Beams(continuations, scores[keep])
