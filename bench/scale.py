"""Many accounts in one process: RSS, threads and open files of the real daemon.

Lays out N local accounts (each its own Maildir and calendar folder holding one past
interview), or N IMAP accounts on one Dovecot (tests.servers) with their calendars in local
files, starts `mailbridge run` on them, waits until every account has finished a pass (the
ledger's last_ok / last_error), then reads /proc for the daemon's resident memory, threads and
file descriptors and counts the accounts whose pass failed (for instance "database is locked").

    python bench/scale.py [--provider local|imap] [--accounts 1 100 1000] [--settle 5]
    python bench/scale.py --check 1000      # `mailbridge check` with that many accounts

Goal (issue 13): 1,000 accounts in <= 256 MiB, every first pass good.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mailbridge import demo  # noqa: E402
from mailbridge.ledger import Ledger  # noqa: E402

# What the daemon logs when an account's push (a watcher thread or a subscription) gave up.
PUSH_FAILED = ("push watcher stopped", "no push notifications")


def lay_out(root: Path, count: int, provider: str, imap_port: int = 0) -> Path:
    """N accounts under ``root``; returns the config path."""
    now = datetime.now(UTC)
    end = (now - timedelta(hours=1)).replace(second=0, microsecond=0)
    lines = ["[mailbridge]", 'timezone = "UTC"', 'country = "US"', 'state_dir = "state"', "",
             "[defaults]", 'poll_interval = "5m"', 'calendar_interval = "15m"', ""]
    for n in range(count):
        home = root / f"a{n}"
        (home / "calendar").mkdir(parents=True)
        (home / "calendar" / "interview.ics").write_text(
            demo._ics(end - timedelta(hours=1), end).replace(
                "UID:demo-interview-1@", f"UID:scale-{n}@"), encoding="utf-8")
        lines += [f"[accounts.a{n}]", f'provider = "{provider}"',
                  f'address = "{demo.USER}"', 'name = "Jordan Lee"',
                  f'calendar = {{ kind = "file", path = "a{n}/calendar" }}']
        if provider == "local":
            import mailbox
            mailbox.Maildir(home / "Maildir", create=True)
            lines.append(f'maildir = {{ path = "a{n}/Maildir" }}')
        else:
            lines.append(
                f'imap = {{ host = "127.0.0.1", port = {imap_port}, security = "plain", '
                f'username = "user{n}@example.org", password_command = "echo secret" }}')
        lines.append("")
    path = root / "config.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def proc_figures(pid: int) -> tuple[float, int, int]:
    """Resident MiB, threads, open file descriptors of ``pid``."""
    rss = threads = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
        elif line.startswith("Threads:"):
            threads = int(line.split()[1])
    return rss / 1024, threads, len(os.listdir(f"/proc/{pid}/fd"))


def first_passes(state: Path, names: list[str]) -> tuple[int, int, list[str]]:
    """Accounts with a good pass, with a failed one, and a few of the errors."""
    good = bad = 0
    errors: list[str] = []
    if not (state / "ledger.sqlite3").exists():
        return 0, 0, []
    with Ledger.open(state) as ledger:
        for name in names:
            status = ledger.account_status(name)
            if status.last_error:
                bad += 1
                if len(errors) < 3:
                    errors.append(status.last_error)
            elif status.last_ok is not None:
                good += 1
    return good, bad, errors


def one(count: int, provider: str, settle: float, nofile: int | None, verbose: bool,
        imap_port: int = 0) -> None:
    with tempfile.TemporaryDirectory(prefix="mailbridge-scale-") as tmp:
        root = Path(tmp)
        config = lay_out(root, count, provider, imap_port)
        names = [f"a{n}" for n in range(count)]

        def limit() -> None:
            if nofile is not None:  # the soft limit, the hard one left as it is (if higher)
                hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, max(nofile, hard)
                                   if hard != resource.RLIM_INFINITY else hard))

        with daemon_run(config, root, names, label=f"{provider:>6} {count:>5} accounts",
                        settle=settle, verbose=verbose, preexec_fn=limit) as run:
            if run is None:
                return
            log_text = run.log()
            no_push = sum(log_text.count(line) for line in PUSH_FAILED)
            print(f"{provider:>6} {count:>5} accounts: {run.figures()}; "
                  f"push watchers that failed: {no_push}"
                  + (f"; e.g. {run.errors[0]}" if run.errors else ""), flush=True)
            if no_push and verbose:
                print(next(ln for ln in log_text.splitlines()
                           if any(failed in ln for failed in PUSH_FAILED)))


@dataclass
class Run:
    """A daemon that finished every account's first pass: how, and what it holds at rest."""

    root: Path
    good: int
    bad: int
    errors: list[str]
    took: float
    rss: float
    threads: int
    fds: int

    def log(self) -> str:
        return (self.root / "daemon.log").read_text(errors="replace")

    def figures(self) -> str:
        return (f"RSS {self.rss:6.1f} MiB, {self.threads:4d} threads, {self.fds:5d} fds; "
                f"first passes {self.good} good, {self.bad} failed in {self.took:.1f} s")


