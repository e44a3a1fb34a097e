"""Issue 14, item 2: dry run means dry (the real CLI, as a subprocess)."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from tests.clirun import Service, example, mb, no_traceback


def tree(root: Path) -> dict[str, str]:
    """Every file under ``root`` with a digest of its bytes."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_dry_run_creates_nothing_and_prints_each_action_once(tmp_path: Path) -> None:
    config = example(tmp_path / "ex")
    folders = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    before = tree(tmp_path)
    done = mb("--config", str(config), "run", "--once", "--dry-run")
    no_traceback(done)
    assert done.returncode == 0, done.stderr
    # Nothing created: no .Drafts/.Sent/.Trash, no state folder, no ledger, no lock file.
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == folders
    assert tree(tmp_path) == before
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert any("interview found" in line for line in lines)
    assert any("draft planned" in line for line in lines)
    decisions = [line.split(" INFO ", 1)[-1] for line in lines]
    assert len(decisions) == len(set(decisions)), "an action was printed twice"


@pytest.mark.slow
def test_dry_run_leaves_an_existing_ledger_byte_for_byte(tmp_path: Path) -> None:
    config = example(tmp_path / "ex")
    assert mb("--config", str(config), "run", "--once").returncode == 0
    before = tree(tmp_path / "ex" / "state")
    done = mb("--config", str(config), "run", "--once", "--dry-run")
    assert done.returncode == 0 and "nothing to do" in done.stdout, done.stderr
    assert tree(tmp_path / "ex" / "state") == before


@pytest.mark.slow
def test_dry_run_needs_only_a_read_while_another_process_writes(tmp_path: Path) -> None:
    """A writer holding the ledger's write lock does not stop a dry run (it only reads)."""
    config = example(tmp_path / "ex")
    assert mb("--config", str(config), "run", "--once").returncode == 0
    writer = sqlite3.connect(tmp_path / "ex" / "state" / "ledger.sqlite3", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # the write lock, held for the whole dry run
    try:
        # Before: the dry run took the write lock itself and failed with "database is locked".
        done = mb("--config", str(config), "run", "--once", "--dry-run", timeout=25)
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    no_traceback(done)
    assert done.returncode == 0 and "nothing to do" in done.stdout, done.stderr


@pytest.mark.slow
def test_dry_run_runs_beside_the_service(tmp_path: Path) -> None:
    config = example(tmp_path / "ex")
    with Service(config, tmp_path / "ex" / "state"):
        done = mb("--config", str(config), "run", "--once", "--dry-run")
        no_traceback(done)
        assert done.returncode == 0 and "demo: " in done.stdout, done.stderr
        sync = mb("--config", str(config), "sync")  # the service still writes
        assert sync.returncode == 0, sync.stderr
