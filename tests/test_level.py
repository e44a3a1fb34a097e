"""Level-triggered, seam by seam, on the local provider (real .ics files, a real Maildir).

Each test starts from a path that used to leave the wrong mailbox behind (cancel then
reinstate, vanish then come back, ledger lost, a second ledger, a renamed account, a create
whose answer was lost, a paused account with a mail-only pass) and asserts that the mailbox
holds exactly the drafts the current state calls for, and that one more pass changes nothing.
"""

from __future__ import annotations

import email
import email.policy
import errno
import shutil
from collections import Counter
from dataclasses import replace
from datetime import datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest

from mailbridge import config as config_module
from mailbridge import engine, timing
from mailbridge.adapters import AmbiguousWrite, ProviderError, open_mailbox
from mailbridge.ledger import Ledger
from mailbridge.model import (
    Delay,
    DraftKind,
    DraftMessage,
    DraftState,
    InterviewState,
    MessageKind,
)
from tests.test_engine import END, LEAD, OTHER, World

THANK_YOU = DraftKind.THANK_YOU
DUE = END + timedelta(hours=3)  # the thank-yous are due two hours after the end


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def mailbox_state(world: World) -> dict[str, Counter[tuple[str, str]]]:
    """What each folder holds: (Message-ID, To) of every message, with repeats counted."""
    return {
        name: Counter((str(m["Message-ID"]), str(m["To"])) for m in world.messages(name))
        for name in ("Drafts", "Sent", "Trash")
    }


def thank_you_recipients(world: World) -> list[str]:
    return sorted(str(m["To"].addresses[0].addr_spec) for m in world.messages("Drafts"))


def settled(world: World, now: datetime) -> None:
    """Another pass at the same moment changes nothing: not the mailbox, not the ledger."""
    before = mailbox_state(world)
    audit = len(world.ledger.audit_entries())
    drafts = world.drafts()
    world.run(now)
    assert mailbox_state(world) == before
    assert world.drafts() == drafts
    assert [a.decision for a in world.ledger.audit_entries()[audit:]] == []


def test_cancelled_then_reinstated_interview_gets_its_thank_yous(world: World) -> None:
    world.add_interview()
    world.run(END - timedelta(hours=2))
    world.add_interview(cancelled=True)
    world.run(END - timedelta(hours=1))
    assert {d.state for d in world.drafts()} == {DraftState.CANCELLED}
    planned_ids = {d.message_id for d in world.drafts()}

    world.add_interview()  # reinstated: the same UID, confirmed again
    world.run(DUE)
    assert world.ledger.interviews()[0].state == InterviewState.ACTIVE
    assert thank_you_recipients(world) == sorted([LEAD, OTHER])
    assert {str(m["Message-ID"]) for m in world.messages("Drafts")} <= planned_ids
    settled(world, DUE)


def test_an_event_that_vanishes_once_is_held_then_back(world: World) -> None:
    world.add_interview()  # a calendar with one event: the safety valve does not apply
    world.run(END - timedelta(hours=2))
    saved = (world.root / "calendar" / "iv1.ics").read_text()
    (world.root / "calendar" / "iv1.ics").unlink()
    world.run(DUE)  # due now, but the interview is missing: held, neither made nor cancelled
    assert world.messages("Drafts") == []
    assert {d.state for d in world.drafts()} == {DraftState.PLANNED}
    assert world.ledger.interviews()[0].missing_since is not None

    (world.root / "calendar" / "iv1.ics").write_text(saved)
    world.run(DUE + timedelta(minutes=5))
    assert world.ledger.interviews()[0].missing_since is None
    assert thank_you_recipients(world) == sorted([LEAD, OTHER])
    settled(world, DUE + timedelta(minutes=5))


def test_an_event_gone_for_the_grace_period_is_removed(world: World) -> None:
    world.add_interview()
    world.run(END - timedelta(hours=2))
    (world.root / "calendar" / "iv1.ics").unlink()
    world.run(END - timedelta(hours=1))
    world.run(END - timedelta(hours=1) + world.account.policy.removal_grace)
    assert world.ledger.interviews()[0].state == InterviewState.CANCELLED
    assert {d.state for d in world.drafts()} == {DraftState.CANCELLED}
    world.run(DUE)
    assert world.messages("Drafts") == []
    settled(world, DUE)


