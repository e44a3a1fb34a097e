"""Crash chaos: the real `mailbridge` process, SIGKILLed at seeded random moments, must end with
exactly the drafts a scripted scenario calls for, on every provider.

What runs
    The real command line (`python -m mailbridge.cli --config ... -v run [--once]`, and `note`)
    as a child process against a real backend: a Maildir and a folder of `.ics` files (local),
    Dovecot and Radicale (imap + caldav, tests/servers.py), the Gmail + Calendar emulator
    (tests/emulators/google.py, reached through google.api_endpoint, calendar_endpoint,
    token_uri and client_secrets in the config) and the Graph emulator
    (tests/emulators/graph.py, through outlook.authority_url and graph_url). msal refuses an
    http authority and needs an injected ``http_client`` to reach the emulator's sign-in
    service, which the plain command line cannot take; for Outlook the child is therefore
    ``python -m tests.chaos graph-child URL -- ARGS``: it wraps ``providers.outlook._app`` so
    that msal gets a session mapping the emulator's https authority onto its loopback URL, then
    calls ``mailbridge.cli.main(ARGS)`` unchanged. That child is what gets killed. Sign-in is
    `mailbridge auth` through the same child (device code; the emulator approves at once), the
    Gmail refresh token is put in the keyring by a child too, so every keyring access uses the
    children's own isolated keyring (keyrings.alt plaintext file under the run's XDG dirs).

How it is killed
    Each launch draws a plan from ``random.Random(f"{seed}:{provider}")``: let it finish (only
    for ``run --once``), kill it after a random delay, or kill it right after its k-th log line
    (``-v`` logs every decision of a pass, so this lands inside a pass, between any two steps)
    plus a few milliseconds of jitter. The kill is SIGKILL to that one process id. The daemon
    form (``mailbridge run``) never exits by itself, so every daemon launch ends in a kill.

Time
    Real time, the process's own clock, and only settings a user could write: thank-you drafts
    due ``thank_you_delay = "0m"`` after an interview ends, ``reminder_after = false``. A
    follow-up can never fall due before the 24-hour thank-you window closes (timing.py clamps
    it), so the scenario *moves* an interview in the calendar to have ended 24 hours minus a
    few seconds ago: its follow-up falls due seconds later, through the same code as a week of
    silence would. ``removal_grace = "0m"``: an event deleted at the source counts as removed at
    once (the grace period itself is tested in tests/test_level.py). An interview that ends a
    few seconds after the start gives thank-yous that the daemon must write at their due time
    (its date job), not at a restart. No libfaketime: moving events is what calendars do
    anyway, and it keeps every moment deterministic in order (a phase starts only once the
    previous one has converged).

The scenario (phases; the world changes only while no mailbridge process runs, so the
outcome does not depend on the kill moments)
    1. A (Northwind, Dana lead + Priya) ended 2 h ago; B (Fabrikam, Lee lead + Omar) ends in
       4 s; C (Tailspin, Ravi) and D (Adatum, Kim) are in the coming days.
    2. The user rewrites Priya's thank-you, deletes Omar's, sends Lee's; `mailbridge note A`.
    3. The user sends Dana's thank-you (with the note); C is cancelled; D moves to "just ended".
    4. A and B move to "ended 24 hours ago": their follow-ups fall due.
    5. The user rewrites the follow-up to Lee.
    6. Dana and Lee reply; `mailbridge note D`.
    End: Drafts hold Priya's thank-you (the user's words), the follow-up to Lee (the user's
    words, flagged in the ledger) and Kim's thank-you (with D's note); Sent holds the thank-yous
    to Dana (with A's note) and Lee; the follow-up to Dana was taken back (in Trash where the
    provider has one); nothing for C; Omar's is never recreated.

What is checked
    After every launch (the process is dead, so this is what a crash leaves): no two drafts to
    one person in Drafts, no Message-ID twice across Drafts/Sent/Trash, no draft the server was
    asked to create twice (Gmail and Graph request logs), no draft in Drafts the ledger does not
    hold as creating/created/edited, and every draft the user edited still there with exactly
    the user's words. At the end of each phase: the ledger rows and states are exactly the
    phase's, every one agrees with where its draft is in the mailbox, and the contents carry
    the notes. At the very end a clean extra pass changes nothing and ``status --json`` agrees.
"""

from __future__ import annotations

import argparse
import contextlib
import email
import email.policy
import email.utils
import json
import os
import random
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PROVIDERS = ("local", "imap", "gmail", "outlook")
USER_NAME = "Jordan Lee"


# --- the scenario's people and interviews ------------------------------------------------------


@dataclass(frozen=True)
class Person:
    name: str
    email: str


DANA = Person("Dana Whitfield", "dana.whitfield@northwind-robotics.com")
PRIYA = Person("Priya Raman", "priya.raman@northwind-robotics.com")
LEE = Person("Lee Okafor", "lee.okafor@fabrikam-logistics.com")
OMAR = Person("Omar Haddad", "omar.haddad@fabrikam-logistics.com")
RAVI = Person("Ravi Menon", "ravi.menon@tailspin-toys.com")
KIM = Person("Kim Novak", "kim.novak@adatum-health.com")

TITLES = {
    "A": "Northwind Robotics - Technical Interview",
    "B": "Fabrikam Logistics - Phone Screen",
    "C": "Tailspin Toys - Onsite Interview",
    "D": "Adatum Health - Hiring Manager Interview",
}
PEOPLE = {"A": (DANA, PRIYA), "B": (LEE, OMAR), "C": (RAVI,), "D": (KIM,)}
NOTE_A = "We talked about their move to ROS 2 on the warehouse robots"
NOTE_D = "We compared notes on FHIR interfaces for the lab systems"
PRIYA_EDIT = "Hi Priya,\n\nThank you for the chat; I wrote this one myself.\n\nJordan\n"
LEE_EDIT = "Hi Lee,\n\nJust checking in on the role; my own words here.\n\nJordan\n"

TY, FU = "thank_you", "follow_up"
Key = tuple[str, str, str]  # (interview letter, draft kind, recipient address)


@dataclass
class Ev:
    uid: str
    title: str
    start: datetime
    end: datetime
    people: tuple[Person, ...]  # the first is the organizer
    cancelled: bool = False


