"""The command line: each command on a real local example, and user mistakes give messages."""

from __future__ import annotations

import json
import mailbox
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mailbridge import cli, demo, service


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def example(tmp_path: Path) -> Path:
    """The demo's layout with an interview that ended an hour ago; returns the config path."""
    return demo.write_example(tmp_path, datetime.now(UTC))


def drafts_in(config: Path) -> int:
    return len(mailbox.Maildir(config.parent / "Maildir" / ".Drafts", create=False))


def test_init_writes_a_config_that_check_accepts(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "conf" / "config.toml"
    code, out, _ = run(capsys, "--config", str(path), "init", "--address", "me@example.org")
    assert code == 0 and path.exists() and "mailbridge check" in out
    code, _, err = run(capsys, "--config", str(path), "init")
    assert code == 2 and "already exists" in err and "--force" in err
    code, out, _ = run(capsys, "--config", str(path), "check")
    # The starter's folders do not exist yet: the headline says so, as the exit status does.
    assert code == 1 and "problem" in out.splitlines()[0] and "maildir.path" in out


def test_missing_config_and_bad_config_are_messages_not_tracebacks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "--config", str(tmp_path / "nope.toml"), "status")
    assert code == 2 and "mailbridge init" in err and "Traceback" not in err
    bad = tmp_path / "bad.toml"
    bad.write_text('[mailbridge]\ntimezone = "UTC"\n\n[accounts.me]\nprovider = "local"\n'
                   'adress = "me@example.org"\n', encoding="utf-8")
    code, _, err = run(capsys, "--config", str(bad), "check")
    assert code == 2 and "Traceback" not in err
    assert "bad.toml:6" in err and "adress" in err and "address" in err


