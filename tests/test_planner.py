"""Table tests for mailbridge.planner.

Every scenario also proves idempotence: the actions are applied the way the engine would apply
them (``apply`` below) and ``plan`` at the same moment must then have nothing left to say.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailbridge.model import (
    BusinessDays,
    Delay,
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
    Snapshot,
)
from mailbridge.planner import (
    Action,
    CancelDraft,
    CreateDraft,
    FlagDraft,
    PlanDraft,
    Remind,
    Reschedule,
    RetractDraft,
    ReviveDraft,
    UpdateDraft,
    finished,
    next_archive,
    next_wakeup,
    plan,
)
from mailbridge.timing import at_local, local_date

CHICAGO = ZoneInfo("America/Chicago")
TY = DraftKind.THANK_YOU
FU = DraftKind.FOLLOW_UP
S = DraftState

ANN = Person("ann@acme.example", "Ann Archer")  # the lead
BOB = Person("bob@acme.example", "Bob Baker")

POLICY = Policy(timezone="America/Chicago", country="US", morning=time(9, 0))


def local(text: str) -> datetime:
    """'2026-11-24 17:00' on a Chicago wall clock, as an aware UTC instant."""
    return datetime.fromisoformat(text).replace(tzinfo=CHICAGO).astimezone(UTC)


# The standard interview: Monday 2026-11-23 13:00-14:00 Chicago, Ann (lead) and Bob.
# Thank-you due 16:00 the same day; reminder Tue 10:00; window closes Tue 14:00;
# follow-up 7 business days later (skipping Thanksgiving): Thu 2026-12-03 09:00.
TY_DUE = local("2026-11-23 16:00")
FU_DUE = local("2026-12-03 09:00")


def interview(**changes: Any) -> InterviewRow:
    base: dict[str, Any] = {
        "id": 1,
        "account": "personal",
        "key": EventKey("primary", "uid-1"),
        "title": "Interview: Acme, Staff Engineer",
        "company": "Acme",
        "role": "Staff Engineer",
        "start": local("2026-11-23 13:00"),
        "end": local("2026-11-23 14:00"),
        "state": InterviewState.ACTIVE,
        "attendees": (ANN, BOB),
        "lead": ANN,
    }
    base.update(changes)
    return InterviewRow(**base)


def draft(
    id: int, kind: DraftKind, to: Person, state: DraftState, due: datetime, **changes: Any
) -> DraftRow:
    base: dict[str, Any] = {
        "id": id,
        "interview_id": 1,
        "kind": kind,
        "seq": 1,
        "recipient": to,
        "state": state,
        "due": due,
        "message_id": f"<draft-{id}@mailbridge.test>",
    }
    if state in (S.CREATED, S.USER_EDITED, S.SENT) and "created_at" not in changes:
        base["created_at"] = due
    base.update(changes)
    return DraftRow(**base)


def msg(kind: MessageKind, at: datetime, sender: str, *to: str, **changes: Any) -> MessageRow:
    folder = Folder.SENT if kind is MessageKind.OWN else Folder.INBOX
    return MessageRow(**{
        "interview_id": 1,
        "kind": kind,
        "folder": folder,
        "sender": sender,
        "at": at,
        "message_id": f"<{kind}-{at.timestamp()}@mail.test>",
        "recipients": to,
        **changes,
    })


def snap(*drafts: DraftRow, messages: tuple[MessageRow, ...] = (), **iv: Any) -> Snapshot:
    return Snapshot(interviews=(interview(**iv),), drafts=drafts, messages=messages)


ME = "jordan@example.net"

# Rows used by many scenarios.
TY_ANN = draft(1, TY, ANN, S.PLANNED, TY_DUE)
TY_BOB = draft(2, TY, BOB, S.PLANNED, TY_DUE)
FU_ANN = draft(3, FU, ANN, S.PLANNED, FU_DUE)
TY_SENT = (draft(1, TY, ANN, S.SENT, TY_DUE), draft(2, TY, BOB, S.SENT, TY_DUE))


# --- the engine, as far as the ledger goes ------------------------------------------------


def apply(snapshot: Snapshot, actions: list[Action], now: datetime) -> Snapshot:
    """Carry the actions out on the snapshot as the engine would (ledger side only)."""
    drafts = {d.id: d for d in snapshot.drafts}
    notes = {i.id: i.notes_version for i in snapshot.interviews}
    touched: set[int] = set()
    next_id = max(drafts, default=0) + 1
    for action in actions:
        if isinstance(action, PlanDraft):
            # the ledger's key: UNIQUE (interview_id, kind, seq, recipient_email)
            key = (action.interview_id, action.kind, action.seq, action.recipient.email.lower())
            assert key not in {
                (d.interview_id, d.kind, d.seq, d.recipient.email.lower()) for d in drafts.values()
            }, f"{action} collides with an existing row"
            if action.skip_reason is not None:
                state, created = S.SKIPPED, None
            elif action.due <= now:  # due at once: the engine creates it in the same pass
                state, created = S.CREATED, now
            else:
                state, created = S.PLANNED, None
            drafts[next_id] = DraftRow(
                id=next_id,
                interview_id=action.interview_id,
                kind=action.kind,
                seq=action.seq,
                recipient=action.recipient,
                state=state,
                due=action.due,
                message_id=f"<draft-{next_id}@mailbridge.test>",
                created_at=created,
                notes_version=notes[action.interview_id] if created else 0,
                late=action.late,
            )
            next_id += 1
            continue
        if isinstance(action, Remind):
            for draft_id in action.draft_ids:
                assert drafts[draft_id].state.on_server, action
                drafts[draft_id] = replace(drafts[draft_id], reminded_at=now)
            continue
        row = drafts[action.draft_id]
        if isinstance(action, ReviveDraft):
            assert row.state is S.CANCELLED, action  # the one final state that comes back
            assert action.draft_id not in touched, f"two actions for draft {action.draft_id}"
            touched.add(action.draft_id)
            if action.due <= now:
                drafts[action.draft_id] = replace(
                    row, state=S.CREATED, due=action.due, created_at=now, late=action.late,
                    notes_version=notes[row.interview_id],
                )
            else:
                drafts[action.draft_id] = replace(row, state=S.PLANNED, due=action.due)
            continue
        assert not row.state.final, f"{action} touches a final row"
        assert action.draft_id not in touched, f"two actions for draft {action.draft_id}"
        touched.add(action.draft_id)
        if isinstance(action, CreateDraft):
            assert row.state in (S.PLANNED, S.CREATING), action
            new = replace(
                row,
                state=S.CREATED,
                created_at=now,
                notes_version=notes[row.interview_id],
                late=row.late or action.late,
            )
        elif isinstance(action, CancelDraft):
            assert row.state in (S.PLANNED, S.CREATING), action
            new = replace(row, state=S.CANCELLED)
        elif isinstance(action, RetractDraft):
            assert row.state is S.CREATED, action
            new = replace(row, state=S.RETRACTED)
        elif isinstance(action, FlagDraft):
            assert row.state is S.USER_EDITED, action
            new = replace(row, flagged=action.reason)
        elif isinstance(action, Reschedule):
            assert row.state is S.PLANNED, action
            new = replace(row, due=action.due)
        elif isinstance(action, UpdateDraft):
            assert row.state is S.CREATED, action
            new = replace(row, notes_version=notes[row.interview_id])
        else:  # pragma: no cover - every action type is handled above
            raise AssertionError(action)
        drafts[action.draft_id] = new
    return replace(snapshot, drafts=tuple(drafts[k] for k in sorted(drafts)))


def summary(action: Action) -> tuple[Any, ...]:
    """An action without its prose, for comparing against the tables."""
    if isinstance(action, PlanDraft):
        return (
            "plan",
            action.kind.value,
            action.seq,
            action.recipient.email,
            action.due,
            action.late,
            action.skip_reason is not None,
        )
    if isinstance(action, Reschedule):
        return ("reschedule", action.draft_id, action.due)
    if isinstance(action, CreateDraft):
        return ("create", action.draft_id, action.late)
    if isinstance(action, Remind):
        return ("remind", action.interview_id, action.draft_ids)
    name = type(action).__name__.removesuffix("Draft").lower()
    return (name, action.draft_id)


def settle(snapshot: Snapshot, pol: Policy, now: datetime) -> tuple[list[Action], Snapshot]:
    """plan, apply, plan again: the second plan must be empty."""
    actions = plan(snapshot, pol, now)
    for action in actions:
        assert action.reason and action.reason[0].isupper() and action.reason.endswith("."), (
            f"reason is not a plain sentence: {action.reason!r}"
        )
    after = apply(snapshot, actions, now)
    assert plan(after, pol, now) == [], "plan is not idempotent"
    assert plan(snapshot, pol, now) == actions, "plan is not deterministic"
    return actions, after


def plan_ty(to: Person, due: datetime, late: bool = False, skip: bool = False) -> tuple[Any, ...]:
    return ("plan", "thank_you", 1, to.email, due, late, skip)


def plan_fu(due: datetime, seq: int = 1, to: Person = ANN) -> tuple[Any, ...]:
    return ("plan", "follow_up", seq, to.email, due, False, False)


@dataclass(frozen=True)
class Case:
    snapshot: Snapshot
    now: datetime
    expected: list[tuple[Any, ...]]
    policy: Policy = field(default=POLICY)


CASES: dict[str, Case] = {
    # --- thank-you ---
    "future interview: thank-yous and follow-up planned at once": Case(
        snap(),
        local("2026-11-23 09:00"),
        [plan_ty(ANN, TY_DUE), plan_ty(BOB, TY_DUE), plan_fu(FU_DUE)],
    ),
    "on time: planned thank-yous created 2h after the end": Case(
        snap(TY_ANN, TY_BOB, FU_ANN),
        TY_DUE,
        [("create", 1, False), ("create", 2, False)],
    ),
    "a minute early: nothing": Case(
        snap(TY_ANN, TY_BOB, FU_ANN),
        TY_DUE - timedelta(minutes=1),
        [],
    ),
    "learned of the interview inside the window: due at once, not late": Case(
        snap(),
        local("2026-11-23 20:00"),
        [plan_ty(ANN, TY_DUE), plan_ty(BOB, TY_DUE), plan_fu(FU_DUE)],
    ),
    "next business morning mode: Friday evening clamped to 24h": Case(
        snap(
            start=local("2026-11-20 16:00"),
            end=local("2026-11-20 17:00"),
            attendees=(ANN,),
            lead=None,
        ),
        local("2026-11-20 12:00"),
        [plan_ty(ANN, local("2026-11-21 17:00"))],
        Policy(
            timezone="America/Chicago", country="US", thank_you=BusinessDays(1), morning=time(8)
        ),
    ),
    "catch-up after downtime: late thank-yous created now": Case(
        snap(),
        local("2026-11-25 10:00"),
        [
            plan_ty(ANN, local("2026-11-25 10:00"), late=True),
            plan_ty(BOB, local("2026-11-25 10:00"), late=True),
            plan_fu(FU_DUE),
        ],
    ),
    "planned row after downtime: created and reported late": Case(
        snap(TY_ANN, FU_ANN),
        local("2026-11-25 10:00"),
        [("create", 1, True), plan_ty(BOB, local("2026-11-25 10:00"), late=True)],
    ),
    "beyond lookback: skipped, so the decision sticks": Case(
        snap(FU_ANN),
        local("2026-11-27 15:00"),
        [
            plan_ty(ANN, local("2026-11-27 15:00"), skip=True),
            plan_ty(BOB, local("2026-11-27 15:00"), skip=True),
        ],
    ),
    "planned row beyond lookback: cancelled": Case(
        snap(TY_ANN, draft(2, TY, BOB, S.SKIPPED, TY_DUE), FU_ANN),
        local("2026-11-27 15:00"),
        [("cancel", 1)],
    ),
    "interview rescheduled later: planned drafts move": Case(
        snap(
            TY_ANN, TY_BOB, FU_ANN, start=local("2026-11-25 13:00"), end=local("2026-11-25 14:00")
        ),
        local("2026-11-23 09:00"),
        [
            ("reschedule", 1, local("2026-11-25 16:00")),
            ("reschedule", 2, local("2026-11-25 16:00")),
            ("reschedule", 3, local("2026-12-07 09:00")),
        ],
    ),
    "interview moved earlier, its thank-yous now due: created": Case(
        snap(
            draft(1, TY, ANN, S.PLANNED, local("2026-11-25 16:00")),
            draft(2, TY, BOB, S.PLANNED, local("2026-11-25 16:00")),
            FU_ANN,
        ),
        local("2026-11-23 17:00"),
        [("create", 1, False), ("create", 2, False)],
    ),
    "interview cancelled: planned drafts cancelled, created one untouched": Case(
        snap(draft(1, TY, ANN, S.CREATED, TY_DUE), TY_BOB, FU_ANN, state=InterviewState.CANCELLED),
        local("2026-11-23 17:00"),
        [("cancel", 2), ("cancel", 3)],
    ),
    "attendee removed: planned thank-you cancelled, created one untouched": Case(
        snap(
            TY_ANN,
            TY_BOB,
            draft(4, TY, Person("cy@acme.example"), S.CREATED, TY_DUE),
            FU_ANN,
            attendees=(ANN,),
        ),
        local("2026-11-23 15:00"),
        [("cancel", 2)],
    ),
    "attendee back after a cancel: the same row comes back (one row per recipient)": Case(
        snap(TY_ANN, draft(2, TY, BOB, S.CANCELLED, TY_DUE), FU_ANN),
        local("2026-11-23 15:00"),
        [("revive", 2)],
    ),
    "lead back after a cancel: the same follow-up row comes back, no second row": Case(
        snap(*TY_SENT, draft(3, FU, ANN, S.CANCELLED, FU_DUE)),
        local("2026-11-24 09:00"),
        [("revive", 3)],
    ),
    "reinstated interview: cancelled thank-yous and follow-up come back": Case(
        snap(
            draft(1, TY, ANN, S.CANCELLED, TY_DUE),
            draft(2, TY, BOB, S.CANCELLED, TY_DUE),
            draft(3, FU, ANN, S.CANCELLED, FU_DUE),
        ),
        local("2026-11-23 15:00"),
        [("revive", 1), ("revive", 2), ("revive", 3)],
    ),
    "a deleted thank-you stays deleted when the interview is reinstated": Case(
        snap(draft(1, TY, ANN, S.USER_DELETED, TY_DUE), draft(2, TY, BOB, S.CANCELLED, TY_DUE)),
        local("2026-11-23 15:00"),
        [("revive", 2), plan_fu(FU_DUE)],
    ),
    "a cancelled thank-you that is now too late stays cancelled": Case(
        snap(draft(1, TY, ANN, S.CANCELLED, TY_DUE), draft(2, TY, BOB, S.CANCELLED, TY_DUE),
             FU_ANN),
        local("2026-11-30 15:00"),
        [],
    ),
    "an interview missing from the calendar is held: nothing is made or cancelled": Case(
        snap(TY_ANN, TY_BOB, FU_ANN, missing_since=datetime(2026, 11, 23, 20, 0, tzinfo=UTC)),
        local("2026-11-23 18:00"),
        [],
    ),
    "recipient matched case-insensitively": Case(
        snap(
            TY_ANN,
            TY_BOB,
            FU_ANN,
            attendees=(Person("Ann@ACME.example", "Ann"), Person("BOB@acme.example")),
        ),
        local("2026-11-23 15:00"),
        [],
    ),
    "duplicate attendee gets one thank-you": Case(
        snap(attendees=(ANN, Person("ANN@acme.example")), lead=None),
        local("2026-11-23 15:00"),
        [plan_ty(ANN, TY_DUE)],
    ),
    "user-deleted thank-you never recreated, sent one left alone": Case(
        snap(draft(1, TY, ANN, S.USER_DELETED, TY_DUE), draft(2, TY, BOB, S.SENT, TY_DUE), FU_ANN),
        local("2026-11-23 18:00"),
        [],
    ),
    "user-edited thank-you never touched": Case(
        snap(
            draft(1, TY, ANN, S.USER_EDITED, TY_DUE), draft(2, TY, BOB, S.CREATED, TY_DUE), FU_ANN
        ),
        local("2026-11-23 18:00"),
        [],
    ),
    "thank-you written by hand: skipped": Case(
        snap(
            messages=(
                msg(
                    MessageKind.OWN, local("2026-11-23 14:30"), ME, "Ann Archer <ANN@acme.example>"
                ),
            )
        ),
        local("2026-11-23 15:00"),
        [plan_ty(ANN, local("2026-11-23 15:00"), skip=True), plan_ty(BOB, TY_DUE), plan_fu(FU_DUE)],
    ),
    "a note by hand matched to a later round with the same person answers this one too": Case(
        snap(
            messages=(
                msg(MessageKind.OWN, local("2026-11-23 14:30"), ME, "ann@acme.example",
                    interview_id=2),
            )
        ),
        local("2026-11-23 15:00"),
        [plan_ty(ANN, local("2026-11-23 15:00"), skip=True), plan_ty(BOB, TY_DUE), plan_fu(FU_DUE)],
    ),
    "thank-you written by hand while one is planned: cancelled": Case(
        snap(
            TY_ANN,
            TY_BOB,
            FU_ANN,
            messages=(msg(MessageKind.OWN, local("2026-11-23 14:30"), ME, "ann@acme.example"),),
        ),
        local("2026-11-23 15:00"),
        [("cancel", 1)],
    ),
    "mail to the interviewer before the interview is no thank-you": Case(
        snap(
            TY_ANN,
            TY_BOB,
            FU_ANN,
            messages=(msg(MessageKind.OWN, local("2026-11-20 10:00"), ME, "ann@acme.example"),),
        ),
        local("2026-11-23 15:00"),
        [],
    ),
    "interrupted creation repaired": Case(
        snap(draft(1, TY, ANN, S.CREATING, TY_DUE), draft(2, TY, BOB, S.CREATED, TY_DUE), FU_ANN),
        local("2026-11-23 16:01"),
        [("create", 1, False)],
    ),
    # --- follow-up ---
    "silence: follow-up created when due": Case(
        snap(*TY_SENT, FU_ANN),
        FU_DUE,
        [("create", 3, False)],
    ),
    "no lead: no follow-up": Case(snap(*TY_SENT, lead=None), FU_DUE, []),
    "lead changed: planned follow-up moves to the new lead": Case(
        snap(*TY_SENT, draft(3, FU, BOB, S.PLANNED, FU_DUE)),
        local("2026-11-24 09:00"),
        [("cancel", 3), plan_fu(FU_DUE)],
    ),
    "known decision date: follow-up the next business day": Case(
        snap(*TY_SENT, decision_date=date(2026, 12, 4)),
        local("2026-11-24 09:00"),
        [plan_fu(local("2026-12-07 09:00"))],
    ),
    "decision date learned later: planned follow-up rescheduled": Case(
        snap(*TY_SENT, FU_ANN, decision_date=date(2026, 11, 25)),
        local("2026-11-24 09:00"),
        [("reschedule", 3, local("2026-11-27 09:00"))],
    ),
    "reply before the follow-up was created: cancelled": Case(
        snap(
            *TY_SENT,
            FU_ANN,
            messages=(msg(MessageKind.HUMAN, local("2026-11-30 10:00"), "ann@acme.example"),),
        ),
        local("2026-11-30 10:05"),
        [("cancel", 3)],
    ),
    "reply while the follow-up was being created: cancelled": Case(
        snap(
            *TY_SENT,
            draft(3, FU, ANN, S.CREATING, FU_DUE),
            messages=(msg(MessageKind.HUMAN, local("2026-12-03 09:00"), "hr@acme.example"),),
        ),
        local("2026-12-03 09:05"),
        [("cancel", 3)],
    ),
    "reply after the follow-up was created: retracted": Case(
        snap(
            *TY_SENT,
            draft(3, FU, ANN, S.CREATED, FU_DUE),
            messages=(msg(MessageKind.HUMAN, local("2026-12-04 10:00"), "ann@acme.example"),),
        ),
        local("2026-12-04 10:05"),
        [("retract", 3)],
    ),
    "reply after the user edited the follow-up: flagged, not retracted": Case(
        snap(
            *TY_SENT,
            draft(3, FU, ANN, S.USER_EDITED, FU_DUE),
            messages=(msg(MessageKind.HUMAN, local("2026-12-04 10:00"), "ann@acme.example"),),
        ),
        local("2026-12-04 10:05"),
        [("flag", 3)],
    ),
    "edited follow-up already flagged: flagged once": Case(
        snap(
            *TY_SENT,
            draft(3, FU, ANN, S.USER_EDITED, FU_DUE, flagged="employer replied"),
            messages=(msg(MessageKind.HUMAN, local("2026-12-04 10:00"), "ann@acme.example"),),
        ),
        local("2026-12-04 10:05"),
        [],
    ),
    "reply: no new follow-up is planned": Case(
        snap(
            *TY_SENT,
            messages=(msg(MessageKind.HUMAN, local("2026-11-24 10:00"), "ann@acme.example"),),
        ),
        local("2026-11-24 10:05"),
        [],
    ),
    "mail from the employer before the interview is no reply": Case(
        snap(
            *TY_SENT,
            messages=(msg(MessageKind.HUMAN, local("2026-11-20 10:00"), "ann@acme.example"),),
        ),
        local("2026-11-24 10:05"),
        [plan_fu(FU_DUE)],
    ),
    "auto-reply is no reply": Case(
        snap(
            *TY_SENT,
            FU_ANN,
            messages=(msg(MessageKind.AUTO_REPLY, local("2026-11-24 10:00"), "ann@acme.example"),),
        ),
        local("2026-11-24 10:05"),
        [],
    ),
    "user-deleted follow-up ends the series": Case(
        snap(*TY_SENT, draft(3, FU, ANN, S.USER_DELETED, FU_DUE)),
        local("2027-01-10 10:00"),
        [],
        replace(POLICY, max_follow_ups=3),
    ),
    "cap of one follow-up: nothing after the first was sent": Case(
        snap(*TY_SENT, draft(3, FU, ANN, S.SENT, FU_DUE)),
        local("2027-01-10 10:00"),
        [],
    ),
    "second follow-up spaced after the first was sent": Case(
        snap(
            *TY_SENT,
            draft(3, FU, ANN, S.SENT, FU_DUE),
            messages=(
                msg(
                    MessageKind.OWN,
                    local("2026-12-04 10:00"),
                    ME,
                    "ann@acme.example",
                    our_draft_id=3,
                ),
            ),
        ),
        local("2026-12-04 10:05"),
        [plan_fu(local("2026-12-15 09:00"), seq=2)],
        replace(POLICY, max_follow_ups=2),
    ),
    "spacing wins over a short follow-up delay": Case(
        snap(*TY_SENT, draft(3, FU, ANN, S.SENT, FU_DUE, created_at=local("2026-12-03 09:00"))),
        local("2026-12-04 10:05"),
        [plan_fu(local("2026-12-10 09:00"), seq=2)],
        replace(POLICY, max_follow_ups=2, follow_up=Delay(timedelta(days=2))),
    ),
    "never stack: an open follow-up blocks the next": Case(
        snap(*TY_SENT, draft(3, FU, ANN, S.CREATED, FU_DUE)),
        local("2027-01-10 10:00"),
        [],
        replace(POLICY, max_follow_ups=3),
    ),
    "hard cap of three even when configured higher": Case(
        snap(
            *TY_SENT,
            *(
                draft(2 + k, FU, ANN, S.SENT, FU_DUE + timedelta(days=7 * k), seq=k)
                for k in (1, 2, 3)
            ),
        ),
        local("2027-03-10 10:00"),
        [],
        replace(POLICY, max_follow_ups=9),
    ),
    "cancelled follow-up does not count toward the cap": Case(
        snap(*TY_SENT, draft(3, FU, BOB, S.CANCELLED, FU_DUE)),
        local("2026-11-24 09:00"),
        [plan_fu(FU_DUE)],
    ),
    "out of office until after the due date: follow-up moves": Case(
        snap(
            *TY_SENT,
            FU_ANN,
            messages=(
                msg(
                    MessageKind.OUT_OF_OFFICE,
                    local("2026-11-24 09:00"),
                    "Ann Archer <ann@acme.example>",
                    return_date=date(2026, 12, 7),
                ),
            ),
        ),
        local("2026-11-24 09:05"),
        [("reschedule", 3, local("2026-12-07 09:00"))],
    ),
    "out of office: new follow-up planned after the return": Case(
        snap(
            *TY_SENT,
            messages=(
                msg(
                    MessageKind.OUT_OF_OFFICE,
                    local("2026-11-24 09:00"),
                    "ann@acme.example",
                    return_date=date(2026, 12, 5),
                ),
            ),
        ),
        local("2026-11-24 09:05"),
        [plan_fu(local("2026-12-07 09:00"))],
    ),
    "out of office returning before the due date: no change": Case(
        snap(
            *TY_SENT,
            FU_ANN,
            messages=(
                msg(
                    MessageKind.OUT_OF_OFFICE,
                    local("2026-11-24 09:00"),
                    "ann@acme.example",
                    return_date=date(2026, 11, 30),
                ),
            ),
        ),
        local("2026-11-24 09:05"),
        [],
    ),
    "out of office from someone else than the lead: no change": Case(
        snap(
            *TY_SENT,
            FU_ANN,
            messages=(
                msg(
                    MessageKind.OUT_OF_OFFICE,
                    local("2026-11-24 09:00"),
                    "bob@acme.example",
                    return_date=date(2026, 12, 14),
                ),
            ),
        ),
        local("2026-11-24 09:05"),
        [],
    ),
    "manual follow-up: planned one cancelled": Case(
        snap(
            *TY_SENT,
            FU_ANN,
            messages=(msg(MessageKind.OWN, local("2026-12-01 10:00"), ME, "ann@acme.example"),),
        ),
        local("2026-12-01 10:05"),
        [("cancel", 3)],
    ),
    "manual follow-up: none planned afterwards": Case(
        snap(
            *TY_SENT,
            messages=(msg(MessageKind.OWN, local("2026-12-01 10:00"), ME, "ann@acme.example"),),
        ),
        local("2026-12-01 10:05"),
        [],
    ),
    "our own thank-you sent late is no manual follow-up": Case(
        snap(
            *TY_SENT,
            FU_ANN,
            messages=(
                msg(
                    MessageKind.OWN,
                    local("2026-11-25 10:00"),
                    ME,
                    "ann@acme.example",
                    our_draft_id=1,
                ),
            ),
        ),
        local("2026-11-25 10:05"),
        [],
    ),
    # --- notes ---
    "newer notes: created drafts re-rendered, edited ones left": Case(
        snap(
            draft(1, TY, ANN, S.CREATED, TY_DUE),
            draft(2, TY, BOB, S.USER_EDITED, TY_DUE),
            FU_ANN,
            notes="They use Rust.",
            notes_version=2,
        ),
        local("2026-11-23 17:00"),
        [("update", 1)],
    ),
    "notes already rendered: nothing": Case(
        snap(
            draft(1, TY, ANN, S.CREATED, TY_DUE, notes_version=2), TY_BOB, FU_ANN, notes_version=2
        ),
        local("2026-11-23 15:00"),
        [],
    ),
    "newer notes on a cancelled interview: nothing": Case(
        snap(draft(1, TY, ANN, S.CREATED, TY_DUE), state=InterviewState.CANCELLED, notes_version=3),
        local("2026-11-23 17:00"),
        [],
    ),
    # --- reminder ---
    "reminder when drafts still wait 20h after the interview": Case(
        snap(
            draft(1, TY, ANN, S.CREATED, TY_DUE), draft(2, TY, BOB, S.USER_EDITED, TY_DUE), FU_ANN
        ),
        local("2026-11-24 10:00"),
        [("remind", 1, (1, 2))],
    ),
    "reminder names only the drafts still waiting": Case(
        snap(draft(1, TY, ANN, S.SENT, TY_DUE), draft(2, TY, BOB, S.CREATED, TY_DUE), FU_ANN),
        local("2026-11-24 10:00"),
        [("remind", 1, (2,))],
    ),
    "no reminder before its time": Case(
        snap(draft(1, TY, ANN, S.CREATED, TY_DUE), FU_ANN, attendees=(ANN,)),
        local("2026-11-24 09:59"),
        [],
    ),
    "no reminder twice": Case(
        snap(
            draft(1, TY, ANN, S.CREATED, TY_DUE),
            draft(2, TY, BOB, S.CREATED, TY_DUE, reminded_at=local("2026-11-24 10:00")),
            FU_ANN,
        ),
        local("2026-11-24 11:00"),
        [],
    ),
    "no reminder once the window closed": Case(
        snap(draft(1, TY, ANN, S.CREATED, TY_DUE), FU_ANN, attendees=(ANN,)),
        local("2026-11-24 14:00"),
        [],
    ),
    "no reminder when all were sent": Case(snap(*TY_SENT, FU_ANN), local("2026-11-24 10:00"), []),
    "no reminder when disabled": Case(
        snap(draft(1, TY, ANN, S.CREATED, TY_DUE), FU_ANN, attendees=(ANN,)),
        local("2026-11-24 10:00"),
        [],
        replace(POLICY, reminder_after=None),
    ),
    "no reminder during quiet hours": Case(
        snap(draft(1, TY, ANN, S.CREATED, TY_DUE), FU_ANN, attendees=(ANN,)),
        local("2026-11-24 02:00"),
        [],
        replace(POLICY, reminder_after=timedelta(hours=10)),
    ),
    "reminder at the end of quiet hours": Case(
        snap(draft(1, TY, ANN, S.CREATED, TY_DUE), FU_ANN, attendees=(ANN,)),
        local("2026-11-24 08:00"),
        [("remind", 1, (1,))],
        replace(POLICY, reminder_after=timedelta(hours=10)),
    ),
    "a draft created late, after the reminder time, gets no nudge": Case(
        snap(draft(1, TY, ANN, S.PLANNED, TY_DUE), FU_ANN, attendees=(ANN,)),
        local("2026-11-24 11:00"),
        [("create", 1, False)],
    ),
}


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_plan(case: Case) -> None:
    actions, _ = settle(case.snapshot, case.policy, case.now)
    assert [summary(a) for a in actions] == case.expected


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_next_wakeup_is_exact(case: Case) -> None:
    """Nothing new happens before next_wakeup, and something does at it."""
    _, settled = settle(case.snapshot, case.policy, case.now)
    wakeup = next_wakeup(settled, case.policy, case.now)
    if wakeup is None:
        for later in (timedelta(hours=1), timedelta(days=3), timedelta(days=60)):
            assert plan(settled, case.policy, case.now + later) == []
        return
    assert wakeup > case.now
    gap = wakeup - case.now
    for probe in (case.now + gap / 2, wakeup - timedelta(seconds=1)):
        assert plan(settled, case.policy, probe) == [], probe
    assert plan(settled, case.policy, wakeup) != []


@pytest.mark.parametrize(
    ("snapshot", "pol", "now", "expected"),
    [
        pytest.param(
            snap(TY_ANN, TY_BOB, FU_ANN),
            POLICY,
            local("2026-11-23 09:00"),
            TY_DUE,
            id="the-planned-thank-yous",
        ),
        pytest.param(
            snap(draft(1, TY, ANN, S.CREATED, TY_DUE), FU_ANN, attendees=(ANN,)),
            POLICY,
            local("2026-11-23 17:00"),
            local("2026-11-24 10:00"),
            id="the-reminder",
        ),
        pytest.param(
            snap(draft(1, TY, ANN, S.CREATED, TY_DUE), FU_ANN, attendees=(ANN,)),
            replace(POLICY, reminder_after=timedelta(hours=10)),
            local("2026-11-23 23:00"),
            local("2026-11-24 08:00"),
            id="reminder-shifted-out-of-quiet-hours",
        ),
        pytest.param(
            snap(draft(1, TY, ANN, S.CREATED, TY_DUE), FU_ANN, attendees=(ANN,)),
            replace(
                POLICY, reminder_after=timedelta(hours=22), quiet_start=time(12), quiet_end=time(16)
            ),
            local("2026-11-23 17:00"),
            FU_DUE,
            id="quiet-hours-outlast-the-window-so-no-reminder",
        ),
        pytest.param(
            snap(*TY_SENT, FU_ANN), POLICY, local("2026-11-24 09:00"), FU_DUE, id="the-follow-up"
        ),
        pytest.param(
            snap(*TY_SENT, draft(3, FU, ANN, S.SENT, FU_DUE)),
            POLICY,
            local("2026-12-10 09:00"),
            None,
            id="all-done",
        ),
        pytest.param(
            snap(TY_ANN, TY_BOB, FU_ANN, state=InterviewState.CANCELLED),
            POLICY,
            local("2026-11-23 09:00"),
            None,
            id="cancelled-interview",
        ),
    ],
)
def test_next_wakeup(
    snapshot: Snapshot, pol: Policy, now: datetime, expected: datetime | None
) -> None:
    assert next_wakeup(snapshot, pol, now) == expected


def test_dst_follow_up_keeps_the_local_morning() -> None:
    # Interview Friday 2026-10-30 (CDT); one business day later is Monday 2026-11-02 (CST).
    pol = replace(POLICY, follow_up=BusinessDays(1), morning=time(8))
    s = snap(start=local("2026-10-30 13:00"), end=local("2026-10-30 14:00"), attendees=())
    [action] = plan(s, pol, local("2026-10-30 15:00"))
    assert isinstance(action, PlanDraft)
    assert action.due.astimezone(CHICAGO).time() == time(8)
    assert action.due == datetime(2026, 11, 2, 14, 0, tzinfo=UTC)


def test_reasons_name_the_people_and_times() -> None:
    actions = plan(snap(), POLICY, local("2026-11-23 09:00"))
    assert "Ann Archer <ann@acme.example>" in actions[0].reason
    assert "2026-11-23 16:00 CST" in actions[0].reason
    skip = plan(snap(), POLICY, local("2026-11-27 15:00"))[0]
    assert isinstance(skip, PlanDraft) and skip.skip_reason is not None
    assert "3 days" in skip.skip_reason


def test_several_interviews_in_id_order() -> None:
    other = interview(id=2, attendees=(BOB,), lead=None, key=EventKey("primary", "uid-2"))
    s = Snapshot(interviews=(other, interview(attendees=(ANN,), lead=None)), drafts=(), messages=())
    actions = plan(s, POLICY, local("2026-11-23 09:00"))
    assert [(a.interview_id, a.recipient.email) for a in actions if isinstance(a, PlanDraft)] == [
        (1, ANN.email),
        (2, BOB.email),
    ]


# --- a life story, simulated --------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(st.integers(min_value=10, max_value=60 * 60 * 30), min_size=1, max_size=40),
    reply_after=st.one_of(st.none(), st.integers(0, 60 * 60 * 24 * 30)),
    max_follow_ups=st.integers(0, 5),
    sends=st.booleans(),
)
def test_simulated_timeline(
    steps: list[int], reply_after: int | None, max_follow_ups: int, sends: bool
) -> None:
    """Whatever the timing of polls and of the employer's reply, the invariants hold."""
    pol = replace(POLICY, max_follow_ups=max_follow_ups)
    s = snap()
    now = local("2026-11-23 10:00")
    reply_at = None if reply_after is None else s.interviews[0].end + timedelta(seconds=reply_after)
    for step in steps:
        now += timedelta(seconds=step)
        if reply_at is not None and now >= reply_at and not s.messages:
            s = replace(s, messages=(msg(MessageKind.HUMAN, reply_at, "ann@acme.example"),))
        _, s = settle(s, pol, now)
        if sends:  # the user sends every follow-up as soon as it appears
            s = replace(
                s,
                drafts=tuple(
                    replace(d, state=S.SENT) if d.kind is FU and d.state is S.CREATED else d
                    for d in s.drafts
                ),
            )
        wakeup = next_wakeup(s, pol, now)
        assert wakeup is None or wakeup > now
        thanks = [d for d in s.drafts if d.kind is TY]
        assert sorted(d.recipient.email for d in thanks) == [ANN.email, BOB.email]
        follow = [d for d in s.drafts if d.kind is FU]
        assert all(d.recipient == ANN for d in follow)
        assert len([d for d in follow if d.state is not S.CANCELLED]) <= min(max_follow_ups, 3)
        assert len([d for d in follow if d.state in (S.PLANNED, S.CREATED)]) <= 1
        if reply_at is not None and now >= reply_at:
            assert not any(d.state in (S.PLANNED, S.CREATED) for d in follow)
        for d in thanks:
            assert s.interviews[0].end <= d.due
            if not d.late and d.state is not S.SKIPPED:
                assert d.due <= s.interviews[0].end + timedelta(hours=24)


