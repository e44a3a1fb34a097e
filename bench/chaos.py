"""Crash chaos at length: hundreds of SIGKILLs of the real mailbridge process per provider.

    python bench/chaos.py --kills 300 --seed 7 --provider local --provider imap
    python bench/chaos.py --kills 200 --provider all --mode daemon

Prints, per provider: kills survived, duplicates, lost drafts and touched drafts changed (each
must be 0), ledger disagreements and errors; exits 1 when any of them is not 0. The scenario,
the kill plans and the checks are those of tests/chaos.py: kills in every phase (thank-yous,
notes, follow-ups, retraction), and on Gmail and Graph also requests carried out whose answer
is lost (dropped or 5xx) while the process lives on. Every create looks its Message-ID up
first, so no timing of the machine leaves a duplicate. Dovecot and Radicale are started here
for the imap provider (Debian package dovecot-imapd, PyPI radicale).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.chaos import (  # noqa: E402 - after the path set-up
    PROVIDERS,
    GmailWorld,
    GraphWorld,
    ImapWorld,
    LocalWorld,
    Report,
    World,
    run_chaos,
)
from tests.servers import Dovecot, Radicale  # noqa: E402


def run_one(provider: str, root: Path, kills: int, seed: int, daemon: bool) -> Report:
    servers: list[Dovecot | Radicale] = []
    try:
        world: World
        if provider == "local":
            world = LocalWorld(root)
        elif provider == "imap":
            dovecot, radicale = Dovecot.create(), Radicale.create()
            servers += [dovecot, radicale]
            dovecot.start()
            radicale.start()
            world = ImapWorld(root, dovecot, radicale)
        elif provider == "gmail":
            world = GmailWorld(root)
        else:
            world = GraphWorld(root)
        # Longer runs get more room per phase: each phase carries kills/6 kills.
        return run_chaos(world, kills=kills, seed=seed, daemon=daemon,
                         phase_timeout=60.0 + 3.0 * kills / 6)
    finally:
        for server in servers:
            server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=200, help="kills per provider (at least)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--provider", action="append", choices=[*PROVIDERS, "all"],
                        help="repeat for several; default all")
    parser.add_argument("--mode", choices=["auto", "daemon", "once"], default="auto",
                        help="auto: the daemon for local and imap, run --once for the others")
    parser.add_argument("--keep", action="store_true", help="keep the work folders")
    args = parser.parse_args()
    chosen = args.provider or ["all"]
    providers = list(PROVIDERS) if "all" in chosen else list(dict.fromkeys(chosen))
    base = Path(tempfile.mkdtemp(prefix="mailbridge-chaos-"))
    failed = False
    print(f"{'provider':9} {'mode':11} {'kills':>6} {'in pass':>8} {'dupl.':>6} {'lost':>5} "
          f"{'touched':>8} {'ledger':>7} {'errors':>7} {'secs':>6}")
    reports = []
    for provider in providers:
        daemon = args.mode == "daemon" or (args.mode == "auto" and provider in ("local", "imap"))
        report = run_one(provider, base / provider, args.kills, args.seed, daemon)
        reports.append(report)
        print(f"{provider:9} {report.mode:11} {report.kills:>6} {report.kills_in_pass:>8} "
              f"{len(report.duplicates):>6} {len(report.lost):>5} "
              f"{len(report.touched_changed):>8} {len(report.disagreements):>7} "
              f"{len(report.errors):>7} {report.seconds:>6.0f}", flush=True)
        failed |= not report.ok
    for report in reports:
        if not report.ok:
            print()
            print(report.summary())
    if args.keep or os.environ.get("CHAOS_KEEP"):
        print(f"\nwork folders kept in {base}")
    else:
        shutil.rmtree(base, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
