"""`mailbridge run`: APScheduler drives a reconcile pass per account.

Per account: an interval job (the inbox poll; the calendar is read when calendar_interval has
passed), a date job at the next due time so a draft appears on time rather than at the next
poll, and a push watcher that triggers a pass when mail arrives (IMAP IDLE; for a local Maildir
and .ics folder, file system notifications through watchdog). Missed
runs after sleep coalesce into one catch-up. SIGTERM stops cleanly; SIGHUP reloads the config.
A Unix socket in the state directory (control.sock) takes requests from `mailbridge sync`,
`run --once` and `service status`: a pass now for one or every account, answered with its
outcome, so a one-shot command asks the service instead of fighting it for the ledger.

Faults: a pass never takes the daemon down. A failed pass (server down, dropped, throttled,
certificate or name lookup failure, or an unexpected error) is recorded in the ledger, which
`mailbridge status` shows, and the account's next pass is moved to a backoff delay: sooner than
the poll interval at first, then exponentially later with jitter, never later than the poll
interval. The first good pass clears the error and catches up (the engine is level-triggered:
mail that arrived and drafts that fell due meanwhile are handled then).

Accounts run side by side on a small pool of worker threads (not a thread per account), at
most one pass per account at a time; each running pass borrows one of the pool's ledger
connections, and each account keeps its mailbox and calendar open from pass to pass (reopened
after a fault or a config reload). Start-up passes and polls are spread with jitter, so a
thousand accounts do not all start in the same second. A timer that fires while its account is
busy is dropped (the running pass or its own wake-up covers it); a push (new mail) is remembered
and runs right after; every provider call has a timeout, so a hanging server holds one worker
for a while, never the others. A pass that runs much longer than the
poll interval is reported as stuck. When the wall clock jumps ahead of the monotonic clock (the
computer slept), every account gets one catch-up pass at once.
"""

from __future__ import annotations

import contextlib
import faulthandler
import json
import logging
import os
import random
import resource
import signal
import socket
import socketserver
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor as Pool
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler

from mailbridge import config as config_module
from mailbridge import engine, notify, retry
from mailbridge.adapters import ProviderError, calendar_class, mailbox_class
from mailbridge.engine import OpenProviders
from mailbridge.ledger import Ledger, LedgerPool, ledger_problem
from mailbridge.settings import AccountSettings, Settings

log = logging.getLogger("mailbridge")

# A wall clock that moved this much further than the monotonic clock means the machine slept.
CLOCK_JUMP = timedelta(seconds=30)
# The first retry after a failure waits about this share of the poll interval (at most RETRY_MAX).
RETRY_SHARE = 0.125
RETRY_MAX = timedelta(seconds=60)
# A pass running longer than this many poll intervals is reported in `status` as stuck.
STUCK_INTERVALS = 2
TIMER, POLL, PUSH, ASKED = "timer", "poll", "push", "asked"
PASS_NOW_PATIENCE = 600.0  # seconds `mailbridge sync` waits for a running pass to end
CONTROL_NAME = "control.sock"  # the Unix socket in the state directory
STOP_GRACE = 10.0  # seconds a stop waits for running passes
# Passes run on at most this many threads, whatever the number of accounts: a pass mostly waits
# on the network, and a few workers keep a thousand idle accounts cheap.
MAX_WORKERS = 8
# Start-up passes are spread over this many seconds per account (at most one poll interval).
START_SPREAD_PER_ACCOUNT = 0.05
# Each poll fires up to this share of the poll interval late (at most POLL_JITTER_MAX), so
# accounts that started together drift apart.
POLL_JITTER_SHARE = 0.1
POLL_JITTER_MAX = 60.0
# Open files: the interpreter and libraries; per worker a ledger connection (database, -wal,
# -shm) and what a running pass opens for a moment (a calendar file, an HTTP connection); per
# account what stays open between passes: at most a mail session and a push connection (IMAP;
# a Maildir holds none, its watcher shares one inotify descriptor).
BASE_FILES = 64
FILES_PER_WORKER = 7
FILES_PER_ACCOUNT = 2


@dataclass(frozen=True)
class PassOutcome:
    """One pass as the daemon saw it (kept in memory, for tests and the recovery bench)."""

    account: str
    trigger: str  # "timer" | "push"
    started: datetime
    finished: datetime
    error: str | None
    actions: tuple[str, ...] = ()  # the pass's decisions, one line each


