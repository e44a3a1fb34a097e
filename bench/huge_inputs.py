"""Time and peak memory of huge inputs through mapping, detection and a full engine pass.

Cases: a calendar of 10,000 events, one event with 500 attendees, an event with a 1 MB
description, a message with a 1 MB header (and one with a 1 MB body), and a whole
engine pass on the local provider (.ics folder + Maildir) with the 10,000-event calendar and
one interview among them. Peak memory is tracemalloc's peak for the step (Python allocations;
tracing slows the step, so times are printed from a second, untraced run).

    python bench/huge_inputs.py [--events 10000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mailbridge_providers.ics import events_from_ics  # noqa: E402

from mailbridge import classify, detect, engine, mailparse  # noqa: E402
from mailbridge.model import Folder, Window  # noqa: E402
from tests.test_engine import END, LEAD, USER, World, event_ics  # noqa: E402

FMT = "%Y%m%dT%H%M%SZ"
WINDOW = Window(END - timedelta(days=4), END + timedelta(days=60))


def calendar(events: int, *, attendees: int = 2, description: str = "") -> str:
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//bench//EN"]
    for n in range(events):
        start = END - timedelta(days=3) + timedelta(minutes=7 * n)
        lines += [
            "BEGIN:VEVENT", f"UID:bench-{n}", f"DTSTAMP:{start.strftime(FMT)}",
            f"DTSTART:{start.strftime(FMT)}", f"DTEND:{(start + timedelta(hours=1)).strftime(FMT)}",
            f"SUMMARY:{'Interview' if n == 0 else 'Meeting'} number {n}",
            f"ORGANIZER;CN=Dana Whitfield:mailto:{LEAD}",
        ]
        if description:
            lines.append("DESCRIPTION:" + description)
        lines += [f"ATTENDEE;CN=Person {i};PARTSTAT=ACCEPTED:mailto:p{i}@northwind-robotics.com"
                  for i in range(attendees)]
        lines += [f"ATTENDEE;PARTSTAT=ACCEPTED:mailto:{USER}", "END:VEVENT"]
    lines.append("END:VCALENDAR")
    return "\r\n".join(lines) + "\r\n"


def measure(name: str, step: Callable[[], Any]) -> Any:
    began = time.perf_counter()
    result = step()
    seconds = time.perf_counter() - began
    tracemalloc.start()
    step()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(f"{name:<52} {seconds:8.2f} s {peak / 2**20:9.1f} MiB peak")
    return result


def map_and_detect(data: str) -> int:
    events = events_from_ics(data, "bench.ics", WINDOW, (USER,))
    org = detect.default_org_domains(USER)
    from mailbridge.settings import DetectionRules

    rules = DetectionRules(max_attendees=1000)
    return sum(detect.detect(e, (USER,), org, rules).is_interview for e in events)


def mail(raw: bytes) -> str:
    headers = mailparse.headers_from_bytes(raw, folder=Folder.INBOX, provider_id="1")
    return classify.classify(headers, (USER,)).kind.value


def engine_pass(events: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        world = World(Path(tmp))
        (world.root / "calendar" / "big.ics").write_text(calendar(events), encoding="utf-8")
        (world.root / "calendar" / "iv1.ics").write_text(
            event_ics("iv1", END - timedelta(hours=1), END, title="Northwind - Interview"),
            encoding="utf-8")
        report = engine.reconcile(world.account, world.ledger, now=END + timedelta(hours=3))
        assert report.error is None, report.error
        drafts = len(world.messages("Drafts"))
        world.ledger.close()
        assert drafts >= 2, drafts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    args = parser.parse_args()
    print(f"{'case':<52} {'time':>10} {'memory':>15}")
    many = calendar(args.events)
    measure(f"{args.events:,} events: parse + map + detect", lambda: map_and_detect(many))
    crowd = calendar(1, attendees=500)
    measure("1 event, 500 attendees: parse + map + detect", lambda: map_and_detect(crowd))
    long_text = calendar(1, description="word " * 210_000)
    measure("1 event, 1 MB description: parse + map + detect", lambda: map_and_detect(long_text))
    header = (f"From: Dana <{LEAD}>\r\nSubject: " + "Interview " * 105_000
              + "\r\nMessage-ID: <big@x>\r\n\r\nHello\r\n").encode()
    measure("1 message, 1 MB Subject header: parse + classify", lambda: mail(header))
    body = (f"From: Dana <{LEAD}>\r\nSubject: Re: Interview\r\n\r\n" + "word " * 210_000).encode()
    measure("1 message, 1 MB body: parse + classify", lambda: mail(body))
    measure(f"engine pass, local provider, {args.events:,} events",
            lambda: engine_pass(args.events))
    print(f"(window {WINDOW.start:%Y-%m-%d}..{WINDOW.end:%Y-%m-%d}; {datetime.now(UTC):%H:%M} UTC)")


if __name__ == "__main__":
    main()