# --- skipping a pass is safe only until next_wakeup -----------------------------------------

_POLICIES = st.builds(
    lambda thank_you, lookback, bound, reminder, quiet, follow_up, max_follow_ups: replace(
        POLICY, thank_you=thank_you, lookback=lookback, thank_you_bound=bound,
        reminder_after=reminder, quiet_start=quiet[0], quiet_end=quiet[1],
        follow_up=follow_up, max_follow_ups=max_follow_ups,
    ),
    thank_you=st.sampled_from([Delay(timedelta(hours=2)), Delay(timedelta(0)),
                               Delay(timedelta(hours=5)), BusinessDays(1), BusinessDays(2)]),
    lookback=st.sampled_from([timedelta(days=3), timedelta(hours=1), timedelta(hours=3),
                              timedelta(days=1)]),
    bound=st.sampled_from([timedelta(hours=24), timedelta(hours=6)]),
    reminder=st.sampled_from([None, timedelta(hours=20), timedelta(hours=2),
                              timedelta(hours=10)]),
    quiet=st.sampled_from([(time(21), time(8)), (time(12), time(16)), (time(0), time(0)),
                           (time(18, 30), time(19))]),
    follow_up=st.sampled_from([BusinessDays(7), Delay(timedelta(days=2)), BusinessDays(1)]),
    max_follow_ups=st.integers(0, 3),
)