def test_an_event_that_comes_back_after_removal_is_reinstated(world: World) -> None:
    world.add_interview()
    world.run(END - timedelta(hours=3))
    saved = (world.root / "calendar" / "iv1.ics").read_text()
    (world.root / "calendar" / "iv1.ics").unlink()
    world.run(END - timedelta(hours=2))
    world.run(END - timedelta(hours=2) + world.account.policy.removal_grace)
    assert world.ledger.interviews()[0].state == InterviewState.CANCELLED
    (world.root / "calendar" / "iv1.ics").write_text(saved)
    world.run(DUE)
    assert thank_you_recipients(world) == sorted([LEAD, OTHER])
    settled(world, DUE)


def reopen_ledger(world: World, *, wipe: bool) -> None:
    world.ledger.close()
    if wipe:
        shutil.rmtree(world.settings.state_dir)
    world.ledger = Ledger.open(world.settings.state_dir)


def test_a_lost_ledger_writes_no_second_copy_and_remembers_sent_and_deleted(
    world: World,
) -> None:
    world.add_interview()
    world.run(DUE)
    before = mailbox_state(world)
    assert sum(before["Drafts"].values()) == 2
    reopen_ledger(world, wipe=True)
    world.run(DUE + timedelta(minutes=5))
    assert mailbox_state(world) == before
    assert {d.state for d in world.drafts(THANK_YOU)} == {DraftState.CREATED}

    # The user sends one and deletes the other; the ledger is lost again.
    drafts = world.folder("Drafts")
    keys = sorted(drafts.keys(), key=lambda k: str(drafts.get_message(k)["To"]))
    world.folder("Sent").add(drafts.get_bytes(keys[0]))
    world.folder("Trash").add(drafts.get_bytes(keys[1]))
    drafts.remove(keys[0])
    drafts.remove(keys[1])
    reopen_ledger(world, wipe=True)
    world.run(DUE + timedelta(minutes=10))
    assert world.messages("Drafts") == []
    states = sorted(d.state for d in world.drafts(THANK_YOU))
    assert states == sorted([DraftState.SENT, DraftState.USER_DELETED])
    settled(world, DUE + timedelta(minutes=10))


def test_a_lost_ledger_and_a_thank_you_sent_under_a_new_message_id_two_rounds(
    world: World,
) -> None:
    """Two rounds with the same interviewers; the user's program sends round 1's thank-you
    to the lead under a Message-ID of its own (as Gmail may), then the ledger is lost. The
    copy in Sent, the user's hand as far as anyone can tell, answers for round 1 too, so
    round 1's thank-you is not made again; round 2's, still in Drafts, is adopted, not
    left there with the ledger saying skipped."""
    world.add_interview("round1", END - timedelta(hours=3))
    world.add_interview("round2", END)
    world.run(DUE)
    drafts = world.folder("Drafts")
    assert len(drafts) == 4
    round1 = next(i.id for i in world.ledger.interviews("me") if i.key.uid == "round1")
    ours = next(d.message_id for d in world.drafts(THANK_YOU)
                if d.interview_id == round1 and d.recipient.email == LEAD)
    first = next(k for k in drafts.iterkeys() if drafts.get_message(k)["Message-ID"] == ours)
    rounds = {str(m["Message-ID"]): m for m in world.messages("Drafts")}
    raw = drafts.get_message(first)
    del raw["Message-ID"]
    raw["Message-ID"] = "<resent-1@mail.example.org>"
    world.folder("Sent").add(raw)
    drafts.remove(first)
    reopen_ledger(world, wipe=True)
    world.run(DUE + timedelta(minutes=10))
    held = {str(m["Message-ID"]) for m in world.messages("Drafts")}
    assert held == set(rounds) - {ours}, (sorted(held), sorted(rounds), ours)
    states = {d.message_id: d.state for d in world.drafts(THANK_YOU)}
    assert {states[m] for m in held} == {DraftState.CREATED}
    settled(world, DUE + timedelta(minutes=10))


