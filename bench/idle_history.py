"""Idle-pass time against the length of the history: 10 vs 300 past interviews, local provider.

Lays out one local account whose calendar holds N interviews spread over the past months, lives
through them (a pass after each, so every one is in the ledger; the user sends the drafts as
they appear, as in a real history, so the interviews finish and go to the archive), then times
idle passes the way the daemon runs them (providers kept open, the account subscribed to file
notifications as the daemon subscribes it, calendar read at every pass as for a local file).
Goal (issue 13): flat, the 300-interview pass no slower than 1.5x the 10-interview one. With
--untouched the user never sends a draft: every one waits in Drafts, so every interview stays
live (by design: the user may still send or delete them). An idle pass with nothing new
and nothing due skips planning (engine.Quiet), so it reads none of them from the ledger; the
figure of a pass that plans in full anyway (the kept memory dropped first) is printed too.

    python bench/idle_history.py [--sizes 10 300] [--passes 5] [--untouched]
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
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mailbridge import config as config_module  # noqa: E402
from mailbridge import engine  # noqa: E402
from mailbridge.adapters import mailbox_class  # noqa: E402
from mailbridge.ledger import Ledger  # noqa: E402
from tests.test_outages import HEAD, calendar_file, local_account  # noqa: E402


def user_sends_drafts(maildir: Path) -> None:
    """The user sends whatever waits in Drafts: a copy in Sent, the draft gone."""
    drafts = mailbox.Maildir(maildir / ".Drafts", factory=None, create=True)
    sent = mailbox.Maildir(maildir / ".Sent", factory=None, create=True)
    for key in list(drafts.iterkeys()):
        copy = mailbox.MaildirMessage(drafts.get_bytes(key))
        copy.set_subdir("cur")
        copy.set_flags("S")
        sent.add(copy)
        drafts.remove(key)


class Timed:
    """A provider whose every call adds its time to ``spent``: the pass minus this is the
    core's share (ledger, planner, engine)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.spent = 0.0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def timed(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return attr(*args, **kwargs)
            finally:
                self.spent += time.perf_counter() - began
        return timed


def idle_pass_seconds(root: Path, interviews: int, passes: int, untouched: bool
                      ) -> tuple[float, float, float, int, int]:
    now = datetime.now(UTC).replace(microsecond=0)
    mailbox.Maildir(root / "Maildir", create=True)
    for n in range(interviews):  # one every other day, back in time
        calendar_file(root / "calendar", f"iv-{n}", now - timedelta(hours=3, days=2 * n))
    config = root / "config.toml"
    config.write_text(HEAD + local_account("home"), encoding="utf-8")
    account = config_module.load(config).accounts[0]
    keep = engine.OpenProviders(account)
    # The daemon queues a pass on each change; here the passes below run anyway.
    unsubscribe = mailbox_class(account.provider).subscribe(account, lambda: None)
    with Ledger.open(root / "state") as ledger:
        # Live through the history: a pass a few hours after each interview, oldest first, so
        # each one enters the ledger while it is inside the calendar's window; and one when its
        # follow-up is due.
        ends = [now - timedelta(days=2 * n) for n in range(interviews)]
        for at in sorted({*ends, *(min(end + timedelta(days=12), now) for end in ends)}):
            engine.reconcile(account, ledger, now=at, keep=keep)
            if not untouched:
                user_sends_drafts(root / "Maildir")
        for _ in range(2):  # settle at today
            engine.reconcile(account, ledger, now=now, keep=keep)
        # An idle pass comes minutes after the last change; a folder changed within the last
        # two seconds is listed again whatever its time says (local.py, _SETTLE_NS).
        time.sleep(2.1)
        took, core, planned = [], [], []
        for n in range(2 * passes):
            if n >= passes:
                keep.quiet = None  # forget the last empty plan: this pass plans in full
            mail, calendar = Timed(keep.mailbox()), Timed(keep.calendar())
            began = time.perf_counter()
            report = engine.reconcile(account, ledger, now=now, keep=keep,
                                      mailbox=mail, calendar=calendar)
            spent = time.perf_counter() - began
            if report.error:
                raise SystemExit(report.error)
            if n >= passes:
                planned.append(spent)
                continue
            took.append(spent)
            core.append(took[-1] - mail.spent - calendar.spent)
        known = len(ledger.interviews(account.name))
        live = len(ledger.interviews(account.name, live_only=True))
    keep.close()
    unsubscribe()
    return (statistics.median(took), statistics.median(core), statistics.median(planned),
            known, live)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 300])
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument("--untouched", action="store_true",
                        help="the user never sends a draft (every interview stays live)")
    args = parser.parse_args()
    results, cores, planned = {}, {}, {}
    for size in args.sizes:
        with tempfile.TemporaryDirectory(prefix="mailbridge-history-") as tmp:
            results[size], cores[size], planned[size], known, live = idle_pass_seconds(
                Path(tmp), size, args.passes, args.untouched)
        print(f"{size:>5} interviews in the calendar ({known} in the ledger, {live} live): "
              f"idle pass {results[size] * 1000:.1f} ms, of which the core "
              f"{cores[size] * 1000:.1f} ms and the providers "
              f"{(results[size] - cores[size]) * 1000:.1f} ms (median of {args.passes}); "
              f"planning in full {planned[size] * 1000:.1f} ms")
    small, large = min(results), max(results)
    print(f"ratio {large}/{small}: {results[large] / results[small]:.2f} (goal <= 1.5); "
          f"the core alone {cores[large] / cores[small]:.2f}; planning in full "
          f"{planned[large] / planned[small]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
