"""Where credentials come from: the OS keyring, or a command the user names.

Secrets never live in the TOML file, the ledger, logs or audit entries.
Keyring entries use the service ``mailbridge`` and the user name ``ACCOUNT/PURPOSE``
(purpose: ``imap``, ``caldav``, ``google-refresh-token``, ``msal-cache``, ...).
"""

from __future__ import annotations

import contextlib
import shlex
import subprocess

import keyring
import keyring.errors

from mailbridge.adapters import AuthError

SERVICE = "mailbridge"


def _entry(account: str, purpose: str) -> str:
    return f"{account}/{purpose}"


def run_command(command: str, *, what: str, setting: str = "password_command") -> str:
    """The first line printed by ``command`` (as pass, gpg, op and secret-tool print it).

    ``setting`` names the config key the command came from, for the error message.
    """
    try:
        done = subprocess.run(
            shlex.split(command), capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        raise AuthError(f"{what}: {setting} could not run: {type(exc).__name__}") from None
    if done.returncode != 0:
        # Neither stdout nor stderr is repeated: a failing command may well have printed the
        # secret (or part of it) before failing. The user can run it by hand to see why.
        raise AuthError(
            f"{what}: {setting} exited with status {done.returncode}; "
            "run the command in a terminal to see why"
        )
    lines = done.stdout.splitlines()
    if not lines or not lines[0].strip():
        raise AuthError(f"{what}: {setting} printed nothing")
    return lines[0]


def lookup(account: str, purpose: str, command: str | None = None) -> str | None:
    """The secret, from ``command`` when given, else the keyring; None when there is none."""
    if command:
        return run_command(command, what=f"account {account!r}")
    try:
        return keyring.get_password(SERVICE, _entry(account, purpose))
    except keyring.errors.KeyringError as exc:
        raise AuthError(
            f"account {account!r}: the keyring is not usable here ({type(exc).__name__}); "
            "set password_command in the config instead"
        ) from None


def require(account: str, purpose: str, command: str | None = None) -> str:
    secret = lookup(account, purpose, command)
    if not secret:
        raise AuthError(
            f"account {account!r}: no {purpose} credential in the keyring; "
            f"run `mailbridge auth {account}` (or set password_command)"
        )
    return secret


def store(account: str, purpose: str, secret: str) -> None:
    try:
        keyring.set_password(SERVICE, _entry(account, purpose), secret)
    except keyring.errors.KeyringError as exc:
        raise AuthError(
            f"account {account!r}: cannot write to the keyring ({type(exc).__name__}); "
            "use password_command instead"
        ) from None


def forget(account: str, purpose: str) -> None:
    with contextlib.suppress(keyring.errors.PasswordDeleteError):
        keyring.delete_password(SERVICE, _entry(account, purpose))
