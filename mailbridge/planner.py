"""The planner: ``(snapshot, policy, now) -> [Action]``.

A pure function: no I/O, no clock, no randomness. It looks at the ledger snapshot of one account
and says what should change; the engine carries the actions out and records them. It is
level-triggered: when the engine has applied every action of ``plan(s, p, now)``, calling
``plan`` again at the same ``now`` returns nothing.

How the engine applies each action:

PlanDraft
    insert a draft row: SKIPPED when ``skip_reason`` is set, otherwise PLANNED. A planned row
    whose ``due <= now`` is due at once: the engine creates it in the same pass (as for
    CreateDraft), since plan() cannot name a row that has no id yet. A skip marked
    ``look_first`` (the user wrote by hand; the employer replied to a follow-up the ledger
    never recorded) yields to our draft already in the mailbox (made before the ledger was
    lost): the engine plans the row instead, and the create adopts the copy.
Reschedule
    set the due time of a PLANNED row.
CreateDraft
    create the draft on the server (PLANNED or CREATING row; for CREATING, look the
    deterministic Message-ID up first and adopt what is there). ``late`` marks the row late.
UpdateDraft
    re-render a CREATED (unedited) draft with the interview's current notes.
CancelDraft
    a PLANNED or CREATING row is no longer wanted. For CREATING, the engine removes the copy it
    finds by Message-ID (the user never saw it), then marks the row CANCELLED.
RetractDraft
    delete a CREATED (unedited) follow-up from Drafts: the employer replied.
FlagDraft
    the user edited a follow-up and the employer replied: never delete it, tell the user.
Remind
    one nudge: these thank-you drafts are still waiting and the 24-hour window is closing.

ReviveDraft
    a CANCELLED row is wanted again (the interview was reinstated, the attendee is back): it
    becomes PLANNED with the given due time, keeping its Message-ID; due at once as PlanDraft.

Rows in a final state (DraftState.final) are never acted on, with one exception: a CANCELLED
row was never seen by the user, so it comes back to life when the current state calls for that
draft again (a cancellation is a fact only while it lasts). A row the user deleted, sent, or
that was skipped or retracted never comes back. The ledger keeps one row per (interview, kind,
seq, recipient), and the Message-ID derives from the same values, so a revived row is the same
draft. An interview whose event is missing from the calendar (``missing_since``) is held: none
of its rows is acted on until it is back or counts as removed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr
from zoneinfo import ZoneInfo

from mailbridge.model import (
    HARD_MAX_FOLLOW_UPS,
    DraftKind,
    DraftRow,
    DraftState,
    InterviewRow,
    InterviewState,
    MessageKind,
    MessageRow,
    Person,
    Policy,
    Snapshot,
)
from mailbridge.timing import (
    DECISION_HORIZON,
    after_quiet_hours,
    follow_up_due,
    in_quiet_hours,
    next_follow_up_due,
    out_of_office_due,
    thank_you_due,
)

__all__ = [
    "Action",
    "CancelDraft",
    "CreateDraft",
    "FlagDraft",
    "PlanDraft",
    "Remind",
    "Reschedule",
    "RetractDraft",
    "ReviveDraft",
    "UpdateDraft",
    "finished",
    "next_archive",
    "next_wakeup",
    "plan",
]


# --- actions ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PlanDraft:
    interview_id: int
    kind: DraftKind
    seq: int
    recipient: Person
    due: datetime  # UTC
    late: bool
    skip_reason: str | None
    reason: str
    # Skipped, but our draft may be in the mailbox already (made before the ledger was lost,
    # or by a pass whose record was lost): the engine looks its Message-ID up first.
    look_first: bool = False


@dataclass(frozen=True)
class Reschedule:
    draft_id: int
    due: datetime  # UTC
    reason: str


@dataclass(frozen=True)
class CreateDraft:
    draft_id: int
    reason: str
    late: bool = False  # created past the thank-you window (after downtime): report it as late


@dataclass(frozen=True)
class UpdateDraft:
    draft_id: int
    reason: str


@dataclass(frozen=True)
class CancelDraft:
    draft_id: int
    reason: str


@dataclass(frozen=True)
class RetractDraft:
    draft_id: int
    reason: str


@dataclass(frozen=True)
class FlagDraft:
    draft_id: int
    reason: str


@dataclass(frozen=True)
class ReviveDraft:
    draft_id: int
    due: datetime  # UTC
    late: bool
    reason: str


@dataclass(frozen=True)
class Remind:
    interview_id: int
    draft_ids: tuple[int, ...]
    reason: str


Action = (
    PlanDraft
    | Reschedule
    | CreateDraft
    | UpdateDraft
    | CancelDraft
    | RetractDraft
    | FlagDraft
    | Remind
    | ReviveDraft
)

_TICK = timedelta(microseconds=1)  # the finest step of a datetime
_PENDING = (DraftState.PLANNED, DraftState.CREATING)  # not (knowingly) on the server yet
_OPEN = (DraftState.PLANNED, DraftState.CREATING, DraftState.CREATED, DraftState.USER_EDITED)


# --- helpers ---------------------------------------------------------------------------


def _address(value: str) -> str:
    """The bare, case-folded address of "Name <a@b>" or "a@b"."""
    return (parseaddr(value)[1] or value).strip().casefold()


def _when(t: datetime, policy: Policy) -> str:
    return t.astimezone(ZoneInfo(policy.timezone)).strftime("%Y-%m-%d %H:%M %Z")


def _duration(span: timedelta) -> str:
    """A plain "3 days" / "36 hours" / "90 minutes" for the audit log."""
    seconds = int(span.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            n = seconds // size
            return f"{n} {unit}" + ("s" if n != 1 else "")
    return f"{seconds} seconds"


def _who(person: Person) -> str:
    return f"{person.name} <{person.email}>" if person.name else person.email


def _about(iv: InterviewRow) -> str:
    return f"interview {iv.title!r}" if iv.title else f"interview #{iv.id}"


def _bound(policy: Policy) -> timedelta:
    return max(policy.thank_you_bound, timedelta(0))


def _notes_by_hand(msgs: Sequence[MessageRow]) -> dict[str, list[MessageRow]]:
    """The messages the user wrote themselves (not one of our drafts), by each recipient's
    address, whatever interview each was matched to: one note after two rounds with the same
    person is matched to the later round, yet answers for both."""
    found: dict[str, list[MessageRow]] = {}
    for m in msgs:
        if m.kind is MessageKind.OWN and m.our_draft_id is None:
            for address in {_address(r) for r in m.recipients}:
                found.setdefault(address, []).append(m)
    return found


def _wrote_by_hand(
    iv: InterviewRow, email: str, notes: Mapping[str, Sequence[MessageRow]], policy: Policy
) -> bool:
    """The user wrote to this interviewer themselves during the thank-you window."""
    until = iv.end + _bound(policy)
    return any(iv.start <= m.at <= until for m in notes.get(email.casefold(), ()))


def _employer_replied(iv: InterviewRow, msgs: Sequence[MessageRow]) -> bool:
    return any(m.kind is MessageKind.HUMAN and m.at >= iv.start for m in msgs)


def _unrecorded_follow_up_lookup(
    iv: InterviewRow, drafts: Sequence[DraftRow], msgs: Sequence[MessageRow], policy: Policy
) -> datetime | None:
    """When `_follow_ups` looks up a follow-up the ledger has no row of although the employer
    replied (one made before the ledger was lost would be in Drafts): when it would have been
    due. None when there is nothing to look up."""
    if (iv.lead is None or not _employer_replied(iv, msgs)
            or any(d.kind is DraftKind.FOLLOW_UP for d in drafts)):
        return None
    return follow_up_due(iv.end, iv.decision_date, policy)


def _manual_follow_up(iv: InterviewRow, msgs: Sequence[MessageRow], policy: Policy) -> bool:
    until = iv.end + _bound(policy)
    return any(m.kind is MessageKind.OWN and m.our_draft_id is None and m.at > until for m in msgs)


def _out_of_office_return(iv: InterviewRow, msgs: Sequence[MessageRow]) -> MessageRow | None:
    """The lead's out-of-office (after the interview) that names the latest return date."""
    if iv.lead is None:
        return None
    lead = iv.lead.email.casefold()
    found = [
        m
        for m in msgs
        if m.kind is MessageKind.OUT_OF_OFFICE
        and m.return_date is not None
        and m.at >= iv.end
        and _address(m.sender) == lead
    ]
    if not found:
        return None
    return max(found, key=lambda m: (m.return_date, m.at))


