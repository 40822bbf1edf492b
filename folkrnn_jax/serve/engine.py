"""The composer's settings and models: what a request may ask for (``TuneSettings``: the
library's ``SamplingSettings`` with the model and the tune number, checked by its one validator
and the server's ``Limits``), the models on offer, and the tune's ABC and command line.

Sampling is the library's (``folkrnn_jax.generate.batcher``), outputs and typesetting are the
music layer's (``folkrnn_jax.music.output``, ``folkrnn_jax.music.typeset``): a tune is drawn
exactly as ``sample_tunes`` and ``python -m experiments.sample --num_tunes=TUNE --seed=SEED``
draw it, and written as the command line writes it.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any, Sequence

from folkrnn_jax.errors import FieldError, InputError
from folkrnn_jax.generate import batcher
from folkrnn_jax.generate import options as options_lib
from folkrnn_jax.generate import prefix as prefixes
from folkrnn_jax.model import weights
from folkrnn_jax.model.folkrnn import FolkRNN
from folkrnn_jax.music import abc_out, output, vocab
from folkrnn_jax.training import runs

__all__ = ["BestOfResult", "FieldError", "Limits", "LoadedModel", "Prepared", "TuneSettings", "load_models", "prepare"]

METERS = options_lib.METERS
MODES = options_lib.MODES
# The 12 roots the page offers, one spelling each (tokens_to_abc respells where a key would
# need more than 7 sharps or flats).
ROOTS: tuple[str, ...] = ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MAX_TUNE = 10_000  # the tune number within a seed
MAX_BEST_OF = 64  # candidates per tune that a request may name; the server's Limits may allow fewer


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one request may ask for beyond the settings' own ranges (the server's resources);
    a request outside them gets a 4xx naming the field."""

    max_prefix_tokens: int = 256  # after parsing, <s> and header tokens included
    max_prefix_chars: int = 4000  # checked before parsing, so a huge prefix costs nothing
    max_tunes_per_request: int = 8
    max_length: int = 1000  # tokens per tune, as the CLI's --max_length default
    max_title_chars: int = 200
    max_search_chars: int = 200
    max_body_bytes: int = 64 * 1024  # a request body larger than this is refused (413) unread
    max_waiting: int = 256  # tunes queued per model; more get 429 with Retry-After
    max_best_of: int = 8  # candidates per tune (each is sampled in full)


@dataclasses.dataclass(frozen=True)
class TuneSettings(options_lib.SamplingSettings):
    """Everything that determines one tune: the sampling settings, the model, and which tune of
    the seed (from 1, as the command line numbers them). ``key`` None writes the tune in C as
    sampled (the CLI without ``--key``)."""

    model: str = options_lib.setting("default", "A model name from /api/models (never a path).")
    tune: int = options_lib.setting(1, "Which tune of the seed, from 1 (as experiments.sample numbers them).",
                                    options_lib.Bounds(1, MAX_TUNE, integer=True))
    best_of: int = options_lib.setting(
        1, "Draw this many candidates and keep the one the model scores highest per token (as "
           "experiments.sample --best_of); each costs a full tune's sampling.",
        options_lib.Bounds(1, MAX_BEST_OF, integer=True))

    def sampling(self) -> options_lib.SamplingSettings:
        """The library's settings (without model and tune)."""
        names = [f.name for f in dataclasses.fields(options_lib.SamplingSettings)]
        return options_lib.SamplingSettings(**{n: getattr(self, n) for n in names})

    def candidates(self) -> list[TuneSettings]:
        """The plain tunes a best-of tune is chosen from: tunes ``(tune - 1) * best_of + 1`` to
        ``tune * best_of`` of the seed, as ``experiments.sample --best_of`` numbers them (so
        tune ``t`` here is tune ``t`` of ``--num_tunes=t --best_of=N``)."""
        first = (self.tune - 1) * self.best_of + 1
        return [dataclasses.replace(self, tune=first + j, best_of=1) for j in range(self.best_of)]


@dataclasses.dataclass(frozen=True)
class Prepared:
    """Validated settings with the parsed prefix (tokens and ids, ``*`` as a wildcard id)."""

    settings: TuneSettings
    prefix_tokens: tuple[str, ...]
    prefix_ids: tuple[int, ...]


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
    """Check every field of ``settings`` (``SamplingSettings.check``, then the server's
    ``limits``) and parse the prefix.

    Raises:
        FieldError: naming the first bad field.
    """
    check_model_name(settings.model, models)
    settings.check()
    if settings.best_of > limits.max_best_of:
        raise FieldError("best_of", f"at most {limits.max_best_of} on this server (got {settings.best_of})")
    if settings.max_length > limits.max_length:
        raise FieldError("max_length", f"at most {limits.max_length} on this server (got {settings.max_length})")
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


@dataclasses.dataclass
class BestOfResult(batcher.Result):
    """A best-of tune: the kept candidate's tokens, its plain tune ``number`` under the seed,
    every candidate's ``scores`` (mean log-probability per token, in candidate order) and the
    seconds its candidates took to sample and score."""

    number: int
    scores: tuple[float, ...]
    seconds: float


def choose_best(settings: TuneSettings, candidates: Sequence[batcher.Result], scores: Sequence[float],
                seconds: float) -> BestOfResult:
    """The candidate of ``settings.candidates()`` the model scores highest (the first on a tie,
    as ``rerank.best_of`` keeps it)."""
    best = max(range(len(candidates)), key=lambda j: (scores[j], -j))
    return BestOfResult(candidates[best].tokens, candidates[best].truncated,
                        settings.candidates()[best].tune, tuple(float(x) for x in scores), seconds)


def tune_title(settings: TuneSettings, step: int, result: batcher.Result | None = None) -> str:
    """The ``T:`` line the command line writes for this tune (for a best-of tune, with the kept
    candidate's number, as ``experiments.sample --best_of`` writes it)."""
    number = result.number if isinstance(result, BestOfResult) else settings.tune
    return output.tune_title(step, settings.seed, number, settings.constrain, settings.key, settings.best_of)


def tune_abc(tokens: Sequence[str], settings: TuneSettings, step: int, title: str | None = None,
             result: batcher.Result | None = None) -> str:
    """The tune as the command line writes it (``X:`` = the tune number, the CLI's title,
    transposed to ``settings.key``), or with another ``title``."""
    return abc_out.tokens_to_abc(tokens, index=settings.tune, title=title or tune_title(settings, step, result),
                                 key=settings.key)


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
    if not settings.constrain:
        parts.append("--noconstrain")
    if settings.max_length != options_lib.DEFAULTS.max_length:
        parts.append(f"--max_length={settings.max_length}")
    if settings.best_of > 1:
        parts.append(f"--best_of={settings.best_of}")
    return " ".join(parts)


def _shell_quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"
