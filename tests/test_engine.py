"""The whole loop on the local provider: real .ics files, a real Maildir, the real engine."""

from __future__ import annotations

import email
import email.policy
import json
import mailbox
import os
import signal
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

import pytest

from mailbridge import config as config_module
from mailbridge import engine, timing
from mailbridge.ledger import Ledger
from mailbridge.model import DraftKind, DraftState, InterviewState
from mailbridge.settings import AccountSettings

USER = "jordan.lee@example.com"
LEAD = "dana.whitfield@northwind-robotics.com"
OTHER = "priya.raman@northwind-robotics.com"
END = datetime(2026, 11, 17, 16, 0, tzinfo=UTC)  # a Tuesday


def event_ics(uid: str, start: datetime, end: datetime, *, title: str, cancelled: bool = False,
              attendees: tuple[tuple[str, str], ...] = (("Dana Whitfield", LEAD),
                                                        ("Priya Raman", OTHER))) -> str:
    fmt = "%Y%m%dT%H%M%SZ"
    lines = [
        "BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//test//EN", "BEGIN:VEVENT",
        f"UID:{uid}", f"DTSTAMP:{start.strftime(fmt)}", f"DTSTART:{start.strftime(fmt)}",
        f"DTEND:{end.strftime(fmt)}", f"SUMMARY:{title}",
        f"ORGANIZER;CN={attendees[0][0]}:mailto:{attendees[0][1]}",
    ]
    if cancelled:
        lines.append("STATUS:CANCELLED")
    for name, addr in attendees:
        lines.append(f"ATTENDEE;CN={name};PARTSTAT=ACCEPTED:mailto:{addr}")
    lines += [f"ATTENDEE;CN=Jordan Lee;PARTSTAT=ACCEPTED:mailto:{USER}",
              "END:VEVENT", "END:VCALENDAR", ""]
    return "\r\n".join(lines)


