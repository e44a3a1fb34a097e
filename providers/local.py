"""The local provider: a calendar from `.ics` files, drafts in a Maildir.

calendar (``calendar.kind = "file"``)
    ``calendar.path`` is one ``.ics`` file or a folder of them. Any change to the files (their
    names, sizes, modification times) makes the next sync a complete listing of the window;
    otherwise a sync costs a few ``stat`` calls and reports nothing.
mailbox (``provider = "local"``)
    ``maildir.path`` is a Maildir as mutt, neomutt, aerc, notmuch and mbsync use it. INBOX is
    the root (``cur``/``new``/``tmp``); Drafts, Sent and Trash are Maildir++ subfolders
    (``.Drafts``) or, as mbsync's ``SubFolders Verbatim`` writes them, plain ones (``Drafts``).
    Drafts are written to Drafts/cur with the ``D`` (draft) and ``S`` (seen) flags; the
    provider id is the message's Maildir key. Retraction moves the file to Trash. Sent
    detection looks for the draft's Message-ID in Sent. The message cursor is the newest file
    modification time seen per folder, with the keys seen at exactly that time.
"""

from __future__ import annotations

import contextlib
import email
import email.parser
import email.policy
import hashlib
import json
import mailbox as stdlib_mailbox
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated

from mailbridge.adapters import FolderMissing, ProviderConfig, ProviderError
from mailbridge.compose import read_draft
from mailbridge.config import FORBID, LocalPath, doc
from mailbridge.mailparse import headers_from_bytes
from mailbridge.model import (
    CalendarBatch,
    DraftMessage,
    Folder,
    MailHeaders,
    MessageBatch,
    Observation,
    Presence,
    SentHint,
    Unreadable,
    Window,
)
from mailbridge.settings import AccountSettings

from .ics import events_from_ics

# --- settings: the account's maildir = {...} table, and calendar kind "file" ------------------


@dataclass(frozen=True)
class MaildirSettings:
    __pydantic_config__ = FORBID
    path: Annotated[LocalPath, doc("the Maildir your mail program reads (INBOX is its root)",
                                   "~/Maildir")]


@dataclass(frozen=True)
class FileCalendarSettings:
    __pydantic_config__ = FORBID
    path: Annotated[LocalPath, doc("an .ics file, or a folder of them", "~/calendar")]


def _check_maildir(account: AccountSettings) -> str | None:
    maildir = account.settings_of(MaildirSettings)
    if maildir and not Path(maildir.path).expanduser().is_dir():
        return f"maildir.path {maildir.path} does not exist"
    return None


def _check_calendar(account: AccountSettings) -> str | None:
    own = account.calendar.settings_of(FileCalendarSettings)
    if own and not Path(own.path).expanduser().exists():
        return f"calendar.path {own.path} does not exist"
    return None


CONFIG = ProviderConfig(
    table="maildir", settings=MaildirSettings, used_by=("mailbox.local",),
    calendars={"file": FileCalendarSettings}, starter_calendar="file",
    check_mailbox=_check_maildir, check_calendar=_check_calendar)

FOLDER_NAMES = {
    "drafts": ("Drafts", "Draft", "drafts"),
    "sent": ("Sent", "Sent Items", "Sent Messages", "sent"),
    "trash": ("Trash", "Deleted Items", "Deleted Messages", "trash"),
}


# --- calendar ------------------------------------------------------------------------------


class FileCalendar:
    def __init__(self, path: Path, own_addresses: tuple[str, ...]) -> None:
        self.path = path
        self.own_addresses = own_addresses

    def _files(self) -> list[Path]:
        if self.path.is_file():
            return [self.path]
        if self.path.is_dir():
            return sorted(p for p in self.path.rglob("*.ics") if p.is_file())
        raise ProviderError(f"calendar path {self.path} does not exist")

    def changes(self, cursor: str | None, window: Window) -> CalendarBatch:
        files = self._files()
        digest = hashlib.sha256()
        for file in files:
            st = file.stat()
            digest.update(f"{file}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        state = json.dumps(
            {"files": digest.hexdigest(), "window": window.start.date().isoformat()}
        )
        if cursor == state:
            return CalendarBatch(events=(), complete=False, cursor=cursor)
        events = []
        skipped: list[Unreadable] = []
        for file in files:
            calendar_id = str(file.relative_to(self.path)) if self.path.is_dir() else file.name
            try:
                data = file.read_bytes()
                events.extend(events_from_ics(data, calendar_id, window, self.own_addresses,
                                              skipped=skipped))
            except OSError as exc:
                skipped.append(Unreadable(f"file {file}", exc.strerror or type(exc).__name__))
            except ProviderError as exc:
                # One unreadable file must not hide the others (a login page saved as .ics).
                skipped.append(Unreadable(f"file {file}", str(exc)))
        return CalendarBatch(events=tuple(events), complete=True, cursor=state,
                             skipped=tuple(skipped))

    def close(self) -> None:
        pass


# --- mailbox -------------------------------------------------------------------------------


