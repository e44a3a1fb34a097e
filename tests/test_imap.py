"""providers.imap against a real Dovecot on 127.0.0.1 (tests.servers), plus its pure helpers."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

import pytest
from imapclient import IMAPClient
from mailbridge_providers import imap
from mailbridge_providers.imap import ImapSettings

from mailbridge import compose, drafts
from mailbridge.adapters import FolderMissing, ProviderError
from mailbridge.model import DraftKind, DraftMessage, Folder, Person, Presence, SentHint
from mailbridge.settings import AccountSettings
from tests.servers import MAIL_UID, PASSWORD, Dovecot

pytestmark = pytest.mark.server

USER_ADDRESS = "jordan@example.org"
LEAD = Person("avery.chen@acme.example", "Avery Chen")


def account_for(server: Dovecot, user: str, **overrides: object) -> AccountSettings:
    settings = ImapSettings(
        host="127.0.0.1",
        port=server.port,
        security="plain",
        username=user,
        password_command=f"echo {PASSWORD}",
        timeout=10,
    )
    for key, value in overrides.items():
        settings = type(settings)(**{**settings.__dict__, key: value})
    return AccountSettings(name="work", provider="imap", address=user, tables={"imap": settings})


def make_draft(
    body: str = "Thank you for your time today.",
    *,
    to: Person = LEAD,
    subject: str = "Thank you",
    in_reply_to: str = "",
) -> DraftMessage:
    msg = EmailMessage()
    message_id = make_msgid(domain="mailbridge.invalid")
    msg["Message-ID"] = message_id
    msg["From"] = f"Jordan Lee <{USER_ADDRESS}>"
    msg["To"] = f"{to.name} <{to.email}>"
    msg["Subject"] = subject
    msg["Date"] = format_datetime(datetime.now(UTC))
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
        msg["References"] = in_reply_to
    msg.set_content(body)
    return DraftMessage(
        kind=DraftKind.FOLLOW_UP if in_reply_to else DraftKind.THANK_YOU,
        message_id=message_id,
        sender=Person(USER_ADDRESS, "Jordan Lee"),
        to=to,
        subject=subject,
        body=body,
        raw=bytes(msg),
        in_reply_to=in_reply_to,
        references=(in_reply_to,) if in_reply_to else (),
    )


def mail(
    subject: str,
    *,
    sender: str = "avery.chen@acme.example",
    to: str = USER_ADDRESS,
    in_reply_to: str = "",
    body: str = "Hello",
    message_id: str | None = None,
    extra: dict[str, str] | None = None,
) -> bytes:
    msg = EmailMessage()
    for name, value in (extra or {}).items():
        msg[name] = value
    msg["Message-ID"] = message_id or make_msgid(domain="acme.example")
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
        msg["References"] = in_reply_to
    msg.set_content(body)
    return bytes(msg)


@pytest.fixture
def user(dovecot: Dovecot) -> str:
    return dovecot.new_user()


@pytest.fixture
def other(dovecot: Dovecot, user: str) -> Iterator[IMAPClient]:
    """The user's own mail program: a second, independent connection."""
    client = dovecot.client(user)
    yield client
    client.logout()


@pytest.fixture
def mailbox(dovecot: Dovecot, user: str) -> Iterator[imap.ImapMailbox]:
    box = imap.open_mailbox(account_for(dovecot, user))
    yield box
    box.close()


def uids_in(client: IMAPClient, folder: str) -> list[int]:
    client.select_folder(folder)
    return sorted(client.search(["NOT", "DELETED"]))


# --- pure helpers ----------------------------------------------------------------------


LISTING_DOVECOT = [((b"\\HasNoChildren", b"\\Drafts"), "Drafts"), ((), "INBOX")]
LISTING_GERMAN = [((), "INBOX"), ((), "Entwürfe"), ((), "Gesendet"), ((), "Papierkorb")]
LISTING_COURIER = [((), "INBOX"), ((), "INBOX.Drafts"), ((), "INBOX.Sent Items")]
LISTING_GMAIL = [((b"\\Drafts",), "[Gmail]/Brouillons"), ((b"\\Sent",), "[Gmail]/Messages envoyés")]


