"""Time from an employer's reply landing in the inbox (APPEND by another connection) to the
follow-up draft's retraction, through providers.imap: watch() wakes, messages() reads the new
headers from the cursor, the reply is matched by In-Reply-To, retract() moves the draft to Trash.

Starts its own Dovecot (tests.servers). Dovecot batches IDLE notifications with a fixed 0.5 s
delay, which is the floor here. Prints the median and spread over N replies.

    python bench/imap_reply_latency.py [--runs 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from imap_idle import account_for  # noqa: E402
from mailbridge_providers import imap  # noqa: E402

from mailbridge.model import DraftKind, DraftMessage, Person  # noqa: E402
from tests.servers import Dovecot  # noqa: E402

LEAD = "dana.whitfield@northwind-robotics.com"


def message(sender: str, to: str, subject: str, in_reply_to: str = "") -> tuple[str, bytes]:
    msg = EmailMessage()
    message_id = make_msgid(domain="bench.invalid")
    msg["Message-ID"] = message_id
    msg["From"], msg["To"], msg["Subject"] = sender, to, subject
    if in_reply_to:
        msg["In-Reply-To"] = msg["References"] = in_reply_to
    msg.set_content("Following up on my interview.")
    return message_id, bytes(msg)


def one_run(server: Dovecot, user: str, thread_id: str) -> float:
    account = account_for(server, user)
    box = imap.open_mailbox(account)
    draft_id, raw = message(user, LEAD, "Following up", in_reply_to=thread_id)
    draft = DraftMessage(DraftKind.FOLLOW_UP, draft_id, Person(user), Person(LEAD),
                         "Following up", "Following up on my interview.", raw)  # fmt: skip
    provider_id = box.create_draft(draft)
    cursor = box.messages(None, datetime.now(UTC) - timedelta(days=1)).cursor

    woke = threading.Event()
    stop = threading.Event()
    watcher = threading.Thread(target=imap.watch, args=(account, woke.set, stop), daemon=True)
    watcher.start()
    time.sleep(0.3)  # idling
    employer = server.client(user)
    started = time.monotonic()
    employer.append("INBOX", message(LEAD, user, "Re: Thank you", in_reply_to=thread_id)[1])
    retracted = None
    while retracted is None:
        if not woke.wait(10):
            raise SystemExit("watch() did not wake within 10 s")
        woke.clear()
        batch = box.messages(cursor, datetime.now(UTC))
        cursor = batch.cursor
        if any(m.in_reply_to == thread_id for m in batch.messages):
            box.retract(provider_id)
            retracted = time.monotonic() - started
    stop.set()
    watcher.join(timeout=5)
    employer.logout()
    box.close()
    return retracted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    server = Dovecot.create()
    server.start()
    try:
        user = server.new_user("latency")
        times = [one_run(server, user, f"<thread-{n}@bench.invalid>") for n in range(args.runs)]
    finally:
        server.stop()
    print(f"reply APPEND -> follow-up retracted, {args.runs} runs:")
    print(f"  median {statistics.median(times):.3f} s, min {min(times):.3f} s, "
          f"max {max(times):.3f} s")  # fmt: skip
    print("  (Dovecot delays IDLE notifications by 0.5 s: that is the floor)")


if __name__ == "__main__":
    main()
