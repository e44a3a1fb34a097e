"""Cursors never skip: each test starts from a path that used to lose a reply or an interview.

A cursor is an optimisation: a file with a wrong time, a message whose handling fails, a read
that missed something, a calendar window that moved on must all end in the mailbox the current
state calls for.
"""

from __future__ import annotations

import email
import json
import mailbox
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

import caldav
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mailbridge_providers import gmail, imap, local
from mailbridge_providers.caldav import CalDavSettings, open_calendar
from mailbridge_providers.local import FileCalendar, MaildirMailbox
from mailbridge_providers.windowed import MARGIN, windowed

from mailbridge import classify, cli, engine, secrets, timing
from mailbridge.adapters import Mailbox
from mailbridge.ledger import Ledger
from mailbridge.mailparse import date_of_head
from mailbridge.model import CalendarBatch, DraftKind, DraftState, Folder, Window
from mailbridge.settings import AccountSettings, CalendarSettings
from tests import test_gmail as gmail_side
from tests import test_imap as imap_side
from tests import test_outlook as outlook_side
from tests.emulators.google import GoogleEmulator, interview_event, running
from tests.emulators.graph import GraphEmulator
from tests.servers import PASSWORD, Dovecot, Radicale
from tests.test_caldav import NOW as DAV_NOW
from tests.test_caldav import vevent
from tests.test_engine import END, LEAD, OTHER, USER, World, event_ics, follow_up_waiting
from tests.test_outlook import T0


@pytest.fixture
def world(tmp_path: Path) -> World:
    w = World(tmp_path)
    yield w
    w.ledger.close()


def deliver(world: World, sender: str, subject: str, *, folder: str = "",
            in_reply_to: str = "", at: datetime = END, file_age: float | None = None,
            extra: dict[str, str] | None = None) -> Path:
    """A message dropped into INBOX (or ``folder``) as a mail client would; its file path.

    ``file_age`` sets the file's modification time that many seconds before now (negative: in
    the future), as a sync tool restoring times, or a clock gone wrong, does.
    """
    message = EmailMessage()
    message["From"] = sender
    message["To"] = USER
    message["Subject"] = subject
    message["Date"] = format_datetime(at)
    message["Message-ID"] = f"<{abs(hash((sender, subject, at, folder)))}@northwind-robotics.com>"
    if in_reply_to:
        message["In-Reply-To"] = in_reply_to
    for k, v in (extra or {}).items():
        message[k] = v
    message.set_content("Thanks, we will be in touch next week.")
    root = world.root / "Maildir"
    box = mailbox.Maildir(root / f".{folder}" if folder else root, factory=None, create=True)
    key = box.add(message.as_bytes())
    path = Path(box._path, box._lookup(key))  # type: ignore[attr-defined]
    if file_age is not None:
        stamp = time.time() - file_age
        os.utime(path, (stamp, stamp))
    return path


def thank_you_to_lead(world: World) -> str:
    return next(d.message_id for d in world.drafts(DraftKind.THANK_YOU)
                if d.recipient.email == LEAD)


def assert_follow_up_taken_back(world: World) -> None:
    assert world.messages("Drafts") == []
    assert len(world.messages("Trash")) == 1
    (row,) = world.drafts(DraftKind.FOLLOW_UP)
    assert row.state == DraftState.RETRACTED


def assert_follow_up_waiting(world: World) -> None:
    (draft,) = world.messages("Drafts")
    assert draft["To"].addresses[0].addr_spec == LEAD
    (row,) = world.drafts(DraftKind.FOLLOW_UP)
    assert row.state == DraftState.CREATED


# --- local Maildir: what was seen is kept by file name ----------------------------------------


def settle(maildir: Path, ago: float = 120) -> None:
    """Every folder of the Maildir last changed ``ago`` seconds back, as an idle daemon sees."""
    for folder in (maildir, *maildir.glob(".*")):
        for sub in ("new", "cur"):
            os.utime(folder / sub, ns=(time.time_ns() - int(ago * 1e9),) * 2)


def times_of(folder: Path) -> list[int]:
    return [(folder / sub).stat().st_mtime_ns for sub in ("new", "cur")]


def set_times(folder: Path, times: list[int]) -> None:
    """The folder's new/ and cur/ times put back: a change the folder's time does not show."""
    for sub, ns in zip(("new", "cur"), times, strict=True):
        os.utime(folder / sub, ns=(ns, ns))


def bucket_of(path: Path) -> int:
    return local._mark(path.name.split(":")[0]) >> 56


def test_a_future_file_time_does_not_hide_a_later_reply(world: World) -> None:
    due = follow_up_waiting(world)
    # A newsletter whose file says it arrived next year (a restored backup, a wrong clock).
    deliver(world, "news@shop.example", "Deals", at=due, file_age=-365 * 86400)
    world.run(due + timedelta(minutes=5))
    deliver(world, f"Dana Whitfield <{LEAD}>", "Re: Thank you", at=due + timedelta(hours=1),
            in_reply_to=thank_you_to_lead(world))
    world.run(due + timedelta(hours=1, minutes=1))
    assert_follow_up_taken_back(world)


