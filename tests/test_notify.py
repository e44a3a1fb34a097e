"""Notifications: ntfy and webhook against a real local HTTP server, desktop through a real D-Bus
session bus with a stand-in notification server, and the whole loop on the local provider."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Annotated, Any

import pytest
from dbus_fast import BusType, NameFlag, RequestNameReply
from dbus_fast.aio import MessageBus
from dbus_fast.annotations import DBusSignature
from dbus_fast.service import ServiceInterface, method, signal

from mailbridge import engine, notify
from mailbridge.engine import Notice
from mailbridge.settings import AccountSettings, NotifySettings
from tests.servers import free_port
from tests.test_engine import END, World

# --- helpers -----------------------------------------------------------------------------------


def account(**notify_kw: Any) -> AccountSettings:
    return AccountSettings(name="work", provider="local", address="jordan.lee@example.com",
                           notify=NotifySettings(**notify_kw))


NOTICES = [
    Notice(7, "drafts_ready", "2 thank-you drafts for your Northwind interview are in your Drafts"),
    Notice(8, "retracted", "Contoso replied; the follow-up draft was removed"),
]


@dataclasses.dataclass
class Captured:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class Endpoint:
    """A real HTTP server on 127.0.0.1 that records every request and answers `status`."""

    def __init__(self) -> None:
        self.requests: list[Captured] = []
        self.status = 200
        self.delay = 0.0
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                endpoint.requests.append(Captured("POST", self.path, dict(self.headers), body))
                time.sleep(endpoint.delay)
                try:
                    self.send_response(endpoint.status)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"{}")
                except OSError:
                    pass  # the client gave up (timeout test)

            do_PUT = do_POST  # noqa: N815 - recorded too, so a wrong method shows in the assert

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    server = Endpoint()
    yield server
    server.close()


# --- pure parts --------------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("2 thank-you drafts for your Acme interview are in your Drafts",
     "2 thank-you drafts for your Acme interview are in your Drafts."),
    ("acme replied; the follow-up draft was removed",
     "Acme replied; the follow-up draft was removed."),
    ("Already a sentence.", "Already a sentence."),
    ("  spaced \n out  ", "Spaced out."),
    ("Is it there?", "Is it there?"),
    ("", ""),
])
def test_sentence(text: str, expected: str) -> None:
    assert notify.sentence(text) == expected


def test_messages_one_per_interview_and_kind() -> None:
    notices = [
        Notice(1, "drafts_ready", "2 thank-you drafts are in your Drafts"),
        Notice(1, "drafts_ready", "2 thank-you drafts are in your Drafts"),  # a repeat
        Notice(1, "follow_up_ready", "A follow-up draft is in your Drafts"),
        Notice(2, "drafts_ready", "1 thank-you draft is in your Drafts"),
        Notice(1, "drafts_ready", "1 more thank-you draft is in your Drafts"),
    ]
    got = [(m.interview_id, m.kind, m.title, m.text) for m in notify.messages("work", notices)]
    assert got == [
        (1, "drafts_ready", "Thank-you drafts ready",
         "2 thank-you drafts are in your Drafts. 1 more thank-you draft is in your Drafts."),
        (1, "follow_up_ready", "Follow-up draft ready", "A follow-up draft is in your Drafts."),
        (2, "drafts_ready", "Thank-you drafts ready", "1 thank-you draft is in your Drafts."),
    ]


@pytest.mark.parametrize("url, shown", [
    ("https://ntfy.sh/secret-topic-name", "https://ntfy.sh"),
    ("https://hooks.example.com:8443/T0/B0/XXXX?token=abc", "https://hooks.example.com:8443"),
    ("http://user:pw@127.0.0.1:9/x", "http://127.0.0.1:9"),
    ("http://[::1", "an invalid URL"),
])
def test_where_keeps_only_scheme_and_host(url: str, shown: str) -> None:
    assert notify.where(url) == shown


@pytest.mark.parametrize("kind, priority, tags", [
    ("drafts_ready", "3", "memo,mailbridge"),
    ("follow_up_ready", "3", "memo,mailbridge"),
    ("retracted", "4", "incoming_envelope,mailbridge"),
    ("reminder", "3", "alarm_clock,mailbridge"),
])
def test_ntfy_headers_per_kind(kind: str, priority: str, tags: str) -> None:
    headers = notify.ntfy_headers(notify.Message("work", 1, kind, notify.TITLES[kind], "x"))
    assert (headers["Priority"], headers["Tags"]) == (priority, tags)
    assert headers["Title"] == notify.TITLES[kind]


def test_non_ascii_title_is_an_rfc2047_word() -> None:
    headers = notify.ntfy_headers(notify.Message("work", 1, "x", "Entwürfe bereit", "x"))
    assert headers["Title"] == "=?UTF-8?B?RW50d8O8cmZlIGJlcmVpdA==?="


def test_osascript_passes_text_as_arguments_not_script() -> None:
    message = notify.Message("work", 1, "reminder", "Drafts still waiting", 'say "hi" & quit')
    command = notify.osascript_command(message)
    assert command[-2:] == ["Drafts still waiting", 'say "hi" & quit']
    assert not any('say "hi"' in part for part in command[:-1])


def test_session_bus_address_falls_back_to_the_runtime_socket(tmp_path: Path) -> None:
    import socket

    assert notify.session_bus_address({"DBUS_SESSION_BUS_ADDRESS": "unix:path=/x"}) == \
        "unix:path=/x"
    assert notify.session_bus_address({"XDG_RUNTIME_DIR": str(tmp_path)}) is None
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp_path / "bus"))
        assert notify.session_bus_address({"XDG_RUNTIME_DIR": str(tmp_path)}) == \
            f"unix:path={tmp_path / 'bus'}"


# --- ntfy and webhook against a real server ----------------------------------------------------


def test_ntfy_posts_text_with_title_priority_and_tags(endpoint: Endpoint) -> None:
    notify.send(account(channels=("ntfy",), ntfy_url=endpoint.url("/jordan-interviews")), NOTICES)
    assert [(r.method, r.path) for r in endpoint.requests] == [
        ("POST", "/jordan-interviews"), ("POST", "/jordan-interviews"),
    ]
    first, second = endpoint.requests
    assert first.body.decode("utf-8") == (
        "2 thank-you drafts for your Northwind interview are in your Drafts."
    )
    assert first.headers["Title"] == "Thank-you drafts ready"
    assert first.headers["Priority"] == "3"
    assert first.headers["Tags"] == "memo,mailbridge"
    assert first.headers["Content-Type"].startswith("text/plain")
    assert second.body == b"Contoso replied; the follow-up draft was removed."
    assert (second.headers["Title"], second.headers["Priority"]) == ("The employer replied", "4")


def test_webhook_posts_json(endpoint: Endpoint) -> None:
    notify.send(account(channels=("webhook",), webhook_url=endpoint.url("/hook")), NOTICES[:1])
    (request,) = endpoint.requests
    assert (request.method, request.path) == ("POST", "/hook")
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.body) == {
        "app": "mailbridge",
        "account": "work",
        "interview": 7,
        "kind": "drafts_ready",
        "title": "Thank-you drafts ready",
        "text": "2 thank-you drafts for your Northwind interview are in your Drafts.",
    }


def test_both_channels_each_get_every_notice(endpoint: Endpoint) -> None:
    notify.send(account(channels=("ntfy", "webhook"), ntfy_url=endpoint.url("/t"),
                        webhook_url=endpoint.url("/hook")), NOTICES)
    assert sorted(r.path for r in endpoint.requests) == ["/hook", "/hook", "/t", "/t"]


def test_server_error_is_one_log_line_without_the_topic(
    endpoint: Endpoint, caplog: pytest.LogCaptureFixture
) -> None:
    endpoint.status = 500
    with caplog.at_level(logging.WARNING, logger="mailbridge"):
        notify.send(account(channels=("ntfy",), ntfy_url=endpoint.url("/secret-topic?auth=tk")),
                    NOTICES)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        f"work: ntfy notification (drafts_ready, interview 7) failed: "
        f"http://127.0.0.1:{endpoint.port} answered HTTP 500",
        "work: ntfy: 1 more notification(s) not sent",
    ]
    assert len(endpoint.requests) == 1  # a failing server is not hammered for the rest
    assert not any("secret" in w or "auth" in w for w in caplog.text.splitlines())


def test_client_error_still_tries_the_next_notice(
    endpoint: Endpoint, caplog: pytest.LogCaptureFixture
) -> None:
    endpoint.status = 403
    with caplog.at_level(logging.WARNING, logger="mailbridge"):
        notify.send(account(channels=("webhook",), webhook_url=endpoint.url("/hook")), NOTICES)
    assert len(endpoint.requests) == 2
    assert sum("answered HTTP 403" in r.getMessage() for r in caplog.records) == 2


def test_redirect_is_a_failure_not_followed(
    endpoint: Endpoint, caplog: pytest.LogCaptureFixture
) -> None:
    endpoint.status = 307
    with caplog.at_level(logging.WARNING, logger="mailbridge"):
        notify.send(account(channels=("webhook",), webhook_url=endpoint.url("/hook")),
                    NOTICES[:1])
    assert len(endpoint.requests) == 1
    assert "answered HTTP 307" in caplog.text


def test_connection_refused_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    with caplog.at_level(logging.WARNING, logger="mailbridge"):
        notify.send(account(channels=("ntfy", "webhook"), ntfy_url=f"http://127.0.0.1:{port}/t",
                            webhook_url=f"http://127.0.0.1:{port}/h"), NOTICES)
    lines = [r.getMessage() for r in caplog.records]
    assert f"work: ntfy notification (drafts_ready, interview 7) failed: could not connect to " \
           f"http://127.0.0.1:{port}" in lines
    assert any(line.startswith("work: webhook notification") for line in lines)
    assert all("\n" not in line and "Traceback" not in line for line in lines)


def test_timeout_is_bounded(
    endpoint: Endpoint, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(notify, "TIMEOUT", 0.3)
    endpoint.delay = 1.5
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="mailbridge"):
        notify.send(account(channels=("ntfy",), ntfy_url=endpoint.url("/t")), NOTICES)
    assert time.monotonic() - started < 1.2  # one timeout, then the channel is skipped
    assert "did not answer within 0.3 s" in caplog.text
    assert "1 more notification(s) not sent" in caplog.text


def test_missing_url_is_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="mailbridge"):
        notify.send(account(channels=("webhook",)), NOTICES)
    assert caplog.messages == [
        "work: webhook notifications are on but notify.webhook_url is not set"
    ]


def test_no_notices_no_requests(endpoint: Endpoint) -> None:
    notify.send(account(channels=("ntfy",), ntfy_url=endpoint.url("/t")), [])
    assert endpoint.requests == []


# --- desktop through a real D-Bus session bus --------------------------------------------------

S = Annotated[str, DBusSignature("s")]
U = Annotated[int, DBusSignature("u")]
INT = Annotated[int, DBusSignature("i")]
STRINGS = Annotated[list[str], DBusSignature("as")]
HINTS = Annotated[dict[str, Any], DBusSignature("a{sv}")]
INFO = Annotated[list[str], DBusSignature("ssss")]
CLOSED = Annotated[list[int], DBusSignature("uu")]


class NotificationServer(ServiceInterface):
    """Owns org.freedesktop.Notifications and records what Notify receives (spec 1.2)."""

    def __init__(self) -> None:
        super().__init__("org.freedesktop.Notifications")
        self.calls: list[dict[str, Any]] = []

    @method()
    def Notify(self, app_name: S, replaces_id: U, app_icon: S, summary: S, body: S,  # noqa: N802
               actions: STRINGS, hints: HINTS, expire_timeout: INT) -> U:
        self.calls.append({"app_name": app_name, "app_icon": app_icon, "summary": summary,
                           "body": body, "urgency": hints["urgency"].value,
                           "expire_timeout": expire_timeout})
        return len(self.calls)

    @method()
    def GetCapabilities(self) -> STRINGS:  # noqa: N802
        return ["body"]

    @method()
    def GetServerInformation(self) -> INFO:  # noqa: N802
        return ["mailbridge-test", "mailbridge", "1.0", "1.2"]

    @method()
    def CloseNotification(self, notification_id: U):  # noqa: N802 - no reply value on D-Bus
        pass

    @signal()
    def NotificationClosed(self) -> CLOSED:  # noqa: N802
        return [0, 0]


BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:dir={dir}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


@pytest.fixture
def session_bus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A private session bus; its own config, so no service on this machine gets activated."""
    daemon = shutil.which("dbus-daemon")
    if daemon is None:
        message = "dbus-daemon is missing: apt-get install -y dbus-daemon"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    conf = tmp_path / "bus.conf"
    conf.write_text(BUS_CONFIG.format(dir=tmp_path), encoding="utf-8")
    proc = subprocess.Popen(
        [daemon, f"--config-file={conf}", "--nofork", "--nopidfile", "--print-address=1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        address = proc.stdout.readline().strip()
        if not address:
            pytest.fail(f"dbus-daemon did not start: {proc.stderr.read() if proc.stderr else ''}")
        monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", address)
        yield address
    finally:
        proc.terminate()
        proc.wait(timeout=5)


class ServerThread:
    """Runs the stand-in on its own event loop thread, connected to the test's bus."""

    def __init__(self, address: str) -> None:
        self.server = NotificationServer()
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(address,), daemon=True)
        self.thread.start()
        assert self.ready.wait(5), "the notification stand-in did not start"
        if self.error:
            raise self.error

    def _run(self, address: str) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._start(address))
        self.loop.run_forever()

    async def _start(self, address: str) -> None:
        try:
            self.bus = await MessageBus(bus_address=address, bus_type=BusType.SESSION).connect()
            self.bus.export("/org/freedesktop/Notifications", self.server)
            reply = await self.bus.request_name("org.freedesktop.Notifications",
                                                NameFlag.DO_NOT_QUEUE)
            assert reply == RequestNameReply.PRIMARY_OWNER
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            self.error = exc
        finally:
            self.ready.set()

    def stop(self) -> None:
        def _halt() -> None:
            self.bus.disconnect()
            self.loop.stop()

        self.loop.call_soon_threadsafe(_halt)
        self.thread.join(5)


