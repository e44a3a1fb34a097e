"""Many accounts in one process: bounded workers, pooled ledger connections, providers kept open,
and the open-file limit (issue 13, issue 11 item 5). Nothing here is timed."""

from __future__ import annotations

import mailbox
import sqlite3
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mailbridge import config as config_module
from mailbridge import daemon as daemon_module
from mailbridge import engine
from mailbridge.daemon import Daemon, FileLimitError, files_needed, workers_for
from mailbridge.ledger import Ledger, LedgerPool
from mailbridge.service import unit_text
from tests.test_outages import HEAD, calendar_file, fast, wait_for

REPO = Path(__file__).resolve().parent.parent


def many_accounts(root: Path, count: int, *, interviews: bool = True) -> Path:
    """``count`` local accounts, each with its own Maildir and (optionally) a past interview."""
    parts = [HEAD]
    end = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    for n in range(count):
        home = root / f"a{n}"
        home.mkdir()
        mailbox.Maildir(home / "Maildir", create=True)
        if interviews:
            calendar_file(home / "calendar", f"iv-{n}", end)
        else:
            (home / "calendar").mkdir()
        parts.append(textwrap.dedent(f"""
            [accounts.a{n}]
            provider = "local"
            address = "jordan.lee@example.com"
            name = "Jordan Lee"
            calendar = {{ kind = "file", path = "a{n}/calendar" }}
            maildir = {{ path = "a{n}/Maildir" }}
            """))
    path = root / "config.toml"
    path.write_text("".join(parts), encoding="utf-8")
    return path


# --- the pool of ledger connections ------------------------------------------------------


def test_ledger_pool_reuses_one_connection_for_passes_one_after_another(tmp_path: Path) -> None:
    pool = LedgerPool(tmp_path)
    seen = set()
    for _ in range(5):
        with pool.borrow() as ledger:
            seen.add(id(ledger.conn))
    assert pool.opened == 1 and len(seen) == 1
    pool.close()
    assert pool.opened == 0


def test_ledger_pool_opens_one_per_pass_running_at_once(tmp_path: Path) -> None:
    pool = LedgerPool(tmp_path)
    with pool.borrow() as first, pool.borrow() as second:
        assert first.conn is not second.conn
    assert pool.opened == 2
    with pool.borrow():
        pass
    assert pool.opened == 2  # given back, not opened again
    pool.close()


def test_ledger_pool_drops_a_connection_that_failed_and_rolls_back_a_half_transaction(
    tmp_path: Path,
) -> None:
    pool = LedgerPool(tmp_path)
    with pytest.raises(sqlite3.OperationalError), pool.borrow() as ledger:
        ledger.conn.execute("SELECT * FROM no_such_table")
    assert pool.opened == 0
    with pytest.raises(RuntimeError), pool.borrow() as ledger:
        ledger.conn.execute("BEGIN IMMEDIATE")
        ledger.record_ok("x", datetime.now(UTC))
        raise RuntimeError("a bug in the pass")
    with pool.borrow() as ledger:
        assert not ledger.conn.in_transaction
        assert ledger.account_status("x").last_ok is None  # the half transaction is gone
    assert pool.opened == 1
    pool.close()


# --- workers and files -------------------------------------------------------------------


def test_workers_do_not_grow_with_the_number_of_accounts() -> None:
    assert workers_for(1) == 2
    assert workers_for(5) == 5
    assert workers_for(1000) == workers_for(200) == daemon_module.MAX_WORKERS


def test_files_needed_grows_with_accounts() -> None:
    assert files_needed(1000, 8) > files_needed(10, 8) > files_needed(0, 8) > 0


