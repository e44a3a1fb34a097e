"""Issue 14, items 3 and 7: ask the running service, watch local folders, install the service."""

from __future__ import annotations

import json
import mailbox
import os
import plistlib
import time
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

import pytest

from mailbridge import demo, service
from tests.clirun import Service, example, mb, no_traceback

SLOW_POLL = 'poll_interval = "1h"\ncalendar_interval = "1h"\n'


@pytest.mark.slow
def test_sync_and_run_once_ask_the_running_service(tmp_path: Path) -> None:
    config = example(tmp_path / "ex", SLOW_POLL)
    with Service(config, tmp_path / "ex" / "state") as running:
        done = mb("--config", str(config), "sync")
        no_traceback(done)
        assert done.returncode == 0 and "Asked the running service" in done.stdout, done.stderr
        # Was: refused with "another mailbridge daemon is already working on ...".
        once = mb("--config", str(config), "run", "--once")
        assert once.returncode == 0 and "Asked the running service" in once.stdout, once.stderr
        one = mb("--config", str(config), "sync", "demo")
        assert one.returncode == 0 and "demo: " in one.stdout
        nobody = mb("--config", str(config), "sync", "nobody")
        assert nobody.returncode == 2 and "no account named 'nobody'" in nobody.stderr
        assert running.log.read_text().count("(asked,") == 3


@pytest.mark.slow
def test_sync_without_a_service_does_the_pass_itself(tmp_path: Path) -> None:
    config = example(tmp_path / "ex")
    done = mb("--config", str(config), "sync")
    no_traceback(done)
    assert done.returncode == 0 and "not running" in done.stderr
    assert (tmp_path / "ex" / "state" / "ledger.sqlite3").exists()


def _follow_up_in_drafts(root: Path) -> Path:
    """The demo's story up to the follow-up waiting in Drafts (bench/local_reply_latency.py)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "local_reply_latency", Path(__file__).parent.parent / "bench" / "local_reply_latency.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    config: Path = bench.prepare(root)
    return config


@pytest.mark.slow
def test_a_reply_landing_in_the_maildir_is_handled_without_waiting_for_the_poll(
    tmp_path: Path,
) -> None:
    root = tmp_path / "ex"
    config = _follow_up_in_drafts(root)  # polls only hourly: only the watcher can react
    drafts = root / "Maildir" / ".Drafts" / "cur"
    with Service(config, root / "state"):
        mb("--config", str(config), "sync")  # the start-up pass is over
        assert len(os.listdir(drafts)) == 1
        reply = EmailMessage()
        reply["From"] = f"{demo.LEAD[0]} <{demo.LEAD[1]}>"
        reply["To"] = demo.USER
        reply["Subject"] = "Re: next steps"
        reply["Date"] = format_datetime(datetime.now(UTC))
        reply["Message-ID"] = "<watch-1@northwind-robotics.com>"
        reply.set_content("Thanks, Jordan. Let us talk on Monday.")
        mailbox.Maildir(root / "Maildir", create=False).add(bytes(reply))
        deadline = time.monotonic() + 60  # generous: the poll would take an hour
        while os.listdir(drafts) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert os.listdir(drafts) == [], "the follow-up was not taken back"
        assert len(os.listdir(root / "Maildir" / ".Trash" / "cur")) == 1


@pytest.mark.slow
def test_service_install_uses_xdg_config_home_and_a_user_manager_unit(tmp_path: Path) -> None:
    xdg = tmp_path / "xdg-config"
    config = example(tmp_path / "my example")  # a space in the path: quoted in ExecStart
    done = mb("--config", str(config), "service", "install", home=tmp_path,
              extra_env={"XDG_CONFIG_HOME": str(xdg), "PATH": "/usr/bin:/bin"})
    no_traceback(done)
    assert done.returncode == 0, done.stderr
    unit = xdg / "systemd" / "user" / "mailbridge.service"
    text = unit.read_text()
    assert "network-online.target" not in text  # a no-op in a user unit
    assert "WantedBy=default.target" in text
    exec_start = next(line for line in text.splitlines() if line.startswith("ExecStart="))
    assert f"'{config}' run" in exec_start
    program = exec_start.removeprefix("ExecStart=").split()[0]
    assert Path(program).exists()
    assert "journalctl --user -u mailbridge" in done.stdout

    status = mb("--config", str(config), "service", "status", home=tmp_path,
                extra_env={"XDG_CONFIG_HOME": str(xdg)})
    no_traceback(status)
    assert f"{unit} (installed)" in status.stdout and "not running" in status.stdout

    gone = mb("service", "uninstall", home=tmp_path, extra_env={"XDG_CONFIG_HOME": str(xdg)})
    no_traceback(gone)
    assert gone.returncode == 0 and not unit.exists() and "Removed" in gone.stdout
    again = mb("service", "uninstall", home=tmp_path, extra_env={"XDG_CONFIG_HOME": str(xdg)})
    assert again.returncode == 0 and "nothing to remove" in again.stdout


@pytest.mark.slow
def test_service_status_sees_the_running_service(tmp_path: Path) -> None:
    config = example(tmp_path / "ex", SLOW_POLL)
    with Service(config, tmp_path / "ex" / "state") as running:
        done = mb("--config", str(config), "service", "status", home=tmp_path)
        assert done.returncode == 0 and f"running (pid {running.proc.pid})" in done.stdout  # type: ignore[union-attr]


def test_exec_start_names_pipx_link_not_the_environment_behind_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under pipx the unit names ~/.local/bin/mailbridge, which a `pipx reinstall` keeps."""
    venv = tmp_path / "pipx" / "venvs" / "mailbridge"
    venv.mkdir(parents=True)
    (venv / "pipx_metadata.json").write_text("{}")
    link = tmp_path / "bin" / "mailbridge"
    link.parent.mkdir()
    link.write_text("#!/bin/sh\n")
    monkeypatch.setattr("sys.prefix", str(venv))
    monkeypatch.setenv("PIPX_BIN_DIR", str(link.parent))
    assert service.program() == [str(link)]


