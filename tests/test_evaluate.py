"""Evaluation statistics on hand-made tunes, on the corpus (against a direct count), abc2midi
run per tune on hand-written tunes, and the report card's command line."""

import collections
import json
import os

import pytest

from folkrnn_jax.analysis import musical
from folkrnn_jax.analysis import novelty as novelty_lib
from folkrnn_jax.analysis import report as report_lib
from folkrnn_jax.analysis import statistics as statistics_lib
from folkrnn_jax.data import mix, v2_format
from folkrnn_jax.music import abc_out, tools, vocab
from folkrnn_jax.training import loop, rundir
from folkrnn_jax.training import metrics as metrics_lib
from tests.conftest import ROOT, fixture_config, fixture_path, run_module, train_fixture_run
from tests.test_structure import aabb_8, tok

CORPUS = os.path.join(ROOT, "data", "folk_corpus.txt")


def test_novelty_of_a_copy_and_of_a_new_tune():
    training = v2_format.read_v2_file(fixture_path("data_v2_excerpt.txt"))
    copy = list(training[3])
    new = tok("M:3/2 K:Cmix =F, ^G, (5 =F, ^G, =F, ^G, =F, | _e' _e' _e' _e' _e' _e' _e' _e' _e' _e' _e' _e' |")
    result = novelty_lib.novelty([copy, new], training, threshold=20)
    assert result["longest_common_ngram"][0] == len(copy)
    assert result["novel"] == [False, True]
    assert result["possible_copies"] == [0]
    assert result["longest_common_ngram"][1] < 5


def test_statistics_of_hand_made_tunes():
    too_long = tok("M:4/4 K:Cmaj G 8 | A 9 | B 8 |")
    first_only = tok("M:4/4 K:Cmaj |: G 8 | A 8 |1 B 8 :| c 8 | d 8 |")
    stats = statistics_lib.corpus_statistics([aabb_8(), too_long, first_only])
    assert stats["aabb_8_share"] == pytest.approx(1 / 3)
    assert stats["tunes_with_repeat_ending_bracket_errors"] == 1
    assert stats["tunes_with_problems"]["bars"] == 1
    assert stats["valid_share"] == pytest.approx(1 / 3)
    assert stats["meter_share"]["M:4/4"] == 1.0
    # 16 + 3 + 5 bars, one of which (A 9) does not fit
    assert stats["bars"] == 24 and stats["bars_fitting_meter_share"] == pytest.approx(23 / 24)
    assert stats["pitch_class_histogram_by_mode"]["K:Cmaj"][7] > 0  # G


def test_share_blocks_add_up_with_other_and_missing():
    no_meter = tok("K:Cdor G A B c |")
    no_mode = tok("M:6/8 G A B c d e |")
    stats = statistics_lib.corpus_statistics([aabb_8(), no_meter, no_mode, tok("G A B |")])
    for block in ("meter_share", "mode_share"):
        assert sum(stats[block].values()) == pytest.approx(1.0)
    assert stats["meter_share"]["missing"] == pytest.approx(2 / 4)
    assert stats["mode_share"]["missing"] == pytest.approx(2 / 4)
    assert stats["mode_share"]["K:Cdor"] == pytest.approx(1 / 4)
    assert stats["meter_share"]["other"] == 0.0


def test_pitch_classes_spelled_for_the_mode():
    minor = statistics_lib.pitch_class_names("K:Cmin")
    assert [minor[3], minor[8], minor[10]] == ["Eb", "Ab", "Bb"]
    assert not any("#" in name or "^" in name for name in minor)
    assert statistics_lib.pitch_class_names("K:Cmaj")[6] == "F#"
    assert statistics_lib.pitch_name(63, "K:Cdor") == "Eb4"
    # In C minor the unmarked E is E flat: its count lands under "Eb".
    stats = statistics_lib.corpus_statistics([tok("M:4/4 K:Cmin E E E c |")])
    counts = stats["pitch_class_histogram_by_mode"]["K:Cmin"]
    assert stats["pitch_class_names_by_mode"]["K:Cmin"][counts.index(3)] == "Eb"


def _abc(body: str, meter: str = "4/4") -> str:
    return f"X:1\nT:test\nM:{meter}\nL:1/8\nK:C\n{body}\n"


