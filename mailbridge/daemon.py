"""`mailbridge run`: APScheduler drives a reconcile pass per account.

Per account: an interval job (the inbox poll; the calendar is read when calendar_interval has
passed), a date job at the next due time so a draft appears on time rather than at the next
poll, and, for IMAP mailboxes, an IDLE watcher that triggers a pass when mail arrives. Missed
runs after sleep coalesce into one catch-up. SIGTERM stops cleanly; SIGHUP reloads the config.
Each pass opens its own ledger connection; one lock per account keeps passes of one account in
sequence while accounts run side by side, so a slow or failing account never stalls the others.
"""

from __future__ import annotations

import faulthandler
import importlib
import logging
import signal
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler

from mailbridge import config as config_module
from mailbridge import engine, notify
from mailbridge.ledger import Ledger
from mailbridge.settings import AccountSettings, Settings

log = logging.getLogger("mailbridge")


class Daemon:
    def __init__(self, config_path: Path, settings: Settings) -> None:
        self.config_path = config_path
        self.settings = settings
        self.scheduler = BackgroundScheduler(
            timezone=UTC,
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        self.locks: dict[str, threading.Lock] = {}
        self.last_calendar: dict[str, datetime] = {}
        self.stop = threading.Event()
        self.watch_stop = threading.Event()
        self.watchers: list[threading.Thread] = []
        self.reload_requested = threading.Event()

    # --- one pass ------------------------------------------------------------------------

    def run_account(self, name: str) -> None:
        account = self._account(name)
        if account is None:
            return
        lock = self.locks.setdefault(name, threading.Lock())
        with lock:
            now = datetime.now(UTC)
            read_calendar = calendar_due(
                self.last_calendar.get(name), account.calendar_interval, now
            )
            with Ledger.open(self.settings.state_dir) as ledger:
                report = engine.reconcile(
                    account, ledger, now=now, notify=notify.send, read_calendar=read_calendar
                )
            if read_calendar and report.error is None:
                self.last_calendar[name] = now
            if report.next_wakeup is not None:
                self.scheduler.add_job(
                    self.run_account, "date", run_date=report.next_wakeup, args=[name],
                    id=f"due:{name}", replace_existing=True,
                )
                log.info("%s: next due %s", name, report.next_wakeup.isoformat())

    def _account(self, name: str) -> AccountSettings | None:
        for account in self.settings.accounts:
            if account.name == name and account.enabled:
                return account
        return None

    # --- jobs ----------------------------------------------------------------------------

    def schedule(self) -> None:
        for account in self.settings.accounts:
            if not account.enabled:
                continue
            self.scheduler.add_job(
                self.run_account, "interval",
                seconds=account.poll_interval.total_seconds(), args=[account.name],
                id=f"poll:{account.name}", replace_existing=True,
                next_run_time=datetime.now(UTC),  # a pass at start: catch up at once
            )
            self._start_watcher(account)

    def _start_watcher(self, account: AccountSettings) -> None:
        """Push: a provider module may offer `watch(account, on_change, stop)` (IMAP IDLE)."""
        try:
            module = importlib.import_module(f"providers.{account.provider}")
        except ImportError:
            return
        watch: Callable[..., Any] | None = getattr(module, "watch", None)
        if watch is None:
            return

        def on_change(name: str = account.name) -> None:
            self.scheduler.add_job(self.run_account, args=[name], id=f"push:{name}",
                                   replace_existing=True)

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

    def reload(self) -> None:
        try:
            settings = config_module.load(self.config_path)
        except config_module.ConfigError as exc:
            log.error("config not reloaded, keeping the old one: %s", exc)
            return
        self.watch_stop.set()
        for thread in self.watchers:
            thread.join(timeout=5)
        self.watchers.clear()
        self.watch_stop = threading.Event()
        self.scheduler.remove_all_jobs()
        self.settings = settings
        self.schedule()
        log.info("config reloaded from %s", self.config_path)

    # --- main loop -------------------------------------------------------------------------

    def serve(self) -> int:
        holder = Ledger.open(self.settings.state_dir)
        holder.lock()  # one daemon per ledger
        signal.signal(signal.SIGTERM, lambda *_: self.stop.set())
        signal.signal(signal.SIGINT, lambda *_: self.stop.set())
        signal.signal(signal.SIGHUP, lambda *_: self.reload_requested.set())
        faulthandler.register(signal.SIGUSR1)  # `kill -USR1` prints every thread's stack
        self.scheduler.start()
        self.schedule()
        names = ", ".join(a.name for a in self.settings.accounts if a.enabled)
        log.info("mailbridge running for %s; state in %s", names, self.settings.state_dir)
        try:
            while not self.stop.wait(timeout=1):
                if self.reload_requested.is_set():
                    self.reload_requested.clear()
                    self.reload()
        finally:
            log.info("stopping")
            self.watch_stop.set()
            self.scheduler.shutdown(wait=True)
            holder.close()
        return 0


def calendar_due(last: datetime | None, interval: timedelta, now: datetime) -> bool:
    return last is None or now - last >= interval