@pytest.mark.parametrize(
    ("listing", "flag", "names", "override", "expected"),
    [
        (LISTING_DOVECOT, imap.DRAFTS, imap.DRAFTS_NAMES, None, "Drafts"),
        (LISTING_GERMAN, imap.DRAFTS, imap.DRAFTS_NAMES, None, "Entwürfe"),
        (LISTING_GERMAN, imap.SENT, imap.SENT_NAMES, None, "Gesendet"),
        (LISTING_GERMAN, imap.TRASH, imap.TRASH_NAMES, None, "Papierkorb"),
        (LISTING_COURIER, imap.DRAFTS, imap.DRAFTS_NAMES, None, "INBOX.Drafts"),
        (LISTING_COURIER, imap.SENT, imap.SENT_NAMES, None, "INBOX.Sent Items"),
        (LISTING_GMAIL, imap.DRAFTS, imap.DRAFTS_NAMES, None, "[Gmail]/Brouillons"),
        (LISTING_GMAIL, imap.TRASH, imap.TRASH_NAMES, None, None),
        (LISTING_GERMAN, imap.DRAFTS, imap.DRAFTS_NAMES, "Gesendet", "Gesendet"),
        (LISTING_GERMAN, imap.DRAFTS, imap.DRAFTS_NAMES, "Nope", None),
        ([((), "INBOX"), ((), "drafts")], imap.DRAFTS, imap.DRAFTS_NAMES, None, "drafts"),
    ],
)
def test_pick_folder(listing, flag, names, override, expected) -> None:
    assert imap.pick_folder(listing, flag, names, override) == expected


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (b"[APPENDUID 1795384470 7] Append completed.", (1795384470, 7)),
        (b"Append completed.", None),
        ("[appenduid 3 12] ok", (3, 12)),
    ],
)
def test_appenduid(response, expected) -> None:
    assert imap.appenduid(response) == expected


DOVECOT_PERMANENT = (b"\\Answered", b"\\Flagged", b"\\Deleted", b"\\Seen", b"\\Draft", b"\\*")
WITH_KEYWORD = (b"\\Draft", b"\\Seen", b"$mailbridge")
WITHOUT_KEYWORD = (b"\\Draft", b"\\Seen")


@pytest.mark.parametrize(
    ("permanent", "flags"),
    [
        (DOVECOT_PERMANENT, WITH_KEYWORD),  # new keywords allowed
        ((b"\\Seen", b"\\Draft", b"\\Deleted"), WITHOUT_KEYWORD),  # fixed flags only
        ((b"\\Seen", b"\\Draft", b"$MailBridge"), WITH_KEYWORD),  # the keyword already known
        ((b"\\Seen", b"\\Draft", b"$Junk"), WITHOUT_KEYWORD),  # other keywords only
        ((), WITHOUT_KEYWORD),  # read-only or EXAMINE: nothing kept
        (None, WITHOUT_KEYWORD),  # the server said nothing
    ],
)
def test_draft_flags_follow_permanentflags(permanent, flags) -> None:
    assert imap.draft_flags(permanent) == flags


@pytest.mark.parametrize("cursor", [None, "", "not json", '{"folders": 3}', '{"v": 1}'])
def test_unreadable_cursor_means_resync(cursor) -> None:
    assert imap.load_cursor(cursor) == {}


def test_cursor_round_trip() -> None:
    states = {"INBOX": imap.FolderState(5, 10, 99), "Sent": imap.FolderState(6, 1)}
    assert imap.load_cursor(imap.dump_cursor(states)) == states


def test_plain_refused_beyond_loopback() -> None:
    account = AccountSettings(
        name="work",
        provider="imap",
        address="a@example.org",
        tables={"imap": ImapSettings(host="imap.example.org", security="plain",
                                     password_command="echo x")},
    )
    with pytest.raises(ProviderError, match="only allowed"):
        imap.connect(account)


def test_bad_password_is_auth_error(dovecot_server: Dovecot) -> None:
    # A server of its own: Dovecot delays later logins from an address that failed one.
    from mailbridge.adapters import AuthError

    user = dovecot_server.new_user()
    account = account_for(dovecot_server, user, password_command="echo wrong")
    with pytest.raises(AuthError, match="mailbridge auth work"):
        imap.connect(account)


# --- drafts ----------------------------------------------------------------------------


def test_draft_visible_to_another_client(mailbox, other) -> None:
    draft = make_draft()
    provider_id = mailbox.create_draft(draft)
    validity, uid = imap.parse_provider_id(provider_id)

    info = other.select_folder("Drafts")
    assert info[b"UIDVALIDITY"] == validity
    fetched = other.fetch([uid], ["FLAGS", "BODY.PEEK[]"])[uid]
    assert b"\\Draft" in fetched[b"FLAGS"]
    assert b"\\Seen" in fetched[b"FLAGS"]
    assert b"$mailbridge" in fetched[b"FLAGS"]  # Dovecot keeps new keywords (\\*)
    assert other.search(["KEYWORD", "$mailbridge"]) == [uid]  # the user's program can filter
    assert draft.message_id.encode() in fetched[b"BODY[]"]
    assert b"To: Avery Chen <avery.chen@acme.example>" in fetched[b"BODY[]"]
    assert uids_in(other, "INBOX") == []  # nothing landed anywhere else

    assert mailbox.find_draft(draft.message_id) == provider_id
    assert mailbox.find_draft("<nobody@mailbridge.invalid>") is None


