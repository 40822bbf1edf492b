"""The composer's web app (FastAPI): one page and a JSON API over the batched samplers.

``create_app(models, options)`` builds the app; ``python -m experiments.serve`` runs it with
uvicorn. All state lives in one ``Composer`` object on ``app.state.composer``: the samplers
(one per model, started and stopped with the app), the tunebook, and a small cache of finished
tunes (a download or a save after a tune was drawn does not sample it again; a tune is a
function of its settings, so the cache can never be stale).

Bad input gets a 422 whose JSON names the field: ``{"detail": "temperature: ...", "field":
"temperature"}``. The app answers only requests addressed to 127.0.0.1, localhost or the
address it serves on (a page elsewhere rebound by DNS to this machine gets 400), refuses a
request body over ``Limits.max_body_bytes`` unread (413), and a full sampler queue or a busy
typesetter with 429 and ``Retry-After``. There is no ``/docs`` page (it would load its script
from a CDN); the API's description is ``/openapi.json``.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import dataclasses
import json
import os
import re
import tempfile
import threading
import time
import urllib.parse
from typing import Annotated, Any, AsyncIterator, Literal, Optional

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, create_model
from starlette.middleware.body_limit import RequestBodyLimitMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware

from folkrnn_jax.generate import batcher, rerank
from folkrnn_jax.generate import options as options_lib
from folkrnn_jax.music import editing, output, structure, tools, typeset
from folkrnn_jax.serve import engine
from folkrnn_jax.serve.tunebook import Tunebook

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")


@dataclasses.dataclass(frozen=True)
class ServerOptions:
    """How the app runs: where the tunebook lives, the request limits, the batch rows per model
    and how many finished tunes to remember."""

    data_dir: str
    limits: engine.Limits = engine.Limits()
    slots: int = 32
    cache_size: int = 512
    hosts: tuple[str, ...] = ("127.0.0.1", "localhost")  # the Host headers answered


# ---------------------------------------------------------------------------------------------
# Request shapes, made from ``engine.TuneSettings`` (the library's ``SamplingSettings`` with
# the model and the tune number): the same fields, defaults and help as the command line's
# flags. Types are checked here; ranges by ``engine.prepare`` (``SamplingSettings.check``).

_PYTHON_TYPES = {"int": int, "float": float, "bool": bool, "str": str}


class _SettingsModel(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    def settings(self) -> engine.TuneSettings:
        """As engine settings (empty strings mean 'not set')."""
        names = {f.name for f in dataclasses.fields(engine.TuneSettings)}
        values = {k: v for k, v in self.model_dump().items() if k in names}
        for name in ("meter", "mode", "key"):
            values[name] = values[name] or None
        return engine.TuneSettings(**values)


def _settings_fields() -> dict[str, Any]:
    fields = {}
    for spec in dataclasses.fields(engine.TuneSettings):
        kind = _PYTHON_TYPES.get(spec.type, Optional[str])
        fields[spec.name] = (kind, Field(spec.default, description=spec.metadata["help"]))
    return fields


TuneQuery = create_model("TuneQuery", __base__=_SettingsModel, __doc__="The settings of one tune.",
                         **_settings_fields())


class TuneFileQuery(TuneQuery):
    """The settings of one tune and the form to send it in."""

    format: Literal["json", "abc", "midi", "svg", "musicxml"] = Field(
        "json", description="json, or a file: abc, midi, svg, musicxml.")


class TunesRequest(TuneQuery):
    """Several tunes of one seed: tunes ``tune`` ... ``tune + num_tunes - 1``."""

    num_tunes: int = Field(1, description="How many tunes (at most the server's limit).")


class VaryRequest(BaseModel):
    """Alternative continuations of a tune: keep its start, draw ``variants`` new endings."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    source: TuneQuery = Field(description="The settings of the tune to vary.")
    bars: int | None = Field(None, description="Keep this many bars.")
    part: Literal["A"] | None = Field(None, description="Keep the A part instead.")
    variants: int = Field(3, description="How many continuations.")
    seed: int = Field(0, description="Seed of the continuations (tunes 1..variants of it).")


