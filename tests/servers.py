"""Real Dovecot (IMAP) and Radicale (CalDAV) servers on 127.0.0.1 with throwaway state.

Used as a pytest plugin (``pytest_plugins = ["tests.servers"]``) and imported by the bench
scripts. Each server runs in its own process group so a test can SIGKILL it mid-command and
start it again on the same port with the same mail (fault injection).
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import itertools
import json
import os
import secrets as secrets_module
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
DOVEADM = shutil.which("doveadm") or "/usr/bin/doveadm"
MAIL_UID = 65534  # nobody: the userdb uid that owns every test mailbox
PASSWORD = "secret"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], what: str, log: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited at start: {_tail(log)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"{what} did not listen on {port}: {_tail(log)}")


def _tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-2000:]
    except OSError:
        return "(no log)"


def _stop_group(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def _world_readable_tempdir(prefix: str) -> Path:
    # pytest's tmp_path is 0700: Dovecot's auth and mail processes (other uids) could not enter it.
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


# --- Dovecot ---------------------------------------------------------------------------


# The mailbox layout every test Dovecot shares: Drafts, Sent, Trash, Junk by SPECIAL-USE.
_NAMESPACE = """\
namespace inbox {
  inbox = yes
  separator = /
  mailbox Drafts {
    special_use = \\Drafts
    auto = subscribe
  }
  mailbox Sent {
    special_use = \\Sent
    auto = subscribe
  }
  mailbox Trash {
    special_use = \\Trash
    auto = subscribe
  }
  mailbox Junk {
    special_use = \\Junk
    auto = subscribe
  }
}
"""

_DOVECOT_CONF = """\
base_dir = {dir}/run
state_dir = {dir}/state
instance_name = mailbridge-test-{port}
log_path = {dir}/dovecot.log
listen = 127.0.0.1
protocols = imap
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
default_login_user = dovenull
default_internal_user = dovecot
first_valid_uid = 1
mail_location = {storage}
imap_idle_notify_interval = 2 mins
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {dir}/users/%u
}}
userdb {{
  driver = static
  args = uid={uid} gid={uid} home={dir}/mail/%u
}}
{namespace}{crowd}"""

# For benches with thousands of connections at once (bench/scale.py): few processes, many
# clients each (every test user has the same uid, so one imap process may serve several),
# instead of one imap process per connection and Dovecot's limit of 100 processes.
_CROWD = """\
default_client_limit = {clients}
default_vsz_limit = 1G
mail_max_userip_connections = 50
service imap {{
  service_count = 0
  client_limit = {per_process}
  process_limit = {processes}
}}
service imap-login {{
  service_count = 0
  client_limit = {clients}
  process_limit = 2
  process_min_avail = 1
}}
"""


@dataclass
class Dovecot:
    """One Dovecot instance: ``start()``, ``kill()`` (SIGKILL, as a crash), ``restart()``."""

    dir: Path
    port: int
    host: str = "127.0.0.1"
    users: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    _counter: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def conf(self) -> Path:
        return self.dir / "dovecot.conf"

    @classmethod
    def create(cls, port: int | None = None, *, clients: int = 0,
               storage: str = "maildir") -> Dovecot:
        """A new server; ``clients`` > 0 tunes it for that many connections at once (for
        benches; the tests keep Dovecot's defaults). ``storage`` is Dovecot's mail format:
        "maildir" (one file per message, in ~/Maildir) or "sdbox" (Dovecot's own indexed
        format, in ~/sdbox)."""
        if storage not in ("maildir", "sdbox"):
            raise ValueError(f"unknown Dovecot storage {storage!r}")
        root = _world_readable_tempdir("mailbridge-dovecot-")
        server = cls(dir=root, port=port or free_port())
        for sub in ("run", "state", "mail"):
            (root / sub).mkdir()
        os.chown(root / "mail", MAIL_UID, MAIL_UID)
        server.conf.write_text(
            _DOVECOT_CONF.format(
                dir=root, port=server.port, uid=MAIL_UID, namespace=_NAMESPACE,
                storage="maildir:~/Maildir" if storage == "maildir" else "sdbox:~/sdbox",
                crowd=_CROWD.format(clients=clients, per_process=100,
                                    processes=max(1, clients // 100 + 1)) if clients else ""),
            encoding="utf-8",
        )
        (root / "users").mkdir()
        server.add_user("jordan@example.org")
        return server

    def start(self) -> None:
        log = self.dir / "dovecot.log"
        self.proc = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(self.conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(self.dir / "dovecot.stderr", "ab"),  # noqa: SIM115 - lives with the server
            start_new_session=True,
        )
        _wait_for_port(self.port, self.proc, "dovecot", log)

    def kill(self) -> None:
        """SIGKILL the whole server (master, login, imap processes): clients see EOF at once."""
        _stop_group(self.proc)
        self.proc = None
        # Processes of the group may linger a moment; wait until the port is free again.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    time.sleep(0.05)
            except OSError:
                return

    def restart(self) -> None:
        self.kill()
        self.start()

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def add_user(self, user: str, password: str = PASSWORD) -> str:
        # One passwd-file per user: Dovecot notices a changed file only by its mtime (seconds),
        # so users added within one second to a shared file would be missed.
        (self.dir / "users" / user).write_text(f"{user}:{{PLAIN}}{password}::::::nopenalty\n")
        self.users[user] = password
        return user

    def new_user(self, stem: str = "user") -> str:
        """A fresh mailbox (unique user) for one test."""
        return self.add_user(f"{stem}{next(self._counter)}-{os.getpid()}@example.org")

    def doveadm(self, *args: str, input: bytes | None = None) -> str:
        done = subprocess.run(
            [DOVEADM, "-c", str(self.conf), *args],
            input=input,
            capture_output=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"doveadm {' '.join(args)} failed ({done.returncode}): "
                f"{done.stderr.decode(errors='replace')}"
            )
        return done.stdout.decode(errors="replace")

    def connection_pids(self, user: str) -> list[str]:
        """The process of each IMAP connection the server has open for ``user`` (``doveadm
        who``; one process per connection outside the benches' crowd settings)."""
        lines = self.doveadm("who", "-1", user).splitlines()[1:]
        return [words[2] for words in map(str.split, lines) if words[:1] == [user]]

    def connections(self, user: str) -> int:
        return len(self.connection_pids(user))

    def kick(self, user: str) -> None:
        """Drop every connection of ``user`` from the server's side, and wait until they are
        gone (``doveadm kick`` only asks)."""
        pids = set(self.connection_pids(user))
        self.doveadm("kick", user)
        deadline = time.monotonic() + 10
        while pids & set(self.connection_pids(user)):
            if time.monotonic() > deadline:
                raise RuntimeError(f"doveadm kick: the connections of {user} are still there")
            time.sleep(0.05)

    def client(self, user: str):  # type: ignore[no-untyped-def]
        """A second, independent IMAP client (the user's mail program, the employer's reply)."""
        from imapclient import IMAPClient

        conn = IMAPClient(self.host, port=self.port, ssl=False, timeout=10)
        conn.login(user, self.users[user])
        return conn


# --- Radicale --------------------------------------------------------------------------


_RADICALE_CONF = """\
[server]
hosts = 127.0.0.1:{port}
[auth]
type = htpasswd
htpasswd_filename = {dir}/users
htpasswd_encryption = plain
delay = 0
[rights]
type = owner_only
[storage]
filesystem_folder = {dir}/collections
[logging]
level = warning
"""


@dataclass
class Radicale:
    dir: Path
    port: int
    host: str = "127.0.0.1"
    users: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    _counter: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    @classmethod
    def create(cls) -> Radicale:
        root = _world_readable_tempdir("mailbridge-radicale-")
        server = cls(dir=root, port=free_port())
        (root / "radicale.conf").write_text(
            _RADICALE_CONF.format(dir=root, port=server.port), encoding="utf-8"
        )
        (root / "users").write_text("", encoding="utf-8")
        return server

    def start(self) -> None:
        log = self.dir / "radicale.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "radicale", "--config", str(self.dir / "radicale.conf")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(log, "ab"),  # noqa: SIM115 - lives with the server
            start_new_session=True,
        )
        _wait_for_port(self.port, self.proc, "radicale", log)

    def stop(self) -> None:
        _stop_group(self.proc)
        self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def add_user(self, user: str, password: str = PASSWORD) -> str:
        with open(self.dir / "users", "a", encoding="utf-8") as fh:
            fh.write(f"{user}:{password}\n")
        self.users[user] = password
        return user

    def new_user(self, stem: str = "cal") -> str:
        return self.add_user(f"{stem}{next(self._counter)}")


# --- pytest fixtures -------------------------------------------------------------------


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    if not os.path.exists(DOVECOT):
        pytest.skip("Dovecot is not installed (apt-get install dovecot-imapd)")
    server = Dovecot.create()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def dovecot_server() -> Iterator[Dovecot]:
    """A Dovecot of the test's own, for tests that kill and restart it."""
    if not os.path.exists(DOVECOT):
        pytest.skip("Dovecot is not installed (apt-get install dovecot-imapd)")
    server = Dovecot.create()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def radicale() -> Iterator[Radicale]:
    try:
        import radicale as _  # noqa: F401
    except ImportError:
        pytest.skip("Radicale is not installed (pip install radicale)")
    server = Radicale.create()
    server.start()
    try:
        yield server
    finally:
        server.stop()


# --- TLS: a throwaway CA, and a Dovecot with implicit TLS, STARTTLS and XOAUTH2 ----------


@dataclass
class TestCA:
    """A certificate authority that exists for one test session: trust it via ``SSL_CERT_FILE``."""

    __test__ = False  # not a pytest test class despite the name

    dir: Path
    name: str
    key: Any
    certificate: Any

    @property
    def cert_file(self) -> Path:
        return self.dir / f"{self.name}-ca.pem"

    @classmethod
    def create(cls, dir: Path, name: str = "mailbridge-test") -> TestCA:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} throwaway CA")])
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True,
                    crl_sign=True, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )  # fmt: skip
        ca = cls(dir=dir, name=name, key=key, certificate=certificate)
        ca.cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        return ca

    def issue(self, names: Sequence[str], dest: Path) -> tuple[Path, Path]:
        """A server certificate for ``names`` (host names or IP addresses): (cert, key) files."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        alt: list[x509.GeneralName] = []
        for name in names:
            try:
                alt.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                alt.append(x509.DNSName(name))
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), False
            )
            .sign(self.key, hashes.SHA256())
        )
        cert_file, key_file = dest / "server.pem", dest / "server.key"
        cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        key_file.chmod(0o600)  # read by the Dovecot master (root) only
        return cert_file, key_file


class Introspection:
    """A tiny OAuth2 token introspection endpoint (RFC 7662) for Dovecot's oauth2 passdb.

    ``tokens`` maps an access token to the user it belongs to; any other token is inactive.
    """

    def __init__(self) -> None:
        import http.server
        import urllib.parse

        self.tokens: dict[str, str] = {}
        self.requests: list[str] = []  # the tokens Dovecot asked about, in order
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                length = int(self.headers.get("Content-Length") or 0)
                form = urllib.parse.parse_qs(self.rfile.read(length).decode())
                token = (form.get("token") or [""])[0]
                owner.requests.append(token)
                user = owner.tokens.get(token)
                answer = {"active": True, "username": user} if user else {"active": False}
                body = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/introspect"
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def grant(self, user: str) -> str:
        """A fresh valid access token for ``user``."""
        token = f"tok-{secrets_module.token_hex(12)}"
        self.tokens[token] = user
        return token

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


_TLS_DOVECOT_CONF = """\
base_dir = {dir}/run
state_dir = {dir}/state
instance_name = mailbridge-tls-{port}
log_path = {dir}/dovecot.log
listen = 127.0.0.1
protocols = imap
ssl = required
ssl_cert = <{cert}
ssl_key = <{key}
ssl_min_protocol = TLSv1.2
auth_mechanisms = plain login xoauth2 oauthbearer
auth_failure_delay = 0
default_login_user = dovenull
default_internal_user = dovecot
first_valid_uid = 1
mail_location = maildir:~/Maildir
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
  # No growing delay after the refused tokens the tests send on purpose.
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
passdb {{
  driver = passwd-file
  mechanisms = plain login
  args = scheme=PLAIN username_format=%u {dir}/users/%u
}}
passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {dir}/dovecot-oauth2.conf.ext
}}
userdb {{
  driver = static
  # oauth2 cannot answer user lookups (doveadm): every user exists here.
  args = uid={uid} gid={uid} home={dir}/mail/%u allow_all_users=yes
}}
{namespace}"""

_OAUTH2_CONF = """\
introspection_mode = post
introspection_url = {url}
force_introspection = yes
username_attribute = username
active_attribute = active
active_value = true
"""


@dataclass
class TlsDovecot(Dovecot):
    """A Dovecot that speaks TLS only: implicit TLS on ``tls_port``, STARTTLS on ``port``.

    Its certificate comes from ``ca`` for ``names``; XOAUTH2/OAUTHBEARER logins are checked
    against ``introspection`` (an oauth2 passdb), passwords against the passwd-file.
    """

    tls_port: int = 0
    ca: TestCA | None = None
    names: tuple[str, ...] = ()

    @classmethod
    def create_tls(
        cls, ca: TestCA, introspection_url: str, names: Sequence[str] = ("localhost", "127.0.0.1")
    ) -> TlsDovecot:
        root = _world_readable_tempdir("mailbridge-dovecot-tls-")
        server = cls(
            dir=root, port=free_port(), host="localhost", tls_port=free_port(), ca=ca,
            names=tuple(names),
        )  # fmt: skip
        for sub in ("run", "state", "mail", "users"):
            (root / sub).mkdir()
        os.chown(root / "mail", MAIL_UID, MAIL_UID)
        cert, key = ca.issue(names, root)
        (root / "dovecot-oauth2.conf.ext").write_text(
            _OAUTH2_CONF.format(url=introspection_url), encoding="utf-8"
        )
        server.conf.write_text(
            _TLS_DOVECOT_CONF.format(
                dir=root, port=server.port, tls_port=server.tls_port, uid=MAIL_UID,
                cert=cert, key=key, namespace=_NAMESPACE,
            ),
            encoding="utf-8",
        )  # fmt: skip
        return server

    def start(self) -> None:
        super().start()
        assert self.proc is not None
        _wait_for_port(self.tls_port, self.proc, "dovecot (imaps)", self.dir / "dovecot.log")

    def log(self) -> str:
        return _tail(self.dir / "dovecot.log")

    def client(self, user: str):  # type: ignore[no-untyped-def]
        """An independent client over implicit TLS that trusts only the test CA."""
        from imapclient import IMAPClient

        assert self.ca is not None
        context = ssl.create_default_context(cafile=str(self.ca.cert_file))
        conn = IMAPClient("127.0.0.1", port=self.tls_port, ssl=True, ssl_context=context,
                          timeout=10)  # fmt: skip
        conn.login(user, self.users[user])
        return conn


@pytest.fixture(scope="session")
def test_ca() -> Iterator[TestCA]:
    root = _world_readable_tempdir("mailbridge-ca-")
    try:
        yield TestCA.create(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def introspection() -> Iterator[Introspection]:
    endpoint = Introspection()
    try:
        yield endpoint
    finally:
        endpoint.stop()


@pytest.fixture(scope="session")
def tls_dovecot(test_ca: TestCA, introspection: Introspection) -> Iterator[TlsDovecot]:
    """A TLS-only Dovecot (certificate for localhost and 127.0.0.1 from ``test_ca``)."""
    if not os.path.exists(DOVECOT):
        pytest.skip("Dovecot is not installed (apt-get install dovecot-imapd)")
    server = TlsDovecot.create_tls(test_ca, introspection.url)
    server.start()
    try:
        yield server
    finally:
        server.stop()