@dataclass(frozen=True)
class Mail:
    key: str  # the backend's handle (Maildir key, IMAP uid, Gmail draft id, Graph id)
    message_id: str
    to: str
    subject: str
    body: str
    raw: bytes = b""


def _norm(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.replace("\r\n", "\n").strip().split("\n"))


def mail_from_bytes(key: str, raw: bytes) -> Mail:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    part = msg.get_body(preferencelist=("plain",))
    body = str(part.get_content()) if part is not None else ""  # type: ignore[attr-defined]
    to = [a for _, a in email.utils.getaddresses(msg.get_all("To", []))]
    return Mail(key, str(msg.get("Message-ID", "") or "").strip(), (to or [""])[0].lower(),
                str(msg.get("Subject", "") or ""), body, raw)


def with_body(raw: bytes, body: str) -> bytes:
    """The message as a mail program saves it after the user rewrote the text."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    msg.set_content(body)
    return msg.as_bytes()


def reply_bytes(sender: Person, to: str, subject: str, in_reply_to: str, body: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = email.utils.formataddr((sender.name, sender.email))
    msg["To"] = to
    msg["Subject"] = subject if subject.lower().startswith("re:") else f"Re: {subject}"
    msg["Date"] = email.utils.formatdate(localtime=False)
    msg["Message-ID"] = email.utils.make_msgid(domain=sender.email.split("@")[1])
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
        msg["References"] = in_reply_to
    msg.set_content(body)
    return msg.as_bytes()


def event_ics(ev: Ev, user: str) -> str:
    fmt = "%Y%m%dT%H%M%SZ"
    organizer = ev.people[0]
    lines = [
        "BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//mailbridge chaos//EN", "BEGIN:VEVENT",
        f"UID:{ev.uid}", f"DTSTAMP:{datetime.now(UTC).strftime(fmt)}",
        f"DTSTART:{ev.start.strftime(fmt)}", f"DTEND:{ev.end.strftime(fmt)}",
        f"SUMMARY:{ev.title}", f"ORGANIZER;CN={organizer.name}:mailto:{organizer.email}",
    ]
    if ev.cancelled:
        lines.append("STATUS:CANCELLED")
    for person in ev.people:
        lines.append(f"ATTENDEE;CN={person.name};PARTSTAT=ACCEPTED:mailto:{person.email}")
    lines += [f"ATTENDEE;CN={USER_NAME};PARTSTAT=ACCEPTED:mailto:{user}",
              "END:VEVENT", "END:VCALENDAR", ""]
    return "\r\n".join(lines)


COMMON_CONFIG = """\
[mailbridge]
timezone = "UTC"
state_dir = "state"

[defaults]
thank_you_delay = "0m"
follow_up_after = "1m"
reminder_after = false
removal_grace = "0m"
poll_interval = "30s"
calendar_interval = "30s"
"""


# --- worlds: one backend each, acted on as the user, the employer and the calendar ------------


class World:
    """One provider's backend, its config, and the user's and the world's actions on it."""

    provider = ""
    account = ""
    has_trash = True

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.config = root / "config.toml"
        self.state_dir = root / "state"
        xdg = root / "xdg"
        self.env = {
            **os.environ,
            "PYTHON_KEYRING_BACKEND": "keyrings.alt.file.PlaintextKeyring",
            "XDG_DATA_HOME": str(xdg / "data"),
            "XDG_CONFIG_HOME": str(xdg / "config"),
            "XDG_STATE_HOME": str(xdg / "state"),
            "PYTHONPATH": os.pathsep.join(
                [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
            ),
        }
        self.env.pop("MAILBRIDGE_CONFIG", None)
        # A kill on the n-th request the service receives (emulated services only): "drop"
        # kills before the request takes effect, "lost" lets it take effect with nobody left to
        # read the answer (the write reached the server, the ledger never heard of it).
        # "answer" kills nothing: the request takes effect and its answer is lost (connection
        # dropped or 503), so the live process must find out what happened before retrying.
        self.hooks = False
        self.requests_seen = 0
        self._trap: tuple[int, str, Callable[[], None]] | None = None
        self._trap_lock = threading.Lock()
        self._answers = 0

    def rng_answer(self) -> str:
        """How an answer is lost: the connection dropped, or a 5xx after the work."""
        self._answers += 1
        return ("drop", "503", "500")[self._answers % 3]

    def arm(self, n: int, how: str, kill: Callable[[], None]) -> None:
        with self._trap_lock:
            self.requests_seen = 0
            self._trap = (n, how, kill)

    def disarm(self) -> int:
        with self._trap_lock:
            self._trap = None
            return self.requests_seen

    def on_request(self) -> str | None:
        """Called by the emulator for each request: "drop", "lost" or None (serve it)."""
        with self._trap_lock:
            self.requests_seen += 1
            if self._trap is None or self.requests_seen < self._trap[0]:
                return None
            _, how, kill = self._trap
            self._trap = None
        if how == "answer":
            return how  # no kill: the request is carried out, its answer lost (see hooks)
        kill()
        time.sleep(0.01)  # let the kernel close the child's sockets before we answer
        return how

    @property
    def user(self) -> str:
        raise NotImplementedError

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "mailbridge.cli", "--config", str(self.config), "-v", *args]

    def prepare(self) -> None:
        """Sign-in and anything else a user does once before the first run."""

    def put_event(self, ev: Ev) -> None:
        raise NotImplementedError

    def folder(self, which: str) -> list[Mail]:
        """"drafts", "sent" or "trash" (empty where the provider has no trash)."""
        raise NotImplementedError

    def user_sends(self, mail: Mail) -> None:
        raise NotImplementedError

    def user_edits(self, mail: Mail, body: str) -> None:
        raise NotImplementedError

    def user_deletes(self, mail: Mail) -> None:
        raise NotImplementedError

    def deliver(self, sender: Person, subject: str, in_reply_to: str, body: str) -> None:
        raise NotImplementedError

    def creates(self) -> Counter[str]:
        """How often the server was asked to create a draft with each Message-ID (when known)."""
        return Counter()

    def problems(self) -> list[str]:
        """Requests the real service would have refused, or any send attempt."""
        return []

    def close(self) -> None:
        pass


