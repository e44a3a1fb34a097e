"""Secrets never leak: not into the config, logs, stderr, `status`, the audit table, the ledger
file, exception messages or `check`.

Known secrets are planted (an IMAP password in the keyring and from password_command, a CalDAV
password, Google refresh/access tokens and the OAuth client secret, msal's cached tokens), the
real flows run against Dovecot, Radicale and the Google/Graph emulators, including failures
(wrong password, revoked grant, server down, a password_command that fails and prints the
secret), and every output is searched for every secret.
"""

from __future__ import annotations

import json
import logging
import secrets as random
import textwrap
import traceback
import urllib.parse
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import keyring
import pytest

from mailbridge import cli, secrets
from mailbridge.adapters import AuthError
from mailbridge.config import ConfigError, loads
from tests.servers import Dovecot, Radicale


def planted(label: str) -> str:
    # Hex only: safe in Dovecot's passwd-file and in shell commands.
    return f"{label}S3cr3t{random.token_hex(8)}"


class Outputs:
    """Everything a user, a log reader or another process could see, by where it came from."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def add(self, where: str, text: str | bytes) -> None:
        if isinstance(text, bytes):
            text = text.decode("latin-1")
        self.seen.append((where, text))

    def exception(self, where: str, exc: BaseException) -> None:
        self.add(where, str(exc))
        self.add(where + " (repr)", repr(exc))
        self.add(where + " (traceback)", "".join(traceback.format_exception(exc)))

    def state_dir(self, where: str, state_dir: Path) -> None:
        """Every file's bytes (ledger, -wal, -shm, lock) and every row of every table."""
        import sqlite3

        for path in sorted(state_dir.rglob("*")):
            if path.is_file():
                self.add(f"{where}: {path.name} bytes", path.read_bytes())
        db = state_dir / "ledger.sqlite3"
        if db.exists():
            conn = sqlite3.connect(db)
            try:
                query = "SELECT name FROM sqlite_master WHERE type='table'"
                tables = [r[0] for r in conn.execute(query)]
                for table in tables:
                    rows = conn.execute(f"SELECT * FROM {table}").fetchall()  # noqa: S608
                    self.add(f"{where}: table {table}", repr(rows))
            finally:
                conn.close()

    def assert_clean(self, planted: Iterable[str]) -> None:
        forms = {}
        for secret in planted:
            assert secret, "an empty secret would match everything"
            forms[secret] = secret
            forms[urllib.parse.quote(secret, safe="")] = secret
        leaks = [
            f"{where}: contains {forms[form]!r}"
            for where, text in self.seen
            for form in forms
            if form in text
        ]
        assert not leaks, "secrets leaked:\n" + "\n".join(leaks)
        assert self.seen, "nothing was captured: the test proves nothing"


@pytest.fixture
def outputs(caplog: pytest.LogCaptureFixture) -> Iterator[Outputs]:
    # Every logger (ours and the libraries'), at DEBUG, as a user with -v would see it.
    caplog.set_level(logging.DEBUG)
    found = Outputs()
    yield found


def run_cli(capfd: pytest.CaptureFixture[str], outputs: Outputs, *argv: str) -> int:
    try:
        code = cli.main(["-v", *argv])
    finally:
        out, err = capfd.readouterr()
        outputs.add(f"`mailbridge {' '.join(argv)}` stdout", out)
        outputs.add(f"`mailbridge {' '.join(argv)}` stderr", err)
    return code


def collect_logs(caplog: pytest.LogCaptureFixture, outputs: Outputs) -> None:
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    for record in caplog.records:
        outputs.add(f"log {record.name}", formatter.format(record))
        if record.exc_info and record.exc_info[1] is not None:
            outputs.exception(f"log {record.name} exception", record.exc_info[1])
    # The mailbridge logger, once the CLI set it up, writes to stderr (captured by run_cli).
    mailbridge_log = logging.getLogger("mailbridge")
    mailbridge_log.propagate = True


# --- the config never holds a secret -----------------------------------------------------------

