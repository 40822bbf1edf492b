// The composer page: settings -> /api/stream (server-sent events over fetch, so that a 422's
// message can be shown and Stop can close the connection), the score drawn by abcjs as the
// tokens arrive, playback with abcjs's synth from the locally served piano notes.
"use strict";

const SETTINGS = ["model", "meter", "mode", "key", "temperature", "seed", "tune", "prefix",
                  "top_k", "top_p", "constrain", "max_length", "best_of"];
const BAR_TOKENS = new Set(["|", "|:", ":|", "|1", "|2"]);
const $ = (id) => document.getElementById(id);

const composer = {
  vocabulary: new Set(),   // the 137 v2 tokens
  current: null,           // the finished tune (JSON from the API)
  currentAbc: "",          // the ABC drawn on the page
  controller: null,        // AbortController of the stream in flight
  visual: null,            // abcjs's tune object of the score
  synth: null,             // abcjs SynthController
  prefixOk: true,
  prefixChecked: Promise.resolve(),  // settles when the server has read the prefix
  openEntry: null,         // a saved tune being reopened (its title is shown once drawn)
};
window.composer = composer;  // read by the browser test

function setStatus(state, text) {
  const status = $("status");
  status.dataset.state = state;
  status.textContent = text;
}

function randomSeed() {
  const buffer = new Uint32Array(1);
  crypto.getRandomValues(buffer);
  return buffer[0] % 2147483648;
}

function readSettings() {
  const values = {};
  for (const name of SETTINGS) {
    const element = $(name);
    if (element.type === "checkbox") values[name] = element.checked;
    else values[name] = element.value;
  }
  return values;
}

function query(values) {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(values)) {
    if (value === "" || value === null || value === undefined) continue;
    params.set(name, typeof value === "boolean" ? (value ? "1" : "0") : String(value));
  }
  return params.toString();
}

function applySettings(params) {
  for (const name of SETTINGS) {
    if (!params.has(name)) continue;
    const element = $(name);
    const value = params.get(name);
    if (element.type === "checkbox") element.checked = !["0", "false", "off", ""].includes(value.toLowerCase());
    else element.value = value;
  }
}

// ---------------------------------------------------------------------------------------------
// The prefix, checked against the vocabulary as it is typed.

function escapeHtml(text) {
  return text.replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
}

// Words that are not v2 tokens may still be ABC (the server reads "|: zzz G" as rests), so
// nothing is marked unknown until the server has said so; Compose waits for that answer.
let prefixTimer = null;
function checkPrefix(delay = 400) {
  const text = $("prefix").value;
  const words = text.split(/\s+/).filter((w) => w.length);
  const unknown = words.filter((w) => w !== "*" && !composer.vocabulary.has(w));
  const check = $("prefix_check");
  clearTimeout(prefixTimer);
  if (!unknown.length) {
    composer.prefixOk = true;
    composer.prefixChecked = Promise.resolve();
    check.className = "check";
    check.textContent = words.length ? `${words.length} tokens` : "";
    return composer.prefixChecked;
  }
  composer.prefixOk = false;
  check.className = "check";
  check.textContent = "checking...";
  composer.prefixChecked = new Promise((resolve) => {
    prefixTimer = setTimeout(() => serverCheck(text, words).finally(resolve), delay);
  });
  return composer.prefixChecked;
}

async function serverCheck(text, words) {
  const response = await fetch("/api/prefix", {method: "POST", headers: {"content-type": "application/json"},
    body: JSON.stringify({prefix: text})});
  if ($("prefix").value !== text) return;
  const check = $("prefix_check");
  if (response.ok) {
    const tokens = (await response.json()).tokens;
    composer.prefixOk = true;
    check.className = "check";
    check.textContent = "not v2 tokens; read as ABC: " + tokens.slice(1).join(" ");
    return;
  }
  const detail = ((await response.json().catch(() => ({}))).detail || response.statusText).replace(/^prefix: /, "");
  composer.prefixOk = false;
  check.className = "check bad";
  check.innerHTML = words.map((w) => detail.includes(`'${w}'`) ? `<span class="bad">${escapeHtml(w)}</span>` : escapeHtml(w)).join(" ")
    + "<br>" + escapeHtml(detail);
}

// ---------------------------------------------------------------------------------------------
// Composing.

function drawScore(abc) {
  composer.currentAbc = abc;
  $("abc_text").textContent = abc;
  const visuals = ABCJS.renderAbc("paper", abc, {responsive: "resize", add_classes: true, paddingbottom: 10});
  composer.visual = visuals[0];
}

