"""The local provider: a calendar from `.ics` files, drafts in a Maildir.

calendar (``calendar.kind = "file"``)
    ``calendar.path`` is one ``.ics`` file or a folder of them. Any change to the files (their
    names, sizes, modification times) makes the next sync a complete listing of the window;
    otherwise a sync costs a ``stat`` per file and reports nothing, or, while the process's
    inotify watcher vouches that nothing changed in a folder (`_Look.holds`), a ``stat`` per
    folder.
mailbox (``provider = "local"``)
    ``maildir.path`` is a Maildir as mutt, neomutt, aerc, notmuch and mbsync use it. INBOX is
    the root (``cur``/``new``/``tmp``); Drafts, Sent and Trash are Maildir++ subfolders
    (``.Drafts``) or, as mbsync's ``SubFolders Verbatim`` writes them, plain ones (``Drafts``).
    Drafts are written to Drafts/cur with the ``D`` (draft) and ``S`` (seen) flags; the
    provider id is the message's Maildir key; its version marker is the file's name (key and
    flags), size and modification time: one stat per waiting draft tells which changed (none
    while the inotify watcher vouches for Drafts, whose writes it records but which wake no
    pass), and Drafts is listed again only when its folder times moved. A file flagged T
    (trashed: IMAP's \\Deleted as mbsync writes it, mutt's ``maildir_trash``) is deleted, as on
    IMAP before the EXPUNGE: no folder counts it. Retraction moves the file to Trash.
    Mail is read in the inbox, in an Archive folder where there is one (a reply the user
    archived before the pass is still a reply) and in Sent.
    ``observe`` looks for the draft's Message-ID in Sent and, with a `SentHint`, reports the
    messages in Sent to the same recipient as candidates (the core decides).
    The message cursor remembers, per folder, the Maildir keys (the unique file names)
    already looked at, never a file time: a message with a wrong modification time (in the
    future, or kept when a client moves it back from Junk) cannot hide another. It is of one
    size whatever the folder holds (the ledger stores it at every pass): the times of the
    folder's new/ and cur/ when it was listed, and 256 bucket fingerprints of the keys. While
    those times stand (and were settled), the folder is not even listed, in this process or
    another. Otherwise a sync lists names and reads only the unseen ones; the exact keys are
    kept in memory, and a new process, which has only the fingerprints, reads again the files
    of the buckets whose fingerprint moved.
"""

from __future__ import annotations

import base64
import contextlib
import email
import email.parser
import email.policy
import enum
import errno
import hashlib
import json
import logging
import mailbox as stdlib_mailbox
import os
import re
import select
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Generic, Self, TypeVar

from mailbridge.adapters import (
    AmbiguousWrite,
    CalendarSource,
    FolderMissing,
    Mailbox,
    ProviderConfig,
    ProviderError,
)
from mailbridge.compose import read_draft
from mailbridge.config import FORBID, LocalPath, doc
from mailbridge.mailparse import date_of_head, headers_from_bytes
from mailbridge.model import (
    CalendarBatch,
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
    Unreadable,
    Window,
)
from mailbridge.settings import AccountSettings

log = logging.getLogger("mailbridge")

HEAD_BYTES = 64 * 1024  # enough for any sane header block: read to find a message's Date

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


CONFIG = ProviderConfig(
    table="maildir", settings=MaildirSettings, used_by=("mailbox.local",),
    calendars={"file": FileCalendarSettings}, starter_calendar="file", default=True)

FOLDER_NAMES = {
    "drafts": ("Drafts", "Draft", "drafts"),
    "sent": ("Sent", "Sent Items", "Sent Messages", "sent"),
    "trash": ("Trash", "Deleted Items", "Deleted Messages", "trash"),
}
# Where a mail program's archive command files mail (mutt/neomutt setups, aerc, Thunderbird's
# "Archives" through mbsync): read with the inbox, never made.
ARCHIVE_NAMES = ("Archive", "Archives", "archive")


# --- calendar ------------------------------------------------------------------------------

_Stamp = tuple[int, int, int]  # a folder's device, inode and modification time
_Kept = TypeVar("_Kept")
# Files of a watched folder are stat'ed one by one at least this often, whatever the watcher
# says (a writer that keeps a file open and never closes it sends no event the watch sees).
_FULL_LOOK_EVERY_NS = 10 * 60 * 1_000_000_000
_MOUNTINFO = "/proc/self/mountinfo"  # where the file system of each folder is read


def _stamp_of(st: os.stat_result) -> _Stamp:
    return st.st_dev, st.st_ino, st.st_mtime_ns


def _folder_stamps(folders: Iterable[str]) -> tuple[_Stamp, ...] | None:
    """The stamps of ``folders``: a file that comes, goes or is renamed (an editor's atomic
    save) moves its folder's time; a folder replaced or mounted over changes its device or
    inode. None when one is unreadable or, as for a Maildir (`_SETTLE_NS`), too recent to
    vouch for a listing."""
    try:
        stamps = tuple(_stamp_of(os.stat(folder)) for folder in folders)
    except OSError:
        return None
    if stamps and time.time_ns() - max(s[2] for s in stamps) < _SETTLE_NS:
        return None
    return stamps



