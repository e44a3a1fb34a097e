"""Time: sleep, daylight-saving changes and downtime, carried out by the engine and the daemon.

The timing rules are the planner's (table-tested in tests/test_planner.py); these tests prove the
engine applies them through a real pass (local provider: .ics files and a Maildir, with
``reconcile(now=...)``), and that the real daemon process catches up once after being stopped
for several intervals.
"""

from __future__ import annotations

import contextlib
import io
import json
import mailbox
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mailbridge import cli
from mailbridge import config as config_module
from mailbridge.ledger import Ledger
from mailbridge.model import DraftKind, DraftState
from tests.test_engine import END, LEAD, OTHER, World
from tests.test_outages import (
    HEAD,
    calendar_file,
    ends_for_due_in,
    fast,
    local_account,
    passes,
    running,
    wait_for,
)

CHICAGO = "America/Chicago"


class TimeWorld(World):
    """tests.test_engine.World (America/Chicago, US holidays) with extra account settings."""

    def __init__(self, root: Path, extra: str = "") -> None:
        super().__init__(root)
        if extra:
            self.ledger.close()
            text = self.config.read_text(encoding="utf-8") + textwrap.dedent(extra)
            self.config.write_text(text, encoding="utf-8")
            self.settings = config_module.load(self.config)
            self.account = self.settings.accounts[0]
            self.ledger = Ledger.open(self.settings.state_dir)

    def draft_files(self) -> list[str]:
        return sorted(m["To"].addresses[0].addr_spec for m in self.messages("Drafts"))

    def decisions(self) -> list[tuple[str, str]]:
        return [(e.decision, e.reason) for e in self.ledger.audit_entries()]

    def status(self, *extra: str) -> str:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert cli.main(["--config", str(self.config), "status", *extra]) == 0
        return out.getvalue()


@pytest.fixture
def tw(tmp_path: Path) -> TimeWorld:
    world = TimeWorld(tmp_path)
    yield world
    world.ledger.close()


# --- asleep, stopped, too late ------------------------------------------------------------


def test_ten_hours_asleep_one_catch_up_creates_each_thank_you_once(tw: TimeWorld) -> None:
    tw.add_interview()
    tw.run(END + timedelta(minutes=30))  # planned for END + 2h; then the laptop sleeps
    assert tw.draft_files() == []
    report = tw.run(END + timedelta(hours=10, minutes=30))  # wakes up ten hours later
    assert tw.draft_files() == sorted([LEAD, OTHER])
    rows = tw.drafts(DraftKind.THANK_YOU)
    assert all(d.state == DraftState.CREATED and not d.late for d in rows)  # inside 24 hours
    assert [n.kind for n in report.notices] == ["drafts_ready"]
    before = len(tw.ledger.audit_entries())
    tw.run(END + timedelta(hours=10, minutes=31))  # a second wake-up changes nothing
    assert tw.draft_files() == sorted([LEAD, OTHER])
    assert len(tw.ledger.audit_entries()) == before


def test_stopped_past_the_24_hours_is_made_but_marked_and_reported_late(tw: TimeWorld) -> None:
    tw.add_interview()
    tw.run(END + timedelta(minutes=30))
    tw.run(END + timedelta(hours=30))  # the service was stopped for a day and a half
    assert tw.draft_files() == sorted([LEAD, OTHER])
    assert all(d.late for d in tw.drafts(DraftKind.THANK_YOU))
    created = [r for d, r in tw.decisions() if d == "draft created"]
    assert len(created) == 2 and all("late: the 24-hour window had passed" in r for r in created)
    lines = [ln for ln in tw.status().splitlines() if ln.strip().startswith("thank-you to")]
    assert len(lines) == 2 and all(ln.rstrip().endswith("(late)") for ln in lines)
    data = json.loads(tw.status("--json"))
    drafts = data["accounts"][0]["interviews"][0]["drafts"]
    assert {(d["kind"], d["late"]) for d in drafts if d["kind"] == "thank_you"} == {
        ("thank_you", True)}


def test_stopped_past_the_lookback_reports_instead_of_writing_stale_drafts(
    tw: TimeWorld,
) -> None:
    tw.add_interview()
    tw.run(END + timedelta(minutes=30))  # planned, then stopped for four days (lookback: 3)
    tw.run(END + timedelta(days=4, hours=1))
    assert tw.draft_files() == []
    cancelled = [r for d, r in tw.decisions() if d == "draft cancelled"]
    assert len(cancelled) == 2 and all("too late, the interview ended more than 3 days ago" in r
                                       for r in cancelled)
    lines = [ln.split() for ln in tw.status().splitlines()
             if ln.strip().startswith("thank-you to")]
    assert sorted(ln[2] for ln in lines) == sorted([LEAD, OTHER])
    assert all(ln[3] == "cancelled" for ln in lines)
    # The follow-up is not stale: it is still planned for its day.
    (follow,) = tw.drafts(DraftKind.FOLLOW_UP)
    assert follow.state == DraftState.PLANNED