async function compose(event) {
  if (event) event.preventDefault();
  await composer.prefixChecked;
  if (!composer.prefixOk) {
    setStatus("error", "Fix the initial ABC first: " + $("prefix_check").textContent);
    return;
  }
  if (!$("lock_seed").checked && !composer.keepSeedOnce) $("seed").value = randomSeed();
  composer.keepSeedOnce = false;
  const settings = readSettings();
  stopStream();
  hidePlayback();
  composer.current = null;
  $("tune_actions").hidden = true;
  $("variants_panel").hidden = true;  // they vary the tune that was on the page
  $("variants").innerHTML = "";
  $("tokens").textContent = "";
  $("paper").innerHTML = "";
  setStatus("running", "composing...");
  $("stop").disabled = false;
  const controller = new AbortController();
  composer.controller = controller;
  try {
    const response = await fetch("/api/stream?" + query(settings), {signal: controller.signal});
    if (!response.ok) {
      const body = await response.json().catch(() => ({detail: response.statusText}));
      setStatus("error", body.detail || response.statusText);
      return;
    }
    await readEvents(response, settings);
  } catch (error) {
    if (error.name === "AbortError") setStatus("stopped", "stopped");
    else setStatus("error", String(error));
  } finally {
    if (composer.controller === controller) composer.controller = null;
    $("stop").disabled = true;
  }
}

async function readEvents(response, settings) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  const tokens = [];
  for (;;) {
    const {value, done} = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, {stream: true});
    let split;
    while ((split = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, split);
      buffer = buffer.slice(split + 2);
      let kind = "message", data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event: ")) kind = line.slice(7);
        else if (line.startsWith("data: ")) data += line.slice(6);
      }
      const payload = JSON.parse(data);
      if (kind === "token") {
        tokens.push(payload.token);
        $("tokens").textContent = tokens.join(" ");
        if (payload.abc) drawScore(payload.abc);
        setStatus("running", `composing... ${tokens.length} tokens`);
      } else if (kind === "candidate") {
        setStatus("running", `composing... best of ${payload.total}: ${payload.done} of ${payload.total} candidates drawn`);
      } else if (kind === "done") {
        finish(payload);
        return;
      } else if (kind === "error") {
        setStatus("error", payload.detail);
        return;
      }
    }
  }
}

function finish(tune) {
  composer.current = tune;
  drawScore(tune.abc);
  $("tokens").textContent = tune.tokens.join(" ");
  const notes = tune.truncated ? "cut at the maximum length" : (tune.valid ? "well-formed" : "has structure problems");
  let best = "";
  if (tune.best_of) {
    const b = tune.best_of;
    best = `; best of ${b.candidates} (kept candidate tune ${b.kept}, ` +
           `${Math.max(...b.scores).toFixed(3)} nats/token against a mean of ` +
           `${(b.scores.reduce((x, y) => x + y, 0) / b.scores.length).toFixed(3)}; ` +
           `${b.candidates} tunes sampled and scored in ${b.seconds.toFixed(1)} s)`;
  }
  setStatus("done", `done: ${tune.tokens.length} tokens, ${notes} (seed ${tune.settings.seed})${best}`);
  const q = query(tune.settings);
  $("dl_abc").href = "/api/tune?" + q + "&format=abc";
  $("dl_midi").href = "/api/tune?" + q + "&format=midi";
  $("dl_svg").href = "/api/tune?" + q + "&format=svg";
  $("dl_musicxml").href = "/api/tune?" + q + "&format=musicxml";
  $("permalink").href = tune.permalink;
  $("command").textContent = tune.command || "";
  history.replaceState(null, "", tune.permalink);
  $("tune_actions").hidden = false;
  const entry = composer.openEntry;
  composer.openEntry = null;
  if (entry && entry.settings.seed === tune.settings.seed && entry.settings.tune === tune.settings.tune) {
    // A saved tune reopened: its own title (and N: lines), as saved.
    drawScore(entry.abc);
    $("title").value = entry.title;
  }
  setUpPlayback();
}

function stopStream() {
  if (composer.controller) composer.controller.abort();
  composer.controller = null;
}

// ---------------------------------------------------------------------------------------------
// Playback: abcjs synth with the notes this server serves; the sounding note is highlighted,
// the warp control sets the tempo.

const cursor = {
  onStart() {},
  onFinished() { document.querySelectorAll("#paper .abcjs-highlight").forEach((e) => e.classList.remove("abcjs-highlight")); },
  onEvent(event) {
    document.querySelectorAll("#paper .abcjs-highlight").forEach((e) => e.classList.remove("abcjs-highlight"));
    for (const group of event.elements || []) for (const element of group) element.classList.add("abcjs-highlight");
  },
};

function setUpPlayback() {
  $("audio").hidden = false;
  if (!ABCJS.synth.supportsAudio()) {
    composer.noAudio = true;
    $("audio").textContent = "This browser cannot play audio.";
    return;
  }
  if (!composer.synth) {
    composer.synth = new ABCJS.synth.SynthController();
    composer.synth.load("#audio", cursor, {displayLoop: true, displayRestart: true, displayPlay: true,
                                          displayProgress: true, displayWarp: true});
  }
  composer.synthReady = false;
  composer.synth.setTune(composer.visual, false, {soundFontUrl: "/static/soundfont/", program: 0})
    .then(() => { composer.synthReady = true; })
    .catch((error) => { $("audio").dataset.error = String(error && error.message || error); });
}