class FileCalendar(CalendarSource):
    config = CONFIG
    reread_every_pass = True  # few stat calls when unchanged: an edit is seen at once
    full_look_every_ns = _FULL_LOOK_EVERY_NS
    mountinfo = _MOUNTINFO

    @classmethod
    def open(cls, account: AccountSettings) -> FileCalendar:
        return open_calendar(account)  # the module's opener builds it

    @classmethod
    def problems(cls, account: AccountSettings) -> list[str]:
        own = account.calendar.settings_of(FileCalendarSettings)
        if own and not Path(own.path).expanduser().exists():
            return [f"calendar.path {own.path} does not exist"]
        return []

    def __init__(self, path: Path, own_addresses: tuple[str, ...], default_tz: str = "UTC") -> None:
        self.path = path
        self.own_addresses = own_addresses
        self.default_tz = default_tz  # a floating time is the user's, as for a feed or CalDAV
        self.full_looks = 0  # looks at every file of a folder (for tests and benches)
        # The last full look (its files and their digest), while the watcher vouches for it.
        self._last: _Look[tuple[list[str], str]] | None = None

    def _files(self) -> tuple[list[str], str]:
        """Every .ics file, and a digest of their names, sizes and times: one stat each (an
        edit in place keeps the folder's own time), unless `_Look.holds` says nothing changed."""
        if self.path.is_file():
            return [str(self.path)], _digest([(str(self.path), self.path.stat())])
        if not self.path.is_dir():
            raise ProviderError(f"calendar path {self.path} does not exist")
        if self._last is not None and self._last.holds(self.full_look_every_ns):
            return self._last.kept
        self.full_looks += 1
        began = time.time_ns()
        mark = _inotify_mark()  # before the listing: an event during it counts
        found: list[tuple[str, os.stat_result]] = []  # text paths: a Path each costs more
        stamps: dict[str, _Stamp] = {}  # every folder of the tree
        linked = unreadable = False
        folders = [str(self.path)]
        while folders:
            folder = folders.pop()
            try:
                stamps[folder] = _stamp_of(os.stat(folder))  # before its listing, as above
                with os.scandir(folder) as entries:
                    for entry in entries:
                        if entry.is_dir(follow_symlinks=False):  # a link loop cannot trap it
                            folders.append(entry.path)
                        elif entry.name.lower().endswith(".ics") and entry.is_file():
                            linked = linked or entry.is_symlink()
                            with contextlib.suppress(OSError):  # gone since the listing
                                found.append((entry.path, entry.stat()))
            except OSError:
                unreadable = True
        found.sort(key=lambda item: item[0])
        files = [name for name, _ in found]
        self._last = None if linked or unreadable else _vouched(
            (files, _digest(found)), began, mark, stamps,
            {os.path.dirname(name) for name in files}, self.mountinfo)
        return files, _digest(found)

    def changes(self, cursor: str | None, window: Window) -> CalendarBatch:
        listed, digest = self._files()
        state = json.dumps({"files": digest, "window": window.start.date().isoformat()})
        if cursor == state:
            return CalendarBatch(events=(), complete=False, cursor=cursor)
        # Imported on the first change only: it brings in icalendar and an HTTP stack, which
        # `mailbridge check` of a thousand local accounts need not wait for.
        from .ics import events_from_ics

        events = []
        skipped: list[Unreadable] = []
        for name in listed:
            file = Path(name)
            calendar_id = str(file.relative_to(self.path)) if self.path.is_dir() else file.name
            try:
                data = file.read_bytes()
                events.extend(events_from_ics(data, calendar_id, window, self.own_addresses,
                                              default_tz=self.default_tz, skipped=skipped))
            except OSError as exc:
                skipped.append(Unreadable(f"file {file}", exc.strerror or type(exc).__name__))
            except ProviderError as exc:
                # One unreadable file must not hide the others (a login page saved as .ics).
                skipped.append(Unreadable(f"file {file}", str(exc)))
        return CalendarBatch(events=tuple(events), complete=True, cursor=state,
                             skipped=tuple(skipped))

    def close(self) -> None:
        pass


def _digest(files: Iterable[tuple[str, os.stat_result]]) -> str:
    digest = hashlib.sha256()
    for name, st in files:
        digest.update(f"{name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class _Look(Generic[_Kept]):
    """What a full look at some folders found (``kept``: a calendar's files, or the markers
    of the waiting drafts), kept only while the process's inotify watcher and the folders'
    file systems can vouch for it (see `holds`); made by `_vouched`."""

    kept: _Kept
    began_ns: int  # wall clock
    folders: tuple[str, ...]  # every folder looked at,
    stamps: tuple[_Stamp, ...]  # as each was before its listing (settled then)
    watcher: _Inotify
    watches: tuple[int, ...]  # of the folders that hold the files
    since: int  # the number of the watcher's last event before the look

    def holds(self, max_age_ns: int) -> bool:
        """Whether nothing in the folders can have changed since the look, so their files
        need no stat: (1) no file came, went or was renamed (every folder's stamp as it was),
        (2) no event came for a folder that holds files (an edit in place), none was lost,
        none waits unread, and every one of those folders is still watched, (3) they are on
        file systems where inotify sees every write (checked when the look was kept), and
        (4) the look is younger than ``max_age_ns``."""
        return (0 <= time.time_ns() - self.began_ns < max_age_ns
                and self.watcher.quiet(self.watches, self.since)
                and _folder_stamps(self.folders) == self.stamps)


def _vouched(kept: _Kept, began_ns: int, mark: tuple[_Inotify | None, int],
             stamps: Mapping[str, _Stamp], holding: Iterable[str],
             mountinfo: str) -> _Look[_Kept] | None:
    """A look to keep, or None when nothing can vouch for it: no watcher (``mark``, taken
    before the look: `_inotify_mark`), a folder changed too recently to tell (`_SETTLE_NS`),
    one of the folders ``holding`` the files not watched, or on a file system whose writes
    inotify may not see."""
    watcher, since = mark
    if watcher is None or not stamps or began_ns - max(
            s[2] for s in stamps.values()) < _SETTLE_NS:
        return None
    holding = sorted(holding)
    watches = watcher.watches_of(holding)
    if watches is None or not _inotify_sees(holding, mountinfo):
        return None
    return _Look(kept, began_ns, tuple(stamps), tuple(stamps.values()), watcher, watches,
                 since)


# File systems on which inotify reports every write: local disks and memory. A network or FUSE
# file system (nfs, cifs/smb3, sshfs and other fuse.*, 9p, ceph, glusterfs, afs...) changes
# under writes from other machines too, which send no event; so may any type not named here.
_INOTIFY_COMPLETE = frozenset({
    "ext2", "ext3", "ext4", "xfs", "btrfs", "f2fs", "bcachefs", "jfs", "reiserfs", "zfs",
    "tmpfs", "overlay", "vfat", "exfat", "ntfs3", "hfsplus",
})


def _mount_type(mountinfo: str, path: str) -> str | None:
    """The type of the file system holding ``path`` (absolute, links resolved), from the text
    of /proc/self/mountinfo: that of the longest mount point above it, and of two at one point
    the later (it hides the earlier). None when no line fits."""
    found, longest = None, -1
    for line in mountinfo.splitlines():
        fields = line.split()
        try:
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), fields[4])  # \040: space
            kind = fields[fields.index("-", 6) + 1]  # after the optional fields
        except (IndexError, ValueError):
            continue
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= longest:
            found, longest = kind, len(point)
    return found