def _named(s: Snapshot, pol: Policy, since: datetime, until: datetime, *,
           quiet: bool = True) -> list[datetime]:
    """The moments in [since, until) at which a rule may change its mind, a tick either side:
    ends of interviews, of look-back, of the thank-you window, reminders, due times, and
    (``quiet``) the wall-clock edges of quiet hours."""
    tick = timedelta(microseconds=1)
    named: list[datetime] = [d.due for d in s.drafts]
    for iv in s.interviews:
        named += [iv.end, iv.end + pol.lookback, iv.end + pol.thank_you_bound]
        if pol.reminder_after is not None:
            named.append(iv.end + pol.reminder_after)
    day = local_date(since, pol)
    while quiet and at_local(day, time(0), pol) < min(until, since + timedelta(days=40)):
        named += [at_local(day, pol.quiet_start, pol), at_local(day, pol.quiet_end, pol)]
        day += timedelta(days=1)
    near = {t + d for t in named for d in (-tick, timedelta(0), tick)}
    return sorted(t for t in near if since <= t < until)


def _quiet_until_wakeup(s: Snapshot, pol: Policy, now: datetime) -> None:
    """After a pass at ``now`` carried out plan(now) (``s`` is settled), plan() says nothing
    and no interview becomes archivable (finished) before next_wakeup or next_archive."""
    wakeup = next_wakeup(s, pol, now)
    archive = next_archive(s, pol, now)
    until = min((m for m in (wakeup, archive) if m), default=now + timedelta(days=60))
    assert until > now
    done = [finished(i, s.drafts, s.messages, pol, now) for i in s.interviews]
    for t in {now, now + (until - now) / 2, until - timedelta(microseconds=1),
              *_named(s, pol, now, until)}:
        assert plan(s, pol, t) == [], (now, t, wakeup, archive)
        assert [finished(i, s.drafts, s.messages, pol, t) for i in s.interviews] == done, t


