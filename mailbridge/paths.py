"""Where mailbridge keeps its files by default (per platform, via platformdirs)."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP = "mailbridge"
CONFIG_ENV = "MAILBRIDGE_CONFIG"  # a config file to use instead of the default one
STATE_ENV = "MAILBRIDGE_STATE_DIR"  # a state directory to use instead of the default one


def default_config_path() -> Path:
    """$MAILBRIDGE_CONFIG when set, else config.toml in the user's config directory."""
    override = os.environ.get(CONFIG_ENV, "").strip()
    if override:
        return Path(override).expanduser()
    return Path(platformdirs.user_config_dir(APP, appauthor=False)) / "config.toml"


def default_state_dir() -> Path:
    """$MAILBRIDGE_STATE_DIR when set, else the user's state directory (the ledger lives here)."""
    override = os.environ.get(STATE_ENV, "").strip()
    if override:
        return Path(override).expanduser()
    return Path(platformdirs.user_state_dir(APP, appauthor=False))