@pytest.fixture
def notification_server(session_bus: str) -> Iterator[NotificationServer]:
    runner = ServerThread(session_bus)
    yield runner.server
    runner.stop()


def test_desktop_notifications_reach_the_notification_service(
    notification_server: NotificationServer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        notify.send(account(channels=("desktop",)), NOTICES)
    assert [(c["app_name"], c["summary"], c["body"]) for c in notification_server.calls] == [
        ("mailbridge", "Thank-you drafts ready",
         "2 thank-you drafts for your Northwind interview are in your Drafts."),
        ("mailbridge", "The employer replied",
         "Contoso replied; the follow-up draft was removed."),
    ]
    assert notification_server.calls[0]["app_icon"] == "mail-message-new"
    assert caplog.records == []


def test_desktop_without_a_notification_server_is_one_warning(
    session_bus: str, caplog: pytest.LogCaptureFixture
) -> None:
    started = time.monotonic()
    with caplog.at_level(logging.WARNING):
        notify.send(account(channels=("desktop",)), NOTICES)
    assert time.monotonic() - started < notify.DESKTOP_TIMEOUT
    assert [r.name for r in caplog.records] == ["mailbridge", "mailbridge"]
    first, second = caplog.messages
    assert first.startswith("work: desktop notification (drafts_ready, interview 7) failed: ")
    assert first.endswith("failed: no notification service is running on the D-Bus session bus")
    assert second == "work: desktop: 1 more notification(s) not shown"
    assert all(r.exc_info is None for r in caplog.records)


def test_desktop_without_a_bus_is_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))  # no bus socket there
    with caplog.at_level(logging.WARNING):
        notify.send(account(channels=("desktop",)), NOTICES[:1])
    assert caplog.messages == [
        "work: desktop notification (drafts_ready, interview 7) failed: "
        "no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS is not set)"
    ]


