"""One reconcile pass for one account: the imperative shell around the pure core.

read calendar changes -> detect interviews -> read mail -> classify and match -> observe our drafts
-> plan (pure) -> carry out the actions -> record outcome and audit.

The pass is level-triggered and idempotent: running it twice in a row changes nothing the
second time. Every step commits before the next remote call. Before any draft is written its
Message-ID is looked up in Drafts, Sent and Trash (the mailbox is the truth about our drafts,
the ledger only remembers), and it is recorded as ``creating`` before the write, so a crash, a
lost answer, a lost or second ledger or a renamed account is repaired by that lookup instead
of a second copy. A paused account changes nothing in the mailbox, whatever the pass.

In the daemon a pass whose plan would provably be the last one's, empty (nothing new, nothing
written, nothing due: `Quiet`), skips reading the drafts from the ledger and planning.
"""

from __future__ import annotations

import email
import email.policy
import functools
import json
import logging
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, cast

from mailbridge import classify, compose, detect, drafts, planner, proofread, retry
from mailbridge.adapters import (
    AmbiguousWrite,
    AuthError,
    CalendarSource,
    FolderMissing,
    Mailbox,
    ProviderError,
    open_calendar,
    open_mailbox,
)
from mailbridge.durations import describe
from mailbridge.ledger import Ledger
from mailbridge.model import (
    CalendarBatch,
    DraftKind,
    DraftMessage,
    DraftRow,
    DraftState,
    Event,
    EventKey,
    EventStatus,
    Folder,
    InterviewRow,
    InterviewState,
    Located,
    MailHeaders,
    MessageKind,
    MessageRow,
    Observation,
    Person,
    Place,
    Presence,
    SentHint,
    Snapshot,
    Window,
)
from mailbridge.settings import AccountSettings

log = logging.getLogger("mailbridge")

CALENDAR = "calendar"
MAILBOX = "mailbox"
# Messages whose handling failed, kept (with their headers) until handled or given up.
MAILBOX_RETRY = "mailbox.retry"
RETRY_LIMIT = 6  # tries before a message is given up (with an audit line)
RETRY_FIRST = timedelta(minutes=10)  # then 20, 40, 80 and 160 minutes
RETRY_LAST = timedelta(days=1)  # never further apart than this
MATCH_HORIZON = timedelta(days=120)  # mail is matched to interviews that ended since
# A cursor is an optimisation: this often, a full listing heals whatever an incremental read
# missed (a provider bug, a message filed back from Junk, a lost change notification).
FULL_LISTING_EVERY = timedelta(days=1)

# A full calendar listing that drops more than this share of the known events (with at least
# VALVE_MIN_KNOWN known) is treated as a fault of the source, not as mass cancellation.
VALVE_SHARE = 0.5
VALVE_MIN_KNOWN = 3


@dataclass
class Notice:
    """Something the candidate should hear about (drafts ready, retracted, reminder)."""

    interview_id: int
    kind: str  # "drafts_ready" | "follow_up_ready" | "retracted" | "reminder"
    text: str


@dataclass
class PassReport:
    account: str
    actions: list[str] = field(default_factory=list)  # one line per decision, for logs/dry-run
    notices: list[Notice] = field(default_factory=list)
    error: str | None = None
    paused: str | None = None
    next_wakeup: datetime | None = None


Notifier = Callable[[AccountSettings, list[Notice]], None]


@dataclass(frozen=True)
class Quiet:
    """What a pass that planned nothing leaves to the next pass of the account (in the
    daemon's `OpenProviders`, never in the ledger), so that pass can prove its plan would be
    the same, hence empty again, without reading the drafts or planning.

    That holds while (a) the ledger's generation is still the one read before this pass read
    what it planned on (no writer changed the planner's view or a pause since), (b) the
    providers bring nothing new (no calendar change, no mail, every waiting draft's marker as
    it was), (c) the time is before ``until``: the planner's next wakeup, or a thank-you
    window closing that lets an interview go to the archive; and (d) every pass since
    succeeded (a failed pass, a fault or a config reload forgets it).
    """

    generation: int
    since: datetime
    until: datetime | None
    next_wakeup: datetime | None
    waiting: tuple[DraftRow, ...]  # the drafts waiting in Drafts, as last observed

    @functools.cached_property
    def markers(self) -> dict[str, str] | None:
        """Each waiting draft's marker by its provider id, as `Mailbox.versions` answers when
        none was touched; None when one has no marker (then it must be looked at)."""
        found = {d.provider_id: d.version for d in self.waiting if d.provider_id and d.version}
        return found if len(found) == len(self.waiting) else None


def _window(account: AccountSettings, now: datetime) -> Window:
    return Window(
        start=now - account.policy.lookback - timedelta(days=1),
        end=now + account.calendar.lookahead,
    )


