"""Gmail and Google Calendar through Google's own APIs (google-api-python-client).

What maps to what:

- ``calendar.google``: Calendar API ``events.list`` per configured calendar (default
  ``primary``) with ``singleEvents=true``. The first pass is bounded by the window; later passes
  use each calendar's ``nextSyncToken`` (the cursor is JSON ``{calendar id: sync token}``).
  HTTP 410 (token expired) restarts every calendar with a full pass (``complete=True``).
  An instance of a recurring series is keyed by its series id and its original start (UTC).
  Addresses are lower-cased, as the iCalendar sources give them.
- ``mailbox.gmail``: drafts are Gmail drafts (``drafts.create/get/list/update/delete``); a
  follow-up joins the thread of the message it answers (``threadId`` plus the headers compose
  wrote). Mail is read through ``history.list`` (messageAdded, and labelRemoved for mail taken
  out of Spam or Trash) from the stored history id (the cursor): all mail but drafts, spam,
  chats and what is in Trash (`is_read_as_mail`), so a reply archived or filtered past the
  inbox is still seen, with one request per idle cycle. A 404 (history expired) falls back to
  ``messages.list`` bounded by date. The headers, the snippet, the labels and the content
  types of the MIME parts are fetched (``format=full`` narrowed by ``fields`` to
  ``payload.parts[].mimeType``, so no body is downloaded): ``format=metadata`` shows only the
  top-level part, and an Outlook invitation is multipart/alternative with its text/calendar
  part inside. A provider id is ``DRAFT:MESSAGE:THREAD``: Gmail
  keeps the message id when the user sends a draft, which is how ``observe`` tells "sent" from
  "deleted". A draft moved to Trash keeps its draft id and gains the TRASH label: ``observe``
  counts it gone from Drafts, ``locate`` finds it in Trash. A draft saved again by a program
  on Gmail's IMAP is a new draft (a new draft id) under our Message-ID: ``observe`` finds it by
  that Message-ID before it calls the draft gone. For a draft gone from Drafts,
  the SENT messages in its thread and those to the same recipient since about its creation
  are reported as candidates, from which
  `mailbridge.drafts` tells a draft the user's program sent under a new Message-ID.
- A draft's version marker is its message id (Gmail makes a new message for every edit of a
  draft) and the history id read on that pass. History is read with every record type, so
  the one ``history.list`` of an idle pass also says which waiting drafts were touched
  (added, deleted, relabelled): those untouched are not fetched again (``versions``).
- Drafts carry no label of ours: Google's "Working with Drafts" guide says a draft message
  cannot have any label other than ``DRAFT``, so no label scope is asked for.
- Sign-in: a Desktop OAuth client (``google.client_secrets``) and the loopback flow (a fixed
  port with ``--port`` for ``ssh -L``), or, with ``--no-browser``, the printed URL and the
  redirected address pasted back. Only the refresh token is kept, in the account's token store
  (mailbridge.secrets). Gmail has no draft-only scope (gmail.compose can send), so every Gmail
  call goes through `Api`, an allow-list that has no send method.

Every endpoint (API roots, token and auth URIs) comes from the account's ``google`` settings.
"""

from __future__ import annotations

import base64
import contextlib
import email
import email.policy
import email.utils
import functools
import http.client
import io
import json
import logging
import re
import socket
import ssl
import sys
import threading
import time
import urllib.parse
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Annotated, Any

import google.auth.exceptions
import google_auth_httplib2  # type: ignore[import-untyped]
import httplib2  # type: ignore[import-untyped]
from google.oauth2.credentials import Credentials
from googleapiclient import discovery_cache
from googleapiclient.discovery import Resource, fix_method_name
from googleapiclient.errors import HttpError
from googleapiclient.http import HttpRequest
from googleapiclient.model import JsonModel
from googleapiclient.schema import Schemas

from mailbridge import compose, mailparse, retry, secrets, signin
from mailbridge.adapters import (
    AmbiguousWrite,
    AuthError,
    CalendarSource,
    Mailbox,
    Probe,
    Provider,
    ProviderConfig,
    ProviderError,
)
from mailbridge.config import FORBID, LocalPath, Number, Texts, WebAddress, between, doc
from mailbridge.model import (
    Attendee,
    AttendeeKind,
    CalendarBatch,
    DraftMessage,
    Event,
    EventKey,
    EventStatus,
    Folder,
    Located,
    MailHeaders,
    MessageBatch,
    Observation,
    Person,
    Place,
    Presence,
    Response,
    SentCandidate,
    SentHint,
    Unreadable,
    Window,
)
from mailbridge.settings import AccountSettings

from .windowed import windowed

# --- settings: the account's google = {...} table, and calendar kind "google" -----------------

Endpoint = Annotated[WebAddress | None, doc("a private endpoint; default: Google's",
                                            "http://127.0.0.1:8080/")]


@dataclass(frozen=True)
class GoogleSettings:
    __pydantic_config__ = FORBID
    client_secrets: Annotated[LocalPath | None, doc(
        'the "Desktop app" OAuth client JSON from the Google Cloud console',
        "~/.config/mailbridge/client_secret.json")] = None
    api_endpoint: Endpoint = None  # Gmail API root
    calendar_endpoint: Endpoint = None  # Calendar API root
    batch_uri: Endpoint = None
    token_uri: Endpoint = None  # default: from client_secrets, else Google's
    auth_uri: Endpoint = None
    timeout: Annotated[Number, between(1, 600), doc("seconds, every request", 60)] = 60.0


@dataclass(frozen=True)
class GoogleCalendarSettings:
    __pydantic_config__ = FORBID
    calendars: Annotated[Texts, doc("calendar ids to read; default: primary", ["primary"])] = ()


CONFIG = ProviderConfig(
    table="google", settings=GoogleSettings, used_by=("mailbox.gmail", "calendar.google"),
    calendars={"google": GoogleCalendarSettings}, default_calendar="google")