class SaveRequest(BaseModel):
    """A tune to save in the tunebook, by its settings (the server draws or recalls it)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    title: str = Field(description="The tune's title.")
    settings: TuneQuery


class PrefixRequest(BaseModel):
    """A prefix to check before sampling."""

    model_config = ConfigDict(extra="forbid")

    prefix: str = ""
    meter: str | None = None
    mode: str | None = None


# ---------------------------------------------------------------------------------------------
# The app's state.


class Busy(Exception):
    """A queue is full: the client should try again after ``retry_after`` seconds."""

    def __init__(self, what: str, retry_after: int):
        super().__init__(what)
        self.retry_after = retry_after


class Composer:
    """Everything the app holds: models, samplers, tunebook, finished-tune cache, and the
    threads that typeset (apart from the default pool, so that a stalled export never holds up
    the tunebook)."""

    def __init__(self, models: list[engine.LoadedModel], options: ServerOptions):
        self.options = options
        self.limits = options.limits
        self.models = {m.name: m for m in models}
        self.samplers: dict[str, batcher.BatchSampler] = {}
        self.tunebook = Tunebook(options.data_dir)
        self._cache: collections.OrderedDict[engine.TuneSettings, batcher.Result] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._typesetter = concurrent.futures.ThreadPoolExecutor(typeset.MAX_CONCURRENT, "typeset")
        self._typesetting = 0  # runs submitted and not finished

    def start(self) -> None:
        """Start one sampler per model (each compiles its step on first use)."""
        for name, loaded in self.models.items():
            self.samplers[name] = batcher.BatchSampler(
                loaded.model, loaded.params, self.options.slots, self.limits.max_prefix_tokens,
                self.limits.max_waiting, name)

    def close(self) -> None:
        """Stop the samplers and the typesetting threads."""
        for sampler in self.samplers.values():
            sampler.close()
        self.samplers.clear()
        self._typesetter.shutdown(wait=False, cancel_futures=True)

    async def typeset(self, function: Any, *args: Any) -> Any:
        """``function(*args)`` on a typesetting thread; ``Busy`` when as many runs as
        ``typeset`` allows already run or wait."""
        with self._lock:
            if self._typesetting >= typeset.MAX_CONCURRENT + typeset.MAX_WAITING:
                raise Busy("typesetting is busy", 10)
            self._typesetting += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._typesetter, function, *args)
        finally:
            with self._lock:
                self._typesetting -= 1

    def submit(self, prepared: engine.Prepared, on_token: Any, on_done: Any, on_error: Any) -> batcher.Job:
        """Queue a tune on its model's sampler; ``Busy`` when the queue is full."""
        settings = prepared.settings
        try:
            return self.samplers[settings.model].submit(settings.sampling(), settings.tune, prepared.prefix_ids,
                                                        on_token, on_done, on_error)
        except batcher.QueueFullError as error:
            raise Busy(str(error), 5) from None

    def prepare(self, settings: engine.TuneSettings) -> engine.Prepared:
        return engine.prepare(settings, self.limits, list(self.models))

    def cached(self, settings: engine.TuneSettings) -> batcher.Result | None:
        with self._lock:
            result = self._cache.get(settings)
            if result is not None:
                self._cache.move_to_end(settings)
            return result

    def remember(self, settings: engine.TuneSettings, result: batcher.Result) -> None:
        with self._lock:
            self._cache[settings] = result
            self._cache.move_to_end(settings)
            while len(self._cache) > self.options.cache_size:
                self._cache.popitem(last=False)

    async def draw(self, prepared: engine.Prepared, on_candidate: Any = None) -> batcher.Result:
        """The tune of ``prepared``: from the cache, or sampled (sharing the batch); a best-of
        tune draws its candidates (``TuneSettings.candidates``), scores them with the model off
        the event loop and keeps the best (an ``engine.BestOfResult``).

        Args:
            prepared: the checked settings.
            on_candidate: ``on_candidate(done, total)`` as each candidate of a best-of tune ends.
        """
        settings = prepared.settings
        result = self.cached(settings)
        if result is not None:
            return result
        if settings.best_of > 1:
            return await self._draw_best_of(prepared, on_candidate)
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()

        def settle(value: Any) -> None:
            if not future.done():
                if isinstance(value, BaseException):
                    future.set_exception(value)
                else:
                    future.set_result(value)

        sampler = self.samplers[settings.model]
        job = self.submit(prepared, None, lambda r: loop.call_soon_threadsafe(settle, r),
                          lambda e: loop.call_soon_threadsafe(settle, e))
        try:
            result = await future
        except asyncio.CancelledError:
            sampler.cancel(job)  # the client went away: free the row
            raise
        self.remember(settings, result)
        return result

    async def _draw_best_of(self, prepared: engine.Prepared, on_candidate: Any) -> engine.BestOfResult:
        settings = prepared.settings
        started = time.monotonic()
        done = 0

        async def one(candidate: engine.TuneSettings) -> batcher.Result:
            nonlocal done
            result = await self.draw(engine.Prepared(candidate, prepared.prefix_tokens, prepared.prefix_ids))
            done += 1
            if on_candidate is not None:
                on_candidate(done, settings.best_of)
            return result

        candidates = await asyncio.gather(*(one(c) for c in settings.candidates()))
        loaded = self.models[settings.model]
        scores = await asyncio.to_thread(rerank.score_candidates, loaded.model, loaded.params,
                                         [c.tokens for c in candidates])
        result = engine.choose_best(settings, candidates, scores, time.monotonic() - started)
        self.remember(settings, result)
        return result

    def describe(self, settings: engine.TuneSettings, result: batcher.Result) -> dict[str, Any]:
        """A finished tune as JSON: settings, tokens, ABC (as the CLI writes it), title, whether
        it was cut at the maximum length or passes the structure checks, the equivalent
        command line (for runs) and the page's permalink."""
        loaded = self.models[settings.model]
        abc = engine.tune_abc(result.tokens, settings, loaded.step, result=result)
        described = {
            "settings": dataclasses.asdict(settings),
            "tokens": result.tokens,
            "abc": abc,
            "title": engine.tune_title(settings, loaded.step, result),
            "truncated": result.truncated,
            "valid": structure.is_valid_tune(result.tokens),
            "command": engine.cli_command(settings, loaded.workdir),
            "permalink": "/?" + permalink_query(settings),
        }
        if isinstance(result, engine.BestOfResult):
            # What best-of cost and what it chose: the kept candidate is plain tune `number`.
            described["best_of"] = {"candidates": len(result.scores), "kept": result.number,
                                    "scores": list(result.scores), "seconds": round(result.seconds, 3)}
        return described

    async def describe_all(self, prepared: list[engine.Prepared], results: list[batcher.Result]) -> list[dict]:
        """``describe`` for each tune, off the event loop (writing ABC is pure Python work)."""
        return await asyncio.to_thread(lambda: [self.describe(p.settings, r) for p, r in zip(prepared, results)])