class Pass:
    """The state of one pass; methods are its steps, in order."""

    def __init__(
        self,
        account: AccountSettings,
        ledger: Ledger,
        now: datetime,
        mailbox: Mailbox,
        calendar: CalendarSource,
        dry_run: bool,
    ) -> None:
        self.account = account
        self.ledger = ledger
        self.now = now
        self.mailbox = mailbox
        self.calendar = calendar
        self.dry_run = dry_run
        self.report = PassReport(account=account.name)
        self.news = False  # the calendar or the mailbox brought something this pass
        self.generation: int | None = None  # read before the drafts the plan stands on
        self.waiting: tuple[DraftRow, ...] = ()
        self.quiet: Quiet | None = None  # what this pass leaves to the next one
        # Sent copies of our drafts read before the ledger had their rows (a lost ledger):
        # recorded once this pass has planned the rows again (`_claim_sent`).
        self.unclaimed: list[MailHeaders] = []

    # --- helpers -----------------------------------------------------------------------

    def decide(
        self,
        decision: str,
        reason: str,
        *,
        interview_id: int | None = None,
        draft_id: int | None = None,
    ) -> None:
        self.ledger.audit(
            self.account.name,
            decision,
            reason,
            now=self.now,
            interview_id=interview_id,
            draft_id=draft_id,
        )
        line = f"{self.account.name}: {decision}: {reason}"
        self.report.actions.append(line)
        log.info(line)

    # --- pauses --------------------------------------------------------------------------

    def lift_mailbox_pause(self) -> None:
        """A pause the mailbox caused ends when Drafts is back (the probe raises FolderMissing
        while it is not); the calendar never lifts it."""
        causes = self.ledger.pause_causes(self.account.name)
        if MAILBOX not in causes:
            return
        self.mailbox.locate("<probe.mailbridge@mailbridge.invalid>")
        if not self.dry_run:
            with self.ledger.transaction():
                self._record_pause(drafts.mailbox_pause(None, causes), MAILBOX)

    def _record_pause(self, step: drafts.PauseStep, cause: str) -> None:
        """Write what a pause check decided (inside a transaction)."""
        if step.pause is not None:
            self.ledger.set_paused(self.account.name, step.pause, cause)
        elif step.lift is not None:
            self.ledger.set_paused(self.account.name, None,
                                   None if step.lift == drafts.EVERY_CAUSE else step.lift)
        if step.audit is not None:
            self.decide(*step.audit)

    def held(self) -> str | None:
        """Why this account may change nothing in the mailbox now, or None."""
        status = self.ledger.account_status(self.account.name)
        return drafts.held(status.paused, status.resume_confirmed)

    # --- calendar ----------------------------------------------------------------------

    def sync_calendar(self) -> bool:
        """Apply calendar changes; False when the safety valve paused the account."""
        account = self.account.name
        cursor = self.ledger.cursor(account, CALENDAR)
        if _listing_due(self.ledger, account, CALENDAR, self.now):
            cursor = None  # the daily full listing: heals what incremental reads missed
        window = _window(self.account, self.now)
        batch = self.calendar.changes(cursor, window)
        self.news = self.news or bool(batch.events or batch.removed or batch.skipped)
        status = self.ledger.account_status(account)
        causes = self.ledger.pause_causes(account)
        fault = self._calendar_fault(batch, window)
        pause = drafts.calendar_pause(fault, causes, status.resume_confirmed)
        if not pause.proceed:
            with self.ledger.transaction():
                self._record_pause(pause, CALENDAR)
            self.report.paused = fault
            return False
        with self.ledger.transaction():
            self._record_pause(pause, CALENDAR)
            present: set[EventKey] = set()
            for event in batch.events:
                present.add(event.key)
                try:
                    with self.ledger.savepoint():
                        self._apply_event(event)
                except Exception as exc:  # noqa: BLE001 - one bad event must not stop the rest
                    log.debug("event %r failed", event.key, exc_info=True)
                    self.decide("event skipped",
                                f"could not use event {event.key.uid!r}: {type(exc).__name__}")
            for item in batch.skipped:
                self.decide("event skipped", f"could not read {item.what}: {item.why}")
            unread = {item.uid for item in batch.skipped if item.uid}
            missing: dict[EventKey, int] = {}  # absent keys -> full listings this pass (0/1)
            for key in batch.removed:
                if key.uid not in unread:
                    missing.update((k, 0) for k in self.ledger.event_keys_of(account, key))
            if _complete(batch):
                known = self.ledger.event_keys(account, window.start)
                missing.update(
                    (k, 1) for k in known if k not in present and k.uid not in unread
                )
            for key, listed in missing.items():
                self._missing(key, listed)
            self._removals(present)
            self.ledger.set_cursor(account, CALENDAR, batch.cursor, self.now)
            if batch.complete:
                self.ledger.set_cursor(account, _listed(CALENDAR), self.now.isoformat(),
                                       self.now)
        return True

    def _missing(self, key: EventKey, listed: int) -> None:
        """An event is absent from the calendar. An active interview is held, not cancelled:
        absence is a fact only once it lasted (see `_removals`)."""
        interview = self.ledger.interview_by_key(self.account.name, key)
        if interview is None or interview.state != InterviewState.ACTIVE:
            self.ledger.remove_event(self.account.name, key)
            return
        if interview.missing_since is None:
            self.ledger.set_missing(interview.id, self.now, listed, self.now)
            self.decide(
                "interview missing",
                f"{interview.title!r} is not in the calendar any more; its drafts wait "
                f"{describe(self.account.policy.removal_grace)} (or another full "
                "listing) before it counts as removed",
                interview_id=interview.id,
            )
        elif listed:
            self.ledger.set_missing(interview.id, interview.missing_since,
                                    interview.missing_listings + listed, self.now)

    def _removals(self, present: set[EventKey]) -> None:
        """Interviews gone for the grace period or two full listings count as removed; those
        back in this listing are held no longer."""
        grace = self.account.policy.removal_grace
        for interview in self.ledger.missing_interviews(self.account.name):
            assert interview.missing_since is not None
            if interview.key in present:
                continue  # _apply_event already cleared it
            gone_for = self.now - interview.missing_since
            if gone_for >= grace or interview.missing_listings >= 2:
                self.ledger.set_missing(interview.id, None, 0, self.now)
                self.ledger.remove_event(self.account.name, interview.key)
                self._cancel_interview(
                    interview.key,
                    "the event was removed from the calendar (gone for "
                    f"{describe(gone_for)}, over {interview.missing_listings} full "
                    "listing(s))",
                )

    def _calendar_fault(self, batch: CalendarBatch, window: Window) -> str | None:
        if not _complete(batch):
            return None
        known = self.ledger.event_keys(self.account.name, window.start)
        if len(known) < VALVE_MIN_KNOWN:
            return None
        present = {e.key for e in batch.events}
        unread = {item.uid for item in batch.skipped if item.uid}
        missing = [k for k in known if k not in present and k.uid not in unread]
        if len(missing) > VALVE_SHARE * len(known):
            return (
                f"the calendar suddenly lost {len(missing)} of {len(known)} known events; "
                "nothing was cancelled. If that is real, run `mailbridge resume "
                f"{self.account.name}`"
            )
        return None

    def _apply_event(self, event: Event) -> None:
        account = self.account
        existing = self.ledger.interview_by_key(account.name, event.key)
        override = self.ledger.lead_override(existing.id) if existing else None
        found = detect.detect(
            event,
            account.own_addresses,
            account.org_domains or detect.default_org_domains(account.address),
            account.rules,
            lead_override=override,
        )
        changed = self.ledger.upsert_event(
            account.name, event.key, event.title, event.start, event.end,
            found.is_interview, found.reason,
        )
        if existing is not None and existing.missing_since is not None:
            self.ledger.set_missing(existing.id, None, 0, self.now)
            self.decide("interview back", f"{event.title!r} is in the calendar again",
                        interview_id=existing.id)
        if not found.is_interview:
            if existing and existing.state == InterviewState.ACTIVE:
                self._cancel_interview(event.key, f"no longer an interview: {found.reason}")
            elif changed:
                self.decide("not an interview", f"{event.title!r}: {found.reason}")
            return
        state = (
            InterviewState.CANCELLED
            if event.status == EventStatus.CANCELLED
            else InterviewState.ACTIVE
        )
        interview_id, updated = self.ledger.upsert_interview(
            account.name,
            event.key,
            title=event.title,
            company=found.company,
            role=found.role,
            start=event.start.astimezone(UTC),
            end=event.end.astimezone(UTC),
            state=state,
            attendees=found.attendees,
            lead=found.lead,
            employer_domains=found.employer_domains,
            now=self.now,
            company_reason=found.company_reason,
        )
        if existing is None:
            self.decide(
                "interview found",
                f"{event.title!r} with {found.company or 'unknown company'}: {found.reason}",
                interview_id=interview_id,
            )
            for skipped in found.skipped:
                self.decide(
                    "attendee skipped",
                    f"skipped {skipped.email}: {skipped.reason}",
                    interview_id=interview_id,
                )
        elif updated:
            self.decide(
                "interview updated", f"{event.title!r} changed at the source",
                interview_id=interview_id,
            )

    def _cancel_interview(self, key: EventKey, reason: str) -> None:
        interview = self.ledger.interview_by_key(self.account.name, key)
        if interview and interview.state == InterviewState.ACTIVE:
            self.ledger.set_interview_state(interview.id, InterviewState.CANCELLED, self.now)
            self.decide("interview cancelled", reason, interview_id=interview.id)

    # --- mail ----------------------------------------------------------------------------

    def sync_mail(self) -> None:
        account = self.account
        horizon = self.now - MATCH_HORIZON
        first = self.ledger.first_start(account.name, horizon)
        if first is None:
            return  # nothing to match mail against: not even a request
        cursor = self.ledger.cursor(account.name, MAILBOX)
        full = cursor is None or _listing_due(self.ledger, account.name, MAILBOX, self.now)
        batch = self.mailbox.messages(None if full else cursor, first - timedelta(days=1))
        waiting = waiting_messages(self.ledger, account.name)
        listed = {(m.folder, m.provider_id) for m in batch.messages}
        retries = [w.message for w in waiting.values()
                   if not w.given_up and w.next_try <= self.now
                   and (w.message.folder, w.message.provider_id) not in listed]
        self.news = self.news or bool(batch.messages or retries)
        # Archived interviews too: their replies are kept (for `status`), though they change
        # nothing. Loaded only when there is mail to match, so an idle pass reads no history.
        interviews = (self.ledger.interviews(account.name, ended_since=horizon)
                      if batch.messages or retries else [])
        candidates = [
            classify.Candidate(
                interview_id=i.id,
                attendees=tuple(p.email.lower() for p in i.attendees),
                employer_domains=i.employer_domains,
                company=i.company,
                start=i.start,
                end=i.end,
            )
            for i in interviews
        ]
        # Our drafts' Message-IDs are derived, so a reply in one of their threads is told even
        # before the ledger has the draft's row: the first pass after a lost ledger reads the
        # mailbox before it plans the drafts again (a reply from outside the employer's domain,
        # an agency recruiter's, used to be dropped then, until the next full listing).
        derived = {
            mid: i.id
            for i in interviews
            for mid in compose.draft_message_ids(
                account.address, i.key,
                [p.email for p in (*i.attendees, *([i.lead] if i.lead else []))])
        }
        with self.ledger.transaction():
            known = _Threads(self.ledger.message_ids(account.name), derived)
            for message in (*batch.messages, *retries):
                key = _waiting_key(message)
                if key in waiting and (waiting[key].given_up or waiting[key].next_try > self.now):
                    continue  # given up, or backing off even when a full listing shows it again
                try:
                    with self.ledger.savepoint():
                        self._apply_message(message, candidates, known)
                except Exception as exc:  # noqa: BLE001 - one bad message must not stop the rest
                    log.debug("message %r failed", message.provider_id, exc_info=True)
                    self._keep_for_retry(message, waiting, exc)
                    continue
                if waiting.pop(key, None) is not None:
                    self.decide("message handled",
                                f"message {message.provider_id!r} from {message.sender.email} "
                                "was handled on a later try")
            # The cursor moves past a failed message only together with its place in the
            # retry list: a message is never dropped silently.
            self.ledger.set_cursor(account.name, MAILBOX, batch.cursor, self.now)
            for key in [k for k, w in waiting.items()
                        if w.given_up and w.next_try < self.now - MATCH_HORIZON]:
                del waiting[key]  # older than any interview mail is matched to
            self.ledger.set_cursor(account.name, MAILBOX_RETRY, _dump_waiting(waiting),
                                   self.now)
            if full:
                self.ledger.set_cursor(account.name, _listed(MAILBOX), self.now.isoformat(),
                                       self.now)

    def _keep_for_retry(
        self, message: MailHeaders, waiting: dict[str, WaitingMessage], exc: Exception
    ) -> None:
        key = _waiting_key(message)
        before = waiting.get(key)
        tries = (before.tries if before else 0) + 1
        error = f"{type(exc).__name__}: {str(exc)[:200]}".rstrip(": ")
        what = f"message {message.provider_id!r} from {message.sender.email}"
        if tries >= RETRY_LIMIT:
            waiting[key] = WaitingMessage(message, tries, self.now, error, given_up=True)
            self.decide("message given up",
                        f"could not use {what} after {tries} tries ({error}); it is left "
                        "in the mailbox untouched")
            return
        next_try = self.now + timedelta(seconds=retry.exponential(
            tries, RETRY_FIRST.total_seconds(), RETRY_LAST.total_seconds()))
        waiting[key] = WaitingMessage(message, tries, next_try, error)
        self.decide("message kept for retry",
                    f"could not use {what} ({error}); try {tries} of {RETRY_LIMIT}, "
                    f"next at {next_try:%Y-%m-%d %H:%M} UTC")

    def _apply_message(
        self,
        message: MailHeaders,
        candidates: list[classify.Candidate],
        known: Mapping[str, int],
    ) -> None:
        account = self.account
        if self.ledger.message_known(account.name, message.folder, message.provider_id,
                                     message.message_id):
            return
        verdict = classify.classify(message, account.own_addresses)
        ours = (self.ledger.draft_by_message_id(account.name, message.message_id)
                if message.folder == Folder.SENT and message.message_id else None)
        if ours is not None:
            # The user sent one of our drafts.
            self._record_message(message, ours.interview_id, verdict.kind, verdict.reason,
                                 None, ours.id)
            if not ours.state.final:
                self.ledger.update_draft(ours.id, self.now, state=DraftState.SENT)
                self.decide("draft sent", f"you sent the draft to {ours.recipient.email}",
                            interview_id=ours.interview_id, draft_id=ours.id)
            return
        if compose.is_draft_message_id(account.address, message.message_id):
            # One of our drafts the user sent, before the ledger that knew it was lost: not
            # their own writing to the employer (which skips other interviews' drafts). Its row,
            # planned again, finds it in Sent; it is recorded against that row at the end of
            # this pass (`_claim_sent`), so when it was sent is known (a next follow-up is due
            # a spacing after that, not after the first one's due time).
            if message.folder == Folder.SENT:
                self.unclaimed.append(message)
            return
        if verdict.kind not in (MessageKind.HUMAN, MessageKind.OUT_OF_OFFICE, MessageKind.OWN):
            return  # bounces, lists, invitations: not a reply, and not worth a row
        interview_id, how = classify.match(message, candidates, known, account.own_addresses)
        if interview_id is None:
            return
        checked = classify.sender_authentication(message)
        if verdict.kind != MessageKind.OWN and checked.verdict == "fail":
            # Anyone can write the lead's address into From: a message the receiving server
            # could not confirm is shown to the user and retracts nothing.
            reason = f"suspicious: {checked.reason}; {verdict.reason}; {how}"
            self._record_message(message, interview_id, MessageKind.SUSPICIOUS, reason,
                                 None, None)
            self.decide("suspicious message",
                        f"not taken as a reply: {message.sender.email} "
                        f"({message.subject[:80]!r}): {checked.reason}",
                        interview_id=interview_id)
            return
        # Recorded, its Message-ID threads later messages to the interview (`known` reads it).
        self._record_message(message, interview_id, verdict.kind, f"{verdict.reason}; {how}",
                             verdict.return_date, None)
        who = message.sender.email
        if verdict.kind == MessageKind.HUMAN:
            text = f"reply from {who} ({verdict.reason}; {how})"
        elif verdict.kind == MessageKind.OUT_OF_OFFICE:
            back = verdict.return_date.isoformat() if verdict.return_date else "no date given"
            text = f"out-of-office from {who}, back {back} ({how})"
        else:
            text = f"you wrote to the employer ({how})"
        self.decide("mail matched", text, interview_id=interview_id)

    def _record_message(
        self,
        message: MailHeaders,
        interview_id: int | None,
        kind: MessageKind,
        reason: str,
        return_date: date | None,
        our_draft_id: int | None,
    ) -> None:
        self.ledger.insert_message(
            self.account.name,
            folder=message.folder,
            provider_id=message.provider_id,
            message_id=message.message_id,
            interview_id=interview_id,
            kind=kind,
            reason=reason,
            sender=message.sender.email,
            recipients=[p.email for p in (*message.to, *message.cc)],
            subject=message.subject,
            at=(message.date or self.now).astimezone(UTC),
            return_date=return_date,
            our_draft_id=our_draft_id,
        )

    # --- our drafts ------------------------------------------------------------------------

    def still_quiet(self, quiet: Quiet | None) -> bool:
        """Whether the last pass's plan (empty) is provably this pass's too: see `Quiet`.
        Then the drafts are not read from the ledger and nothing is planned."""
        if quiet is None or self.news:
            return False
        if self.now < quiet.since or (quiet.until is not None and self.now >= quiet.until):
            return False
        if self.ledger.generation() != quiet.generation:
            return False
        # Every waiting draft's marker as it was (`drafts.unchanged`, for all of them at once).
        markers = quiet.markers
        if markers is None or (markers and self.mailbox.versions(markers) != markers):
            return False  # the user touched a draft: observed, and planned, in full
        self.report.next_wakeup = quiet.next_wakeup
        self.quiet = quiet
        return True

    def observe_drafts(self) -> None:
        # Read before the drafts and the snapshot: any write from here on, ours or another
        # process's, moves it on, so a stale reading only ever costs a full pass.
        self.generation = self.ledger.generation()
        waiting = [d for d in self.ledger.drafts(self.account.name, live_only=True)
                   if d.state.on_server and d.provider_id is not None]
        self.waiting = tuple(waiting)
        if not waiting:
            return
        # One cheap look at every waiting draft; only those whose marker moved are read,
        # fingerprinted and proofread again.
        known = {d.provider_id: d.version for d in waiting if d.provider_id and d.version}
        versions = self.mailbox.versions(known) if known else {}
        for draft in waiting:
            assert draft.provider_id is not None
            if drafts.unchanged(draft, versions.get(draft.provider_id)):
                continue
            hint = self._hint(draft)
            seen = self.mailbox.observe(draft.provider_id, draft.message_id, hint)
            with self.ledger.transaction():
                self._apply_observation(draft, seen, hint)

    def _hint(self, draft: DraftRow) -> SentHint:
        parent = self._thread_parent(draft)
        return SentHint(
            recipient=draft.recipient.email,
            subject=self.ledger.draft_subject(draft.id),
            since=draft.created_at or draft.due,
            thread=(parent.message_id,) if parent else (),
            address=self.account.address,
        )

    def _apply_observation(
        self, draft: DraftRow, seen: Observation, hint: SentHint | None
    ) -> drafts.Outcome:
        """Record what `drafts.outcome` makes of an observation (inside a transaction)."""
        who = draft.recipient.email
        result = drafts.outcome(draft, seen, hint)
        state = drafts.new_state(draft, result)
        if result == drafts.Outcome.SENT:
            self.ledger.update_draft(draft.id, self.now, state=DraftState.SENT)
            how = ("" if seen.presence == Presence.SENT else
                   " (your mail program sent its own copy, under a new Message-ID)")
            self.decide("draft sent", f"you sent the {draft.kind.value} draft to {who}{how}",
                        interview_id=draft.interview_id, draft_id=draft.id)
            return result
        if result == drafts.Outcome.DELETED and state == DraftState.RETRACTED:
            # Our own retraction, whose answer was lost (or whose pass was cut short after the
            # move): say what happened, as the retraction itself would have.
            self.ledger.update_draft(draft.id, self.now, state=DraftState.RETRACTED)
            self.decide("draft retracted",
                        f"the {draft.kind.value} draft to {who} was taken back: the employer "
                        "replied (the answer to its removal was lost)",
                        interview_id=draft.interview_id, draft_id=draft.id)
            self._retracted_notice(draft.interview_id)
            return result
        if result == drafts.Outcome.DELETED:
            self.ledger.update_draft(draft.id, self.now, state=DraftState.USER_DELETED)
            self.decide("draft deleted by you",
                        f"the {draft.kind.value} draft to {who} is gone from Drafts; "
                        "it will not be recreated",
                        interview_id=draft.interview_id, draft_id=draft.id)
            return result
        if seen.provider_id and seen.provider_id != draft.provider_id:
            self.ledger.update_draft(draft.id, self.now, provider_id=seen.provider_id)
        if seen.body:
            # Proofread what is in Drafts now, the user's edits included.
            warnings = proofread.proofread(seen.body, [draft.recipient])
            self.ledger.update_draft(draft.id, self.now, warnings=json.dumps(warnings))
        # Remember the marker of what was just read: until it moves, nothing is read again.
        self.ledger.update_draft(draft.id, self.now, version=seen.version)
        if result == drafts.Outcome.UPDATE_LANDED:
            # Our own update, cut short before it was recorded: still ours, unedited.
            self.ledger.update_draft(draft.id, self.now, content_hash=seen.content_hash,
                                     pending_hash="")
        elif state == DraftState.USER_EDITED:
            self.ledger.update_draft(draft.id, self.now, state=state)
            self.decide("draft edited by you",
                        f"the {draft.kind.value} draft to {who} was edited; "
                        "it will never be changed or deleted by mailbridge",
                        interview_id=draft.interview_id, draft_id=draft.id)
        return result

    # --- plan and act ----------------------------------------------------------------------

    def plan_and_act(self) -> None:
        snapshot = self.ledger.snapshot(self.account.name)
        actions = planner.plan(snapshot, self.account.policy, self.now)
        interviews = {i.id: i for i in snapshot.interviews}
        created: dict[int, list[DraftRow]] = {}
        for action in actions:
            self._act(action, interviews, created)
        found = {a.interview_id for a in actions if isinstance(a, planner.PlanDraft)
                 and a.look_first and a.kind is DraftKind.FOLLOW_UP}
        if found:
            # A follow-up this ledger never recorded, found after the employer replied: taken
            # back (or flagged, if it may be the user's) in this pass, never announced.
            for interview_id in found:
                created[interview_id] = [d for d in created.get(interview_id, [])
                                         if d.kind is not DraftKind.FOLLOW_UP]
            again = planner.plan(self.ledger.snapshot(self.account.name),
                                 self.account.policy, self.now)
            for action in again:
                self._act(action, interviews, created)
            actions = [*actions, *again]
        for interview_id, made in created.items():
            interview = interviews[interview_id]
            thanks = [d for d in made if d.kind == DraftKind.THANK_YOU]
            follow = [d for d in made if d.kind == DraftKind.FOLLOW_UP]
            company = interview.company or interview.title
            if thanks:
                n = len(thanks)
                self.report.notices.append(Notice(
                    interview_id, "drafts_ready",
                    f"{n} thank-you draft{'s' if n != 1 else ''} for your {company} interview "
                    f"{'are' if n != 1 else 'is'} in your Drafts",
                ))
            if follow:
                self.report.notices.append(Notice(
                    interview_id, "follow_up_ready",
                    f"A follow-up draft to {follow[0].recipient.name or follow[0].recipient.email} "
                    f"about your {company} interview is in your Drafts",
                ))
        self._claim_sent()
        after = self.ledger.snapshot(self.account.name) if actions else snapshot
        policy = self.account.policy
        self.report.next_wakeup = planner.next_wakeup(after, policy, self.now)
        if not actions and self.generation is not None:
            # Nothing to do: the next passes may skip planning until something changes.
            moments = [m for m in (self.report.next_wakeup,
                                   planner.next_archive(after, policy, self.now)) if m]
            self.quiet = Quiet(self.generation, self.now, min(moments, default=None),
                               self.report.next_wakeup, self.waiting)
        self._archive(after)

    def _claim_sent(self) -> None:
        """Record the sent copies of our drafts whose rows this pass planned again."""
        unclaimed, self.unclaimed = self.unclaimed, []
        for message in unclaimed:
            if self.ledger.draft_by_message_id(self.account.name, message.message_id) is None:
                continue  # no row wants it (yet): a later full listing sees it again
            with self.ledger.transaction():
                self._apply_message(message, [], {})

    def _archive(self, snapshot: Snapshot) -> None:
        """Move the interviews that are over for good out of the passes' way."""
        by_interview: dict[int, tuple[list[DraftRow], list[MessageRow]]] = {
            i.id: ([], []) for i in snapshot.interviews
        }
        for d in snapshot.drafts:
            if d.interview_id in by_interview:
                by_interview[d.interview_id][0].append(d)
        for m in snapshot.messages:
            if m.interview_id in by_interview:
                by_interview[m.interview_id][1].append(m)
        done = [i for i in snapshot.interviews
                if planner.finished(i, *by_interview[i.id], self.account.policy, self.now)]
        if not done:
            return
        with self.ledger.transaction():
            self.ledger.archive([i.id for i in done], self.now)
            for i in done:
                self.decide("interview archived",
                            f"{i.title!r}: every draft is settled and nothing more is due; "
                            "`status --since` still shows it", interview_id=i.id)

    def _act(
        self,
        action: planner.Action,
        interviews: dict[int, InterviewRow],
        created: dict[int, list[DraftRow]],
    ) -> None:
        ledger = self.ledger
        if isinstance(action, planner.PlanDraft):
            interview = interviews[action.interview_id]
            message_id = compose.message_id(
                self.account.address, interview.key, action.recipient.email, action.kind,
                action.seq,
            )
            owner = ledger.message_id_owner(message_id)
            skip_reason = action.skip_reason
            if owner not in (None, self.account.name) and owner in self.account.same_address:
                # Another account with this address made it: one draft is enough. This
                # account keeps a skipped row of its own, so it decides once, not every pass.
                skip_reason = (f"account {owner} has the same address and already has this "
                               "draft")
                message_id = f"{message_id} (also {self.account.name})"
            elif owner is not None and owner != self.account.name:
                # The same address under another account name: the account was renamed.
                # Its drafts are this account's now; the mailbox lookup adopts them.
                with ledger.transaction():
                    ledger.release_message_id(message_id, self.account.name)
            elif owner is not None:
                # The same event in a second calendar of this account: keep the ids apart.
                message_id = compose.message_id(
                    self.account.address,
                    EventKey(interview.key.calendar, f"{interview.key.calendar}\n"
                             f"{interview.key.uid}", interview.key.instance),
                    action.recipient.email, action.kind, action.seq,
                )
            if skip_reason and action.look_first and self.mailbox.locate(message_id) is not None:
                # Our draft is there already (made before the ledger was lost): the note the
                # user wrote by hand may be that very draft, sent under a Message-ID of its
                # own; a follow-up the employer's reply makes unwanted must be taken back.
                # The create below adopts the copy, or records it sent or deleted.
                skip_reason = None
            state = DraftState.SKIPPED if skip_reason else DraftState.PLANNED
            with ledger.transaction():
                try:
                    draft_id = ledger.insert_draft(
                        action.interview_id, action.kind, action.seq, action.recipient, state,
                        action.due, message_id, action.late, self.now,
                    )
                except sqlite3.IntegrityError as exc:
                    if "message_id" not in str(exc):
                        raise
                    # Another account with this address took the Message-ID in a pass running
                    # at the same moment; the next pass sees whose it is.
                    log.info("%s: %s held by a concurrent pass; planned again next pass",
                             self.account.name, message_id)
                    return
                if ledger.link_sent(self.account.name, message_id, draft_id):
                    # Sent already, under our Message-ID: made by us before this ledger knew.
                    ledger.update_draft(draft_id, self.now, state=DraftState.SENT)
                    self.decide("draft sent by you",
                                f"the {action.kind.value} to {action.recipient.email} is "
                                "already in Sent", interview_id=action.interview_id,
                                draft_id=draft_id)
                    return
                if skip_reason:
                    self.decide("draft skipped", skip_reason,
                                interview_id=action.interview_id, draft_id=draft_id)
                else:
                    self.decide("draft planned", action.reason,
                                interview_id=action.interview_id, draft_id=draft_id)
            if state == DraftState.PLANNED and action.due <= self.now:
                # Already due (a catch-up): create it in this pass, not at the next poll.
                row = self._create(draft_id, interviews, action.reason)
                if row is not None:
                    created.setdefault(row.interview_id, []).append(row)
        elif isinstance(action, planner.ReviveDraft):
            with ledger.transaction():
                ledger.update_draft(action.draft_id, self.now, state=DraftState.PLANNED,
                                    due=action.due, late=action.late)
                self.decide("draft planned again", action.reason, draft_id=action.draft_id)
            if action.due <= self.now:
                row = self._create(action.draft_id, interviews, action.reason)
                if row is not None:
                    created.setdefault(row.interview_id, []).append(row)
        elif isinstance(action, planner.Reschedule):
            with ledger.transaction():
                ledger.update_draft(action.draft_id, self.now, due=action.due)
                self.decide("draft rescheduled", action.reason, draft_id=action.draft_id)
        elif isinstance(action, planner.CreateDraft):
            if action.late:
                with ledger.transaction():
                    ledger.update_draft(action.draft_id, self.now, late=True)
            row = self._create(action.draft_id, interviews, action.reason)
            if row is not None:
                created.setdefault(row.interview_id, []).append(row)
        elif isinstance(action, planner.UpdateDraft):
            self._update(action.draft_id, interviews, action.reason)
        elif isinstance(action, planner.CancelDraft):
            self._cancel(action.draft_id, interviews, action.reason)
        elif isinstance(action, planner.RetractDraft):
            self._retract(action.draft_id, interviews, action.reason)
        elif isinstance(action, planner.FlagDraft):
            with ledger.transaction():
                ledger.update_draft(action.draft_id, self.now, flagged=action.reason)
                self.decide("draft flagged", action.reason, draft_id=action.draft_id)
        elif isinstance(action, planner.Remind):
            with ledger.transaction():
                for draft_id in action.draft_ids:
                    ledger.update_draft(draft_id, self.now, reminded_at=self.now)
                self.decide("reminder", action.reason, interview_id=action.interview_id)
            interview = interviews[action.interview_id]
            self.report.notices.append(Notice(
                action.interview_id, "reminder",
                f"Your thank-you drafts for {interview.company or interview.title} are still "
                "waiting in Drafts; the advice is to send them within 24 hours",
            ))

    def _thread_parent(self, draft: DraftRow) -> DraftRow | None:
        """The sent thank-you a follow-up replies to: the user's thank-you to the same person."""
        if draft.kind != DraftKind.FOLLOW_UP:
            return None
        for other in self.ledger.drafts(interview_id=draft.interview_id):
            if (
                other.kind == DraftKind.THANK_YOU
                and other.state == DraftState.SENT
                and other.recipient.email.lower() == draft.recipient.email.lower()
            ):
                return other
        return None

    def _render(self, draft: DraftRow, interview: InterviewRow) -> DraftMessage:
        parent = self._thread_parent(draft)
        message = compose.render(
            draft.kind, interview, draft.recipient, self.account, seq=draft.seq,
            in_reply_to=parent.message_id if parent else "",
            references=(parent.message_id,) if parent else (),
            thread_subject=self.ledger.draft_subject(parent.id) if parent else "",
            now=self.now,
            written_at=draft.due,  # time words ("this afternoon") stay the same on every pass
        )
        return _with_message_id(message, draft.message_id)

    def _render_or_report(self, draft: DraftRow, interview: InterviewRow) -> DraftMessage | None:
        """The rendered draft, or None after auditing why a template could not render it."""
        try:
            return self._render(draft, interview)
        except compose.ComposeError as exc:
            # The draft stays planned: it is made at the first pass after the template is fixed.
            reason = f"{draft.kind.value} to {draft.recipient.email}: {exc}"
            if self.ledger.last_decision(draft.id) != ("draft not made", reason):
                with self.ledger.transaction():  # said once, not at every pass
                    self.decide("draft not made", reason, interview_id=interview.id,
                                draft_id=draft.id)
            return None

    def _create(
        self, draft_id: int, interviews: dict[int, InterviewRow], reason: str
    ) -> DraftRow | None:
        ledger = self.ledger
        draft = ledger.draft(draft_id)
        interview = interviews[draft.interview_id]
        message = self._render_or_report(draft, interview)
        if message is None:
            return None
        if self.dry_run:
            self.report.actions.append(
                f"{self.account.name}: would create {draft.kind.value} draft to "
                f"{draft.recipient.email}: {message.subject!r}"
            )
            return None
        # The mailbox is the truth about our drafts: look before every create, so a crash, a
        # lost or second ledger, a renamed account or a lost answer never writes twice.
        found = self._locate(draft)
        if found is not None and found.place != Place.DRAFTS:
            self._found_elsewhere(draft, found)
            return None
        provider_id: str | None
        if found is not None:
            provider_id = found.provider_id
            self.decide("draft recovered",
                        f"found the {draft.kind.value} draft to {draft.recipient.email} "
                        "already in Drafts; not creating it twice",
                        interview_id=interview.id, draft_id=draft.id)
        else:
            if draft.state != DraftState.CREATING:
                with ledger.transaction():  # the intent first: a crash from here is repaired
                    ledger.update_draft(draft.id, self.now, state=DraftState.CREATING)
            provider_id = self._create_once(draft, message)
            if provider_id is None:
                return None
        with ledger.transaction():
            # A mark left by an earlier take-back (a revived row) is spent: from now on
            # ``trashed`` says a retraction is under way (drafts.retracting).
            ledger.update_draft(
                draft.id, self.now, state=DraftState.CREATED, provider_id=provider_id,
                created_at=self.now, version="", trashed=False,
                **self._rendered(message, interview),
            )
            late = " (late: the 24-hour window had passed)" if draft.late else ""
            self.decide("draft created",
                        f"{draft.kind.value} draft to {draft.recipient.email}: {reason}{late}",
                        interview_id=interview.id, draft_id=draft.id)
        if found is not None:
            # The copy found was written before (by a pass whose ledger was lost, or another
            # ledger), maybe with other words or edited since: look at it now, as the next
            # pass would, so this pass already leaves the ledger as it stays.
            row = ledger.draft(draft.id)
            hint = self._hint(row)
            seen = self.mailbox.observe(provider_id, row.message_id, hint)
            with ledger.transaction():
                self._apply_observation(row, seen, hint)
        return ledger.draft(draft.id)

    def _locate(self, draft: DraftRow) -> Located | None:
        """Where the mailbox holds this draft's Message-ID (a copy in Trash that we put there
        ourselves does not count)."""
        found = self.mailbox.locate(draft.message_id)
        if found is None and draft.state == DraftState.CREATING:
            # Search may lag behind a draft made seconds ago: the slow, exhaustive look.
            provider_id = self.mailbox.find_draft(draft.message_id)
            found = Located(Place.DRAFTS, provider_id) if provider_id else None
        return drafts.deciding_copy(found, draft.trashed)

    def _found_elsewhere(self, draft: DraftRow, found: Located) -> None:
        """The draft is already in Sent (the user sent it) or in Trash (the user deleted it)."""
        state = drafts.state_found_in(found.place)
        with self.ledger.transaction():
            self.ledger.update_draft(draft.id, self.now, state=state)
            if state == DraftState.SENT:
                self.ledger.link_sent(self.account.name, draft.message_id, draft.id)
                self.decide("draft sent by you",
                            f"the {draft.kind.value} to {draft.recipient.email} is already in "
                            "Sent; not creating it again",
                            interview_id=draft.interview_id, draft_id=draft.id)
            else:
                self.decide("draft deleted by you",
                            f"the {draft.kind.value} draft to {draft.recipient.email} is in "
                            "Trash; it will never be made again",
                            interview_id=draft.interview_id, draft_id=draft.id)

    def _create_once(self, draft: DraftRow, message: DraftMessage) -> str | None:
        """Create the draft; after an answer that got lost, look before trying again."""
        for attempt in (1, 2):
            try:
                return self.mailbox.create_draft(message)
            except AmbiguousWrite as exc:
                log.info("%s: %s; looking the draft up before trying again",
                         self.account.name, exc)
                try:  # as for any interrupted create: the exhaustive look too
                    found = self._locate(replace(draft, state=DraftState.CREATING))
                except ProviderError:
                    raise exc from None  # the row stays "creating": the next pass looks first
                if found is not None and found.place == Place.DRAFTS:
                    self.decide("draft recovered",
                                f"the {draft.kind.value} draft to {draft.recipient.email} was "
                                "made although the answer was lost; not creating it twice",
                                interview_id=draft.interview_id, draft_id=draft.id)
                    return found.provider_id
                if found is not None:
                    self._found_elsewhere(draft, found)
                    return None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _cancel(self, draft_id: int, interviews: dict[int, InterviewRow], reason: str) -> None:
        draft = self.ledger.draft(draft_id)
        if draft.state == DraftState.CREATING and not self.dry_run:
            # An interrupted create may have reached the mailbox: take back that copy too,
            # unless the user already changed it.
            located = self._locate(draft)
            provider_id = located.provider_id if located and located.place == Place.DRAFTS else None
            seen: Observation | None = None
            ours: DraftMessage | None = None
            if provider_id is not None:
                ours = self._render_or_report(draft, interviews[draft.interview_id])
                seen = self.mailbox.observe(provider_id, draft.message_id, self._hint(draft))
            repair = drafts.interrupted_create(seen, ours.content_hash if ours else None)
            if repair == drafts.Repair.KEEP:  # changed by the user, or not comparable
                with self.ledger.transaction():
                    self.ledger.update_draft(draft.id, self.now, provider_id=provider_id,
                                             state=DraftState.USER_EDITED)
                    self.decide("draft edited by you",
                                f"kept the interrupted draft to {draft.recipient.email}: "
                                "you changed it", draft_id=draft.id)
                return
            if repair == drafts.Repair.TAKE_BACK:
                assert seen is not None and provider_id is not None
                with self.ledger.transaction():  # our copy in Trash is not the user's doing
                    self.ledger.update_draft(draft.id, self.now, trashed=True)
                self.mailbox.retract(seen.provider_id or provider_id)
        with self.ledger.transaction():
            self.ledger.update_draft(draft.id, self.now, state=DraftState.CANCELLED)
            self.decide("draft cancelled", reason, draft_id=draft.id)

    def _still_ours(self, draft: DraftRow) -> str | None:
        """The draft's provider id if it is in Drafts exactly as we made it; else None.

        Looked at right before changing or removing it: an edit made since the last pass wins.
        """
        assert draft.provider_id is not None
        hint = self._hint(draft)
        seen = self.mailbox.observe(draft.provider_id, draft.message_id, hint)
        with self.ledger.transaction():
            result = self._apply_observation(draft, seen, hint)
        if result in (drafts.Outcome.OURS, drafts.Outcome.UPDATE_LANDED):
            return seen.provider_id or draft.provider_id
        return None

    def _rendered(self, message: DraftMessage, interview: InterviewRow) -> dict[str, object]:
        """The ledger fields that record what a draft says."""
        return {
            "content_hash": message.content_hash,
            "notes_version": interview.notes_version,
            "subject": message.subject,
            "gaps": len(message.gaps),
            "warnings": json.dumps(proofread.proofread(message.body, [message.to])),
        }

    def _update(self, draft_id: int, interviews: dict[int, InterviewRow], reason: str) -> None:
        draft = self.ledger.draft(draft_id)
        interview = interviews[draft.interview_id]
        if draft.provider_id is None or self.dry_run:
            return
        current = self._still_ours(draft)
        if current is None:
            return
        message = self._render_or_report(draft, interview)
        if message is None:
            return
        with self.ledger.transaction():  # the intent first, as for a create
            self.ledger.update_draft(draft.id, self.now, pending_hash=message.content_hash)
        try:
            provider_id = self.mailbox.update_draft(current, message)
        except AmbiguousWrite:
            # The answer was lost: look at the draft before anything is tried again.
            seen = self.mailbox.observe(current, draft.message_id, self._hint(draft))
            if not drafts.update_landed(seen, message.content_hash):
                raise  # not carried out: the next pass tries again (the intent is recorded)
            provider_id = seen.provider_id or current
        with self.ledger.transaction():
            self.ledger.update_draft(draft.id, self.now, provider_id=provider_id,
                                     pending_hash="", version="",
                                     **self._rendered(message, interview))
            self.decide("draft updated", reason, interview_id=interview.id, draft_id=draft.id)

    def _retract(self, draft_id: int, interviews: dict[int, InterviewRow], reason: str) -> None:
        draft = self.ledger.draft(draft_id)
        if draft.provider_id is None:
            return
        if self.dry_run:
            self.report.actions.append(
                f"{self.account.name}: would retract follow-up to {draft.recipient.email}"
            )
            return
        current = self._still_ours(draft)  # never delete what the user touched
        if current is None:
            return
        with self.ledger.transaction():  # the intent first: gone from here on is our doing
            self.ledger.update_draft(draft.id, self.now, trashed=True)
        self.mailbox.retract(current)
        interview = interviews[draft.interview_id]
        with self.ledger.transaction():
            self.ledger.update_draft(draft.id, self.now, state=DraftState.RETRACTED)
            self.decide("draft retracted", reason, interview_id=interview.id, draft_id=draft.id)
        self._retracted_notice(interview.id)

    def _retracted_notice(self, interview_id: int) -> None:
        interview = self.ledger.interview(interview_id)
        name = (interview.company or interview.title) if interview else "The employer"
        self.report.notices.append(Notice(
            interview_id, "retracted", f"{name} replied; the follow-up draft was removed",
        ))


