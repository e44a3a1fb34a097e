"""The two things a provider implements, and how the core finds them.

A provider adapts one remote system to one of two small interfaces. Adapters translate; they
never decide. Every decision (is this an interview, is this a reply, is a draft due, may it be
deleted) is taken by the core from the plain values the adapters return.

Terms (shared by every adapter):

calendar source
    Reports events. ``changes(cursor, window)`` returns a `CalendarBatch`: the events that are
    new or changed since ``cursor`` (or every event in ``window`` when ``cursor`` is None or
    no longer accepted, with ``complete=True``), the keys removed at the source, and the next
    cursor. Times are aware datetimes. All-day events set ``all_day``. Each instance of a
    recurring series is its own event, keyed by its original start.
mailbox
    Holds drafts and reports mail. ``messages(cursor, since)`` returns the headers of messages
    that arrived in the inbox or the sent folder since ``cursor`` (on the first call: since
    ``since``), never whole bodies beyond a short excerpt. Every mailbox reports the same facts
    about a message, so that classification is the same on every provider: its headers, the
    content types of its MIME parts (``MailHeaders.part_types``: an invitation is known by its
    text/calendar part, which a header-only API does not show), every Authentication-Results
    header in order, and what the service itself knows (``MailHeaders.hints``: Graph's
    eventMessage type and ``meetingMessageType``, Gmail's labels, IMAP keywords). A fact the
    service cannot give is left empty. ``create_draft`` stores a draft
    (with the draft flag) and returns its provider id; ``locate`` looks a Message-ID up in
    Drafts, Sent and Trash and says where it is (a `Located`: Drafts wins over Sent, Sent
    over Trash; None when it is in none of them); the engine calls it before every create,
    so a crash, a lost or second ledger, a renamed account or a create whose answer was lost
    never writes a second copy. ``find_draft`` is ``locate`` narrowed to Drafts, and may look
    harder (a search index that lags a draft made seconds ago); ``locate`` raises FolderMissing
    while Drafts is gone. A create or update that may or may not have been carried out
    (timeout, reset, 5xx after the request went out) raises `AmbiguousWrite` and is never
    repeated blindly: the engine looks first. ``observe`` reports facts about a draft we
    made, never a verdict: whether it is still in Drafts (with the fingerprint of what is
    there, from `mailbridge.compose.fingerprint`, its text body and a cheap version marker),
    whether our Message-ID (or the same item, no longer a draft) is in Sent, or neither; and,
    when it is in neither and a `SentHint` was given, the messages in Sent to that
    recipient since about the draft's creation (``Observation.sent_candidates``: recipients,
    subject, date, thread references, and whether the mailbox's own threading puts them in
    the draft's thread). Whether the user sent, deleted or edited it is decided by
    `mailbridge.drafts`, with one slack for every provider. ``versions`` takes the markers
    ``observe`` reported (provider id -> marker) and answers, for as many drafts as it can
    cheaply and in one go (one listing, one FETCH of FLAGS/MODSEQ, the history already read,
    one request for change keys), the marker each has now; a draft it leaves out is observed
    in full. Equal markers mean the draft was not touched, so the engine neither reads nor
    proofreads it again. A mailbox that reports no marker is never asked. ``update_draft``
    replaces an unedited draft; ``retract`` removes a draft (to Trash where the mailbox has
    one). A mailbox never sends mail: no adapter has, or may grow, a method that sends.
cursor
    An opaque string the adapter hands back to continue incrementally (sync token, history id,
    delta link, UIDVALIDITY/UIDNEXT/MODSEQ, ETag, Maildir file names). The core stores it in
    the ledger and passes it back unchanged. A cursor is an optimisation, never a gate: the
    core passes None once a day for a full listing, keeps a message whose handling failed
    (the cursor moves on, the message does not go away), and ignores what it already handled.
    When the window moves, a calendar cursor covers only the span of its last full listing:
    an event beyond that span that nobody edits never shows up in an incremental read. So a
    calendar source keeps that span with its cursor and lists the new window in full (with
    ``complete=True``) as soon as the window's start or end lies outside it
    (`mailbridge_providers.windowed`); an ``.ics`` feed or folder, read whole anyway, is read
    again whenever the window's first day changes.

Providers register factories under the entry-point group ``mailbridge.providers``:
``mailbox.KIND`` (``(AccountSettings) -> Mailbox``) and ``calendar.KIND``
(``(AccountSettings) -> CalendarSource``).

settings
    A provider owns its configuration. The module that registers an entry point may define
    ``CONFIG = ProviderConfig(...)``: the name of its account table (``imap = {...}``), the
    schema of that table, which of its entry points read it, the schema of each calendar kind's
    own keys in ``calendar = {...}``, and its checks for ``mailbridge check``. A schema is a
    frozen dataclass built from the field types of `mailbridge.config` (``Text``, ``Whole``,
    ``WebAddress``...), each field with a ``doc(description, example)``; `mailbridge.config`
    validates the table with it (pydantic) and puts the result in ``AccountSettings.tables``
    (calendar keys: ``CalendarSettings.options``). The provider reads it back by type:
    ``account.settings_of(ImapSettings)``. The core never names a provider or its keys.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from importlib import import_module
from importlib.metadata import entry_points
from types import ModuleType
from typing import Protocol, cast

from mailbridge.model import (
    CalendarBatch,
    DraftMessage,
    Located,
    MessageBatch,
    Observation,
    SentHint,
    Window,
)
from mailbridge.settings import AccountSettings

ENTRY_POINT_GROUP = "mailbridge.providers"


class ProviderError(Exception):
    """A remote system failed in a way that may pass (network, 5xx, throttling)."""


class AuthError(ProviderError):
    """Credentials are missing, expired or revoked: the user must run `mailbridge auth`."""


class AmbiguousWrite(ProviderError):
    """A create or update may or may not have been carried out (timeout, reset, 5xx after the
    request was sent). Never repeat it blindly: look the Message-ID up first."""


class FolderMissing(ProviderError):
    """A folder we rely on (Drafts) is not there. Treated as a fault, never as a fact."""


class CalendarSource(Protocol):
    def changes(self, cursor: str | None, window: Window) -> CalendarBatch: ...

    def close(self) -> None: ...


class Mailbox(Protocol):
    def messages(self, cursor: str | None, since: datetime) -> MessageBatch: ...

    def find_draft(self, message_id: str) -> str | None: ...

    def locate(self, message_id: str) -> Located | None: ...

    def create_draft(self, draft: DraftMessage) -> str: ...

    def observe(
        self, provider_id: str, message_id: str, hint: SentHint | None = None
    ) -> Observation: ...

    def versions(self, known: Mapping[str, str]) -> dict[str, str]: ...

    def update_draft(self, provider_id: str, draft: DraftMessage) -> str: ...

    def retract(self, provider_id: str) -> None: ...

    def close(self) -> None: ...


MailboxFactory = Callable[[AccountSettings], Mailbox]
Check = Callable[[AccountSettings], "str | None"]


@dataclass(frozen=True)
class ProviderConfig:
    """What a provider module declares about its configuration (its module attribute CONFIG)."""

    table: str = ""  # the account key of its own table, e.g. "imap"
    settings: type | None = None  # the schema of that table
    used_by: tuple[str, ...] = ()  # the entry points reading it: "mailbox.gmail", "calendar.google"
    calendars: Mapping[str, type] = field(default_factory=dict)  # kind -> schema of its own keys
    default_calendar: str | None = None  # an account of this mailbox without a calendar uses it
    starter_calendar: str | None = None  # the calendar `mailbridge init` suggests with it
    check_mailbox: Check | None = None  # what `mailbridge check` looks at, without a network
    check_calendar: Check | None = None


@functools.cache
def config_of(entry: str) -> ProviderConfig | None:
    """The CONFIG of the module that registered ``entry`` ("mailbox.imap"), importing only that
    module (the SDKs of the others cost every command time); None when nothing registered it."""
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == entry:
            config: ProviderConfig = getattr(import_module(ep.module), "CONFIG", ProviderConfig())
            return config
    return None


def configs() -> dict[str, ProviderConfig]:
    """Every installed entry point and its module's CONFIG (imports every provider)."""
    return {name: config_of(name) or ProviderConfig()
            for name in (ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))}