def test_find_draft_wants_the_whole_message_id(mailbox) -> None:
    draft = make_draft()
    mailbox.create_draft(draft)
    # A substring of a real Message-ID matches SEARCH HEADER, but is not that draft.
    assert mailbox.find_draft(draft.message_id[:-8] + ">") is None


def test_observe_present_and_edited_by_another_client(mailbox, other) -> None:
    draft = make_draft()
    provider_id = mailbox.create_draft(draft)
    first = mailbox.observe(provider_id, draft.message_id)
    assert first.presence is Presence.PRESENT
    assert first.provider_id is None
    assert first.content_hash == compose.fingerprint(draft.subject, [LEAD.email], draft.body)
    assert mailbox.observe(provider_id, draft.message_id) == first  # stable

    # The user's client saves an edit: a new message, same Message-ID, the old one removed.
    _, uid = imap.parse_provider_id(provider_id)
    edited = draft.raw.replace(b"Thank you for your time today.", b"Thanks a lot, Avery!")
    other.append("Drafts", edited, flags=(b"\\Draft", b"\\Seen"))
    other.select_folder("Drafts")
    other.add_flags([uid], [b"\\Deleted"])
    other.uid_expunge([uid])

    second = mailbox.observe(provider_id, draft.message_id)
    assert second.presence is Presence.PRESENT
    assert second.provider_id not in (None, provider_id)
    assert second.content_hash != first.content_hash
    assert mailbox.find_draft(draft.message_id) == second.provider_id


def _remove_from_drafts(other: IMAPClient, provider_id: str) -> None:
    _, uid = imap.parse_provider_id(provider_id)
    other.select_folder("Drafts")
    other.add_flags([uid], [b"\\Deleted"])
    other.uid_expunge([uid])


def test_observe_sent_same_message_id(mailbox, other) -> None:
    draft = make_draft()
    provider_id = mailbox.create_draft(draft)
    other.append("Sent", draft.raw, flags=(b"\\Seen",))
    _remove_from_drafts(other, provider_id)
    assert mailbox.observe(provider_id, draft.message_id).presence is Presence.SENT


def hint_for(draft: DraftMessage, since: datetime | None = None) -> SentHint:
    return SentHint(
        LEAD.email,
        draft.subject,
        since or datetime.now(UTC) - timedelta(minutes=5),
        draft.references,
    )


def test_observe_sent_with_new_message_id_in_same_thread(dovecot, user, mailbox, other) -> None:
    thread = "<offer-thread@acme.example>"
    draft = make_draft("Following up on my interview.", in_reply_to=thread, subject="Checking in")
    provider_id = mailbox.create_draft(draft)
    # The user's program sends it under a Message-ID of its own, with a subject of its own.
    other.append("Sent", mail("Re: Interview", sender=USER_ADDRESS, to=LEAD.email,
                              in_reply_to=thread))  # fmt: skip
    _remove_from_drafts(other, provider_id)
    # A new adapter, as after a restart: nothing about the draft is remembered in memory.
    fresh = imap.open_mailbox(account_for(dovecot, user))
    try:
        hint = hint_for(draft)
        assert drafts.presence(fresh.observe(provider_id, draft.message_id, hint), hint) is (
            Presence.SENT
        )
        assert fresh.observe(provider_id, draft.message_id).presence is Presence.GONE  # no hint
    finally:
        fresh.close()


def test_observe_sent_thank_you_with_new_message_id_after_restart(dovecot, user, mailbox, other):
    draft = make_draft(subject="Thank you for today")
    provider_id = mailbox.create_draft(draft)
    mailbox.close()
    copy = draft.raw.replace(draft.message_id.encode(), b"<own-id@client.example>")
    other.append("Sent", copy, flags=(b"\\Seen",))
    _remove_from_drafts(other, provider_id)

    fresh = imap.open_mailbox(account_for(dovecot, user))
    try:
        seen = fresh.observe(provider_id, draft.message_id, hint_for(draft))
    finally:
        fresh.close()
    assert seen.presence is Presence.GONE  # by its ids: the core recognises the copy
    assert drafts.presence(seen, hint_for(draft)) is Presence.SENT


