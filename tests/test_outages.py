"""Outages and throttling: the daemon stays up, backs off, keeps other accounts going, shows the
trouble in `mailbridge status`, and catches up within one poll interval once the fault clears.

Real parts throughout: Dovecot killed and restarted, a TCP listener that accepts and never
answers, a loopback TLS port with a self-signed certificate, a name that cannot resolve, the
Gmail and Graph emulators' storm knobs; the daemon is `mailbridge.daemon.Daemon` with its real
scheduler, the engine and the providers as shipped. Poll intervals are shortened on the parsed
settings (the config refuses less than 30 s); timeouts go through `imap.timeout`, as a user
would write them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import mailbox
import os
import socket
import ssl
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mailbridge import cli
from mailbridge import config as config_module
from mailbridge.daemon import (
    Daemon,
    PassOutcome,
    calendar_due,
    clock_jumped,
    retry_delay,
)
from mailbridge.ledger import Ledger
from mailbridge.model import DraftKind, DraftState
from mailbridge.settings import Settings
from tests.servers import MAIL_UID, PASSWORD, Dovecot, free_port
from tests.test_engine import LEAD, OTHER, USER, event_ics

# --- fault servers (also used by bench/recovery.py) ------------------------------------------


class HangServer:
    """Accepts TCP connections and never says a word (a server wedged after accept)."""

    def __init__(self, port: int | None = None) -> None:
        self.sock = socket.create_server(("127.0.0.1", port or 0))
        self.sock.settimeout(None)  # blocking, whatever socket.setdefaulttimeout() says
        self.port = int(self.sock.getsockname()[1])
        self.held: list[socket.socket] = []
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        for conn in self.held:
            with contextlib.suppress(OSError):
                conn.close()


def self_signed_context(tmp: Path) -> ssl.SSLContext:
    """A server context with a fresh self-signed certificate for 127.0.0.1."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return context


class SelfSignedTls:
    """A TLS port whose certificate no client should trust; it says nothing after the handshake."""

    def __init__(self, tmp: Path) -> None:
        self.context = self_signed_context(tmp)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.handshakes = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.settimeout(5)
            try:
                with self.context.wrap_socket(conn, server_side=True):
                    self.handshakes += 1
            except (OSError, ssl.SSLError):
                self.handshakes += 1  # the client hung up on our certificate: as expected
                conn.close()

    def close(self) -> None:
        self.sock.close()


class FaultProxy:
    """A TCP forwarder in front of a server: ``up``, ``down`` (refused) or ``hang`` (accepts,
    never answers). Switching away from ``up`` cuts the connections in flight."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.mode = "up"
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._sock: socket.socket | None = None
        self._listen()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _listen(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", self.port))
        self._sock.settimeout(None)  # blocking, whatever socket.setdefaulttimeout() says
        threading.Thread(target=self._accept, args=(self._sock,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            client.settimeout(None)
            if listener is not self._sock:  # closed while this accept was blocked
                client.close()
                return
            with self._lock:
                self._conns.append(client)
                mode = self.mode
            if mode == "hang":
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._conns.append(upstream)
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def _cut(self) -> None:
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def set(self, mode: str) -> None:
        if mode == self.mode:
            return
        self._cut()
        if self.mode == "down" and self._sock is None:
            self._listen()
        if mode == "down" and self._sock is not None:
            listener, self._sock = self._sock, None
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() (Linux)
            listener.close()
        self.mode = mode

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._cut()


# --- helpers ---------------------------------------------------------------------------------


def fast(settings: Settings, poll: float, calendar: float | None = None) -> Settings:
    """The same settings with a poll interval shorter than the config allows (tests only)."""
    accounts = tuple(
        dataclasses.replace(
            a,
            poll_interval=timedelta(seconds=poll),
            calendar_interval=timedelta(seconds=calendar if calendar is not None else poll),
        )
        for a in settings.accounts
    )
    return dataclasses.replace(settings, accounts=accounts)


@contextlib.contextmanager
def running(settings: Settings) -> Iterator[Daemon]:
    daemon = Daemon(settings.path, settings)
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.shutdown()


def wait_for(what: str, check: Callable[[], bool], timeout: float = 15.0) -> float:
    """Poll ``check`` until it holds; the moment (monotonic) it first did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return time.monotonic()
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def passes(daemon: Daemon, account: str) -> list[PassOutcome]:
    return [o for o in list(daemon.outcomes) if o.account == account]


