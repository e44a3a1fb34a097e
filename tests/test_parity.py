"""One inbound corpus through all four mailboxes gives the same classification for every message.

Each mailbox reads the same RFC 5322 files the way its real service would show them: the local
Maildir and Dovecot (IMAP) hold the files themselves; the Gmail emulator answers format=full
with the MIME tree Gmail derives from the message; the Graph emulator files the message as
Exchange does (an iCalendar part becomes an eventMessage, the headers come from the message).
The provider's own reading code (the functions that build MailHeaders) runs unchanged.
"""

from __future__ import annotations

import mailbox as stdlib_mailbox
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from mailbridge_providers import gmail, imap, local, outlook

from mailbridge import secrets
from mailbridge.classify import classify, sender_authentication
from mailbridge.mailparse import headers_from_bytes
from mailbridge.model import Folder, MailHeaders, MessageKind
from tests.emulators.google import GoogleEmulator, running
from tests.emulators.graph import GraphEmulator
from tests.servers import Dovecot
from tests.test_gmail import fast_api, make_account
from tests.test_imap import account_for as imap_account
from tests.test_outlook import Sleeps, sign_in

MAIL = Path(__file__).parent / "data" / "mail"
OWN = ("jordan.lee@gmail.com", "jordan@fastmail.com")
SINCE = datetime(2020, 1, 1, tzinfo=UTC)

HUMAN = MessageKind.HUMAN
CALENDAR = MessageKind.CALENDAR

# What each message is, whichever mailbox it sits in.
EXPECTED: dict[str, MessageKind] = {
    "broken.eml": HUMAN,
    "exchange_accepted.eml": CALENDAR,
    "exchange_oof.eml": MessageKind.OUT_OF_OFFICE,
    "forwarded_invitation.eml": HUMAN,  # an invitation attached to a person's note
    "gmail_bounce.eml": MessageKind.BOUNCE,
    "google_cancellation.eml": CALENDAR,
    "google_invitation.eml": CALENDAR,
    "google_meet_update.eml": CALENDAR,
    "greenhouse_relay.eml": HUMAN,
    "human_reply.eml": HUMAN,
    "icloud_vacation.eml": MessageKind.OUT_OF_OFFICE,
    "list_reply.eml": HUMAN,
    "newsletter.eml": MessageKind.BULK,
    "outlook_cancellation.eml": CALENDAR,
    "outlook_invitation.eml": CALENDAR,
    "outlook_update.eml": CALENDAR,
    "postfix_dsn.eml": MessageKind.BOUNCE,
    "sent_thank_you.eml": MessageKind.OWN,
    "spam_fake_bounce.eml": MessageKind.BULK,
    "spoofed_reply.eml": HUMAN,
    "teams_invitation.eml": CALENDAR,
}
# The invitations whose subject and headers say nothing: only the structure (a text/calendar
# part, or Graph's eventMessage) tells them from a reply by the lead.
STRUCTURE_ONLY = ("outlook_invitation.eml", "outlook_update.eml", "teams_invitation.eml")

Reader = Callable[[dict[str, bytes]], list[MailHeaders]]


def corpus() -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(MAIL.glob("*.eml"))}


def by_name(
    box: str, files: dict[str, bytes], found: list[MailHeaders]
) -> dict[str, MailHeaders]:
    """Each message read back, under the name of the file it came from (by Message-ID)."""
    ids = {
        headers_from_bytes(raw, folder=Folder.INBOX, provider_id=name).message_id: name
        for name, raw in files.items()
    }
    assert len(ids) == len(files), "every corpus file needs its own Message-ID"
    result = {ids[m.message_id]: m for m in found if m.message_id in ids}
    lost = sorted(set(files) - set(result))
    assert not lost, f"{box} lost or garbled {lost}: {[m.message_id for m in found]}"
    return result


@pytest.fixture
def read_maildir(tmp_path: Path) -> Reader:
    def read(files: dict[str, bytes]) -> list[MailHeaders]:
        root = tmp_path / "Maildir"
        inbox = stdlib_mailbox.Maildir(root, create=True)
        for raw in files.values():
            inbox.add(raw)
        box = local.MaildirMailbox(root)
        return list(box.messages(None, SINCE).messages)

    return read


@pytest.fixture
def read_imap(dovecot: Dovecot) -> Reader:
    def read(files: dict[str, bytes]) -> list[MailHeaders]:
        user = dovecot.new_user("parity")
        client = dovecot.client(user)
        try:
            for raw in files.values():
                client.append("INBOX", raw)
        finally:
            client.logout()
        box = imap.open_mailbox(imap_account(dovecot, user))
        try:
            # SINCE is a date: the first pass looks back from yesterday.
            return list(box.messages(None, datetime.now(UTC) - timedelta(days=1)).messages)
        finally:
            box.close()

    return read