def test_observe_gone_when_deleted_and_not_sent(mailbox, other) -> None:
    thread = "<thread@acme.example>"
    draft = make_draft(in_reply_to=thread, subject="Thank you")
    provider_id = mailbox.create_draft(draft)
    # Mail to someone else in the same thread, with the same subject, is not this draft;
    # nor is mail to the same person about something else.
    other.append("Sent", mail("Re: Thank you", sender=USER_ADDRESS, to="hr@acme.example",
                              in_reply_to=thread))  # fmt: skip
    other.append("Sent", mail("Another matter", sender=USER_ADDRESS, to=LEAD.email))
    _remove_from_drafts(other, provider_id)
    seen = mailbox.observe(provider_id, draft.message_id, hint_for(draft))
    assert len(seen.sent_candidates) == 1  # reported (to the lead), and not taken for the draft
    assert drafts.presence(seen, hint_for(draft)) is Presence.GONE


def test_observe_gone_when_the_only_match_predates_the_draft(mailbox, other) -> None:
    draft = make_draft(subject="Thank you")
    provider_id = mailbox.create_draft(draft)
    earlier = datetime.now(UTC) - timedelta(days=3)
    old = mail("Thank you", sender=USER_ADDRESS, to=LEAD.email,
               extra={"Date": format_datetime(earlier)})  # fmt: skip
    other.append("Sent", old, msg_time=earlier)  # stored days ago: outside SINCE
    other.append("Sent", old)  # stored now (a copy moved in later): its Date tells
    _remove_from_drafts(other, provider_id)
    since = datetime.now(UTC) - timedelta(minutes=1)
    hint = hint_for(draft, since)
    assert drafts.presence(mailbox.observe(provider_id, draft.message_id, hint), hint) is (
        Presence.GONE
    )


def test_retract_moves_to_trash_and_touches_nothing_else(mailbox, other) -> None:
    ours = make_draft()
    theirs = make_draft("The user's own unrelated draft")
    provider_id = mailbox.create_draft(ours)
    other.append("Drafts", theirs.raw, flags=(b"\\Draft",))
    # The user flagged something \Deleted without expunging: a plain EXPUNGE would remove it.
    pending = make_draft("flagged, not expunged")
    other.append("Drafts", pending.raw, flags=(b"\\Draft", b"\\Deleted"))
    other.select_folder("Drafts")
    before = sorted(other.search(["ALL"]))

    mailbox.retract(provider_id)
    mailbox.retract(provider_id)  # twice is harmless

    _, uid = imap.parse_provider_id(provider_id)
    other.select_folder("Drafts")
    assert sorted(other.search(["ALL"])) == [u for u in before if u != uid]
    other.select_folder("Trash")
    trashed = other.fetch(other.search(["ALL"]), ["BODY.PEEK[HEADER]"])
    assert [ours.message_id.encode() in d[b"BODY[HEADER]"] for d in trashed.values()] == [True]
    assert mailbox.observe(provider_id, ours.message_id).presence is Presence.GONE


def test_update_draft_replaces_only_the_old_uid(mailbox, other) -> None:
    draft = make_draft()
    provider_id = mailbox.create_draft(draft)
    neighbour = make_draft("another draft")
    other.append("Drafts", neighbour.raw, flags=(b"\\Draft",))
    changed = make_draft("New notes were added.")
    changed = DraftMessage(**{**changed.__dict__, "message_id": draft.message_id,
                              "raw": changed.raw.replace(changed.message_id.encode(),
                                                         draft.message_id.encode())})  # fmt: skip

    new_id = mailbox.update_draft(provider_id, changed)

    assert new_id != provider_id
    assert mailbox.find_draft(draft.message_id) == new_id
    assert mailbox.find_draft(neighbour.message_id) is not None
    assert len(uids_in(other, "Drafts")) == 2
    assert uids_in(other, "Trash") == []