def test_a_reply_moved_back_from_junk_with_its_old_file_time_is_seen(world: World) -> None:
    due = follow_up_waiting(world)
    # The reply was filed as junk; newer mail arrived and was read before the user noticed.
    junk = deliver(world, f"Dana Whitfield <{LEAD}>", "Re: Thank you", folder="Junk",
                   at=due + timedelta(hours=1), in_reply_to=thank_you_to_lead(world),
                   file_age=3600)
    deliver(world, "news@shop.example", "Deals", at=due + timedelta(hours=2), file_age=60)
    world.run(due + timedelta(hours=2, minutes=1))
    assert_follow_up_waiting(world)
    # Moving keeps the file's time: it is older than everything already read from INBOX.
    os.rename(junk, world.root / "Maildir" / "cur" / junk.name)
    world.run(due + timedelta(hours=3))
    assert_follow_up_taken_back(world)


def test_an_unchanged_maildir_folder_is_not_listed_again_and_any_change_is_seen(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.add_interview()
    world.run(END + timedelta(hours=2))
    inbox = world.root / "Maildir"
    since = END - timedelta(days=2)
    deliver(world, f"Dana Whitfield <{LEAD}>", "Re: hello", at=END + timedelta(hours=3))
    settle(inbox)
    box = MaildirMailbox(inbox)
    first = box.messages(None, since)
    assert len(first.messages) == 1
    listed: list[object] = []
    monkeypatch.setattr(local, "_files_of", lambda b: listed.append(b) or {})
    assert box.messages(first.cursor, since).messages == ()
    assert listed == []  # the INBOX was not listed: its folders' times vouch for it
    monkeypatch.undo()
    # New mail moves the folder's time: listed again, the message found.
    deliver(world, f"Dana Whitfield <{LEAD}>", "Re: more", at=END + timedelta(hours=4))
    second = box.messages(first.cursor, since)
    assert [m.subject for m in second.messages] == ["Re: more"]
    # A folder changed within the last two seconds is listed whatever its time says: mail
    # landing in the same clock tick leaves the time as it was.
    times = [(inbox / sub).stat().st_mtime_ns for sub in ("new", "cur")]
    deliver(world, f"Dana Whitfield <{LEAD}>", "Re: same tick", at=END + timedelta(hours=5))
    for sub, ns in zip(("new", "cur"), times, strict=True):
        os.utime(inbox / sub, ns=(ns, ns))
    assert [m.subject for m in box.messages(second.cursor, since).messages] == ["Re: same tick"]
    # No cursor (a wiped ledger): everything is read again.
    assert len(box.messages(None, since).messages) == 3


def test_the_maildir_reads_only_names_it_has_not_seen(world: World) -> None:
    world.add_interview()
    world.run(END + timedelta(hours=2))
    reply = deliver(world, f"Dana Whitfield <{LEAD}>", "Re: hello", at=END + timedelta(hours=3))
    box = MaildirMailbox(world.root / "Maildir")
    since = END - timedelta(days=2)
    first = box.messages(None, since)
    assert [m.folder for m in first.messages] == [Folder.INBOX]
    assert box.messages(first.cursor, since).messages == ()
    os.chmod(reply, 0)  # unreadable: a second read would fail loudly
    try:
        assert box.messages(first.cursor, since).messages == ()
    finally:
        os.chmod(reply, 0o600)
    # A wider look (an older interview appeared) reads everything again.
    assert len(box.messages(first.cursor, since - timedelta(days=30)).messages) == 1
    # Mail dated before ``since`` is passed over (its head read, not the rest); undated is not.
    deliver(world, "old@acme.example", "Old news", at=since - timedelta(days=1))
    undated = deliver(world, "who@acme.example", "No date", at=END)
    undated.write_bytes(b"".join(line for line in undated.read_bytes().splitlines(True)
                                 if not line.startswith(b"Date:")))
    both = box.messages(None, since)
    assert sorted(m.subject for m in both.messages) == ["No date", "Re: hello"]
    # So does the file-time cursor of earlier versions: it is not trusted.
    old = json.dumps({"inbox": {"ns": time.time_ns() + 10**15, "keys": []}})
    assert len(box.messages(old, since).messages) == 2


def test_another_process_trusts_a_settled_folder_and_reads_only_the_buckets_that_moved(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each read below is a new MaildirMailbox, as after a restart or in `run --once`: all it
    # has is the cursor the ledger kept.
    world.add_interview()
    world.run(END + timedelta(hours=2))
    root = world.root / "Maildir"
    since = END - timedelta(days=2)
    news = [deliver(world, "news@shop.example", f"Deals {n}", at=END + timedelta(hours=3))
            for n in range(40)]
    settle(root)
    first = MaildirMailbox(root).messages(None, since)
    assert len(first.messages) == 40
    listed: list[object] = []
    monkeypatch.setattr(local, "_files_of", lambda b: listed.append(b) or {})
    idle = MaildirMailbox(root).messages(first.cursor, since)
    assert idle.messages == () and listed == []  # the cursor's stamps vouch for the folders
    monkeypatch.undo()
    # A reply after the settle moves the folder's time. Only the files of its bucket are read
    # again (and reported: the engine ignores what it handled); the other news are not.
    reply = deliver(world, f"Dana Whitfield <{LEAD}>", "Re: hello", at=END + timedelta(hours=4))
    settle(root, ago=60)  # looked at a minute later: settled, but not the stamp the cursor holds
    later = MaildirMailbox(root).messages(idle.cursor, since)
    again = [f"Deals {n}" for n, path in enumerate(news) if bucket_of(path) == bucket_of(reply)]
    assert sorted(m.subject for m in later.messages) == sorted(["Re: hello", *again])
    # A message taken away changes its bucket too: nothing is missed, nothing new is made up.
    news[0].unlink()
    gone = MaildirMailbox(root).messages(later.cursor, since)
    assert {m.subject for m in gone.messages} <= {
        f"Deals {n}" for n, path in enumerate(news) if bucket_of(path) == bucket_of(news[0])}
    assert MaildirMailbox(root).messages(gone.cursor, since).messages == ()


def test_a_listing_made_within_the_settle_window_is_not_vouched_for_by_its_stamp(
    world: World
) -> None:
    world.add_interview()
    world.run(END + timedelta(hours=2))
    root = world.root / "Maildir"
    since = END - timedelta(days=2)
    hello = deliver(world, f"Dana Whitfield <{LEAD}>", "Re: hello", at=END + timedelta(hours=3))
    settle(root)
    settle(root, ago=1.5)  # INBOX changed a moment ago: within the settle window
    window = times_of(root)
    first = MaildirMailbox(root).messages(None, since)
    # Mail landing in the same clock tick leaves the folder's time as it was; once that time
    # is old enough to trust, it is the very time of the first listing. It is no proof.
    tick = deliver(world, f"Dana Whitfield <{LEAD}>", "Re: same tick",
                   at=END + timedelta(hours=4))
    set_times(root, window)
    time.sleep(max(0.0, (local._SETTLE_NS - (time.time_ns() - max(window))) / 1e9) + 0.1)
    assert local._stamp(mailbox.Maildir(root, create=False)) == tuple(window)
    later = MaildirMailbox(root).messages(first.cursor, since)
    # The new file's bucket is read again, and reported (the engine ignores what it handled):
    # one time in 256 the reply already seen shares it.
    again = ["Re: hello"] if bucket_of(hello) == bucket_of(tick) else []
    assert sorted(m.subject for m in later.messages) == sorted(["Re: same tick", *again])


def test_a_cursor_this_process_moved_past_but_the_ledger_did_not_keep_is_read_again(
    world: World
) -> None:
    world.add_interview()
    world.run(END + timedelta(hours=2))
    root = world.root / "Maildir"
    since = END - timedelta(days=2)
    box = MaildirMailbox(root)
    first = box.messages(None, since)
    deliver(world, f"Dana Whitfield <{LEAD}>", "Re: hello", at=END + timedelta(hours=3))
    assert [m.subject for m in box.messages(first.cursor, since).messages] == ["Re: hello"]
    # That pass failed: the ledger still holds the first cursor. The box's own memory of the
    # reply must not hide it.
    assert [m.subject for m in box.messages(first.cursor, since).messages] == ["Re: hello"]


def test_the_maildir_cursor_does_not_grow_with_the_mailbox(world: World) -> None:
    world.add_interview()
    world.run(END + timedelta(hours=2))
    root = world.root / "Maildir"
    since = END - timedelta(days=2)
    deliver(world, "news@shop.example", "Deals", at=END + timedelta(hours=3))
    settle(root)
    small = MaildirMailbox(root).messages(None, since).cursor or ""
    old = deliver(world, "news@shop.example", "Old deals", at=since - timedelta(days=1))
    for n in range(1000):  # copies, as a mail program keeps them: only their heads are read
        (root / "cur" / f"{n}.M{n}P1.copy:2,S").write_bytes(old.read_bytes())
    settle(root)
    large = MaildirMailbox(root).messages(None, since).cursor or ""
    assert len(large) == len(small) < 8 * 1024


@pytest.mark.parametrize("change", ["rewritten in place", "flags changed", "deleted"])
def test_a_waiting_draft_changed_behind_a_settled_drafts_folder_is_seen(
    world: World, change: str
) -> None:
    # The daemon's way: the mailbox kept open from pass to pass, so Drafts' listing is kept
    # while the folder's times stand.
    world.add_interview()
    keep = engine.OpenProviders(world.account)

    def run(now: datetime) -> None:
        report = engine.reconcile(world.account, world.ledger, now=now, keep=keep)
        assert report.error is None, report.error

    run(END + timedelta(hours=2))
    drafts = world.root / "Maildir" / ".Drafts"
    path = sorted((drafts / "cur").iterdir())[0]
    settle(world.root / "Maildir")
    run(END + timedelta(hours=2, minutes=1))  # the drafts read once: their versions recorded
    run(END + timedelta(hours=2, minutes=2))  # an idle look: the listing kept, its stamp settled
    before = times_of(drafts)
    (row,) = [d for d in world.drafts() if d.provider_id == path.name.split(":")[0]]
    assert row.state == DraftState.CREATED and row.version.startswith(path.name + "/")
    if change == "rewritten in place":  # same name, same file: the folder's time stays
        path.write_bytes(path.read_bytes() + b"\nP.S. I enjoyed meeting the team.\n")
    elif change == "flags changed":  # the user flagged it: a rename
        os.rename(path, path.with_name(path.name.replace(":2,DS", ":2,DFS")))
    else:
        path.unlink()
    set_times(drafts, before)  # the worst case: the folder's time says nothing changed
    run(END + timedelta(hours=2, minutes=3))
    (row,) = [d for d in world.drafts() if d.id == row.id]
    if change == "rewritten in place":
        assert row.state == DraftState.USER_EDITED
    elif change == "flags changed":
        assert row.state == DraftState.CREATED and ":2,DFS/" in row.version
    else:
        assert row.state == DraftState.USER_DELETED
    keep.close()


# --- the engine: a message whose handling fails is kept ---------------------------------------


def test_a_message_whose_handling_raises_once_is_retried_and_shown_meanwhile(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    due = follow_up_waiting(world)
    deliver(world, f"Dana Whitfield <{LEAD}>", "Re: Thank you", at=due + timedelta(hours=1),
            in_reply_to=thank_you_to_lead(world))
    real_match = classify.match
    failures = []

    def match_fails_once(message, *args):  # type: ignore[no-untyped-def]
        if message.sender.email == LEAD and not failures:
            failures.append(message.provider_id)
            raise OSError("the disk hiccuped")
        return real_match(message, *args)

    monkeypatch.setattr(classify, "match", match_fails_once)
    # Every pass a full listing: the failed message shows up again, and still waits its turn.
    monkeypatch.setattr(engine, "FULL_LISTING_EVERY", timedelta(0))
    failed_at = due + timedelta(hours=1, minutes=1)
    world.run(failed_at)
    assert failures
    assert_follow_up_waiting(world)
    kept = [a.reason for a in world.ledger.audit_entries()
            if a.decision == "message kept for retry"]
    assert len(kept) == 1 and "OSError" in kept[0]
    status = cli._status_data(world.settings, world.ledger, None)["accounts"][0]
    (waiting,) = status["waiting_messages"]
    assert waiting["from"] == LEAD and waiting["tries"] == 1
    assert any("could not be handled" in w for w in status["warnings"])

    world.run(failed_at + timedelta(minutes=1))  # backing off: not yet
    assert_follow_up_waiting(world)
    world.run(failed_at + engine.RETRY_FIRST)
    assert_follow_up_taken_back(world)
    assert engine.waiting_messages(world.ledger, "me") == {}
    assert any(a.decision == "message handled" for a in world.ledger.audit_entries())
    status = cli._status_data(world.settings, world.ledger, None)["accounts"][0]
    assert status["waiting_messages"] == []


def test_a_message_that_always_fails_is_given_up_with_an_audit_line(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    due = follow_up_waiting(world)
    deliver(world, f"Dana Whitfield <{LEAD}>", "Re: Thank you", at=due + timedelta(hours=1),
            in_reply_to=thank_you_to_lead(world))
    real_match = classify.match
    tries = []

    def match_always_fails(message, *args):  # type: ignore[no-untyped-def]
        if message.sender.email == LEAD:
            tries.append(message.provider_id)
            raise ValueError("cannot parse")
        return real_match(message, *args)

    monkeypatch.setattr(classify, "match", match_always_fails)
    now = due + timedelta(hours=1, minutes=1)
    for _ in range(engine.RETRY_LIMIT + 2):
        world.run(now)
        now += timedelta(days=1)
    decisions = [a.decision for a in world.ledger.audit_entries()]
    assert decisions.count("message kept for retry") == engine.RETRY_LIMIT - 1
    assert decisions.count("message given up") == 1
    assert len(tries) == engine.RETRY_LIMIT  # the daily full listing does not start it over
    (gone,) = engine.waiting_messages(world.ledger, "me").values()
    assert gone.given_up
    status = cli._status_data(world.settings, world.ledger, None)["accounts"][0]
    assert status["waiting_messages"] == []
    assert_follow_up_waiting(world)  # nothing was decided on a message we could not read


# --- any file-time order ---------------------------------------------------------------------

SENDERS = (f"Dana Whitfield <{LEAD}>", f"Priya Raman <{OTHER}>", "news@shop.example")


def inbox_replies(ledger: Ledger) -> set[tuple[str, str]]:
    return {(m.sender, m.message_id) for m in ledger.messages("me") if m.folder == Folder.INBOX}


def fresh_inbox_replies(world: World, now: datetime) -> set[tuple[str, str]]:
    """What a new ledger learns from one read of the mailbox as it is now.

    It reads the calendar while the interview is still inside the look-back window: an
    install that never knew the interview has nothing to match replies to.
    """
    fresh = Ledger.open(world.root / "fresh-state")
    maildir = MaildirMailbox(world.root / "Maildir")
    calendar = FileCalendar(world.root / "calendar", world.account.own_addresses)
    try:
        assert engine.Pass(world.account, fresh, END, maildir, calendar, False).sync_calendar()
        engine.Pass(world.account, fresh, now, maildir, calendar, False).sync_mail()
        return inbox_replies(fresh)
    finally:
        fresh.close()


@pytest.mark.slow
@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(
    st.tuples(st.sampled_from(SENDERS), st.integers(-400, 400), st.booleans(), st.booleans()),
    min_size=1, max_size=5,
))
def test_replies_in_any_file_time_order_retract_exactly_when_a_reply_exists(
    mail: list[tuple[str, int, bool, bool]],
) -> None:
    """Each message: sender, file time offset (days), filed in Junk first, a pass after it."""
    with tempfile.TemporaryDirectory() as tmp:
        world = World(Path(tmp))
        try:
            due = follow_up_waiting(world)
            now = due
            parent = thank_you_to_lead(world)
            moves: list[Path] = []
            for n, (sender, age_days, via_junk, pass_after) in enumerate(mail):
                now += timedelta(minutes=10)
                path = deliver(world, sender, f"Re: Thank you {n}", at=now,
                               folder="Junk" if via_junk else "",
                               in_reply_to="" if sender == SENDERS[2] else parent,
                               file_age=age_days * 86400.0)
                if via_junk:
                    moves.append(path)
                if pass_after:
                    world.run(now)
            for path in moves:
                os.rename(path, world.root / "Maildir" / "cur" / path.name)
            final = now + timedelta(minutes=10)
            world.run(final)
            replied = any(sender != SENDERS[2] for sender, *_ in mail)
            if replied:
                assert_follow_up_taken_back(world)
            else:
                assert_follow_up_waiting(world)
            # A fresh install reading the same mailbox now knows the same replies.
            assert inbox_replies(world.ledger) == fresh_inbox_replies(world, final)
            assert len(inbox_replies(world.ledger)) == sum(s != SENDERS[2] for s, *_ in mail)
        finally:
            world.ledger.close()


# --- the covered span, as a table -------------------------------------------------------------

DAY = timedelta(days=1)
W = Window(datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC))


def shifted(window: Window, start: timedelta, end: timedelta) -> Window:
    return Window(window.start + start, window.end + end)


@pytest.mark.parametrize(("later", "incremental"), [
    (W, True),  # the same window
    (shifted(W, DAY / 2, DAY / 2), True),  # moved inside the margin
    (shifted(W, DAY, DAY), True),  # exactly to the margin's end
    (shifted(W, DAY, DAY + timedelta(seconds=1)), False),  # past it
    (shifted(W, -timedelta(seconds=1), timedelta(0)), False),  # look-back grew
    (shifted(W, 7 * DAY, 7 * DAY), False),  # a week later
])
def test_a_calendar_cursor_is_used_only_inside_the_span_it_covers(
    later: Window, incremental: bool
) -> None:
    asked: list[tuple[str | None, Window]] = []

    def read(cursor: str | None, span: Window) -> CalendarBatch:
        asked.append((cursor, span))
        return CalendarBatch(events=(), complete=cursor is None, cursor=f"token{len(asked)}")

    first = windowed(read, None, W)
    assert asked == [(None, Window(W.start, W.end + MARGIN))]
    windowed(read, first.cursor, later)
    if incremental:
        assert asked[1] == ("token1", Window(W.start, W.end + MARGIN))
    else:
        assert asked[1] == (None, Window(later.start, later.end + MARGIN))


@pytest.mark.parametrize("cursor", [
    "token", "{}", "[1]", '{"cursor": "t"}', '{"covers": [], "cursor": "t"}',
    '{"covers": ["x", "y"], "cursor": "t"}',
])
def test_a_calendar_cursor_without_its_span_means_a_full_listing(cursor: str) -> None:
    asked: list[str | None] = []

    def read(inner: str | None, span: Window) -> CalendarBatch:
        asked.append(inner)
        return CalendarBatch(events=(), complete=True, cursor="fresh")

    windowed(read, cursor, W)
    assert asked == [None]


# --- calendar windows move ---------------------------------------------------------------------
#
# An interview booked further ahead than `lookahead` is outside the first listing; nobody edits
# it, so no sync token or delta link ever reports it. Each source must list the window afresh
# once the window reaches past what its cursor covers. The engine's daily full listing would
# hide a source that does not, so these passes run with it switched off.

LOOKAHEAD = timedelta(days=14)
BEYOND = timedelta(days=20)  # when the interview is, counted from the first pass


@pytest.fixture
def no_daily_listing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "FULL_LISTING_EVERY", timedelta(days=10_000))


def passes_until(run: Callable[[datetime], None], first: datetime, start: datetime) -> None:
    """A pass every twelve hours from ``first`` until the interview's drafts are due."""
    now = first
    while now < start:
        run(now)
        now += timedelta(hours=12)
    run(start + timedelta(hours=4))
    run(start + timedelta(hours=4, minutes=5))  # a pass plans what is due, the next settles


@pytest.fixture
def graph() -> Iterator[GraphEmulator]:
    emulator = GraphEmulator().start()
    yield emulator
    emulator.stop()
    assert emulator.violations == [], "requests the real Graph would reject"


def test_graph_delta_older_than_its_window_lists_the_new_window(graph: GraphEmulator) -> None:
    _, calendar = outlook_side.open_both(graph, outlook_side.sign_in(graph))
    first_window = Window(T0 - timedelta(days=3), T0 + LOOKAHEAD)
    graph.add_event("Interview", T0 + BEYOND, T0 + BEYOND + timedelta(hours=1))
    first = calendar.changes(None, first_window)
    assert first.complete and first.events == ()

    half_day = Window(first_window.start + timedelta(hours=12),
                      first_window.end + timedelta(hours=12))
    idle = calendar.changes(first.cursor, half_day)  # still inside what the link covers
    assert not idle.complete and idle.events == ()
    assert graph.counts["GET calendarView/delta"] == 2

    moved = Window(first_window.start + timedelta(days=7), first_window.end + timedelta(days=7))
    later = calendar.changes(idle.cursor, moved)
    assert later.complete
    assert [e.title for e in later.events] == ["Interview"]


def test_graph_interview_booked_beyond_lookahead_gets_its_drafts(
    graph: GraphEmulator, tmp_path: Path, no_daily_listing: None
) -> None:
    account = outlook_side.sign_in(graph)
    account = replace(account, calendar=replace(account.calendar, lookahead=LOOKAHEAD))
    mailbox, calendar = outlook_side.open_both(graph, account)
    start = T0 + BEYOND
    graph.add_event(
        "Interview: Fabrikam — Staff Engineer", start, start + timedelta(hours=1),
        organizer=("lee@fabrikam.example", "Lee Lead"),
        attendees=[
            ("lee@fabrikam.example", "Lee Lead", "required", "organizer"),
            ("ann@fabrikam.example", "Ann Other", "required", "accepted"),
            (graph.user, graph.user_name, "required", "accepted"),
        ],
    )
    ledger = Ledger.open(tmp_path / "state")

    def run(now: datetime) -> None:
        report = engine.reconcile(account, ledger, now=now, mailbox=mailbox, calendar=calendar)
        assert report.error is None, report.error

    passes_until(run, T0, start)
    ledger.close()
    to = sorted(d["toRecipients"][0]["emailAddress"]["address"] for d in graph.drafts())
    assert to == ["ann@fabrikam.example", "lee@fabrikam.example"]


@pytest.fixture
def google() -> Iterator[GoogleEmulator]:
    with running(gmail_side.ME) as emulator:
        yield emulator
        assert emulator.violations == [], "requests the real API would refuse"


@pytest.fixture
def google_account(google: GoogleEmulator, tmp_path: Path) -> AccountSettings:
    secrets.store("personal", gmail.KEYRING_PURPOSE, "refresh-1")
    account = gmail_side.make_account(google, tmp_path)
    return replace(account, calendar=replace(account.calendar, lookahead=LOOKAHEAD))


def test_google_sync_token_older_than_its_window_lists_the_new_window(
    google: GoogleEmulator, google_account: AccountSettings
) -> None:
    calendar = gmail.GoogleCalendar(google_account, gmail_side.fast_api(google_account,
                                                                        "calendar"))
    now = gmail_side.NOW
    google.add_event(interview_event("far", now + BEYOND))
    first_window = Window(now - timedelta(days=3), now + LOOKAHEAD)
    first = calendar.changes(None, first_window)
    assert first.complete and first.events == ()
    idle = calendar.changes(first.cursor, Window(first_window.start + timedelta(hours=12),
                                                 first_window.end + timedelta(hours=12)))
    assert not idle.complete and idle.events == ()

    moved = Window(first_window.start + timedelta(days=7), first_window.end + timedelta(days=7))
    later = calendar.changes(idle.cursor, moved)
    assert later.complete and [e.key.uid for e in later.events] == ["far"]


def test_google_interview_booked_beyond_lookahead_gets_its_drafts(
    google: GoogleEmulator, google_account: AccountSettings, tmp_path: Path,
    no_daily_listing: None,
) -> None:
    mailbox = gmail.GmailMailbox(google_account, gmail_side.fast_api(google_account, "gmail"))
    calendar = gmail.GoogleCalendar(google_account, gmail_side.fast_api(google_account,
                                                                        "calendar"))
    start = gmail_side.NOW + BEYOND
    google.add_event(interview_event("iv1", start))
    ledger = Ledger.open(tmp_path / "state")

    def run(now: datetime) -> None:
        report = engine.reconcile(google_account, ledger, now=now, mailbox=mailbox,
                                  calendar=calendar)
        assert report.error is None, report.error

    passes_until(run, gmail_side.NOW, start)
    ledger.close()
    to = sorted(str(m["To"]) for m in google.draft_messages().values())
    assert to == ["Maria Chen <maria@acme.example>", "Raj Patel <raj@acme.example>"]


@pytest.fixture
def dav(radicale: Radicale) -> Iterator[tuple[caldav.Calendar, AccountSettings]]:
    user = radicale.new_user()
    client = caldav.DAVClient(url=radicale.url, username=user, password=PASSWORD)
    calendar = client.principal().make_calendar(name="Work")
    account = AccountSettings(
        name="work", provider="local", address="jordan@example.org", display_name="Jordan Lee",
        calendar=CalendarSettings(kind="caldav", lookahead=LOOKAHEAD, options=CalDavSettings(
            url=radicale.url, username=user, password_command=f"echo {PASSWORD}")),
    )
    yield calendar, account
    client.close()


@pytest.mark.server
def test_caldav_sync_token_older_than_its_window_lists_the_new_window(dav) -> None:
    calendar, account = dav
    source = open_calendar(account)
    calendar.save_event(vevent("far@acme", DAV_NOW + BEYOND))
    first_window = Window(DAV_NOW - timedelta(days=3), DAV_NOW + LOOKAHEAD)
    first = source.changes(None, first_window)
    assert first.complete and first.events == ()
    idle = source.changes(first.cursor, Window(first_window.start + timedelta(hours=12),
                                               first_window.end + timedelta(hours=12)))
    assert not idle.complete and idle.events == ()

    moved = Window(first_window.start + timedelta(days=7), first_window.end + timedelta(days=7))
    later = source.changes(idle.cursor, moved)
    assert later.complete and [e.key.uid for e in later.events] == ["far@acme"]


@pytest.mark.server
def test_caldav_interview_booked_beyond_lookahead_gets_its_drafts(
    dav, tmp_path: Path, no_daily_listing: None
) -> None:
    calendar, account = dav
    start = DAV_NOW + BEYOND
    calendar.save_event(vevent("iv1@acme", start))
    mailbox.Maildir(tmp_path / "Maildir", create=True)
    drafts_box = MaildirMailbox(tmp_path / "Maildir")
    source = open_calendar(account)
    ledger = Ledger.open(tmp_path / "state")

    def run(now: datetime) -> None:
        report = engine.reconcile(account, ledger, now=now, mailbox=drafts_box, calendar=source)
        assert report.error is None, report.error

    passes_until(run, DAV_NOW, start)
    ledger.close()
    drafts = mailbox.Maildir(tmp_path / "Maildir" / ".Drafts", factory=None, create=False)
    to = [email.message_from_bytes(drafts.get_bytes(k))["To"] for k in drafts.iterkeys()]
    assert len(to) == 1 and "avery.chen@acme.example" in to[0]


# --- a reply the incremental read missed, on every mailbox ---------------------------------------
#
# The reply arrives after the thank-yous were sent; an incremental read moves past it without
# reporting it (a provider bug, a lost notification: the cursor is all the ledger keeps). The
# daily full listing must find it before the follow-up is due, so no follow-up is written.
# With the daily listing switched off, the same path writes the follow-up: the broken path.

REAL_END = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=3)
DANA = f"Dana Whitfield <{LEAD}>"