def _inotify_sees(folders: Iterable[str], mountinfo: str) -> bool:
    """Whether every one of ``folders`` is on a file system whose every write inotify reports
    (not when the mount table cannot be read)."""
    try:
        text = os.fsdecode(Path(mountinfo).read_bytes())
    except OSError:
        return False
    return all(_mount_type(text, os.path.realpath(f)) in _INOTIFY_COMPLETE for f in folders)


# --- mailbox -------------------------------------------------------------------------------


def _files_of(box: stdlib_mailbox.Maildir) -> dict[str, str]:
    """Every message file's path in a Maildir folder by its key: names only, no file opened
    or stat'ed (the standard library's listing stats every entry), kept as text (a Path per
    message costs more than the listing)."""
    found: dict[str, str] = {}
    for sub in ("new", "cur"):
        with contextlib.suppress(FileNotFoundError), os.scandir(Path(box._path, sub)) as entries:
            for entry in entries:
                if not entry.name.startswith(".") and entry.is_file():
                    found[entry.name.split(box.colon)[0]] = entry.path
    return found


# A listing younger than this after the folder's last change is not trusted to stand for
# it: a file added within the same clock tick leaves the folder's time as it was.
_SETTLE_NS = 2_000_000_000


def _stamp(box: stdlib_mailbox.Maildir) -> tuple[int, int] | None:
    """The times of a Maildir folder's new/ and cur/: every message that comes, goes or
    changes its flags renames a file and so moves them. None while they are too recent to
    vouch for a listing (or unreadable): list again."""
    try:
        times = tuple(os.stat(Path(box._path, sub)).st_mtime_ns for sub in ("new", "cur"))
    except OSError:
        return None
    if time.time_ns() - max(times) < _SETTLE_NS:
        return None
    return times[0], times[1]


# The cursor keeps, per folder, this many fingerprints of the keys its last listing saw: its
# size, whatever the folder holds. The ledger stores it at every pass.
_BUCKETS = 256


def _mark(key: str) -> int:
    """A stable 64-bit fingerprint of a Maildir key; its top byte is its bucket."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")


def _buckets(marks: Iterable[int]) -> list[int]:
    """Per bucket, the XOR of its keys' marks: a key that comes or goes changes its bucket's."""
    found = [0] * _BUCKETS
    for mark in marks:
        found[mark >> 56] ^= mark
    return found


def _encode(buckets: list[int]) -> str:
    return base64.b64encode(b"".join(b.to_bytes(8, "big") for b in buckets)).decode("ascii")


def _decode(text: object) -> list[int] | None:
    if not isinstance(text, str):
        return None
    try:
        raw = base64.b64decode(text, validate=True)
    except ValueError:
        return None
    if len(raw) != 8 * _BUCKETS:
        return None
    return [int.from_bytes(raw[i:i + 8], "big") for i in range(0, len(raw), 8)]


@dataclass(frozen=True)
class _Told:
    """What a cursor says of one folder: its stamp when it was listed (None: not settled
    then), and the buckets of the keys that listing saw."""

    stamp: tuple[int, int] | None
    buckets: list[int]
    text: str


@dataclass
class _Listed:
    """A folder's last listing in this process: the mark of every key it saw (so a change
    costs the files that changed, not a hash per file), and their buckets."""

    marks: dict[str, int]
    buckets: list[int]
    text: str


def _load_cursor(cursor: str | None, since_ns: int) -> dict[str, _Told]:
    """What the cursor says of each folder; nothing when it cannot be trusted.

    Not trusted: an older cursor (a file time, or a fingerprint of every key, per folder), or
    one made for a later ``since`` (it skipped files a wider look must read). The engine
    ignores what it already handled, so reading too much costs time only.
    """
    try:
        state = json.loads(cursor) if cursor else {}
    except ValueError:
        return {}
    if not isinstance(state, dict) or not isinstance(state.get("folders"), dict):
        return {}
    if not isinstance(state.get("since"), int) or state["since"] > since_ns:
        return {}
    told: dict[str, _Told] = {}
    for folder, entry in state["folders"].items():
        if not isinstance(entry, dict) or (buckets := _decode(entry.get("buckets"))) is None:
            continue
        match entry.get("stamp"):
            case [int(new), int(cur)]:
                stamp: tuple[int, int] | None = (new, cur)
            case _:
                stamp = None  # not settled when listed: list again
        told[folder] = _Told(stamp, buckets, entry["buckets"])
    return told


def _deleted_flag(name: str) -> bool:
    """Whether a Maildir file name carries the T (trashed) flag: deleted, not yet removed, as
    IMAP's \\Deleted before EXPUNGE (mbsync writes it so; mutt with maildir_trash)."""
    return "T" in name.rpartition(":2,")[2]


def _marked_deleted(box: stdlib_mailbox.Maildir, key: str) -> bool:
    # The name as the listing that gave the key saw it: no stat more per file.
    return _deleted_flag(box._toc.get(key, ""))  # type: ignore[attr-defined]