def permalink_query(settings: engine.TuneSettings) -> str:
    """The query string that holds every setting (the page regenerates the tune from it)."""
    values = {k: v for k, v in dataclasses.asdict(settings).items() if v is not None}
    values["constrain"] = "1" if settings.constrain else "0"
    return urllib.parse.urlencode(values)


def _error(field: str, message: str, status: int = 422) -> JSONResponse:
    return JSONResponse({"detail": f"{field}: {message}", "field": field}, status_code=status)


def _composer(request: Request) -> Composer:
    return request.app.state.composer


def _check_count(composer: Composer, field: str, count: int) -> None:
    """Refuses a request for more tunes than the server's limit allows (a 422 naming ``field``)."""
    limit = composer.limits.max_tunes_per_request
    if not 1 <= count <= limit:
        raise engine.FieldError(field, f"must be in [1, {limit}] (got {count})")


def _check_entry_id(entry_id: int) -> None:
    """Refuses an id SQLite cannot hold (its integers are 64-bit), before it gets there."""
    options_lib.Bounds(1, 2**63 - 1, integer=True).check("entry_id", entry_id)


BAR_TOKENS = frozenset(("|", "|:", ":|", "|1", "|2", "</s>"))
PARTIAL_SCORE_SECONDS = 0.25


def _sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


# ---------------------------------------------------------------------------------------------
# The app.


