"""The setup guides in docs/ are walked as written, so a guide cannot drift from the code.

Each test reads its guide, takes the config block the guide tells the user to write, points it
at an emulator or a real local server through the keys a user would set (endpoints, host, port,
client id), and runs every ``$ mailbridge ...`` line of the guide's command blocks, in order,
through the real CLI: sign-in, ``check``, ``check --online``, the first pass. The user's part
(a browser that consents, a pasted address, a typed password) is played by the test.

The second half sets up a Gmail and an Outlook account on a machine without a keyring service,
once with each token store (docs/tokens.md), through ``auth``, ``check --online`` and
``run --once``.
"""

from __future__ import annotations

import http.server
import re
import shlex
import stat
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import keyring.core
import pytest

from mailbridge import cli
from tests.emulators.google import GoogleEmulator, interview_event
from tests.emulators.graph import TENANT, GraphEmulator
from tests.servers import PASSWORD, Dovecot, Radicale, TestCA, free_port

DOCS = Path(__file__).resolve().parent.parent / "docs"
WALKED = "<!-- walked by tests/test_setup_guides.py -->"


# --- reading a guide -----------------------------------------------------------------------------


def blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", text, flags=re.S | re.M)


def config_block(text: str) -> str:
    """The config the guide tells the user to write (the marked block, else the first one
    that defines an account)."""
    if WALKED in text:
        return blocks(text.split(WALKED, 1)[1], "toml")[0]
    return next(b for b in blocks(text, "toml") if "[accounts." in b)


def commands(text: str) -> list[list[str]]:
    """Every `$ mailbridge ...` line of the guide's console blocks, as argv after the program."""
    found = []
    for block in blocks(text, "console"):
        for line in block.splitlines():
            if line.startswith("$ mailbridge "):
                found.append(shlex.split(line[2:])[1:])
    assert found, "the guide has no commands to prove it works"
    return found


def test_the_readme_links_every_guide() -> None:
    readme = (DOCS.parent / "README.md").read_text(encoding="utf-8")
    for guide in ("google.md", "microsoft.md", "imap.md", "calendars.md", "tokens.md"):
        assert f"(docs/{guide})" in readme, guide
        text = (DOCS / guide).read_text(encoding="utf-8")
        if guide != "tokens.md":  # a reference page; the others are step lists
            assert re.search(r"^1\. ", text, flags=re.M), f"{guide} has no numbered steps"


# --- the user at the terminal and in the browser -------------------------------------------------


@dataclass
class Terminal:
    """Runs CLI commands in-process; keeps everything printed; plays the user's side."""

    capsys: pytest.CaptureFixture[str]
    config: Path
    transcript: list[str] = field(default_factory=list)
    answers: Callable[[str], str] | None = None
    mark: int = 0  # where the running command's output starts

    def screen(self) -> str:
        out, err = self.capsys.readouterr()
        self.transcript.append(out + err)
        return "".join(self.transcript)

    def run(self, argv: list[str]) -> tuple[int, str]:
        self.mark = len(self.screen())
        code = cli.main(["--config", str(self.config), *argv])
        return code, self.screen()[self.mark:]


