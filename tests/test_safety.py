"""Safety by construction: private state files, TLS beyond loopback, the template sandbox, plain
text drafts, and no code path that can send mail.

Sending, per provider, at the transport level:
- Gmail: tests/test_gmail.py (`emu` fixture fails any test that called a send method;
  test_the_allow_list_refuses_every_send_method, test_allow_list_has_no_method_that_sends).
- Outlook/Graph: tests/test_outlook.py (the emulator records every send-like request;
  test_no_request_ever_sends_and_no_token_asks_for_mail_send).
- IMAP: here, every command on the wire during a whole loop on Dovecot is recorded and checked.
- SMTP: here, no module of mailbridge/ or providers/ can reach smtplib.
"""

from __future__ import annotations

import ast
import os
import re
import socket
import stat
import textwrap
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mailbridge.compose import ComposeError, check_templates, render
from mailbridge.config import ConfigError, loads
from mailbridge.ledger import DB_NAME, LOCK_NAME, Ledger
from mailbridge.model import DraftKind, EventKey, InterviewState, Person
from tests.test_compose import DANA, body_of, make_account, make_interview, parse

ROOT = Path(__file__).resolve().parent.parent


# --- the state directory is private ---------------------------------------------------------


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The loosest umask a user might have: privacy must not depend on it."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_state_dir_and_every_file_in_it_are_private(tmp_path: Path, open_umask: None) -> None:
    state = tmp_path / "deep" / "state"
    now = datetime(2024, 5, 6, tzinfo=UTC)
    ledger = Ledger.open(state)
    ledger.lock()
    with ledger.transaction():
        ledger.upsert_event("a", EventKey("c", "u"), "Interview", now, now, True, "keyword")
        ledger.audit("a", "seen", "an interview", now=now)
    names = {p.name for p in state.iterdir()}
    assert {DB_NAME, DB_NAME + "-wal", DB_NAME + "-shm", LOCK_NAME} <= names
    assert mode(state) == 0o700
    for path in state.iterdir():
        assert mode(path) == 0o600, f"{path.name} is {oct(mode(path))}"
    ledger.close()


def test_loose_permissions_from_before_are_tightened(tmp_path: Path, open_umask: None) -> None:
    state = tmp_path / "state"
    Ledger.open(state).close()
    state.chmod(0o755)
    (state / DB_NAME).chmod(0o644)
    (state / LOCK_NAME).touch(0o666)
    with Ledger.open(state) as ledger:
        ledger.lock()
        assert mode(state) == 0o700
        for path in state.iterdir():
            assert mode(path) == 0o600, f"{path.name} is {oct(mode(path))}"


# --- TLS: plain http only to this computer ------------------------------------------------------

GMAIL = '[accounts.g]\nprovider = "gmail"\naddress = "me@example.com"\n'
OUTLOOK = '[accounts.o]\nprovider = "outlook"\naddress = "me@example.com"\n'
IMAP = (
    '[accounts.i]\nprovider = "imap"\naddress = "me@example.com"\n'
    'imap = { host = "imap.example.com" }\n'
)
LOCAL = (
    '[accounts.l]\nprovider = "local"\naddress = "me@example.com"\n'
    'maildir = { path = "Maildir" }\ncalendar = { kind = "file", path = "cal" }\n'
)
URL_KEYS = [
    (GMAIL + 'google.api_endpoint = "{url}"\n', "accounts.g.google.api_endpoint"),
    (GMAIL + 'google.calendar_endpoint = "{url}"\n', "accounts.g.google.calendar_endpoint"),
    (GMAIL + 'google.token_uri = "{url}"\n', "accounts.g.google.token_uri"),
    (GMAIL + 'google.auth_uri = "{url}"\n', "accounts.g.google.auth_uri"),
    (GMAIL + 'google.batch_uri = "{url}"\n', "accounts.g.google.batch_uri"),
    (OUTLOOK + 'outlook = { client_id = "x", authority_url = "{url}" }\n',
     "accounts.o.outlook.authority_url"),
    (OUTLOOK + 'outlook = { client_id = "x", graph_url = "{url}" }\n',
     "accounts.o.outlook.graph_url"),
    (IMAP + 'calendar = { kind = "ics", url = "{url}" }\n', "accounts.i.calendar.url"),
    (IMAP + 'calendar = { kind = "caldav", url = "{url}" }\n', "accounts.i.calendar.url"),
    (LOCAL + 'notify = { channels = ["ntfy"], ntfy_url = "{url}" }\n',
     "accounts.l.notify.ntfy_url"),
    (LOCAL + 'notify = { channels = ["webhook"], webhook_url = "{url}" }\n',
     "accounts.l.notify.webhook_url"),
]