class World:
    """A config, a calendar folder and a Maildir under one temp dir."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "calendar").mkdir()
        mailbox.Maildir(root / "Maildir", create=True)
        self.config = root / "config.toml"
        self.config.write_text(textwrap.dedent(f"""
            [mailbridge]
            timezone = "America/Chicago"
            country = "US"
            state_dir = "state"

            [accounts.me]
            provider = "local"
            address = "{USER}"
            name = "Jordan Lee"
            signature = "Jordan"
            calendar = {{ kind = "file", path = "calendar" }}
            maildir = {{ path = "Maildir" }}
            """), encoding="utf-8")
        self.settings = config_module.load(self.config)
        self.account: AccountSettings = self.settings.accounts[0]
        self.ledger = Ledger.open(self.settings.state_dir)

    def add_interview(self, uid: str = "iv1", end: datetime = END, **kw: object) -> None:
        title = str(kw.pop("title", "Northwind Robotics - Technical Interview"))
        path = self.root / "calendar" / f"{uid}.ics"
        path.write_text(event_ics(uid, end - timedelta(hours=1), end, title=title, **kw),  # type: ignore[arg-type]
                        encoding="utf-8")

    def run(self, now: datetime) -> engine.PassReport:
        report = engine.reconcile(self.account, self.ledger, now=now)
        assert report.error is None, report.error
        return report

    def folder(self, name: str) -> mailbox.Maildir:
        return mailbox.Maildir(self.root / "Maildir" / f".{name}", factory=None, create=False)

    def messages(self, name: str) -> list[EmailMessage]:
        box = self.folder(name)
        out = []
        for key in box.iterkeys():
            parsed = email.message_from_bytes(box.get_bytes(key), policy=email.policy.default)
            assert isinstance(parsed, EmailMessage)
            out.append(parsed)
        return out

    def drafts(self, kind: DraftKind | None = None) -> list:
        return [d for d in self.ledger.drafts(self.account.name) if kind is None or d.kind == kind]

    def send_all_drafts(self) -> None:
        drafts, sent = self.folder("Drafts"), self.folder("Sent")
        for key in list(drafts.keys()):
            sent.add(drafts.get_bytes(key))
            drafts.remove(key)

    def deliver(self, sender: str, subject: str, in_reply_to: str = "", at: datetime = END,
                extra: dict[str, str] | None = None, body: str = "Thanks, talk soon.") -> None:
        message = EmailMessage()
        message["From"] = sender
        message["To"] = USER
        message["Subject"] = subject
        message["Date"] = format_datetime(at)
        message["Message-ID"] = f"<{abs(hash((sender, subject, at)))}@northwind-robotics.com>"
        if in_reply_to:
            message["In-Reply-To"] = in_reply_to
        for k, v in (extra or {}).items():
            message[k] = v
        message.set_content(body)
        mailbox.Maildir(self.root / "Maildir", factory=None, create=False).add(message.as_bytes())


def follow_up_waiting(world: World) -> datetime:
    """Thank-yous sent, the follow-up to the lead in Drafts; the time it was made."""
    world.add_interview()
    world.run(END + timedelta(hours=2))
    world.send_all_drafts()
    world.run(END + timedelta(hours=3))
    due = timing.follow_up_due(END, None, world.account.policy)
    world.run(due)
    assert len(world.messages("Drafts")) == 1
    return due


@pytest.fixture
def world(tmp_path: Path) -> World:
    w = World(tmp_path)
    yield w
    w.ledger.close()


def test_thank_yous_appear_on_time_and_a_second_pass_changes_nothing(world: World) -> None:
    world.add_interview()
    world.run(END - timedelta(minutes=10))  # interview still going: planned, nothing written
    assert world.messages("Drafts") == []
    planned = world.drafts(DraftKind.THANK_YOU)
    assert {d.recipient.email for d in planned} == {LEAD, OTHER}
    assert all(d.state == DraftState.PLANNED and d.due == END + timedelta(hours=2)
               for d in planned)

    world.run(END + timedelta(hours=2))
    drafts = world.messages("Drafts")
    assert sorted(m["To"].addresses[0].addr_spec for m in drafts) == sorted([LEAD, OTHER])
    box = world.folder("Drafts")
    assert all("D" in box.get_message(k).get_flags() for k in box.iterkeys())
    audit_before = len(world.ledger.audit_entries())
    files_before = sorted(box.keys())

    world.run(END + timedelta(hours=2, minutes=5))
    assert sorted(world.folder("Drafts").keys()) == files_before
    assert len(world.ledger.audit_entries()) == audit_before


def test_whole_loop_follow_up_then_reply_retracts_it(world: World) -> None:
    world.add_interview()
    world.run(END + timedelta(hours=2))
    world.send_all_drafts()
    world.run(END + timedelta(hours=3))
    assert {d.state for d in world.drafts(DraftKind.THANK_YOU)} == {DraftState.SENT}

    interview = world.ledger.interviews()[0]
    due = timing.follow_up_due(interview.end, None, world.account.policy)
    world.run(due - timedelta(minutes=1))
    assert world.messages("Drafts") == []
    world.run(due)
    (follow_up,) = world.messages("Drafts")
    assert follow_up["To"].addresses[0].addr_spec == LEAD
    thank_you = next(d for d in world.drafts(DraftKind.THANK_YOU) if d.recipient.email == LEAD)
    assert follow_up["In-Reply-To"] == thank_you.message_id  # threaded under the thank-you

    # An out-of-office from the other interviewer is not a reply.
    world.deliver(OTHER, "Automatic reply: Thank you", at=due + timedelta(minutes=1),
                  extra={"Auto-Submitted": "auto-replied"})
    world.run(due + timedelta(minutes=2))
    assert len(world.messages("Drafts")) == 1

    world.deliver(f"Dana Whitfield <{LEAD}>", "Re: Thank you", thank_you.message_id,
                  at=due + timedelta(hours=1))
    world.run(due + timedelta(hours=1, minutes=1))
    assert world.messages("Drafts") == []
    assert len(world.messages("Trash")) == 1
    (row,) = world.drafts(DraftKind.FOLLOW_UP)
    assert row.state == DraftState.RETRACTED


def test_edited_follow_up_is_kept_and_flagged_when_the_employer_replies(world: World) -> None:
    world.add_interview()
    world.run(END + timedelta(hours=2))
    world.send_all_drafts()
    due = timing.follow_up_due(END, None, world.account.policy)
    world.run(due)
    box = world.folder("Drafts")
    (key,) = box.keys()
    edited = email.message_from_bytes(box.get_bytes(key), policy=email.policy.default)
    assert isinstance(edited, EmailMessage)
    edited.set_content("Hi Dana, my own words here.\nJordan")
    box[key] = mailbox.MaildirMessage(edited.as_bytes())
    world.deliver(LEAD, "Re: update", at=due + timedelta(hours=1))
    world.run(due + timedelta(hours=2))
    assert len(world.folder("Drafts").keys()) == 1  # still there
    (row,) = world.drafts(DraftKind.FOLLOW_UP)
    assert row.state == DraftState.USER_EDITED and row.flagged


def test_a_draft_the_user_deleted_is_never_recreated(world: World) -> None:
    world.add_interview()
    world.run(END + timedelta(hours=2))
    box = world.folder("Drafts")
    for key in list(box.keys()):
        box.remove(key)
    for hours in (3, 4, 30):
        world.run(END + timedelta(hours=hours))
    assert world.messages("Drafts") == []
    assert {d.state for d in world.drafts(DraftKind.THANK_YOU)} == {DraftState.USER_DELETED}


def test_cancelled_interview_cancels_what_was_planned(world: World) -> None:
    world.add_interview()
    world.run(END - timedelta(hours=3))
    world.add_interview(cancelled=True)
    world.run(END + timedelta(hours=3))
    assert world.messages("Drafts") == []
    assert world.ledger.interviews()[0].state == InterviewState.CANCELLED
    assert {d.state for d in world.drafts()} == {DraftState.CANCELLED}


def test_calendar_that_loses_most_events_pauses_instead_of_cancelling(world: World) -> None:
    for n in range(4):
        world.add_interview(uid=f"iv{n}", end=END + timedelta(days=n + 1))
    world.run(END)
    for n in range(3):
        (world.root / "calendar" / f"iv{n}.ics").unlink()
    report = engine.reconcile(world.account, world.ledger, now=END + timedelta(minutes=5))
    assert report.paused and "resume" in report.paused
    assert all(i.state == InterviewState.ACTIVE for i in world.ledger.interviews())
    assert world.ledger.account_status("me").paused

    world.ledger.confirm_resume("me")
    world.run(END + timedelta(minutes=10))
    # Confirmed, yet absence counts as removal only once it lasted: held meanwhile.
    assert sum(i.missing_since is not None for i in world.ledger.interviews()) == 3
    assert world.ledger.account_status("me").paused is None
    world.run(END + timedelta(minutes=10) + world.account.policy.removal_grace)
    states = sorted(i.state for i in world.ledger.interviews())
    assert states.count(InterviewState.CANCELLED) == 3
    assert world.ledger.account_status("me").paused is None


def test_dry_run_writes_nothing(world: World) -> None:
    world.add_interview()
    report = engine.reconcile(world.account, world.ledger, now=END + timedelta(hours=2),
                              dry_run=True)
    assert any("would create" in line for line in report.actions)
    assert world.messages("Drafts") == []
    assert world.ledger.interviews() == [] and world.ledger.audit_entries() == []


def test_notes_rewrite_an_unedited_draft(world: World) -> None:
    world.add_interview()
    world.run(END + timedelta(hours=2))
    interview = world.ledger.interviews()[0]
    with world.ledger.transaction():
        world.ledger.set_notes(interview.id, "the robot arm calibration demo", END)
    world.run(END + timedelta(hours=2, minutes=1))
    bodies = [m.get_body(preferencelist=("plain",)).get_content()
              for m in world.messages("Drafts")]
    assert len(bodies) == 2
    assert all("robot arm calibration" in body for body in bodies)


CRASH_SCRIPT = """
import os, signal, sys
from datetime import datetime
import mailbridge_providers.local as local
from mailbridge import cli

