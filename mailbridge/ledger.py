"""The ledger: SQLite state of interviews, drafts, matched messages, sync cursors and the audit log.

One file per state directory, WAL mode. Every row is keyed so that replaying a reconcile pass
is harmless. A lock file lets only one daemon work on one ledger at a time; one-shot commands
(status, note, preview) share the database through SQLite's own locking.

Finished interviews (planner.finished) are archived in place (interview.archived_at): a pass
loads only live rows, while lookups by Message-ID or event key still see the archive.

The generation (schema 7) is a counter that triggers move on at every write to what the planner
reads, by any connection: a pass compares it to tell that nothing changed since its last plan.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, Any

from mailbridge.model import (
    DraftKind,
    DraftRow,
    DraftState,
    EventKey,
    Folder,
    InterviewRow,
    InterviewState,
    MessageKind,
    MessageRow,
    Note,
    Person,
    Snapshot,
)
from mailbridge.textsafe import redact_urls

SCHEMA_VERSION = 7
DB_NAME = "ledger.sqlite3"
LOCK_NAME = "daemon.lock"


class LedgerError(Exception):
    """The ledger cannot be used (newer schema, locked by another daemon, unreadable)."""


# Each entry migrates from version i to i+1. Append only; never edit a shipped step.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE interview (
        id INTEGER PRIMARY KEY,
        account TEXT NOT NULL,
        calendar TEXT NOT NULL,
        uid TEXT NOT NULL,
        instance TEXT NOT NULL DEFAULT '',
        title TEXT NOT NULL,
        company TEXT NOT NULL DEFAULT '',
        role TEXT NOT NULL DEFAULT '',
        start TEXT NOT NULL,
        end TEXT NOT NULL,
        state TEXT NOT NULL,
        attendees TEXT NOT NULL DEFAULT '[]',
        lead TEXT,
        lead_override TEXT,
        notes TEXT NOT NULL DEFAULT '',
        notes_version INTEGER NOT NULL DEFAULT 0,
        decision_date TEXT,
        employer_domains TEXT NOT NULL DEFAULT '[]',
        updated_at TEXT NOT NULL,
        UNIQUE (account, calendar, uid, instance)
    );
    CREATE TABLE event (
        account TEXT NOT NULL,
        calendar TEXT NOT NULL,
        uid TEXT NOT NULL,
        instance TEXT NOT NULL DEFAULT '',
        title TEXT NOT NULL,
        start TEXT NOT NULL,
        end TEXT NOT NULL,
        interview INTEGER NOT NULL DEFAULT 0,
        reason TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (account, calendar, uid, instance)
    );
    CREATE TABLE draft (
        id INTEGER PRIMARY KEY,
        interview_id INTEGER NOT NULL REFERENCES interview(id),
        kind TEXT NOT NULL,
        seq INTEGER NOT NULL,
        recipient_email TEXT NOT NULL,
        recipient_name TEXT NOT NULL DEFAULT '',
        state TEXT NOT NULL,
        due TEXT NOT NULL,
        message_id TEXT NOT NULL UNIQUE,
        provider_id TEXT,
        created_at TEXT,
        content_hash TEXT NOT NULL DEFAULT '',
        notes_version INTEGER NOT NULL DEFAULT 0,
        late INTEGER NOT NULL DEFAULT 0,
        reminded_at TEXT,
        flagged TEXT NOT NULL DEFAULT '',
        subject TEXT NOT NULL DEFAULT '',
        gaps INTEGER NOT NULL DEFAULT 0,
        warnings TEXT NOT NULL DEFAULT '[]',
        updated_at TEXT NOT NULL,
        UNIQUE (interview_id, kind, seq, recipient_email)
    );
    CREATE TABLE message (
        id INTEGER PRIMARY KEY,
        account TEXT NOT NULL,
        folder TEXT NOT NULL,
        provider_id TEXT NOT NULL,
        message_id TEXT NOT NULL DEFAULT '',
        interview_id INTEGER REFERENCES interview(id),
        kind TEXT NOT NULL,
        reason TEXT NOT NULL DEFAULT '',
        sender TEXT NOT NULL DEFAULT '',
        recipients TEXT NOT NULL DEFAULT '[]',
        subject TEXT NOT NULL DEFAULT '',
        at TEXT NOT NULL,
        return_date TEXT,
        our_draft_id INTEGER REFERENCES draft(id),
        UNIQUE (account, folder, provider_id)
    );
    CREATE TABLE sync (
        account TEXT NOT NULL,
        resource TEXT NOT NULL,
        cursor TEXT,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (account, resource)
    );
    CREATE TABLE account_state (
        account TEXT PRIMARY KEY,
        paused TEXT,
        resume_confirmed INTEGER NOT NULL DEFAULT 0,
        last_ok TEXT,
        last_error TEXT,
        error_since TEXT
    );
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        account TEXT NOT NULL,
        interview_id INTEGER,
        draft_id INTEGER,
        decision TEXT NOT NULL,
        reason TEXT NOT NULL
    );
    CREATE INDEX audit_at ON audit (account, at);
    CREATE INDEX message_interview ON message (interview_id);
    CREATE INDEX draft_interview ON draft (interview_id);
    """,
    # 2: the content a draft update is about to write, recorded before the write, so an
    # update cut short by a crash is recognised as ours and not taken for the user's edit.
    """
    ALTER TABLE draft ADD COLUMN pending_hash TEXT NOT NULL DEFAULT '';
    """,
    # 3: several notes per interview, each for every interviewer or for one of them; the
    # company the user chose (`note --company`) and why the company shown was chosen.
    # interview.notes stays, holding the notes for everyone joined, for older readers.
    """
    CREATE TABLE note (
        id INTEGER PRIMARY KEY,
        interview_id INTEGER NOT NULL REFERENCES interview(id),
        recipient TEXT NOT NULL DEFAULT '',
        text TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE INDEX note_interview ON note (interview_id);
    INSERT INTO note (interview_id, recipient, text, created_at)
        SELECT id, '', notes, updated_at FROM interview WHERE notes != '';
    ALTER TABLE interview ADD COLUMN company_override TEXT NOT NULL DEFAULT '';
    ALTER TABLE interview ADD COLUMN company_reason TEXT NOT NULL DEFAULT '';
    """,
    # 4: level-triggered state. An interview whose event vanished is held, not cancelled,
    # until it stayed gone for the grace period or two full listings (missing_since,
    # missing_listings); a draft copy we moved to Trash ourselves is not the user's deletion
    # (trashed); each pause has its own cause, lifted only by its end or `resume` (pauses:
    # a JSON object cause -> reason; `paused` keeps the text of them all).
    """
    ALTER TABLE interview ADD COLUMN missing_since TEXT;
    ALTER TABLE interview ADD COLUMN missing_listings INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE draft ADD COLUMN trashed INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE account_state ADD COLUMN pauses TEXT NOT NULL DEFAULT '{}';
    UPDATE account_state SET pauses = json_object('calendar', paused) WHERE paused IS NOT NULL;
    """,
    # 5: the mailbox's cheap marker of each draft when last observed in full (a file name and
    # flags, a modification sequence, a change key): a waiting draft is read and proofread
    # again only when its marker changed.
    """
    ALTER TABLE draft ADD COLUMN version TEXT NOT NULL DEFAULT '';
    """,
    # 6: the archive. A finished interview (planner.finished) gets archived_at: a pass loads
    # live interviews only, so its cost does not grow with the history. Any news about it
    # (the calendar, the user's notes) clears the mark. Message-IDs are looked up one by one.
    """
    ALTER TABLE interview ADD COLUMN archived_at TEXT;
    CREATE INDEX interview_live ON interview (account, archived_at);
    CREATE INDEX message_message_id ON message (account, message_id);
    """,
    # 7: the ledger's generation, a counter every write to what the planner and the pause
    # check read moves on (triggers: whoever writes, this process or `mailbridge note`, `pause`
    # in another). A pass may skip planning only while it stays where the last plan saw it.
    # Bookkeeping that plans nothing (cursors, last_ok, the audit log, events) leaves it be.
    # Not PRAGMA data_version: that is per connection (the daemon's passes borrow any pooled
    # one) and moves on every commit of any account, last_ok included.
    """
    CREATE TABLE generation (id INTEGER PRIMARY KEY CHECK (id = 1), n INTEGER NOT NULL);
    INSERT INTO generation (id, n) VALUES (1, 0);
    CREATE TRIGGER interview_insert_news AFTER INSERT ON interview
        BEGIN UPDATE generation SET n = n + 1; END;
    CREATE TRIGGER interview_update_news AFTER UPDATE ON interview
        BEGIN UPDATE generation SET n = n + 1; END;
    CREATE TRIGGER interview_delete_news AFTER DELETE ON interview
        BEGIN UPDATE generation SET n = n + 1; END;
    CREATE TRIGGER draft_insert_news AFTER INSERT ON draft
        BEGIN UPDATE generation SET n = n + 1; END;
    CREATE TRIGGER draft_update_news AFTER UPDATE ON draft
        BEGIN UPDATE generation SET n = n + 1; END;
    CREATE TRIGGER draft_delete_news AFTER DELETE ON draft
        BEGIN UPDATE generation SET n = n + 1; END;
    CREATE TRIGGER message_insert_news AFTER INSERT ON message
        BEGIN UPDATE generation SET n = n + 1; END;
    CREATE TRIGGER message_update_news AFTER UPDATE ON message
        BEGIN UPDATE generation SET n = n + 1; END;
    CREATE TRIGGER message_delete_news AFTER DELETE ON message
        BEGIN UPDATE generation SET n = n + 1; END;
    CREATE TRIGGER note_insert_news AFTER INSERT ON note
        BEGIN UPDATE generation SET n = n + 1; END;
    CREATE TRIGGER note_update_news AFTER UPDATE ON note
        BEGIN UPDATE generation SET n = n + 1; END;
    CREATE TRIGGER note_delete_news AFTER DELETE ON note
        BEGIN UPDATE generation SET n = n + 1; END;
    CREATE TRIGGER account_pause_news
        AFTER UPDATE OF paused, pauses, resume_confirmed ON account_state
        BEGIN UPDATE generation SET n = n + 1; END;
    """,
]


