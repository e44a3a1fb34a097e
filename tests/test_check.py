"""`mailbridge check` tells the truth: every problem of every account at once, commands really
run (their output never shown), a headline that agrees with the exit status, and with
``--online`` one real read per resource saying what works and what to fix."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mailbridge_providers.caldav import CalDavSettings
from mailbridge_providers.gmail import GoogleSettings
from mailbridge_providers.imap import ImapSettings
from mailbridge_providers.local import MaildirSettings
from mailbridge_providers.outlook import OutlookSettings

from mailbridge import checks, cli, secrets
from mailbridge.config import load
from mailbridge.settings import AccountSettings, CalendarSettings
from tests.emulators.google import GoogleEmulator

LEAKED = "hunter2-printed-before-failing"


def run(capsys: pytest.CaptureFixture[str], config: Path, *argv: str) -> tuple[int, str]:
    code = cli.main(["--config", str(config), *argv])
    out, err = capsys.readouterr()
    return code, out + err


def five_problems(tmp_path: Path) -> Path:
    """Three accounts, five different problems, none of which the config parser can see."""
    client = tmp_path / "gone" / "client_secret.json"
    config = tmp_path / "config.toml"
    config.write_text(f"""\
[mailbridge]
state_dir = "{tmp_path / "state"}"

[accounts.mail]
provider = "imap"
address = "me@example.org"
imap = {{ host = "imap.example.org", password_command = "sh -c 'echo {LEAKED}; exit 3'" }}
calendar = {{ kind = "file", path = "{tmp_path / "no-such-calendar.ics"}" }}

[accounts.personal]
provider = "gmail"
address = "me@gmail.com"
google = {{ client_secrets = "{client}" }}

[accounts.work]
provider = "outlook"
address = "me@contoso.example"
outlook = {{ client_id = "11111111-2222-3333-4444-555555555555" }}
token_store = "command"
token_store_command = "sh -c 'cat > /dev/null' {{purpose}}"
token_command = "sh -c 'echo {LEAKED}; exit 1' {{purpose}}"
""", encoding="utf-8")
    return config


def test_five_problems_in_three_accounts_are_all_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run(capsys, five_problems(tmp_path), "check")
    lines = out.splitlines()
    assert code == 1
    assert "5 problems in 3 accounts" in lines[0]
    problems = [line.strip() for line in lines if line.startswith("    - ")]
    assert len(problems) == 5, out
    assert any("imap.password_command exited with status 3" in p for p in problems)
    assert any("no-such-calendar.ics does not exist" in p for p in problems)
    assert any("client_secrets file" in p and "does not exist" in p for p in problems)
    assert any("not signed in to Google" in p for p in problems)
    assert any("token_command exited with status 1" in p for p in problems)
    assert LEAKED not in out  # the commands ran; what they printed is never shown


def test_the_headline_agrees_with_the_exit_status_when_all_is_well(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    calendar = tmp_path / "cal.ics"
    calendar.write_text("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nEND:VCALENDAR\r\n")
    config = tmp_path / "config.toml"
    config.write_text(f"""\
[accounts.mail]
provider = "imap"
address = "me@example.org"
imap = {{ host = "imap.example.org", password_command = "echo {LEAKED}" }}
calendar = {{ kind = "file", path = "{calendar}" }}

[accounts.old]
provider = "imap"
address = "me@example.org"
enabled = false
imap = {{ host = "imap.example.org", password_command = "false" }}
calendar = {{ kind = "file", path = "{calendar}" }}
""", encoding="utf-8")
    code, out = run(capsys, config, "check")
    assert code == 0 and "everything checked is in order" in out.splitlines()[0]
    assert "old (imap, calendar file): disabled" in out  # shown, not failing the check
    assert LEAKED not in out


def test_the_report_is_plain_data(tmp_path: Path) -> None:
    report = checks.run(load(five_problems(tmp_path)))
    assert report.failed
    assert [a.count for a in report.accounts] == [2, 2, 1]
    assert checks.headline(report).endswith("fix them and run `mailbridge check` again")


# --- online -----------------------------------------------------------------------------------


@pytest.fixture
def google() -> Iterator[GoogleEmulator]:
    emulator = GoogleEmulator().start()
    yield emulator
    emulator.stop()
    assert emulator.violations == []


def gmail_config(emu: GoogleEmulator, tmp_path: Path) -> Path:
    client = emu.client_secrets(tmp_path / "client.json")
    config = tmp_path / "config.toml"
    config.write_text(f"""\
