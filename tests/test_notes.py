"""`mailbridge note`: several notes, notes for one interviewer, listing, removing, the company.

Through the real command line on the demo's layout (local calendar file and Maildir): the
drafts in the Maildir show what each note does to each letter.
"""

from __future__ import annotations

import email
import email.policy
import json
import mailbox
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mailbridge import cli, demo
from mailbridge.ledger import Ledger

DANA = demo.LEAD[1]
PRIYA = demo.SECOND[1]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def example(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """The demo's layout, its interview over three hours ago: the thank-yous are in Drafts."""
    config = demo.write_example(tmp_path, datetime.now(UTC) - timedelta(hours=2))
    assert run(capsys, "--config", str(config), "run", "--once")[0] == 0
    assert len(drafts(config)) == 2
    return config


def drafts(config: Path) -> dict[str, str]:
    """The bodies of the drafts in the Maildir, by recipient address."""
    box = mailbox.Maildir(config.parent / "Maildir" / ".Drafts", factory=None, create=False)
    out = {}
    for key in box.iterkeys():
        msg = email.message_from_bytes(box.get_bytes(key), policy=email.policy.default)
        assert isinstance(msg, email.message.EmailMessage)
        part = msg.get_body(preferencelist=("plain",))
        assert part is not None
        out[msg["To"].addresses[0].addr_spec] = str(part.get_content())
    return out


def note(capsys: pytest.CaptureFixture[str], config: Path, *argv: str) -> tuple[int, str, str]:
    return run(capsys, "--config", str(config), "note", "1", *argv)


def test_a_note_for_one_interviewer_reaches_only_their_draft(
    example: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = note(capsys, example, "--for", PRIYA, "her story about lidar in dusty aisles")
    assert code == 0, err
    bodies = drafts(example)
    assert "Her story about lidar in dusty aisles." in bodies[PRIYA]
    assert "lidar" not in bodies[DANA]
    # Dana's letter still has its gap; Priya's gap gave way to the note.
    assert "[[ADD: one thing from your conversation with Dana" in bodies[DANA]
    assert "[[ADD: one thing from your conversation with Priya" not in bodies[PRIYA]


def test_a_second_note_adds_and_both_can_be_listed_and_removed(
    example: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert note(capsys, example, "we talked about their move to ROS 2")[0] == 0
    assert note(capsys, example, "--for", DANA, "the planner tests in simulation")[0] == 0
    bodies = drafts(example)
    assert all("We talked about their move to ROS 2." in body for body in bodies.values())
    assert "The planner tests in simulation." in bodies[DANA]

    code, out, _ = note(capsys, example, "--list")
    assert code == 0
    assert "1. (for everyone) we talked about their move to ROS 2" in out
    assert f"2. (for {DANA}) the planner tests in simulation" in out

    assert note(capsys, example, "--remove", "1")[0] == 0
    bodies = drafts(example)
    assert not any("ROS 2" in body for body in bodies.values())
    assert "The planner tests in simulation." in bodies[DANA]
    code, out, _ = note(capsys, example, "--list")
    assert "1. (for " + DANA + ") the planner tests in simulation" in out and "ROS" not in out

    code, _, err = note(capsys, example, "--remove", "5")
    assert code == 2 and "has 1 note" in err and "--list" in err and "Traceback" not in err


def test_company_override_is_used_and_status_says_why(
    example: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "--config", str(example), "status")
    assert "company 'Northwind Robotics': from the event title" in out
    assert note(capsys, example, "--company", "Northwind Robotics Co")[0] == 0
    bodies = drafts(example)
    assert all("at Northwind Robotics Co." in body or "at Northwind Robotics Co " in body
               for body in bodies.values())
    data = json.loads(run(capsys, "--config", str(example), "status", "--json")[1])
    (interview,) = data["accounts"][0]["interviews"]
    assert interview["company"] == "Northwind Robotics Co"
    assert interview["company_reason"] == "you chose it (note --company)"
    # The next pass keeps the user's choice though the calendar still says otherwise.
    assert run(capsys, "--config", str(example), "run", "--once")[0] == 0
    with Ledger.open(example.parent / "state") as ledger:
        assert ledger.interviews()[0].company == "Northwind Robotics Co"
    assert note(capsys, example, "--company", "")[0] == 0
    data = json.loads(run(capsys, "--config", str(example), "status", "--json")[1])
    assert data["accounts"][0]["interviews"][0]["company"] == "Northwind Robotics"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--for", "stranger@example.com", "hello"], "not one of this interview's interviewers"),
        (["--for", PRIYA], "--for needs the note's text"),
        (["   "], "the note is empty"),
        ([], "nothing to save"),
    ],
    ids=["stranger", "for-without-text", "empty", "nothing"],
)
def test_note_mistakes_are_one_clear_line(
    example: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, _, err = note(capsys, example, *argv)
    assert code == 2 and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