def test_a_second_state_dir_on_the_same_mailbox_writes_nothing_twice(world: World) -> None:
    world.add_interview()
    world.run(DUE)
    before = mailbox_state(world)
    second = Ledger.open(world.root / "other-state")
    report = engine.reconcile(world.account, second, now=DUE + timedelta(minutes=1))
    assert report.error is None
    assert mailbox_state(world) == before
    assert sum(before["Drafts"].values()) == 2
    second.close()


def test_renaming_the_account_writes_nothing_twice(world: World) -> None:
    world.add_interview()
    world.run(DUE)
    before = mailbox_state(world)
    world.config.write_text(world.config.read_text().replace("[accounts.me]", "[accounts.job]"))
    world.settings = config_module.load(world.config)
    world.account = world.settings.accounts[0]
    assert world.account.name == "job"
    world.run(DUE + timedelta(minutes=5))
    assert mailbox_state(world) == before
    assert {d.state for d in world.drafts(THANK_YOU)} == {DraftState.CREATED}
    settled(world, DUE + timedelta(minutes=5))


class LostAnswers:
    """A real Maildir whose first ``n`` creates are carried out and then reported as failed."""

    def __init__(self, world: World, n: int) -> None:
        self.inner = open_mailbox(world.account)
        self.n = n

    def create_draft(self, draft: DraftMessage) -> str:
        provider_id = self.inner.create_draft(draft)
        if self.n > 0:
            self.n -= 1
            raise AmbiguousWrite("the answer was lost (timeout)")
        return provider_id

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


class LostRemovals:
    """A real Maildir whose first ``n`` removals are carried out and then reported as failed."""

    def __init__(self, world: World, n: int) -> None:
        self.inner = open_mailbox(world.account)
        self.n = n

    def retract(self, provider_id: str) -> None:
        self.inner.retract(provider_id)
        if self.n > 0:
            self.n -= 1
            raise ProviderError("cannot move a draft to Trash in the Maildir: I/O error")

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def test_a_retraction_whose_answer_was_lost_is_ours_not_the_users_deletion(
    world: World,
) -> None:
    # The follow-up goes to Trash, then the move is reported as failed (or the pass is cut
    # short): the next pass finds it gone. That was our retraction, said as one, with its
    # notice; it used to be recorded as the user's deletion ("deleted by you").
    world.add_interview()
    world.run(DUE)
    world.send_all_drafts()
    due = timing.follow_up_due(END, None, world.account.policy)
    world.run(due)
    assert len(world.messages("Drafts")) == 1
    world.deliver(LEAD, "Re: Thank you", at=due + timedelta(hours=1))
    box = LostRemovals(world, 1)
    report = engine.reconcile(world.account, world.ledger, now=due + timedelta(hours=1),
                              mailbox=box)  # type: ignore[arg-type]
    assert report.error is not None and box.n == 0
    assert world.messages("Drafts") == [] and len(world.messages("Trash")) == 1
    report = world.run(due + timedelta(hours=2))
    (row,) = world.drafts(DraftKind.FOLLOW_UP)
    assert row.state == DraftState.RETRACTED
    assert [n.kind for n in report.notices] == ["retracted"]
    decisions = [a.decision for a in world.ledger.audit_entries()]
    assert "draft retracted" in decisions and "draft deleted by you" not in decisions
    settled(world, due + timedelta(hours=2))


def test_a_reply_in_our_thread_from_another_domain_counts_in_the_first_pass_after_a_lost_ledger(
    world: World,
) -> None:
    # A recruiter at an agency answers in the thank-you's thread. The first pass of a new
    # ledger reads the mailbox before it plans the thank-yous again: our Message-IDs are
    # derived, so the thread is told all the same (the reply used to be dropped until the
    # next full listing, a day later, and the follow-up made meanwhile).
    world.add_interview()
    world.run(DUE)
    thank_you = next(d for d in world.drafts(THANK_YOU) if d.recipient.email == LEAD)
    reopen_ledger(world, wipe=True)
    world.deliver("Robin Agent <robin@talent-partners.example>", "Re: Thank you",
                  thank_you.message_id, at=DUE + timedelta(hours=1))
    world.run(DUE + timedelta(hours=2))
    (reply,) = [m for m in world.ledger.messages(world.account.name)
                if m.kind == MessageKind.HUMAN]
    assert reply.sender == "robin@talent-partners.example"
    due = timing.follow_up_due(END, None, world.account.policy)
    world.run(due)
    # Not made: only looked up once (one a lost ledger made could be in Drafts), then skipped.
    assert [d.state for d in world.drafts(DraftKind.FOLLOW_UP)] == [DraftState.SKIPPED]
    assert sorted(str(m["To"].addresses[0].addr_spec) for m in world.messages("Drafts")) == \
        sorted([LEAD, OTHER])
    settled(world, due)