@dataclass(frozen=True)
class _Threads(Mapping[str, int]):
    """Message-ID -> interview for threading mail: the ledger's (rows and matched mail) first,
    then those derived for our drafts of the interviews that mail is matched against."""

    ledger: Mapping[str, int]
    derived: Mapping[str, int]

    def __getitem__(self, message_id: str) -> int:
        try:
            return self.ledger[message_id]
        except KeyError:
            return self.derived[message_id]

    def __iter__(self) -> Iterator[str]:
        return iter({**self.derived, **self.ledger})

    def __len__(self) -> int:
        return len({**self.derived, **self.ledger})


def _with_message_id(message: DraftMessage, message_id: str) -> DraftMessage:
    """The draft under the Message-ID its ledger row holds (rows from before the id changed
    keep theirs, so the drafts they made are still found)."""
    if not message_id or message.message_id == message_id:
        return message
    head, sep, body = message.raw.partition(b"\r\n\r\n")
    old = b"Message-ID: " + message.message_id.encode("ascii") + b"\r\n"
    new = b"Message-ID: " + message_id.encode("ascii") + b"\r\n"
    if old in head + b"\r\n":
        raw = (head + b"\r\n").replace(old, new, 1)[:-2] + sep + body
    else:  # folded or otherwise unusual: let the email package rewrite the header
        parsed = email.message_from_bytes(message.raw, policy=email.policy.SMTP)
        parsed.replace_header("Message-ID", message_id)
        raw = parsed.as_bytes()
    return replace(message, message_id=message_id, raw=raw)


