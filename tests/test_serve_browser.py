"""The composer page in real headless Chromium (Debian ``chromium`` + ``chromium-driver``,
through selenium): it opens the page, composes a tune, and the drawn score has notes and its
ABC is the API's for the same settings; a bad prefix token is shown inline by name, ABC words
are not; a permalink with an ABC prefix composes; an error leaves no stale player or
variations; a reopened saved tune shows its own title; a page reached under another host name
(DNS rebinding) gets nothing; PostScript in a title does not reach the PDF.

Skipped, saying why, where Chromium or its driver is not installed (``.ci/run`` installs them).
"""

import contextlib
import os
import shutil
import time
import urllib.parse

import httpx
import pytest

from folkrnn_jax.serve import engine
from folkrnn_jax.serve.app import ServerOptions, create_app
from tests.test_serve_api import serving

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or DRIVER is None,
    reason="headless Chromium is not installed (apt-get install chromium chromium-driver; .ci/run does)",
)
MAX_LENGTH = 300


@contextlib.contextmanager
def chromium(width=1280, height=1400, extra=()):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     f"--window-size={width},{height}", "--autoplay-policy=no-user-gesture-required", *extra):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver, condition, timeout=300.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = driver.execute_script(condition)
        if value:
            return value
        time.sleep(0.25)
    status = driver.execute_script("return document.getElementById('status').textContent")
    raise AssertionError(f"timed out waiting for {condition!r}; status: {status}")


@pytest.fixture(scope="module")
def server(trained_run, tmp_path_factory):
    models = engine.load_models([trained_run], default_dir=os.path.join(trained_run, "no_default"))
    app = create_app(models, ServerOptions(data_dir=str(tmp_path_factory.mktemp("data")), slots=4))
    with serving(app) as url:
        yield url, models[0].name


def test_page_composes_the_apis_tune(server):
    url, name = server
    settings = dict(model=name, seed=7, key="D", meter="6/8", max_length=MAX_LENGTH)
    with chromium() as driver:
        driver.get(url + "/?" + "&".join(f"{k}={v}" for k, v in settings.items()))  # a permalink composes at once
        wait_for(driver, "return document.getElementById('status').dataset.state === 'done'")
        notes = driver.execute_script("return document.querySelectorAll('#paper .abcjs-note').length")
        assert notes > 0, "the drawn score has no notes"
        page_abc = driver.execute_script("return window.composer.currentAbc")
        api = httpx.get(url + "/api/tune", params=settings, timeout=300).json()
        assert page_abc == api["abc"]
        assert "K:D" in page_abc
        # The player loaded the tune's notes from this server's sound font (no request leaves the machine).
        wait_for(driver, "return window.composer.synthReady || window.composer.noAudio"
                         " || !!document.getElementById('audio').dataset.error")
        assert not driver.execute_script("return document.getElementById('audio').dataset.error || ''")

        # Best of 2 from a permalink: the status tells the candidates and their cost, the score is the API's.
        best = dict(model=name, seed=9, best_of=2, max_length=MAX_LENGTH)
        driver.get(url + "/?" + "&".join(f"{k}={v}" for k, v in best.items()))
        wait_for(driver, "return document.getElementById('status').dataset.state === 'done'")
        status = driver.execute_script("return document.getElementById('status').textContent")
        assert "best of 2" in status and "sampled and scored in" in status, status
        assert driver.execute_script("return document.getElementById('best_of').value") == "2"
        api = httpx.get(url + "/api/tune", params=best, timeout=300).json()
        assert driver.execute_script("return window.composer.currentAbc") == api["abc"]

        # Compose from the form: a typed seed, locked, and a prefix.
        driver.get(url + "/")
        wait_for(driver, "return document.getElementById('model').options.length > 0")
        driver.execute_script("""
            document.getElementById('seed').value = '12';
            document.getElementById('lock_seed').checked = true;
            document.getElementById('max_length').value = '%d';
            document.getElementById('mode').value = 'dor';
        """ % MAX_LENGTH)
        driver.find_element("id", "prefix").send_keys("|: G A B c")
        driver.find_element("id", "generate").click()
        wait_for(driver, "return document.getElementById('status').dataset.state === 'done'")
        page_abc = driver.execute_script("return window.composer.currentAbc")
        api = httpx.get(url + "/api/tune", params=dict(model=name, seed=12, mode="dor", prefix="|: G A B c",
                                                      max_length=MAX_LENGTH), timeout=300).json()
        assert page_abc == api["abc"]
        assert driver.execute_script("return document.querySelectorAll('#paper .abcjs-note').length") > 0

        # A bad token is named inline before anything is sent.
        prefix = driver.find_element("id", "prefix")
        prefix.clear()
        prefix.send_keys("|: G H7 A")
        check = wait_for(driver, "return document.getElementById('prefix_check').textContent.includes(\"'H7'\")"
                                 " && document.getElementById('prefix_check').textContent")
        assert "unknown token" in check
        assert driver.execute_script("return [...document.querySelectorAll('#prefix_check .bad')]"
                                     ".map((e) => e.textContent)") == ["H7"]


