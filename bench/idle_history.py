"""Idle-pass time against the length of the history: 10 vs 300 past interviews, local provider.

Lays out one local account whose calendar holds N interviews spread over the past months, lives
through them (a pass after each, so every one is in the ledger), then times idle passes the way the
daemon runs them (providers kept open, calendar read at every pass as for a local file).
Goal (issue 13): flat, the 300-interview pass no slower than 1.5x the 10-interview one.

    python bench/idle_history.py [--sizes 10 300] [--passes 5]
"""

from __future__ import annotations

import argparse
import mailbox
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mailbridge import config as config_module  # noqa: E402
from mailbridge import engine  # noqa: E402
from mailbridge.ledger import Ledger  # noqa: E402
from tests.test_outages import HEAD, calendar_file, local_account  # noqa: E402


def idle_pass_seconds(root: Path, interviews: int, passes: int) -> tuple[float, int]:
    now = datetime.now(UTC).replace(microsecond=0)
    mailbox.Maildir(root / "Maildir", create=True)
    for n in range(interviews):  # one every other day, back in time
        calendar_file(root / "calendar", f"iv-{n}", now - timedelta(hours=3, days=2 * n))
    config = root / "config.toml"
    config.write_text(HEAD + local_account("home"), encoding="utf-8")
    account = config_module.load(config).accounts[0]
    keep = engine.OpenProviders(account)
    with Ledger.open(root / "state") as ledger:
        # Live through the history: a pass a few hours after each interview, oldest first, so
        # each one enters the ledger while it is inside the calendar's window.
        for n in reversed(range(interviews)):
            engine.reconcile(account, ledger, now=now - timedelta(days=2 * n), keep=keep)
        for _ in range(2):  # settle at today
            engine.reconcile(account, ledger, now=now, keep=keep)
        took = []
        for _ in range(passes):
            began = time.perf_counter()
            report = engine.reconcile(account, ledger, now=now, keep=keep)
            took.append(time.perf_counter() - began)
            if report.error:
                raise SystemExit(report.error)
        known = len(ledger.interviews(account.name))
    keep.close()
    return statistics.median(took), known


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 300])
    parser.add_argument("--passes", type=int, default=5)
    args = parser.parse_args()
    results = {}
    for size in args.sizes:
        with tempfile.TemporaryDirectory(prefix="mailbridge-history-") as tmp:
            results[size], known = idle_pass_seconds(Path(tmp), size, args.passes)
        print(f"{size:>5} interviews in the calendar ({known} in the ledger): idle pass "
              f"{results[size] * 1000:.1f} ms (median of {args.passes})")
    small, large = min(results), max(results)
    print(f"ratio {large}/{small}: {results[large] / results[small]:.2f} (goal <= 1.5)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