SCOPES = (
    "https://www.googleapis.com/auth/calendar.readonly",
    "https://www.googleapis.com/auth/gmail.readonly",
    "https://www.googleapis.com/auth/gmail.compose",
)
KEYRING_PURPOSE = "google-refresh-token"
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
GOOGLE_AUTH_URI = "https://accounts.google.com/o/oauth2/auth"

# The only Gmail methods this module may call. No send, no insert/import: adding one here is
# the only way to send, and tests/test_gmail.py fails if any appears.
GMAIL_METHODS = frozenset(
    {
        "users.getProfile",
        "users.history.list",
        "users.messages.list",
        "users.messages.get",
        "users.drafts.create",
        "users.drafts.get",
        "users.drafts.list",
        "users.drafts.update",
        "users.drafts.delete",
        "users.threads.get",
    }
)
CALENDAR_METHODS = frozenset({"events.list"})
# What messages.get returns for reading mail (a partial response): headers, snippet, labels and
# the MIME tree's content types, four levels deep (mixed > alternative > related > leaf).
MESSAGE_FIELDS = (
    "id,threadId,labelIds,snippet,payload(mimeType,headers,"
    "parts(mimeType,parts(mimeType,parts(mimeType,parts(mimeType)))))"
)
# Requests that must not be sent twice blindly: a lost answer is resolved by lookup first.
NOT_IDEMPOTENT = frozenset({"users.drafts.create"})

log = logging.getLogger("mailbridge")

# What a malformed event from the API raises in to_event: it is skipped, not fatal.
UNREADABLE = (ValueError, KeyError, TypeError, AttributeError, OverflowError)