def _sent_at(row: DraftRow, msgs: Sequence[MessageRow]) -> datetime:
    """When a follow-up went out: the sent message made from it, else its creation, else due."""
    sent = [m.at for m in msgs if m.our_draft_id == row.id and m.kind is MessageKind.OWN]
    if sent:
        return min(sent)
    return row.created_at if row.created_at is not None else row.due


class _Pass:
    """Collects the actions for one interview, at most one per draft row."""

    def __init__(self) -> None:
        self.actions: list[Action] = []
        self.touched: set[int] = set()
        self.cancelled: set[int] = set()

    def add(self, action: Action) -> None:
        self.actions.append(action)
        draft_id = getattr(action, "draft_id", None)
        if isinstance(draft_id, int):
            self.touched.add(draft_id)
            if isinstance(action, CancelDraft):
                self.cancelled.add(draft_id)


def _keep_due(
    out: _Pass, row: DraftRow, desired: datetime, now: datetime, late: bool, what: str
) -> None:
    """Bring a PLANNED/CREATING row in line with its desired due time."""
    if row.state is DraftState.CREATING:
        out.add(CreateDraft(row.id, f"{what}: finishing a creation that was interrupted.", late))
    elif desired <= now:
        note = " (late: the service was not running in time)" if late else ""
        out.add(CreateDraft(row.id, f"{what} is due{note}.", late))
    elif row.due != desired:
        out.add(Reschedule(row.id, desired, f"{what}: the interview moved, so the draft moves."))


