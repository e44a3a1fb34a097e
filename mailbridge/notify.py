"""Telling the candidate: drafts ready, follow-up ready or taken back, drafts still waiting.

The engine groups what happened per interview into `Notice`s and writes their text; this module
turns them into one notification per interview and kind, and delivers it on the account's
channels:

- ``ntfy``: the text is POSTed to the topic URL, with the Title, Priority and Tags headers of
  ntfy's publishing API (https://docs.ntfy.sh/publish/).
- ``webhook``: a JSON POST ``{account, interview, kind, title, text, app}``.
- ``desktop``: the freedesktop notification service on Linux and the notification centre on
  macOS, through the desktop-notifier library (dbus-fast on Linux). macOS shows notifications
  of an unbundled program (a pip-installed daemon) only through ``osascript``, so that is the
  fallback there.

Notifying is best effort: every failure is one logged line (no URL paths, queries or
credentials) and nothing here raises into the pass. Each channel is bounded in time, and a
channel that cannot be reached is not tried again for the rest of the batch.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import platform
import subprocess
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from mailbridge.engine import Notice
from mailbridge.settings import AccountSettings

log = logging.getLogger("mailbridge")

APP = "mailbridge"
TIMEOUT = 10.0  # seconds per HTTP request
DESKTOP_TIMEOUT = 5.0  # seconds for a whole batch of desktop notifications

# Per kind: the title, the ntfy priority (1 min .. 5 max; 3 is ntfy's default) and ntfy tags
# (emoji short codes are shown as emoji; other tags are listed under the message).
TITLES: dict[str, str] = {
    "drafts_ready": "Thank-you drafts ready",
    "follow_up_ready": "Follow-up draft ready",
    "retracted": "The employer replied",
    "reminder": "Drafts still waiting",
}
PRIORITIES: dict[str, int] = {
    "drafts_ready": 3,
    "follow_up_ready": 3,
    "retracted": 4,  # the employer answered: worth a sound
    "reminder": 3,
}
TAGS: dict[str, tuple[str, ...]] = {
    "drafts_ready": ("memo",),
    "follow_up_ready": ("memo",),
    "retracted": ("incoming_envelope",),
    "reminder": ("alarm_clock",),
}


class NotifyError(Exception):
    """A channel could not deliver; the message is safe to log (no URL path, no secrets)."""

    def __init__(self, reason: str, *, unreachable: bool = False) -> None:
        super().__init__(reason)
        self.unreachable = unreachable  # the channel is down: skip it for the rest of the batch


@dataclass(frozen=True)
class Message:
    """One notification: what the candidate sees, for one interview and one kind."""

    account: str
    interview_id: int
    kind: str
    title: str
    text: str


# --- the pure part -----------------------------------------------------------------------------


def sentence(text: str) -> str:
    """The engine's text as a sentence: trimmed, capitalised, ending in a full stop."""
    text = " ".join(text.split())
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text[-1] in ".!?" else text + "."


def messages(account: str, notices: Iterable[Notice]) -> list[Message]:
    """One message per (interview, kind), in the order first seen; repeated texts merge."""
    texts: dict[tuple[int, str], list[str]] = {}
    for notice in notices:
        line = sentence(notice.text)
        bucket = texts.setdefault((notice.interview_id, notice.kind), [])
        if line and line not in bucket:
            bucket.append(line)
    return [
        Message(account, interview_id, kind, TITLES.get(kind, "mailbridge"), " ".join(lines))
        for (interview_id, kind), lines in texts.items()
        if lines
    ]


def ntfy_headers(message: Message) -> dict[str, str]:
    """Title, Priority and Tags for ntfy's publish API; non-ASCII titles as RFC 2047 words."""
    return {
        "Title": _header_text(message.title),
        "Priority": str(PRIORITIES.get(message.kind, 3)),
        "Tags": ",".join((*TAGS.get(message.kind, ()), APP)),
        "Content-Type": "text/plain; charset=utf-8",
    }


def webhook_payload(message: Message) -> dict[str, Any]:
    return {
        "app": APP,
        "account": message.account,
        "interview": message.interview_id,
        "kind": message.kind,
        "title": message.title,
        "text": message.text,
    }


