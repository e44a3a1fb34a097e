"""IMAP commands per account per idle hour, through the real daemon, polls included.

Starts its own Dovecot (tests.servers) and N IMAP accounts (each with a local calendar holding
one past interview, so every poll reads the mailbox), runs the daemon in this process with a
short poll interval, counts every IMAP command on every connection the daemon opens (the
passes' sessions and the IDLE watchers), and scales the count of one idle poll to an hour at
the default poll interval (5 minutes) plus the IDLE renewals (every 24 minutes).

    python bench/idle_cost.py [--accounts 3] [--poll 4] [--seconds 20]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from imap_idle import Counter  # noqa: E402
from mailbridge_providers import imap  # noqa: E402

from mailbridge import config as config_module  # noqa: E402
from mailbridge.daemon import Daemon  # noqa: E402
from tests.servers import PASSWORD, Dovecot  # noqa: E402
from tests.test_outages import calendar_file, fast  # noqa: E402

DEFAULT_POLL = 300.0
RENEWALS_PER_HOUR = 60 / 24


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=3)
    parser.add_argument("--poll", type=float, default=4.0, help="poll interval for the run, s")
    parser.add_argument("--seconds", type=float, default=20.0, help="idle span observed")
    args = parser.parse_args()
    counter = Counter()
    real_connect = imap.connect

    def counted_connect(account: Any, **kw: Any) -> Any:
        counter.commands["LOGIN"] += 1
        return counter.attach(real_connect(account, **kw))

    imap.connect = counted_connect  # type: ignore[assignment]
    server = Dovecot.create()
    server.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            end = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
            parts = ['[mailbridge]\ntimezone = "UTC"\nstate_dir = "state"\n']
            for n in range(args.accounts):
                user = server.add_user(f"idle{n}@example.org")
                calendar_file(root / f"cal{n}", f"iv-{n}", end)
                parts.append(textwrap.dedent(f"""
                    [accounts.a{n}]
                    provider = "imap"
                    address = "jordan.lee@example.com"
                    name = "Jordan Lee"
                    calendar = {{ kind = "file", path = "cal{n}" }}
                    imap = {{ host = "127.0.0.1", port = {server.port}, security = "plain", \\
                    username = "{user}", password_command = "echo {PASSWORD}" }}
                    """).replace("\\\n", ""))
            path = root / "config.toml"
            path.write_text("".join(parts), encoding="utf-8")
            settings = fast(config_module.load(path), poll=args.poll, calendar=3600)
            daemon = Daemon(path, settings)
            daemon.start()
            try:
                deadline = time.monotonic() + 120
                while len({o.account for o in daemon.outcomes}) < args.accounts:
                    if time.monotonic() > deadline:
                        raise SystemExit("the first passes did not finish within 120 s")
                    time.sleep(0.1)
                time.sleep(1)  # the watchers are connected and idling
                counter.reset()
                before = len(daemon.outcomes)
                time.sleep(args.seconds)
                polls = len(daemon.outcomes) - before
                commands = dict(counter.commands)
            finally:
                daemon.shutdown()
                daemon.ledgers.close()
    finally:
        server.stop()
    total = sum(commands.values())
    per_poll = total / polls if polls else float("nan")
    per_hour = per_poll * 3600 / DEFAULT_POLL + 2 * RENEWALS_PER_HOUR
    by_name = ", ".join(f"{k} {v}" for k, v in sorted(commands.items()))
    print(f"{args.accounts} IMAP accounts idle for {args.seconds:.0f} s, poll every {args.poll} s: "
          f"{polls} polls, {total} commands ({by_name})")
    print(f"  per idle poll and account: {per_poll:.1f} commands (new connections: "
          f"{commands.get('LOGIN', 0)})")
    print(f"  per account per idle hour at the default {DEFAULT_POLL / 60:.0f}-minute poll, "
          f"IDLE renewals included: {per_hour:.0f} commands")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