def test_file_limit_raised_when_the_hard_limit_allows_and_refused_in_one_line_when_not() -> None:
    # In a child process: the limits are the process's own.
    code = textwrap.dedent("""
        import resource
        from mailbridge.daemon import FileLimitError, raise_file_limit
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 4096))
        assert raise_file_limit(2000, 400) == 2000
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (2000, 4096)
        try:
            raise_file_limit(5000, 1000)
        except FileLimitError as exc:
            print(exc)
        else:
            raise SystemExit("no error")
        """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "1000 accounts need about 5000 open files" in done.stdout
    assert "ulimit -n" in done.stdout and "LimitNOFILE" in done.stdout
    assert FileLimitError.__doc__


def test_service_unit_sets_the_open_file_limit(tmp_path: Path) -> None:
    _, text = unit_text(tmp_path / "config.toml", platform="linux")
    assert "LimitNOFILE=" in text


@pytest.mark.slow
def test_thousand_accounts_under_ulimit_256_exit_with_one_clear_line(tmp_path: Path) -> None:
    config = many_accounts(tmp_path, 1000, interviews=False)

    def limit() -> None:
        import resource
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    done = subprocess.run(
        [sys.executable, "-m", "mailbridge.cli", "--config", str(config), "run"],
        capture_output=True, text=True, cwd=REPO, timeout=300, preexec_fn=limit, check=False,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("mailbridge: 1000 accounts need about")
    assert "ulimit -n" in lines[0] and "Traceback" not in done.stderr
    assert not (tmp_path / "state" / "ledger.sqlite3").exists()  # refused before anything


# --- the daemon under load ---------------------------------------------------------------


@pytest.mark.slow
def test_two_hundred_accounts_starting_together_never_meet_a_locked_database(
    tmp_path: Path,
) -> None:
    config = many_accounts(tmp_path, 200)
    settings = fast(config_module.load(config), poll=3600)
    # rand=0: no start-up spread, every account's first pass is due at the same instant.
    daemon = Daemon(config, settings, rand=lambda: 0.0)
    daemon.start()
    try:
        wait_for("every first pass", lambda: len({o.account for o in daemon.outcomes}) == 200,
                 timeout=600)
        failed = [o for o in daemon.outcomes if o.error]
        assert failed == [], failed[:3]
        assert not any("locked" in (o.error or "") for o in daemon.outcomes)
        # One ledger connection per worker at most, whatever the number of accounts.
        assert 1 <= daemon.ledgers.opened <= daemon.workers == daemon_module.MAX_WORKERS
        # Every account wrote its thank-you draft (the passes really ran).
        made = sum(1 for n in range(200)
                   if mailbox.Maildir(tmp_path / f"a{n}" / "Maildir" / ".Drafts", create=False))
        assert made == 200
    finally:
        daemon.shutdown()
        daemon.ledgers.close()
    with Ledger.open(settings.state_dir) as ledger:
        assert all(ledger.account_status(f"a{n}").last_ok for n in range(200))


def test_providers_are_opened_once_and_reused_across_passes(tmp_path: Path) -> None:
    config = many_accounts(tmp_path, 1)
    settings = fast(config_module.load(config), poll=3600)
    daemon = Daemon(config, settings)
    try:
        for _ in range(4):
            outcome = daemon.pass_now("a0")
            assert not isinstance(outcome, str) and outcome.error is None
        kept = daemon.providers["a0"]
        assert kept.opened == 2  # the Maildir and the calendar, once each for four passes
        assert daemon.ledgers.opened == 1
    finally:
        daemon.ledgers.close()


def test_providers_are_reopened_after_a_fault(tmp_path: Path) -> None:
    config = many_accounts(tmp_path, 1)
    settings = fast(config_module.load(config), poll=3600)
    daemon = Daemon(config, settings)
    try:
        assert daemon.pass_now("a0")
        first = daemon.providers["a0"]
        calendar = tmp_path / "a0" / "calendar"
        calendar.rename(tmp_path / "a0" / "calendar.away")  # the calendar vanishes: a fault
        outcome = daemon.pass_now("a0")
        assert not isinstance(outcome, str) and outcome.error is not None
        assert first.opened == 2
        (tmp_path / "a0" / "calendar.away").rename(calendar)
        outcome = daemon.pass_now("a0")
        assert not isinstance(outcome, str) and outcome.error is None
        assert first.opened == 4  # closed after the fault, opened again for the next pass
    finally:
        daemon.ledgers.close()


def test_providers_are_reopened_after_a_config_reload_changes_the_account(
    tmp_path: Path,
) -> None:
    config = many_accounts(tmp_path, 1)
    settings = fast(config_module.load(config), poll=3600)
    daemon = Daemon(config, settings)
    try:
        assert daemon.pass_now("a0")
        before = daemon.providers["a0"]
        daemon.pass_now("a0")
        assert daemon.providers["a0"] is before  # same settings: kept
        config.write_text(config.read_text(encoding="utf-8").replace(
            'name = "Jordan Lee"', 'name = "Jordan A. Lee"'), encoding="utf-8")
        daemon.reload()
        daemon.scheduler.remove_all_jobs()
        assert daemon.pass_now("a0")
        assert daemon.providers["a0"] is not before
        assert before.opened == 2 and daemon.providers["a0"].opened == 2
    finally:
        daemon.watch_stop.set()
        daemon._end_subscriptions()  # the reload subscribed the account to push
        daemon.ledgers.close()


def test_reconcile_keeps_what_it_was_given_to_keep(tmp_path: Path) -> None:
    config = many_accounts(tmp_path, 1)
    account = config_module.load(config).accounts[0]
    keep = engine.OpenProviders(account)
    with Ledger.open(tmp_path / "state") as ledger:
        for _ in range(3):
            report = engine.reconcile(account, ledger, keep=keep, read_calendar=False)
            assert report.error is None
    assert keep.opened == 1  # the calendar was never needed, the mailbox opened once
    keep.close()


def test_templates_are_checked_once_per_folder_and_again_after_an_edit(tmp_path: Path) -> None:
    from mailbridge import compose

    folder = tmp_path / "templates"
    folder.mkdir()
    compose._checked_templates.cache_clear()
    for _ in range(50):  # fifty accounts sharing the built-in templates and one folder
        assert compose.check_templates(None) == []
        assert compose.check_templates(folder) == []
    assert compose._checked_templates.cache_info().misses == 2
    (folder / "thank_you.txt.j2").write_text("Subject: hi\n\n{{ nope( }}\n", encoding="utf-8")
    problems = compose.check_templates(folder)
    assert problems and "thank_you.txt.j2" in problems[0]
    assert compose._checked_templates.cache_info().misses == 3


def test_gmail_idle_passes_of_the_daemon_refresh_no_token_after_the_first(tmp_path: Path) -> None:
    import dataclasses

    from mailbridge_providers import gmail
    from mailbridge_providers.gmail import GoogleSettings

    from mailbridge import secrets
    from mailbridge.settings import AccountSettings, CalendarSettings, Settings
    from tests.emulators.google import running

    me = "jordan.lee@gmail.com"
    with running(me) as emu:
        account = AccountSettings(
            name="gm", provider="gmail", address=me, calendar=CalendarSettings(kind="google"),
            calendar_interval=timedelta(0),  # the calendar is read at every pass
            tables={"google": GoogleSettings(
                client_secrets=str(emu.client_secrets(tmp_path / "client.json")),
                api_endpoint=emu.url, calendar_endpoint=emu.calendar_endpoint,
                token_uri=emu.url + "/token",
            )},
        )
        secrets.store("gm", gmail.KEYRING_PURPOSE, "refresh-1")
        settings = Settings(path=tmp_path / "c.toml", state_dir=tmp_path / "state",
                            timezone="UTC", country=None, accounts=(account,))
        daemon = Daemon(settings.path, settings)
        try:
            for _ in range(4):
                emu.counts.clear()
                outcome = daemon.pass_now("gm")
                assert not isinstance(outcome, str) and outcome.error is None
                assert sum(emu.counts.values()) >= 1  # each pass really asked the API
            assert emu.token_requests == 1
            assert daemon.providers["gm"].opened == 2
            # A config reload that changes the account opens new providers. Its Google
            # settings and refresh token are the same, so the still-valid sign-in is kept.
            renamed = dataclasses.replace(account, display_name="J. Lee")
            daemon.settings = dataclasses.replace(settings, accounts=(renamed,))
            outcome = daemon.pass_now("gm")
            assert not isinstance(outcome, str) and outcome.error is None
            assert daemon.providers["gm"].opened == 2 and emu.token_requests == 1
            # A reload that changes the Google settings signs in again: once.
            google = renamed.tables["google"]
            assert isinstance(google, GoogleSettings)
            moved = dataclasses.replace(renamed, tables={
                "google": dataclasses.replace(google, timeout=30.0)})
            daemon.settings = dataclasses.replace(settings, accounts=(moved,))
            for _ in range(2):
                outcome = daemon.pass_now("gm")
                assert not isinstance(outcome, str) and outcome.error is None
            assert emu.token_requests == 2
        finally:
            daemon.ledgers.close()


def test_local_watchers_share_one_observer_and_stop_one_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The watchdog fallback (macOS, Windows); Linux's inotify form is in test_local_watch."""
    import threading

    from mailbridge_providers import local

    monkeypatch.setattr(local, "_USE_INOTIFY", False)
    config = many_accounts(tmp_path, 2, interviews=False)
    accounts = config_module.load(config).accounts
    stops = [threading.Event(), threading.Event()]
    woken = [threading.Event(), threading.Event()]
    threads = [threading.Thread(target=local.watch, args=(a, w.set, s), daemon=True)
               for a, w, s in zip(accounts, woken, stops, strict=True)]
    for thread in threads:
        thread.start()
    try:
        wait_for("the shared observer", lambda: local._observer is not None)
        observer = local._observer

        def watched() -> set[str]:
            return {str(emitter.watch.path) for emitter in list(observer.emitters)}

        maildirs = {str(tmp_path / f"a{n}" / "Maildir") for n in (0, 1)}
        wait_for("both Maildirs watched", lambda: maildirs <= watched())
        stops[0].set()
        threads[0].join(timeout=10)
        assert not threads[0].is_alive()
        mailbox.Maildir(tmp_path / "a1" / "Maildir", create=False).add(b"Subject: hi\n\nx\n")
        wait_for("account 1's change", woken[1].is_set)
        mailbox.Maildir(tmp_path / "a0" / "Maildir", create=False).add(b"Subject: hi\n\nx\n")
        assert not woken[0].wait(timeout=1)  # stopped: its handler is gone
    finally:
        for stop in stops:
            stop.set()
        for thread in threads:
            thread.join(timeout=10)


def test_a_kept_maildir_still_pauses_when_drafts_vanish_and_marks_nothing_deleted(
    tmp_path: Path,
) -> None:
    config = many_accounts(tmp_path, 1)
    settings = fast(config_module.load(config), poll=3600)
    daemon = Daemon(config, settings)
    try:
        first = daemon.pass_now("a0")
        assert not isinstance(first, str) and first.error is None
        kept = daemon.providers["a0"]
        drafts = tmp_path / "a0" / "Maildir" / ".Drafts"
        drafts.rename(tmp_path / "a0" / "Drafts.away")
        second = daemon.pass_now("a0")
        assert not isinstance(second, str) and second.error and "Drafts" in second.error
        with Ledger.open(settings.state_dir) as ledger:
            states = {d.state.value for d in ledger.drafts("a0")}
            assert ledger.account_status("a0").paused
        assert states <= {"created", "planned"}  # nothing taken for deleted by the user
        assert daemon.providers["a0"] is kept and kept.opened == 2  # closed, to be reopened
        (tmp_path / "a0" / "Drafts.away").rename(drafts)
        third = daemon.pass_now("a0")
        assert not isinstance(third, str) and third.error is None
        assert kept.opened == 4
    finally:
        daemon.ledgers.close()


def test_local_push_needs_no_thread_per_account(tmp_path: Path) -> None:
    import threading

    config = many_accounts(tmp_path, 3, interviews=False)
    settings = fast(config_module.load(config), poll=3600)
    daemon = Daemon(config, settings)
    daemon.start()
    try:
        wait_for("the start-up passes", lambda: len({o.account for o in daemon.outcomes}) == 3)
        assert len(daemon.subscriptions) == 3
        assert not [t for t in threading.enumerate() if t.name.startswith("watch:")]
        mailbox.Maildir(tmp_path / "a2" / "Maildir", create=False).add(b"Subject: hi\n\nx\n")
        wait_for("a pass pushed by the new mail",
                 lambda: any(o.account == "a2" and o.trigger == "push" for o in daemon.outcomes))
    finally:
        daemon.shutdown()
        daemon.ledgers.close()
    assert daemon.subscriptions == []
