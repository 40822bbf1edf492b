"""Sampling settings: one definition of what a user may ask for (``SamplingSettings``: the
defaults, the ranges and the one validator, from which the command-line flags, the book command
and the composer's request model are made), and the value the jit-compiled loops take
(``SamplingOptions``)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import flax
import jax
import jax.numpy as jnp
import numpy as np

from folkrnn_jax.errors import FieldError, InputError
from folkrnn_jax.music import transpose, vocab

Array = jax.Array

# Far above any folk tune (v2's longest is under 1,000 tokens), far below an allocation failure
# (the output buffer is [tunes, max_length]).
MAX_LENGTH_LIMIT = 100_000
# jax.random.PRNGKey takes a 32-bit seed without x64; the composer's tune keys are int32.
MAX_SEED = 2**31 - 1
METERS: tuple[str, ...] = tuple(t[2:] for t in vocab.METER_TOKENS)  # 4/4, 6/8 ...
MODES: tuple[str, ...] = tuple(t[3:] for t in vocab.MODE_TOKENS)  # maj, min, dor, mix


@dataclasses.dataclass(frozen=True)
class Bounds:
    """The range of a numeric setting: ``[low, high]``, or ``(low, high]`` with ``low_open``."""

    low: float
    high: float
    low_open: bool = False
    integer: bool = False

    def describe(self) -> str:
        """``"(0, 10]"``, ``"[0, 137]"``."""
        low, high = (int(self.low), int(self.high)) if self.integer else (f"{self.low:g}", f"{self.high:g}")
        return f"{'(' if self.low_open else '['}{low}, {high}]"

    def check(self, field: str, value: Any) -> None:
        """Refuse ``value`` unless it is a number in range. Compared as Python numbers, before
        any conversion, so an integer past 64 bits is refused here rather than overflowing in
        numpy or SQLite.

        Raises:
            FieldError: naming ``field``.
        """
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise FieldError(field, f"must be a number (got {_shown(value)})")
        if isinstance(value, float):  # ints are compared exactly: float(10**400) overflows
            if not math.isfinite(value):  # NaN passes a plain "<= 0"
                raise FieldError(field, f"must be a finite number in {self.describe()} (got {_shown(value)})")
            if self.integer and not value.is_integer():
                raise FieldError(field, f"must be a whole number (got {_shown(value)})")
        below = value <= self.low if self.low_open else value < self.low
        if below or value > self.high:
            raise FieldError(field, f"must be in {self.describe()} (got {_shown(value)})")


def _shown(value: Any) -> str:
    """``repr(value)`` cut to 40 characters (an attacker's 50,000-digit number is not echoed)."""
    try:
        text = repr(value)
    except ValueError:  # ints past sys.get_int_max_str_digits
        return "a number too large to show"
    return text if len(text) <= 40 else text[:37] + "..."


def setting(default: Any, help_text: str, bounds: Bounds | None = None,
             choices: Sequence[str] | None = None) -> Any:
    """A ``SamplingSettings``-style field: its default, help, and range or choices."""
    return dataclasses.field(default=default, metadata={"help": help_text, "bounds": bounds, "choices": choices})


@dataclasses.dataclass(frozen=True)
class SamplingSettings:
    """Everything a user sets to draw tunes, with the one set of defaults. Tune i of ``seed``
    is a function of these settings alone: the command line, the book and the composer give
    the same tune for the same settings.

    ``constrain`` is on by default: a musician's first tune should be well formed; free
    sampling is ``constrain=False`` (``--noconstrain``).
    """

    seed: int = setting(0, "RNG seed: the same settings and seed give the same tunes.",
                         Bounds(0, MAX_SEED, integer=True))
    temperature: float = setting(1.0, "Softmax temperature (top_k=1 for greedy).", Bounds(0, 10, low_open=True))
    top_k: int = setting(0, "Sample only among the k most probable tokens (0: off).",
                          Bounds(0, vocab.VOCAB_SIZE, integer=True))
    top_p: float = setting(1.0, "Nucleus sampling: the most probable tokens up to this mass (1: off).",
                            Bounds(0, 1, low_open=True))
    constrain: bool = setting(True, "Only well-formed tunes: at every step the tokens that would break a "
                               "bar length, repeat or ending are masked (folkrnn_jax.generate.constraint); "
                               "--noconstrain samples freely.")
    max_length: int = setting(1000, "Most tokens per tune, counting <s> and the prefix.",
                               Bounds(2, MAX_LENGTH_LIMIT, integer=True))
    prefix: str = setting("", "Tokens every tune starts with, e.g. 'M:6/8 K:Cdor'; '*' is a position the "
                           "model fills. ABC text such as 'M:6/8 K:Dmix |: A>B c2' is also accepted: the "
                           "model sees it transposed to C and the tunes are written in its key (D here) "
                           "unless key says otherwise. In ABC 'Bb' is the notes B and b, so it is refused: "
                           "B-flat is _B.")
    meter: str | None = setting(None, "Meter header, e.g. 6/8 (default: the model chooses).", choices=METERS)
    mode: str | None = setting(None, "Mode header: maj, min, dor or mix (default: the model chooses).",
                                choices=MODES)
    key: str | None = setting(None, "Write the tunes with this root (C, Db, D ... B), keeping each tune's "
                               "mode; default: the K: of an ABC prefix, else C.", choices=transpose.ROOTS)

    def check(self) -> SamplingSettings:
        """The one validator: every field against its type, range or choices.

        Returns:
            ``self``.

        Raises:
            FieldError: naming the first bad field.
        """
        for spec in dataclasses.fields(self):
            value = getattr(self, spec.name)
            bounds, choices = spec.metadata["bounds"], spec.metadata["choices"]
            if bounds is not None:
                bounds.check(spec.name, value)
            elif choices is not None:
                if value is not None and value not in choices:
                    raise FieldError(spec.name, f"unknown {spec.name} {value!r}; one of {', '.join(choices)}")
            elif spec.type == "bool" and not isinstance(value, bool):
                raise FieldError(spec.name, f"must be true or false (got {_shown(value)})")
            elif spec.type == "str" and not isinstance(value, str):
                raise FieldError(spec.name, "must be text")
        return self

    def sampler_arguments(self) -> dict[str, Any]:
        """The keyword arguments of ``sampler.prepare_request`` (and so of ``sample_tunes``,
        ``sample_many``, ``sample_stream``) these settings stand for; ``seed`` and ``key``
        are not among them (the seed makes the PRNG key, ``key`` is how tunes are written)."""
        return {name: getattr(self, name) for name in
                ("prefix", "temperature", "max_length", "top_k", "top_p", "meter", "mode", "constrain")}


DEFAULTS = SamplingSettings()


def describe_settings() -> dict[str, dict[str, Any]]:
    """Every setting's default, range or choices and help, from ``SamplingSettings`` (what
    ``--help`` and the composer's ``/api/vocabulary`` show)."""
    out = {}
    for spec in dataclasses.fields(SamplingSettings):
        bounds = spec.metadata["bounds"]
        entry: dict[str, Any] = {"default": spec.default, "help": spec.metadata["help"]}
        if bounds is not None:
            entry.update(low=bounds.low, high=bounds.high, low_open=bounds.low_open, integer=bounds.integer,
                         range=bounds.describe())
        if spec.metadata["choices"] is not None:
            entry["choices"] = list(spec.metadata["choices"])
        out[spec.name] = entry
    return out


@flax.struct.dataclass
class SamplingOptions:
    """How each token is drawn, as the jit-compiled loops take it. Every field is an array (a
    new value does not recompile), either one value for the whole batch or one per batch row
    (``[rows]``, ``[rows, vocab]``: the continuous batcher's rows are different requests);
    None switches a feature off (decided when tracing).

    Attributes:
      temperature: float32 [] or [rows]; logits are divided by it.
      top_p: float32 [] or [rows] nucleus mass (1: off for that row), or None (off).
      bias: [vocab] or [rows, vocab] additive logit bias (``-inf`` on masked tokens), or None.
      top_k: int32 [] or [rows]: keep the k most probable tokens (0: off for that row), or None.
      constrain: bool [] or [rows]: mask the tokens that would break the tune's structure
        (``folkrnn_jax.generate.constraint``), or None (no structure tracked at all).
    """

    temperature: Array
    top_p: Array | None = None
    bias: Array | None = None
    top_k: Array | None = None
    constrain: Array | None = None


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
    temperature: float = DEFAULTS.temperature,
    top_k: int = DEFAULTS.top_k,
    top_p: float = DEFAULTS.top_p,
    token_mask: Sequence[str] = (),
    logit_bias: Any = None,
    constrain: bool = DEFAULTS.constrain,
) -> SamplingOptions:
    """Checked ``SamplingOptions`` for a whole batch from plain values (checked by
    ``SamplingSettings.check``).

    Args:
      temperature, top_k, top_p, constrain: see ``SamplingSettings``.
      token_mask: tokens never to emit (not ``</s>``).
      logit_bias: [vocab] added to the logits, or None.

    Returns:
      The options, arrays on the default device.
    """
    SamplingSettings(temperature=temperature, top_k=top_k, top_p=top_p, constrain=constrain).check()
    bias = token_bias(token_mask, logit_bias)
    return SamplingOptions(
        temperature=jnp.float32(temperature),
        top_p=None if top_p >= 1 else jnp.float32(top_p),
        bias=None if bias is None else jnp.asarray(bias),
        top_k=jnp.int32(top_k) if top_k else None,
        constrain=jnp.bool_(True) if constrain else None,
    )
