"""Environment faults the command line prints as one line (issue 13 item 9): a folder given
as a file, a full disk."""

import errno
import sys

import pytest

from experiments import cli


def _run(exc, capsys, monkeypatch):
    def main(argv):
        raise exc

    monkeypatch.setattr(sys, "argv", ["prog"])
    # Other test files import entry points whose required flags live in absl's global FLAGS;
    # parsing is not what is tested here, so the guarded main is called as app.run would.
    monkeypatch.setattr(cli.app, "run", lambda function, flags_parser=None: function(["prog"]))
    with pytest.raises(SystemExit) as info:
        cli.run(main)
    return info.value.code, capsys.readouterr().err


def test_directory_as_file_is_one_line(capsys, monkeypatch):
    code, err = _run(IsADirectoryError(errno.EISDIR, "Is a directory", "/tmp/somewhere"), capsys, monkeypatch)
    assert code == 2 and err.strip() == "error: /tmp/somewhere: Is a directory"


def test_disk_full_is_one_line(capsys, monkeypatch):
    code, err = _run(OSError(errno.ENOSPC, "No space left on device", "/runs/x/metrics.jsonl"), capsys,
                     monkeypatch)
    assert code == 2 and err.strip() == "error: /runs/x/metrics.jsonl: No space left on device"


def test_other_errors_keep_their_traceback(capsys, monkeypatch):
    with pytest.raises(ConnectionResetError):
        _run(ConnectionResetError(errno.ECONNRESET, "reset"), capsys, monkeypatch)
