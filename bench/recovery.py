"""How fast does the daemon recover once a fault clears, per provider and fault class?

For each provider (local Maildir, IMAP on Dovecot, the Gmail emulator, the Graph emulator) and
each fault (down: connection refused or folder gone; hang: the server accepts and never answers;
storm: every request throttled with 429/503), the real daemon (`mailbridge.daemon.Daemon`, its
scheduler and backoff, the engine, the provider as shipped) runs one account with a short poll
interval. The fault starts, a thank-you falls due during it, the fault clears; the script prints
the time from "fault cleared" to the next successful pass and to the missed draft being there.

    python bench/recovery.py [--poll 2] [--only imap,gmail]

Needs Dovecot (apt-get install dovecot-imapd) for the IMAP rows; prints n/a where a fault has no
meaning for a provider (a Maildir cannot be throttled; Dovecot has no throttling).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import mailbox
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# An isolated plaintext keyring for the emulators' tokens, before anything imports keyring.
_HOME = Path(tempfile.mkdtemp(prefix="mailbridge-recovery-"))
os.environ["PYTHON_KEYRING_BACKEND"] = "keyrings.alt.file.PlaintextKeyring"
os.environ["XDG_DATA_HOME"] = str(_HOME / "data")
os.environ["XDG_CONFIG_HOME"] = str(_HOME / "config")

from mailbridge import config as config_module  # noqa: E402
from mailbridge.daemon import Daemon  # noqa: E402
from mailbridge.settings import Settings  # noqa: E402
from tests.test_outages import (  # noqa: E402
    HEAD,
    FaultProxy,
    calendar_file,
    fast,
    imap_account,
    local_account,
)

FAULTS = ("down", "hang", "storm")
DUE_AFTER = 1.0  # seconds after the fault starts that the thank-yous fall due
OUTAGE = 4.0  # seconds the fault lasts
SETUP = 8.0  # seconds from building a world to its thank-you due time (sign-in, first pass)


@dataclass
class Cell:
    settings: Settings
    start_fault: Callable[[], None]
    clear_fault: Callable[[], None]
    drafts: Callable[[], int]
    expected: int
    cleanup: Callable[[], None]


def _interview_due_at(due: datetime) -> datetime:
    return due - timedelta(hours=2)  # the end of an interview with a 2-hour thank-you delay


# --- providers -----------------------------------------------------------------------------


def local_cell(fault: str, poll: float, due: datetime) -> Cell | None:
    if fault != "down":
        return None
    root = Path(tempfile.mkdtemp(prefix="mailbridge-recovery-local-"))
    mailbox.Maildir(root / "Maildir", create=True)
    calendar_file(root / "calendar", "iv1", _interview_due_at(due))
    (root / "config.toml").write_text(HEAD + local_account("home"), encoding="utf-8")
    settings = fast(config_module.load(root / "config.toml"), poll)
    drafts = root / "Maildir" / ".Drafts" / "cur"
    return Cell(
        settings,
        lambda: (root / "Maildir").rename(root / "Maildir.unmounted"),  # the mount went away
        lambda: (root / "Maildir.unmounted").rename(root / "Maildir"),
        lambda: len(list(drafts.iterdir())) if drafts.is_dir() else 0,
        2,
        lambda: shutil.rmtree(root, ignore_errors=True),
    )


def imap_cell(fault: str, poll: float, due: datetime) -> Cell | None:
    from tests.servers import DOVECOT, Dovecot
    from tests.test_outages import drafts_in

    if fault == "storm" or not os.path.exists(DOVECOT):
        return None
    server = Dovecot.create()
    server.start()
    user = server.new_user("recovery")
    proxy = FaultProxy(server.port) if fault == "hang" else None
    port = proxy.port if proxy else server.port
    root = Path(tempfile.mkdtemp(prefix="mailbridge-recovery-imap-"))
    calendar_file(root / "calendar", "iv1", _interview_due_at(due))
    (root / "config.toml").write_text(
        HEAD + imap_account("mail", "127.0.0.1", port, "plain", 1, user), encoding="utf-8")
    settings = fast(config_module.load(root / "config.toml"), poll)

    def cleanup() -> None:
        if proxy:
            proxy.close()
        server.stop()
        shutil.rmtree(root, ignore_errors=True)

    if proxy is not None:
        start, clear = (lambda: proxy.set("hang")), (lambda: proxy.set("up"))
    else:
        start, clear = server.kill, server.start
    return Cell(settings, start, clear, lambda: len(drafts_in(server, user)), 2, cleanup)


def gmail_cell(fault: str, poll: float, due: datetime) -> Cell:
    from mailbridge_providers import gmail

    from mailbridge import secrets
    from tests.emulators.google import GoogleEmulator, interview_event
    from tests.test_gmail import ME, make_account

    emu = GoogleEmulator(ME).start()
    emu.add_event(interview_event("iv1", due - timedelta(hours=3)))
    proxy = FaultProxy(int(emu.url.rsplit(":", 1)[1]))
    root = Path(tempfile.mkdtemp(prefix="mailbridge-recovery-gmail-"))
    secrets.store("personal", gmail.KEYRING_PURPOSE, "refresh-1")
    account = make_account(emu, root)
    google = dataclasses.replace(
        account.tables.get("google"), api_endpoint=proxy.url,
        calendar_endpoint=proxy.url + "/calendar/v3/")
    account = dataclasses.replace(account, tables={**account.tables, "google": google})

    def api(a: Any, kind: str) -> Any:
        # The shipped retry policy, with short waits so a storm costs seconds, not minutes.
        google = a.tables.get("google")
        endpoint = google.api_endpoint if kind == "gmail" else google.calendar_endpoint
        name, version = ("gmail", "v1") if kind == "gmail" else ("calendar", "v3")
        methods = gmail.GMAIL_METHODS if kind == "gmail" else gmail.CALENDAR_METHODS
        return gmail.Api(a, gmail._service(a, name, version, endpoint), methods, backoff=0.05)

    gmail.open_mailbox = lambda a: gmail.GmailMailbox(a, api(a, "gmail"))  # type: ignore[assignment]
    gmail.open_calendar = lambda a: gmail.GoogleCalendar(a, api(a, "calendar"))  # type: ignore[assignment]
    settings = fast(Settings(path=root / "config.toml", state_dir=root / "state",
                             timezone="UTC", country=None, accounts=(account,)), poll)

    def start() -> None:
        if fault == "storm":
            emu.fail_next(503, 1_000_000)
        else:
            proxy.set(fault)

    def clear() -> None:
        with emu.lock:
            emu._faults.clear()
        proxy.set("up")

    def cleanup() -> None:
        proxy.close()
        emu.stop()
        shutil.rmtree(root, ignore_errors=True)

    return Cell(settings, start, clear, lambda: len(emu.drafts), 2, cleanup)


def graph_cell(fault: str, poll: float, due: datetime) -> Cell:
    from mailbridge_providers import outlook

    from tests.emulators.graph import GraphEmulator
    from tests.test_outlook import sign_in

    emu = GraphEmulator().start()
    start_at = due - timedelta(hours=3)
    emu.add_event(
        "Interview: Staff Engineer at Fabrikam", start_at, start_at + timedelta(hours=1),
        organizer=("maria@fabrikam.example", "Maria Chen"),
        attendees=[("maria@fabrikam.example", "Maria Chen", "required", "accepted"),
                   ("raj@fabrikam.example", "Raj Patel", "required", "accepted")],
    )
    proxy = FaultProxy(int(emu.url.rsplit(":", 1)[1]))
    account = sign_in(emu, "work")
    account = dataclasses.replace(account, tables={**account.tables, "outlook": dataclasses.replace(
        account.tables.get("outlook"), graph_url=proxy.url + "/v1.0")})
    retry = outlook.RetryPolicy(base=0.05, cap=0.5, timeout=2.0)
    real_mailbox, real_calendar = outlook.open_mailbox, outlook.open_calendar
    opts = {"http_client": emu.http_client(), "retry": retry}
    outlook.open_mailbox = lambda a: real_mailbox(a, **opts)  # type: ignore[assignment]
    outlook.open_calendar = lambda a: real_calendar(a, **opts)  # type: ignore[assignment]
    root = Path(tempfile.mkdtemp(prefix="mailbridge-recovery-graph-"))
    settings = fast(Settings(path=root / "config.toml", state_dir=root / "state",
                             timezone="UTC", country=None, accounts=(account,)), poll)

    def start() -> None:
        if fault == "storm":
            emu.storm(1_000_000, status=503, retry_after=None)
        else:
            proxy.set(fault)

    def clear() -> None:
        with emu.lock:
            emu.storms.clear()
        proxy.set("up")

    def cleanup() -> None:
        proxy.close()
        emu.stop()
        outlook.open_mailbox, outlook.open_calendar = real_mailbox, real_calendar  # type: ignore[assignment]
        shutil.rmtree(root, ignore_errors=True)

    return Cell(settings, start, clear, lambda: len(emu.drafts()), 2, cleanup)


PROVIDERS: dict[str, Callable[[str, float, datetime], Cell | None]] = {
    "local": local_cell,
    "imap": imap_cell,
    "gmail": gmail_cell,
    "graph": graph_cell,
}


# --- one measurement -----------------------------------------------------------------------


@contextlib.contextmanager
def daemon_for(settings: Settings) -> Iterator[Daemon]:
    daemon = Daemon(settings.path, settings)
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.shutdown()


def wait(check: Callable[[], bool], timeout: float) -> float | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return time.monotonic()
        time.sleep(0.01)
    return None


def _count(cell: Cell) -> int:
    try:
        return cell.drafts()
    except Exception:  # noqa: BLE001 - the server being down is the point; look again later
        return 0


def measure(provider: str, fault: str, poll: float) -> str:
    due = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=SETUP)
    cell = PROVIDERS[provider](fault, poll, due)
    if cell is None:
        return "n/a"
    name = cell.settings.accounts[0].name
    try:
        with daemon_for(cell.settings) as daemon:
            if wait(lambda: any(o.error is None for o in daemon.outcomes), 30) is None:
                return "no first pass"
            until_fault = (due - timedelta(seconds=DUE_AFTER) - datetime.now(UTC)).total_seconds()
            if until_fault < 0:
                return "setup took longer than the due time allows; raise SETUP"
            time.sleep(until_fault)
            cell.start_fault()
            faulted = datetime.now(UTC)
            time.sleep(OUTAGE)
            failed = [o for o in daemon.outcomes if o.account == name and o.started >= faulted]
            early = _count(cell)
            cell.clear_fault()
            cleared_wall, cleared = datetime.now(UTC), time.monotonic()
            ok_at = wait(lambda: any(o.error is None and o.started >= cleared_wall
                                     for o in daemon.outcomes), 60)
            done_at = wait(lambda: _count(cell) >= cell.expected, 60)
        errors = sum(1 for o in failed if o.error)
        if ok_at is None or done_at is None:
            return f"not recovered in 60 s ({errors} failed passes)"
        note = " (!drafts before clear)" if early else ""
        return (f"ok pass {ok_at - cleared:5.2f} s, missed draft {done_at - cleared:5.2f} s "
                f"({errors} failed passes in {OUTAGE:.0f} s){note}")
    finally:
        cell.cleanup()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--poll", type=float, default=2.0, help="poll interval, seconds")
    parser.add_argument("--only", default="", help="providers, comma-separated")
    parser.add_argument("--faults", default=",".join(FAULTS), help="faults, comma-separated")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.CRITICAL)
    socket.setdefaulttimeout(2.0)  # Gmail's HTTP client takes its timeout from here
    wanted = [p for p in (args.only.split(",") if args.only else PROVIDERS) if p]
    print(f"poll interval {args.poll:g} s, fault lasts {OUTAGE:g} s, a thank-you falls due "
          f"{DUE_AFTER:g} s into it; times from the fault clearing")
    for provider in wanted:
        for fault in [f for f in args.faults.split(",") if f]:
            print(f"{provider:6} {fault:6} {measure(provider, fault, args.poll)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
