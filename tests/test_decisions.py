"""The decisions about our drafts and about pauses, as tables: one rule for every provider.

The providers only report facts (`Observation`, `SentCandidate`); these tables pin what
`mailbridge.drafts` makes of them.
"""

from __future__ import annotations

import dataclasses
import email
import email.policy
import email.utils
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mailbridge import drafts
from mailbridge.compose import message_id
from mailbridge.drafts import Outcome, PauseStep, Repair
from mailbridge.model import (
    DraftKind,
    DraftRow,
    DraftState,
    EventKey,
    Located,
    Observation,
    Person,
    Place,
    Presence,
    SentCandidate,
    SentHint,
)

LEAD = "avery.chen@acme.example"
SINCE = datetime(2024, 5, 6, 15, 0, tzinfo=UTC)
HINT = SentHint(LEAD, "Thank you", SINCE, ("<t@acme.example>",))


@pytest.mark.parametrize(
    ("subject", "key"),
    [
        ("Thank you", "thank you"),
        ("Re: Thank you", "thank you"),
        ("RE: Fwd:  re: Thank   you", "thank you"),
        ("Fw: Thank you", "thank you"),
        ("AW: Danke", "danke"),
        ("Reply about the role", "reply about the role"),
        ("Re: Thank you, Maria", "thank you, maria"),
        ("", ""),
    ],
)
def test_subject_key(subject: str, key: str) -> None:
    assert drafts.subject_key(subject) == key


def sent(
    to: tuple[str, ...] = (LEAD,),
    subject: str = "Thank you",
    date: datetime | None = SINCE,
    thread: tuple[str, ...] = (),
    in_draft_thread: bool = False,
) -> SentCandidate:
    return SentCandidate(to, subject, date, thread, in_draft_thread)


@pytest.mark.parametrize(
    ("candidate", "is_copy"),
    [
        (sent(), True),
        (sent(to=("AVERY.CHEN@acme.example",), subject="Re: Thank you"), True),
        (sent(to=("hr@acme.example", LEAD)), True),  # among others (To and Cc)
        (sent(to=("hr@acme.example",)), False),  # someone else
        (sent(date=SINCE - timedelta(days=2)), False),  # older than the draft
        (sent(date=SINCE - drafts.SENT_SLACK + timedelta(minutes=1)), True),  # clock skew
        (sent(date=SINCE - drafts.SENT_SLACK - timedelta(minutes=1)), False),
        (sent(date=datetime(2024, 5, 6, 15, 0)), True),  # naive: taken as UTC
        (sent(date=None), True),  # no date: the mailbox's own narrowing decided
        (sent(subject="Something else"), False),
        (sent(subject="Something else", thread=("<t@acme.example>",)), True),  # replies in it
        (sent(subject="Something else", in_draft_thread=True), True),  # the mailbox threads it
        (sent(to=("hr@acme.example",), in_draft_thread=True), False),  # thread, other person
        # The message the draft replies to (the sent thank-you) is not the draft.
        (SentCandidate((LEAD,), "Thank you", SINCE, (), True, "<t@acme.example>"), False),
    ],
)
def test_is_sent_copy(candidate: SentCandidate, is_copy: bool) -> None:
    assert drafts.is_sent_copy(candidate, HINT) is is_copy


def test_another_of_our_drafts_in_sent_is_not_this_one_sent_as_a_copy() -> None:
    # Two interviews with one person and one title: the other thank-you, sent, is not this
    # one (gone to Trash) sent under a Message-ID of its own.
    me = "jordan.lee@mail.example"
    other = message_id(me, EventKey("", "iv-b"), LEAD, DraftKind.THANK_YOU, 1)
    hint = dataclasses.replace(HINT, address=me)
    candidate = dataclasses.replace(sent(), message_id=other)
    assert not drafts.is_sent_copy(candidate, hint)
    assert drafts.is_sent_copy(dataclasses.replace(sent(), message_id="<CA1@mail.example>"), hint)
    assert drafts.is_sent_copy(candidate, HINT)  # no address given: by the facts alone


def test_a_hint_without_subject_matches_by_thread_only() -> None:
    hint = SentHint(LEAD, "", SINCE)
    assert not drafts.is_sent_copy(sent(subject=""), hint)
    assert drafts.is_sent_copy(sent(subject="", in_draft_thread=True), hint)