class MailSide:
    """One mailbox kind as the user and the employer act on it."""

    account: AccountSettings
    mailbox: Mailbox

    def send_thank_yous(self) -> None:
        raise NotImplementedError

    def deliver_reply(self) -> None:
        raise NotImplementedError

    def draft_recipients(self) -> list[str]:
        raise NotImplementedError


def reply_bytes(to: str) -> bytes:
    message = EmailMessage()
    message["From"] = DANA
    message["To"] = to
    message["Subject"] = "Re: Thank you"
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = f"<reply-{time.time_ns()}@northwind-robotics.com>"
    message.set_content("Thanks, Jordan. We will be in touch next week.")
    return message.as_bytes()


class LocalSide(MailSide):
    def __init__(self, root: Path) -> None:
        mailbox.Maildir(root / "Maildir", create=True)
        self.root = root / "Maildir"
        self.mailbox = MaildirMailbox(self.root)
        self.account = AccountSettings(name="me", provider="local", address=USER,
                                       display_name="Jordan Lee")

    def _box(self, name: str) -> mailbox.Maildir:
        return mailbox.Maildir(self.root / f".{name}" if name else self.root, factory=None,
                               create=False)

    def send_thank_yous(self) -> None:
        drafts, sent = self._box("Drafts"), self._box("Sent")
        for key in list(drafts.keys()):
            sent.add(drafts.get_bytes(key))
            drafts.remove(key)

    def deliver_reply(self) -> None:
        self._box("").add(reply_bytes(USER))

    def draft_recipients(self) -> list[str]:
        drafts = self._box("Drafts")
        return sorted(str(email.message_from_bytes(drafts.get_bytes(k))["To"])
                      for k in drafts.iterkeys())