def test_check_reports_missing_local_folders(example: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--config", str(example), "check")
    assert code == 0 and "demo (local, calendar file): ok" in out
    (example.parent / "Maildir").rename(example.parent / "Elsewhere")
    code, out, _ = run(capsys, "--config", str(example), "check")
    assert code == 1 and "maildir.path" in out and "does not exist" in out


def test_dry_run_prints_and_writes_nothing(example: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--config", str(example), "run", "--once", "--dry-run")
    assert code == 0 and "interview found" in out
    assert not (example.parent / "Maildir" / ".Drafts").exists()  # not even the folder
    code, out, _ = run(capsys, "--config", str(example), "status", "--json")
    assert json.loads(out)["accounts"][0]["interviews"] == []


def test_run_once_status_preview_and_note(example: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    # The example's thank-yous are due an hour from now: plan them, and look.
    assert run(capsys, "--config", str(example), "run", "--once")[0] == 0
    code, out, _ = run(capsys, "--config", str(example), "status")
    assert code == 0 and "Northwind Robotics" in out and "planned" in out and "next:" in out
    data = json.loads(run(capsys, "--config", str(example), "status", "--json")[1])
    (interview,) = data["accounts"][0]["interviews"]
    assert interview["lead"] == demo.LEAD[1]
    assert {d["to"] for d in interview["drafts"]} == {demo.LEAD[1], demo.SECOND[1]}

    code, out, _ = run(capsys, "--config", str(example), "preview", str(interview["id"]))
    assert code == 0 and out.count("To: ") == 3 and "Dana" in out  # 2 thank-yous, 1 follow-up
    assert drafts_in(example) == 0

    code, out, _ = run(capsys, "--config", str(example), "note", str(interview["id"]),
                       "the lidar calibration story", "--decision-by", "2026-12-04",
                       "--lead", demo.SECOND[1])
    assert code == 0 and "Saved" in out
    data = json.loads(run(capsys, "--config", str(example), "status", "--json")[1])
    (interview,) = data["accounts"][0]["interviews"]
    assert [note["text"] for note in interview["notes"]] == ["the lidar calibration story"]
    assert interview["lead"] == demo.SECOND[1]
    code, out, _ = run(capsys, "--config", str(example), "preview", str(interview["id"]))
    assert "lidar calibration" in out


@pytest.mark.parametrize("argv, expected", [
    (["note", "999", "x"], "no interview 999"),
    (["note", "abc", "x"], "not an interview number"),
    (["preview", "12"], "no interview 12"),
    (["resume", "nobody"], "no account named 'nobody'"),
    (["status", "--since", "soon"], "--since"),
])
def test_user_mistakes(example: Path, capsys: pytest.CaptureFixture[str], argv: list[str],
                       expected: str) -> None:
    code, _, err = run(capsys, "--config", str(example), *argv)
    assert code == 2 and expected in err and "Traceback" not in err


def test_note_with_a_bad_date_or_stranger_as_lead(example: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "--config", str(example), "run", "--once")
    code, _, err = run(capsys, "--config", str(example), "note", "1", "--decision-by", "soon")
    assert code == 2 and "2026-12-04" in err
    code, _, err = run(capsys, "--config", str(example), "note", "1", "--lead", "x@y.org")
    assert code == 2 and "not one of this interview's interviewers" in err


def test_status_since_digest_lists_decisions_and_skip_reasons(
    example: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, "--config", str(example), "run", "--once")
    code, out, _ = run(capsys, "--config", str(example), "status", "--since", "7d")
    assert code == 0 and "interview found: 1" in out and "draft planned: 3" in out
    assert "sam.k.1988@gmail.com: free-mail address" in out
    data = json.loads(run(capsys, "--config", str(example), "status", "--json",
                          "--since", "7d")[1])
    assert {e["decision"] for e in data["digest"]} >= {"interview found", "attendee skipped",
                                                        "draft planned"}


def test_resume_confirms_a_paused_account(example: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    from mailbridge import config as config_module
    from mailbridge.ledger import Ledger

    settings = config_module.load(example)
    with Ledger.open(settings.state_dir) as ledger, ledger.transaction():
        ledger.set_paused("demo", "the calendar suddenly lost 3 of 4 known events")
    code, out, _ = run(capsys, "--config", str(example), "resume", "demo")
    assert code == 0 and "accepts the source" in out
    with Ledger.open(settings.state_dir) as ledger:
        assert ledger.account_status("demo").resume_confirmed


def test_status_names_each_pause_cause_and_how_it_lifts(
    example: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mailbridge import config as config_module
    from mailbridge.ledger import Ledger

    settings = config_module.load(example)
    with Ledger.open(settings.state_dir) as ledger, ledger.transaction():
        ledger.set_paused("demo", "the calendar suddenly lost 3 of 4 known events", "calendar")
        ledger.set_paused("demo", "the Drafts folder vanished", "mailbox")
    code, out, _ = run(capsys, "--config", str(example), "status")
    assert code == 0
    assert "paused (calendar): the calendar suddenly lost 3 of 4" in out
    assert "once the calendar holds its events again" in out
    assert "paused (mailbox): the Drafts folder vanished" in out
    assert "once the Drafts folder is back" in out and "mailbridge resume demo" in out
    data = json.loads(run(capsys, "--config", str(example), "status", "--json")[1])
    assert set(data["accounts"][0]["pause_causes"]) == {"calendar", "mailbox"}
    with Ledger.open(settings.state_dir) as ledger, ledger.transaction():
        ledger.set_paused("demo", None, "calendar")  # one cause ends; the other stays
        assert set(ledger.pause_causes("demo")) == {"mailbox"}
        assert ledger.account_status("demo").paused == "the Drafts folder vanished"


def test_service_unit_for_systemd_and_launchd(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    config = tmp_path / "c.toml"
    path, text = service.unit_text(config, platform="linux")
    assert path == tmp_path / ".config/systemd/user/mailbridge.service"
    assert f"--config {config.resolve()} run" in text and "ExecReload" in text
    path, text = service.unit_text(config, platform="darwin")
    assert path.name == "org.mailbridge.agent.plist" and "<string>run</string>" in text
    assert service.install(config, platform="linux") == 0
    assert (tmp_path / ".config/systemd/user/mailbridge.service").read_text() == \
        service.unit_text(config, platform="linux")[1]


def test_second_daemon_on_the_same_state_is_refused(example: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from mailbridge import config as config_module
    from mailbridge.ledger import Ledger

    settings = config_module.load(example)
    holder = Ledger.open(settings.state_dir)
    holder.lock()
    try:
        code, _, err = run(capsys, "--config", str(example), "run", "--once")
        assert code == 2 and "another mailbridge daemon" in err
    finally:
        holder.close()
    assert os.path.exists(settings.state_dir / "daemon.lock")
    assert run(capsys, "--config", str(example), "run", "--once")[0] == 0


def test_check_finds_credentials_without_touching_a_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import keyring

    config = tmp_path / "c.toml"
    config.write_text(
        '[mailbridge]\ntimezone = "UTC"\n\n[accounts.mail]\nprovider = "imap"\n'
        'address = "me@example.org"\n'
        # A host that does not exist: check must not try to reach it.
        'imap = { host = "imap.nonexistent.invalid", username = "me" }\n'
        'calendar = { kind = "ics", url = "https://calendar.nonexistent.invalid/me.ics" }\n',
        encoding="utf-8",
    )
    code, out, _ = run(capsys, "--config", str(config), "check")
    assert code == 1 and "no IMAP password" in out and "mailbridge auth mail" in out
    keyring.set_password("mailbridge", "mail/imap", "s3cret-in-keyring")
    code, out, _ = run(capsys, "--config", str(config), "check")
    assert code == 0 and "mail (imap, calendar ics): ok" in out
    assert "s3cret-in-keyring" not in out


@pytest.mark.parametrize("argv, expected", [
    (["run", "--dry-run"], "--dry-run and --account go with --once"),
    (["run", "--account", "demo"], "--dry-run and --account go with --once"),
    (["note", "1"], "nothing to save"),
    (["resume", "demo"], "is not paused"),
])
def test_more_user_mistakes(example: Path, capsys: pytest.CaptureFixture[str],
                            argv: list[str], expected: str) -> None:
    run(capsys, "--config", str(example), "run", "--once")
    code, _, err = run(capsys, "--config", str(example), *argv)
    assert code == 2 and expected in err and "Traceback" not in err
    assert drafts_in(example) == 0  # nothing was written by the refused commands


def test_config_may_follow_the_command(example: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "status", "--json", "--config", str(example))
    assert code == 0 and json.loads(out)["accounts"][0]["account"] == "demo"


@pytest.mark.parametrize("make_bad", ["file", "under_file"])
def test_unusable_state_dir_is_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         make_bad: str) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    state = blocker if make_bad == "file" else blocker / "state"
    config = demo.write_example(tmp_path, datetime.now(UTC))
    text = config.read_text().replace('state_dir = "state"', f'state_dir = "{state}"')
    config.write_text(text)
    code, _, err = run(capsys, "--config", str(config), "status")
    assert code == 2 and "cannot use the state directory" in err and "Traceback" not in err


def test_interview_of_an_account_gone_from_the_config(example: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "--config", str(example), "run", "--once")
    example.write_text(example.read_text().replace("[accounts.demo]", "[accounts.renamed]"))
    for argv in (["preview", "1"], ["note", "1", "text"]):
        code, _, err = run(capsys, "--config", str(example), *argv)
        assert code == 2 and "no longer in the config" in err and "Traceback" not in err


def test_a_template_that_cannot_render_is_reported_once_and_drafts_wait(
    example: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    templates = example.parent / "templates"
    templates.mkdir()
    (templates / "thank_you.txt.j2").write_text("Subject: Thanks\n\n{{ nosuchvar.attr }}\n")
    text = example.read_text().replace('provider = "local"',
                                       'provider = "local"\ntemplates = "templates"')
    example.write_text(text)
    late = datetime.now(UTC) + timedelta(hours=2)  # the thank-yous are due by then
    from mailbridge import config as config_module
    from mailbridge import engine
    from mailbridge.ledger import Ledger

    settings = config_module.load(example)
    with Ledger.open(settings.state_dir) as ledger:
        for minutes in (0, 5):
            report = engine.reconcile(settings.accounts[0], ledger,
                                      now=late + timedelta(minutes=minutes))
            assert report.error is None
        not_made = [a for a in ledger.audit_entries() if a.decision == "draft not made"]
        assert len(not_made) == 2  # one per thank-you, said once across both passes
        assert all("nosuchvar" in a.reason for a in not_made)
        assert {d.state.value for d in ledger.drafts() if d.kind.value == "thank_you"} == \
            {"planned"}
    assert drafts_in(example) == 0
    code, _, err = run(capsys, "--config", str(example), "preview", "1")
    assert code == 2 and "nosuchvar" in err and "Traceback" not in err


def test_auth_stores_a_caldav_password_in_the_keyring(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import getpass

    import keyring

    config = tmp_path / "c.toml"
    (tmp_path / "Maildir").mkdir()
    config.write_text(
        '[mailbridge]\ntimezone = "UTC"\n\n[accounts.home]\nprovider = "local"\n'
        'address = "me@example.org"\nmaildir = { path = "Maildir" }\n'
        'calendar = { kind = "caldav", url = "https://dav.example.org/", username = "me" }\n',
        encoding="utf-8",
    )
    monkeypatch.setattr(getpass, "getpass", lambda prompt: "dav-s3cret")
    code, out, _ = run(capsys, "--config", str(config), "auth", "home")
    assert code == 0 and "CalDAV password stored" in out and "dav-s3cret" not in out
    assert keyring.get_password("mailbridge", "home/caldav") == "dav-s3cret"
    monkeypatch.setattr(getpass, "getpass", lambda prompt: "")
    code, _, err = run(capsys, "--config", str(config), "auth", "home")
    assert code == 2 and "nothing was stored" in err
