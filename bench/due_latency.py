"""How long after its due time does a thank-you draft exist in the Maildir?

Starts the real daemon (`mailbridge run`) on a local example whose poll interval is an hour, so
only the date job at each due time can make the drafts appear on time. Interviews are laid out
so their thank-yous fall due a few seconds apart; the script watches Maildir/.Drafts and prints
the delay from each due time to the draft file's appearance.

    python bench/due_latency.py [--drafts 5] [--spacing 3]
"""

from __future__ import annotations

import argparse
import mailbox
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from mailbridge.demo import _ics

CONFIG = """
[mailbridge]
timezone = "UTC"
state_dir = "state"

[accounts.bench]
provider = "local"
address = "jordan.lee@example.com"
name = "Jordan Lee"
thank_you_delay = "2h"
poll_interval = "1h"
calendar_interval = "1h"
calendar = {{ kind = "file", path = "calendar" }}
maildir = {{ path = "Maildir" }}
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drafts", type=int, default=5, help="interviews to time")
    parser.add_argument("--verbose", action="store_true", help="show the daemon's log")
    parser.add_argument("--spacing", type=float, default=3.0, help="seconds between due times")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="mailbridge-bench-"))
    (root / "calendar").mkdir()
    mailbox.Maildir(root / "Maildir", create=True)
    (root / "config.toml").write_text(CONFIG.format(), encoding="utf-8")
    start = datetime.now(UTC) + timedelta(seconds=4)
    dues: list[datetime] = []
    for n in range(args.drafts):
        due = (start + timedelta(seconds=n * args.spacing)).replace(microsecond=0)
        end = due - timedelta(hours=2)
        # One interviewer per interview: one draft per due time.
        text = _ics(end - timedelta(hours=1), end).replace(
            "demo-interview-1", f"bench-{n}"
        )
        lines = [ln for ln in text.split("\r\n") if "priya.raman" not in ln]
        (root / "calendar" / f"{n}.ics").write_text("\r\n".join(lines), encoding="utf-8")
        dues.append(due)

    daemon = subprocess.Popen(
        [sys.executable, "-m", "mailbridge.cli", "--config", str(root / "config.toml"), "run"],
        stderr=None if args.verbose else subprocess.DEVNULL,
    )
    drafts_dir = root / "Maildir" / ".Drafts" / "cur"
    seen: list[datetime] = []
    deadline = time.monotonic() + 30 + args.drafts * args.spacing
    try:
        while len(seen) < len(dues) and time.monotonic() < deadline:
            count = len(list(drafts_dir.glob("*"))) if drafts_dir.is_dir() else 0
            while len(seen) < count:
                seen.append(datetime.now(UTC))
            time.sleep(0.005)
    finally:
        daemon.terminate()
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.send_signal(signal.SIGUSR1)  # let it print its stacks, then stop it
            time.sleep(1)
            daemon.kill()
            raise

    delays = [(s - d).total_seconds() for s, d in zip(seen, dues, strict=False)]
    print(f"drafts timed: {len(delays)} of {len(dues)} (daemon poll interval: 1 hour)")
    if delays:
        print(f"due -> draft in Maildir: median {statistics.median(delays):.3f} s, "
              f"max {max(delays):.3f} s, min {min(delays):.3f} s")
    return 0 if len(delays) == len(dues) else 1


if __name__ == "__main__":
    sys.exit(main())