def test_launchd_agent_is_a_valid_plist_that_logs_to_a_known_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    path, text = service.unit_text(tmp_path / "c.toml", platform="darwin")
    assert path == tmp_path / "Library" / "LaunchAgents" / "org.mailbridge.agent.plist"
    agent = plistlib.loads(text.encode())
    assert agent["Label"] == "org.mailbridge.agent"
    assert agent["ProgramArguments"][-3:] == ["--config", str(tmp_path / "c.toml"), "run"]
    assert agent["RunAtLoad"] is True and agent["KeepAlive"] == {"SuccessfulExit": False}
    log = str(tmp_path / "Library" / "Logs" / "mailbridge.log")
    assert agent["StandardErrorPath"] == log and agent["StandardOutPath"] == log


def test_systemd_quoting_survives_percent_and_dollar(tmp_path: Path) -> None:
    odd = tmp_path / "100% $HOME" / "c.toml"
    _, text = service.unit_text(odd, platform="linux")
    exec_start = next(line for line in text.splitlines() if line.startswith("ExecStart="))
    assert "100%% $$HOME" in exec_start


@pytest.mark.slow
def test_a_new_ics_file_is_read_without_waiting_for_the_calendar_interval(
    tmp_path: Path,
) -> None:
    config = example(tmp_path / "ex", SLOW_POLL)
    with Service(config, tmp_path / "ex" / "state"):
        mb("--config", str(config), "sync")  # the start-up pass is over
        ics = (tmp_path / "ex" / "calendar" / "interview.ics").read_text()
        second = ics.replace("UID:demo-interview-1@mailbridge", "UID:demo-interview-2@mailbridge")
        (tmp_path / "ex" / "calendar" / "second.ics").write_text(second)
        deadline = time.monotonic() + 60  # generous: the calendar interval is an hour
        found = 1
        while found < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
            done = mb("--config", str(config), "status", "--json")
            found = len(json.loads(done.stdout)["accounts"][0]["interviews"])
        assert found == 2, "the new calendar file was not read"


@pytest.mark.parametrize("path, relevant", [
    ("Maildir/new/1700000000.M1P2.host", True),  # delivered
    ("Maildir/cur/1700000000.M1P2.host:2,S", True),  # read or flagged
    ("Maildir/.Sent/cur/1700000000.M3P4.host:2,S", True),  # the user sent something
    ("Maildir/tmp/1700000000.M1P2.host", False),  # still being written
    ("Maildir/.Drafts/tmp/x", False),
    ("Maildir/.Drafts/cur/1700000000.M5P6.host:2,D", False),  # a pass's own draft: no new pass
    ("Maildir/.Trash/cur/1700000000.M7P8.host:2,S", False),
    ("calendar/interview.ics", True),
    ("calendar/.#interview.ics", False),  # an editor's lock file
    ("calendar/interview.ics~", False),  # an editor's backup
    ("calendar/notes.txt", False),
])
def test_the_watcher_reacts_to_mail_and_calendar_files_only(path: str, relevant: bool) -> None:
    from mailbridge_providers import local

    assert local._relevant(Path("/home/me") / path) is relevant


def test_the_control_socket_answers_only_what_it_knows(tmp_path: Path) -> None:
    from mailbridge import config as config_module
    from mailbridge.daemon import Daemon

    settings = config_module.load(example(tmp_path / "ex"))
    daemon = Daemon(settings.path, settings)
    assert daemon.answer(None) == {"error": "not a request"}
    assert "unknown command" in daemon.answer({"command": "send"})["error"]
    reply = daemon.answer({"command": "sync", "account": "nobody"})
    assert reply["results"][0]["error"].startswith("no enabled account named 'nobody'")
    reply = daemon.answer({"command": "sync"})
    (result,) = reply["results"]
    assert result["account"] == "demo" and result["error"] is None
    assert any("interview found" in line for line in result["actions"])