[accounts.personal]
provider = "gmail"
address = "{emu.address}"

[accounts.personal.google]
client_secrets = "{client}"
api_endpoint = "{emu.url}"
calendar_endpoint = "{emu.calendar_endpoint}"
token_uri = "{emu.url}/token"
""", encoding="utf-8")
    return config


def test_online_says_what_works_and_what_to_fix(
    google: GoogleEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = gmail_config(google, tmp_path)
    secrets.store("personal", "google-refresh-token", "refresh-1")
    # Signed in, but the calendar permission was left unticked on the consent screen.
    google.granted = {"https://www.googleapis.com/auth/gmail.readonly",
                      "https://www.googleapis.com/auth/gmail.compose"}
    code, out = run(capsys, config, "check", "--online")
    assert code == 1 and "1 problem in 1 account" in out.splitlines()[0]
    for line in ("sign-in: ok", "Drafts: ok", "inbox: ok", "Sent: ok"):
        assert line in out
    assert "calendar primary: FAILED" in out and "leave every permission ticked" in out
    read = [c.method_id for c in google.api_calls()]
    assert "calendar.events.list" in read and "gmail.users.drafts.list" in read

    google.revoke_grant()
    code, out = run(capsys, config, "check", "--online")
    assert code == 1 and "sign-in: FAILED" in out and "revoked" in out
    assert "Drafts" not in out  # nothing else is tried with a refused sign-in


def test_online_is_not_tried_while_offline_problems_remain(
    google: GoogleEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run(capsys, gmail_config(google, tmp_path), "check", "--online")
    assert code == 1 and "not signed in to Google" in out
    assert "not tried online" in out and google.api_calls() == []


def test_a_broken_client_file_is_a_problem_not_a_traceback(
    google: GoogleEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = gmail_config(google, tmp_path)
    (tmp_path / "client.json").write_text(json.dumps({"installed": {}}))
    code, out = run(capsys, config, "check")
    assert code == 1 and "not a usable OAuth client file" in out and "Traceback" not in out


def _account(provider: str, calendar: str, **tables: object) -> AccountSettings:
    return AccountSettings(name="a", provider=provider, address="a@example.org",
                           calendar=CalendarSettings(kind=calendar), tables=tables)


@pytest.mark.parametrize(("account", "purposes"), [
    (lambda: _account("local", "file", maildir=MaildirSettings(path="/m")), []),
    (lambda: _account("imap", "file", imap=ImapSettings(host="h", password_command="pass x")),
     []),
    (lambda: _account("imap", "file", imap=ImapSettings(host="h")), ["imap"]),
    (lambda: _account("imap", "google", imap=ImapSettings(host="h")),
     ["imap", "google-refresh-token"]),
    (lambda: _account("gmail", "google", google=GoogleSettings()), ["google-refresh-token"]),
    (lambda: _account("outlook", "outlook", outlook=OutlookSettings()), ["msal-cache"]),
])
def test_the_providers_say_what_the_token_store_must_hold(account: Any,
                                                           purposes: list[str]) -> None:
    # Each provider class names what it keeps; the core only asks (issue 11).
    assert list(checks.stored_purposes(account())) == purposes


def test_a_caldav_password_is_stored_unless_a_command_gives_it() -> None:
    dav = CalDavSettings(url="https://dav.example.org/")
    caldav = CalendarSettings(kind="caldav", options=dav)
    base = AccountSettings(name="a", provider="local", address="a@example.org", calendar=caldav,
                           tables={"maildir": MaildirSettings(path="/m")})
    assert list(checks.stored_purposes(base)) == ["caldav"]
    commanded = CalendarSettings(kind="caldav", options=CalDavSettings(
        url="https://dav.example.org/", password_command="pass dav"))
    assert checks.stored_purposes(AccountSettings(
        name="a", provider="local", address="a@example.org", calendar=commanded,
        tables={"maildir": MaildirSettings(path="/m")})) == {}