class MaildirMailbox(Mailbox):
    config = CONFIG
    pushes = True
    subscribes = True
    moves_to_trash = True

    @classmethod
    def open(cls, account: AccountSettings) -> MaildirMailbox:
        return open_mailbox(account)  # the module's opener builds it

    @classmethod
    def open_dry(cls, account: AccountSettings) -> Self:
        """A brand-new Maildir gets no folders made in it by a dry run."""
        return cls(_maildir(account), create_folders=False)

    @classmethod
    def problems(cls, account: AccountSettings) -> list[str]:
        maildir = account.settings_of(MaildirSettings)
        if maildir and not Path(maildir.path).expanduser().is_dir():
            return [f"maildir.path {maildir.path} does not exist"]
        return []

    @classmethod
    def watch(cls, account: AccountSettings, on_change: Callable[[], None],
              stop: threading.Event) -> None:
        watch(account, on_change, stop)

    @classmethod
    def subscribe(cls, account: AccountSettings,
                  on_change: Callable[[], None]) -> Callable[[], None]:
        return subscribe(account, on_change)

    full_look_every_ns = _FULL_LOOK_EVERY_NS
    mountinfo = _MOUNTINFO

    def __init__(self, root: Path, *, create_folders: bool = True) -> None:
        self.root = root
        self.full_looks = 0  # stats of every waiting draft (for tests and benches)
        # The waiting drafts' markers at the last full look, while the watcher vouches for it.
        self._drafts_look: _Look[dict[str, str]] | None = None
        self._listing: dict[str, str] = {}  # Drafts' files by key, as last listed
        self._listing_stamp: tuple[int, int] | None = None  # Drafts' stamp at that listing
        self._listed: dict[str, _Listed] = {}  # per inbox/Sent folder: its last listing
        if not (root / "cur").is_dir():
            raise FolderMissing(f"{root} is not a Maildir (no cur/ folder)")
        self.inbox = stdlib_mailbox.Maildir(root, factory=None, create=False)
        # (an empty Maildir is falsy: compare with None)
        fresh = all(self._find(names) is None for names in FOLDER_NAMES.values())
        if fresh and not create_folders:
            # A dry run on a brand-new Maildir: stand-in empty folders, removed by close().
            self._scratch = tempfile.TemporaryDirectory(prefix="mailbridge-dry-")
            scratch = stdlib_mailbox.Maildir(self._scratch.name, factory=None, create=True)
            for names in FOLDER_NAMES.values():
                scratch.add_folder(names[0])
            self.drafts = scratch.get_folder("Drafts")
            self.sent: stdlib_mailbox.Maildir | None = scratch.get_folder("Sent")
            self.trash: stdlib_mailbox.Maildir | None = scratch.get_folder("Trash")
            return
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
        since_ns = int(since.timestamp() * 1e9)
        told = _load_cursor(cursor, since_ns)
        found: list[MailHeaders] = []
        # (the cursor's name for it, the role its mail has, the folder); a reply the user
        # archived before the pass is still a reply. Archive is looked for at every pass: a
        # mail program makes it at its first use.
        folders = [("inbox", Folder.INBOX, self.inbox)]
        if (archive := self._find(ARCHIVE_NAMES)) is not None:
            folders.append(("archive", Folder.INBOX, archive))
        if self.sent is not None:
            folders.append(("sent", Folder.SENT, self.sent))
        fresh: dict[str, dict[str, Any]] = {}
        for name, folder, box in folders:
            was = told.get(name)
            stamp = _stamp(box)  # before the listing: a change during it moves it on
            if was is not None and stamp is not None and was.stamp == stamp:
                # Nothing came or went since the listing the cursor describes (made by this
                # process or another): not even the names are read.
                fresh[name] = {"stamp": list(stamp), "buckets": was.text}
                continue
            listed = self._list(folder, box, was, since, found)
            fresh[name] = {"stamp": list(stamp) if stamp else None, "buckets": listed.text}
        cursor = json.dumps({"since": since_ns, "folders": fresh}, sort_keys=True)
        return MessageBatch(messages=tuple(found), cursor=cursor)

    def _list(self, folder: Folder, box: stdlib_mailbox.Maildir, was: _Told | None,
              since: datetime, found: list[MailHeaders]) -> _Listed:
        """List ``box`` and read the files the cursor's listing (``was``) did not see."""
        files = _files_of(box)
        mine = self._listed.get(box._path)
        known = mine.marks if mine is not None else {}
        marks = {key: m if (m := known.get(key)) is not None else _mark(key) for key in files}
        if was is None:
            def seen(key: str) -> bool:
                return False
        elif mine is not None and mine.text == was.text:
            def seen(key: str) -> bool:  # this process made that listing: its keys, exactly
                return key in known
        else:
            # A listing this process did not make, or not its last one (a restart, `run
            # --once`, a pass whose cursor the ledger did not keep): only its buckets are
            # known. The files of a bucket whose fingerprint moved are all read again.
            now = _buckets(marks.values())
            same = {b for b in range(_BUCKETS) if now[b] == was.buckets[b]}

            def seen(key: str) -> bool:
                return marks[key] >> 56 in same
        for key, path in files.items():
            if seen(key):
                continue
            try:
                with open(path, "rb") as handle:  # a text path: see _files_of
                    raw = handle.read(HEAD_BYTES)
                    # Mail written before ``since`` is of no interest, and its Date says
                    # so; the file time says nothing reliable (kept on a move, restored
                    # from a backup). Only its head is read.
                    written = date_of_head(raw)
                    if written is not None and written < since:
                        continue
                    raw += handle.read()
            except FileNotFoundError:
                del marks[key]  # moved while we looked; the next pass sees it
                continue
            except OSError as exc:  # unreadable: a reply there must not go unseen
                raise ProviderError(f"cannot read {path}: {exc.strerror or exc}; make it "
                                    "readable (or move it out of the Maildir)") from exc
            found.append(headers_from_bytes(raw, folder=folder, provider_id=key))
        if mine is None:
            buckets = _buckets(marks.values())
        else:  # only the keys that came or went change a bucket
            buckets = list(mine.buckets)
            for key in marks.keys() ^ known.keys():
                mark = marks[key] if key in marks else known[key]
                buckets[mark >> 56] ^= mark
        listed = _Listed(marks, buckets, _encode(buckets))
        self._listed[box._path] = listed
        return listed

    # drafts --------------------------------------------------------------------------------

    def _keys_by_message_id(self, box: stdlib_mailbox.Maildir, message_id: str) -> list[str]:
        found = []
        for key in box.iterkeys():
            if _marked_deleted(box, key):
                continue
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

    def locate(self, message_id: str) -> Located | None:
        self._check()
        for place, box in (
            (Place.DRAFTS, self.drafts), (Place.SENT, self.sent), (Place.TRASH, self.trash)
        ):
            if box is not None and (key := self._key_by_message_id(box, message_id)):
                return Located(place, key)
        return None

    def create_draft(self, draft: DraftMessage) -> str:
        self._check()
        self._forget_drafts()  # our own write: list Drafts afresh
        message = stdlib_mailbox.MaildirMessage(draft.raw)
        message.set_subdir("cur")
        message.set_flags("DS")
        with _writing("write a draft", ambiguous=True):
            return str(self.drafts.add(message))

    def _draft_files(self, *, reuse: bool = False) -> dict[str, str]:
        """Every file in Drafts by its Maildir key, as text paths. Kept for the observations
        that follow (a pass lists Drafts once, not once per draft); with ``reuse``, the kept
        listing stands while the folder's stamp does (no file came, went or was renamed)."""
        stamp = _stamp(self.drafts)  # before the listing: a change during it moves it on
        if reuse and stamp is not None and stamp == self._listing_stamp:
            return self._listing
        self._listing = _files_of(self.drafts)
        self._listing_stamp = stamp
        return self._listing

    @staticmethod
    def _version(path: str) -> str:
        # Name (key and flags), size and time: a program that rewrites the file in place
        # under the same name (which leaves the folder's stamp as it was) still moves it.
        st = os.stat(path)
        return f"{os.path.basename(path)}/{st.st_size}/{st.st_mtime_ns}"

    def _forget_drafts(self) -> None:
        self._listing, self._listing_stamp, self._drafts_look = {}, None, None

    def versions(self, known: Mapping[str, str]) -> dict[str, str]:
        """One stat per waiting draft; none while the watcher vouches that nothing in Drafts
        changed since the last full look (`_Look.holds`; a draft rewritten in place keeps
        its name and its folder's time, but not its silence)."""
        self._check()
        look = self._drafts_look
        if look is not None and known.keys() <= look.kept.keys() and look.holds(
                self.full_look_every_ns):
            if len(known) == len(look.kept):
                return dict(look.kept)  # the same drafts as then: the usual idle pass
            return {key: look.kept[key] for key in known}
        self.full_looks += 1
        began = time.time_ns()
        mark = _inotify_mark()  # before the listing: an event during it counts
        folders = [os.path.join(self.drafts._path, sub) for sub in ("new", "cur")]
        try:
            stamps: dict[str, _Stamp] | None = {f: _stamp_of(os.stat(f)) for f in folders}
        except OSError:
            stamps = None
        files = self._draft_files(reuse=True)
        result: dict[str, str] = {}
        for key in known:
            if key in files:
                with contextlib.suppress(FileNotFoundError):
                    result[key] = self._version(files[key])
        self._drafts_look = None if stamps is None else _vouched(
            result, began, mark, stamps, folders, self.mountinfo)
        return result

    def observe(
        self, provider_id: str, message_id: str, hint: SentHint | None = None
    ) -> Observation:
        self._check()
        # The listing kept from this pass, when it names the draft; else (or when the file
        # moved since, as a flag change renames it) a fresh one.
        kept = self._listing
        for files in ((kept,) if provider_id in kept else ()) + (None,):
            seen = self._in_drafts(self._draft_files() if files is None else files,
                                   provider_id, message_id)  # fmt: skip
            if seen is not None:
                return seen
        if self.sent is not None and self._key_by_message_id(self.sent, message_id):
            return Observation(Presence.SENT)
        return Observation(Presence.GONE, sent_candidates=self._sent_candidates(hint))

    def _in_drafts(
        self, files: dict[str, str], provider_id: str, message_id: str
    ) -> Observation | None:
        """The draft as it is in Drafts (by its key, else by its Message-ID), or None."""
        key = provider_id if provider_id in files else None
        if key is not None and _deleted_flag(os.path.basename(files[key])):
            key = None
        if key is None:
            key = self._key_by_message_id(self.drafts, message_id)  # re-saved by the client
        if key is None:
            return None
        try:
            path = files.get(key) or os.path.join(self.drafts._path, self.drafts._lookup(key))  # type: ignore[attr-defined]
            version = self._version(path)
            with open(path, "rb") as handle:
                raw = handle.read()
        except (FileNotFoundError, KeyError):
            return None
        content_hash, body = read_draft(raw)
        return Observation(Presence.PRESENT, content_hash, key, body, version=version)

    def _sent_candidates(self, hint: SentHint | None) -> tuple[SentCandidate, ...]:
        """Mail in Sent to the hinted recipient, for the core to compare with the draft."""
        if hint is None or not hint.recipient or self.sent is None:
            return ()
        since = hint.since - timedelta(days=1)  # a pre-filter only: the core decides
        found = []
        for key in self.sent.iterkeys():
            try:
                with self.sent.get_file(key) as handle:
                    head = handle.read(HEAD_BYTES)
            except (FileNotFoundError, KeyError):
                continue
            headers = headers_from_bytes(head, folder=Folder.SENT, provider_id=key,
                                         excerpt_chars=0)
            recipients = tuple(p.email for p in (*headers.to, *headers.cc))
            if hint.recipient.lower() not in {r.lower() for r in recipients}:
                continue
            if headers.date is not None and headers.date < since:
                continue
            found.append(SentCandidate(
                recipients, headers.subject, headers.date,
                tuple(x for x in (headers.in_reply_to, *headers.references) if x),
                message_id=headers.message_id,
            ))
        return tuple(found)

    def update_draft(self, provider_id: str, draft: DraftMessage) -> str:
        with _writing("rewrite a draft", ambiguous=True):
            return self._update_draft(provider_id, draft)

    def _update_draft(self, provider_id: str, draft: DraftMessage) -> str:
        self._check()
        self._forget_drafts()  # our own write: list Drafts afresh
        try:
            target: Path | None = Path(self.drafts._path, self.drafts._lookup(provider_id))  # type: ignore[attr-defined]
        except KeyError:
            target = None
        if target is not None:
            # Replace the file in one step (same name, same flags): a crash leaves either the
            # old text or the new one, never both side by side.
            staged = Path(self.drafts._path, "tmp", f"{target.name.split(':')[0]}.update")
            with open(staged, "wb") as handle:
                handle.write(draft.raw.replace(b"\r\n", b"\n"))
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.replace(staged, target)
                new_key = provider_id
            except FileNotFoundError:  # the user's program moved it just now
                os.unlink(staged)
                target = None
        if target is None:
            new_key = self.create_draft(draft)
        # A crash between an earlier write and its removal left a copy of this very text:
        # remove it too. Copies that say anything else are the user's.
        for key in self._keys_by_message_id(self.drafts, draft.message_id):
            if key != new_key and read_draft(self.drafts.get_bytes(key))[0] == draft.content_hash:
                with contextlib.suppress(KeyError):
                    self.drafts.remove(key)
        return new_key

    def retract(self, provider_id: str) -> None:
        self._check()
        self._forget_drafts()  # our own write: list Drafts afresh
        source = Path(self.drafts._path, self.drafts._lookup(provider_id))  # type: ignore[attr-defined]
        with _writing("move a draft to Trash", ambiguous=False):
            if self.trash is None:
                os.unlink(source)
                return
            target = Path(self.trash._path, "cur", source.name)
            os.replace(source, target)  # same file system: atomic, nothing lost

    def close(self) -> None:
        scratch: tempfile.TemporaryDirectory[str] | None = getattr(self, "_scratch", None)
        if scratch is not None:
            scratch.cleanup()


