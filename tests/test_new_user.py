"""Issue 14, item 8 and the "new user" acceptance: the README's commands, copy-pasted into a
fresh clone, virtual environment and HOME, each checked for its exit status and output; the
wheel's top-level names; `pipx install .` with a real pipx."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from mailbridge import demo

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
LEFT_OUT = shutil.ignore_patterns(".venv", ".git", "__pycache__", "*.egg-info", "build", "dist",
                                  ".mypy_cache", ".pytest_cache", ".ruff_cache", "demo-example")
# Commands that need a user session manager (systemd --user, launchd): not on a test machine.
SESSION_MANAGERS = ("systemctl ", "journalctl ", "launchctl ")


def blocks(section: str) -> list[str]:
    """The command lines of the ```sh blocks under the README heading ``section``."""
    text = README.read_text(encoding="utf-8")
    match = re.search(rf"^## {re.escape(section)}\n(.*?)(?=^## |\Z)", text,
                      re.DOTALL | re.MULTILINE)
    assert match is not None, f"README has no section {section!r}"
    lines = []
    for block in re.findall(r"```sh\n(.*?)```", match.group(1), re.DOTALL):
        lines += [line for line in block.splitlines() if line.strip()]
    assert lines, f"README section {section!r} has no commands"
    return lines


def test_readme_commands_need_no_bare_sudo_and_no_mailbridge_off_path() -> None:
    """As root there is no sudo; after the documented venv install `mailbridge` is not on PATH."""
    for section in ("Try it", "Install", "Use it", "Run it as a service", "Run the tests"):
        for line in blocks(section):
            assert not re.match(r"\s*sudo\b", line) and "&& sudo" not in line, line
            if section == "Try it":
                assert not re.match(r"\s*mailbridge\b", line), line


def base_python() -> Path:
    """The interpreter behind the test's venv: a new user's `python3` is not our venv's."""
    return Path(getattr(sys, "_base_executable", sys.executable)).resolve()


@pytest.fixture
def newcomer(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A fresh clone and HOME, and an environment with nothing of the test's venv on PATH."""
    clone = tmp_path / "clone"
    shutil.copytree(REPO, clone, ignore=LEFT_OUT)
    home = tmp_path / "home"
    home.mkdir()
    tools = tmp_path / "tools"  # pipx, as a user would have it, and nothing else of ours
    tools.mkdir()
    pipx = Path(sys.executable).parent / "pipx"
    (tools / "pipx").symlink_to(pipx)
    (tools / "python3").symlink_to(base_python())
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("XDG_", "MAILBRIDGE_", "VIRTUAL_ENV", "PYTHON", "PIPX_"))
           and k not in ("HOME", "PATH")}
    env.update({
        "HOME": str(home),
        "PATH": f"{tools}:/usr/local/bin:/usr/bin:/bin",
        "PIPX_HOME": str(tmp_path / "pipx-home"),  # a throwaway pipx, as the brief asks
        "PIPX_BIN_DIR": str(home / ".local" / "bin"),
        "PIPX_MAN_DIR": str(home / ".local" / "share" / "man"),
        "PYTHON_KEYRING_BACKEND": "keyrings.alt.file.PlaintextKeyring",
    })
    return clone, env


def sh(line: str, cwd: Path, env: dict[str, str], timeout: float = 900) -> tuple[int, str]:
    done = subprocess.run(["bash", "-c", line], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False)
    return done.returncode, done.stdout + done.stderr


def expect(line: str, table: dict[str, tuple[int, str]]) -> tuple[int, str]:
    """The expected (exit status, output snippet) for a README line, by its command."""
    command = line.split("#", 1)[0].strip()
    for key, wanted in table.items():
        if key in command:
            return wanted
    raise AssertionError(f"the README has a command this test does not know: {line!r}")


TRY_IT = {
    "-m venv": (0, ""),
    "pip install -e .": (0, ""),
    "demo --dir demo-example": (0, "in Trash: 1"),
    "status --since 30d": (0, "taken back (the employer replied)"),
}
INSTALL = {"pipx install .": (0, "mailbridge")}
USE_IT = {
    "init --address": (0, "Wrote"),
    "check": (0, "main (local, calendar file): ok"),
    "run --once --dry-run": (0, "interview found"),
    "run --once": (0, ""),
    "status --since 7d": (0, "interview found: 1"),
    "status": (0, "lead: dana.whitfield@northwind-robotics.com"),
    "preview 1": (0, "thank-you [planned"),
    "note 1": (0, "Saved for interview 1"),
}
SERVICE = {
    "service install": (0, "Wrote"),
    "service status": (3, "not running"),
}


@pytest.mark.slow
def test_a_new_user_follows_the_readme(newcomer: tuple[Path, dict[str, str]]) -> None:
    clone, env = newcomer
    home = Path(env["HOME"])
    for line in blocks("Try it"):
        code, output = sh(line, clone, env)
        status, snippet = expect(line, TRY_IT)
        assert code == status and snippet in output, (line, output[-3000:])

    for line in blocks("Install"):
        code, output = sh(line, clone, env)
        status, snippet = expect(line, INSTALL)
        assert code == status and snippet in output, (line, output[-3000:])
    # pipx ensurepath and a new terminal: its bin folder is on PATH.
    env = {**env, "PATH": f"{env['PIPX_BIN_DIR']}:{env['PATH']}"}
    found = shutil.which("mailbridge", path=env["PATH"])
    assert found == str(home / ".local" / "bin" / "mailbridge")

    # The user's own mail and calendar, as the "Use it" section assumes them.
    for sub in ("cur", "new", "tmp"):
        (home / "Maildir" / sub).mkdir(parents=True)
    (home / "calendar").mkdir()
    from datetime import UTC, datetime, timedelta

    end = datetime.now(UTC) - timedelta(hours=1)
    ics = demo._ics(end - timedelta(hours=1), end).replace(demo.USER, "you@example.com")
    (home / "calendar" / "interview.ics").write_text(ics)  # the address `init` is given
    state = home / ".local" / "state" / "mailbridge"
    for line in blocks("Use it"):
        code, output = sh(line, home, env)
        status, snippet = expect(line, USE_IT)
        assert code == status and snippet in output, (line, output[-3000:])
        if "--dry-run" in line:
            assert not state.exists(), "the dry run created the state folder"
            assert not (home / "Maildir" / ".Drafts").exists()

    for line in blocks("Run it as a service"):
        if line.startswith(SESSION_MANAGERS):
            continue
        code, output = sh(line, home, env)
        status, snippet = expect(line, SERVICE)
        assert code == status and snippet in output, (line, output[-3000:])
    unit = (home / ".config" / "systemd" / "user" / "mailbridge.service").read_text()
    # The unit starts pipx's stable link, which a `pipx install --force` keeps.
    assert f"ExecStart={home}/.local/bin/mailbridge --config" in unit


@pytest.mark.slow
def test_the_wheel_installs_no_generic_top_level_package(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    shutil.copytree(REPO, clone, ignore=LEFT_OUT)
    out = tmp_path / "wheels"
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                           "-w", str(out), str(clone)],
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    (wheel,) = out.glob("mailbridge-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        top = {name.split("/", 1)[0] for name in archive.namelist()}
        names = archive.namelist()
    assert {t for t in top if not t.endswith(".dist-info")} == {"mailbridge",
                                                                 "mailbridge_providers"}
    assert "mailbridge_providers/local.py" in names and "mailbridge/templates" in " ".join(names)