def _complete(batch: CalendarBatch) -> bool:
    """Whether absence from this listing means removal: not when a whole part was unreadable."""
    return batch.complete and all(item.uid for item in batch.skipped)


@dataclass(frozen=True)
class WaitingMessage:
    """A message whose handling failed: tried again later, shown in `status`."""

    message: MailHeaders
    tries: int
    next_try: datetime
    error: str
    given_up: bool = False  # remembered, so a full listing does not start it over


def _waiting_key(message: MailHeaders) -> str:
    return f"{message.folder.value}/{message.provider_id}"


def _headers_to_json(message: MailHeaders) -> dict[str, Any]:
    data = asdict(message)
    data["folder"] = message.folder.value
    data["date"] = message.date.isoformat() if message.date else None
    return data


def _headers_from_json(data: dict[str, Any]) -> MailHeaders:
    def people(items: list[dict[str, str]]) -> tuple[Person, ...]:
        return tuple(Person(**p) for p in items)

    return MailHeaders(
        folder=Folder(data["folder"]),
        provider_id=data["provider_id"],
        message_id=data["message_id"],
        sender=Person(**data["sender"]),
        subject=data["subject"],
        date=datetime.fromisoformat(data["date"]) if data["date"] else None,
        to=people(data["to"]),
        cc=people(data["cc"]),
        in_reply_to=data["in_reply_to"],
        references=tuple(data["references"]),
        headers=tuple((k, v) for k, v in data["headers"]),
        excerpt=data["excerpt"],
    )


