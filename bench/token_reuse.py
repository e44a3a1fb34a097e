"""Token and discovery requests per daemon pass on Gmail and Graph (issue 11 item 5).

Runs the real daemon's passes (`Daemon.pass_now`, the code path of every timer and push) for
one Gmail account against the Google emulator and one Outlook account against the Graph
emulator, and prints per pass the token refreshes and (Graph) authority discovery requests
seen by the emulator, and how often the daemon opened the account's providers. The goal: all
of them in the first pass only; later idle cycles reuse the providers and their access tokens.

    python bench/token_reuse.py [--passes 4]
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import sys
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
_home = Path(tempfile.mkdtemp(prefix="mailbridge-bench-"))
os.environ["PYTHON_KEYRING_BACKEND"] = "keyrings.alt.file.PlaintextKeyring"
os.environ["XDG_DATA_HOME"] = str(_home / "data")
os.environ["XDG_CONFIG_HOME"] = str(_home / "config")

from mailbridge_providers import gmail, outlook  # noqa: E402
from mailbridge_providers.gmail import GoogleSettings  # noqa: E402
from mailbridge_providers.outlook import OutlookSettings  # noqa: E402

from mailbridge import secrets  # noqa: E402
from mailbridge.daemon import Daemon  # noqa: E402
from mailbridge.settings import AccountSettings, CalendarSettings, Settings  # noqa: E402
from tests.emulators.google import running  # noqa: E402
from tests.emulators.graph import AUTHORITY, TENANT, GraphEmulator  # noqa: E402


def daemon_for(account: AccountSettings, name: str) -> Daemon:
    # The calendar is read at every pass, so every idle cycle makes real requests.
    account = dataclasses.replace(account, calendar_interval=timedelta(0))
    settings = Settings(path=_home / f"{name}.toml", state_dir=_home / f"{name}-state",
                        timezone="UTC", country=None, accounts=(account,))
    return Daemon(settings.path, settings)


def passes(label: str, daemon: Daemon, counts: Any, auth_keys: Any, count: int) -> None:
    for n in range(1, count + 1):
        counts.clear()
        outcome = daemon.pass_now(daemon.settings.accounts[0].name)
        error = outcome if isinstance(outcome, str) else outcome.error
        if error:
            raise SystemExit(f"{label}: {error}")
        auth = {k: v for k, v in counts.items() if auth_keys(k)}
        opened = daemon.providers[daemon.settings.accounts[0].name].opened
        print(f"{label} pass {n}: token/discovery requests {sum(auth.values())} {auth or ''}; "
              f"other requests {sum(counts.values()) - sum(auth.values())}; providers opened "
              f"so far {opened}")


def gmail_run(count: int) -> None:
    me = "jordan.lee@gmail.com"
    with running(me) as emu:
        account = AccountSettings(
            name="gm", provider="gmail", address=me, calendar=CalendarSettings(kind="google"),
            tables={"google": GoogleSettings(
                client_secrets=str(emu.client_secrets(_home / "client.json")),
                api_endpoint=emu.url, calendar_endpoint=emu.calendar_endpoint,
                token_uri=emu.url + "/token",
            )},
        )
        secrets.store("gm", gmail.KEYRING_PURPOSE, "refresh-1")
        daemon = daemon_for(account, "gm")
        token_before = [emu.token_requests]

        class Counts(dict[str, int]):
            def clear(self) -> None:
                emu.counts.clear()
                token_before[0] = emu.token_requests

            def items(self) -> Any:
                merged = dict(emu.counts)
                merged["token"] = emu.token_requests - token_before[0]
                return merged.items()

            def values(self) -> Any:
                return dict(self.items()).values()

        passes("gmail  ", daemon, Counts(), lambda k: k == "token", count)
        daemon.ledgers.close()


def graph_run(count: int) -> None:
    emu = GraphEmulator().start()
    saved = outlook.open_mailbox, outlook.open_calendar
    try:
        account = AccountSettings(
            name="ms", provider="outlook", address=emu.user, display_name=emu.user_name,
            calendar=CalendarSettings(kind="outlook"),
            tables={"outlook": OutlookSettings(client_id=emu.client_id, tenant=TENANT,
                                               authority_url=AUTHORITY, graph_url=emu.graph_url)},
        )
        outlook.authenticate(account, http_client=emu.http_client(), say=lambda _: None)
        # The daemon opens providers through the entry points; the emulator needs its HTTP
        # client handed in, so the module's openers get it here.
        client = emu.http_client()
        outlook.open_mailbox = functools.partial(saved[0], http_client=client)  # type: ignore
        outlook.open_calendar = functools.partial(saved[1], http_client=client)  # type: ignore
        daemon = daemon_for(account, "ms")
        passes("outlook", daemon, emu.counts,
               lambda k: "token" in k or "openid" in k or "discovery" in k, count)
        daemon.ledgers.close()
    finally:
        outlook.open_mailbox, outlook.open_calendar = saved
        emu.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passes", type=int, default=4)
    args = parser.parse_args()
    gmail_run(args.passes)
    graph_run(args.passes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