function hidePlayback() {
  if (composer.synth) composer.synth.pause();
  composer.synthReady = false;
  $("audio").hidden = true;  // no player for a tune that is not on the page
}

// ---------------------------------------------------------------------------------------------
// Vary, tunebook.

async function postJson(url, body) {
  const response = await fetch(url, {method: "POST", headers: {"content-type": "application/json"}, body: JSON.stringify(body)});
  const data = await response.json();
  if (!response.ok) throw new Error(data.detail || response.statusText);
  return data;
}

async function vary() {
  if (!composer.current) return;
  const body = {source: composer.current.settings, variants: Number($("vary_n").value), seed: randomSeed()};
  if ($("vary_a").checked) body.part = "A"; else body.bars = Number($("vary_bars").value);
  setStatus("running", "drawing variations...");
  try {
    const data = await postJson("/api/vary", body);
    const panel = $("variants");
    panel.innerHTML = "";
    data.tunes.forEach((tune, i) => {
      const cell = document.createElement("div");
      cell.className = "variant";
      const paper = document.createElement("div");
      paper.id = "variant_" + i;
      const link = document.createElement("a");
      link.href = tune.permalink;
      link.textContent = `Variation ${i + 1} (seed ${tune.settings.seed}, tune ${tune.settings.tune})`;
      cell.append(link, paper);
      panel.append(cell);
      ABCJS.renderAbc(paper.id, tune.abc, {responsive: "resize", add_classes: true});
    });
    $("variants_panel").hidden = false;
    setStatus("done", `${data.tunes.length} variations keep ${data.kept_tokens} tokens`);
  } catch (error) {
    setStatus("error", error.message);
  }
}

async function save() {
  if (!composer.current) return;
  try {
    const entry = await postJson("/api/tunebook", {title: $("title").value, settings: composer.current.settings});
    setStatus("done", `saved "${entry.title}" (no. ${entry.id})`);
    loadTunebook();
  } catch (error) {
    setStatus("error", error.message);
  }
}

async function loadTunebook() {
  const q = $("search").value.trim();
  const response = await fetch("/api/tunebook" + (q ? "?q=" + encodeURIComponent(q) : ""));
  const entries = await response.json();
  const list = $("tunebook");
  list.innerHTML = "";
  for (const entry of entries) {
    const item = document.createElement("li");
    const link = document.createElement("a");
    link.href = "/?" + query({...entry.settings, entry: entry.id});
    link.textContent = entry.title;
    const date = document.createElement("small");
    date.textContent = " " + entry.created.replace("T", " ").slice(0, 16);
    const remove = document.createElement("button");
    remove.textContent = "Delete";
    remove.addEventListener("click", async () => {
      await fetch("/api/tunebook/" + entry.id, {method: "DELETE"});
      loadTunebook();
    });
    item.append(link, date, remove);
    list.append(item);
  }
  if (!entries.length) list.innerHTML = q ? "<li>No saved tune matches.</li>" : "<li>No saved tunes yet.</li>";
}

// ---------------------------------------------------------------------------------------------
// Start-up.

function fill(select, values, labels) {
  values.forEach((value, i) => {
    const option = document.createElement("option");
    option.value = value;
    option.textContent = labels ? labels[i] : value;
    select.append(option);
  });
}

async function start() {
  const [models, vocabulary] = await Promise.all([
    fetch("/api/models").then((r) => r.json()), fetch("/api/vocabulary").then((r) => r.json())]);
  composer.vocabulary = new Set(vocabulary.tokens);
  fill($("model"), models.map((m) => m.name), models.map((m) => `${m.name}: ${m.description}`));
  fill($("meter"), vocabulary.meters);
  fill($("mode"), vocabulary.modes, vocabulary.modes.map((m) => ({maj: "major", min: "minor", dor: "dorian", mix: "mixolydian"})[m] || m));
  fill($("key"), vocabulary.roots.filter((r) => r !== "C"));
  $("max_length").max = vocabulary.limits.max_length;
  $("best_of").max = vocabulary.limits.max_best_of;
  $("settings").addEventListener("submit", compose);
  $("stop").addEventListener("click", stopStream);
  $("prefix").addEventListener("input", () => checkPrefix());
  $("vary").addEventListener("click", vary);
  $("save").addEventListener("click", save);
  $("search").addEventListener("input", loadTunebook);
  loadTunebook();
  const params = new URLSearchParams(location.search);
  applySettings(params);
  checkPrefix(0);
  if (params.has("entry")) {
    const response = await fetch("/api/tunebook/" + encodeURIComponent(params.get("entry")));
    if (response.ok) composer.openEntry = await response.json();
  }
  if (params.has("seed")) {
    // A permalink: draw exactly that tune.
    $("lock_seed").checked = true;
    composer.keepSeedOnce = true;
    compose();
  } else {
    $("seed").value = randomSeed();
    setStatus("idle", "Choose settings and press Compose.");
  }
}

start();
