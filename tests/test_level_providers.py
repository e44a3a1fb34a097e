"""Level-triggered seams on the remote providers: IMAP on Dovecot with CalDAV on Radicale, and
Gmail and Graph on their emulators. Each test starts from a broken path (a create whose answer
was lost after the server did it, a lost ledger, a renamed account, a draft in Trash, an
interview cancelled then reinstated or vanished then back) and asserts that the mailbox holds
exactly the drafts the current state calls for, and that one more pass changes nothing.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from mailbridge_providers import gmail, imap

from mailbridge import config as config_module
from mailbridge import engine, secrets
from mailbridge.adapters import ProviderError
from mailbridge.ledger import Ledger
from mailbridge.model import DraftKind, DraftState
from mailbridge.settings import AccountSettings
from tests.chaos import DANA, PRIYA, TITLES, Ev, ImapWorld
from tests.emulators.google import GoogleEmulator, interview_event, running
from tests.emulators.graph import GraphEmulator
from tests.test_gmail import ME, SEND_METHODS, fast_api, make_account
from tests.test_outlook import open_both, sign_in

THANK_YOU = DraftKind.THANK_YOU


# --- IMAP on Dovecot, CalDAV on Radicale --------------------------------------------------------


class Imap:
    """The chaos harness's Dovecot + Radicale world, driven in-process through the engine."""

    def __init__(self, root: Path, dovecot: Any, radicale: Any) -> None:
        self.world = ImapWorld(root, dovecot, radicale)
        self.settings = config_module.load(self.world.config)
        account: AccountSettings = self.settings.accounts[0]
        # The chaos world runs in real time with no grace; here the default grace applies.
        self.account = replace(account, policy=replace(account.policy,
                                                       removal_grace=timedelta(hours=1)))
        self.ledger = Ledger.open(self.settings.state_dir)
        self.end = datetime(2026, 11, 17, 16, 0, tzinfo=UTC)
        self.mailbox: Any = None  # None: the engine opens the real one

    def put(self, *, cancelled: bool = False, uid: str = "iv-a") -> None:
        self.world.put_event(Ev(uid, TITLES["A"], self.end - timedelta(hours=1), self.end,
                                (DANA, PRIYA), cancelled=cancelled))

    def remove(self, uid: str = "iv-a") -> None:
        import requests

        resp = requests.delete(f"{self.world.calendar_url}{uid}.ics",
                               auth=(self.world.cal_user, self.world.password), timeout=10)
        resp.raise_for_status()

    def run(self, now: datetime, **kw: Any) -> engine.PassReport:
        report = engine.reconcile(self.account, self.ledger, now=now, mailbox=self.mailbox, **kw)
        assert report.error is None, report.error
        return report

    def held(self) -> Counter[tuple[str, str, str]]:
        return Counter((which, m.message_id, m.to)
                       for which in ("drafts", "sent", "trash") for m in self.world.folder(which))

    def wipe_ledger(self) -> None:
        self.ledger.close()
        shutil.rmtree(self.settings.state_dir)
        self.ledger = Ledger.open(self.settings.state_dir)

    def settled(self, now: datetime) -> None:
        before, rows = self.held(), self.ledger.drafts()
        self.run(now)
        assert self.held() == before
        assert self.ledger.drafts() == rows


@pytest.fixture
def on_imap(tmp_path: Path, dovecot: Any, radicale: Any) -> Iterator[Imap]:
    world = Imap(tmp_path / "imap", dovecot, radicale)
    yield world
    world.ledger.close()


def drafts_to(world: Imap) -> list[str]:
    return sorted(m.to for m in world.world.folder("drafts"))


@pytest.mark.server
def test_imap_caldav_cancelled_then_reinstated_interview_gets_its_drafts(on_imap: Imap) -> None:
    on_imap.put()
    on_imap.run(on_imap.end - timedelta(hours=2))
    on_imap.put(cancelled=True)
    on_imap.run(on_imap.end - timedelta(hours=1))
    assert {d.state for d in on_imap.ledger.drafts()} == {DraftState.CANCELLED}
    on_imap.put()
    on_imap.run(on_imap.end + timedelta(minutes=5))
    assert drafts_to(on_imap) == sorted([DANA.email, PRIYA.email])
    on_imap.settled(on_imap.end + timedelta(minutes=5))