def test_first_start_after_the_lookback_skips_and_says_why(tw: TimeWorld) -> None:
    tw.add_interview()
    tw.run(END + timedelta(days=3, hours=2))  # first start: the interview ended 3 days ago
    assert tw.draft_files() == []
    skipped = [r for d, r in tw.decisions() if d == "draft skipped"]
    assert len(skipped) == 2 and all("ended more than 3 days ago" in r for r in skipped)
    # The digest uses the audit's own time stamps, written at the pass's `now`.
    digest = tw.status("--since", "30d")
    assert "draft skipped: 2" in digest
    assert digest.count("- draft skipped: the interview ended more than 3 days ago") == 2


# --- daylight-saving changes (America/Chicago) ------------------------------------------------


def _utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("end", "due"),
    [
        # Friday 16:00 CST, spring forward on Sunday 8 March: the 7th business day (Tuesday
        # 17 March) at 09:00 CDT is 14:00 UTC, an hour earlier in UTC than before the change.
        (_utc(2026, 3, 6, 22), _utc(2026, 3, 17, 14)),
        # Friday 16:00 CDT, fall back on Sunday 1 November: Tuesday 10 November 09:00 CST.
        (_utc(2026, 10, 30, 21), _utc(2026, 11, 10, 15)),
    ],
    ids=["spring-forward", "fall-back"],
)
def test_follow_up_across_a_dst_change_appears_at_9_on_the_wall_clock(
    tw: TimeWorld, end: datetime, due: datetime
) -> None:
    tw.add_interview(end=end)
    tw.run(end + timedelta(hours=3))
    tw.send_all_drafts()
    report = tw.run(end + timedelta(hours=4))
    (follow,) = tw.drafts(DraftKind.FOLLOW_UP)
    assert follow.state == DraftState.PLANNED and follow.due == due
    assert report.next_wakeup == due  # what the daemon's date job is set to

    tw.run(due - timedelta(seconds=1))
    assert tw.messages("Drafts") == []
    tw.run(due)
    (made,) = tw.messages("Drafts")
    assert made["To"].addresses[0].addr_spec == LEAD


@pytest.mark.parametrize(
    ("end", "due"),
    [
        # Ends 01:30 CST; two hours later is 04:30 CDT (the clock skipped 02:00-03:00).
        (_utc(2026, 3, 8, 7, 30), _utc(2026, 3, 8, 9, 30)),
        # Ends 01:30 CDT (the first 01:30); two hours later is 02:30 CST.
        (_utc(2026, 11, 1, 6, 30), _utc(2026, 11, 1, 8, 30)),
    ],
    ids=["spring-forward", "fall-back"],
)
def test_thank_you_delay_across_a_dst_change_is_two_real_hours(
    tw: TimeWorld, end: datetime, due: datetime
) -> None:
    tw.add_interview(end=end)
    report = tw.run(end)
    assert {d.due for d in tw.drafts(DraftKind.THANK_YOU)} == {due}
    assert report.next_wakeup == due
    tw.run(due - timedelta(seconds=1))
    assert tw.draft_files() == []
    tw.run(due)
    assert tw.draft_files() == sorted([LEAD, OTHER])


@pytest.mark.parametrize(
    ("end", "due"),
    [
        # Sunday 8 March 14:00 CDT; next business morning Monday 08:00 CDT = 13:00 UTC.
        (_utc(2026, 3, 8, 19), _utc(2026, 3, 9, 13)),
        # Sunday 1 November 14:00 CST; Monday 08:00 CST = 14:00 UTC.
        (_utc(2026, 11, 1, 20), _utc(2026, 11, 2, 14)),
        # Saturday 31 October 18:00 CDT: Monday morning is past the 24 hours, so the draft
        # comes 24 real hours later, Sunday 17:00 CST (the wall clock fell back an hour).
        (_utc(2026, 10, 31, 23), _utc(2026, 11, 1, 23)),
    ],
    ids=["spring-forward", "fall-back", "fall-back-24h-bound"],
)
def test_next_business_morning_on_a_dst_weekend(
    tmp_path: Path, end: datetime, due: datetime
) -> None:
    world = TimeWorld(tmp_path, 'thank_you_at = "next business morning 08:00"\n')
    try:
        world.add_interview(end=end)
        world.run(end)
        assert {d.due for d in world.drafts(DraftKind.THANK_YOU)} == {due}
        world.run(due - timedelta(seconds=1))
        assert world.draft_files() == []
        world.run(due)
        assert world.draft_files() == sorted([LEAD, OTHER])
        assert not any(d.late for d in world.drafts(DraftKind.THANK_YOU))
    finally:
        world.ledger.close()


# --- the daemon: a jumped clock, and a process stopped for several intervals --------------------