class ImapSide(MailSide):
    def __init__(self, dovecot: Dovecot) -> None:
        user = dovecot.new_user()
        self.account = replace(imap_side.account_for(dovecot, user), display_name="Jordan Lee")
        self.mailbox = imap.open_mailbox(self.account)
        self.client = dovecot.client(user)

    def send_thank_yous(self) -> None:
        self.client.select_folder("Drafts")
        self.client.move(self.client.search(["ALL"]), "Sent")

    def deliver_reply(self) -> None:
        self.client.append("INBOX", reply_bytes(self.account.address))

    def draft_recipients(self) -> list[str]:
        self.client.select_folder("Drafts")
        fetched = self.client.fetch(self.client.search(["NOT", "DELETED"]), ["BODY.PEEK[]"])
        return sorted(str(email.message_from_bytes(d[b"BODY[]"])["To"])
                      for d in fetched.values())


class GmailSide(MailSide):
    def __init__(self, emu: GoogleEmulator, tmp: Path) -> None:
        secrets.store("personal", gmail.KEYRING_PURPOSE, "refresh-1")
        self.emu = emu
        self.account = gmail_side.make_account(emu, tmp)
        self.mailbox = gmail.GmailMailbox(self.account, gmail_side.fast_api(self.account,
                                                                            "gmail"))

    def send_thank_yous(self) -> None:
        for draft_id in list(self.emu.drafts):
            self.emu.user_sends_draft(draft_id)

    def deliver_reply(self) -> None:
        self.emu.deliver(reply_bytes(self.account.address))

    def draft_recipients(self) -> list[str]:
        return sorted(str(m["To"]) for m in self.emu.draft_messages().values())


