"""Many Gmail or Outlook (Graph) accounts in one daemon: RSS, threads and open files.

Starts the Google or Graph emulator of the tests (tests/emulators; every request is checked
against the published API description) in a process of its own, so its memory is not
counted, lays out N accounts of one provider pointed at it through the keys a user would set
(client_secrets, api_endpoint, calendar_endpoint, token_uri; client_id, tenant, authority_url,
graph_url), each signed in through the file token store (with --interview, one past
interview in the calendar they all read, so every first pass writes drafts). Then starts
`mailbridge run`, waits until every account has finished a pass, and reads /proc for the
daemon's resident memory, threads and file descriptors (the helpers of bench/scale.py). Both
emulators serve TLS with a throwaway CA that the daemon trusts through REQUESTS_CA_BUNDLE and
HTTPLIB2_CA_CERTS, as a user trusts a private CA.

    python bench/scale_cloud.py [--provider gmail|outlook] [--accounts 1 100 1000] [--settle 5]
        [--interview]

Goal (issue 13): 1,000 accounts in <= 256 MiB, every first pass good, no emulator violation.
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import certifi

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from scale import daemon_run  # noqa: E402

GOOGLE_PURPOSE = "google-refresh-token"  # gmail.KEYRING_PURPOSE, without importing a provider
GRAPH_PURPOSE = "msal-cache"  # outlook.CACHE_PURPOSE


# --- the emulator's own process ------------------------------------------------------------


def serve(provider: str, count: int, tmp: Path, interview: bool) -> None:
    """Run one emulator until stdin closes; first print how to reach it, last its verdict."""
    from tests.servers import TestCA

    # Both over TLS, as the real services are (a connection's TLS state is part of what an
    # account costs), with a throwaway CA the daemon is told to trust.
    ca = TestCA.create(tmp)
    cert, key = ca.issue(["127.0.0.1", "localhost"], tmp)
    # The public roots plus the private CA, as a user extends a bundle: a context that loads
    # them costs what a real one does (~0.7 MiB; a one-CA bundle would hide it).
    trust = tmp / "trust.pem"
    trust.write_text(Path(certifi.where()).read_text() + ca.cert_file.read_text())
    if provider == "gmail":
        from tests.emulators.google import GoogleEmulator, interview_event

        google = GoogleEmulator().start()
        assert google.server is not None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        google.server.socket = context.wrap_socket(google.server.socket, server_side=True)
        url = f"https://127.0.0.1:{google.server.server_address[1]}"
        if interview:
            google.add_event(interview_event("iv1", datetime.now(UTC) - timedelta(hours=4),
                                             google.address))
        # Gmail and Calendar are two hosts (gmail.googleapis.com, www.googleapis.com): each
        # account holds a connection to each.
        calendar = url.replace("127.0.0.1", "localhost") + "/calendar/v3/"
        reach = {"url": url, "calendar_endpoint": calendar,
                 "client_secrets": str(google.client_secrets(tmp / "client_secret.json")),
                 "address": google.address, "refresh_token": "refresh-1",
                 "ca": str(trust)}
        print(json.dumps(reach), flush=True)
        sys.stdin.read()
        google.stop()
        print(json.dumps({"violations": google.violations[:3] + [len(google.violations)],
                          "token_requests": google.token_requests,
                          "drafts": len(google.drafts)}), flush=True)
        return
    from tests.emulators.graph import TENANT, GraphEmulator

    os.environ["REQUESTS_CA_BUNDLE"] = str(trust)
    graph = GraphEmulator().start(tls=(str(cert), str(key)))
    if interview:
        start = datetime.now(UTC) - timedelta(hours=4)
        graph.add_event(
            "Interview: Staff Engineer at Fabrikam", start, start + timedelta(hours=1),
            organizer=("maria@fabrikam.example", "Maria Chen"),
            attendees=[("maria@fabrikam.example", "Maria Chen", "required", "accepted"),
                       ("raj@fabrikam.example", "Raj Patel", "required", "accepted")],
        )
    # One real device-code sign-in; every account gets a copy of its cache with a refresh
    # token of its own (Graph's rotate) and no access token, so each refreshes once.
    import msal
    from mailbridge_providers import outlook

    cache = msal.SerializableTokenCache()
    app = msal.PublicClientApplication(graph.client_id, authority=f"{graph.url}/{TENANT}",
                                       token_cache=cache, instance_discovery=False)
    flow = app.initiate_device_flow(scopes=list(outlook.SCOPES))
    assert "access_token" in app.acquire_token_by_device_flow(flow)
    with graph.lock:
        graph._refresh.update(f"rt-{n}" for n in range(count))
    reach = {"url": graph.url, "graph_url": graph.graph_url, "client_id": graph.client_id,
             "tenant": TENANT, "address": graph.user, "ca": str(trust),
             "cache": cache.serialize()}
    print(json.dumps(reach), flush=True)
    sys.stdin.read()
    graph.stop()
    print(json.dumps({"violations": graph.violations[:3] + [len(graph.violations)],
                      "token_requests": len(graph.token_requests),
                      "discovery_requests": graph.counts["GET openid-configuration"],
                      "drafts": len(graph.drafts())}), flush=True)


# --- the bench -------------------------------------------------------------------------------


def secret_file(state: Path, account: str, purpose: str, secret: str) -> None:
    """What `mailbridge auth` leaves in the file token store (docs/tokens.md)."""
    folder = state / "tokens"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = folder / f"{account}.{purpose}.plaintext-secret"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(secret)


def graph_cache(template: str, n: int) -> str:
    data = json.loads(template)
    data["AccessToken"] = {}
    for entry in data.get("RefreshToken", {}).values():
        entry["secret"] = f"rt-{n}"
    return json.dumps(data)


def lay_out(root: Path, count: int, provider: str, reach: dict[str, Any]) -> Path:
    """N accounts under ``root`` pointed at the emulator; returns the config path."""
    lines = ["[mailbridge]", 'timezone = "UTC"', 'state_dir = "state"', "",
             "[defaults]", 'poll_interval = "5m"', 'calendar_interval = "15m"',
             'token_store = "file"', ""]
    state = root / "state"
    for n in range(count):
        name = f"a{n}"
        # An address of its own (a plus address of the emulator's user): the ids of the drafts
        # for the one interview they all see are made from it, and they are unique in the ledger.
        user, _, domain = reach["address"].partition("@")
        lines += [f"[accounts.{name}]", f'provider = "{provider}"',
                  f'address = "{user}+{n}@{domain}"', 'name = "Jordan Lee"']
        if provider == "gmail":
            lines += ['calendar = { kind = "google" }', "", f"[accounts.{name}.google]",
                      f'client_secrets = "{reach["client_secrets"]}"',
                      f'api_endpoint = "{reach["url"]}"',
                      f'calendar_endpoint = "{reach["calendar_endpoint"]}"',
                      f'token_uri = "{reach["url"]}/token"']
            secret_file(state, name, GOOGLE_PURPOSE, reach["refresh_token"])
        else:
            lines += ['calendar = { kind = "outlook" }', "", f"[accounts.{name}.outlook]",
                      f'client_id = "{reach["client_id"]}"', f'tenant = "{reach["tenant"]}"',
                      f'authority_url = "{reach["url"]}"', f'graph_url = "{reach["graph_url"]}"']
            secret_file(state, name, GRAPH_PURPOSE, graph_cache(reach["cache"], n))
        lines.append("")
    path = root / "config.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def one(count: int, provider: str, settle: float, verbose: bool, interview: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="mailbridge-scale-cloud-") as tmp:
        root = Path(tmp)
        emulator = subprocess.Popen(
            [sys.executable, __file__, "--serve", provider, "--accounts", str(count),
             "--dir", str(root), *(["--interview"] if interview else [])],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        assert emulator.stdin is not None and emulator.stdout is not None
        try:
            reach = json.loads(emulator.stdout.readline())
            config = lay_out(root, count, provider, reach)
            names = [f"a{n}" for n in range(count)]
            env = dict(os.environ)
            # How a user trusts a private CA: requests (Graph, msal) and httplib2 (Google).
            env["REQUESTS_CA_BUNDLE"] = env["HTTPLIB2_CA_CERTS"] = reach["ca"]
            with daemon_run(config, root, names, label=f"{provider:>7} {count:>5} accounts",
                            settle=settle, verbose=verbose, env=env) as run:
                if run is None:
                    return
            emulator.stdin.close()
            verdict = json.loads(emulator.stdout.readline() or "{}")
            violations = verdict.get("violations", [-1])
            print(f"{provider:>7} {count:>5} accounts: {run.figures()}; "
                  f"emulator: {verdict.get('token_requests')} token requests, "
                  + (f"{verdict['discovery_requests']} discovery requests, "
                     if "discovery_requests" in verdict else "")
                  + f"{verdict.get('drafts')} drafts, {violations[-1]} violations"
                  + (f" e.g. {violations[0]}" if len(violations) > 1 else "")
                  + (f"; e.g. {run.errors[0]}" if run.errors else ""), flush=True)
        finally:
            if emulator.poll() is None:
                emulator.kill()
                emulator.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--provider", choices=("gmail", "outlook"), default="gmail")
    parser.add_argument("--accounts", type=int, nargs="+", default=[1, 100, 1000])
    parser.add_argument("--settle", type=float, default=5.0, help="idle seconds before reading")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--interview", action="store_true",
                        help="one past interview that every account drafts for (slow at 1,000: "
                             "they all share the emulator's one mailbox)")
    parser.add_argument("--serve", choices=("gmail", "outlook"), help=argparse.SUPPRESS)
    parser.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, max(args.accounts), args.dir, args.interview)
        return 0
    for count in args.accounts:
        one(count, args.provider, args.settle, args.verbose, args.interview)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