class GoogleError(ProviderError):
    """Google answered a call with an HTTP error that retrying will not fix (404, 410, 400)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


# Google: https://developers.google.com/identity/protocols/oauth2/native-app (errors) and
# https://developers.google.com/identity/protocols/oauth2#expiration (refresh-token expiry).
# Most specific first: the first marker found in the text wins.
SIGN_IN = signin.Service("Google", (
    signin.Failure("admin_policy_enforced",
            "your Google Workspace administrator does not allow this app",
            "ask the administrator to trust the OAuth client (Admin console > Security > "
            "API controls), then run {auth}"),
    signin.Failure("org_internal",
            "the OAuth client is limited to the users of the organisation that owns it",
            "sign in with an address of that organisation, or set the consent screen's "
            "audience to External (see docs/google.md), then run {auth}"),
    signin.Failure("access_denied",
            "access was not granted (you pressed Cancel, or your address is not a test user "
            "of the consent screen)",
            "add your address under Google Auth Platform > Audience > Test users, then run "
            "{auth} and press Continue on every screen"),
    signin.Failure("invalid_grant",
            "Google no longer accepts the saved sign-in: it was revoked (access removed, or the "
            "password changed) or it expired, which happens after 7 days while the consent "
            "screen is in Testing",
            "run {auth} (to stop the weekly expiry, publish the app: see docs/google.md)"),
    signin.Failure("invalid_client",
            "Google does not know this OAuth client (deleted, or the wrong JSON file)",
            "download the Desktop client JSON again, point google.client_secrets at it, and "
            "run {auth}"),
    signin.Failure("unauthorized_client",
            "this OAuth client may not use this sign-in (it is not a Desktop app client)",
            "create a client of type Desktop app (see docs/google.md) and run {auth}"),
    signin.Failure("redirect_uri_mismatch",
            "Google refused the loopback address (the client is not a Desktop app client)",
            "create a client of type Desktop app (see docs/google.md) and run {auth}"),
    signin.Failure("insufficient",  # "Request had insufficient authentication scopes"
            "the sign-in lacks a permission mailbridge needs (a box was left unticked on the "
            "consent screen, or the app predates a change of scopes)",
            "run {auth} and leave every permission ticked"),
    signin.Failure("invalid_scope",
            "Google refused a permission mailbridge asks for",
            "enable the Gmail API and the Google Calendar API in the project (see "
            "docs/google.md), then run {auth}"),
    signin.Failure("accessnotconfigured",
            "the Gmail or Calendar API is not enabled in the Google Cloud project",
            "enable it under APIs & Services > Library (see docs/google.md)"),
    signin.Failure("has not been used in project",
            "the Gmail or Calendar API is not enabled in the Google Cloud project",
            "enable it under APIs & Services > Library (see docs/google.md)"),
))

# --- credentials --------------------------------------------------------------------------


def _google(account: AccountSettings) -> GoogleSettings:
    return account.settings_of(GoogleSettings) or GoogleSettings()


def _client(account: AccountSettings) -> dict[str, str]:
    """The "installed" section of the Desktop OAuth client JSON."""
    path = _google(account).client_secrets
    if not path:
        raise AuthError(
            f"account {account.name!r}: google.client_secrets is not set; download a Desktop "
            "OAuth client JSON from the Google Cloud console (docs/google.md) and point "
            "google.client_secrets at it"
        )
    try:
        file = Path(path).expanduser()
        if not file.exists():
            raise AuthError(
                f"account {account.name!r}: google.client_secrets file {file} does not exist; "
                "download the Desktop client JSON (docs/google.md) and save it there"
            )
        data = json.loads(file.read_text())
        section = data.get("installed") or data.get("web")
        assert isinstance(section, dict) and section["client_id"] and section["client_secret"]
    except (OSError, ValueError, KeyError, AssertionError) as exc:
        raise AuthError(
            f"account {account.name!r}: google.client_secrets {path!r} is not a usable OAuth "
            f"client file ({type(exc).__name__}); download the Desktop client JSON again"
        ) from None
    return section


def _token_uri(account: AccountSettings, client: dict[str, str]) -> str:
    return _google(account).token_uri or client.get("token_uri") or GOOGLE_TOKEN_URI


def credentials(account: AccountSettings) -> Credentials:
    client = _client(account)
    refresh = secrets.require(account, KEYRING_PURPOSE)
    # No access token: the first request refreshes against the configured token endpoint.
    return Credentials(  # type: ignore[no-untyped-call]
        token=None,
        refresh_token=refresh,
        client_id=client["client_id"],
        client_secret=client["client_secret"],
        token_uri=_token_uri(account, client),
        scopes=list(SCOPES),
    )


# The mailbox and the calendar of an account share one sign-in (one access token, refreshed
# once), for as long as either of them is open; a new sign-in (refresh token) gets its own.
_SIGN_INS: weakref.WeakValueDictionary[tuple[str, GoogleSettings, str], Credentials] = (
    weakref.WeakValueDictionary()
)
_SIGN_INS_LOCK = threading.Lock()


def _signed_in(account: AccountSettings) -> Credentials:
    _client(account)  # a missing client file is named before a missing sign-in
    key = (account.name, _google(account), secrets.require(account, KEYRING_PURPOSE))
    with _SIGN_INS_LOCK:
        found = _SIGN_INS.get(key)
        if found is None:
            found = _SIGN_INS[key] = credentials(account)
        return found


def problems(account: AccountSettings) -> list[str]:
    """`check`: what is wrong with the Google settings, found without a network."""
    if account.provider != "gmail" and account.calendar.kind != "google":
        return []
    try:
        _client(account)
    except AuthError as exc:
        return [str(exc).removeprefix(f"account {account.name!r}: ")]
    return []


class _Say(io.StringIO):
    """A stdout that hands each printed text to `say`."""

    def __init__(self, say: Callable[[str], None]) -> None:
        super().__init__()
        self._say = say
        self._stdout = sys.stdout  # where `say` (often print) writes, not back into this

    def write(self, text: str) -> int:
        if text.strip():
            with contextlib.redirect_stdout(self._stdout):
                self._say(text.rstrip("\n"))
        return len(text)


def _unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _pasted_code(account: AccountSettings, pasted: str, state: str) -> str:
    """The authorization code in the address the browser was sent to (pasted by the user)."""
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(pasted.strip()).query)
    if "error" in query:
        raise AuthError(signin.explain(SIGN_IN, account.name, query["error"][0]))
    if "code" not in query:
        raise AuthError(
            f"account {account.name!r}: that is not the address Google sent the browser to "
            "(it has no code=...); run `mailbridge auth` again and paste the whole address "
            "from the browser's address bar"
        )
    if query.get("state", [""])[0] != state:
        raise AuthError(
            f"account {account.name!r}: the pasted address belongs to another sign-in attempt; "
            "paste the address from this attempt"
        )
    return query["code"][0]


def authenticate(
    account: AccountSettings,
    *,
    no_browser: bool = False,
    port: int | None = None,
    say: Callable[[str], None] = print,
    ask: Callable[[str], str] | None = None,
) -> str:
    """`mailbridge auth NAME`: Google's loopback OAuth flow; keeps only the refresh token.

    With a browser here, the browser opens and Google sends it back to a listener on this
    machine (``port``, or any free one). With ``no_browser`` and a ``port``, the URL is printed
    and the listener waits on that port (for ``ssh -L PORT:localhost:PORT``). With
    ``no_browser`` alone, the URL is printed and the address the browser ends on (a page that
    does not load, on another machine) is pasted back, as gcloud and rclone do it.
    """
    from google_auth_oauthlib.flow import InstalledAppFlow

    client = dict(_client(account))
    client["token_uri"] = _token_uri(account, client)
    client["auth_uri"] = _google(account).auth_uri or client.get("auth_uri") or GOOGLE_AUTH_URI
    flow = InstalledAppFlow.from_client_config({"installed": client}, scopes=list(SCOPES))
    try:
        if no_browser and port is None:
            flow.redirect_uri = f"http://localhost:{_unused_port()}/"
            url, state = flow.authorization_url(access_type="offline", prompt="consent")
            say(
                "Open this address in a browser on any machine, sign in and allow access:\n"
                f"{url}\n"
                "The browser then goes to a localhost address that does not load. Copy that "
                "whole address from the address bar and paste it here."
            )
            pasted = (ask or input)("Address: ")
            flow.fetch_token(code=_pasted_code(account, pasted, state))
            creds = flow.credentials
        else:
            prompt = (
                "Open this address in a browser on this machine (or on one that forwards "
                f"port {port} here with ssh -L) and allow access:\n{{url}}"
            ) if port else "Open this address in a browser and allow access:\n{url}"
            # The library prints its prompt; it goes wherever `say` sends text.
            with contextlib.redirect_stdout(_Say(say)):
                creds = flow.run_local_server(
                    host="localhost",
                    port=port or 0,
                    open_browser=not no_browser,
                    authorization_prompt_message=prompt,
                    timeout_seconds=600,
                )
    except AuthError:
        raise
    except OSError as exc:
        raise AuthError(
            f"account {account.name!r}: cannot listen on port {port} ({exc.strerror}); "
            "choose another with --port"
        ) from None
    except Exception as exc:  # noqa: BLE001 - oauthlib raises many kinds; the user needs one line
        raise AuthError(signin.explain(SIGN_IN, account.name, str(exc))) from None
    if not creds.refresh_token:
        raise AuthError(
            f"account {account.name!r}: Google returned no refresh token; remove mailbridge's "
            "access at https://myaccount.google.com/connections and run `mailbridge auth` again"
        )
    secrets.store(account, KEYRING_PURPOSE, creds.refresh_token)
    return f"account {account.name!r}: signed in to Google"


def forget(account: AccountSettings) -> str:
    """`mailbridge auth --revoke NAME`: drop the refresh token; say where to remove access."""
    secrets.forget(account, KEYRING_PURPOSE)
    return (
        "Google may still list mailbridge as allowed: remove it at "
        "https://myaccount.google.com/connections (Third-party apps & services)"
    )


def probe(account: AccountSettings) -> list[Probe]:
    """`check --online`: sign in, then one cheap read of the calendar, Drafts, inbox and Sent."""
    try:
        gmail = Api(account, _service(account, "gmail", "v1", _google(account).api_endpoint),
                    GMAIL_METHODS, attempts=2)
        gmail.call("users.getProfile", userId="me")
    except ProviderError as exc:
        return [Probe("sign-in", False, str(exc))]
    found = [Probe("sign-in", True, "Google accepted the saved sign-in")]
    reads: list[tuple[str, Api, str, dict[str, Any]]] = []
    if account.calendar.kind == "google":
        calendar = Api(account, _service(account, "calendar", "v3",
                                         _google(account).calendar_endpoint),
                       CALENDAR_METHODS, attempts=2)
        own = account.calendar.settings_of(GoogleCalendarSettings) or GoogleCalendarSettings()
        for name in own.calendars or ("primary",):
            reads.append((f"calendar {name}", calendar, "events.list",
                          {"calendarId": name, "maxResults": 1}))
    if account.provider == "gmail":
        reads += [
            ("Drafts", gmail, "users.drafts.list", {"userId": "me", "maxResults": 1}),
            ("inbox", gmail, "users.messages.list",
             {"userId": "me", "labelIds": ["INBOX"], "maxResults": 1}),
            ("Sent", gmail, "users.messages.list",
             {"userId": "me", "labelIds": ["SENT"], "maxResults": 1}),
        ]
    for what, api, method, params in reads:
        try:
            api.call(method, **params)
        except ProviderError as exc:
            known = signin.known(SIGN_IN, str(exc))  # e.g. an API not enabled in the project
            detail = signin.explain(SIGN_IN, account.name, str(exc)) if known else str(exc)
            found.append(Probe(what, False, detail))
        else:
            found.append(Probe(what, True, "readable"))
    return found


# --- calls: allow-list, retries, errors ---------------------------------------------------


def _reasons(error: HttpError) -> list[str]:
    """The ``errors[].reason`` values of a Google error answer (rateLimitExceeded, ...)."""
    try:
        detail = json.loads(error.content or b"{}").get("error", {})
        return [str(e.get("reason", "")) for e in detail.get("errors", [])]
    except (ValueError, AttributeError):
        return []


@functools.cache
def _tls_context(ca_certs: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca_certs)


class _SharedTls(httplib2.HTTPSConnectionWithTimeout):  # type: ignore[misc]
    """httplib2 builds a TLS context for every connection, loading every root certificate
    into it (~0.7 MiB each); connections that trust the same roots share one, built once."""

    def __init__(self, host: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(host, *args, **kwargs)
        with _SHARED_LOCK:
            self._context = _tls_context(self.ca_certs)  # what connect() wraps sockets with


# Guards the first use of what the process builds once and every account shares (the TLS
# context, the HTTP clients, the discovery documents).
_SHARED_LOCK = threading.Lock()


class _OnceHttp(httplib2.Http):  # type: ignore[misc]
    """httplib2 sends a request again on its own when the connection drops before the answer
    (it takes that for a stale keep-alive connection). For a POST that creates something that
    is a blind retry: here a POST is sent once, and a lost answer is the caller's to resolve.
    HTTPS connections share one TLS context (`_SharedTls`)."""

    def request(self, uri: str, method: str = "GET", body: Any = None, headers: Any = None,
                redirections: int = httplib2.DEFAULT_MAX_REDIRECTS,
                connection_type: Any = None) -> Any:  # fmt: skip
        if connection_type is None and str(uri).startswith("https:"):
            connection_type = _SharedTls
        return super().request(uri, method, body, headers, redirections, connection_type)

    def _conn_request(self, conn: Any, request_uri: str, method: str, body: Any,
                      headers: Any) -> Any:  # fmt: skip
        if method != "POST":
            return super()._conn_request(conn, request_uri, method, body, headers)
        try:
            if conn.sock is None:
                conn.connect()
            conn.request(method, request_uri, body, headers)
            answer = conn.getresponse()
            content = answer.read()
        except (OSError, http.client.HTTPException):
            conn.close()
            raise
        response = httplib2.Response(answer)
        return response, httplib2._decompressContent(response, content, self.limit_kwargs)


# At most this many idle keep-alive clients are kept per timeout; passes run on the daemon's
# few workers, so more are rarely in use at once.
IDLE_CLIENTS = 8


class _SharedHttp:
    """What every account's Google services send through: a few keep-alive clients shared by
    all accounts (an httplib2.Http serves one caller at a time, so each request borrows one),
    instead of a TLS connection kept open per account and host between passes (~55 KiB and a
    file each). The Authorization header is the account's own (google_auth_httplib2)."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._idle: list[_OnceHttp] = []
        self._lock = threading.Lock()

    def request(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            http = self._idle.pop() if self._idle else _OnceHttp(timeout=self.timeout)
        try:
            return http.request(*args, **kwargs)
        finally:
            with self._lock:
                kept = len(self._idle) < IDLE_CLIENTS
                if kept:
                    self._idle.append(http)
            if not kept:
                http.close()

    def close(self) -> None:
        """Shared by every account: it lives as long as the process."""


@functools.cache
def _shared_http(timeout: float) -> _SharedHttp:
    return _SharedHttp(timeout)


class Api:
    """One Google API service, reduced to an allow-list of methods, with retries.

    ``call("users.drafts.create", userId="me", body=...)`` is the only way in; a method that
    is not on the list is refused before any request is built.
    """

    def __init__(
        self,
        account: AccountSettings,
        service: Any,
        allowed: frozenset[str],
        *,
        attempts: int = 5,
        backoff: float = 1.0,
        max_wait: float = 120.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.account, self._service, self.allowed = account, service, allowed
        self.policy = retry.RetryPolicy(
            attempts=attempts, base=backoff, cap=backoff * 32, max_retry_after=max_wait, sleep=sleep
        )

    def call(self, method: str, **params: Any) -> Any:
        if method not in self.allowed:
            raise PermissionError(f"mailbridge never calls {method}: it only writes drafts")
        target: Any = self._service
        *resources, name = method.split(".")
        for resource in resources:
            target = getattr(target, resource)()
        request = getattr(target, name)(**params)
        once = method in NOT_IDEMPOTENT
        attempt = 0
        while True:
            attempt += 1
            status: int | None = None
            try:
                return request.execute(num_retries=0)
            except HttpError as exc:
                status = exc.resp.status
                reasons = _reasons(exc)
                if status == 401 or (status == 403 and "insufficient" in str(exc).lower()):
                    raise self._auth_error(str(exc.reason)) from None
                if not retry.retryable(status, reasons):
                    raise GoogleError(
                        f"account {self.account.name!r}: Google API {method} answered "
                        f"HTTP {status} ({exc.reason})",
                        status,
                    ) from None
                wait = retry.retry_after(exc.resp.get("retry-after"))
                fault = f"HTTP {status}"
            except google.auth.exceptions.RefreshError as exc:
                raise self._auth_error(str(exc)) from None
            except (OSError, httplib2.HttpLib2Error, http.client.HTTPException) as exc:
                wait, fault = None, type(exc).__name__
            if once and retry.ambiguous(status):
                raise AmbiguousWrite(
                    f"account {self.account.name!r}: Google API {method} failed ({fault}); "
                    "it may have been carried out"
                )
            pause = self.policy.wait(attempt, wait)
            if pause is None:
                break
            self.policy.sleep(pause)
        raise ProviderError(
            f"account {self.account.name!r}: Google API {method} failed ({fault}) after "
            f"{attempt} attempt(s); will retry on the next pass"
        )

    def _auth_error(self, detail: str) -> AuthError:
        return AuthError(signin.explain(SIGN_IN, self.account.name, detail))

    def pages(self, method: str, **params: Any) -> Iterator[dict[str, Any]]:
        """Every page of a list method (the last page carries the sync token/history id)."""
        token = None
        while True:
            page = self.call(method, **params, **({"pageToken": token} if token else {}))
            yield page
            token = page.get("nextPageToken")
            if not token:
                return


@dataclass(frozen=True)
class _Discovery:
    """One API's discovery document, parsed once per process and shared by every account
    (Gmail's is ~0.4 MiB of objects, its schema descriptions more): only the HTTP client and
    the sign-in are an account's own."""

    document: dict[str, Any]
    schemas: Schemas
    model: JsonModel


def _walk(resource: Any, description: dict[str, Any]) -> None:
    for name, nested in description.get("resources", {}).items():
        _walk(getattr(resource, fix_method_name(name))(), nested)


@functools.cache
def _discovery(name: str, version: str) -> _Discovery:
    """The shipped document (no discovery request). The library completes each method's
    description in place the first time it builds the method, so every method is built here,
    once, before accounts share the document from several threads."""
    document = json.loads(discovery_cache.get_static_doc(name, version))
    found = _Discovery(document, Schemas(document),
                       JsonModel("dataWrapper" in document.get("features", ())))
    _walk(_resource(found, httplib2.Http(), None), document)
    return found


def _resource(api: _Discovery, http: Any, endpoint: str | None) -> Any:
    document = api.document
    return Resource(  # what build() makes, around the shared document
        http=http,
        baseUrl=endpoint or urllib.parse.urljoin(document["rootUrl"], document["servicePath"]),
        model=api.model,
        requestBuilder=HttpRequest,
        developerKey=None,
        resourceDesc=document,
        rootDesc=document,
        schema=api.schemas,
    )


def _service(account: AccountSettings, name: str, version: str, endpoint: str | None) -> Any:
    # Every request times out (google.timeout): a hanging endpoint must not hold a pass.
    timeout = _google(account).timeout
    with _SHARED_LOCK:
        api = _discovery(name, version)
        shared = _shared_http(timeout)
    http = google_auth_httplib2.AuthorizedHttp(_signed_in(account), http=shared)
    return _resource(api, http, endpoint)


# --- calendar -----------------------------------------------------------------------------

RESPONSES = {
    "accepted": Response.ACCEPTED,
    "declined": Response.DECLINED,
    "tentative": Response.TENTATIVE,
    "needsAction": Response.NEEDS_ACTION,
}


def _moment(value: dict[str, str]) -> tuple[datetime, bool]:
    if "dateTime" in value:
        return datetime.fromisoformat(value["dateTime"].replace("Z", "+00:00")), False
    day = date.fromisoformat(value["date"])
    return datetime(day.year, day.month, day.day, tzinfo=UTC), True


def event_key(calendar: str, item: dict[str, Any]) -> EventKey:
    series = item.get("recurringEventId")
    if not series:
        return EventKey(calendar, item["id"])
    start, _ = _moment(item["originalStartTime"])
    return EventKey(calendar, series, start.astimezone(UTC).isoformat())


def to_event(calendar: str, item: dict[str, Any]) -> Event | None:
    """One Calendar API event as a model Event; None for a cancelled stub without times."""
    status = EventStatus(item.get("status", "confirmed"))
    times = item.get("start") or item.get("originalStartTime")
    if not times:
        return None
    start, all_day = _moment(times)
    end, _ = _moment(item.get("end") or times)
    organizer = item.get("organizer") or {}
    return Event(
        key=event_key(calendar, item),
        title=item.get("summary", ""),
        start=start,
        end=end,
        all_day=all_day,
        status=status,
        description=item.get("description", ""),
        location=item.get("location", ""),
        # Addresses lower-cased, as the iCalendar sources give them: the same people, the
        # same facts, whichever source told the core about them.
        organizer=Person(organizer["email"].lower(), organizer.get("displayName", ""))
        if organizer.get("email")
        else None,
        attendees=tuple(
            Attendee(
                email=a["email"].lower(),
                name=a.get("displayName", ""),
                kind=AttendeeKind.RESOURCE if a.get("resource") else AttendeeKind.PERSON,
                response=RESPONSES.get(a.get("responseStatus", ""), Response.UNKNOWN),
                is_self=bool(a.get("self")),
                is_organizer=bool(a.get("organizer")),
            )
            for a in item.get("attendees", [])
            if a.get("email")
        ),
        recurring=bool(item.get("recurringEventId")),
    )


class Google(Provider):
    """What the Gmail mailbox and the Google calendar share: one sign-in, one probe."""

    config = CONFIG
    signs_in = True
    sign_in_port = True
    own_probe = True

    @classmethod
    def authenticate(cls, account: AccountSettings, *, no_browser: bool = False,
                     port: int | None = None) -> str:
        return authenticate(account, no_browser=no_browser, port=port)

    @classmethod
    def forget(cls, account: AccountSettings) -> str | None:
        return forget(account)

    @classmethod
    def stored(cls, account: AccountSettings) -> dict[str, str]:
        return {KEYRING_PURPOSE: "not signed in to Google"}

    @classmethod
    def problems(cls, account: AccountSettings) -> list[str]:
        return problems(account)

    @classmethod
    def probe(cls, account: AccountSettings) -> list[Probe]:
        return probe(account)


class GoogleCalendar(Google, CalendarSource):
    @classmethod
    def open(cls, account: AccountSettings) -> GoogleCalendar:
        return open_calendar(account)  # the module's opener builds it

    def __init__(self, account: AccountSettings, api: Api | None = None) -> None:
        self.account = account
        own = account.calendar.settings_of(GoogleCalendarSettings) or GoogleCalendarSettings()
        self.calendars = own.calendars or ("primary",)
        self.api = api or Api(
            account,
            _service(account, "calendar", "v3", _google(account).calendar_endpoint),
            CALENDAR_METHODS,
        )

    def changes(self, cursor: str | None, window: Window) -> CalendarBatch:
        # A sync token never reports an unchanged event the window moves onto: see `windowed`.
        return windowed(self._changes, cursor, window)

    def _changes(self, cursor: str | None, window: Window) -> CalendarBatch:
        tokens: dict[str, str] = json.loads(cursor) if cursor else {}
        if set(tokens) == set(self.calendars):
            try:
                return self._pass(tokens, window)
            except GoogleError as exc:
                if exc.status != 410:
                    raise
        # No cursor, a changed calendar list, or an expired token (410): start over.
        return self._pass({}, window)

    def _pass(self, tokens: dict[str, str], window: Window) -> CalendarBatch:
        events: list[Event] = []
        removed: list[EventKey] = []
        fresh: dict[str, str] = {}
        skipped: list[Unreadable] = []
        for calendar in self.calendars:
            params: dict[str, Any] = {"calendarId": calendar, "singleEvents": True}
            if calendar in tokens:
                params["syncToken"] = tokens[calendar]  # the API forbids timeMin/timeMax here
            else:
                params["timeMin"] = window.start.astimezone(UTC).isoformat()
                params["timeMax"] = window.end.astimezone(UTC).isoformat()
            for page in self.api.pages("events.list", **params):
                for item in page.get("items", []):
                    try:
                        event = to_event(calendar, item)
                    except UNREADABLE as exc:
                        # One malformed event must not stop the sync of the others.
                        what = f"event {str(item.get('id', '?'))[:100]!r} of {calendar!r}"
                        log.warning("%s: skipped %s: %s", self.account.name, what,
                                    type(exc).__name__)
                        skipped.append(Unreadable(what, f"malformed ({type(exc).__name__})",
                                                  uid=str(item.get("id", "")) or None))
                        continue
                    if event is None:
                        removed.append(event_key(calendar, item))
                    else:
                        events.append(event)
                if "nextSyncToken" in page:
                    fresh[calendar] = page["nextSyncToken"]
        return CalendarBatch(
            tuple(events),
            tuple(removed),
            complete=not tokens,
            cursor=json.dumps(fresh, sort_keys=True),
            skipped=tuple(skipped),
        )

    def close(self) -> None:
        pass


# --- mailbox ------------------------------------------------------------------------------


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode()


def _parse_id(provider_id: str) -> tuple[str, str, str]:
    draft, _, rest = provider_id.partition(":")
    message, _, thread = rest.partition(":")
    return draft, message, thread


def _provider_id(draft: dict[str, Any]) -> str:
    message = draft.get("message", {})
    return f"{draft['id']}:{message.get('id', '')}:{message.get('threadId', '')}"


# A draft the user moved to Trash is still a draft under its id, with the TRASH label
# (drafts.list's includeSpamTrash: "Include drafts from SPAM and TRASH"): deleted, not in Drafts.
BINNED = frozenset({"TRASH", "SPAM"})




def part_types(payload: dict[str, Any]) -> list[str]:
    """The content types of a message's MIME tree (a MessagePart), depth first. An attached
    message (message/rfc822) counts as one part: its insides belong to another message."""
    found: list[str] = []

    def walk(part: dict[str, Any], depth: int) -> None:
        if depth > 10 or not isinstance(part, dict):
            return
        kind = str(part.get("mimeType", ""))
        found.append(kind)
        if not kind.lower().startswith("message/"):
            for child in part.get("parts") or ():
                walk(child, depth + 1)

    walk(payload, 0)
    return found


def sent_candidate(message: dict[str, Any], *, same_thread: bool) -> SentCandidate | None:
    """The facts of a messages.get/threads.get message (format=metadata) by which the core
    recognises a draft sent anew; None unless it is SENT."""
    if "SENT" not in message.get("labelIds", []):
        return None
    headers = message.get("payload", {}).get("headers", [])
    fields = [(h["name"].lower(), h["value"]) for h in headers]
    to = email.utils.getaddresses([v for k, v in fields if k in ("to", "cc")])
    refs = " ".join(v for k, v in fields if k in ("in-reply-to", "references"))
    return SentCandidate(
        recipients=tuple(a for _, a in to if a),
        subject=next((v for k, v in fields if k == "subject"), ""),
        date=datetime.fromtimestamp(int(message.get("internalDate", "0")) / 1000, UTC),
        thread=tuple(re.findall(r"<[^<>\s]+>", refs)),
        in_draft_thread=same_thread,
        message_id=next((v.strip() for k, v in fields if k == "message-id"), ""),
    )


# Labels of messages that are not mail the user keeps: drafts, spam, chats and what they threw
# away (messages.list leaves Spam and Trash out too, so a first pass and a history read agree).
# Any other mail is read wherever it is filed: a reply the user archived, or that a filter
# labelled and kept out of the inbox, is still a reply.
NOT_READ = frozenset({"DRAFT", "SPAM", "TRASH", "CHAT"})


def is_read_as_mail(labels: set[str]) -> bool:
    return not labels & NOT_READ


def history_touches(record: dict[str, Any]) -> set[str]:
    """The message ids a history record says were added, deleted or relabelled."""
    touched = {str(m.get("id")) for m in record.get("messages", [])}
    for kind in ("messagesAdded", "messagesDeleted", "labelsAdded", "labelsRemoved"):
        touched |= {str(item["message"]["id"]) for item in record.get(kind, [])}
    return touched


class GmailMailbox(Google, Mailbox):
    moves_to_trash = True

    @classmethod
    def open(cls, account: AccountSettings) -> GmailMailbox:
        return open_mailbox(account)  # the module's opener builds it

    def __init__(self, account: AccountSettings, api: Api | None = None) -> None:
        self.account = account
        self.api = api or Api(
            account, _service(account, "gmail", "v1", _google(account).api_endpoint), GMAIL_METHODS
        )
        # What the last read of mail learnt: the history id it reached, and (when it read
        # history) where that read started and every message it touched.
        self._history_at: int | None = None
        self._history_from: int | None = None
        self._touched: set[str] = set()

    def _call(self, method: str, **params: Any) -> Any:
        return self.api.call(method, userId="me", **params)

    def _missing(self, method: str, **params: Any) -> Any | None:
        """The call's result, or None when Gmail says 404."""
        try:
            return self.api.call(method, userId="me", **params)
        except GoogleError as exc:
            if exc.status == 404:
                return None
            raise

    # -- reading mail
    def messages(self, cursor: str | None, since: datetime) -> MessageBatch:
        ids: list[tuple[str, set[str] | None]] = []
        history_id = None
        self._history_from = None
        if cursor:
            ids, history_id = self._history(cursor)
        if history_id is None:
            # First pass or expired history (404). Take the history id first so nothing
            # arriving during the listing falls between the two.
            history_id = self._call("users.getProfile")["historyId"]
            query = f"after:{since.astimezone(UTC):%Y/%m/%d}"
            for page in self.api.pages("users.messages.list", userId="me", q=query):
                ids += [(m["id"], None) for m in page.get("messages", [])]
        headers = [h for mid, labels in dict(ids).items() if (h := self._headers(mid, labels))]
        self._history_at = int(history_id)
        return MessageBatch(tuple(headers), cursor=str(history_id))

    def _history(self, cursor: str) -> tuple[list[tuple[str, set[str] | None]], str | None]:
        """Mail added since ``cursor`` (`is_read_as_mail`); (.., None) when history expired.
        Every record type is read, so the same request tells which drafts were touched."""
        found: list[tuple[str, set[str] | None]] = []
        touched: set[str] = set()
        token = None
        while True:
            page = self._missing(
                "users.history.list",
                startHistoryId=cursor,
                historyTypes=["messageAdded", "messageDeleted", "labelAdded", "labelRemoved"],
                **({"pageToken": token} if token else {}),
            )
            if page is None:
                return [], None
            for record in page.get("history", []):
                touched |= history_touches(record)
                for added in record.get("messagesAdded", []):
                    labels = set(added["message"].get("labelIds", []))
                    if is_read_as_mail(labels):
                        found.append((added["message"]["id"], labels))
                # Mail the user took back out of Spam or Trash is new to us.
                for removed in record.get("labelsRemoved", []):
                    labels = set(removed["message"].get("labelIds", []))
                    if set(removed.get("labelIds", [])) & NOT_READ and is_read_as_mail(labels):
                        found.append((removed["message"]["id"], labels))
            token = page.get("nextPageToken")
            if not token:
                self._history_from, self._touched = int(cursor), touched
                return found, page["historyId"]

    def _headers(self, message_id: str, labels: set[str] | None) -> MailHeaders | None:
        msg = self._missing(
            "users.messages.get", id=message_id, format="full", fields=MESSAGE_FIELDS
        )
        if msg is None:  # deleted since it was listed
            return None
        labels = set(msg.get("labelIds", [])) or labels or set()
        if not is_read_as_mail(labels):
            return None
        payload = msg.get("payload", {})
        fields = [(h["name"], h["value"]) for h in payload.get("headers", [])]
        folder = Folder.SENT if "SENT" in labels else Folder.INBOX
        return mailparse.headers_from_fields(
            fields,
            folder=folder,
            provider_id=message_id,
            excerpt=msg.get("snippet", ""),
            part_types=part_types(payload),
            hints=[("gmail.label", label) for label in sorted(labels)],
        )

    # -- drafts
    def _thread_of(self, rfc_message_id: str) -> str | None:
        found = self._call("users.messages.list", q=f"rfc822msgid:{rfc_message_id.strip('<>')}")
        messages = found.get("messages", [])
        return messages[0]["threadId"] if messages else None

    def _body(self, draft: DraftMessage, thread_id: str | None) -> dict[str, Any]:
        message: dict[str, Any] = {"raw": _b64(draft.raw)}
        if thread_id:
            message["threadId"] = thread_id
        return {"message": message}

    def create_draft(self, draft: DraftMessage) -> str:
        thread = self._thread_of(draft.in_reply_to) if draft.in_reply_to else None
        return _provider_id(self._call("users.drafts.create", body=self._body(draft, thread)))

    def update_draft(self, provider_id: str, draft: DraftMessage) -> str:
        draft_id, _, thread = _parse_id(provider_id)
        return _provider_id(
            self._call(
                "users.drafts.update",
                id=draft_id,
                body={"id": draft_id, **self._body(draft, thread or None)},
            )
        )

    def retract(self, provider_id: str) -> None:
        # drafts.delete removes the draft for good (Gmail has no Trash for drafts via the API).
        self._missing("users.drafts.delete", id=_parse_id(provider_id)[0])

    def find_draft(self, message_id: str) -> str | None:
        found = self._call("users.drafts.list", q=f"rfc822msgid:{message_id.strip('<>')}")
        if found.get("drafts"):
            return _provider_id(found["drafts"][0])
        # Search can lag behind a draft made seconds ago (the crash this repairs): scan.
        for page in self.api.pages("users.drafts.list", userId="me"):
            for entry in page.get("drafts", []):
                draft = self._missing("users.drafts.get", id=entry["id"], format="raw")
                if draft and self._parse(draft)["Message-ID"] == message_id:
                    return _provider_id(draft)
        return None

    def locate(self, message_id: str) -> Located | None:
        query = f"rfc822msgid:{message_id.strip('<>')}"
        trashed: Located | None = None
        # The drafts in Trash too (one listing, as many requests as before when none is found):
        # only the labels of the message tell a trashed one.
        found = self._call("users.drafts.list", q=query, includeSpamTrash=True)
        for entry in found.get("drafts", []):
            message = self._missing("users.messages.get", id=entry["message"]["id"],
                                    format="minimal")  # fmt: skip
            if message is None:
                continue
            if not set(message.get("labelIds", [])) & BINNED:
                return Located(Place.DRAFTS, _provider_id(entry))
            trashed = Located(Place.TRASH, str(message["id"]))
        listed = self._call("users.messages.list", q=query, includeSpamTrash=True)
        for entry in listed.get("messages", []):
            message = self._missing("users.messages.get", id=entry["id"], format="minimal")
            labels = set((message or {}).get("labelIds", []))
            if "SENT" in labels:
                return Located(Place.SENT, str(entry["id"]))
            if labels & BINNED:
                trashed = Located(Place.TRASH, str(entry["id"]))
        return trashed

    @staticmethod
    def _parse(draft: dict[str, Any]) -> EmailMessage:
        raw = base64.urlsafe_b64decode(draft["message"]["raw"] + "==")
        return email.message_from_bytes(raw, policy=email.policy.default)

    def observe(
        self, provider_id: str, message_id: str, hint: SentHint | None = None
    ) -> Observation:
        draft_id, gmail_id, thread_id = _parse_id(provider_id)
        query = f"rfc822msgid:{message_id.strip('<>')}"
        draft = self._missing("users.drafts.get", id=draft_id, format="raw")
        if draft is None or set(draft["message"].get("labelIds", [])) & BINNED:
            # Gmail keeps the message id (and the Message-ID header) when a draft is sent.
            if gmail_id:
                sent = self._missing("users.messages.get", id=gmail_id, format="minimal")
                if sent and "SENT" in sent.get("labelIds", []):
                    return Observation(Presence.SENT)
            # A program on Gmail's IMAP saves a draft as a new one, under a new draft id: our
            # Message-ID still in Drafts (not in Trash) is the draft.
            again = self._call("users.drafts.list", q=query).get("drafts", [])
            draft = (self._missing("users.drafts.get", id=again[0]["id"], format="raw")
                     if again else None)  # fmt: skip
        if draft is not None and not set(draft["message"].get("labelIds", [])) & BINNED:
            raw = base64.urlsafe_b64decode(draft["message"]["raw"] + "==")
            fingerprint, body = compose.read_draft(raw)
            at = self._history_at
            version = f"{draft['message'].get('id', '')}@{at}" if at is not None else ""
            return Observation(Presence.PRESENT, fingerprint, _provider_id(draft), body,
                               version=version)
        found = self._call("users.messages.list", q=query)
        for entry in found.get("messages", []):
            sent = self._missing("users.messages.get", id=entry["id"], format="minimal")
            if sent and "SENT" in sent.get("labelIds", []):
                return Observation(Presence.SENT)
        if hint is None or not hint.recipient:
            return Observation(Presence.GONE)
        return Observation(Presence.GONE, sent_candidates=self._sent_candidates(thread_id, hint))

    def versions(self, known: Mapping[str, str]) -> dict[str, str]:
        """The drafts no history record touched since their marker was taken. The history read
        by `messages` on this pass answers without a request; each read answers once, so a
        pass that did not read mail reads the history itself, from the oldest marker."""
        start, touched, self._history_from = self._history_from, self._touched, None
        taken = {pid: marker.partition("@") for pid, marker in known.items()}
        if start is None:
            oldest = min((int(at) for _, _, at in taken.values() if at.isdigit()), default=None)
            if oldest is None:
                return {}
            _, reached = self._history(str(oldest))
            if reached is None:  # expired: look at each draft
                return {}
            start, touched, self._history_from = oldest, self._touched, None
            self._history_at = int(reached)
        result = {}
        for provider_id, (message_id, _, at) in taken.items():
            if (
                at.isdigit() and start <= int(at)
                and message_id and message_id == _parse_id(provider_id)[1]
                and message_id not in touched
            ):  # fmt: skip
                result[provider_id] = known[provider_id]
        return result

    def _sent_candidates(self, thread_id: str, hint: SentHint) -> tuple[SentCandidate, ...]:
        """What in Sent may be the draft, sent by the user's program under new ids."""
        wanted = ["To", "Cc", "Subject", "In-Reply-To", "References", "Message-ID"]
        found: list[SentCandidate] = []
        if thread_id:
            thread = self._missing(
                "users.threads.get", id=thread_id, format="metadata", metadataHeaders=wanted
            )
            for message in (thread or {}).get("messages", []):
                if candidate := sent_candidate(message, same_thread=True):
                    found.append(candidate)
        # A thank-you starts its own thread, which is gone with the draft: look in Sent for
        # the same subject to the same person (a day of slack: "after:" is a date in the
        # account's time zone).
        day = (hint.since - timedelta(days=1)).astimezone(UTC)
        query = f"in:sent to:{hint.recipient} after:{day:%Y/%m/%d}"
        listed = self._call("users.messages.list", q=query)
        for entry in listed.get("messages", [])[:20]:
            if entry.get("threadId") == thread_id:
                continue  # seen above
            message = self._missing(
                "users.messages.get", id=entry["id"], format="metadata", metadataHeaders=wanted
            )
            if message and (candidate := sent_candidate(message, same_thread=False)):
                found.append(candidate)
        return tuple(found)

    def close(self) -> None:
        pass


def open_mailbox(account: AccountSettings) -> GmailMailbox:
    return GmailMailbox(account)


def open_calendar(account: AccountSettings) -> GoogleCalendar:
    return GoogleCalendar(account)