# --- thank-you -------------------------------------------------------------------------


def _thank_yous(
    out: _Pass,
    iv: InterviewRow,
    drafts: Sequence[DraftRow],
    notes: Mapping[str, Sequence[MessageRow]],
    policy: Policy,
    now: datetime,
) -> None:
    rows = [d for d in drafts if d.kind is DraftKind.THANK_YOU]
    bound_at = iv.end + _bound(policy)
    lookback_at = iv.end + policy.lookback
    due = thank_you_due(iv.end, policy)
    seen: set[str] = set()
    for person in iv.attendees:
        key = person.email.casefold()
        if key in seen:
            continue
        seen.add(key)
        what = f"Thank-you to {_who(person)} for {_about(iv)}"
        theirs = [d for d in rows if d.recipient.email.casefold() == key]
        mine = [d for d in theirs if d.state is not DraftState.CANCELLED]
        cancelled = [d for d in theirs if d.state is DraftState.CANCELLED]
        by_hand = _wrote_by_hand(iv, key, notes, policy)
        too_late = now > lookback_at
        late = now > bound_at
        for row in mine:
            if row.state not in _PENDING:
                continue
            if by_hand:
                out.add(CancelDraft(row.id, f"{what}: you already wrote to them yourself."))
            elif too_late:
                out.add(
                    CancelDraft(
                        row.id,
                        f"{what}: too late, the interview ended more than "
                        f"{_duration(policy.lookback)} ago.",
                    )
                )
            else:
                _keep_due(out, row, due, now, late, what)
        if mine:
            continue  # one row per interviewer (the ledger's key); final decisions stick
        if cancelled:
            if not (by_hand or too_late):  # wanted again: the same row, the same Message-ID
                out.add(
                    ReviveDraft(
                        cancelled[0].id,
                        now if late else due,
                        late,
                        f"{what} planned again for {_when(now if late else due, policy)}: "
                        "it is wanted again.",
                    )
                )
            continue
        if by_hand or too_late:
            skip = (
                f"you already wrote to {person.email} yourself"
                if by_hand
                else f"the interview ended more than {_duration(policy.lookback)} ago"
            )
            out.add(
                PlanDraft(
                    iv.id,
                    DraftKind.THANK_YOU,
                    1,
                    person,
                    now,
                    False,  # never made, so never late
                    skip,
                    f"{what} skipped: {skip}.",
                    look_first=by_hand,
                )
            )
        elif late:
            out.add(
                PlanDraft(
                    iv.id,
                    DraftKind.THANK_YOU,
                    1,
                    person,
                    now,
                    True,
                    None,
                    f"{what} is late (the 24-hour window closed at "
                    f"{_when(bound_at, policy)}); creating it now.",
                )
            )
        else:
            out.add(
                PlanDraft(
                    iv.id,
                    DraftKind.THANK_YOU,
                    1,
                    person,
                    due,
                    False,
                    None,
                    f"{what} planned for {_when(due, policy)}.",
                )
            )
    for row in rows:
        if row.recipient.email.casefold() not in seen and row.state in _PENDING:
            out.add(
                CancelDraft(
                    row.id,
                    f"Thank-you to {_who(row.recipient)} cancelled: "
                    f"no longer an attendee of {_about(iv)}.",
                )
            )