def test_a_follow_up_made_before_a_lost_ledger_is_taken_back_when_the_employer_replied(
    world: World,
) -> None:
    # The follow-up was in Drafts, the ledger was lost, and the employer replied: the new
    # ledger, which knows the reply before it ever plans a follow-up, looks the derived
    # Message-ID up, finds the draft and deals with it in the same pass. Its words may be
    # from another time (or the user's), so it is kept as the user's and flagged, never
    # deleted; and it is not announced as a new follow-up.
    # A follow-up due within the look-back, so a new ledger still tracks the interview.
    policy = replace(world.account.policy, follow_up=Delay(timedelta(minutes=1)))
    world.account = replace(world.account, policy=policy)
    world.add_interview()
    world.run(DUE)
    world.send_all_drafts()
    due = timing.follow_up_due(END, None, policy)
    world.run(due)
    (follow_up,) = world.messages("Drafts")
    reopen_ledger(world, wipe=True)
    world.deliver(f"Dana Whitfield <{LEAD}>", "Re: Thank you", at=due + timedelta(hours=1))
    report = world.run(due + timedelta(hours=2))
    (row,) = world.drafts(DraftKind.FOLLOW_UP)
    assert row.message_id == follow_up["Message-ID"]
    assert row.state in (DraftState.RETRACTED, DraftState.USER_EDITED)
    if row.state is DraftState.USER_EDITED:
        assert row.flagged and len(world.messages("Drafts")) == 1
    else:
        assert world.messages("Drafts") == []
    assert "follow_up_ready" not in {n.kind for n in report.notices}
    settled(world, due + timedelta(hours=2))


def test_a_lost_ledger_spaces_the_second_follow_up_from_when_the_first_was_sent(
    world: World,
) -> None:
    # The user sent the first follow-up a day after it appeared (their program dates the
    # copy in Sent then); the ledger is lost. The first pass of the new ledger reads that copy
    # before it has the follow-up's row again: it used to drop it until the next full listing,
    # a day later, and meanwhile space the second follow-up from the first one's due time, so
    # it came a day early.
    # A follow-up a day after the interview (clamped from "1m"), a second three days after
    # the first: the dates stay within the calendar's look-back, which a new ledger lists.
    world.account = replace(world.account, policy=replace(
        world.account.policy, follow_up=Delay(timedelta(minutes=1)), max_follow_ups=2,
        follow_up_spacing=timedelta(days=3)))
    world.add_interview()
    world.run(DUE)
    world.send_all_drafts()
    due = timing.follow_up_due(END, None, world.account.policy)
    world.run(due)
    (key,) = world.folder("Drafts").keys()
    sent_at = due + timedelta(days=1)
    copy = email.message_from_bytes(world.folder("Drafts").get_bytes(key),
                                    policy=email.policy.default)
    copy.replace_header("Date", format_datetime(sent_at))
    world.folder("Sent").add(copy.as_bytes())
    world.folder("Drafts").remove(key)
    reopen_ledger(world, wipe=True)
    world.run(sent_at + timedelta(hours=1))
    world.run(sent_at + timedelta(hours=2))
    first, second = sorted(world.drafts(DraftKind.FOLLOW_UP), key=lambda d: d.seq)
    assert first.state == DraftState.SENT
    assert second.state == DraftState.PLANNED
    assert second.due == timing.next_follow_up_due(sent_at, world.account.policy)
    settled(world, sent_at + timedelta(hours=2))


def test_a_create_whose_answer_was_lost_is_found_not_repeated(world: World) -> None:
    world.add_interview()
    box = LostAnswers(world, 2)
    report = engine.reconcile(world.account, world.ledger, now=DUE, mailbox=box)  # type: ignore[arg-type]
    assert report.error is None
    assert box.n == 0
    assert thank_you_recipients(world) == sorted([LEAD, OTHER])
    assert {d.state for d in world.drafts(THANK_YOU)} == {DraftState.CREATED}
    recovered = [a for a in world.ledger.audit_entries() if a.decision == "draft recovered"]
    assert len(recovered) == 2
    settled(world, DUE)