def status(config: Path, *extra: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(["--config", str(config), "status", *extra]) == 0
    return out.getvalue()


def calendar_file(folder: Path, uid: str, end: datetime) -> None:
    folder.mkdir(exist_ok=True)
    text = event_ics(uid, end - timedelta(hours=1), end,
                     title="Northwind Robotics - Technical Interview")
    (folder / f"{uid}.ics").write_text(text, encoding="utf-8")


def ends_for_due_in(seconds: float) -> datetime:
    """An interview end whose 2-hour thank-you falls due ``seconds`` from now."""
    now = datetime.now(UTC).replace(microsecond=0)
    return now + timedelta(seconds=seconds) - timedelta(hours=2)


HEAD = """
[mailbridge]
timezone = "UTC"
state_dir = "state"

[defaults]
thank_you_delay = "2h"
"""


def local_account(name: str = "home") -> str:
    return f"""
[accounts.{name}]
provider = "local"
address = "{USER}"
name = "Jordan Lee"
calendar = {{ kind = "file", path = "calendar" }}
maildir = {{ path = "Maildir" }}
"""


def imap_account(name: str, host: str, port: int, security: str, timeout: float,
                 user: str = USER) -> str:
    return f"""
[accounts.{name}]
provider = "imap"
address = "{USER}"
name = "Jordan Lee"
calendar = {{ kind = "file", path = "calendar" }}
imap = {{ host = "{host}", port = {port}, security = "{security}", username = "{user}", \
password_command = "echo {PASSWORD}", timeout = {timeout}, idle = false }}
"""


# --- pure scheduling rules -------------------------------------------------------------------

POLL = timedelta(minutes=5)


@pytest.mark.parametrize(
    ("failures", "low", "high"),
    [
        (1, timedelta(seconds=18.75), timedelta(seconds=37.5)),  # an eighth of 5 min
        (2, timedelta(seconds=37.5), timedelta(seconds=75)),
        (3, timedelta(seconds=75), timedelta(seconds=150)),
        (4, timedelta(seconds=150), timedelta(seconds=300)),
        (5, timedelta(seconds=150), timedelta(seconds=300)),  # capped at the poll interval
        (50, timedelta(seconds=150), timedelta(seconds=300)),
    ],
)
def test_retry_delay_grows_from_well_inside_the_poll_interval_to_it(
    failures: int, low: timedelta, high: timedelta
) -> None:
    assert retry_delay(failures, POLL, rand=lambda: 0.0) == low
    assert retry_delay(failures, POLL, rand=lambda: 1.0) == high
    assert low <= retry_delay(failures, POLL) <= high


def test_retry_delay_first_wait_is_at_most_a_minute_for_long_polls() -> None:
    assert retry_delay(1, timedelta(hours=1), rand=lambda: 1.0) == timedelta(minutes=1)
    assert retry_delay(0, POLL) == POLL


def test_retry_delay_jitter_spreads_accounts_that_failed_together() -> None:
    waits = {retry_delay(3, POLL) for _ in range(50)}
    assert len(waits) > 40


@pytest.mark.parametrize(
    ("wall", "mono", "jumped"),
    [
        (1.0, 1.0, False),
        (1.2, 1.0, False),  # ordinary scheduling noise
        (36_000.0, 1.0, True),  # asleep for ten hours
        (31.5, 1.0, True),
        (1.0, 600.0, False),  # SIGSTOP: both clocks move, scheduler catches up by itself
        (-3600.0, 1.0, False),  # clock set back: not a sleep
    ],
)
def test_clock_jump_means_the_machine_slept(wall: float, mono: float, jumped: bool) -> None:
    assert clock_jumped(wall, mono) is jumped


@pytest.mark.parametrize(
    ("last", "now", "due"),
    [(None, 0, True), (0, 899, False), (0, 900, True)],
)
def test_calendar_due(last: int | None, now: int, due: bool) -> None:
    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    last_at = None if last is None else t0 + timedelta(seconds=last)
    assert calendar_due(last_at, timedelta(minutes=15), t0 + timedelta(seconds=now)) is due


# --- every kind of broken account at once, next to a healthy one ---------------------------


@pytest.mark.slow
def test_broken_accounts_back_off_show_in_status_and_never_delay_a_healthy_one(
    tmp_path: Path,
) -> None:
    refused = free_port()  # nobody listens here
    hang_short, hang_long = HangServer(), HangServer()
    tls = SelfSignedTls(tmp_path)
    root = tmp_path / "world"
    root.mkdir()
    mailbox.Maildir(root / "Maildir", create=True)
    due_in = 2.5
    calendar_file(root / "calendar", "iv1", ends_for_due_in(due_in))
    config = root / "config.toml"
    config.write_text(
        HEAD + local_account("home")
        + imap_account("refused", "127.0.0.1", refused, "plain", 1)
        + imap_account("dns", "nonexistent.invalid", 993, "tls", 1)
        + imap_account("tls", "127.0.0.1", tls.port, "tls", 2)
        + imap_account("hang", "127.0.0.1", hang_short.port, "plain", 1)
        + imap_account("wedged", "127.0.0.1", hang_long.port, "plain", 60),
        encoding="utf-8",
    )
    settings = fast(config_module.load(config), poll=1.0)
    due = datetime.now(UTC).replace(microsecond=0)  # recomputed below from the ledger
    drafts = root / "Maildir" / ".Drafts" / "cur"
    try:
        with running(settings) as daemon:
            wait_for("the healthy account's first pass",
                     lambda: any(o.error is None for o in passes(daemon, "home")))
            with Ledger.open(settings.state_dir) as ledger:
                (row,) = [d for d in ledger.drafts("home") if d.kind == DraftKind.THANK_YOU][:1]
                due = row.due
            appeared = wait_for("the thank-you draft in the Maildir",
                                lambda: drafts.is_dir() and any(drafts.iterdir()))
            late_by = time.time() - (time.monotonic() - appeared) - due.timestamp()
            # The date job at the due time, not a poll, and not delayed by the wedged account.
            assert late_by < 0.8, late_by
            time.sleep(max(0.0, 4.0 - (time.monotonic() - appeared)))
            outcomes = list(daemon.outcomes)
            home_ok = [o for o in outcomes if o.account == "home" and o.error is None]
            assert len(home_ok) >= 4  # it kept to its one-second poll all along
            for name in ("refused", "dns", "tls", "hang"):
                failed = [o for o in outcomes if o.account == name]
                assert len(failed) >= 3, (name, failed)
                assert all(o.error for o in failed)
                # From the end of a failed pass to the next attempt: the first retry comes well
                # before the next poll would; none comes later than the poll interval.
                gaps = [(b.started - a.finished).total_seconds()
                        for a, b in zip(failed, failed[1:], strict=False)]
                assert gaps[0] < 0.5, (name, gaps)
                assert max(gaps) < 1.0 + 0.3, (name, gaps)
            # The wedged pass is still waiting on its 60-second timeout, alone.
            assert "wedged" in daemon.running
            assert not [o for o in outcomes if o.account == "wedged"]
            assert daemon.check_stuck() == ["wedged"]  # the main loop's once-a-second check
            assert daemon.check_stuck() == []  # reported once
        text = status(config)
        data = {a["account"]: a for a in json.loads(status(config, "--json"))["accounts"]}
    finally:
        for server in (hang_short, hang_long, tls):
            server.close()

    expect = {
        "refused": "cannot connect (ConnectionRefusedError",
        "dns": "IMAP server nonexistent.invalid port 993: cannot connect (gaierror",
        "tls": "certificate",
        "hang": "timed out",
        "wedged": "the server may be hanging",
    }
    blocks = {b.split(" ", 1)[0]: b for b in ("\n" + text).split("\n") if b and b[0] != " "}
    lines = text.splitlines()
    for name, words in expect.items():
        assert words in (data[name]["error"] or ""), (name, data[name]["error"])
        at = lines.index(next(line for line in lines if line.startswith(f"{name} (imap)")))
        assert lines[at + 1].startswith("  ! trouble since") and words in lines[at + 1], (
            name, lines[at + 1])
    assert set(expect) < set(blocks)
    assert data["home"]["error"] is None and data["home"]["last_ok"]


# --- Dovecot: down at start, killed mid-run, restarted ------------------------------------------


def deliver_while_down(server: Dovecot, user: str, raw: bytes) -> None:
    """What the MTA does while IMAP is down: a file in the user's Maildir/new."""
    home = server.dir / "mail" / user / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    for path in (server.dir / "mail" / user, home, *(home / s for s in ("cur", "new", "tmp"))):
        os.chown(path, MAIL_UID, MAIL_UID)
    target = home / "new" / f"{time.time():.6f}.outage.{os.getpid()}"
    target.write_bytes(raw)
    os.chown(target, MAIL_UID, MAIL_UID)


def reply_from_lead(subject: str) -> bytes:
    from email.message import EmailMessage
    from email.utils import format_datetime, make_msgid

    msg = EmailMessage()
    msg["From"] = f"Dana Whitfield <{LEAD}>"
    msg["To"] = USER
    msg["Subject"] = subject
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = make_msgid(domain="northwind-robotics.com")
    msg.set_content("Thanks Jordan, we will be in touch about next steps.")
    return msg.as_bytes()


def drafts_in(server: Dovecot, user: str) -> list[str]:
    client = server.client(user)
    try:
        client.select_folder("Drafts", readonly=True)
        found = client.fetch(client.search("ALL"), ["BODY.PEEK[HEADER.FIELDS (TO)]"])
        return sorted(
            next(v for k, v in data.items() if k.startswith(b"BODY")).decode().strip()
            for data in found.values()
        )
    finally:
        client.logout()


@pytest.mark.slow
@pytest.mark.server
def test_dovecot_down_at_start_then_killed_mid_run_recovers_within_a_poll(
    dovecot_server: Dovecot, tmp_path: Path
) -> None:
    server, user = dovecot_server, dovecot_server.new_user("outage")
    root = tmp_path / "world"
    root.mkdir()
    # Interview 1's thank-yous fall due while the server is down at start; interview 2's fall
    # due during the second outage.
    calendar_file(root / "calendar", "iv1", ends_for_due_in(-60))
    calendar_file(root / "calendar", "iv2", ends_for_due_in(4.0))
    config = root / "config.toml"
    config.write_text(HEAD + imap_account("mail", "127.0.0.1", server.port, "plain", 1, user),
                      encoding="utf-8")
    poll = 1.5
    settings = fast(config_module.load(config), poll=poll)
    server.kill()

    def ok_passes(daemon: Daemon) -> list[PassOutcome]:
        return [o for o in passes(daemon, "mail") if o.error is None]

    with running(settings) as daemon:
        wait_for("three failed passes", lambda: len(passes(daemon, "mail")) >= 3)
        assert "trouble since" in status(config) and "cannot connect" in status(config)
        server.start()  # once it accepts: a loaded machine may take seconds to start it
        cleared = time.monotonic()
        wait_for("a good pass", lambda: bool(ok_passes(daemon)))
        recovered = time.monotonic() - cleared
        assert recovered < poll + 1.0, (recovered, passes(daemon, "mail")[-4:],
                                        (server.dir / "dovecot.log").read_text()[-3000:])
        # The thank-yous that fell due while the server was down are there, once each.
        wait_for("two thank-you drafts", lambda: len(drafts_in(server, user)) == 2)
        assert "trouble since" not in status(config)

        # Second outage, mid-run: the server dies under an open session.
        server.kill()
        killed_at = datetime.now(UTC)
        wait_for("a failed pass after the kill",
                 lambda: any(o.error and o.started > killed_at for o in passes(daemon, "mail")))
        deliver_while_down(server, user, reply_from_lead("Re: Thank you"))
        with Ledger.open(settings.state_dir) as ledger:
            iv2 = [d for d in ledger.drafts("mail") if d.kind == DraftKind.THANK_YOU
                   and d.state == DraftState.PLANNED]
        assert iv2, "interview 2's thank-yous should still be waiting"
        wait_for("interview 2's due time to pass during the outage",
                 lambda: datetime.now(UTC) > max(d.due for d in iv2))
        time.sleep(0.3)
        before = len(ok_passes(daemon))
        server.start()
        cleared = time.monotonic()
        wait_for("a good pass after the restart", lambda: len(ok_passes(daemon)) > before)
        assert time.monotonic() - cleared < poll + 1.0
        wait_for("four thank-you drafts", lambda: len(drafts_in(server, user)) == 4)

    with Ledger.open(settings.state_dir) as ledger:
        replies = [m for m in ledger.messages("mail") if LEAD in m.sender]
        assert replies and all(m.interview_id is not None for m in replies), replies
        created = [d for d in ledger.drafts("mail") if d.state == DraftState.CREATED]
        assert sorted(d.recipient.email for d in created) == sorted([LEAD, OTHER] * 2)
        # The reply that came in during the outage took back the follow-up it answers.
        answered = {m.interview_id for m in replies}
        follow_ups = [d for d in ledger.drafts("mail") if d.kind == DraftKind.FOLLOW_UP
                      and d.interview_id in answered]
        assert follow_ups and all(d.state == DraftState.CANCELLED for d in follow_ups)
    assert len(drafts_in(server, user)) == 4  # nothing twice


# --- HTTP providers: throttling storms on the Gmail and Graph emulators ------------------------


def gmail_world(tmp: Path, emu: Any, monkeypatch: pytest.MonkeyPatch) -> Settings:
    from mailbridge_providers import gmail

    from mailbridge import secrets
    from tests.test_gmail import ME, fast_api, make_account

    secrets.store("personal", gmail.KEYRING_PURPOSE, "refresh-1")
    monkeypatch.setattr(gmail, "open_mailbox",
                        lambda a: gmail.GmailMailbox(a, fast_api(a, "gmail")))
    monkeypatch.setattr(gmail, "open_calendar",
                        lambda a: gmail.GoogleCalendar(a, fast_api(a, "calendar")))
    account = dataclasses.replace(make_account(emu, tmp), address=ME)
    return Settings(path=tmp / "config.toml", state_dir=tmp / "state", timezone="UTC",
                    country=None, accounts=(account,))


def outlook_world(tmp: Path, emu: Any, monkeypatch: pytest.MonkeyPatch) -> Settings:
    from mailbridge_providers import outlook

    from tests.test_outlook import Sleeps, sign_in

    account = sign_in(emu, "personal")
    retry = outlook.RetryPolicy(base=0.01, cap=0.05, sleep=Sleeps())
    real_mailbox, real_calendar = outlook.open_mailbox, outlook.open_calendar
    opts = {"http_client": emu.http_client(), "retry": retry}
    monkeypatch.setattr(outlook, "open_mailbox", lambda a: real_mailbox(a, **opts))
    monkeypatch.setattr(outlook, "open_calendar", lambda a: real_calendar(a, **opts))
    return Settings(path=tmp / "config.toml", state_dir=tmp / "state", timezone="UTC",
                    country=None, accounts=(account,))


@pytest.mark.slow
@pytest.mark.parametrize("provider", ["gmail", "outlook"])
def test_throttling_storm_is_survived_and_the_missed_draft_follows_it(
    provider: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    poll = 1.5
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3) + timedelta(seconds=3)
    if provider == "gmail":
        from tests.emulators.google import GoogleEmulator, interview_event

        gemu = GoogleEmulator("jordan.lee@gmail.com").start()
        stop = gemu.stop
        gemu.add_event(interview_event("iv1", start))
        settings = fast(gmail_world(tmp_path, gemu, monkeypatch), poll)

        def storm() -> None:
            gemu.fail_next(503, 10_000)

        def calm() -> None:
            with gemu.lock:
                gemu._faults.clear()

        def draft_count() -> int:
            return len(gemu.drafts)
    else:
        from tests.emulators.graph import GraphEmulator

        oemu = GraphEmulator().start()
        stop = oemu.stop
        settings = fast(outlook_world(tmp_path, oemu, monkeypatch), poll)
        oemu.add_event(
            "Interview: Staff Engineer at Fabrikam", start, start + timedelta(hours=1),
            organizer=("maria@fabrikam.example", "Maria Chen"),
            attendees=[("maria@fabrikam.example", "Maria Chen", "required", "accepted"),
                       ("raj@fabrikam.example", "Raj Patel", "required", "accepted")],
        )

        def storm() -> None:
            oemu.storm(10_000, status=429, retry_after="0")

        def calm() -> None:
            with oemu.lock:
                oemu.storms.clear()

        def draft_count() -> int:
            return len(oemu.drafts())
    try:
        with running(settings) as daemon:
            name = settings.accounts[0].name
            wait_for("the first good pass",
                     lambda: any(o.error is None for o in passes(daemon, name)))
            assert draft_count() == 0
            storm()
            stormed = datetime.now(UTC)
            wait_for("the due time to pass in the storm",
                     lambda: datetime.now(UTC) > start + timedelta(hours=3, seconds=0.5))
            wait_for("two failed passes in the storm", lambda: len(
                [o for o in passes(daemon, name) if o.error and o.started > stormed]) >= 2)
            with Ledger.open(settings.state_dir) as ledger:
                trouble = ledger.account_status(name)
            assert trouble.last_error and trouble.error_since
            assert draft_count() == 0
            calm()
            cleared = time.monotonic()
            wait_for("two thank-you drafts after the storm", lambda: draft_count() == 2)
            assert time.monotonic() - cleared < poll + 1.5
            time.sleep(poll)  # another pass or two: still two drafts, error cleared
            assert draft_count() == 2
            with Ledger.open(settings.state_dir) as ledger:
                assert ledger.account_status(name).last_error is None
    finally:
        stop()


# --- a pass that raises something unexpected ----------------------------------------------------


def test_an_unexpected_exception_is_recorded_and_retried_not_fatal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mailbridge_providers import local

    root = tmp_path / "world"
    root.mkdir()
    mailbox.Maildir(root / "Maildir", create=True)
    calendar_file(root / "calendar", "iv1", ends_for_due_in(-30))
    config = root / "config.toml"
    config.write_text(HEAD + local_account("home"), encoding="utf-8")
    settings = fast(config_module.load(config), poll=1.0)
    real = local.open_mailbox
    broken = threading.Event()
    broken.set()

    def flaky(account: Any) -> Any:
        if broken.is_set():
            raise RuntimeError("disk on fire")
        return real(account)

    monkeypatch.setattr(local, "open_mailbox", flaky)
    with running(settings) as daemon:
        wait_for("two failed passes", lambda: len(passes(daemon, "home")) >= 2)
        assert "RuntimeError: disk on fire" in status(config)
        broken.clear()
        wait_for("a good pass", lambda: any(o.error is None for o in passes(daemon, "home")))
    with Ledger.open(settings.state_dir) as ledger:
        assert ledger.account_status("home").last_error is None
        assert len([d for d in ledger.drafts("home") if d.state == DraftState.CREATED]) == 2


def test_stop_does_not_wait_forever_for_a_pass_stuck_without_a_timeout() -> None:
    """The stop path leaves after its grace period even if a pass never returns."""
    script = textwrap.dedent("""
        import threading, time, sys
        from pathlib import Path
        from mailbridge import daemon as d
        from mailbridge.settings import Settings
        s = Settings(path=Path("x"), state_dir=Path(sys.argv[1]), timezone="UTC",
                     country=None, accounts=())
        dm = d.Daemon(s.path, s)
        dm.running["stuck"] = time.monotonic()
        threading.Thread(target=time.sleep, args=(600,)).start()  # a non-daemon thread
        dm._wait_for_passes(0.2)
        print("not reached")
    """)
    import subprocess
    import sys

    with tempfile.TemporaryDirectory() as state:
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-c", script, state], capture_output=True,
                              text=True, timeout=30, check=False)
    assert done.returncode == 0 and "not reached" not in done.stdout
    assert time.monotonic() - started < 10