def consent_redirect(url: str) -> str:
    """Where Google's consent page sends the browser (not followed: it is another machine)."""

    class Stay(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    try:
        urllib.request.build_opener(Stay).open(url, timeout=10)
    except urllib.error.HTTPError as exc:
        return str(exc.headers["Location"])
    raise AssertionError("the consent page did not redirect")


def google_user(monkeypatch: pytest.MonkeyPatch, term: Terminal, emu: GoogleEmulator) -> None:
    """A browser here (opened by the library), a browser elsewhere (URL read off the screen),
    and the user pasting the address the browser ended on."""

    def printed_url(part: str = "") -> str:
        for _ in range(1000):
            found = re.findall(re.escape(emu.url) + r"/auth\?\S+", term.screen()[term.mark:])
            if found and part in found[-1]:
                return str(found[-1])
            threading.Event().wait(0.01)
        raise AssertionError("no sign-in address was printed")

    class Browser:
        def open(self, url: str, new: int = 0, autoraise: bool = True) -> bool:
            threading.Thread(target=lambda: urllib.request.urlopen(url, timeout=10).read(),
                             daemon=True).start()
            return True

    monkeypatch.setattr("webbrowser.get", lambda using=None: Browser())
    monkeypatch.setattr("builtins.input", lambda prompt="": consent_redirect(printed_url()))
    term.answers = printed_url


def walk(term: Terminal, argv_list: list[list[str]],
         before: Callable[[list[str]], None] | None = None) -> dict[str, str]:
    """Every command of the guide, in order; each must succeed. Output by command."""
    outputs = {}
    for argv in argv_list:
        if before is not None:
            before(argv)
        code, out = term.run(argv)
        assert code == 0, f"`mailbridge {' '.join(argv)}` exited {code}:\n{out}"
        outputs[" ".join(argv)] = out
    return outputs


# --- Google --------------------------------------------------------------------------------------


@pytest.fixture
def google() -> Iterator[GoogleEmulator]:
    emulator = GoogleEmulator().start()
    yield emulator
    emulator.stop()
    assert emulator.violations == []


def google_config(emu: GoogleEmulator, tmp_path: Path, extra: str = "") -> Path:
    text = config_block((DOCS / "google.md").read_text(encoding="utf-8"))
    client = emu.client_secrets(tmp_path / "client_secret.json")
    text = text.replace("you@gmail.com", emu.address).replace(
        "~/.config/mailbridge/client_secret.json", str(client))
    assert text.rstrip().endswith('client_secrets = "' + str(client) + '"')
    # The endpoint keys a user of a private Google-compatible endpoint would set.
    text += (f'api_endpoint = "{emu.url}"\ncalendar_endpoint = "{emu.calendar_endpoint}"\n'
             f'token_uri = "{emu.url}/token"\nauth_uri = "{emu.url}/auth"\n')
    config = tmp_path / "config.toml"
    config.write_text(extra + text, encoding="utf-8")
    return config


def an_interview_for_google(emu: GoogleEmulator) -> None:
    emu.add_event(interview_event("iv1", datetime.now(UTC) - timedelta(hours=4), emu.address))


def test_the_google_guide_walked(
    google: GoogleEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # the emulator is plain http
    term = Terminal(capsys, google_config(google, tmp_path))
    google_user(monkeypatch, term, google)
    an_interview_for_google(google)
    port = free_port()
    forwarded: list[str] = []

    def before(argv: list[str]) -> None:
        if "--port" in argv:  # the browser at the far end of `ssh -L`, on a free port
            argv[argv.index("--port") + 1] = str(port)

            def browser() -> None:
                assert term.answers is not None
                url = term.answers(f"localhost%3A{port}")
                forwarded.append(url)
                urllib.request.urlopen(url, timeout=10).read()

            threading.Thread(target=browser, daemon=True).start()

    argv_list = commands((DOCS / "google.md").read_text(encoding="utf-8"))
    assert ["auth", "personal", "--no-browser"] in argv_list
    outputs = walk(term, argv_list, before)

    assert forwarded and f"localhost%3A{port}" in forwarded[0]
    assert google.refresh_tokens >= {"refresh-2", "refresh-3", "refresh-4"}  # three sign-ins
    online = outputs["check --online"]
    for line in ("sign-in: ok", "calendar primary: ok", "Drafts: ok", "inbox: ok", "Sent: ok"):
        assert line in online
    assert "everything checked is in order" in online
    assert len(google.drafts) == 2  # a thank-you to each interviewer, after the real pass
    assert all(google.messages[m].labels == {"DRAFT"} for m in google.drafts.values())


# --- Microsoft -----------------------------------------------------------------------------------


@pytest.fixture
def graph(test_ca: TestCA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
          ) -> Iterator[GraphEmulator]:
    """The Graph emulator over TLS, trusted the way a user trusts a private CA."""
    cert, key = test_ca.issue(["127.0.0.1"], tmp_path)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(test_ca.cert_file))
    emulator = GraphEmulator().start(tls=(str(cert), str(key)))
    yield emulator
    emulator.stop()
    assert emulator.violations == []
    assert emulator.send_attempts == []


def graph_config(emu: GraphEmulator, tmp_path: Path, extra: str = "") -> Path:
    text = config_block((DOCS / "microsoft.md").read_text(encoding="utf-8"))
    text = (text.replace("you@contoso.com", emu.user)
            .replace("00000000-0000-0000-0000-000000000000", emu.client_id)
            .replace('tenant = "common"', f'tenant = "{TENANT}"'))
    # A national cloud's keys: the sign-in authority and the Graph root.
    text += f'authority_url = "{emu.url}"\ngraph_url = "{emu.graph_url}"\n'
    config = tmp_path / "config.toml"
    config.write_text(extra + text, encoding="utf-8")
    return config


def an_interview_for_graph(emu: GraphEmulator) -> None:
    start = datetime.now(UTC) - timedelta(hours=4)
    emu.add_event(
        "Interview: Staff Engineer at Fabrikam", start, start + timedelta(hours=1),
        organizer=("maria@fabrikam.example", "Maria Chen"),
        attendees=[("maria@fabrikam.example", "Maria Chen", "required", "accepted"),
                   ("raj@fabrikam.example", "Raj Patel", "required", "accepted")],
    )


def test_the_microsoft_guide_walked(
    graph: GraphEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    term = Terminal(capsys, graph_config(graph, tmp_path))
    an_interview_for_graph(graph)
    outputs = walk(term, commands((DOCS / "microsoft.md").read_text(encoding="utf-8")))

    assert "microsoft.com/devicelogin" in outputs["auth work"]
    assert f"signed in to Microsoft 365 as {graph.user}" in outputs["auth work"]
    online = outputs["check --online"]
    for line in ("sign-in: ok", "inbox: ok", "Drafts: ok", "Sent: ok", "calendar: ok"):
        assert line in online
    assert len(graph.drafts()) == 2


# --- IMAP and CalDAV, against Dovecot and Radicale -----------------------------------------------


@pytest.mark.server
def test_the_imap_guide_walked(
    dovecot: Dovecot, radicale: Radicale, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import caldav

    user = dovecot.new_user("guide")
    cal_user = radicale.new_user("guide")
    with caldav.DAVClient(url=radicale.url, username=cal_user, password=PASSWORD) as client:
        client.principal().make_calendar(name="Work")
    text = config_block((DOCS / "imap.md").read_text(encoding="utf-8"))
    text = (text.replace('host = "mail.example.org"', f'host = "{dovecot.host}"')
            .replace("port = 993", f"port = {dovecot.port}")
            .replace('security = "tls"', 'security = "plain"')  # loopback: no certificate here
            .replace('username = "you@example.org"', f'username = "{user}"')
            .replace('url = "https://dav.example.org/", username = "you"',
                     f'url = "{radicale.url}", username = "{cal_user}"'))
    config = tmp_path / "config.toml"
    config.write_text(text, encoding="utf-8")
    asked: list[str] = []

    def typed(prompt: str = "") -> str:  # the user types each app password when asked
        asked.append(prompt)
        return dovecot.users[user] if prompt.startswith("IMAP") else PASSWORD

    monkeypatch.setattr("getpass.getpass", typed)
    term = Terminal(capsys, config)
    outputs = walk(term, commands((DOCS / "imap.md").read_text(encoding="utf-8")))

    assert [p.split()[0] for p in asked] == ["IMAP", "CalDAV"]
    for line in ("sign-in: ok", "inbox: ok: INBOX", "Drafts: ok: Drafts", "Sent: ok: Sent"):
        assert line in outputs["check --online"]
    assert "calendar: ok" in outputs["check --online"]
    assert "everything checked is in order" in outputs["check --online"]


# --- a secret ICS link ---------------------------------------------------------------------------

ICS = """BEGIN:VCALENDAR\r
VERSION:2.0\r
PRODID:-//mailbridge tests//EN\r
BEGIN:VEVENT\r
UID:guide-1@example.org\r
DTSTAMP:20260101T000000Z\r
DTSTART:{start}\r
DTEND:{end}\r
SUMMARY:Interview: Engineer at Initech\r
ORGANIZER;CN=Maria Chen:mailto:maria@initech.example\r
ATTENDEE;CN=Maria Chen;PARTSTAT=ACCEPTED:mailto:maria@initech.example\r
ATTENDEE;CN=You;PARTSTAT=ACCEPTED:mailto:you@example.org\r
END:VEVENT\r
END:VCALENDAR\r
"""


@pytest.fixture
def feed() -> Iterator[str]:
    start = datetime.now(UTC) + timedelta(hours=2)
    body = ICS.format(start=f"{start:%Y%m%dT%H%M%SZ}",
                      end=f"{start + timedelta(hours=1):%Y%m%dT%H%M%SZ}").encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 - the http.server name
            self.send_response(200)
            self.send_header("Content-Type", "text/calendar")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/private-0123456789abcdef/basic.ics"
    server.shutdown()
    server.server_close()


def test_the_calendars_guide_walked(
    feed: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    maildir = tmp_path / "Mail"
    for sub in ("cur", "new", "tmp", ".Drafts/cur", ".Drafts/new", ".Drafts/tmp",
                ".Sent/cur", ".Sent/new", ".Sent/tmp"):
        (maildir / sub).mkdir(parents=True)
    text = config_block((DOCS / "calendars.md").read_text(encoding="utf-8"))
    text = (text.replace('"~/Mail"', f'"{maildir}"')
            .replace("https://calendar.example.org/private-0123456789abcdef/basic.ics", feed))
    config = tmp_path / "config.toml"
    config.write_text(text, encoding="utf-8")
    outputs = walk(Terminal(capsys, config),
                   commands((DOCS / "calendars.md").read_text(encoding="utf-8")))
    assert "calendar: ok: readable (1 event(s) in the next day)" in outputs["check --online"]


# --- each token store, on a machine without a keyring service ------------------------------------


@pytest.fixture
def no_keyring_service(monkeypatch: pytest.MonkeyPatch) -> str:
    """What keyring finds here on its own: no Secret Service, so keyrings.alt's plain file."""
    monkeypatch.delenv("PYTHON_KEYRING_BACKEND", raising=False)
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
    keyring.core._keyring_backend = None  # type: ignore[attr-defined]
    keyring.core.init_backend()
    chosen = type(keyring.get_keyring()).__module__
    assert chosen.startswith("keyrings.alt"), chosen  # the case the product must not use silently
    return chosen


def command_store(tmp_path: Path) -> str:
    """A real program pair that stores and prints a secret (like pass insert / pass show)."""
    vault = tmp_path / "vault"
    vault.mkdir(mode=0o700)
    return ('token_store = "command"\n'
            f"token_store_command = \"sh -c 'cat > \\\"$0\\\"' {vault}/{{account}}.{{purpose}}\"\n"
            f'token_command = "cat {vault}/{{account}}.{{purpose}}"\n')


STORES = ["command", "file", "chosen keyring"]


def defaults_for(store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    head = f'[mailbridge]\nstate_dir = "{tmp_path / "state"}"\n\n[defaults]\n'
    if store == "command":
        return head + command_store(tmp_path) + "\n"
    if store == "file":
        return head + 'token_store = "file"\n\n'
    # The user picks the plain-text backend knowingly, the way keyring documents it.
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyrings.alt.file.PlaintextKeyring")
    keyring.core._keyring_backend = None  # type: ignore[attr-defined]
    keyring.core.init_backend()
    return head + "\n"


def where_it_went(store: str, tmp_path: Path, account: str, purpose: str) -> None:
    if store == "command":
        assert (tmp_path / "vault" / f"{account}.{purpose}").read_text()
    elif store == "file":
        path = tmp_path / "state" / "tokens" / f"{account}.{purpose}.plaintext-secret"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.read_text()
    else:
        assert keyring.get_password("mailbridge", f"{account}/{purpose}")


NAMED = {"command": "the command store (sh", "file": "a plain-text file, mode 0600",
         "chosen keyring": "the keyring (keyrings.alt.file.PlaintextKeyring)"}


@pytest.mark.parametrize("store", STORES)
def test_gmail_with_each_token_store_and_no_keyring_service(
    store: str, no_keyring_service: str, google: GoogleEmulator, tmp_path: Path,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    config = google_config(google, tmp_path, defaults_for(store, tmp_path, monkeypatch))
    term = Terminal(capsys, config)
    google_user(monkeypatch, term, google)
    an_interview_for_google(google)
    outputs = walk(term, [["auth", "personal", "--no-browser"], ["check", "--online"],
                          ["run", "--once"]])
    assert NAMED[store] in outputs["auth personal --no-browser"]
    assert NAMED[store] in outputs["check --online"]
    where_it_went(store, tmp_path, "personal", "google-refresh-token")
    assert len(google.drafts) == 2


@pytest.mark.parametrize("store", STORES)
def test_outlook_with_each_token_store_and_no_keyring_service(
    store: str, no_keyring_service: str, graph: GraphEmulator, tmp_path: Path,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = graph_config(graph, tmp_path, defaults_for(store, tmp_path, monkeypatch))
    term = Terminal(capsys, config)
    an_interview_for_graph(graph)
    outputs = walk(term, [["auth", "work"], ["check", "--online"], ["run", "--once"]])
    assert NAMED[store] in outputs["auth work"] and NAMED[store] in outputs["check --online"]
    where_it_went(store, tmp_path, "work", "msal-cache")
    assert len(graph.drafts()) == 2

    code, out = term.run(["auth", "--revoke", "work"])  # and out again
    assert code == 0 and "account.live.com/consent/Manage" in out and NAMED[store] in out
    code, out = term.run(["check"])
    assert code == 1 and "not signed in to Microsoft" in out


def test_a_plaintext_keyring_is_never_used_silently(
    no_keyring_service: str, google: GoogleEmulator, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    term = Terminal(capsys, google_config(google, tmp_path))
    code, out = term.run(["auth", "personal", "--no-browser"])
    assert code == 2 and "not a real keyring" in out and 'token_store = "command"' in out
    assert google.token_requests == 0  # refused before any sign-in started
    code, out = term.run(["check"])
    assert code == 1 and "not a real keyring" in out and no_keyring_service in out


def test_no_keyring_at_all_is_named_and_explained(
    google: GoogleEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What keyring selects when it finds no backend at all (no keyrings.alt either).
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    keyring.core._keyring_backend = None  # type: ignore[attr-defined]
    keyring.core.init_backend()
    term = Terminal(capsys, google_config(google, tmp_path))
    code, out = term.run(["check"])
    assert code == 1 and "no keyring service on this machine" in out
    code, out = term.run(["auth", "personal"])
    assert code == 2 and "no keyring service" in out and google.token_requests == 0


def test_revoke_forgets_the_sign_in_and_says_where_to_remove_access(
    google: GoogleEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = google_config(google, tmp_path, defaults_for("file", tmp_path, monkeypatch))
    term = Terminal(capsys, config)
    from mailbridge import config as config_module
    from mailbridge import secrets

    account = config_module.load(config).account("personal")
    secrets.store(account, "google-refresh-token", "refresh-1")
    assert secrets.lookup(account, "google-refresh-token") == "refresh-1"
    code, out = term.run(["auth", "--revoke", "personal"])
    assert code == 0 and "myaccount.google.com/connections" in out
    assert secrets.lookup(account, "google-refresh-token") is None
    code, out = term.run(["check"])
    assert code == 1 and "not signed in to Google" in out


@pytest.mark.server
def test_an_imap_mailbox_with_a_google_calendar_signs_in_to_both(
    dovecot: Dovecot, google: GoogleEmulator, tmp_path: Path,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """calendars.md: "With another mailbox, add a google table; auth then signs in to Google"."""
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    user = dovecot.new_user("mixed")
    client = google.client_secrets(tmp_path / "client.json")
    config = tmp_path / "config.toml"
    config.write_text(f"""\
[accounts.mixed]
provider = "imap"
address = "{google.address}"
calendar = {{ kind = "google" }}
imap = {{ host = "{dovecot.host}", port = {dovecot.port}, security = "plain", username = "{user}" }}

[accounts.mixed.google]
client_secrets = "{client}"
calendar_endpoint = "{google.calendar_endpoint}"
api_endpoint = "{google.url}"
token_uri = "{google.url}/token"
auth_uri = "{google.url}/auth"
""", encoding="utf-8")
    monkeypatch.setattr("getpass.getpass", lambda prompt="": dovecot.users[user])
    term = Terminal(capsys, config)
    google_user(monkeypatch, term, google)
    outputs = walk(term, [["auth", "mixed", "--no-browser"], ["check", "--online"]])
    assert "logged in to" in outputs["auth mixed --no-browser"]
    assert "signed in to Google" in outputs["auth mixed --no-browser"]
    online = outputs["check --online"]
    assert "Drafts: ok: Drafts" in online and "calendar primary: ok" in online