def _state(driver):
    return driver.execute_script("return document.getElementById('status').dataset.state")


def test_permalinks_errors_saved_titles_and_abc_words(server):
    url, name = server
    with chromium() as driver:
        # A permalink whose prefix is ABC composes (the page waits for its own prefix check).
        query = urllib.parse.urlencode(dict(model=name, seed=4, max_length=MAX_LENGTH, prefix="K:D |: DEF GAB"))
        driver.get(url + "/?" + query)
        wait_for(driver, "return ['done', 'error'].includes(document.getElementById('status').dataset.state)")
        assert _state(driver) == "done", driver.execute_script("return document.getElementById('status').textContent")
        assert "K:D" in driver.execute_script("return window.composer.currentAbc")

        # Save it under the user's title, with PostScript in it; reopen it from the tunebook.
        title = "Dawn Reel %%postscript (PWNED) show"
        driver.find_element("id", "title").send_keys(title)
        driver.find_element("id", "save").click()
        wait_for(driver, "return document.querySelectorAll('#tunebook li a').length > 0")
        link = driver.execute_script("return document.querySelector('#tunebook li a').href")
        driver.get(link)
        wait_for(driver, "return document.getElementById('status').dataset.state === 'done'")
        wait_for(driver, "return window.composer.currentAbc.includes('T:Dawn Reel')")
        assert driver.execute_script("return document.getElementById('title').value") == title
        assert "Dawn Reel" in driver.execute_script("return document.getElementById('paper').textContent")
        pdf = driver.execute_async_script("""
            const done = arguments[arguments.length - 1];
            fetch('/api/tunebook/export.pdf').then((r) => done(r.status)).catch((e) => done(String(e)));""")
        assert pdf in (200, 503), pdf  # 503 only where abcm2ps or ghostscript is missing

        # Vary, then an error: neither the old player nor the variations stay.
        driver.find_element("id", "vary").click()
        wait_for(driver, "return !document.getElementById('variants_panel').hidden")
        driver.execute_script("document.getElementById('temperature').value = '99';")
        driver.find_element("id", "generate").click()
        wait_for(driver, "return document.getElementById('status').dataset.state === 'error'")
        assert "temperature" in driver.execute_script("return document.getElementById('status').textContent")
        assert driver.execute_script("return document.getElementById('variants_panel').hidden")
        assert driver.execute_script("return document.getElementById('audio').hidden")

        # ABC words are not flagged as unknown; a word that is neither is, by name.
        prefix = driver.find_element("id", "prefix")
        prefix.clear()
        prefix.send_keys("|: zzz G")
        check = wait_for(driver, "return document.getElementById('prefix_check').textContent.includes('ABC')"
                                 " && document.getElementById('prefix_check').textContent")
        assert "unknown" not in check
        assert not driver.execute_script("return document.querySelectorAll('#prefix_check .bad').length")


def test_a_rebound_host_name_gets_nothing(server):
    url, _ = server
    port = url.rsplit(":", 1)[1]
    with chromium(extra=["--host-resolver-rules=MAP evil.example 127.0.0.1"]) as driver:
        driver.get(f"http://evil.example:{port}/")
        text = driver.execute_script("return document.body.textContent")
        assert "Invalid host header" in text
        assert not driver.execute_script("return !!document.getElementById('generate')")
