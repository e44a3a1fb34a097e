"""An idle pass with drafts waiting costs the same whatever they say: each waiting draft is
checked by its cheap version marker (Maildir name and flags, IMAP FLAGS/MODSEQ, Gmail history,
Graph changeKey), and read, fingerprinted and proofread only when the marker moved.

Counted, never timed: the files opened and Drafts listings on a real Maildir, the FETCH
commands sent to Dovecot, the requests that reach the Gmail and Graph emulators.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from mailbridge_providers import gmail, imap, local, outlook

from mailbridge import proofread, secrets
from mailbridge.engine import reconcile
from mailbridge.ledger import Ledger
from mailbridge.model import DraftKind, DraftState
from tests.chaos import with_body
from tests.emulators.google import GoogleEmulator, interview_event, running
from tests.emulators.graph import GraphEmulator
from tests.test_engine import END, World
from tests.test_gmail import SEND_METHODS, fast_api, make_account
from tests.test_level_providers import Imap
from tests.test_outlook import T0, open_both, sign_in


class Calls:
    """Counts calls of a function while it keeps working."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> None:
        self.count = 0
        original = getattr(owner, name)

        def counted(*args: Any, **kw: Any) -> Any:
            self.count += 1
            return original(*args, **kw)

        monkeypatch.setattr(owner, name, counted)


def states(ledger: Ledger, account: str) -> Counter[DraftState]:
    """The states of the thank-you drafts (the follow-up waits, planned, meanwhile)."""
    return Counter(d.state for d in ledger.drafts(account) if d.kind == DraftKind.THANK_YOU)


# --- local Maildir ---------------------------------------------------------------------------


@pytest.mark.parametrize("interviews", [1, 3])
def test_maildir_idle_pass_lists_drafts_once_and_reads_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, interviews: int
) -> None:
    world = World(tmp_path)
    for n in range(interviews):
        world.add_interview(f"iv{n}", end=END + timedelta(minutes=n))
    due = END + timedelta(hours=3)
    world.run(due)
    listings = Calls(monkeypatch, local.MaildirMailbox, "_draft_files")
    observed = Calls(monkeypatch, local.MaildirMailbox, "observe")
    proofreading = Calls(monkeypatch, proofread, "proofread")
    world.run(due + timedelta(minutes=1))  # the first full look records each draft's marker
    waiting = world.drafts(DraftKind.THANK_YOU)
    assert len(waiting) == 2 * interviews and all(d.version for d in waiting)
    # Every draft read once, Drafts listed once for them all (not once per draft).
    assert (listings.count, observed.count) == (1, 2 * interviews)

    listings.count = observed.count = proofreading.count = 0
    world.run(due + timedelta(minutes=2))
    assert (listings.count, observed.count, proofreading.count) == (1, 0, 0)

    # The user re-saves one draft (a new file, as mutt does) and deletes another: exactly
    # those two are looked at, and what they became is recorded.
    drafts_box = world.folder("Drafts")
    keys = sorted(drafts_box.keys())
    edited = local.stdlib_mailbox.MaildirMessage(
        with_body(drafts_box.get_bytes(keys[0]), "My own words.\n"))
    edited.set_subdir("cur")
    edited.set_flags("DS")
    drafts_box.add(edited)
    drafts_box.remove(keys[0])
    drafts_box.remove(keys[1])
    world.run(due + timedelta(minutes=3))
    assert observed.count == 2
    assert proofreading.count == 1  # the edited one, as it reads now
    assert states(world.ledger, world.account.name) == Counter({
        DraftState.CREATED: 2 * interviews - 2, DraftState.USER_EDITED: 1,
        DraftState.USER_DELETED: 1})  # fmt: skip
    world.ledger.close()