class GraphSide(MailSide):
    def __init__(self, emu: GraphEmulator) -> None:
        self.emu = emu
        self.account = outlook_side.sign_in(emu)
        self.mailbox, _ = outlook_side.open_both(emu, self.account)

    def send_thank_yous(self) -> None:
        for stored in self.emu.drafts():
            self.emu.user_sends(stored["id"])

    def deliver_reply(self) -> None:
        self.emu.deliver(LEAD, "RE: Thank you", "Thanks, Jordan. We will be in touch.",
                         name="Dana Whitfield", received=datetime.now(UTC))

    def draft_recipients(self) -> list[str]:
        return sorted(d["toRecipients"][0]["emailAddress"]["address"] for d in self.emu.drafts())


@pytest.fixture(params=["local", pytest.param("imap", marks=pytest.mark.server), "gmail", "graph"])
def side(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MailSide]:
    if request.param == "local":
        yield LocalSide(tmp_path)
    elif request.param == "imap":
        made = ImapSide(request.getfixturevalue("dovecot"))
        yield made
        made.client.logout()
        made.mailbox.close()
    elif request.param == "gmail":
        with running(gmail_side.ME) as emu:
            yield GmailSide(emu, tmp_path)
            assert emu.violations == []
    else:
        emu = GraphEmulator().start()
        yield GraphSide(emu)
        emu.stop()
        assert emu.violations == []


