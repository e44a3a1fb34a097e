"""One set of user actions on our drafts through all four mailboxes reaches the same decision.

Each mailbox gets a draft the way the engine makes one (`create_draft`, then a first pass that
observes it), then the user does one thing to it the way that service or mail program does it:
mutt renames a Maildir file for a flag and writes a new file to save; an IMAP program APPENDs
a new UID under the same Message-ID and expunges the old one; Gmail keeps the draft id and makes
a new message on every save; Outlook PATCHes the item and gives it a new changeKey. The next
pass asks the provider what the engine asks (the messages, `versions`, then `observe` when the
marker moved) and `mailbridge.drafts` decides; `locate` says where the Message-ID is now. Every
mailbox must come to the same outcome, and a marker that says "untouched" must never hide an
edit, a send or a deletion.
"""

from __future__ import annotations

import email
import email.policy
import mailbox as stdlib_mailbox
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

import pytest
from mailbridge_providers import gmail, imap, local, outlook

from mailbridge import compose, drafts, secrets
from mailbridge.adapters import Mailbox
from mailbridge.drafts import Outcome
from mailbridge.model import (
    DraftKind,
    DraftMessage,
    DraftRow,
    DraftState,
    Place,
    SentHint,
)
from tests.emulators.google import GoogleEmulator, running
from tests.emulators.graph import GraphEmulator
from tests.servers import Dovecot
from tests.test_gmail import fast_api, make_account
from tests.test_imap import account_for as imap_account
from tests.test_outlook import Sleeps, sign_in

OTHER = "sam.ortiz@example.com"  # the recipient the user adds


def our_draft() -> DraftMessage:
    """A thank-you as the engine renders it (compose.render, the shipped template)."""
    interview, lead, account = compose._sample_interview()
    return compose.render(DraftKind.THANK_YOU, interview, lead, account,
                          now=datetime.now(UTC), written_at=datetime.now(UTC))  # fmt: skip


