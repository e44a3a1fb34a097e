"""providers.imap over TLS against a real Dovecot: implicit TLS, STARTTLS, certificate checks
and XOAUTH2, with settings as a user writes them and a throwaway CA trusted via SSL_CERT_FILE."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

import pytest
from mailbridge_providers import imap
from mailbridge_providers.imap import ImapSettings

from mailbridge.adapters import AuthError, ProviderError
from mailbridge.model import DraftKind, DraftMessage, Person, Presence
from mailbridge.settings import AccountSettings
from tests.servers import (
    DOVECOT,
    PASSWORD,
    Dovecot,
    Introspection,
    TestCA,
    TlsDovecot,
    _world_readable_tempdir,
)

pytestmark = pytest.mark.server

Trust = Callable[[TestCA], None]
LEAD = Person("avery.chen@acme.example", "Avery Chen")


def account_for(
    host: str, port: int, user: str, *, security: str, **overrides: Any
) -> AccountSettings:
    """An account as a user would configure it; ``overrides`` replace ImapSettings fields."""
    settings = ImapSettings(
        host=host,
        port=port,
        security=security,
        username=user,
        password_command=f"echo {PASSWORD}",
        timeout=10,
    )
    settings = replace(settings, **overrides)
    return AccountSettings(name="work", provider="imap", address=user, tables={"imap": settings})


def make_draft(user: str) -> DraftMessage:
    msg = EmailMessage()
    message_id = make_msgid(domain="mailbridge.invalid")
    msg["Message-ID"] = message_id
    msg["From"] = f"Jordan Lee <{user}>"
    msg["To"] = f"{LEAD.name} <{LEAD.email}>"
    msg["Subject"] = "Thank you"
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg.set_content("Thank you for your time today.")
    return DraftMessage(
        kind=DraftKind.THANK_YOU,
        message_id=message_id,
        sender=Person(user, "Jordan Lee"),
        to=LEAD,
        subject="Thank you",
        body="Thank you for your time today.",
        raw=bytes(msg),
    )


def drafts_of(server: Dovecot, user: str) -> list[str]:
    """The Message-IDs in the user's Drafts, read by doveadm (not through the adapter)."""
    out = server.doveadm("fetch", "-u", user, "hdr.message-id", "mailbox", "Drafts", "ALL")
    return re.findall(r"<[^>]+>", out)


def logins(server: TlsDovecot, user: str) -> list[str]:
    return [line for line in server.log().splitlines() if f"Login: user=<{user}>" in line]


def password_command_with_marker(marker: Path) -> str:
    """A password_command that leaves a trace when run: the password was about to be sent."""
    return f"sh -c 'touch {marker}; echo {PASSWORD}'"