class WakingEvent(threading.Event):
    """The push watchers' stop signal, with a file descriptor that turns readable once it is
    set: a watcher waits in the kernel on its connection and on this together, so an idle
    account costs no wake-ups and a stop or reload still reaches it at once."""

    def __init__(self) -> None:
        super().__init__()
        self._read, self._write = os.pipe()

    def fileno(self) -> int:
        return self._read

    def set(self) -> None:
        super().set()
        with contextlib.suppress(OSError):  # already closed: nobody is waiting any more
            os.write(self._write, b"x")

    def close(self) -> None:
        for fd in (self._read, self._write):
            with contextlib.suppress(OSError):
                os.close(fd)


def retry_delay(
    failures: int, poll: timedelta, *, rand: Callable[[], float] = random.random
) -> timedelta:
    """How long to wait before the next pass after ``failures`` failed passes in a row.

    Exponential from a short first wait (an eighth of the poll interval, at most a minute),
    capped at the poll interval, with "equal jitter": between half and all of that value, so
    accounts (and users) that failed together do not retry in step.
    """
    if failures < 1:
        return poll
    first = min(poll * RETRY_SHARE, RETRY_MAX)
    ceiling = timedelta(seconds=retry.exponential(
        failures, first.total_seconds(), poll.total_seconds()))
    return ceiling * (0.5 + 0.5 * rand())


def clock_jumped(wall_elapsed: float, monotonic_elapsed: float) -> bool:
    """Whether the wall clock ran ahead of the monotonic one by more than CLOCK_JUMP.

    On suspend the monotonic clock stops while the wall clock keeps going; timers that wait on
    the monotonic clock would fire up to one interval late after a resume.
    """
    return wall_elapsed - monotonic_elapsed > CLOCK_JUMP.total_seconds()


def stuck_after(account: AccountSettings) -> timedelta:
    return account.poll_interval * STUCK_INTERVALS


def _rereads(account: AccountSettings) -> bool:
    try:
        return calendar_class(account.calendar.kind).reread_every_pass
    except (ImportError, ProviderError):
        return False


def calendar_due(last: datetime | None, interval: timedelta, now: datetime) -> bool:
    return last is None or now - last >= interval