@pytest.mark.parametrize(
    ("seen", "hint", "where"),
    [
        (Observation(Presence.PRESENT, "h"), HINT, Presence.PRESENT),
        (Observation(Presence.SENT), None, Presence.SENT),
        (Observation(Presence.GONE), HINT, Presence.GONE),
        (Observation(Presence.GONE, sent_candidates=(sent(),)), HINT, Presence.SENT),
        (Observation(Presence.GONE, sent_candidates=(sent(),)), None, Presence.GONE),
        (Observation(Presence.GONE, sent_candidates=(sent(to=("hr@acme.example",)),
                                                     sent(subject="Other"))), HINT, Presence.GONE),
        # Candidates next to a copy in Drafts change nothing: Drafts decides.
        (Observation(Presence.PRESENT, "h", sent_candidates=(sent(),)), HINT, Presence.PRESENT),
    ],
)
def test_presence(seen: Observation, hint: SentHint | None, where: Presence) -> None:
    assert drafts.presence(seen, hint) is where


def row(state: DraftState = DraftState.CREATED, content: str = "ours", pending: str = "",
        version: str = "", kind: DraftKind = DraftKind.THANK_YOU,
        trashed: bool = False) -> DraftRow:
    return DraftRow(
        id=1, interview_id=1, kind=kind, seq=1, recipient=Person(LEAD),
        state=state, due=SINCE, message_id="<m@x>", provider_id="p1", content_hash=content,
        pending_hash=pending, version=version, trashed=trashed,
    )  # fmt: skip


FOLLOW_UP = DraftKind.FOLLOW_UP


@pytest.mark.parametrize(
    ("draft", "seen", "result", "state"),
    [
        (row(), Observation(Presence.PRESENT, "ours"), Outcome.OURS, None),
        (row(pending="next"), Observation(Presence.PRESENT, "next"), Outcome.UPDATE_LANDED, None),
        (row(), Observation(Presence.PRESENT, "theirs"), Outcome.EDITED, DraftState.USER_EDITED),
        (row(), Observation(Presence.PRESENT, ""), Outcome.EDITED, DraftState.USER_EDITED),
        (row(content=""), Observation(Presence.PRESENT, ""), Outcome.EDITED,
         DraftState.USER_EDITED),  # nothing to compare: never taken for ours
        # Edited stays edited, even when the user puts our text back.
        (row(DraftState.USER_EDITED), Observation(Presence.PRESENT, "theirs"), Outcome.EDITED,
         None),
        (row(DraftState.USER_EDITED), Observation(Presence.PRESENT, "ours"), Outcome.OURS, None),
        (row(), Observation(Presence.SENT), Outcome.SENT, DraftState.SENT),
        (row(DraftState.USER_EDITED), Observation(Presence.SENT), Outcome.SENT, DraftState.SENT),
        (row(), Observation(Presence.GONE), Outcome.DELETED, DraftState.USER_DELETED),
        (row(), Observation(Presence.GONE, sent_candidates=(sent(),)), Outcome.SENT,
         DraftState.SENT),
        (row(), Observation(Presence.GONE, sent_candidates=(sent(subject="Other"),)),
         Outcome.DELETED, DraftState.USER_DELETED),
        # Gone while our retraction was under way (its answer lost): ours, not the user's.
        (row(kind=FOLLOW_UP, trashed=True), Observation(Presence.GONE), Outcome.DELETED,
         DraftState.RETRACTED),
        (row(kind=FOLLOW_UP), Observation(Presence.GONE), Outcome.DELETED,
         DraftState.USER_DELETED),
        # An edited follow-up is never taken back: gone, the user deleted it.
        (row(DraftState.USER_EDITED, kind=FOLLOW_UP, trashed=True), Observation(Presence.GONE),
         Outcome.DELETED, DraftState.USER_DELETED),
        # Sent is sent, whatever we were about to do.
        (row(kind=FOLLOW_UP, trashed=True), Observation(Presence.SENT), Outcome.SENT,
         DraftState.SENT),
    ],
)
def test_outcome_and_state(
    draft: DraftRow, seen: Observation, result: Outcome, state: DraftState | None
) -> None:
    assert drafts.outcome(draft, seen, HINT) is result
    assert drafts.new_state(draft, result) == state


@pytest.mark.parametrize(
    ("draft", "retracting"),
    [
        (row(kind=FOLLOW_UP, trashed=True), True),
        (row(kind=FOLLOW_UP), False),  # no removal of ours under way
        (row(DraftState.USER_EDITED, kind=FOLLOW_UP, trashed=True), False),  # never taken back
        (row(DraftState.RETRACTED, kind=FOLLOW_UP, trashed=True), False),  # done already
        (row(trashed=True), False),  # a thank-you is never taken back
    ],
)
def test_retracting(draft: DraftRow, retracting: bool) -> None:
    assert drafts.retracting(draft) is retracting