def waiting_messages(ledger: Ledger, account: str) -> dict[str, WaitingMessage]:
    """The messages of ``account`` kept for another try (or given up), by folder and id."""
    stored = ledger.cursor(account, MAILBOX_RETRY)
    if not stored:
        return {}
    return {
        key: WaitingMessage(_headers_from_json(item["message"]), item["tries"],
                            datetime.fromisoformat(item["next_try"]), item["error"],
                            item.get("given_up", False))
        for key, item in json.loads(stored).items()
    }


def _dump_waiting(waiting: dict[str, WaitingMessage]) -> str | None:
    if not waiting:
        return None
    return json.dumps({
        key: {"message": _headers_to_json(w.message), "tries": w.tries,
              "next_try": w.next_try.isoformat(), "error": w.error, "given_up": w.given_up}
        for key, w in waiting.items()
    }, sort_keys=True)


def _listed(resource: str) -> str:
    """Where the time of the last full listing of ``resource`` is kept."""
    return resource + ".listed"


def _listing_due(ledger: Ledger, account: str, resource: str, now: datetime) -> bool:
    last = ledger.cursor(account, _listed(resource))
    return last is None or now - datetime.fromisoformat(last) >= FULL_LISTING_EVERY


class _NoCalendar(CalendarSource):
    """Stands in when a pass does not read the calendar (it is read on its own interval)."""

    def changes(self, cursor: str | None, window: Window) -> CalendarBatch:
        raise AssertionError("the calendar is not read on this pass")

    def close(self) -> None:
        pass


