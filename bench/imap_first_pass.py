"""Cost of the first messages() pass (cursor None) on an inbox of 1,000 vs 50,000 messages.

Starts its own Dovecot (tests.servers) and fills the inbox straight into the Maildir (old mail
dated 90 days back, a few recent messages dated now), lets Dovecot index it, then runs one
first pass looking back 7 days with a connection that counts commands and bytes. The point:
bisecting INTERNALDATE (a few FETCHes of one date each) finds the look-back window, so the cost
follows the recent mail, not the mailbox. "cold" is the very first pass on a fresh connection.

    python bench/imap_first_pass.py [--sizes 1000 50000] [--recent 20]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from imap_idle import Counter, account_for  # noqa: E402
from mailbridge_providers import imap  # noqa: E402

from tests.servers import MAIL_UID, Dovecot  # noqa: E402

TEMPLATE = (
    "Message-ID: <{n}@bench.invalid>\r\nFrom: Sender {n} <s{n}@example.com>\r\n"
    "To: user@example.org\r\nSubject: Message number {n}\r\nDate: {date}\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n\r\n" + "Some body text of a message.\r\n" * 40
)


def fill(server: Dovecot, user: str, total: int, recent: int) -> None:
    maildir = server.dir / "mail" / user / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    old = time.time() - 90 * 86400
    for n in range(total):
        stamp = time.time() if n >= total - recent else old + n
        date = datetime.fromtimestamp(stamp, UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")
        path = maildir / "cur" / f"{int(stamp)}.M{n}P1.bench:2,S"
        path.write_text(TEMPLATE.format(n=n, date=date))
        os.utime(path, (stamp, stamp))  # the Maildir internal date
    for root, dirs, files in os.walk(server.dir / "mail" / user):
        for name in dirs + files:
            os.chown(os.path.join(root, name), MAIL_UID, MAIL_UID)
    os.chown(server.dir / "mail" / user, MAIL_UID, MAIL_UID)
    server.doveadm("index", "-u", user, "INBOX")  # indexing is the server's one-time cost


def first_pass(server: Dovecot, total: int, recent: int) -> dict[str, float]:
    user = server.new_user(f"fp{total}-")
    fill(server, user, total, recent)
    counter = Counter()
    box = imap.ImapMailbox(account_for(server, user), connector=counter.connector(server, user))
    began = time.perf_counter()
    box.messages(None, datetime.now(UTC) - timedelta(days=30))  # cold: connect, find folders
    cold = time.perf_counter() - began
    box.close()
    counter.reset()
    box = imap.ImapMailbox(account_for(server, user), connector=counter.connector(server, user))
    started = time.perf_counter()
    batch = box.messages(None, datetime.now(UTC) - timedelta(days=7))
    seconds = time.perf_counter() - started
    box.close()
    return {
        "messages": len(batch.messages),
        "commands": counter.total,
        "bytes": counter.sent + counter.received,
        "seconds": seconds,
        "cold seconds": cold,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 50000])
    parser.add_argument("--recent", type=int, default=20)
    args = parser.parse_args()
    server = Dovecot.create()
    server.start()
    try:
        results = {size: first_pass(server, size, args.recent) for size in args.sizes}
    finally:
        server.stop()
    print(f"first messages() pass, 7 days back, {args.recent} recent messages in the inbox:")
    for size, r in results.items():
        print(f"  {size:>6} messages: reported {r['messages']:.0f}, {r['commands']:.0f} commands, "
              f"{r['bytes']:.0f} bytes, {r['seconds']:.3f} s")  # fmt: skip
    small, large = results[min(results)], results[max(results)]
    for what in ("commands", "bytes", "seconds", "cold seconds"):
        print(f"  ratio {max(results)}/{min(results)} {what}: {large[what] / small[what]:.2f}")


if __name__ == "__main__":
    main()