def _statements(script: str) -> Iterator[str]:
    """The statements of a migration one by one (executescript would commit half-way); a
    trigger's body has semicolons of its own, so a piece ends only where a statement does."""
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                yield pending
            pending = ""
    if pending.strip(" \n;"):
        raise ValueError(f"an incomplete statement ends the migration: {pending!r}")


def _newer_message(path: Path, version: int) -> str:
    return (
        f"{path} was written by a newer mailbridge (ledger schema {version}; this one knows "
        f"schema {SCHEMA_VERSION} at most). Upgrade mailbridge, or set state_dir to another "
        "folder. The ledger was not touched."
    )


def _wal(conn: sqlite3.Connection, patience: float = 30.0) -> None:
    """Switch to WAL mode. SQLite answers "locked" at once (no busy wait) while another
    process opening the same new ledger holds it, so wait here instead."""
    deadline = time.monotonic() + patience
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def ledger_problem(exc: BaseException, state_dir: Path | None = None) -> str:
    """One line for a ledger the machine made unusable mid-way: what happened, what to do."""
    where = str(state_dir) if state_dir is not None else "the state directory"
    text = str(exc).lower()
    if "full" in text:
        return (f"the disk holding {where} is full; free some space (the pass is retried, "
                "nothing was lost)")
    if "readonly" in text or "read-only" in text:
        return (f"the ledger in {where} is read-only; make the folder and its files writable "
                "by you (or set state_dir to another folder)")
    if "locked" in text or "busy" in text:
        return (f"the ledger in {where} is busy (another program holds it); "
                "try again in a moment")
    if "malformed" in text or "not a database" in text or "corrupt" in text:
        return (f"the ledger in {where} is damaged; move ledger.sqlite3 aside and run again "
                "(drafts already in your mailbox are found again by their Message-ID)")
    return f"the ledger in {where} cannot be used ({exc}); check that folder"


def _unusable(path: Path, exc: sqlite3.DatabaseError) -> LedgerError:
    """Why the ledger cannot be opened, told apart: a full disk or a read-only folder is not
    a damaged ledger, and moving a healthy ledger aside would be the wrong advice."""
    folder = path.parent
    with contextlib.suppress(OSError):
        if os.statvfs(folder).f_bavail == 0:
            return LedgerError(f"the disk holding {folder} is full; free some space and run "
                               "again (nothing was changed)")
    if not os.access(folder, os.W_OK) or "readonly" in str(exc):
        return LedgerError(f"the ledger in {folder} is read-only; make the folder and its files "
                           "writable by you (or set state_dir to another folder)")
    return LedgerError(f"{path}: not a usable ledger ({exc}); move it aside and run again "
                       "(drafts already in your mailbox are found again by their Message-ID)")


