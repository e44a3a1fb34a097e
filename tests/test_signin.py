"""Sign-in that works everywhere, and says what to do when it does not.

Every known failure of Google's and Microsoft's identity services is played by the emulators
(tests/emulators: the token endpoint's OAuth error bodies, the consent page's ?error=
redirect) and goes through the real google-auth / google-auth-oauthlib / msal code; each must
come out as the one message the table in mailbridge/signin.py gives it.
"""

from __future__ import annotations

import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from mailbridge_providers import gmail, outlook
from mailbridge_providers.gmail import GoogleSettings
from mailbridge_providers.outlook import OutlookSettings

from mailbridge import secrets, signin
from mailbridge.adapters import AuthError
from mailbridge.settings import AccountSettings, CalendarSettings
from tests.emulators.google import GoogleEmulator
from tests.emulators.graph import AUTHORITY, TENANT, GraphEmulator

# --- the table itself -------------------------------------------------------------------------

# (service, what the identity service said, a phrase the user must be told)
TABLE = [
    ("google", "invalid_grant: Token has been expired or revoked.", "7 days"),
    ("google", "invalid_grant: Token has been expired or revoked.", "publish the app"),
    ("google", "invalid_client: The OAuth client was not found.", "Desktop client JSON again"),
    ("google", "access_denied", "Test users"),
    ("google", "admin_policy_enforced", "administrator"),
    ("google", "org_internal", "organisation"),
    ("google", "redirect_uri_mismatch", "Desktop app"),
    ("google", "Request had insufficient authentication scopes.", "leave every permission"),
    ("google", "HTTP 403 (Gmail API has not been used in project 1234 before or it is disabled.)",
     "APIs & Services > Library"),
    ("microsoft", "invalid_grant: AADSTS65001: The user or administrator has not consented",
     "Grant admin consent"),
    ("microsoft", "invalid_grant: AADSTS90094: The grant requires admin permission.",
     "admin consent"),
    ("microsoft", "invalid_grant: AADSTS53003: Access has been blocked by Conditional Access",
     "Conditional Access"),
    ("microsoft", "invalid_request: AADSTS50020: User account from identity provider does not "
     "exist in tenant", "outlook.tenant"),
    ("microsoft", "invalid_request: AADSTS90072: User account does not exist in tenant",
     "outlook.tenant"),
    ("microsoft", "unauthorized_client: AADSTS700016: Application not found in the directory",
     "outlook.client_id"),
    ("microsoft", "invalid_client: AADSTS7000218: The request body must contain "
     "client_assertion or client_secret", "Allow public client flows"),
    ("microsoft", "invalid_request: AADSTS50194: Application is not configured as a "
     "multi-tenant application", "directory (tenant) ID"),
    ("microsoft", "invalid_request: AADSTS9002346: Application is configured for use by "
     "Microsoft Account users only", '"consumers"'),
    ("microsoft", "invalid_grant: AADSTS70000: The refresh token was revoked.", "run `mailbridge"),
    ("microsoft", "expired_token: AADSTS70019: Verification code expired.", "15 minutes"),
    ("microsoft", "invalid_grant: AADSTS700082: The refresh token has expired due to inactivity",
     "90 days"),
]

SERVICES = {"google": gmail.SIGN_IN, "microsoft": outlook.SIGN_IN}


@pytest.mark.parametrize(("service", "said", "told"), TABLE)
def test_each_known_failure_gets_its_message(service: str, said: str, told: str) -> None:
    message = signin.explain(SERVICES[service], "work", said)
    assert told in message
    assert message.startswith("account 'work': ")
    assert "\n" not in message


def test_an_unknown_failure_keeps_the_services_words_on_one_line() -> None:
    message = signin.explain(outlook.SIGN_IN, "work", "weird_error:\n  AADSTS99999: something new")
    assert "AADSTS99999: something new" in message and "\n" not in message
    assert "`mailbridge auth work`" in message


def test_the_most_specific_entry_wins() -> None:
    # An AADSTS code beats the generic OAuth error around it.
    failure = signin.known(outlook.SIGN_IN, "invalid_grant: AADSTS53003: blocked")
    assert failure is not None and failure.marker == "AADSTS53003"


# --- Google, through the real libraries ----------------------------------------------------------


@pytest.fixture
def google() -> Iterator[GoogleEmulator]:
    emulator = GoogleEmulator().start()
    yield emulator
    emulator.stop()
    assert emulator.violations == []


