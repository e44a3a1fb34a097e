"""`mailbridge service install | uninstall | status`: the daemon at login.

Linux: a systemd *user* unit in ``$XDG_CONFIG_HOME/systemd/user`` (``~/.config`` when unset).
A user manager has no ``network-online.target`` to wait for, so the unit does not pretend to;
a pass that finds the network down retries with backoff anyway. macOS: a launchd agent in
``~/Library/LaunchAgents`` that logs to ``~/Library/Logs/mailbridge.log``.

``ExecStart`` must survive a reinstall: under pipx it names pipx's stable link
(``~/.local/bin/mailbridge``), not the virtual environment behind it, which pipx rebuilds.
"""

from __future__ import annotations

import os
import plistlib
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

UNIT_NAME = "mailbridge.service"
AGENT_LABEL = "org.mailbridge.agent"

UNIT = """# Written by `mailbridge service install`; `mailbridge service uninstall` removes it.
[Unit]
Description=mailbridge: interview thank-you and follow-up drafts (never sends mail)
Documentation=man:mailbridge(1)

[Service]
Type=simple
ExecStart={command}
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
RestartSec=30
# Many accounts need more open files than the usual soft limit of 1,024 (the daemon raises its
# own soft limit up to this hard one, and says so in one line when even that is too low).
LimitNOFILE=65536

[Install]
WantedBy=default.target
"""


def _pipx_link() -> Path | None:
    """pipx's link to our command, when this mailbridge runs from a pipx environment."""
    prefix = Path(sys.prefix)
    if prefix.parent.name != "venvs" or not (prefix / "pipx_metadata.json").exists():
        return None
    bin_dir = Path(os.environ.get("PIPX_BIN_DIR") or Path.home() / ".local" / "bin")
    link = bin_dir / "mailbridge"
    return link if link.exists() else None


def program() -> list[str]:
    """The command that starts this mailbridge, in a form that outlives a reinstall."""
    link = _pipx_link()
    if link is not None:
        return [str(link)]
    script = Path(sys.executable).parent / "mailbridge"  # this installation's own script
    if script.exists():
        return [str(script)]
    found = shutil.which("mailbridge")
    return [found] if found else [sys.executable, "-m", "mailbridge.cli"]


def unit_path(platform: str = sys.platform) -> Path:
    if platform == "darwin":
        return Path.home() / "Library" / "LaunchAgents" / f"{AGENT_LABEL}.plist"
    config_home = os.environ.get("XDG_CONFIG_HOME", "").strip()
    base = Path(config_home) if config_home and Path(config_home).is_absolute() else (
        Path.home() / ".config")
    return base / "systemd" / "user" / UNIT_NAME


def log_path() -> Path:
    """Where the launchd agent writes its log (systemd keeps it in the journal)."""
    return Path.home() / "Library" / "Logs" / "mailbridge.log"


def unit_text(config: Path, platform: str = sys.platform) -> tuple[Path, str]:
    """Where the unit goes and what it says, for this platform."""
    argv = [*program(), "--config", str(config.expanduser().absolute()), "run"]
    path = unit_path(platform)
    if platform == "darwin":
        agent = {
            "Label": AGENT_LABEL,
            "ProgramArguments": argv,
            "RunAtLoad": True,
            "KeepAlive": {"SuccessfulExit": False},  # restart after a crash, not after a stop
            "ThrottleInterval": 30,
            "StandardOutPath": str(log_path()),
            "StandardErrorPath": str(log_path()),
        }
        return path, plistlib.dumps(agent).decode()
    # systemd splits ExecStart on spaces and expands % and $: quote and escape accordingly.
    command = shlex.join(argv).replace("%", "%%").replace("$", "$$")
    return path, UNIT.format(command=command)


def _run(argv: list[str]) -> tuple[int, str]:
    """Run a service manager command; (exit status, its output) or (127, why) without it."""
    if shutil.which(argv[0]) is None:
        return 127, f"{argv[0]} is not available here"
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    return done.returncode, (done.stdout + done.stderr).strip()


def install(config: Path, *, dry: bool = False, platform: str = sys.platform) -> int:
    path, text = unit_text(config, platform)
    if dry:
        print(text)
        return 0
    if not config.expanduser().exists():
        print(f"Note: {config} does not exist yet; the service needs it "
              "(`mailbridge init` writes one).", file=sys.stderr)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    print(f"Wrote {path}.")
    if platform == "darwin":
        print(f"Start it now and at every login with: launchctl load -w {path}")
        print(f"Logs: {log_path()}")
    else:
        print("Start it now and at every login with:")
        print("  systemctl --user daemon-reload && systemctl --user enable --now mailbridge")
        print("Logs: journalctl --user -u mailbridge -f   Reload the config: "
              "systemctl --user reload mailbridge")
    return 0


def uninstall(*, platform: str = sys.platform) -> int:
    path = unit_path(platform)
    if platform == "darwin":
        _run(["launchctl", "unload", "-w", str(path)])
    else:
        _run(["systemctl", "--user", "disable", "--now", UNIT_NAME])
    if not path.exists():
        print(f"No service installed ({path} does not exist); nothing to remove.")
        return 0
    path.unlink()
    if platform != "darwin":
        _run(["systemctl", "--user", "daemon-reload"])
    print(f"Removed {path}; mailbridge no longer starts at login. Your config and ledger "
          "are kept.")
    return 0


def status(config: Path, *, platform: str = sys.platform) -> int:
    """Whether the unit is installed, what the manager says, and whether the service answers."""
    from mailbridge import config as config_module
    from mailbridge.daemon import ServiceUnreachable, ask_service

    path = unit_path(platform)
    print(f"unit: {path} ({'installed' if path.exists() else 'not installed'})")
    if platform == "darwin":
        code, said = _run(["launchctl", "list", AGENT_LABEL])
        print(f"launchd: {'loaded' if code == 0 else 'not loaded'}; logs: {log_path()}")
    else:
        code, said = _run(["systemctl", "--user", "is-active", UNIT_NAME])
        print(f"systemd: {said.splitlines()[0] if said else 'unknown'}; "
              "logs: journalctl --user -u mailbridge")
    answering = False
    try:
        settings = config_module.load(config.expanduser())
        reply = ask_service(settings.state_dir, {"command": "ping"}, timeout=10)
        answering = True
        print(f"service: running (pid {reply.get('pid')}) for "
              f"{', '.join(reply.get('accounts', [])) or 'no accounts'}")
    except config_module.ConfigError:
        print(f"service: unknown ({config} cannot be read; `mailbridge check` says why)")
    except (ServiceUnreachable, OSError):
        print("service: not running for this config")
    return 0 if answering else 3