def test_update_after_an_interrupted_update_leaves_one_copy(mailbox, other) -> None:
    """A crash between APPEND and removal left a second copy; the next update removes it,
    but never a copy the user changed."""
    from mailbridge import compose

    draft = make_draft()
    provider_id = mailbox.create_draft(draft)
    changed = make_draft("New notes were added.")
    raw = changed.raw.replace(changed.message_id.encode(), draft.message_id.encode())
    changed = DraftMessage(**{**changed.__dict__, "message_id": draft.message_id, "raw": raw,
                              "content_hash": compose.read_draft(raw)[0]})  # fmt: skip
    mailbox.create_draft(changed)  # the orphan of the interrupted update
    edited = raw.replace(b"New notes were added.", b"My own words.")
    other.append("Drafts", edited, flags=(b"\\Draft",))  # the user's copy, same Message-ID

    new_id = mailbox.update_draft(provider_id, changed)

    left = uids_in(other, "Drafts")
    assert len(left) == 2  # ours, once, and the user's edit
    assert int(new_id.rsplit(":", 1)[1]) in left
    bodies = sorted(compose.read_draft(other.fetch([u], ["RFC822"])[u][b"RFC822"])[1].strip()
                    for u in left)
    assert bodies == ["My own words.", "New notes were added."]


def test_missing_drafts_folder(dovecot, user) -> None:
    box = imap.open_mailbox(account_for(dovecot, user, drafts_folder="Kladde"))
    with pytest.raises(FolderMissing, match="Kladde"):
        box.create_draft(make_draft())
    box.close()


# --- interrupted APPEND ----------------------------------------------------------------


@pytest.mark.parametrize("landed", [True, False])
def test_append_cut_by_server_crash_leaves_one_draft(dovecot_server: Dovecot, landed) -> None:
    user = dovecot_server.new_user()
    account = account_for(dovecot_server, user)

    class CrashingClient(IMAPClient):
        def append(self, folder, msg, flags=(), msg_time=None):  # type: ignore[no-untyped-def]
            if landed:
                super().append(folder, msg, flags, msg_time)
            dovecot_server.kill()  # the reply is lost either way
            raise OSError("connection reset by peer")

    def crashing() -> IMAPClient:
        client = CrashingClient("127.0.0.1", port=dovecot_server.port, ssl=False, timeout=10)
        client.login(user, PASSWORD)
        return client

    draft = make_draft()
    box = imap.ImapMailbox(account, connector=crashing)
    with pytest.raises(ProviderError, match="connection lost"):
        box.create_draft(draft)
    dovecot_server.start()

    # The engine's repair step: look the Message-ID up before creating again.
    retry = imap.open_mailbox(account)
    found = retry.find_draft(draft.message_id)
    assert (found is not None) is landed
    if found is None:
        retry.create_draft(draft)
    retry.close()

    check = dovecot_server.client(user)
    check.select_folder("Drafts")
    assert len(check.search(["HEADER", "Message-ID", draft.message_id])) == 1
    check.logout()


def test_mailbox_reconnects_after_server_restart(dovecot_server: Dovecot) -> None:
    user = dovecot_server.new_user()
    box = imap.open_mailbox(account_for(dovecot_server, user))
    first = make_draft()
    box.create_draft(first)
    dovecot_server.restart()
    with pytest.raises(ProviderError):
        box.find_draft(first.message_id)  # the old connection is dead: reported, dropped
    assert box.find_draft(first.message_id) is not None  # and the next call reconnects
    box.close()


# --- reading mail ----------------------------------------------------------------------


def test_messages_first_pass_by_search_then_incremental(mailbox, other) -> None:
    now = datetime.now(UTC)
    old = mail("Old newsletter")
    other.append("INBOX", old, msg_time=now - timedelta(days=40))
    other.append("INBOX", mail("Interview next week", body="See you Tuesday."))
    other.append("Sent", mail("Thanks", sender=USER_ADDRESS, to="avery.chen@acme.example"))

    first = mailbox.messages(None, now - timedelta(days=7))
    assert sorted((m.folder, m.subject) for m in first.messages) == [
        (Folder.INBOX, "Interview next week"),
        (Folder.SENT, "Thanks"),
    ]
    inbound = next(m for m in first.messages if m.folder is Folder.INBOX)
    assert inbound.sender.email == "avery.chen@acme.example"
    assert inbound.excerpt.startswith("See you Tuesday.")

    assert mailbox.messages(first.cursor, now).messages == ()

    reply_id = make_msgid(domain="acme.example")
    other.append("INBOX", mail("Re: Interview", in_reply_to="<x@y>", message_id=reply_id))
    second = mailbox.messages(first.cursor, now)
    assert [m.message_id for m in second.messages] == [reply_id]
    assert second.messages[0].in_reply_to == "<x@y>"
    assert mailbox.messages(second.cursor, now).messages == ()


