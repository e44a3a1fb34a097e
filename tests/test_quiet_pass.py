"""A pass with nothing new and nothing due skips reading the drafts and planning; anything
new, due, failed or written by another process makes it plan in full.

Real local provider files and a real ledger (a second connection plays the other process);
the planner and the ledger's snapshot are counted, not replaced.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mailbridge import engine, planner
from mailbridge.ledger import Ledger
from mailbridge.model import DraftKind, DraftState, InterviewState
from tests.test_engine import END, LEAD, World


@dataclass
class Counts:
    plans: int = 0
    snapshots: int = 0
    draft_reads: int = 0


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.ledger.close()


@pytest.fixture
def counts(monkeypatch: pytest.MonkeyPatch) -> Counts:
    """How often a pass planned and read the drafts (the real functions, counted)."""
    seen = Counts()
    plan, snapshot, drafts = planner.plan, Ledger.snapshot, Ledger.drafts

    def counted_plan(*args: Any, **kwargs: Any) -> list[planner.Action]:
        seen.plans += 1
        return plan(*args, **kwargs)

    def counted_snapshot(self: Ledger, *args: Any, **kwargs: Any) -> Any:
        seen.snapshots += 1
        return snapshot(self, *args, **kwargs)

    def counted_drafts(self: Ledger, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("live_only"):
            seen.draft_reads += 1
        return drafts(self, *args, **kwargs)

    monkeypatch.setattr(planner, "plan", counted_plan)
    monkeypatch.setattr(Ledger, "snapshot", counted_snapshot)
    monkeypatch.setattr(Ledger, "drafts", counted_drafts)
    return seen


def full(counts: Counts) -> bool:
    """Whether the passes since the last call planned (and read the drafts); resets."""
    planned = counts.plans > 0 and counts.snapshots > 0 and counts.draft_reads > 0
    skipped = counts.plans == counts.snapshots == counts.draft_reads == 0
    assert planned or skipped, counts  # all or nothing
    counts.plans = counts.snapshots = counts.draft_reads = 0
    return planned


def run(world: World, keep: engine.OpenProviders, now: datetime) -> engine.PassReport:
    report = engine.reconcile(world.account, world.ledger, now=now, keep=keep)
    assert report.error is None, report.error
    return report


def settled(world: World, counts: Counts) -> tuple[engine.OpenProviders, datetime]:
    """Thank-you drafts made and waiting in Drafts, a pass that planned nothing behind."""
    world.add_interview()
    keep = engine.OpenProviders(world.account)
    now = END + timedelta(hours=2)
    run(world, keep, now)  # plans and makes the thank-yous
    assert len(world.messages("Drafts")) == 2
    # Reads the new drafts' markers once (a write), then plans nothing: the base of quiet
    # passes.
    run(world, keep, now + timedelta(minutes=1))
    run(world, keep, now + timedelta(minutes=2))
    assert keep.quiet is not None and keep.quiet.generation == world.ledger.generation()
    full(counts)
    return keep, now + timedelta(minutes=2)


def rows(ledger: Ledger) -> list[tuple[Any, ...]]:
    """What a pass leaves in the ledger that matters (not the times of bookkeeping)."""
    return [(d.id, d.state, d.due, d.provider_id, d.version, d.reminded_at, d.flagged)
            for d in ledger.drafts()] + [
        (i.id, i.state, i.archived_at, i.missing_since) for i in ledger.interviews()]


def test_a_quiet_pass_skips_planning_and_ends_like_a_full_one(
    world: World, counts: Counts
) -> None:
    keep, now = settled(world, counts)
    before = rows(world.ledger)
    audit = len(world.ledger.audit_entries())
    reports = [run(world, keep, now + timedelta(minutes=n)) for n in range(1, 6)]
    assert not full(counts)
    assert all(r.actions == [] and r.notices == [] for r in reports)
    # The same as a full pass: same ledger, same next wakeup (the reminder), no audit line.
    full_report = engine.reconcile(world.account, world.ledger, now=now + timedelta(minutes=5))
    assert full(counts)
    assert full_report.actions == [] and full_report.next_wakeup is not None
    assert {r.next_wakeup for r in reports} == {full_report.next_wakeup}
    assert rows(world.ledger) == before
    assert len(world.ledger.audit_entries()) == audit


def test_bookkeeping_does_not_move_the_generation_and_planner_input_does(world: World) -> None:
    world.add_interview()
    world.run(END + timedelta(hours=2))
    ledger = world.ledger
    start = ledger.generation()
    with ledger.transaction():  # what every pass writes
        ledger.record_ok("me", END)
        ledger.record_error("me", "down", END)
        ledger.set_cursor("me", "mailbox", "x", END)
        ledger.audit("me", "decided", "because", now=END)
    assert ledger.generation() == start
    draft = world.drafts()[0]
    with ledger.transaction():
        ledger.update_draft(draft.id, END, flagged="x")
    assert ledger.generation() == start + 1
    with Ledger.open(world.settings.state_dir) as other:  # another process
        with other.transaction():
            other.confirm_resume("me")
        assert other.generation() == start + 2
    assert ledger.generation() == start + 2


def test_a_note_from_another_process_is_planned_at_the_next_pass(
    world: World, counts: Counts
) -> None:
    keep, now = settled(world, counts)
    interview = world.ledger.interviews("me")[0]
    with Ledger.open(world.settings.state_dir) as other, other.transaction():
        other.add_note(interview.id, "We talked about the robot arm.", now)
    report = run(world, keep, now + timedelta(minutes=1))
    assert full(counts)
    assert sum("draft updated" in line for line in report.actions) == 2
    assert all("robot arm" in m.get_content() for m in world.messages("Drafts"))


def test_a_resume_from_another_process_makes_a_full_pass(world: World, counts: Counts) -> None:
    keep, now = settled(world, counts)
    with Ledger.open(world.settings.state_dir) as other, other.transaction():
        other.confirm_resume("me")  # what `mailbridge resume` writes
    run(world, keep, now + timedelta(minutes=1))
    assert full(counts)
    assert world.ledger.account_status("me").resume_confirmed is False  # used by that pass
    run(world, keep, now + timedelta(minutes=2))
    assert not full(counts)


def test_mail_that_changes_nothing_still_makes_a_full_pass(world: World, counts: Counts) -> None:
    keep, now = settled(world, counts)
    world.deliver("news@letters.example", "Weekly digest", at=now)
    run(world, keep, now + timedelta(minutes=1))
    assert full(counts)


def test_a_calendar_change_makes_a_full_pass(world: World, counts: Counts) -> None:
    keep, now = settled(world, counts)
    world.add_interview(uid="lunch", title="Lunch with Sam", end=END + timedelta(days=1))
    run(world, keep, now + timedelta(minutes=1))  # not an interview: no row the planner reads
    assert full(counts)
    world.add_interview(cancelled=True)
    report = run(world, keep, now + timedelta(minutes=2))
    assert full(counts)
    assert any("interview cancelled" in line for line in report.actions)
    assert world.ledger.interviews("me")[0].state == InterviewState.CANCELLED


def test_a_draft_the_user_edits_makes_a_full_pass(world: World, counts: Counts) -> None:
    keep, now = settled(world, counts)
    box = world.folder("Drafts")
    key = next(iter(box.keys()))
    message = box.get_message(key)
    message.set_payload("Thank you, I mean it.\n")
    box[key] = message
    run(world, keep, now + timedelta(minutes=1))
    assert full(counts)
    assert DraftState.USER_EDITED in {d.state for d in world.drafts()}


def test_a_draft_falling_due_is_made_on_time(world: World, counts: Counts) -> None:
    world.add_interview()
    keep = engine.OpenProviders(world.account)
    due = END + timedelta(hours=2)
    run(world, keep, END)  # plans the thank-yous for two hours after the interview
    report = run(world, keep, END + timedelta(minutes=1))
    assert report.next_wakeup == due and keep.quiet is not None
    full(counts)
    run(world, keep, due - timedelta(microseconds=1))
    assert not full(counts)
    assert world.messages("Drafts") == []
    report = run(world, keep, due)
    assert full(counts)
    assert len(world.messages("Drafts")) == 2
    assert sum("draft created" in line for line in report.actions) == 2


def test_a_failed_pass_forgets_and_the_next_one_is_full(world: World, counts: Counts) -> None:
    keep, now = settled(world, counts)
    shutil.move(world.root / "calendar", world.root / "away")
    report = engine.reconcile(world.account, world.ledger, now=now + timedelta(minutes=1),
                              keep=keep)
    assert report.error is not None and keep.quiet is None
    shutil.move(world.root / "away", world.root / "calendar")
    run(world, keep, now + timedelta(minutes=2))
    assert full(counts)


def test_without_kept_providers_every_pass_is_full(world: World, counts: Counts) -> None:
    world.add_interview()
    for minutes in (0, 1, 2):
        world.run(END + timedelta(hours=2, minutes=minutes))
        assert full(counts)


def test_a_pass_earlier_than_the_last_one_is_full(world: World, counts: Counts) -> None:
    keep, now = settled(world, counts)
    run(world, keep, now - timedelta(seconds=1))
    assert full(counts)


def test_an_interview_whose_window_closes_is_archived_on_time(
    world: World, counts: Counts
) -> None:
    """Archiving follows the clock too: a skipped pass must not keep it live forever."""
    keep, now = settled(world, counts)
    world.send_all_drafts()
    run(world, keep, now + timedelta(minutes=1))  # the drafts are sent
    assert {d.state for d in world.drafts(DraftKind.THANK_YOU)} == {DraftState.SENT}
    # The lead replies: the planned follow-up is cancelled, every draft is settled.
    world.deliver(f"Dana Whitfield <{LEAD}>", "Re: Thank you", at=now + timedelta(hours=1))
    run(world, keep, now + timedelta(hours=2))
    run(world, keep, now + timedelta(hours=2, minutes=1))
    assert keep.quiet is not None and keep.quiet.until is not None
    full(counts)
    closes = keep.quiet.until
    assert world.ledger.interviews("me", live_only=True)
    run(world, keep, closes - timedelta(hours=1))  # a new day: the calendar is listed afresh
    full(counts)
    run(world, keep, closes - timedelta(seconds=1))
    assert not full(counts)
    report = run(world, keep, closes)
    assert full(counts)
    assert any("interview archived" in line for line in report.actions)
    assert world.ledger.interviews("me", live_only=True) == []


def test_the_quiet_memory_is_per_kept_providers(world: World, counts: Counts) -> None:
    """A config reload opens new providers: the first pass with them plans in full."""
    keep, now = settled(world, counts)
    keep.close()
    run(world, keep, now + timedelta(minutes=1))
    assert full(counts)


def test_the_reminder_comes_on_time_after_quiet_passes(world: World, counts: Counts) -> None:
    keep, now = settled(world, counts)
    wakeup = keep.quiet.until if keep.quiet else None
    assert wakeup is not None  # the reminder: the thank-yous still wait in Drafts
    run(world, keep, wakeup - timedelta(minutes=1))  # a new day: the calendar listed afresh
    full(counts)
    report = run(world, keep, wakeup - timedelta(seconds=1))
    assert not full(counts) and report.notices == []
    report = run(world, keep, wakeup)
    assert full(counts)
    assert [n.kind for n in report.notices] == ["reminder"]