@pytest.mark.parametrize("written", [True, False])
def test_a_maildir_write_the_system_refuses_is_a_fault_that_passes(
    world: World, written: bool
) -> None:
    """Disk full or an I/O error while a draft is written: with the file in place (Python's
    Maildir renames it into cur/, then sets its time) the draft is found, not made twice;
    without it the pass reports the fault in words and the next pass makes the draft."""
    world.add_interview()
    box = open_mailbox(world.account)
    store = box.drafts  # type: ignore[attr-defined]
    add, failures = store.add, [2]

    def failing_add(message: object) -> str:
        if failures[0] > 0:
            failures[0] -= 1
            if written:
                add(message)
                raise OSError(errno.EIO, "Input/output error")
            raise OSError(errno.ENOSPC, "No space left on device")
        return str(add(message))

    store.add = failing_add
    report = engine.reconcile(world.account, world.ledger, now=DUE, mailbox=box)
    recovered = [a for a in world.ledger.audit_entries() if a.decision == "draft recovered"]
    if written:
        assert report.error is None and len(recovered) == 2
    else:
        assert report.error == "cannot write a draft in the Maildir: No space left on device"
        assert world.messages("Drafts") == []
        world.run(DUE + timedelta(minutes=5))
    assert thank_you_recipients(world) == sorted([LEAD, OTHER])
    assert {d.state for d in world.drafts(THANK_YOU)} == {DraftState.CREATED}
    settled(world, DUE + timedelta(minutes=5))