def test_maildir_draft_rewritten_in_place_is_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A program that rewrites the file under the same name still moves the marker."""
    world = World(tmp_path)
    world.add_interview()
    due = END + timedelta(hours=3)
    world.run(due)
    world.run(due + timedelta(minutes=1))
    path = next((tmp_path / "Maildir" / ".Drafts" / "cur").iterdir())
    path.write_bytes(with_body(path.read_bytes(), "Rewritten where it lies, and longer.\n"))
    observed = Calls(monkeypatch, local.MaildirMailbox, "observe")
    world.run(due + timedelta(minutes=2))
    assert observed.count == 1
    assert DraftState.USER_EDITED in states(world.ledger, world.account.name)
    world.ledger.close()


# --- IMAP on Dovecot -------------------------------------------------------------------------


class CountingImap:
    """The real IMAP mailbox; every FETCH it sends is recorded with its data items."""

    def __init__(self, account: Any) -> None:
        self.fetches: list[tuple[list[int], tuple[str, ...]]] = []

        def connector() -> Any:
            client = imap.connect(account)
            original = client.fetch

            def fetch(messages: Any, data: Any, *args: Any, **kw: Any) -> Any:
                items = (data,) if isinstance(data, str | bytes) else tuple(data)
                self.fetches.append((list(messages), tuple(str(i) for i in items)))
                return original(messages, data, *args, **kw)

            client.fetch = fetch
            return client

        self.mailbox = imap.ImapMailbox(account, connector=connector)

    def bodies(self) -> int:
        return sum(1 for _, items in self.fetches if any("BODY.PEEK[]" in i for i in items))


@pytest.fixture
def on_imap(tmp_path: Path, dovecot: Any, radicale: Any) -> Iterator[Imap]:
    world = Imap(tmp_path / "imap", dovecot, radicale)
    yield world
    world.ledger.close()


@pytest.mark.server
def test_imap_idle_pass_checks_waiting_drafts_with_one_fetch_and_no_body(on_imap: Imap) -> None:
    on_imap.put()
    counting = CountingImap(on_imap.account)
    on_imap.mailbox = counting.mailbox
    now = on_imap.end + timedelta(minutes=5)
    on_imap.run(now)
    on_imap.run(now + timedelta(minutes=1))
    assert all(d.version for d in on_imap.ledger.drafts() if d.state.on_server)

    counting.fetches.clear()
    on_imap.run(now + timedelta(minutes=2))
    assert counting.bodies() == 0
    flags = [f for f in counting.fetches if "FLAGS" in f[1]]
    assert len(flags) == 1 and len(flags[0][0]) == 2  # both drafts in one command
    if on_imap.world.dovecot.client(on_imap.world.mail_user).has_capability("CONDSTORE"):
        assert "MODSEQ" in flags[0][1]

    # Flags the user's program set move the marker: that draft alone is read, and it is
    # still ours (its text did not change).
    with on_imap.world._client() as client:
        client.select_folder("Drafts")
        client.add_flags([min(client.search(["ALL"]))], [b"\\Flagged"])
    counting.fetches.clear()
    on_imap.run(now + timedelta(minutes=3))
    assert counting.bodies() == 1
    assert states(on_imap.ledger, on_imap.account.name) == Counter({DraftState.CREATED: 2})

    mail, untouched = on_imap.world.folder("drafts")[:2]
    on_imap.world.user_edits(mail, "My own words.\n")
    counting.fetches.clear()
    on_imap.run(now + timedelta(minutes=4))
    read = {uid for uids, items in counting.fetches if "BODY.PEEK[]" in items for uid in uids}
    assert read and int(untouched.key) not in read  # the edited one is looked for, alone
    assert states(on_imap.ledger, on_imap.account.name) == Counter(
        {DraftState.CREATED: 1, DraftState.USER_EDITED: 1})
    counting.mailbox.close()


# --- Gmail on its emulator -------------------------------------------------------------------


@pytest.fixture
def gmail_emu() -> Iterator[GoogleEmulator]:
    with running() as emulator:
        yield emulator
        assert emulator.violations == [], "requests the real API would refuse"
        assert not SEND_METHODS & set(emulator.counts), "a send method was called"


def test_gmail_idle_with_two_drafts_waiting_is_one_history_and_one_events_request(
    gmail_emu: GoogleEmulator, tmp_path: Path
) -> None:
    emu = gmail_emu
    secrets.store("personal", gmail.KEYRING_PURPOSE, "refresh-1")
    account = make_account(emu, tmp_path)
    mailbox = gmail.GmailMailbox(account, fast_api(account, "gmail"))
    calendar = gmail.GoogleCalendar(account, fast_api(account, "calendar"))
    ledger = Ledger.open(tmp_path / "state")
    start = datetime(2024, 5, 6, 14, 0, tzinfo=UTC)
    emu.add_event(interview_event("iv1", start))

    def run(now: datetime) -> Counter[str]:
        emu.counts.clear()
        report = reconcile(account, ledger, now=now, mailbox=mailbox, calendar=calendar)
        assert report.error is None, report.error
        return Counter(emu.counts)

    run(start + timedelta(hours=3))  # the thank-yous are made
    run(start + timedelta(hours=3, minutes=5))  # and looked at once, in full
    assert len(emu.drafts) == 2
    idle = run(start + timedelta(hours=4))
    assert idle == Counter({"gmail.users.history.list": 1, "calendar.events.list": 1})

    # The user edits one draft in Gmail: history names it, so that one alone is fetched.
    draft_id = sorted(emu.drafts)[0]
    raw = emu.messages[emu.drafts[draft_id]].raw
    emu.user_edits_draft(draft_id, with_body(raw, "My own words.\n"))
    edited = run(start + timedelta(hours=5))
    assert edited["gmail.users.drafts.get"] == 1
    assert states(ledger, account.name) == Counter(
        {DraftState.CREATED: 1, DraftState.USER_EDITED: 1})
    # Then the other is deleted: history names it too.
    emu.user_deletes_draft(sorted(emu.drafts)[1])
    deleted = run(start + timedelta(hours=6))
    assert deleted["gmail.users.drafts.get"] == 1  # the deleted one (404); the edited one
    # was read after its edit and is untouched since
    assert states(ledger, account.name) == Counter(
        {DraftState.USER_DELETED: 1, DraftState.USER_EDITED: 1})
    ledger.close()


def test_gmail_without_history_this_pass_looks_at_every_draft(
    gmail_emu: GoogleEmulator, tmp_path: Path
) -> None:
    """A marker is only vouched for by a history read that covers it: after the history
    expired (a full listing instead), every waiting draft is fetched again."""
    emu = gmail_emu
    secrets.store("personal", gmail.KEYRING_PURPOSE, "refresh-1")
    account = make_account(emu, tmp_path)
    ledger = Ledger.open(tmp_path / "state")
    start = datetime(2024, 5, 6, 14, 0, tzinfo=UTC)
    emu.add_event(interview_event("iv1", start))
    calendar = gmail.GoogleCalendar(account, fast_api(account, "calendar"))

    def run(now: datetime) -> Counter[str]:
        emu.counts.clear()
        # A new adapter each pass, as after a restart: nothing is remembered in memory.
        mailbox = gmail.GmailMailbox(account, fast_api(account, "gmail"))
        report = reconcile(account, ledger, now=now, mailbox=mailbox, calendar=calendar)
        assert report.error is None, report.error
        return Counter(emu.counts)

    run(start + timedelta(hours=3))
    run(start + timedelta(hours=3, minutes=5))
    assert run(start + timedelta(hours=4))["gmail.users.drafts.get"] == 0
    emu.expire_history()
    assert run(start + timedelta(hours=5))["gmail.users.drafts.get"] == 2
    ledger.close()


def test_gmail_versions_without_a_mail_read_this_pass_read_the_history_themselves(
    gmail_emu: GoogleEmulator, tmp_path: Path
) -> None:
    """A history read vouches for one pass only: a pass that read no mail (or a second look)
    reads the history itself, from the oldest marker, and still sees every change."""
    from tests.test_gmail import draft

    emu = gmail_emu
    secrets.store("personal", gmail.KEYRING_PURPOSE, "refresh-1")
    account = make_account(emu, tmp_path)

    def fresh() -> gmail.GmailMailbox:
        return gmail.GmailMailbox(account, fast_api(account, "gmail"))

    mailbox = fresh()
    cursor = mailbox.messages(None, datetime.now(UTC) - timedelta(days=1)).cursor
    pid = mailbox.create_draft(draft("maria@acme.example", "Thank you", "Hi\n", "<v1@x.test>"))
    cursor = mailbox.messages(cursor, datetime.now(UTC)).cursor
    seen = mailbox.observe(pid, "<v1@x.test>")
    assert seen.version
    known = {seen.provider_id or pid: seen.version}

    mailbox.messages(cursor, datetime.now(UTC))  # the next pass reads mail
    emu.counts.clear()
    assert mailbox.versions(known) == known  # and that read answers: no request
    assert emu.counts == Counter()
    assert mailbox.versions(known) == known  # a second look reads the history again
    assert emu.counts == Counter({"gmail.users.history.list": 1})

    emu.counts.clear()
    assert fresh().versions(known) == known  # after a restart, no mail read yet
    assert emu.counts == Counter({"gmail.users.history.list": 1})
    emu.user_edits_draft(pid.split(":")[0], with_body(emu.messages[pid.split(":")[1]].raw,
                                                      "Edited.\n"))  # fmt: skip
    assert fresh().versions(known) == {}


# --- Microsoft Graph on its emulator ---------------------------------------------------------


@pytest.fixture
def graph_emu() -> Iterator[GraphEmulator]:
    emulator = GraphEmulator().start()
    yield emulator
    emulator.stop()
    assert emulator.violations == [], "requests the real Graph would reject"
    assert emulator.send_attempts == []


def test_graph_idle_with_two_drafts_waiting_reads_change_keys_in_one_request(
    graph_emu: GraphEmulator, tmp_path: Path
) -> None:
    emu = graph_emu
    account = sign_in(emu)
    mailbox, calendar = open_both(emu, account)
    ledger = Ledger.open(tmp_path / "state")
    start = T0 - timedelta(days=1)
    emu.add_event(
        "Interview: Fabrikam — Staff Engineer", start, start + timedelta(hours=1),
        organizer=("lee@fabrikam.example", "Lee Lead"),
        attendees=[
            ("lee@fabrikam.example", "Lee Lead", "required", "organizer"),
            ("ann@fabrikam.example", "Ann Other", "required", "accepted"),
            (emu.user, emu.user_name, "required", "accepted"),
        ],
    )  # fmt: skip

    def run(now: datetime) -> Counter[str]:
        emu.counts.clear()
        report = reconcile(account, ledger, now=now, mailbox=mailbox, calendar=calendar)
        assert report.error is None, report.error
        return Counter(emu.counts)

    run(start + timedelta(hours=4))
    run(start + timedelta(hours=4, minutes=5))
    assert len(emu.drafts()) == 2
    idle = run(start + timedelta(hours=5))
    assert idle == Counter({"GET messages/delta": 3, "GET calendarView/delta": 1,
                            "GET folder/messages": 1})  # fmt: skip

    edited_id = emu.drafts()[0]["id"]
    emu.user_edits(edited_id, body="My own words.")
    edited = run(start + timedelta(hours=6))
    assert edited["GET message"] == 1
    assert {d.provider_id: d.state for d in ledger.drafts(account.name)}[edited_id] is (
        DraftState.USER_EDITED
    )
    assert isinstance(mailbox, outlook.OutlookMailbox)
    ledger.close()