# --- follow-up -------------------------------------------------------------------------


def _follow_ups(
    out: _Pass,
    iv: InterviewRow,
    drafts: Sequence[DraftRow],
    msgs: Sequence[MessageRow],
    policy: Policy,
    now: datetime,
) -> None:
    rows = sorted((d for d in drafts if d.kind is DraftKind.FOLLOW_UP), key=lambda d: (d.seq, d.id))
    about = _about(iv)
    if _employer_replied(iv, msgs):
        lead = iv.lead
        lookup = _unrecorded_follow_up_lookup(iv, rows, msgs, policy)
        if lead is not None and lookup is not None and now >= lookup:
            # No follow-up is wanted, but one may be in Drafts that this ledger never heard
            # of (made before it was lost): looked up once, then kept as a skipped row. Found,
            # it is adopted, and taken back (or flagged, if the user edited it) below.
            out.add(PlanDraft(
                iv.id, DraftKind.FOLLOW_UP, 1, lead, now, False, "the employer replied",
                f"Follow-up 1 to {_who(lead)} for {about} not needed: the employer replied.",
                look_first=True,
            ))
        for row in rows:
            what = f"Follow-up to {_who(row.recipient)} for {about}"
            if row.state in _PENDING:
                out.add(CancelDraft(row.id, f"{what} cancelled: the employer replied."))
            elif row.state is DraftState.CREATED:
                out.add(RetractDraft(row.id, f"{what} taken back: the employer replied."))
            elif row.state is DraftState.USER_EDITED and not row.flagged:
                out.add(
                    FlagDraft(
                        row.id,
                        f"{what}: the employer replied, but you edited this "
                        "draft, so it stays; check before sending it.",
                    )
                )
        return
    if _manual_follow_up(iv, msgs, policy):
        for row in rows:
            if row.state in _PENDING:
                out.add(
                    CancelDraft(
                        row.id,
                        f"Follow-up to {_who(row.recipient)} for {about} "
                        "cancelled: you already followed up yourself.",
                    )
                )
        return

    lead = iv.lead
    lead_key = lead.email.casefold() if lead is not None else None
    for row in rows:
        if row.state in _PENDING and row.recipient.email.casefold() != lead_key:
            why = (
                "there is no lead interviewer" if lead is None else f"the lead is now {lead.email}"
            )
            out.add(
                CancelDraft(
                    row.id, f"Follow-up to {_who(row.recipient)} for {about} cancelled: {why}."
                )
            )
    live = [d for d in rows if d.state in _OPEN and d.id not in out.cancelled]
    counted = [
        d
        for d in rows
        if d.state not in (DraftState.CANCELLED, DraftState.SKIPPED) and d.id not in out.cancelled
    ]
    ooo = _out_of_office_return(iv, msgs)

    def desired(earlier: Sequence[DraftRow], fallback: datetime) -> datetime:
        if not earlier:
            due = follow_up_due(iv.end, iv.decision_date, policy)
        elif earlier[-1].state is DraftState.SENT:
            due = next_follow_up_due(_sent_at(earlier[-1], msgs), policy)
        else:
            due = fallback
        if ooo is not None and ooo.return_date is not None:
            due = out_of_office_due(due, ooo.return_date, policy)
        return due

    for row in live:
        if row.state in _PENDING:
            earlier = [d for d in counted if (d.seq, d.id) < (row.seq, row.id)]
            what = f"Follow-up {row.seq} to {_who(row.recipient)} for {about}"
            _keep_due(out, row, desired(earlier, row.due), now, False, what)

    if lead is None or live:
        return  # never stack a second follow-up on an open one
    if any(d.state is DraftState.USER_DELETED for d in rows):
        return  # the user deleted one: the series is over
    cap = max(0, min(policy.max_follow_ups, HARD_MAX_FOLLOW_UPS))
    if len(counted) >= cap:
        return
    if counted and counted[-1].state is not DraftState.SENT:
        return  # the last one was retracted or the like: no further follow-up
    seq = len(counted) + 1
    due = desired(counted, iv.end)
    same = [d for d in rows if d.seq == seq and d.recipient.email.casefold() == lead_key]
    if same:
        # The ledger keeps one row per seq and recipient: a cancelled one comes back.
        if same[0].state is DraftState.CANCELLED:
            out.add(
                ReviveDraft(
                    same[0].id, due, False,
                    f"Follow-up {seq} to {_who(lead)} for {about} planned again for "
                    f"{_when(due, policy)}: it is wanted again.",
                )
            )
        return
    if counted:
        why = f"follow-up {len(counted)} was sent"
    elif iv.decision_date is None:
        why = "no reply yet"
    elif iv.decision_date <= (iv.end + DECISION_HORIZON).date():
        why = f"the employer said they would decide by {iv.decision_date.isoformat()}"
    else:
        why = (f"no reply yet (the decision date {iv.decision_date.isoformat()} is too far "
               "away to be real, so it was ignored)")
    if ooo is not None and ooo.return_date is not None:
        why += f"; {lead.email} is out of office until {ooo.return_date.isoformat()}"
    out.add(
        PlanDraft(
            iv.id,
            DraftKind.FOLLOW_UP,
            seq,
            lead,
            due,
            False,
            None,
            f"Follow-up {seq} to {_who(lead)} for {about} planned for "
            f"{_when(due, policy)} ({why}).",
        )
    )