@pytest.mark.server
def test_imap_caldav_vanished_then_back_is_held_not_cancelled(on_imap: Imap) -> None:
    on_imap.put()
    on_imap.run(on_imap.end - timedelta(hours=2))
    on_imap.remove()
    on_imap.run(on_imap.end + timedelta(minutes=5))  # due, but missing: held
    assert drafts_to(on_imap) == []
    assert {d.state for d in on_imap.ledger.drafts()} == {DraftState.PLANNED}
    on_imap.put()
    on_imap.run(on_imap.end + timedelta(minutes=10))
    assert drafts_to(on_imap) == sorted([DANA.email, PRIYA.email])
    on_imap.settled(on_imap.end + timedelta(minutes=10))


@pytest.mark.server
def test_imap_lost_ledger_and_renamed_account_write_nothing_twice(on_imap: Imap) -> None:
    on_imap.put()
    now = on_imap.end + timedelta(minutes=5)
    on_imap.run(now)
    before = on_imap.held()
    assert len(drafts_to(on_imap)) == 2
    on_imap.wipe_ledger()
    on_imap.run(now)
    assert on_imap.held() == before
    on_imap.account = replace(on_imap.account, name="renamed")
    on_imap.run(now)
    assert on_imap.held() == before
    assert {d.state for d in on_imap.ledger.drafts(on_imap.account.name)
            if d.kind == THANK_YOU} == {DraftState.CREATED}
    on_imap.settled(now)


@pytest.mark.server
def test_imap_user_deleted_draft_in_trash_is_not_recreated_by_a_new_ledger(
    on_imap: Imap,
) -> None:
    on_imap.put()
    now = on_imap.end + timedelta(minutes=5)
    on_imap.run(now)
    dana = next(m for m in on_imap.world.folder("drafts") if m.to == DANA.email)
    with on_imap.world._client() as client:  # the user's program moves it to Trash
        client.select_folder("Drafts")
        client.move([int(dana.key)], "Trash")
    on_imap.wipe_ledger()
    on_imap.run(now)
    assert drafts_to(on_imap) == [PRIYA.email]
    states = {d.recipient.email: d.state for d in on_imap.ledger.drafts() if d.kind == THANK_YOU}
    assert states == {DANA.email: DraftState.USER_DELETED, PRIYA.email: DraftState.CREATED}
    on_imap.settled(now)


class LostAppend:
    """The real IMAP mailbox on Dovecot; its first ``n`` APPENDs (and first ``moves`` MOVEs)
    are carried out, then the connection drops before the answer is read."""

    def __init__(self, account: AccountSettings, n: int, moves: int = 0) -> None:
        self.n = n
        self.moves = moves

        def connector() -> Any:
            client = imap.connect(account)
            original, move = client.append, client.move

            def append(*args: Any, **kw: Any) -> Any:
                result = original(*args, **kw)
                if self.n > 0:
                    self.n -= 1
                    client.shutdown()
                    raise OSError("connection reset after APPEND")
                return result

            def moved(*args: Any, **kw: Any) -> Any:
                result = move(*args, **kw)
                if self.moves > 0:
                    self.moves -= 1
                    client.shutdown()
                    raise OSError("connection reset after MOVE")
                return result

            client.append = append
            client.move = moved
            return client

        self.mailbox = imap.ImapMailbox(account, connector=connector)


@pytest.mark.server
def test_imap_append_whose_answer_was_lost_is_found_not_repeated(on_imap: Imap) -> None:
    on_imap.put()
    lost = LostAppend(on_imap.account, 2)
    on_imap.mailbox = lost.mailbox
    now = on_imap.end + timedelta(minutes=5)
    on_imap.run(now)
    assert lost.n == 0
    recovered = [a for a in on_imap.ledger.audit_entries() if a.decision == "draft recovered"]
    assert len(recovered) == 2
    assert drafts_to(on_imap) == sorted([DANA.email, PRIYA.email])
    assert all(n == 1 for n in on_imap.held().values())
    on_imap.settled(now)


