"""Every analysis command on a tiny trained run; ablation and nudging go through the model;
every figure names what it looked at."""

import json
import os

import numpy as np
import pytest

from folkrnn_jax.analysis import plots, probes
from folkrnn_jax.music import vocab
from folkrnn_jax.training import runs as runs_lib
from tests.conftest import run_module, train_fixture_run


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    return train_fixture_run(
        tmp_path_factory.mktemp("analysis_run"), num_train_steps=40, hidden_size=32,
        log_every_steps=20, eval_every_steps=0,
    )


@pytest.mark.parametrize("kind", sorted(probes.ANALYSES))
def test_analysis_writes_pngs(tiny_run, tmp_path, kind):
    # In-process (the commands are experiments/analyze_KIND.py -> probes.ANALYSES[KIND]);
    # test_analysis_commands runs the command lines themselves.
    options = probes.AnalysisOptions(num_tunes=2, max_length=150)  # few, short tunes: the default suite is timed
    paths = probes.ANALYSES[kind](tiny_run, str(tmp_path), options, lambda line: None)
    assert all(os.path.exists(p) for p in paths)
    assert any(p.endswith(".png") for p in paths) and any(p.endswith(".json") for p in paths)
    if kind == "record":
        rec = np.load(tmp_path / "record.npz")
        assert "layer_1/h" in rec and "probs" in rec and len(rec["tokens"]) == rec["probs"].shape[0]


@pytest.fixture
def captions(monkeypatch):
    """The caption (suptitle) of every figure an analysis saves."""
    seen = []
    save = plots.save_figure

    def keep(fig, path, *args, **kwargs):
        seen.append(fig._suptitle.get_text().replace("\n", " ") if fig._suptitle else "")
        return save(fig, path, *args, **kwargs)

    monkeypatch.setattr(plots, "save_figure", keep)
    return seen


@pytest.mark.parametrize("kind", sorted(probes.ANALYSES))
def test_every_figure_names_model_step_n_and_layer(tiny_run, tmp_path, kind, captions):
    step = runs_lib.load_run(tiny_run)[2]
    lines = []
    options = probes.AnalysisOptions(num_tunes=2 if kind in ("bars", "forcing") else 0, max_length=150)
    paths = probes.ANALYSES[kind](tiny_run, str(tmp_path), options, lines.append)
    about = json.loads(open(next(p for p in paths if p.endswith(".json"))).read())["about"]
    assert about["model"] == tiny_run and about["step"] == step
    for text in [c for c in captions if c] + lines:
        assert tiny_run in text and f"step {step}" in text, text
        assert "layer" in text and "layer 0" not in text and "layer_" not in text, text
    if kind in ("softmax", "embeddings"):
        assert about["num_tunes"] == 0 and "no tunes" in lines[0]
    else:
        n = {"record": 1, "gram": 1, "bars": 2, "forcing": 2}[kind]
        assert about["num_tunes"] == n and f"n = {n} tune" in lines[0]
    assert len(lines) == 1 and all(captions[:1])  # one printed line; the main figure has its caption