class MaildirMailbox:
    def __init__(self, root: Path) -> None:
        self.root = root
        if not (root / "cur").is_dir():
            raise FolderMissing(f"{root} is not a Maildir (no cur/ folder)")
        self.inbox = stdlib_mailbox.Maildir(root, factory=None, create=False)
        fresh = not any(self._find(names) for names in FOLDER_NAMES.values())
        if fresh:
            # A brand-new Maildir: make the standard folders, as a mail client would.
            for names in FOLDER_NAMES.values():
                self.inbox.add_folder(names[0])
        drafts = self._find(FOLDER_NAMES["drafts"])
        if drafts is None:
            raise FolderMissing(f"{root} has no Drafts folder")
        self.drafts = drafts
        self.sent = self._find(FOLDER_NAMES["sent"])
        self.trash = self._find(FOLDER_NAMES["trash"])

    def _find(self, names: tuple[str, ...]) -> stdlib_mailbox.Maildir | None:
        for name in names:
            for candidate in (self.root / ("." + name), self.root / name):
                if (candidate / "cur").is_dir():
                    return stdlib_mailbox.Maildir(candidate, factory=None, create=False)
        return None

    def _check(self) -> None:
        if not Path(self.drafts._path, "cur").is_dir():
            raise FolderMissing(f"the Drafts folder of {self.root} vanished")

    # messages ------------------------------------------------------------------------------

    def messages(self, cursor: str | None, since: datetime) -> MessageBatch:
        state: dict[str, dict[str, object]] = json.loads(cursor) if cursor else {}
        found: list[MailHeaders] = []
        folders = [(Folder.INBOX, self.inbox)]
        if self.sent is not None:
            folders.append((Folder.SENT, self.sent))
        for folder, box in folders:
            mark = state.get(folder.value, {})
            last_ns = int(mark.get("ns", int(since.timestamp() * 1e9)))  # type: ignore[call-overload]
            last_keys = set(mark.get("keys", []))  # type: ignore[call-overload]
            newest, newest_keys = last_ns, set(last_keys)
            for key in box.iterkeys():
                path = Path(box._path, box._lookup(key))  # type: ignore[attr-defined]
                try:
                    ns = path.stat().st_mtime_ns
                except FileNotFoundError:
                    continue  # moved while we looked; the next pass sees it
                if ns < last_ns or (ns == last_ns and key in last_keys):
                    continue
                try:
                    raw = path.read_bytes()
                except FileNotFoundError:
                    continue
                found.append(headers_from_bytes(raw, folder=folder, provider_id=key))
                if ns > newest:
                    newest, newest_keys = ns, {key}
                elif ns == newest:
                    newest_keys.add(key)
            state[folder.value] = {"ns": newest, "keys": sorted(newest_keys)}
        return MessageBatch(messages=tuple(found), cursor=json.dumps(state, sort_keys=True))

    # drafts --------------------------------------------------------------------------------

    def _keys_by_message_id(self, box: stdlib_mailbox.Maildir, message_id: str) -> list[str]:
        found = []
        for key in box.iterkeys():
            try:
                with box.get_file(key) as handle:
                    parsed = email.parser.BytesHeaderParser(policy=email.policy.compat32).parse(
                        handle  # type: ignore[arg-type]
                    )
            except (FileNotFoundError, KeyError):
                continue
            if (parsed.get("Message-ID") or "").strip() == message_id:
                found.append(str(key))
        return found

    def _key_by_message_id(self, box: stdlib_mailbox.Maildir, message_id: str) -> str | None:
        return next(iter(self._keys_by_message_id(box, message_id)), None)

    def find_draft(self, message_id: str) -> str | None:
        self._check()
        return self._key_by_message_id(self.drafts, message_id)

    def create_draft(self, draft: DraftMessage) -> str:
        self._check()
        message = stdlib_mailbox.MaildirMessage(draft.raw)
        message.set_subdir("cur")
        message.set_flags("DS")
        return str(self.drafts.add(message))

    def observe(
        self, provider_id: str, message_id: str, hint: SentHint | None = None
    ) -> Observation:
        self._check()
        key: str | None = provider_id if provider_id in self.drafts else None
        if key is None:
            key = self._key_by_message_id(self.drafts, message_id)  # re-saved by the client
        if key is not None:
            try:
                raw = self.drafts.get_bytes(key)
            except KeyError:
                raw = None
            if raw is not None:
                content_hash, body = read_draft(raw)
                return Observation(Presence.PRESENT, content_hash, key, body)
        if self.sent is not None and self._key_by_message_id(self.sent, message_id):
            return Observation(Presence.SENT)
        return Observation(Presence.GONE)

    def update_draft(self, provider_id: str, draft: DraftMessage) -> str:
        new_key = self.create_draft(draft)
        with contextlib.suppress(KeyError):
            self.drafts.remove(provider_id)
        # A crash between an earlier write and its removal left a copy of this very text:
        # remove it too. Copies that say anything else are the user's.
        for key in self._keys_by_message_id(self.drafts, draft.message_id):
            if key != new_key and read_draft(self.drafts.get_bytes(key))[0] == draft.content_hash:
                with contextlib.suppress(KeyError):
                    self.drafts.remove(key)
        return new_key

    def retract(self, provider_id: str) -> None:
        self._check()
        source = Path(self.drafts._path, self.drafts._lookup(provider_id))  # type: ignore[attr-defined]
        if self.trash is None:
            os.unlink(source)
            return
        target = Path(self.trash._path, "cur", source.name)
        os.replace(source, target)  # same file system: atomic, nothing lost

    def close(self) -> None:
        pass


def open_mailbox(account: AccountSettings) -> MaildirMailbox:
    maildir = account.settings_of(MaildirSettings)
    if maildir is None:
        raise ProviderError(f"account {account.name!r}: provider local needs maildir.path")
    return MaildirMailbox(Path(maildir.path).expanduser())


def open_calendar(account: AccountSettings) -> FileCalendar:
    own = account.calendar.settings_of(FileCalendarSettings)
    if own is None:
        raise ProviderError(f"account {account.name!r}: calendar kind file needs calendar.path")
    return FileCalendar(Path(own.path).expanduser(), account.own_addresses)
