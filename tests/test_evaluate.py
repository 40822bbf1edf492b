"""Evaluation statistics on hand-made tunes, on the corpus (against a direct count), and the CLI."""

import collections
import json
import os

import pytest

from folkrnn_jax.analysis import novelty as novelty_lib
from folkrnn_jax.analysis import statistics as statistics_lib
from folkrnn_jax.data import v2_format
from folkrnn_jax.music import abc_out
from folkrnn_jax.training import metrics as metrics_lib
from tests.conftest import ROOT, fixture_path, run_module, train_fixture_run
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


def test_abc_round_trip():
    training = v2_format.read_v2_file(fixture_path("data_v2_excerpt.txt"))
    assert abc_out.parse_abc_text(abc_out.tunes_to_abc(training)) == training
    # Invalid sampled tunes (stray durations) read back as written, not as 'c22'.
    odd = [["M:4/4", "K:Cmaj", "c", "2", "2", "d", "/2", "2>", "e", "<", ">", "f", "3/2", "/2", "|"]]
    assert "c2 2 d/2 2>e< >f3/2 /2" in abc_out.tunes_to_abc(odd)
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


def test_evaluate_cli(eval_run, tmp_path):
    samples = tmp_path / "samples.abc"
    samples.write_text(abc_out.tunes_to_abc(v2_format.read_v2_file(fixture_path("data_v2_excerpt.txt"))[:5]))
    out = tmp_path / "report"
    result = run_module("experiments.evaluate", f"--workdir={eval_run}", f"--samples={samples}",
                        f"--output={out}", timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    metrics = metrics_lib.read_metrics(eval_run)
    final = [r for r in metrics if "valid_loss" in r][-1]
    assert report["validation"]["valid_loss"] == pytest.approx(final["valid_loss"], rel=1e-4)
    assert report["generated"]["num_tunes"] == 5
    assert report["novelty"]["possible_copies"] == [0, 1, 2, 3, 4]
    assert "| statistic | training | generated |" in (out / "report.md").read_text()
    assert len([f for f in os.listdir(out) if f.endswith(".png")]) == 3
    # Sampling when --samples is absent.
    result = run_module("experiments.evaluate", f"--workdir={eval_run}", "--num_tunes=4", "--max_length=200",
                        "--novalidation", f"--output={tmp_path / 'sampled'}", timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((tmp_path / "sampled" / "report.json").read_text())["generated"]["num_tunes"] == 4