@contextlib.contextmanager
def _writing(what: str, *, ambiguous: bool) -> Iterator[None]:
    """A write to the Maildir that the system refused (disk full, a read-only or vanished
    mount) is a fault that may pass, reported as the other providers report theirs. A create
    or rewrite may have left its file behind (Python's Maildir renames it into place, then
    sets its time), so the engine looks for it before trying again."""
    try:
        yield
    except OSError as exc:
        fault = AmbiguousWrite if ambiguous else ProviderError
        raise fault(f"cannot {what} in the Maildir: {exc.strerror or exc}") from exc


def _maildir(account: AccountSettings) -> Path:
    maildir = account.settings_of(MaildirSettings)
    if maildir is None:
        raise ProviderError(f"account {account.name!r}: provider local needs maildir.path")
    return Path(maildir.path).expanduser()


def open_mailbox(account: AccountSettings) -> MaildirMailbox:
    return MaildirMailbox(_maildir(account))


def open_calendar(account: AccountSettings) -> FileCalendar:
    own = account.calendar.settings_of(FileCalendarSettings)
    if own is None:
        raise ProviderError(f"account {account.name!r}: this calendar kind needs calendar.path")
    return FileCalendar(Path(own.path).expanduser(), account.own_addresses,
                        account.policy.timezone)


