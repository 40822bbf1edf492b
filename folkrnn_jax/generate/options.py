"""Sampling options as one value passed through the jit-compiled loops, instead of a row of
positional arguments."""

from __future__ import annotations

import math
from typing import Any, Sequence

import flax
import jax
import jax.numpy as jnp
import numpy as np

from folkrnn_jax.errors import InputError
from folkrnn_jax.music import vocab

Array = jax.Array


@flax.struct.dataclass
class SamplingOptions:
    """How each token is drawn. Array fields are jit arguments (a new temperature does not
    recompile); ``top_k`` and ``constrain`` are static (part of the tree structure).

    Attributes:
      temperature: float32 scalar; logits are divided by it.
      top_p: float32 scalar nucleus mass, or None (off).
      bias: [vocab] additive logit bias (``-inf`` on masked tokens), or None.
      top_k: keep the k most probable tokens (0: off).
      constrain: mask the tokens that would break the tune's structure (``constraint``).
    """

    temperature: Array
    top_p: Array | None
    bias: Array | None
    top_k: int = flax.struct.field(pytree_node=False, default=0)
    constrain: bool = flax.struct.field(pytree_node=False, default=False)


def token_bias(token_mask: Sequence[str] = (), logit_bias: Any = None) -> np.ndarray | None:
    """The additive logit bias [vocab]: ``-inf`` on masked tokens plus ``logit_bias``, or None."""
    if not token_mask and logit_bias is None:
        return None
    bias = np.zeros((vocab.VOCAB_SIZE,), np.float32)
    if logit_bias is not None:
        bias += np.asarray(logit_bias, np.float32)
    ids = vocab.encode(list(token_mask), "token mask")
    if vocab.END_ID in ids:
        raise InputError("the token mask may not hold </s>: tunes could never end")
    bias[ids] = -np.inf
    return bias


def make_options(
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    token_mask: Sequence[str] = (),
    logit_bias: Any = None,
    constrain: bool = False,
) -> SamplingOptions:
    """Checked ``SamplingOptions`` from plain values.

    Args:
      temperature: > 0.
      top_k: 0 (off) to the vocabulary size.
      top_p: in (0, 1]; 1 is off.
      token_mask: tokens never to emit (not ``</s>``).
      logit_bias: [vocab] added to the logits, or None.
      constrain: structure-constrained sampling.

    Returns:
      The options, arrays on the default device.
    """
    if not math.isfinite(temperature) or temperature <= 0:  # NaN passes a plain "<= 0"
        raise InputError(f"temperature must be a finite number > 0 (got {temperature}); use top_k=1 for greedy")
    if top_k < 0 or top_k > vocab.VOCAB_SIZE:
        raise InputError(f"top_k must be in 0..{vocab.VOCAB_SIZE} (got {top_k})")
    if not 0 < top_p <= 1:
        raise InputError(f"top_p must be in (0, 1] (got {top_p})")
    bias = token_bias(token_mask, logit_bias)
    return SamplingOptions(
        temperature=jnp.float32(temperature),
        top_p=None if top_p >= 1 else jnp.float32(top_p),
        bias=None if bias is None else jnp.asarray(bias),
        top_k=int(top_k),
        constrain=bool(constrain),
    )