# --- Gmail on its emulator -------------------------------------------------------------------


GMAIL_START = datetime(2024, 5, 6, 14, 0, tzinfo=UTC)  # a Monday


@pytest.fixture
def google(tmp_path: Path) -> Iterator[GoogleEmulator]:
    with running(ME) as emulator:
        yield emulator
        assert emulator.violations == [], "requests the real API would refuse"
        assert not SEND_METHODS & set(emulator.counts), "a send method was called"


class Gmail:
    def __init__(self, emu: GoogleEmulator, tmp: Path, name: str = "personal") -> None:
        secrets.store(name, gmail.KEYRING_PURPOSE, "refresh-1")
        self.emu, self.tmp = emu, tmp
        self.account = replace(make_account(emu, tmp), name=name)
        self.ledger = Ledger.open(tmp / "state")

    def run(self, now: datetime) -> None:
        mailbox = gmail.GmailMailbox(self.account, fast_api(self.account, "gmail"))
        calendar = gmail.GoogleCalendar(self.account, fast_api(self.account, "calendar"))
        report = engine.reconcile(self.account, self.ledger, now=now, mailbox=mailbox,
                                  calendar=calendar)
        assert report.error is None, report.error

    def drafts_to(self) -> list[str]:
        return sorted(str(m["To"]) for m in self.emu.draft_messages().values())

    def wipe_ledger(self) -> None:
        self.ledger.close()
        shutil.rmtree(self.tmp / "state")
        self.ledger = Ledger.open(self.tmp / "state")


GMAIL_PEOPLE = ["Maria Chen <maria@acme.example>", "Raj Patel <raj@acme.example>"]


@pytest.mark.parametrize("how", ["drop", "500", "503"])
def test_gmail_create_whose_answer_was_lost_is_found_not_repeated(
    google: GoogleEmulator, tmp_path: Path, how: str
) -> None:
    world = Gmail(google, tmp_path)
    google.add_event(interview_event("iv1", GMAIL_START))
    google.lose_answer("gmail.users.drafts.create", how, count=2)
    world.run(GMAIL_START + timedelta(hours=3))
    assert world.drafts_to() == GMAIL_PEOPLE
    assert google.counts["gmail.users.drafts.create"] == 2  # one request per draft, no retry
    google.counts.clear()
    world.run(GMAIL_START + timedelta(hours=3))
    assert "gmail.users.drafts.create" not in google.counts
    assert world.drafts_to() == GMAIL_PEOPLE


def test_gmail_lost_ledger_renamed_account_and_trashed_draft_write_nothing_twice(
    google: GoogleEmulator, tmp_path: Path
) -> None:
    world = Gmail(google, tmp_path)
    google.add_event(interview_event("iv1", GMAIL_START))
    now = GMAIL_START + timedelta(hours=3)
    world.run(now)
    assert world.drafts_to() == GMAIL_PEOPLE
    raj = next(d for d, m in google.draft_messages().items() if "raj@" in str(m["To"]))
    google.user_trashes_draft(raj)
    world.wipe_ledger()
    world.run(now)
    world.account = replace(world.account, name="renamed")
    secrets.store("renamed", gmail.KEYRING_PURPOSE, "refresh-1")
    world.run(now)
    assert world.drafts_to() == GMAIL_PEOPLE[:1]
    assert google.counts["gmail.users.drafts.create"] == 2
    states = {d.recipient.email: d.state for d in world.ledger.drafts("renamed")
              if d.kind == THANK_YOU}
    assert states == {"maria@acme.example": DraftState.CREATED,
                      "raj@acme.example": DraftState.USER_DELETED}


def test_gmail_cancelled_then_reinstated_interview_gets_its_drafts(
    google: GoogleEmulator, tmp_path: Path
) -> None:
    world = Gmail(google, tmp_path)
    google.add_event(interview_event("iv1", GMAIL_START))
    world.run(GMAIL_START - timedelta(hours=2))
    google.add_event(interview_event("iv1", GMAIL_START, status="cancelled"))
    world.run(GMAIL_START - timedelta(hours=1))
    assert {d.state for d in world.ledger.drafts()} == {DraftState.CANCELLED}
    google.add_event(interview_event("iv1", GMAIL_START))
    world.run(GMAIL_START + timedelta(hours=3))
    assert world.drafts_to() == GMAIL_PEOPLE
    google.counts.clear()
    world.run(GMAIL_START + timedelta(hours=3))
    assert "gmail.users.drafts.create" not in google.counts