# --- push: file system notifications ------------------------------------------------------


def watched_paths(account: AccountSettings) -> list[Path]:
    """The folders whose changes call for a pass: the Maildir, and a local calendar's folder."""
    found = []
    maildir = account.settings_of(MaildirSettings)
    if maildir is not None:
        found.append(Path(maildir.path).expanduser())
    own = account.calendar.settings_of(FileCalendarSettings)
    if own is not None:
        calendar = Path(own.path).expanduser()
        found.append(calendar if calendar.is_dir() else calendar.parent)
    return [p for p in found if p.is_dir()]


def watch(account: AccountSettings, on_change: Callable[[], None], stop: threading.Event) -> None:
    """Call ``on_change`` soon after mail lands in the Maildir or a calendar file changes,
    until ``stop`` is set (the blocking form of `subscribe`)."""
    unsubscribe = subscribe(account, on_change)
    try:
        stop.wait()
    finally:
        unsubscribe()


def subscribe(account: AccountSettings, on_change: Callable[[], None]) -> Callable[[], None]:
    """Call ``on_change`` soon after mail lands in the Maildir or a calendar file changes;
    returns the function that ends it. No thread of its own: the daemon uses this form.

    Files being written (Maildir ``tmp/``), the editors' scratch files, Drafts and Trash are
    ignored; bursts are left to the daemon, which runs one pass per account at a time and
    queues one more when a change comes in during a pass. On Linux every account shares one
    inotify instance and one thread (`_Inotify`); elsewhere watchdog's observer (FSEvents,
    kqueue, ReadDirectoryChangesW) does the same.
    """
    if _USE_INOTIFY:
        return _inotify_subscribe(account, on_change)
    return _watchdog_subscribe(account, on_change)


def _watchdog_subscribe(account: AccountSettings,
                        on_change: Callable[[], None]) -> Callable[[], None]:
    from watchdog.events import FileSystemEvent, FileSystemEventHandler
    from watchdog.observers import Observer

    class Handler(FileSystemEventHandler):
        def on_any_event(self, event: FileSystemEvent) -> None:
            if event.event_type in ("opened", "closed_no_write"):
                return
            for raw in (event.src_path, getattr(event, "dest_path", "")):
                text = os.fsdecode(raw) if raw else ""
                if text and _relevant(Path(text)):
                    on_change()
                    return

    paths = watched_paths(account)
    if not paths:
        return lambda: None
    handler = Handler()
    observer = _shared_observer(Observer)
    watches = [observer.schedule(handler, str(path), recursive=True) for path in paths]

    def unsubscribe() -> None:
        for watch_of_path in watches:
            with contextlib.suppress(KeyError, ValueError):  # already gone with its folder
                observer.remove_handler_for_watch(handler, watch_of_path)

    return unsubscribe


# One observer for every account: an observer of its own per account costs a thread and an
# inotify instance each, and Linux allows 128 instances per user by default.
_observer_lock = threading.Lock()
_observer: Any = None


def _shared_observer(make: Callable[[], Any]) -> Any:
    global _observer
    with _observer_lock:
        if _observer is None or not _observer.is_alive():
            _observer = make()
            _observer.daemon = True
            _observer.start()
        return _observer


# --- push on Linux: one inotify instance and one thread for every account ----------------
#
# watchdog starts a thread (and an inotify instance) per watched tree: two thousand threads for
# a thousand accounts, and past 128 instances (Linux's default per user) push is lost. Here one
# instance holds a watch per folder that matters; inotify is not recursive, so the folders
# below are added as they appear.