# --- notes and reminder ----------------------------------------------------------------


def _notes(out: _Pass, iv: InterviewRow, drafts: Sequence[DraftRow]) -> None:
    for row in drafts:
        if (
            row.state is DraftState.CREATED
            and row.notes_version < iv.notes_version
            and row.id not in out.touched
        ):
            out.add(
                UpdateDraft(
                    row.id,
                    f"Draft to {_who(row.recipient)} for {_about(iv)} "
                    "updated with your newer interview notes.",
                )
            )


def _reminder_candidates(
    iv: InterviewRow, drafts: Sequence[DraftRow], policy: Policy
) -> tuple[datetime, tuple[int, ...]] | None:
    """When the reminder for this interview becomes due, and which drafts it names.

    Only drafts created before that moment count: a draft that appears after it (late, after
    downtime) is news in itself and needs no nudge.
    """
    if policy.reminder_after is None or iv.state is not InterviewState.ACTIVE:
        return None
    thanks = [d for d in drafts if d.kind is DraftKind.THANK_YOU]
    if any(d.reminded_at is not None for d in thanks):
        return None
    at = iv.end + policy.reminder_after
    ids = tuple(
        d.id for d in thanks if d.state.on_server and (d.created_at is None or d.created_at < at)
    )
    if not ids:
        return None
    return at, ids


def _reminder(
    out: _Pass, iv: InterviewRow, drafts: Sequence[DraftRow], policy: Policy, now: datetime
) -> None:
    found = _reminder_candidates(iv, drafts, policy)
    if found is None:
        return
    at, ids = found
    closes = iv.end + _bound(policy)
    if at <= now < closes and not in_quiet_hours(now, policy):
        count = f"{len(ids)} thank-you drafts are" if len(ids) > 1 else "a thank-you draft is"
        out.add(
            Remind(
                iv.id,
                ids,
                f"Reminder: {count} still waiting for {_about(iv)}; the 24-hour "
                f"window closes at {_when(closes, policy)}.",
            )
        )


# --- entry points ----------------------------------------------------------------------


def _grouped(snapshot: Snapshot) -> tuple[dict[int, list[DraftRow]], dict[int, list[MessageRow]]]:
    drafts: dict[int, list[DraftRow]] = {}
    for d in sorted(snapshot.drafts, key=lambda d: d.id):
        drafts.setdefault(d.interview_id, []).append(d)
    msgs: dict[int, list[MessageRow]] = {}
    for m in snapshot.messages:
        msgs.setdefault(m.interview_id, []).append(m)
    return drafts, msgs


def _utc(now: datetime) -> datetime:
    if now.tzinfo is None:
        raise ValueError("plan() needs an aware 'now'")
    return now.astimezone(UTC)