def parsed(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def with_body(message: EmailMessage, body: str) -> EmailMessage:
    changed = parsed(bytes(message))
    part = changed.get_body(preferencelist=("plain",))
    assert part is not None
    part.set_content(body)
    return changed


def flowed(message: EmailMessage, width: int = 72) -> EmailMessage:
    """The same text as Thunderbird saves it: format=flowed, long lines broken at ``width``
    after a space that stays at the line's end (a soft break, RFC 3676)."""
    lines: list[str] = []
    for paragraph in text_of(message).split("\n"):
        line = ""
        for word in paragraph.split(" "):
            if line and len(line) + len(word) > width:
                lines.append(line)  # ends with the space: a soft break
                line = ""
            line += word + " "
        lines.append(line[:-1])
    changed = parsed(bytes(message))
    changed.set_content("\n".join(lines), params={"format": "flowed"})
    return changed


def with_header(message: EmailMessage, name: str, value: str) -> EmailMessage:
    changed = parsed(bytes(message))
    del changed[name]
    changed[name] = value
    return changed


# --- the user's mail program, per mailbox ------------------------------------------------------


class User:
    """What the user does to a draft (``pid``: its provider id), as that mailbox shows it."""

    mailbox: Mailbox

    def flag(self, pid: str) -> None:
        raise NotImplementedError

    def save(self, pid: str, message: EmailMessage) -> None:
        """The mail program saves the draft with this text (the same text: a re-save)."""
        raise NotImplementedError

    def save_copy(self, pid: str, message: EmailMessage) -> None:
        """A program that saves a draft as a new message (and removes the old one), as every
        IMAP client does, on the server's own IMAP."""
        self.save(pid, message)

    def send(self, pid: str) -> None:
        raise NotImplementedError

    def send_copy(self, pid: str, message: EmailMessage) -> None:
        """A program that sends the draft itself (SMTP), files the copy in Sent under our
        Message-ID and removes the draft."""
        self.send(pid)

    def send_as_new(self, pid: str, message: EmailMessage) -> None:
        """A program that sends its own copy (``message``, under a new Message-ID) and drops
        the draft."""
        raise NotImplementedError

    def trash(self, pid: str) -> None:
        raise NotImplementedError

    def mark_deleted(self, pid: str) -> None:
        """Deleted the way of a program that expunges later: the message stays, marked."""
        raise NotImplementedError

    def delete(self, pid: str) -> None:
        raise NotImplementedError

    def archive(self, pid: str) -> None:
        raise NotImplementedError


class MaildirUser(User):
    """mutt/neomutt/aerc on a Maildir: flags are in the file name, a save writes a new file."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.mailbox = local.MaildirMailbox(root)
        self.drafts = stdlib_mailbox.Maildir(root / ".Drafts", factory=None, create=False)

    def _path(self, pid: str) -> Path:
        return Path(self.drafts._path, self.drafts._lookup(pid))  # type: ignore[attr-defined]

    def _into(self, folder: str, path: Path, flags: str) -> None:
        box = stdlib_mailbox.Maildir(self.root / f".{folder}", factory=None, create=True)
        key = path.name.split(":")[0]
        os.replace(path, Path(box._path, "cur", f"{key}:2,{flags}"))

    def flag(self, pid: str) -> None:
        path = self._path(pid)
        os.rename(path, path.with_name(f"{pid}:2,DFS"))  # flagged: the name changes, not the key

    def save(self, pid: str, message: EmailMessage) -> None:
        saved = stdlib_mailbox.MaildirMessage(bytes(message))
        saved.set_subdir("cur")
        saved.set_flags("DS")
        self.drafts.add(saved)
        self._path(pid).unlink()

    def send(self, pid: str) -> None:
        self._into("Sent", self._path(pid), "S")

    def send_as_new(self, pid: str, message: EmailMessage) -> None:
        stdlib_mailbox.Maildir(self.root / ".Sent", factory=None).add(bytes(message))
        self._path(pid).unlink()

    def trash(self, pid: str) -> None:
        self._into("Trash", self._path(pid), "DS")

    def mark_deleted(self, pid: str) -> None:
        path = self._path(pid)  # mutt's maildir_trash, mbsync's copy of IMAP's \Deleted
        os.rename(path, path.with_name(f"{pid}:2,DST"))

    def delete(self, pid: str) -> None:
        self._path(pid).unlink()

    def archive(self, pid: str) -> None:
        self._into("Archive", self._path(pid), "DS")


class ImapUser(User):
    """Thunderbird and friends on IMAP: a save APPENDs a new UID and expunges the old one."""

    def __init__(self, dovecot: Dovecot, user: str) -> None:
        self.mailbox = imap.open_mailbox(imap_account(dovecot, user))
        self.client = dovecot.client(user)

    def _uid(self, pid: str) -> int:
        self.client.select_folder("Drafts")
        return imap.parse_provider_id(pid)[1]

    def _expunge(self, uid: int) -> None:
        self.client.add_flags([uid], [b"\\Deleted"])
        self.client.uid_expunge([uid])

    def flag(self, pid: str) -> None:
        uid = self._uid(pid)
        self.client.add_flags([uid], [b"\\Flagged"])
        self.client.remove_flags([uid], [b"\\Seen"])

    def save(self, pid: str, message: EmailMessage) -> None:
        uid = self._uid(pid)
        self.client.append("Drafts", bytes(message), flags=[b"\\Draft", b"\\Seen"])
        self._uid(pid)
        self._expunge(uid)

    def send(self, pid: str) -> None:
        uid = self._uid(pid)
        raw = self.client.fetch([uid], ["BODY.PEEK[]"])[uid][b"BODY[]"]
        self.client.append("Sent", raw, flags=[b"\\Seen"])
        self._uid(pid)
        self._expunge(uid)

    def send_as_new(self, pid: str, message: EmailMessage) -> None:
        uid = self._uid(pid)
        self.client.append("Sent", bytes(message), flags=[b"\\Seen"])
        self._uid(pid)
        self._expunge(uid)

    def trash(self, pid: str) -> None:
        self.client.move([self._uid(pid)], "Trash")

    def mark_deleted(self, pid: str) -> None:
        self.client.add_flags([self._uid(pid)], [b"\\Deleted"])  # not expunged yet

    def delete(self, pid: str) -> None:
        self._expunge(self._uid(pid))

    def archive(self, pid: str) -> None:
        self.client.create_folder("Archive")
        self.client.move([self._uid(pid)], "Archive")

    def close(self) -> None:
        self.client.logout()
        self.mailbox.close()


class GmailUser(User):
    """The Gmail web app: the draft id stays, every save is a new message."""

    def __init__(self, emulator: GoogleEmulator, tmp: Path) -> None:
        self.emulator = emulator
        secrets.store("personal", gmail.KEYRING_PURPOSE, "refresh-1")
        account = make_account(emulator, tmp)
        self.mailbox = gmail.GmailMailbox(account, fast_api(account, "gmail"))

    @staticmethod
    def _draft(pid: str) -> str:
        return pid.split(":")[0]

    def flag(self, pid: str) -> None:
        self.emulator.user_labels_draft(self._draft(pid), "STARRED")

    def save(self, pid: str, message: EmailMessage) -> None:
        self.emulator.user_edits_draft(self._draft(pid), bytes(message))

    def save_copy(self, pid: str, message: EmailMessage) -> None:
        self.emulator.user_saves_over_imap(self._draft(pid), bytes(message))

    def send(self, pid: str) -> None:
        self.emulator.user_sends_draft(self._draft(pid))

    def send_copy(self, pid: str, message: EmailMessage) -> None:
        self.emulator.user_sends_as_new(self._draft(pid), str(message["Message-ID"]))

    def send_as_new(self, pid: str, message: EmailMessage) -> None:
        self.emulator.user_sends_as_new(self._draft(pid), str(message["Message-ID"]))

    def trash(self, pid: str) -> None:
        self.emulator.user_trashes_draft(self._draft(pid))

    def delete(self, pid: str) -> None:
        self.emulator.user_deletes_draft(self._draft(pid))

    def archive(self, pid: str) -> None:
        raise AssertionError("a Gmail draft cannot leave Drafts unsent but to the Trash")


class GraphUser(User):
    """Outlook on Exchange: every change is a PATCH of the same item, with a new changeKey."""

    def __init__(self, emulator: GraphEmulator) -> None:
        self.emulator = emulator
        account = sign_in(emulator)
        retry = outlook.RetryPolicy(base=0.01, cap=0.05, sleep=Sleeps())
        self.mailbox = outlook.open_mailbox(account, http_client=emulator.http_client(),
                                            retry=retry)  # fmt: skip

    def flag(self, pid: str) -> None:
        self.emulator.user_marks(pid, isRead=False, flag={"flagStatus": "flagged"})

    def save(self, pid: str, message: EmailMessage) -> None:
        to, cc = ([a.addr_spec for a in message[field].addresses] if message[field] else []
                  for field in ("To", "Cc"))  # fmt: skip
        self.emulator.user_edits(pid, body=text_of(message), subject=str(message["Subject"]),
                                 to=to, cc=cc)  # fmt: skip

    def save_copy(self, pid: str, message: EmailMessage) -> None:
        self.emulator.user_saves_copy(pid)

    def send(self, pid: str) -> None:
        self.emulator.user_sends(pid)

    def send_copy(self, pid: str, message: EmailMessage) -> None:
        self.send_as_new(pid, message)  # the same, under our Message-ID

    def send_as_new(self, pid: str, message: EmailMessage) -> None:
        self.emulator.user_deletes(pid, for_good=True)
        self.emulator.deliver_raw(bytes(message), folder="sentitems")

    def trash(self, pid: str) -> None:
        self.emulator.user_deletes(pid)

    def delete(self, pid: str) -> None:
        self.emulator.user_deletes(pid, for_good=True)

    def archive(self, pid: str) -> None:
        self.emulator.user_moves(pid, "archive")


# --- the actions and what each must come to ---------------------------------------------------


def untouched(user: User, pid: str, ours: EmailMessage) -> None:
    pass


def resaved(user: User, pid: str, ours: EmailMessage) -> None:
    user.save(pid, ours)


def body_edited(user: User, pid: str, ours: EmailMessage) -> None:
    user.save(pid, with_body(ours, text_of(ours) + "\nP.S. My portfolio is at example.org.\n"))


def subject_edited(user: User, pid: str, ours: EmailMessage) -> None:
    user.save(pid, with_header(ours, "Subject", "Thanks again for today"))


def recipient_added(user: User, pid: str, ours: EmailMessage) -> None:
    user.save(pid, with_header(ours, "To", f"{ours['To']}, Sam Ortiz <{OTHER}>"))


def cc_added(user: User, pid: str, ours: EmailMessage) -> None:
    user.save(pid, with_header(ours, "Cc", f"Sam Ortiz <{OTHER}>"))


def sent_as_new(user: User, pid: str, ours: EmailMessage) -> None:
    user.send_as_new(pid, with_header(ours, "Message-ID", make_msgid(domain="client.example")))


Action = Callable[[User, str, EmailMessage], None]

# action -> (what the core decides, where `locate` finds the Message-ID afterwards)
ACTIONS: dict[str, tuple[Action, Outcome, Place | None]] = {
    "untouched": (untouched, Outcome.OURS, Place.DRAFTS),
    "flagged": (lambda u, p, m: u.flag(p), Outcome.OURS, Place.DRAFTS),
    "resaved": (resaved, Outcome.OURS, Place.DRAFTS),
    "resaved-as-copy": (lambda u, p, m: u.save_copy(p, m), Outcome.OURS, Place.DRAFTS),
    "resaved-flowed": (lambda u, p, m: u.save_copy(p, flowed(m)), Outcome.OURS, Place.DRAFTS),
    "body-edited": (body_edited, Outcome.EDITED, Place.DRAFTS),
    "subject-edited": (subject_edited, Outcome.EDITED, Place.DRAFTS),
    "recipient-added": (recipient_added, Outcome.EDITED, Place.DRAFTS),
    "cc-added": (cc_added, Outcome.EDITED, Place.DRAFTS),
    "sent": (lambda u, p, m: u.send(p), Outcome.SENT, Place.SENT),
    "sent-by-program": (lambda u, p, m: u.send_copy(p, m), Outcome.SENT, Place.SENT),
    "sent-as-new": (sent_as_new, Outcome.SENT, None),
    "trashed": (lambda u, p, m: u.trash(p), Outcome.DELETED, Place.TRASH),
    "deleted": (lambda u, p, m: u.delete(p), Outcome.DELETED, None),
    "marked-deleted": (lambda u, p, m: u.mark_deleted(p), Outcome.DELETED, None),
    "archived": (lambda u, p, m: u.archive(p), Outcome.DELETED, None),
}
# A Gmail draft has no folder to be moved to: it is in Drafts until sent, trashed or deleted.
# What Exchange keeps of a flowed text saved over its IMAP (it stores the body it parsed, not
# the MIME text) is not emulated.
# Gmail's IMAP expunges a message marked deleted at once (its default, Auto-Expunge); what
# Exchange shows of a message its IMAP marked deleted is not emulated.
NOT_THERE = {("gmail", "archived"), ("graph", "resaved-flowed"),
             ("gmail", "marked-deleted"), ("graph", "marked-deleted")}  # fmt: skip


@dataclass
class Pass:
    """The engine's look at one waiting draft: mail first (it moves Gmail's history on), then
    the markers of the waiting drafts, then a full observation when the marker moved."""

    user: User
    since: datetime
    cursor: str | None = None

    def __call__(self, row: DraftRow, hint: SentHint) -> tuple[Outcome, DraftRow, bool]:
        """The outcome, the row as the engine keeps it, and whether the draft was read."""
        box = self.user.mailbox
        self.cursor = box.messages(self.cursor, self.since).cursor
        assert row.provider_id is not None
        known = {row.provider_id: row.version} if row.version else {}
        versions = box.versions(known) if known else {}
        if drafts.unchanged(row, versions.get(row.provider_id)):
            return Outcome.OURS, row, False
        seen = box.observe(row.provider_id, row.message_id, hint)
        result = drafts.outcome(row, seen, hint)
        if result in (Outcome.OURS, Outcome.EDITED):
            row = replace(row, provider_id=seen.provider_id or row.provider_id,
                          version=seen.version)  # fmt: skip
        return result, row, True


def run_action(user: User, action: str) -> tuple[Outcome, Place | None, bool]:
    """Make the draft, let a pass settle it, do ``action``, and look again."""
    draft = our_draft()
    made = datetime.now(UTC)
    pid = user.mailbox.create_draft(draft)
    row = DraftRow(
        id=1, interview_id=1, kind=draft.kind, seq=1, recipient=draft.to,
        state=DraftState.CREATED, due=made, message_id=draft.message_id, provider_id=pid,
        created_at=made, content_hash=draft.content_hash,
    )  # fmt: skip
    hint = SentHint(draft.to.email, draft.subject, made)
    look = Pass(user, made - timedelta(days=1))
    first, row, _ = look(row, hint)
    assert first is Outcome.OURS, "our own draft, just made, is not ours"
    # A second pass with nothing done reads nothing where the mailbox has markers.
    again, row, _ = look(row, hint)
    assert again is Outcome.OURS
    do, _, _ = ACTIONS[action]
    assert row.provider_id is not None
    do(user, row.provider_id, parsed(draft.raw))
    result, row, read = look(row, hint)
    if result in (Outcome.OURS, Outcome.EDITED):
        # Settled: what was just read is not read again at the next pass.
        settled, _, read_again = look(row, hint)
        assert settled is Outcome.OURS or result is Outcome.EDITED
        assert not read_again or not row.version, "the marker of what was read moved by itself"
    found = user.mailbox.locate(draft.message_id)
    return result, (found.place if found else None), read


# --- the four mailboxes ------------------------------------------------------------------------


@pytest.fixture
def maildir_user(tmp_path: Path) -> User:
    root = tmp_path / "Maildir"
    stdlib_mailbox.Maildir(root, create=True)
    return MaildirUser(root)


@pytest.fixture
def imap_user(dovecot: Dovecot) -> Iterator[User]:
    user = ImapUser(dovecot, dovecot.new_user("drafts"))
    yield user
    user.close()


@pytest.fixture
def gmail_user(tmp_path: Path) -> Iterator[User]:
    with running("jordan.lee@gmail.com") as emulator:
        yield GmailUser(emulator, tmp_path)
        assert emulator.violations == [], "requests the real API would refuse"


@pytest.fixture
def graph_user() -> Iterator[User]:
    emulator = GraphEmulator(user="jordan.lee@gmail.com").start()
    try:
        yield GraphUser(emulator)
    finally:
        emulator.stop()
    assert emulator.violations == [], "requests the real Graph would reject"


BOXES = ("maildir", "imap", "gmail", "graph")


@pytest.mark.server
@pytest.mark.parametrize("action", ACTIONS)
def test_every_mailbox_decides_alike(action: str, request: pytest.FixtureRequest) -> None:
    _, outcome, place = ACTIONS[action]
    found: dict[str, Any] = {}
    for box in BOXES:
        if (box, action) in NOT_THERE:
            continue
        user: User = request.getfixturevalue(f"{box}_user")
        found[box] = run_action(user, action)
    decided = {box: (result, where) for box, (result, where, _) in found.items()}
    assert decided == {box: (outcome, place) for box in found}, f"{action}: {decided}"
    if action == "untouched":
        # The marker spares reading an untouched draft on every mailbox that keeps one.
        assert {box: read for box, (_, _, read) in found.items()} == dict.fromkeys(found, False)
    elif outcome is not Outcome.OURS:
        assert all(read for _, _, read in found.values()), "a marker hid what the user did"
