"""Issue 14, items 5 and 6: status and preview show what will happen; options read as people
expect (the real CLI, as a subprocess)."""

from __future__ import annotations

import email
import email.policy
import json
import mailbox
import re
from pathlib import Path

import pytest

from mailbridge import cli, demo
from tests.clirun import example, mb, no_traceback


@pytest.mark.slow
def test_status_shows_lead_decision_date_notes_and_each_drafts_state_and_due(
    tmp_path: Path,
) -> None:
    config = example(tmp_path / "ex")
    assert mb("--config", str(config), "run", "--once").returncode == 0
    saved = mb("--config", str(config), "note", "1", "the lidar calibration story",
               "--decision-by", "2026-12-20")
    assert saved.returncode == 0, saved.stderr
    done = mb("--config", str(config), "status")
    assert done.returncode == 0, done.stderr
    assert f"lead: {demo.LEAD[1]}" in done.stdout
    assert "decision by 2026-12-20" in done.stdout
    assert "note: the lidar calibration story" in done.stdout
    planned = [line for line in done.stdout.splitlines() if "planned, due " in line]
    assert len(planned) == 3  # two thank-yous and the follow-up, each with its due time
    data = json.loads(mb("--config", str(config), "status", "--json").stdout)
    (interview,) = data["accounts"][0]["interviews"]
    assert interview["lead"] == demo.LEAD[1] and interview["decision_by"] == "2026-12-20"
    assert [n["text"] for n in interview["notes"]] == ["the lidar calibration story"]
    assert {(d["kind"], d["state"]) for d in interview["drafts"]} == {
        ("thank_you", "planned"), ("follow_up", "planned")}
    assert all(d["due"] for d in interview["drafts"])


@pytest.mark.slow
def test_preview_labels_states_and_shows_the_subject_the_real_draft_got(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    assert mb("demo", "--dir", str(folder)).returncode == 0
    done = mb("--config", str(folder / "config.toml"), "preview", "1")
    no_traceback(done)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("thank-you [sent by you") == 2
    assert "follow-up [taken back (the employer replied)" in done.stdout
    # The real follow-up (now in Trash) is threaded under the sent thank-you: same subject.
    (key,) = mailbox.Maildir(folder / "Maildir" / ".Trash", create=False).keys()
    raw = mailbox.Maildir(folder / "Maildir" / ".Trash", create=False).get_bytes(key)
    real = email.message_from_bytes(raw, policy=email.policy.default)["Subject"]
    shown = done.stdout.split("follow-up [", 1)[1]
    assert re.search(r"^Subject: (.*)$", shown, re.MULTILINE).group(1) == real  # type: ignore[union-attr]


@pytest.mark.slow
def test_max_follow_ups_zero_turns_follow_ups_off(tmp_path: Path) -> None:
    config = example(tmp_path / "ex", "max_follow_ups = 0\n")
    checked = mb("--config", str(config), "check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert mb("--config", str(config), "run", "--once").returncode == 0
    data = json.loads(mb("--config", str(config), "status", "--json").stdout)
    kinds = [d["kind"] for d in data["accounts"][0]["interviews"][0]["drafts"]]
    assert kinds == ["thank_you", "thank_you"]


@pytest.mark.slow
@pytest.mark.parametrize("since", ["2026-11-01", "7d", "3 days"])
def test_since_takes_a_date_or_a_span(tmp_path: Path, since: str) -> None:
    config = example(tmp_path / "ex")
    assert mb("--config", str(config), "run", "--once").returncode == 0
    done = mb("--config", str(config), "status", "--since", since)
    no_traceback(done)
    assert done.returncode == 0 and "interview found: 1" in done.stdout, done.stderr


@pytest.mark.slow
def test_lead_wants_an_address_and_says_so(tmp_path: Path) -> None:
    config = example(tmp_path / "ex")
    assert mb("--config", str(config), "run", "--once").returncode == 0
    done = mb("--config", str(config), "note", "1", "--lead", "Priya")
    assert done.returncode == 2 and "not an email address" in done.stderr
    assert "priya.raman@example.com" in done.stderr


@pytest.mark.slow
def test_help_has_a_description_for_every_command_and_no_default_none() -> None:
    top = mb("--help")
    assert top.returncode == 0 and "(default: None)" not in top.stdout
    commands = re.search(r"^  COMMAND.*\n((?:    \S.*\n)+)", top.stdout, re.MULTILINE)
    assert commands is not None
    names = [line.split()[0] for line in commands.group(1).splitlines() if line.strip()]
    assert {"sync", "status", "preview", "service", "demo"} <= set(names)
    for name in names:
        done = mb(name, "--help")
        assert done.returncode == 0, name
        assert "(default: None)" not in done.stdout
        body = done.stdout.split("\n\n")
        assert len(body) > 2 and body[1].strip(), f"{name} --help has no description"


def test_every_argument_of_every_command_has_help() -> None:
    parser = cli.build_parser()
    for action in parser._actions:
        assert action.help, f"mailbridge {action.option_strings or action.dest} has no help"
    subparsers = next(a for a in parser._actions if a.dest == "command")
    for name, sub in subparsers.choices.items():  # type: ignore[union-attr]
        for action in sub._actions:
            assert action.help, f"{name} {action.option_strings or action.dest} has no help"


@pytest.mark.slow
def test_demo_takes_no_config(tmp_path: Path) -> None:
    done = mb("demo", "--config", str(tmp_path / "c.toml"))
    assert done.returncode == 2 and "--config" in done.stderr
    done = mb("--config", str(tmp_path / "c.toml"), "demo", "--dir", str(tmp_path / "d"))
    assert done.returncode == 2 and "leave out --config" in done.stderr
    assert not (tmp_path / "d").exists()