@pytest.mark.skipif(not tools.have("abc2midi"), reason="abc2midi is not installed")
def test_abc2midi_per_tune_classifies_each_kind():
    tunes = {
        "clean": _abc("|: CDEF GABc | c8 :|"),
        "bar_length": _abc("|: CDEF GABc | c7 :|"),  # the repeat holds 15/2 beats of 4
        "power_of_2": _abc("|: C/3D/3E/3 DEF GABc | c8 :|"),
        "error": _abc("|: CDEF GABc |1 c8 :|2 ]] c8 |]"),  # "Chord already finished"
        "other": _abc("(3C2DE DEF GA2 | c8 |"),  # "Different length notes in tuple"
        "failed": "X:1\nT:no key\n",
    }
    checks = dict(zip(tunes, tools.check_tunes(list(tunes.values()))))
    assert checks["clean"].clean and not any(checks["clean"].messages.values())
    assert checks["bar_length"].clean and checks["bar_length"].has("bar_length")
    assert "time units" in checks["bar_length"].messages["bar_length"][0]
    assert not checks["power_of_2"].clean
    assert checks["power_of_2"].has("power_of_2") and checks["power_of_2"].has("denominator")
    assert not checks["power_of_2"].has("error")
    assert not checks["error"].clean and checks["error"].has("error")
    assert checks["other"].clean and checks["other"].has("other") and not checks["other"].has("bar_length")
    assert checks["failed"].failure and not checks["failed"].clean
    summary = tools.summarize_checks(list(checks.values()))
    assert summary == {"tunes": 6, "clean": 3, "failed": 1, "error": 2, "bar_length": 1, "power_of_2": 1,
                       "denominator": 1, "other": 1}


def test_abc2midi_messages_classified_from_text():
    text = ("4.84 January 20 2023 abc2midi\n"
            "Warning in line-char 6-15 : Track 0 Bar 1 has 15/2 time units while the time signature has 4 in repeat\n"
            "Error in line-char 6-0 : 3 b is not a power of 2\n"
            "Error in line-char 6-0 : note length denominator is zero or less\n"
            "Error in line-char 34-23 : Chord already finished\n"
            "Warning in line-char 6-4 : Different length notes in tuple\n"
            "writing MIDI file u.mid\n")
    found = tools.classify_abc2midi_output(text)
    assert {kind: len(lines) for kind, lines in found.items()} == {
        "error": 1, "bar_length": 1, "power_of_2": 1, "denominator": 1, "other": 1}


def test_abc_round_trip():
    training = v2_format.read_v2_file(fixture_path("data_v2_excerpt.txt"))
    assert abc_out.parse_abc_text(abc_out.tunes_to_abc(training)) == training
    # Invalid sampled tunes (stray durations) read back as written, not as 'c22'.
    odd = [["M:4/4", "K:Cmaj", "c", "2", "2", "d", "/2", "2>", "e", "<", ">", "f", "3/2", "/2", "|"]]
    text = abc_out.tunes_to_abc(odd)
    assert "c2 2" in text and "c22" not in text and "f3/2 /2" in text
    assert abc_out.parse_abc_text(abc_out.tunes_to_abc(odd)) == odd


def _corpus_path():
    return CORPUS if os.path.exists(CORPUS) else fixture_path("data_v2_excerpt.txt")


@pytest.mark.parametrize("which", ["excerpt", "corpus"])
def test_training_table_agrees_with_direct_count(which):
    if which == "corpus" and not os.path.exists(CORPUS):
        pytest.skip("data/folk_corpus.txt is not present")
    path = CORPUS if which == "corpus" else fixture_path("data_v2_excerpt.txt")
    all_tunes = v2_format.read_v2_file(path)[:1500]
    stats = statistics_lib.corpus_statistics(all_tunes)
    meters = collections.Counter(t[0] for t in all_tunes)
    modes = collections.Counter(t[1] for t in all_tunes)
    for m, c in meters.items():
        assert stats["meter_share"].get(m, stats["meter_counts"].get(m, 0) / len(all_tunes)) == pytest.approx(
            c / len(all_tunes))
    assert stats["mode_counts"] == dict(modes)
    assert stats["lengths"] == [len(t) for t in all_tunes]
    bar_sets = {"|", "|:", ":|", "|1", "|2"}
    patterns = collections.Counter(" ".join(x for x in t if x in bar_sets) for t in all_tunes)
    assert stats["distinct_bar_line_patterns"] == len(patterns)
    assert stats["top_patterns_share"] == pytest.approx(
        sum(c for _, c in patterns.most_common(15)) / len(all_tunes))


