"""Issue 14, item 4: no traceback for anything a user or the machine can do; other people's
text is escaped and secret links are redacted (the real CLI, as a subprocess)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.clirun import COMMAND, env, example, mb, no_traceback

TWO_ACCOUNTS = """
[accounts.second]
provider = "local"
address = "jordan.lee@example.com"
calendar = {{ kind = "file", path = "calendar" }}
maildir = {{ path = "Maildir" }}
"""


# --- broken pipes ------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("argv", [["status"], ["preview", "1"], ["status", "--json"]])
def test_a_reader_that_goes_away_is_no_traceback(tmp_path: Path, argv: list[str]) -> None:
    """`status | head -1`: the reader is gone before anything is written (deterministic)."""
    config = example(tmp_path / "ex")
    assert mb("--config", str(config), "run", "--once").returncode == 0
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run([*COMMAND, "--config", str(config), *argv], stdout=write_end,
                              stderr=subprocess.PIPE, text=True, env=env(), timeout=120,
                              check=False)
    finally:
        os.close(write_end)
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr
    assert done.returncode == 0


# --- impossible values -------------------------------------------------------------------


@pytest.mark.parametrize("argv, expected", [
    (["note", "99999999999999999999999", "x"], "not an interview number"),
    (["preview", "99999999999999999999999"], "not an interview number"),
    (["note", "1", "--decision-by", "9999-12-31"], "not a plausible decision date"),
    (["note", "1", "--decision-by", "0001-01-01"], "not a plausible decision date"),
    (["note", "1", "--lead", "Priya"], "not an email address"),
    (["status", "--since", "99999999999999999999 days"], "--since"),
    (["status", "--since", "2026-13-45"], "--since"),
])
@pytest.mark.slow
def test_impossible_values_are_one_line(tmp_path: Path, argv: list[str], expected: str) -> None:
    config = example(tmp_path / "ex")
    done = mb("--config", str(config), *argv)
    no_traceback(done)
    assert done.returncode == 2 and expected in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


@pytest.mark.slow
def test_an_impossible_decision_date_is_not_saved_and_passes_go_on(tmp_path: Path) -> None:
    """Was: saved, and then every later pass of the account failed with OverflowError."""
    config = example(tmp_path / "ex")
    assert mb("--config", str(config), "run", "--once").returncode == 0
    done = mb("--config", str(config), "note", "1", "--decision-by", "9999-12-31")
    assert done.returncode == 2
    again = mb("--config", str(config), "run", "--once")
    no_traceback(again)
    assert again.returncode == 0, again.stderr
    assert "decision by" not in mb("--config", str(config), "status").stdout


# --- the ledger made unusable by the machine ----------------------------------------------


@contextlib.contextmanager
def small_disk(where: Path) -> Iterator[Path | None]:
    """A tiny tmpfs at ``where`` (None when this user cannot mount one): room for the first
    pass of the example (its ledger and write-ahead log, some 600 KiB at their largest)."""
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs",
                              str(where)], capture_output=True, check=False).returncode == 0
    try:
        yield where if mounted else None
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(where)], check=False)


FAULT = textwrap.dedent('''
    """Test-only: every ledger write fails the way SQLite reports {what}."""
    import sqlite3

    _connect = sqlite3.connect

    class _Failing(sqlite3.Connection):
        def execute(self, sql, *args):
            if sql.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE", "REPLACE")):
                raise sqlite3.OperationalError({message!r})
            return super().execute(sql, *args)

    def connect(*args, **kwargs):
        kwargs.setdefault("factory", _Failing)
        return _connect(*args, **kwargs)

    sqlite3.connect = connect
''')


def injected(tmp_path: Path, message: str) -> dict[str, str]:
    """The environment that makes the CLI's ledger writes fail with ``message`` at the
    SQLite boundary (used where no tmpfs can be mounted)."""
    folder = tmp_path / "fault"
    folder.mkdir(exist_ok=True)
    (folder / "sitecustomize.py").write_text(FAULT.format(what=message, message=message))
    return {"PYTHONPATH": str(folder)}


def fill(disk: Path) -> None:
    fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * 4096)
    finally:
        os.close(fd)


def _config_on(tmp_path: Path, state: Path) -> Path:
    config = example(tmp_path / "ex")
    text = config.read_text().replace('state_dir = "state"', f'state_dir = "{state}"')
    config.write_text(text + TWO_ACCOUNTS.format())
    return config


def _assert_said_once(done: subprocess.CompletedProcess[str], words: str, todo: str) -> None:
    """One line for the whole run (the ledger cannot even be opened), or one per account."""
    no_traceback(done)
    lines = done.stderr.strip().splitlines()
    assert lines and all(words in line and todo in line for line in lines), done.stderr
    if done.returncode == 2:
        assert len(lines) == 1 and lines[0].startswith("mailbridge: "), done.stderr
    else:
        assert done.returncode == 1, done.stderr
        assert sorted(line.split(":", 1)[0] for line in lines) == ["demo", "second"]


@pytest.mark.slow
def test_a_full_disk_is_one_line_per_account(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk") as disk:
        state = (disk or tmp_path) / "state"
        config = _config_on(tmp_path, state)
        assert mb("--config", str(config), "run", "--once").returncode == 0
        extra = {}
        if disk is not None:
            fill(disk)
            # New mail to record: the pass must write.
            (tmp_path / "ex" / "calendar" / "interview.ics").touch()
        else:
            extra = injected(tmp_path, "database or disk is full")
        done = mb("--config", str(config), "run", "--once", extra_env=extra)
        _assert_said_once(done, "is full", "free some space")
        status = mb("--config", str(config), "status", extra_env=extra)  # reading still works
        assert status.returncode == 0 and "demo (local)" in status.stdout, status.stderr


@pytest.mark.slow
def test_a_read_only_ledger_is_one_line_per_account(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk") as disk:
        state = (disk or tmp_path) / "state"
        config = _config_on(tmp_path, state)
        assert mb("--config", str(config), "run", "--once").returncode == 0
        extra = {}
        if disk is not None:
            assert subprocess.run(["mount", "-o", "remount,ro", str(disk)],
                                  check=False).returncode == 0
        else:
            extra = injected(tmp_path, "attempt to write a readonly database")
        done = mb("--config", str(config), "run", "--once", extra_env=extra)
        _assert_said_once(done, "read-only", "writable")


@pytest.mark.slow
def test_a_damaged_ledger_says_what_to_do(tmp_path: Path) -> None:
    config = example(tmp_path / "ex")
    assert mb("--config", str(config), "run", "--once").returncode == 0
    ledger = tmp_path / "ex" / "state" / "ledger.sqlite3"
    for suffix in ("-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            (tmp_path / "ex" / "state" / f"ledger.sqlite3{suffix}").unlink()
    ledger.write_bytes(b"this is not a database" * 300)
    for argv in (["status"], ["run", "--once"], ["run", "--once", "--dry-run"], ["preview", "1"]):
        done = mb("--config", str(config), *argv)
        no_traceback(done)
        assert done.returncode == 2 and "move it aside" in done.stderr, (argv, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_a_locked_ledger_is_one_line(tmp_path: Path) -> None:
    config = example(tmp_path / "ex")
    assert mb("--config", str(config), "run", "--once").returncode == 0
    holder = sqlite3.connect(tmp_path / "ex" / "state" / "ledger.sqlite3", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        done = mb("--config", str(config), "run", "--once", timeout=120)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    no_traceback(done)
    assert done.returncode == 1 and "busy" in done.stderr and "try again" in done.stderr


# --- other people's text, secret links ------------------------------------------------------


@pytest.mark.slow
def test_control_characters_in_event_titles_are_escaped_everywhere(tmp_path: Path) -> None:
    config = example(tmp_path / "ex")
    ics = tmp_path / "ex" / "calendar" / "interview.ics"
    evil = "Northwind Robotics - Interview \x1b]0;owned\x07\x1b[2J\r  ! forged warning"
    ics.write_text(ics.read_text().replace(
        "SUMMARY:Northwind Robotics - Technical Interview (Robotics Software Engineer)",
        "SUMMARY:" + evil))
    assert mb("--config", str(config), "run", "--once").returncode == 0
    for argv in (["status"], ["status", "--since", "1d"], ["preview", "1"],
                 ["run", "--once", "--dry-run"]):
        done = mb("--config", str(config), *argv)
        assert done.returncode == 0, done.stderr
        for text in (done.stdout, done.stderr):
            assert "\x1b" not in text and "\x07" not in text and "\r" not in text, argv
    status = mb("--config", str(config), "status").stdout
    assert "\\e]0;owned\\x07" in status
    data = json.loads(mb("--config", str(config), "status", "--json").stdout)
    assert "\x1b" in data["accounts"][0]["interviews"][0]["title"]  # JSON keeps the data exact
    log = mb("--config", str(config), "-v", "run", "--once", "--dry-run")
    assert "\x1b" not in log.stderr


@contextlib.contextmanager
def serving(body: bytes) -> Iterator[int]:
    """A local web server answering every GET with ``body``; yields its port."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            self.send_response(200)
            self.send_header("Content-Type", "text/calendar")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.slow