def test_bar_probe_takes_tunes_count_and_layer(tiny_run, tmp_path):
    from tests.conftest import fixture_path

    data = fixture_path("data_v2_excerpt.txt")
    result = run_module("experiments.analyze_bars", f"--workdir={tiny_run}", f"--output={tmp_path}",
                        f"--tunes={data}", "--indices=2,3,5", "--layer=1", timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    bars = json.loads((tmp_path / "bars.json").read_text())
    assert bars["layer"] == 1 and bars["about"]["layer"] == "first layer"
    assert bars["about"]["num_tunes"] == 3 and bars["about"]["tunes"] == f"tunes 2-3, 5 of {data}"
    assert "n = 3 tunes (tunes 2-3, 5 of" in result.stdout and "units zeroed in the first layer" in result.stdout
    # Without --layer: the layer with the most bar-period power, not always the last one.
    model, params, step = runs_lib.load_run(tiny_run)
    subject = probes.select_tunes(model, params, tiny_run, step, probes.AnalysisOptions(tunes=data, num_tunes=3), 8)
    result = probes.bar_ablation(model, params, subject.tunes, (0, 2))
    assert result["layer"] == probes.strongest_bar_layer(result["power"])
    power = np.zeros((3, 16))
    power[0, :8] = 1.0
    assert probes.strongest_bar_layer(power) == 0
    # Tunes outside the file and layers the model does not have are one-line errors.
    for flag, words in (("--indices=99", "holds tunes 1-"), ("--layer=7", "has layers 1-2")):
        bad = run_module("experiments.analyze_bars", f"--workdir={tiny_run}", f"--output={tmp_path}",
                         f"--tunes={data}", flag, timeout=300)
        assert bad.returncode == 2 and words in bad.stderr.strip().splitlines()[-1], bad.stderr[-2000:]


def test_forcing_takes_tunes_from_a_file_and_a_count(tiny_run, tmp_path):
    from tests.conftest import fixture_path

    data = fixture_path("data_v2_excerpt.txt")
    lines = []
    options = probes.AnalysisOptions(tunes=data, indices=(1, 4), max_length=120)
    probes.run_forcing(tiny_run, str(tmp_path), options, lines.append)
    forcing = json.loads((tmp_path / "forcing.json").read_text())
    assert forcing["about"]["num_tunes"] == 2 and "opening bar of tunes 1, 4 of" in forcing["about"]["tunes"]
    opening = probes._opening(["<s>"] + open(data).read().split("\n\n")[0].split())
    assert forcing["plain"]["first_tune"].split()[: len(opening) - 1] == opening[1:]
    with pytest.raises(probes.InputError, match="--layer"):
        probes.run_forcing(tiny_run, str(tmp_path), probes.AnalysisOptions(layer=1), lines.append)


@pytest.mark.parametrize("kind", ["softmax", "embeddings"])
def test_analysis_commands(tiny_run, tmp_path, kind):
    result = run_module(f"experiments.analyze_{kind}", f"--workdir={tiny_run}", f"--output={tmp_path}",
                        timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert [f for f in os.listdir(tmp_path) if f.endswith(".png")]
    assert [f for f in os.listdir(tmp_path) if f.endswith(".json")]


def test_unit_mask_and_logit_bias(tiny_run):
    model, params, _ = runs_lib.load_run(tiny_run)
    tokens = ["<s>", "M:4/4", "K:Cmaj", "G", "A", "B", "c", "|", "d", "2", "B", "G", "|"]
    plain = probes.record(model, params, tokens)
    ones = np.ones((model.num_layers, model.hidden_size), np.float32)
    same = probes.record(model, params, tokens, unit_mask=ones)
    for key in plain:
        np.testing.assert_array_equal(plain[key], same[key])
    ablated_mask = ones.copy()
    ablated_mask[-1, :8] = 0.0
    ablated = probes.record(model, params, tokens, unit_mask=ablated_mask)
    assert np.all(ablated["layer_1/h"][:, :8] == 0.0)
    assert not np.allclose(ablated["logits"], plain["logits"])
    bias = np.zeros(vocab.VOCAB_SIZE, np.float32)
    bias[vocab.TOKEN_TO_ID["^f"]] = 2.0
    nudged = probes.record(model, params, tokens, logit_bias=bias)
    np.testing.assert_allclose(nudged["logits"] - plain["logits"], np.broadcast_to(bias, plain["logits"].shape),
                               atol=1e-5)
    # A float one-hot input is the int input.
    onehot = np.eye(vocab.VOCAB_SIZE, dtype=np.float32)[vocab.encode(tokens)]
    np.testing.assert_allclose(probes.record(model, params, onehot)["logits"], plain["logits"], atol=1e-5)


def test_two_hot_forcing_changes_samples(tiny_run):
    model, params, _ = runs_lib.load_run(tiny_run)
    zero = np.zeros(vocab.VOCAB_SIZE, np.float32)
    a = probes.forced_tunes(model, params, 0, 2, 0.0, zero, num_steps=60)
    b = probes.forced_tunes(model, params, 0, 2, 1.0, zero, num_steps=60)
    # (a barely trained model may sample the same tokens either way: the logits must differ)
    tokens = ["<s>", "M:4/4", "K:Cmaj", "G", "A", "B", "c", "|"]
    onehot = np.eye(vocab.VOCAB_SIZE, dtype=np.float32)[vocab.encode(tokens)]
    two_hot = 0.7 * onehot
    two_hot[:, vocab.TOKEN_TO_ID["^f"]] += 0.3
    assert not np.allclose(probes.record(model, params, two_hot)["logits"],
                           probes.record(model, params, onehot)["logits"])
    assert all(t[:2] == ["M:4/4", "K:Cmaj"] for t in a + b)


def test_bar_period_power_finds_periodic_unit():
    tokens = (["G", "A", "B", "|"] * 16)
    h = np.zeros((len(tokens), 3))
    h[:, 0] = [1.0 if t == "|" else 0.0 for t in tokens]
    h[:, 1] = np.random.default_rng(0).normal(size=len(tokens))
    power, period = probes.bar_period_power(h, tokens)
    assert period == 4 and power[0] > 0.4 and power[1] < 0.2  # the impulse train has half its power at 1/4


def test_enharmonic_pairs_present():
    pairs = probes.enharmonic_pairs()
    assert ("^f", "_g") in pairs and ("_C", "B,") in pairs


def test_bar_placement_measures():
    bar, note = vocab.TOKEN_TO_ID["|"], vocab.TOKEN_TO_ID["G"]
    targets = [note, note, bar, note]
    probs = np.zeros((4, vocab.VOCAB_SIZE))
    probs[:, note] = 1.0
    probs[2] = 0.0
    probs[2, bar] = 0.9
    probs[2, note] = 0.1
    assert probes.bar_placement_accuracy(probs, targets) == 1.0
    assert probes.bar_probability(probs, targets) == pytest.approx(0.9)
    probs[2] = probs[0]
    assert probes.bar_placement_accuracy(probs, targets) == 0.5


def test_heatmap_has_colour_bar_token_labels_and_wrapped_title():
    plt = plots.pyplot()
    fig, ax = plt.subplots()
    tokens = ["<s>", "M:4/4", "K:Cmaj", "G", "A", "|"]
    plots.heatmap(fig, ax, np.eye(len(tokens)), title="a title long enough to need a second line in the panel",
                  colorbar_label="cosine similarity", x_labels=tokens, y_labels=tokens)
    assert len(fig.axes) == 2 and fig.axes[1].get_ylabel() == "cosine similarity"  # the colour bar
    assert [t.get_text() for t in ax.get_xticklabels()] == tokens
    assert "\n" in ax.get_title()
    plt.close(fig)
    fig, ax = plt.subplots()
    plots.no_data(ax)
    assert [t.get_text() for t in ax.texts] == ["no data"] and not ax.get_xticks().size
    plt.close(fig)


def test_musical_order_groups_the_vocabulary():
    order = [vocab.TOKENS[i] for i in plots.musical_order()]
    assert sorted(order) == sorted(vocab.TOKENS)
    assert order[:2] == ["<s>", "</s>"] and order[2:9] == list(vocab.METER_TOKENS)
    pitches = [t for t in order if vocab.is_pitch(t)]
    assert order.index(pitches[0]) + len(pitches) - 1 == order.index(pitches[-1])  # together
    assert pitches.index("C,") < pitches.index("C") < pitches.index("c") < pitches.index("c'")


def test_learning_curves_from_metrics_records(tmp_path):
    from folkrnn_jax.analysis import curves

    records = [
        {"step": 5, "epoch": 0.5, "train_loss": 3.0, "learning_rate": 0.003},
        {"step": 10, "epoch": 1.0, "train_loss": 2.5, "valid_loss": 2.7, "valid_loss/a": 2.6,
         "valid_loss_per_tune/a": 2.65},
        {"step": 20, "epoch": 2.0, "train_loss": 2.0, "valid_loss": 2.2, "valid_loss/a": 2.1},
    ]
    series = curves.curve_series(records)
    assert sorted(series) == ["train_loss", "valid_loss", "valid_loss/a"]
    epochs, values = series["valid_loss/a"]
    assert epochs.tolist() == [1.0, 2.0] and values.tolist() == [2.6, 2.1]
    path = curves.learning_curve_figure(records, "a run", str(tmp_path / "curves.png"))
    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