@pytest.mark.slow
def test_a_clock_jump_triggers_one_catch_up_pass_at_once(tmp_path: Path) -> None:
    root = tmp_path / "world"
    root.mkdir()
    mailbox.Maildir(root / "Maildir", create=True)
    calendar_file(root / "calendar", "iv1", ends_for_due_in(3600))
    config = root / "config.toml"
    config.write_text(HEAD + local_account("home"), encoding="utf-8")
    settings = fast(config_module.load(config), poll=3600)  # the next poll is an hour away
    with running(settings) as daemon:
        wait_for("the first pass", lambda: len(passes(daemon, "home")) == 1)
        time.sleep(0.3)
        assert len(passes(daemon, "home")) == 1
        daemon.tick(wall_elapsed=1.0, monotonic_elapsed=1.0)  # an ordinary second
        time.sleep(0.3)
        assert len(passes(daemon, "home")) == 1
        woke = datetime.now(UTC)
        daemon.tick(wall_elapsed=36_000.0, monotonic_elapsed=1.0)  # ten hours asleep
        wait_for("the catch-up pass", lambda: len(passes(daemon, "home")) == 2, timeout=1.0)
        time.sleep(0.5)
        after = passes(daemon, "home")
        assert len(after) == 2 and after[1].started >= woke and after[1].error is None


DAEMON = """
import sys
from pathlib import Path
from mailbridge import cli, config
from mailbridge.daemon import Daemon
from tests.test_outages import fast
cli._setup_logging(False)
settings = fast(config.load(Path(sys.argv[1])), poll=float(sys.argv[2]))
sys.exit(Daemon(settings.path, settings).serve())
"""


@pytest.mark.slow
def test_daemon_stopped_for_several_intervals_catches_up_in_one_pass(tmp_path: Path) -> None:
    """SIGSTOP the real daemon process for five poll intervals, across a due time: after
    SIGCONT there is exactly one catch-up pass, and it creates the drafts that fell due."""
    root = tmp_path / "world"
    root.mkdir()
    mailbox.Maildir(root / "Maildir", create=True)
    (root / "calendar").mkdir()
    config = root / "config.toml"
    config.write_text(HEAD + local_account("home"), encoding="utf-8")
    poll = 0.7
    proc = subprocess.Popen(
        [sys.executable, "-c", DAEMON, str(config), str(poll)],
        stderr=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parent.parent,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines: list[tuple[float, str]] = []

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append((time.monotonic(), line))

    threading.Thread(target=read, daemon=True).start()

    def pass_lines(since: float = 0.0) -> list[str]:
        return [ln for at, ln in list(lines) if at >= since and "home: pass " in ln]

    drafts = root / "Maildir" / ".Drafts" / "cur"
    try:
        wait_for("the first pass", lambda: len(pass_lines()) >= 1)
        # The interview appears now, its thank-yous due while the process will be stopped.
        calendar_file(root / "calendar", "iv1", ends_for_due_in(3.0))  # due in 2 to 3 s
        wait_for("the thank-yous planned", lambda: any("draft planned" in ln for _, ln in lines))
        proc.send_signal(signal.SIGSTOP)
        # Lines the process wrote before it stopped may still be in the pipe: the reader takes
        # them in this grace period, and only lines read after it count as written while stopped.
        time.sleep(0.5)
        stopped = time.monotonic()
        time.sleep(6 * poll)  # six polls and the thank-you's due time go by
        assert not (drafts.is_dir() and any(drafts.iterdir()))
        resumed = time.monotonic()
        proc.send_signal(signal.SIGCONT)
        wait_for("the catch-up pass", lambda: len(pass_lines(resumed)) >= 1, timeout=5)
        time.sleep(2 * poll)
        # Passes that began after SIGCONT (a pass caught mid-flight by SIGSTOP ends after it,
        # but started before: it is not a catch-up pass). Lines end "(trigger, 0.02 s)".
        def began(at: float, line: str) -> float:
            took = re.search(r", ([0-9.]+) s\)", line)
            return at - float(took.group(1)) if took else at

        after = [began(at, ln) for at, ln in list(lines)
                 if "home: pass " in ln and began(at, ln) >= resumed]
        # Five missed polls and the missed due time: one pass, then the ordinary cadence (a
        # pass per interval, on the grid of the first start), not a burst of six.
        gaps = [b - a for a, b in zip(after, after[1:], strict=False)]
        assert all(gap > 0.25 * poll for gap in gaps), "".join(ln for _, ln in lines)
        assert len(after) <= 3, "".join(ln for _, ln in lines)
        assert len(list(drafts.iterdir())) == 2  # made by the catch-up, once each
        assert not [at for at, ln in lines if stopped < at < resumed and "pass " in ln]
    finally:
        proc.send_signal(signal.SIGCONT)
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0, "".join(ln for _, ln in lines)
    with Ledger.open(root / "state") as ledger:
        created = [d for d in ledger.drafts("home") if d.state == DraftState.CREATED]
        assert sorted(d.recipient.email for d in created) == sorted([LEAD, OTHER])