@pytest.fixture(scope="module")
def eval_run(tmp_path_factory):
    return train_fixture_run(
        tmp_path_factory.mktemp("eval_run"), num_train_steps=20, hidden_size=32,
        log_every_steps=10, eval_every_steps=0,
    )


ROWS = ["tunes", *(f"meter {m} (%)" for m in (*vocab.METER_TOKENS, "other", "missing")),
        *(f"mode {m} (%)" for m in (*vocab.MODE_TOKENS, "other", "missing")),
        "mean length (tokens)", "passing `structure` (%)", "abc2midi: no error, warnings allowed (%)",
        "abc2midi: bar-length warnings (%)", "abc2midi: other warnings (%)", 'abc2midi: "not a power of 2" (%)',
        'abc2midi: "denominator" (%)', "abc2midi: other errors (%)",
        "distinct bar-line patterns", "share of the 15 commonest patterns (%)", "AABB with 8-bar parts (%)",
        "sharing 40+ tokens with a training tune (%)"]


def _table(markdown: str) -> dict[str, list[str]]:
    """The comparison table of report.md: statistic -> cells."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| statistic |"))
    rows = {}
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        if line.startswith("|---"):
            continue
        cells = [c.strip() for c in line.strip("|").split(" | ")]
        rows[cells[0]] = cells[1:]
    return rows


def test_evaluate_cli(eval_run, tmp_path):
    samples = tmp_path / "samples.abc"
    samples.write_text(abc_out.tunes_to_abc(v2_format.read_v2_file(fixture_path("data_v2_excerpt.txt"))[:5]))
    out = tmp_path / "report"
    result = run_module("experiments.evaluate", f"--workdir={eval_run}", f"--samples={samples}",
                        f"--output_dir={out}", "--abc2midi_training_tunes=6", timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    metrics = metrics_lib.read_metrics(eval_run)
    final = [r for r in metrics if "valid_loss" in r][-1]
    assert report["validation"]["valid_loss"] == pytest.approx(final["valid_loss"], rel=1e-4)
    assert report["columns"] == ["training", "samples"]
    assert report["sets"]["samples"]["statistics"]["num_tunes"] == 5
    # Copies of training tunes: the first five excerpt tunes less those held out for validation.
    split = loop.load_sequences(rundir.load_config(eval_run))
    trained = {tuple(vocab.decode(s)[1:-1]) for s in split.train}
    excerpt = v2_format.read_v2_file(fixture_path("data_v2_excerpt.txt"))[:5]
    assert report["sets"]["samples"]["novelty"]["possible_copies"] == [
        i for i, t in enumerate(excerpt) if tuple(t) in trained]
    # The training column is the training split, not every tune of the file.
    training = report["sets"]["training"]
    assert training["statistics"]["num_tunes"] == len(split.train) < 18
    assert training["abc2midi"]["tunes"] == 6 and training["subset"]["tunes"] == 6
    table = _table((out / "report.md").read_text())
    assert table["statistic"] == ["training split", "ours (--samples)", "v2 published (generated; training)"]
    assert all(name in table for name in ROWS), [name for name in ROWS if name not in table]
    assert table["tunes"][0] == str(len(split.train))
    assert len([f for f in os.listdir(out) if f.endswith(".png")]) == 4
    result = run_module("experiments.evaluate", f"--workdir={eval_run}", "--constrain", "--modes=free",
                        f"--output_dir={tmp_path / 'bad'}", timeout=300)
    assert result.returncode != 0 and "--constrain" in result.stderr.strip().splitlines()[-1]


def test_a_bad_samples_file_fails_before_any_long_work(eval_run, tmp_path):
    result = run_module("experiments.evaluate", f"--workdir={eval_run}", f"--samples={tmp_path / 'nope.abc'}",
                        f"--output_dir={tmp_path / 'out'}", timeout=300)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2 and len(errors) == 1 and "nope.abc" in errors[0], result.stderr[-2000:]
    assert "training split" not in result.stderr and "validation NLL" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_report_samples_free_and_constrained(eval_run, tmp_path):
    # In-process (test_evaluate_cli runs the command line): both sampling modes in one table.
    options = report_lib.EvaluateOptions(num_tunes=3, max_length=120, validation=False, abc2midi_training=4)
    report = report_lib.evaluate_model(eval_run, options, log=lambda line: None)
    assert report["columns"] == ["training", "free", "constrained"]
    for name in ("free", "constrained"):
        column = report["sets"][name]
        assert column["statistics"]["num_tunes"] == 3 == column["abc2midi"]["tunes"]
        assert sum(column["statistics"]["meter_share"].values()) == pytest.approx(1.0)
        assert sum(column["statistics"]["mode_share"].values()) == pytest.approx(1.0)
    assert report["sets"]["constrained"]["statistics"]["valid_share"] == 1.0
    table = _table(report_lib.markdown_report(report, []))
    assert table["statistic"] == ["training split", "ours, free", "ours, constrained",
                                  "v2 published (generated; training)"]
    assert all(len(cells) == 4 for cells in table.values())
    assert table["meter M:4/4 (%)"][3] == "66.5; 53"
    assert all(name in table for name in ROWS)
    # Every abc2midi class the plot shows (one bar per ABC2MIDI_CLASSES entry) has its row, and
    # the classes are every kind the checks count.
    summary = report["sets"]["free"]["abc2midi"]
    assert {kind for kind, _, _ in report_lib.ABC2MIDI_CLASSES} == set(summary) - {"tunes", "failed", "examples"}
    for kind, name, _ in report_lib.ABC2MIDI_CLASSES:
        assert table[f"abc2midi: {name} (%)"][1].endswith(f"({summary[kind]:,})")
    json.dumps(report)  # JSON-ready


def test_report_compares_a_tune_file_and_best_of(eval_run):
    # The musical rows for a tune file given to compare (a column of its own), and constrained
    # tunes drawn as the best of 2 by cadence, with the cost and the model's log-likelihood.
    excerpt = fixture_path("data_v2_excerpt.txt")
    options = report_lib.EvaluateOptions(modes=("constrained",), num_tunes=2, max_length=120, validation=False,
                                         abc2midi_training=4, compare=(excerpt,), best_of=2, ranking="cadence")
    report = report_lib.evaluate_model(eval_run, options, log=lambda line: None)
    compared = report_lib.COMPARE_PREFIX + "data_v2_excerpt.txt"
    assert report["columns"] == ["training", "constrained", compared]
    tunes = [[t for t in tune if t not in (vocab.START, vocab.END)] for tune in v2_format.read_tunes(excerpt)]
    assert report["sets"][compared]["musical"] == musical.musical_statistics(tunes)
    sampling = report["sets"]["constrained"]["sampling"]
    assert (sampling["best_of"], sampling["ranking"], sampling["num_tunes"]) == (2, "cadence", 2)
    assert report["sets"]["constrained"]["musical"]["empty_ending_share"] == 0.0
    for name in ("constrained", compared):
        assert -20 < report["sets"][name]["log_likelihood_per_token"] < 0
    table = _table(report_lib.markdown_report(report, []))
    assert table["statistic"][2] == compared
    assert table["last note on the tonic (%)"][2] == f"{100 * musical.musical_statistics(tunes)['last_tonic_share']:.1f}"
    json.dumps(report)


def test_training_column_of_a_two_file_mix(tmp_path):
    # A comma-separated data_path (as the shipped model's) gives the training split of the mix.
    if not os.path.exists(CORPUS):
        pytest.skip("data/folk_corpus.txt is not present")
    config = fixture_config(f"{fixture_path('data_v2_excerpt.txt')},{CORPUS}")
    rundir.save_config(str(tmp_path), config)
    training = report_lib.training_split(str(tmp_path))
    split = mix.load_training_mix(config.data_path, config.valid_fraction, config.batch_size,
                                  config.split_seed, config.get("max_tune_length", 0))
    every_tune = len(v2_format.read_v2_file(CORPUS)) + 18
    held_out = sum(len(v) for v in split.valid.values())
    assert len(training) == len(split.train) and held_out > 0 and len(training) + held_out <= every_tune
    assert all(t[0].startswith("M:") and vocab.END not in t for t in training)
