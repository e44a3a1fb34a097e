"""Every ledger schema that ever shipped opens with today's mailbridge, with its data intact; a
ledger from a newer mailbridge is refused and left exactly as it was.

Data-driven: each tests/data/ledgers/vN.sql is a populated ledger of schema N as SQL text (a
`sqlite3 .dump`). When a schema ships, add its file; never edit an old one.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from mailbridge.ledger import DB_NAME, MIGRATIONS, SCHEMA_VERSION, Ledger, LedgerError

LEDGERS = Path(__file__).parent / "data" / "ledgers"
DUMPS = sorted(LEDGERS.glob("v*.sql"), key=lambda p: int(re.findall(r"\d+", p.stem)[0]))

Rows = dict[str, list[dict[str, Any]]]


def load_dump(dump: Path, state_dir: Path) -> Path:
    state_dir.mkdir(mode=0o700)
    db = state_dir / DB_NAME
    conn = sqlite3.connect(db)
    conn.executescript(dump.read_text(encoding="utf-8"))
    conn.close()
    return db


def all_rows(conn: sqlite3.Connection) -> Rows:
    conn.row_factory = sqlite3.Row
    tables = [
        r[0]
        for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
        )
    ]
    return {
        table: [dict(r) for r in conn.execute(f"SELECT * FROM {table} ORDER BY rowid")]  # noqa: S608
        for table in tables
    }


def test_there_is_a_dump_for_every_schema_that_shipped() -> None:
    versions = [int(re.findall(r"\d+", p.stem)[0]) for p in DUMPS]
    assert versions == list(range(1, SCHEMA_VERSION + 1)), (
        "add tests/data/ledgers/vN.sql for each schema version (a populated ledger of it)"
    )
    assert len(MIGRATIONS) == SCHEMA_VERSION


@pytest.mark.parametrize("dump", DUMPS, ids=lambda p: p.stem)
def test_an_old_ledger_migrates_with_every_row_intact(dump: Path, tmp_path: Path) -> None:
    version = int(re.findall(r"\d+", dump.stem)[0])
    db = load_dump(dump, tmp_path / "state")
    raw = sqlite3.connect(db)
    before = all_rows(raw)
    assert raw.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(
        version
    )
    raw.close()
    assert sum(len(rows) for rows in before.values()) > 20, "the fixture should be populated"

    with Ledger.open(tmp_path / "state") as ledger:
        assert ledger.schema_version() == SCHEMA_VERSION
        after = all_rows(ledger.conn)
        # Every table, every row, every column that was there is still there with its value.
        # (A later migration may add tables and columns; it must not lose or change data.
        # One that renames a column must say so here, in a table of renames.)
        for table, rows in before.items():
            if table == "meta":
                continue
            assert table in after, f"table {table} was lost"
            assert len(after[table]) == len(rows), f"rows of {table} were lost or added"
            for old, new in zip(rows, after[table], strict=True):
                assert {k: new.get(k) for k in old} == old, f"a row of {table} changed"
        # The API of today reads everything back.
        accounts = {r["account"] for r in before["interview"]}
        for account in accounts:
            snapshot = ledger.snapshot(account)
            assert snapshot.interviews and snapshot.drafts and snapshot.messages
            assert ledger.audit_entries(account)
            assert ledger.account_status(account).last_ok is not None
        assert len(ledger.interviews()) == len(before["interview"])
        assert {r["cursor"] for r in before["sync"]} == {
            ledger.cursor(r["account"], r["resource"]) for r in before["sync"]
        }

    # Opening again is a no-op: nothing migrates twice.
    with Ledger.open(tmp_path / "state") as again:
        assert all_rows(again.conn) == after


def test_a_fresh_ledger_has_the_same_schema_as_a_migrated_one(tmp_path: Path) -> None:
    """Migrating v1 forward and creating a new ledger must end in one and the same schema."""

    def schema(conn: sqlite3.Connection) -> list[tuple[str, str]]:
        return sorted(
            (r[0], re.sub(r"\s+", " ", r[1] or ""))
            for r in conn.execute("SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL")
        )

    load_dump(DUMPS[0], tmp_path / "old")
    with Ledger.open(tmp_path / "old") as old, Ledger.open(tmp_path / "new") as new:
        assert schema(old.conn) == schema(new.conn)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("wal", [False, True], ids=["rollback-journal", "wal-mode"])
def test_a_newer_ledger_is_refused_and_not_touched(tmp_path: Path, wal: bool) -> None:
    state = tmp_path / "state"
    db = load_dump(DUMPS[-1], state)
    conn = sqlite3.connect(db)
    if wal:
        conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    conn.commit()
    conn.close()  # the last connection checkpoints and removes -wal
    files_before = sorted(p.name for p in state.iterdir())
    assert files_before == [DB_NAME]
    stamp = db.stat().st_mtime_ns
    before = digest(db)

    with pytest.raises(LedgerError) as info:
        Ledger.open(state)

    message = str(info.value)
    assert str(db) in message
    assert "newer mailbridge" in message and "schema 99" in message
    assert f"schema {SCHEMA_VERSION}" in message
    assert "Upgrade mailbridge" in message and "not touched" in message
    assert digest(db) == before
    assert db.stat().st_mtime_ns == stamp
    assert sorted(p.name for p in state.iterdir()) == files_before  # no -wal, -shm or lock


def test_not_a_ledger_is_a_clear_error(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / DB_NAME).write_bytes(b"this is not SQLite at all, just some text" * 20)
    with pytest.raises(LedgerError, match="not a usable ledger"):
        Ledger.open(state)


def test_processes_opening_a_new_ledger_at_once_migrate_it_once(tmp_path: Path) -> None:
    """The daemon and a `status` started together: each step runs once, under the write lock."""
    import threading

    failures: list[str] = []
    for n in range(15):
        state = tmp_path / f"s{n}"
        barrier = threading.Barrier(4)

        def open_it(state: Path = state, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            try:
                Ledger.open(state).close()
            except Exception as exc:  # noqa: BLE001 - any failure is the finding
                failures.append(repr(exc))

        threads = [threading.Thread(target=open_it) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        with Ledger.open(state) as ledger:
            assert ledger.schema_version() == SCHEMA_VERSION
    assert failures == []
