"""Decisions about the drafts we made and about pauses: pure functions over reported facts.

The mailboxes only report what they see (`Observation`, `SentCandidate`); whether a draft was
sent, deleted or edited by the user, whether a half-finished create is taken back, and whether
an account is held are decided here, the same way for every provider. No I/O.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from mailbridge.compose import is_draft_message_id
from mailbridge.model import (
    DraftKind,
    DraftRow,
    DraftState,
    Located,
    Observation,
    Place,
    Presence,
    SentCandidate,
    SentHint,
)

# How much earlier than the draft's creation a sent copy may be dated and still be the draft:
# its Date comes from the user's program, whose clock (or the server's) may run behind ours.
SENT_SLACK = timedelta(hours=1)

_REPLY_PREFIX = re.compile(r"^\s*((re|fwd?|aw|wg|sv|tr)\s*:\s*)+", re.IGNORECASE)


def subject_key(subject: str) -> str:
    """A subject without leading "Re:"/"Fwd:" (and common localized forms), for comparing."""
    return " ".join(_REPLY_PREFIX.sub("", subject).split()).casefold()


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def is_sent_copy(candidate: SentCandidate, hint: SentHint) -> bool:
    """Whether a message in Sent is the hinted draft, sent under a Message-ID of its own: to the
    same recipient, not dated before the draft was made (less `SENT_SLACK`), and in the
    draft's thread (by the mailbox's threading or by its references) or, outside it, under
    the same subject (ignoring "Re:"/"Fwd:"). The message the draft replies to (a sent
    thank-you in a follow-up's thread) is never the draft, nor is another of our drafts (the
    thank-you for another interview with the same person and title)."""
    if candidate.message_id and candidate.message_id in hint.thread:
        return False
    if hint.address and is_draft_message_id(hint.address, candidate.message_id):
        return False
    if hint.recipient.lower() not in {r.lower() for r in candidate.recipients}:
        return False
    if candidate.date is not None and _aware(candidate.date) < _aware(hint.since) - SENT_SLACK:
        return False
    if candidate.in_draft_thread or set(candidate.thread) & set(hint.thread):
        return True
    return bool(hint.subject) and subject_key(candidate.subject) == subject_key(hint.subject)


def presence(seen: Observation, hint: SentHint | None) -> Presence:
    """Where the draft is: as the mailbox found it by its ids, except that a draft gone from
    Drafts whose copy is in Sent under a new Message-ID was sent."""
    if seen.presence != Presence.GONE or hint is None:
        return seen.presence
    if any(is_sent_copy(candidate, hint) for candidate in seen.sent_candidates):
        return Presence.SENT
    return Presence.GONE


class Outcome(enum.StrEnum):
    """What became of a draft we made, as one observation shows it."""

    OURS = "ours"  # in Drafts, exactly as we recorded it
    UPDATE_LANDED = "update_landed"  # in Drafts with the text an interrupted update wrote
    EDITED = "edited"  # in Drafts, changed by the user
    SENT = "sent"  # the user sent it
    DELETED = "deleted"  # gone from Drafts unsent


def outcome(draft: DraftRow, seen: Observation, hint: SentHint | None) -> Outcome:
    where = presence(seen, hint)
    if where == Presence.SENT:
        return Outcome.SENT
    if where == Presence.GONE:
        return Outcome.DELETED
    if seen.content_hash and seen.content_hash == draft.content_hash:
        return Outcome.OURS
    if seen.content_hash and seen.content_hash == draft.pending_hash:
        return Outcome.UPDATE_LANDED
    return Outcome.EDITED


def new_state(draft: DraftRow, result: Outcome) -> DraftState | None:
    """The draft's state after ``result``, or None when it stays as it is. An edited draft stays
    edited for good, even if the user puts our text back. An unedited follow-up gone from
    Drafts while we were taking it back (``trashed``: the move was under way, and its answer
    was lost or the pass cut short) was retracted by us, not deleted by the user."""
    if result == Outcome.SENT:
        return DraftState.SENT
    if result == Outcome.DELETED:
        if retracting(draft):
            return DraftState.RETRACTED
        return DraftState.USER_DELETED
    if result == Outcome.EDITED and draft.state == DraftState.CREATED:
        return DraftState.USER_EDITED
    return None


def retracting(draft: DraftRow) -> bool:
    """Whether a retraction of ours was under way for this draft: only an unedited follow-up
    is ever taken back, and the engine records ``trashed`` on it right before the move (a
    created draft carries no older ``trashed``: creating it clears the mark)."""
    return draft.kind is DraftKind.FOLLOW_UP and draft.state is DraftState.CREATED and draft.trashed


def unchanged(draft: DraftRow, version: str | None) -> bool:
    """Whether the mailbox's cheap marker says the draft was not touched since it was last
    observed in full, so it need not be read (or proofread) again. No marker: look."""
    return bool(draft.version) and version == draft.version


def deciding_copy(found: Located | None, trashed: bool) -> Located | None:
    """What a Message-ID lookup before a write found, leaving out a copy in Trash that we put
    there ourselves (``trashed``): that one says nothing about the user."""
    if found is not None and found.place == Place.TRASH and trashed:
        return None
    return found


def state_found_in(place: Place) -> DraftState:
    """The state of a draft whose Message-ID was found in ``place`` before it was written:
    Drafts holds it as we made it, Sent means the user sent it, Trash that they deleted it."""
    return {Place.DRAFTS: DraftState.CREATED, Place.SENT: DraftState.SENT,
            Place.TRASH: DraftState.USER_DELETED}[place]  # fmt: skip


class Repair(enum.StrEnum):
    """What to do with a copy an interrupted create may have left in Drafts, when the draft is
    no longer wanted."""

    NOTHING = "nothing"  # no copy in Drafts
    KEEP = "keep"  # the user changed it, or it cannot be compared: it is the user's now
    TAKE_BACK = "take_back"  # exactly what we would have written: remove it


def interrupted_create(seen: Observation | None, ours: str | None) -> Repair:
    """``seen``: the copy found in Drafts by its Message-ID (None: none found); ``ours``: the
    fingerprint of what we would write (None when the template cannot render it now)."""
    if seen is None or seen.presence != Presence.PRESENT:
        return Repair.NOTHING
    if ours is None or seen.content_hash != ours:
        return Repair.KEEP
    return Repair.TAKE_BACK


def update_landed(seen: Observation, written: str) -> bool:
    """After an update whose answer was lost: whether Drafts holds what it wrote."""
    return seen.presence == Presence.PRESENT and seen.content_hash == written


# --- pauses ------------------------------------------------------------------------------

CALENDAR = "calendar"
MAILBOX = "mailbox"
EVERY_CAUSE = "*"


@dataclass(frozen=True)
class PauseStep:
    """What a pause check decides: whether the pass goes on, and what changes in the ledger."""

    proceed: bool
    pause: str | None = None  # pause for this reason (under the check's cause)
    lift: str | None = None  # the cause whose pause ends (EVERY_CAUSE: all of them)
    audit: tuple[str, str] | None = None  # (decision, reason) for the audit log


def calendar_pause(fault: str | None, causes: Mapping[str, str], confirmed: bool) -> PauseStep:
    """After a calendar read. ``fault``: why the listing looks wrong (None: it looks sane);
    ``causes``: the pauses in force; ``confirmed``: the user ran `mailbridge resume`, which
    lifts every cause and counts for one pass."""
    if fault and not confirmed:
        if causes.get(CALENDAR) == fault:
            return PauseStep(proceed=False)  # said already
        return PauseStep(proceed=False, pause=fault, audit=("paused", fault))
    if confirmed:
        audit = ("resumed", "you confirmed it with `mailbridge resume`") if causes else None
        return PauseStep(proceed=True, lift=EVERY_CAUSE, audit=audit)
    if CALENDAR in causes:  # only the calendar's own pause ends here
        return PauseStep(proceed=True, lift=CALENDAR,
                         audit=("resumed", "the calendar looks sane again"))
    return PauseStep(proceed=True)


def mailbox_pause(problem: str | None, causes: Mapping[str, str]) -> PauseStep:
    """After looking at the mailbox. ``problem``: why it looks wrong (Drafts is gone), None
    when Drafts is there; a mailbox pause ends by itself once it is back."""
    if problem is not None:
        if causes.get(MAILBOX) == problem:
            return PauseStep(proceed=False)
        return PauseStep(proceed=False, pause=problem, audit=("paused", problem))
    if MAILBOX in causes:
        return PauseStep(proceed=True, lift=MAILBOX, audit=("resumed", "the Drafts folder is back"))
    return PauseStep(proceed=True)


def held(paused: str | None, confirmed: bool) -> str | None:
    """Why the account may change nothing in the mailbox now, or None."""
    return paused if paused and not confirmed else None
