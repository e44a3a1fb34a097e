"""Cost of the first messages() pass (cursor None) on an inbox of 1,000 vs 50,000 messages.

Starts its own Dovecot (tests.servers) and fills the inbox (old mail dated 90 days back, a few
recent messages dated now), lets Dovecot index it, then runs one first pass looking back 7 days
with a connection that counts commands and bytes. The point: bisecting INTERNALDATE (a few
FETCHes of one date each) finds the look-back window, so the cost follows the recent mail, not
the mailbox. Before timing, Dovecot indexes the folder and the user's mail program opens it and
shows the newest message (as in any mailbox in use); "cold" is our very first pass, the other
one a first pass on a new connection.

It runs twice, on the two ways Dovecot stores mail: sdbox, its own indexed format (large
installations use it or mdbox), and Maildir. The time is split into waiting on the server (from
each command to its tagged answer; of it, EXAMINE) and our client (the rest: connecting,
parsing, building the batch). Beside it, the least any client pays to read new mail: a new
connection that logs in, EXAMINEs the inbox and fetches the newest message. On Maildir that
floor grows with the folder: once a message has been read in it, Dovecot reads the folder's
whole uidlist (one line per message, its map from UIDs to file names) in every new session,
partly at EXAMINE and the rest before the first message it must open (seen with strace; 13 ms
at 1,000 messages, 110 ms at 50,000). No client can read mail there without paying it; sdbox
has no such cost, so there the wall-clock ratio is our client's.

    python bench/imap_first_pass.py [--sizes 1000 50000] [--recent 20] [--repeats 9]
                                    [--storage sdbox maildir]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from imap_idle import Counter, account_for  # noqa: E402
from mailbridge_providers import imap  # noqa: E402

from tests.servers import MAIL_UID, Dovecot  # noqa: E402

TEMPLATE = (
    "Message-ID: <{n}@bench.invalid>\r\nFrom: Sender {n} <s{n}@example.com>\r\n"
    "To: user@example.org\r\nSubject: Message number {n}\r\nDate: {date}\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n\r\n" + "Some body text of a message.\r\n" * 40
)


def fill(server: Dovecot, user: str, total: int, recent: int, storage: str) -> None:
    maildir = server.dir / "mail" / user / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    old = time.time() - 90 * 86400
    for n in range(total):
        stamp = time.time() if n >= total - recent else old + n
        date = datetime.fromtimestamp(stamp, UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")
        # Named as in a mailbox Dovecot has kept for a while: its uidlist holds each file's
        # name as it is. (A name with flags Dovecot never saw makes it scan the whole folder
        # at every session, which only a freshly written test folder does.)
        path = maildir / "cur" / f"{int(stamp)}.M{n}P1.bench"
        path.write_text(TEMPLATE.format(n=n, date=date))
        os.utime(path, (stamp, stamp))  # the Maildir internal date
    for root, dirs, files in os.walk(server.dir / "mail" / user):
        for name in dirs + files:
            os.chown(os.path.join(root, name), MAIL_UID, MAIL_UID)
    os.chown(server.dir / "mail" / user, MAIL_UID, MAIL_UID)
    if storage != "maildir":  # the same mail, carried into the server's own format
        server.doveadm("import", "-u", user, "maildir:~/Maildir", "", "all")
    server.doveadm("index", "-u", user, "INBOX")  # indexing is the server's one-time cost
    with server.client(user) as program:  # the user's mail program: Dovecot writes its index
        newest = program.select_folder("INBOX")[b"EXISTS"]
        program.fetch([newest], ["BODY[]"])  # and shows the newest message, as in use


class Inbox:
    """One user's filled inbox, and first passes on it, each on a new connection."""

    def __init__(self, server: Dovecot, total: int, recent: int, storage: str) -> None:
        self.server = server
        self.user = server.new_user(f"fp{total}-")
        fill(server, self.user, total, recent, storage)
        self.counter = Counter()
        self.runs: list[tuple[float, float, float]] = []
        self.opens: list[float] = []

    def read_one(self) -> None:
        """The least any client pays to read new mail: connect, log in, EXAMINE the inbox,
        fetch the newest message, log out."""
        began = time.perf_counter()
        with self.server.client(self.user) as client:
            newest = client.select_folder("INBOX", readonly=True)[b"EXISTS"]
            client.fetch([newest], ["BODY.PEEK[]"])
        self.opens.append(time.perf_counter() - began)

    def first_pass(self, days: int) -> int:
        """One first pass; its seconds in all, waiting on the server and in EXAMINE are kept."""
        counter = self.counter
        counter.reset()
        box = imap.ImapMailbox(account_for(self.server, self.user),
                               connector=counter.connector(self.server, self.user))
        began = time.perf_counter()
        batch = box.messages(None, datetime.now(UTC) - timedelta(days=days))
        took = time.perf_counter() - began
        box.close()
        waited = sum(seconds for name, seconds in counter.waited.items() if name != "LOGOUT")
        self.runs.append((took, waited, counter.waited["EXAMINE"]))
        return len(batch.messages)

    def figures(self, cold: float, found: int, commands: int, size: int) -> dict[str, float]:
        runs = self.runs
        return {
            "messages": found,
            "commands": commands,
            "bytes": size,
            "seconds": statistics.median(r[0] for r in runs),
            "cold seconds": cold,
            "server": statistics.median(r[1] for r in runs),
            "examine": statistics.median(r[2] for r in runs),
            "client": statistics.median(r[0] - r[1] for r in runs),
            "one read": statistics.median(self.opens),
        }