@pytest.mark.parametrize(("template", "key"), URL_KEYS, ids=[k for _, k in URL_KEYS])
@pytest.mark.parametrize(
    "url", ["http://api.example.com/x", "HTTP://10.0.0.5:8080/", "http://localhost.example.com/"]
)
def test_plain_http_beyond_loopback_is_refused_naming_the_key(
    template: str, key: str, url: str, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError) as info:
        loads(template.replace("{url}", url), tmp_path / "config.toml")
    problems = [p for p in info.value.problems if p.key == key]
    assert problems, str(info.value)
    assert "not encrypted" in problems[0].message and "https://" in problems[0].message
    assert problems[0].hint.startswith(f"write {key.rsplit('.', 1)[1]} = \"https://")


@pytest.mark.parametrize(("template", "key"), URL_KEYS, ids=[k for _, k in URL_KEYS])
@pytest.mark.parametrize(
    "url",
    [
        "https://api.example.com/x",
        "http://127.0.0.1:8080/x",
        "http://localhost:1234/",
        "http://[::1]:9000/",
        "http://cal.localhost/",
    ],
)
def test_https_anywhere_and_http_to_this_computer_are_accepted(
    template: str, key: str, url: str, tmp_path: Path
) -> None:
    (tmp_path / "cal").mkdir()
    (tmp_path / "Maildir").mkdir()
    assert loads(template.replace("{url}", url), tmp_path / "config.toml").accounts


def test_plain_imap_beyond_loopback_is_refused(tmp_path: Path) -> None:
    host = 'host = "imap.example.com"'
    text = IMAP.replace(host, host + ', security = "plain"')
    text += 'calendar = { kind = "file", path = "c" }\n'
    with pytest.raises(ConfigError) as info:
        loads(text, tmp_path / "config.toml")
    assert info.value.key == "accounts.i.imap.security"


def test_every_tls_connection_verifies_certificates() -> None:
    """No module turns certificate checks off."""
    unsafe = re.compile(
        r"verify\s*=\s*False|CERT_NONE|_create_unverified_context|check_hostname\s*=\s*False"
        r"|disable_ssl_certificate_validation\s*=\s*True"
    )
    found = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in source_files()
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if unsafe.search(line)
    ]
    assert found == []


# --- the template sandbox ---------------------------------------------------------------------

OUTSIDE_SECRET = "contents-of-a-file-outside-the-templates-dir"


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    path = tmp_path / "outside.txt"
    path.write_text(OUTSIDE_SECRET, encoding="utf-8")
    return path


ESCAPES = [
    "{{ cycler.__init__.__globals__ }}",
    "{{ joiner.__init__.__globals__['os'] }}",
    "{{ namespace.__init__.__globals__.os.popen('id').read() }}",
    "{{ lipsum.__globals__['os'] }}",
    "{{ range.__self__ }}",
    "{{ dict.__base__.__subclasses__() }}",
    "{{ self.__init__.__globals__ }}",
    "{{ self._TemplateReference__context }}",
    "{{ notes|attr('__class__') }}",
    "{{ (notes|attr('__class__')).__mro__ }}",
    "{{ '{0.__class__}'.format(notes) }}",
    "{{ '{x.__class__.__mro__}'.format_map({'x': notes}) }}",
    "{% for c in ().__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
    "{% set ns = namespace() %}{% set ns.x = ns.__init__ %}{{ ns.x.__globals__ }}",
    "{% import 'os' as os %}{{ os.system('id') }}",
    "{% from 'os' import system %}{{ system('id') }}",
    "{% include '{outside}' %}",
    "{% include '../outside.txt' %}",
    "{% include 'templates/../../outside.txt' %}",
    "{% extends '/etc/passwd' %}",
    "{% extends '{outside}' %}",
    "{{ config }}",
    "{{ request }}",
    "{{ __builtins__ }}",
    "{{ gap.__call__.__self__ }}",
]


