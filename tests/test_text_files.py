"""Text files the user names that are not UTF-8 (issue 13 item 9): every entry point that reads
one stops with one line naming the file, the line and the byte, never a traceback."""

import json

import pytest

from folkrnn_jax import files
from folkrnn_jax.data import corpus, v2_format
from folkrnn_jax.errors import InputError
from tests.conftest import fixture_path, run_module


def _latin1_v2(tmp_path):
    """The fixture tunes with 'café' (Latin-1) appended to the body line of the second tune."""
    lines = open(fixture_path("data_v2_excerpt.txt"), encoding="utf-8").read().split("\n")
    body = [i for i, line in enumerate(lines) if line and not line.startswith(("M:", "K:"))][1]
    lines[body] += " caf\xe9"
    path = tmp_path / "latin1.txt"
    path.write_bytes("\n".join(lines).encode("latin-1"))
    column = len(lines[body].encode("latin-1"))  # the é is the line's last character
    return str(path), body + 1, column


def _latin1_abc(tmp_path, charset_line=""):
    path = tmp_path / "latin1.abc"
    path.write_bytes(f"{charset_line}X:1\nT:Caf\xe9 Reel\nM:4/4\nL:1/8\nK:D\n|:ABcd efge:|\n".encode("latin-1"))
    return str(path)


def test_latin1_names_file_line_column_and_byte(tmp_path):
    path, line, column = _latin1_v2(tmp_path)
    offset = open(path, "rb").read().index(b"\xe9")
    with pytest.raises(InputError) as info:
        v2_format.read_v2_file(path)
    assert str(info.value).startswith(f"{path}: line {line}, column {column} (byte {offset}): byte 0xe9 is not UTF-8")


def test_utf8_with_bom_and_crlf_reads_like_plain_utf8(tmp_path):
    plain = open(fixture_path("data_v2_excerpt.txt"), encoding="utf-8").read()
    path = tmp_path / "windows.txt"
    path.write_bytes(b"\xef\xbb\xbf" + plain.replace("\n", "\r\n").encode("utf-8"))
    assert files.read_text(str(path)) == plain
    assert v2_format.read_v2_file(str(path)) == v2_format.read_v2_file(fixture_path("data_v2_excerpt.txt"))


def test_abc_charset_declaration_is_honoured(tmp_path):
    with pytest.raises(InputError, match="%abc-charset iso-8859-1"):
        list(corpus.read_abc_path(_latin1_abc(tmp_path)))
    declared = tmp_path / "declared"
    declared.mkdir()
    tunes = list(corpus.read_abc_path(_latin1_abc(declared, "%abc-charset iso-8859-1\n")))
    assert len(tunes) == 1 and "T:Café Reel" in tunes[0].text


def test_session_dumps_are_read_through_the_same_check(tmp_path):
    csv_path = tmp_path / "tunes.csv"
    header = "tune_id,setting_id,name,type,meter,mode,abc\n"
    csv_path.write_bytes(f"{header}1,1,Caf\xe9,reel,4/4,Dmajor,ABcd\n".encode("latin-1"))
    offset = len(header) + len("1,1,Caf")
    with pytest.raises(InputError, match=rf"tunes.csv: line 2, column 8 \(byte {offset}\)"):
        list(corpus.read_session_dump(str(csv_path)))
    json_path = tmp_path / "tunes.json"
    json_path.write_text(json.dumps([{"meter": "4/4", "mode": "Dmajor", "abc": "ABcd"}])[:-3])
    with pytest.raises(InputError, match="tunes.json: line 1, column .*: not JSON"):
        list(corpus.read_session_dump(str(json_path)))


def _one_line_error(proc, path):
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr[-2000:]
    assert path in errors[0] and "not UTF-8" in errors[0] and "line " in errors[0]


@pytest.mark.parametrize("module, flag", [
    ("experiments.train", "--config.data_path"),
    ("experiments.score", "--data"),
    ("experiments.evaluate", "--data"),
])
def test_latin1_data_file_at_the_command_line(tmp_path, module, flag):
    path, _, _ = _latin1_v2(tmp_path)
    extra = {"experiments.train": ["--config=experiments/configs/tiny.py", f"--workdir={tmp_path / 'run'}"],
             "experiments.score": [f"--output={tmp_path / 'scores.jsonl'}"],
             "experiments.evaluate": [f"--output={tmp_path / 'eval'}", "--novalidation"]}[module]
    _one_line_error(run_module(module, *extra, f"{flag}={path}", timeout=300), path)


def test_latin1_abc_file_at_the_command_line(tmp_path):
    path = _latin1_abc(tmp_path)
    proc = run_module("experiments.prepare_data", f"--source={path}", f"--output={tmp_path / 'out.txt'}",
                      timeout=300)
    _one_line_error(proc, path)
    assert not (tmp_path / "out.txt").exists()