def test_a_secret_calendar_link_is_redacted_in_logs_status_and_audit(tmp_path: Path) -> None:
    config = example(tmp_path / "ex")
    good = (tmp_path / "ex" / "calendar" / "interview.ics").read_text()
    broken = good.replace("END:VCALENDAR", "BEGIN:VEVENT\r\nUID:broken-1\r\n"
                          "DTSTART:not-a-date\r\nSUMMARY:Interview\r\nEND:VEVENT\r\n"
                          "END:VCALENDAR")
    outputs = []
    for body in (broken.encode(), b"<html>sign in</html>"):  # a bad event; then no calendar
        with serving(body) as port:
            secret = f"http://127.0.0.1:{port}/private-0123456789abcdef/basic.ics?token=s3cr3t"
            text = config.read_text()
            text = re.sub(r"calendar = \{[^}]*\}",
                          f'calendar = {{ kind = "ics", url = "{secret}" }}', text)
            config.write_text(text)
            done = mb("--config", str(config), "-v", "run", "--once")
            no_traceback(done)
            outputs += [done.stdout, done.stderr]
            for argv in (["status"], ["status", "--json"], ["status", "--since", "1d"]):
                outputs.append(mb("--config", str(config), *argv).stdout)
    shown = "\n".join(outputs)
    assert f"http://127.0.0.1:{port}/…" in shown  # the link is still recognisable
    assert "0123456789abcdef" not in shown and "s3cr3t" not in shown
    ledger = sqlite3.connect(tmp_path / "ex" / "state" / "ledger.sqlite3")
    kept = [str(row) for table in ("audit", "account_state")
            for row in ledger.execute(f"SELECT * FROM {table}")]  # noqa: S608 - fixed names
    ledger.close()
    assert any("broken-1" in row for row in kept)  # the skip was recorded ...
    assert not any("0123456789abcdef" in row or "s3cr3t" in row for row in kept)  # ... redacted