class Daemon:
    def __init__(
        self,
        config_path: Path,
        settings: Settings,
        *,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.config_path = config_path
        self.settings = settings
        self.rand = rand
        self.workers = workers_for(len(settings.accounts))
        self.ledgers = LedgerPool(settings.state_dir)
        self.providers: dict[str, OpenProviders] = {}
        self.scheduler = BackgroundScheduler(
            timezone=UTC,
            executors={"default": ThreadPoolExecutor(self.workers)},
            # run_account itself keeps one pass per account; a second instance of a job whose
            # first hangs returns at once instead of making APScheduler warn every interval.
            job_defaults={"coalesce": True, "max_instances": 3, "misfire_grace_time": None},
        )
        self.locks: dict[str, threading.Lock] = {}
        self.last_calendar: dict[str, datetime] = {}
        self.failures: dict[str, int] = {}
        self.running: dict[str, float] = {}  # account -> monotonic start of its pass
        self.stuck_reported: set[str] = set()
        self.rerun: set[str] = set()
        self.last_end: dict[str, float] = {}  # account -> monotonic end of its last pass
        self.forced: set[str] = set()  # accounts whose next poll is a retry or a catch-up
        self.outcomes: deque[PassOutcome] = deque(maxlen=10_000)
        self.state = threading.Lock()  # guards the sets and dicts above
        self.stop = threading.Event()
        self.watch_stop = WakingEvent()
        self.watchers: list[threading.Thread] = []
        self.subscriptions: list[Callable[[], None]] = []  # each ends one push subscription
        self.reload_requested = threading.Event()
        self.control: socketserver.UnixStreamServer | None = None

    # --- one pass ------------------------------------------------------------------------

    def run_account(self, name: str, trigger: str = TIMER) -> None:
        """A pass for ``name``, unless one is running (then a push is queued, a timer dropped)."""
        lock = self.locks.setdefault(name, threading.Lock())
        if trigger == POLL:
            with self.state:
                forced = name in self.forced
                self.forced.discard(name)
            if not forced and self._just_passed(name):
                return  # a pass (a catch-up, a due time, a push) has just read everything
        with self.state:
            if not lock.acquire(blocking=False):
                if trigger == PUSH:
                    self.rerun.add(name)
                return
        try:
            while True:
                account = self._account(name)
                if account is None:
                    return
                self._one_pass(account, trigger)
                with self.state:
                    if name not in self.rerun:
                        lock.release()
                        return
                    self.rerun.discard(name)
                    trigger = PUSH
        except BaseException:
            lock.release()
            raise

    def _just_passed(self, name: str) -> bool:
        """Whether the account's last pass ended within a quarter of its poll interval: a
        poll then (missed polls after sleep, or one jittered next to a due time) adds
        nothing but a second read."""
        account = self._account(name)
        ended = self.last_end.get(name)
        if account is None or ended is None:
            return False
        return time.monotonic() - ended < account.poll_interval.total_seconds() / 4

    def _one_pass(self, account: AccountSettings, trigger: str) -> PassOutcome:
        name = account.name
        now = datetime.now(UTC)
        with self.state:
            self.running[name] = time.monotonic()
        error: str | None
        actions: list[str] = []
        try:
            # A calendar that costs a few stat calls when unchanged is read at every pass,
            # so an edited .ics file is seen as soon as its watcher says so.
            read_calendar = _rereads(account) or calendar_due(
                self.last_calendar.get(name), account.calendar_interval, now
            )
            keep = self._providers(account)
            with self.ledgers.borrow() as ledger:
                report = engine.reconcile(
                    account, ledger, now=now, notify=notify.send, read_calendar=read_calendar,
                    keep=keep,
                )
            error = report.error
            actions = report.actions
            if error is None:
                if read_calendar:
                    self.last_calendar[name] = now
                if report.next_wakeup is not None:
                    self._at(name, report.next_wakeup)
        except sqlite3.Error as exc:  # full disk, read-only or damaged ledger: say so plainly
            error = f"account {name!r}: {ledger_problem(exc, self.settings.state_dir)}"
            log.error("%s", error)
            self._record_error(name, error, now)
        except Exception as exc:  # noqa: BLE001 - one account's bug must not stop the daemon
            self._drop_providers(name)
            error = (
                f"account {name!r}: the pass failed unexpectedly ({type(exc).__name__}: {exc}); "
                "will retry"
            )
            log.error("%s", error, exc_info=log.isEnabledFor(logging.DEBUG))
            self._record_error(name, error, now)
        finally:
            with self.state:
                self.running.pop(name, None)
                self.last_end[name] = time.monotonic()
                self.stuck_reported.discard(name)
        finished = datetime.now(UTC)
        outcome = PassOutcome(name, trigger, now, finished, error, tuple(actions))
        self.outcomes.append(outcome)
        took = (finished - now).total_seconds()
        if error is None:
            if self.failures.pop(name, 0):
                log.info("%s: working again", name)
            log.info("%s: pass ok (%s, %.2f s)", name, trigger, took)
            return outcome
        failures = self.failures.get(name, 0) + 1
        self.failures[name] = failures
        delay = retry_delay(failures, account.poll_interval, rand=self.rand)
        log.info("%s: pass failed (%s, %.2f s); retry %d in %.1f s",
                 name, trigger, took, failures, delay.total_seconds())
        self._retry(name, finished + delay)
        return outcome

    def pass_now(self, name: str, wait: float = PASS_NOW_PATIENCE) -> PassOutcome | str:
        """A pass for ``name`` now, after the one running (if any); its outcome, or why not."""
        account = self._account(name)
        if account is None:
            return f"no enabled account named {name!r} in the running service's config"
        lock = self.locks.setdefault(name, threading.Lock())
        if not lock.acquire(timeout=wait):
            return f"{name}: a pass has been running for over {wait:.0f} s; try again later"
        try:
            return self._one_pass(account, ASKED)
        finally:
            lock.release()

    def _at(self, name: str, when: datetime) -> None:
        self.scheduler.add_job(
            self.run_account, "date", run_date=when, args=[name],
            id=f"due:{name}", replace_existing=True,
        )
        log.info("%s: next due %s", name, when.isoformat())

    def _retry(self, name: str, when: datetime) -> None:
        """Move the account's poll to ``when``; the interval continues from there."""
        with self.state:
            self.forced.add(name)  # this poll is wanted even right after a pass
        try:
            self.scheduler.modify_job(f"poll:{name}", next_run_time=when)
        except JobLookupError:  # reloaded or not scheduled (a lone pass): a date job instead
            self.scheduler.add_job(self.run_account, "date", run_date=when, args=[name],
                                   id=f"retry:{name}", replace_existing=True)

    def _providers(self, account: AccountSettings) -> OpenProviders:
        """The account's open providers; opened afresh when its settings changed (a reload)."""
        with self.state:
            keep = self.providers.get(account.name)
            if keep is not None and keep.account == account:
                return keep
            self.providers[account.name] = fresh = OpenProviders(account)
        if keep is not None:
            keep.close()
        return fresh

    def _drop_providers(self, name: str) -> None:
        with self.state:
            keep = self.providers.pop(name, None)
        if keep is not None:
            keep.close()

    def _record_error(self, name: str, error: str, now: datetime) -> None:
        try:
            with self.ledgers.borrow() as ledger, ledger.transaction():
                ledger.record_error(name, error, now)
        except Exception as exc:  # noqa: BLE001 - the ledger itself may be what failed
            log.error("%s: could not record the error in the ledger (%s)", name, exc)

    def _account(self, name: str) -> AccountSettings | None:
        for account in self.settings.accounts:
            if account.name == name and account.enabled:
                return account
        return None

    # --- watchdogs -----------------------------------------------------------------------

    def check_stuck(self, monotonic_now: float | None = None) -> list[str]:
        """Record in the ledger every pass that runs far longer than its poll interval."""
        at = time.monotonic() if monotonic_now is None else monotonic_now
        found: list[str] = []
        with self.state:
            running = dict(self.running)
        for name, since in running.items():
            account = self._account(name)
            if account is None or name in self.stuck_reported:
                continue
            elapsed = timedelta(seconds=at - since)
            if elapsed < stuck_after(account):
                continue
            error = (
                f"account {name!r}: a pass has been waiting {_span(elapsed)} for an answer; "
                "the server may be hanging (other accounts carry on)"
            )
            log.warning("%s", error)
            self._record_error(name, error, datetime.now(UTC) - elapsed)
            with self.state:
                self.stuck_reported.add(name)
            found.append(name)
        return found

    def catch_up(self) -> None:
        """One pass per account now (after a resume from sleep), through the poll jobs."""
        now = datetime.now(UTC)
        for account in self.settings.accounts:
            if account.enabled:
                self._retry(account.name, now)
        self.scheduler.wakeup()

    # --- jobs ----------------------------------------------------------------------------

    def schedule(self) -> None:
        enabled = [a for a in self.settings.accounts if a.enabled]
        now = datetime.now(UTC)
        for account in enabled:
            poll = account.poll_interval.total_seconds()
            # A pass at start to catch up, spread out so many accounts do not start at once.
            spread = min(poll, START_SPREAD_PER_ACCOUNT * len(enabled))
            self.scheduler.add_job(
                self.run_account, "interval",
                seconds=poll, args=[account.name, POLL],
                jitter=min(poll * POLL_JITTER_SHARE, POLL_JITTER_MAX),
                id=f"poll:{account.name}", replace_existing=True,
                next_run_time=now + timedelta(seconds=spread * self.rand()),
            )
            self._start_watcher(account)

    def _start_watcher(self, account: AccountSettings) -> None:
        """Push: a mailbox that declares it (``pushes``) either offers `subscribe`, which
        needs no thread (a Maildir's file notifications), or `watch`, which blocks in a thread
        of its own (IMAP IDLE)."""
        try:
            mailbox = mailbox_class(account.provider)
        except (ImportError, ProviderError):
            return
        if not mailbox.pushes:
            return

        def on_change(name: str = account.name) -> None:
            self.scheduler.add_job(self.run_account, args=[name, PUSH], id=f"push:{name}",
                                   replace_existing=True)

        if mailbox.subscribes:
            try:
                self.subscriptions.append(mailbox.subscribe(account, on_change))
            except Exception as exc:  # noqa: BLE001 - polling still covers the account
                log.warning("%s: no push notifications (%s); polling continues",
                            account.name, exc)
            return
        watch: Callable[..., Any] = mailbox.watch

        thread = threading.Thread(
            target=self._guarded_watch, args=(watch, account, on_change),
            name=f"watch:{account.name}", daemon=True,
        )
        thread.start()
        self.watchers.append(thread)

    def _guarded_watch(
        self, watch: Callable[..., Any], account: AccountSettings, on_change: Callable[[], None]
    ) -> None:
        try:
            watch(account, on_change, self.watch_stop)
        except Exception as exc:  # noqa: BLE001 - polling still covers the account
            log.warning("%s: push watcher stopped (%s); polling continues", account.name, exc)

    def _end_subscriptions(self) -> None:
        ending, self.subscriptions = self.subscriptions, []
        for unsubscribe in ending:
            with contextlib.suppress(Exception):  # its folder may be gone already
                unsubscribe()

    def reload(self) -> None:
        try:
            settings = config_module.load(self.config_path)
        except config_module.ConfigError as exc:
            log.error("config not reloaded, keeping the old one: %s", exc)
            return
        self._end_subscriptions()
        self.watch_stop.set()
        deadline = time.monotonic() + 5
        for thread in self.watchers:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        self.watchers.clear()
        if not any(t.is_alive() for t in threading.enumerate() if t.name.startswith("watch:")):
            self.watch_stop.close()
        self.watch_stop = WakingEvent()
        self.scheduler.remove_all_jobs()
        self.settings = settings
        kept = {a.name for a in settings.accounts if a.enabled}
        with self.state:
            gone = [n for n in self.providers if n not in kept and n not in self.running]
        for name in gone:  # changed accounts reopen at their next pass (see _providers)
            self._drop_providers(name)
        self.schedule()
        log.info("config reloaded from %s", self.config_path)

    # --- control socket: `mailbridge sync`, `run --once` and `service status` ask here -----

    def answer(self, request: object) -> dict[str, Any]:
        """The reply to one control request (a JSON object with a "command")."""
        if not isinstance(request, dict):
            return {"error": "not a request"}
        command = request.get("command")
        if command == "ping":
            return {"pid": os.getpid(), "config": str(self.config_path),
                    "accounts": [a.name for a in self.settings.accounts if a.enabled]}
        if command != "sync":
            return {"error": f"unknown command {command!r}"}
        wanted = request.get("account")
        names = ([str(wanted)] if wanted else
                 [a.name for a in self.settings.accounts if a.enabled])
        # Side by side, so a hanging server delays only its own account's answer.
        with Pool(max_workers=max(1, min(self.workers, len(names)))) as pool:
            outcomes = list(pool.map(self.pass_now, names))
        results: list[dict[str, Any]] = []
        for name, outcome in zip(names, outcomes, strict=True):
            if isinstance(outcome, str):
                results.append({"account": name, "error": outcome, "actions": []})
            else:
                results.append({"account": name, "error": outcome.error,
                                "actions": list(outcome.actions)})
        return {"results": results}

    def open_control(self) -> None:
        """Listen on the state directory's control socket (a failure only loses `sync`)."""
        path = control_path(self.settings.state_dir)
        daemon = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                try:
                    request = json.loads(self.rfile.readline(65536) or b"null")
                except ValueError:
                    request = None
                reply = daemon.answer(request)
                with contextlib.suppress(OSError):  # the asker went away: nothing to tell
                    self.wfile.write(json.dumps(reply).encode() + b"\n")

        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # left by a daemon that died; we hold the daemon lock now
        try:
            server = socketserver.ThreadingUnixStreamServer(str(path), Handler)
        except OSError as exc:
            log.warning("no control socket at %s (%s); `mailbridge sync` cannot reach this "
                        "service, which otherwise runs as usual", path, exc.strerror or exc)
            return
        server.daemon_threads = True
        with contextlib.suppress(OSError):
            os.chmod(path, 0o600)
        self.control = server
        threading.Thread(target=server.serve_forever, name="control", daemon=True).start()

    def close_control(self) -> None:
        if self.control is None:
            return
        self.control.shutdown()
        self.control.server_close()
        self.control = None
        with contextlib.suppress(FileNotFoundError):
            control_path(self.settings.state_dir).unlink()

    # --- main loop -------------------------------------------------------------------------

    def start(self) -> None:
        """Start the scheduler and the jobs (without signal handlers: for tests and benches)."""
        self.scheduler.start()
        self.schedule()

    def shutdown(self) -> None:
        self._end_subscriptions()
        self.watch_stop.set()
        self.scheduler.shutdown(wait=False)

    def tick(self, wall_elapsed: float, monotonic_elapsed: float) -> None:
        """The main loop's once-a-second housekeeping."""
        if self.reload_requested.is_set():
            self.reload_requested.clear()
            self.reload()
        if clock_jumped(wall_elapsed, monotonic_elapsed):
            log.info("the clock jumped %.0f s ahead (the computer slept?); catching up",
                     wall_elapsed - monotonic_elapsed)
            self.catch_up()
        self.check_stuck()

    def serve(self) -> int:
        enabled = sum(1 for a in self.settings.accounts if a.enabled)
        raise_file_limit(files_needed(enabled, self.workers), enabled)
        holder = Ledger.open(self.settings.state_dir)
        holder.lock()  # one daemon per ledger
        signal.signal(signal.SIGTERM, lambda *_: self.stop.set())
        signal.signal(signal.SIGINT, lambda *_: self.stop.set())
        signal.signal(signal.SIGHUP, lambda *_: self.reload_requested.set())
        faulthandler.register(signal.SIGUSR1)  # `kill -USR1` prints every thread's stack
        self.start()
        self.open_control()
        names = ", ".join(a.name for a in self.settings.accounts if a.enabled)
        log.info("mailbridge running for %s; state in %s", names, self.settings.state_dir)
        wall, mono = time.time(), time.monotonic()
        try:
            while not self.stop.wait(timeout=1):
                now_wall, now_mono = time.time(), time.monotonic()
                self.tick(now_wall - wall, now_mono - mono)
                wall, mono = now_wall, now_mono
        finally:
            log.info("stopping")
            self.close_control()
            self._end_subscriptions()
            self.watch_stop.set()
            self.scheduler.shutdown(wait=False)
            self._wait_for_passes(STOP_GRACE)
            with self.state:
                kept, self.providers = list(self.providers.values()), {}
            for keep in kept:
                keep.close()
            self.ledgers.close()
            holder.close()
        return 0

    def _wait_for_passes(self, grace: float) -> None:
        """Let running passes finish; after ``grace`` seconds, leave without them.

        A pass stuck on a server without a timeout would otherwise hold the process forever
        (the worker threads are joined at exit). Leaving is safe: the ledger is consistent after
        every step, and the next start repairs an interrupted draft by its Message-ID.
        """
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            with self.state:
                if not self.running:
                    return
            time.sleep(0.05)
        with self.state:
            names = ", ".join(sorted(self.running))
        log.warning("stopping without waiting for the pass of %s (no answer from the server)",
                    names)
        logging.shutdown()
        os._exit(0)


def workers_for(accounts: int) -> int:
    """Worker threads for ``accounts``: one per account up to MAX_WORKERS (at least two)."""
    return min(MAX_WORKERS, max(2, accounts))


def files_needed(accounts: int, workers: int) -> int:
    return BASE_FILES + FILES_PER_WORKER * workers + FILES_PER_ACCOUNT * accounts


class FileLimitError(Exception):
    """The process may not open as many files as its accounts need."""


def raise_file_limit(needed: int, accounts: int) -> int:
    """Raise the soft RLIMIT_NOFILE to ``needed`` when it is lower; the limit now in force.

    The soft limit (often 1,024) may be raised up to the hard one without privileges; above the
    hard limit only the user (``ulimit -n``) or the service unit (LimitNOFILE=) can help.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return soft
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise FileLimitError(
            f"{accounts} accounts need about {needed} open files, but this process may open "
            f"only {hard} (ulimit -n); raise the limit (`ulimit -n {needed}` in the shell, or "
            "LimitNOFILE= in the service unit) or disable some accounts"
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    return needed


def control_path(state_dir: Path) -> Path:
    return Path(state_dir).expanduser() / CONTROL_NAME


class ServiceUnreachable(Exception):
    """No service answers on the control socket (not running, or another state_dir)."""


def ask_service(
    state_dir: Path, request: dict[str, Any], timeout: float = PASS_NOW_PATIENCE + 60
) -> dict[str, Any]:
    """Send one request to the running service and return its reply."""
    path = control_path(state_dir)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        try:
            conn.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError) as exc:
            raise ServiceUnreachable(str(path)) from exc
        conn.sendall(json.dumps(request).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
    try:
        reply = json.loads(data or b"null")
    except ValueError:
        reply = None
    if not isinstance(reply, dict):
        raise ServiceUnreachable(f"{path}: no usable answer")
    return reply


def _span(elapsed: timedelta) -> str:
    seconds = int(elapsed.total_seconds())
    if seconds < 120:
        return f"{seconds} seconds"
    if seconds < 7200:
        return f"{seconds // 60} minutes"
    return f"{seconds // 3600} hours"
