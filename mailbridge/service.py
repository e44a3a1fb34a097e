"""`mailbridge service install`: run the daemon at login (systemd user unit or launchd agent)."""

from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path

UNIT = """[Unit]
Description=mailbridge: interview thank-you and follow-up drafts
After=network-online.target

[Service]
ExecStart={command}
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
RestartSec=30

[Install]
WantedBy=default.target
"""

PLIST = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
  <key>Label</key><string>org.mailbridge.agent</string>
  <key>ProgramArguments</key>
  <array>
{arguments}
  </array>
  <key>RunAtLoad</key><true/>
  <key>KeepAlive</key><true/>
  <key>StandardErrorPath</key><string>{log}</string>
</dict>
</plist>
"""


def _program() -> list[str]:
    found = shutil.which("mailbridge")
    return [found] if found else [sys.executable, "-m", "mailbridge.cli"]


def unit_text(config: Path, platform: str = sys.platform) -> tuple[Path, str]:
    """Where the unit goes and what it says, for this platform."""
    argv = [*_program(), "--config", str(config.resolve()), "run"]
    home = Path.home()
    if platform == "darwin":
        from xml.sax.saxutils import escape

        arguments = "\n".join(f"    <string>{escape(a)}</string>" for a in argv)
        log = home / "Library" / "Logs" / "mailbridge.log"
        path = home / "Library" / "LaunchAgents" / "org.mailbridge.agent.plist"
        return path, PLIST.format(arguments=arguments, log=escape(str(log)))
    path = home / ".config" / "systemd" / "user" / "mailbridge.service"
    return path, UNIT.format(command=shlex.join(argv))


def install(config: Path, *, dry: bool = False, platform: str = sys.platform) -> int:
    path, text = unit_text(config, platform)
    if dry:
        print(text)
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    print(f"Wrote {path}.")
    if platform == "darwin":
        print(f"Start it now and at every login with: launchctl load -w {path}")
    else:
        print("Start it now and at every login with:")
        print("  systemctl --user daemon-reload && systemctl --user enable --now mailbridge")
        print("Logs: journalctl --user -u mailbridge -f   Reload the config: "
              "systemctl --user reload mailbridge")
    return 0
