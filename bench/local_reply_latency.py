"""Time from an employer's reply landing in a local Maildir to its follow-up being taken back
by the running service (`mailbridge run`), which watches the Maildir (watchdog: inotify here).

Each run lays out the demo's story up to the follow-up waiting in Maildir/.Drafts (the engine
at a simulated clock), starts the real daemon with a one-hour poll interval (so only the file
watcher can explain a quick reaction), delivers the lead's reply as a mail delivery agent does
(write in tmp/, rename into new/) and measures until the follow-up has left Drafts.
Goal: under 2 s median.

    python bench/local_reply_latency.py [--runs 10]
"""

from __future__ import annotations

import argparse
import mailbox
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

from mailbridge import config as config_module
from mailbridge import demo, engine, timing
from mailbridge.daemon import ServiceUnreachable, ask_service
from mailbridge.ledger import Ledger
from mailbridge.model import DraftKind, DraftState


def prepare(root: Path) -> Path:
    """The demo's story up to a follow-up in Drafts; returns the config path."""
    now = datetime.now(UTC)
    demo.prepare(root)
    path = demo.write_example(root, now)
    path.write_text(path.read_text(encoding="utf-8") + 'poll_interval = "1h"\n'
                    'calendar_interval = "1h"\n', encoding="utf-8")
    settings = config_module.load(path)
    account = settings.accounts[0]
    with Ledger.open(settings.state_dir) as ledger:
        engine.reconcile(account, ledger, now=now)
        due = min(d.due for d in ledger.drafts(account.name) if d.kind == DraftKind.THANK_YOU)
        engine.reconcile(account, ledger, now=due)
        drafts = mailbox.Maildir(root / "Maildir" / ".Drafts", factory=None, create=False)
        sent = mailbox.Maildir(root / "Maildir" / ".Sent", factory=None, create=False)
        for key in list(drafts.keys()):
            sent.add(drafts.get_bytes(key))
            drafts.remove(key)
        engine.reconcile(account, ledger, now=due + timedelta(minutes=30))
        interview = ledger.interviews(account.name)[0]
        follow_due = timing.follow_up_due(interview.end, None, account.policy)
        engine.reconcile(account, ledger, now=follow_due)
        waiting = [d for d in ledger.drafts(account.name)
                   if d.kind == DraftKind.FOLLOW_UP and d.state == DraftState.CREATED]
        if len(waiting) != 1:
            raise SystemExit("setup: no follow-up draft was made")
    return path


def deliver_reply(root: Path) -> None:
    """Deliver the lead's reply the way an MDA does: write in tmp/, then rename into new/."""
    reply = EmailMessage()
    reply["From"] = f"{demo.LEAD[0]} <{demo.LEAD[1]}>"
    reply["To"] = demo.USER
    reply["Subject"] = "Re: next steps"
    reply["Date"] = format_datetime(datetime.now(UTC))
    reply["Message-ID"] = make_msgid(domain="northwind-robotics.com")
    reply.set_content("Hi Jordan, thanks for your patience. Could we talk on Monday?\nDana")
    name = f"{time.time():.6f}.{os.getpid()}.bench"
    tmp = root / "Maildir" / "tmp" / name
    tmp.write_bytes(bytes(reply))
    os.rename(tmp, root / "Maildir" / "new" / name)


def wait_for_service(state_dir: Path, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("the service exited at start")
        try:
            ask_service(state_dir, {"command": "ping"}, timeout=5)
            return
        except (ServiceUnreachable, OSError):
            time.sleep(0.05)
    raise SystemExit("the service did not start within 60 s")


def drafts_left(root: Path) -> int:
    return len(os.listdir(root / "Maildir" / ".Drafts" / "cur"))


def one_run(root: Path, verbose: bool) -> float:
    config = prepare(root)
    settings = config_module.load(config)
    command = [sys.executable, "-m", "mailbridge.cli", "--config", str(config), "run"]
    log = None if verbose else subprocess.DEVNULL
    proc = subprocess.Popen(command, stdout=log, stderr=log)
    try:
        wait_for_service(settings.state_dir, proc)
        # The start-up pass finds nothing to do; let it finish before the clock starts.
        ask_service(settings.state_dir, {"command": "sync"})
        if drafts_left(root) != 1:
            raise SystemExit("setup: the follow-up is not in Drafts")
        started = time.monotonic()
        deliver_reply(root)
        while drafts_left(root):
            if time.monotonic() - started > 60:
                raise SystemExit("the follow-up was not taken back within 60 s")
            time.sleep(0.005)
        return time.monotonic() - started
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="replies to time")
    parser.add_argument("--verbose", action="store_true", help="show the daemon's log")
    args = parser.parse_args()
    took = []
    with tempfile.TemporaryDirectory(prefix="mailbridge-bench-") as base:
        for n in range(args.runs):
            took.append(one_run(Path(base) / f"run{n}", args.verbose))
            print(f"run {n + 1}: {took[-1] * 1000:.0f} ms", flush=True)
    print(f"reply landed -> follow-up taken back: median {statistics.median(took) * 1000:.0f} ms, "
          f"min {min(took) * 1000:.0f} ms, max {max(took) * 1000:.0f} ms over {len(took)} runs "
          "(goal: under 2 s median)")


if __name__ == "__main__":
    main()
