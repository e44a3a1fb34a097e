"""A small Gmail + Google Calendar + OAuth server on loopback, for tests and benches.

It keeps just enough state to behave like the real services for what mailbridge does
(drafts, messages, threads, labels, history ids, calendar events with sync tokens, a token
endpoint) and CHECKS EVERY REQUEST against the discovery documents shipped inside
google-api-python-client: method and path template, required/unknown query parameters,
parameter types and enums, and the JSON body against the request schema (unknown fields are
rejected; fields the document marks required for the method must be there). Anything it does
not recognise is recorded in ``violations``; tests assert the list stays empty, so the
emulator cannot drift from the published API unnoticed.

Test-side helpers act as "the user" or "the world": ``deliver`` (mail arrives),
``user_sends_draft``, ``user_sends_as_new`` (the user's own program sends a copy under a new
Message-ID), ``user_edits_draft``, ``user_deletes_draft``, ``user_deletes_label``,
``add_event``, ``cancel_event`` and fault knobs (``fail_next``, ``latency``,
``expire_history``, ``expire_sync_tokens``, ``revoke_grant``).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import email
import email.message
import email.policy
import email.utils
import itertools
import json
import re
import socket
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import googleapiclient

DOCS = Path(googleapiclient.__file__).parent / "discovery_cache" / "documents"
USER = "me"


class ApiError(Exception):
    def __init__(
        self, status: int, message: str, reason: str = "", headers: dict[str, str] | None = None
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason or {
            400: "badRequest",
            401: "authError",
            404: "notFound",
            410: "fullSyncRequired",
            429: "rateLimitExceeded",
        }.get(status, "backendError")
        self.headers = headers or {}


# --- discovery-document checking ---------------------------------------------------------


@dataclass
class Route:
    method_id: str  # "gmail.users.drafts.create"
    http_method: str
    regex: re.Pattern[str]
    spec: dict[str, Any]
    doc: dict[str, Any]


def _routes(name: str, prefix: str) -> list[Route]:
    doc = json.loads((DOCS / name).read_text())
    routes: list[Route] = []

    def walk(resource: dict[str, Any]) -> None:
        for spec in resource.get("methods", {}).values():
            pattern = re.escape(prefix + spec["path"])
            # {+name} may hold slashes; {name} may not.
            pattern = re.sub(r"\\\{\\\+(\w+)\\\}", r"(?P<\1>.+)", pattern)
            pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", pattern)
            routes.append(
                Route(spec["id"], spec["httpMethod"], re.compile(pattern + "$"), spec, doc)
            )
        for sub in resource.get("resources", {}).values():
            walk(sub)

    walk(doc)
    return routes


ROUTES = _routes("gmail.v1.json", "/") + _routes("calendar.v3.json", "/calendar/v3/")


def _check_scalar(value: str, spec: dict[str, Any], where: str) -> list[str]:
    problems = []
    kind = spec.get("type", "string")
    if kind == "boolean" and value not in ("true", "false"):
        problems.append(f"{where}: {value!r} is not a boolean")
    if kind == "integer" and not re.fullmatch(r"-?\d+", value):
        problems.append(f"{where}: {value!r} is not an integer")
    if spec.get("format") in ("uint64", "int64") and not re.fullmatch(r"-?\d+", value):
        problems.append(f"{where}: {value!r} is not a {spec['format']}")
    if spec.get("format") == "date-time" and not _is_datetime(value):
        problems.append(f"{where}: {value!r} is not an RFC 3339 date-time")
    if "enum" in spec and value not in spec["enum"]:
        problems.append(f"{where}: {value!r} not one of {spec['enum']}")
    return problems


def _is_datetime(value: str) -> bool:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return parsed.tzinfo is not None


def check_query(route: Route, query: dict[str, list[str]]) -> list[str]:
    params = {**route.doc.get("parameters", {}), **route.spec.get("parameters", {})}
    problems = []
    for name, spec in params.items():
        if spec.get("location") == "query" and spec.get("required") and name not in query:
            problems.append(f"{route.method_id}: missing required parameter {name}")
    for name, values in query.items():
        spec = params.get(name)
        if spec is None or spec.get("location") != "query":
            problems.append(f"{route.method_id}: unknown query parameter {name}")
            continue
        if len(values) > 1 and not spec.get("repeated"):
            problems.append(f"{route.method_id}: parameter {name} given {len(values)} times")
        for value in values:
            problems += _check_scalar(value, spec, f"{route.method_id}?{name}")
    return problems


def check_body(
    doc: dict[str, Any], schema: dict[str, Any], value: Any, where: str, method: str = ""
) -> list[str]:
    """Problems of ``value`` against ``schema``; ``method`` ("gmail.users.labels.create")
    turns on the per-method required fields (``annotations.required``)."""
    method = method or where
    if "$ref" in schema:
        return check_body(doc, doc["schemas"][schema["$ref"]], value, where, method)
    kind = schema.get("type")
    if kind == "object":
        if not isinstance(value, dict):
            return [f"{where}: expected an object"]
        problems = []
        props = schema.get("properties", {})
        for key, spec in props.items():
            if method in spec.get("annotations", {}).get("required", []) and key not in value:
                problems.append(f"{where}: missing required field {key!r}")
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            if key in props:
                problems += check_body(doc, props[key], item, f"{where}.{key}", method)
            elif extra is not None:
                problems += check_body(doc, extra, item, f"{where}.{key}", method)
            else:
                problems.append(f"{where}: unknown field {key!r}")
        return problems
    if kind == "array":
        if not isinstance(value, list):
            return [f"{where}: expected an array"]
        return [
            p
            for i, item in enumerate(value)
            for p in check_body(doc, schema["items"], item, f"{where}[{i}]", method)
        ]
    if kind == "string":
        if not isinstance(value, str):
            return [f"{where}: expected a string"]
        if schema.get("format") == "byte":
            try:
                base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
            except (binascii.Error, ValueError):
                return [f"{where}: not base64"]
        return _check_scalar(value, schema, where) if "enum" in schema or "format" in schema else []
    if kind == "boolean" and not isinstance(value, bool):
        return [f"{where}: expected a boolean"]
    if kind == "integer" and not (isinstance(value, int) and not isinstance(value, bool)):
        return [f"{where}: expected an integer"]
    return []


# --- state --------------------------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Message:
    id: str
    thread_id: str
    labels: set[str]
    raw: bytes
    internal_date: int  # ms
    history_id: int

    @property
    def parsed(self) -> EmailMessage:
        return email.message_from_bytes(self.raw, policy=email.policy.default)  # type: ignore[return-value]

    def header(self, name: str) -> str:
        return str(self.parsed.get(name, "") or "")

    def snippet(self) -> str:
        part = self.parsed.get_body(("plain",))
        if part is None:
            return ""
        data = part.get_payload(decode=True)
        if not isinstance(data, bytes):
            return ""
        try:  # Gmail shows text in a charset it does not know as UTF-8, never fails on it
            text = data.decode(part.get_content_charset() or "utf-8", "replace")
        except LookupError:
            text = data.decode("utf-8", "replace")
        return " ".join(text.split())[:200]


@dataclass
class CalendarState:
    events: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> event JSON
    changed: dict[str, int] = field(default_factory=dict)  # id -> change sequence


@dataclass
class Call:
    method_id: str
    http_method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    at: float
    status: int = 0


SYSTEM_LABELS = (
    "INBOX", "SENT", "DRAFT", "TRASH", "SPAM", "UNREAD", "STARRED", "IMPORTANT",
    "CATEGORY_PERSONAL", "CATEGORY_SOCIAL", "CATEGORY_PROMOTIONS", "CATEGORY_UPDATES",
    "CATEGORY_FORUMS",
)  # fmt: skip


def _subject_key(subject: str) -> str:
    return re.sub(r"^\s*((re|fwd?|aw|sv)\s*:\s*)+", "", subject, flags=re.I).strip().lower()


class GoogleEmulator:
    def __init__(self, address: str = "jordan.lee@gmail.com") -> None:
        self.address = address
        self.lock = threading.RLock()
        self._ids = itertools.count(0x18F0000000000000)
        self.history_id = 1000
        self.min_history_id = 0
        self.messages: dict[str, Message] = {}
        self.drafts: dict[str, str] = {}  # draft id -> message id
        self.labels: dict[str, dict[str, Any]] = {
            name: {"id": name, "name": name, "type": "system"} for name in SYSTEM_LABELS
        }
        self.history: list[tuple[int, str, set[str]]] = []  # (history id, message id, labels)
        # The other history record types, as Gmail keeps them: (history id, type, message id,
        # label ids) with type messageDeleted, labelAdded or labelRemoved.
        self.changes: list[tuple[int, str, str, tuple[str, ...]]] = []
        self.calendars: dict[str, CalendarState] = {"primary": CalendarState()}
        self.change_seq = 0
        self.min_sync_seq = 0
        self.page_size = 250
        # OAuth
        self.client_id = "client-123.apps.googleusercontent.com"
        self.client_secret = "secret-xyz"
        self.refresh_tokens = {"refresh-1"}
        self.access_tokens: set[str] = set()
        self.codes: dict[str, str] = {}
        self.grant_revoked = False
        # Sign-in failures to play: "auth" sends the browser back with ?error=VALUE (as the
        # consent page does on Cancel or a blocked app); "token" answers the token endpoint
        # with this OAuth error body (RFC 6749 section 5.2) and HTTP 400.
        self.sign_in_errors: dict[str, Any] = {}
        # The scopes the user granted; None grants every scope. When set, a method none of
        # whose scopes (per the discovery document) was granted gets Google's 403.
        self.granted: set[str] | None = None
        # Records and knobs
        self.calls: list[Call] = []
        self.counts: Counter[str] = Counter()
        self.violations: list[str] = []
        self.token_requests = 0
        self._faults: list[tuple[int, float | None]] = []
        # Requests whose answer is lost AFTER the work was done: (method id, "drop" | status).
        self._losses: list[tuple[str, str]] = []
        self.latency = 0.0
        self.server: ThreadingHTTPServer | None = None

    # -- lifecycle
    def start(self) -> GoogleEmulator:
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                # Headers and body go out in two writes: without this, Nagle plus delayed ACK
                # adds 40 ms to every keep-alive request.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def do_GET(self) -> None:
                emulator._handle(self)

            do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def calendar_endpoint(self) -> str:
        return self.url + "/calendar/v3/"

    def client_secrets(self, path: Path) -> Path:
        path.write_text(
            json.dumps(
                {
                    "installed": {
                        "client_id": self.client_id,
                        "client_secret": self.client_secret,
                        "auth_uri": self.url + "/auth",
                        "token_uri": self.url + "/token",
                        "redirect_uris": ["http://localhost"],
                    }
                }
            )
        )
        return path

    # -- knobs
    def fail_next(self, status: int, count: int, retry_after: float | None = None) -> None:
        with self.lock:
            self._faults += [(status, retry_after)] * count

    def lose_answer(self, method_id: str, how: str = "drop", count: int = 1) -> None:
        """Carry out the next ``count`` calls of ``method_id`` ("gmail.users.drafts.create";
        "*" for any), then lose the answer: "drop" closes the connection unanswered,
        "500"/"503" answers that status as if the work had failed."""
        with self.lock:
            self._losses += [(method_id, how)] * count

    def expire_history(self) -> None:
        with self.lock:
            self.min_history_id = self.history_id + 1

    def expire_sync_tokens(self) -> None:
        with self.lock:
            self.min_sync_seq = self.change_seq + 1

    def revoke_grant(self) -> None:
        with self.lock:
            self.grant_revoked = True
            self.access_tokens.clear()

    def expire_access_tokens(self) -> None:
        with self.lock:
            self.access_tokens.clear()

    def api_calls(self) -> list[Call]:
        return [c for c in self.calls if not c.method_id.startswith("oauth.")]

    # -- the world: mail
    def _next_id(self) -> str:
        return format(next(self._ids), "x")

    def _bump(self, message: Message) -> None:
        self.history_id += 1
        message.history_id = self.history_id
        self.history.append((self.history_id, message.id, set(message.labels)))

    def _change(self, kind: str, message: Message, labels: Iterable[str] = ()) -> None:
        """A history record other than messageAdded (users.history: History resource)."""
        self.history_id += 1
        message.history_id = self.history_id
        self.changes.append((self.history_id, kind, message.id, tuple(sorted(labels))))

    def _thread_for(self, raw: bytes, thread_id: str | None) -> str:
        """Gmail's rule: a thread is kept when the message refers to one of its messages by
        In-Reply-To/References and the subject matches; otherwise a new thread starts."""
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        refs = set(
            re.findall(r"<[^>]+>", f"{msg.get('In-Reply-To', '')} {msg.get('References', '')}")
        )
        subject = _subject_key(str(msg.get("Subject", "")))
        candidates = (
            [thread_id] if thread_id else sorted({m.thread_id for m in self.messages.values()})
        )
        for tid in candidates:
            members = [m for m in self.messages.values() if m.thread_id == tid]
            if any(
                m.header("Message-ID") in refs and _subject_key(m.header("Subject")) == subject
                for m in members
            ):
                return tid
        return ""

    def _add_message(self, raw: bytes, labels: set[str], thread_id: str | None = None) -> Message:
        mid = self._next_id()
        tid = self._thread_for(raw, thread_id) or mid
        msg = Message(mid, tid, labels, raw, int(time.time() * 1000), 0)
        self.messages[mid] = msg
        self._bump(msg)
        return msg

    def deliver(self, raw: bytes, labels: tuple[str, ...] = ("INBOX", "UNREAD")) -> str:
        with self.lock:
            return self._add_message(raw, set(labels)).id

    def user_sends_draft(self, draft_id: str) -> str:
        """As the Gmail UI does: the draft's message keeps its id and thread, DRAFT becomes SENT."""
        with self.lock:
            msg = self.messages[self.drafts.pop(draft_id)]
            msg.labels = (msg.labels - {"DRAFT"}) | {"SENT"}
            self._bump(msg)
            return msg.id

    def user_sends_as_new(self, draft_id: str, message_id: str | None = None) -> str:
        """As a mail program that sends its own copy: the draft is deleted and a new SENT
        message with the same content but a new Message-ID (and a new Gmail id) appears,
        threaded by Gmail's usual rule."""
        with self.lock:
            old = self.messages.pop(self.drafts.pop(draft_id))
            self._change("messageDeleted", old)
            copy = old.parsed
            del copy["Message-ID"]
            copy["Message-ID"] = message_id or email.utils.make_msgid(domain="client.test")
            return self._add_message(copy.as_bytes(), {"SENT"}).id

    def user_relabels(self, message_id: str, add: Iterable[str] = (),
                      remove: Iterable[str] = ()) -> None:
        """Archive (remove INBOX), "Not spam" (remove SPAM, add INBOX), a label, as the user."""
        with self.lock:
            msg = self.messages[message_id]
            if added := set(add) - msg.labels:
                msg.labels |= added
                self._change("labelAdded", msg, added)
            if removed := set(remove) & msg.labels:
                msg.labels -= removed
                self._change("labelRemoved", msg, removed)

    def user_deletes_label(self, label_id: str) -> None:
        """Gmail removes a deleted label from every message that had it."""
        with self.lock:
            del self.labels[label_id]
            for msg in self.messages.values():
                msg.labels.discard(label_id)

    def labels_named(self, name: str) -> list[str]:
        with self.lock:
            return [i for i, label in self.labels.items() if label["name"] == name]

    def user_edits_draft(self, draft_id: str, raw: bytes) -> str:
        with self.lock:
            old = self.messages.pop(self.drafts[draft_id])
            self._change("messageDeleted", old)
            new = self._add_message(raw, {"DRAFT"}, old.thread_id)
            self.drafts[draft_id] = new.id
            return new.id

    def user_saves_over_imap(self, draft_id: str, raw: bytes) -> str:
        """A mail program on Gmail's IMAP saves the draft again: it APPENDs a new message to
        [Gmail]/Drafts (a new draft, with a new draft id) and expunges the old one."""
        with self.lock:
            old = self.messages.pop(self.drafts.pop(draft_id))
            self._change("messageDeleted", old)
            new_id = "r" + self._next_id()
            self.drafts[new_id] = self._add_message(raw, {"DRAFT"}, old.thread_id).id
            return new_id

    def user_labels_draft(self, draft_id: str, label: str) -> None:
        """The user stars (or otherwise labels) a draft: the same message, one label more."""
        with self.lock:
            message = self.messages[self.drafts[draft_id]]
            message.labels = set(message.labels) | {label}
            self._change("labelAdded", message, [label])

    def user_deletes_draft(self, draft_id: str) -> None:
        with self.lock:
            self._change("messageDeleted", self.messages.pop(self.drafts.pop(draft_id)))

    def user_trashes_draft(self, draft_id: str) -> None:
        """The user's program moves the draft to Trash. It stays a draft, under its draft id,
        with the TRASH label: drafts.list leaves out "drafts from SPAM and TRASH" unless
        includeSpamTrash is set, and drafts.delete "does not simply trash it"
        (https://developers.google.com/gmail/api/reference/rest/v1/users.drafts)."""
        with self.lock:
            message = self.messages[self.drafts[draft_id]]
            message.labels = set(message.labels) | {"TRASH"}
            self._change("labelAdded", message, ["TRASH"])

    def draft_messages(self) -> dict[str, EmailMessage]:
        with self.lock:
            return {d: self.messages[m].parsed for d, m in self.drafts.items()
                    if not self.messages[m].labels & {"TRASH", "SPAM"}}  # fmt: skip

    # -- the world: calendar
    def add_event(self, event: dict[str, Any], calendar: str = "primary") -> dict[str, Any]:
        with self.lock:
            cal = self.calendars.setdefault(calendar, CalendarState())
            event = {"kind": "calendar#event", "status": "confirmed", "etag": '"1"', **event}
            event.setdefault("iCalUID", event["id"].split("_")[0] + "@google.com")
            self.change_seq += 1
            cal.events[event["id"]] = event
            cal.changed[event["id"]] = self.change_seq
            return event

    def add_recurring(
        self, series_id: str, starts: list[datetime], minutes: int, **fields: Any
    ) -> list[str]:
        """The instances singleEvents=true returns, each keyed by its original start."""
        ids = []
        for start in starts:
            stamp = start.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
            end = datetime.fromtimestamp(start.timestamp() + minutes * 60, UTC)
            self.add_event(
                {
                    "id": f"{series_id}_{stamp}",
                    "recurringEventId": series_id,
                    "originalStartTime": {"dateTime": start.isoformat()},
                    "start": {"dateTime": start.isoformat()},
                    "end": {"dateTime": end.isoformat()},
                    **fields,
                }
            )
            ids.append(f"{series_id}_{stamp}")
        return ids

    def cancel_event(self, event_id: str, calendar: str = "primary") -> None:
        with self.lock:
            cal = self.calendars[calendar]
            old = cal.events[event_id]
            # Google keeps only a stub of a deleted event for incremental sync.
            stub = {
                k: old[k]
                for k in ("kind", "id", "etag", "recurringEventId", "originalStartTime")
                if k in old
            }
            self.change_seq += 1
            cal.events[event_id] = {**stub, "status": "cancelled"}
            cal.changed[event_id] = self.change_seq

    # -- HTTP
    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        parsed = urllib.parse.urlsplit(request.path)
        length = int(request.headers.get("Content-Length") or 0)
        payload = request.rfile.read(length) if length else b""
        if len(payload) < length:
            # The client went away mid-request (killed between the headers and the body): a
            # server never acts on half a request, and it is no violation of the API.
            request.close_connection = True
            return
        status, body, headers = 200, b"", {"Content-Type": "application/json"}
        try:
            if self.latency:
                time.sleep(self.latency)
            if parsed.path in ("/token", "/auth"):
                status, body, headers = self._oauth(request, parsed, payload)
            else:
                result = self._api(request, parsed, payload)
                if result is None:
                    status = 204
                else:
                    body = json.dumps(result).encode()
        except ApiError as exc:
            status = exc.status
            headers.update(exc.headers)
            body = json.dumps(
                {
                    "error": {
                        "code": exc.status,
                        "message": exc.message,
                        "errors": [{"reason": exc.reason, "message": exc.message}],
                    }
                }
            ).encode()
        except Exception as exc:  # noqa: BLE001 - an emulator bug must show up, not hang the client
            self.violations.append(f"emulator crashed on {request.command} {request.path}: {exc!r}")
            status, body = 500, b'{"error": {"code": 500, "message": "emulator error"}}'
        with self.lock:
            done = self.calls[-1].method_id if self.calls else ""
            loss = (
                next((x for x in self._losses if x[0] in (done, "*")), None)
                if status < 300 and parsed.path not in ("/token", "/auth")
                else None
            )
            if loss is not None:
                self._losses.remove(loss)
            if self.calls and self.calls[-1].status == 0:
                self.calls[-1].status = status
        if loss is not None and loss[1] == "drop":
            # The work is done; the client never hears of it.
            request.close_connection = True
            with contextlib.suppress(OSError):
                request.connection.shutdown(socket.SHUT_RDWR)
            return
        if loss is not None:
            status = int(loss[1])
            body = json.dumps({"error": {"code": status, "message": "lost answer",
                                         "errors": [{"reason": "backendError"}]}}).encode()
        request.send_response(status)
        for key, value in headers.items():
            request.send_header(key, value)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    def _oauth(
        self, request: BaseHTTPRequestHandler, parsed: urllib.parse.SplitResult, payload: bytes
    ) -> tuple[int, bytes, dict[str, str]]:
        with self.lock:
            self.calls.append(
                Call(
                    "oauth" + parsed.path.replace("/", "."),
                    request.command,
                    parsed.path,
                    {},
                    None,
                    time.monotonic(),
                )
            )
            if parsed.path == "/auth" and "auth" in self.sign_in_errors:
                query = dict(urllib.parse.parse_qsl(parsed.query))
                answer = {"error": self.sign_in_errors["auth"], "state": query.get("state", "")}
                target = query["redirect_uri"] + "?" + urllib.parse.urlencode(answer)
                return 302, b"", {"Location": target}
            if parsed.path == "/auth":  # the user consents at once
                query = dict(urllib.parse.parse_qsl(parsed.query))
                code = f"code-{len(self.codes)}"
                self.codes[code] = query.get("scope", "")
                target = (
                    query["redirect_uri"]
                    + "?"
                    + urllib.parse.urlencode(
                        {
                            "code": code,
                            "state": query.get("state", ""),
                            "scope": query.get("scope", ""),
                        }
                    )
                )
                return 302, b"", {"Location": target}
            self.token_requests += 1
            if "token" in self.sign_in_errors:
                body = json.dumps(self.sign_in_errors["token"]).encode()
                return 400, body, {"Content-Type": "application/json"}
            form = dict(urllib.parse.parse_qsl(payload.decode()))
            basic = request.headers.get("Authorization", "")
            if basic.startswith("Basic "):  # RFC 6749 2.3.1: the client may authenticate either way
                user, _, password = base64.b64decode(basic[6:]).decode().partition(":")
                form.setdefault("client_id", urllib.parse.unquote(user))
                form.setdefault("client_secret", urllib.parse.unquote(password))
            if (form.get("client_id"), form.get("client_secret")) != (
                self.client_id,
                self.client_secret,
            ):
                return (
                    401,
                    json.dumps({"error": "invalid_client"}).encode(),
                    {"Content-Type": "application/json"},
                )
            grant = form.get("grant_type")
            fresh = f"at-{next(self._ids):x}"
            answer: dict[str, Any] = {
                "access_token": fresh,
                "expires_in": 3599,
                "token_type": "Bearer",
            }
            if grant == "authorization_code" and form.get("code") in self.codes:
                answer["scope"] = self.codes.pop(form["code"])
                answer["refresh_token"] = f"refresh-{len(self.refresh_tokens) + 1}"
                self.refresh_tokens.add(answer["refresh_token"])
            elif (
                grant != "refresh_token"
                or self.grant_revoked
                or form.get("refresh_token") not in self.refresh_tokens
            ):
                error = {
                    "error": "invalid_grant",
                    "error_description": "Token has been expired or revoked.",
                }
                return 400, json.dumps(error).encode(), {"Content-Type": "application/json"}
            self.access_tokens.add(fresh)
            return 200, json.dumps(answer).encode(), {"Content-Type": "application/json"}

    def _api(
        self, request: BaseHTTPRequestHandler, parsed: urllib.parse.SplitResult, payload: bytes
    ) -> Any:
        query = urllib.parse.parse_qs(parsed.query, keep_blank_values=True)
        route, params = None, {}
        for candidate in ROUTES:
            match = candidate.regex.match(parsed.path)
            if match and candidate.http_method == request.command:
                route, params = (
                    candidate,
                    {k: urllib.parse.unquote(v) for k, v in match.groupdict().items()},
                )
                break
        body = json.loads(payload) if payload else None
        with self.lock:
            self.calls.append(
                Call(
                    route.method_id if route else "?",
                    request.command,
                    parsed.path,
                    query,
                    body,
                    time.monotonic(),
                )
            )
            if route is None:
                self.violations.append(f"no such method: {request.command} {parsed.path}")
                raise ApiError(404, "Not Found")
            self.counts[route.method_id] += 1
            problems = check_query(route, query)
            if "request" in route.spec:
                problems += check_body(
                    route.doc, route.spec["request"], body, route.method_id, route.method_id
                )
            elif payload:
                problems.append(f"{route.method_id}: takes no body")
            if problems:
                self.violations += problems
                raise ApiError(400, "; ".join(problems), "invalid")
            auth = request.headers.get("Authorization", "")
            if not auth.startswith("Bearer ") or auth[7:] not in self.access_tokens:
                raise ApiError(
                    401,
                    "Request had invalid authentication credentials.",
                    "authError",
                    {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'},
                )
            if self.granted is not None and not set(route.spec.get("scopes", [])) & self.granted:
                why = "Request had insufficient authentication scopes."
                raise ApiError(403, why, "insufficientPermissions")
            if self._faults:
                status, retry_after = self._faults.pop(0)
                raise ApiError(
                    status,
                    "Injected fault",
                    headers=(
                        {"Retry-After": str(int(retry_after))} if retry_after is not None else {}
                    ),
                )
            handler = getattr(self, "_" + route.method_id.replace(".", "_"), None)
            if handler is None:
                raise ApiError(501, f"emulator does not implement {route.method_id}")
            single = {k: v[0] for k, v in query.items()}
            single.update(params)
            answer = handler(single, query, body)
            if "fields" in single and answer is not None:
                answer = partial_response(answer, parse_fields(single["fields"]))
            return answer

    # -- Gmail
    def _search(self, q: str, pool: list[Message]) -> list[Message]:
        result = pool
        for term in q.split():
            key, _, value = term.partition(":")
            if key == "rfc822msgid":
                want = value.strip("<>")
                result = [m for m in result if m.header("Message-ID").strip("<>") == want]
            elif key == "after":
                day = datetime.strptime(value, "%Y/%m/%d").replace(tzinfo=UTC)
                result = [m for m in result if m.internal_date >= day.timestamp() * 1000]
            elif key == "in" and value.upper() in ("INBOX", "SENT", "DRAFT"):
                result = [m for m in result if value.upper() in m.labels]
            elif key == "to":
                result = [m for m in result if value.lower() in _recipients(m)]
            else:
                self.violations.append(f"emulator does not understand the search term {term!r}")
        return sorted(result, key=lambda m: -m.internal_date)

    def _page(self, items: list[Any], token: str | None, size: int) -> tuple[list[Any], str | None]:
        start = int(token or 0)
        end = start + size
        return items[start:end], (str(end) if end < len(items) else None)

    def _message_json(self, msg: Message, fmt: str, wanted: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": msg.id,
            "threadId": msg.thread_id,
            "labelIds": sorted(msg.labels),
            "historyId": str(msg.history_id),
            "internalDate": str(msg.internal_date),
            "sizeEstimate": len(msg.raw),
            "snippet": msg.snippet(),
        }
        if fmt == "raw":
            out["raw"] = b64url(msg.raw)
        elif fmt == "metadata":
            lower = {w.lower() for w in wanted}
            headers = [
                {"name": k, "value": v}
                for k, v in _raw_headers(msg.parsed)
                if not lower or k.lower() in lower
            ]
            out["payload"] = {"mimeType": msg.parsed.get_content_type(), "headers": headers}
        elif fmt == "full":
            out["payload"] = message_part(msg.parsed, "")
        return out

    def _get_message(self, mid: str) -> Message:
        if mid not in self.messages:
            raise ApiError(404, "Requested entity was not found.")
        return self.messages[mid]

    def _gmail_users_getProfile(self, p: dict[str, str], q: Any, body: Any) -> Any:
        return {
            "emailAddress": self.address,
            "messagesTotal": len(self.messages),
            "threadsTotal": len({m.thread_id for m in self.messages.values()}),
            "historyId": str(self.history_id),
        }

    def _gmail_users_messages_list(self, p: dict[str, str], q: Any, body: Any) -> Any:
        trash = p.get("includeSpamTrash") == "true"
        pool = [
            m
            for m in self.messages.values()
            if "DRAFT" not in m.labels and (trash or not m.labels & {"TRASH", "SPAM"})
        ]
        found = self._search(p.get("q", ""), pool)
        page, token = self._page(found, p.get("pageToken"), int(p.get("maxResults", 100)))
        out: dict[str, Any] = {"resultSizeEstimate": len(found)}
        if page:
            out["messages"] = [{"id": m.id, "threadId": m.thread_id} for m in page]
        if token:
            out["nextPageToken"] = token
        return out

    def _gmail_users_messages_get(self, p: dict[str, str], q: Any, body: Any) -> Any:
        return self._message_json(
            self._get_message(p["id"]), p.get("format", "full"), q.get("metadataHeaders", [])
        )

    def _gmail_users_threads_get(self, p: dict[str, str], q: Any, body: Any) -> Any:
        members = [m for m in self.messages.values() if m.thread_id == p["id"]]
        if not members:
            raise ApiError(404, "Requested entity was not found.")
        fmt, wanted = p.get("format", "full"), q.get("metadataHeaders", [])
        return {"id": p["id"], "messages": [self._message_json(m, fmt, wanted) for m in members]}

    def _gmail_users_history_list(self, p: dict[str, str], q: Any, body: Any) -> Any:
        start = int(p["startHistoryId"])
        if start < self.min_history_id:
            raise ApiError(404, "Requested entity was not found.")
        types = q.get(
            "historyTypes", ["messageAdded", "messageDeleted", "labelAdded", "labelRemoved"]
        )
        label = p.get("labelId")

        def brief(mid: str, labels: Iterable[str]) -> dict[str, Any]:
            return {
                "id": mid,
                "threadId": self.messages[mid].thread_id if mid in self.messages else mid,
                "labelIds": sorted(labels),
            }

        dated: list[tuple[int, dict[str, Any]]] = []
        if "messageAdded" in types:
            seen: set[str] = set()
            for hid, mid, labels in self.history:
                if hid > start and (label is None or label in labels) and mid not in seen:
                    seen.add(mid)
                    msg = brief(mid, labels)
                    added = {"messagesAdded": [{"message": msg}]}
                    dated.append((hid, {"id": str(hid), "messages": [msg], **added}))
        fields = {"messageDeleted": "messagesDeleted", "labelAdded": "labelsAdded",
                  "labelRemoved": "labelsRemoved"}  # fmt: skip
        for hid, kind, mid, changed in self.changes:
            current = self.messages[mid].labels if mid in self.messages else set()
            if hid <= start or kind not in types or (label is not None and label not in current):
                continue
            msg = brief(mid, current)
            entry: dict[str, Any] = {"message": msg}
            if kind != "messageDeleted":
                entry["labelIds"] = list(changed)
            dated.append((hid, {"id": str(hid), "messages": [msg], fields[kind]: [entry]}))
        records = [record for _, record in sorted(dated, key=lambda item: item[0])]
        page, token = self._page(records, p.get("pageToken"), int(p.get("maxResults", 100)))
        out: dict[str, Any] = {"historyId": str(self.history_id)}
        if page:
            out["history"] = page
        if token:
            out["nextPageToken"] = token
        return out

    def _draft_json(self, draft_id: str, fmt: str = "minimal") -> dict[str, Any]:
        return {
            "id": draft_id,
            "message": self._message_json(self.messages[self.drafts[draft_id]], fmt, []),
        }

    def _new_draft_message(self, body: Any) -> Message:
        message = body.get("message") or {}
        if "raw" not in message:
            raise ApiError(400, "Missing message raw")
        labels = set(message.get("labelIds", []))
        for label in labels:
            # Gmail answers 400 "Invalid label" for an id that is not (or no longer) there.
            if label not in self.labels:
                raise ApiError(400, f"Invalid label: {label}", "invalidArgument")
            # "Draft messages cannot have any label other than the DRAFT system label"
            # (https://developers.google.com/gmail/api/guides/drafts).
            if label != "DRAFT":
                self.violations.append(f"a draft given the label {label}")
                raise ApiError(400, f"Invalid label: {label}", "invalidArgument")
        return self._add_message(
            unb64url(message["raw"]), {"DRAFT"} | labels, message.get("threadId")
        )

    def _gmail_users_drafts_create(self, p: dict[str, str], q: Any, body: Any) -> Any:
        draft_id = "r" + self._next_id()
        self.drafts[draft_id] = self._new_draft_message(body).id
        return self._draft_json(draft_id)

    def _gmail_users_drafts_update(self, p: dict[str, str], q: Any, body: Any) -> Any:
        if p["id"] not in self.drafts:
            raise ApiError(404, "Requested entity was not found.")
        old = self.messages.pop(self.drafts[p["id"]])
        self._change("messageDeleted", old)
        body.setdefault("message", {}).setdefault("threadId", old.thread_id)
        self.drafts[p["id"]] = self._new_draft_message(body).id
        return self._draft_json(p["id"])

    def _gmail_users_drafts_get(self, p: dict[str, str], q: Any, body: Any) -> Any:
        if p["id"] not in self.drafts:
            raise ApiError(404, "Requested entity was not found.")
        return self._draft_json(p["id"], p.get("format", "full"))

    def _gmail_users_drafts_delete(self, p: dict[str, str], q: Any, body: Any) -> Any:
        if p["id"] not in self.drafts:
            raise ApiError(404, "Requested entity was not found.")
        self._change("messageDeleted", self.messages.pop(self.drafts.pop(p["id"])))
        return None

    def _gmail_users_labels_list(self, p: dict[str, str], q: Any, body: Any) -> Any:
        return {"labels": list(self.labels.values())}

    def _gmail_users_labels_create(self, p: dict[str, str], q: Any, body: Any) -> Any:
        name = body["name"]
        if any(label["name"].casefold() == name.casefold() for label in self.labels.values()):
            raise ApiError(409, "Label name exists or conflicts", "alreadyExists")
        label_id = f"Label_{next(self._ids) % 10**6}"  # never reused, as in Gmail
        self.labels[label_id] = {**body, "id": label_id, "type": "user"}
        return self.labels[label_id]

    def _gmail_users_drafts_list(self, p: dict[str, str], q: Any, body: Any) -> Any:
        trash = p.get("includeSpamTrash") == "true"
        by_message = {m: d for d, m in self.drafts.items()
                      if trash or not self.messages[m].labels & {"TRASH", "SPAM"}}  # fmt: skip
        found = self._search(p.get("q", ""), [self.messages[m] for m in by_message])
        page, token = self._page(found, p.get("pageToken"), int(p.get("maxResults", 100)))
        out: dict[str, Any] = {"resultSizeEstimate": len(found)}
        if page:
            out["drafts"] = [
                {"id": by_message[m.id], "message": {"id": m.id, "threadId": m.thread_id}}
                for m in page
            ]
        if token:
            out["nextPageToken"] = token
        return out

    # -- Calendar
    def _calendar_events_list(self, p: dict[str, str], q: Any, body: Any) -> Any:
        cal = self.calendars.get(p["calendarId"])
        if cal is None:
            raise ApiError(404, "Not Found")
        token = p.get("syncToken")
        if token is not None:
            for forbidden in ("timeMin", "timeMax", "q", "orderBy", "iCalUID", "updatedMin"):
                if forbidden in p:
                    self.violations.append(f"events.list: {forbidden} given with syncToken")
                    raise ApiError(400, f"{forbidden} is not allowed with syncToken", "invalid")
            since = int(token.rsplit("-", 1)[1])
            if since < self.min_sync_seq:
                raise ApiError(410, "Sync token is no longer valid, a full sync is required.")
            items = [e for i, e in cal.events.items() if cal.changed[i] > since]
        else:
            show_deleted = p.get("showDeleted") == "true"
            lo, hi = p.get("timeMin"), p.get("timeMax")
            items = [
                e
                for e in cal.events.values()
                if (show_deleted or e.get("status") != "cancelled")
                and (lo is None or _when(e["end"]) > _parse(lo))
                and (hi is None or _when(e["start"]) < _parse(hi))
            ]
        if p.get("singleEvents") != "true" and any("recurringEventId" in e for e in items):
            self.violations.append(
                "events.list without singleEvents=true: series are not expanded here"
            )
        page, next_page = self._page(
            items, p.get("pageToken"), min(int(p.get("maxResults", 250)), self.page_size)
        )
        out: dict[str, Any] = {"kind": "calendar#events", "items": page, "timeZone": "UTC"}
        if next_page:
            out["nextPageToken"] = next_page
        else:
            out["nextSyncToken"] = f"sync-{self.change_seq}"
        return out


def _raw_headers(part: email.message.Message) -> list[tuple[str, str]]:
    """Header fields as Gmail reports them: every one, in order, one line each."""
    return [(k, " ".join(str(v).split())) for k, v in part.items()]


def message_part(part: email.message.Message, part_id: str) -> dict[str, Any]:
    """A MessagePart of format=full (users.messages reference): the MIME tree with each part's
    type, headers and body; a leaf with a file name has an attachmentId instead of data."""
    out: dict[str, Any] = {
        "partId": part_id,
        "mimeType": part.get_content_type(),
        "filename": part.get_filename() or "",
        "headers": [{"name": k, "value": v} for k, v in _raw_headers(part)],
    }
    children = part.get_payload() if part.is_multipart() else None
    if part.get_content_maintype() == "multipart" and isinstance(children, list):
        out["body"] = {"size": 0}
        out["parts"] = [
            message_part(child, f"{part_id}.{i}" if part_id else str(i))
            for i, child in enumerate(children)
        ]
        return out
    if isinstance(children, list):  # message/rfc822: its bytes, like any attachment
        data = b"".join(c.as_bytes() for c in children)
    else:
        data = part.get_payload(decode=True) or b""
    if out["filename"]:
        out["body"] = {"attachmentId": f"att-{part_id or 'root'}", "size": len(data)}
    else:
        out["body"] = {"size": len(data), "data": b64url(data)}
    return out


def parse_fields(text: str) -> dict[str, Any]:
    """A partial-response selector ("a,b(c,d/e)") as a tree; an empty tree means everything."""
    tree: dict[str, Any] = {}
    stack = [tree]
    name = ""

    def flush() -> None:
        nonlocal name
        if name.strip():
            node = stack[-1]
            for step in name.strip().split("/"):
                node = node.setdefault(step, {})
        name = ""

    for ch in text:
        if ch == ",":
            flush()
        elif ch == "(":
            key = name.strip()
            flush()
            node = stack[-1]
            for step in key.split("/"):
                node = node[step]
            stack.append(node)
        elif ch == ")":
            flush()
            stack.pop()
        else:
            name += ch
    flush()
    return tree


def partial_response(value: Any, tree: dict[str, Any]) -> Any:
    """Keep only the selected fields; selections apply to each element of a list."""
    if not tree:
        return value
    if isinstance(value, list):
        return [partial_response(v, tree) for v in value]
    if not isinstance(value, dict):
        return value
    return {k: partial_response(value[k], sub) for k, sub in tree.items() if k in value}


def _recipients(msg: Message) -> set[str]:
    fields = [msg.header("To"), msg.header("Cc")]
    return {address.lower() for _, address in email.utils.getaddresses(fields)}


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _when(value: dict[str, str]) -> datetime:
    if "dateTime" in value:
        return _parse(value["dateTime"])
    day = date.fromisoformat(value["date"])
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


@contextlib.contextmanager
def running(address: str = "jordan.lee@gmail.com") -> Any:
    emulator = GoogleEmulator(address).start()
    try:
        yield emulator
    finally:
        emulator.stop()


def make_raw(
    sender: str,
    to: str,
    subject: str,
    body: str,
    *,
    message_id: str | None = None,
    in_reply_to: str = "",
    extra: dict[str, str] | None = None,
) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = email.utils.formatdate(localtime=False)
    msg["Message-ID"] = message_id or email.utils.make_msgid(domain="example.test")
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
        msg["References"] = in_reply_to
    for key, value in (extra or {}).items():
        msg[key] = value
    msg.set_content(body)
    return msg.as_bytes()


def interview_event(
    event_id: str, start: datetime, me: str = "jordan.lee@gmail.com", **extra: Any
) -> dict[str, Any]:
    """A Calendar API event: an interview with an organizer, a colleague, a room, a decliner."""
    return {
        "id": event_id,
        "summary": "Interview: Staff Engineer at Acme",
        "description": "Panel with the platform team",
        "start": {"dateTime": start.isoformat()},
        "end": {"dateTime": (start + timedelta(hours=1)).isoformat()},
        "organizer": {"email": "maria@acme.example", "displayName": "Maria Chen"},
        "attendees": [
            {"email": me, "self": True, "responseStatus": "accepted"},
            {
                "email": "maria@acme.example",
                "displayName": "Maria Chen",
                "organizer": True,
                "responseStatus": "accepted",
            },
            {
                "email": "raj@acme.example",
                "displayName": "Raj Patel",
                "responseStatus": "needsAction",
            },
            {
                "email": "room-4@resource.calendar.google.com",
                "displayName": "Room 4",
                "resource": True,
                "responseStatus": "accepted",
            },
            {"email": "sam@acme.example", "responseStatus": "declined"},
        ],
        **extra,
    }