@pytest.mark.parametrize("source", ESCAPES)
def test_a_user_template_cannot_escape_the_sandbox(
    tmp_path: Path, outside: Path, source: str
) -> None:
    folder = tmp_path / "templates"
    folder.mkdir()
    path = folder / "thank_you.txt.j2"
    path.write_text(f"Subject: s\n\n{source.replace('{outside}', str(outside))}\n")
    account = make_account(templates_dir=folder)
    with pytest.raises(ComposeError) as info:
        render(DraftKind.THANK_YOU, make_interview(), DANA, account)
    message = str(info.value)
    assert "thank_you.txt.j2" in message, message  # names the template
    for leaked in (OUTSIDE_SECRET, "root:", "uid=", "<module", "<function"):
        assert leaked not in message
    errors = check_templates(folder)  # `mailbridge check` reports it too
    assert errors and all(OUTSIDE_SECRET not in e and "root:" not in e for e in errors)


def test_the_sandbox_still_allows_ordinary_templates(tmp_path: Path) -> None:
    # The same globals and filters used safely: the table above fails for the right reason.
    (tmp_path / "thank_you.txt.j2").write_text(
        "Subject: s\n\n{% set ns = namespace(n=0) %}{% for w in ['a', 'b'] %}"
        "{% set ns.n = ns.n + 1 %}{% endfor %}{{ ns.n }} {{ notes|upper }} {{ range(3)|list }}\n"
    )
    draft = render(DraftKind.THANK_YOU, make_interview(notes="hi"), DANA,
                   make_account(templates_dir=tmp_path))  # fmt: skip
    assert draft.body == "2 HI. [0, 1, 2]\n"  # notes reach templates as sentences


HTML = '<script>alert("x")</script><b onclick="x()">Acme</b> &amp; <a href="https://e.example">'


def test_html_in_event_data_stays_plain_text() -> None:
    interview = make_interview(title=HTML, company=HTML, role=HTML, notes=HTML)
    draft = render(DraftKind.THANK_YOU, interview, Person("dana.lee@acme.example", HTML),
                   make_account())  # fmt: skip
    msg = parse(draft.raw)
    assert not msg.is_multipart()
    assert msg.get_content_type() == "text/plain"
    assert "html" not in draft.raw.decode("ascii").lower().split("\r\n\r\n", 1)[0]
    body = body_of(msg)
    assert HTML in body  # verbatim: neither escaped (&lt;) nor interpreted
    assert "&lt;" not in body
    assert msg["Subject"] is not None and "\n" not in str(msg["Subject"])


# --- no code path can send mail ---------------------------------------------------------------


def source_files() -> list[Path]:
    return sorted(p for top in ("mailbridge", "providers") for p in (ROOT / top).rglob("*.py"))


SENDING_MODULES = {"smtplib", "aiosmtplib", "smtpd", "aiosmtpd", "yagmail", "sendgrid"}


def test_no_module_imports_a_mail_sender() -> None:
    imported: list[str] = []
    for path in source_files():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Call) and getattr(node.func, "id", "") == "__import__":
                names = [a.value for a in node.args if isinstance(a, ast.Constant)
                         and isinstance(a.value, str)]  # fmt: skip
            for name in names:
                if name.split(".")[0] in SENDING_MODULES:
                    imported.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name}")
        text = path.read_text(encoding="utf-8")
        for word in ("smtplib", "SMTP(", "SMTP_SSL(", "import_module(\"smtp", "sendmail("):
            if word in text:
                imported.append(f"{path.relative_to(ROOT)}: mentions {word}")
    assert imported == []
    assert len(source_files()) > 20  # the walk found the code


def test_nothing_loaded_by_the_package_pulls_in_smtplib() -> None:
    """Importing every module (as the daemon does) leaves smtplib unloaded."""
    import subprocess
    import sys

    modules = sorted(
        ".".join(p.relative_to(ROOT).with_suffix("").parts)
        for p in source_files()
        if p.name != "__main__.py"
    )
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        f"{sorted(SENDING_MODULES)!r}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