class LocalWorld(World):
    provider, account = "local", "me"
    USER = "jordan.lee@example.com"

    def __init__(self, root: Path) -> None:
        import mailbox

        super().__init__(root)
        (root / "calendar").mkdir()
        box = mailbox.Maildir(root / "Maildir", create=True)
        for name in ("Drafts", "Sent", "Trash"):
            box.add_folder(name)
        self.config.write_text(COMMON_CONFIG + textwrap.dedent(f"""
            [accounts.me]
            provider = "local"
            address = "{self.USER}"
            name = "{USER_NAME}"
            calendar = {{ kind = "file", path = "calendar" }}
            maildir = {{ path = "Maildir" }}
            """), encoding="utf-8")

    @property
    def user(self) -> str:
        return self.USER

    def _box(self, which: str) -> Any:
        import mailbox

        name = {"drafts": ".Drafts", "sent": ".Sent", "trash": ".Trash", "inbox": ""}[which]
        return mailbox.Maildir(self.root / "Maildir" / name, factory=None, create=False)

    def put_event(self, ev: Ev) -> None:
        path = self.root / "calendar" / f"{ev.uid}.ics"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(event_ics(ev, self.USER), encoding="utf-8")
        os.replace(tmp, path)  # as a calendar sync tool writes: never half a file

    def folder(self, which: str) -> list[Mail]:
        box = self._box(which)
        out = []
        for key in box.iterkeys():
            with contextlib.suppress(KeyError, FileNotFoundError):
                out.append(mail_from_bytes(key, box.get_bytes(key)))
        return out

    def user_sends(self, mail: Mail) -> None:
        import mailbox

        sent = mailbox.MaildirMessage(mail.raw)
        sent.set_subdir("cur")
        sent.set_flags("S")
        self._box("sent").add(sent)
        self._box("drafts").remove(mail.key)

    def user_edits(self, mail: Mail, body: str) -> None:
        import mailbox

        # As mutt and aerc re-save a postponed message: a new file, the same Message-ID.
        edited = mailbox.MaildirMessage(with_body(mail.raw, body))
        edited.set_subdir("cur")
        edited.set_flags("DS")
        drafts = self._box("drafts")
        drafts.add(edited)
        drafts.remove(mail.key)

    def user_deletes(self, mail: Mail) -> None:
        self._box("drafts").remove(mail.key)

    def deliver(self, sender: Person, subject: str, in_reply_to: str, body: str) -> None:
        self._box("inbox").add(reply_bytes(sender, self.USER, subject, in_reply_to, body))


class ImapWorld(World):
    """Dovecot for mail, Radicale for the calendar (fixtures from tests/servers.py)."""

    provider, account = "imap", "me"

    def __init__(self, root: Path, dovecot: Any, radicale: Any) -> None:
        import caldav

        from tests.servers import PASSWORD

        super().__init__(root)
        self.dovecot, self.radicale, self.password = dovecot, radicale, PASSWORD
        self.mail_user = dovecot.new_user("chaos")
        self.cal_user = radicale.new_user("chaos")
        dav = caldav.DAVClient(url=radicale.url, username=self.cal_user, password=PASSWORD)
        self.calendar_url = str(dav.principal().make_calendar(name="Personal").url)
        dav.close()
        if not self.calendar_url.endswith("/"):
            self.calendar_url += "/"
        self.config.write_text(COMMON_CONFIG + textwrap.dedent(f"""
            [accounts.me]
            provider = "imap"
            address = "{self.mail_user}"
            name = "{USER_NAME}"

            [accounts.me.imap]
            host = "127.0.0.1"
            port = {dovecot.port}
            security = "plain"
            password_command = "echo {PASSWORD}"

            [accounts.me.calendar]
            kind = "caldav"
            url = "{radicale.url}"
            username = "{self.cal_user}"
            password_command = "echo {PASSWORD}"
            """), encoding="utf-8")

    @property
    def user(self) -> str:
        return str(self.mail_user)

    @contextlib.contextmanager
    def _client(self) -> Iterator[Any]:
        client = self.dovecot.client(self.mail_user)
        try:
            yield client
        finally:
            with contextlib.suppress(Exception):
                client.logout()

    def put_event(self, ev: Ev) -> None:
        import requests

        resp = requests.put(
            f"{self.calendar_url}{ev.uid}.ics", data=event_ics(ev, self.user).encode(),
            auth=(self.cal_user, self.password),
            headers={"Content-Type": "text/calendar; charset=utf-8"}, timeout=10,
        )
        resp.raise_for_status()

    def folder(self, which: str) -> list[Mail]:
        name = {"drafts": "Drafts", "sent": "Sent", "trash": "Trash"}[which]
        with self._client() as client:
            client.select_folder(name, readonly=True)
            uids = client.search(["NOT", "DELETED"])
            fetched = client.fetch(uids, ["BODY.PEEK[]"]) if uids else {}
        return [mail_from_bytes(str(uid), bytes(d[b"BODY[]"])) for uid, d in fetched.items()]

    def _remove(self, client: Any, uid: str) -> None:
        client.select_folder("Drafts")
        client.add_flags([int(uid)], [b"\\Deleted"])
        client.uid_expunge([int(uid)])

    def user_sends(self, mail: Mail) -> None:
        with self._client() as client:
            client.append("Sent", mail.raw, flags=[b"\\Seen"])
            self._remove(client, mail.key)

    def user_edits(self, mail: Mail, body: str) -> None:
        with self._client() as client:  # as Thunderbird saves a draft: append anew, drop the old
            client.append("Drafts", with_body(mail.raw, body), flags=[b"\\Draft", b"\\Seen"])
            self._remove(client, mail.key)

    def user_deletes(self, mail: Mail) -> None:
        with self._client() as client:
            self._remove(client, mail.key)

    def deliver(self, sender: Person, subject: str, in_reply_to: str, body: str) -> None:
        with self._client() as client:
            client.append("INBOX", reply_bytes(sender, self.user, subject, in_reply_to, body))