@pytest.fixture
def google_emulator() -> Iterator[GoogleEmulator]:
    with running("jordan.lee@gmail.com") as emulator:
        yield emulator
        assert emulator.violations == [], "requests the real API would refuse"


@pytest.fixture
def read_gmail(google_emulator: GoogleEmulator, tmp_path: Path) -> Reader:
    def read(files: dict[str, bytes]) -> list[MailHeaders]:
        for raw in files.values():
            google_emulator.deliver(raw)
        secrets.store("personal", gmail.KEYRING_PURPOSE, "refresh-1")
        account = make_account(google_emulator, tmp_path)
        box = gmail.GmailMailbox(account, fast_api(account, "gmail"))
        return list(box.messages(None, datetime.now(UTC) - timedelta(days=1)).messages)

    return read


@pytest.fixture
def graph_emulator() -> Iterator[GraphEmulator]:
    emulator = GraphEmulator(user="jordan.lee@gmail.com").start()
    yield emulator
    emulator.stop()
    assert emulator.violations == [], "requests the real Graph would reject"


@pytest.fixture
def read_graph(graph_emulator: GraphEmulator) -> Reader:
    def read(files: dict[str, bytes]) -> list[MailHeaders]:
        for raw in files.values():
            graph_emulator.deliver_raw(raw)
        account = sign_in(graph_emulator)
        retry = outlook.RetryPolicy(base=0.01, cap=0.05, sleep=Sleeps())
        box = outlook.open_mailbox(account, http_client=graph_emulator.http_client(), retry=retry)
        return list(box.messages(None, SINCE).messages)

    return read


def verdicts(messages: dict[str, MailHeaders]) -> dict[str, tuple[MessageKind, str]]:
    return {
        name: (classify(m, OWN).kind, sender_authentication(m).verdict)
        for name, m in messages.items()
    }


@pytest.mark.server
def test_every_mailbox_classifies_the_corpus_alike(
    read_maildir: Reader, read_imap: Reader, read_gmail: Reader, read_graph: Reader
) -> None:
    files = corpus()
    assert sorted(files) == sorted(EXPECTED), "a corpus file without an expected kind"
    seen = {
        name: by_name(name, files, reader(files))
        for name, reader in (
            ("maildir", read_maildir),
            ("imap", read_imap),
            ("gmail", read_gmail),
            ("graph", read_graph),
        )
    }
    kinds = {box: {n: v[0] for n, v in verdicts(m).items()} for box, m in seen.items()}
    for box, found in kinds.items():
        assert found == EXPECTED, f"{box} classifies differently"
    # The mailboxes that show the MIME structure show the same one; Graph shows what Exchange
    # keeps of it (the top-level type and the attachments) and says the rest in its hints.
    parts = {box: {n: m.part_types for n, m in seen[box].items()} for box in seen}
    assert parts["imap"] == parts["maildir"] == parts["gmail"]
    auth = {box: {n: v[1] for n, v in verdicts(m).items()} for box, m in seen.items()}
    assert auth["imap"] == auth["maildir"] == auth["gmail"] == auth["graph"]
    assert auth["maildir"]["spoofed_reply.eml"] == "fail"
    assert auth["maildir"]["teams_invitation.eml"] == "pass"


@pytest.mark.server
@pytest.mark.parametrize("name", STRUCTURE_ONLY)
def test_an_invitation_is_known_by_its_structure_in_every_mailbox(
    name: str, read_maildir: Reader, read_imap: Reader, read_gmail: Reader, read_graph: Reader
) -> None:
    """Without the facts about parts and the provider's hints, these were human replies."""
    files = {name: corpus()[name]}
    for reader in (read_maildir, read_imap, read_gmail, read_graph):
        (message,) = reader(files)
        assert classify(message, OWN).kind == CALENDAR
        bare = type(message)(
            folder=message.folder,
            provider_id=message.provider_id,
            message_id=message.message_id,
            sender=message.sender,
            subject=message.subject,
            headers=message.headers,
            excerpt=message.excerpt,
        )
        assert classify(bare, OWN).kind == HUMAN  # the structure alone decides it


# --- the provider's own hints, as classify reads them -------------------------------------------


