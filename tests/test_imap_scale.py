"""IMAP at scale (issue 13): the first pass finds the look-back window by bisecting
INTERNALDATE, and a password from password_command is fetched once per mailbox, not per login."""

from __future__ import annotations

import collections
import math
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from imapclient import IMAPClient
from mailbridge_providers import imap

from mailbridge.model import Folder
from tests.servers import DOVECOT, Dovecot
from tests.test_imap import account_for, mail

pytestmark = pytest.mark.server


def counting(client: IMAPClient, commands: collections.Counter[str]) -> IMAPClient:
    raw: Any = client._imap
    command = raw._command

    def counted(name: str, *args: Any) -> Any:
        commands[name.upper()] += 1
        return command(name, *args)

    raw._command = counted
    return client


@pytest.fixture(scope="module")
def sdbox_dovecot() -> Iterator[Dovecot]:
    """A Dovecot keeping mail in its own indexed format (bench/imap_first_pass.py runs on it)."""
    if not os.path.exists(DOVECOT):
        pytest.skip("Dovecot is not installed (apt-get install dovecot-imapd)")
    server = Dovecot.create(storage="sdbox")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("storage", ["maildir", "sdbox"])
def test_first_pass_bisects_internaldate_instead_of_searching(
    storage: str, request: pytest.FixtureRequest
) -> None:
    dovecot: Dovecot = request.getfixturevalue("dovecot" if storage == "maildir"
                                               else "sdbox_dovecot")
    user = dovecot.new_user()
    now = datetime.now(UTC)
    with dovecot.client(user) as other:
        for n in range(40):  # stored two months ago
            other.append("INBOX", mail(f"old {n}"), msg_time=now - timedelta(days=60, hours=n))
        for n in range(5):  # stored in the last hours
            other.append("INBOX", mail(f"new {n}"), msg_time=now - timedelta(hours=5 - n))
    commands: collections.Counter[str] = collections.Counter()
    account = account_for(dovecot, user)
    box = imap.ImapMailbox(account, connector=lambda: counting(imap.connect(account), commands))
    try:
        batch = box.messages(None, now - timedelta(days=7))
    finally:
        box.close()
    inbox = sorted(m.subject for m in batch.messages if m.folder is Folder.INBOX)
    assert inbox == [f"new {n}" for n in range(5)]
    assert commands["SEARCH"] == 0
    # The bisection, one FETCH of UIDs, then the headers of what was found.
    assert commands["FETCH"] <= math.ceil(math.log2(45)) + 1 + 3, commands


def test_first_pass_with_nothing_recent_and_an_empty_folder(dovecot: Dovecot) -> None:
    user = dovecot.new_user()
    now = datetime.now(UTC)
    with dovecot.client(user) as other:
        for n in range(3):
            other.append("INBOX", mail(f"old {n}"), msg_time=now - timedelta(days=90))
    box = imap.open_mailbox(account_for(dovecot, user))
    try:
        batch = box.messages(None, now - timedelta(days=7))
        assert [m for m in batch.messages if m.folder is Folder.INBOX] == []
        # The cursor moved past the old mail: the next pass lists nothing again.
        assert box.messages(batch.cursor, now - timedelta(days=7)).messages == ()
    finally:
        box.close()
    with dovecot.client(dovecot.new_user()) as empty:
        empty.select_folder("INBOX", readonly=True)
        assert imap.uids_stored_since(empty, 0, now) == []


def test_password_command_runs_once_across_reconnects(dovecot: Dovecot, tmp_path: Any) -> None:
    from tests.servers import PASSWORD

    user = dovecot.new_user()
    runs = tmp_path / "runs"
    command = f"sh -c 'echo run >> {runs}; echo {PASSWORD}'"
    account = account_for(dovecot, user, password_command=command)
    box = imap.open_mailbox(account)
    try:
        since = datetime.now(UTC) - timedelta(days=7)
        cursor = box.messages(None, since).cursor
        box._drop()  # the connection broke: the next read logs in again
        box.messages(cursor, since)
        box._drop()
        box.messages(cursor, since)
    finally:
        box.close()
    assert runs.read_text().splitlines() == ["run"]


def test_a_refused_password_is_fetched_again_at_the_next_login(
    dovecot: Dovecot, tmp_path: Any
) -> None:
    from mailbridge.adapters import AuthError
    from tests.servers import PASSWORD

    user = dovecot.new_user()
    secret = tmp_path / "secret"
    secret.write_text("wrong\n")
    account = account_for(dovecot, user, password_command=f"cat {secret}")
    remembered = imap.RememberedPassword(account)
    with pytest.raises(AuthError):
        remembered.connect()
    secret.write_text(PASSWORD + "\n")  # the user fixed it
    client = remembered.connect()
    client.logout()


def test_idle_sleeps_on_the_socket_and_wakes_for_mail_and_for_stop(dovecot: Dovecot) -> None:
    import threading
    import time

    from mailbridge.daemon import WakingEvent

    user = dovecot.new_user()
    account = account_for(dovecot, user)
    checks: list[float] = []

    def connector() -> IMAPClient:
        client = imap.connect(account)
        real = client.idle_check

        def counted(timeout: float | None = None) -> list[Any]:
            checks.append(time.monotonic())
            return list(real(timeout=timeout))

        client.idle_check = counted  # type: ignore[method-assign]
        return client

    stop = WakingEvent()
    woken = threading.Semaphore(0)
    watcher = threading.Thread(target=imap.watch, args=(account, woken.release, stop),
                               kwargs={"connector": connector}, daemon=True)
    watcher.start()
    try:
        time.sleep(3)  # idle: a check a second would mean a timer wakes the thread
        # (one read is allowed: the server's own answer to IDLE may land late on a busy box)
        assert len(checks) <= 1, checks
        with dovecot.client(user) as other:
            other.append("INBOX", mail("Re: Interview"))
        assert woken.acquire(timeout=10)
        assert len(checks) >= 1  # woken by the server's EXISTS, read once
    finally:
        stop.set()
        watcher.join(timeout=10)
        stop.close()
    assert not watcher.is_alive(), "watch() did not end after stop"