def test_google_rate_limit_403_is_retried(google: GoogleEmulator, tmp_path: Path) -> None:
    world = Gmail(google, tmp_path)
    google.add_event(interview_event("iv1", GMAIL_START))
    original = google._api
    refusals = iter(["rateLimitExceeded", "userRateLimitExceeded"])

    def limited(request: Any, parsed: Any, payload: bytes) -> Any:
        from tests.emulators.google import ApiError

        reason = next(refusals, None)
        if reason is not None:
            raise ApiError(403, "Rate Limit Exceeded", reason)
        return original(request, parsed, payload)

    google._api = limited  # type: ignore[method-assign]
    world.run(GMAIL_START + timedelta(hours=3))
    assert next(refusals, None) is None
    assert world.drafts_to() == GMAIL_PEOPLE


# --- Graph on its emulator -------------------------------------------------------------------


GRAPH_START = datetime(2026, 11, 16, 15, 0, tzinfo=UTC)  # a Monday
LEE, ANN = "lee@fabrikam.example", "ann@fabrikam.example"


@pytest.fixture
def graph() -> Iterator[GraphEmulator]:
    emulator = GraphEmulator().start()
    yield emulator
    emulator.stop()
    assert emulator.violations == [], "requests the real Graph would reject"
    assert emulator.send_attempts == []


class Graph:
    def __init__(self, emu: GraphEmulator, tmp: Path) -> None:
        self.emu, self.tmp = emu, tmp
        self.account = sign_in(emu)
        self.ledger = Ledger.open(tmp / "state")

    def add(self, *, cancelled: bool = False) -> str:
        return self.emu.add_event(
            "Interview: Fabrikam — Staff Engineer", GRAPH_START, GRAPH_START + timedelta(hours=1),
            organizer=(LEE, "Lee Lead"), is_cancelled=cancelled,
            attendees=[(LEE, "Lee Lead", "required", "organizer"),
                       (ANN, "Ann Other", "required", "accepted"),
                       (self.emu.user, self.emu.user_name, "required", "accepted")],
        )

    def run(self, now: datetime) -> None:
        mailbox, calendar = open_both(self.emu, self.account)
        report = engine.reconcile(self.account, self.ledger, now=now, mailbox=mailbox,
                                  calendar=calendar)
        assert report.error is None, report.error

    def drafts_to(self) -> list[str]:
        return sorted(d["toRecipients"][0]["emailAddress"]["address"] for d in self.emu.drafts())

    def creates(self) -> int:
        return sum(1 for m, p, _ in self.emu.requests if m == "POST" and p == "/me/messages")

    def wipe_ledger(self) -> None:
        self.ledger.close()
        shutil.rmtree(self.tmp / "state")
        self.ledger = Ledger.open(self.tmp / "state")


@pytest.mark.parametrize("how", ["drop", "500", "504"])
def test_graph_create_whose_answer_was_lost_is_found_not_repeated(
    graph: GraphEmulator, tmp_path: Path, how: str
) -> None:
    world = Graph(graph, tmp_path)
    world.add()
    graph.lose_answer("POST", "/me/messages", how, count=2)
    world.run(GRAPH_START + timedelta(hours=4))
    assert world.drafts_to() == [ANN, LEE]
    assert world.creates() == 2
    world.run(GRAPH_START + timedelta(hours=4))
    assert world.creates() == 2


def test_graph_lost_ledger_and_deleted_draft_write_nothing_twice(
    graph: GraphEmulator, tmp_path: Path
) -> None:
    world = Graph(graph, tmp_path)
    world.add()
    now = GRAPH_START + timedelta(hours=4)
    world.run(now)
    ann = next(d["id"] for d in graph.drafts()
               if d["toRecipients"][0]["emailAddress"]["address"] == ANN)
    graph.user_deletes(ann)  # to Deleted Items
    world.wipe_ledger()
    world.run(now)
    assert world.drafts_to() == [LEE]
    assert world.creates() == 2
    states = {d.recipient.email: d.state for d in world.ledger.drafts() if d.kind == THANK_YOU}
    assert states == {LEE: DraftState.CREATED, ANN: DraftState.USER_DELETED}