class _Role(enum.Enum):
    MAILDIR = "a Maildir: its new/ and cur/, and a Sent folder made in it later"
    FOLDER = "a Sent folder: its new/ and cur/"
    MESSAGES = "new/ or cur/: message files"
    CALENDAR = "a calendar folder: .ics files, and its subfolders"
    CALENDAR_FILE = "the folder of a one-file calendar: that file"
    DRAFTS = "the Drafts folder: its new/ and cur/"
    DRAFT_FILES = "Drafts' new/ or cur/: watched only so a look at the drafts can be trusted"


_SENT_DIRS = frozenset(n for name in FOLDER_NAMES["sent"] for n in (name, "." + name))
_DRAFTS_DIRS = frozenset(n for name in FOLDER_NAMES["drafts"] for n in (name, "." + name))


def _child_role(role: _Role, name: str) -> _Role | None:
    """The role of a folder named ``name`` inside one of ``role``; None: not watched (tmp/,
    and Drafts and Trash, as `_QUIET_FOLDERS` says why)."""
    if role in (_Role.MAILDIR, _Role.FOLDER) and name in ("new", "cur"):
        return _Role.MESSAGES
    if role is _Role.MAILDIR and name in _SENT_DIRS:
        return _Role.FOLDER
    if role is _Role.MAILDIR and name in _DRAFTS_DIRS:
        return _Role.DRAFTS
    if role is _Role.DRAFTS and name in ("new", "cur"):
        return _Role.DRAFT_FILES  # its events are numbered (see `quiet`) but wake no pass
    if role is _Role.CALENDAR and not name.startswith("."):
        return _Role.CALENDAR
    return None


def _file_matters(role: _Role, only: str | None, name: str) -> bool:
    if _scratch(name):
        return False
    if role is _Role.MESSAGES:
        return True
    if role is _Role.CALENDAR:
        return name.lower().endswith(".ics")
    return role is _Role.CALENDAR_FILE and name == only


def _holds_files(folder: Path, role: _Role) -> bool:
    """Whether ``folder`` (just made) already holds a file its role cares about."""
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_dir():
                child = _child_role(role, entry.name)
                if child is not None and _holds_files(Path(entry.path), child):
                    return True
            elif _file_matters(role, None, entry.name):
                return True
    return False


@dataclass(eq=False)
class _Subscription:
    on_change: Callable[[], None]
    watches: set[int] = field(default_factory=set)  # watch descriptors
    active: bool = True


_Interest = tuple[_Subscription, _Role, str | None]  # who, why, which file (a one-file calendar)


class _Inotify:
    """One inotify instance, and one thread blocked reading it, for every account's folders.

    Watch descriptors map to the subscriptions interested in them (two accounts may share a
    calendar folder: one watch). Everything but the blocking read holds ``_inotify_lock``.
    """

    def __init__(self) -> None:
        from inotify_simple import INotify, flags

        self.flags = flags
        # CLOSE_WRITE, not MODIFY (an event per write call): an editor's save ends with a
        # close. A writer that keeps a calendar file open and only writes sends nothing; the
        # calendar's full look at least every ten minutes (FileCalendar) still sees it.
        self.mask = (flags.CREATE | flags.CLOSE_WRITE | flags.MOVED_TO | flags.MOVED_FROM
                     | flags.DELETE | flags.ONLYDIR)
        # CREATE too: a delivery by link() from tmp/ (Python's mailbox does so) makes no other.
        self.file_events = (flags.CREATE | flags.CLOSE_WRITE | flags.MOVED_TO | flags.MOVED_FROM
                            | flags.DELETE)
        try:
            self.inotify = INotify()
        except OSError as exc:  # EMFILE: fs.inotify.max_user_instances used up by others
            raise ProviderError(f"no inotify instance ({exc.strerror}); "
                                "raise fs.inotify.max_user_instances") from None
        self.wake = os.eventfd(0, os.EFD_CLOEXEC)  # written to stop the thread
        self.unread = select.poll()  # readable while events wait in the kernel's queue
        self.unread.register(self.inotify.fileno(), select.POLLIN)
        self.paths: dict[int, Path] = {}  # the live watches
        # Events are numbered as they are read; per watch, the number of its last one, and
        # the number of the last lost queue: what a calendar folder's look compares with.
        self.seq = 0
        self.last_event: dict[int, int] = {}
        self.lost = 0
        self.interests: dict[int, list[_Interest]] = {}
        self.subscriptions: dict[_Subscription, None] = {}  # in order: overflow wakes them all
        self.thread = threading.Thread(target=self._run, name="mailbridge-inotify", daemon=True)
        self.thread.start()

    def add(self, subscription: _Subscription, path: Path, role: _Role,
            only: str | None = None) -> None:
        """Watch ``path`` for ``subscription``, and the folders in it that its role needs.
        The watch comes before the listing, so a folder made in between is not missed."""
        try:
            wd = self.inotify.add_watch(path, self.mask)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                _warn_once(f"inotify watches used up (fs.inotify.max_user_watches): {path} and "
                           "other folders are only polled")
            return  # gone already, or not readable: the polls look there anyway
        self.paths.setdefault(wd, path)
        interests = self.interests.setdefault(wd, [])
        interest = (subscription, role, only)
        if interest in interests:
            return
        interests.append(interest)
        subscription.watches.add(wd)
        if role in (_Role.MESSAGES, _Role.CALENDAR_FILE, _Role.DRAFT_FILES):
            return
        with contextlib.suppress(OSError), os.scandir(path) as entries:
            for entry in entries:
                child = _child_role(role, entry.name)
                if child is not None and entry.is_dir():
                    self.add(subscription, Path(entry.path), child)

    def remove(self, subscription: _Subscription) -> None:
        subscription.active = False
        self.subscriptions.pop(subscription, None)
        for wd in subscription.watches:
            left = [i for i in self.interests.get(wd, ()) if i[0] is not subscription]
            if left:
                self.interests[wd] = left
                continue
            self.interests.pop(wd, None)
            self.paths.pop(wd, None)
            self.last_event.pop(wd, None)
            with contextlib.suppress(OSError):  # the kernel dropped it with its folder
                self.inotify.rm_watch(wd)
        subscription.watches.clear()

    def dispatch(self, events: Iterable[Any]) -> list[Callable[[], None]]:
        """The callbacks that ``events`` call for, each once."""
        flags = self.flags
        due: dict[_Subscription, None] = {}
        for event in events:
            self.seq += 1
            self.last_event[event.wd] = self.seq
            if event.mask & flags.Q_OVERFLOW:
                self.lost = self.seq  # as if every folder changed
                due.update(self.subscriptions)  # events were lost: a full pass catches up
                continue
            if event.mask & flags.IGNORED:
                # The folder was deleted (or we removed the watch). Made again later, it is
                # watched again when its parent is watched; a Maildir or calendar folder that
                # is itself re-made is watched again at the next subscribe (a config reload);
                # until then the polls find its changes.
                for subscription, _, _ in self.interests.pop(event.wd, ()):
                    subscription.watches.discard(event.wd)
                self.paths.pop(event.wd, None)
                self.last_event.pop(event.wd, None)
                continue
            path = self.paths.get(event.wd)
            for subscription, role, only in list(self.interests.get(event.wd, ())):
                if event.mask & flags.ISDIR:
                    child = _child_role(role, event.name)
                    if child is None:
                        continue
                    made = bool(event.mask & flags.CREATE)
                    if event.mask & (flags.CREATE | flags.MOVED_TO) and path is not None:
                        self.add(subscription, path / event.name, child)
                        # A new empty folder (a pass making Sent) holds nothing to act on;
                        # what landed in it before its watch began is found by this look.
                        made = made and not _holds_files(path / event.name, child)
                    if not made:
                        due[subscription] = None  # a folder that came or went may hold mail
                elif event.mask & self.file_events and _file_matters(role, only, event.name):
                    due[subscription] = None
        return [s.on_change for s in due if s.active]

    def watches_of(self, folders: Iterable[str]) -> tuple[int, ...] | None:
        """The watch of each folder; None when one is not watched."""
        with _inotify_lock:  # the thread adds and drops watches
            by_path = {str(path): wd for wd, path in self.paths.items()}
        found = tuple(by_path.get(folder) for folder in folders)
        return None if None in found else found  # type: ignore[return-value]

    def quiet(self, watches: Iterable[int], since: int) -> bool:
        """Whether this is still the process's watcher, every one of ``watches`` still lives
        and had no event numbered after ``since``, no queue was lost since, and no event waits
        unread (the kernel queues an event before the call that made it returns, and the
        thread reads and numbers events under the lock)."""
        with _inotify_lock:
            return (_inotify is self and self.lost <= since and not self.unread.poll(0)
                    and all(wd in self.paths and self.last_event.get(wd, 0) <= since
                            for wd in watches))

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self.inotify.fileno(), select.POLLIN)
        poller.register(self.wake, select.POLLIN)
        try:
            while True:
                ready = {fd for fd, _ in poller.poll()}
                if self.wake in ready:
                    return
                with _inotify_lock:  # read and numbered at once: see `quiet`
                    due = self.dispatch(self.inotify.read(timeout=0))
                for on_change in due:
                    try:
                        on_change()
                    except Exception as exc:  # noqa: BLE001 - the other accounts still hear
                        log.warning("a change notification was not delivered: %s", exc)
        finally:
            self.inotify.close()
            os.close(self.wake)

    def stop(self) -> None:
        os.eventfd_write(self.wake, 1)
        if threading.current_thread() is not self.thread:
            self.thread.join(timeout=10)