def _refuse_newer(path: Path) -> None:
    """Read the schema version without writing anything (immutable: no lock, no -wal/-shm)."""
    try:
        probe = sqlite3.connect(f"{path.absolute().as_uri()}?immutable=1", uri=True)
    except sqlite3.DatabaseError as exc:
        raise _unusable(path, exc) from None
    try:
        has_meta = probe.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'"
        ).fetchone()
        row = (
            probe.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if has_meta
            else None
        )
    except sqlite3.DatabaseError:
        # Half-written by another process opening it this very moment (immutable reads see
        # no locks): the normal open below checks the version again under its lock.
        return
    finally:
        probe.close()
    value: object = row[0] if row else 0
    try:
        version = int(str(value))
    except ValueError:
        raise LedgerError(f"{path}: not a usable ledger (schema version {value!r})") from None
    if version > SCHEMA_VERSION:
        raise LedgerError(_newer_message(path, version))


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat()


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _person(value: str | None) -> Person | None:
    if not value:
        return None
    data = json.loads(value)
    return Person(email=data["email"], name=data.get("name", ""))


def _person_json(person: Person | None) -> str | None:
    return json.dumps({"email": person.email, "name": person.name}) if person else None


@dataclass(frozen=True)
class AccountStatus:
    account: str
    paused: str | None
    resume_confirmed: bool
    last_ok: datetime | None
    last_error: str | None
    error_since: datetime | None


@dataclass(frozen=True)
class AuditEntry:
    at: datetime
    account: str
    interview_id: int | None
    draft_id: int | None
    decision: str
    reason: str