class GmailWorld(World):
    """The Gmail + Calendar emulator, reached through the endpoints in the config."""

    provider, account, has_trash = "gmail", "personal", False
    USER = "jordan.lee@gmail.com"

    def __init__(self, root: Path, emulator: Any = None) -> None:
        from tests.emulators.google import GoogleEmulator

        super().__init__(root)
        self.emu = emulator or GoogleEmulator(self.USER).start()
        self._own = emulator is None
        self.hooks = True
        original = self.emu._handle
        world = self

        def handle(request: Any) -> None:
            how = world.on_request()
            if how == "drop":
                return  # the connection closes unanswered; nothing happened on the server
            if how == "answer":
                world.emu.lose_answer("*", world.rng_answer())
            with contextlib.suppress(OSError):
                original(request)

        self.emu._handle = handle
        if self.emu.server is not None:  # a reset from a killed child is expected, not news
            self.emu.server.handle_error = lambda *_: None
        root.mkdir(parents=True, exist_ok=True)
        secrets_file = self.emu.client_secrets(root / "client_secret.json")
        self.config.write_text(COMMON_CONFIG + textwrap.dedent(f"""
            [accounts.personal]
            provider = "gmail"
            address = "{self.USER}"
            name = "{USER_NAME}"

            [accounts.personal.google]
            client_secrets = "{secrets_file}"
            api_endpoint = "{self.emu.url}"
            calendar_endpoint = "{self.emu.calendar_endpoint}"
            token_uri = "{self.emu.url}/token"
            auth_uri = "{self.emu.url}/auth"
            """), encoding="utf-8")

    @property
    def user(self) -> str:
        return self.USER

    def prepare(self) -> None:
        # What `mailbridge auth` keeps after the browser sign-in: the refresh token.
        token = sorted(self.emu.refresh_tokens)[0]
        script = ("import sys; from mailbridge import secrets; "
                  "from mailbridge_providers import gmail; "
                  "secrets.store(sys.argv[1], gmail.KEYRING_PURPOSE, sys.argv[2])")
        subprocess.run([sys.executable, "-c", script, self.account, token], env=self.env,
                       check=True, timeout=60, capture_output=True)

    def put_event(self, ev: Ev) -> None:
        if ev.cancelled:
            self.emu.cancel_event(ev.uid)
            return
        organizer = ev.people[0]
        self.emu.add_event({
            "id": ev.uid,
            "summary": ev.title,
            "start": {"dateTime": ev.start.isoformat()},
            "end": {"dateTime": ev.end.isoformat()},
            "organizer": {"email": organizer.email, "displayName": organizer.name},
            "attendees": [
                {"email": self.USER, "self": True, "responseStatus": "accepted"},
                *({"email": p.email, "displayName": p.name, "responseStatus": "accepted",
                   **({"organizer": True} if p is organizer else {})} for p in ev.people),
            ],
        })

    def folder(self, which: str) -> list[Mail]:
        with self.emu.lock:
            if which == "drafts":
                # A draft in Trash stays a draft with the TRASH label; it is not in Drafts.
                return [mail_from_bytes(d, self.emu.messages[m].raw)
                        for d, m in self.emu.drafts.items()
                        if "TRASH" not in self.emu.messages[m].labels]
            if which == "sent":
                return [mail_from_bytes(m.id, m.raw) for m in self.emu.messages.values()
                        if "SENT" in m.labels]
            return []

    def user_sends(self, mail: Mail) -> None:
        self.emu.user_sends_draft(mail.key)

    def user_edits(self, mail: Mail, body: str) -> None:
        self.emu.user_edits_draft(mail.key, with_body(mail.raw, body))

    def user_deletes(self, mail: Mail) -> None:
        self.emu.user_deletes_draft(mail.key)

    def deliver(self, sender: Person, subject: str, in_reply_to: str, body: str) -> None:
        self.emu.deliver(reply_bytes(sender, self.USER, subject, in_reply_to, body))

    def creates(self) -> Counter[str]:
        import base64

        found: Counter[str] = Counter()
        with self.emu.lock:
            calls = [c for c in self.emu.calls if c.method_id == "gmail.users.drafts.create"]
        for call in calls:
            raw = ((call.body or {}).get("message") or {}).get("raw", "")
            if call.status and call.status >= 300:
                continue
            found[mail_from_bytes("", base64.urlsafe_b64decode(raw + "==")).message_id] += 1
        return found

    def problems(self) -> list[str]:
        sends = {"gmail.users.drafts.send", "gmail.users.messages.send",
                 "gmail.users.messages.insert", "gmail.users.messages.import"}
        return [*self.emu.violations, *(f"send method called: {m}"
                                        for m in sends & set(self.emu.counts))]

    def close(self) -> None:
        if self._own:
            self.emu.stop()


