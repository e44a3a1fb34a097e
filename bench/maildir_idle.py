"""Idle-pass time against the size of a local Maildir: 1,000 vs 50,000 messages in INBOX and Sent.

Lays out one local account whose INBOX and Sent each hold N messages (written straight into
cur/ under Maildir names, as a mail program leaves them; all but a few dated months back), and
whose calendar holds two interviews that ended a few hours ago. The first pass lists the mailbox
in full and writes the thank-you drafts, which are left waiting in Drafts. After a settle (the
folders' times older than `_SETTLE_NS`) it times idle passes the way the daemon runs them
(providers kept open, `engine.reconcile(..., keep=...)`), split into the core (ledger, planner,
engine) and the providers, as bench/idle_history.py does. Goal (issue 13): flat, the 50k pass no
slower than 1.5x the 1k one. The cursor the ledger holds for the mailbox is printed too.

    python bench/maildir_idle.py [--sizes 1000 50000] [--passes 9]
"""

from __future__ import annotations

import argparse
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


def idle_pass(root: Path, messages: int, passes: int) -> tuple[float, float, int, int]:
    """Median idle pass and its core share (seconds), waiting drafts, the mailbox cursor size."""
    now = datetime.now(UTC).replace(microsecond=0)
    maildir = root / "Maildir"
    mailbox.Maildir(maildir, create=True)
    for name in ("Drafts", "Sent", "Trash"):
        mailbox.Maildir(maildir, create=False).add_folder(name)
    fill(maildir, messages, now, outgoing=False)
    fill(maildir / ".Sent", messages, now, outgoing=True)
    for n in range(2):  # their thank-yous are due (2 h after the end): written by the first pass
        calendar_file(root / "calendar", f"iv-{n}", now - timedelta(hours=3 + n))
    config = root / "config.toml"
    config.write_text(HEAD + local_account("home"), encoding="utf-8")
    account = config_module.load(config).accounts[0]
    keep = engine.OpenProviders(account)
    with Ledger.open(root / "state") as ledger:
        engine.reconcile(account, ledger, now=now, keep=keep)  # the full listing, the drafts
        waiting = len(os.listdir(maildir / ".Drafts" / "cur"))
        # An idle pass comes minutes after the last change; a folder changed more recently
        # than _SETTLE_NS is listed again whatever its time says.
        time.sleep(_SETTLE_NS / 1e9 + 0.1)
        engine.reconcile(account, ledger, now=now, keep=keep)  # the first look after the settle
        took, core = [], []
        for _ in range(passes):
            mail, calendar = Timed(keep.mailbox()), Timed(keep.calendar())
            began = time.perf_counter()
            report = engine.reconcile(account, ledger, now=now, keep=keep,
                                      mailbox=mail, calendar=calendar)
            took.append(time.perf_counter() - began)
            core.append(took[-1] - mail.spent - calendar.spent)
            if report.error:
                raise SystemExit(report.error)
        cursor = len(ledger.cursor(account.name, engine.MAILBOX) or "")
    keep.close()
    return statistics.median(took), statistics.median(core), waiting, cursor


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 50_000])
    parser.add_argument("--passes", type=int, default=9)
    args = parser.parse_args()
    results, cores = {}, {}
    for size in args.sizes:
        with tempfile.TemporaryDirectory(prefix="mailbridge-maildir-") as tmp:
            results[size], cores[size], waiting, cursor = idle_pass(Path(tmp), size, args.passes)
        print(f"{size:>6} messages in INBOX and in Sent, {waiting} drafts waiting: idle pass "
              f"{results[size] * 1000:.1f} ms, of which the core {cores[size] * 1000:.1f} ms and "
              f"the providers {(results[size] - cores[size]) * 1000:.1f} ms "
              f"(median of {args.passes}); mailbox cursor {cursor / 1024:.1f} KiB")
    small, large = min(results), max(results)
    print(f"ratio {large}/{small}: {results[large] / results[small]:.2f} (goal <= 1.5); "
          f"the core alone {cores[large] / cores[small]:.2f}, the providers "
          f"{(results[large] - cores[large]) / (results[small] - cores[small]):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
