"""The archive of finished interviews (issue 13): the decision, the ledger, and the level.

An interview is finished when every draft of it is final and nothing more is owed for it
(planner.finished); a pass then archives it and loads it no more. News from the calendar
brings it back to life, and what the user sent or deleted stays so.
"""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from mailbridge import cli, planner
from mailbridge.ledger import Ledger
from mailbridge.model import (
    DraftKind,
    DraftRow,
    DraftState,
    EventKey,
    Folder,
    InterviewRow,
    InterviewState,
    MessageKind,
    MessageRow,
    Person,
    Policy,
)
from tests.test_engine import END, LEAD, OTHER, World

S = DraftState
THANK_YOU, FOLLOW_UP = DraftKind.THANK_YOU, DraftKind.FOLLOW_UP
LATER = END + timedelta(days=30)  # past every window of the interview


def interview(**kw: object) -> InterviewRow:
    values: dict[str, object] = {
        "id": 1, "account": "me", "key": EventKey("cal", "iv1"), "title": "Interview",
        "company": "Northwind", "role": "", "start": END - timedelta(hours=1), "end": END,
        "state": InterviewState.ACTIVE, "attendees": (Person(LEAD), Person(OTHER)),
        "lead": Person(LEAD),
    }
    values.update(kw)
    return InterviewRow(**values)  # type: ignore[arg-type]


def draft(n: int, kind: DraftKind, to: str, state: DraftState) -> DraftRow:
    return DraftRow(id=n, interview_id=1, kind=kind, seq=1, recipient=Person(to), state=state,
                    due=END + timedelta(hours=2), message_id=f"<{n}@x>",
                    created_at=END + timedelta(hours=2))


def history(thanks: tuple[DraftState, DraftState], follow: DraftState | None) -> list[DraftRow]:
    rows = [draft(1, THANK_YOU, LEAD, thanks[0]), draft(2, THANK_YOU, OTHER, thanks[1])]
    if follow is not None:
        rows.append(draft(3, FOLLOW_UP, LEAD, follow))
    return rows


REPLY = MessageRow(interview_id=1, kind=MessageKind.HUMAN, folder=Folder.INBOX, sender=LEAD,
                   at=END + timedelta(days=2), message_id="<r@x>")