LOCAL = """\
[accounts.main]
provider = "local"
address = "me@example.com"
maildir = { path = "Maildir" }
calendar = { kind = "file", path = "cal" }
"""
IMAP = """\
[accounts.main]
provider = "imap"
address = "me@example.com"
calendar = { kind = "ics", url = "https://example.com/cal.ics" }
"""
SECRET_VALUE = "hunter2-planted"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (LOCAL + f'password = "{SECRET_VALUE}"\n', "accounts.main.password"),
        (LOCAL + f'Password = "{SECRET_VALUE}"\n', "accounts.main.Password"),
        (LOCAL + f'PASSWORD = "{SECRET_VALUE}"\n', "accounts.main.PASSWORD"),
        (LOCAL + f'imap-password = "{SECRET_VALUE}"\n', "accounts.main.imap-password"),
        (LOCAL + f'imapPassword = "{SECRET_VALUE}"\n', "accounts.main.imapPassword"),
        (LOCAL + f'"imap password" = "{SECRET_VALUE}"\n', 'accounts.main."imap password"'),
        (LOCAL + f'imappassword = "{SECRET_VALUE}"\n', "accounts.main.imappassword"),
        (LOCAL + f'passwords = ["{SECRET_VALUE}"]\n', "accounts.main.passwords"),
        (LOCAL + f'pwd = "{SECRET_VALUE}"\n', "accounts.main.pwd"),
        (LOCAL + f'pass = "{SECRET_VALUE}"\n', "accounts.main.pass"),
        (LOCAL + f'passphrase = "{SECRET_VALUE}"\n', "accounts.main.passphrase"),
        (LOCAL + f'apiKey = "{SECRET_VALUE}"\n', "accounts.main.apiKey"),
        (LOCAL + f'api-key = "{SECRET_VALUE}"\n', "accounts.main.api-key"),
        (LOCAL + f'accessToken = "{SECRET_VALUE}"\n', "accounts.main.accessToken"),
        (LOCAL + f'refresh-token = "{SECRET_VALUE}"\n', "accounts.main.refresh-token"),
        (LOCAL + f'bearer = "{SECRET_VALUE}"\n', "accounts.main.bearer"),
        (LOCAL + f'credentials = "{SECRET_VALUE}"\n', "accounts.main.credentials"),
        (LOCAL + f'secret_key = "{SECRET_VALUE}"\n', "accounts.main.secret_key"),
        (IMAP + f'imap = {{ host = "imap.example.com", password = "{SECRET_VALUE}" }}\n',
         "accounts.main.imap.password"),
        (IMAP + f'imap.host = "imap.example.com"\nimap.passwd = "{SECRET_VALUE}"\n',
         "accounts.main.imap.passwd"),
        (f'[accounts.g]\nprovider = "gmail"\naddress = "me@example.com"\n'
         f'google = {{ clientSecret = "{SECRET_VALUE}" }}\n', "accounts.g.google.clientSecret"),
        (f'[accounts.o]\nprovider = "outlook"\naddress = "me@example.com"\n'
         f'[accounts.o.outlook]\nclient_id = "x"\nrefresh_token = "{SECRET_VALUE}"\n',
         "accounts.o.outlook.refresh_token"),
        (LOCAL.replace('path = "cal" }', f'path = "cal", token = "{SECRET_VALUE}" }}'),
         "accounts.main.calendar.token"),
        (LOCAL + f'notify = {{ channels = ["ntfy"], ntfy_url = "https://ntfy.sh/t", '
         f'ntfy_token = "{SECRET_VALUE}" }}\n', "accounts.main.notify.ntfy_token"),
        (f'[defaults]\nsmtp_password = "{SECRET_VALUE}"\n' + LOCAL, "defaults.smtp_password"),
        (f'[mailbridge]\nsecret = "{SECRET_VALUE}"\n' + LOCAL, "mailbridge.secret"),
        (f'token = "{SECRET_VALUE}"\n' + LOCAL, "token"),
        (LOCAL + f'[[accounts.main.extra]]\napp_password = "{SECRET_VALUE}"\n',
         "accounts.main.extra.app_password"),
        (LOCAL + f'deep = {{ a = {{ b = [{{ auth = "{SECRET_VALUE}" }}] }} }}\n',
         "accounts.main.deep.a.b.auth"),
        # user:password@ in every place an address can be written, and elsewhere
        (IMAP.replace("https://example.com", f"https://me:{SECRET_VALUE}@example.com"),
         "accounts.main.calendar.url"),
        (IMAP.replace("https://example.com", f"webcal://me:{SECRET_VALUE}@example.com"),
         "accounts.main.calendar.url"),
        (IMAP.replace("https://example.com", f"https://:{SECRET_VALUE}@example.com"),
         "accounts.main.calendar.url"),
        (LOCAL + 'notify = { channels = ["ntfy"], '
         f'ntfy_url = "https://u:{SECRET_VALUE}@ntfy.sh/t" }}\n',
         "accounts.main.notify.ntfy_url"),
        (f'[accounts.g]\nprovider = "gmail"\naddress = "me@example.com"\n'
         f'google = {{ token_uri = "https://c:{SECRET_VALUE}@oauth2.example.com/token" }}\n',
         "accounts.g.google.token_uri"),
        (IMAP.replace("https://example.com", f"ftp://me:{SECRET_VALUE}@example.com"),
         "accounts.main.calendar.url"),
        (LOCAL + f'signature = "see https://me:{SECRET_VALUE}@example.com"\n',
         "accounts.main.signature"),
        (IMAP + f'imap = {{ host = "me:{SECRET_VALUE}@imap.example.com" }}\n',
         "accounts.main.imap.host"),
        (IMAP + f'imap = {{ host = "imaps://me:{SECRET_VALUE}@imap.example.com" }}\n',
         "accounts.main.imap.host"),
    ],
)
def test_config_refuses_secrets_without_repeating_them(text: str, key: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        loads(text, tmp_path / "config.toml")
    assert key in [p.key for p in info.value.problems], str(info.value)
    assert SECRET_VALUE not in str(info.value)
    assert SECRET_VALUE not in repr(info.value.problems)


@pytest.mark.parametrize(
    "text",
    [
        IMAP + 'imap = { host = "imap.example.com", password_command = "pass show mail" }\n',
        IMAP + 'imap = { host = "imap.example.com", oauth2_token_command = "oama access me" }\n',
        '[accounts.g]\nprovider = "gmail"\naddress = "me@example.com"\n'
        'google = { client_secrets = "client.json", token_uri = "https://oauth2.example.com/t" }\n',
        IMAP.replace("https://example.com/cal.ics", "https://example.com/private-abc/basic.ics")
        + 'imap = { host = "imap.example.com" }\n',
    ],
)
def test_where_secrets_come_from_is_allowed(text: str, tmp_path: Path) -> None:
    assert loads(text, tmp_path / "config.toml").accounts


def test_a_user_name_in_a_url_is_refused_with_a_pointer_to_username(tmp_path: Path) -> None:
    text = IMAP.replace("https://example.com", "https://tk_abc123@example.com")
    with pytest.raises(ConfigError) as info:
        loads(text + 'imap = { host = "imap.example.com" }\n', tmp_path / "config.toml")
    assert [p.key for p in info.value.problems] == ["accounts.main.calendar.url"]
    assert "username" in info.value.hint
    assert "tk_abc123" not in str(info.value)


# --- password_command ---------------------------------------------------------------------------


def script(tmp_path: Path, body: str) -> str:
    path = tmp_path / f"cmd{random.token_hex(4)}.sh"
    path.write_text("#!/bin/sh\n" + body, encoding="utf-8")
    return f"sh {path}"


def test_a_failing_password_command_does_not_repeat_what_it_printed(tmp_path: Path) -> None:
    secret = planted("cmd")
    store = tmp_path / "pw"
    store.write_text(secret, encoding="utf-8")
    command = script(
        tmp_path, f"cat {store} >&2\necho 'gpg: decryption failed:' $(cat {store}) >&2\n"
        f"cat {store}\nexit 3\n"
    )
    with pytest.raises(AuthError) as info:
        secrets.run_command(command, what="account 'work'")
    message = str(info.value)
    assert "account 'work'" in message and "status 3" in message
    assert secret not in message and secret not in "".join(traceback.format_exception(info.value))


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("exit 0\n", "printed nothing"),
        ("echo\necho second-line\n", "printed nothing"),
        ("sleep 0\nexit 1\n", "status 1"),
    ],
)
def test_password_command_failures_are_clear(tmp_path: Path, body: str, expected: str) -> None:
    with pytest.raises(AuthError, match=expected):
        secrets.run_command(script(tmp_path, body), what="account 'work'")