class OpenProviders:
    """One account's mailbox and calendar, kept open from pass to pass (the daemon's).

    Opened on first use, so a session, a refreshed access token or a discovered endpoint lives
    as long as the daemon instead of one pass. ``close()`` after a fault or a config change:
    the next pass opens them again. ``opened`` counts the opens (for tests and benches).
    """

    def __init__(self, account: AccountSettings) -> None:
        self.account = account
        self.opened = 0
        self.quiet: Quiet | None = None  # left by the last pass, if it planned nothing
        self._mailbox: Mailbox | None = None
        self._calendar: CalendarSource | None = None

    def mailbox(self) -> Mailbox:
        if self._mailbox is None:
            self._mailbox = open_mailbox(self.account)
            self.opened += 1
        return self._mailbox

    def calendar(self) -> CalendarSource:
        if self._calendar is None:
            self._calendar = open_calendar(self.account)
            self.opened += 1
        return self._calendar

    def close(self) -> None:
        things = [t for t in (self._mailbox, self._calendar) if t is not None]
        self._mailbox = self._calendar = None
        self.quiet = None  # a fault or a new config: the next pass plans in full
        for thing in things:
            try:
                thing.close()
            except Exception:  # noqa: BLE001 - a broken session is dropped all the same
                log.debug("closing %r failed", thing, exc_info=True)