def where(url: str) -> str:
    """A URL fit for a log line: scheme and host only (the path of an ntfy topic is its secret)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "an invalid URL"
    return f"{parts.scheme}://{host}{port}"


def osascript_command(message: Message) -> list[str]:
    """macOS: the text goes in as arguments, never spliced into the script."""
    return [
        "osascript",
        "-e", "on run argv",
        "-e", "display notification (item 2 of argv) with title (item 1 of argv)",
        "-e", "end run",
        message.title,
        message.text,
    ]


def session_bus_address(environ: dict[str, str]) -> str | None:
    """The session bus: the variable, else the systemd per-user socket (as libdbus falls back)."""
    if environ.get("DBUS_SESSION_BUS_ADDRESS"):
        return environ["DBUS_SESSION_BUS_ADDRESS"]
    runtime = environ.get("XDG_RUNTIME_DIR")
    if runtime and Path(runtime, "bus").is_socket():
        return f"unix:path={Path(runtime, 'bus')}"
    return None


def _header_text(value: str) -> str:
    if value.isascii():
        return value
    import base64

    return "=?UTF-8?B?" + base64.b64encode(value.encode("utf-8")).decode("ascii") + "?="


def _http_reason(exc: requests.RequestException, url: str) -> NotifyError:
    at = where(url)
    if isinstance(exc, requests.Timeout):
        return NotifyError(f"{at} did not answer within {TIMEOUT:g} s", unreachable=True)
    if isinstance(exc, requests.ConnectionError):
        return NotifyError(f"could not connect to {at}", unreachable=True)
    return NotifyError(f"request to {at} failed ({type(exc).__name__})")


# --- the channels ------------------------------------------------------------------------------


def _post(session: requests.Session, url: str, **kwargs: Any) -> None:
    try:
        # No redirects: a POST that moves elsewhere is a wrong URL, not something to follow.
        resp = session.post(url, timeout=TIMEOUT, allow_redirects=False, **kwargs)
    except requests.RequestException as exc:
        raise _http_reason(exc, url) from None
    if resp.status_code >= 300:
        raise NotifyError(f"{where(url)} answered HTTP {resp.status_code}",
                          unreachable=resp.status_code >= 500)


def send_ntfy(session: requests.Session, url: str, message: Message) -> None:
    _post(session, url, data=message.text.encode("utf-8"), headers=ntfy_headers(message))


def send_webhook(session: requests.Session, url: str, message: Message) -> None:
    _post(session, url, json=webhook_payload(message))


# desktop-notifier logs a failed send (with a traceback) instead of raising. While we send, its
# records go into this list so the failure becomes our one-line warning.
_desktop_failures: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "mailbridge_desktop_failures", default=None
)


class _Capture(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        sink = _desktop_failures.get()
        if sink is None or record.levelno < logging.WARNING:
            return True
        exc = record.exc_info[1] if record.exc_info else None
        sink.append(_desktop_reason(exc) if exc is not None else record.getMessage())
        return False


def _desktop_reason(exc: BaseException) -> str:
    if isinstance(exc, ImportError):
        return "the desktop-notifier package is not installed (pip install desktop-notifier)"
    if isinstance(exc, OSError):
        return f"the D-Bus session bus is not reachable ({exc.strerror or type(exc).__name__})"
    if "org.freedesktop.Notifications" in str(exc) or "ServiceUnknown" in str(exc):
        return "no notification service is running on the D-Bus session bus"
    return _describe(exc)


def _describe(exc: BaseException) -> str:
    name = type(exc).__name__
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{name}: {text}" if text else name


_CAPTURE = _Capture()
for _name in ("desktop_notifier.backends.base", "desktop_notifier.backends.dbus",
              "desktop_notifier.main"):
    logging.getLogger(_name).addFilter(_CAPTURE)


async def _desktop_batch(batch: list[Message], outcome: dict[int, str | None]) -> None:
    from desktop_notifier import DesktopNotifier, Icon
    from desktop_notifier.backends.dummy import DummyNotificationCenter

    notifier = DesktopNotifier(app_name=APP, app_icon=Icon(name="mail-message-new"))
    backend: Any = notifier._backend  # the library offers no public way to close its bus
    try:
        if isinstance(backend, DummyNotificationCenter):
            raise NotifyError("no notification service on this system")
        for index, message in enumerate(batch):
            failures: list[str] = []
            dispatched = asyncio.Event()
            token = _desktop_failures.set(failures)
            try:
                await notifier.send(message.title, message.text, on_dispatched=dispatched.set)
            finally:
                _desktop_failures.reset(token)
            if dispatched.is_set():
                outcome[index] = None
            else:
                outcome[index] = failures[0] if failures else "the notification was not shown"
                break  # the service is not there: the rest would fail the same way
    finally:
        bus = getattr(backend, "bus", None)
        if bus is not None:
            bus.disconnect()


def _run_desktop(batch: list[Message], outcome: dict[int, str | None]) -> None:
    try:
        asyncio.run(_desktop_batch(batch, outcome))
    except NotifyError as exc:
        outcome[-1] = str(exc)
    except Exception as exc:  # noqa: BLE001 - a broken desktop must not reach the pass
        outcome[-1] = _desktop_reason(exc)


def send_desktop(
    batch: list[Message], *, timeout: float = DESKTOP_TIMEOUT
) -> dict[int, str | None]:
    """Show each message; the answer maps batch index → failure reason (None: shown).

    The work runs on its own thread with its own event loop, so it neither needs nor disturbs
    a loop of the caller, and a hung bus costs at most ``timeout`` seconds.
    """
    if platform.system() == "Darwin":
        return _send_macos(batch, timeout)
    if platform.system() == "Linux" and not os.environ.get("DBUS_SESSION_BUS_ADDRESS"):
        address = session_bus_address(dict(os.environ))
        if address is None:
            return {i: "no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS is not set)"
                    for i in range(len(batch))}
        os.environ["DBUS_SESSION_BUS_ADDRESS"] = address  # dbus-fast reads only the variable
    outcome: dict[int, str | None] = {}
    worker = threading.Thread(target=_run_desktop, args=(batch, outcome), name="notify-desktop",
                              daemon=True)
    worker.start()
    worker.join(timeout)
    done = dict(outcome)  # a worker past its time may still write to outcome
    general = done.pop(-1, None)
    if worker.is_alive():
        general = f"the notification service did not answer within {timeout:g} s"
    missing = general or "not tried after an earlier failure"
    return {i: done.get(i, missing) for i in range(len(batch))}


def _send_macos(batch: list[Message], timeout: float) -> dict[int, str | None]:
    # desktop-notifier reaches the notification centre only from inside an app bundle; a daemon
    # started from a virtualenv is not one, and then the system's osascript is the way.
    outcome: dict[int, str | None] = {}
    for index, message in enumerate(batch):
        try:
            subprocess.run(osascript_command(message), check=True, timeout=timeout,
                           capture_output=True)
            outcome[index] = None
        except (OSError, subprocess.SubprocessError) as exc:
            outcome[index] = _describe(exc)
    return outcome


# --- the shell ---------------------------------------------------------------------------------


def _http_channel(
    account: AccountSettings,
    channel: str,
    url: str | None,
    batch: list[Message],
    post: Callable[[requests.Session, str, Message], None],
) -> None:
    if not url:
        log.warning("%s: %s notifications are on but notify.%s_url is not set",
                    account.name, channel, channel)
        return
    with requests.Session() as session:
        for index, message in enumerate(batch):
            try:
                post(session, url, message)
            except NotifyError as exc:
                _warn(account, channel, message, str(exc))
                if exc.unreachable and index + 1 < len(batch):
                    log.warning("%s: %s: %d more notification(s) not sent", account.name,
                                channel, len(batch) - index - 1)
                    return


def _warn(account: AccountSettings, channel: str, message: Message, reason: str) -> None:
    log.warning("%s: %s notification (%s, interview %d) failed: %s", account.name, channel,
                message.kind, message.interview_id, reason)


def send(account: AccountSettings, notices: list[Notice]) -> None:
    """Deliver the pass's notices on every channel of the account. Never raises."""
    try:
        batch = messages(account.name, notices)
        for message in batch:
            log.info("%s: notice: %s", account.name, message.text)
        if not batch:
            return
        settings = account.notify
        for channel in settings.channels:
            if channel == "ntfy":
                _http_channel(account, "ntfy", settings.ntfy_url, batch, send_ntfy)
            elif channel == "webhook":
                _http_channel(account, "webhook", settings.webhook_url, batch, send_webhook)
            elif channel == "desktop":
                failed = [(batch[i], r) for i, r in sorted(send_desktop(batch).items()) if r]
                if failed:
                    _warn(account, "desktop", *failed[0])
                if len(failed) > 1:
                    log.warning("%s: desktop: %d more notification(s) not shown", account.name,
                                len(failed) - 1)
            else:
                log.warning("%s: unknown notification channel %r", account.name, channel)
    except Exception as exc:  # noqa: BLE001 - notifying never blocks drafting
        log.warning("%s: notifying failed: %s", account.name, _describe(exc))
