"""Any IMAP mailbox (Dovecot, Fastmail, Gmail over IMAP, Exchange, ...) as a mailbridge `Mailbox`.

What maps to what:

- a draft is a message APPENDed to the Drafts folder with the flags ``\\Draft`` and ``\\Seen``,
  and the keyword ``$mailbridge`` where the folder's PERMANENTFLAGS allow new keywords (``\\*``)
  so the user's program can show or filter them (without it elsewhere, never an error);
  its provider id is ``"UIDVALIDITY:UID"`` of that folder (from APPENDUID, else found again by
  ``SEARCH HEADER Message-ID``). Drafts, Sent and Trash are found by SPECIAL-USE (RFC 6154),
  then by common and localized names, unless the settings name them.
- ``observe``: the UID still there -> PRESENT with the fingerprint of what the server holds now;
  the Message-ID elsewhere in Drafts (the user's client re-saved it) -> PRESENT with the new id;
  the Message-ID in Sent -> SENT; else GONE, and with a `SentHint` the messages in Sent to the
  same recipient since about the draft's creation (``SEARCH SINCE .. TO ..`` on the server)
  are reported as candidates: `mailbridge.drafts` decides whether one of them is the draft
  sent under a Message-ID of its own. Nothing is kept in memory, so a restart loses nothing.
- A draft's version marker is ``UIDVALIDITY:UID``, its flags and (with CONDSTORE) its MODSEQ: a
  message's content never changes under its UID, so ``versions`` checks every waiting draft
  with one ``UID FETCH (FLAGS MODSEQ)`` and no body.
- ``update_draft`` APPENDs the new draft, then removes exactly the old UID.
- ``retract`` MOVEs that one UID to Trash (or COPY + ``\\Deleted`` + ``UID EXPUNGE`` of that
  UID). A plain EXPUNGE, which would also remove whatever else the user had flagged, is never
  issued.
- ``messages``: headers only (``BODY.PEEK[HEADER]``) plus the first 600 bytes of the first text
  part, from the inbox, Archive (SPECIAL-USE ``\\Archive`` or its usual names, where there is
  one; its messages' ids are ``"FOLDER/UIDVALIDITY:UID"``, apart from the inbox's) and Sent.
  The cursor is JSON: per folder its UIDVALIDITY, UIDNEXT and
  (with CONDSTORE) HIGHESTMODSEQ; an unchanged folder costs one STATUS. The first pass (and a
  UIDVALIDITY change, or a folder gone back to a lower UIDNEXT or HIGHESTMODSEQ, as after a
  restore from backup) finds the look-back window by bisecting INTERNALDATE: the mailbox is
  never downloaded.
- ``subscribe`` (push): IDLE on the inbox, renewed every 24 minutes, NOOP polling every 60 s on
  servers without IDLE, reconnecting with backoff and jitter; one shared thread waits on every
  account's IDLE socket (``watch`` is the blocking form).
- One connection per account while it is subscribed (the daemon): the mailbox borrows the push
  connection for a pass (DONE in the pass's thread, then its commands) and gives it back at
  ``pass_ended``, and the shared thread has the inbox EXAMINEd and IDLEs again; mail stored
  after the pass read the inbox (a higher UIDNEXT, or an EXISTS as IDLE begins) wakes the
  account then. A broken connection is dropped by whichever side sees it; the next pass
  connects afresh, and the watcher keeps that connection. A pass waits at most ``timeout``
  seconds for the connection (while the watcher logs in or renews IDLE). Unsubscribed (one
  run, ``check``), the mailbox keeps a connection of its own from pass to pass, checked with
  NOOP when unused a minute.

Credentials: ``password_command`` or the keyring entry ``ACCOUNT/imap``; ``oauth2_token_command``
selects XOAUTH2. Nothing here can send mail: IMAP has no such command, and no SMTP is spoken.
"""

from __future__ import annotations

import email
import email.policy
import getpass
import heapq
import itertools
import json
import logging
import queue
import random
import re
import selectors
import socket
import ssl
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Annotated, Any

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError, LoginError
from imapclient.imapclient import (
    ARCHIVE,
    DRAFTS,
    SENT,
    TRASH,
    SocketTimeout,
    _parse_untagged_response,
)
from pydantic import AfterValidator, ValidationInfo

from mailbridge import compose, domains, mailparse, retry, secrets
from mailbridge.adapters import (
    AmbiguousWrite,
    AuthError,
    FolderMissing,
    Mailbox,
    Probe,
    ProviderConfig,
    ProviderError,
)
from mailbridge.config import CHECKED, Flag, Number, Text, Whole, between, doc, fail, one_of
from mailbridge.model import (
    DraftMessage,
    Folder,
    Located,
    MailHeaders,
    MessageBatch,
    Observation,
    Place,
    Presence,
    SentCandidate,
    SentHint,
)
from mailbridge.settings import AccountSettings

log = logging.getLogger("mailbridge.imap")

# --- settings: the account's imap = {...} table -------------------------------------------


def _bare_host(host: str, info: ValidationInfo) -> str:
    if "@" in host or "/" in host:  # user:password@host must not leak into messages or logs
        raise fail("host must be only the server's name (like imap.example.com), without a user "
                   "name, password, scheme or path", 'write host = "imap.example.com" and '
                   'username = "..."; keep the password in the keyring (`mailbridge auth '
                   f"{(info.context or {}).get('account', 'ACCOUNT')}`)")
    return host


def _plain_only_here(security: str, info: ValidationInfo) -> str:
    host = info.data.get("host")
    if security == "plain" and host and not domains.is_loopback_host(host):
        raise fail(f'security = "plain" sends the password unencrypted to {host}',
                   'write security = "tls" (or "starttls"); plain is only allowed to this '
                   "computer (localhost, 127.0.0.1)")
    return security


def _address_by_default(username: str | None, info: ValidationInfo) -> str | None:
    return username or (info.context or {}).get("address")




def _folder(example: str) -> Any:
    return doc("default: found by SPECIAL-USE, then by usual names", example)



@dataclass(frozen=True)
class ImapSettings:
    __pydantic_config__ = CHECKED
    host: Annotated[Text, AfterValidator(_bare_host), doc("the IMAP server", "imap.example.com")]
    port: Annotated[Whole | None, between(1, 65535), doc(
        "default: 993 with tls, else 143", 993)] = None
    security: Annotated[Text, one_of("tls", "starttls", "plain"), AfterValidator(_plain_only_here),
                        doc('"tls", "starttls", or "plain" (to this computer only)', "tls")] = "tls"
    username: Annotated[Text | None, AfterValidator(_address_by_default), doc(
        "default: the account's address", "you@example.com")] = None
    password_command: Annotated[Text | None, doc(
        "a command that prints the password; default: the keyring", "pass show mail/imap")] = None
    oauth2_token_command: Annotated[Text | None, doc(
        "a command that prints an OAuth2 access token (XOAUTH2)", "oama access you@example.com")
    ] = None
    inbox_folder: Annotated[Text, doc("the folder replies arrive in", "INBOX")] = "INBOX"
    drafts_folder: Annotated[Text | None, _folder("Drafts")] = None
    sent_folder: Annotated[Text | None, _folder("Sent")] = None
    trash_folder: Annotated[Text | None, _folder("Trash")] = None
    archive_folder: Annotated[Text | None, _folder("Archive")] = None
    idle: Annotated[Flag, doc("wait for new mail with IDLE (push)", True)] = True
    timeout: Annotated[Number, between(1, 600), doc("seconds, every command", 60)] = 60.0


CONFIG = ProviderConfig(table="imap", settings=ImapSettings, used_by=("mailbox.imap",),
                        starter_calendar="caldav")

DRAFT_FLAGS = (b"\\Draft", b"\\Seen")
KEYWORD = b"$mailbridge"  # marks the drafts mailbridge made (RFC 3501 keyword)
EXCERPT_BYTES = 600
FETCH_CHUNK = 500  # UIDs per FETCH command: bounded command lines and responses
IDLE_RENEW = 24 * 60  # seconds; servers may drop an IDLE after 29 minutes (RFC 2177)
POLL_INTERVAL = 60  # seconds, NOOP polling where IDLE is missing
STALE_AFTER = 60  # seconds unused before a cached connection is checked with NOOP

