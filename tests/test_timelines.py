"""Property: the path does not matter. Over random timelines (interviews created, moved,
cancelled, reinstated, vanishing; the ledger wiped at random points; passes at random
moments), a final pass leaves the mailbox exactly as a fresh install would leave it from the
same final calendar, and one more pass changes nothing.

The local provider (real .ics files and a real Maildir in temporary folders) keeps it fast.
Calendar changes happen before any draft is due: a thank-you the user already has is kept
when its interview is cancelled afterwards (the user may have read it), which a fresh install
could not know about.
"""

from __future__ import annotations

import shutil
import tempfile
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mailbridge import engine
from mailbridge.ledger import Ledger
from tests.test_engine import END, World

UIDS = ("iv-a", "iv-b")
CHANGES_UNTIL = END - timedelta(hours=1)  # every end is >= END, so nothing is due before this
FINAL = END + timedelta(hours=30)  # late, but within the three-day look-back

Step = tuple[str, ...] | tuple[str, str, int, bool]

put = st.tuples(st.just("put"), st.sampled_from(UIDS), st.integers(0, 6), st.booleans())
vanish = st.tuples(st.just("vanish"), st.sampled_from(UIDS))
simple = st.sampled_from([("run",), ("wipe",)])
early = st.lists(st.one_of(put, vanish, simple), max_size=10)
late = st.lists(st.tuples(st.integers(2 * 60, 29 * 60), st.sampled_from(["run", "wipe"])),
                max_size=4)


def drafts_held(world: World) -> Counter[tuple[str, str]]:
    counts: Counter[tuple[str, str]] = Counter()
    for name in ("Drafts", "Sent", "Trash"):
        for message in world.messages(name):
            counts[(name, f"{message['Message-ID']} {message['To']}")] += 1
    return counts


def wipe(world: World) -> None:
    world.ledger.close()
    shutil.rmtree(world.settings.state_dir)
    world.ledger = Ledger.open(world.settings.state_dir)


def apply_calendar(world: World, step: Step) -> None:
    if step[0] == "put":
        _, uid, hours, cancelled = step
        world.add_interview(uid=str(uid), end=END + timedelta(hours=int(hours)),
                            cancelled=bool(cancelled))
    elif step[0] == "vanish":
        (world.root / "calendar" / f"{step[1]}.ics").unlink(missing_ok=True)


def run(world: World, now: datetime) -> None:
    report = engine.reconcile(world.account, world.ledger, now=now)
    assert report.error is None, report.error


@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(early=early, late=late)
@example(  # cancelled, then reinstated
    early=[("put", "iv-a", 1, False), ("run",), ("put", "iv-a", 1, True), ("run",),
           ("put", "iv-a", 2, False)],
    late=[],
)
@example(  # vanished once (a calendar of one event), then back; the ledger lost after drafts
    early=[("put", "iv-a", 0, False), ("run",), ("vanish", "iv-a"), ("run",),
           ("put", "iv-a", 0, False)],
    late=[(200, "run"), (300, "wipe")],
)
def test_the_final_mailbox_does_not_depend_on_the_path(
    early: list[Step], late: list[tuple[int, str]]
) -> None:
    with tempfile.TemporaryDirectory() as lived_dir, tempfile.TemporaryDirectory() as fresh_dir:
        lived = World(Path(lived_dir))
        now = END - timedelta(hours=20)
        for step in early:
            now = min(now + timedelta(minutes=47), CHANGES_UNTIL)
            if step[0] == "run":
                run(lived, now)
            elif step[0] == "wipe":
                wipe(lived)
            else:
                apply_calendar(lived, step)
        for minutes, what in sorted(late):
            if what == "wipe":
                wipe(lived)
            else:
                run(lived, END + timedelta(minutes=minutes))
        run(lived, FINAL)
        # Anything absent stays absent past the grace period: it counts as removed now.
        run(lived, FINAL + lived.account.policy.removal_grace)

        fresh = World(Path(fresh_dir))
        for ics in (lived.root / "calendar").glob("*.ics"):
            shutil.copy(ics, fresh.root / "calendar" / ics.name)
        run(fresh, FINAL)
        run(fresh, FINAL + fresh.account.policy.removal_grace)

        assert drafts_held(lived) == drafts_held(fresh)
        assert all(n == 1 for n in drafts_held(lived).values())

        # Settled: one more pass changes nothing, in the mailbox or the ledger.
        before, rows = drafts_held(lived), lived.drafts()
        audit = len(lived.ledger.audit_entries())
        run(lived, FINAL + lived.account.policy.removal_grace)
        assert drafts_held(lived) == before
        assert lived.drafts() == rows
        assert len(lived.ledger.audit_entries()) == audit
        lived.ledger.close()
        fresh.ledger.close()