def test_desktop_with_a_dead_bus_address_is_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", f"unix:path={tmp_path / 'nothing'}")
    with caplog.at_level(logging.WARNING):
        notify.send(account(channels=("desktop",)), NOTICES[:1])
    assert caplog.messages == [
        "work: desktop notification (drafts_ready, interview 7) failed: "
        "the D-Bus session bus is not reachable (No such file or directory)"
    ]


def test_desktop_without_the_library_is_a_warning(
    session_bus: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "desktop_notifier", None)  # as if not installed
    with caplog.at_level(logging.WARNING):
        notify.send(account(channels=("desktop",)), NOTICES[:1])
    assert caplog.messages == [
        "work: desktop notification (drafts_ready, interview 7) failed: "
        "the desktop-notifier package is not installed (pip install desktop-notifier)"
    ]


def test_a_hung_notification_service_costs_at_most_the_timeout(session_bus: str) -> None:
    runner = ServerThread(session_bus)
    try:
        release = threading.Event()

        def stuck(*args: Any) -> int:
            release.wait(5)  # the service's loop is blocked: no answer on the bus
            return 0

        runner.loop.call_soon_threadsafe(lambda: stuck())
        started = time.monotonic()
        results = notify.send_desktop(notify.messages("work", NOTICES), timeout=0.5)
        elapsed = time.monotonic() - started
        release.set()
    finally:
        runner.stop()
    assert elapsed < 1.5
    assert results == {0: "the notification service did not answer within 0.5 s",
                       1: "the notification service did not answer within 0.5 s"}