@pytest.fixture
def trust(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[[TestCA], None]:
    """Make OpenSSL's default trust exactly one CA, as a user with a private CA would."""
    empty = tmp_path / "no-ca-dir"
    empty.mkdir()

    def use(ca: TestCA) -> None:
        monkeypatch.setenv("SSL_CERT_FILE", str(ca.cert_file))
        monkeypatch.setenv("SSL_CERT_DIR", str(empty))

    return use


@pytest.fixture(scope="module")
def stranger_ca() -> Iterator[TestCA]:
    root = _world_readable_tempdir("mailbridge-ca-stranger-")
    yield TestCA.create(root, name="stranger")


@pytest.fixture(scope="module")
def elsewhere(test_ca: TestCA, introspection: Introspection) -> Iterator[TlsDovecot]:
    """A Dovecot whose (trusted) certificate names another host, not localhost."""
    if not Path(DOVECOT).exists():
        pytest.skip("Dovecot is not installed (apt-get install dovecot-imapd)")
    server = TlsDovecot.create_tls(test_ca, introspection.url, names=("mail.elsewhere.example",))
    server.start()
    yield server
    server.stop()


# --- TLS and STARTTLS with a trusted certificate ---------------------------------------


@pytest.mark.parametrize(
    ("security", "host"),
    [("tls", "localhost"), ("tls", "127.0.0.1"), ("starttls", "localhost")],
)
def test_draft_over_verified_tls(tls_dovecot: TlsDovecot, test_ca: TestCA, trust: Trust,
                                 security: str, host: str) -> None:  # fmt: skip
    trust(test_ca)
    user = tls_dovecot.new_user("tls")
    port = tls_dovecot.tls_port if security == "tls" else tls_dovecot.port
    box = imap.open_mailbox(account_for(host, port, user, security=security))
    try:
        draft = make_draft(user)
        provider_id = box.create_draft(draft)
        assert box.observe(provider_id, draft.message_id).presence is Presence.PRESENT
    finally:
        box.close()
    assert drafts_of(tls_dovecot, user) == [draft.message_id]
    # The server saw the password over TLS (a loopback client would count as "secured").
    (line,) = logins(tls_dovecot, user)
    assert "method=PLAIN" in line and ", TLS," in line, line


# --- the certificate is really checked -------------------------------------------------


@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_untrusted_certificate_is_refused_before_the_password(
    tls_dovecot: TlsDovecot, stranger_ca: TestCA, trust: Trust, tmp_path: Path, security: str
) -> None:
    trust(stranger_ca)
    user = tls_dovecot.new_user("untrusted")
    marker = tmp_path / "password-asked"
    port = tls_dovecot.tls_port if security == "tls" else tls_dovecot.port
    account = account_for("localhost", port, user, security=security,
                          password_command=password_command_with_marker(marker))  # fmt: skip
    box = imap.open_mailbox(account)
    with pytest.raises(ProviderError) as caught:
        box.create_draft(make_draft(user))
    message = str(caught.value)
    assert not isinstance(caught.value, AuthError)  # `mailbridge auth` would not help
    assert "'work'" in message and "localhost" in message
    assert "certificate" in message and "not trusted" in message, message
    assert "Traceback" not in message
    assert not marker.exists(), "the password was looked up for an untrusted server"
    assert logins(tls_dovecot, user) == []
    assert drafts_of(tls_dovecot, user) == []


@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_certificate_for_another_host_is_refused(
    elsewhere: TlsDovecot, test_ca: TestCA, trust: Trust, tmp_path: Path, security: str
) -> None:
    trust(test_ca)  # the CA is trusted; only the name is wrong
    user = elsewhere.new_user("misnamed")
    marker = tmp_path / "password-asked"
    port = elsewhere.tls_port if security == "tls" else elsewhere.port
    account = account_for("localhost", port, user, security=security,
                          password_command=password_command_with_marker(marker))  # fmt: skip
    box = imap.open_mailbox(account)
    with pytest.raises(ProviderError) as caught:
        box.create_draft(make_draft(user))
    message = str(caught.value)
    assert "'work'" in message and "certificate" in message
    assert "localhost" in message and "mismatch" in message.lower(), message
    assert not marker.exists()
    assert logins(elsewhere, user) == []
    assert drafts_of(elsewhere, user) == []


def test_starttls_is_never_downgraded(dovecot: Dovecot, tmp_path: Path) -> None:
    """A server (or an attacker in between) that offers no STARTTLS gets no password."""
    user = dovecot.new_user("downgrade")
    marker = tmp_path / "password-asked"
    account = account_for("127.0.0.1", dovecot.port, user, security="starttls",
                          password_command=password_command_with_marker(marker))  # fmt: skip
    with pytest.raises(ProviderError) as caught:
        imap.connect(account)
    assert "'work'" in str(caught.value) and "STARTTLS" in str(caught.value).upper()
    assert not marker.exists()


@pytest.mark.parametrize("host", ["imap.example.org", "192.0.2.10", "10.0.0.5", "[2001:db8::1]"])
def test_plain_to_another_machine_is_refused_before_connecting(
    host: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dialled: list[object] = []

    def no_network(*args: object, **kwargs: object) -> socket.socket:
        dialled.append(args)
        raise AssertionError("a connection was attempted")

    monkeypatch.setattr(socket, "create_connection", no_network)
    marker = tmp_path / "password-asked"
    account = account_for(host, 143, "jordan@example.org", security="plain",
                          password_command=password_command_with_marker(marker))  # fmt: skip
    with pytest.raises(ProviderError, match="plain") as caught:
        imap.open_mailbox(account).create_draft(make_draft("jordan@example.org"))
    assert "'work'" in str(caught.value) and "tls or starttls" in str(caught.value)
    assert dialled == [] and not marker.exists()


# --- XOAUTH2 against Dovecot's oauth2 passdb -------------------------------------------


@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_xoauth2_login_makes_a_draft(
    tls_dovecot: TlsDovecot, test_ca: TestCA, introspection: Introspection, trust: Trust,
    security: str,
) -> None:  # fmt: skip
    trust(test_ca)
    user = f"oauth-{security}@example.org"  # no password anywhere: only the token lets in
    token = introspection.grant(user)
    port = tls_dovecot.tls_port if security == "tls" else tls_dovecot.port
    account = account_for("localhost", port, user, security=security,
                          password_command=None, oauth2_token_command=f"echo {token}")  # fmt: skip
    box = imap.open_mailbox(account)
    try:
        draft = make_draft(user)
        box.create_draft(draft)
    finally:
        box.close()
    assert drafts_of(tls_dovecot, user) == [draft.message_id]
    assert token in introspection.requests  # Dovecot really asked the token endpoint
    (line,) = logins(tls_dovecot, user)
    assert "method=XOAUTH2" in line and ", TLS," in line, line


@pytest.mark.parametrize("whose", ["unknown", "someone-else"])
def test_xoauth2_refused_token_is_an_auth_error(
    tls_dovecot: TlsDovecot, test_ca: TestCA, introspection: Introspection, trust: Trust, whose: str
) -> None:
    trust(test_ca)
    user = f"oauth-refused-{whose}@example.org"
    token = "not-a-token" if whose == "unknown" else introspection.grant("other@example.org")
    account = account_for("localhost", tls_dovecot.tls_port, user, security="tls",
                          password_command=None, oauth2_token_command=f"echo {token}")  # fmt: skip
    box = imap.open_mailbox(account)
    with pytest.raises(AuthError) as caught:
        box.create_draft(make_draft(user))
    message = str(caught.value)
    assert "'work'" in message and "mailbridge auth work" in message, message
    assert token in introspection.requests
    assert logins(tls_dovecot, user) == []


@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_push_over_tls_reports_mail_that_came_as_idle_began(
    tls_dovecot: TlsDovecot, test_ca: TestCA, trust: Trust, security: str
) -> None:
    """Over TLS the EXISTS sent with "+ idling" waits in the TLS layer's buffer, where the
    shared thread's socket does not see it either: it wakes the account all the same, and
    mail while idling still does."""
    from tests.test_imap import mail
    from tests.test_imap_push import Staged

    trust(test_ca)
    user = tls_dovecot.new_user("tlspush")
    port = tls_dovecot.tls_port if security == "tls" else tls_dovecot.port
    account = account_for("localhost", port, user, security=security)
    staged = Staged(lambda: imap.connect(account))
    woken = threading.Semaphore(0)
    sent = tls_dovecot.client(user)
    end = imap.subscribe(account, woken.release, connector=staged.connect)
    box = imap.ImapMailbox(account)
    try:
        cursor: str | None = None
        for n in range(3):
            cursor = box.messages(cursor, datetime.now(UTC) - timedelta(days=30)).cursor
            while woken.acquire(timeout=0):
                pass
            staged.before = lambda n=n: sent.append("INBOX", mail(f"Re: Interview {n}"))
            box.pass_ended()
            assert woken.acquire(timeout=10), f"mail stored as IDLE began ({n}) was missed"
            assert staged.before is None
        time.sleep(0.2)  # idling now
        while woken.acquire(timeout=0):
            pass
        sent.append("INBOX", mail("Re: Interview, idling"))
        assert woken.acquire(timeout=10), "mail while idling was missed"
    finally:
        sent.logout()
        box.close()
        end()
