"""IMAP push at scale (issue 13): every account's IDLE connection is served by one shared
thread, mail wakes only its own account, a lost connection is made again (and reported once),
and ending a subscription closes its connection."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from imapclient import IMAPClient
from mailbridge_providers import imap

from tests.servers import Dovecot
from tests.test_imap import account_for, mail

pytestmark = pytest.mark.server


class Subscriber:
    """One account subscribed to push, with the connections it made and its wake-ups."""

    def __init__(self, dovecot: Dovecot, user: str) -> None:
        self.user = user
        self.account = account_for(dovecot, user)
        self.woken = threading.Semaphore(0)
        self.clients: list[IMAPClient] = []
        self.end: Callable[[], None] = lambda: None

    def connect(self) -> IMAPClient:
        client = imap.connect(self.account)
        self.clients.append(client)
        return client

    def start(self) -> None:
        self.end = imap.subscribe(self.account, self.woken.release, connector=self.connect)

    def listening(self) -> bool:
        """Its newest connection is idling and waited on by the shared thread."""
        if not self.clients:
            return False
        watched = {key.fd for key in imap._hub()._selector.get_map().values()}
        return self.clients[-1].socket().fileno() in watched


def idle_sockets() -> int:
    """The IDLE connections the shared thread waits on (its wake-up socket aside)."""
    return len(imap._hub()._selector.get_map()) - 1


def wait_until(what: str, check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not {what} within {timeout} s"
        time.sleep(0.05)


@contextmanager
def subscribed(dovecot: Dovecot, count: int) -> Iterator[list[Subscriber]]:
    subscribers = [Subscriber(dovecot, dovecot.new_user()) for _ in range(count)]
    try:
        for subscriber in subscribers:
            subscriber.start()
        wait_until("all idling", lambda: all(s.listening() for s in subscribers))
        assert idle_sockets() >= count
        yield subscribers
    finally:
        for subscriber in subscribers:
            subscriber.end()


def test_accounts_share_one_idle_thread_and_mail_wakes_only_its_account(
    dovecot: Dovecot,
) -> None:
    before = set(threading.enumerate())
    with subscribed(dovecot, 8) as subscribers:
        assert len([t for t in threading.enumerate() if t.name == "imap-idle"]) == 1
        added = set(threading.enumerate()) - before
        assert len(added) <= 1 + imap.CONNECTORS < len(subscribers), sorted(
            t.name for t in added)

        chosen = subscribers[3]
        with dovecot.client(chosen.user) as other:
            other.append("INBOX", mail("Re: Interview"))
        assert chosen.woken.acquire(timeout=10), "the account with new mail was not woken"
        assert not chosen.woken.acquire(timeout=0.8)  # one arrival, one wake-up
        assert not [s.user for s in subscribers if s.woken.acquire(timeout=0)]
        assert all(len(s.clients) == 1 for s in subscribers)  # nobody reconnected


def test_a_lost_connection_is_made_again_and_reported_once(dovecot: Dovecot) -> None:
    with subscribed(dovecot, 2) as (lost, calm):
        # The network drops the connection under the account (as a NAT timeout or a
        # server-side kick would): the shared thread reads EOF.
        lost.clients[0].socket().shutdown(socket.SHUT_RDWR)
        assert lost.woken.acquire(timeout=15), "no reconnect and report after the loss"
        assert not lost.woken.acquire(timeout=0.8)
        wait_until("idling again", lost.listening)
        assert len(lost.clients) == 2
        assert not calm.woken.acquire(timeout=0) and len(calm.clients) == 1

        # The new connection works: mail arriving now wakes the account.
        with dovecot.client(lost.user) as other:
            other.append("INBOX", mail("Re: Interview"))
        assert lost.woken.acquire(timeout=10)


def test_unsubscribe_closes_the_connection(dovecot: Dovecot) -> None:
    with subscribed(dovecot, 2) as (ended, kept):
        client = ended.clients[0]
        ended.end()
        assert client.socket().fileno() == -1, "the IDLE connection is still open"
        assert not ended.listening() and kept.listening()
        # Mail after the end wakes nobody.
        with dovecot.client(ended.user) as other:
            other.append("INBOX", mail("Re: Interview"))
        assert not ended.woken.acquire(timeout=1)
        assert len(ended.clients) == 1  # and it does not come back


def test_unsubscribe_while_connecting_leaves_no_connection(dovecot: Dovecot) -> None:
    subscriber = Subscriber(dovecot, dovecot.new_user())
    gate = threading.Event()
    made: list[IMAPClient] = []

    def slow_connect() -> IMAPClient:
        gate.wait(10)
        client = subscriber.connect()
        made.append(client)
        return client

    end = imap.subscribe(subscriber.account, subscriber.woken.release, connector=slow_connect)
    end()  # while the log-in is still under way
    gate.set()
    wait_until("the log-in finished", lambda: bool(made))
    wait_until("its connection closed", lambda: made[0].socket().fileno() == -1)
    assert not subscriber.listening()


def test_the_daemon_gives_imap_accounts_no_thread_of_their_own(
    dovecot: Dovecot, tmp_path: Path
) -> None:
    from mailbridge import config as config_module
    from mailbridge.daemon import Daemon
    from tests.servers import PASSWORD
    from tests.test_outages import HEAD, fast, wait_for

    users = [dovecot.new_user("daemon") for _ in range(3)]
    (tmp_path / "calendar").mkdir()
    accounts = "".join(f"""
[accounts.a{n}]
provider = "imap"
address = "{user}"
name = "Jordan Lee"
calendar = {{ kind = "file", path = "calendar" }}
imap = {{ host = "127.0.0.1", port = {dovecot.port}, security = "plain", username = "{user}", \
password_command = "echo {PASSWORD}" }}
""" for n, user in enumerate(users))
    config = tmp_path / "config.toml"
    config.write_text(HEAD + accounts, encoding="utf-8")
    daemon = Daemon(config, fast(config_module.load(config), poll=3600))
    daemon.start()
    try:
        wait_for("the start-up passes", lambda: len({o.account for o in daemon.outcomes}) == 3,
                 timeout=30)
        assert len(daemon.subscriptions) == 3
        assert not [t for t in threading.enumerate() if t.name.startswith("watch:")]
        wait_for("every account idling", lambda: idle_sockets() >= 3, timeout=20)
        with dovecot.client(users[2]) as other:
            other.append("INBOX", mail("Re: Interview"))
        wait_for("a pass pushed by the new mail", lambda: any(
            o.account == "a2" and o.trigger == "push" for o in daemon.outcomes), timeout=20)
        assert not any(o.trigger == "push" for o in daemon.outcomes if o.account != "a2")
    finally:
        daemon.shutdown()
        daemon.ledgers.close()
    assert daemon.subscriptions == []
