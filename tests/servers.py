"""Real Dovecot (IMAP) and Radicale (CalDAV) servers on 127.0.0.1 with throwaway state.

Used as a pytest plugin (``pytest_plugins = ["tests.servers"]``) and imported by the bench
scripts. Each server runs in its own process group so a test can SIGKILL it mid-command and
start it again on the same port with the same mail (fault injection).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

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
mail_location = maildir:~/Maildir
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
namespace inbox {{
  inbox = yes
  separator = /
  mailbox Drafts {{
    special_use = \\Drafts
    auto = subscribe
  }}
  mailbox Sent {{
    special_use = \\Sent
    auto = subscribe
  }}
  mailbox Trash {{
    special_use = \\Trash
    auto = subscribe
  }}
  mailbox Junk {{
    special_use = \\Junk
    auto = subscribe
  }}
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
    def create(cls, port: int | None = None) -> Dovecot:
        root = _world_readable_tempdir("mailbridge-dovecot-")
        server = cls(dir=root, port=port or free_port())
        for sub in ("run", "state", "mail"):
            (root / sub).mkdir()
        os.chown(root / "mail", MAIL_UID, MAIL_UID)
        server.conf.write_text(
            _DOVECOT_CONF.format(dir=root, port=server.port, uid=MAIL_UID), encoding="utf-8"
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
