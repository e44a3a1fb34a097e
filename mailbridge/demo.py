"""`mailbridge demo`: the whole loop on a throwaway local example, narrated.

It writes a calendar with an interview that ended an hour ago, an empty Maildir and a config
using the local provider, then runs the real engine at a few moments of a simulated clock:
thank-you drafts appear, the candidate sends them, the employer stays quiet, a follow-up to
the lead appears, the employer replies, and the follow-up is taken back.
"""

from __future__ import annotations

import email
import email.policy
import logging
import mailbox
import re
import tempfile
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

from mailbridge import config as config_module
from mailbridge import engine, timing
from mailbridge.compose import GAP_PATTERN
from mailbridge.ledger import Ledger
from mailbridge.model import DraftKind, DraftState

USER = "jordan.lee@example.com"
LEAD = ("Dana Whitfield", "dana.whitfield@northwind-robotics.com")
SECOND = ("Priya Raman", "priya.raman@northwind-robotics.com")


def _ics(start: datetime, end: datetime) -> str:
    stamp = "%Y%m%dT%H%M%SZ"
    return "\r\n".join([
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//mailbridge//demo//EN",
        "BEGIN:VEVENT",
        "UID:demo-interview-1@mailbridge",
        f"DTSTAMP:{start.strftime(stamp)}",
        f"DTSTART:{start.strftime(stamp)}",
        f"DTEND:{end.strftime(stamp)}",
        "SUMMARY:Northwind Robotics - Technical Interview (Robotics Software Engineer)",
        "DESCRIPTION:Panel with the navigation team.",
        f"ORGANIZER;CN={LEAD[0]}:mailto:{LEAD[1]}",
        f"ATTENDEE;CN={LEAD[0]};PARTSTAT=ACCEPTED:mailto:{LEAD[1]}",
        f"ATTENDEE;CN={SECOND[0]};PARTSTAT=ACCEPTED:mailto:{SECOND[1]}",
        f"ATTENDEE;CN=Jordan Lee;PARTSTAT=ACCEPTED:mailto:{USER}",
        "ATTENDEE;CN=Room 4B;CUTYPE=ROOM;PARTSTAT=ACCEPTED:"
        "mailto:room-4b@northwind-robotics.com",
        "ATTENDEE;CN=Sam (personal);PARTSTAT=ACCEPTED:mailto:sam.k.1988@gmail.com",
        "END:VEVENT",
        "END:VCALENDAR",
        "",
    ])


CONFIG = """# Written by `mailbridge demo`. For your own, run `mailbridge init`.
[mailbridge]
timezone = "UTC"
country = "US"
state_dir = "state"

[accounts.demo]
provider = "local"
address = "{user}"
name = "Jordan Lee"
signature = "Jordan Lee\\n555-0100"
calendar = {{ kind = "file", path = "calendar" }}
maildir = {{ path = "Maildir" }}
"""


# Left in the demo's folder, so a later `demo --dir` there knows the folder is its own.
MARKER = ".mailbridge-demo"
# Everything the demo writes in its folder (and so all a re-run may remove).
DEMO_FILES = (MARKER, "config.toml", "calendar", "Maildir", "state")


class DemoRefused(Exception):
    """The folder is not the demo's to use; nothing was written."""


def prepare(root: Path) -> None:
    """Make ``root`` ready for a fresh demo, or refuse without touching anything.

    A new or empty folder is used as it is. A folder an earlier demo wrote (it has the marker
    and nothing but the demo's own files) is cleared of those files. Anything else is refused:
    the demo writes mail files and a config, and must never mix them into real ones.
    """
    import shutil

    if root.exists() and not root.is_dir():
        raise DemoRefused(f"{root} is a file; give `demo --dir` a new or empty folder")
    entries = sorted(p.name for p in root.iterdir()) if root.is_dir() else []
    if not entries:
        root.mkdir(parents=True, exist_ok=True)
        return
    foreign = [name for name in entries if name not in DEMO_FILES]
    if MARKER not in entries or foreign:
        shown = ", ".join(foreign[:3] or entries[:3])
        raise DemoRefused(
            f"{root} is not empty ({shown}{', …' if len(foreign or entries) > 3 else ''}) and "
            "not an earlier demo's folder; nothing was written. Give `demo --dir` a new or "
            "empty folder"
        )
    for name in DEMO_FILES:
        target = root / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()