@pytest.fixture
def http_ok(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # the emulator's token URL is http
    monkeypatch.setattr("webbrowser.get", lambda using=None: pytest.fail("opened a browser"))


def google_account(emu: GoogleEmulator, tmp: Path) -> AccountSettings:
    return AccountSettings(
        name="personal", provider="gmail", address=emu.address,
        calendar=CalendarSettings(kind="google"),
        tables={"google": GoogleSettings(
            client_secrets=str(emu.client_secrets(tmp / "client_secret.json")),
            api_endpoint=emu.url, calendar_endpoint=emu.calendar_endpoint,
            token_uri=emu.url + "/token", auth_uri=emu.url + "/auth",
        )},
    )


def redirected_to(url: str) -> str:
    """Where the consent page sends the browser (the browser itself is on another machine)."""

    class Stay(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    try:
        urllib.request.build_opener(Stay).open(url, timeout=10)
    except urllib.error.HTTPError as exc:
        assert exc.code == 302
        return str(exc.headers["Location"])
    raise AssertionError("the consent page did not redirect")


def printed_url(said: list[str], emu: GoogleEmulator) -> str:
    return next(w for line in said for w in line.split() if w.startswith(emu.url + "/auth?"))


def test_no_browser_prints_the_url_and_takes_the_pasted_address(
    google: GoogleEmulator, tmp_path: Path, http_ok: None
) -> None:
    account = google_account(google, tmp_path)
    said: list[str] = []
    pasted: list[str] = []

    def user(prompt: str) -> str:
        pasted.append(redirected_to(printed_url(said, google)))
        return pasted[-1]

    assert "signed in" in gmail.authenticate(account, no_browser=True, say=said.append, ask=user)
    assert pasted[0].startswith("http://localhost:") and "code=" in pasted[0]
    assert secrets.lookup(account, gmail.KEYRING_PURPOSE) in google.refresh_tokens
    requested = urllib.parse.parse_qs(urllib.parse.urlsplit(printed_url(said, google)).query)
    assert requested["access_type"] == ["offline"]
    assert "gmail.labels" not in requested["scope"][0]


@pytest.mark.parametrize(
    ("paste", "told"),
    [("not an address", "no code="), ("http://localhost:1/?code=x&state=other", "another")],
)
def test_a_wrong_paste_is_one_clear_line(
    google: GoogleEmulator, tmp_path: Path, http_ok: None, paste: str, told: str
) -> None:
    account = google_account(google, tmp_path)
    with pytest.raises(AuthError, match=told):
        gmail.authenticate(account, no_browser=True, say=lambda _: None, ask=lambda _: paste)
    assert secrets.lookup(account, gmail.KEYRING_PURPOSE) is None


def test_a_fixed_port_listens_there_for_ssh_forwarding(
    google: GoogleEmulator, tmp_path: Path, http_ok: None
) -> None:
    from tests.servers import free_port

    account = google_account(google, tmp_path)
    port = free_port()
    said: list[str] = []
    opened: list[str] = []

    def browser() -> None:  # the browser at the far end of `ssh -L PORT:localhost:PORT`
        for _ in range(500):
            if said:
                url = printed_url(said, google)
                opened.append(url)
                urllib.request.urlopen(url, timeout=10).read()
                return
            threading.Event().wait(0.01)

    threading.Thread(target=browser, daemon=True).start()
    assert "signed in" in gmail.authenticate(
        account, no_browser=True, port=port, say=said.append
    )
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(opened[0]).query)
    assert query["redirect_uri"] == [f"http://localhost:{port}/"]
    assert f"port {port}" in said[0]


@pytest.mark.parametrize(
    ("error", "told"),
    [("access_denied", "Test users"), ("admin_policy_enforced", "administrator"),
     ("org_internal", "organisation")],
)
def test_a_refused_consent_says_what_to_do(
    google: GoogleEmulator, tmp_path: Path, http_ok: None, error: str, told: str
) -> None:
    google.sign_in_errors["auth"] = error
    account = google_account(google, tmp_path)
    said: list[str] = []
    with pytest.raises(AuthError, match=told):
        gmail.authenticate(account, no_browser=True, say=said.append,
                           ask=lambda _: redirected_to(printed_url(said, google)))


@pytest.mark.parametrize(
    ("body", "told"),
    [
        ({"error": "invalid_grant", "error_description": "Token has been expired or revoked."},
         "7 days"),
        ({"error": "invalid_client", "error_description": "The OAuth client was not found."},
         "Desktop client JSON again"),
        ({"error": "unauthorized_client", "error_description": "Unauthorized"}, "Desktop app"),
    ],
)
def test_a_refused_refresh_says_what_to_do(
    google: GoogleEmulator, tmp_path: Path, body: dict[str, str], told: str
) -> None:
    account = google_account(google, tmp_path)
    secrets.store(account, gmail.KEYRING_PURPOSE, "refresh-1")
    google.sign_in_errors["token"] = body
    (probe,) = gmail.probe(account)
    assert probe.resource == "sign-in" and not probe.ok
    assert told in probe.detail


def test_a_missing_scope_is_named_for_the_resource_it_blocks(
    google: GoogleEmulator, tmp_path: Path
) -> None:
    account = google_account(google, tmp_path)
    secrets.store(account, gmail.KEYRING_PURPOSE, "refresh-1")
    google.granted = {"https://www.googleapis.com/auth/gmail.readonly"}  # calendar left unticked
    probes = {p.resource: p for p in gmail.probe(account)}
    assert probes["sign-in"].ok and probes["Drafts"].ok and probes["inbox"].ok
    assert not probes["calendar primary"].ok
    assert "leave every permission ticked" in probes["calendar primary"].detail


# --- Microsoft, through msal ----------------------------------------------------------------


@pytest.fixture
def graph() -> Iterator[GraphEmulator]:
    emulator = GraphEmulator().start()
    yield emulator
    emulator.stop()
    assert emulator.violations == []


def outlook_account(emu: GraphEmulator) -> AccountSettings:
    return AccountSettings(
        name="work", provider="outlook", address=emu.user,
        calendar=CalendarSettings(kind="outlook"),
        tables={"outlook": OutlookSettings(client_id=emu.client_id, tenant=TENANT,
                                           authority_url=AUTHORITY, graph_url=emu.graph_url)},
    )


MICROSOFT_SIGN_IN = [
    ("token", "invalid_grant", "AADSTS65001: The user or administrator has not consented to "
     "use the application.", "Grant admin consent"),
    ("token", "invalid_grant", "AADSTS53003: Access has been blocked by Conditional Access "
     "policies.", "Conditional Access"),
    ("token", "invalid_grant", "AADSTS50020: User account 'x@fabrikam.example' from identity "
     "provider does not exist in tenant 'Contoso'.", "outlook.tenant"),
    ("token", "invalid_request", "AADSTS90072: User account does not exist in tenant.",
     "outlook.tenant"),
    ("devicecode", "unauthorized_client", "AADSTS700016: Application with identifier was not "
     "found in the directory.", "outlook.client_id"),
    ("token", "invalid_client", "AADSTS7000218: The request body must contain the following "
     "parameter: 'client_assertion' or 'client_secret'.", "Allow public client flows"),
    ("devicecode", "invalid_request", "AADSTS50194: Application is not configured as a "
     "multi-tenant application.", "directory (tenant) ID"),
    ("token", "expired_token", "AADSTS70019: Verification code expired.", "15 minutes"),
]


@pytest.mark.parametrize(("stage", "error", "description", "told"), MICROSOFT_SIGN_IN)
def test_device_code_failures_say_what_to_do(
    graph: GraphEmulator, stage: str, error: str, description: str, told: str
) -> None:
    graph.sign_in_errors[stage] = {"error": error, "error_description": description}
    account = outlook_account(graph)
    with pytest.raises(AuthError) as caught:
        outlook.authenticate(account, http_client=graph.http_client(), say=lambda _: None)
    assert told in str(caught.value)
    assert secrets.lookup(account, outlook.CACHE_PURPOSE) is None  # nothing half-stored


@pytest.mark.parametrize(
    ("description", "told"),
    [("AADSTS70000: The refresh token was revoked.", "revoked"),
     ("AADSTS700082: The refresh token has expired due to inactivity.", "90 days"),
     ("AADSTS53003: Access has been blocked by Conditional Access policies.",
      "Conditional Access")],
)
def test_refresh_failures_say_what_to_do(graph: GraphEmulator, description: str, told: str) -> None:
    graph.access_token_lifetime = 1  # already stale for msal: the next call refreshes
    account = outlook_account(graph)
    outlook.authenticate(account, http_client=graph.http_client(), say=lambda _: None)
    graph.sign_in_errors["token"] = {"error": "invalid_grant", "error_description": description}
    probes = outlook.probe(account, http_client=graph.http_client())
    assert [p.resource for p in probes] == ["sign-in"] and not probes[0].ok
    assert told in probes[0].detail


def test_a_permission_not_granted_is_named_for_the_resource_it_blocks(
    graph: GraphEmulator,
) -> None:
    graph.withheld_scopes = {"Calendars.Read"}
    account = outlook_account(graph)
    outlook.authenticate(account, http_client=graph.http_client(), say=lambda _: None)
    probes = {p.resource: p for p in outlook.probe(account, http_client=graph.http_client())}
    assert probes["sign-in"].ok and probes["inbox"].ok and probes["Drafts"].ok
    assert not probes["calendar"].ok
    assert "Calendars.Read, Mail.ReadWrite and User.Read" in probes["calendar"].detail
    # The refused read is the point of this test; nothing else may be refused.
    assert graph.violations and all("lacks Calendars.Read" in v for v in graph.violations)
    graph.violations.clear()