# --- IMAP: every command on the wire during a whole loop --------------------------------------

# What mailbridge may say to an IMAP server. Nothing here sends, and nothing deletes other than
# the UIDs it names (plain EXPUNGE would remove every \Deleted message, the user's too).
ALLOWED_IMAP = {
    "CAPABILITY", "ID", "LOGIN", "AUTHENTICATE", "ENABLE", "NAMESPACE", "LIST", "LSUB", "XLIST",
    "STATUS", "SELECT", "EXAMINE", "NOOP", "CHECK", "IDLE", "DONE", "SEARCH", "FETCH",
    "UID SEARCH", "UID FETCH", "UID THREAD", "UID SORT", "APPEND", "UID STORE", "UID MOVE",
    "UID COPY", "UID EXPUNGE", "CLOSE", "UNSELECT", "LOGOUT", "STARTTLS", "COMPRESS",
}  # fmt: skip


def imap_commands(stream: bytes) -> list[str]:
    """The command names in what a client sent, skipping literals (APPEND's message)."""
    commands: list[str] = []
    at, continuing = 0, False
    while at < len(stream):
        end = stream.find(b"\r\n", at)
        if end < 0:
            end = len(stream)
        line = stream[at:end]
        at = end + 2
        if not continuing:
            words = line.decode("ascii", "replace").split()
            if words == ["DONE"]:
                commands.append("DONE")
            elif len(words) >= 2:
                name = words[1].upper()
                if name == "UID" and len(words) >= 3:
                    name = "UID " + words[2].upper()
                commands.append(name)
            elif words:
                commands.append("?" + words[0])  # a tagless line that is not DONE
        literal = re.search(rb"\{(\d+)\+?\}$", line)
        if literal:
            at += int(literal.group(1))  # the literal's bytes, then the command goes on
            continuing = True
        else:
            continuing = False
    return commands


@pytest.mark.parametrize(
    ("stream", "expected"),
    [
        (b"A1 LOGIN u p\r\nA2 SELECT INBOX\r\n", ["LOGIN", "SELECT"]),
        (b"A3 APPEND Drafts (\\Draft) {11}\r\nA9 EXPUNGE\r\n\r\nA4 NOOP\r\n", ["APPEND", "NOOP"]),
        (b"A5 uid store 4 +FLAGS (\\Deleted)\r\nA6 IDLE\r\nDONE\r\n",
         ["UID STORE", "IDLE", "DONE"]),
        (b"A7 EXPUNGE\r\nA8 STORE 1:* +FLAGS (\\Deleted)\r\n", ["EXPUNGE", "STORE"]),
    ],
)
def test_reading_commands_off_the_wire(stream: bytes, expected: list[str]) -> None:
    assert imap_commands(stream) == expected


class Wire:
    """Every byte any socket sends to one port, from any thread, per connection."""

    def __init__(self, port: int, monkeypatch: pytest.MonkeyPatch) -> None:
        self.port, self.lock = port, threading.Lock()
        self.sent: dict[int, bytearray] = {}  # by the client's own port: one per connection
        real_sendall, real_send = socket.socket.sendall, socket.socket.send
        wire = self

        def record(sock: socket.socket, data: bytes) -> None:
            try:
                if sock.getpeername()[1] != wire.port:
                    return
                local = int(sock.getsockname()[1])
            except (OSError, IndexError, TypeError):
                return
            with wire.lock:
                wire.sent.setdefault(local, bytearray()).extend(data)

        def sendall(sock: socket.socket, data: bytes, *args: object) -> None:
            record(sock, bytes(data))
            real_sendall(sock, data, *args)  # type: ignore[arg-type]

        def send(sock: socket.socket, data: bytes, *args: object) -> int:
            sent = real_send(sock, data, *args)  # type: ignore[arg-type]
            record(sock, bytes(data)[:sent])
            return sent

        monkeypatch.setattr(socket.socket, "sendall", sendall)
        monkeypatch.setattr(socket.socket, "send", send)