def measure(server: Dovecot, sizes: list[int], recent: int, repeats: int,
            storage: str) -> dict[int, Any]:
    inboxes = {size: Inbox(server, size, recent, storage) for size in sizes}
    colds: dict[int, float] = {}
    found: dict[int, tuple[int, int, int]] = {}
    for size, inbox in inboxes.items():
        inbox.first_pass(30)  # our client's very first pass: connect, find the folders
        colds[size] = inbox.runs.pop()[0]
        messages = inbox.first_pass(7)
        found[size] = (messages, inbox.counter.total, inbox.counter.sent + inbox.counter.received)
        inbox.runs.clear()
    # The machine is shared: medians of several first passes, the sizes taking turns so that
    # both see the same load.
    for _ in range(repeats):
        for inbox in inboxes.values():
            inbox.first_pass(7)
            inbox.read_one()
    return {size: inbox.figures(colds[size], *found[size]) for size, inbox in inboxes.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 50000])
    parser.add_argument("--recent", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=9, help="first passes timed, median")
    parser.add_argument("--storage", nargs="+", choices=("sdbox", "maildir"),
                        default=["sdbox", "maildir"], help="Dovecot's mail formats to run on")
    args = parser.parse_args()
    for storage in args.storage:
        server = Dovecot.create(storage=storage)
        server.start()
        try:
            print(f"filling inboxes of {', '.join(map(str, args.sizes))} messages "
                  f"(Dovecot {storage}) ...", flush=True)
            results = measure(server, args.sizes, args.recent, args.repeats, storage)
        finally:
            server.stop()
        report(results, args.recent, storage)


def report(results: dict[int, Any], recent: int, storage: str) -> None:
    print(f"Dovecot {storage}: first messages() pass, 7 days back, {recent} recent messages "
          "in the inbox:")
    for size, r in results.items():
        print(f"  {size:>6} messages: reported {r['messages']:.0f}, {r['commands']:.0f} commands, "
              f"{r['bytes']:.0f} bytes, {r['seconds']:.3f} s (cold {r['cold seconds']:.3f} s): "
              f"waiting on the server {r['server']:.3f} s (EXAMINE {r['examine']:.3f} s), "
              f"our client {r['client']:.3f} s; any client reading one message "
              f"{r['one read']:.3f} s")  # fmt: skip
    small, large = results[min(results)], results[max(results)]
    for what in ("commands", "bytes", "seconds", "cold seconds", "client", "server",
                 "one read"):
        named = "any client reading one message" if what == "one read" else what
        print(f"  ratio {max(results)}/{min(results)} {named}: {large[what] / small[what]:.2f}")


if __name__ == "__main__":
    main()