def reconcile(
    account: AccountSettings,
    ledger: Ledger,
    *,
    now: datetime | None = None,
    mailbox: Mailbox | None = None,
    calendar: CalendarSource | None = None,
    dry_run: bool = False,
    notify: Notifier | None = None,
    read_calendar: bool = True,
    keep: OpenProviders | None = None,
) -> PassReport:
    """One pass for one account. Never raises for a provider fault: it is in the report.

    With ``keep``, the providers come from it and stay open after the pass, unless the pass
    failed: then they are closed, so the next pass starts from a fresh session. ``keep`` also
    carries what a pass that planned nothing proved (`Quiet`): the next pass skips reading the
    drafts and planning while that still holds. Without it every pass plans in full.
    """
    now = (now or datetime.now(UTC)).astimezone(UTC)
    owned: list[Mailbox | CalendarSource] = []
    report = PassReport(account=account.name)
    savepoint = dry_run and not ledger.conn.in_transaction
    if savepoint:
        ledger.conn.execute("BEGIN IMMEDIATE")
    try:
        if keep is not None:
            calendar = calendar or (keep.calendar() if read_calendar else _NoCalendar())
            mailbox = mailbox or keep.mailbox()
        if calendar is None:
            calendar = open_calendar(account) if read_calendar else _NoCalendar()
            owned.append(calendar)
        if mailbox is None:
            mailbox = open_mailbox(account)
            owned.append(mailbox)
        step = Pass(account, ledger, now, mailbox, calendar, dry_run)
        report = step.report
        quiet = None
        if keep is not None:
            quiet, keep.quiet = keep.quiet, None  # left again only by a pass that succeeds
        step.lift_mailbox_pause()
        if not read_calendar or step.sync_calendar():
            step.sync_mail()
            if not step.still_quiet(quiet if not dry_run else None):
                step.observe_drafts()
                held = step.held()
                if held:  # paused means paused: nothing is written, moved or deleted
                    report.paused = held
                else:
                    step.plan_and_act()
        if not dry_run:
            with ledger.transaction():
                ledger.record_ok(account.name, now)
            if keep is not None:
                keep.quiet = step.quiet
    except FolderMissing as exc:
        report.error = str(exc)
        report.paused = (
            f"the mailbox looks wrong ({exc}); nothing was changed. This lifts by itself once "
            f"the Drafts folder is back, or run `mailbridge resume {account.name}`"
        )
        if not dry_run:
            with ledger.transaction():
                pause = drafts.mailbox_pause(report.paused, ledger.pause_causes(account.name))
                if pause.pause is not None:
                    ledger.set_paused(account.name, pause.pause, MAILBOX)
                if pause.audit is not None:
                    ledger.audit(account.name, *pause.audit, now=now)
                ledger.record_error(account.name, report.paused, now)
        log.warning("%s: paused: %s", account.name, report.paused)
    except AuthError as exc:
        report.error = str(exc)
        if not dry_run:
            with ledger.transaction():
                ledger.record_error(account.name, report.error, now)
        log.error("%s: %s", account.name, exc)
    except ProviderError as exc:
        report.error = str(exc)
        if not dry_run:
            with ledger.transaction():
                ledger.record_error(account.name, report.error, now)
        log.warning("%s: will retry: %s", account.name, exc)
    finally:
        if savepoint:
            ledger.conn.execute("ROLLBACK")
        if mailbox is not None:
            try:
                mailbox.pass_ended()
            except Exception:  # noqa: BLE001 - must not hide the pass's outcome
                log.debug("ending the pass of %r failed", mailbox, exc_info=True)
        if keep is not None and report.error is not None:
            keep.close()  # reopened at the next pass
        for thing in owned:
            try:
                thing.close()
            except Exception:  # noqa: BLE001 - closing must not hide the pass's outcome
                log.debug("closing %r failed", thing, exc_info=True)
    if notify is not None and report.notices and not dry_run:
        try:
            notify(account, report.notices)
        except Exception as exc:  # noqa: BLE001 - notifying never blocks drafting
            log.warning("%s: notification failed: %s", account.name, exc)
    return report


def render_for_preview(
    account: AccountSettings, ledger: Ledger, draft: DraftRow, interview: InterviewRow,
    now: datetime,
) -> DraftMessage:
    """What a pass writes for ``draft``: `mailbridge preview` shows exactly this.

    Rendering reads only the ledger (the thread parent, its subject), so no mailbox or
    calendar is opened.
    """
    step = Pass(account, ledger, now, cast(Mailbox, None), cast(CalendarSource, None),
                dry_run=True)
    return step._render(draft, interview)