class Ledger:
    def __init__(self, conn: sqlite3.Connection, state_dir: Path) -> None:
        self.conn = conn
        self.state_dir = state_dir
        self._lock_file: IO[str] | None = None

    # --- opening, schema, lock ---------------------------------------------------------

    @classmethod
    def open(cls, state_dir: Path) -> Ledger:
        try:
            return cls._open(Path(state_dir).expanduser())
        except OSError as exc:
            raise LedgerError(
                f"cannot use the state directory {state_dir} ({exc.strerror or exc}); "
                "set state_dir in [mailbridge] to a folder you can write"
            ) from None

    @classmethod
    def _open(cls, state_dir: Path) -> Ledger:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with contextlib.suppress(OSError):
            os.chmod(state_dir, 0o700)
        path = state_dir / DB_NAME
        fresh = not path.exists()
        if fresh:
            # Created private to the user before SQLite writes anything into it.
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        else:
            _refuse_newer(path)  # before WAL mode: a newer ledger is left byte for byte as it was
        # SQLite creates -wal and -shm with the database file's own mode, so these stay 0600 too.
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(OSError):
                os.chmod(path.with_name(path.name + suffix), 0o600)
        try:
            conn = sqlite3.connect(path, timeout=30, isolation_level=None,
                                   check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA busy_timeout=30000")
            _wal(conn)
            conn.execute("PRAGMA foreign_keys=ON")
        except sqlite3.DatabaseError as exc:
            raise _unusable(path, exc) from None
        ledger = cls(conn, state_dir)
        ledger._migrate(path)
        return ledger

    @classmethod
    def scratch_copy(cls, state_dir: Path) -> Ledger:
        """An in-memory copy of the ledger, for a dry run: whatever the pass writes is lost.

        Copying holds SQLite's shared read lock for the copy only, so a running daemon keeps
        writing; nothing is created on disk (no state folder, no ledger, no lock file).
        """
        state_dir = Path(state_dir).expanduser()
        path = state_dir / DB_NAME
        memory = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        memory.row_factory = sqlite3.Row
        if path.exists():
            _refuse_newer(path)
            # With no -wal file every write is in the main file: read it as it is (opening
            # it read-only would leave empty -wal and -shm files behind). With one, a daemon
            # may be writing: read through SQLite's shared lock.
            modes = ["immutable=1", "mode=ro"]
            if path.with_name(path.name + "-wal").exists():
                modes.reverse()
            try:
                for n, mode in enumerate(modes):
                    source = sqlite3.connect(f"{path.absolute().as_uri()}?{mode}", uri=True,
                                             timeout=30)
                    try:
                        source.backup(memory)
                        break
                    except sqlite3.DatabaseError:
                        if n == len(modes) - 1:
                            raise
                    finally:
                        source.close()
            except sqlite3.DatabaseError as exc:
                memory.close()
                raise _unusable(path, exc) from None
        memory.execute("PRAGMA foreign_keys=ON")
        ledger = cls(memory, state_dir)
        ledger._migrate(path)
        return ledger

    def schema_version(self) -> int:
        has_meta = self.conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'"
        ).fetchone()
        if not has_meta:
            return 0
        row = self.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        return int(row["value"]) if row else 0

    def _migrate(self, path: Path) -> None:
        version = self.schema_version()
        if version > SCHEMA_VERSION:
            raise LedgerError(_newer_message(path, version))
        while version < SCHEMA_VERSION:
            with self.transaction():
                # Another process opening the same new ledger may have migrated it meanwhile:
                # read the version again under the write lock, so each step runs once.
                version = self.schema_version()
                if version >= SCHEMA_VERSION:
                    break
                for statement in _statements(MIGRATIONS[version]):
                    self.conn.execute(statement)
                version += 1
                self.conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_version', ?) "
                    "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                    (str(version),),
                )

    def lock(self) -> None:
        """Take the daemon lock, or fail naming the state directory."""
        try:
            fd = os.open(self.state_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        except OSError as exc:  # a read-only or full disk: say so, in one line
            raise LedgerError(ledger_problem(exc, self.state_dir)) from None
        with contextlib.suppress(OSError):
            os.fchmod(fd, 0o600)
        handle = os.fdopen(fd, "a+")  # held for the process
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise LedgerError(
                f"another mailbridge daemon is already working on {self.state_dir}; "
                "stop it first (or give this one another state_dir)"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._lock_file = handle

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.conn.close()
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        if self.conn.in_transaction:
            yield
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")

    @contextlib.contextmanager
    def savepoint(self) -> Iterator[None]:
        """A nested step inside a transaction: undone alone if it fails."""
        self.conn.execute("SAVEPOINT item")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK TO item")
            self.conn.execute("RELEASE item")
            raise
        else:
            self.conn.execute("RELEASE item")

    # --- audit -------------------------------------------------------------------------

    def audit(
        self,
        account: str,
        decision: str,
        reason: str,
        *,
        now: datetime,
        interview_id: int | None = None,
        draft_id: int | None = None,
    ) -> None:
        self.conn.execute(
            "INSERT INTO audit (at, account, interview_id, draft_id, decision, reason) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (_iso(now), account, interview_id, draft_id, decision, redact_urls(reason)),
        )

    def last_decision(self, draft_id: int) -> tuple[str, str] | None:
        """The newest audit entry about a draft, as (decision, reason)."""
        row = self.conn.execute(
            "SELECT decision, reason FROM audit WHERE draft_id=? ORDER BY id DESC LIMIT 1",
            (draft_id,),
        ).fetchone()
        return (row["decision"], row["reason"]) if row else None

    def audit_entries(
        self, account: str | None = None, since: datetime | None = None, limit: int = 10_000
    ) -> list[AuditEntry]:
        query = "SELECT * FROM audit WHERE 1=1"
        args: list[Any] = []
        if account:
            query += " AND account = ?"
            args.append(account)
        if since:
            query += " AND at >= ?"
            args.append(_iso(since))
        query += " ORDER BY id LIMIT ?"
        args.append(limit)
        return [
            AuditEntry(
                at=datetime.fromisoformat(r["at"]),
                account=r["account"],
                interview_id=r["interview_id"],
                draft_id=r["draft_id"],
                decision=r["decision"],
                reason=r["reason"],
            )
            for r in self.conn.execute(query, args)
        ]

    # --- sync cursors and account state --------------------------------------------------

    def cursor(self, account: str, resource: str) -> str | None:
        row = self.conn.execute(
            "SELECT cursor FROM sync WHERE account=? AND resource=?", (account, resource)
        ).fetchone()
        return row["cursor"] if row else None

    def set_cursor(self, account: str, resource: str, cursor: str | None, now: datetime) -> None:
        self.conn.execute(
            "INSERT INTO sync (account, resource, cursor, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(account, resource) DO UPDATE SET cursor=excluded.cursor, "
            "updated_at=excluded.updated_at",
            (account, resource, cursor, _iso(now)),
        )

    def account_status(self, account: str) -> AccountStatus:
        row = self.conn.execute(
            "SELECT * FROM account_state WHERE account=?", (account,)
        ).fetchone()
        if row is None:
            return AccountStatus(account, None, False, None, None, None)
        return AccountStatus(
            account=account,
            paused=row["paused"],
            resume_confirmed=bool(row["resume_confirmed"]),
            last_ok=_dt(row["last_ok"]),
            last_error=row["last_error"],
            error_since=_dt(row["error_since"]),
        )

    def _ensure_account(self, account: str) -> None:
        self.conn.execute(
            "INSERT INTO account_state (account) VALUES (?) ON CONFLICT(account) DO NOTHING",
            (account,),
        )

    def set_paused(self, account: str, reason: str | None, cause: str | None = None) -> None:
        """Pause for ``cause`` ("calendar", "mailbox") with ``reason``; a None reason lifts
        that cause (every cause when ``cause`` is None). Any change ends a confirmation."""
        self._ensure_account(account)
        causes = self.pause_causes(account)
        if reason is None and cause is None:
            causes = {}
        elif reason is None:
            causes.pop(cause or "", None)
        else:
            causes[cause or "calendar"] = reason
        text = "; ".join(causes[c] for c in sorted(causes)) or None
        # A new pause, or lifting them all, ends a confirmation; one cause ending does not.
        keep = 0 if reason is not None or cause is None else 1
        self.conn.execute(
            "UPDATE account_state SET paused=?, pauses=?, resume_confirmed=resume_confirmed*? "
            "WHERE account=?",
            (text, json.dumps(causes, sort_keys=True), keep, account),
        )

    def pause_causes(self, account: str) -> dict[str, str]:
        """Why the account is paused, by cause ("calendar", "mailbox"); {} when it is not."""
        row = self.conn.execute(
            "SELECT pauses FROM account_state WHERE account=?", (account,)
        ).fetchone()
        return dict(json.loads(row["pauses"])) if row else {}

    def confirm_resume(self, account: str) -> None:
        self._ensure_account(account)
        self.conn.execute(
            "UPDATE account_state SET resume_confirmed=1 WHERE account=?", (account,)
        )

    def record_ok(self, account: str, now: datetime) -> None:
        self._ensure_account(account)
        self.conn.execute(
            "UPDATE account_state SET last_ok=?, last_error=NULL, error_since=NULL WHERE account=?",
            (_iso(now), account),
        )

    def record_error(self, account: str, error: str, now: datetime) -> None:
        self._ensure_account(account)
        self.conn.execute(
            "UPDATE account_state SET last_error=?, error_since=COALESCE(error_since, ?) "
            "WHERE account=?",
            (redact_urls(error), _iso(now), account),  # a secret link is not kept here
        )

    # --- events and interviews ---------------------------------------------------------

    def event_keys(self, account: str, since: datetime) -> set[EventKey]:
        rows = self.conn.execute(
            "SELECT calendar, uid, instance FROM event WHERE account=? AND end > ?",
            (account, _iso(since)),
        )
        return {EventKey(r["calendar"], r["uid"], r["instance"]) for r in rows}

    def event_seen(self, account: str, key: EventKey) -> bool:
        return (
            self.conn.execute(
                "SELECT 1 FROM event WHERE account=? AND calendar=? AND uid=? AND instance=?",
                (account, key.calendar, key.uid, key.instance),
            ).fetchone()
            is not None
        )

    def upsert_event(
        self,
        account: str,
        key: EventKey,
        title: str,
        start: datetime,
        end: datetime,
        is_interview: bool,
        reason: str,
    ) -> bool:
        """Record an event; True when it is new or its verdict changed (worth an audit line)."""
        row = self.conn.execute(
            "SELECT interview, reason FROM event "
            "WHERE account=? AND calendar=? AND uid=? AND instance=?",
            (account, key.calendar, key.uid, key.instance),
        ).fetchone()
        self.conn.execute(
            "INSERT INTO event (account, calendar, uid, instance, title, start, end, interview, "
            "reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(account, calendar, uid, instance) DO UPDATE SET title=excluded.title, "
            "start=excluded.start, end=excluded.end, interview=excluded.interview, "
            "reason=excluded.reason",
            (
                account,
                key.calendar,
                key.uid,
                key.instance,
                title,
                _iso(start),
                _iso(end),
                int(is_interview),
                reason,
            ),
        )
        return row is None or bool(row["interview"]) != is_interview or row["reason"] != reason

    def event_keys_of(self, account: str, key: EventKey) -> list[EventKey]:
        """The known keys ``key`` names (instance "*" means every instance of the UID)."""
        if key.instance != "*":
            return [key] if self.event_seen(account, key) else []
        rows = self.conn.execute(
            "SELECT calendar, uid, instance FROM event WHERE account=? AND calendar=? AND uid=?",
            (account, key.calendar, key.uid),
        ).fetchall()
        return [EventKey(r["calendar"], r["uid"], r["instance"]) for r in rows]

    def set_missing(
        self, interview_id: int, since: datetime | None, listings: int, now: datetime
    ) -> None:
        """Record that an interview's event is absent (since when, in how many full
        listings); ``since=None`` says it is back. Either is news: the interview is live."""
        self.conn.execute(
            "UPDATE interview SET missing_since=?, missing_listings=?, updated_at=?, "
            "archived_at=NULL WHERE id=?",
            (_iso(since), listings, _iso(now), interview_id),
        )

    def missing_interviews(self, account: str) -> list[InterviewRow]:
        """The interviews whose event is absent from the calendar (all live: see set_missing)."""
        rows = self.conn.execute(
            "SELECT * FROM interview WHERE account=? AND archived_at IS NULL "
            "AND missing_since IS NOT NULL ORDER BY start, id",
            (account,),
        )
        return [self._interview(r) for r in rows]

    def link_sent(self, account: str, message_id: str, draft_id: int) -> bool:
        """Mark the sent message with ``message_id`` as made from ``draft_id``; whether there
        was one (a rebuilt ledger meets the user's sent copy of a draft it made before)."""
        cur = self.conn.execute(
            "UPDATE message SET our_draft_id=? WHERE account=? AND folder=? AND message_id=?",
            (draft_id, account, Folder.SENT.value, message_id),
        )
        return cur.rowcount > 0

    def message_id_owner(self, message_id: str) -> str | None:
        """The account whose draft row holds ``message_id``, or None."""
        row = self.conn.execute(
            "SELECT i.account FROM draft d JOIN interview i ON i.id = d.interview_id "
            "WHERE d.message_id=?",
            (message_id,),
        ).fetchone()
        return str(row["account"]) if row else None

    def release_message_id(self, message_id: str, to_account: str) -> None:
        """Hand a Message-ID over from another account's row (the account was renamed in the
        TOML: same address, same drafts). The old row keeps a marked copy of the id."""
        self.conn.execute(
            "UPDATE draft SET message_id = message_id || ? WHERE message_id=?",
            (f" (now {to_account})", message_id),
        )

    def remove_event(self, account: str, key: EventKey) -> list[EventKey]:
        """Forget an event (instance "*" means every instance of the UID); the removed keys."""
        if key.instance == "*":
            rows = self.conn.execute(
                "SELECT calendar, uid, instance FROM event WHERE account=? AND calendar=? "
                "AND uid=?",
                (account, key.calendar, key.uid),
            ).fetchall()
        else:
            rows = self.conn.execute(
                "SELECT calendar, uid, instance FROM event WHERE account=? AND calendar=? "
                "AND uid=? AND instance=?",
                (account, key.calendar, key.uid, key.instance),
            ).fetchall()
        keys = [EventKey(r["calendar"], r["uid"], r["instance"]) for r in rows]
        for k in keys:
            self.conn.execute(
                "DELETE FROM event WHERE account=? AND calendar=? AND uid=? AND instance=?",
                (account, k.calendar, k.uid, k.instance),
            )
        return keys

    def _interview(self, row: sqlite3.Row) -> InterviewRow:
        lead = _person(row["lead"])
        override = row["company_override"]
        return InterviewRow(
            id=row["id"],
            account=row["account"],
            key=EventKey(row["calendar"], row["uid"], row["instance"]),
            title=row["title"],
            company=override or row["company"],
            role=row["role"],
            start=datetime.fromisoformat(row["start"]),
            end=datetime.fromisoformat(row["end"]),
            state=InterviewState(row["state"]),
            attendees=tuple(
                Person(email=a["email"], name=a.get("name", ""))
                for a in json.loads(row["attendees"])
            ),
            lead=lead,
            notes=row["notes"],
            notes_version=row["notes_version"],
            decision_date=date.fromisoformat(row["decision_date"])
            if row["decision_date"]
            else None,
            employer_domains=tuple(json.loads(row["employer_domains"])),
            note_list=tuple(self.notes(row["id"])),
            company_reason="you chose it (note --company)" if override else row["company_reason"],
            missing_since=_dt(row["missing_since"]),
            missing_listings=row["missing_listings"],
            archived_at=_dt(row["archived_at"]),
        )

    def interview_by_key(self, account: str, key: EventKey) -> InterviewRow | None:
        row = self.conn.execute(
            "SELECT * FROM interview WHERE account=? AND calendar=? AND uid=? AND instance=?",
            (account, key.calendar, key.uid, key.instance),
        ).fetchone()
        return self._interview(row) if row else None

    def interview(self, interview_id: int) -> InterviewRow | None:
        row = self.conn.execute("SELECT * FROM interview WHERE id=?", (interview_id,)).fetchone()
        return self._interview(row) if row else None

    def lead_override(self, interview_id: int) -> str | None:
        row = self.conn.execute(
            "SELECT lead_override FROM interview WHERE id=?", (interview_id,)
        ).fetchone()
        return row["lead_override"] if row else None

    def interviews(self, account: str | None = None, *, live_only: bool = False,
                   ended_since: datetime | None = None) -> list[InterviewRow]:
        """Every interview (of ``account``); with ``live_only``, those not archived; with
        ``ended_since``, those that ended since then."""
        query = "SELECT * FROM interview WHERE 1=1"
        args: list[Any] = []
        if account is not None:
            query += " AND account=?"
            args.append(account)
        if live_only:
            query += " AND archived_at IS NULL"
        if ended_since is not None:
            query += " AND end >= ?"
            args.append(_iso(ended_since))
        rows = self.conn.execute(query + " ORDER BY start, id", args)
        return [self._interview(r) for r in rows]

    def first_start(self, account: str, ended_since: datetime) -> datetime | None:
        """The earliest start of the interviews that ended since ``ended_since``, or None."""
        row = self.conn.execute(
            "SELECT min(start) AS first FROM interview WHERE account=? AND end >= ?",
            (account, _iso(ended_since)),
        ).fetchone()
        return _dt(row["first"])

    def archive(self, interview_ids: Sequence[int], now: datetime) -> None:
        """Move finished interviews to the archive: kept whole, no longer loaded by a pass."""
        self.conn.executemany(
            "UPDATE interview SET archived_at=? WHERE id=? AND archived_at IS NULL",
            [(_iso(now), i) for i in interview_ids],
        )

    def archived_interviews(self, account: str, since: datetime | None = None
                            ) -> list[InterviewRow]:
        """The archived interviews of ``account`` (those that ended since ``since``)."""
        rows = self.conn.execute(
            "SELECT * FROM interview WHERE account=? AND archived_at IS NOT NULL AND end >= ? "
            "ORDER BY start, id",
            (account, _iso(since) or ""),
        )
        return [self._interview(r) for r in rows]

    def archived_count(self, account: str) -> int:
        row = self.conn.execute(
            "SELECT count(*) AS n FROM interview WHERE account=? AND archived_at IS NOT NULL",
            (account,),
        ).fetchone()
        return int(row["n"])

    def upsert_interview(
        self,
        account: str,
        key: EventKey,
        *,
        title: str,
        company: str,
        role: str,
        start: datetime,
        end: datetime,
        state: InterviewState,
        attendees: Sequence[Person],
        lead: Person | None,
        employer_domains: Sequence[str],
        now: datetime,
        company_reason: str = "",
    ) -> tuple[int, bool]:
        """Insert or update; returns (id, changed)."""
        existing = self.interview_by_key(account, key)
        values = (
            title,
            company,
            role,
            _iso(start),
            _iso(end),
            state.value,
            json.dumps([{"email": p.email, "name": p.name} for p in attendees]),
            _person_json(lead),
            json.dumps(list(employer_domains)),
            _iso(now),
        )
        if existing is None:
            cur = self.conn.execute(
                "INSERT INTO interview (account, calendar, uid, instance, title, company, role, "
                "start, end, state, attendees, lead, employer_domains, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (account, key.calendar, key.uid, key.instance, *values),
            )
            assert cur.lastrowid is not None
            self.conn.execute(
                "UPDATE interview SET company_reason=? WHERE id=?", (company_reason, cur.lastrowid)
            )
            return cur.lastrowid, True
        detected = self.conn.execute(
            "SELECT company, company_reason FROM interview WHERE id=?", (existing.id,)
        ).fetchone()
        if company_reason and detected["company_reason"] != company_reason:
            self.conn.execute(
                "UPDATE interview SET company_reason=? WHERE id=?", (company_reason, existing.id)
            )
        changed = (
            existing.title != title
            or detected["company"] != company
            or existing.role != role
            or existing.start != start
            or existing.end != end
            or existing.state != state
            or existing.attendees != tuple(attendees)
            or existing.lead != lead
        )
        if changed:
            self.conn.execute(
                "UPDATE interview SET title=?, company=?, role=?, start=?, end=?, state=?, "
                "attendees=?, lead=?, employer_domains=?, updated_at=?, archived_at=NULL "
                "WHERE id=?",
                (*values, existing.id),
            )
        return existing.id, changed

    def set_interview_state(self, interview_id: int, state: InterviewState, now: datetime) -> None:
        self.conn.execute(
            "UPDATE interview SET state=?, updated_at=?, archived_at=NULL WHERE id=?",
            (state.value, _iso(now), interview_id),
        )

    def set_notes(self, interview_id: int, notes: str, now: datetime) -> None:
        """Replace the notes for every interviewer with `notes` (one note, or none if empty)."""
        self.conn.execute("DELETE FROM note WHERE interview_id=? AND recipient=''", (interview_id,))
        if notes.strip():
            self.conn.execute(
                "INSERT INTO note (interview_id, recipient, text, created_at) VALUES (?, '', ?, ?)",
                (interview_id, notes, _iso(now)),
            )
        self._notes_changed(interview_id, now)

    def notes(self, interview_id: int) -> list[Note]:
        """The interview's notes in the order given, numbered as `note --list` shows them."""
        rows = self.conn.execute(
            "SELECT recipient, text FROM note WHERE interview_id=? ORDER BY id", (interview_id,)
        ).fetchall()
        return [
            Note(text=r["text"], recipient=r["recipient"], number=n)
            for n, r in enumerate(rows, start=1)
        ]

    def add_note(self, interview_id: int, text: str, now: datetime, recipient: str = "") -> Note:
        """Add a note for every interviewer, or (with `recipient`) for that one address."""
        self.conn.execute(
            "INSERT INTO note (interview_id, recipient, text, created_at) VALUES (?, ?, ?, ?)",
            (interview_id, recipient.strip().lower(), text, _iso(now)),
        )
        self._notes_changed(interview_id, now)
        return self.notes(interview_id)[-1]

    def remove_note(self, interview_id: int, number: int, now: datetime) -> Note | None:
        """Remove note `number` (as `notes` numbers them); None if there is no such note."""
        rows = self.conn.execute(
            "SELECT id FROM note WHERE interview_id=? ORDER BY id", (interview_id,)
        ).fetchall()
        if not 1 <= number <= len(rows):
            return None
        gone = self.notes(interview_id)[number - 1]
        self.conn.execute("DELETE FROM note WHERE id=?", (rows[number - 1]["id"],))
        self._notes_changed(interview_id, now)
        return gone

    def _notes_changed(self, interview_id: int, now: datetime) -> None:
        # interview.notes keeps the notes for everyone joined, for readers of the old column;
        # the version tells the planner that unedited drafts should be rendered again.
        shared = [n.text for n in self.notes(interview_id) if not n.recipient]
        self.conn.execute(
            "UPDATE interview SET notes=?, notes_version=notes_version+1, updated_at=?, "
            "archived_at=NULL WHERE id=?",
            ("\n".join(shared), _iso(now), interview_id),
        )

    def set_company_override(self, interview_id: int, company: str, now: datetime) -> None:
        """The company name the user chose; "" goes back to the one found in the calendar.

        Drafts are rendered again like after a change of notes, so the version is bumped.
        """
        self.conn.execute(
            "UPDATE interview SET company_override=?, notes_version=notes_version+1, "
            "updated_at=?, archived_at=NULL WHERE id=?",
            (company.strip(), _iso(now), interview_id),
        )

    def set_decision_date(self, interview_id: int, day: date | None, now: datetime) -> None:
        self.conn.execute(
            "UPDATE interview SET decision_date=?, updated_at=?, archived_at=NULL WHERE id=?",
            (day.isoformat() if day else None, _iso(now), interview_id),
        )

    def set_lead_override(self, interview_id: int, lead: Person, now: datetime) -> None:
        """The user's choice of lead: used at once, and kept when the event changes."""
        self.conn.execute(
            "UPDATE interview SET lead_override=?, lead=?, updated_at=?, archived_at=NULL "
            "WHERE id=?",
            (lead.email.lower(), _person_json(lead), _iso(now), interview_id),
        )

    # --- drafts --------------------------------------------------------------------------

    def _draft(self, row: sqlite3.Row) -> DraftRow:
        return DraftRow(
            id=row["id"],
            interview_id=row["interview_id"],
            kind=DraftKind(row["kind"]),
            seq=row["seq"],
            recipient=Person(row["recipient_email"], row["recipient_name"]),
            state=DraftState(row["state"]),
            due=datetime.fromisoformat(row["due"]),
            message_id=row["message_id"],
            provider_id=row["provider_id"],
            created_at=_dt(row["created_at"]),
            content_hash=row["content_hash"],
            notes_version=row["notes_version"],
            late=bool(row["late"]),
            reminded_at=_dt(row["reminded_at"]),
            flagged=row["flagged"],
            pending_hash=row["pending_hash"],
            trashed=bool(row["trashed"]),
            version=row["version"],
        )

    def drafts(self, account: str | None = None, interview_id: int | None = None, *,
               live_only: bool = False) -> list[DraftRow]:
        query = "SELECT d.* FROM draft d JOIN interview i ON i.id = d.interview_id WHERE 1=1"
        args: list[Any] = []
        if account is not None:
            query += " AND i.account=?"
            args.append(account)
        if interview_id is not None:
            query += " AND d.interview_id=?"
            args.append(interview_id)
        if live_only:
            query += " AND i.archived_at IS NULL"
        query += " ORDER BY d.id"
        return [self._draft(r) for r in self.conn.execute(query, args)]

    def draft_by_message_id(self, account: str, message_id: str) -> DraftRow | None:
        """The account's draft row with this Message-ID, archived or not (one indexed look)."""
        row = self.conn.execute(
            "SELECT d.* FROM draft d JOIN interview i ON i.id = d.interview_id "
            "WHERE d.message_id=? AND i.account=?",
            (message_id, account),
        ).fetchone()
        return self._draft(row) if row else None

    def draft(self, draft_id: int) -> DraftRow:
        row = self.conn.execute("SELECT * FROM draft WHERE id=?", (draft_id,)).fetchone()
        if row is None:
            raise LedgerError(f"no draft {draft_id}")
        return self._draft(row)

    def draft_subject(self, draft_id: int) -> str:
        row = self.conn.execute("SELECT subject FROM draft WHERE id=?", (draft_id,)).fetchone()
        return str(row["subject"]) if row else ""

    def draft_warnings(self, draft_id: int) -> list[str]:
        row = self.conn.execute("SELECT warnings FROM draft WHERE id=?", (draft_id,)).fetchone()
        return list(json.loads(row["warnings"])) if row else []

    def insert_draft(
        self,
        interview_id: int,
        kind: DraftKind,
        seq: int,
        recipient: Person,
        state: DraftState,
        due: datetime,
        message_id: str,
        late: bool,
        now: datetime,
    ) -> int:
        cur = self.conn.execute(
            "INSERT INTO draft (interview_id, kind, seq, recipient_email, recipient_name, state, "
            "due, message_id, late, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(interview_id, kind, seq, recipient_email) DO NOTHING",
            (
                interview_id,
                kind.value,
                seq,
                recipient.email.lower(),
                recipient.name,
                state.value,
                _iso(due),
                message_id,
                int(late),
                _iso(now),
            ),
        )
        if cur.lastrowid and cur.rowcount:
            return cur.lastrowid
        row = self.conn.execute(
            "SELECT id FROM draft WHERE interview_id=? AND kind=? AND seq=? AND recipient_email=?",
            (interview_id, kind.value, seq, recipient.email.lower()),
        ).fetchone()
        return int(row["id"])

    def update_draft(self, draft_id: int, now: datetime, **fields: Any) -> None:
        allowed = {
            "state",
            "due",
            "provider_id",
            "created_at",
            "content_hash",
            "notes_version",
            "late",
            "reminded_at",
            "flagged",
            "subject",
            "gaps",
            "warnings",
            "pending_hash",
            "trashed",
            "version",
        }
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"unknown draft fields: {sorted(unknown)}")
        values: list[Any] = []
        for value in fields.values():
            if isinstance(value, datetime):
                values.append(_iso(value))
            elif isinstance(value, DraftState):
                values.append(value.value)
            elif isinstance(value, bool):
                values.append(int(value))
            else:
                values.append(value)
        assignments = ", ".join(f"{name}=?" for name in fields)
        self.conn.execute(
            f"UPDATE draft SET {assignments}, updated_at=? WHERE id=?",
            (*values, _iso(now), draft_id),
        )

    # --- messages ------------------------------------------------------------------------

    def message_known(self, account: str, folder: Folder, provider_id: str,
                      message_id: str = "") -> bool:
        """Whether the message has a row: by its id in the mailbox, or by its Message-ID (the
        same mail seen again after the user moved it to a folder that is also read, where
        IMAP gives it another UID)."""
        return (
            self.conn.execute(
                "SELECT 1 FROM message WHERE account=? AND folder=? AND (provider_id=? "
                "OR (?<>'' AND message_id=?))",
                (account, folder.value, provider_id, message_id, message_id),
            ).fetchone()
            is not None
        )

    def insert_message(
        self,
        account: str,
        *,
        folder: Folder,
        provider_id: str,
        message_id: str,
        interview_id: int | None,
        kind: MessageKind,
        reason: str,
        sender: str,
        recipients: Sequence[str],
        subject: str,
        at: datetime,
        return_date: date | None,
        our_draft_id: int | None,
    ) -> None:
        self.conn.execute(
            "INSERT INTO message (account, folder, provider_id, message_id, interview_id, kind, "
            "reason, sender, recipients, subject, at, return_date, our_draft_id) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(account, folder, provider_id) DO NOTHING",
            (
                account,
                folder.value,
                provider_id,
                message_id,
                interview_id,
                kind.value,
                reason,
                sender,
                json.dumps(list(recipients)),
                subject,
                _iso(at),
                return_date.isoformat() if return_date else None,
                our_draft_id,
            ),
        )

    def messages(self, account: str, *, live_only: bool = False) -> list[MessageRow]:
        if live_only:  # from the live interviews (indexed), not through every message
            rows = self.conn.execute(
                "SELECT m.* FROM interview i CROSS JOIN message m ON m.interview_id = i.id "
                "WHERE i.account=? AND i.archived_at IS NULL AND m.account=? "
                "ORDER BY m.at, m.id",
                (account, account),
            )
        else:
            rows = self.conn.execute(
                "SELECT * FROM message WHERE account=? AND interview_id IS NOT NULL "
                "ORDER BY at, id",
                (account,),
            )
        return [
            MessageRow(
                interview_id=r["interview_id"],
                kind=MessageKind(r["kind"]),
                folder=Folder(r["folder"]),
                sender=r["sender"],
                at=datetime.fromisoformat(r["at"]),
                message_id=r["message_id"],
                recipients=tuple(json.loads(r["recipients"])),
                return_date=date.fromisoformat(r["return_date"]) if r["return_date"] else None,
                our_draft_id=r["our_draft_id"],
            )
            for r in rows
        ]

    def message_ids(self, account: str) -> KnownMessageIds:
        """`known_message_ids` looked up one id at a time (archived interviews included),
        instead of loaded whole at every pass."""
        return KnownMessageIds(self.conn, account)

    def known_message_ids(self, account: str) -> dict[str, int]:
        """Message-IDs of our drafts and of the user's matched mail, to their interview."""
        known: dict[str, int] = {}
        for r in self.conn.execute(
            "SELECT d.message_id, d.interview_id FROM draft d JOIN interview i "
            "ON i.id = d.interview_id WHERE i.account=?",
            (account,),
        ):
            known[r["message_id"]] = r["interview_id"]
        for r in self.conn.execute(
            # A suspicious message (its sender unconfirmed) opens no thread of an interview.
            "SELECT message_id, interview_id FROM message WHERE account=? AND "
            "interview_id IS NOT NULL AND message_id != '' AND kind != ?",
            (account, MessageKind.SUSPICIOUS.value),
        ):
            known.setdefault(r["message_id"], r["interview_id"])
        return known

    # --- the planner's view --------------------------------------------------------------

    def generation(self) -> int:
        """Moves on with every write to the planner's view or to a pause, by any connection
        (the triggers of schema 7); equal readings mean nothing the planner reads changed."""
        return int(self.conn.execute("SELECT n FROM generation WHERE id=1").fetchone()[0])

    def snapshot(self, account: str) -> Snapshot:
        """The live part of the account: archived interviews, their drafts and mail are left
        out (lookups that safety needs, by Message-ID or event, still see them)."""
        return Snapshot(
            interviews=tuple(self.interviews(account, live_only=True)),
            drafts=tuple(self.drafts(account, live_only=True)),
            messages=tuple(self.messages(account, live_only=True)),
        )


class KnownMessageIds(Mapping[str, int]):
    """Message-ID -> interview of our drafts and of the user's matched mail, read from the
    ledger key by key (indexed), so threading a reply needs no full load of the history."""

    def __init__(self, conn: sqlite3.Connection, account: str) -> None:
        self.conn = conn
        self.account = account

    def __getitem__(self, message_id: str) -> int:
        row = self.conn.execute(
            "SELECT d.interview_id FROM draft d JOIN interview i ON i.id = d.interview_id "
            "WHERE d.message_id=? AND i.account=?",
            (message_id, self.account),
        ).fetchone() or self.conn.execute(
            # A suspicious message (its sender unconfirmed) opens no thread of an interview.
            "SELECT interview_id FROM message WHERE account=? AND message_id=? AND "
            "interview_id IS NOT NULL AND kind != ? ORDER BY id LIMIT 1",
            (self.account, message_id, MessageKind.SUSPICIOUS.value),
        ).fetchone()
        if row is None or not message_id:
            raise KeyError(message_id)
        return int(row[0])

    def _all(self) -> dict[str, int]:
        return Ledger(self.conn, Path()).known_message_ids(self.account)

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


class LedgerPool:
    """Ledger connections for the daemon's workers: one per pass running at once, reused.

    A pass borrows a connection and gives it back; a new one is opened only when every
    connection is in use, so the count never exceeds the number of workers. A connection that
    failed (a damaged or full disk) is closed instead of kept.
    """

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.opened = 0
        self._free: list[Ledger] = []
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def borrow(self) -> Iterator[Ledger]:
        with self._lock:
            ledger = self._free.pop() if self._free else None
        if ledger is None:
            ledger = Ledger.open(self.state_dir)
            with self._lock:
                self.opened += 1
        broken = False
        try:
            yield ledger
        except sqlite3.Error:
            broken = True
            raise
        finally:
            if not broken and ledger.conn.in_transaction:
                try:  # never hand on a half-done transaction
                    ledger.conn.execute("ROLLBACK")
                except sqlite3.Error:
                    broken = True
            if broken:
                with contextlib.suppress(sqlite3.Error):
                    ledger.close()
            with self._lock:
                if broken:
                    self.opened -= 1
                else:
                    self._free.append(ledger)

    def close(self) -> None:
        with self._lock:
            free, self._free = self._free, []
            self.opened -= len(free)
        for ledger in free:
            with contextlib.suppress(sqlite3.Error):
                ledger.close()