def test_a_reply_in_the_archive_folder_is_read_with_an_id_of_its_own(mailbox, other) -> None:
    """A reply archived before the pass is still a reply. The Archive folder is found by its
    name here (Dovecot's config gives it no SPECIAL-USE), made after the mailbox first read
    mail: the next full listing looks for it. Its messages' ids name the folder, so they can
    never be taken for the inbox's (each folder numbers its UIDs from 1)."""
    since = datetime.now(UTC) - timedelta(days=1)
    first = mailbox.messages(None, since)
    other.create_folder("Archive")
    reply_id = make_msgid(domain="acme.example")
    other.append("Archive", mail("Re: Thank you", message_id=reply_id))
    other.append("INBOX", mail("Hello"))
    full = mailbox.messages(None, since)
    found = {m.message_id: m for m in full.messages}
    assert found[reply_id].folder is Folder.INBOX
    assert found[reply_id].provider_id.startswith("Archive/")
    inbox = next(m for m in full.messages if m.subject == "Hello")
    assert inbox.provider_id.split(":")[1] == found[reply_id].provider_id.split(":")[1] == "1"
    assert mailbox.messages(full.cursor, since).messages == ()
    other.append("Archive", mail("Re: Thank you again"))
    later = mailbox.messages(full.cursor, since)
    assert [m.subject for m in later.messages] == ["Re: Thank you again"]
    assert first.messages == ()


def test_excerpt_from_nested_multipart(mailbox, other) -> None:
    msg = EmailMessage()
    msg["From"] = "avery.chen@acme.example"
    msg["To"] = USER_ADDRESS
    msg["Subject"] = "Automatic reply: Thank you"
    msg["Auto-Submitted"] = "auto-replied"
    msg.set_content("I am out of the office until 12 May 2031.\n" * 40)
    msg.add_alternative("<p>I am out of the office until 12 May 2031.</p>", subtype="html")
    msg.add_attachment(b"x" * 5000, maintype="application", subtype="pdf", filename="cv.pdf")
    other.append("INBOX", bytes(msg))

    batch = mailbox.messages(None, datetime.now(UTC) - timedelta(days=1))
    (found,) = batch.messages
    assert found.excerpt.startswith("I am out of the office until 12 May 2031.")
    assert len(found.excerpt) <= 600
    assert found.header("auto-submitted") == "auto-replied"
    assert "application/pdf" in found.part_types


def test_uidvalidity_change_resyncs(dovecot, mailbox, other, user) -> None:
    since = datetime.now(UTC) - timedelta(days=1)
    other.append("INBOX", mail("Before"))
    first = mailbox.messages(None, since)
    assert [m.subject for m in first.messages] == ["Before"]
    other.append("INBOX", mail("After"))
    other.select_folder("INBOX")
    other.unselect_folder()
    dovecot.doveadm("mailbox", "update", "-u", user, "--uid-validity", "12345", "INBOX")

    again = mailbox.messages(first.cursor, since)
    assert sorted(m.subject for m in again.messages) == ["After", "Before"]
    assert all(m.provider_id.startswith("12345:") for m in again.messages)
    assert mailbox.messages(again.cursor, since).messages == ()


class Backup:
    """A copy of the user's whole Maildir on the server, put back the way a file-level restore
    does: UIDVALIDITY kept, UIDNEXT back to what it was, so new mail reuses UIDs."""

    def __init__(self, dovecot: Dovecot, user: str) -> None:
        self.dovecot, self.user = dovecot, user
        self.home = dovecot.dir / "mail" / user
        self.copy = self.home.parent / (user + ".backup")
        shutil.copytree(self.home, self.copy, symlinks=True)

    def restore(self, mailbox: imap.ImapMailbox) -> None:
        mailbox.close()  # restored with no session open
        deadline = time.monotonic() + 10
        while self.dovecot.connections(self.user) and time.monotonic() < deadline:
            time.sleep(0.05)
        shutil.rmtree(self.home)
        shutil.copytree(self.copy, self.home, symlinks=True)
        for path in (self.home, *self.home.rglob("*")):
            os.chown(path, MAIL_UID, MAIL_UID)  # as the backup tool keeps them


def test_a_folder_restored_from_a_backup_is_read_again(dovecot, mailbox, user) -> None:
    """New mail after the restore takes a UID the cursor had passed: it is read all the same."""
    since = datetime.now(UTC) - timedelta(days=1)
    with dovecot.client(user) as program:
        program.append("INBOX", mail("Before"))
    first = mailbox.messages(None, since)
    backup = Backup(dovecot, user)
    with dovecot.client(user) as program:
        program.append("INBOX", mail("Lost with the restore"))
        program.append("INBOX", mail("Also lost"))
    second = mailbox.messages(first.cursor, since)
    assert len(second.messages) == 2
    backup.restore(mailbox)
    with dovecot.client(user) as program:
        program.append("INBOX", mail("After the restore"))

    again = mailbox.messages(second.cursor, since)
    assert sorted(m.subject for m in again.messages) == ["After the restore", "Before"]
    assert mailbox.messages(again.cursor, since).messages == ()


