"""A CalDAV server (Fastmail, iCloud, Nextcloud, Radicale, ...) as a mailbridge `CalendarSource`.

What maps to what:

- ``account.calendar.url`` is a server (or principal) URL: the calendars are discovered from the
  principal; ``calendars`` in the settings selects some by display name or URL (else all).
- A calendar's id (``EventKey.calendar``) is its URL. Events come from ``providers.ics``'s
  ``events_from_ics`` (recurring series expanded inside the window, keyed by original start).
- Incremental sync is WebDAV sync-collection (RFC 6578). The cursor is JSON: per calendar URL
  its sync token, and the UID of every object href seen (a deleted object's data is gone, only
  its href is reported).
- A full listing (first sync, a server without sync-collection, or a token the server rejects)
  takes fresh tokens first, then asks for the objects in the window by a time-range REPORT, and
  returns ``complete=True`` for every selected calendar.

Removal convention: ``CalendarBatch.removed`` holds ``EventKey(calendar_url, uid, "*")``,
meaning *every* instance of that UID in that calendar. It is reported for an object deleted on
the server, and for a changed object that no longer has any instance inside the window. A
changed recurring object that keeps some instances reports those instances in ``events``; an
instance that vanished from it (a new EXDATE) is dropped at the next full listing.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Annotated, Any

import icalendar
from caldav.davclient import DAVClient
from caldav.lib import error
from caldav.lib.http_sync import requests as http

from mailbridge import retry, secrets
from mailbridge.adapters import AuthError, CalendarSource, ProviderConfig, ProviderError
from mailbridge.config import FORBID, Texts, WebAddress, doc
from mailbridge.model import CalendarBatch, Event, EventKey, Unreadable, Window
from mailbridge.settings import AccountSettings

from .ics import PasswordCommand, UserName, events_from_ics, feed_url
from .windowed import windowed

# --- settings: calendar kind "caldav" -------------------------------------------------------


@dataclass(frozen=True)
class CalDavSettings:
    __pydantic_config__ = FORBID
    url: Annotated[WebAddress, doc("the server's or the calendar's URL",
                                   "https://caldav.example.com/")]
    username: UserName = None  # default: the account's address
    password_command: PasswordCommand = None
    calendars: Annotated[Texts, doc("names or URLs of the calendars to read; default: all",
                                    ["Personal"])] = ()


CONFIG = ProviderConfig(calendars={"caldav": CalDavSettings})

log = logging.getLogger("mailbridge.caldav")
POLICY = retry.RetryPolicy(attempts=3, timeout=60.0)  # reads only: the calendar is never written


def load_cursor(cursor: str | None) -> dict[str, dict[str, Any]]:
    """{calendar URL: {"token": str, "hrefs": {href: uid}}}; unreadable -> {} (full listing)."""
    try:
        data = json.loads(cursor or "{}")
        calendars = data.get("calendars", {}) if isinstance(data, dict) else {}
        return {
            str(url): {"token": str(state["token"]), "hrefs": dict(state.get("hrefs", {}))}
            for url, state in calendars.items()
        }
    except (ValueError, TypeError, KeyError, AttributeError):
        return {}


def dump_cursor(states: dict[str, dict[str, Any]]) -> str:
    return json.dumps({"v": 1, "calendars": states}, sort_keys=True)


def uids_of(data: bytes | str) -> list[str]:
    try:
        calendar = icalendar.Calendar.from_ical(data)
    except ValueError:
        return []
    return sorted({str(c["UID"]) for c in calendar.walk("VEVENT") if "UID" in c})


class CalDavCalendar(CalendarSource):
    config = CONFIG
    signs_in = True  # a password, asked for and kept in the token store

    @classmethod
    def open(cls, account: AccountSettings) -> CalDavCalendar:
        return open_calendar(account)  # the module's opener builds it

    @classmethod
    def stored(cls, account: AccountSettings) -> dict[str, str]:
        own = account.calendar.settings_of(CalDavSettings)
        return {"caldav": "no CalDAV password"} if own and not own.password_command else {}

    @classmethod
    def problems(cls, account: AccountSettings) -> list[str]:
        own = account.calendar.settings_of(CalDavSettings)
        return secrets.command_problems(
            account, {"calendar.password_command": own.password_command if own else None})

    @classmethod
    def authenticate(cls, account: AccountSettings, *, no_browser: bool = False,
                     port: int | None = None) -> str:
        """Asks for the CalDAV password and stores it (a password_command needs nothing)."""
        import getpass

        own = account.calendar.settings_of(CalDavSettings)
        if own is None or own.password_command:
            return (f"{account.name}: the CalDAV password comes from calendar.password_command; "
                    "nothing stored")
        password = getpass.getpass(
            f"CalDAV password for {own.username or account.address} at {own.url}: ")
        if not password:
            raise AuthError("no password given; nothing was stored")
        secrets.store(account, "caldav", password)
        return (f"{account.name}: CalDAV password stored in "
                f"{secrets.token_store(account).describe()} (it is checked at the next pass)")

    def __init__(self, account: AccountSettings) -> None:
        settings = account.calendar.settings_of(CalDavSettings)
        if settings is None:
            raise ProviderError(f"account {account.name!r}: calendar.url is not set")
        self.account, self.settings = account, settings
        self.url = feed_url(settings.url, account=account.name)  # http only to loopback
        self._client: Any = None
        self._calendars: list[Any] | None = None

    # connection

    def _connect(self) -> Any:
        if self._client is None:
            settings = self.settings
            password = secrets.lookup(self.account, "caldav", settings.password_command)
            self._client = DAVClient(
                url=self.url,
                username=settings.username or self.account.address,
                password=password,
                timeout=int(POLICY.timeout),
                require_tls=self.url.startswith("https:"),
            )
            # The one retry policy, carried out by the session caldav sends through.
            adapter = http.adapters.HTTPAdapter(max_retries=POLICY.adapter_retry())
            for scheme in ("https://", "http://"):
                self._client.session.mount(scheme, adapter)
        return self._client

    def _selected(self) -> list[Any]:
        if self._calendars is None:
            found = self._connect().principal().calendars()
            wanted = self.settings.calendars
            if wanted:
                found = [c for c in found if _matches(c, wanted)]
                if not found:
                    raise ProviderError(
                        f"account {self.account.name!r}: none of the calendars "
                        f"{', '.join(wanted)} is on {self.url}; check calendar.calendars"
                    )
            self._calendars = found
        return self._calendars

    # sync

    def changes(self, cursor: str | None, window: Window) -> CalendarBatch:
        name = self.account.name
        try:
            # A sync token never reports an unchanged event the window moves onto: see
            # `windowed`.
            return windowed(lambda c, w: self._changes(load_cursor(c), w), cursor, window)
        except error.AuthorizationError:
            raise AuthError(
                f"account {name!r}: the CalDAV server refused the login; check "
                f"calendar.username and run `mailbridge auth {name}` (or set password_command)"
            ) from None
        except (error.DAVError, http.exceptions.RequestException, OSError) as exc:
            raise ProviderError(
                f"account {name!r}: CalDAV sync with {self.url} failed ({type(exc).__name__})"
            ) from None

    def _changes(self, states: dict[str, dict[str, Any]], window: Window) -> CalendarBatch:
        calendars = self._selected()
        if all(str(c.url) in states for c in calendars):
            try:
                return self._incremental(calendars, states, window)
            except error.DAVError as exc:
                # Servers answer a stale token with 403 (valid-sync-token), which caldav reports
                # as AuthorizationError; a real login failure shows again in the full listing.
                log.info("sync-collection not usable (%s); listing the window", exc)
        return self._full(calendars, window)

    def _incremental(
        self, calendars: list[Any], states: dict[str, dict[str, Any]], window: Window
    ) -> CalendarBatch:
        events: list[Event] = []
        skipped: list[Unreadable] = []
        removed: list[EventKey] = []
        new_states: dict[str, dict[str, Any]] = {}
        for calendar in calendars:
            url = str(calendar.url)
            state = states[url]
            hrefs: dict[str, str] = dict(state["hrefs"])
            result = calendar.objects_by_sync_token(
                sync_token=state["token"], load_objects=True, disable_fallback=True
            )
            for href in sorted(str(h) for h in getattr(result, "deleted_urls", ()) or ()):
                for key in _known(hrefs, href):
                    removed.append(EventKey(url, hrefs.pop(key), "*"))
            for obj in result:
                href = str(obj.url.canonical())
                if href in (getattr(result, "deleted_urls", ()) or ()) or not obj.data:
                    continue
                found = self._events(obj.data, url, window, skipped)
                uids = uids_of(obj.data)
                if uids:
                    hrefs[href] = uids[0]
                events.extend(found)
                # An object with nothing left in the window: forget what was known of it.
                present = {e.key.uid for e in found}
                removed.extend(EventKey(url, uid, "*") for uid in uids if uid not in present)
            new_states[url] = {"token": str(result.sync_token), "hrefs": hrefs}
        return CalendarBatch(
            events=tuple(events), removed=tuple(removed), cursor=dump_cursor(new_states),
            skipped=tuple(skipped),
        )

    def _full(self, calendars: list[Any], window: Window) -> CalendarBatch:
        events: list[Event] = []
        skipped: list[Unreadable] = []
        new_states: dict[str, dict[str, Any]] = {}
        for calendar in calendars:
            url = str(calendar.url)
            # The token first: whatever changes during the listing shows up next time.
            token = ""
            try:
                token = str(calendar.objects_by_sync_token(load_objects=False).sync_token or "")
            except error.DAVError as exc:
                if isinstance(exc, error.AuthorizationError):
                    raise
            hrefs: dict[str, str] = {}
            for obj in calendar.search(start=window.start, end=window.end, event=True):
                if not obj.data:
                    continue
                uids = uids_of(obj.data)
                if uids:
                    hrefs[str(obj.url.canonical())] = uids[0]
                events.extend(self._events(obj.data, url, window, skipped))
            if token:
                new_states[url] = {"token": token, "hrefs": hrefs}
        # Without a token for every calendar the next sync is a full listing again.
        cursor = dump_cursor(new_states) if len(new_states) == len(calendars) else None
        return CalendarBatch(events=tuple(events), complete=True, cursor=cursor,
                             skipped=tuple(skipped))

    def _events(
        self, data: str | bytes, url: str, window: Window, skipped: list[Unreadable]
    ) -> list[Event]:
        try:
            return events_from_ics(
                data,
                url,
                window,
                self.account.own_addresses,
                default_tz=self.account.policy.timezone,
                skipped=skipped,
            )
        except ProviderError as exc:  # one broken object must not stop the calendar
            log.warning("account %r: skipped an event: %s", self.account.name, exc)
            uids = uids_of(data)
            skipped.append(Unreadable(f"an object of {url}", str(exc),
                                      uid=uids[0] if uids else None))
            return []

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def _known(hrefs: dict[str, str], href: str) -> list[str]:
    # Servers report hrefs as paths or full URLs; match on the path.
    path = href.split("://", 1)[-1]
    path = path[path.find("/") :] if "://" in href else href
    return [h for h in hrefs if h == href or h.endswith(path)]


def _matches(calendar: Any, wanted: tuple[str, ...]) -> bool:
    url = str(calendar.url).rstrip("/")
    try:
        name = calendar.get_display_name() or ""
    except error.DAVError:
        name = ""
    for item in wanted:
        item = item.strip()
        if item.rstrip("/") == url or url.endswith("/" + item.strip("/")) or item == name:
            return True
    return False


def open_calendar(account: AccountSettings) -> CalDavCalendar:
    return CalDavCalendar(account)
