"""The composer under attack (issue 26), every row through the API: user text reaches
abcm2ps only as music and headers, typesetting is bounded and never holds up the tunebook,
other sites' Host names are refused, numbers past any range are a 422 naming the field,
search text and bodies are bounded (413 unread), a full queue is a 429 with Retry-After,
replays from the cache cost the loop next to nothing, and there is no CDN-loaded /docs."""

import asyncio
import os
import re
import resource
import shutil
import socket
import subprocess
import threading
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from folkrnn_jax.music import typeset
from folkrnn_jax.serve import app as app_lib
from folkrnn_jax.serve import engine
from folkrnn_jax.serve.app import ServerOptions, create_app
from tests.test_serve_api import MAX_LENGTH, serving

HAVE_TYPESETTERS = all(shutil.which(t) for t in ("abcm2ps", "gs", "pdfinfo"))
DIRECTIVES = ("%%postscript", "%%begintext", "%%abc-include", "%%format", "%%endtext")


@pytest.fixture(scope="module")
def loaded(trained_run):
    return engine.load_models([trained_run], default_dir=os.path.join(trained_run, "no_default"))


def _client(loaded, tmp_path, **limits):
    options = ServerOptions(data_dir=str(tmp_path / "data"), slots=4, limits=engine.Limits(**limits))
    return TestClient(create_app(loaded, options), base_url="http://127.0.0.1")


@pytest.fixture
def client(loaded, tmp_path):
    with _client(loaded, tmp_path) as client:
        yield client


def _field(response, field):
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["field"] == field, response.json()
    return response.json()["detail"]


def _no_directive_lines(abc):
    for line in abc.splitlines():
        assert not line.lstrip().startswith("%"), line
        assert not re.match(r"^\s*[IUm]:", line), line


# --- Row 1: directives and newlines in user fields ------------------------------------------

def test_newlines_and_directives_in_user_fields_never_reach_abcm2ps(client, loaded):
    settings = dict(model=loaded[0].name, seed=3, max_length=MAX_LENGTH, prefix="M:4/4 K:Cmaj |: G A")
    attack = "\n%%postscript /Times-Roman findfont 40 scalefont setfont (PWNED) show\n%%begintext\nmade up\n%%endtext"
    # In the prefix: refused, or kept on its N: line.
    response = client.post("/api/tunebook", json=dict(title="Fine", settings={**settings, "prefix": "G A" + attack}))
    if response.status_code == 200:
        _no_directive_lines(response.json()["abc"])
    else:
        _field(response, "prefix")
    # In the title: one line.
    saved = client.post("/api/tunebook", json=dict(title="Reel" + attack, settings=settings))
    assert saved.status_code == 200, saved.text
    _no_directive_lines(saved.json()["abc"])
    assert "\n" not in saved.json()["title"]
    _no_directive_lines(client.get("/api/tunebook/export.abc").text)


def test_typesetting_keeps_music_and_headers_only():
    tune = ("X:1\nT:Reel\n%%postscript {} loop\n%%abc-include /etc/passwd\n%%format /etc/passwd\n"
            "I:postscript (x) show\nU: T = !trill!\nm: ~n2 = (3o/n/m/ n\nN:note\nM:4/4\nL:1/8\nK:C\n"
            "CDEF GABc| % a comment %%postscript\n")
    clean = typeset.abc_for_typesetting(tune)
    for bad in (*DIRECTIVES, "I:", "U:", "m:", "%"):
        assert bad not in clean, (bad, clean)
    assert clean.splitlines() == ["X:1", "T:Reel", "N:note", "M:4/4", "L:1/8", "K:C", "CDEF GABc|"]
    book = typeset.book_abc([tune], "Title\n%%postscript {} loop", "sub\n%%begintext")
    assert "{} loop" not in book.replace("%%center Title %%postscript {} loop", "")
    assert all(not line.startswith(DIRECTIVES) for line in book.splitlines())


# --- Row 2: PostScript loops, a stalled export ---------------------------------------------

