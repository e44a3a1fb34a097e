"""A stateful Microsoft Graph v1.0 emulator (one mailbox, one calendar) and a fake sign-in service.

It serves real HTTP on 127.0.0.1 so the adapter's requests.Session and msal run unchanged. It
follows the published v1.0 reference for every endpoint it serves and rejects anything else:
unknown paths, wrong methods, unknown query options, unknown or read-only body properties, a
missing bearer token or a missing ``Prefer: IdType="ImmutableId"``. Each rejection is also
recorded in ``violations`` (the test fixture asserts none at teardown).

Endpoints and the reference pages they follow:

- GET  /me/calendarView/delta            https://learn.microsoft.com/en-us/graph/api/event-delta
  (state tokens and 410 expiry:          https://learn.microsoft.com/en-us/graph/delta-query-overview
   and https://learn.microsoft.com/en-us/graph/delta-query-events)
- GET  /me/mailFolders/{id}/messages/delta  https://learn.microsoft.com/en-us/graph/api/message-delta
  (rounds and $select:                   https://learn.microsoft.com/en-us/graph/delta-query-messages)
- GET  /me/mailFolders/{id}              https://learn.microsoft.com/en-us/graph/api/mailfolder-get
- GET  /me/messages, /me/mailFolders/{id}/messages ($filter internetMessageId; in a folder
  also a plain listing or $filter sentDateTime ge, with $top and $skip paging)
                                         https://learn.microsoft.com/en-us/graph/api/user-list-messages
- POST /me/messages                      https://learn.microsoft.com/en-us/graph/api/user-post-messages
  (custom internetMessageHeaders only at creation, names starting "x-":
                                         https://learn.microsoft.com/en-us/graph/api/resources/message)
- GET  /me/messages/{id} ($select=internetMessageHeaders, the type-cast
  microsoft.graph.eventMessage/meetingMessageType; $expand=attachments($select=...))
                                         https://learn.microsoft.com/en-us/graph/api/message-get
  (an invitation, update, cancellation or response is an eventMessage, annotated with its
  @odata.type; its text/calendar part is not an attachment:
                                         https://learn.microsoft.com/en-us/graph/api/resources/eventmessage
   attachment properties:                https://learn.microsoft.com/en-us/graph/api/resources/attachment)
- PATCH /me/messages/{id}                https://learn.microsoft.com/en-us/graph/api/message-update
  (categories: a string collection, empty on a new message, writable on create and update:
                                         https://learn.microsoft.com/en-us/graph/api/resources/message)
- DELETE /me/messages/{id}               https://learn.microsoft.com/en-us/graph/api/message-delete
- POST /me/messages/{id}/createReply     https://learn.microsoft.com/en-us/graph/api/message-createreply
- Prefer: IdType="ImmutableId"           https://learn.microsoft.com/en-us/graph/outlook-immutable-id
- 429/503 with Retry-After               https://learn.microsoft.com/en-us/graph/throttling
- sign-in: OIDC discovery, device code, token (device_code and refresh_token grants)
  https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-device-code
  https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-auth-code-flow#refresh-the-access-token

Send endpoints (/send, /sendMail, /reply, /replyAll, /forward) answer 403 and are recorded in
``send_attempts``: this emulated app has no Mail.Send permission, like the real registration.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import email
import email.policy
import itertools
import json
import re
import secrets
import socket
import ssl
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from email.utils import format_datetime, formataddr, getaddresses, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit
from zoneinfo import ZoneInfo

import requests
from icalendar.timezone.windows_to_olson import WINDOWS_TO_OLSON

AUTHORITY = "https://login.emulator.test"  # what msal sees; mapped to the loopback server
TENANT = "contoso"
TENANT_ID = "72f988bf-0000-0000-0000-2d7cd011db47"
WELL_KNOWN = ("inbox", "sentitems", "drafts", "deleteditems", "archive")

# Writable message properties (message-update; creation accepts the same plus the headers).
UPDATE_PROPS = frozenset(
    {
        "bccRecipients",
        "body",
        "categories",
        "ccRecipients",
        "flag",
        "from",
        "importance",
        "inferenceClassification",
        "internetMessageId",
        "isDeliveryReceiptRequested",
        "isRead",
        "isReadReceiptRequested",
        "multiValueExtendedProperties",
        "replyTo",
        "sender",
        "singleValueExtendedProperties",
        "subject",
        "toRecipients",
    }
)
CREATE_PROPS = UPDATE_PROPS | {"internetMessageHeaders", "attachments", "mentions"}
DRAFT_ONLY = frozenset(
    {
        "bccRecipients",
        "body",
        "ccRecipients",
        "internetMessageId",
        "replyTo",
        "sender",
        "subject",
        "toRecipients",
        "from",
    }
)
MESSAGE_PROPS = frozenset(
    {
        "id",
        "@odata.etag",
        "changeKey",
        "createdDateTime",
        "lastModifiedDateTime",
        "categories",
        "receivedDateTime",
        "sentDateTime",
        "subject",
        "bodyPreview",
        "body",
        "uniqueBody",
        "isDraft",
        "isRead",
        "parentFolderId",
        "conversationId",
        "conversationIndex",
        "internetMessageId",
        "internetMessageHeaders",
        "from",
        "sender",
        "toRecipients",
        "ccRecipients",
        "bccRecipients",
        "replyTo",
        "inferenceClassification",
        "importance",
        "hasAttachments",
        "webLink",
        "flag",
        "isDeliveryReceiptRequested",
        "isReadReceiptRequested",
    }
)
# Properties of the derived type eventMessage, selected as microsoft.graph.eventMessage/NAME.
EVENT_MESSAGE_PROPS = frozenset(
    {"meetingMessageType", "startDateTime", "endDateTime", "location", "type", "isOutOfDate",
     "isAllDay", "isDelegated", "recurrence"}
)  # fmt: skip
ATTACHMENT_PROPS = frozenset(
    {"id", "name", "contentType", "size", "isInline", "lastModifiedDateTime"}
)
# iCalendar METHOD (and PARTSTAT for a REPLY) -> (@odata.type, meetingMessageType), the way
# Exchange files an incoming invitation. ("Tenatively" is Graph's own spelling.)
MEETING_TYPES = {
    "REQUEST": ("#microsoft.graph.eventMessageRequest", "meetingRequest"),
    "CANCEL": ("#microsoft.graph.eventMessage", "meetingCancelled"),
    "ACCEPTED": ("#microsoft.graph.eventMessageResponse", "meetingAccepted"),
    "DECLINED": ("#microsoft.graph.eventMessageResponse", "meetingDeclined"),
    "TENTATIVE": ("#microsoft.graph.eventMessageResponse", "meetingTenativelyAccepted"),
}
SEND_PATHS = re.compile(r"^/me/(sendMail|messages/[^/]+/(send|reply|replyAll|forward))$", re.I)


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _in_utc(event: dict[str, Any]) -> dict[str, Any]:
    """A copy of an event with its start and end in UTC. An all-day event keeps its midnight
    times (and their zone): Graph does not convert those ("all day events are not obeying
    prefer outlook.timezone", Microsoft Q&A 1382503)."""
    shown: dict[str, Any] = json.loads(json.dumps(event))
    if shown.get("isAllDay"):
        return shown
    for name in ("start", "end"):
        value = shown[name]
        zone = value.get("timeZone") or "UTC"
        if zone == "UTC":
            continue
        local = datetime.fromisoformat(value["dateTime"][:19])
        tz = ZoneInfo(WINDOWS_TO_OLSON.get(zone, zone))
        shown[name] = _graph_time(local.replace(tzinfo=tz))
    return shown


def _graph_time(value: datetime) -> dict[str, str]:
    return {
        "dateTime": value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.0000000"),
        "timeZone": "UTC",
    }


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _recipient(address: str, name: str = "") -> dict[str, Any]:
    return {"emailAddress": {"name": name or address, "address": address}}


class _Reject(Exception):
    def __init__(self, status: int, code: str, message: str, *, violation: bool = True) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.violation = status, code, message, violation


@dataclass
class _Storm:
    remaining: int
    status: int = 429
    retry_after: str | None = "1"
    match: str = ""  # substring of the path; "" for every Graph request


@dataclass
class _Message:
    data: dict[str, Any]
    folder: str
    headers: list[dict[str, str]] = field(default_factory=list)
    seq: int = 0
    odata_type: str = ""  # "#microsoft.graph.eventMessageRequest" etc. for an eventMessage
    meeting: str = ""  # its meetingMessageType
    attachments: list[dict[str, Any]] = field(default_factory=list)
    raw_headers: bool = False  # headers is the whole header block of a delivered message


class GraphEmulator:
    def __init__(
        self,
        user: str = "jordan.lee@contoso.example",
        name: str = "Jordan Lee",
        client_id: str = "11111111-2222-3333-4444-555555555555",
    ) -> None:
        self.user, self.user_name, self.client_id = user, name, client_id
        self.lock = threading.RLock()
        self.page_size = 10
        self.latency = 0.0  # seconds each Graph request takes, to make concurrency visible
        self.access_token_lifetime = 3600
        self.refresh_mode = "ok"  # "ok" | "invalid_grant"
        # What the sign-in service answers instead of a token (an OAuth error body, e.g.
        # {"error": "invalid_grant", "error_description": "AADSTS65001: ..."}), at the
        # device-code request ("devicecode") or at the token request ("token").
        self.sign_in_errors: dict[str, dict[str, str]] = {}
        # Permissions the user (or the admin) did not grant: left out of every token issued.
        self.withheld_scopes: set[str] = set()
        # The authority msal is given: the fake https host (with msal's http_client mapped to
        # this server), or this server itself when it serves TLS (start(tls=...)).
        self.authority = AUTHORITY
        self._scheme = "http"
        self.drafts_missing = False
        self.missing_folders: set[str] = set()  # well-known folders this mailbox never made
        # Like some real mailboxes: a type cast in $select is a 400 (RequestBroker--ParseUri).
        self.refuse_type_cast = False
        self.violations: list[str] = []
        self.send_attempts: list[str] = []
        self.requests: list[tuple[str, str, str]] = []  # (method, path, query)
        self.counts: collections.Counter[str] = collections.Counter()
        self.token_requests: list[dict[str, str]] = []
        self.throttled = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.storms: list[_Storm] = []
        self._ids = itertools.count(1)
        self._seq = 0
        self._epoch = 0
        self._access: dict[str, tuple[float, frozenset[str]]] = {}
        self._refresh: set[str] = set()
        self._device: dict[str, int] = {}
        self._device_scopes: dict[str, str] = {}
        self.events: dict[str, dict[str, Any]] = {}
        self._event_seq: dict[str, int] = {}
        self._event_gone: dict[str, int] = {}
        self.messages: dict[str, _Message] = {}
        self._left: dict[tuple[str, str], int] = {}  # (folder, id) -> seq it left the folder
        self._deltas: dict[str, dict[str, Any]] = {}
        self._skips: dict[str, dict[str, Any]] = {}
        self.folder_ids = {name: f"AQMkFolder-{name}" for name in WELL_KNOWN}
        self._losses: list[tuple[str, str, str]] = []  # (method, path part, "drop" | status)
        self._server: ThreadingHTTPServer | None = None

    # --- lifecycle -------------------------------------------------------------------------

    def start(self, tls: tuple[str, str] | None = None) -> GraphEmulator:
        """Serve on loopback; with ``tls`` (certificate and key files) over HTTPS, so msal and
        requests reach it unchanged through outlook.authority_url and graph_url."""
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if len(body) < length:  # the client went away mid-request: nothing to act on
                    self.close_connection = True
                    return
                status, headers, payload = emulator.dispatch(
                    self.command, self.path, dict(self.headers.items()), body
                )
                loss = emulator._lost(self.command, self.path, status)
                if loss == "drop":
                    # The work is done; the client never hears of it.
                    self.close_connection = True
                    with contextlib.suppress(OSError):
                        self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if loss is not None:
                    status, headers = int(loss), {}
                    payload = {"error": {"code": "ServiceUnavailable", "message": "lost answer"}}
                data = b"" if payload is None else json.dumps(payload).encode()
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                if payload is not None:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _serve

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        if tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*tls)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
            self._scheme = "https"
            self.authority = self.url
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def lose_answer(self, method: str, path_part: str, how: str = "drop", count: int = 1) -> None:
        """Carry out the next ``count`` requests ``method`` on a path containing ``path_part``
        (e.g. "POST", "/me/messages"), then lose the answer: "drop" closes the connection
        unanswered, "500"/"503"/"504" answers that status as if the work had failed."""
        with self.lock:
            self._losses += [(method, path_part, how)] * count

    def _lost(self, method: str, target: str, status: int) -> str | None:
        path = urlsplit(target).path
        if status >= 300 or not path.startswith("/v1.0/"):
            return None  # sign-in answers are never lost
        with self.lock:
            for loss in self._losses:
                if loss[0] == method and loss[1] in path:
                    self._losses.remove(loss)
                    return loss[2]
        return None

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"{self._scheme}://127.0.0.1:{self._server.server_address[1]}"

    @property
    def graph_url(self) -> str:
        return self.url + "/v1.0"

    def http_client(self) -> requests.Session:
        """msal's injected http_client: the https authority, answered by this server."""
        local = self.url

        class Loopback(requests.Session):
            def request(self, method: str | bytes, url: str | bytes, *a: Any, **kw: Any) -> Any:
                url = str(url)
                if url.startswith(AUTHORITY):
                    url = local + url[len(AUTHORITY) :]
                return super().request(method, url, *a, **kw)

        return Loopback()

    # --- dispatch ------------------------------------------------------------------------------

    def dispatch(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], Any]:
        parts = urlsplit(target)
        query = parse_qsl(parts.query, keep_blank_values=True)
        try:
            if not parts.path.startswith("/v1.0/"):
                return self._identity(method, parts.path, body)
            return self._graph(method, parts.path[len("/v1.0") :], query, headers, body)
        except _Reject as exc:
            if exc.violation:
                with self.lock:
                    self.violations.append(f"{method} {parts.path}: {exc.code}: {exc.message}")
            return exc.status, {}, {"error": {"code": exc.code, "message": exc.message}}

    def _graph(
        self,
        method: str,
        path: str,
        query: list[tuple[str, str]],
        headers: dict[str, str],
        body: bytes,
    ) -> tuple[int, dict[str, str], Any]:
        lower = {k.lower(): v for k, v in headers.items()}
        with self.lock:
            self.requests.append((method, path, "&".join(f"{k}={v}" for k, v in query)))
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.latency:
                time.sleep(self.latency)
            with self.lock:
                self._check_auth(lower.get("authorization", ""))
                storm = next((s for s in self.storms if s.remaining > 0 and s.match in path), None)
                if storm is not None:
                    storm.remaining -= 1
                    self.throttled += 1
                    extra = {"Retry-After": storm.retry_after} if storm.retry_after else {}
                    code = "TooManyRequests" if storm.status == 429 else "ServiceUnavailable"
                    return storm.status, extra, {"error": {"code": code, "message": "throttled"}}
                prefer = lower.get("prefer", "")
                if 'idtype="immutableid"' not in prefer.lower().replace(" ", ""):
                    raise _Reject(400, "MissingImmutableId", 'Prefer: IdType="ImmutableId" absent')
                if SEND_PATHS.match(path):
                    self.send_attempts.append(f"{method} {path}")
                    raise _Reject(403, "ErrorAccessDenied", "Access is denied (no Mail.Send)")
                payload = self._json(body, lower) if body else None
                return self._route(method, path, dict(self._query(query)), payload, prefer, lower)
        finally:
            with self.lock:
                self.in_flight -= 1

    def _check_auth(self, header: str) -> None:
        token = header[len("Bearer ") :] if header.startswith("Bearer ") else ""
        expires, _ = self._access.get(token, (0.0, frozenset()))
        if expires < time.time():
            raise _Reject(
                401,
                "InvalidAuthenticationToken",
                "Access token is empty or expired",
                violation=False,
            )

    def _need_scope(self, header: str, scope: str) -> None:
        token = header[len("Bearer ") :]
        if scope not in self._access[token][1]:
            raise _Reject(403, "ErrorAccessDenied", f"the token lacks {scope}")

    def _json(self, body: bytes, headers: dict[str, str]) -> Any:
        if not headers.get("content-type", "").startswith("application/json"):
            raise _Reject(415, "UnsupportedMediaType", "bodies are application/json")
        try:
            return json.loads(body)
        except ValueError:
            raise _Reject(400, "BadRequest", "the body is not JSON") from None

    @staticmethod
    def _query(query: list[tuple[str, str]]) -> Iterable[tuple[str, str]]:
        seen = set()
        for key, value in query:
            if key.lower() in seen:
                raise _Reject(400, "BadRequest", f"query option {key} repeated")
            seen.add(key.lower())
            yield key, value

    @staticmethod
    def _allow(query: dict[str, str], allowed: set[str]) -> dict[str, str]:
        options = {k.lower(): v for k, v in query.items()}
        unknown = set(options) - {a.lower() for a in allowed}
        if unknown:
            raise _Reject(
                400, "BadRequest", f"query option(s) not supported here: {sorted(unknown)}"
            )
        return options

    def _route(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        body: Any,
        prefer: str,
        headers: dict[str, str],
    ) -> tuple[int, dict[str, str], Any]:
        auth = headers["authorization"]
        routes: list[tuple[str, str, str]] = [
            (r"/me/calendarView/delta", "GET", "calendarView/delta"),
            (r"/me/mailFolders/(?P<folder>[^/]+)/messages/delta", "GET", "messages/delta"),
            (r"/me/mailFolders/(?P<folder>[^/]+)/messages", "GET", "folder/messages"),
            (r"/me/mailFolders/(?P<folder>[^/]+)", "GET", "mailFolder"),
            (r"/me/messages", "GET POST", "messages"),
            (r"/me/messages/(?P<id>[^/]+)/createReply", "POST", "createReply"),
            (r"/me/messages/(?P<id>[^/]+)", "GET PATCH DELETE", "message"),
        ]
        for pattern, methods, name in routes:
            found = re.fullmatch(pattern, path)
            if not found:
                continue
            if method not in methods.split():
                raise _Reject(405, "MethodNotAllowed", f"{method} is not allowed on {name}")
            self.counts[f"{method} {name}"] += 1
            args = found.groupdict()
            if name == "calendarView/delta":
                self._need_scope(auth, "Calendars.Read")
                return self._calendar_delta(query, prefer)
            self._need_scope(auth, "Mail.ReadWrite")
            if "folder" in args:
                args["folder"] = self._folder(args["folder"])
            handler = getattr(self, "_" + name.replace("/", "_"))
            return handler(method, query, body, prefer, headers, **args)  # type: ignore[no-any-return]
        raise _Reject(400, "BadRequest", f"Resource not found for the segment {path!r}")

    def _folder(self, segment: str) -> str:
        name = segment.strip("()'").lower()
        if self.drafts_missing and name in ("drafts", self.folder_ids["drafts"].lower()):
            raise _Reject(404, "ErrorItemNotFound", "The folder was not found", violation=False)
        for known, ident in self.folder_ids.items():
            if name in (known, ident.lower()):
                if known in self.missing_folders:
                    raise _Reject(404, "ErrorItemNotFound", "The specified folder could not be "
                                  "found in the store", violation=False)
                return known
        raise _Reject(404, "ErrorInvalidIdMalformed", f"no folder {segment!r}", violation=False)

    # --- delta machinery ----------------------------------------------------------------------

    def _bump(self) -> int:
        self._seq += 1
        return self._seq

    def expire_deltas(self) -> None:
        """Every delta and skip token issued so far answers 410 from now on."""
        with self.lock:
            self._epoch += 1

    def _page(
        self, items: list[dict[str, Any]], base: str, state: dict[str, Any], prefer: str
    ) -> tuple[int, dict[str, str], Any]:
        size = self.page_size
        found = re.search(r"odata\.maxpagesize=(\d+)", prefer)
        if found:
            size = int(found.group(1))
        token = secrets.token_urlsafe(12)
        if len(items) > size:
            self._skips[token] = {"items": items[size:], "state": state, "epoch": self._epoch}
            return 200, {}, {"value": items[:size], "@odata.nextLink": f"{base}?$skiptoken={token}"}
        self._deltas[token] = {**state, "epoch": self._epoch}
        return 200, {}, {"value": items, "@odata.deltaLink": f"{base}?$deltatoken={token}"}

    def _resume(
        self, query: dict[str, str], base: str, prefer: str
    ) -> tuple[int, dict[str, str], Any] | dict[str, Any] | None:
        """A skip token's next page, a delta token's state, or None for an initial round."""
        if "$skiptoken" in query:
            skip = self._skips.pop(query["$skiptoken"], None)
            if skip is None or skip["epoch"] != self._epoch:
                raise _Reject(410, "SyncStateNotFound", "The sync state is gone", violation=False)
            return self._page(skip["items"], base, skip["state"], prefer)
        if "$deltatoken" in query:
            state = self._deltas.get(query["$deltatoken"])
            if state is None or state["epoch"] != self._epoch:
                raise _Reject(410, "SyncStateNotFound", "The sync state is gone", violation=False)
            return state
        return None

    def _calendar_delta(
        self, query: dict[str, str], prefer: str
    ) -> tuple[int, dict[str, str], Any]:
        options = self._allow(query, {"startDateTime", "endDateTime", "$deltatoken", "$skiptoken"})
        if "$select" in query or "$filter" in query:
            raise _Reject(400, "BadRequest", "calendarView delta takes no $select or $filter")
        base = self.graph_url + "/me/calendarView/delta"
        resumed = self._resume(options, base, prefer)
        if isinstance(resumed, tuple):
            return resumed
        if resumed is None:
            if "startdatetime" not in options or "enddatetime" not in options:
                raise _Reject(
                    400, "ErrorInvalidParameter", "startDateTime and endDateTime required"
                )
            start = datetime.fromisoformat(options["startdatetime"].replace("Z", "+00:00"))
            end = datetime.fromisoformat(options["enddatetime"].replace("Z", "+00:00"))
            since = -1
        else:
            start, end, since = resumed["start"], resumed["end"], resumed["seq"]
        items: list[dict[str, Any]] = []
        for ident, event in self.events.items():
            if self._event_seq[ident] <= since:
                continue
            shown = _in_utc(event)
            inside = (
                datetime.fromisoformat(shown["start"]["dateTime"][:19] + "+00:00") < end
                and datetime.fromisoformat(shown["end"]["dateTime"][:19] + "+00:00") > start
            )
            if inside:
                items.append(shown)
            elif since >= 0:
                items.append({"id": ident, "@removed": {"reason": "deleted"}})
        if since >= 0:
            items += [
                {"id": i, "@removed": {"reason": "deleted"}}
                for i, seq in self._event_gone.items()
                if seq > since
            ]
        return self._page(items, base, {"start": start, "end": end, "seq": self._seq}, prefer)

    # --- calendar (test side) -------------------------------------------------------------------

    def add_event(
        self,
        subject: str,
        start: datetime,
        end: datetime,
        *,
        attendees: Iterable[tuple[str, str, str, str]] = (),
        organizer: tuple[str, str] | None = None,
        body: str = "",
        is_organizer: bool = False,
        is_cancelled: bool = False,
        is_all_day: bool = False,
        response: str = "accepted",
        event_type: str = "singleInstance",
        series: str | None = None,
        original_start: datetime | None = None,
        location: str = "",
    ) -> str:
        """An event; attendees are (address, name, type, response)."""
        with self.lock:
            ident = f"AAMkEvent{next(self._ids):04d}"
            org = organizer or (self.user, self.user_name)
            event: dict[str, Any] = {
                "@odata.etag": 'W/"ck0"',
                "id": ident,
                "changeKey": "ck0",
                "iCalUId": "040000008200E00074C5B7101A82E008" + ident,
                "subject": subject,
                "bodyPreview": body[:255],
                "body": {"contentType": "text", "content": body},
                "start": _graph_time(start),
                "end": _graph_time(end),
                "originalStartTimeZone": "UTC",
                "originalEndTimeZone": "UTC",
                "location": {"displayName": location},
                "isAllDay": is_all_day,
                "isCancelled": is_cancelled,
                "isOrganizer": is_organizer,
                "type": event_type,
                "responseStatus": {
                    "response": "organizer" if is_organizer else response,
                    "time": "0001-01-01T00:00:00Z",
                },
                "showAs": "busy",
                "organizer": _recipient(*org),
                "attendees": [
                    {
                        "type": t,
                        "status": {"response": r, "time": "0001-01-01T00:00:00Z"},
                        **_recipient(a, n),
                    }
                    for a, n, t, r in attendees
                ],
            }
            if series:
                event["seriesMasterId"] = series
                event["originalStart"] = _iso(original_start or start)
            self.events[ident] = event
            self._event_seq[ident] = self._bump()
            return ident

    def put_event(self, resource: dict[str, Any]) -> str:
        """An event resource as Exchange holds it (start and end in the event's own zone, a
        Windows or IANA name); calendarView answers it in UTC, as asked by the provider's
        ``Prefer: outlook.timezone="UTC"`` (which is also Graph's default)."""
        with self.lock:
            ident = resource.get("id") or f"AAMkEvent{next(self._ids):04d}"
            self.events[ident] = {"@odata.etag": 'W/"ck0"', "changeKey": "ck0", "type":
                                  "singleInstance", **json.loads(json.dumps(resource)),
                                  "id": ident}
            self._event_seq[ident] = self._bump()
            return ident

    def update_event(self, ident: str, **changes: Any) -> None:
        with self.lock:
            event = self.events[ident]
            for key, value in changes.items():
                event[key] = _graph_time(value) if key in ("start", "end") else value
            key = f"ck{self._bump()}"
            event["changeKey"], event["@odata.etag"] = key, f'W/"{key}"'
            self._event_seq[ident] = self._seq

    def delete_event(self, ident: str) -> None:
        with self.lock:
            del self.events[ident]
            del self._event_seq[ident]
            self._event_gone[ident] = self._bump()

    # --- messages ---------------------------------------------------------------------------

    def _stamp(self, msg: _Message) -> None:
        msg.seq = self._bump()
        key = f"CQAAAB{msg.seq:06d}"
        msg.data["changeKey"], msg.data["@odata.etag"] = key, f'W/"{key}"'
        msg.data["lastModifiedDateTime"] = _iso(_now())

    def _move(self, msg: _Message, folder: str) -> None:
        self._left[(msg.folder, msg.data["id"])] = self._seq + 1
        msg.folder = folder
        msg.data["parentFolderId"] = self.folder_ids[folder]
        self._stamp(msg)

    def _new_message(
        self, folder: str, data: dict[str, Any], headers: list[dict[str, str]]
    ) -> _Message:
        ident = f"AAkALgAAAAAAHYQDEapmEc2byACqAC-EWg0A{next(self._ids):06d}"
        now = _iso(_now())
        base: dict[str, Any] = {
            "id": ident,
            "createdDateTime": now,
            "receivedDateTime": now,
            "sentDateTime": now,
            "subject": "",
            "body": {"contentType": "text", "content": ""},
            "isDraft": False,
            "isRead": True,
            "parentFolderId": self.folder_ids[folder],
            "conversationId": f"AAQkConv{next(self._ids):06d}",
            "internetMessageId": f"<{secrets.token_hex(8)}@emulator.example>",
            "from": _recipient(self.user, self.user_name),
            "sender": _recipient(self.user, self.user_name),
            "toRecipients": [],
            "ccRecipients": [],
            "bccRecipients": [],
            "replyTo": [],
            "inferenceClassification": "focused",
            "importance": "normal",
            "hasAttachments": False,
            "categories": [],
        }
        base.update(data)
        base["bodyPreview"] = base["body"]["content"][:255]
        msg = _Message(base, folder, headers)
        self._stamp(msg)
        self.messages[ident] = msg
        return msg

    def _view(
        self, msg: _Message, select: str | None, expand: str | None = None
    ) -> dict[str, Any]:
        full = {
            **json.loads(json.dumps(msg.data)),
            "internetMessageHeaders": self._all_headers(msg),
        }
        typed = {"@odata.type": msg.odata_type} if msg.odata_type else {}
        extra = self._expand(msg, expand) if expand else {}
        if not select:
            full.pop("internetMessageHeaders")
            if msg.odata_type:
                full["meetingMessageType"] = msg.meeting
            return {**typed, **full, **extra}
        names = [s.strip() for s in select.split(",") if s.strip()]
        cast = "microsoft.graph.eventMessage/"
        derived = [n[len(cast):] for n in names if n.startswith(cast)]
        if derived and self.refuse_type_cast:
            raise _Reject(400, "RequestBroker--ParseUri", "Could not find a property named "
                          f"'{cast}{derived[0]}'", violation=False)  # fmt: skip
        names = [n for n in names if not n.startswith(cast)]
        unknown = (set(names) - MESSAGE_PROPS) | (set(derived) - EVENT_MESSAGE_PROPS)
        if unknown:
            raise _Reject(400, "BadRequest", f"unknown $select properties {sorted(unknown)}")
        event = {"meetingMessageType": msg.meeting} if msg.odata_type else {}
        return {
            **typed,
            "id": msg.data["id"],
            "@odata.etag": msg.data["@odata.etag"],
            **{n: full.get(n) for n in names},
            **{n: event[n] for n in derived if n in event},
            **extra,
        }

    def _expand(self, msg: _Message, expand: str) -> dict[str, Any]:
        found = re.fullmatch(r"attachments(?:\(\$select=([\w,]+)\))?", expand.strip())
        if not found:
            raise _Reject(400, "BadRequest", f"cannot expand {expand!r}")
        wanted = found.group(1).split(",") if found.group(1) else sorted(ATTACHMENT_PROPS)
        unknown = set(wanted) - ATTACHMENT_PROPS
        if unknown:
            raise _Reject(400, "BadRequest", f"unknown attachment properties {sorted(unknown)}")
        return {
            "attachments": [
                {"@odata.type": a["@odata.type"], "id": a["id"], **{n: a.get(n) for n in wanted}}
                for a in msg.attachments
            ]
        }

    def _all_headers(self, msg: _Message) -> list[dict[str, str]]:
        if msg.raw_headers:
            return msg.headers  # a delivered message: its own header block, as received
        d = msg.data
        sender = d["from"]["emailAddress"]
        std = [
            ("From", formataddr((sender["name"], sender["address"]))),
            (
                "To",
                ", ".join(
                    formataddr((r["emailAddress"]["name"], r["emailAddress"]["address"]))
                    for r in d["toRecipients"]
                ),
            ),
            ("Subject", d["subject"]),
            (
                "Date",
                format_datetime(datetime.fromisoformat(d["sentDateTime"].replace("Z", "+00:00"))),
            ),
            ("Message-ID", d["internetMessageId"]),
            ("MIME-Version", "1.0"),
            ("Content-Type", 'text/plain; charset="utf-8"'),
        ]
        have = {h["name"].lower() for h in msg.headers}
        return [{"name": n, "value": v} for n, v in std if n.lower() not in have] + msg.headers

    def _messages_delta(
        self,
        method: str,
        query: dict[str, str],
        body: Any,
        prefer: str,
        headers: dict[str, str],
        folder: str,
    ) -> Any:
        options = self._allow(
            query,
            {"$select", "$top", "$filter", "$orderby", "changeType", "$deltatoken", "$skiptoken"},
        )
        base = f"{self.graph_url}/me/mailFolders/{folder}/messages/delta"
        resumed = self._resume(options, base, prefer)
        if isinstance(resumed, tuple):
            return resumed
        if resumed is None:
            floor = ""
            if "$filter" in options:
                found = re.fullmatch(r"receivedDateTime (ge|gt) (\S+)", options["$filter"])
                if not found:
                    raise _Reject(400, "BadRequest", "delta $filter is receivedDateTime ge|gt only")
                floor = found.group(2)
            state = {"select": options.get("$select"), "floor": floor, "seq": -1}
        else:
            state = dict(resumed)
        since = state["seq"]
        items = [
            self._view(m, state["select"])
            for m in self.messages.values()
            if m.folder == folder and m.seq > since and m.data["receivedDateTime"] >= state["floor"]
        ]
        if since >= 0:
            items += [
                {"id": i, "@removed": {"reason": "deleted"}}
                for (f, i), seq in self._left.items()
                if f == folder and seq > since
            ]
        state["seq"] = self._seq
        return self._page(items, base, state, prefer)

    def _filter_messages(self, query: dict[str, str], folder: str | None) -> Any:
        options = self._allow(query, {"$filter", "$select", "$top", "$skip"})
        found = re.fullmatch(r"internetMessageId eq '((?:[^']|'')*)'", options.get("$filter", ""))
        if not found and folder is not None:
            return self._list_folder(options, folder)
        if not found:
            raise _Reject(400, "BadRequest", "emulator lists messages by internetMessageId only")
        wanted = found.group(1).replace("''", "'")
        value = [
            self._view(m, options.get("$select"))
            for m in self.messages.values()
            if m.data["internetMessageId"] == wanted and (folder is None or m.folder == folder)
        ]
        return 200, {}, {"value": value}

    def _list_folder(self, options: dict[str, str], folder: str) -> Any:
        """A folder's messages, newest first, $top (at most 1000) to a page."""
        since = ""
        if "$filter" in options:
            after = re.fullmatch(r"sentDateTime ge (\S+)", options["$filter"])
            if not after:
                raise _Reject(400, "BadRequest", "emulator filters a folder by sentDateTime only")
            since = after.group(1)
        top, skip = int(options.get("$top", "10")), int(options.get("$skip", "0"))
        if not 1 <= top <= 1000:
            raise _Reject(400, "BadRequest", "$top is 1 to 1000")
        items = [m for m in self.messages.values() if m.folder == folder
                 and (not since or (m.data.get("sentDateTime") or "") >= since)]  # fmt: skip
        items.sort(key=lambda m: m.data.get("receivedDateTime") or "", reverse=True)
        out: dict[str, Any] = {
            "value": [self._view(m, options.get("$select")) for m in items[skip : skip + top]]
        }
        if skip + top < len(items):
            rest = {k: v for k, v in options.items() if k != "$skip"}
            query = "&".join(f"{k}={quote(v)}" for k, v in rest.items())
            out["@odata.nextLink"] = (
                f"{self.graph_url}/me/mailFolders/{folder}/messages?{query}&$skip={skip + top}"
            )
        return 200, {}, out

    def _folder_messages(
        self,
        method: str,
        query: dict[str, str],
        body: Any,
        prefer: str,
        headers: dict[str, str],
        folder: str,
    ) -> Any:
        return self._filter_messages(query, folder)

    def _mailFolder(
        self,
        method: str,
        query: dict[str, str],
        body: Any,
        prefer: str,
        headers: dict[str, str],
        folder: str,
    ) -> Any:
        self._allow(query, {"$select"})
        return 200, {}, {"id": self.folder_ids[folder], "displayName": folder}

    def _check_props(self, body: Any, allowed: frozenset[str], what: str) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise _Reject(400, "BadRequest", f"{what}: the body is not an object")
        unknown = set(body) - allowed
        if unknown:
            raise _Reject(400, "BadRequest", f"{what}: properties not writable: {sorted(unknown)}")
        categories = body.get("categories", [])
        if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
            raise _Reject(400, "BadRequest", "categories is a collection of strings")
        if "body" in body and body["body"].get("contentType", "").lower() not in ("text", "html"):
            raise _Reject(400, "BadRequest", "body.contentType is text or html")
        for header in body.get("internetMessageHeaders") or ():
            if not header.get("name", "").lower().startswith("x-"):
                raise _Reject(
                    400, "InvalidInternetMessageHeader", "custom headers must start with x-"
                )
        return body

    def _messages(
        self, method: str, query: dict[str, str], body: Any, prefer: str, headers: dict[str, str]
    ) -> Any:
        if method == "GET":
            return self._filter_messages(query, None)
        self._allow(query, set())
        props = self._check_props(body, CREATE_PROPS, "create message")
        custom = props.pop("internetMessageHeaders", None) or []
        msg = self._new_message("drafts", {**props, "isDraft": True}, custom)
        return 201, {}, self._view(msg, None)

    def _message_or_404(self, ident: str) -> _Message:
        msg = self.messages.get(ident)
        if msg is None:
            raise _Reject(
                404, "ErrorItemNotFound", "The specified object was not found", violation=False
            )
        return msg

    def _if_match(self, msg: _Message, headers: dict[str, str]) -> None:
        wanted = headers.get("if-match")
        if wanted and wanted != msg.data["@odata.etag"]:
            raise _Reject(
                412, "ErrorIrresolvableConflict", "The changeKey does not match", violation=False
            )

    def _message(
        self,
        method: str,
        query: dict[str, str],
        body: Any,
        prefer: str,
        headers: dict[str, str],
        id: str,
    ) -> Any:
        msg = self._message_or_404(id)
        if method == "GET":
            options = self._allow(query, {"$select", "$expand"})
            return 200, {}, self._view(msg, options.get("$select"), options.get("$expand"))
        self._allow(query, set())
        self._if_match(msg, headers)
        if method == "DELETE":
            if msg.folder == "deleteditems":
                self._left[(msg.folder, id)] = self._bump()
                del self.messages[id]
            else:
                self._move(msg, "deleteditems")
            return 204, {}, None
        props = self._check_props(body, UPDATE_PROPS, "update message")
        if not msg.data["isDraft"] and set(props) & DRAFT_ONLY:
            raise _Reject(
                400, "ErrorInvalidRequest", "only drafts can change these", violation=False
            )
        msg.data.update(props)
        msg.data["bodyPreview"] = msg.data["body"]["content"][:255]
        self._stamp(msg)
        return 200, {}, self._view(msg, None)

    def _createReply(
        self,
        method: str,
        query: dict[str, str],
        body: Any,
        prefer: str,
        headers: dict[str, str],
        id: str,
    ) -> Any:
        original = self._message_or_404(id)
        self._allow(query, set())
        body = body or {}
        unknown = set(body) - {"comment", "message"}
        if unknown:
            raise _Reject(400, "BadRequest", f"createReply takes comment and message: {unknown}")
        extra = self._check_props(body.get("message") or {}, CREATE_PROPS, "createReply message")
        if "comment" in body and "body" in extra:
            raise _Reject(400, "BadRequest", "comment and message.body together")
        o = original.data
        mine = o["from"]["emailAddress"]["address"].lower() == self.user.lower()
        to = o["toRecipients"] if mine else (o["replyTo"] or [o["from"]])
        refs = [h["value"] for h in original.headers if h["name"].lower() == "references"]
        threading_headers = [
            {"name": "In-Reply-To", "value": o["internetMessageId"]},
            {"name": "References", "value": " ".join([*refs, o["internetMessageId"]]).strip()},
        ]
        quoted = "\n".join("> " + line for line in o["body"]["content"].splitlines())
        data = {
            "subject": "RE: " + o["subject"],
            "toRecipients": to,
            "isDraft": True,
            "conversationId": o["conversationId"],
            "body": {"contentType": "text", "content": body.get("comment", "") + "\n\n" + quoted},
        }
        custom = extra.pop("internetMessageHeaders", None) or []
        data.update(extra)
        msg = self._new_message("drafts", data, threading_headers + custom)
        return 201, {}, self._view(msg, None)

    # --- mail (test side: the user and the world) ------------------------------------------------

    def deliver(
        self,
        sender: str,
        subject: str,
        body: str = "",
        *,
        name: str = "",
        to: Iterable[str] = (),
        headers: Iterable[tuple[str, str]] = (),
        received: datetime | None = None,
        message_id: str | None = None,
    ) -> str:
        with self.lock:
            when = _iso(received or _now())
            data: dict[str, Any] = {
                "subject": subject,
                "body": {"contentType": "text", "content": body},
                "from": _recipient(sender, name),
                "sender": _recipient(sender, name),
                "toRecipients": [_recipient(a) for a in (to or [self.user])],
                "receivedDateTime": when,
                "sentDateTime": when,
                "isRead": False,
            }
            if message_id:
                data["internetMessageId"] = message_id
            extra = [{"name": k, "value": v} for k, v in headers]
            return str(self._new_message("inbox", data, extra).data["id"])

    def deliver_raw(self, raw: bytes, folder: str = "inbox") -> str:
        """A message arrives as Exchange files it: its JSON fields and internetMessageHeaders
        come from the RFC 5322 message, an iCalendar invitation, update, cancellation or
        response becomes an eventMessage (the text/calendar part is consumed, not attached),
        and the other non-body parts become attachments."""
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        with self.lock:
            headers = [
                {"name": k, "value": " ".join(str(v).split())} for k, v in parsed.raw_items()
            ]
            sender = (getaddresses([str(parsed.get("From", ""))]) or [("", "")])[0]
            agent = (getaddresses([str(parsed.get("Sender", "") or parsed.get("From", ""))])
                     or [("", "")])[0]  # fmt: skip
            when = _now()
            if parsed.get("Date"):
                with contextlib.suppress(TypeError, ValueError):
                    when = parsedate_to_datetime(str(parsed["Date"])).astimezone(UTC)
            odata_type, meeting, calendar_part = "", "", None
            for part in _leaves(parsed):
                if part.get_content_type() == "text/calendar":
                    found = _meeting_type(part)
                    if found:
                        (odata_type, meeting), calendar_part = found, part
                        break
            text, attachments = _body_and_attachments(parsed, calendar_part)
            data: dict[str, Any] = {
                "subject": str(parsed.get("Subject", "")),
                "body": {"contentType": "text", "content": text},
                "from": _recipient(sender[1], sender[0]),
                "sender": _recipient(agent[1], agent[0]),
                "toRecipients": [_recipient(a, n) for n, a in getaddresses(
                    [str(v) for v in parsed.get_all("To", [])])],
                "ccRecipients": [_recipient(a, n) for n, a in getaddresses(
                    [str(v) for v in parsed.get_all("Cc", [])])],
                "receivedDateTime": _iso(when),
                "sentDateTime": _iso(when),
                "isRead": False,
                "hasAttachments": bool(attachments),
            }  # fmt: skip
            if parsed.get("Message-ID"):
                data["internetMessageId"] = str(parsed["Message-ID"]).strip()
            msg = self._new_message(folder, data, headers)
            msg.odata_type, msg.meeting, msg.raw_headers = odata_type, meeting, True
            msg.attachments = [
                {**a, "id": f"AAMkAtt{i}", "lastModifiedDateTime": _iso(when)}
                for i, a in enumerate(attachments)
            ]
            return str(msg.data["id"])

    def user_edits(
        self, ident: str, *, body: str | None = None, subject: str | None = None,
        to: Iterable[str] | None = None, cc: Iterable[str] | None = None,
    ) -> None:
        with self.lock:
            msg = self.messages[ident]
            if body is not None:
                msg.data["body"] = {"contentType": "text", "content": body}
            if subject is not None:
                msg.data["subject"] = subject
            if to is not None:
                msg.data["toRecipients"] = [_recipient(a) for a in to]
            if cc is not None:
                msg.data["ccRecipients"] = [_recipient(a) for a in cc]
            self._stamp(msg)

    def user_marks(self, ident: str, **props: Any) -> None:
        """Outlook changes what is not content (isRead, flag): a new changeKey all the same."""
        with self.lock:
            msg = self.messages[ident]
            msg.data.update(props)
            self._stamp(msg)

    def user_saves_copy(self, ident: str) -> str:
        """A mail program on Exchange's IMAP saves the draft again: a new item in Drafts (new
        id, the same internetMessageId, taken from the message) and the old one expunged."""
        with self.lock:
            old = self.messages.pop(ident)
            self._left[(old.folder, ident)] = self._bump()
            keep = {k: v for k, v in old.data.items() if k not in ("id", "changeKey",
                                                                   "@odata.etag")}  # fmt: skip
            return str(self._new_message("drafts", keep, old.headers).data["id"])

    def user_moves(self, ident: str, folder: str) -> None:
        """The user drags the item to another folder (the immutable id stays)."""
        with self.lock:
            self._move(self.messages[ident], folder)

    def user_sends(self, ident: str) -> None:
        """The user presses Send in Outlook: same immutable id, now in Sent Items."""
        with self.lock:
            msg = self.messages[ident]
            msg.data["isDraft"] = False
            msg.data["sentDateTime"] = msg.data["receivedDateTime"] = _iso(_now())
            self._move(msg, "sentitems")

    def user_deletes(self, ident: str, *, for_good: bool = False) -> None:
        """To Deleted Items; ``for_good``: Shift+Delete, the item is gone."""
        with self.lock:
            msg = self.messages[ident]
            if for_good:
                self._left[(msg.folder, ident)] = self._bump()
                del self.messages[ident]
            else:
                self._move(msg, "deleteditems")

    def drafts(self) -> list[dict[str, Any]]:
        with self.lock:
            return [
                self._view(m, None) | {"internetMessageHeaders": self._all_headers(m)}
                for m in self.messages.values()
                if m.folder == "drafts"
            ]

    def storm(
        self, count: int, *, status: int = 429, retry_after: str | None = "1", match: str = ""
    ) -> None:
        with self.lock:
            self.storms.append(_Storm(count, status, retry_after, match))

    # --- identity ---------------------------------------------------------------------------

    def _identity(self, method: str, path: str, body: bytes) -> tuple[int, dict[str, str], Any]:
        prefix = f"/{TENANT}"
        if method == "GET" and path == f"{prefix}/v2.0/.well-known/openid-configuration":
            self.counts["GET openid-configuration"] += 1
            base = f"{self.authority}/{TENANT}"
            return (
                200,
                {},
                {
                    "issuer": f"{self.authority}/{TENANT_ID}/v2.0",
                    "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                    "token_endpoint": f"{base}/oauth2/v2.0/token",
                    "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                    "response_types_supported": ["code"],
                },
            )
        form = dict(parse_qsl(body.decode()))
        if method == "POST" and path == f"{prefix}/oauth2/v2.0/devicecode":
            self.counts["POST devicecode"] += 1
            self.token_requests.append(form)
            if "devicecode" in self.sign_in_errors:
                return 400, {}, self.sign_in_errors["devicecode"]
            code = secrets.token_urlsafe(16)
            self._device[code] = 0
            self._device_scopes[code] = form.get("scope", "")
            return (
                200,
                {},
                {
                    "device_code": code,
                    "user_code": "EMUL-8TOR",
                    "expires_in": 900,
                    "interval": 0,
                    "verification_uri": "https://microsoft.com/devicelogin",
                    "message": "To sign in, use a web browser to open the page "
                    "https://microsoft.com/devicelogin and enter the code EMUL-8TOR.",
                },
            )
        if method == "POST" and path == f"{prefix}/oauth2/v2.0/token":
            self.counts["POST token " + form.get("grant_type", "?")] += 1
            with self.lock:
                self.token_requests.append(form)
                return self._token(form)
        raise _Reject(404, "not_found", f"no identity endpoint {path}")

    def _token(self, form: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        grant = form.get("grant_type", "")
        if "token" in self.sign_in_errors:
            return 400, {}, self.sign_in_errors["token"]
        if form.get("client_id") != self.client_id:
            return 400, {}, {"error": "unauthorized_client", "error_description": "AADSTS700016"}
        if grant == "urn:ietf:params:oauth:grant-type:device_code":
            polls = self._device.get(form.get("device_code", ""))
            if polls is None:
                return 400, {}, {"error": "expired_token", "error_description": "AADSTS70019"}
            self._device[form["device_code"]] = polls + 1
            if polls == 0:  # the user has not typed the code yet
                return (
                    400,
                    {},
                    {"error": "authorization_pending", "error_description": "AADSTS70016"},
                )
            del self._device[form["device_code"]]
            form = {**form, "scope": self._device_scopes.pop(form["device_code"])}
        elif grant == "refresh_token":
            if (
                self.refresh_mode == "invalid_grant"
                or form.get("refresh_token") not in self._refresh
            ):
                return (
                    400,
                    {},
                    {
                        "error": "invalid_grant",
                        "error_description": "AADSTS70000: The refresh token was revoked.",
                        "suberror": "bad_token",
                    },
                )
            self._refresh.discard(form["refresh_token"])  # refresh tokens rotate
        else:
            return 400, {}, {"error": "unsupported_grant_type", "error_description": grant}
        scopes = frozenset(form.get("scope", "").split()) - self.withheld_scopes
        access, refresh = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        self._access[access] = (time.time() + self.access_token_lifetime, scopes)
        self._refresh.add(refresh)
        now = int(time.time())
        claims = {
            "iss": f"{self.authority}/{TENANT_ID}/v2.0",
            "aud": self.client_id,
            "tid": TENANT_ID,
            "oid": "00000000-0000-0000-0000-00000000beef",
            "sub": "emulated-subject",
            "preferred_username": self.user,
            "name": self.user_name,
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
        }
        id_token = ".".join(
            [_b64(b'{"alg":"none","typ":"JWT"}'), _b64(json.dumps(claims).encode()), _b64(b"sig")]
        )
        return (
            200,
            {},
            {
                "token_type": "Bearer",
                "scope": " ".join(sorted(scopes - {"offline_access", "openid", "profile"})),
                "expires_in": self.access_token_lifetime,
                "ext_expires_in": self.access_token_lifetime,
                "access_token": access,
                "refresh_token": refresh,
                "id_token": id_token,
                "client_info": _b64(json.dumps({"uid": claims["oid"], "utid": TENANT_ID}).encode()),
            },
        )


def _meeting_type(part: Message) -> tuple[str, str] | None:
    """(@odata.type, meetingMessageType) for an iCalendar part, as Exchange files it."""
    try:
        text = part.get_payload(decode=True).decode("utf-8", "replace")  # type: ignore[union-attr]
    except (AttributeError, LookupError):
        return None
    unfolded = re.sub(r"\r?\n[ \t]", "", text)
    method = re.search(r"^METHOD:(\S+)", unfolded, re.M | re.I)
    if not method:
        return None
    name = method.group(1).upper()
    if name == "REPLY":
        status = re.search(r"PARTSTAT=([A-Z-]+)", unfolded, re.I)
        name = status.group(1).upper() if status else ""
    return MEETING_TYPES.get(name)


def _leaves(part: Message) -> list[Message]:
    """The single parts of a message, depth first; an attached message is one of them."""
    if part.get_content_maintype() != "multipart":
        return [part]
    return [leaf for child in part.get_payload() for leaf in _leaves(child)]  # type: ignore[union-attr]


def _body_and_attachments(
    parsed: Message, calendar_part: Message | None
) -> tuple[str, list[dict[str, Any]]]:
    """The text body (the first text/plain part, else the first text/html one) and the other
    leaf parts as attachments (an attached message is an itemAttachment)."""
    leaves = _leaves(parsed)
    plain = [p for p in leaves if p.get_content_type() == "text/plain" and not p.get_filename()]
    html = [p for p in leaves if p.get_content_type() == "text/html" and not p.get_filename()]
    body = (plain or html or [None])[0]
    text = ""
    if body is not None:
        raw = body.get_payload(decode=True) or b""
        try:  # Exchange shows text in a charset it does not know as UTF-8, never fails on it
            text = raw.decode(body.get_content_charset() or "utf-8", "replace")  # type: ignore[union-attr]
        except LookupError:
            text = raw.decode("utf-8", "replace")  # type: ignore[union-attr]
        if body.get_content_type() == "text/html":
            text = re.sub(r"<[^>]*>", " ", text)
    attachments = []
    for part in leaves:
        if part is body or part is calendar_part:
            continue
        if part.get_content_type() in ("text/plain", "text/html") and not part.get_filename():
            continue  # the other alternative of the body
        item = part.get_content_type() == "message/rfc822"
        attachments.append(
            {
                "@odata.type": "#microsoft.graph."
                + ("itemAttachment" if item else "fileAttachment"),
                "name": part.get_filename() or part.get_content_type(),
                "contentType": part.get_content_type(),
                "size": len(part.as_bytes()),
                "isInline": not str(part.get("Content-Disposition", "")).startswith("attachment"),
            }
        )
    return text.strip(), attachments
