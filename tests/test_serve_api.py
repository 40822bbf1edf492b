"""The composer's JSON API through FastAPI's test client, on a small model trained here.

A tune is a function of its settings: the API must give what ``sample_tunes`` and
``python -m experiments.sample`` give for the same settings and seed (``--key`` included);
bad requests get a 4xx naming the field and the server goes on serving; the tunebook survives
a restart and typesets to a PDF.
"""

import contextlib
import json
import math
import os
import re
import shutil
import socket
import subprocess
import threading
import time

import httpx
import jax
import pytest
import uvicorn
from fastapi.testclient import TestClient

from folkrnn_jax.generate import batcher, rerank, sampler
from folkrnn_jax.music import abc_out, editing
from folkrnn_jax.serve import engine
from folkrnn_jax.serve.app import ServerOptions, create_app
from tests.conftest import run_module

MAX_LENGTH = 300  # keeps each test tune short on a busy CPU


@pytest.fixture(scope="module")
def loaded(trained_run):
    return engine.load_models([trained_run], default_dir=os.path.join(trained_run, "no_default"))


@pytest.fixture
def client(loaded, tmp_path):
    app = create_app(loaded, ServerOptions(data_dir=str(tmp_path / "data"), slots=8))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        yield client


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(app):
    """uvicorn on a free loopback port in a thread, for the length of the block."""
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 60
    while not server.started:
        if time.time() > deadline:
            raise RuntimeError("the server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def reference(run_model, settings: engine.TuneSettings):
    model, params, step = run_model
    result = sampler.sample_tunes(
        model, params, jax.random.PRNGKey(settings.seed), settings.tune, settings.prefix, settings.temperature,
        settings.max_length, top_k=settings.top_k, top_p=settings.top_p, meter=settings.meter,
        mode=settings.mode, constrain=settings.constrain,
    )
    return result.tokens(settings.tune - 1)


@pytest.fixture(scope="module")
def run_model(loaded):
    m = loaded[0]
    return m.model, m.params, m.step


@pytest.mark.parametrize("options", [
    dict(seed=3),
    dict(seed=4, tune=2, temperature=0.8, top_k=8, constrain=False),
    dict(seed=5, meter="6/8", mode="dor", top_p=0.9, key="D"),
    dict(seed=6, prefix="M:4/4 K:Cmaj |: G A B c", temperature=1.2),
])
def test_tune_is_the_samplers(client, loaded, run_model, options):
    name = loaded[0].name
    settings = engine.TuneSettings(model=name, max_length=MAX_LENGTH, **options)
    query = {k: v for k, v in vars(settings).items() if v is not None}
    response = client.get("/api/tune", params=query)
    assert response.status_code == 200, response.text
    tune = response.json()
    expected = reference(run_model, settings)
    assert tune["tokens"] == expected
    title = (f"folkrnn_jax step {loaded[0].step} seed {settings.seed} tune {settings.tune}, "
             f"{'constrained' if settings.constrain else 'free'}, in {settings.key or 'C'}")
    assert tune["abc"] == abc_out.tokens_to_abc(expected, index=settings.tune, title=title, key=settings.key)
    assert tune["permalink"].startswith("/?") and f"seed={settings.seed}" in tune["permalink"]
    abc = client.get("/api/tune", params={**query, "format": "abc"})
    assert abc.text == tune["abc"]


def test_key_d_is_the_command_lines(client, loaded, tmp_path):
    name, workdir = loaded[0].name, loaded[0].workdir
    output = tmp_path / "cli.abc"
    process = run_module("experiments.sample", f"--workdir={workdir}", "--num_tunes=1", "--seed=11", "--key=D",
                         "--constrain", f"--max_length={MAX_LENGTH}", "--meter=6/8", f"--output={output}")
    assert process.returncode == 0, process.stderr
    response = client.get("/api/tune", params=dict(model=name, seed=11, key="D", constrain=True,
                                                   max_length=MAX_LENGTH, meter="6/8"))
    assert response.status_code == 200, response.text
    assert response.json()["abc"] == output.read_text()
    assert "K:D" in response.json()["abc"]


def test_abc_prefix_in_d_comes_back_in_d(client, loaded):
    response = client.get("/api/tune", params=dict(model=loaded[0].name, seed=3, max_length=MAX_LENGTH,
                                                   prefix="M:6/8 K:Dmix |: A>B c2"))
    assert response.status_code == 200, response.text
    abc = response.json()["abc"]
    assert "K:Dmix" in abc
    assert "|: A>B c2" in abc.replace("|:A", "|: A")


def stream_events(client, query) -> list[tuple[str, dict]]:
    """The (event, data) pairs of one /api/stream request."""
    events = []
    with client.stream("GET", "/api/stream", params=query) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        kind = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                events.append((kind, json.loads(line[6:])))
    return events


def test_stream_gives_the_same_tune_token_by_token(client, loaded):
    query = dict(model=loaded[0].name, seed=21, max_length=MAX_LENGTH, mode="mix")
    events = stream_events(client, query)
    tokens = ["<s>"] + [data["token"] for kind, data in events if kind == "token"]
    assert [d["position"] for k, d in events if k == "token"] == list(range(1, len(tokens)))
    assert events[-1][0] == "done"
    done = events[-1][1]
    assert done["tokens"] == tokens
    assert any("abc" in data for kind, data in events if kind == "token"), "no partial score at bar lines"
    assert client.get("/api/tune", params=query).json()["tokens"] == tokens


def test_best_of_is_the_command_lines(client, loaded, run_model):
    """Tune 2 best of 3 is what `experiments.sample --num_tunes=2 --best_of=3` keeps as its
    second tune (candidates 4-6 of the seed), with the same title; the stream tells each
    candidate's end, then gives the same tune; a request above the server's limit is a 422."""
    model, params, step = run_model
    kept = rerank.best_of(model, params, jax.random.PRNGKey(12), 2, 3, max_length=MAX_LENGTH, temperature=1.0)
    query = dict(model=loaded[0].name, seed=12, tune=2, best_of=3, max_length=MAX_LENGTH)
    response = client.get("/api/tune", params=query)
    assert response.status_code == 200, response.text
    tune = response.json()
    assert tune["tokens"] == kept.tunes[1]
    assert tune["best_of"]["kept"] == kept.indices[1] + 1 and 4 <= tune["best_of"]["kept"] <= 6
    assert max(tune["best_of"]["scores"]) == pytest.approx(kept.scores[1], abs=1e-5)
    assert tune["title"] == f"folkrnn_jax step {step} seed 12 tune {kept.indices[1] + 1}, constrained, best of 3, in C"
    assert "--num_tunes=2" in tune["command"] and "--best_of=3" in tune["command"]
    events = stream_events(client, {**query, "seed": 13})
    assert [d["done"] for k, d in events if k == "candidate"] == [1, 2, 3]
    assert events[-1][0] == "done" and events[-1][1]["best_of"]["candidates"] == 3
    again = rerank.best_of(model, params, jax.random.PRNGKey(13), 2, 3, max_length=MAX_LENGTH, temperature=1.0)
    assert events[-1][1]["tokens"] == again.tunes[1]
    _field_error(client.get("/api/tune", params={**query, "best_of": 9}), "best_of")


def test_several_tunes_share_the_batch(client, loaded, run_model):
    name = loaded[0].name
    body = dict(model=name, seed=8, num_tunes=3, max_length=MAX_LENGTH, constrain=False)
    response = client.post("/api/tunes", json=body)
    assert response.status_code == 200, response.text
    model, params, _ = run_model
    expected = sampler.sample_tunes(model, params, jax.random.PRNGKey(8), 3, max_length=MAX_LENGTH, constrain=False)
    assert [t["tokens"] for t in response.json()["tunes"]] == expected.all_tokens()


def test_concurrent_requests_get_their_own_tunes(client, loaded, run_model):
    name = loaded[0].name
    results = {}

    def fetch(seed):
        results[seed] = client.get("/api/tune", params=dict(model=name, seed=seed, max_length=MAX_LENGTH)).json()

    threads = [threading.Thread(target=fetch, args=(seed,)) for seed in range(30, 36)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for seed in range(30, 36):
        settings = engine.TuneSettings(model=name, seed=seed, max_length=MAX_LENGTH)
        assert results[seed]["tokens"] == reference(run_model, settings)


def test_a_cancelled_tune_stops_only_itself(loaded, run_model):
    batch = batcher.BatchSampler(loaded[0].model, loaded[0].params, slots=4)
    try:
        names = [m.name for m in loaded]
        slow = engine.prepare(engine.TuneSettings(model=names[0], seed=1, constrain=False), engine.Limits(), names)
        seen = threading.Event()
        job = batch.submit(slow.settings.sampling(), 1, slow.prefix_ids, lambda token, position: seen.set(),
                           lambda r: None, lambda e: None)
        assert seen.wait(120)
        settings = engine.TuneSettings(model=names[0], seed=2, max_length=MAX_LENGTH)
        other = engine.prepare(settings, engine.Limits(), names)
        batch.cancel(job)
        result = batch.generate(other.settings.sampling(), other.settings.tune, other.prefix_ids)
        assert result.tokens == reference(run_model, settings)
        assert batch.busy() == (0, 0)
    finally:
        batch.close()


def test_vary_keeps_the_start(client, loaded):
    name = loaded[0].name
    source = dict(model=name, seed=2, max_length=MAX_LENGTH, meter="4/4")
    response = client.post("/api/vary", json=dict(source=source, bars=2, variants=3, seed=9))
    assert response.status_code == 200, response.text
    data = response.json()
    kept = data["kept"]
    assert kept[0] == "<s>" and kept[-1] in ("|", ":|", "|:", "|1", "|2")
    assert len(data["tunes"]) == 3
    for i, tune in enumerate(data["tunes"]):
        assert tune["tokens"][: len(kept)] == kept
        assert tune["settings"]["tune"] == i + 1 and tune["settings"]["seed"] == 9
        again = client.get("/api/tune", params={k: v for k, v in tune["settings"].items() if v is not None})
        assert again.json()["tokens"] == tune["tokens"]
    part = client.post("/api/vary", json=dict(source=source, part="A", variants=1, seed=9))
    assert part.status_code in (200, 422), part.text


def _field_error(response, field):
    assert 400 <= response.status_code < 500, response.text
    body = response.json()
    assert body["field"] == field, body
    assert body["detail"].startswith(field + ":")
    return body["detail"]


def test_bad_requests_name_the_field(client, loaded):
    name = loaded[0].name
    good = dict(model=name, seed=1, max_length=MAX_LENGTH)
    # Not a v2 token, and not ABC either (words that are ABC are read as ABC, as the CLI does).
    assert "'H7'" in _field_error(client.get("/api/tune", params={**good, "prefix": "M:4/4 |: G H7 A"}), "prefix")
    _field_error(client.get("/api/tune", params={**good, "temperature": 0}), "temperature")
    _field_error(client.get("/api/tune", params={**good, "temperature": "nan"}), "temperature")
    nan_body = json.dumps({**good, "num_tunes": 1, "temperature": math.nan})  # NaN as JSON's non-standard literal
    _field_error(client.post("/api/tunes", content=nan_body, headers={"content-type": "application/json"}),
                 "temperature")
    _field_error(client.get("/api/tune", params={**good, "prefix": " ".join(["G"] * 10_000)}), "prefix")
    _field_error(client.post("/api/prefix", json={"prefix": " ".join(["G"] * 10_000)}), "prefix")
    assert "'nope'" in _field_error(client.get("/api/tune", params={**good, "model": "nope"}), "model")
    _field_error(client.get("/api/tune", params={**good, "model": "../../etc/passwd"}), "model")
    _field_error(client.get("/api/tune", params={**good, "model": loaded[0].workdir}), "model")
    _field_error(client.get("/api/tune", params={**good, "top_p": 0}), "top_p")
    _field_error(client.get("/api/tune", params={**good, "max_length": 100_000}), "max_length")
    _field_error(client.get("/api/tune", params={**good, "key": "H"}), "key")
    _field_error(client.post("/api/tunes", json={**good, "num_tunes": 1000}), "num_tunes")
    _field_error(client.get("/api/stream", params={**good, "temperature": -1}), "temperature")
    _field_error(client.delete("/api/tunebook/12345"), "entry_id")
    # ... and the server keeps serving.
    assert client.get("/api/tune", params=good).status_code == 200
    check = client.post("/api/prefix", json={"prefix": "|: G A B c", "meter": "6/8"})
    assert check.json()["tokens"] == ["<s>", "M:6/8", "|:", "G", "A", "B", "c"]


def test_tunebook_survives_a_restart_and_typesets(loaded, tmp_path):
    name = loaded[0].name
    data_dir = str(tmp_path / "data")
    settings = dict(model=name, seed=4, max_length=MAX_LENGTH, temperature=0.9, prefix="M:6/8 K:Cmaj G")
    with TestClient(create_app(loaded, ServerOptions(data_dir=data_dir, slots=4)), base_url="http://localhost") as client:
        saved = client.post("/api/tunebook", json=dict(title="The Restart Reel", settings=settings))
        assert saved.status_code == 200, saved.text
        entry = saved.json()
        tune = client.get("/api/tune", params=settings).json()
        second = client.post("/api/tunebook", json=dict(title="Another Jig", settings={**settings, "seed": 5}))
        assert second.status_code == 200
        _field_error(client.post("/api/tunebook", json=dict(title="  ", settings=settings)), "title")
    abc = entry["abc"]
    assert "T:The Restart Reel" in abc
    for line in (f"N:model {name} (step", "N:seed 4, tune 1", "N:temperature 0.9", "N:prefix M:6/8 K:Cmaj G"):
        assert line in abc
    body = tune["abc"].split("\n", 2)[2]  # the music is the API's tune
    assert abc.endswith(body)

    with TestClient(create_app(loaded, ServerOptions(data_dir=data_dir, slots=4)), base_url="http://localhost") as client:
        listed = client.get("/api/tunebook").json()
        assert [e["title"] for e in listed] == ["The Restart Reel", "Another Jig"]
        assert [e["title"] for e in client.get("/api/tunebook", params={"q": "restart"}).json()] == ["The Restart Reel"]
        assert client.get(f"/api/tunebook/{entry['id']}").json()["abc"] == abc
        exported = client.get("/api/tunebook/export.abc").text
        assert exported.count("X:") == 2 and "X:2" in exported
        if shutil.which("ps2pdf") and shutil.which("pdftoppm") and shutil.which("abcm2ps"):
            pdf = client.get("/api/tunebook/export.pdf")
            assert pdf.status_code == 200, pdf.text
            assert pdf.content.startswith(b"%PDF")
            path = tmp_path / "tunebook.pdf"
            path.write_bytes(pdf.content)
            subprocess.run(["pdftoppm", "-png", "-r", "40", "-f", "1", "-l", "1", str(path), str(tmp_path / "page")],
                           check=True)
            assert any(p.name.startswith("page") and p.suffix == ".png" for p in tmp_path.iterdir())
        assert client.delete(f"/api/tunebook/{entry['id']}").status_code == 200
        assert [e["title"] for e in client.get("/api/tunebook").json()] == ["Another Jig"]


def test_downloads(client, loaded):
    query = dict(model=loaded[0].name, seed=3, max_length=MAX_LENGTH)
    midi = client.get("/api/tune", params={**query, "format": "midi"})
    assert midi.status_code == 200 and midi.content.startswith(b"MThd")
    if shutil.which("abcm2ps"):
        svg = client.get("/api/tune", params={**query, "format": "svg"})
        assert svg.status_code == 200 and "<svg" in svg.text
    musicxml = client.get("/api/tune", params={**query, "format": "musicxml"})
    assert musicxml.status_code == 200 and b"<score-partwise" in musicxml.content
    assert musicxml.headers["content-disposition"].endswith('.musicxml"')
    page = client.get("/")
    assert page.status_code == 200 and "abcjs" in page.text
    assert client.get("/openapi.json").json()["paths"]["/api/tune"]


def test_keep_bars():
    tokens = "<s> M:4/4 K:Cmaj |: G A B c | d e f g | a b c' d' :| |: e f g a | b c' d' e' :| </s>".split()
    assert editing.keep_bars(tokens, bars=2)[-5:] == ["d", "e", "f", "g", "|"]
    assert editing.keep_bars(tokens, part="A")[-1] == ":|"
    ending = "<s> M:4/4 K:Cmaj G A B c |1 d e f g :| |2 a b c' d' | e f g a |".split()
    assert editing.keep_bars(ending, part="A")[-5:] == ["a", "b", "c'", "d'", "|"]
    with pytest.raises(engine.FieldError):
        editing.keep_bars(tokens, bars=40)


def test_a_client_that_goes_away_stops_its_tune(loaded, tmp_path):
    name = loaded[0].name
    app = create_app(loaded, ServerOptions(data_dir=str(tmp_path / "data"), slots=4))
    with serving(app) as url:
        with httpx.Client(timeout=300) as client:
            # A long unconstrained tune: read a few tokens, then hang up.
            with client.stream("GET", url + "/api/stream", params=dict(model=name, seed=1, constrain=False)) as response:
                for line in response.iter_lines():
                    if line.startswith("event: token"):
                        break
            deadline = time.time() + 120
            while client.get(url + "/api/status").json()[name]["running"] and time.time() < deadline:
                time.sleep(0.2)
            assert client.get(url + "/api/status").json()[name]["running"] == 0
            # ... and the server goes on serving.
            assert client.get(url + "/api/tune", params=dict(model=name, seed=2, max_length=MAX_LENGTH)).status_code == 200


def test_help_and_vocabulary_show_one_definition(client):
    """``experiments.sample --help`` and ``/api/vocabulary`` list every sampling setting with the
    same default and range: both are made from ``SamplingSettings``."""
    process = run_module("experiments.sample", "--help", timeout=120)
    assert process.returncode == 0, process.stderr
    settings = client.get("/api/vocabulary").json()["settings"]
    assert settings["constrain"]["default"] is True
    for name, described in settings.items():
        line = next((ln for ln in process.stdout.splitlines() if ln.startswith(f"  --{name}: ")), None)
        assert line is not None, f"--{name} is not in --help"
        default = described["default"]
        shown = {True: "true", False: "false"}.get(default, default) if isinstance(default, bool) else default
        if default is None:  # absl shows no default; the help may say what happens instead
            assert not re.search(r"\(default: '[^']*'\)$", line), line
        elif default != "":
            assert line.endswith(f"(default: {shown})") or line.endswith(f"(default: '{shown}')"), line
        if "range" in described:
            assert f"Range {described['range']}." in line, line
        for choice in described.get("choices", []):
            assert choice in line, line
    assert "--noconstrain" in process.stdout


def test_the_web_layer_is_thin():
    """``serve/`` holds HTTP, streaming and the tunebook: no sampling loop (no JAX) of its own,
    no typesetting; the book command does not import the web app."""
    import ast

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    serve = os.path.join(root, "folkrnn_jax", "serve")
    for name in sorted(os.listdir(serve)):
        if name.endswith(".py"):
            tree = ast.parse(open(os.path.join(serve, name)).read())
            imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
            imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
            assert not {m for m in imported if m == "jax" or m.startswith("jax.")}, name
            if name != "soundfont.py":  # a maintainer's script that renders the page's piano notes
                assert "subprocess" not in imported, name
    book = ast.parse(open(os.path.join(root, "experiments", "book.py")).read())
    modules = {n.module for n in ast.walk(book) if isinstance(n, ast.ImportFrom) and n.module}
    assert not any(m.startswith("folkrnn_jax.serve") for m in modules), modules