def plan(snapshot: Snapshot, policy: Policy, now: datetime) -> list[Action]:
    """What should change now, in a deterministic order (interview id, then thank-yous in
    attendee order, follow-ups, note updates, the reminder).

    Drafts of interviews absent from the snapshot are left alone: a partial view is not
    evidence that an interview is gone.
    """
    now = _utc(now)
    drafts, msgs = _grouped(snapshot)
    notes = _notes_by_hand(snapshot.messages)
    actions: list[Action] = []
    for iv in sorted(snapshot.interviews, key=lambda i: i.id):
        out = _Pass()
        mine = drafts.get(iv.id, [])
        if iv.missing_since is not None:
            continue  # held: absent from the calendar, not (yet) removed
        if iv.state is InterviewState.CANCELLED:
            for row in mine:
                if row.state in _PENDING:
                    out.add(
                        CancelDraft(
                            row.id,
                            f"Draft to {_who(row.recipient)} cancelled: "
                            f"{_about(iv)} was cancelled.",
                        )
                    )
        else:
            their = msgs.get(iv.id, [])
            _thank_yous(out, iv, mine, notes, policy, now)
            _follow_ups(out, iv, mine, their, policy, now)
            _notes(out, iv, mine)
            _reminder(out, iv, mine, policy, now)
        actions.extend(out.actions)
    return actions


def next_wakeup(snapshot: Snapshot, policy: Policy, now: datetime) -> datetime | None:
    """The earliest moment after ``now`` at which plan() would have something new to say, or
    None. Call it on the snapshot after the actions of plan(now) were carried out."""
    now = _utc(now)
    drafts, msgs = _grouped(snapshot)
    moments: list[datetime] = []
    for iv in snapshot.interviews:
        if iv.state is not InterviewState.ACTIVE:
            continue
        if iv.missing_since is not None:
            moments.append(iv.missing_since + policy.removal_grace)  # when it counts as removed
            continue
        mine = drafts.get(iv.id, [])
        lookup = _unrecorded_follow_up_lookup(iv, mine, msgs.get(iv.id, []), policy)
        if lookup is not None:
            moments.append(lookup)
        for row in mine:
            if row.state is DraftState.PLANNED:
                moments.append(row.due)
                if row.kind is DraftKind.THANK_YOU:
                    # When it becomes too late: the first instant past the look-back (plan
                    # compares with ">"), so a pass at the look-back itself still wakes again.
                    moments.append(iv.end + policy.lookback + _TICK)
        found = _reminder_candidates(iv, mine, policy)
        if found is not None:
            at = after_quiet_hours(max(found[0], now), policy)
            if at < iv.end + _bound(policy):
                moments.append(at)
    return _earliest(m for m in moments if m > now)


def next_archive(snapshot: Snapshot, policy: Policy, now: datetime) -> datetime | None:
    """The earliest moment after ``now`` at which time alone may make `finished` true for an
    interview of the snapshot (its thank-you window closing), or None: until then, with the
    snapshot unchanged, no pass archives anything."""
    now = _utc(now)
    drafts, _ = _grouped(snapshot)
    return _earliest(
        at
        for iv in snapshot.interviews
        if iv.missing_since is None and all(d.state.final for d in drafts.get(iv.id, []))
        for at in (_archive_from(iv, policy),)
        if at > now
    )


def _archive_from(iv: InterviewRow, policy: Policy) -> datetime:
    """When an interview's thank-you window (late ones included) is over for good."""
    return iv.end + max(policy.lookback, _bound(policy))


def finished(
    iv: InterviewRow,
    drafts: Sequence[DraftRow],
    msgs: Sequence[MessageRow],
    policy: Policy,
    now: datetime,
) -> bool:
    """Whether the interview is over for good, so it may go to the archive: every draft of it
    is final (sent or deleted by the user, retracted, cancelled, skipped), nothing is to be
    planned for it now (no thank-you or further follow-up owed, nothing to revive), and its
    thank-you window is closed, so the passing of time alone changes nothing either.

    A draft still waiting in Drafts (made, or edited by the user) keeps the interview live:
    the user may still send or delete it, and a reply must still take a follow-up back. So
    does an event missing from the calendar. Only news (the calendar, the user) changes the
    inputs afterwards, and news brings the interview back (the ledger clears the mark).
    """
    now = _utc(now)
    if iv.missing_since is not None:
        return False
    if now < _archive_from(iv, policy):
        return False  # a thank-you may still be owed, late or not
    if any(not d.state.final for d in drafts):
        return False
    return not plan(Snapshot((iv,), tuple(drafts), tuple(msgs)), policy, now)


def _earliest(moments: Iterable[datetime]) -> datetime | None:
    return min(moments, default=None)
