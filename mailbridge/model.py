"""Plain data shared by the core and the providers.

Everything here is an immutable value: no I/O, no behaviour beyond trivial derivations.
Times are timezone-aware; instants stored or compared are in UTC.

Terms used throughout the project:

event
    One calendar entry (one instance of a recurring series), as a calendar source reports it.
interview
    An event that detection judged to be a job interview the user attended as a candidate.
attendee
    A person on an event. After hygiene, the attendees of an interview are the interviewers
    that get a thank-you draft.
lead
    The one interviewer who receives the follow-up.
draft
    A message we create in the user's Drafts folder; never sent by us.
reply
    An inbound message matched to an interview, with its classification.
ledger
    The SQLite state of one installation: interviews, drafts, messages, sync cursors, audit.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta


class Response(enum.StrEnum):
    ACCEPTED = "accepted"
    DECLINED = "declined"
    TENTATIVE = "tentative"
    NEEDS_ACTION = "needs-action"
    UNKNOWN = "unknown"


class AttendeeKind(enum.StrEnum):
    PERSON = "person"
    RESOURCE = "resource"  # rooms and equipment
    GROUP = "group"  # distribution lists
    UNKNOWN = "unknown"


class EventStatus(enum.StrEnum):
    CONFIRMED = "confirmed"
    TENTATIVE = "tentative"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class Person:
    email: str
    name: str = ""


@dataclass(frozen=True)
class Attendee:
    email: str
    name: str = ""
    kind: AttendeeKind = AttendeeKind.PERSON
    response: Response = Response.UNKNOWN
    is_self: bool = False
    is_organizer: bool = False


@dataclass(frozen=True)
class EventKey:
    """Identifies one event instance within an account."""

    calendar: str  # calendar id or URL inside the account
    uid: str
    instance: str = ""  # "" for a single event; the original start (ISO, UTC) of an instance


@dataclass(frozen=True)
class Event:
    key: EventKey
    title: str
    start: datetime  # aware
    end: datetime  # aware
    description: str = ""
    location: str = ""
    all_day: bool = False
    status: EventStatus = EventStatus.CONFIRMED
    organizer: Person | None = None
    attendees: tuple[Attendee, ...] = ()
    recurring: bool = False  # an instance of a recurring series


@dataclass(frozen=True)
class Unreadable:
    """Something a calendar source could not read, for the audit log."""

    what: str  # "event 'abc' in work.ics", "file work.ics"
    why: str
    uid: str | None = None  # set: that one event (its instances are kept as they were);
    # None: a whole part of the source (a file), so the listing is not complete


@dataclass(frozen=True)
class CalendarBatch:
    """What a calendar source reports for one sync."""

    events: tuple[Event, ...]  # new or changed events; cancelled ones carry CANCELLED
    removed: tuple[EventKey, ...] = ()  # deleted at the source
    complete: bool = False  # events is the whole window: anything known and absent is gone
    cursor: str | None = None  # opaque token for the next incremental sync
    # What the source could not read. Audited; and nothing is cancelled on its evidence.
    skipped: tuple[Unreadable, ...] = ()


@dataclass(frozen=True)
class Window:
    """The span of time a calendar sync looks at."""

    start: datetime
    end: datetime


class Folder(enum.StrEnum):
    INBOX = "inbox"
    SENT = "sent"


@dataclass(frozen=True)
class MailHeaders:
    """The headers of one message (and a short excerpt of its text) as classification needs them."""

    folder: Folder
    provider_id: str
    message_id: str
    sender: Person
    subject: str = ""
    date: datetime | None = None
    to: tuple[Person, ...] = ()
    cc: tuple[Person, ...] = ()
    in_reply_to: str = ""
    references: tuple[str, ...] = ()
    # Lower-cased header name -> value, for the headers that tell automatic mail apart
    # (auto-submitted, precedence, list-id, x-ms-exchange-*, content-type, ...).
    headers: tuple[tuple[str, str], ...] = ()
    excerpt: str = ""  # the first few hundred characters of the text body, or ""
    # The content types of the message's MIME parts (lower-cased, each once, in order), as far
    # as the provider can tell: a text/calendar part nested in multipart/alternative is what
    # makes an Outlook or Teams invitation a calendar message, whatever its subject says.
    part_types: tuple[str, ...] = ()
    # What the provider itself knows about the message, as (name, value): Graph's
    # "graph.type" (@odata.type) and "graph.meetingMessageType", Gmail's "gmail.label",
    # IMAP's "imap.keyword" (flags and keywords). Facts, not verdicts: classify reads them.
    hints: tuple[tuple[str, str], ...] = ()
    # Every Authentication-Results header (RFC 8601), topmost first: the top ones were added by
    # the receiving side, the ones further down may come from anyone on the way.
    authentication_results: tuple[str, ...] = ()

    def header(self, name: str) -> str:
        name = name.lower()
        for key, value in self.headers:
            if key == name:
                return value
        return ""

    def hint(self, name: str) -> tuple[str, ...]:
        """Every value the provider reported for the hint ``name``."""
        return tuple(value for key, value in self.hints if key == name)


@dataclass(frozen=True)
class MessageBatch:
    messages: tuple[MailHeaders, ...]
    cursor: str | None = None


class DraftKind(enum.StrEnum):
    THANK_YOU = "thank_you"
    FOLLOW_UP = "follow_up"


class DraftState(enum.StrEnum):
    PLANNED = "planned"  # due in the future; nothing on the server
    CREATING = "creating"  # written intent before the server call: repaired by Message-ID lookup
    CREATED = "created"  # on the server, as we made it
    SENT = "sent"  # the user sent it
    USER_EDITED = "user_edited"  # on the server, changed by the user: never deleted by us
    USER_DELETED = "user_deleted"  # gone from Drafts without being sent: never recreated
    RETRACTED = "retracted"  # we removed it (employer replied)
    CANCELLED = "cancelled"  # planned, then no longer wanted; never created
    SKIPPED = "skipped"  # never planned to be made (too late, …); kept so the decision sticks

    @property
    def final(self) -> bool:
        return self in (
            DraftState.SENT,
            DraftState.USER_DELETED,
            DraftState.RETRACTED,
            DraftState.CANCELLED,
            DraftState.SKIPPED,
        )

    @property
    def on_server(self) -> bool:
        return self in (DraftState.CREATED, DraftState.USER_EDITED)


@dataclass(frozen=True)
class Note:
    """Something the candidate wants the drafts to mention, from `mailbridge note`."""

    text: str
    recipient: str = ""  # "" for every interviewer; else the one address it is for (lower case)
    number: int = 0  # its place in `note --list`, from 1


class InterviewState(enum.StrEnum):
    ACTIVE = "active"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class InterviewRow:
    id: int
    account: str
    key: EventKey
    title: str
    company: str
    role: str
    start: datetime  # UTC
    end: datetime  # UTC
    state: InterviewState
    attendees: tuple[Person, ...]  # the interviewers kept after hygiene
    lead: Person | None
    notes: str = ""
    notes_version: int = 0
    decision_date: date | None = None  # when the employer said they would decide
    employer_domains: tuple[str, ...] = ()
    note_list: tuple[Note, ...] = ()  # every note, in the order given; `notes` joins the shared
    company_reason: str = ""  # why `company` is what it is, for `status`
    # Set while the event is absent from the calendar: its drafts are held, not cancelled,
    # until it stayed gone for the grace period or `missing_listings` reached two.
    missing_since: datetime | None = None
    missing_listings: int = 0
    # Set once the interview is finished (planner.finished) and moved to the archive: a pass
    # no longer loads it; news about it from the calendar or the user clears the mark.
    archived_at: datetime | None = field(default=None, compare=False)


@dataclass(frozen=True)
class DraftRow:
    id: int
    interview_id: int
    kind: DraftKind
    seq: int  # 1 for a thank-you; 1..3 for follow-ups
    recipient: Person
    state: DraftState
    due: datetime  # UTC
    message_id: str
    provider_id: str | None = None
    created_at: datetime | None = None
    content_hash: str = ""
    notes_version: int = 0  # the interview notes the draft was rendered with
    late: bool = False
    reminded_at: datetime | None = None
    flagged: str = ""  # why the user should look (edited, yet the employer replied); "" if not
    pending_hash: str = ""  # what an update under way writes: also ours if found in Drafts
    trashed: bool = False  # we moved a copy to Trash ourselves: a copy there is not a deletion
    # The mailbox's marker of the draft when last observed in full ("" none): a cache that
    # spares reading an untouched draft again, not part of the draft's state.
    version: str = field(default="", compare=False)


class MessageKind(enum.StrEnum):
    HUMAN = "human"
    AUTO_REPLY = "auto_reply"
    OUT_OF_OFFICE = "out_of_office"
    BOUNCE = "bounce"
    CALENDAR = "calendar"
    BULK = "bulk"
    OWN = "own"
    # Says it is from the employer, but the receiving server's checks (DMARC, or SPF and DKIM)
    # failed for the sender's domain: shown to the user, never taken for a reply.
    SUSPICIOUS = "suspicious"


@dataclass(frozen=True)
class Classification:
    kind: MessageKind
    reason: str
    return_date: date | None = None  # for an out-of-office that names one


@dataclass(frozen=True)
class MessageRow:
    """A message matched to an interview."""

    interview_id: int
    kind: MessageKind
    folder: Folder
    sender: str
    at: datetime  # UTC
    message_id: str
    recipients: tuple[str, ...] = ()
    return_date: date | None = None
    our_draft_id: int | None = None  # the draft this sent message came from, if any


@dataclass(frozen=True)
class Snapshot:
    """What the planner sees of one account."""

    interviews: tuple[InterviewRow, ...]
    drafts: tuple[DraftRow, ...]
    messages: tuple[MessageRow, ...]


# --- timing policy ---------------------------------------------------------------------


@dataclass(frozen=True)
class Delay:
    """A fixed delay: "2h", "90 minutes", "3 days"."""

    amount: timedelta


@dataclass(frozen=True)
class BusinessDays:
    """A number of business days: "7 business days"."""

    days: int


@dataclass(frozen=True)
class NextBusinessMorning:
    """The next business morning at a time: "next business morning 08:00"."""

    at: time


Timing = Delay | BusinessDays | NextBusinessMorning


@dataclass(frozen=True)
class Policy:
    """The timing rules of one account, as the planner applies them."""

    timezone: str = "UTC"  # IANA zone name of the user
    country: str | None = None  # ISO 3166 code for public holidays; None: weekends only
    subdivision: str | None = None
    thank_you: Timing = Delay(timedelta(hours=2))
    follow_up: Timing = BusinessDays(7)
    max_follow_ups: int = 1  # hard cap 3
    follow_up_spacing: timedelta = timedelta(days=7)
    morning: time = time(9, 0)  # when business-day drafts appear
    lookback: timedelta = timedelta(days=3)
    thank_you_bound: timedelta = timedelta(hours=24)
    reminder_after: timedelta | None = timedelta(hours=20)
    # How long an interview's event may be absent before it counts as removed.
    removal_grace: timedelta = timedelta(hours=1)
    quiet_start: time = time(21, 0)
    quiet_end: time = time(8, 0)


HARD_MAX_FOLLOW_UPS = 3


@dataclass(frozen=True)
class DraftMessage:
    """A rendered draft, ready for a mailbox."""

    kind: DraftKind
    message_id: str
    sender: Person
    to: Person
    subject: str
    body: str
    raw: bytes  # the RFC 5322 message
    in_reply_to: str = ""
    references: tuple[str, ...] = ()
    content_hash: str = ""
    gaps: tuple[str, ...] = field(default=())  # the marked gaps the user still has to fill


@dataclass(frozen=True)
class SentHint:
    """What a mailbox needs to look for a draft the user sent under a new Message-ID: it
    reports the messages in Sent that may be it (`SentCandidate`); `mailbridge.drafts`
    decides which one is."""

    recipient: str
    subject: str
    since: datetime  # when the draft was created
    thread: tuple[str, ...] = ()  # Message-IDs the draft replies to
    address: str = ""  # the user's: a message under one of our Message-IDs is another draft


@dataclass(frozen=True)
class SentCandidate:
    """A message in Sent to the hinted recipient, dated about when the draft was made or later:
    the facts by which the core tells whether it is the draft, sent under a new Message-ID."""

    recipients: tuple[str, ...]  # To and Cc addresses
    subject: str = ""
    date: datetime | None = None  # when it was sent (Date header, or the server's own time)
    thread: tuple[str, ...] = ()  # In-Reply-To and References
    in_draft_thread: bool = False  # the mailbox's own threading puts it in the draft's thread
    message_id: str = ""  # its own Message-ID, if known


class Presence(enum.StrEnum):
    PRESENT = "present"  # still in Drafts
    SENT = "sent"  # the user sent it
    GONE = "gone"  # neither in Drafts nor seen sent


@dataclass(frozen=True)
class Observation:
    """What a mailbox sees of one of our drafts: facts only (`mailbridge.drafts` decides).

    ``presence`` says where the draft's own id or Message-ID is: in Drafts, in Sent (sent
    under our Message-ID, or the same item no longer a draft), or neither (GONE). When it is
    GONE and a `SentHint` was given, ``sent_candidates`` lists what in Sent may be the draft
    sent under a Message-ID of its own.
    """

    presence: Presence
    content_hash: str = ""  # compose.fingerprint of what is in Drafts now (PRESENT only)
    provider_id: str | None = None  # the id now, if the mailbox changed it
    body: str = ""  # the text body now (PRESENT only, when the mailbox has it at hand): proofread
    sent_candidates: tuple[SentCandidate, ...] = ()  # GONE with a hint only
    # A cheap marker of this version of the draft (PRESENT only; "" when the mailbox has none):
    # the same marker from `Mailbox.versions` later means the draft was not touched since.
    version: str = ""


class Place(enum.StrEnum):
    """Where a mailbox holds a message with a given Message-ID."""

    DRAFTS = "drafts"
    SENT = "sent"
    TRASH = "trash"  # deleted unsent (Trash, Deleted Items, Gmail's TRASH label)


@dataclass(frozen=True)
class Located:
    """What `Mailbox.locate` found: the folder that decides, and the message's id there."""

    place: Place
    provider_id: str = ""