@pytest.mark.parametrize(
    ("stored", "now", "unchanged"),
    [
        ("v1", "v1", True),
        ("v1", "v2", False),  # touched since
        ("v1", None, False),  # the mailbox could not vouch for it: look
        ("", "", False),  # never observed in full
        ("", None, False),
    ],
)
def test_unchanged(stored: str, now: str | None, unchanged: bool) -> None:
    assert drafts.unchanged(row(version=stored), now) is unchanged


@pytest.mark.parametrize(
    ("found", "trashed", "deciding"),
    [
        (None, False, None),
        (Located(Place.DRAFTS, "d"), True, Located(Place.DRAFTS, "d")),
        (Located(Place.SENT, "s"), True, Located(Place.SENT, "s")),
        (Located(Place.TRASH, "t"), False, Located(Place.TRASH, "t")),  # the user's doing
        (Located(Place.TRASH, "t"), True, None),  # the copy we moved there ourselves
    ],
)
def test_deciding_copy(found: Located | None, trashed: bool, deciding: Located | None) -> None:
    assert drafts.deciding_copy(found, trashed) == deciding


@pytest.mark.parametrize(
    ("place", "state"),
    [(Place.DRAFTS, DraftState.CREATED), (Place.SENT, DraftState.SENT),
     (Place.TRASH, DraftState.USER_DELETED)],
)
def test_state_found_in(place: Place, state: DraftState) -> None:
    assert drafts.state_found_in(place) is state


@pytest.mark.parametrize(
    ("seen", "ours", "repair"),
    [
        (None, "ours", Repair.NOTHING),  # the create never reached the mailbox
        (Observation(Presence.GONE), "ours", Repair.NOTHING),  # gone between look and read
        (Observation(Presence.SENT), "ours", Repair.NOTHING),
        (Observation(Presence.PRESENT, "ours"), "ours", Repair.TAKE_BACK),
        (Observation(Presence.PRESENT, "theirs"), "ours", Repair.KEEP),  # the user changed it
        (Observation(Presence.PRESENT, "ours"), None, Repair.KEEP),  # cannot compare: keep
    ],
)
def test_interrupted_create(seen: Observation | None, ours: str | None, repair: Repair) -> None:
    assert drafts.interrupted_create(seen, ours) is repair


@pytest.mark.parametrize(
    ("seen", "landed"),
    [
        (Observation(Presence.PRESENT, "new"), True),
        (Observation(Presence.PRESENT, "old"), False),
        (Observation(Presence.GONE), False),
        (Observation(Presence.SENT), False),
    ],
)
def test_update_landed(seen: Observation, landed: bool) -> None:
    assert drafts.update_landed(seen, "new") is landed


FAULT = "the calendar suddenly lost 5 of 6 known events"
SANE = "the calendar looks sane again"
CONFIRMED = "you confirmed it with `mailbridge resume`"


@pytest.mark.parametrize(
    ("fault", "causes", "confirmed", "step"),
    [
        (None, {}, False, PauseStep(proceed=True)),
        (FAULT, {}, False, PauseStep(False, pause=FAULT, audit=("paused", FAULT))),
        (FAULT, {"calendar": FAULT}, False, PauseStep(False)),  # said once
        (FAULT, {"calendar": "older"}, False, PauseStep(False, pause=FAULT,
                                                         audit=("paused", FAULT))),
        (FAULT, {"mailbox": "x"}, False, PauseStep(False, pause=FAULT, audit=("paused", FAULT))),
        (None, {"calendar": FAULT}, False, PauseStep(True, lift="calendar",
                                                      audit=("resumed", SANE))),
        (None, {"mailbox": "x"}, False, PauseStep(True)),  # not the calendar's to lift
        # `resume` lifts every cause, faulty listing or not, and counts once.
        (FAULT, {"calendar": FAULT}, True, PauseStep(True, lift=drafts.EVERY_CAUSE,
                                                     audit=("resumed", CONFIRMED))),
        (None, {"mailbox": "x"}, True, PauseStep(True, lift=drafts.EVERY_CAUSE,
                                                  audit=("resumed", CONFIRMED))),
        (None, {}, True, PauseStep(True, lift=drafts.EVERY_CAUSE)),
    ],
)
def test_calendar_pause(
    fault: str | None, causes: dict[str, str], confirmed: bool, step: PauseStep
) -> None:
    assert drafts.calendar_pause(fault, causes, confirmed) == step


BACK = "the Drafts folder is back"


