"""A provider is one module plus one entry point: a mailbox written outside mailbridge (in
tests/data/provider) is installed the way a third-party package is, then configured, checked
and run through the command line. mailbridge itself is not changed for it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mailbridge import demo

HERE = Path(__file__).resolve().parent
RUN_CLI = "import sys; from mailbridge.cli import main; sys.exit(main(sys.argv[1:]))"

pytestmark = pytest.mark.slow  # each command is a fresh Python process


@pytest.fixture
def installed(tmp_path: Path) -> dict[str, str]:
    """The environment of a Python where the notebook provider is installed: its module and
    a dist-info folder naming its entry point, on the path."""
    site = tmp_path / "site"
    (site / "notebook_provider-1.0.dist-info").mkdir(parents=True)
    shutil.copy(HERE / "data" / "provider" / "notebook_provider.py", site)
    (site / "notebook_provider-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: notebook-provider\nVersion: 1.0\n")
    (site / "notebook_provider-1.0.dist-info" / "entry_points.txt").write_text(
        "[mailbridge.providers]\nmailbox.notebook = notebook_provider:Notebook\n")
    env = {k: v for k, v in os.environ.items() if k != "MAILBRIDGE_CONFIG"}
    return env | {"PYTHONPATH": os.pathsep.join([str(site), str(HERE.parent)]),
                  "HOME": str(tmp_path / "home")}


def mailbridge(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", RUN_CLI, *argv], env=env, capture_output=True,
                          text=True, timeout=120, check=False)


def test_a_provider_from_outside_is_configured_checked_and_run(
    tmp_path: Path, installed: dict[str, str]
) -> None:
    # An interview that ended four hours ago: its thank-yous are due now.
    (tmp_path / "example").mkdir()
    config = demo.write_example(tmp_path / "example", datetime.now(UTC) - timedelta(hours=3))
    text = config.read_text().replace('provider = "local"', 'provider = "notebook"')
    config.write_text(text.replace('maildir = { path = "Maildir" }',
                                   'notebook = { folder = "notes", label = "job hunt" }'))

    # Its own table is checked by its own schema, with the file, line and fix.
    notes = config.parent / "notes"
    result = mailbridge(installed, "--config", str(config), "check")
    assert result.returncode == 1, result.stderr
    assert "demo (notebook, calendar file): problem" in result.stdout
    assert f"notebook.folder {notes} does not exist" in result.stdout  # its own check

    notes.mkdir()
    result = mailbridge(installed, "--config", str(config), "check")
    assert result.returncode == 0 and "demo (notebook, calendar file): ok" in result.stdout

    result = mailbridge(installed, "--config", str(config), "run", "--once")
    assert result.returncode == 0, result.stderr
    stored = [json.loads(p.read_text()) for p in sorted(notes.glob("*.json"))]
    assert {d["to"] for d in stored} == {demo.LEAD[1], demo.SECOND[1]}
    assert {d["label"] for d in stored} == {"job hunt"}  # its settings reached it
    assert all(d["kind"] == "thank_you" for d in stored)

    config.write_text(config.read_text().replace('folder = "notes"', 'foldr = "notes"'))
    result = mailbridge(installed, "--config", str(config), "check")
    line = next(n for n, t in enumerate(config.read_text().splitlines(), 1) if "foldr" in t)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"config.toml:{line}: accounts.demo.notebook.foldr: unknown key" in result.stderr
    assert "did you mean folder?" in result.stderr


def test_init_offers_an_installed_provider(tmp_path: Path, installed: dict[str, str]) -> None:
    config = tmp_path / "config.toml"
    result = mailbridge(installed, "--config", str(config), "init", "--provider", "notebook")
    assert result.returncode == 0, result.stderr
    text = config.read_text()
    assert "[accounts.main.notebook]" in text and "where the drafts are kept" in text
    result = mailbridge(installed, "--config", str(config), "check")
    assert result.returncode == 1 and result.stderr == ""  # it loads: only files are missing
    assert "notebook.folder" in result.stdout and "does not exist" in result.stdout

