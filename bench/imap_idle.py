"""IMAP commands issued per idle minute per account, by providers.imap.watch().

Starts its own Dovecot (tests.servers), runs watch() on an empty inbox with a connection that
counts every IMAP command, and prints the count after setup. The goal: nothing beyond the IDLE
renewal (one DONE + IDLE pair every 24 minutes, i.e. about 0.04 commands a minute).

A real "idle minute" is long; ``--seconds`` shortens the observed span and ``--renew`` the IDLE
renewal period, and the figures are scaled back to a minute and to the real 24-minute renewal.
It also counts the wake-ups of the watcher's threads (context switches, from /proc): the goal is
about none per idle minute besides the renewals, since the threads sleep on the sockets.

    python bench/imap_idle.py [--seconds 60] [--renew 20]
"""

from __future__ import annotations

import argparse
import collections
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from imapclient import IMAPClient  # noqa: E402
from mailbridge_providers import imap  # noqa: E402
from mailbridge_providers.imap import ImapSettings  # noqa: E402

from mailbridge.settings import AccountSettings  # noqa: E402
from tests.servers import PASSWORD, Dovecot  # noqa: E402


class Counter:
    """Commands sent, and bytes each way, over every connection it made."""

    def __init__(self) -> None:
        self.commands: collections.Counter[str] = collections.Counter()
        self.waited: collections.Counter[str] = collections.Counter()  # seconds per command
        self.sent = 0
        self.received = 0

    def reset(self) -> None:
        self.commands.clear()
        self.waited.clear()
        self.sent = self.received = 0

    @property
    def total(self) -> int:
        return sum(self.commands.values())

    def attach(self, client: IMAPClient) -> IMAPClient:
        raw: Any = client._imap  # imaplib.IMAP4 underneath imapclient
        command, send, read, readline = raw._command, raw.send, raw.read, raw.readline
        complete = raw._command_complete
        started: list[tuple[str, float]] = []

        def counted_command(name: str, *args: Any) -> Any:
            self.commands[name.upper()] += 1
            started.append((name.upper(), time.perf_counter()))
            return command(name, *args)

        def timed_complete(name: str, tag: Any) -> Any:
            try:
                return complete(name, tag)
            finally:  # from sending the command to its tagged answer: the server's time
                if started:
                    what, began = started.pop()
                    self.waited[what] += time.perf_counter() - began

        def counted_send(data: bytes) -> Any:
            if data.strip() == b"DONE":  # ends an IDLE: part of the renewal
                self.commands["DONE"] += 1
            self.sent += len(data)
            return send(data)

        def counted_read(size: int) -> bytes:
            data: bytes = read(size)
            self.received += len(data)
            return data

        def counted_readline() -> bytes:
            data: bytes = readline()
            self.received += len(data)
            return data

        raw._command, raw.send, raw.read, raw.readline = (
            counted_command, counted_send, counted_read, counted_readline,
        )  # fmt: skip
        raw._command_complete = timed_complete
        return client

    def connector(self, server: Dovecot, user: str) -> Any:
        def connect() -> IMAPClient:
            client = IMAPClient(server.host, port=server.port, ssl=False, timeout=30)
            self.attach(client)
            client.login(user, PASSWORD)
            return client

        return connect


def account_for(server: Dovecot, user: str) -> AccountSettings:
    settings = ImapSettings(
        host=server.host,
        port=server.port,
        security="plain",
        username=user,
        password_command=f"echo {PASSWORD}",
    )
    return AccountSettings(name="bench", provider="imap", address=user, tables={"imap": settings})


def wakeups() -> int:
    """Context switches of every thread of this process but the main one (which only sleeps
    here): each is a thread woken up. Linux only."""
    total = 0
    main = threading.main_thread().native_id
    for task in Path("/proc/self/task").iterdir():
        if task.name == str(main):
            continue
        try:
            status = (task / "status").read_text()
        except OSError:  # the thread ended meanwhile
            continue
        total += sum(int(line.split()[1]) for line in status.splitlines()
                     if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")))
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="idle span observed")
    parser.add_argument("--renew", type=float, default=20.0, help="IDLE renewal, seconds")
    args = parser.parse_args()

    server = Dovecot.create()
    server.start()
    try:
        user = server.new_user("idle")
        counter = Counter()
        real_renew = imap.IDLE_RENEW
        imap.IDLE_RENEW = args.renew  # scaled renewal; the real one is 24 minutes
        stop = threading.Event()
        thread = threading.Thread(
            target=imap.watch,
            args=(account_for(server, user), lambda: None, stop),
            kwargs={"connector": counter.connector(server, user)},
            daemon=True,
        )
        thread.start()
        time.sleep(1.0)
        setup = dict(counter.commands)
        counter.reset()
        woken = wakeups()
        time.sleep(args.seconds)
        woken = wakeups() - woken
        idle = dict(counter.commands)
        stop.set()
        thread.join(timeout=5)
    finally:
        server.stop()

    minutes = args.seconds / 60
    renewals = idle.get("DONE", 0)
    others = sum(n for name, n in idle.items() if name not in ("DONE", "IDLE"))
    per_renewal = (renewals + idle.get("IDLE", 0)) / max(renewals, 1)
    real_per_minute = per_renewal / (real_renew / 60)
    print(f"setup commands (once per connection): {setup}")
    print(f"observed {args.seconds:.0f} s idle with renewal every {args.renew:.0f} s: {idle}")
    print(f"commands other than the IDLE renewal: {others} ({others / minutes:.2f} per minute)")
    print(f"commands per renewal: {per_renewal:.1f}")
    print(f"at the real 24-minute renewal: {real_per_minute:.3f} commands per idle minute")
    per_renewal_wakeups = woken / max(renewals, 1)
    print(f"thread wake-ups: {woken} in {args.seconds:.0f} s ({woken / minutes:.1f} per minute, "
          f"{renewals} renewals); at the real 24-minute renewal about "
          f"{per_renewal_wakeups / (real_renew / 60):.2f} per idle minute")


if __name__ == "__main__":
    main()