@pytest.mark.parametrize("daily", [True, False], ids=["daily-listing", "without-it"])
def test_a_reply_the_incremental_read_missed_is_found_by_the_daily_full_listing(
    side: MailSide, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, daily: bool
) -> None:
    if not daily:
        monkeypatch.setattr(engine, "FULL_LISTING_EVERY", timedelta(days=10_000))
    (tmp_path / "calendar").mkdir()
    (tmp_path / "calendar" / "iv1.ics").write_text(
        event_ics("iv1", REAL_END - timedelta(hours=1), REAL_END,
                  title="Northwind Robotics - Technical Interview").replace(
                      USER, side.account.address),
        encoding="utf-8")
    calendar = FileCalendar(tmp_path / "calendar", side.account.own_addresses)
    ledger = Ledger.open(tmp_path / "state")
    name = side.account.name

    def run(now: datetime) -> None:
        for minute in (0, 1):  # a pass plans what is due, the next carries it out
            report = engine.reconcile(side.account, ledger, now=now + timedelta(minutes=minute),
                                      mailbox=side.mailbox, calendar=calendar)
            assert report.error is None, report.error

    run(REAL_END + timedelta(hours=2))
    assert side.draft_recipients() and len(side.draft_recipients()) == 2
    side.send_thank_yous()
    run(REAL_END + timedelta(hours=3))
    run(REAL_END + timedelta(days=3))  # a daily listing, before the reply
    side.deliver_reply()
    since = min(i.start for i in ledger.interviews(name)) - timedelta(days=1)
    missed = side.mailbox.messages(ledger.cursor(name, engine.MAILBOX), since)
    assert any(m.sender.email == LEAD for m in missed.messages)
    with ledger.transaction():
        ledger.set_cursor(name, engine.MAILBOX, missed.cursor, REAL_END)
    run(REAL_END + timedelta(days=3, hours=1))
    assert not [m for m in ledger.messages(name) if m.sender == LEAD]  # missed, as staged

    due = timing.follow_up_due(REAL_END, None, side.account.policy)
    run(due)
    run(due + timedelta(hours=1))
    if daily:
        assert side.draft_recipients() == []
        assert [m.sender for m in ledger.messages(name) if m.sender == LEAD] == [LEAD]
        assert not [d for d in ledger.drafts(name) if d.kind == DraftKind.FOLLOW_UP
                    and d.state.on_server]
    else:
        assert len(side.draft_recipients()) == 1 and LEAD in side.draft_recipients()[0]
    ledger.close()


@pytest.mark.parametrize(("head", "expected"), [
    (b"From: a@b\r\nDate: Tue, 17 Nov 2026 16:00:00 +0100\r\n\r\nbody",
     datetime(2026, 11, 17, 15, 0, tzinfo=UTC)),
    (b"Date: Tue, 17 Nov 2026 16:00:00 -0000\r\n\r\n", datetime(2026, 11, 17, 16, 0, tzinfo=UTC)),
    (b"From: a@b\r\n\r\nDate: Tue, 17 Nov 2026 16:00:00 +0000\r\n", None),  # in the body
    (b"Date: yesterday\r\n\r\n", None),
    (b"", None),
    (b"Subject: cut short by the 64 KiB limit " + b"x" * 100, None),
])
def test_the_date_of_a_message_head(head: bytes, expected: datetime | None) -> None:
    assert date_of_head(head) == expected
