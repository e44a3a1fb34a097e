"""What the local Maildir's file-name cursor costs: time per read and the cursor's size.

Fills a Maildir's INBOX with N messages (a few KB each; half of them older than every
interview), then times the reads a pass makes: the first (or daily full) listing, which reads
the head of every file and the whole of the recent ones; an idle incremental read, which only
lists names (or, once the folder's times are settled, not even those: bench/maildir_idle.py);
an incremental read with one new message; and the same in a new process, which knows only the
cursor. The cursor is stored in the ledger at every pass, so its size is printed too.

    python bench/maildir_cursor.py [--messages 20000]
"""

from __future__ import annotations

import argparse
import mailbox
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mailbridge_providers.local import MaildirMailbox  # noqa: E402

SINCE = datetime(2026, 1, 1, tzinfo=UTC)


def message(n: int, old: bool = False) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"Sender {n} <sender{n}@example.net>"
    msg["To"] = "jordan.lee@example.com"
    msg["Subject"] = f"Message number {n}"
    written = SINCE + timedelta(minutes=n) - (timedelta(days=365) if old else timedelta(0))
    msg["Date"] = written.strftime("%a, %d %b %Y %H:%M:%S +0000")
    msg["Message-ID"] = f"<bench-{n}@example.net>"
    msg.set_content(("Some ordinary text in a message body. " * 60 + "\n") * 2)
    return msg.as_bytes()


def timed(name: str, step: Callable[[], Any]) -> Any:
    began = time.perf_counter()
    result = step()
    print(f"{name:<52} {time.perf_counter() - began:8.3f} s")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "Maildir"
        inbox = mailbox.Maildir(root, create=True)
        for n in range(args.messages):
            inbox.add(message(n, old=n % 2 == 0))
        box = MaildirMailbox(root)
        print(f"{args.messages} messages in INBOX, half of them older than `since`")
        first = timed("first (or daily full) listing", lambda: box.messages(None, SINCE))
        idle = timed("incremental, nothing new", lambda: box.messages(first.cursor, SINCE))
        inbox.add(message(args.messages))
        one = timed("incremental, one new message", lambda: box.messages(idle.cursor, SINCE))
        inbox.add(message(args.messages + 1))
        # A new process (a restart, `run --once`) has only the cursor's bucket fingerprints:
        # it reads again the files that share a bucket with the new one.
        restarted = timed("new process, one new message",
                          lambda: MaildirMailbox(root).messages(one.cursor, SINCE))
        assert len(first.messages) == args.messages // 2 and len(one.messages) == 1
        print(f"{'  messages it reported (the engine skips known ones)':<52} "
              f"{len(restarted.messages):8d}")
        print(f"{'cursor size':<52} {len(one.cursor or '') / 1024:8.1f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
