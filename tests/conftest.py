"""Shared test setup: server fixtures, an isolated keyring, no silent skips in CI."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest_plugins = ["tests.servers"]


@pytest.fixture(autouse=True)
def isolated_keyring(tmp_path_factory: pytest.TempPathFactory,
                     monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own plaintext keyring and XDG dirs: nothing touches the real ones."""
    home = tmp_path_factory.mktemp("xdg")
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyrings.alt.file.PlaintextKeyring")
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(home / "state"))
    import keyring.core

    keyring.core._keyring_backend = None  # type: ignore[attr-defined]
    keyring.core.init_backend()
    yield home
    keyring.core._keyring_backend = None  # type: ignore[attr-defined]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI a skipped test is a failure: a server test that did not run proves nothing."""
    if not os.environ.get("CI"):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if skipped:
        reporter.write_line(
            f"CI: {skipped} test(s) were skipped; in CI every test must run "
            "(install the servers: see .ci/run)", red=True,
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