@pytest.mark.skipif(not HAVE_TYPESETTERS, reason="abcm2ps, ghostscript or poppler-utils is not installed")
def test_a_saved_postscript_loop_is_not_run_and_the_pdf_title_is_the_books(client, loaded):
    settings = dict(model=loaded[0].name, seed=3, max_length=MAX_LENGTH)
    assert client.post("/api/tunebook", json=dict(title="Plain", settings=settings)).status_code == 200
    # A tunebook written before the fix: the loop sits in the stored ABC.
    client.app.state.composer.tunebook.add("Loop", "X:1\nT:Loop\n%%postscript {} loop\nM:4/4\nK:C\nCDEF|\n", {})
    started = time.time()
    pdf = client.get("/api/tunebook/export.pdf")
    assert pdf.status_code == 200, pdf.text
    assert time.time() - started < typeset.ABCM2PS_TIMEOUT + typeset.GHOSTSCRIPT_TIMEOUT
    path = os.path.join(client.app.state.composer.options.data_dir, "book.pdf")
    with open(path, "wb") as f:
        f.write(pdf.content)
    info = subprocess.run(["pdfinfo", path], capture_output=True, text=True, check=True).stdout
    assert re.search(r"^Title:\s+Tunebook$", info, re.MULTILINE), info
    assert "/tmp" not in info and "folkrnn_" not in info


def test_the_tunebook_answers_while_exports_stall(loaded, tmp_path, monkeypatch):
    release = threading.Event()

    def stalled(tunes, output, *args, **kwargs):  # an export whose typesetter hangs until released
        release.wait(60)
        with open(output, "wb") as f:
            f.write(b"%PDF-1.4\n")
        return output

    monkeypatch.setattr(typeset, "typeset_book", stalled)
    with _client(loaded, tmp_path) as client:
        client.app.state.composer.tunebook.add("One", "X:1\nT:One\nM:4/4\nK:C\nCDEF|\n", {})
        statuses = []
        threads = [threading.Thread(target=lambda: statuses.append(client.get("/api/tunebook/export.pdf")))
                   for _ in range(typeset.MAX_CONCURRENT + typeset.MAX_WAITING + 2)]
        for thread in threads:
            thread.start()
        time.sleep(1.0)
        started = time.time()
        listed = client.get("/api/tunebook")
        assert listed.status_code == 200 and time.time() - started < 1.0
        release.set()
        for thread in threads:
            thread.join(60)
    refused = [r for r in statuses if r.status_code == 429]
    assert len(refused) == 2 and len(statuses) == len(threads), [r.status_code for r in statuses]
    assert all(int(r.headers["Retry-After"]) > 0 for r in refused)


# --- Row 3: DNS rebinding -------------------------------------------------------------------

def test_other_hosts_are_refused(client, loaded, tmp_path):
    assert client.get("/api/models", headers={"Host": "evil.example"}).status_code == 400
    assert client.get("/api/tunebook", headers={"Host": "evil.example:8000"}).status_code == 400
    assert client.delete("/api/tunebook/1", headers={"Host": "evil.example"}).status_code == 400
    assert client.get("/api/models", headers={"Host": "localhost:8000"}).status_code == 200
    assert client.get("/api/models", headers={"Host": "127.0.0.1:8000"}).status_code == 200
    options = ServerOptions(data_dir=str(tmp_path / "d2"), slots=2, hosts=("127.0.0.1", "localhost", "tunes.lan"))
    with TestClient(create_app(loaded, options), base_url="http://tunes.lan") as named:
        assert named.get("/api/models").status_code == 200


# --- Row 4: integers past 64 bits -----------------------------------------------------------

@pytest.mark.parametrize("field", ["seed", "tune", "top_k", "max_length"])
def test_huge_integers_are_a_422_naming_the_field(client, loaded, field):
    good = dict(model=loaded[0].name, seed=1, max_length=MAX_LENGTH)
    for value in (2**64 + 1, -(2**70), 10**40):
        _field(client.get("/api/tune", params={**good, field: value}), field)
        _field(client.post("/api/tunes", json={**good, field: value, "num_tunes": 1}), field)
    _field(client.post("/api/vary", json=dict(source=good, bars=1, variants=1, seed=2**80)), "seed")


def test_huge_tunebook_ids_are_refused(client):
    for method in ("get", "delete"):
        response = getattr(client, method)(f"/api/tunebook/{2**64 + 5}")
        _field(response, "entry_id")


# --- Row 5: search text ---------------------------------------------------------------------