def test_graph_paused_account_writes_nothing_in_a_mail_only_pass(
    graph: GraphEmulator, tmp_path: Path
) -> None:
    world = Graph(graph, tmp_path)
    world.add()
    world.run(GRAPH_START - timedelta(hours=1))  # the interview is known, its drafts planned
    assert {d.state for d in world.ledger.drafts()} == {DraftState.PLANNED}
    with world.ledger.transaction():
        world.ledger.set_paused(world.account.name, "the calendar suddenly lost 3 of 4 events",
                                engine.CALENDAR)
    mailbox, _ = open_both(graph, world.account)
    report = engine.reconcile(world.account, world.ledger, now=GRAPH_START + timedelta(hours=4),
                              mailbox=mailbox, read_calendar=False)
    assert report.paused
    assert world.creates() == 0 and graph.drafts() == []



# --- updates and deletes whose answer was lost: safe to repeat, never doubled ---------------


NOTE = "We talked about their move to event sourcing"


@pytest.mark.parametrize("how", ["drop", "503"])
def test_gmail_update_and_delete_whose_answer_was_lost(
    google: GoogleEmulator, tmp_path: Path, how: str
) -> None:
    world = Gmail(google, tmp_path)
    google.add_event(interview_event("iv1", GMAIL_START))
    now = GMAIL_START + timedelta(hours=3)
    world.run(now)
    with world.ledger.transaction():
        world.ledger.set_notes(world.ledger.interviews()[0].id, NOTE, now)
    google.lose_answer("gmail.users.drafts.update", how, count=2)
    world.run(now + timedelta(minutes=1))
    bodies = [m.get_body(("plain",)).get_content()  # type: ignore[union-attr]
              for m in google.draft_messages().values()]
    assert len(bodies) == 2 and all(NOTE in b for b in bodies)
    world.run(now + timedelta(minutes=2))
    assert {d.state for d in world.ledger.drafts() if d.kind == THANK_YOU} == {
        DraftState.CREATED
    }

    mailbox = gmail.GmailMailbox(world.account, fast_api(world.account, "gmail"))
    google.lose_answer("gmail.users.drafts.delete", how)
    provider_id = next(d.provider_id for d in world.ledger.drafts() if d.provider_id)
    assert provider_id is not None
    mailbox.retract(provider_id)
    assert len(google.draft_messages()) == 1


@pytest.mark.parametrize("how", ["drop", "503"])
def test_graph_update_and_delete_whose_answer_was_lost(
    graph: GraphEmulator, tmp_path: Path, how: str
) -> None:
    world = Graph(graph, tmp_path)
    world.add()
    now = GRAPH_START + timedelta(hours=4)
    world.run(now)
    with world.ledger.transaction():
        world.ledger.set_notes(world.ledger.interviews()[0].id, NOTE, now)
    graph.lose_answer("PATCH", "/me/messages/", "503" if how == "drop" else how, count=2)
    world.run(now + timedelta(minutes=1))
    world.run(now + timedelta(minutes=2))  # settled: nothing more happens
    drafts = graph.drafts()
    assert len(drafts) == 2 and all(NOTE in d["body"]["content"] for d in drafts)
    assert {d.state for d in world.ledger.drafts() if d.kind == THANK_YOU} == {
        DraftState.CREATED
    }
    assert world.creates() == 2

    mailbox, _ = open_both(graph, world.account)
    graph.lose_answer("DELETE", "/me/messages/", how)
    mailbox.retract(drafts[0]["id"])
    assert len(graph.drafts()) == 1