def _with_hints(*hints: tuple[str, str], part_types: tuple[str, ...] = ()) -> MailHeaders:
    from mailbridge.mailparse import headers_from_fields

    return headers_from_fields(
        [("From", "Marcus Webb <marcus.webb@contoso-freight.com>"), ("Subject", "Second round")],
        folder=Folder.INBOX,
        provider_id="p1",
        part_types=part_types,
        hints=hints,
    )


@pytest.mark.parametrize(
    ("hints", "part_types", "kind"),
    [
        pytest.param((), (), HUMAN, id="nothing-known"),
        pytest.param((), ("multipart/alternative", "text/plain", "text/calendar"), CALENDAR,
                     id="nested-calendar-part"),
        pytest.param((("graph.type", "#microsoft.graph.eventMessageRequest"),
                      ("graph.meetingMessageType", "meetingRequest")), (), CALENDAR,
                     id="graph-meeting-request"),
        pytest.param((("graph.type", "#microsoft.graph.eventMessage"),), (), CALENDAR,
                     id="graph-event-message-without-its-type"),
        pytest.param((("graph.meetingMessageType", "none"),), (), HUMAN,
                     id="graph-meeting-type-none"),
        pytest.param((("graph.type", "#microsoft.graph.message"),), (), HUMAN,
                     id="graph-plain-message"),
        pytest.param((("gmail.label", "SPAM"),), (), MessageKind.BULK, id="gmail-spam"),
        pytest.param((("gmail.label", "INBOX"), ("gmail.label", "IMPORTANT")), (), HUMAN,
                     id="gmail-inbox"),
        pytest.param((("imap.keyword", "$Junk"),), (), MessageKind.BULK, id="imap-junk"),
        pytest.param((("imap.keyword", "$NotJunk"),), (), HUMAN, id="imap-not-junk"),
    ],
)  # fmt: skip
def test_hints_and_part_types(
    hints: tuple[tuple[str, str], ...], part_types: tuple[str, ...], kind: MessageKind
) -> None:
    assert classify(_with_hints(*hints, part_types=part_types), OWN).kind is kind


def test_gmail_part_types_walk_the_tree_but_not_into_an_attached_message() -> None:
    payload = {
        "mimeType": "multipart/mixed",
        "parts": [
            {"mimeType": "multipart/alternative",
             "parts": [{"mimeType": "text/plain"}, {"mimeType": "text/calendar"}]},
            {"mimeType": "message/rfc822", "parts": [{"mimeType": "application/ics"}]},
        ],
    }  # fmt: skip
    assert gmail.part_types(payload) == [
        "multipart/mixed", "multipart/alternative", "text/plain", "text/calendar",
        "message/rfc822",
    ]  # fmt: skip


def test_graph_facts_come_from_the_headers_the_type_and_the_attachments() -> None:
    item = {
        "@odata.type": "#microsoft.graph.eventMessageRequest",
        "meetingMessageType": "meetingRequest",
        "internetMessageHeaders": [{"name": "Content-Type", "value": "multipart/alternative"}],
        "attachments": [{"name": "agenda.pdf", "contentType": "application/pdf"}],
    }
    assert outlook.graph_part_types(item) == ["multipart/alternative", "application/pdf"]
    assert outlook.graph_hints(item) == [
        ("graph.type", "#microsoft.graph.eventMessageRequest"),
        ("graph.meetingMessageType", "meetingRequest"),
    ]


def test_a_graph_mailbox_that_refuses_the_type_cast_still_knows_its_meeting_messages(
    graph_emulator: GraphEmulator, read_graph: Reader
) -> None:
    graph_emulator.refuse_type_cast = True
    files = corpus()
    found = by_name("graph", files, read_graph(files))
    assert {n: classify(m, OWN).kind for n, m in found.items()} == EXPECTED
    casts = [q for _, _, q in graph_emulator.requests if "eventMessage" in q]
    assert len(casts) == 1  # asked once, then never again


@pytest.mark.server
def test_imap_reports_keywords_as_hints_and_a_junk_keyword_is_bulk(dovecot: Dovecot) -> None:
    user = dovecot.new_user("keywords")
    raw = corpus()["human_reply.eml"]
    client = dovecot.client(user)
    try:
        client.append("INBOX", raw, flags=[b"$Junk", b"\\Seen"])
    finally:
        client.logout()
    box = imap.open_mailbox(imap_account(dovecot, user))
    try:
        (found,) = box.messages(None, datetime.now(UTC) - timedelta(days=1)).messages
    finally:
        box.close()
    assert found.hint("imap.keyword") == ("$Junk",)  # keywords only, not system flags
    assert classify(found, OWN).kind is MessageKind.BULK