@pytest.mark.parametrize(
    ("problem", "causes", "step"),
    [
        (None, {}, PauseStep(True)),
        (None, {"mailbox": "gone"}, PauseStep(True, lift="mailbox", audit=("resumed", BACK))),
        (None, {"calendar": FAULT}, PauseStep(True)),  # the mailbox never lifts the calendar's
        ("gone", {}, PauseStep(False, pause="gone", audit=("paused", "gone"))),
        ("gone", {"mailbox": "gone"}, PauseStep(False)),
        ("gone", {"calendar": FAULT}, PauseStep(False, pause="gone", audit=("paused", "gone"))),
    ],
)
def test_mailbox_pause(problem: str | None, causes: dict[str, str], step: PauseStep) -> None:
    assert drafts.mailbox_pause(problem, causes) == step


@pytest.mark.parametrize(
    ("paused", "confirmed", "held"),
    [(None, False, None), ("why", False, "why"), ("why", True, None), (None, True, None)],
)
def test_held(paused: str | None, confirmed: bool, held: str | None) -> None:
    assert drafts.held(paused, confirmed) == held


# --- the facts come from every mailbox -------------------------------------------------------
# IMAP (tests/test_imap.py) and Gmail (tests/test_gmail.py) report the same candidates; the two
# below used to ignore a draft the user's program sent under a Message-ID of its own.


def test_maildir_reports_a_copy_sent_under_a_new_message_id(tmp_path: Path) -> None:
    import mailbox

    from mailbridge_providers import local

    from tests.test_imap import LEAD as TO
    from tests.test_imap import make_draft

    mailbox.Maildir(tmp_path / "Maildir", create=True)
    box = local.MaildirMailbox(tmp_path / "Maildir")
    message = make_draft(subject="Thank you for today")
    provider_id = box.create_draft(message)
    assert box.sent is not None
    # The user's program sends its own copy under a Message-ID of its own.
    box.sent.add(message.raw.replace(message.message_id.encode(), b"<own@client.example>"))
    box.drafts.remove(provider_id)
    hint = SentHint(TO.email, message.subject, datetime.now(UTC))

    seen = box.observe(provider_id, message.message_id, hint)
    assert seen.presence is Presence.GONE and len(seen.sent_candidates) == 1
    assert drafts.presence(seen, hint) is Presence.SENT
    assert box.observe(provider_id, message.message_id).sent_candidates == ()  # no hint


def test_graph_reports_a_copy_sent_under_a_new_message_id() -> None:
    from tests.emulators.graph import GraphEmulator
    from tests.test_outlook import draft, open_both, sign_in

    emu = GraphEmulator().start()
    try:
        mailbox, _ = open_both(emu, sign_in(emu))
        message = draft("ann@fabrikam.example", "Thank you, Ann", "Thanks for today.")
        provider_id = mailbox.create_draft(message)
        # Another program sends its own copy, and the draft goes to Deleted Items unsent.
        emu.deliver_raw(message.raw.replace(message.message_id.encode(), b"<own@client.test>"),
                        folder="sentitems")  # fmt: skip
        emu.user_deletes(provider_id)
        hint = SentHint("ann@fabrikam.example", message.subject,
                        datetime.now(UTC) - timedelta(minutes=1))  # fmt: skip

        seen = mailbox.observe(provider_id, message.message_id, hint)
        assert seen.presence is Presence.GONE
        assert [c.message_id for c in seen.sent_candidates] == ["<own@client.test>"]
        assert drafts.presence(seen, hint) is Presence.SENT
        other = SentHint("ann@fabrikam.example", "Something else", hint.since)
        assert drafts.presence(mailbox.observe(provider_id, message.message_id, other),
                               other) is Presence.GONE  # fmt: skip
        assert emu.violations == [] and emu.send_attempts == []
    finally:
        emu.stop()


def test_the_engine_records_a_draft_sent_under_a_new_message_id(tmp_path: Path) -> None:
    from tests.test_engine import END, World

    world = World(tmp_path)
    world.add_interview()
    due = END + timedelta(hours=3)
    world.run(due)
    # The user's mail program sends one thank-you as a copy with a Message-ID of its own.
    drafts_box, sent_box = world.folder("Drafts"), world.folder("Sent")
    key = sorted(drafts_box.keys())[0]
    raw = drafts_box.get_bytes(key)
    mine = email.message_from_bytes(raw, policy=email.policy.default)
    sent_box.add(raw.replace(str(mine["Message-ID"]).encode(), b"<own-copy@client.example>"))
    drafts_box.remove(key)
    world.run(due + timedelta(minutes=5))

    to = email.utils.parseaddr(str(mine["To"]))[1].lower()
    row = next(d for d in world.drafts() if d.recipient.email == to)
    assert row.state is DraftState.SENT
    (entry,) = [a for a in world.ledger.audit_entries() if a.decision == "draft sent"]
    assert "new Message-ID" in entry.reason
    world.ledger.close()