class GraphWorld(World):
    """The Graph emulator; the child injects msal's http_client (see the module docstring)."""

    provider, account = "outlook", "work"

    def __init__(self, root: Path, emulator: Any = None) -> None:
        from tests.emulators.graph import AUTHORITY, TENANT, GraphEmulator

        super().__init__(root)
        self.emu = emulator or GraphEmulator().start()
        self._own = emulator is None
        self.ids: dict[str, str] = {}
        self._creates: Counter[str] = Counter()
        self._wrap_dispatch()
        root.mkdir(parents=True, exist_ok=True)
        self.config.write_text(COMMON_CONFIG + textwrap.dedent(f"""
            [accounts.work]
            provider = "outlook"
            address = "{self.emu.user}"
            name = "{USER_NAME}"

            [accounts.work.outlook]
            client_id = "{self.emu.client_id}"
            tenant = "{TENANT}"
            authority_url = "{AUTHORITY}"
            graph_url = "{self.emu.graph_url}"
            """), encoding="utf-8")

    def _wrap_dispatch(self) -> None:
        original = self.emu.dispatch
        creates = self._creates

        world = self
        self.hooks = True

        def dispatch(method: str, target: str, headers: dict[str, str], body: bytes) -> Any:
            how = world.on_request()
            if how == "drop":
                return 503, {}, None  # nobody reads it: the child is gone
            if how == "answer":
                world.emu.lose_answer(method, "", world.rng_answer())
            status, out_headers, payload = original(method, target, headers, body)
            path = target.split("?", 1)[0]
            if status < 300 and body and method in ("POST", "PATCH") and "/me/messages" in path:
                with contextlib.suppress(ValueError):
                    sent = json.loads(body)
                    creating = method == "POST" and path.endswith("/me/messages")
                    if isinstance(sent, dict) and "internetMessageId" in sent and (
                        creating or method == "PATCH"
                    ):
                        creates[str(sent["internetMessageId"])] += 1
            return status, out_headers, payload

        self.emu.dispatch = dispatch
        if self.emu._server is not None:  # a reset from a killed child is expected, not news
            self.emu._server.handle_error = lambda *_: None

    @property
    def user(self) -> str:
        return str(self.emu.user)

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "tests.chaos", "graph-child", self.emu.url, "--",
                "--config", str(self.config), "-v", *args]

    def prepare(self) -> None:
        done = subprocess.run(self.command("auth", self.account), env=self.env, timeout=120,
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"sign-in through the child failed: {done.stderr[-2000:]}")

    def put_event(self, ev: Ev) -> None:
        if ev.uid in self.ids:
            self.emu.update_event(self.ids[ev.uid], start=ev.start, end=ev.end,
                                  isCancelled=ev.cancelled)
            return
        organizer = ev.people[0]
        self.ids[ev.uid] = self.emu.add_event(
            ev.title, ev.start, ev.end,
            attendees=[(p.email, p.name, "required", "accepted") for p in ev.people],
            organizer=(organizer.email, organizer.name), is_cancelled=ev.cancelled,
        )

    def folder(self, which: str) -> list[Mail]:
        name = {"drafts": "drafts", "sent": "sentitems", "trash": "deleteditems"}[which]
        out = []
        with self.emu.lock:
            for ident, msg in self.emu.messages.items():
                if msg.folder != name:
                    continue
                data = msg.data
                to = [r["emailAddress"]["address"] for r in data.get("toRecipients") or ()]
                out.append(Mail(ident, str(data.get("internetMessageId") or ""),
                                (to or [""])[0].lower(), str(data.get("subject") or ""),
                                str((data.get("body") or {}).get("content") or "")))
        return out

    def user_sends(self, mail: Mail) -> None:
        self.emu.user_sends(mail.key)

    def user_edits(self, mail: Mail, body: str) -> None:
        self.emu.user_edits(mail.key, body=body)

    def user_deletes(self, mail: Mail) -> None:
        self.emu.user_deletes(mail.key)

    def deliver(self, sender: Person, subject: str, in_reply_to: str, body: str) -> None:
        subject = subject if subject.lower().startswith("re:") else f"RE: {subject}"
        self.emu.deliver(sender.email, subject, body, name=sender.name)

    def creates(self) -> Counter[str]:
        return Counter(self._creates)

    def problems(self) -> list[str]:
        return [*self.emu.violations, *(f"send attempt: {s}" for s in self.emu.send_attempts)]

    def close(self) -> None:
        if self._own:
            self.emu.stop()


# --- launching and killing --------------------------------------------------------------------


@dataclass
class Launch:
    killed: bool
    returncode: int | None
    lines: int
    seconds: float
    tail: str


@dataclass
class Report:
    provider: str
    mode: str
    seed: int
    kills: int = 0
    launches: int = 0
    kills_in_pass: int = 0  # killed after the process had logged a decision
    duplicates: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    touched_changed: list[str] = field(default_factory=list)
    disagreements: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    phases: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not (self.duplicates or self.lost or self.touched_changed or self.disagreements
                    or self.errors)

    def add(self, bucket: list[str], finding: str) -> None:
        if finding not in bucket:
            bucket.append(finding)

    def summary(self) -> str:
        lines = [
            f"{self.provider} ({self.mode}, seed {self.seed}): {self.kills} kills survived "
            f"({self.kills_in_pass} inside a pass) in {self.launches} launches, "
            f"{self.seconds:.0f} s; duplicates {len(self.duplicates)}, lost drafts "
            f"{len(self.lost)}, touched drafts changed {len(self.touched_changed)}, ledger "
            f"disagreements {len(self.disagreements)}, errors {len(self.errors)}",
        ]
        for name in ("duplicates", "lost", "touched_changed", "disagreements", "errors"):
            for finding in getattr(self, name)[:10]:
                lines.append(f"  {name}: {finding}")
        return "\n".join(lines)