DRAFTS_NAMES = (
    "Drafts", "Draft", "[Gmail]/Drafts", "[Google Mail]/Drafts", "Brouillons", "Entwürfe",
    "Borradores", "Bozze", "Concepten", "Rascunhos", "Utkast", "Kladder", "Luonnokset",
    "Szkice", "Черновики",
)  # fmt: skip
SENT_NAMES = (
    "Sent", "Sent Items", "Sent Messages", "Sent Mail", "[Gmail]/Sent Mail",
    "[Google Mail]/Sent Mail", "Gesendet", "Gesendete Objekte", "Gesendete Elemente",
    "Envoyés", "Éléments envoyés", "Messages envoyés", "Enviados", "Elementos enviados",
    "Posta inviata", "Inviata", "Verzonden", "Verzonden items", "Skickat", "Отправленные",
)  # fmt: skip
# Where mail programs' Archive button files mail (Thunderbird "Archives", Apple Mail, Fastmail,
# Outlook.com "Archive"); not Gmail's All Mail, which holds the inbox and Sent again.
ARCHIVE_NAMES = ("Archive", "Archives", "Archiv", "Archivio", "Archivo", "Archief", "Arkiv",
                 "Архив")
TRASH_NAMES = (
    "Trash", "Deleted Items", "Deleted Messages", "Bin", "[Gmail]/Trash", "[Gmail]/Bin",
    "[Google Mail]/Trash", "Papierkorb", "Gelöschte Elemente", "Corbeille",
    "Éléments supprimés", "Papelera", "Elementos eliminados", "Cestino", "Prullenbak",
    "Verwijderde items", "Papperskorgen", "Корзина",
)  # fmt: skip


# --- pure helpers ----------------------------------------------------------------------


def pick_folder(
    listing: Sequence[tuple[Sequence[bytes], str]],
    special_use: bytes,
    names: Sequence[str],
    override: str | None = None,
) -> str | None:
    """The folder for one role: the configured one, else SPECIAL-USE, else a well-known name.

    ``listing`` is (flags, name) per folder as LIST reports it. Names match case-insensitively,
    also below a personal namespace prefix ("INBOX.Drafts", "INBOX/Sent Items").
    """
    present = [name for _, name in listing]
    if override:
        return override if override in present else None
    for flags, name in listing:
        if special_use.lower() in (f.lower() for f in flags):
            return name
    lowered = {name.lower(): name for name in present}
    for wanted in names:
        for prefix in ("", "inbox.", "inbox/"):
            found = lowered.get(prefix + wanted.lower())
            if found:
                return found
    return None


def parse_provider_id(provider_id: str) -> tuple[int, int]:
    try:
        validity, uid = provider_id.split(":", 1)
        return int(validity), int(uid)
    except ValueError:
        raise ProviderError(f"not an IMAP draft id: {provider_id!r}") from None


_APPENDUID = re.compile(rb"\[APPENDUID (\d+) (\d+)\]", re.IGNORECASE)


def appenduid(response: bytes | str) -> tuple[int, int] | None:
    """(UIDVALIDITY, UID) from an APPEND response with UIDPLUS (RFC 4315), else None."""
    raw = response.encode() if isinstance(response, str) else response
    match = _APPENDUID.search(raw)
    return (int(match.group(1)), int(match.group(2))) if match else None


@dataclass(frozen=True)
class FolderState:
    uidvalidity: int
    uidnext: int
    modseq: int = 0


def load_cursor(cursor: str | None) -> dict[str, FolderState]:
    """Per-folder state from a cursor; an unreadable cursor counts as none (safe resync)."""
    if not cursor:
        return {}
    try:
        data = json.loads(cursor)
        return {
            name: FolderState(int(s["uidvalidity"]), int(s["uidnext"]), int(s.get("modseq", 0)))
            for name, s in data["folders"].items()
        }
    except (ValueError, KeyError, TypeError, AttributeError):
        return {}


def dump_cursor(states: dict[str, FolderState]) -> str:
    folders = {
        name: {"uidvalidity": s.uidvalidity, "uidnext": s.uidnext, "modseq": s.modseq}
        for name, s in sorted(states.items())
    }
    return json.dumps({"v": 1, "folders": folders}, sort_keys=True)


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("ascii", "replace")
    return "" if value is None else str(value)


def first_text_part(structure: Any, path: str = "") -> tuple[str, str, str, str] | None:
    """(part number, content type, charset, transfer encoding) of the first text part.

    Walks an imapclient BODYSTRUCTURE depth-first, preferring text/plain over text/html and
    skipping attachments. None when there is no text part.
    """
    plain: tuple[str, str, str, str] | None = None
    rich: tuple[str, str, str, str] | None = None
    for number, part in _leaves(structure, path):
        ctype = f"{_text(part[0])}/{_text(part[1])}".lower()
        if ctype not in ("text/plain", "text/html") or _is_attachment(part):
            continue
        params = part[2] if isinstance(part[2], (tuple, list)) else ()
        charset = "utf-8"
        for key, value in zip(params[::2], params[1::2], strict=False):
            if _text(key).lower() == "charset":
                charset = _text(value)
        found = (number, ctype, charset, _text(part[5]).lower() or "7bit")
        if ctype == "text/plain":
            plain = plain or found
            break
        rich = rich or found
    return plain or rich


def part_types(structure: Any) -> tuple[str, ...]:
    types: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node[0], list):
            kind = f"multipart/{_text(node[1]).lower()}"
            if kind not in types:
                types.append(kind)
            for child in node[0]:
                walk(child)
        else:
            kind = f"{_text(node[0])}/{_text(node[1])}".lower()
            if kind not in types:
                types.append(kind)

    with suppress(IndexError, TypeError):
        walk(structure)
    return tuple(types[:50])


def _leaves(node: Any, path: str) -> Iterator[tuple[str, Any]]:
    if isinstance(node[0], list):  # multipart: ([children], subtype, ...)
        for index, child in enumerate(node[0], start=1):
            yield from _leaves(child, f"{path}.{index}" if path else str(index))
    else:  # a single-part message's body is part 1
        yield (path or "1"), node


def _is_attachment(part: Any) -> bool:
    # Extension data of a single part: [7..] md5?, disposition, language, location.
    for item in part[7:]:
        if isinstance(item, tuple) and item and _text(item[0]).lower() == "attachment":
            return True
    return False


def excerpt_from_part(chunk: bytes, ctype: str, charset: str, encoding: str) -> str:
    """The text of the start of one MIME part, decoded as mailparse decodes whole messages."""
    if encoding == "base64":  # a cut base64 run decodes only in whole quanta
        compact = b"".join(chunk.split())
        chunk = compact[: len(compact) - len(compact) % 4]
    head = (
        f'Content-Type: {ctype}; charset="{charset}"\r\n'
        f"Content-Transfer-Encoding: {encoding}\r\n\r\n"
    ).encode("ascii", "replace")
    msg = email.message_from_bytes(head + chunk, policy=email.policy.default)
    return mailparse.text_excerpt(msg, EXCERPT_BYTES)


def draft_flags(permanent_flags: Sequence[bytes] | None) -> tuple[bytes, ...]:
    """The flags to APPEND a draft with, given the Drafts folder's PERMANENTFLAGS.

    The keyword goes along when the server keeps new keywords (``\\*``) or already lists it;
    otherwise (or when the server said nothing) the draft is stored without it, since some
    servers refuse the APPEND and others drop the keyword silently.
    """
    allowed = {bytes(f).lower() for f in permanent_flags or ()}
    if b"\\*" in allowed or KEYWORD.lower() in allowed:
        return (*DRAFT_FLAGS, KEYWORD)
    return DRAFT_FLAGS


def sent_candidate(headers: MailHeaders) -> SentCandidate:
    """The facts of a message in Sent by which the core recognises a draft sent anew."""
    return SentCandidate(
        recipients=tuple(p.email for p in (*headers.to, *headers.cc)),
        subject=headers.subject,
        date=headers.date,
        thread=tuple(x for x in (headers.in_reply_to, *headers.references) if x),
        message_id=headers.message_id,
    )


def version_of(validity: int, uid: int, data: Mapping[bytes, Any]) -> str:
    """A draft's cheap marker from a FETCH of FLAGS (and MODSEQ, with CONDSTORE)."""
    # \Recent depends on which session saw the message first, not on the message.
    flags = " ".join(sorted(f for f in map(_text, data.get(b"FLAGS", ())) if f != "\\Recent"))
    modseq = data.get(b"MODSEQ")
    mark = str(modseq[0] if isinstance(modseq, (tuple, list)) and modseq else modseq or "")
    return f"{validity}:{uid}/{flags}/{mark}"