def _write_new(path: Path, text: str) -> None:
    with path.open("x", encoding="utf-8") as handle:  # "x": never overwrite a file
        handle.write(text)


def write_example(root: Path, now: datetime) -> Path:
    """Lay out the example under ``root`` (new files only); returns the config path."""
    end = (now - timedelta(hours=1)).replace(second=0, microsecond=0)
    start = end - timedelta(hours=1)
    root.mkdir(parents=True, exist_ok=True)
    _write_new(root / MARKER, "This folder was written by `mailbridge demo`.\n")
    (root / "calendar").mkdir()
    _write_new(root / "calendar" / "interview.ics", _ics(start, end))
    mailbox.Maildir(root / "Maildir", create=True)
    path = root / "config.toml"
    _write_new(path, CONFIG.format(user=USER))
    return path


def _say(text: str) -> None:
    print(f"\n== {text}")


def _show_folder(root: Path, folder: str) -> list[EmailMessage]:
    box = mailbox.Maildir(root / "Maildir" / f".{folder}", factory=None, create=False)
    shown = []
    for key in sorted(box.keys()):
        parsed = email.message_from_bytes(box.get_bytes(key), policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        shown.append(parsed)
    return shown


def _print_draft(message: EmailMessage) -> None:
    print(f"   To: {message['To']}\n   Subject: {message['Subject']}")
    body = message.get_body(preferencelist=("plain",))
    text = body.get_content() if body is not None else ""
    for line in str(text).strip().splitlines():
        print(f"   | {line}")


# What the demo's candidate writes into each thank-you's gaps, in order; a gap with no answer
# here is an optional one the candidate deletes.
CANDIDATE_WORDS: dict[str, tuple[str, ...]] = {
    LEAD[1]: (
        "Your account of how the navigation team tries every new planner in simulation before"
        " it goes near the warehouse floor stayed with me, because that is how I like to work.",
    ),
    SECOND[1]: (
        "I keep thinking about how you kept the lidar readings steady in dusty aisles; sensor"
        " work like that is where I most want to grow.",
        "I did not get to mention that I rebuilt our robot's localisation stack in ROS 2 last"
        " spring, and I would be glad to walk you through it.",
    ),
}


def fill_gaps(body: str, answers: tuple[str, ...]) -> str:
    """`body` with its gaps filled from `answers` in order; a paragraph left empty is dropped."""
    remaining = list(answers)

    def answer(_: re.Match[str]) -> str:
        return remaining.pop(0) if remaining else ""

    paragraphs = [GAP_PATTERN.sub(answer, p).strip(" ") for p in body.split("\n\n")]
    return "\n\n".join(p for p in paragraphs if p.strip())


def _filled(raw: bytes) -> bytes:
    """The candidate's draft as they send it: the same message with the gaps written."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    (to,) = message["To"].addresses
    part = message.get_body(preferencelist=("plain",))
    body = str(part.get_content()) if part is not None else ""
    message.set_content(fill_gaps(body, CANDIDATE_WORDS.get(to.addr_spec, ())))
    return message.as_bytes()


def run(directory: Path | None = None) -> int:
    logging.getLogger("mailbridge").setLevel(logging.WARNING)  # the narration says it all
    root = (directory or Path(tempfile.mkdtemp(prefix="mailbridge-demo-"))).absolute()
    prepare(root)
    real_now = datetime.now(UTC)
    path = write_example(root, real_now)
    settings = config_module.load(path)
    account = settings.accounts[0]
    print(f"mailbridge demo in {root}")
    print("A calendar with a Northwind Robotics interview that ended an hour ago, an empty "
          "Maildir, and a config using the local provider.")

    with Ledger.open(settings.state_dir) as ledger:
        ledger.lock()

        def step(now: datetime) -> engine.PassReport:
            report = engine.reconcile(account, ledger, now=now)
            for line in report.actions:
                print("   " + line.split(": ", 1)[1])
            if report.error:
                print(f"   error: {report.error}")
            return report

        _say(f"Now ({real_now:%a %H:%M} UTC): the first pass finds the interview")
        step(real_now)

        due = min(d.due for d in ledger.drafts(account.name)
                  if d.kind == DraftKind.THANK_YOU and d.state == DraftState.PLANNED)
        _say(f"{due:%a %H:%M} UTC (simulated): the thank-you drafts are due")
        step(due)
        drafts = _show_folder(root, "Drafts")
        print(f"\n   {len(drafts)} drafts in Maildir/.Drafts:")
        for message in drafts:
            _print_draft(message)
            print()

        _say("The candidate fills the gaps and sends both thank-yous (moved to Sent)")
        drafts_box = mailbox.Maildir(root / "Maildir" / ".Drafts", factory=None, create=False)
        sent_box = mailbox.Maildir(root / "Maildir" / ".Sent", factory=None, create=False)
        for key in list(drafts_box.keys()):
            sent_box.add(_filled(drafts_box.get_bytes(key)))
            drafts_box.remove(key)
        for message in _show_folder(root, "Sent"):
            _print_draft(message)
            print()
        sent_at = due + timedelta(minutes=30)
        step(sent_at)

        interview = ledger.interviews(account.name)[0]
        follow_due = timing.follow_up_due(interview.end, None, account.policy)
        _say(f"{follow_due:%a %b %d %H:%M} UTC (simulated): no word from the employer")
        step(follow_due)
        for message in _show_folder(root, "Drafts"):
            _print_draft(message)

        _say("The lead replies")
        thank_you = next(d for d in ledger.drafts(account.name)
                         if d.kind == DraftKind.THANK_YOU
                         and d.recipient.email == LEAD[1])
        reply = EmailMessage()
        reply["From"] = f"{LEAD[0]} <{LEAD[1]}>"
        reply["To"] = USER
        reply["Subject"] = "Re: next steps"
        reply["Date"] = format_datetime(follow_due + timedelta(hours=2))
        reply["Message-ID"] = "<reply-1@northwind-robotics.com>"
        reply["In-Reply-To"] = thank_you.message_id
        reply.set_content("Hi Jordan, thanks for your patience. Could we talk on Monday?\nDana")
        inbox = mailbox.Maildir(root / "Maildir", factory=None, create=False)
        inbox.add(reply.as_bytes())
        step(follow_due + timedelta(hours=2, minutes=5))
        left = _show_folder(root, "Drafts")
        trash = _show_folder(root, "Trash")
        print(f"\n   Drafts now: {len(left)}; in Trash: {len(trash)} (the unedited follow-up)")

    import shlex

    command = _own_command()
    print(f"\nLook around: {root}\n  {command} --config {shlex.quote(str(path))} status\n"
          f"  {command} --config {shlex.quote(str(path))} run        "
          "# the service, on this example")
    return 0


def _own_command() -> str:
    """How to run this mailbridge again: its name when that is on PATH, else its full path."""
    import shlex
    import shutil
    import sys

    here = Path(sys.argv[0]).absolute() if sys.argv and sys.argv[0] else None
    found = shutil.which("mailbridge")
    if found and here is not None and Path(found).absolute() == here:
        return "mailbridge"
    if here is not None and here.name == "mailbridge" and here.exists():
        return shlex.quote(str(here))
    return f"{shlex.quote(sys.executable)} -m mailbridge.cli"
