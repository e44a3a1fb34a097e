"""Requests and Gmail quota units per idle sync cycle and per interview handled.

Runs the real adapter (providers.gmail) and the real engine against the loopback emulator
(tests/emulators/google.py), counting what reaches the server. Prints a table; asserts nothing.

Gmail quota units per method are Google's published table
(https://developers.google.com/gmail/api/reference/quota). The Calendar API has no unit table:
each request counts as one query against its per-minute quota.

    /work/venv/bin/python bench/gmail_requests.py
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GMAIL_UNITS = {
    "users.getProfile": 1,
    "users.history.list": 2,
    "users.messages.list": 5,
    "users.messages.get": 5,
    "users.threads.get": 10,
    "users.drafts.create": 10,
    "users.drafts.get": 5,
    "users.drafts.list": 5,
    "users.drafts.update": 15,
    "users.drafts.delete": 10,
    "users.labels.list": 1,
    "users.labels.create": 5,
    "users.drafts.send": 100,
    "users.messages.send": 100,
}


def units(counts: Counter[str]) -> int:
    return sum(
        GMAIL_UNITS[m.removeprefix("gmail.")] * n
        for m, n in counts.items()
        if m.startswith("gmail.")
    )


def line(label: str, counts: Counter[str]) -> str:
    gmail = sum(n for m, n in counts.items() if m.startswith("gmail."))
    calendar = sum(n for m, n in counts.items() if m.startswith("calendar."))
    detail = ", ".join(f"{m.split('.', 1)[1]}×{n}" for m, n in sorted(counts.items()))
    return f"{label:<44} {gmail:>5} {units(counts):>6} {calendar:>9}   {detail}"


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="mailbridge-bench-"))
    os.environ["PYTHON_KEYRING_BACKEND"] = "keyrings.alt.file.PlaintextKeyring"
    os.environ["XDG_DATA_HOME"] = str(home / "data")
    os.environ["XDG_CONFIG_HOME"] = str(home / "config")

    from mailbridge_providers import gmail
    from mailbridge_providers.gmail import GoogleSettings

    from mailbridge import secrets
    from mailbridge.engine import reconcile
    from mailbridge.ledger import Ledger
    from mailbridge.settings import AccountSettings, CalendarSettings
    from tests.emulators.google import interview_event, make_raw, running

    me = "jordan.lee@gmail.com"
    with running(me) as emu:
        account = AccountSettings(
            name="bench",
            provider="gmail",
            address=me,
            calendar=CalendarSettings(kind="google"),
            tables={"google": GoogleSettings(
                client_secrets=str(emu.client_secrets(home / "client.json")),
                api_endpoint=emu.url,
                calendar_endpoint=emu.calendar_endpoint,
                token_uri=emu.url + "/token",
            )},
        )
        secrets.store("bench", gmail.KEYRING_PURPOSE, "refresh-1")
        mailbox, calendar = gmail.open_mailbox(account), gmail.open_calendar(account)
        ledger = Ledger.open(home / "state")
        start = datetime(2024, 5, 6, 14, 0, tzinfo=UTC)
        rows: list[str] = []

        def step(label: str, now: datetime, passes: int = 1) -> Counter[str]:
            emu.counts.clear()
            for _ in range(passes):
                report = reconcile(account, ledger, now=now, mailbox=mailbox, calendar=calendar)
                assert report.error is None, report.error
            counts = Counter(emu.counts)
            rows.append(line(label, counts))
            return counts

        step("first pass (full sync, empty account)", start - timedelta(days=2))
        step("idle cycle, no interview in progress", start - timedelta(days=1))
        emu.add_event(interview_event("iv1", start, me))
        total: Counter[str] = Counter()
        total += step("interview appears on the calendar", start - timedelta(hours=1))
        total += step("thank-you drafts due (2 interviewers)", start + timedelta(hours=3), 2)
        waiting = step("idle cycle with 2 drafts waiting", start + timedelta(hours=4))
        for draft_id in list(emu.drafts):
            emu.user_sends_draft(draft_id)
        total += step("the user sends both thank-yous", start + timedelta(days=1))
        # An idle cycle comes a poll interval after the last pass; once a day the pass lists
        # the whole look-back window instead of reading the history (engine.FULL_LISTING_EVERY:
        # it heals whatever an incremental read missed), counted on its own line.
        idle = step("idle cycle, waiting for the employer",
                    start + timedelta(days=1, minutes=5))
        total += step("once a day while waiting: the full listing", start + timedelta(days=3))
        total += step("follow-up due to the lead", start + timedelta(days=12), 2)
        lead_thanks = next(
            m for m in emu.messages.values() if "SENT" in m.labels and "maria@" in m.header("To")
        )
        emu.deliver(
            make_raw(
                "Maria Chen <maria@acme.example>",
                me,
                "Re: " + lead_thanks.header("Subject"),
                "Thanks! Next steps soon.",
                in_reply_to=lead_thanks.header("Message-ID"),
            )
        )
        total += step("employer replies: follow-up retracted", start + timedelta(days=12, hours=2))
        ledger.close()

        print(f"{'phase':<44} {'gmail':>5} {'units':>6} {'calendar':>9}   requests by method")
        print("\n".join(rows))
        print(line("per interview handled (sum of its phases)", total))
        cycle_ok = idle == Counter({"gmail.users.history.list": 1, "calendar.events.list": 1})
        print(
            f"\nidle goal while waiting (one history.list + one events.list per calendar): "
            f"{'met' if cycle_ok else 'NOT met'}; "
            f"{units(idle)} Gmail units per idle cycle per account"
        )
        waiting_ok = waiting == Counter(
            {"gmail.users.history.list": 1, "calendar.events.list": 1}
        )
        print(
            f"idle goal with 2 drafts waiting (the same, no drafts.get: history tells which "
            f"changed): {'met' if waiting_ok else 'NOT met'}; {units(waiting)} Gmail units"
        )
        sends = [m for m in emu.counts if "send" in m]
        print(f"send requests seen: {len(sends)}; emulator violations: {len(emu.violations)}")


if __name__ == "__main__":
    main()