@contextlib.contextmanager
def daemon_run(config: Path, root: Path, names: list[str], *, label: str, settle: float,
               verbose: bool, timeout: float = 900, env: dict[str, str] | None = None,
               preexec_fn: Callable[[], None] | None = None) -> Iterator[Run | None]:
    """`mailbridge run` on ``config`` until every account in ``names`` finished its first pass
    (or ``timeout``), then ``settle`` seconds idle; None (after saying why) if it exited."""
    err_path = root / "daemon.log"
    started = time.monotonic()
    with open(err_path, "wb") as err_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mailbridge.cli", "--config", str(config), "run"],
            stdout=subprocess.DEVNULL, stderr=err_file, env=env, preexec_fn=preexec_fn)
    try:
        good = bad = 0
        errors: list[str] = []
        while time.monotonic() - started < timeout:
            if proc.poll() is not None:
                err = err_path.read_text(errors="replace")
                print(f"{label}: the daemon exited ({proc.returncode}): "
                      f"{err.strip().splitlines()[-1:]}")
                yield None
                return
            good, bad, errors = first_passes(root / "state", names)
            if verbose:
                print(f"  {good} good, {bad} failed", flush=True)
            if good + bad >= len(names):
                break
            time.sleep(0.5)
        took = time.monotonic() - started
        time.sleep(settle)  # idle: what the process holds between passes
        yield Run(root, good, bad, errors, took, *proc_figures(proc.pid))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--provider", choices=("local", "imap"), default="local")
    parser.add_argument("--accounts", type=int, nargs="+", default=[1, 100, 1000])
    parser.add_argument("--settle", type=float, default=5.0, help="idle seconds before reading")
    parser.add_argument("--nofile", type=int, help="run the daemon with this soft open-file limit")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--check", type=int, metavar="N", help="time `check` with N accounts")
    args = parser.parse_args()
    if args.check:
        with tempfile.TemporaryDirectory(prefix="mailbridge-scale-") as tmp:
            config = lay_out(Path(tmp), args.check, "local")
            # As installed: pip compiles the modules once, so the first run here writes their
            # bytecode (in a folder of its own, not beside the source) and is not timed.
            env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
            env["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "bytecode")
            command = [sys.executable, "-m", "mailbridge.cli", "--config", str(config), "check"]
            times, codes = [], set()
            for _ in range(4):
                began = time.perf_counter()
                done = subprocess.run(command, capture_output=True, text=True, check=False,
                                      env=env)
                times.append(time.perf_counter() - began)
                codes.add(done.returncode)
            timed = sorted(times[1:])
            print(f"check, {args.check} accounts: median {timed[1]:.2f} s, best {timed[0]:.2f} s "
                  f"including start-up, first run {times[0]:.2f} s (compiling) "
                  f"(exit {', '.join(map(str, sorted(codes)))}; goal <= 1 s)")
        return 0
    if args.provider == "imap":
        from tests.servers import Dovecot
        # One connection per account (passes borrow the IDLE one); room for twice that.
        server = Dovecot.create(clients=2 * max(args.accounts) + 100)
        for n in range(max(args.accounts)):
            server.add_user(f"user{n}@example.org")
        server.start()
        try:
            for count in args.accounts:
                one(count, "imap", args.settle, args.nofile, args.verbose, server.port)
        finally:
            server.stop()
        return 0
    for count in args.accounts:
        one(count, "local", args.settle, args.nofile, args.verbose)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