def test_a_draft_lost_with_a_restore_is_gone_though_its_uid_holds_another(
    dovecot, mailbox, user
) -> None:
    """After the restore the user's own new draft takes our draft's UID: that message is not
    ours (its Message-ID says so), so our draft is gone, not "edited by the user"."""
    ours = make_draft()
    with dovecot.client(user) as program:
        program.select_folder("Drafts")  # created, so the backup holds the empty folder
    backup = Backup(dovecot, user)
    provider_id = mailbox.create_draft(ours)
    assert mailbox.observe(provider_id, ours.message_id).presence is Presence.PRESENT
    backup.restore(mailbox)
    theirs = make_draft("Dear Sam, about Saturday.", subject="Saturday")
    with dovecot.client(user) as program:
        program.append("Drafts", theirs.raw, flags=(b"\\Draft",))
        program.select_folder("Drafts")
        assert program.search() == [imap.parse_provider_id(provider_id)[1]]  # the same UID

    assert mailbox.observe(provider_id, ours.message_id).presence is Presence.GONE


# --- push ------------------------------------------------------------------------------


class Watcher:
    def __init__(self, account: AccountSettings) -> None:
        self.changes = threading.Semaphore(0)
        self.stop = threading.Event()
        self.thread = threading.Thread(
            target=imap.watch, args=(account, self.changes.release, self.stop), daemon=True
        )

    def __enter__(self) -> Watcher:
        self.thread.start()
        time.sleep(0.3)  # connected and idling
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        assert not self.thread.is_alive(), "watch() did not return within 5 s of stop"


def test_idle_wakes_on_reply(dovecot, user, other) -> None:
    with Watcher(account_for(dovecot, user)) as watcher:
        started = time.monotonic()
        other.append("INBOX", mail("Re: Interview"))
        assert watcher.changes.acquire(timeout=5)
        assert time.monotonic() - started < 3
        assert not watcher.changes.acquire(timeout=0.8)  # one arrival, one wake-up


def test_watch_survives_server_crash_and_mail_is_not_lost(dovecot_server: Dovecot) -> None:
    user = dovecot_server.new_user()
    account = account_for(dovecot_server, user)
    box = imap.open_mailbox(account)
    since = datetime.now(UTC) - timedelta(days=1)
    cursor = box.messages(None, since).cursor
    box.close()

    with Watcher(account) as watcher:
        dovecot_server.kill()
        # Delivered while IMAP is down: straight into the Maildir, as an LDA would.
        new = dovecot_server.dir / "mail" / user / "Maildir" / "new"
        path = new / f"{int(time.time())}.mailbridge-test.localhost"
        path.write_bytes(mail("Re: Interview", body="We would like to invite you back."))
        os.chown(path, MAIL_UID, MAIL_UID)
        dovecot_server.start()
        assert watcher.changes.acquire(timeout=10), "watch() did not reconnect and report"

    box = imap.open_mailbox(account)
    batch = box.messages(cursor, since)
    assert [m.subject for m in batch.messages] == ["Re: Interview"]
    box.close()


# --- the whole loop: Radicale calendar, Dovecot mailbox, the real engine ---------------