_USE_INOTIFY = sys.platform == "linux"
_inotify_lock = threading.Lock()
_inotify: _Inotify | None = None  # while any account is subscribed
_warned: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        log.warning("%s", message)


def _inotify_mark() -> tuple[_Inotify | None, int]:
    """The process's inotify watcher (None while no account is subscribed, as in a one-shot
    run or a test calling a provider directly) and the number of the last event it read."""
    with _inotify_lock:
        return _inotify, (_inotify.seq if _inotify is not None else 0)


def _watch_roots(account: AccountSettings) -> list[tuple[Path, _Role, str | None]]:
    found: list[tuple[Path, _Role, str | None]] = []
    maildir = account.settings_of(MaildirSettings)
    if maildir is not None:
        found.append((Path(maildir.path).expanduser(), _Role.MAILDIR, None))
    own = account.calendar.settings_of(FileCalendarSettings)
    if own is not None:
        calendar = Path(own.path).expanduser()
        if calendar.is_dir():
            found.append((calendar, _Role.CALENDAR, None))
        else:  # a file, or one not there yet: its folder, for that name
            found.append((calendar.parent, _Role.CALENDAR_FILE, calendar.name))
    return found


def _inotify_subscribe(account: AccountSettings,
                       on_change: Callable[[], None]) -> Callable[[], None]:
    global _inotify
    subscription = _Subscription(on_change)
    with _inotify_lock:
        if _inotify is None:
            _inotify = _Inotify()
        watcher = _inotify
        watcher.subscriptions[subscription] = None
        for path, role, only in _watch_roots(account):
            watcher.add(subscription, path, role, only)

    def unsubscribe() -> None:
        global _inotify
        with _inotify_lock:
            if not subscription.active:
                return
            watcher.remove(subscription)
            last = not watcher.subscriptions
            if last and _inotify is watcher:
                _inotify = None
        if last:  # the thread and the instance end with the last account
            watcher.stop()

    return unsubscribe


# Folders whose changes need no pass at once: Drafts is where the passes themselves write (a
# pass would wake the next one), and Trash holds nothing a pass acts on. Polls still see both.
_QUIET_FOLDERS = frozenset(
    name.casefold() for name in (*FOLDER_NAMES["drafts"], *FOLDER_NAMES["trash"])
)


def _scratch(name: str) -> bool:
    """An editor's lock or backup file."""
    return name.startswith((".#", "~")) or name.endswith("~")


def _relevant(path: Path) -> bool:
    """A change that can matter: a message file (not one still in tmp/) in the inbox or Sent,
    or a calendar file."""
    if path.parent.name == "tmp" or _scratch(path.name):
        return False
    if path.suffix.lower() == ".ics":
        return True
    folder = path.parent.parent.name.removeprefix(".").casefold()
    return path.parent.name in ("new", "cur") and folder not in _QUIET_FOLDERS