@pytest.mark.parametrize(
    ("case", "iv", "drafts", "msgs", "policy", "now", "expected"),
    [
        ("all sent, one follow-up allowed", interview(), history((S.SENT, S.SENT), S.SENT),
         [], Policy(), LATER, True),
        ("the same inside the thank-you window", interview(),
         history((S.SENT, S.SENT), S.SENT), [], Policy(), END + timedelta(days=2), False),
        ("deleted by the user counts as settled", interview(),
         history((S.USER_DELETED, S.SENT), S.USER_DELETED), [], Policy(), LATER, True),
        ("a thank-you still waits in Drafts", interview(),
         history((S.CREATED, S.SENT), S.SENT), [], Policy(), LATER, False),
        ("a draft the user edited stays live", interview(),
         history((S.SENT, S.SENT), S.USER_EDITED), [], Policy(), LATER, False),
        ("a follow-up still waits in Drafts (a reply must take it back)", interview(),
         history((S.SENT, S.SENT), S.CREATED), [], Policy(), LATER, False),
        ("a follow-up is still owed", interview(), history((S.SENT, S.SENT), None), [],
         Policy(), LATER, False),
        ("a second follow-up is owed", interview(), history((S.SENT, S.SENT), S.SENT), [],
         Policy(max_follow_ups=2), LATER, False),
        ("the employer replied: the follow-up was cancelled", interview(),
         history((S.SENT, S.SENT), S.CANCELLED), [REPLY], Policy(), LATER, True),
        ("a cancelled follow-up would be wanted again", interview(),
         history((S.SENT, S.SENT), S.CANCELLED), [], Policy(), LATER, False),
        ("thank-yous skipped, follow-ups off", interview(),
         history((S.SKIPPED, S.SKIPPED), None), [], Policy(max_follow_ups=0), LATER, True),
        ("the event is missing from the calendar", interview(missing_since=LATER),
         history((S.SENT, S.SENT), S.SENT), [], Policy(), LATER, False),
        ("a cancelled interview, its drafts cancelled",
         interview(state=InterviewState.CANCELLED),
         history((S.CANCELLED, S.CANCELLED), None), [], Policy(), LATER, True),
        ("a cancelled interview still in the future",
         interview(state=InterviewState.CANCELLED),
         history((S.CANCELLED, S.CANCELLED), None), [], Policy(), END - timedelta(days=1),
         False),
        ("no interviewer, no lead", interview(attendees=(), lead=None), [], [], Policy(),
         LATER, True),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_finished(case: str, iv: InterviewRow, drafts: list[DraftRow], msgs: list[MessageRow],
                  policy: Policy, now: datetime, expected: bool) -> None:
    assert planner.finished(iv, drafts, msgs, policy, now) is expected, case


# --- the ledger and the passes --------------------------------------------------------------


@pytest.fixture
def world(tmp_path: Path) -> World:
    w = World(tmp_path)
    yield w
    w.ledger.close()


FOLLOW_UP_DUE = END + timedelta(days=12)  # past the 7 business days


def live_through(world: World, *, delete_one: bool = False) -> None:
    """Thank-yous made and handled by the user, then the follow-up made and sent."""
    world.add_interview()
    world.run(END + timedelta(hours=3))
    assert len(world.messages("Drafts")) == 2
    if delete_one:  # the user deletes the thank-you to OTHER (to Trash) and sends the other
        drafts = world.folder("Drafts")
        key = next(k for k in drafts.iterkeys() if OTHER in str(drafts.get_message(k)["To"]))
        world.folder("Trash").add(drafts.get_bytes(key))
        drafts.remove(key)
    world.send_all_drafts()
    world.run(END + timedelta(hours=4))
    world.run(FOLLOW_UP_DUE)
    assert len(world.messages("Drafts")) == 1
    world.send_all_drafts()
    world.run(FOLLOW_UP_DUE + timedelta(hours=1))


def test_a_finished_interview_leaves_the_snapshot_but_not_the_ledger(world: World) -> None:
    live_through(world)
    iv = world.ledger.interviews()[0]
    assert iv.archived_at is not None
    assert world.ledger.snapshot("me").interviews == ()
    assert world.ledger.snapshot("me").drafts == ()
    assert world.ledger.archived_count("me") == 1
    assert [i.id for i in world.ledger.archived_interviews("me", END - timedelta(days=1))] == [
        iv.id]
    assert world.ledger.archived_interviews("me", END + timedelta(days=1)) == []
    # Lookups that safety needs still see it, one key at a time.
    ours = world.drafts()[0]
    assert world.ledger.draft_by_message_id("me", ours.message_id) == ours
    assert world.ledger.message_ids("me")[ours.message_id] == iv.id
    assert "<nobody@x>" not in world.ledger.message_ids("me")
    decisions = [a.decision for a in world.ledger.audit_entries()]
    assert decisions.count("interview archived") == 1
    # An idle pass afterwards changes nothing, and says nothing.
    before = len(world.ledger.audit_entries())
    world.run(FOLLOW_UP_DUE + timedelta(days=1))
    assert len(world.ledger.audit_entries()) == before


def test_a_note_brings_an_archived_interview_back(world: World) -> None:
    live_through(world)
    iv = world.ledger.interviews()[0]
    with world.ledger.transaction():
        world.ledger.add_note(iv.id, "ask about the robot arm", FOLLOW_UP_DUE)
    assert world.ledger.snapshot("me").interviews[0].id == iv.id


def test_an_archived_interview_moved_into_the_future_lives_again_without_what_was_deleted(
    world: World,
) -> None:
    live_through(world, delete_one=True)
    assert world.ledger.interviews()[0].archived_at is not None
    states = {d.recipient.email: d.state for d in world.drafts(THANK_YOU)}
    assert states == {LEAD: S.SENT, OTHER: S.USER_DELETED}

    moved = FOLLOW_UP_DUE + timedelta(days=2)  # the same event (UID), a second date
    world.add_interview(end=moved)
    world.run(FOLLOW_UP_DUE + timedelta(days=1))
    iv = world.ledger.interviews()[0]
    assert iv.archived_at is None and iv.end == moved
    world.run(moved + timedelta(hours=3))  # when its thank-yous would be due
    # Nothing the user deleted or sent comes back; nothing is written twice.
    assert world.messages("Drafts") == []
    assert {d.recipient.email: d.state for d in world.drafts(THANK_YOU)} == states
    assert len(world.messages("Sent")) == 2


def test_a_wiped_ledger_after_archiving_writes_nothing_twice(world: World) -> None:
    live_through(world, delete_one=True)
    sent, trash = len(world.messages("Sent")), len(world.messages("Trash"))
    world.ledger.close()
    shutil.rmtree(world.settings.state_dir)
    world.ledger = Ledger.open(world.settings.state_dir)
    world.run(FOLLOW_UP_DUE + timedelta(days=1))  # the event is out of the window: unseen
    assert world.ledger.interviews() == []
    moved = FOLLOW_UP_DUE + timedelta(days=2)  # and then it is in the calendar again
    world.add_interview(end=moved)
    world.run(FOLLOW_UP_DUE + timedelta(days=1, hours=1))
    world.run(moved + timedelta(hours=3))
    # Found by Message-ID in Sent and Trash: not made again.
    assert world.messages("Drafts") == []
    assert (len(world.messages("Sent")), len(world.messages("Trash"))) == (sent, trash)
    assert {d.recipient.email: d.state for d in world.drafts(THANK_YOU)} == {
        LEAD: S.SENT, OTHER: S.USER_DELETED}


def test_status_shows_archived_interviews_only_since_a_date(world: World) -> None:
    live_through(world)
    # Recently finished: still shown, marked; its drafts as they ended.
    recent = cli._status_data(world.settings, world.ledger, None, FOLLOW_UP_DUE)
    shown = recent["accounts"][0]["interviews"]
    assert [iv["archived"] for iv in shown] == [True]
    assert {d["state"] for d in shown[0]["drafts"]} == {"sent"}
    assert any("(finished, archived)" in line
               for line in cli._account_lines(world.account, recent["accounts"][0]))
    # Long finished: a count; `--since` brings it back.
    much_later = FOLLOW_UP_DUE + timedelta(days=365)
    plain = cli._status_data(world.settings, world.ledger, None, much_later)["accounts"][0]
    assert plain["interviews"] == [] and plain["archived"] == 1
    lines = cli._account_lines(world.account, plain)
    assert any("1 older finished interview archived" in line for line in lines)
    since = cli._status_data(world.settings, world.ledger, END - timedelta(days=1), much_later)
    assert [iv["archived"] for iv in since["accounts"][0]["interviews"]] == [True]
    assert "interview archived" in {e["decision"] for e in since["digest"]}
    later = cli._status_data(world.settings, world.ledger, END + timedelta(days=1), much_later)
    assert later["accounts"][0]["interviews"] == []