@settings(max_examples=60, deadline=None)
@given(
    pol=_POLICIES,
    attendees=st.sampled_from([(ANN, BOB), (ANN,), ()]),
    lead=st.sampled_from([ANN, None]),
    steps=st.lists(st.integers(1, 60 * 60 * 40), min_size=1, max_size=8),
    reply_after=st.one_of(st.none(), st.integers(0, 60 * 60 * 24 * 12)),
    user=st.sampled_from(["sends", "deletes", "edits", "waits"]),
    days=st.sampled_from([0, -24, -21, 110, 112]),  # also across both DST changes
)
def test_plan_stays_empty_until_next_wakeup(
    pol: Policy, attendees: tuple[Person, ...], lead: Person | None, steps: list[int],
    reply_after: int | None, user: str, days: int,
) -> None:
    """What a quiet pass relies on (engine.Quiet): a pass between two wakeups may skip
    planning. Checked after passes at random times and, from each state, after a pass exactly
    on every moment a rule names or a tick either side, where a wakeup is easiest to miss."""
    shift = timedelta(days=days)
    s = snap(attendees=attendees, lead=lead, start=local("2026-11-23 13:00") + shift,
             end=local("2026-11-23 14:00") + shift)
    iv = s.interviews[0]
    now = local("2026-11-23 10:00") + shift
    reply_at = None if reply_after is None else iv.end + timedelta(seconds=reply_after)
    for seconds in steps:
        now += timedelta(seconds=seconds)
        if reply_at is not None and now >= reply_at and not s.messages:
            s = replace(s, messages=(msg(MessageKind.HUMAN, reply_at, ANN.email),))
        for at in (now, *_named(s, pol, now, now + timedelta(days=30), quiet=False)):
            _quiet_until_wakeup(settle(s, pol, at)[1], pol, at)
        _, s = settle(s, pol, now)
        if user != "waits":  # the user acts on every draft in Drafts
            gone = {"sends": S.SENT, "deletes": S.USER_DELETED, "edits": S.USER_EDITED}[user]
            s = replace(s, drafts=tuple(replace(d, state=gone) if d.state is S.CREATED else d
                                        for d in s.drafts))
