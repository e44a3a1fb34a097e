"""Graph requests per idle sync cycle and per interview handled, against the Graph emulator.

Run: /work/venv/bin/python bench/graph_requests.py [--accounts N]

Goal for an idle cycle: one delta request per watched resource (calendar, inbox, sent) per account;
with drafts waiting, one more request that lists the change keys of Drafts (no draft is read).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
_home = tempfile.mkdtemp(prefix="mailbridge-bench-")
os.environ["PYTHON_KEYRING_BACKEND"] = "keyrings.alt.file.PlaintextKeyring"
os.environ["XDG_DATA_HOME"] = os.path.join(_home, "data")
os.environ["XDG_CONFIG_HOME"] = os.path.join(_home, "config")

from mailbridge_providers import outlook  # noqa: E402
from mailbridge_providers.outlook import OutlookSettings  # noqa: E402

from mailbridge.engine import reconcile  # noqa: E402
from mailbridge.ledger import Ledger  # noqa: E402
from mailbridge.settings import AccountSettings, CalendarSettings  # noqa: E402
from tests.emulators.graph import AUTHORITY, TENANT, GraphEmulator  # noqa: E402


def graph_requests(emu: GraphEmulator) -> int:
    return sum(n for key, n in emu.counts.items() if "token" not in key and "openid" not in key)


def one_account(name: str, start: datetime) -> tuple[Counter[str], int, int, Counter[str]]:
    emu = GraphEmulator().start()
    try:
        account = AccountSettings(
            name=name,
            provider="outlook",
            address=emu.user,
            display_name=emu.user_name,
            calendar=CalendarSettings(kind="outlook"),
            tables={"outlook": OutlookSettings(
                client_id=emu.client_id,
                tenant=TENANT,
                authority_url=AUTHORITY,
                graph_url=emu.graph_url,
            )},
        )
        outlook.authenticate(account, http_client=emu.http_client(), say=lambda _: None)
        opts = {"http_client": emu.http_client()}
        mailbox, calendar = (
            outlook.open_mailbox(account, **opts),
            outlook.open_calendar(account, **opts),
        )
        ledger = Ledger.open(Path(tempfile.mkdtemp(prefix=f"{name}-state-", dir=_home)))
        emu.add_event(
            "Interview: Fabrikam",
            start,
            start + timedelta(hours=1),
            organizer=("lee@fabrikam.example", "Lee Lead"),
            attendees=[
                ("lee@fabrikam.example", "Lee Lead", "required", "organizer"),
                ("ann@fabrikam.example", "Ann Other", "required", "accepted"),
                (emu.user, emu.user_name, "required", "accepted"),
            ],
        )

        def run(now: datetime) -> None:
            report = reconcile(account, ledger, now=now, mailbox=mailbox, calendar=calendar)
            if report.error:
                raise SystemExit(f"{name}: {report.error}")

        before = graph_requests(emu)
        run(start + timedelta(hours=4))  # first sync; two thank-you drafts
        # An idle cycle with both drafts waiting (after the one pass that reads them in full);
        # not counted in the interview's figure.
        run(start + timedelta(hours=4, minutes=5))
        waiting_before, extra = Counter(emu.counts), graph_requests(emu)
        run(start + timedelta(hours=5))
        waiting = Counter(emu.counts)
        waiting.subtract(waiting_before)
        before += graph_requests(emu) - extra
        for draft in emu.drafts():
            emu.user_sends(draft["id"])
        later = start + timedelta(days=14)
        run(later)  # the follow-up
        lee_thanks = next(
            m
            for m in emu.messages.values()
            if m.folder == "sentitems" and "lee@" in str(m.data["toRecipients"])
        )
        emu.deliver(
            "lee@fabrikam.example",
            "RE: Thank you",
            "We'll be in touch",
            received=later + timedelta(hours=1),
            headers=[("In-Reply-To", lee_thanks.data["internetMessageId"])],
        )
        run(later + timedelta(hours=2))  # the reply; the follow-up is taken back
        interview = graph_requests(emu) - before

        idle_before = Counter(emu.counts)
        run(later + timedelta(hours=3))
        idle = Counter(emu.counts)
        idle.subtract(idle_before)
        ledger.close()
        return +idle, interview, graph_requests(emu), +waiting
    finally:
        emu.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accounts", type=int, default=2)
    args = parser.parse_args()
    start = datetime(2030, 5, 6, 15, 0, tzinfo=UTC)
    print("account  idle-cycle requests (by endpoint)                      interview  total")
    for i in range(args.accounts):
        idle, interview, total, waiting = one_account(f"acct{i}", start)
        detail = ", ".join(f"{k}={v}" for k, v in sorted(idle.items()))
        print(f"acct{i:<4} {sum(idle.values()):>3}  ({detail}){'':>4} {interview:>9}  {total:>5}")
        detail = ", ".join(f"{k}={v}" for k, v in sorted(waiting.items()))
        print(f"{'':<8} {sum(waiting.values()):>3}  (idle with 2 drafts waiting: {detail})")
    print("goal: 4 per idle cycle (calendarView/delta + the inbox, archive and sentitems "
          "deltas); 5 with drafts waiting (+ one change-key listing of Drafts, no GET message)")


if __name__ == "__main__":
    main()