# --- connection ------------------------------------------------------------------------


def _settings(account: AccountSettings) -> ImapSettings:
    imap = account.settings_of(ImapSettings)
    if imap is None:
        raise ProviderError(f"account {account.name!r}: provider is imap but [imap] is not set")
    return imap


def connect(
    account: AccountSettings, *, password: str | Callable[[], str] | None = None
) -> IMAPClient:
    """A logged-in connection, with certificate checks and a timeout on every command.

    ``password`` may be a function: it is called only once the server is trusted (after the
    TLS handshake), so no secret is fetched for a server that turns out to be the wrong one.
    """
    imap = _settings(account)
    where = f"account {account.name!r}: IMAP server {imap.host}"
    if imap.security not in ("tls", "starttls", "plain"):
        raise ProviderError(f"{where}: security must be tls, starttls or plain")
    if imap.security == "plain" and not domains.is_loopback_host(imap.host):
        raise ProviderError(
            f'{where}: security = "plain" sends the password unencrypted and is only allowed '
            "to this machine (127.0.0.1); use tls or starttls"
        )
    port = imap.port or (993 if imap.security == "tls" else 143)
    context = ssl.create_default_context()
    timeout = SocketTimeout(connect=min(imap.timeout, 30.0), read=imap.timeout)
    try:
        client = IMAPClient(
            imap.host,
            port=port,
            ssl=imap.security == "tls",
            ssl_context=context if imap.security == "tls" else None,
            timeout=timeout,
        )
        if imap.security == "starttls":
            client.starttls(context)
    except ssl.SSLCertVerificationError as exc:
        # Said apart from network trouble: waiting does not fix it, and no password was sent.
        raise ProviderError(
            f"{where} port {port}: its TLS certificate is not trusted "
            f"({exc.verify_message or exc.reason}); nothing was sent. Check that the host "
            "name is the one on the certificate; a server with a private CA needs that CA in "
            "the system trust store (or in SSL_CERT_FILE)"
        ) from None
    except (OSError, IMAPClientError) as exc:
        raise ProviderError(f"{where} port {port}: cannot connect ({_why(exc)})") from None
    username = imap.username or account.address
    try:
        if imap.oauth2_token_command:
            token = secrets.run_command(
                imap.oauth2_token_command,
                what=f"account {account.name!r}",
                setting="oauth2_token_command",
            )
            client.oauth2_login(username, token)
        else:
            given = password() if callable(password) else password
            secret = given or secrets.require(account, "imap", imap.password_command)
            client.login(username, secret)
    except LoginError:
        _quietly_close(client)
        raise AuthError(
            f"{where} refused the login of {username!r}; check the user name and run "
            f"`mailbridge auth {account.name}` (or fix password_command)"
        ) from None
    except (OSError, IMAPClientError) as exc:
        _quietly_close(client)
        raise ProviderError(f"{where}: login failed ({_why(exc)})") from None
    return client


class RememberedPassword:
    """The account's password, fetched at the first login and kept in memory, so a
    long-lived daemon runs password_command (or asks the keyring) once, not at every
    reconnect. A refused login forgets it: the next login fetches it again (it may have been
    fixed). OAuth2 tokens expire, so oauth2_token_command still runs at every login."""

    def __init__(self, account: AccountSettings) -> None:
        self.account = account
        self._kept: str | None = None

    def connect(self) -> IMAPClient:
        try:
            return connect(self.account, password=self._password)
        except AuthError:
            self._kept = None
            raise

    def _password(self) -> str:
        if self._kept is None:
            imap = _settings(self.account)
            self._kept = secrets.require(self.account.name, "imap", imap.password_command)
        return self._kept