original = local.MaildirMailbox.create_draft
def create_then_die(self, draft):
    key = original(self, draft)
    os.kill(os.getpid(), signal.SIGKILL)  # after the write, before the ledger records it
    return key
local.MaildirMailbox.create_draft = create_then_die
sys.exit(cli.main(["--config", sys.argv[1], "run", "--once"]))
"""


@pytest.mark.slow
def test_sigkill_between_writing_a_draft_and_recording_it_leaves_exactly_one(
    world: World,
) -> None:
    end = datetime.now(UTC) - timedelta(hours=3)
    world.add_interview(end=end, attendees=(("Dana Whitfield", LEAD),))
    crashed = subprocess.run([sys.executable, "-c", CRASH_SCRIPT, str(world.config)],
                             capture_output=True, text=True, timeout=60)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    assert len(world.messages("Drafts")) == 1
    (row,) = world.drafts(DraftKind.THANK_YOU)
    assert row.state == DraftState.CREATING

    again = subprocess.run([sys.executable, "-m", "mailbridge.cli", "--config",
                            str(world.config), "run", "--once"],
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stderr
    assert len(world.messages("Drafts")) == 1
    (row,) = world.drafts(DraftKind.THANK_YOU)
    assert row.state == DraftState.CREATED
    assert any(e.decision == "draft recovered" for e in world.ledger.audit_entries())


@pytest.mark.slow
def test_demo_runs_the_whole_loop(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "mailbridge.cli", "demo", "--dir",
                           str(tmp_path / "demo")], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "MAILBRIDGE_CONFIG": str(tmp_path / "none.toml")})
    assert done.returncode == 0, done.stderr
    assert "draft retracted" in done.stdout
    root = tmp_path / "demo" / "Maildir"
    assert len(mailbox.Maildir(root / ".Drafts", create=False)) == 0
    assert len(mailbox.Maildir(root / ".Sent", create=False)) == 2
    assert len(mailbox.Maildir(root / ".Trash", create=False)) == 1
    status = subprocess.run([sys.executable, "-m", "mailbridge.cli", "--config",
                             str(tmp_path / "demo" / "config.toml"), "status", "--json"],
                            capture_output=True, text=True, timeout=60)
    data = json.loads(status.stdout)
    (interview,) = data["accounts"][0]["interviews"]
    assert interview["company"] == "Northwind Robotics"
    assert sorted(d["state"] for d in interview["drafts"]) == ["retracted", "sent", "sent"]


def test_an_unreadable_calendar_file_is_audited_and_cancels_nothing(world: World) -> None:
    world.add_interview(uid="iv1")
    world.add_interview(uid="iv2", end=END + timedelta(days=1))
    world.run(END - timedelta(hours=1))
    # iv2's file turns into a login page (a broken sync): its interview must not be cancelled.
    (world.root / "calendar" / "iv2.ics").write_text("<html>Sign in</html>", encoding="utf-8")
    world.run(END + timedelta(hours=2))
    assert all(i.state == InterviewState.ACTIVE for i in world.ledger.interviews())
    skipped = [a.reason for a in world.ledger.audit_entries() if a.decision == "event skipped"]
    assert len(skipped) == 1 and "iv2.ics" in skipped[0]
    assert len(world.messages("Drafts")) == 2  # iv1's thank-yous still appear


def test_an_unreadable_event_is_audited_and_its_interview_kept(world: World) -> None:
    world.add_interview(uid="iv1")
    world.add_interview(uid="iv2", end=END + timedelta(days=1))
    world.add_interview(uid="iv3", end=END + timedelta(days=2))
    world.run(END - timedelta(hours=1))
    # iv2 gains a rule that would repeat every second (dropped as unreadable), iv3 is deleted.
    path = world.root / "calendar" / "iv2.ics"
    path.write_text(path.read_text().replace("SUMMARY:", "RRULE:FREQ=SECONDLY\r\nSUMMARY:"),
                    encoding="utf-8")
    (world.root / "calendar" / "iv3.ics").unlink()
    world.run(END)
    world.run(END + world.account.policy.removal_grace)  # iv3 stayed gone: now it is removed
    states = {i.key.uid: i.state for i in world.ledger.interviews()}
    assert states == {"iv1": InterviewState.ACTIVE, "iv2": InterviewState.ACTIVE,
                      "iv3": InterviewState.CANCELLED}
    skipped = [a.reason for a in world.ledger.audit_entries() if a.decision == "event skipped"]
    assert len(skipped) == 1 and "'iv2'" in skipped[0]


class _Killed(BaseException):
    """Stands in for SIGKILL inside one process: nothing after it runs."""


def test_an_update_cut_short_is_still_ours_and_unedited(world: World, monkeypatch) -> None:
    import mailbridge_providers.local as local

    world.add_interview()
    world.run(END + timedelta(hours=2))
    interview = world.ledger.interviews()[0]
    with world.ledger.transaction():
        world.ledger.set_notes(interview.id, "the robot arm calibration demo", END)
    original = local.MaildirMailbox.update_draft

    def update_then_die(self, provider_id, draft):  # type: ignore[no-untyped-def]
        original(self, provider_id, draft)
        raise _Killed  # the server has the new text; the ledger never heard of it

    monkeypatch.setattr(local.MaildirMailbox, "update_draft", update_then_die)
    with pytest.raises(_Killed):
        engine.reconcile(world.account, world.ledger, now=END + timedelta(hours=2, minutes=1))
    monkeypatch.setattr(local.MaildirMailbox, "update_draft", original)

    world.run(END + timedelta(hours=2, minutes=2))
    drafts = world.drafts(DraftKind.THANK_YOU)
    assert {d.state for d in drafts} == {DraftState.CREATED}  # not taken for the user's edit
    assert all(not d.pending_hash for d in drafts)
    bodies = [m.get_body(preferencelist=("plain",)).get_content()
              for m in world.messages("Drafts")]
    assert len(bodies) == 2 and all("robot arm calibration" in b for b in bodies)


def test_a_reply_seen_again_under_another_id_is_one_reply(world: World) -> None:
    """The same mail found again under another id in the same kind of folder (IMAP gives a
    message moved to another folder that is read a new UID; a delivery made twice) is the
    reply already recorded: one row, one decision."""
    world.add_interview()
    world.run(END + timedelta(hours=2))
    world.send_all_drafts()
    world.run(END + timedelta(hours=3))
    world.deliver(f"Dana Whitfield <{LEAD}>", "Re: Thank you", at=END + timedelta(hours=4))
    world.run(END + timedelta(hours=5))
    inbox = mailbox.Maildir(world.root / "Maildir", factory=None, create=False)
    (key,) = inbox.keys()
    inbox.add(inbox.get_bytes(key))  # the same message, under a new Maildir key
    world.run(END + timedelta(hours=6))
    rows = world.ledger.conn.execute(
        "SELECT count(*) FROM message WHERE folder='inbox'").fetchone()[0]
    assert rows == 1
    matched = [e for e in world.ledger.audit_entries() if e.decision == "mail matched"]
    assert len(matched) == 1


def test_a_reply_archived_before_the_pass_takes_the_follow_up_back(world: World) -> None:
    """The user read the employer's answer on their phone and archived it while mailbridge
    was not running: it is still a reply, whichever folder it is in now."""
    due = follow_up_waiting(world)
    thank_you = next(d for d in world.drafts(DraftKind.THANK_YOU) if d.recipient.email == LEAD)
    world.deliver(f"Dana Whitfield <{LEAD}>", "Re: Thank you", thank_you.message_id,
                  at=due + timedelta(hours=1))
    inbox = mailbox.Maildir(world.root / "Maildir", factory=None, create=False)
    archive = inbox.add_folder("Archive")
    for key in list(inbox.keys()):
        archive.add(inbox.get_bytes(key))
        inbox.remove(key)
    world.run(due + timedelta(hours=2))
    assert world.messages("Drafts") == []
    (row,) = world.drafts(DraftKind.FOLLOW_UP)
    assert row.state == DraftState.RETRACTED