def calendar_schema(kind: str) -> type | None:
    return (config_of("calendar." + kind) or ProviderConfig()).calendars.get(kind)


def credential_problem(account: AccountSettings) -> str | None:
    """What keeps the account from working that can be seen without touching a server."""
    for entry, role in (("mailbox." + account.provider, "check_mailbox"),
                        ("calendar." + account.calendar.kind, "check_calendar")):
        check: Check | None = getattr(config_of(entry) or ProviderConfig(), role)
        problem = check(account) if check else None
        if problem:
            return problem
    return None
CalendarFactory = Callable[[AccountSettings], CalendarSource]


def _load(name: str) -> object:
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            return ep.load()
    raise LookupError(name)


def mailbox_module(kind: str) -> ModuleType:
    """The module that registered ``mailbox.KIND``: where its `authenticate` and `watch` live."""
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == "mailbox." + kind:
            return import_module(ep.module)
    raise ProviderError(f"no mailbox provider {kind!r} is installed")


def available(prefix: str) -> list[str]:
    """The registered kinds for ``prefix`` ("mailbox" or "calendar")."""
    return sorted(
        ep.name.split(".", 1)[1]
        for ep in entry_points(group=ENTRY_POINT_GROUP)
        if ep.name.startswith(prefix + ".")
    )


def open_mailbox(account: AccountSettings) -> Mailbox:
    try:
        factory = cast(MailboxFactory, _load("mailbox." + account.provider))
    except LookupError:
        raise ProviderError(
            f"account {account.name!r}: no mailbox provider {account.provider!r} is installed "
            f"(installed: {', '.join(available('mailbox')) or 'none'})"
        ) from None
    return factory(account)


def open_calendar(account: AccountSettings) -> CalendarSource:
    kind = account.calendar.kind
    try:
        factory = cast(CalendarFactory, _load("calendar." + kind))
    except LookupError:
        raise ProviderError(
            f"account {account.name!r}: no calendar provider {kind!r} is installed "
            f"(installed: {', '.join(available('calendar')) or 'none'})"
        ) from None
    return factory(account)