def create_app(models: list[engine.LoadedModel], options: ServerOptions) -> FastAPI:
    """The composer app over ``models`` (the first is the page's default).

    Args:
        models: loaded models (``engine.load_models``).
        options: data directory, limits, slots.

    Returns:
        The FastAPI app; its lifespan starts and stops the samplers.
    """
    composer = Composer(models, options)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        composer.start()
        try:
            yield
        finally:
            composer.close()

    app = FastAPI(
        docs_url=None, redoc_url=None,  # both load scripts and fonts from CDNs: no request leaves
        title="folkrnn_jax composer",
        description="Folk tunes from the folk-rnn v2 model: one page and this JSON API. A tune is a "
                    "function of its settings: the same settings and seed give the same tune here, "
                    "on the page and from `python -m experiments.sample`.",
        version="1",
        lifespan=lifespan,
    )
    app.state.composer = composer
    app.add_middleware(RequestBodyLimitMiddleware, max_body_size=options.limits.max_body_bytes)
    # DNS rebinding: a page on another site whose name now points at 127.0.0.1 sends its own
    # name as Host; only this machine's names are answered.
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(dict.fromkeys(options.hosts)))

    @app.exception_handler(Busy)
    async def busy(request: Request, error: Busy) -> JSONResponse:
        return JSONResponse({"detail": f"busy: {error.args[0]}; try again in {error.retry_after} s", "field": None},
                            status_code=429, headers={"Retry-After": str(error.retry_after)})

    @app.exception_handler(engine.FieldError)
    async def field_error(request: Request, error: engine.FieldError) -> JSONResponse:
        return _error(error.field, error.reason)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {"loc": ("request",), "msg": "invalid"}
        location = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
        field = ".".join(location) or "request"
        return _error(field, first.get("msg", "invalid value"))

    async def tool_error(request: Request, error: Exception) -> JSONResponse:
        # abcm2ps, abc2midi or Ghostscript missing or failing: the server's fault, not the
        # request's. The tools name their temporary files; the client is not told where they were.
        detail = re.sub(re.escape(tempfile.gettempdir()) + r"/\S*", "(temporary file)", str(error))
        return JSONResponse({"detail": detail, "field": None}, status_code=503)

    for tool_error_class in (tools.ToolMissingError, tools.ToolError):
        app.add_exception_handler(tool_error_class, tool_error)

    @app.exception_handler(typeset.ToolBusyError)
    async def typesetter_busy(request: Request, error: typeset.ToolBusyError) -> JSONResponse:
        return await busy(request, Busy(str(error), 10))

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(os.path.join(STATIC_DIR, "index.html"), headers={"Cache-Control": "no-cache"})

    @app.get("/api/models", summary="The models on offer")
    async def list_models(request: Request) -> list[dict[str, Any]]:
        return [{"name": m.name, "description": m.description, "step": m.step}
                for m in _composer(request).models.values()]

    @app.get("/api/vocabulary", summary="Tokens, meters, modes, roots and the request limits")
    async def vocabulary(request: Request) -> dict[str, Any]:
        return {"tokens": engine.vocabulary(), "meters": list(engine.METERS), "modes": list(engine.MODES),
                "roots": list(engine.ROOTS), "limits": dataclasses.asdict(_composer(request).limits),
                "settings": options_lib.describe_settings()}

    @app.post("/api/prefix", summary="Check a prefix: its v2 tokens, or a 422 naming the bad token")
    async def check_prefix(body: PrefixRequest, request: Request) -> dict[str, Any]:
        limits = _composer(request).limits
        if len(body.prefix) > limits.max_prefix_chars:
            raise engine.FieldError("prefix", f"{len(body.prefix)} characters; at most {limits.max_prefix_chars}")
        tokens = engine.parse_prefix(body.prefix, body.meter or None, body.mode or None)
        if len(tokens) > limits.max_prefix_tokens:
            raise engine.FieldError("prefix", f"{len(tokens)} tokens; at most {limits.max_prefix_tokens}")
        return {"tokens": tokens}

    @app.get("/api/tune", summary="One tune, as JSON or as an ABC, MIDI, SVG or MusicXML file")
    async def one_tune(request: Request, query: Annotated[TuneFileQuery, Query()]) -> Any:
        composer = _composer(request)
        format = query.format
        prepared = composer.prepare(TuneQuery(**query.model_dump(exclude={"format"})).settings())
        result = await composer.draw(prepared)
        described = await asyncio.to_thread(composer.describe, prepared.settings, result)
        stem = f"folkrnn_seed{prepared.settings.seed}_tune{prepared.settings.tune}"
        if format == "json":
            return described
        if format == "abc":
            return Response(described["abc"], media_type="text/vnd.abc; charset=utf-8",
                            headers={"Content-Disposition": f'attachment; filename="{stem}.abc"'})
        if format == "midi":
            data = await asyncio.to_thread(output.midi_bytes, described["abc"], result.tokens,
                                           prepared.settings.key)
            return Response(data, media_type="audio/midi",
                            headers={"Content-Disposition": f'attachment; filename="{stem}.mid"'})
        if format == "musicxml":
            data = await asyncio.to_thread(output.abc_to_musicxml, described["abc"])
            return Response(data, media_type="application/vnd.recordare.musicxml+xml",
                            headers={"Content-Disposition": f'attachment; filename="{stem}.musicxml"'})
        svg = await composer.typeset(typeset.svg_text, described["abc"])
        return Response(svg, media_type="image/svg+xml",
                        headers={"Content-Disposition": f'attachment; filename="{stem}.svg"'})

    @app.post("/api/tunes", summary="Several tunes of one seed, sampled together")
    async def many_tunes(body: TunesRequest, request: Request) -> dict[str, Any]:
        composer = _composer(request)
        _check_count(composer, "num_tunes", body.num_tunes)
        base = TuneQuery(**body.model_dump(exclude={"num_tunes"})).settings()
        prepared = [composer.prepare(dataclasses.replace(base, tune=base.tune + i)) for i in range(body.num_tunes)]
        results = await asyncio.gather(*(composer.draw(p) for p in prepared))
        return {"tunes": await composer.describe_all(prepared, results)}

    @app.get("/api/stream", summary="One tune streamed as server-sent events",
             description="Events: `token` ({position, token}, and `abc` so far at every bar line), "
                         "or for a best-of tune `candidate` ({done, total}) as each candidate ends, "
                         "then `done` (the tune as /api/tune gives it) or `error` ({detail}). "
                         "Closing the connection stops the tune.")
    async def stream(request: Request, query: Annotated[TuneQuery, Query()]) -> StreamingResponse:
        composer = _composer(request)
        prepared = composer.prepare(query.settings())  # a bad field is a 422 before any event
        settings = prepared.settings
        step = composer.models[settings.model].step
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        cached = composer.cached(settings)
        job = None
        drawing: asyncio.Task | None = None
        if cached is not None:
            # A tune already drawn: its tokens at once, and no partial scores (the page draws
            # the finished one), so a crowd of cached replays costs the loop next to nothing.
            for position, token in enumerate(cached.tokens[1:], start=1):
                queue.put_nowait(("token", token, position))
            queue.put_nowait(("done", cached, None))
        elif settings.best_of > 1:
            # A best-of tune streams no tokens (which candidate is kept is known only when all
            # are scored): a `candidate` event as each ends, then `done`.
            async def best_of() -> None:
                try:
                    result = await composer.draw(prepared, lambda done, total: queue.put_nowait(
                        ("candidate", {"done": done, "total": total}, None)))
                    queue.put_nowait(("done", result, None))
                except Exception as error:  # told to the page as the plain tune's errors are
                    queue.put_nowait(("error", error, None))

            drawing = asyncio.create_task(best_of())
        else:
            job = composer.submit(
                prepared,
                lambda token, position: loop.call_soon_threadsafe(queue.put_nowait, ("token", token, position)),
                lambda result: loop.call_soon_threadsafe(queue.put_nowait, ("done", result, None)),
                lambda error: loop.call_soon_threadsafe(queue.put_nowait, ("error", error, None)),
            )

        async def events() -> AsyncIterator[str]:
            tokens = ["<s>"]
            last_score = 0.0
            try:
                while True:
                    kind, value, position = await queue.get()
                    if kind == "token":
                        tokens.append(value)
                        data: dict[str, Any] = {"position": position, "token": value}
                        # A partial score at a bar line, at most every PARTIAL_SCORE_SECONDS per
                        # stream: writing the ABC so far on every bar of hundreds of streams
                        # would hold up the loop.
                        now = time.monotonic()
                        if (job is not None and value in BAR_TOKENS
                                and now - last_score >= PARTIAL_SCORE_SECONDS):
                            data["abc"] = engine.tune_abc(tokens, settings, step)
                            last_score = now
                        yield _sse("token", data)
                    elif kind == "candidate":
                        yield _sse("candidate", value)
                    elif kind == "done":
                        composer.remember(settings, value)
                        yield _sse("done", await asyncio.to_thread(composer.describe, settings, value))
                        return
                    else:
                        yield _sse("error", {"detail": str(value)})
                        return
            finally:
                if job is not None:
                    composer.samplers[settings.model].cancel(job)  # a no-op once the tune has ended
                if drawing is not None:
                    drawing.cancel()  # the client went away: its candidates' rows are freed

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.post("/api/vary", summary="Keep the start of a tune, draw alternative continuations")
    async def vary(body: VaryRequest, request: Request) -> dict[str, Any]:
        composer = _composer(request)
        _check_count(composer, "variants", body.variants)
        source = composer.prepare(body.source.settings())
        result = await composer.draw(source)
        kept = editing.keep_bars(result.tokens, body.bars, body.part)
        # The kept tokens carry the tune's own M:/K: header, so meter and mode are not repeated.
        base = dataclasses.replace(source.settings, prefix=" ".join(kept[1:]), meter=None, mode=None,
                                   seed=body.seed, tune=1)
        prepared = [composer.prepare(dataclasses.replace(base, tune=i + 1)) for i in range(body.variants)]
        results = await asyncio.gather(*(composer.draw(p) for p in prepared))
        return {"kept": kept, "kept_tokens": len(kept),
                "tunes": await composer.describe_all(prepared, results)}

    @app.get("/api/tunebook", summary="Saved tunes; q searches titles and ABC")
    async def tunebook_list(request: Request, q: str | None = None) -> list[dict[str, Any]]:
        composer = _composer(request)
        if q is not None and len(q) > composer.limits.max_search_chars:
            raise engine.FieldError("q", f"{len(q)} characters; search with at most {composer.limits.max_search_chars}")
        return [e.as_json() for e in await asyncio.to_thread(composer.tunebook.list, q)]

    @app.post("/api/tunebook", summary="Save a tune (its ABC gets N: lines: model, seed, temperature, prefix)")
    async def tunebook_save(body: SaveRequest, request: Request) -> dict[str, Any]:
        composer = _composer(request)
        title = typeset.one_line(body.title)
        if not title or len(title) > composer.limits.max_title_chars:
            raise engine.FieldError("title", f"give a title of 1 to {composer.limits.max_title_chars} characters")
        prepared = composer.prepare(body.settings.settings())
        result = await composer.draw(prepared)
        settings = prepared.settings
        step = composer.models[settings.model].step
        abc = output.with_notes(engine.tune_abc(result.tokens, settings, step, result=result),
                                output.notes_lines(settings.model, step, settings.tune, settings), title=title)
        entry = await asyncio.to_thread(composer.tunebook.add, title, abc, dataclasses.asdict(settings))
        return entry.as_json()

    @app.get("/api/tunebook/export.abc", summary="The whole tunebook as one ABC file")
    async def tunebook_abc(request: Request) -> Response:
        text = await asyncio.to_thread(_composer(request).tunebook.export_abc)
        return Response(text, media_type="text/vnd.abc; charset=utf-8",
                        headers={"Content-Disposition": 'attachment; filename="tunebook.abc"'})

    @app.get("/api/tunebook/export.pdf", summary="The whole tunebook typeset (abcm2ps, Ghostscript)")
    async def tunebook_pdf(request: Request) -> Response:
        composer = _composer(request)
        entries = await asyncio.to_thread(composer.tunebook.list)
        if not entries:
            raise engine.FieldError("tunebook", "is empty: save a tune first")

        def render() -> bytes:
            with tempfile.TemporaryDirectory(prefix="folkrnn_book_") as folder:
                path = typeset.typeset_book([e.abc for e in entries], os.path.join(folder, "tunebook.pdf"),
                                            "Tunebook", f"{len(entries)} tunes from folkrnn_jax")
                with open(path, "rb") as f:
                    return f.read()

        data = await composer.typeset(render)
        return Response(data, media_type="application/pdf",
                        headers={"Content-Disposition": 'attachment; filename="tunebook.pdf"'})

    @app.get("/api/tunebook/{entry_id}", summary="One saved tune")
    async def tunebook_get(entry_id: int, request: Request) -> dict[str, Any]:
        _check_entry_id(entry_id)
        entry = await asyncio.to_thread(_composer(request).tunebook.get, entry_id)
        if entry is None:
            raise _NotFound(entry_id)
        return entry.as_json()

    @app.delete("/api/tunebook/{entry_id}", summary="Delete a saved tune")
    async def tunebook_delete(entry_id: int, request: Request) -> dict[str, Any]:
        _check_entry_id(entry_id)
        if not await asyncio.to_thread(_composer(request).tunebook.delete, entry_id):
            raise _NotFound(entry_id)
        return {"deleted": entry_id}

    @app.exception_handler(_NotFound)
    async def not_found(request: Request, error: _NotFound) -> JSONResponse:
        return _error("entry_id", f"no saved tune {error.args[0]}", status=404)

    @app.get("/api/status", summary="Tunes in flight and waiting, per model")
    async def status(request: Request) -> dict[str, Any]:
        composer = _composer(request)
        return {name: {"running": s.busy()[0], "waiting": s.busy()[1], "steps": s.steps, "slots": s.slots,
                       "compiled": s.ready.is_set(), "latency": s.latency_summary()}
                for name, s in composer.samplers.items()}

    return app


class _NotFound(Exception):
    """No tunebook entry with that id."""
