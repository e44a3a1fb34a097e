"""Idle-pass time against the size of a local Maildir: 1,000 vs 50,000 messages in INBOX and Sent.

Lays out one local account whose INBOX and Sent each hold N messages (written straight into
cur/ under Maildir names, as a mail program leaves them; all but a few dated months back), and
whose calendar holds two interviews that ended a few hours ago. The first pass lists the mailbox
in full and writes the thank-you drafts, which are left waiting in Drafts. After a settle (the
folders' times older than `_SETTLE_NS`) it times idle passes the way the daemon runs them
(providers kept open, `engine.reconcile(..., keep=...)`), the two accounts in turn so a busy
moment of the machine hits both, split into the core (ledger, planner, engine) and the
providers, as bench/idle_history.py does. Goal (issue 13): flat, the 50k pass no
slower than 1.5x the 1k one. The cursor the ledger holds for the mailbox is printed too.

    python bench/maildir_idle.py [--sizes 1000 50000] [--passes 21]
"""

from __future__ import annotations

import argparse
import contextlib
import mailbox
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from idle_history import Timed  # noqa: E402
from mailbridge_providers.local import _SETTLE_NS  # noqa: E402

from mailbridge import config as config_module  # noqa: E402
from mailbridge import engine  # noqa: E402
from mailbridge.ledger import Ledger  # noqa: E402
from tests.test_outages import HEAD, calendar_file, local_account  # noqa: E402

TEMPLATE = (
    "Message-ID: <{n}.{folder}@bench.invalid>\nFrom: {sender}\nTo: {to}\n"
    "Subject: Message number {n}\nDate: {date}\nContent-Type: text/plain; charset=utf-8\n\n"
    + "Some body text of a message.\n" * 20
)
RECENT = 10  # messages per folder written since the interviews: read in full by the first pass


def fill(folder: Path, total: int, now: datetime, outgoing: bool) -> None:
    """``total`` messages in ``folder``/cur, named and flagged as a mail program keeps them."""
    for sub in ("cur", "new", "tmp"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    old = now - timedelta(days=90)
    for n in range(total):
        written = now - timedelta(minutes=n + 1) if n < RECENT else old - timedelta(minutes=n)
        stamp = int(written.timestamp())
        someone = f"Someone {n} <someone{n}@example.net>"
        text = TEMPLATE.format(
            n=n, folder=folder.name, date=written.strftime("%a, %d %b %Y %H:%M:%S +0000"),
            sender="jordan.lee@example.com" if outgoing else someone,
            to=someone if outgoing else "jordan.lee@example.com")
        path = folder / "cur" / f"{stamp}.M{n}P1.bench:2,S"
        path.write_text(text, encoding="utf-8")
        os.utime(path, (stamp, stamp))


class Account:
    """One local account over a Maildir of ``messages`` per folder, through its first pass
    (the full listing, the drafts written) and a settle, ready for idle passes."""

    def __init__(self, root: Path, messages: int) -> None:
        now = datetime.now(UTC).replace(microsecond=0)
        self.now = now
        maildir = root / "Maildir"
        mailbox.Maildir(maildir, create=True)
        for name in ("Drafts", "Sent", "Trash"):
            mailbox.Maildir(maildir, create=False).add_folder(name)
        fill(maildir, messages, now, outgoing=False)
        fill(maildir / ".Sent", messages, now, outgoing=True)
        for n in range(2):  # their thank-yous are due (2 h after the end): written at once
            calendar_file(root / "calendar", f"iv-{n}", now - timedelta(hours=3 + n))
        config = root / "config.toml"
        config.write_text(HEAD + local_account("home"), encoding="utf-8")
        self.account = config_module.load(config).accounts[0]
        self.keep = engine.OpenProviders(self.account)
        self.ledger = Ledger.open(root / "state")
        engine.reconcile(self.account, self.ledger, now=now, keep=self.keep)
        self.waiting = len(os.listdir(maildir / ".Drafts" / "cur"))
        self.took: list[float] = []
        self.core: list[float] = []

    def idle_pass(self) -> None:
        mail, calendar = Timed(self.keep.mailbox()), Timed(self.keep.calendar())
        began = time.perf_counter()
        report = engine.reconcile(self.account, self.ledger, now=self.now, keep=self.keep,
                                  mailbox=mail, calendar=calendar)
        self.took.append(time.perf_counter() - began)
        self.core.append(self.took[-1] - mail.spent - calendar.spent)
        if report.error:
            raise SystemExit(report.error)

    def cursor_size(self) -> int:
        return len(self.ledger.cursor(self.account.name, engine.MAILBOX) or "")

    def close(self) -> None:
        self.keep.close()
        self.ledger.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 50_000])
    parser.add_argument("--passes", type=int, default=21)
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        accounts = {}
        for size in args.sizes:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="mailbridge-maildir-"))
            accounts[size] = Account(Path(tmp), size)
            stack.callback(accounts[size].close)
        # An idle pass comes minutes after the last change; a folder changed more recently
        # than _SETTLE_NS is listed again whatever its time says.
        time.sleep(_SETTLE_NS / 1e9 + 0.1)
        for account in accounts.values():
            account.idle_pass()  # the first look after the settle: the folders listed once more
            account.took.clear()
            account.core.clear()
        for _ in range(args.passes):  # in turn, so a busy moment of the machine hits both
            for account in accounts.values():
                account.idle_pass()
        took = {size: statistics.median(a.took) for size, a in accounts.items()}
        core = {size: statistics.median(a.core) for size, a in accounts.items()}
        for size, account in accounts.items():
            print(f"{size:>6} messages in INBOX and in Sent, {account.waiting} drafts waiting: "
                  f"idle pass {took[size] * 1000:.1f} ms, of which the core "
                  f"{core[size] * 1000:.1f} ms and the providers "
                  f"{(took[size] - core[size]) * 1000:.1f} ms (median of {args.passes}); "
                  f"mailbox cursor {account.cursor_size() / 1024:.1f} KiB")
    small, large = min(took), max(took)
    print(f"ratio {large}/{small}: {took[large] / took[small]:.2f} (goal <= 1.5); "
          f"the core alone {core[large] / core[small]:.2f}, the providers "
          f"{(took[large] - core[large]) / (took[small] - core[small]):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