def test_whole_loop_on_dovecot_and_radicale(dovecot: Dovecot, radicale, tmp_path) -> None:
    import textwrap

    import caldav

    from mailbridge import config as config_module
    from mailbridge import engine, timing
    from mailbridge.ledger import Ledger
    from mailbridge.model import DraftState

    user = dovecot.new_user()
    cal_user = radicale.new_user()
    lead, other_iv = "dana.whitfield@northwind-robotics.com", "priya.raman@northwind-robotics.com"
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=1)
    fmt = "%Y%m%dT%H%M%SZ"
    dav = caldav.DAVClient(url=radicale.url, username=cal_user, password=PASSWORD)
    dav.principal().make_calendar(name="Personal").save_event(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VEVENT\r\nUID:iv1\r\n"
        f"DTSTAMP:{end.strftime(fmt)}\r\nDTSTART:{(end - timedelta(hours=1)).strftime(fmt)}\r\n"
        f"DTEND:{end.strftime(fmt)}\r\nSUMMARY:Northwind Robotics - Technical Interview\r\n"
        f"ORGANIZER;CN=Dana Whitfield:mailto:{lead}\r\n"
        f"ATTENDEE;CN=Dana Whitfield;PARTSTAT=ACCEPTED:mailto:{lead}\r\n"
        f"ATTENDEE;CN=Priya Raman;PARTSTAT=ACCEPTED:mailto:{other_iv}\r\n"
        f"ATTENDEE;CN=Jordan Lee;PARTSTAT=ACCEPTED:mailto:{user}\r\n"
        "END:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    dav.close()
    config = tmp_path / "config.toml"
    config.write_text(textwrap.dedent(f"""
        [mailbridge]
        timezone = "America/Chicago"
        country = "US"
        state_dir = "state"

        [accounts.me]
        provider = "imap"
        address = "{user}"
        name = "Jordan Lee"
        [accounts.me.imap]
        host = "127.0.0.1"
        port = {dovecot.port}
        security = "plain"
        password_command = "echo {PASSWORD}"

        [accounts.me.calendar]
        kind = "caldav"
        url = "{radicale.url}"
        username = "{cal_user}"
        password_command = "echo {PASSWORD}"
        """), encoding="utf-8")  # fmt: skip
    settings = config_module.load(config)
    account = settings.accounts[0]
    ledger = Ledger.open(settings.state_dir)
    other = dovecot.client(user)

    def run(now: datetime) -> None:
        report = engine.reconcile(account, ledger, now=now)
        assert report.error is None, report.error

    def drafts_on_server() -> dict[str, bytes]:
        other.select_folder("Drafts")
        fetched = other.fetch(other.search(["NOT", "DELETED"]), ["BODY.PEEK[]", "FLAGS"])
        assert all(b"\\Draft" in d[b"FLAGS"] for d in fetched.values())
        return {str(uid): d[b"BODY[]"] for uid, d in fetched.items()}

    run(end + timedelta(hours=2))
    thank_yous = drafts_on_server()
    assert len(thank_yous) == 2
    assert sum(lead.encode() in raw for raw in thank_yous.values()) == 1

    # The user sends both thank-yous: their program moves them from Drafts to Sent.
    other.select_folder("Drafts")
    uids = other.search(["ALL"])
    other.move(uids, "Sent")
    run(end + timedelta(hours=3))
    thanks = [d for d in ledger.drafts(account.name) if d.kind is DraftKind.THANK_YOU]
    assert {d.state for d in thanks} == {DraftState.SENT}

    interview = ledger.interviews()[0]
    due = timing.follow_up_due(interview.end, None, account.policy)
    run(due)
    (follow_up,) = drafts_on_server().values()
    assert f"To: Dana Whitfield <{lead}>".encode() in follow_up
    thank_you_id = next(
        d.message_id for d in ledger.drafts(account.name) if d.recipient.email == lead
    )

    # An out-of-office from the other interviewer does not take the follow-up back.
    auto = {"Auto-Submitted": "auto-replied"}
    away = mail("Automatic reply: Thank you", sender=other_iv, to=user, extra=auto,
                body="I am out of the office until Monday.")  # fmt: skip
    other.append("INBOX", away)
    run(due + timedelta(minutes=2))
    assert len(drafts_on_server()) == 1

    # The lead replies in the thread: the follow-up goes to Trash.
    other.append("INBOX", mail("Re: Thank you", sender=f"Dana Whitfield <{lead}>", to=user,
                               in_reply_to=thank_you_id))  # fmt: skip
    run(due + timedelta(hours=1))
    assert drafts_on_server() == {}
    other.select_folder("Trash")
    assert len(other.search(["ALL"])) == 1
    follow_row = [d for d in ledger.drafts(account.name) if d.state == DraftState.RETRACTED]
    assert len(follow_row) == 1
    other.logout()
    ledger.close()


def test_authenticate_checks_and_stores_the_password(dovecot_server, monkeypatch) -> None:
    from mailbridge import secrets

    user = dovecot_server.new_user()  # own server: the failed login slows later ones
    account = account_for(dovecot_server, user, password_command=None)
    monkeypatch.setattr(imap.getpass, "getpass", lambda prompt: "wrong")
    from mailbridge.adapters import AuthError

    with pytest.raises(AuthError):
        imap.authenticate(account)
    assert secrets.lookup("work", "imap") is None  # a wrong password is never stored
    dovecot_server.restart()  # forget the failed login (Dovecot would delay the next by ~4 s)

    monkeypatch.setattr(imap.getpass, "getpass", lambda prompt: PASSWORD)
    assert "stored in the keyring" in imap.authenticate(account)
    box = imap.open_mailbox(account)  # now logs in from the keyring
    assert box.find_draft("<none@x>") is None
    box.close()
