"""Run the real `mailbridge` command line as a subprocess, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from mailbridge import demo
from mailbridge.daemon import ServiceUnreachable, ask_service

SCRIPT = Path(sys.executable).parent / "mailbridge"
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "mailbridge.cli"]


def env(home: Path | None = None, **extra: str) -> dict[str, str]:
    """The test's environment (its own XDG folders, from conftest), with HOME set if given."""
    found = dict(os.environ)
    if home is not None:
        found["HOME"] = str(home)
    found.update(extra)
    return found


def mb(*argv: str, home: Path | None = None, timeout: float = 120,
       extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*COMMAND, *argv], capture_output=True, text=True, timeout=timeout,
                          env=env(home, **(extra_env or {})), stdin=subprocess.DEVNULL,
                          check=False)


def example(root: Path, extra: str = "") -> Path:
    """The demo's layout (interview ended an hour ago) in ``root``; returns the config path.

    ``extra`` is appended to the config, inside the account's table (it is the last one).
    """
    root.mkdir(parents=True, exist_ok=True)
    path = demo.write_example(root, datetime.now(UTC))
    if extra:
        path.write_text(path.read_text(encoding="utf-8") + extra, encoding="utf-8")
    return path


def no_traceback(done: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout, done.stderr


class Service:
    """`mailbridge run` in the background, for as long as the `with` block lasts."""

    def __init__(self, config: Path, state_dir: Path) -> None:
        self.config, self.state_dir = config, state_dir
        self.log = config.parent / "service.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Service:
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen([*COMMAND, "--config", str(self.config), "run"],
                                         stdout=log, stderr=subprocess.STDOUT, env=env())
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                ask_service(self.state_dir, {"command": "ping"}, timeout=5)
                return self
            except (ServiceUnreachable, OSError):
                time.sleep(0.05)
        raise AssertionError(f"the service did not answer: {self.log.read_text()}")

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        self.proc.terminate()
        self.proc.wait(timeout=30)
