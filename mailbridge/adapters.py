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
    one). ``pass_ended`` marks the end of every pass, a failed one too: what the mailbox held
    for that pass only goes back (a connection it shares with its push watcher). A mailbox
    never sends mail: no adapter has, or may grow, a method that sends.
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

provider class
    Each kind is one class: a mailbox subclasses `Mailbox`, a calendar source subclasses
    `CalendarSource` (both `Provider`s, in the manner of vdirsyncer's ``Storage``). The class
    is what the entry point registers, under the group ``mailbridge.providers``:
    ``mailbox.KIND`` or ``calendar.KIND`` names the class; ``open(account)`` makes one for an
    account. What a kind can do beyond the contract it declares as class attributes
    (``signs_in``, ``sign_in_port``, ``pushes``, ``own_probe``, ``moves_to_trash``,
    ``reread_every_pass``), and the core asks the class, never the module: ``authenticate``
    (`mailbridge auth`), ``forget`` (``auth --revoke``), ``stored`` (what it keeps in the
    token store), ``problems`` (what ``mailbridge check`` sees without a network), ``probe``
    (``check --online``; by default one read through the adapter) and ``watch`` (push).
    Every one has a default that fits a kind without the capability.

settings
    A provider owns its configuration. Its classes carry ``config = ProviderConfig(...)``: the
    name of its account table (``imap = {...}``), the schema of that table, which of its entry
    points read it, and the schema of each calendar kind's own keys in ``calendar = {...}``.
    A schema is a frozen dataclass built from the field types of `mailbridge.config`
    (``Text``, ``Whole``, ``WebAddress``...), each field with a ``doc(description,
    example)``; `mailbridge.config` validates the table with it (pydantic) and puts the result
    in ``AccountSettings.tables`` (calendar keys: ``CalendarSettings.options``). The provider
    reads it back by type: ``account.settings_of(ImapSettings)``. The core never names a
    provider or its keys: even the kinds mailbridge starts with (`mailbridge init`, an account
    without a calendar) come from the provider whose ``ProviderConfig`` says ``default=True``.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib.metadata import entry_points
from typing import Any, ClassVar, Self

from mailbridge.model import (
    CalendarBatch,
    DraftMessage,
    Located,
    MessageBatch,
    Observation,
    Place,
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


@dataclass(frozen=True)
class ProviderConfig:
    """What a provider declares about its configuration (the ``config`` of its classes)."""

    table: str = ""  # the account key of its own table, e.g. "imap"
    settings: type | None = None  # the schema of that table
    used_by: tuple[str, ...] = ()  # the entry points reading it: "mailbox.gmail", "calendar.google"
    calendars: Mapping[str, type] = field(default_factory=dict)  # kind -> schema of its own keys
    default_calendar: str | None = None  # an account of this mailbox without a calendar uses it
    starter_calendar: str | None = None  # the calendar `mailbridge init` suggests with it
    default: bool = False  # its mailbox and calendar kinds are the ones mailbridge starts with


@dataclass(frozen=True)
class Probe:
    """One online read: the resource ("sign-in", "calendar", "Drafts", "inbox", "Sent"),
    whether it worked, and what works or what to fix."""

    resource: str
    ok: bool
    detail: str


def _quietly(close: Callable[[], None]) -> None:
    with contextlib.suppress(Exception):
        close()


class Provider:
    """What both kinds share: the settings they read and the capabilities they declare."""

    config: ClassVar[ProviderConfig] = ProviderConfig()
    signs_in: ClassVar[bool] = False  # `mailbridge auth` runs `authenticate`
    sign_in_port: ClassVar[bool] = False  # `authenticate` takes a fixed port (`auth --port`)
    pushes: ClassVar[bool] = False  # `watch` reports changes as they happen
    subscribes: ClassVar[bool] = False  # ... or `subscribe` does, with no thread of its own
    own_probe: ClassVar[bool] = False  # `probe` signs in and reads every resource of the
    # provider itself, its calendar included; otherwise `probe` reads through the adapter

    @classmethod
    def open(cls, account: AccountSettings) -> Self:
        raise NotImplementedError

    @classmethod
    def authenticate(cls, account: AccountSettings, *, no_browser: bool = False,
                     port: int | None = None) -> str:
        """Signs in (asking the user) and stores the credential; says what it did."""
        raise ProviderError(f"provider {account.provider} needs no sign-in")

    @classmethod
    def forget(cls, account: AccountSettings) -> str | None:
        """What `auth --revoke` does beyond clearing the token store (said to the user)."""
        return None

    @classmethod
    def stored(cls, account: AccountSettings) -> dict[str, str]:
        """The purposes it keeps in the account's token store, each with what its absence
        means ("not signed in to ...")."""
        return {}

    @classmethod
    def problems(cls, account: AccountSettings) -> list[str]:
        """What keeps the account from working that can be seen without touching a server."""
        return []

    @classmethod
    def probe(cls, account: AccountSettings) -> list[Probe]:
        """One cheap online read per resource, for `mailbridge check --online`."""
        return []

    @classmethod
    def watch(cls, account: AccountSettings, on_change: Callable[[], None],
              stop: threading.Event) -> None:
        """Calls ``on_change`` whenever something may have changed, until ``stop`` is set
        (only where ``pushes``)."""
        raise NotImplementedError(f"{cls.__name__} does not push changes")

    @classmethod
    def subscribe(cls, account: AccountSettings,
                  on_change: Callable[[], None]) -> Callable[[], None]:
        """Like `watch`, without a thread: calls ``on_change`` on changes until the returned
        function is called (only where ``subscribes``)."""
        raise NotImplementedError(f"{cls.__name__} does not subscribe to changes")


class CalendarSource(Provider):
    """Reports events (see the module docstring)."""

    reread_every_pass: ClassVar[bool] = False  # costs little unchanged: read at every pass

    def changes(self, cursor: str | None, window: Window) -> CalendarBatch:
        raise NotImplementedError

    def close(self) -> None:
        pass

    @classmethod
    def probe(cls, account: AccountSettings) -> list[Probe]:
        """Without a probe of its own: one adapter read of the next day."""
        try:
            source = open_calendar(account)
            try:
                now = datetime.now(UTC)
                batch = source.changes(None, Window(now, now + timedelta(days=1)))
            finally:
                _quietly(source.close)
        except ProviderError as exc:
            return [Probe("calendar", False, str(exc))]
        return [Probe("calendar", True,
                      f"readable ({len(batch.events)} event(s) in the next day)")]


class Mailbox(Provider):
    """Holds drafts and reports mail (see the module docstring). Never sends."""

    moves_to_trash: ClassVar[bool] = False  # `retract` moves a draft to a Trash folder

    @classmethod
    def open_dry(cls, account: AccountSettings) -> Self | None:
        """The mailbox for a dry run, when opening it would change nothing (no folders made)."""
        return None

    def messages(self, cursor: str | None, since: datetime) -> MessageBatch:
        raise NotImplementedError

    def find_draft(self, message_id: str) -> str | None:
        raise NotImplementedError

    def locate(self, message_id: str) -> Located | None:
        """By default Drafts only: for a mailbox that keeps no Sent or Trash of its own."""
        provider_id = self.find_draft(message_id)
        return Located(Place.DRAFTS, provider_id) if provider_id else None

    def create_draft(self, draft: DraftMessage) -> str:
        raise NotImplementedError

    def observe(
        self, provider_id: str, message_id: str, hint: SentHint | None = None
    ) -> Observation:
        raise NotImplementedError

    def versions(self, known: Mapping[str, str]) -> dict[str, str]:
        """Each waiting draft's cheap version marker now, by provider id (see ``observe``);
        a mailbox without markers reports none, and every draft is then read in full."""
        return {}

    def update_draft(self, provider_id: str, draft: DraftMessage) -> str:
        raise NotImplementedError

    def retract(self, provider_id: str) -> None:
        raise NotImplementedError

    def pass_ended(self) -> None:
        """The engine calls it when a pass is over, a failed one too: what the mailbox held
        for the pass only goes back (a connection it shares with its push watcher). The
        mailbox stays usable: the next pass takes it again."""

    def close(self) -> None:
        pass

    @classmethod
    def probe(cls, account: AccountSettings) -> list[Probe]:
        """Without a probe of its own: the inbox and Sent since now, then Drafts."""
        try:
            mailbox = open_mailbox(account)
        except ProviderError as exc:
            return [Probe("sign-in", False, str(exc))]
        found = [Probe("sign-in", True, "connected")]
        try:
            for resource, read in (
                ("inbox and Sent", lambda: mailbox.messages(None, datetime.now(UTC))),
                ("Drafts", lambda: mailbox.find_draft("<check@mailbridge.invalid>")),
            ):
                try:
                    read()
                except ProviderError as exc:
                    found.append(Probe(resource, False, str(exc)))
                else:
                    found.append(Probe(resource, True, "readable"))
        finally:
            _quietly(mailbox.close)
        return found


@functools.cache
def provider_class(entry: str) -> type[Provider] | None:
    """The class registered as ``entry`` ("mailbox.KIND" or "calendar.KIND"), importing only
    its module (the SDKs of the others cost every command time); None when none is."""
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == entry:
            loaded: Any = ep.load()
            return loaded if isinstance(loaded, type) and issubclass(loaded, Provider) else None
    return None


def config_of(entry: str) -> ProviderConfig | None:
    """The config of the class registered as ``entry``; None when nothing registered it."""
    cls = provider_class(entry)
    return cls.config if cls is not None else None


def configs() -> dict[str, ProviderConfig]:
    """Every installed entry point and its class's config (imports every provider)."""
    return {name: config_of(name) or ProviderConfig()
            for name in (ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))}


def calendar_schema(kind: str) -> type | None:
    return (config_of("calendar." + kind) or ProviderConfig()).calendars.get(kind)


def default_kind(prefix: str) -> str:
    """The kind ("mailbox" or "calendar") of the provider that declares itself the default."""
    kinds = available(prefix)
    return next((k for k in kinds if (config_of(f"{prefix}.{k}") or ProviderConfig()).default),
                kinds[0] if kinds else "")


def mailbox_class(kind: str) -> type[Mailbox]:
    cls = provider_class("mailbox." + kind)
    if cls is None or not issubclass(cls, Mailbox):
        raise ProviderError(f"no mailbox provider {kind!r} is installed "
                            f"(installed: {', '.join(available('mailbox')) or 'none'})")
    return cls


def calendar_class(kind: str) -> type[CalendarSource]:
    cls = provider_class("calendar." + kind)
    if cls is None or not issubclass(cls, CalendarSource):
        raise ProviderError(f"no calendar provider {kind!r} is installed "
                            f"(installed: {', '.join(available('calendar')) or 'none'})")
    return cls


def classes_of(account: AccountSettings) -> list[type[Provider]]:
    """The account's mailbox class, then its calendar class (each once; a kind that is not
    installed is left out: config validation reports it)."""
    found: list[type[Provider]] = []
    for entry in ("mailbox." + account.provider, "calendar." + account.calendar.kind):
        cls = provider_class(entry)
        if cls is not None and cls not in found:
            found.append(cls)
    return found


def available(prefix: str) -> list[str]:
    """The registered kinds for ``prefix`` ("mailbox" or "calendar")."""
    return list(_registered(prefix, tuple(sys.path)))


@functools.lru_cache(maxsize=8)
def _registered(prefix: str, search_path: tuple[str, ...]) -> tuple[str, ...]:
    # Reading every installed package's entry points takes milliseconds, and a config asks
    # twice per account: once per search path is enough.
    return tuple(sorted(ep.name.split(".", 1)[1] for ep in entry_points(group=ENTRY_POINT_GROUP)
                        if ep.name.startswith(prefix + ".")))


def open_mailbox(account: AccountSettings) -> Mailbox:
    try:
        cls = mailbox_class(account.provider)
    except ProviderError as exc:
        raise ProviderError(f"account {account.name!r}: {exc}") from None
    return cls.open(account)


def open_calendar(account: AccountSettings) -> CalendarSource:
    try:
        cls = calendar_class(account.calendar.kind)
    except ProviderError as exc:
        raise ProviderError(f"account {account.name!r}: {exc}") from None
    return cls.open(account)