class Runner:
    """Starts one mailbridge process at a time and kills it according to a seeded plan."""

    def __init__(self, world: World, rng: random.Random, report: Report) -> None:
        self.world = world
        self.rng = rng
        self.report = report
        self.typical_seconds = 1.5  # a clean `run --once`, learnt as runs finish
        self.typical_lines = 12
        self.typical_requests = 10
        self.verbose = bool(os.environ.get("CHAOS_VERBOSE"))

    def _plan(self, daemon: bool, kill: bool) -> tuple[int | None, str, int | None, float | None]:
        """(kill at request n, "drop"/"lost", kill after k log lines, kill after a delay)."""
        if not kill:
            return None, "", None, None
        rng, hooks = self.rng, self.world.hooks
        choice = rng.random()
        lines = rng.randint(1, 6 if daemon else max(2, self.typical_lines))
        if hooks and choice < 0.5:
            n = rng.randint(1, max(2, self.typical_requests))
            # A daemon that makes fewer requests is killed at its delay instead.
            how = rng.choice(("drop", "lost", "answer"))
            if how == "answer":  # no kill at the request: a lost answer the process survives
                return n, how, None, (rng.uniform(0.5, 3.0) if daemon else None)
            return n, how, None, (4.0 if daemon else None)
        if daemon:
            if choice < (0.75 if hooks else 0.5):
                return None, "", lines, 4.0  # if the lines do not come, kill anyway
            return None, "", None, rng.uniform(0.05, 3.0)
        if choice < (0.65 if hooks else 0.45):
            return None, "", lines, None
        if choice < 0.85:
            # Mostly past the imports, where the pass is.
            return None, "", None, rng.uniform(0.3, 1.1) * self.typical_seconds
        return None, "", None, None  # let it finish: progress, and the typical figures

    def launch(self, args: list[str], *, daemon: bool, kill: bool = True) -> Launch:
        at_request, how, after_lines, delay = self._plan(daemon, kill)
        jitter = self.rng.uniform(0.0, 0.08)
        started = time.monotonic()
        proc = subprocess.Popen(
            self.world.command(*args), env=self.world.env, cwd=self.world.root,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        if at_request is not None:
            self.world.arm(at_request, how, proc.kill)  # Popen.kill: SIGKILL, this pid only
        else:
            self.world.arm(10**9, "", proc.kill)  # only counts the requests
        lines: list[str] = []
        done = threading.Event()

        def read() -> None:
            assert proc.stderr is not None
            for raw in proc.stderr:
                lines.append(raw.decode(errors="replace"))
            done.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        hard_limit = started + 90
        fire = False
        while True:
            now = time.monotonic()
            if proc.poll() is not None:
                break
            if after_lines is not None and len(lines) >= after_lines:
                fire = True
            if delay is not None and now - started >= delay:
                fire = True
            if now > hard_limit:
                self.report.add(self.report.errors,
                                f"`{' '.join(args)}` still running after 90 s; killed")
                fire = True
            if fire:
                if after_lines is not None and len(lines) >= after_lines:
                    time.sleep(jitter)
                break
            time.sleep(0.002)
        if fire and proc.poll() is None:
            proc.kill()  # SIGKILL to this one process
        returncode = proc.wait(timeout=30)
        requests = self.world.disarm()
        done.wait(timeout=10)
        seconds = time.monotonic() - started
        killed = returncode == -9
        self.report.launches += 1
        if killed:
            self.report.kills += 1
            if requests or any(": draft " in line or ": interview " in line
                               or ": mail " in line for line in lines):
                self.report.kills_in_pass += 1
        elif not daemon:
            self.typical_seconds = 0.7 * self.typical_seconds + 0.3 * seconds
            self.typical_lines = max(4, round(0.7 * self.typical_lines + 0.3 * len(lines)))
            self.typical_requests = max(4, round(0.7 * self.typical_requests + 0.3 * requests))
        tail = "".join(lines[-15:])
        if self.verbose:
            plan = (f"at request {at_request} ({how})" if at_request is not None
                    else f"after {after_lines} lines" if after_lines is not None
                    else f"after {delay:.2f} s" if delay is not None else "no kill")
            last = lines[-1].strip()[:100] if lines else ""
            outcome = "KILLED" if killed else f"exit {returncode}"
            print(f"  {' '.join(args[:2])}: plan {plan}; {len(lines)} lines, {seconds:.2f} s, "
                  f"{requests} requests, {outcome}; last: {last}", file=sys.stderr)
        if not killed and returncode != 0:
            self.report.add(self.report.errors,
                            f"`{' '.join(args)}` exited {returncode}: {tail[-1500:]}")
        for line in lines:
            if "Traceback" in line or " ERROR " in line:
                self.report.add(self.report.errors, f"`{' '.join(args)}` logged: {line.strip()}")
        return Launch(killed, returncode, len(lines), seconds, tail)


# --- the scenario ---------------------------------------------------------------------------


@dataclass
class Expect:
    states: dict[Key, str]
    contains: dict[Key, str] = field(default_factory=dict)
    flagged: set[Key] = field(default_factory=set)


class Chaos:
    """Runs the scenario on one world with kills; fills a Report."""

    def __init__(self, world: World, *, kills: int, seed: int, daemon: bool,
                 phase_timeout: float = 60.0) -> None:
        self.world = world
        self.daemon = daemon
        self.report = Report(world.provider, "daemon" if daemon else "run --once", seed)
        self.rng = random.Random(f"{seed}:{world.provider}")
        self.runner = Runner(world, self.rng, self.report)
        self.kills = kills
        self.phase_timeout = phase_timeout
        self.events: dict[str, Ev] = {}
        self.touched: dict[Key, str] = {}  # drafts the user rewrote, and their words
        self.ledger_ids: dict[str, int] = {}

    # --- reading the ledger and the mailbox ---------------------------------------------

    def ledger_rows(self) -> tuple[dict[Key, Any], dict[str, Key], dict[str, str]]:
        """(rows by key, key by Message-ID, notes by interview letter) from the Ledger API."""
        from mailbridge.ledger import Ledger

        letter = {title: k for k, title in TITLES.items()}
        rows: dict[Key, Any] = {}
        by_mid: dict[str, Key] = {}
        notes: dict[str, str] = {}
        if not (self.world.state_dir / "ledger.sqlite3").exists():
            return rows, by_mid, notes
        with Ledger.open(self.world.state_dir) as ledger:
            interviews = {i.id: i for i in ledger.interviews(self.world.account)}
            for iv in interviews.values():
                if iv.title in letter:
                    self.ledger_ids[letter[iv.title]] = iv.id
                    notes[letter[iv.title]] = iv.notes or ""
            for row in ledger.drafts(self.world.account):
                iv = interviews.get(row.interview_id)
                name = letter.get(iv.title, f"?{row.interview_id}") if iv else "?"
                key = (name, row.kind.value, row.recipient.email.lower())
                if key in rows:
                    self.report.add(self.report.duplicates, f"two ledger rows for {key}")
                rows[key] = row
                by_mid[row.message_id] = key
        return rows, by_mid, notes

    def mailbox(self) -> dict[str, list[Mail]]:
        return {which: self.world.folder(which) for which in ("drafts", "sent", "trash")}

    # --- invariants after every launch --------------------------------------------------

    def check_invariants(self, when: str) -> None:
        report = self.report
        rows, by_mid, _ = self.ledger_rows()
        box = self.mailbox()
        per_person = Counter(m.to for m in box["drafts"])
        for person, count in per_person.items():
            if count > 1:
                subjects = [m.subject for m in box["drafts"] if m.to == person]
                report.add(report.duplicates,
                           f"{when}: {count} drafts to {person} in Drafts: {subjects}")
        everywhere = Counter(m.message_id for mails in box.values() for m in mails
                             if m.message_id)
        for mid, count in everywhere.items():
            if count > 1 and mid in by_mid:
                report.add(report.duplicates,
                           f"{when}: {by_mid[mid]} is {count} times in the mailbox")
        for mid, count in self.world.creates().items():
            if count > 1:
                report.add(report.duplicates, f"{when}: the server was asked {count} times to "
                           f"create {by_mid.get(mid, mid)}")
        for mail in box["drafts"]:
            key = by_mid.get(mail.message_id)
            if key is None:
                report.add(report.duplicates,
                           f"{when}: a draft the ledger does not know: to {mail.to}, "
                           f"{mail.subject!r}, Message-ID {mail.message_id or '(none)'}")
                continue
            state = rows[key].state.value
            if state not in ("creating", "created", "user_edited"):
                report.add(report.disagreements,
                           f"{when}: {key} is in Drafts but the ledger says {state}")
        for key, words in self.touched.items():
            found = [m for m in box["drafts"] if by_mid.get(m.message_id) == key]
            if not found:
                report.add(report.touched_changed, f"{when}: {key}, edited by the user, is "
                           "gone from Drafts")
            elif any(_norm(m.body) != _norm(words) for m in found):
                report.add(report.touched_changed,
                           f"{when}: {key}, edited by the user, no longer has their words")
        for problem in self.world.problems():
            report.add(report.errors, f"{when}: {problem}")

    # --- convergence at the end of a phase -----------------------------------------------

    def unmet(self, expect: Expect) -> list[str]:
        rows, by_mid, _ = self.ledger_rows()
        box = self.mailbox()
        out = []
        for key in sorted(set(rows) | set(expect.states)):
            want = expect.states.get(key)
            row = rows.get(key)
            have = row.state.value if row is not None else None
            if want != have:
                out.append(f"ledger {key}: {have}, expected {want}")
                continue
            if key in expect.flagged and not row.flagged:
                out.append(f"ledger {key}: not flagged")
            where = {"created": "drafts", "user_edited": "drafts", "sent": "sent",
                     "retracted": "trash" if self.world.has_trash else None}.get(have or "")
            for which, mails in box.items():
                copies = [m for m in mails if m.message_id == row.message_id]
                if which == where and len(copies) != 1:
                    out.append(f"{key} ({have}): {len(copies)} copies in {which}, expected 1")
                elif which == "drafts" and which != where and copies:
                    out.append(f"{key} ({have}): still in Drafts")
            if key in expect.contains and where in ("drafts", "sent"):
                text = expect.contains[key]
                copies = [m for m in box[where] if m.message_id == row.message_id]
                if copies and not all(_norm(text) in _norm(m.body) for m in copies):
                    out.append(f"{key}: the {where} copy lacks {text!r}")
        strays = [m for m in box["drafts"] if m.message_id not in by_mid]
        out += [f"stray draft to {m.to}: {m.subject!r}" for m in strays]
        return out

    # --- driving ----------------------------------------------------------------------------

    def put(self, name: str, start: datetime, end: datetime, *, cancelled: bool = False) -> None:
        ev = Ev(f"chaos{name.lower()}", TITLES[name], start, end, PEOPLE[name], cancelled)
        self.events[name] = ev
        self.world.put_event(ev)

    def draft_to(self, key: Key) -> Mail:
        rows, _, _ = self.ledger_rows()
        mid = rows[key].message_id
        (mail,) = [m for m in self.world.folder("drafts") if m.message_id == mid]
        return mail

    def sent_to(self, key: Key) -> Mail:
        rows, _, _ = self.ledger_rows()
        mid = rows[key].message_id
        return next(m for m in self.world.folder("sent") if m.message_id == mid)

    def note(self, name: str, text: str) -> None:
        """`mailbridge note N TEXT`, itself a process that may be killed; retried until saved."""
        for _ in range(30):
            self.runner.launch(["note", str(self.ledger_ids[name]), text], daemon=False)
            self.check_invariants(f"note {name}")
            if self.ledger_rows()[2].get(name) == text:
                return
        self.report.add(self.report.errors, f"note for {name} was never saved")

    def phase(self, name: str, quota: int, expect: Expect) -> bool:
        """Launch, kill, check, until the phase has converged and used its share of kills."""
        started = time.monotonic()
        kills_before = self.report.kills
        args = ["run"] if self.daemon else ["run", "--once"]
        while True:
            missing = self.unmet(expect)
            if not missing and self.report.kills - kills_before >= quota:
                self.report.phases.append(
                    f"{name}: {self.report.kills - kills_before} kills, "
                    f"{time.monotonic() - started:.1f} s")
                return True
            if time.monotonic() - started > self.phase_timeout:
                for item in missing:
                    self.report.add(self.report.lost, f"{name}: {item}")
                return False
            self.runner.launch(args, daemon=self.daemon)
            self.check_invariants(name)

    def run(self) -> Report:
        started = time.monotonic()
        try:
            self.world.prepare()
            self._scenario()
        finally:
            self.report.seconds = time.monotonic() - started
        return self.report

    def _scenario(self) -> None:
        w, now = self.world, datetime.now(UTC).replace(microsecond=0)
        shares = kills_per_phase(self.kills)
        # Thank-yous of A and B exist; C and D are ahead, with their drafts planned.
        self.put("A", now - timedelta(hours=3), now - timedelta(hours=2))
        self.put("B", now - timedelta(hours=1) + timedelta(seconds=4), now + timedelta(seconds=4))
        self.put("C", now + timedelta(days=1), now + timedelta(days=1, hours=1))
        self.put("D", now + timedelta(days=2), now + timedelta(days=2, hours=1))
        states = {
            ("A", TY, DANA.email): "created", ("A", TY, PRIYA.email): "created",
            ("A", FU, DANA.email): "planned",
            ("B", TY, LEE.email): "created", ("B", TY, OMAR.email): "created",
            ("B", FU, LEE.email): "planned",
            ("C", TY, RAVI.email): "planned", ("C", FU, RAVI.email): "planned",
            ("D", TY, KIM.email): "planned", ("D", FU, KIM.email): "planned",
        }
        if not self.phase("1 interviews end", shares[0], Expect(dict(states))):
            return

        # The user rewrites Priya's, deletes Omar's, sends Lee's; adds a note to A.
        priya = ("A", TY, PRIYA.email)
        w.user_edits(self.draft_to(priya), PRIYA_EDIT)
        self.touched[priya] = PRIYA_EDIT
        w.user_deletes(self.draft_to(("B", TY, OMAR.email)))
        w.user_sends(self.draft_to(("B", TY, LEE.email)))
        self.note("A", NOTE_A)
        states.update({priya: "user_edited", ("B", TY, OMAR.email): "user_deleted",
                       ("B", TY, LEE.email): "sent"})
        if not self.phase("2 notes and the user's hand", shares[1],
                          Expect(dict(states), {("A", TY, DANA.email): NOTE_A})):
            return

        # The user sends Dana's (with the note); C is cancelled; D moves to "just ended".
        w.user_sends(self.draft_to(("A", TY, DANA.email)))
        now = datetime.now(UTC).replace(microsecond=0)
        c = self.events["C"]
        self.put("C", c.start, c.end, cancelled=True)
        self.put("D", now - timedelta(minutes=61), now - timedelta(minutes=1))
        states.update({("A", TY, DANA.email): "sent", ("C", TY, RAVI.email): "cancelled",
                       ("C", FU, RAVI.email): "cancelled", ("D", TY, KIM.email): "created"})
        if not self.phase("3 events moved and cancelled", shares[2],
                          Expect(dict(states), {("A", TY, DANA.email): NOTE_A})):
            return

        # A and B move to "ended 24 hours ago": their follow-ups fall due within seconds.
        now = datetime.now(UTC).replace(microsecond=0)
        for name, lag in (("A", 3), ("B", 4)):
            end = now - timedelta(hours=24) + timedelta(seconds=lag)
            self.put(name, end - timedelta(hours=1), end)
        states.update({("A", FU, DANA.email): "created", ("B", FU, LEE.email): "created"})
        if not self.phase("4 follow-ups fall due", shares[3], Expect(dict(states))):
            return

        # The user rewrites the follow-up to Lee.
        lee_fu = ("B", FU, LEE.email)
        w.user_edits(self.draft_to(lee_fu), LEE_EDIT)
        self.touched[lee_fu] = LEE_EDIT
        states[lee_fu] = "user_edited"
        if not self.phase("5 the user edits a follow-up", shares[4], Expect(dict(states))):
            return

        # Dana and Lee reply; a note for D.
        for person, key in ((DANA, ("A", TY, DANA.email)), (LEE, ("B", TY, LEE.email))):
            thanks = self.sent_to(key)
            w.deliver(person, thanks.subject, thanks.message_id,
                      f"Thanks, {USER_NAME.split()[0]}! We will be in touch about next steps.")
        self.note("D", NOTE_D)
        states[("A", FU, DANA.email)] = "retracted"
        final = Expect(dict(states), {("D", TY, KIM.email): NOTE_D}, {lee_fu})
        if not self.phase("6 replies arrive", shares[5], final):
            return
        self.finish(final)

    def finish(self, final: Expect) -> None:
        """A clean pass changes nothing, and `status --json` agrees with the mailbox."""
        before = {k: sorted((m.message_id, _norm(m.body)) for m in v)
                  for k, v in self.mailbox().items()}
        self.runner.launch(["run", "--once"], daemon=False, kill=False)
        self.check_invariants("final pass")
        after = {k: sorted((m.message_id, _norm(m.body)) for m in v)
                 for k, v in self.mailbox().items()}
        if before != after:
            self.report.add(self.report.disagreements, "a clean pass after the end changed "
                            "the mailbox")
        for item in self.unmet(final):
            self.report.add(self.report.lost, f"final: {item}")
        done = subprocess.run(self.world.command("status", "--json"), env=self.world.env,
                              cwd=self.world.root, capture_output=True, text=True, timeout=120,
                              check=False)
        if done.returncode != 0:
            self.report.add(self.report.errors, f"status --json failed: {done.stderr[-1000:]}")
            return
        data = json.loads(done.stdout)
        letter = {title: k for k, title in TITLES.items()}
        seen: dict[Key, str] = {}
        flagged: set[Key] = set()
        for account in data["accounts"]:
            for iv in account["interviews"]:
                for d in iv["drafts"]:
                    key = (letter.get(iv["title"], "?"), d["kind"], d["to"].lower())
                    seen[key] = d["state"]
                    if d.get("flagged"):
                        flagged.add(key)
        if seen != final.states:
            self.report.add(self.report.disagreements,
                            f"status --json says {sorted(seen.items())}, expected "
                            f"{sorted(final.states.items())}")
        if flagged != final.flagged:
            self.report.add(self.report.disagreements,
                            f"status --json flags {sorted(flagged)}, expected "
                            f"{sorted(final.flagged)}")


def run_chaos(world: World, *, kills: int, seed: int, daemon: bool,
              phase_timeout: float = 60.0) -> Report:
    """The whole scenario on one world; the world is closed afterwards."""
    try:
        return Chaos(world, kills=kills, seed=seed, daemon=daemon,
                     phase_timeout=phase_timeout).run()
    finally:
        world.close()


def kills_per_phase(kills: int) -> list[int]:
    return [kills // 6 + (1 if i < kills % 6 else 0) for i in range(6)]


# --- the Outlook child: the real CLI, with msal's http_client injected ------------------------


def _graph_child(url: str, args: list[str]) -> int:
    import mailbridge_providers.outlook as outlook
    import requests

    from mailbridge import cli
    from tests.emulators.graph import AUTHORITY

    class Loopback(requests.Session):
        """msal's http_client: the emulator's https authority, answered on loopback."""

        def request(self, method: str | bytes, target: str | bytes, *a: Any, **kw: Any) -> Any:
            target = str(target)
            if target.startswith(AUTHORITY):
                target = url + target[len(AUTHORITY):]
            return super().request(method, target, *a, **kw)

    original: Callable[..., Any] = outlook._app

    def app(account: Any, cache: Any, http_client: Any) -> Any:
        return original(account, cache, http_client or Loopback())

    outlook._app = app  # type: ignore[assignment]
    return cli.main(args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos")
    sub = parser.add_subparsers(dest="command", required=True)
    child = sub.add_parser("graph-child", help="mailbridge's CLI with msal pointed at an emulator")
    child.add_argument("url")
    child.add_argument("args", nargs=argparse.REMAINDER)
    ns = parser.parse_args(argv)
    args = ns.args[1:] if ns.args[:1] == ["--"] else ns.args
    return _graph_child(ns.url, args)


if __name__ == "__main__":
    sys.exit(main())