@pytest.mark.parametrize("how", ["drop", "504"])
def test_graph_retraction_whose_answer_was_lost_is_done_not_an_edit(
    graph: GraphEmulator, tmp_path: Path, how: str
) -> None:
    # Observed first, as the engine does, so the DELETE carries If-Match. Repeated after its
    # answer was lost, it meets the item it moved to Deleted Items under a new changeKey
    # (412): that is the retraction done, not the user's edit (it used to fail the pass).
    world = Graph(graph, tmp_path)
    world.add()
    world.run(GRAPH_START + timedelta(hours=4))
    mailbox, _ = open_both(graph, world.account)
    first, second = graph.drafts()
    for draft in (first, second):
        mailbox.observe(draft["id"], draft["internetMessageId"])
    graph.lose_answer("DELETE", "/me/messages/", how)
    mailbox.retract(first["id"])
    assert [d["id"] for d in graph.drafts()] == [second["id"]]
    # A draft the user changed since it was observed is still refused.
    graph.user_edits(second["id"], body="My own words.")
    with pytest.raises(ProviderError, match="changed before we removed it"):
        mailbox.retract(second["id"])
    assert [d["id"] for d in graph.drafts()] == [second["id"]]


@pytest.mark.server
def test_imap_vanished_drafts_pause_every_pass_until_drafts_is_back(on_imap: Imap) -> None:
    # The account's Drafts folder is "Kladde": the test Dovecot recreates its own "Drafts" at
    # once, so this one is what vanishes (as when another program removes it).
    assert on_imap.account.tables.get("imap") is not None
    on_imap.account = replace(on_imap.account,
                              tables={"imap": replace(on_imap.account.tables["imap"],
                                                      drafts_folder="Kladde")})
    with on_imap.world._client() as client:
        client.create_folder("Kladde")
    on_imap.put()
    on_imap.run(on_imap.end - timedelta(hours=2))
    with on_imap.world._client() as client:
        client.delete_folder("Kladde")
    now = on_imap.end + timedelta(minutes=5)
    for read_calendar in (True, False, True):  # neither kind of pass lifts it, or writes
        report = engine.reconcile(on_imap.account, on_imap.ledger, now=now,
                                  read_calendar=read_calendar)
        assert report.paused and "Drafts" in report.paused
        assert set(on_imap.ledger.pause_causes(on_imap.account.name)) == {"mailbox"}
    assert {d.state for d in on_imap.ledger.drafts()} == {DraftState.PLANNED}
    with on_imap.world._client() as client:
        client.create_folder("Kladde")
    on_imap.run(now + timedelta(minutes=1), read_calendar=False)
    assert on_imap.ledger.pause_causes(on_imap.account.name) == {}
    with on_imap.world._client() as client:
        client.select_folder("Kladde", readonly=True)
        assert len(client.search(["NOT", "DELETED"])) == 2
    on_imap.settled(now + timedelta(minutes=1))


def test_graph_cancelled_then_reinstated_gets_its_drafts(
    graph: GraphEmulator, tmp_path: Path
) -> None:
    world = Graph(graph, tmp_path)
    ident = world.add()
    world.run(GRAPH_START - timedelta(hours=2))
    graph.update_event(ident, isCancelled=True)
    world.run(GRAPH_START - timedelta(hours=1))
    assert {d.state for d in world.ledger.drafts()} == {DraftState.CANCELLED}
    graph.update_event(ident, isCancelled=False)
    world.run(GRAPH_START + timedelta(hours=4))
    assert world.drafts_to() == [ANN, LEE]
    world.run(GRAPH_START + timedelta(hours=4))
    assert world.creates() == 2


def test_graph_deleted_event_is_held_then_removed(graph: GraphEmulator, tmp_path: Path) -> None:
    world = Graph(graph, tmp_path)
    ident = world.add()
    world.run(GRAPH_START - timedelta(hours=2))
    graph.delete_event(ident)
    world.run(GRAPH_START + timedelta(hours=2, minutes=30))  # due, but missing: held
    assert {d.state for d in world.ledger.drafts()} == {DraftState.PLANNED}
    assert graph.drafts() == []
    world.run(GRAPH_START + timedelta(hours=3, minutes=30))  # gone for the grace period
    assert {d.state for d in world.ledger.drafts()} == {DraftState.CANCELLED}
    assert graph.drafts() == [] and world.creates() == 0
