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

    python bench/idle_history.py [--sizes 10 300] [--passes 15] [--untouched]
"""

from __future__ import annotations

import argparse
import contextlib
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


class History:
    """One account that has lived through ``interviews`` interviews, kept as a daemon keeps it:
    providers open, subscribed to file notifications."""

    def __init__(self, root: Path, interviews: int, untouched: bool) -> None:
        self.now = now = datetime.now(UTC).replace(microsecond=0)
        mailbox.Maildir(root / "Maildir", create=True)
        for n in range(interviews):  # one every other day, back in time
            calendar_file(root / "calendar", f"iv-{n}", now - timedelta(hours=3, days=2 * n))
        config = root / "config.toml"
        config.write_text(HEAD + local_account("home"), encoding="utf-8")
        self.account = account = config_module.load(config).accounts[0]
        self.keep = engine.OpenProviders(account)
        # The daemon queues a pass on each change; here the passes below run anyway.
        self.unsubscribe = mailbox_class(account.provider).subscribe(account, lambda: None)
        self.ledger = Ledger.open(root / "state")
        # Live through the history: a pass a few hours after each interview, oldest first, so
        # each one enters the ledger while it is inside the calendar's window; and one when its
        # follow-up is due.
        ends = [now - timedelta(days=2 * n) for n in range(interviews)]
        for at in sorted({*ends, *(min(end + timedelta(days=12), now) for end in ends)}):
            engine.reconcile(account, self.ledger, now=at, keep=self.keep)
            if not untouched:
                user_sends_drafts(root / "Maildir")
        for _ in range(2):  # settle at today
            engine.reconcile(account, self.ledger, now=now, keep=self.keep)
        self.known = len(self.ledger.interviews(account.name))
        self.live = len(self.ledger.interviews(account.name, live_only=True))
        self.took: list[float] = []
        self.core: list[float] = []
        self.planned: list[float] = []

    def idle_pass(self, in_full: bool = False) -> None:
        if in_full:
            self.keep.quiet = None  # forget the last empty plan: this pass plans in full
        mail, calendar = Timed(self.keep.mailbox()), Timed(self.keep.calendar())
        began = time.perf_counter()
        report = engine.reconcile(self.account, self.ledger, now=self.now, keep=self.keep,
                                  mailbox=mail, calendar=calendar)
        spent = time.perf_counter() - began
        if report.error:
            raise SystemExit(report.error)
        if in_full:
            self.planned.append(spent)
            return
        self.took.append(spent)
        self.core.append(spent - mail.spent - calendar.spent)

    def close(self) -> None:
        self.keep.close()
        self.unsubscribe()
        self.ledger.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 300])
    parser.add_argument("--passes", type=int, default=15)
    parser.add_argument("--untouched", action="store_true",
                        help="the user never sends a draft (every interview stays live)")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        histories = {}
        for size in args.sizes:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="mailbridge-history-"))
            histories[size] = History(Path(tmp), size, args.untouched)
            stack.callback(histories[size].close)
        # An idle pass comes minutes after the last change; a folder changed within the last
        # two seconds is listed again whatever its time says (local.py, _SETTLE_NS).
        time.sleep(2.1)
        # The sizes take turns, so a busy moment of a shared machine falls on each alike.
        for in_full in (False, True):
            for _ in range(args.passes):
                for history in histories.values():
                    history.idle_pass(in_full)
        results = {size: statistics.median(h.took) for size, h in histories.items()}
        cores = {size: statistics.median(h.core) for size, h in histories.items()}
        planned = {size: statistics.median(h.planned) for size, h in histories.items()}
        for size, h in histories.items():
            print(f"{size:>5} interviews in the calendar ({h.known} in the ledger, {h.live} "
                  f"live): idle pass {results[size] * 1000:.1f} ms, of which the core "
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
