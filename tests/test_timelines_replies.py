"""Property: the follow-up and the employer's reply, along perturbed paths, on every provider.

One interview (the lead and one more interviewer, on the backends of
tests/test_timelines_remote.py) with its thank-yous; the user sends some of them; then time
runs through the follow-up's due date and beyond, with ``max_follow_ups`` 1 or 2 (the second
three hours after the first was sent). The account's follow-up comes "1m" after
the interview, which timing.follow_up_due clamps to the end of the 24-hour thank-you window
(END + 24 h), so every date stays within the three-day look-back. Along the way, at random
moments:

- mail arrives: a reply from the lead, from the other interviewer or from a colleague at the
  employer's domain, threaded under the thank-you or the follow-up or not, or from someone at
  another domain in our thread (an agency recruiter; matched by thread): these count from the
  interview's start on. An out-of-office (``Auto-Submitted: auto-replied``; undated, or away
  until a day that moves the follow-up within the timeline), a reply from another domain
  outside our thread, or anything before the interview never count;
- the user moves a message to Trash or to a folder of their own;
- the ledger wiped; a pass whose ledger commit is lost; a pass whose cursors the ledger keeps
  but whose findings it lost; the cursors rewound; every cursor refused; draft creates whose
  answer is lost (all as in test_timelines_remote's ``Lived.step``); a follow-up's removal
  whose answer is lost (the move done, the pass failed);
- the user sends a thank-you, or edits, sends, deletes (to Trash) or discards the follow-up;
- passes.

The model, from the final mailbox and what the user did:

- No Message-ID twice anywhere (Drafts, Sent, Trash); never two unsent follow-ups at once and
  never more than ``max_follow_ups`` (after every pass).
- Once a pass on the account's own ledger has read a counting reply, no unedited follow-up is
  in Drafts after it (after every such pass).
- At the end the ledger knows of a counting reply (a human message from the employer, dated
  from the interview's start on) exactly when the model says it may: every counting reply
  still in the Inbox, and every one a pass on this ledger read while it was there, is known;
  none that was not a counting reply, and none gone before the last wipe, is. Then: with a
  reply known, no unedited follow-up is in Drafts, and one the user edited stays, flagged in
  its row. With none known, once it is due, exactly one follow-up is in Drafts unless the user
  sent, deleted or discarded it (or a pass took it back: see below). A second follow-up
  comes only after the user sent the first (when it falls due depends on the provider's date
  of the sent copy, so the model does not require it).
- The thank-yous: each one in Drafts unless the user sent it.
- A follow-up a pass on the own ledger took back is retracted (or cancelled) in it, however
  that pass ended.
- One more pass changes nothing (the mailbox, the ledger's rows, the audit log).

What a lost ledger may legitimately forget (the model says so, and no more):

- A reply the user deleted or filed away before the ledger was lost is not in the Inbox any
  more, so the new ledger has not heard of it: to it the employer is silent, and the
  follow-up is made again (every mailbox reads its Archive too, so there a reply filed
  away is still heard of; the test files replies in a folder of the user's own).
  Likewise a reply passed over by a cursor skip and gone before the next full
  listing.
- A follow-up a pass took back stays in Trash on the Maildir, IMAP and Outlook: a later
  ledger that no longer knows the reply finds it there and takes it for the user's deletion.
  Gmail deletes a retracted draft for good, so a later ledger that hears of no reply makes it
  again. Either way at most one is in Drafts (``taken_back``).
- A draft the user discarded for good is made again by a ledger that lost the row (as for
  thank-yous, ``Lived.discarded``).
- A follow-up found in Drafts by a ledger that did not make it (lost, or a pass whose record
  was lost) may hold words from another time, or the user's: it is kept as the user's
  (USER_EDITED), never changed or deleted, and flagged once a reply is known; a ledger that
  knows the reply before it ever planned a follow-up looks its Message-ID up once to find it.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from email.message import EmailMessage

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from mailbridge import timing
from mailbridge.compose import message_id
from mailbridge.ledger import Ledger
from mailbridge.model import Delay, DraftKind, DraftState, EventKey, MessageKind, Policy
from tests.chaos import Person, reply_bytes
from tests.test_timelines_remote import (
    END,
    EXPLORE,
    Backend,
    Lived,
    Step,
    backend_for,
    mechanics,
)

# The fixed examples below, then a few drawn ones, always the same, so CI stays under a
# minute on the four providers; MAILBRIDGE_TIMELINES=200 explores.
EXAMPLES = int(EXPLORE or "2")
START = END - timedelta(hours=1)  # the interview's start: a reply counts from here on
# A second follow-up (``max_follow_ups`` 2) three hours after the first was sent.
POLICY = Policy(follow_up=Delay(timedelta(minutes=1)), follow_up_spacing=timedelta(hours=3))
# Clamped to the end of the thank-you window: END + 24 h (minutes after END).
DUE = int((timing.follow_up_due(END, None, POLICY) - END).total_seconds()) // 60
ALL_DUE = 8 * 60  # minutes after END: every thank-you is in Drafts after a pass then
LAST_STEP = 46 * 60
FINAL = END + timedelta(hours=47)  # within the three-day look-back
AWAY_UNTIL = END.replace(hour=0) + timedelta(days=2)  # away through Wednesday the 18th
OUTSIDER = Person("Alex Stone", "alex.stone@elsewhere-corp.example")
WHO = ("lead", "other", "colleague", "outsider")

# (who, threaded: under the thank-you to them (True) or under the follow-up ("fu"), and
# auto-reply: undated (True) or away until Wednesday the 18th, back before the end ("back"))
reply = st.tuples(st.just("reply"), st.sampled_from(WHO), st.sampled_from([False, True, "fu"]),
                  st.sampled_from([False, False, True, "back"]))
run = st.tuples(st.integers(60, LAST_STEP), st.just(("run",)))
filed = st.tuples(st.just("file"), st.integers(0, 3), st.sampled_from(["trash", "away"]))
# The follow-up taken back, and the answer to that removal lost (the move done, then the
# connection dropped): the pass fails, the next one finds the draft gone.
lose_delete = st.tuples(st.just("lose_delete"), st.integers(1, 2))
early = st.lists(st.one_of(mechanics, st.just(("run",)), reply), max_size=6)
anytime = st.integers(60, LAST_STEP)
late = st.lists(
    st.one_of(
        st.tuples(anytime, mechanics),
        st.tuples(anytime, lose_delete),
        run,
        run,
        st.tuples(st.integers(DUE, LAST_STEP), st.just(("run",))),
        st.tuples(anytime, reply),
        st.tuples(anytime, reply),
        st.tuples(st.integers(DUE, LAST_STEP), reply),
        st.tuples(anytime, filed),
        st.tuples(st.integers(ALL_DUE + 1, LAST_STEP), st.tuples(st.just("send_ty"),
                                                                 st.integers(0, 1))),
        st.tuples(st.integers(DUE + 1, LAST_STEP),
                  st.tuples(st.just("fu"), st.sampled_from(["delete", "discard", "edit", "edit",
                                                            "send"]))),
    ),
    min_size=3, max_size=14,
)


@dataclass
class Reply:
    handle: str
    message_id: str
    counts: bool  # a human reply from the employer, after the interview started
    inbox: bool = True
    listed: bool = True  # a full listing of the mailbox finds it
    readable: bool = True  # the own ledger's next pass reads it (no cursor passed it over)
    seen: bool = False  # a pass on the own ledger surely read it (the ledger knows it)
    since_wipe: bool = True  # listed at some moment since the last wipe


@dataclass
class Replied(Lived):
    """A timeline of the follow-up half: the mail that arrives, and the hand on it."""

    replies: list[Reply] = field(default_factory=list)
    taken_back: bool = False  # a pass removed the first follow-up from Drafts
    # Follow-ups a pass on the account's own ledger took back since the ledger was last lost:
    # that ledger knows it did (retracted or cancelled), however the pass ended.
    retracted: set[str] = field(default_factory=set)
    most: int = 1  # the policy's max_follow_ups

    @property
    def lead(self) -> str:
        return self.backend.people[0]

    def follow_up(self, seq: int = 1, to: str | None = None) -> str:
        b = self.backend
        ident = b.event_uid("iv-a")
        assert ident is not None
        return message_id(b.account.address, EventKey("", ident), to or self.lead,
                          DraftKind.FOLLOW_UP, seq)

    def follow_ups(self) -> set[str]:
        return {self.follow_up(seq, to) for seq in (1, 2, 3) for to in self.backend.people}

    def pass_(self, now: datetime, ledger: Ledger | None = None) -> None:
        fu = self.follow_up()
        ours = self.follow_ups()
        before = {m.message_id for m in self.backend.folder("drafts")} & ours
        super().pass_(now, ledger)
        in_drafts = Counter(m.message_id for m in self.backend.folder("drafts"))
        if fu in before and fu not in in_drafts:
            self.taken_back = True
        if ledger is None:
            self.retracted |= before - set(in_drafts)
        waiting = [mid for mid in in_drafts if mid in ours]
        assert len(waiting) <= 1, f"two follow-ups waiting at {now}"
        sent = {m.message_id for m in self.backend.folder("sent")} & ours
        assert len(set(waiting) | sent) <= self.most, f"more than max_follow_ups at {now}"
        if len(set(waiting) | sent) > 1:
            event("a second follow-up")
        if ledger is not None:
            return
        for r in self.replies:
            r.seen = r.seen or (r.readable and r.inbox)
            r.readable = False  # the cursor is past it
        if any(r.seen and r.counts for r in self.replies):
            assert set(waiting) <= set(self.edited) | self.kept_as_yours(), (
                f"a follow-up waits after a reply was read, at {now}")

    def step(self, step: Step, now: datetime) -> None:
        what = step[0]
        if what == "reply":
            self.deliver(step[1], step[2], step[3], now)
            return
        if what == "file":
            if self.replies:
                r = self.replies[step[1] % len(self.replies)]
                if r.inbox:
                    event("a reply filed away or deleted")
                    self.backend.user_files(r.handle, step[2])
                    r.inbox = False
                    r.listed = step[2] != "trash" and self.backend.lists_filed
            return
        if what == "lose_delete":
            self.backend.lose_delete_answers(step[1])
            return
        if what == "send_ty":
            mid = self.thank_you(self.backend.people[step[1]])
            self.by_hand_on(mid, "send")
            return
        if what == "fu":
            waiting = self.follow_ups() & {m.message_id for m in self.backend.folder("drafts")}
            for mid in waiting:
                self.by_hand_on(mid, step[1])
            return
        super().step(step, now)
        if what == "skip":  # the own ledger's cursors passed over what the scratch pass read
            for r in self.replies:
                r.readable = False
        elif what == "refuse":  # the next pass lists everything afresh
            for r in self.replies:
                r.readable = True
        elif what == "wipe":
            self.retracted.clear()
            for r in self.replies:
                r.seen, r.readable, r.since_wipe = False, True, r.listed

    def thank_you(self, to: str) -> str:
        b = self.backend
        ident = b.event_uid("iv-a")
        assert ident is not None
        return message_id(b.account.address, EventKey("", ident), to, DraftKind.THANK_YOU, 1)

    def by_hand_on(self, mid: str, what: str) -> None:
        drafts = sorted(self.backend.folder("drafts"), key=lambda m: m.message_id)
        at = [i for i, m in enumerate(drafts) if m.message_id == mid]
        if at:
            self.by_hand(what, at[0])

    def deliver(self, who: str, threaded: bool | str, auto: bool | str, now: datetime) -> None:
        b = self.backend
        people = b.people
        domain = self.lead.split("@", 1)[1]
        sender = {
            "lead": Person("Lead Interviewer", people[0]),
            "other": Person("Other Interviewer", people[1]),
            "colleague": Person("Casey Morgan", f"casey.morgan@{domain}"),
            "outsider": OUTSIDER,
        }[who]
        # Before the interview started (the early steps), mail is never a reply to it.
        at = min(now, START - timedelta(minutes=5)) if now < END else now
        parent = (self.follow_up() if threaded == "fu" else
                  self.thank_you(sender.email if sender.email in people else self.lead))
        subject, in_reply_to = "Next steps", ""
        if threaded:
            in_reply_to = parent
            found = [m for which in ("drafts", "sent") for m in b.folder(which)
                     if m.message_id == parent]
            subject = f"Re: {found[0].subject}" if found else "Re: Thank you"
        body = "Thanks for your note! We will be in touch by Friday.\n"
        if auto:
            # Back before the end of the timeline: a follow-up moved there is due by then.
            # Only while that day has not passed: a notice naming a day gone by is read as
            # next year's (classify.parse_return_date), as a person would read it.
            back = auto == "back" and at < AWAY_UNTIL
            until = f" until {AWAY_UNTIL - timedelta(days=1):%A, %B %d}" if back else ""
            subject = f"Automatic reply: {subject}"
            body = (f"I am currently out of the office{until} with limited access to email. "
                    "I will respond when I return.\n")
        msg = email.message_from_bytes(reply_bytes(sender, b.account.address, subject,
                                                   in_reply_to, body),
                                       policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        msg.replace_header("Date", email.utils.format_datetime(at))
        if auto:
            msg["Auto-Submitted"] = "auto-replied"
        raw = msg.as_bytes()
        # From another domain only in our thread (an agency recruiter answering there).
        counts = (who != "outsider" or threaded) and not auto and at >= START
        event(f"mail: {'counts' if counts else 'does not count'}")
        self.replies.append(Reply(b.deliver(raw, at), str(msg["Message-ID"]), counts))

    # --- the checker ---------------------------------------------------------------------

    def kept_as_yours(self) -> set[str]:
        """Follow-ups a ledger that may have lost their rows found in Drafts and keeps as the
        user's (their words may be from another time, or the user's): never deleted."""
        if not self.recovered:
            return set()
        b = self.backend
        return {d.message_id for d in b.ledger.drafts(b.account.name)
                if d.kind is DraftKind.FOLLOW_UP and d.state is DraftState.USER_EDITED}

    def check_final(self) -> None:
        held = self.held()
        assert all(n == 1 for counts in held.values() for n in counts.values())
        b = self.backend
        removed = self.deleted | self.discarded | self.sent
        thanks = {self.thank_you(p) for p in b.people}
        assert set(held["drafts"]) & thanks == thanks - removed
        fu = self.follow_up()
        waiting = set(held["drafts"]) & self.follow_ups()
        assert waiting <= {fu, self.follow_up(2)}
        if self.follow_up(2) in held["drafts"] | held["sent"]:
            assert self.most > 1 and fu in self.sent, "a second follow-up, not after the first"
        # What the ledger knows of the employer's replies, against what it may know.
        known = {m.message_id for m in b.ledger.messages(b.account.name)
                 if m.kind is MessageKind.HUMAN and m.at >= START}
        must = {r.message_id for r in self.replies if r.counts and (r.inbox or r.seen)}
        may = {r.message_id for r in self.replies if r.counts and r.since_wipe}
        assert must <= known, "a reply in the Inbox, or read before, is not known"
        assert known <= may, "a message that is no reply (or was gone) counts as one"
        row = b.ledger.draft_by_message_id(b.account.name, fu)
        if known:
            kept = set(self.edited) | self.kept_as_yours()
            if fu in kept:
                assert fu in held["drafts"] or fu not in self.edited
                if row is not None and row.state is DraftState.USER_EDITED:
                    assert row.flagged, "an edited follow-up, a reply, and no flag"
            else:
                assert fu not in held["drafts"], "a follow-up waits after the reply"
            assert waiting <= kept, "a follow-up waits after the reply"
        elif fu in removed:
            assert fu not in held["drafts"]
        elif not self.taken_back:
            assert fu in held["drafts"], "no reply, and no follow-up"
        for mid in self.retracted:
            row = b.ledger.draft_by_message_id(b.account.name, mid)
            assert row is not None
            assert row.state in (DraftState.RETRACTED, DraftState.CANCELLED), (
                f"a follow-up this ledger took back is {row.state} in it")
        for mid in waiting:
            row = b.ledger.draft_by_message_id(b.account.name, mid)
            assert row is not None and row.state in (DraftState.CREATED,
                                                     DraftState.USER_EDITED)
        event(f"at the end: {'a reply known' if known else 'silence'}, "
              f"{len(waiting)} follow-up(s) waiting")


def live(backend: Backend, early: list[Step], late: list[tuple[int, Step]], most: int) -> None:
    backend.level.account = replace(backend.account,
                                    policy=replace(POLICY, max_follow_ups=most))
    lived = Replied(backend, most=most)
    now = END - timedelta(hours=20)
    lived.step(("put", "iv-a", 0, False), now)
    for step in early:
        now = min(now + timedelta(minutes=47), START - timedelta(minutes=5))
        lived.step(step, now)
    for minutes, step in sorted([(ALL_DUE, ("run",)), *late], key=lambda item: item[0]):
        lived.step(step, END + timedelta(minutes=minutes))
    lived.pass_(FINAL)
    if backend.failed:  # a removal whose answer was lost: the next pass finds it done
        lived.pass_(FINAL)
    lived.settled(FINAL)
    last = FINAL + backend.account.policy.removal_grace
    lived.pass_(last)
    lived.finish(last)


@pytest.mark.server
@pytest.mark.slow
@pytest.mark.parametrize("provider", ["local", "imap", "gmail", "outlook"])
@settings(max_examples=EXAMPLES, deadline=None, derandomize=not EXPLORE,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(early=early, late=late, most=st.sampled_from([1, 1, 2]))
@example(early=[], late=[(ALL_DUE + 1, ("send_ty", 0))], most=1)  # fresh: the follow-up is due
@example(  # the lead replies before the follow-up is due: it is never made
    early=[], late=[(ALL_DUE + 1, ("send_ty", 0)), (20 * 60, ("reply", "lead", True, False))],
    most=1,
)
@example(  # a colleague at the employer replies after it was made: it is taken back
    early=[], late=[(25 * 60, ("run",)), (26 * 60, ("reply", "colleague", False, False))],
    most=1,
)
@example(  # only an out-of-office and a stranger: the follow-up stays
    early=[], late=[(25 * 60, ("run",)), (26 * 60, ("reply", "lead", True, True)),
                    (27 * 60, ("reply", "outsider", False, False))], most=1,
)
@example(  # the lead is away until Wednesday: the follow-up moves to Thursday morning, also
    # for a ledger lost meanwhile; a reply under the follow-up takes it back
    early=[], late=[(20 * 60, ("reply", "lead", False, "back")), (25 * 60, ("run",)),
                    (30 * 60, ("wipe",)), (31 * 60, ("run",)), (42 * 60, ("run",)),
                    (43 * 60, ("reply", "other", "fu", False))], most=1,
)
@example(  # the lead wrote before the interview: not a reply to it
    early=[("reply", "lead", False, False), ("run",)], late=[], most=1,
)
@example(  # the ledger wiped after the reply: the new ledger hears of it and makes none
    early=[], late=[(25 * 60, ("run",)), (26 * 60, ("reply", "other", True, False)),
                    (27 * 60, ("run",)), (28 * 60, ("wipe",))], most=1,
)
@example(  # the reply deleted, then the ledger wiped: silence to it, the follow-up is back
    early=[], late=[(25 * 60, ("run",)), (26 * 60, ("reply", "lead", False, False)),
                    (27 * 60, ("run",)), (28 * 60, ("file", 0, "trash")), (29 * 60, ("wipe",))],
    most=1,
)
@example(  # the user edited the follow-up, then the employer replied: it stays, flagged
    early=[], late=[(25 * 60, ("run",)), (25 * 60 + 1, ("fu", "edit")),
                    (26 * 60, ("reply", "lead", True, False))], most=1,
)
@example(  # the reply filed away before any pass read it, a pass lost, the cursors refused
    early=[], late=[(25 * 60, ("run",)), (26 * 60, ("reply", "lead", False, False)),
                    (26 * 60, ("lost",)), (27 * 60, ("file", 0, "away")), (28 * 60, ("refuse",))],
    most=1,
)
@example(  # the user deleted the follow-up: never made again, reply or not
    early=[], late=[(25 * 60, ("run",)), (25 * 60 + 1, ("fu", "delete")), (26 * 60, ("wipe",))],
    most=1,
)
@example(  # the follow-up taken back, the answer to the removal lost: the next pass finds it
    # gone, which was our doing, not the user's (it was recorded as deleted by the user)
    early=[], late=[(25 * 60, ("run",)), (25 * 60 + 1, ("lose_delete", 1)),
                    (26 * 60, ("reply", "lead", True, False)), (27 * 60, ("run",))], most=1,
)
@example(  # the ledger lost, then a recruiter at an agency answers in the thank-you's thread:
    # the first pass of the new ledger threads it by the derived Message-ID (it used to read
    # it before the thank-you rows were back, drop it, and make the follow-up)
    early=[], late=[(ALL_DUE + 1, ("wipe",)), (ALL_DUE + 2, ("reply", "outsider", True, False)),
                    (25 * 60, ("run",))], most=1,
)
@example(  # the user sent the first follow-up: a second one, then a reply takes it back
    early=[], late=[(25 * 60, ("run",)), (25 * 60 + 1, ("fu", "send")), (29 * 60, ("run",)),
                    (30 * 60, ("reply", "lead", True, False))], most=2,
)
@example(  # the follow-up made, the ledger lost, then the lead replies: the new ledger knows
    # the reply before it ever plans a follow-up, looks the one in Drafts up and keeps it as
    # possibly the user's, flagged (it used to leave it there unrecorded, unflagged)
    early=[], late=[(24 * 60, ("run",)), (24 * 60 + 1, ("wipe",)),
                    (24 * 60 + 1, ("reply", "lead", False, False))], most=1,
)
def test_the_follow_up_follows_the_replies_on_every_path(
    provider: str, request: pytest.FixtureRequest, early: list[Step],
    late: list[tuple[int, Step]], most: int,
) -> None:
    with backend_for(provider, request) as backend:
        live(backend, early, late, most)
