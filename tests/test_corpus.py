"""Corpus building: sources, malformed input, duplicates, report, v2 output, entry point."""

import csv
import json
import os
import shutil

import pytest

from folkrnn_jax.data import corpus, v2_format
from folkrnn_jax.music import abc_in, vocab
from folkrnn_jax.music import tools as tools_lib
from tests.conftest import fixture_path, run_module

RAW = fixture_path("raw_abc")


def fixture_items():
    return {item.where.split("tune X:")[1].split(" ")[0]: item for item in corpus.read_source(RAW)}


def body_and_fields(text: str) -> tuple[dict, str]:
    """Split a raw fixture tune into its header fields and its body (what The Session stores)."""
    fields, body, in_body = {}, [], False
    for line in text.splitlines():
        if in_body:
            body.append(line)
        elif line[1:2] == ":":
            fields.setdefault(line[0], line[2:].strip())
            in_body = line.startswith("K:")
    return fields, "\n".join(body)


def check_report(report):
    assert sum(report["left_out"].values()) == report["tunes_read"] - report["tunes_kept"]
    assert len(report["left_out_tunes"]) == report["tunes_read"] - report["tunes_kept"]
    assert sum(report["meters"].values()) == report["tunes_kept"]
    assert sum(report["modes"].values()) == report["tunes_kept"]


def test_fixture_folder_converts_and_the_v2_file_parses_back(tmp_path):
    built = corpus.build_corpus([RAW])
    report = built.report
    assert report["tunes_read"] == 9 and report["tunes_kept"] == 9
    check_report(report)
    output = str(tmp_path / "fixtures.txt")
    paths = corpus.write_corpus(built, output)
    assert all(os.path.exists(p) for p in paths)
    with open(output) as f:
        text = f.read()
    parsed = v2_format.parse_v2_text(text, output)  # checks every token against the vocabulary
    assert parsed == built.tunes
    for tokens in parsed:
        vocab.encode(tokens)
    # Exactly the layout of the original data file: M: line, K: line, body, blank line.
    blocks = text.split("\n\n")
    assert len(blocks) == 9
    assert all(len(block.strip("\n").split("\n")) == 3 for block in blocks)
    assert text.endswith("\n") and not text.endswith("\n\n")
    with open(paths[1]) as f:
        assert json.load(f)["tunes_kept"] == 9


def test_malformed_abc_tune_is_reported_and_the_rest_converted(tmp_path):
    items = fixture_items()
    good_a, good_b = items["34"].text, items["46"].text
    broken = 'X:7\nT:Broken\nM:6/8\nL:1/8\nK:G\nGAB "unclosed chord symbol cde|\n'
    path = tmp_path / "mixed.abc"
    path.write_text(good_a + "\n" + broken + "\n" + good_b)
    built = corpus.build_corpus([str(path)])
    report = built.report
    assert report["tunes_read"] == 3 and report["tunes_kept"] == 2
    check_report(report)
    (entry,) = report["left_out_tunes"]
    assert "mixed.abc" in entry["where"] and "X:7" in entry["where"] and "#2" in entry["where"]
    assert entry["reason"] == abc_in.R_SYNTAX


def session_rows():
    rows = []
    for number in ("34", "46", "6"):
        fields, body = body_and_fields(fixture_items()[number].text)
        assert fields.get("L", "1/8") == "1/8"
        key = fields["K"]
        mode = {"Em": "Eminor", "Dmix": "Dmixolydian", "G": "Gmajor"}[key]
        meter = {"C": "4/4"}.get(fields["M"], fields["M"])
        rows.append({"tune_id": number, "setting_id": number, "name": fields["T"], "type": "reel",
                     "meter": meter, "mode": mode, "abc": body.replace("\n", "\r\n"),
                     "date": "2020-01-01", "username": "someone", "composer": ""})
    return rows


COLUMNS = ["tune_id", "setting_id", "name", "type", "meter", "mode", "abc", "date", "username", "composer"]


def test_session_csv_rows_convert_like_the_abc_and_bad_rows_are_reported(tmp_path):
    rows = session_rows()
    bad = dict(rows[0], tune_id="99", setting_id="99", mode="")
    path = tmp_path / "tunes.csv"
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerow(rows[0])
        writer.writerow(bad)
        writer.writerow(rows[1])
        writer.writerow(rows[2])
    with open(path, "a", newline="") as f:
        f.write('1,2,too,many,fields,here,"A B",x,y,z,extra,extra2\n')
    built = corpus.build_corpus([str(path)])
    report = built.report
    check_report(report)
    assert report["tunes_read"] == 5 and report["tunes_kept"] == 3
    wheres = {entry["where"] for entry in report["left_out_tunes"]}
    assert any("tunes.csv row 3" in w and "tune 99" in w for w in wheres)  # row 1 is the header
    assert any("tunes.csv row 6" in w for w in wheres)
    # The body-only rows give the same tokens as the full raw tunes.
    items = fixture_items()
    for number, tokens in zip(("34", "46", "6"), built.tunes):
        assert tokens == abc_in.convert_tune(items[number].text).tokens


def test_session_json(tmp_path):
    rows = session_rows()
    rows.append({"tune_id": "5", "meter": "4/4"})  # no mode, no abc
    path = tmp_path / "tunes.json"
    path.write_text(json.dumps(rows))
    report = corpus.build_corpus([str(path)]).report
    assert report["tunes_read"] == 4 and report["tunes_kept"] == 3
    assert report["left_out_tunes"][0]["where"].startswith("tunes.json record 4")
    assert report["left_out_tunes"][0]["reason"] == abc_in.R_MALFORMED_ROW