@pytest.mark.server
def test_imap_whole_loop_says_nothing_but_the_allowed_commands(
    dovecot, radicale, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import caldav
    from mailbridge_providers import imap

    from mailbridge import config as config_module
    from mailbridge import engine, timing
    from mailbridge.model import DraftState
    from tests.servers import PASSWORD
    from tests.test_imap import mail

    user = dovecot.new_user()
    cal_user = radicale.new_user()
    lead = "dana.whitfield@northwind-robotics.com"
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=1)
    fmt = "%Y%m%dT%H%M%SZ"
    dav = caldav.DAVClient(url=radicale.url, username=cal_user, password=PASSWORD)
    dav.principal().make_calendar(name="Personal").save_event(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VEVENT\r\nUID:wire1\r\n"
        f"DTSTAMP:{end.strftime(fmt)}\r\nDTSTART:{(end - timedelta(hours=1)).strftime(fmt)}\r\n"
        f"DTEND:{end.strftime(fmt)}\r\nSUMMARY:Northwind Robotics - Technical Interview\r\n"
        f"ORGANIZER;CN=Dana Whitfield:mailto:{lead}\r\n"
        f"ATTENDEE;CN=Dana Whitfield;PARTSTAT=ACCEPTED:mailto:{lead}\r\n"
        f"ATTENDEE;CN=Jordan Lee;PARTSTAT=ACCEPTED:mailto:{user}\r\n"
        "END:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    dav.close()
    config = tmp_path / "config.toml"
    config.write_text(textwrap.dedent(f"""
        [mailbridge]
        timezone = "America/Chicago"
        state_dir = "state"
        [accounts.me]
        provider = "imap"
        address = "{user}"
        name = "Jordan Lee"
        imap = {{ host = "127.0.0.1", port = {dovecot.port}, security = "plain", password_command = "echo {PASSWORD}" }}
        calendar = {{ kind = "caldav", url = "{radicale.url}", username = "{cal_user}", password_command = "echo {PASSWORD}" }}
        """), encoding="utf-8")  # fmt: skip  # noqa: E501
    account = config_module.load(config).accounts[0]
    ledger = Ledger.open(account_state := tmp_path / "state")
    assert account_state.exists()
    wire = Wire(dovecot.port, monkeypatch)
    other = dovecot.client(user)  # the user's own mail program: left out of the record
    other_port = other._imap.sock.getsockname()[1]  # noqa: SLF001

    def run(now: datetime) -> None:
        report = engine.reconcile(account, ledger, now=now)
        assert report.error is None, report.error

    # Push: the IDLE watcher runs through the whole loop.
    stop, woken = threading.Event(), threading.Event()
    watcher = threading.Thread(target=imap.watch, args=(account, woken.set, stop), daemon=True)
    watcher.start()

    run(end + timedelta(hours=2))  # thank-you drafts
    other.select_folder("Drafts")
    uids = other.search(["ALL"])
    assert uids, "no draft was made: the loop did not really run"
    other.move(uids, "Sent")
    run(end + timedelta(hours=3))  # seen as sent
    interview = ledger.interviews()[0]
    assert interview.state is InterviewState.ACTIVE
    due = timing.follow_up_due(interview.end, None, account.policy)
    run(due)  # the follow-up
    thank_you_id = next(d.message_id for d in ledger.drafts("me") if d.recipient.email == lead)
    other.append("INBOX", mail("Re: Thank you", sender=f"Dana Whitfield <{lead}>", to=user,
                               in_reply_to=thank_you_id))  # fmt: skip
    assert woken.wait(10), "IDLE did not report the reply"
    run(due + timedelta(hours=1))  # the follow-up is taken back
    assert any(d.state is DraftState.RETRACTED for d in ledger.drafts("me"))
    stop.set()
    watcher.join(15)
    ledger.close()
    other.logout()

    assert other_port in wire.sent  # the user's connection was seen, and is left out
    ours = [stream for port, stream in wire.sent.items() if port != other_port]
    # The passes borrow the IDLE watcher's connection (a pass before the watcher's start would
    # have had one of its own).
    assert 1 <= len(ours) <= 2
    commands = [c for stream in ours for c in imap_commands(bytes(stream))]
    assert {"LOGIN", "APPEND", "IDLE", "DONE"} <= set(commands), commands
    assert sorted(set(commands) - ALLOWED_IMAP) == [], sorted(set(commands))