# --- the whole loop ----------------------------------------------------------------------------


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.ledger.close()


def test_whole_loop_tells_the_candidate_once_per_interview(
    world: World, endpoint: Endpoint, notification_server: NotificationServer
) -> None:
    acct = dataclasses.replace(world.account, notify=NotifySettings(
        channels=("desktop", "ntfy", "webhook"), ntfy_url=endpoint.url("/topic"),
        webhook_url=endpoint.url("/hook")))
    world.add_interview()

    def run(at: timedelta) -> engine.PassReport:
        report = engine.reconcile(acct, world.ledger, now=END + at, notify=notify.send)
        assert report.error is None, report.error
        return report

    run(timedelta(hours=2))
    hooks = [json.loads(r.body) for r in endpoint.requests if r.path == "/hook"]
    assert [(h["kind"], h["text"]) for h in hooks] == [
        ("drafts_ready",
         "2 thank-you drafts for your Northwind Robotics interview are in your Drafts."),
    ]
    assert [r.body.decode() for r in endpoint.requests if r.path == "/topic"] == \
        [hooks[0]["text"]]
    assert [c["body"] for c in notification_server.calls] == [hooks[0]["text"]]

    run(timedelta(hours=2, minutes=5))  # nothing new: nobody is told again
    assert len(endpoint.requests) == 2
    assert len(notification_server.calls) == 1


def test_a_failing_notifier_never_blocks_drafting(world: World) -> None:
    acct = dataclasses.replace(world.account, notify=NotifySettings(
        channels=("ntfy", "webhook"), ntfy_url=f"http://127.0.0.1:{free_port()}/t",
        webhook_url=f"http://127.0.0.1:{free_port()}/h"))
    world.add_interview()
    report = engine.reconcile(acct, world.ledger, now=END + timedelta(hours=2),
                              notify=notify.send)
    assert report.error is None
    assert len(world.messages("Drafts")) == 2