def test_an_unreadable_message_file_is_a_fault_said_in_words_not_skipped(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reply nobody can read must not go unseen (it may take a follow-up back): the pass
    fails naming the file, and once it is readable the next pass reads it."""
    from mailbridge_providers import local

    world.add_interview()
    world.deliver(LEAD, "Re: our chat")
    real_open = open

    def refusing_open(path: object, *args: object, **kw: object) -> object:
        if "/Maildir/cur/" in str(path) or "/Maildir/new/" in str(path):
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_open(path, *args, **kw)  # type: ignore[call-overload]

    monkeypatch.setattr(local, "open", refusing_open, raising=False)
    report = engine.reconcile(world.account, world.ledger, now=DUE)
    assert report.error is not None
    assert report.error.startswith("cannot read ") and "Permission denied" in report.error
    assert world.messages("Drafts") == []  # nothing written by a pass that failed
    monkeypatch.undo()
    world.run(DUE + timedelta(minutes=5))
    assert [m for m in world.ledger.messages("me") if LEAD in m.sender]


def test_a_paused_account_writes_nothing_in_a_mail_only_pass(world: World) -> None:
    for n in range(4):
        world.add_interview(uid=f"iv{n}", end=END + timedelta(hours=n))
    world.run(END - timedelta(hours=2))
    for n in range(1, 4):
        (world.root / "calendar" / f"iv{n}.ics").unlink()
    report = engine.reconcile(world.account, world.ledger, now=END - timedelta(hours=1))
    assert report.paused
    # iv0's thank-yous fall due while paused; a mail-only pass must not write them.
    report = engine.reconcile(world.account, world.ledger, now=DUE, read_calendar=False)
    assert report.error is None and report.paused
    assert world.messages("Drafts") == []
    assert set(world.ledger.pause_causes("me")) == {"calendar"}

    world.ledger.confirm_resume("me")
    world.run(DUE + timedelta(minutes=1))
    assert thank_you_recipients(world) == sorted([LEAD, OTHER])


def test_a_drafts_pause_is_lifted_by_drafts_coming_back_not_by_the_calendar(
    world: World,
) -> None:
    world.add_interview()
    world.run(END - timedelta(hours=2))
    drafts_dir = world.root / "Maildir" / ".Drafts"
    drafts_dir.rename(world.root / "Drafts-away")
    report = engine.reconcile(world.account, world.ledger, now=DUE)
    assert report.paused and "Drafts" in report.paused
    assert set(world.ledger.pause_causes("me")) == {"mailbox"}
    report = engine.reconcile(world.account, world.ledger, now=DUE, read_calendar=False)
    assert report.paused  # still gone: still paused, whichever pass
    assert set(world.ledger.pause_causes("me")) == {"mailbox"}

    (world.root / "Drafts-away").rename(drafts_dir)
    world.run(DUE + timedelta(minutes=1))
    assert world.ledger.pause_causes("me") == {}
    assert thank_you_recipients(world) == sorted([LEAD, OTHER])
    settled(world, DUE + timedelta(minutes=1))


def test_a_cancelled_creation_copy_in_trash_does_not_block_the_reinstated_draft(
    world: World,
) -> None:
    # A create cut short (row "creating", copy in Drafts), then the interview is cancelled:
    # the engine moves its own copy to Trash. Reinstated, that copy is not the user's deletion.
    world.add_interview()
    world.run(END - timedelta(hours=2))
    row = world.drafts()[0]
    with world.ledger.transaction():
        world.ledger.update_draft(row.id, END, state=DraftState.CREATING)
    box = open_mailbox(world.account)
    interview = world.ledger.interviews()[0]
    pass_ = engine.Pass(world.account, world.ledger, DUE, box, engine._NoCalendar(), False)
    box.create_draft(pass_._render(world.ledger.draft(row.id), interview))
    world.add_interview(cancelled=True)
    world.run(END - timedelta(hours=1))
    assert len(world.messages("Trash")) == 1 and world.messages("Drafts") == []
    world.add_interview()
    world.run(DUE)
    assert thank_you_recipients(world) == sorted([LEAD, OTHER])
    settled(world, DUE)


def test_two_full_listings_without_the_event_count_as_removed(world: World) -> None:
    world.add_interview()
    world.add_interview(uid="other", end=END + timedelta(days=2), title="Dentist")
    world.run(END - timedelta(hours=3))
    (world.root / "calendar" / "iv1.ics").unlink()
    world.run(END - timedelta(hours=2, minutes=50))  # a full listing without it: held
    assert world.ledger.interviews()[0].missing_listings == 1
    assert world.ledger.interviews()[0].state == InterviewState.ACTIVE
    world.add_interview(uid="other", end=END + timedelta(days=3), title="Dentist")  # re-listed
    world.run(END - timedelta(hours=2, minutes=45))  # well inside the grace period
    assert world.ledger.interviews()[0].state == InterviewState.CANCELLED
    world.run(DUE)
    assert world.messages("Drafts") == []


def test_the_grace_period_is_a_setting(world: World) -> None:
    world.config.write_text(world.config.read_text().replace(
        'maildir = { path = "Maildir" }', 'maildir = { path = "Maildir" }\nremoval_grace = "10m"'))
    world.settings = config_module.load(world.config)
    world.account = world.settings.accounts[0]
    assert world.account.policy.removal_grace == timedelta(minutes=10)
    world.add_interview()
    world.run(END - timedelta(hours=2))
    (world.root / "calendar" / "iv1.ics").unlink()
    world.run(END - timedelta(hours=1))
    report = world.run(END - timedelta(hours=1, minutes=-5))
    assert world.ledger.interviews()[0].state == InterviewState.ACTIVE  # 5 minutes: held
    assert report.next_wakeup == END - timedelta(minutes=50)  # when it counts as removed
    world.run(END - timedelta(minutes=50))
    assert world.ledger.interviews()[0].state == InterviewState.CANCELLED


def test_a_row_from_an_older_ledger_keeps_its_message_id(world: World) -> None:
    # Ledgers from before the id changed (it held the account's name) keep the ids they
    # stored: the draft made from such a row carries that id, so it is found again.
    world.add_interview()
    world.run(END - timedelta(hours=1))
    legacy = [f"<{n:040x}.mailbridge@example.com>" for n in (1, 2)]
    with world.ledger.transaction():
        for row, mid in zip(world.drafts(THANK_YOU), legacy, strict=True):
            world.ledger.conn.execute("UPDATE draft SET message_id=? WHERE id=?", (mid, row.id))
    world.run(DUE)
    assert sorted(str(m["Message-ID"]) for m in world.messages("Drafts")) == legacy
    assert all(len(m.get_all("Message-ID") or []) == 1 for m in world.messages("Drafts"))
    settled(world, DUE)