def _why(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _quietly_close(client: IMAPClient) -> None:
    try:
        client.logout()
    except Exception:  # noqa: BLE001 - already broken; nothing to report
        with suppress(Exception):
            client.shutdown()


def authenticate(account: AccountSettings, *, no_browser: bool = False) -> str:
    """`mailbridge auth ACCOUNT`: ask for the IMAP password, check it, store it."""
    imap = _settings(account)
    if imap.oauth2_token_command or imap.password_command:
        _quietly_close(connect(account))
        source = "oauth2_token_command" if imap.oauth2_token_command else "password_command"
        return f"account {account.name!r}: logged in to {imap.host} with {source}; nothing stored"
    password = getpass.getpass(f"IMAP password for {imap.username or account.address}: ")
    if not password:
        raise AuthError(f"account {account.name!r}: no password given; nothing stored")
    _quietly_close(connect(account, password=password))
    secrets.store(account, "imap", password)
    return (f"account {account.name!r}: logged in to {imap.host}; password stored in "
            f"{secrets.token_store(account).describe()}")


# --- the mailbox -----------------------------------------------------------------------


def probe(account: AccountSettings) -> list[Probe]:
    """`check --online`: log in, then one STATUS each of the inbox, Drafts and Sent."""
    imap = _settings(account)
    try:
        client = connect(account)
    except ProviderError as exc:
        return [Probe("sign-in", False, str(exc))]
    found = [Probe("sign-in", True, f"logged in to {imap.host}")]
    try:
        listing = [(flags, name) for flags, _sep, name in client.list_folders()]
        folders = {
            ("inbox", "inbox_folder"): imap.inbox_folder,
            ("Drafts", "drafts_folder"): pick_folder(
                listing, DRAFTS, DRAFTS_NAMES, imap.drafts_folder),
            ("Sent", "sent_folder"): pick_folder(listing, SENT, SENT_NAMES, imap.sent_folder),
        }
        for (what, key), name in folders.items():
            if name is None:
                found.append(Probe(what, False, f"no {what} folder on the server; create it "
                                                f"or set imap.{key}"))
                continue
            try:
                status = client.folder_status(name, [b"MESSAGES"])
            except IMAPClientError as exc:
                found.append(Probe(what, False, f"{name}: {_why(exc)}; check imap.{key}"))
            else:
                found.append(Probe(what, True, f"{name}, {status[b'MESSAGES']} message(s)"))
    except (OSError, IMAPClientError) as exc:
        found.append(Probe("folders", False, f"cannot list the folders ({_why(exc)})"))
    finally:
        _quietly_close(client)
    return found


class ImapMailbox(Mailbox):
    config = CONFIG
    signs_in = True
    pushes = True
    subscribes = True
    own_probe = True
    moves_to_trash = True

    @classmethod
    def open(cls, account: AccountSettings) -> ImapMailbox:
        return open_mailbox(account)  # the module's opener builds it

    @classmethod
    def authenticate(cls, account: AccountSettings, *, no_browser: bool = False,
                     port: int | None = None) -> str:
        return authenticate(account, no_browser=no_browser)

    @classmethod
    def stored(cls, account: AccountSettings) -> dict[str, str]:
        imap = account.settings_of(ImapSettings)
        if imap is None or imap.password_command or imap.oauth2_token_command:
            return {}
        return {"imap": "no IMAP password"}

    @classmethod
    def problems(cls, account: AccountSettings) -> list[str]:
        imap = account.settings_of(ImapSettings)
        if imap is None:
            return []
        return secrets.command_problems(account, {
            "imap.password_command": imap.password_command,
            "imap.oauth2_token_command": imap.oauth2_token_command})

    @classmethod
    def probe(cls, account: AccountSettings) -> list[Probe]:
        return probe(account)

    @classmethod
    def watch(cls, account: AccountSettings, on_change: Callable[[], None],
              stop: threading.Event) -> None:
        watch(account, on_change, stop)

    @classmethod
    def subscribe(cls, account: AccountSettings,
                  on_change: Callable[[], None]) -> Callable[[], None]:
        return subscribe(account, on_change)

    def __init__(
        self, account: AccountSettings, *, connector: Callable[[], IMAPClient] | None = None
    ) -> None:
        self.account = account
        self.settings = _settings(account)
        self._connector = connector or RememberedPassword(account).connect
        self._client: IMAPClient | None = None
        self._loan: _Watcher | None = None  # whose connection this pass borrowed
        self._inbox_next: int | None = None  # the inbox's UIDNEXT as this pass read it
        self._last_used = 0.0
        self._folders: dict[str, str | None] | None = None
        self._append_flags: tuple[bytes, ...] | None = None  # per Drafts' PERMANENTFLAGS

    # connection and errors

    @contextmanager
    def _session(self, what: str) -> Iterator[IMAPClient]:
        """A live connection for one operation; a broken one is dropped and reported."""
        try:
            client = self._live_client()
            yield client
            self._last_used = time.monotonic()
        except (ProviderError, AuthError):
            raise
        except (TimeoutError, OSError, IMAPClientAbortError) as exc:
            self._drop()
            raise ProviderError(
                f"account {self.account.name!r}: IMAP {what} failed, connection lost "
                f"({_why(exc)}); will retry"
            ) from None
        except IMAPClientError as exc:
            raise ProviderError(
                f"account {self.account.name!r}: IMAP {what} failed ({_why(exc)})"
            ) from None

    def _live_client(self) -> IMAPClient:
        if self._loan is None:
            watcher = _push_watcher(self.account, self.settings)
            if watcher is not None:
                self.close()  # a connection of its own from before the subscription
                self._borrow(watcher)
        if self._client is not None and time.monotonic() - self._last_used > STALE_AFTER:
            try:
                self._client.noop()
            except (OSError, IMAPClientError):
                self._drop()
        if self._client is None:
            self._client = self._connector()
            self._last_used = time.monotonic()
        return self._client

    def _borrow(self, watcher: _Watcher) -> None:
        """The push watcher's connection for this pass, out of IDLE: one connection per
        account while the daemon runs. Given back by `pass_ended`."""
        loan = watcher.hub.lend(watcher, self.settings.timeout)
        if not loan.shared:
            return  # the subscription ended meanwhile
        self._loan, self._inbox_next, self._client = watcher, None, loan.client
        if loan.client is not None and loan.idling:
            try:
                loan.client.idle_done()
            except (OSError, IMAPClientError):
                self._drop()  # lost while idling: this pass connects afresh
            else:
                self._last_used = time.monotonic()

    def pass_ended(self) -> None:
        """Give a borrowed connection back to the push watcher (it selects the inbox and
        IDLEs again); a connection of its own stays open for the next pass, unless the
        account was subscribed meanwhile (the next pass borrows the watcher's)."""
        if self._loan is not None:
            self._give_back(self._loan)
        elif self._client is not None and _push_watcher(self.account, self.settings):
            self.close()

    def _give_back(self, watcher: _Watcher) -> None:
        self._loan = None
        client, self._client = self._client, None
        watcher.hub.take_back(watcher, client, self._inbox_next)

    def _drop(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            with suppress(Exception):  # the socket is already gone
                client.shutdown()

    def close(self) -> None:
        if self._loan is not None:
            self._give_back(self._loan)
        if self._client is not None:
            _quietly_close(self._client)
            self._client = None

    # folders

    def _folder(self, client: IMAPClient, role: str) -> str | None:
        if self._folders is None:
            listing = [(flags, name) for flags, _sep, name in client.list_folders()]
            s = self.settings
            self._folders = {
                "drafts": pick_folder(listing, DRAFTS, DRAFTS_NAMES, s.drafts_folder),
                "sent": pick_folder(listing, SENT, SENT_NAMES, s.sent_folder),
                "trash": pick_folder(listing, TRASH, TRASH_NAMES, s.trash_folder),
                "archive": pick_folder(listing, ARCHIVE, ARCHIVE_NAMES, s.archive_folder),
            }
        return self._folders[role]

    def _drafts(self, client: IMAPClient) -> str:
        name = self._folder(client, "drafts")
        if name is None:
            self._folders = None  # look again next time
            self._append_flags = None
            wanted = self.settings.drafts_folder or "a Drafts folder"
            raise FolderMissing(
                f"account {self.account.name!r}: {wanted} is not on the IMAP server; "
                "create it in your mail program or set imap.drafts_folder"
            )
        return name

    def _select(self, client: IMAPClient, folder: str, *, readonly: bool) -> int:
        info = client.select_folder(folder, readonly=readonly)
        return int(info[b"UIDVALIDITY"])

    # drafts

    def _flags_for(self, client: IMAPClient, drafts: str) -> tuple[bytes, ...]:
        if self._append_flags is None:
            # Read-write: EXAMINE reports no PERMANENTFLAGS at all (RFC 3501 6.3.2).
            info = client.select_folder(drafts, readonly=False)
            self._append_flags = draft_flags(info.get(b"PERMANENTFLAGS"))
        return self._append_flags

    def create_draft(self, draft: DraftMessage) -> str:
        try:
            with self._session("APPEND to Drafts") as client:
                drafts = self._drafts(client)
                response = client.append(drafts, draft.raw, flags=self._flags_for(client, drafts))
                ids = appenduid(response)
                if ids is not None:
                    return f"{ids[0]}:{ids[1]}"
        except (FolderMissing, AuthError):
            raise
        except ProviderError as exc:
            # The server may have stored the message before the answer was lost.
            raise AmbiguousWrite(str(exc)) from None
        found = self.find_draft(draft.message_id)
        if found is None:
            raise ProviderError(
                f"account {self.account.name!r}: the draft was stored but cannot be found again"
            )
        return found

    def find_draft(self, message_id: str) -> str | None:
        with self._session("SEARCH in Drafts") as client:
            drafts = self._drafts(client)
            validity = self._select(client, drafts, readonly=True)
            uids = self._uids_with_message_id(client, message_id)
            return f"{validity}:{max(uids)}" if uids else None

    def locate(self, message_id: str) -> Located | None:
        with self._session("look a Message-ID up") as client:
            for role, place in (("drafts", Place.DRAFTS), ("sent", Place.SENT),
                                ("trash", Place.TRASH)):  # fmt: skip
                folder = self._drafts(client) if role == "drafts" else self._folder(client, role)
                if folder is None:
                    continue
                validity = self._select(client, folder, readonly=True)
                uids = self._uids_with_message_id(client, message_id)
                if uids:
                    return Located(place, f"{validity}:{max(uids)}")
        return None

    def _uids_with_message_id(self, client: IMAPClient, message_id: str) -> list[int]:
        """UIDs in the selected folder whose Message-ID is exactly ``message_id``."""
        if not message_id:
            return []
        candidates = client.search(["HEADER", "Message-ID", message_id])
        if not candidates:
            return []
        # SEARCH HEADER is a substring match: confirm the whole value.
        fetched = client.fetch(candidates, ["BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]", "FLAGS"])
        found = []
        for uid, data in fetched.items():
            if b"\\Deleted" in data.get(b"FLAGS", ()):
                continue
            raw = next((v for k, v in data.items() if k.startswith(b"BODY[HEADER")), b"")
            parsed = mailparse.headers_from_bytes(
                raw or b"", folder=Folder.INBOX, provider_id="", excerpt_chars=0
            )
            if parsed.message_id == message_id.strip():
                found.append(int(uid))
        return found

    def observe(
        self, provider_id: str, message_id: str, hint: SentHint | None = None
    ) -> Observation:
        validity, uid = parse_provider_id(provider_id)
        with self._session("observe a draft") as client:
            drafts = self._drafts(client)
            current = self._select(client, drafts, readonly=True)
            if current == validity:
                seen = self._observe_uid(client, current, uid, message_id)
                if seen is not None:
                    return seen
            uids = self._uids_with_message_id(client, message_id)
            if uids:
                seen = self._observe_uid(client, current, max(uids), message_id)
                if seen is not None:
                    return replace(seen, provider_id=f"{current}:{max(uids)}")
            sent = self._folder(client, "sent")
            if sent is None:
                return Observation(Presence.GONE)
            self._select(client, sent, readonly=True)
            if self._uids_with_message_id(client, message_id):
                return Observation(Presence.SENT)
            return Observation(Presence.GONE, sent_candidates=self._sent_candidates(client, hint))

    def _draft_items(self, client: IMAPClient) -> list[str]:
        return ["FLAGS", "MODSEQ"] if client.has_capability("CONDSTORE") else ["FLAGS"]

    def _observe_uid(self, client: IMAPClient, validity: int, uid: int,
                     message_id: str) -> Observation | None:
        """The draft under ``uid`` of the selected Drafts, or None when it is not there. A
        message under another Message-ID is not it: a Drafts folder restored from a backup
        keeps its UIDVALIDITY and gives the UIDs it had passed to new messages."""
        data = client.fetch([uid], ["BODY.PEEK[]", *self._draft_items(client)]).get(uid)
        if not data or b"\\Deleted" in data.get(b"FLAGS", ()) or data.get(b"BODY[]") is None:
            return None
        raw = bytes(data[b"BODY[]"])
        found = mailparse.headers_from_bytes(raw.partition(b"\r\n\r\n")[0], folder=Folder.INBOX,
                                             provider_id="", excerpt_chars=0)
        if message_id and found.message_id != message_id.strip():
            return None
        content_hash, body = compose.read_draft(raw)
        return Observation(Presence.PRESENT, content_hash=content_hash, body=body,
                           version=version_of(validity, uid, data))

    def versions(self, known: Mapping[str, str]) -> dict[str, str]:
        wanted: dict[int, str] = {}
        with self._session("check the drafts") as client:
            drafts = self._drafts(client)
            validity = self._select(client, drafts, readonly=True)
            for provider_id in known:
                old_validity, uid = parse_provider_id(provider_id)
                if old_validity == validity:
                    wanted[uid] = provider_id
            if not wanted:
                return {}
            fetched = client.fetch(sorted(wanted), self._draft_items(client))
        return {
            wanted[uid]: version_of(validity, uid, data)
            for uid, data in fetched.items()
            if uid in wanted and b"\\Deleted" not in data.get(b"FLAGS", ())
        }

    def _fetch_whole(self, client: IMAPClient, uid: int) -> bytes | None:
        data = client.fetch([uid], ["BODY.PEEK[]", "FLAGS"]).get(uid)
        if not data or b"\\Deleted" in data.get(b"FLAGS", ()):
            return None
        raw = data.get(b"BODY[]")
        return bytes(raw) if raw is not None else None

    def _sent_candidates(
        self, client: IMAPClient, hint: SentHint | None
    ) -> tuple[SentCandidate, ...]:
        """With Sent selected: the mail in it to the hinted recipient since about the draft's
        creation, for the core to compare with the draft."""
        if hint is None or not hint.recipient:
            return ()
        # The user's program may send its own copy under a new Message-ID. The server narrows
        # Sent to mail to this recipient (a day of slack: SINCE is a date in the server's
        # time zone); subject, thread and time are compared by the core, since SEARCH SUBJECT
        # is a substring match and knows nothing of "Re:".
        uids = client.search(["SINCE", (hint.since - timedelta(days=1)).date(),
                              "TO", hint.recipient])  # fmt: skip
        found: list[SentCandidate] = []
        for start in range(0, len(uids), FETCH_CHUNK):
            fetched = client.fetch(uids[start : start + FETCH_CHUNK], ["BODY.PEEK[HEADER]"])
            for uid, data in fetched.items():
                headers = mailparse.headers_from_bytes(
                    bytes(data.get(b"BODY[HEADER]") or b""),
                    folder=Folder.SENT,
                    provider_id=str(uid),
                    excerpt_chars=0,
                )
                found.append(sent_candidate(headers))
        return tuple(found)

    def update_draft(self, provider_id: str, draft: DraftMessage) -> str:
        new_id = self.create_draft(draft)
        validity, uid = parse_provider_id(provider_id)
        new_validity, new_uid = parse_provider_id(new_id)
        with self._session("remove the replaced draft") as client:
            drafts = self._drafts(client)
            current = self._select(client, drafts, readonly=False)
            if current == validity:
                self._remove_uid(client, uid)
            if current == new_validity:
                # A crash between an earlier APPEND and its removal left a copy of this very
                # text: remove it too. Copies that say anything else are the user's.
                for other in self._uids_with_message_id(client, draft.message_id):
                    if other in (uid, new_uid):
                        continue
                    raw = self._fetch_whole(client, other)
                    if raw is not None and compose.read_draft(raw)[0] == draft.content_hash:
                        self._remove_uid(client, other)
        return new_id

    def retract(self, provider_id: str) -> None:
        validity, uid = parse_provider_id(provider_id)
        with self._session("move a draft to Trash") as client:
            drafts = self._drafts(client)
            if self._select(client, drafts, readonly=False) != validity:
                raise ProviderError(
                    f"account {self.account.name!r}: Drafts was renumbered (UIDVALIDITY "
                    "changed); observe the draft again before removing it"
                )
            if not client.search(["UID", str(uid)]):
                return  # already gone: retracting twice is harmless
            trash = self._folder(client, "trash")
            if trash is not None and trash != self._folders_drafts_name():
                if client.has_capability("MOVE"):
                    client.move([uid], trash)
                    return
                client.copy([uid], trash)
            self._remove_uid(client, uid)

    def _folders_drafts_name(self) -> str | None:
        return (self._folders or {}).get("drafts")

    def _remove_uid(self, client: IMAPClient, uid: int) -> None:
        """Delete exactly one UID; without UIDPLUS it stays flagged \\Deleted (never EXPUNGE)."""
        client.add_flags([uid], [b"\\Deleted"], silent=True)
        if client.has_capability("UIDPLUS"):
            client.uid_expunge([uid])

    # reading mail

    def messages(self, cursor: str | None, since: datetime) -> MessageBatch:
        states = load_cursor(cursor)
        found: list[MailHeaders] = []
        if cursor is None:  # a full listing (daily) looks for folders made since, as Archive
            self._folders = None
        with self._session("read new mail") as client:
            roles: list[tuple[Folder, str]] = [(Folder.INBOX, self.settings.inbox_folder)]
            # A reply the user archived before the pass is still a reply.
            archive = self._folder(client, "archive")
            if archive is not None and archive != self.settings.inbox_folder:
                roles.append((Folder.INBOX, archive))
            sent = self._folder(client, "sent")
            if sent is not None:
                roles.append((Folder.SENT, sent))
            for folder, name in roles:
                # Ids of the inbox's and Sent's messages are UIDVALIDITY:UID, as they always
                # were; those of another folder read in the inbox's role name the folder too.
                prefix = f"{name}/" if name == archive else ""
                state, headers = self._new_in(client, name, folder, states.get(name), since,
                                              prefix)
                states[name] = state
                found.extend(headers)
            self._inbox_next = states[self.settings.inbox_folder].uidnext
        return MessageBatch(messages=tuple(found), cursor=dump_cursor(states))

    def _new_in(
        self,
        client: IMAPClient,
        name: str,
        folder: Folder,
        known: FolderState | None,
        since: datetime,
        prefix: str = "",
    ) -> tuple[FolderState, list[MailHeaders]]:
        if known is None:
            # First pass: EXAMINE alone tells UIDVALIDITY and UIDNEXT; a STATUS before it
            # would make the server open a large folder twice.
            info = client.select_folder(name, readonly=True)
            now = self._state(client, name, info)
            uids = self._stored_since(client, info, since)
        else:
            now = self._state(client, name)
            # A folder restored from a backup keeps its UIDVALIDITY but goes back: its UIDNEXT
            # or HIGHESTMODSEQ is lower than we read, and new mail takes UIDs we passed.
            went_back = now.uidnext < known.uidnext or 0 < now.modseq < known.modseq
            if known.uidvalidity == now.uidvalidity and not went_back:
                if known.uidnext == now.uidnext:
                    return now, []  # nothing new: one STATUS, no SELECT
                self._select(client, name, readonly=True)
                uids = [u for u in client.search(["UID", f"{known.uidnext}:*"])
                        if u >= known.uidnext]
            else:  # renumbered or gone back: as on a first pass
                info = client.select_folder(name, readonly=True)
                uids = self._stored_since(client, info, since)
        headers = self._headers(client, sorted(uids), folder, f"{prefix}{now.uidvalidity}")
        next_uid = max([now.uidnext, *(u + 1 for u in uids)])
        return replace(now, uidnext=next_uid), headers

    def _state(
        self, client: IMAPClient, name: str, selected: Mapping[bytes, Any] | None = None
    ) -> FolderState:
        """The folder's UIDVALIDITY, UIDNEXT and HIGHESTMODSEQ: from the EXAMINE just done
        when it told them, else from STATUS."""
        found: Mapping[bytes, Any] = selected or {}
        if b"UIDVALIDITY" not in found or b"UIDNEXT" not in found:
            condstore = client.has_capability("CONDSTORE")
            what = [b"UIDVALIDITY", b"UIDNEXT"] + ([b"HIGHESTMODSEQ"] if condstore else [])
            found = client.folder_status(name, what)
        return FolderState(
            int(found[b"UIDVALIDITY"]),
            int(found[b"UIDNEXT"]),
            int(found.get(b"HIGHESTMODSEQ", 0)),
        )

    def _stored_since(
        self, client: IMAPClient, selected: Mapping[bytes, Any], since: datetime
    ) -> list[int]:
        # Find the first message stored inside the look-back window by bisecting INTERNALDATE
        # over sequence numbers (a few small FETCHes), not a server-side SEARCH SINCE that reads
        # the whole folder. A day of slack for servers that store the date in their own time
        # zone.
        exists = int(selected.get(b"EXISTS", 0))
        return uids_stored_since(client, exists, since - timedelta(days=1))

    def _headers(
        self, client: IMAPClient, uids: list[int], folder: Folder, place: str
    ) -> list[MailHeaders]:
        """The messages ``uids``, with ids ``PLACE:UID`` (``place``: [FOLDER/]UIDVALIDITY)."""
        result: list[MailHeaders] = []
        for start in range(0, len(uids), FETCH_CHUNK):
            chunk = uids[start : start + FETCH_CHUNK]
            fetched = client.fetch(chunk, ["BODY.PEEK[HEADER]", "BODYSTRUCTURE", "FLAGS"])
            texts = self._excerpts(client, fetched)
            for uid in chunk:
                data = fetched.get(uid)
                if data is None:  # expunged meanwhile
                    continue
                parsed = mailparse.headers_from_bytes(
                    bytes(data.get(b"BODY[HEADER]") or b""),
                    folder=folder,
                    provider_id=f"{place}:{uid}",
                    excerpt_chars=0,
                )
                result.append(
                    replace(
                        parsed,
                        part_types=mailparse.clean_part_types(
                            part_types(data.get(b"BODYSTRUCTURE"))
                        ),
                        hints=mailparse.clean_hints(
                            ("imap.keyword", _text(flag))
                            for flag in data.get(b"FLAGS", ())
                            if not _text(flag).startswith("\\")  # keywords, not system flags
                        ),
                        excerpt=texts.get(uid, ""),
                    )
                )
        return result

    def _excerpts(self, client: IMAPClient, fetched: dict[int, Any]) -> dict[int, str]:
        """The start of each message's first text part: one FETCH per distinct part number."""
        wanted: dict[str, list[int]] = {}
        described: dict[int, tuple[str, str, str, str]] = {}
        for uid, data in fetched.items():
            structure = data.get(b"BODYSTRUCTURE")
            part = first_text_part(structure) if structure else None
            if part is not None:
                described[uid] = part
                wanted.setdefault(part[0], []).append(uid)
        texts: dict[int, str] = {}
        for number, uids in wanted.items():
            item = f"BODY.PEEK[{number}]<0.{EXCERPT_BYTES}>"
            for uid, data in client.fetch(uids, [item]).items():
                chunk = next((v for k, v in data.items() if k.startswith(b"BODY[")), None)
                if chunk and uid in described:
                    _, ctype, charset, encoding = described[uid]
                    texts[uid] = excerpt_from_part(bytes(chunk), ctype, charset, encoding)
        return texts


def uids_stored_since(client: IMAPClient, exists: int, since: datetime) -> list[int]:
    """The UIDs of the selected folder's messages from the first one stored at ``since`` on.

    Messages are numbered in the order they were stored, so INTERNALDATE grows with the
    sequence number (a message copied in later with an old date is after the point, and kept);
    about log2(EXISTS) FETCHes of one date each find the point, one FETCH of UIDs the rest.
    """
    if exists < 1:
        return []
    at = since.astimezone().replace(tzinfo=None)  # imapclient gives local, naive dates
    low, high = 1, exists + 1
    client.use_uid = False  # sequence numbers for the bisection, UIDs again below
    try:
        while low < high:
            middle = (low + high) // 2
            stored = client.fetch([middle], ["INTERNALDATE"]).get(middle, {}).get(b"INTERNALDATE")
            if isinstance(stored, datetime) and stored.replace(tzinfo=None) < at:
                low = middle + 1
            else:
                high = middle
        found: list[int] = []
        for start in range(low, exists + 1, FETCH_CHUNK):
            numbers = list(range(start, min(start + FETCH_CHUNK, exists + 1)))
            fetched = client.fetch(numbers, ["UID"])
            found.extend(int(data[b"UID"]) for data in fetched.values() if b"UID" in data)
    finally:
        client.use_uid = True
    return sorted(found)


def open_mailbox(account: AccountSettings) -> ImapMailbox:
    return ImapMailbox(account)


# --- push ------------------------------------------------------------------------------


def watch(
    account: AccountSettings,
    on_change: Callable[[], None],
    stop: threading.Event,
    *,
    connector: Callable[[], IMAPClient] | None = None,
) -> None:
    """Call ``on_change()`` when mail arrives in the inbox, until ``stop`` is set (the
    blocking form of `subscribe`)."""
    unsubscribe = subscribe(account, on_change, connector=connector)
    try:
        stop.wait()
    finally:
        unsubscribe()


def subscribe(
    account: AccountSettings,
    on_change: Callable[[], None],
    *,
    connector: Callable[[], IMAPClient] | None = None,
) -> Callable[[], None]:
    """Call ``on_change()`` when mail arrives in the inbox; returns the function that ends it
    (and closes the account's IDLE connection). No thread of its own: one shared thread waits
    on every account's IDLE socket (`_IdleHub`).

    IDLE renewed every 24 minutes and after any error; NOOP every 60 s where the server has no
    IDLE. The account's `ImapMailbox` borrows this connection for its passes (so the account
    holds one). After a reconnect ``on_change()`` is called once, since mail may have arrived
    while the connection was down (the cursor of ``messages`` finds it).
    """
    imap = _settings(account)
    make = connector or RememberedPassword(account).connect
    hub = _hub()
    watcher = _Watcher(hub, account.name, imap, on_change, make)
    with _shared_lock:
        _shared[(account.name, imap)] = watcher
    return hub.add(watcher)


def _push_watcher(account: AccountSettings, imap: ImapSettings) -> _Watcher | None:
    """The account's live subscription, whose connection its mailbox borrows for a pass."""
    with _shared_lock:
        watcher = _shared.get((account.name, imap))
    if watcher is None or watcher.ended or not watcher.hub.thread.is_alive():
        return None
    return watcher


def _wait_in_inbox(client: IMAPClient, imap: ImapSettings) -> tuple[bool, int | None, bool]:
    """EXAMINE the inbox and IDLE where the server can: (idling, the inbox's UIDNEXT, mail
    stored between the EXAMINE and the IDLE was reported as IDLE began)."""
    info = client.select_folder(imap.inbox_folder, readonly=True)
    idling = imap.idle and client.has_capability("IDLE")
    told = _start_idle(client) if idling else False
    uidnext = info.get(b"UIDNEXT")
    return idling, int(uidnext) if uidnext is not None else None, told


def _start_idle(client: IMAPClient) -> bool:
    """IDLE (as ``client.idle()``), and whether the server reported new mail as it began.

    Dovecot answers "+ idling" and, for mail stored since the last command, "* n EXISTS" in
    the same packet: imaplib reads both into its buffer, so the socket never turns readable
    for the EXISTS and the hub would wait for the next one. Other servers may send it before
    the "+", which ``client.idle()`` takes for an error. Both are read here."""
    raw: Any = client._imap  # imaplib.IMAP4 underneath imapclient
    tag = raw._command("IDLE")
    client._idle_tag = tag  # what ``idle_done()`` ends
    told: list[Any] = []
    while (line := raw._get_response()) is not None:  # None: the "+" continuation
        if raw.tagged_commands.get(tag):
            typ, data = raw.tagged_commands.pop(tag)
            raise IMAPClientError(f"IDLE refused: {typ} {data!r}")
        told.append(_parse_untagged_response(line))
    return _arrived(told) or _arrived(_read_already(client))


def _read_already(client: IMAPClient) -> list[Any]:
    """The responses that can be read without waiting, those in imaplib's (or TLS's) buffer
    first: ``client.idle_check`` looks at the socket only, which does not show them."""
    raw: Any = client._imap
    sock = client.socket()
    sock.setblocking(False)
    responses: list[Any] = []
    try:
        while True:
            try:
                line = raw._get_line()
            except OSError:  # nothing more (BlockingIOError, SSLWantReadError)
                break
            except IMAPClientAbortError as exc:
                if "EOF" not in str(exc):  # imaplib's word for an empty non-blocking read
                    raise
                break
            responses.append(_parse_untagged_response(line))
    finally:
        sock.setblocking(True)
        client._set_read_timeout()
    return responses


def backoff(failures: int, *, base: float = 1.0, cap: float = 300.0) -> float:
    """Exponential backoff with full jitter: a fleet of clients does not reconnect in step."""
    return random.uniform(base / 2, retry.exponential(failures + 1, base, cap))


def _arrived(responses: Sequence[Any]) -> bool:
    return any(len(r) >= 2 and r[1] in (b"EXISTS", b"RECENT") for r in responses)


CONNECTORS = 4  # threads that log in, renew IDLE and NOOP-poll for every account together
EMPTY_READS = 3  # readable with nothing in it this often in a row: the server hung up


class _Watcher:
    """One account's connection: idling for push between passes, lent to the account's
    `ImapMailbox` during a pass. Its fields are changed only in the hub's thread; while
    ``busy`` a connector thread holds the connection, while ``lent`` a pass does, and the hub
    leaves it alone."""

    def __init__(self, hub: _IdleHub, name: str, imap: ImapSettings,
                 on_change: Callable[[], None], connector: Callable[[], IMAPClient]) -> None:
        self.hub = hub
        self.name = name
        self.imap = imap
        self.on_change = on_change
        self.connector = connector
        self.client: IMAPClient | None = None
        self.idling = False
        self.busy = False
        self.lent = False
        self.waiting: deque[_Loan] = deque()  # passes asking for the connection meanwhile
        self.uidnext: int | None = None  # the inbox's UIDNEXT when last selected or read
        self.ended = False
        self.connected_before = False
        self.quiet_reconnect = False  # the next connect follows a pass that lost the connection
        self.failures = 0
        self.empty_reads = 0
        self.generation = 0  # timers of an older generation are stale


class _Loan:
    """A pass's request for its account's connection, answered once by the hub's thread.

    ``shared`` False: no subscription any more, the pass keeps a connection of its own. A
    pass that stopped waiting (``abandoned``) is not handed the connection afterwards."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ready = threading.Event()
        self.abandoned = False
        self.client: IMAPClient | None = None
        self.idling = False
        self.shared = False

    def give(self, client: IMAPClient | None, *, idling: bool = False,
             shared: bool = True) -> None:
        """Hand ``client`` over (the hub's thread, holding ``lock``, the pass still waiting)."""
        self.client, self.idling, self.shared = client, idling, shared
        self.ready.set()


class _IdleHub:
    """Every account's IDLE connection in one thread: an epoll selector over the sockets,
    woken by the server (mail arrived), by a timer (renew IDLE, NOOP poll, reconnect) or by a
    wake-up socket (work handed over by other threads).

    What may block on the network (log-in, DONE + IDLE, NOOP) runs in a few connector
    threads, so a slow or unreachable server never holds up the other accounts: the hub
    itself only reads what a readable socket holds and closes sockets.
    """

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._wake_in, self._wake_out = socket.socketpair()
        self._wake_in.setblocking(False)
        self._wake_out.setblocking(False)
        self._selector.register(self._wake_in, selectors.EVENT_READ, None)
        self._lock = threading.Lock()
        self._calls: deque[Callable[[], None]] = deque()
        self._timers: list[tuple[float, int, _Watcher, int, Callable[[_Watcher], None]]] = []
        self._order = itertools.count()
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._connectors: list[threading.Thread] = []
        self.thread = threading.Thread(target=self._run, name="imap-idle", daemon=True)
        self.thread.start()

    # other threads

    def add(self, watcher: _Watcher) -> Callable[[], None]:
        self.call_soon(lambda: self._connect(watcher))
        done = threading.Event()

        def unsubscribe() -> None:
            def end() -> None:
                self._end(watcher)
                done.set()

            if threading.current_thread() is self.thread:
                end()
            else:
                self.call_soon(end)
                done.wait(5)  # the hub only closes a socket: quick unless it is wedged

        return unsubscribe

    def lend(self, watcher: _Watcher, patience: float) -> _Loan:
        """The account's connection for one pass (its `ImapMailbox` asks): out of the hub's
        hands until `take_back`, still in IDLE when ``idling`` (the pass sends DONE in its own
        thread). Waits at most ``patience`` seconds while a connector thread holds it."""
        loan = _Loan()
        self.call_soon(lambda: self._lend(watcher, loan))
        if not loan.ready.wait(patience):
            with loan.lock:
                if not loan.ready.is_set():
                    loan.abandoned = True
                    raise ProviderError(
                        f"account {watcher.name!r}: the IMAP connection was not free within "
                        f"{patience:.0f} s (the push watcher is logging in or renewing IDLE); "
                        "will retry")
        return loan

    def take_back(self, watcher: _Watcher, client: IMAPClient | None,
                  seen_uidnext: int | None) -> None:
        """The pass is over: the connection (None when the pass lost it) goes back to the
        inbox and IDLE. ``seen_uidnext``: the inbox's UIDNEXT as the pass last read it, so
        mail that arrived after that read still wakes the account."""
        self.call_soon(lambda: self._taken_back(watcher, client, seen_uidnext))

    def call_soon(self, call: Callable[[], None]) -> None:
        with self._lock:
            self._calls.append(call)
        with suppress(BlockingIOError):  # a wake-up already waiting is enough
            self._wake_out.send(b"\0")

    def _in_connector(self, job: Callable[[], None]) -> None:
        self._jobs.put(job)
        with self._lock:
            self._connectors = [t for t in self._connectors if t.is_alive()]
            if len(self._connectors) < CONNECTORS:
                thread = threading.Thread(target=self._serve_jobs, daemon=True,
                                          name=f"imap-connect-{len(self._connectors) + 1}")
                thread.start()
                self._connectors.append(thread)

    def _serve_jobs(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                job()
            except Exception:  # noqa: BLE001 - one account's trouble must not end the thread
                log.exception("IMAP push: unexpected error")

    # the hub's thread

    def _run(self) -> None:
        while True:
            timeout = None
            if self._timers:
                timeout = max(0.0, self._timers[0][0] - time.monotonic())
            for key, _ in self._selector.select(timeout):
                if key.data is None:
                    with suppress(BlockingIOError):
                        self._wake_in.recv(4096)
                else:
                    self._guarded(self._readable, key.data)
            with self._lock:
                calls, self._calls = self._calls, deque()
            for call in calls:
                self._guarded(_call, call)
            now = time.monotonic()
            while self._timers and self._timers[0][0] <= now:
                _, _, watcher, generation, action = heapq.heappop(self._timers)
                if generation == watcher.generation and not watcher.ended:
                    self._guarded(action, watcher)

    def _guarded(self, action: Callable[[Any], None], subject: Any) -> None:
        try:
            action(subject)
        except Exception:  # noqa: BLE001 - the hub serves every account: it must go on
            log.exception("IMAP push: unexpected error")
            if isinstance(subject, _Watcher):
                self._broken(subject)

    def _after(self, seconds: float, watcher: _Watcher,
               action: Callable[[_Watcher], None]) -> None:
        heapq.heappush(self._timers, (time.monotonic() + seconds, next(self._order), watcher,
                                      watcher.generation, action))

    def _connect(self, watcher: _Watcher) -> None:
        # Lent already (a pass asked before the first log-in came round): the connection the
        # pass gives back is the account's; a second one would idle unheard beside it.
        if watcher.ended or watcher.lent:
            return
        watcher.busy = True

        def job() -> None:
            client: IMAPClient | None = None
            try:
                client = watcher.connector()
                idling, uidnext, told = _wait_in_inbox(client, watcher.imap)
            except AuthError:
                failure = 6  # wrong credentials: do not hammer the server
            except (ProviderError, OSError, IMAPClientError):
                failure = 0
            else:
                self.call_soon(lambda: self._connected(watcher, client, idling, uidnext,
                                                       arrived=told or None))
                return
            if client is not None:
                _shut(client)
            self.call_soon(lambda: self._failed(watcher, failure))

        self._in_connector(job)

    def _connected(self, watcher: _Watcher, client: IMAPClient | None, idling: bool,
                   uidnext: int | None, *, arrived: bool | None = None) -> None:
        """The connection idles (or polls) in the inbox: a new one (``arrived`` None, unless
        IDLE began with new mail), or one a pass gave back (``arrived``: mail came after the
        pass read the inbox)."""
        watcher.busy = False
        if watcher.ended or client is None:
            if client is not None:
                _shut(client)
            self._settled(watcher)
            return
        watcher.client, watcher.idling, watcher.uidnext = client, idling, uidnext
        watcher.failures = watcher.empty_reads = 0
        watcher.generation += 1
        self._listen(watcher)
        if arrived is None:
            # After a reconnect, mail may have come while nobody watched; not so when a pass
            # lost the connection: that pass failed, and its retry reads the inbox.
            arrived = watcher.connected_before and not watcher.quiet_reconnect
        # Spent by any connection that settles: a reconnect after a later loss wakes.
        watcher.quiet_reconnect = False
        watcher.connected_before = True  # a connection a pass gave back counts too
        if arrived:
            self._tell(watcher)
        self._settled(watcher)

    def _lend(self, watcher: _Watcher, loan: _Loan) -> None:
        with loan.lock:
            if loan.abandoned:
                return
            if watcher.ended:
                loan.give(None, shared=False)
                return
            if watcher.busy or watcher.lent:
                watcher.waiting.append(loan)
                return
            # Without a connection (a reconnect pending) the pass makes one, and gives it back.
            self._unlisten(watcher)  # its renew, poll or reconnect timer no longer applies
            client, watcher.client = watcher.client, None
            watcher.lent = True
            loan.give(client, idling=watcher.idling and client is not None)

    def _settled(self, watcher: _Watcher) -> None:
        """The hub's work on the connection is done: the next waiting pass may have it."""
        while watcher.waiting and (watcher.ended or not (watcher.busy or watcher.lent)):
            self._lend(watcher, watcher.waiting.popleft())

    def _taken_back(self, watcher: _Watcher, client: IMAPClient | None,
                    seen_uidnext: int | None) -> None:
        watcher.lent = False
        if watcher.ended or client is None:
            if client is not None:
                _shut(client)
            elif not watcher.ended:
                watcher.quiet_reconnect = True
                watcher.failures += 1
                watcher.generation += 1
                self._after(backoff(watcher.failures), watcher, self._connect)
            self._settled(watcher)
            return
        # Mail stored after the pass read the inbox raises its UIDNEXT: that wakes the
        # account (IDLE reports only what arrives after the EXAMINE). Unknown what the pass
        # saw: wake (a spurious pass is cheap, a lost one late by a poll interval).
        known = seen_uidnext if seen_uidnext is not None else watcher.uidnext
        watcher.busy = True

        def job() -> None:
            try:
                idling, uidnext, told = _wait_in_inbox(client, watcher.imap)
            except (OSError, IMAPClientError):
                _shut(client)
                self.call_soon(lambda: self._failed(watcher, 0))
            else:
                arrived = told or (uidnext is not None and (known is None or uidnext > known))
                self.call_soon(lambda: self._connected(watcher, client, idling, uidnext,
                                                       arrived=arrived))

        self._in_connector(job)

    def _listen(self, watcher: _Watcher) -> None:
        if watcher.idling and watcher.client is not None:
            self._selector.register(watcher.client.socket(), selectors.EVENT_READ, watcher)
            self._after(IDLE_RENEW, watcher, self._renew)
        else:
            self._after(POLL_INTERVAL, watcher, self._poll)

    def _failed(self, watcher: _Watcher, at_least: int) -> None:
        watcher.busy = False
        watcher.quiet_reconnect = False  # nobody watches until the retry: it wakes the account
        if not watcher.ended:
            watcher.failures = max(watcher.failures, at_least) + 1
            watcher.generation += 1
            self._after(backoff(watcher.failures), watcher, self._connect)
        self._settled(watcher)

    def _readable(self, watcher: _Watcher) -> None:
        client = watcher.client
        if client is None or watcher.busy:
            return
        try:
            responses = client.idle_check(timeout=0)
        except (OSError, IMAPClientError):
            self._broken(watcher)
            return
        if _arrived(responses):
            self._renew(watcher, tell=True)
            return
        # Readable with nothing in it, again and again: the server closed the connection
        # (imapclient swallows the EOF in idle_check).
        watcher.empty_reads = watcher.empty_reads + 1 if not responses else 0
        if watcher.empty_reads >= EMPTY_READS:
            self._broken(watcher)

    def _renew(self, watcher: _Watcher, *, tell: bool = False) -> None:
        """DONE and IDLE again (in a connector thread): every IDLE_RENEW, and after mail
        arrived, so whatever else the server said with it is read before ``on_change``."""
        client = watcher.client
        if client is None:
            return
        self._unlisten(watcher)
        watcher.busy = True

        def job() -> None:
            try:
                _, responses = client.idle_done()
                told = _start_idle(client)
            except (OSError, IMAPClientError):
                self.call_soon(lambda: self._lost(watcher))
            else:
                changed = tell or told or _arrived(responses)
                self.call_soon(lambda: self._resumed(watcher, changed))

        self._in_connector(job)

    def _poll(self, watcher: _Watcher) -> None:
        client = watcher.client
        if client is None:
            return
        watcher.busy = True

        def job() -> None:
            try:
                _, responses = client.noop()
            except (OSError, IMAPClientError):
                self.call_soon(lambda: self._lost(watcher))
            else:
                self.call_soon(lambda: self._resumed(watcher, _arrived(responses)))

        self._in_connector(job)

    def _resumed(self, watcher: _Watcher, changed: bool) -> None:
        watcher.busy = False
        if watcher.ended:
            self._end(watcher)
            return
        watcher.empty_reads = 0
        watcher.generation += 1
        self._listen(watcher)
        if changed:
            self._tell(watcher)
        self._settled(watcher)

    def _lost(self, watcher: _Watcher) -> None:
        watcher.busy = False
        self._broken(watcher)

    def _tell(self, watcher: _Watcher) -> None:
        try:
            watcher.on_change()
        except Exception:  # noqa: BLE001 - the subscriber's trouble, not the connection's
            log.exception("%s: IMAP push: on_change failed", watcher.name)

    def _unlisten(self, watcher: _Watcher) -> None:
        watcher.generation += 1  # its renew or poll timer no longer applies
        if watcher.client is not None and watcher.idling:
            with suppress(KeyError, ValueError, OSError):
                self._selector.unregister(watcher.client.socket())

    def _broken(self, watcher: _Watcher) -> None:
        """Drop the connection and reconnect after a backoff."""
        if watcher.busy or watcher.lent:
            return  # its connector thread or its pass reports back
        self._drop(watcher)
        if not watcher.ended:
            watcher.failures += 1
            self._after(backoff(watcher.failures), watcher, self._connect)
        self._settled(watcher)

    def _drop(self, watcher: _Watcher) -> None:
        self._unlisten(watcher)
        if watcher.client is not None:
            client, watcher.client = watcher.client, None
            _shut(client)

    def _end(self, watcher: _Watcher) -> None:
        watcher.ended = True
        if not watcher.busy:  # else the connector thread's report (or the pass's) closes it
            self._drop(watcher)
        self._settled(watcher)  # a waiting pass keeps a connection of its own


def _call(call: Callable[[], None]) -> None:
    call()


def _shut(client: IMAPClient) -> None:
    """Close the socket at once, without LOGOUT: no waiting on the server in the hub."""
    with suppress(Exception):  # already broken: nothing to report
        client.shutdown()


_hub_lock = threading.Lock()
_the_hub: _IdleHub | None = None
# Each subscribed account's watcher, by account name and settings: its mailbox borrows the
# connection. Weak: an ended subscription leaves nothing behind.
_shared: weakref.WeakValueDictionary[tuple[str, ImapSettings], _Watcher] = (
    weakref.WeakValueDictionary())
_shared_lock = threading.Lock()


def _hub() -> _IdleHub:
    global _the_hub
    with _hub_lock:
        if _the_hub is None or not _the_hub.thread.is_alive():
            _the_hub = _IdleHub()
        return _the_hub