def test_password_command_that_cannot_run_names_only_the_error_type() -> None:
    secret = planted("cmd")
    with pytest.raises(AuthError) as info:
        secrets.run_command(f"/nonexistent/{secret} --flag", what="account 'work'")
    assert secret not in str(info.value) and "could not run" in str(info.value)


def test_password_command_first_line_is_the_secret(tmp_path: Path) -> None:
    secret = planted("cmd")
    assert secrets.run_command(script(tmp_path, f"echo {secret}\necho other\n"), what="x") == secret


# --- IMAP + CalDAV: the real loop, and its failures ---------------------------------------------


def caldav_interview(radicale: Radicale, user: str, password: str, me: str) -> datetime:
    import caldav

    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    fmt = "%Y%m%dT%H%M%SZ"
    dav = caldav.DAVClient(url=radicale.url, username=user, password=password)
    dav.principal().make_calendar(name="Personal").save_event(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VEVENT\r\nUID:iv-secret\r\n"
        f"DTSTAMP:{end.strftime(fmt)}\r\nDTSTART:{(end - timedelta(hours=1)).strftime(fmt)}\r\n"
        f"DTEND:{end.strftime(fmt)}\r\nSUMMARY:Northwind Robotics - Technical Interview\r\n"
        "ORGANIZER;CN=Dana Whitfield:mailto:dana@northwind-robotics.com\r\n"
        "ATTENDEE;CN=Dana Whitfield;PARTSTAT=ACCEPTED:mailto:dana@northwind-robotics.com\r\n"
        f"ATTENDEE;CN=Jordan Lee;PARTSTAT=ACCEPTED:mailto:{me}\r\n"
        "END:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    dav.close()
    return end


@pytest.mark.server
def test_imap_and_caldav_flows_never_show_a_secret(
    dovecot_server: Dovecot,
    radicale: Radicale,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    outputs: Outputs,
) -> None:
    from mailbridge_providers import imap as imap_provider

    imap_pw, cal_pw, wrong_pw, cmd_pw, wrong_cal_pw = (
        planted(x) for x in ("imap", "caldav", "wrong", "cmd", "wrongcal")
    )
    user = dovecot_server.add_user(f"user{random.token_hex(3)}", imap_pw)
    cal_user = radicale.add_user(f"cal{random.token_hex(3)}", cal_pw)
    me = f"{user}@example.org"
    caldav_interview(radicale, cal_user, cal_pw, me)
    cal_file = tmp_path / "cal-pw"
    cal_file.write_text(cal_pw + "\n", encoding="utf-8")
    wrong_cal_file = tmp_path / "wrong-cal-pw"
    wrong_cal_file.write_text(wrong_cal_pw + "\n", encoding="utf-8")
    stored = tmp_path / "cmd-pw"
    failing = script(tmp_path, f"cat {stored} >&2\ncat {stored}\nexit 5\n")
    (tmp_path / "cmd-pw").write_text(cmd_pw, encoding="utf-8")
    config = tmp_path / "config.toml"

    def write_config(imap_extra: str = "", cal_command: str = f"cat {cal_file}") -> None:
        config.write_text(textwrap.dedent(f"""
            [mailbridge]
            timezone = "America/Chicago"
            state_dir = "state"

            [accounts.me]
            provider = "imap"
            address = "{me}"
            name = "Jordan Lee"
            lookback = "3 days"
            [accounts.me.imap]
            host = "127.0.0.1"
            port = {dovecot_server.port}
            security = "plain"
            username = "{user}"
            {imap_extra}

            [accounts.me.calendar]
            kind = "caldav"
            url = "{radicale.url}"
            username = "{cal_user}"
            password_command = "{cal_command}"
            """), encoding="utf-8")  # fmt: skip

    def everything(label: str, *, expect_ok: bool) -> None:
        assert run_cli(capfd, outputs, "--config", str(config), "check") in (0, 1)
        code = run_cli(capfd, outputs, "--config", str(config), "run", "--once")
        assert (code == 0) is expect_ok, (label, outputs.seen[-1])
        assert run_cli(capfd, outputs, "--config", str(config), "status") == 0
        assert run_cli(capfd, outputs, "--config", str(config), "status", "--json") == 0
        json.loads(outputs.seen[-2][1])  # the --json stdout is JSON

    # 1. Everything right: the IMAP password from the keyring, CalDAV's from a command.
    keyring.set_password("mailbridge", "me/imap", imap_pw)
    write_config()
    everything("ok", expect_ok=True)
    state = tmp_path / "state"
    from mailbridge.ledger import Ledger

    with Ledger.open(state) as ledger:
        assert ledger.drafts("me"), "the loop made no draft: the flow did not really run"

    # 2. A wrong IMAP password in the keyring.
    keyring.set_password("mailbridge", "me/imap", wrong_pw)
    everything("wrong password", expect_ok=False)
    dovecot_server.restart()  # forget the failed login (Dovecot delays the next one)

    # 3. A password_command that fails after printing the password to stdout and stderr.
    write_config(imap_extra=f'password_command = "{failing}"')
    everything("failing command", expect_ok=False)

    # 4. A wrong CalDAV password.
    keyring.set_password("mailbridge", "me/imap", imap_pw)
    write_config(cal_command=f"cat {wrong_cal_file}")
    everything("wrong caldav password", expect_ok=False)

    # 5. The mail server is down.
    write_config()
    dovecot_server.kill()
    everything("server down", expect_ok=False)

    # The exceptions themselves, as a caller of the provider would see them.
    from mailbridge import config as config_module

    account = config_module.load(config).accounts[0]
    with pytest.raises(Exception) as down:  # noqa: PT011 - any provider error; checked below
        imap_provider.connect(account)
    outputs.exception("connect, server down", down.value)
    dovecot_server.start()
    keyring.set_password("mailbridge", "me/imap", wrong_pw)
    with pytest.raises(AuthError) as refused:
        imap_provider.connect(account)
    outputs.exception("connect, wrong password", refused.value)

    collect_logs(caplog, outputs)
    outputs.state_dir("state", state)
    outputs.assert_clean([imap_pw, cal_pw, wrong_pw, cmd_pw, wrong_cal_pw])


# --- Google: refresh and access tokens, the client secret ----------------------------------------


def test_gmail_flows_never_show_a_token(
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    outputs: Outputs,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mailbridge_providers import gmail

    from tests.emulators.google import interview_event, running

    real_init = gmail.Api.__init__

    def quick(self: gmail.Api, *args: object, **kwargs: object) -> None:
        kwargs["backoff"] = 0.001  # retries against a stopped server finish at once
        real_init(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(gmail.Api, "__init__", quick)

    me = "jordan.lee@gmail.com"
    refresh = planted("refresh")
    issued: set[str] = set()
    with running(me) as emu:
        emu.refresh_tokens.add(refresh)
        secrets.store("personal", gmail.KEYRING_PURPOSE, refresh)
        client = emu.client_secrets(tmp_path / "client_secret.json")
        start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=4)
        emu.add_event(interview_event("iv1", start, me))
        config = tmp_path / "config.toml"
        config.write_text(textwrap.dedent(f"""
            [mailbridge]
            timezone = "America/Chicago"
            state_dir = "state"
            [accounts.personal]
            provider = "gmail"
            address = "{me}"
            name = "Jordan Lee"
            [accounts.personal.google]
            client_secrets = "{client}"
            api_endpoint = "{emu.url}"
            calendar_endpoint = "{emu.calendar_endpoint}"
            token_uri = "{emu.url}/token"
            auth_uri = "{emu.url}/auth"
            """), encoding="utf-8")  # fmt: skip

        def everything(expect_ok: bool) -> None:
            assert run_cli(capfd, outputs, "--config", str(config), "check") in (0, 1)
            code = run_cli(capfd, outputs, "--config", str(config), "run", "--once")
            assert (code == 0) is expect_ok, outputs.seen[-1]
            issued.update(emu.access_tokens)
            assert run_cli(capfd, outputs, "--config", str(config), "status") == 0
            assert run_cli(capfd, outputs, "--config", str(config), "status", "--json") == 0

        everything(expect_ok=True)
        assert emu.drafts, "no draft was made: the flow did not really run"
        assert issued, "no access token was issued: nothing to look for"
        emu.expire_access_tokens()
        everything(expect_ok=True)  # refreshed with the planted refresh token
        emu.revoke_grant()
        everything(expect_ok=False)
        client_secret = emu.client_secret
        emu.stop()
        secrets.store("personal", gmail.KEYRING_PURPOSE, refresh)
        everything(expect_ok=False)  # the server is down
    collect_logs(caplog, outputs)
    outputs.state_dir("state", tmp_path / "state")
    outputs.assert_clean([refresh, client_secret, *issued])


# --- Microsoft: everything in msal's token cache ------------------------------------------------


def msal_secrets(account: str) -> set[str]:
    cache = json.loads(keyring.get_password("mailbridge", f"{account}/msal-cache") or "{}")
    found = set()
    for section in ("AccessToken", "RefreshToken", "IdToken"):
        for entry in cache.get(section, {}).values():
            found.add(entry["secret"])
    return found


def test_outlook_flows_never_show_a_token(
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    outputs: Outputs,
) -> None:
    from mailbridge_providers import outlook

    from mailbridge.engine import reconcile
    from mailbridge.ledger import Ledger
    from tests.emulators.graph import AUTHORITY, TENANT, GraphEmulator
    from tests.test_outlook import account_for

    emu = GraphEmulator().start()
    tokens: set[str] = set()
    try:
        account = account_for(emu)
        said: list[str] = []
        outputs.add("authenticate", outlook.authenticate(
            account, http_client=emu.http_client(), say=said.append))  # fmt: skip
        outputs.add("authenticate said", "\n".join(said))
        tokens |= msal_secrets("work")
        assert tokens, "no token in the cache: nothing to look for"
        start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=5)
        emu.add_event(
            "Interview: Fabrikam - Staff Engineer", start, start + timedelta(hours=1),
            organizer=("lee@fabrikam.example", "Lee Lead"),
            attendees=[("lee@fabrikam.example", "Lee Lead", "required", "organizer"),
                       (emu.user, emu.user_name, "required", "accepted")],
        )  # fmt: skip
        state = tmp_path / "state"
        ledger = Ledger.open(state)
        retry = outlook.RetryPolicy(base=0.01, cap=0.02, sleep=lambda s: None)

        def run(expect_ok: bool) -> None:
            opts = {"http_client": emu.http_client(), "retry": retry}
            report = reconcile(account, ledger, mailbox=outlook.open_mailbox(account, **opts),
                               calendar=outlook.open_calendar(account, **opts))  # fmt: skip
            outputs.add("reconcile report", repr(report))
            assert (report.error is None) is expect_ok, report.error
            tokens.update(msal_secrets("work"))

        run(expect_ok=True)
        assert emu.drafts(), "no draft was made: the flow did not really run"
        emu.access_token_lifetime = 60  # msal refreshes what expires within 5 minutes
        run(expect_ok=True)
        emu.refresh_mode = "invalid_grant"  # the refresh token was revoked
        for entry in json.loads(keyring.get_password("mailbridge", "work/msal-cache") or "{}").get(
            "AccessToken", {}
        ).values():
            tokens.add(entry["secret"])
        cache = json.loads(keyring.get_password("mailbridge", "work/msal-cache") or "{}")
        cache["AccessToken"] = {}  # force a refresh, which now fails
        keyring.set_password("mailbridge", "work/msal-cache", json.dumps(cache))
        run(expect_ok=False)
        emu.stop()
        emu.refresh_mode = "ok"
        run(expect_ok=False)  # the server is down
        ledger.close()
    finally:
        emu.stop()
    config = tmp_path / "config.toml"
    config.write_text(textwrap.dedent(f"""
        [mailbridge]
        timezone = "America/Chicago"
        state_dir = "state"
        [accounts.work]
        provider = "outlook"
        address = "{account.address}"
        outlook = {{ client_id = "{account.tables.get("outlook").client_id}", tenant = "{TENANT}", authority_url = "{AUTHORITY}", graph_url = "{emu.graph_url}" }}
        """), encoding="utf-8")  # fmt: skip  # noqa: E501
    assert run_cli(capfd, outputs, "--config", str(config), "check") in (0, 1)
    assert run_cli(capfd, outputs, "--config", str(config), "status") == 0
    assert run_cli(capfd, outputs, "--config", str(config), "status", "--json") == 0
    collect_logs(caplog, outputs)
    outputs.state_dir("state", tmp_path / "state")
    outputs.assert_clean(tokens)


# --- token stores (mailbridge.secrets.TokenStore) ---------------------------------------------


def store_of(tmp_path: Path, kind: str) -> secrets.TokenStore:
    from mailbridge.settings import TokenStoreSettings

    vault = tmp_path / "vault"
    vault.mkdir(exist_ok=True)
    return secrets.TokenStore("acct", TokenStoreSettings(
        kind=kind, directory=tmp_path / "state",
        store_command=f"sh -c 'cat > \"$0\"' {vault}/{{account}}-{{purpose}}",
        # Prints nothing when nothing is stored (a user can write theirs the same way).
        lookup_command=f"sh -c 'cat \"$0\" 2>/dev/null || true' {vault}/{{account}}-{{purpose}}",
    ))


@pytest.mark.parametrize("kind", ["command", "file", "keyring"])
def test_every_store_keeps_a_multi_line_secret_exactly(tmp_path: Path, kind: str) -> None:
    store = store_of(tmp_path, kind)
    cache = json.dumps({"AccessToken": {"k": planted("msal")}}, indent=4)  # msal's own format
    assert store.lookup("msal-cache") is None
    store.store("msal-cache", cache)
    assert store.lookup("msal-cache") == cache
    assert store.forget("msal-cache")
    assert store.lookup("msal-cache") is None


def test_the_file_store_is_private_and_plainly_marked(tmp_path: Path) -> None:
    store = store_of(tmp_path, "file")
    store.store("imap", planted("imap"))
    (path,) = (tmp_path / "state" / "tokens").iterdir()
    assert path.name == "acct.imap.plaintext-secret"
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    path.chmod(0o644)
    with pytest.raises(AuthError, match="chmod 600"):
        store.lookup("imap")


def test_a_failing_store_command_never_shows_what_it_printed(tmp_path: Path) -> None:
    from mailbridge.settings import TokenStoreSettings

    secret = planted("cmd")
    store = secrets.TokenStore("acct", TokenStoreSettings(
        kind="command", store_command="sh -c 'cat; exit 4' {purpose}",
        lookup_command=f"sh -c 'echo {secret}; exit 5' {{purpose}}",
    ))
    with pytest.raises(AuthError) as caught:
        store.store("imap", secret)
    assert "status 4" in str(caught.value) and secret not in str(caught.value)
    with pytest.raises(AuthError) as caught:
        store.lookup("imap")
    assert "status 5" in str(caught.value) and secret not in str(caught.value)


def test_the_keyring_store_names_its_backend_and_refuses_a_silent_plaintext_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import keyring.core

    chosen = secrets.keyring_state()  # tests/conftest.py picks the backend explicitly
    assert chosen.problem is None and chosen.name == "keyrings.alt.file.PlaintextKeyring"
    monkeypatch.delenv("PYTHON_KEYRING_BACKEND")
    keyring.core._keyring_backend = None  # type: ignore[attr-defined]
    keyring.core.init_backend()  # what keyring picks on its own here: no Secret Service
    found = secrets.keyring_state()
    assert found.name.startswith("keyrings.alt") and "not a real keyring" in (found.problem or "")
    with pytest.raises(AuthError, match="not a real keyring"):
        secrets.store("acct", "imap", planted("imap"))


@pytest.mark.parametrize(
    ("keys", "told"),
    [
        ('token_store = "vault"', "unknown token_store"),
        ('token_store = "command"\ntoken_command = "pass show mb/{purpose}"',
         "needs token_store_command naming {purpose}"),
        ('token_store = "command"\ntoken_store_command = "pass insert -m mb/x"\n'
         'token_command = "pass show mb/{purpose}"', "needs token_store_command naming {purpose}"),
    ],
)
def test_a_token_store_mistake_is_one_clear_config_problem(
    tmp_path: Path, keys: str, told: str
) -> None:
    text = f"[defaults]\n{keys}\n\n" + LOCAL
    with pytest.raises(ConfigError, match=told.replace("{", r"\{").replace("}", r"\}")):
        loads(text, tmp_path / "config.toml")


def test_the_token_store_is_inherited_from_defaults(tmp_path: Path) -> None:
    settings = loads('[defaults]\ntoken_store = "file"\n\n' + LOCAL, tmp_path / "config.toml")
    (account,) = settings.accounts
    assert account.token_store.kind == "file"
    assert account.token_store.directory == settings.state_dir