def test_duplicates_are_counted_as_a_reason(tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(RAW, folder)
    report = corpus.build_corpus([RAW, str(folder)]).report
    check_report(report)
    assert report["tunes_read"] == 18 and report["tunes_kept"] == 9
    assert report["left_out"] == {abc_in.R_DUPLICATE: 9}


def test_unknown_source_is_a_clear_error():
    with pytest.raises(FileNotFoundError, match="neither a file or folder nor a music21 collection"):
        list(corpus.read_source("no_such_collection"))


def test_music21_collection_by_name():
    pytest.importorskip("music21")
    items = list(corpus.read_source("miscFolk"))
    assert len(items) > 100
    assert all(item.where.startswith("miscFolk/") for item in items)
    report = corpus.build_corpus(["miscFolk"]).report
    check_report(report)
    assert report["tunes_kept"] > 0


@pytest.mark.skipif(not tools_lib.have("abc2midi"), reason="abc2midi (Debian package abcmidi) is not on PATH")
def test_prepare_data_entry_point_with_midi_check(tmp_path):
    output = str(tmp_path / "out" / "fixtures.txt")
    result = run_module("experiments.prepare_data", f"--source={RAW}", f"--output={output}", "--verify_midi",
                        timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    json_path, md_path = corpus.report_paths(output)
    with open(json_path) as f:
        report = json.load(f)
    assert report["midi_check"]["checked"] == 9 and report["midi_check"]["share"] == 1.0
    with open(md_path) as f:
        assert "abc2midi round trip" in f.read()
    assert len(v2_format.parse_v2_text(open(output).read(), output)) == 9


def test_prepare_data_missing_source_is_one_line(tmp_path):
    result = run_module("experiments.prepare_data", "--source=/no/such.abc", f"--output={tmp_path}/x.txt",
                        timeout=120)
    assert result.returncode == 2
    assert "error:" in result.stderr and "Traceback" not in result.stderr


def test_compare_notes():
    a = [(0, 60, 100), (100, 64, 100), (100, 67, 100), (200, 62, 50)]
    assert corpus.compare_notes(a, [(s, p + 3, d) for s, p, d in a]).match
    assert not corpus.compare_notes(a, [(s, p + (p == 64), d) for s, p, d in a]).match
    assert not corpus.compare_notes(a, a[:-1]).match
    assert not corpus.compare_notes(a, a[:-1] + [(200, 62, 60)]).match
    # Chord notes a few ticks apart (abc2midi's chord spread) compare as sorted pitches.
    spread = [(0, 60, 100), (110, 64, 90), (100, 67, 100), (200, 62, 50)]
    assert corpus.compare_notes(spread, [(0, 60, 100), (100, 67, 100), (110, 64, 90), (200, 62, 50)]).match


@pytest.mark.slow
@pytest.mark.skipif(not tools_lib.have("abc2midi"), reason="abc2midi (Debian package abcmidi) is not on PATH")
def test_oneills_round_trip_share():
    report = corpus.build_corpus(["oneills1850"], verify_midi=True).report
    check_report(report)
    assert report["tunes_kept"] > 1800
    assert report["midi_check"]["share"] > 0.98


def test_embedded_corpus_is_present_and_valid():
    path = os.path.join(os.path.dirname(RAW), "..", "..", "data", "folk_corpus.txt")
    if not os.path.exists(path):
        pytest.skip("data/folk_corpus.txt not built")
    with open(path) as f:
        tunes = v2_format.parse_v2_text(f.read(), path)
    assert len(tunes) > 3000
    with open(corpus.report_paths(path)[0]) as f:
        report = json.load(f)
    assert report["tunes_kept"] == len(tunes)
    assert report["midi_check"]["share"] > 0.95


def test_session_json_null_in_an_unused_column_keeps_the_tune(tmp_path):
    rows = session_rows()
    rows[1]["composer"] = None  # JSON null in a column no tune is made from
    rows[2]["date"] = None
    path = tmp_path / "tunes.json"
    path.write_text(json.dumps(rows))
    report = corpus.build_corpus([str(path)]).report
    assert report["tunes_read"] == 3 and report["tunes_kept"] == 3
    rows[0]["abc"] = None  # ... but not in one it is
    path.write_text(json.dumps(rows))
    assert corpus.build_corpus([str(path)]).report["tunes_kept"] == 2


def test_session_csv_unclosed_quote_is_an_error_at_its_line(tmp_path):
    rows = session_rows()
    path = tmp_path / "tunes.csv"
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerow(rows[0])
    with open(path, "a", newline="") as f:
        f.write('7,7,"Unclosed,reel,4/4,Gmajor,"A B c d|",2020,me,\n')
    with open(path, "a", newline="") as f:
        csv.DictWriter(f, fieldnames=COLUMNS).writerows(rows[1:])
    # The good row's ABC holds newlines, so the broken record starts some lines below the header.
    opens = next(n for n, line in enumerate(path.read_text().splitlines(), 1) if line.startswith("7,7,"))
    assert opens > 2
    with pytest.raises(corpus.InputError, match=rf"tunes.csv: line {opens}: malformed CSV"):
        corpus.build_corpus([str(path)])
    huge = tmp_path / "huge.csv"
    huge.write_text(",".join(COLUMNS) + '\n1,1,x,reel,4/4,Gmajor,"' + "A" * 200_000 + '",d,u,c\n')
    with pytest.raises(corpus.InputError, match="huge.csv: line 2:"):
        corpus.build_corpus([str(huge)])