def test_search_text_is_bounded(client):
    _field(client.get("/api/tunebook", params={"q": "_" * 50_001}), "q")  # '_' is LIKE's wildcard
    assert client.get("/api/tunebook", params={"q": "reel"}).status_code == 200


# --- Row 6: a huge body ---------------------------------------------------------------------

def _raw_request(url, head, body_chunks, chunked=False):
    """Send ``head`` and the chunks over a socket until the server answers; the status line."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head.encode())
        try:
            for chunk in body_chunks:
                sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" if chunked else chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed: what it said is read below
        return sock.recv(4096).decode(errors="replace").split("\r\n", 1)[0]


def test_a_300_mb_body_is_refused_unread(loaded, tmp_path):
    app = create_app(loaded, ServerOptions(data_dir=str(tmp_path / "data"), slots=2))
    megabyte = b"x" * 2**20
    with serving(app) as url:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB
        head = ("POST /api/tunes HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                f"Content-Length: {300 * 2**20}\r\n\r\n")
        assert " 413 " in _raw_request(url, head, (megabyte for _ in range(300)))
        head = ("POST /api/tunes HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                "Transfer-Encoding: chunked\r\n\r\n")
        assert " 413 " in _raw_request(url, head, (megabyte for _ in range(300)), chunked=True)
        grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
        assert grown_mb < 100, f"peak memory grew by {grown_mb:.0f} MB"
        assert httpx.get(url + "/api/models").status_code == 200


# --- Row 7: a full queue, and replays from the cache ----------------------------------------

def test_a_full_queue_is_a_429_with_retry_after(loaded, tmp_path):
    with _client(loaded, tmp_path, max_waiting=0) as client:
        response = client.get("/api/tune", params=dict(model=loaded[0].name, seed=1, max_length=MAX_LENGTH))
        assert response.status_code == 429, response.text
        assert int(response.headers["Retry-After"]) > 0
        stream = client.get("/api/stream", params=dict(model=loaded[0].name, seed=1, max_length=MAX_LENGTH))
        assert stream.status_code == 429


def _events(client, params):
    with client.stream("GET", "/api/stream", params=params) as response:
        assert response.status_code == 200
        return [line for line in response.iter_lines() if line.startswith("data: ")]


def test_a_replay_from_the_cache_writes_no_partial_scores(client, loaded):
    params = dict(model=loaded[0].name, seed=5, max_length=MAX_LENGTH)
    first = _events(client, params)
    again = _events(client, params)
    assert len(first) == len(again)
    assert not any('"abc"' in line for line in again[:-1])  # the finished tune's ABC only


@pytest.mark.slow
def test_many_cached_replays_do_not_freeze_the_server(loaded, tmp_path):
    app = create_app(loaded, ServerOptions(data_dir=str(tmp_path / "data"), slots=8))
    params = dict(model=loaded[0].name, seed=6, max_length=MAX_LENGTH)
    with serving(app) as url:
        httpx.get(url + "/api/tune", params=params, timeout=300)  # now cached

        async def crowd():
            async with httpx.AsyncClient(timeout=300) as http:
                async def replay():
                    async with http.stream("GET", url + "/api/stream", params=params) as response:
                        async for _ in response.aiter_lines():
                            pass

                tasks = [asyncio.create_task(replay()) for _ in range(400)]
                await asyncio.sleep(0.5)
                worst = 0.0
                while not all(t.done() for t in tasks):
                    started = time.perf_counter()
                    await http.get(url + "/api/models")
                    worst = max(worst, time.perf_counter() - started)
                    await asyncio.sleep(0.1)
                await asyncio.gather(*tasks)
                return worst

        assert asyncio.run(crowd()) < 2.0


# --- Row 8: /docs ---------------------------------------------------------------------------

def test_no_page_loads_from_another_host(client):
    assert client.get("/docs").status_code == 404
    assert client.get("/redoc").status_code == 404
    assert client.get("/openapi.json").status_code == 200
    for name in ("index.html", "app.js", "style.css"):
        with open(os.path.join(app_lib.STATIC_DIR, name), encoding="utf-8") as f:
            text = f.read()
        assert not re.search(r"(src|href)=[\"']?(https?:)?//", text), name
        assert "fonts.googleapis" not in text and "cdn." not in text, name
