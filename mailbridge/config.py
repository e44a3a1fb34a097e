"""Reading config.toml into `mailbridge.settings` values.

Every problem names the file, the key, the line and the fix. The whole file is checked and
all problems are reported together, so a user fixes them in one pass, not one per run.
tomllib reports no positions for valid documents, so `_key_lines` finds where each key was
written (best effort: None when unknown, never a crash).
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import ipaddress
import json
import os
import re
import tomllib
import urllib.parse
import zoneinfo
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import time, timedelta
from pathlib import Path
from typing import TypeVar

from mailbridge import paths
from mailbridge.durations import (
    DurationError,
    parse_clock,
    parse_delay,
    parse_quiet_hours,
    parse_timing,
)
from mailbridge.model import (
    HARD_MAX_FOLLOW_UPS,
    Delay,
    NextBusinessMorning,
    Policy,
    Timing,
)
from mailbridge.settings import (
    DEFAULT_EXCLUDE_KEYWORDS,
    DEFAULT_KEYWORDS,
    TOKEN_STORES,
    AccountSettings,
    CalendarSettings,
    DetectionRules,
    GoogleSettings,
    ImapSettings,
    MaildirSettings,
    NotifySettings,
    OutlookSettings,
    Settings,
    TokenStoreSettings,
)

T = TypeVar("T")
Key = tuple[str, ...]
Table = Mapping[str, object]

PROVIDERS = ("local", "imap", "gmail", "outlook")
CALENDAR_KINDS = ("file", "ics", "caldav", "google", "outlook")
NOTIFY_CHANNELS = ("desktop", "ntfy", "webhook")
IMAP_SECURITY = ("tls", "starttls", "plain")
DEFAULT_CALENDAR = {"gmail": "google", "outlook": "outlook"}

# Keys that hold a secret. They are refused wherever they appear: secrets go to the keyring.
SECRET_KEYS = frozenset(
    {
        "password",
        "passwd",
        "pass",
        "token",
        "secret",
        "client_secret",
        "refresh_token",
        "access_token",
        "api_key",
        "apikey",
        "app_password",
    }
)
_SECRET_SUFFIXES = ("_password", "_secret", "_token", "_api_key")
# Also secret when spelled in camelCase, with hyphens or spaces, or run together.
_SECRET_PARTS = (
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "apikey",
    "accesskey",
    "privatekey",
    "credential",
    "bearer",
)
_SECRET_WORDS = frozenset({"pass", "pwd", "pw", "auth", "cookie"})
# A key ending in one of these names where a secret comes from, or an address: not a secret.
_POINTER_WORDS = frozenset({"command", "cmd", "uri", "url", "endpoint", "file", "path"})
_NOT_SECRET_KEYS = frozenset(
    {"client_secrets", "password_command", "oauth2_token_command", "token_store"}
)
# scheme://user[:password]@host: the user info of a URL (RFC 3986 section 3.2.1).
_URL_USERINFO = re.compile(r"([a-z][a-z0-9+.-]*://)[^/?#\s@]*@", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"[a-z][a-z0-9+.-]*://[^/?#\s@:]*:[^/?#\s@]*@", re.IGNORECASE)

MAILBRIDGE_KEYS = ("timezone", "country", "subdivision", "state_dir")
POLICY_KEYS = (
    "thank_you_delay",
    "thank_you_at",
    "follow_up_after",
    "max_follow_ups",
    "follow_up_spacing",
    "morning",
    "lookback",
    "reminder_after",
    "quiet_hours",
    "keywords",
    "exclude_keywords",
    "extra_keywords",
    "max_attendees",
    "include_recurring",
    "allow_free_mail",
    "templates",
    "poll_interval",
    "calendar_interval",
    "token_store",
    "token_command",
    "token_store_command",
    "timezone",
    "country",
    "subdivision",
    "notify",
    "org_domains",
    "aliases",
)
ACCOUNT_ONLY_KEYS = (
    "provider",
    "address",
    "name",
    "signature",
    "enabled",
    "calendar",
    "imap",
    "google",
    "outlook",
    "maildir",
)
CALENDAR_KEYS = ("kind", "path", "url", "username", "password_command", "calendars", "lookahead")
NOTIFY_KEYS = ("channels", "ntfy_url", "webhook_url")

# What to write, per key, in a "Fix: write KEY = VALUE" hint.
EXAMPLES: dict[str, str] = {
    "timezone": '"America/Chicago"',
    "country": '"US"',
    "subdivision": '"CA"',
    "state_dir": '"~/.local/state/mailbridge"',
    "thank_you_delay": '"2h"',
    "thank_you_at": '"next business morning 08:00"',
    "follow_up_after": '"7 business days"',
    "max_follow_ups": "1",
    "follow_up_spacing": '"7 days"',
    "morning": '"09:00"',
    "lookback": '"3 days"',
    "reminder_after": '"20h"',
    "quiet_hours": '"21:00-08:00"',
    "keywords": '["interview", "phone screen"]',
    "exclude_keywords": '["mock interview"]',
    "extra_keywords": '["technical assessment"]',
    "max_attendees": "12",
    "include_recurring": "false",
    "allow_free_mail": "false",
    "templates": '"~/.config/mailbridge/templates"',
    "poll_interval": '"5m"',
    "calendar_interval": '"15m"',
    "token_store": '"keyring"',
    "token_command": '"pass show mailbridge/{account}/{purpose}"',
    "token_store_command": '"pass insert -m -f mailbridge/{account}/{purpose}"',
    "notify": '{ channels = ["desktop"] }',
    "channels": '["desktop", "ntfy"]',
    "ntfy_url": '"https://ntfy.sh/your-topic"',
    "webhook_url": '"https://example.com/hook"',
    "org_domains": '["mycompany.com"]',
    "aliases": '["me@example.org"]',
    "provider": '"imap"',
    "address": '"you@example.com"',
    "name": '"Jordan Lee"',
    "signature": '"Jordan Lee\\n555-0100"',
    "enabled": "true",
    "calendar": '{ kind = "caldav", url = "https://caldav.example.com/" }',
    "imap": '{ host = "imap.example.com" }',
    "google": '{ client_secrets = "~/.config/mailbridge/client_secret.json" }',
    "outlook": '{ client_id = "00000000-0000-0000-0000-000000000000" }',
    "maildir": '{ path = "~/Maildir" }',
    "kind": '"caldav"',
    "path": '"~/calendar"',
    "url": '"https://caldav.example.com/"',
    "username": '"you@example.com"',
    "password_command": '"pass show mail/imap"',
    "oauth2_token_command": '"oama access you@example.com"',
    "calendars": '["Personal"]',
    "lookahead": '"60 days"',
    "host": '"imap.example.com"',
    "port": "993",
    "security": '"tls"',
    "inbox_folder": '"INBOX"',
    "drafts_folder": '"Drafts"',
    "sent_folder": '"Sent"',
    "trash_folder": '"Trash"',
    "idle": "true",
    "timeout": "60",
    "client_secrets": '"~/.config/mailbridge/client_secret.json"',
    "client_id": '"00000000-0000-0000-0000-000000000000"',
    "tenant": '"common"',
}

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_ACCOUNT_NAME = re.compile(r"[A-Za-z0-9_-]+")
_ADDRESS = re.compile(r"[^@\s<>()\[\],;:\"]+@([^@\s<>()\[\],;:\"]+)")
_DOMAIN = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+")
_URL = re.compile(r"https?://[^\s/]+\S*", re.IGNORECASE)


# --- errors ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong in the file: where, which key, what, and how to fix it."""

    path: Path
    key: str  # dotted, e.g. accounts.work.imap.port; "" for the file as a whole
    line: int | None
    message: str
    hint: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else str(self.path)
        key = f" {self.key}:" if self.key else ""
        message = self.message if self.message.endswith((".", "?")) else self.message + "."
        fix = f" Fix: {self.hint}" if self.hint else ""
        return f"{where}:{key} {message}{fix}"


class ConfigError(Exception):
    """The config file cannot be used. Holds every problem found; the attributes describe the
    first one (the one nearest the top of the file)."""

    path: Path
    key: str
    line: int | None
    message: str
    hint: str

    def __init__(self, problems: Sequence[ConfigProblem]) -> None:
        if not problems:
            raise ValueError("ConfigError needs at least one problem")
        self.problems = tuple(problems)
        first = self.problems[0]
        self.path, self.key, self.line = first.path, first.key, first.line
        self.message, self.hint = first.message, first.hint
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(problem) for problem in self.problems)


# --- where keys are written --------------------------------------------------------------


class _Stop(Exception):
    pass


class _KeyScanner:
    """Finds the line of every key, table header, dotted key and inline-table key."""

    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0
        self.line = 1
        self.found: dict[Key, int] = {}
        self.table: Key = ()  # the last table header seen

    def peek(self, n: int = 1) -> str:
        return self.s[self.i : self.i + n]

    def advance(self, n: int = 1) -> None:
        self.line += self.s.count("\n", self.i, self.i + n)
        self.i += n

    def at_end(self) -> bool:
        return self.i >= len(self.s)

    def record(self, key: Key, line: int) -> None:
        for n in range(1, len(key) + 1):
            self.found.setdefault(key[:n], line)

    def spaces(self) -> None:
        while self.peek() in (" ", "\t") and not self.at_end():
            self.advance()

    def blank(self) -> None:
        """Spaces, newlines and comments."""
        while not self.at_end():
            c = self.peek()
            if c in " \t\r\n":
                self.advance()
            elif c == "#":
                self.comment()
            else:
                return

    def comment(self) -> None:
        end = self.s.find("\n", self.i)
        self.advance((len(self.s) if end < 0 else end) - self.i)

    def key(self) -> list[str]:
        parts: list[str] = []
        while True:
            self.spaces()
            c = self.peek()
            if c == '"':
                parts.append(self.basic_string())
            elif c == "'":
                parts.append(self.literal_string())
            else:
                match = _BARE_KEY.match(self.s, self.i)
                if not match:
                    raise _Stop
                parts.append(match.group())
                self.advance(len(match.group()))
            self.spaces()
            if self.peek() != ".":
                return parts
            self.advance()

    def basic_string(self) -> str:
        if self.peek(3) == '"""':
            self.advance(3)
            while not self.at_end():
                if self.peek() == "\\":
                    self.advance(2)
                elif self.peek(3) == '"""':
                    self.advance(3)
                    for _ in range(2):  # up to two quotes may end the content
                        if self.peek() == '"':
                            self.advance()
                    return ""
                else:
                    self.advance()
            raise _Stop
        self.advance()
        start = self.i
        while not self.at_end() and self.peek() not in ('"', "\n"):
            self.advance(2 if self.peek() == "\\" else 1)
        raw = self.s[start : self.i]
        self.advance()
        try:
            decoded = json.loads(f'"{raw}"')
            return decoded if isinstance(decoded, str) else raw
        except ValueError:
            return raw

    def literal_string(self) -> str:
        quote = "'''" if self.peek(3) == "'''" else "'"
        self.advance(len(quote))
        end = self.s.find(quote, self.i)
        if end < 0:
            raise _Stop
        raw = self.s[self.i : end]
        self.advance(end - self.i + len(quote))
        if quote == "'''":
            for _ in range(2):
                if self.peek() == "'":
                    self.advance()
        return raw

    def value(self, prefix: Key) -> None:
        c = self.peek()
        if c == '"':
            self.basic_string()
        elif c == "'":
            self.literal_string()
        elif c == "{":
            self.advance()
            while True:
                self.spaces()
                if self.peek() == "}":
                    self.advance()
                    return
                line = self.line
                key = (*prefix, *self.key())
                if self.peek() != "=":
                    raise _Stop
                self.advance()
                self.spaces()
                self.record(key, line)
                self.value(key)
                self.spaces()
                if self.peek() == ",":
                    self.advance()
                elif self.peek() != "}":
                    raise _Stop
        elif c == "[":
            self.advance()
            while True:
                self.blank()
                if self.peek() == "]":
                    self.advance()
                    return
                if self.at_end():
                    raise _Stop
                self.value(prefix)
                self.blank()
                if self.peek() == ",":
                    self.advance()
                elif self.peek() != "]":
                    raise _Stop
        else:
            start = self.i
            while not self.at_end() and self.peek() not in ",]}\n#":
                self.advance()
            if self.i == start:
                raise _Stop

    def scan(self) -> dict[Key, int]:
        table: Key = ()
        try:
            while True:
                self.blank()
                if self.at_end():
                    break
                line = self.line
                if self.peek() == "[":
                    double = self.peek(2) == "[["
                    self.advance(2 if double else 1)
                    table = self.table = tuple(self.key())
                    self.advance(2 if double else 1)
                    self.record(table, line)
                else:
                    key = (*table, *self.key())
                    if self.peek() != "=":
                        raise _Stop
                    self.advance()
                    self.spaces()
                    self.record(key, line)
                    self.value(key)
        except (_Stop, IndexError, ValueError):
            pass  # what was found before the surprise is still right
        return self.found


def _key_lines(text: str) -> dict[Key, int]:
    return _KeyScanner(text).scan()


# --- the checking context ------------------------------------------------------------------


def _dotted(key: Key) -> str:
    return ".".join(part if _BARE_KEY.fullmatch(part) else json.dumps(part) for part in key)


def _describe(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    return f"a {type(value).__name__}"


def _write(key: Key, example: str | None = None) -> str:
    name = key[-1]
    return f"write {name} = {example if example is not None else EXAMPLES.get(name, '...')}"


class _Ctx:
    def __init__(self, file: Path, text: str) -> None:
        self.file = file
        self.base = file.expanduser().absolute().parent
        self.lines = _key_lines(text)
        self.problems: list[ConfigProblem] = []

    def line(self, key: Key) -> int | None:
        for n in range(len(key), 0, -1):
            if key[:n] in self.lines:
                return self.lines[key[:n]]
        return None

    def fail(self, key: Key, message: str, hint: str) -> None:
        problem = ConfigProblem(self.file, _dotted(key), self.line(key), message, hint)
        if problem not in self.problems:
            self.problems.append(problem)

    def path(self, text: str) -> Path:
        """~ expanded; relative paths are relative to the config file's directory."""
        path = Path(os.path.expandvars(text)).expanduser()
        return path if path.is_absolute() else (self.base / path)


@dataclass
class _Tbl:
    """A table's values, and for each key the table it was written in (for inherited keys)."""

    data: dict[str, object]
    home: Key  # where a missing key would go
    origin: dict[str, Key] = field(default_factory=dict)

    def where(self, key: str) -> Key:
        return (*self.origin.get(key, self.home), key)

    def has(self, key: str) -> bool:
        return key in self.data


def _plain(data: Table, home: Key) -> _Tbl:
    return _Tbl(dict(data), home)


def _key_words(key: str) -> list[str]:
    """imapPassword, IMAP-Password, "imap password" and imap_password all give imap, password."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", key)
    return [word for word in re.split(r"[^a-z0-9]+", spaced.lower()) if word]


def _is_secret_key(key: str) -> bool:
    if key in _NOT_SECRET_KEYS:
        return False
    words = _key_words(key)
    if not words or words[-1] in _POINTER_WORDS:
        return False  # names where a secret comes from (a command, a file), or an endpoint
    if "_".join(words) in SECRET_KEYS or "_".join(words).endswith(_SECRET_SUFFIXES):
        return True
    joined = "".join(words)
    return any(part in joined for part in _SECRET_PARTS) or any(
        word in _SECRET_WORDS or word.removesuffix("s") in _SECRET_WORDS for word in words
    )


def _userinfo(value: str) -> bool:
    """Whether a URL carries user:password@ (or user@) before its host."""
    return bool(_URL_USERINFO.search(value))


def _redacted(value: str) -> str:
    return _URL_USERINFO.sub(lambda m: m.group(1) + "...@", value)


def _account_of(key: Key) -> str:
    return key[1] if len(key) > 2 and key[0] == "accounts" else "NAME"


def _secret_hint(key: Key) -> str:
    account = _account_of(key)
    return (
        f"remove {key[-1]} from the file; store the secret in the keyring with "
        f"`mailbridge auth {account}`, or set password_command to a command that prints it"
    )


def _find_secrets(ctx: _Ctx, value: object, key: Key) -> None:
    """Secret-named keys at any depth, and user:password@ in any URL-like text value."""
    if isinstance(value, dict):
        for name, inner in value.items():
            if _is_secret_key(name):
                ctx.fail(
                    (*key, name),
                    "secrets are not allowed in the config file",
                    _secret_hint((*key, name)),
                )
            else:
                _find_secrets(ctx, inner, (*key, name))
    elif isinstance(value, list):
        for inner in value:
            _find_secrets(ctx, inner, key)
    elif isinstance(value, str) and _URL_PASSWORD.search(value) and key:
        ctx.fail(
            key,
            "this address carries a password (user:password@host); secrets are not allowed "
            "in the config file",
            _secret_hint(key) + " (keep only the host part in the address)",
        )


def _check_keys(
    ctx: _Ctx,
    data: Table,
    home: Key,
    allowed: Iterable[str],
    misplaced: Mapping[str, str] | None = None,
) -> None:
    allowed = tuple(allowed)
    for name in data:
        if name in allowed or _is_secret_key(name):  # secrets are reported on their own
            continue
        key = (*home, name)
        if misplaced and name in misplaced:
            ctx.fail(key, f"{name} does not belong here", misplaced[name])
            continue
        close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
        valid = ", ".join(sorted(allowed))
        if close:
            hint = (
                f"did you mean {close[0]}? Rename the key to {close[0]} (valid keys here: {valid})"
            )
        else:
            hint = f"remove it, or use one of the valid keys here: {valid}"
        ctx.fail(key, f'unknown key "{name}"', hint)


# --- typed getters: each returns None after reporting a problem (or when absent) ---------


def _text(
    ctx: _Ctx, tbl: _Tbl, name: str, *, required: bool = False, allow_empty: bool = False
) -> str | None:
    key = tbl.where(name)
    if not tbl.has(name):
        if required:
            ctx.fail(key, f"{name} is required here", _write(key))
        return None
    value = tbl.data[name]
    if not isinstance(value, str):
        ctx.fail(key, f"expected text in quotes, got {_describe(value)}", _write(key))
        return None
    if not value.strip() and not allow_empty:
        ctx.fail(key, "expected some text, got an empty string", _write(key))
        return None
    return value


def _one_line(ctx: _Ctx, tbl: _Tbl, name: str, *, required: bool = False) -> str | None:
    value = _text(ctx, tbl, name, required=required)
    if value is not None and ("\n" in value or "\r" in value):
        ctx.fail(tbl.where(name), "expected a single line of text", _write(tbl.where(name)))
        return None
    return value.strip() if value is not None else None


def _int(ctx: _Ctx, tbl: _Tbl, name: str, low: int, high: int) -> int | None:
    if not tbl.has(name):
        return None
    key, value = tbl.where(name), tbl.data[name]
    if isinstance(value, bool) or not isinstance(value, int):
        ctx.fail(key, f"expected a whole number, got {_describe(value)}", _write(key))
        return None
    if not low <= value <= high:
        ctx.fail(key, f"expected a number from {low} to {high}, got {value}", _write(key))
        return None
    return value


def _number(ctx: _Ctx, tbl: _Tbl, name: str, low: float, high: float) -> float | None:
    if not tbl.has(name):
        return None
    key, value = tbl.where(name), tbl.data[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        ctx.fail(key, f"expected a number, got {_describe(value)}", _write(key))
        return None
    if not low <= value <= high:
        ctx.fail(key, f"expected a number from {low:g} to {high:g}, got {value}", _write(key))
        return None
    return float(value)


def _bool(ctx: _Ctx, tbl: _Tbl, name: str) -> bool | None:
    if not tbl.has(name):
        return None
    key, value = tbl.where(name), tbl.data[name]
    if not isinstance(value, bool):
        ctx.fail(
            key, f"expected true or false (without quotes), got {_describe(value)}", _write(key)
        )
        return None
    return value


def _texts(ctx: _Ctx, tbl: _Tbl, name: str, *, allow_empty: bool = True) -> tuple[str, ...] | None:
    if not tbl.has(name):
        return None
    key, value = tbl.where(name), tbl.data[name]
    if isinstance(value, str):
        ctx.fail(
            key,
            f"expected a list in square brackets, got {_describe(value)}",
            f"write {name} = [{json.dumps(value, ensure_ascii=False)}]",
        )
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        ctx.fail(key, f"expected a list of texts in quotes, got {_describe(value)}", _write(key))
        return None
    if not value and not allow_empty:
        ctx.fail(key, "the list is empty", _write(key))
        return None
    return tuple(v.strip() for v in value)


def _subtable(ctx: _Ctx, tbl: _Tbl, name: str) -> dict[str, object] | None:
    if not tbl.has(name):
        return None
    key, value = tbl.where(name), tbl.data[name]
    if not isinstance(value, dict):
        ctx.fail(key, f"expected a table, got {_describe(value)}", _write(key))
        return None
    return value


def _parsed(
    ctx: _Ctx, tbl: _Tbl, name: str, parse: Callable[[str], T], accept_time: bool = False
) -> T | None:
    """A text value read by one of the `durations` parsers."""
    if not tbl.has(name):
        return None
    key, value = tbl.where(name), tbl.data[name]
    if accept_time and isinstance(value, time):  # an unquoted TOML time: 08:00:00
        value = value.strftime("%H:%M")
    if not isinstance(value, str):
        ctx.fail(key, f"expected text in quotes, got {_describe(value)}", _write(key))
        return None
    try:
        return parse(value)
    except DurationError as exc:
        ctx.fail(key, str(exc), _write(key))
        return None


def _url(
    ctx: _Ctx, tbl: _Tbl, name: str, *, schemes: tuple[str, ...] = ("http", "https")
) -> str | None:
    value = _one_line(ctx, tbl, name)
    if value is None:
        return None
    if _URL_PASSWORD.search(value):
        return None  # reported by _find_secrets, without repeating the address
    if _userinfo(value):
        ctx.fail(
            tbl.where(name),
            "this address carries a user name (user@host), which may be a token; only the "
            "host part belongs in the address",
            "remove the part before @ (a calendar's user name goes in username; a password "
            f"or token in the keyring, `mailbridge auth {_account_of(tbl.where(name))}`)",
        )
        return None
    scheme = value.split("://", 1)[0].lower() if "://" in value else ""
    if scheme not in schemes or not re.fullmatch(r"[a-z+]+://[^\s/]+\S*", value, re.I):
        ctx.fail(
            tbl.where(name),
            f"expected a web address ({'/'.join(schemes)}://...), got "
            + _describe(_redacted(value)),
            _write(tbl.where(name)),
        )
        return None
    try:
        host = urllib.parse.urlsplit(value).hostname or ""
    except ValueError:
        host = ""
    if not host:
        ctx.fail(
            tbl.where(name),
            f"{_describe(value)} has no host name",
            _write(tbl.where(name)),
        )
        return None
    if scheme == "http" and not _is_loopback(host):
        # Plain http has no certificate to verify: anyone on the way could read or change it.
        ctx.fail(
            tbl.where(name),
            f"{_describe(value)} is not encrypted (http://); only https:// is allowed, "
            "except to this computer (localhost, 127.0.0.1)",
            f"write {name} = {_describe('https://' + value.split('://', 1)[1])}",
        )
        return None
    if scheme == "webcal":  # webcal:// is https:// that calendar apps recognise
        value = "https://" + value.split("://", 1)[1]
    return value


def _address(ctx: _Ctx, key: Key, value: str, hint: str | None = None) -> bool:
    match = _ADDRESS.fullmatch(value.strip())
    domain = match.group(1).lower() if match else ""
    if not match or not ("." in domain.strip(".") or domain == "localhost"):
        ctx.fail(
            key,
            f"{_describe(value)} does not look like an email address",
            hint or _write(key, '"you@example.com"'),
        )
        return False
    return True


# --- the parts -------------------------------------------------------------------------------


def _system_timezone() -> str:
    """The system's zone name without tzlocal: $TZ, the /etc/localtime link, /etc/timezone."""
    candidates: list[str] = []
    tz = os.environ.get("TZ", "").lstrip(":")
    if tz:
        candidates.append(tz)
    try:
        target = os.path.realpath("/etc/localtime")
        if "zoneinfo/" in target:
            candidates.append(target.split("zoneinfo/", 1)[1])
    except OSError:
        pass
    with contextlib.suppress(OSError):
        candidates.append(Path("/etc/timezone").read_text(encoding="utf-8").strip())
    for name in candidates:
        try:
            zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
            continue
        return name
    return "UTC"


def _timezone(ctx: _Ctx, tbl: _Tbl) -> str | None:
    value = _one_line(ctx, tbl, "timezone")
    if value is None:
        return None
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        close = difflib.get_close_matches(value, sorted(zoneinfo.available_timezones()), n=1)
        hint = (
            f'write timezone = "{close[0]}"'
            if close
            else 'use an IANA zone name, e.g. timezone = "Europe/Berlin"'
        )
        ctx.fail(tbl.where("timezone"), f"unknown time zone {_describe(value)}", hint)
        return None
    return value


def _supported_countries() -> dict[str, list[str]]:
    import holidays  # imported here: it is slow to import and only the config needs it

    supported: dict[str, list[str]] = holidays.list_supported_countries()
    return supported


def _country(ctx: _Ctx, tbl: _Tbl) -> str | None:
    value = _one_line(ctx, tbl, "country")
    if value is None:
        return None
    code = value.upper()
    if code not in _supported_countries():
        ctx.fail(
            tbl.where("country"),
            f"no public-holiday calendar for country {_describe(value)}",
            'use a two-letter ISO 3166 code such as "US", "GB", "DE" or "IN", '
            "or remove country to count only weekends",
        )
        return None
    return code


def _subdivision(ctx: _Ctx, tbl: _Tbl, country: str | None) -> str | None:
    value = _one_line(ctx, tbl, "subdivision")
    if value is None:
        return None
    key = tbl.where("subdivision")
    if country is None:
        ctx.fail(
            key,
            "subdivision needs a country",
            'add country = "US" (or the right code) next to it, or remove subdivision',
        )
        return None
    valid = _supported_countries().get(country, [])
    if value.upper() in valid:
        return value.upper()
    import holidays

    try:  # holidays also knows some subdivisions by alias
        holidays.country_holidays(country, subdiv=value)
    except (NotImplementedError, ValueError, KeyError):
        shown = ", ".join(valid[:40]) + (", ..." if len(valid) > 40 else "")
        ctx.fail(
            key,
            f"{country} has no subdivision {_describe(value)}",
            f"use one of {shown}" if valid else f"remove subdivision ({country} has none)",
        )
        return None
    return value


@dataclass(frozen=True)
class _Top:
    timezone: str
    country: str | None
    subdivision: str | None
    state_dir: Path


def _mailbridge_table(ctx: _Ctx, data: dict[str, object]) -> _Top:
    home: Key = ("mailbridge",)
    _check_keys(
        ctx,
        data,
        home,
        MAILBRIDGE_KEYS,
        {
            k: f"{k} is set in [defaults] or in [accounts.NAME]"
            for k in POLICY_KEYS + ACCOUNT_ONLY_KEYS
            if k not in MAILBRIDGE_KEYS
        },
    )
    tbl = _plain(data, home)
    timezone = _timezone(ctx, tbl) or _system_timezone()
    country = _country(ctx, tbl)
    subdivision = _subdivision(ctx, tbl, country)
    state_text = _one_line(ctx, tbl, "state_dir")
    state_dir = ctx.path(state_text) if state_text else paths.default_state_dir()
    return _Top(timezone, country, subdivision, state_dir)


def _templates(ctx: _Ctx, tbl: _Tbl) -> Path | None:
    text = _one_line(ctx, tbl, "templates")
    if text is None:
        return None
    key = tbl.where("templates")
    folder = ctx.path(text)
    if not folder.is_dir():
        ctx.fail(
            key,
            f"the templates folder {folder} does not exist",
            "create it (with thank_you.txt.j2 and/or follow_up.txt.j2) or remove templates",
        )
        return None
    found = sorted(folder.glob("*.j2"))
    if not found:
        ctx.fail(
            key,
            f"the templates folder {folder} has no *.j2 templates",
            "add thank_you.txt.j2 and/or follow_up.txt.j2 to it, or remove templates",
        )
        return None
    from jinja2 import TemplateSyntaxError
    from jinja2.sandbox import SandboxedEnvironment

    env = SandboxedEnvironment()
    for template in found:
        try:
            env.parse(template.read_text(encoding="utf-8"), name=template.name)
        except TemplateSyntaxError as exc:
            ctx.fail(
                key,
                f"template {template}, line {exc.lineno}: {exc.message}",
                f"correct line {exc.lineno} of {template.name} "
                "(Jinja2 syntax: {{ name }}, {% if x %}...{% endif %})",
            )
        except (OSError, UnicodeDecodeError) as exc:
            ctx.fail(
                key,
                f"cannot read template {template}: {type(exc).__name__}",
                "make it a readable UTF-8 text file",
            )
    return folder


def _token_store(ctx: _Ctx, tbl: _Tbl, top: _Top) -> TokenStoreSettings:
    """token_store, token_command, token_store_command (mailbridge.secrets says what they do)."""
    kind = _one_line(ctx, tbl, "token_store") or "keyring"
    if kind not in TOKEN_STORES:
        ctx.fail(tbl.where("token_store"), f"unknown token_store {_describe(kind)}",
                 f"write one of {', '.join(TOKEN_STORES)} (see docs/tokens.md)")
    store_command = _one_line(ctx, tbl, "token_store_command")
    lookup_command = _one_line(ctx, tbl, "token_command")
    if kind == "command":
        for key, value in (("token_store_command", store_command),
                           ("token_command", lookup_command)):
            if not value or "{purpose}" not in value:
                ctx.fail(tbl.where(key) if value else tbl.where("token_store"),
                         f'token_store = "command" needs {key} naming {{purpose}}',
                         f'e.g. {key} = "'
                         + ("pass insert -m -f" if key == "token_store_command" else "pass show")
                         + ' mailbridge/{account}/{purpose}"')
    return TokenStoreSettings(kind=kind, store_command=store_command,
                              lookup_command=lookup_command, directory=top.state_dir)


def _notify(ctx: _Ctx, tbl: _Tbl) -> NotifySettings:
    data = _subtable(ctx, tbl, "notify")
    if data is None:
        return NotifySettings()
    home = tbl.where("notify")
    _check_keys(ctx, data, home, NOTIFY_KEYS)
    inner = _plain(data, home)
    channels = _texts(ctx, inner, "channels") or ()
    bad = [c for c in channels if c not in NOTIFY_CHANNELS]
    if bad:
        ctx.fail(
            (*home, "channels"),
            f"unknown notification channel {_describe(bad[0])}",
            f"use some of {', '.join(NOTIFY_CHANNELS)}",
        )
        channels = tuple(c for c in channels if c in NOTIFY_CHANNELS)
    ntfy_url = _url(ctx, inner, "ntfy_url")
    webhook_url = _url(ctx, inner, "webhook_url")
    for channel, url, name in (
        ("ntfy", ntfy_url, "ntfy_url"),
        ("webhook", webhook_url, "webhook_url"),
    ):
        if channel in channels and url is None and not inner.has(name):
            ctx.fail(
                (*home, name),
                f'channel "{channel}" needs {name}',
                f"add {name} = {EXAMPLES[name]} to notify",
            )
    return NotifySettings(channels=channels, ntfy_url=ntfy_url, webhook_url=webhook_url)


def _domains(ctx: _Ctx, tbl: _Tbl, name: str) -> tuple[str, ...]:
    values = _texts(ctx, tbl, name) or ()
    result: list[str] = []
    for value in values:
        domain = value.lower().lstrip("@").rstrip(".")
        if not _DOMAIN.fullmatch(domain):
            ctx.fail(
                tbl.where(name), f"{_describe(value)} is not a domain name", _write(tbl.where(name))
            )
            continue
        result.append(domain)
    return tuple(result)


def _aliases(ctx: _Ctx, tbl: _Tbl) -> tuple[str, ...]:
    values = _texts(ctx, tbl, "aliases") or ()
    hint = 'write aliases = ["you@example.org"] (your other addresses)'
    return tuple(v for v in values if _address(ctx, tbl.where("aliases"), v, hint))


def _follow_up_timing(text: str) -> Timing:
    timing = parse_timing(text)
    if isinstance(timing, NextBusinessMorning):
        raise DurationError(
            "follow_up_after counts from the interview: write business days or a duration "
            'such as "7 business days" or "10 days"'
        )
    return timing


def _thank_you_delay(text: str) -> Timing:
    try:
        amount = parse_delay(text, allow_zero=True, maximum=timedelta(hours=24))
    except DurationError as exc:
        if "too long" in str(exc):
            raise DurationError(
                f'"{text}" is too long: a thank-you should be ready within 24 hours of the '
                'interview; for the next morning use thank_you_at = "next business morning 08:00"'
            ) from None
        raise
    return Delay(amount)


def _policy_tbl(
    ctx: _Ctx, defaults: dict[str, object], account: dict[str, object], name: str
) -> _Tbl:
    """The account's policy keys, with [defaults] filling the ones the account leaves out."""
    tbl = _Tbl({}, ("accounts", name))
    own = ("accounts", name)
    pair = ("thank_you_delay", "thank_you_at")
    for source, home in ((defaults, ("defaults",)), (account, own)):
        if all(k in source for k in pair):
            ctx.fail(
                (*home, "thank_you_at"),
                "thank_you_delay and thank_you_at are both set",
                'keep only one: a delay (thank_you_delay = "2h") or a time '
                '(thank_you_at = "next business morning 08:00")',
            )
        if any(k in source for k in pair):  # one level overriding the other replaces both
            for k in pair:
                tbl.data.pop(k, None)
        for k in POLICY_KEYS:
            if k in source:
                tbl.data[k] = source[k]
                tbl.origin[k] = home
    return tbl


def _policy(ctx: _Ctx, tbl: _Tbl, top: _Top) -> tuple[Policy, DetectionRules]:
    base = Policy()
    morning = _parsed(ctx, tbl, "morning", parse_clock, accept_time=True) or base.morning

    thank_you: Timing = base.thank_you
    if tbl.has("thank_you_at"):
        at = _parsed(ctx, tbl, "thank_you_at", lambda text: parse_timing(text, morning=morning))
        if at is not None and not isinstance(at, NextBusinessMorning):
            ctx.fail(
                tbl.where("thank_you_at"),
                "thank_you_at takes a time of day, not a delay",
                'write thank_you_at = "next business morning 08:00", or use '
                f'thank_you_delay = "{tbl.data["thank_you_at"]}"',
            )
        elif at is not None:
            thank_you = at
    elif tbl.has("thank_you_delay"):
        thank_you = _parsed(ctx, tbl, "thank_you_delay", _thank_you_delay) or thank_you

    follow_up = _parsed(ctx, tbl, "follow_up_after", _follow_up_timing) or base.follow_up

    max_follow_ups = base.max_follow_ups
    if tbl.has("max_follow_ups"):
        value = tbl.data["max_follow_ups"]
        if isinstance(value, int) and not isinstance(value, bool) and value > HARD_MAX_FOLLOW_UPS:
            ctx.fail(
                tbl.where("max_follow_ups"),
                f"{value} follow-ups is more than the hard cap of {HARD_MAX_FOLLOW_UPS}: "
                "one polite follow-up is the advice, a stream of them hurts",
                f"write max_follow_ups = 1 (at most {HARD_MAX_FOLLOW_UPS})",
            )
        else:
            max_follow_ups = _int(ctx, tbl, "max_follow_ups", 1, HARD_MAX_FOLLOW_UPS) or 1

    spacing = base.follow_up_spacing
    if tbl.has("follow_up_spacing"):
        found = _parsed(ctx, tbl, "follow_up_spacing", parse_delay)
        if found is not None and found < timedelta(days=7):
            ctx.fail(
                tbl.where("follow_up_spacing"),
                "follow-ups must be at least a week apart",
                'write follow_up_spacing = "7 days" or longer',
            )
        elif found is not None:
            spacing = found

    lookback = _parsed(
        ctx, tbl, "lookback", lambda t: parse_delay(t, allow_zero=True, maximum=timedelta(days=60))
    )
    reminder_after: timedelta | None = base.reminder_after
    if tbl.has("reminder_after") and tbl.data["reminder_after"] is False:
        reminder_after = None
    elif tbl.has("reminder_after") and tbl.data["reminder_after"] is True:
        ctx.fail(
            tbl.where("reminder_after"),
            "reminder_after takes a duration or false",
            'write reminder_after = "20h" (or false for no reminders)',
        )
    else:
        reminder_after = (
            _parsed(
                ctx, tbl, "reminder_after", lambda t: parse_delay(t, maximum=timedelta(days=14))
            )
            or reminder_after
        )
    quiet = _parsed(ctx, tbl, "quiet_hours", parse_quiet_hours) or (
        base.quiet_start,
        base.quiet_end,
    )

    timezone = _timezone(ctx, tbl) or top.timezone
    # The subdivision goes with the country: an account naming another country does not
    # inherit the subdivision of [mailbridge].
    country, subdivision = top.country, top.subdivision
    if tbl.has("country"):
        country = _country(ctx, tbl)
        subdivision = None
    if tbl.has("subdivision"):
        subdivision = _subdivision(ctx, tbl, country)
    policy = Policy(
        timezone=timezone,
        country=country,
        subdivision=subdivision,
        thank_you=thank_you,
        follow_up=follow_up,
        max_follow_ups=max_follow_ups,
        follow_up_spacing=spacing,
        morning=morning,
        lookback=lookback if lookback is not None else base.lookback,
        reminder_after=reminder_after,
        quiet_start=quiet[0],
        quiet_end=quiet[1],
    )

    keywords = _texts(ctx, tbl, "keywords", allow_empty=False)
    exclude = _texts(ctx, tbl, "exclude_keywords")
    extra = _texts(ctx, tbl, "extra_keywords") or ()
    base_rules = DetectionRules()
    merged = tuple(dict.fromkeys(k.lower() for k in (*(keywords or DEFAULT_KEYWORDS), *extra)))
    rules = DetectionRules(
        keywords=merged,
        exclude_keywords=tuple(
            k.lower() for k in (exclude if exclude is not None else DEFAULT_EXCLUDE_KEYWORDS)
        ),
        max_attendees=_or(_int(ctx, tbl, "max_attendees", 2, 500), base_rules.max_attendees),
        include_recurring=_or(_bool(ctx, tbl, "include_recurring"), base_rules.include_recurring),
        allow_free_mail=_or(_bool(ctx, tbl, "allow_free_mail"), base_rules.allow_free_mail),
    )
    return policy, rules


def _or(value: T | None, default: T) -> T:
    return default if value is None else value


def _interval(ctx: _Ctx, tbl: _Tbl, name: str, default: timedelta) -> timedelta:
    found = _parsed(ctx, tbl, name, lambda t: parse_delay(t, maximum=timedelta(days=1)))
    if found is not None and found < timedelta(seconds=30):
        ctx.fail(
            tbl.where(name),
            "polling more often than every 30 seconds is not allowed",
            _write(tbl.where(name)),
        )
        return default
    return _or(found, default)


def _is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _dataclass_keys(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


def _imap(ctx: _Ctx, data: dict[str, object], home: Key, address: str) -> ImapSettings | None:
    _check_keys(ctx, data, home, _dataclass_keys(ImapSettings))
    tbl = _plain(data, home)
    host = _one_line(ctx, tbl, "host", required=True)
    if host is not None and ("@" in host or "/" in host):
        # A host like user:password@imap.example.com must not leak into messages or logs.
        ctx.fail(
            tbl.where("host"),
            "host must be only the server's name (like imap.example.com), without a user "
            "name, password, scheme or path",
            f'write host = "imap.example.com" and username = "..."; keep the password in the '
            f"keyring (`mailbridge auth {_account_of(tbl.where('host'))}`)",
        )
        host = None
    port = _int(ctx, tbl, "port", 1, 65535)
    security = _one_line(ctx, tbl, "security") or "tls"
    if security not in IMAP_SECURITY:
        ctx.fail(
            tbl.where("security"),
            f"unknown security {_describe(security)}",
            f'use one of {", ".join(IMAP_SECURITY)}: write security = "tls"',
        )
        security = "tls"
    if security == "plain" and host is not None and not _is_loopback(host):
        ctx.fail(
            tbl.where("security"),
            f'security = "plain" sends the password unencrypted to {host}',
            'write security = "tls" (or "starttls"); plain is only allowed to this computer '
            "(localhost, 127.0.0.1)",
        )
        security = "tls"
    folders = {
        name: _one_line(ctx, tbl, name) for name in ("drafts_folder", "sent_folder", "trash_folder")
    }
    if host is None:
        return None
    return ImapSettings(
        host=host,
        port=port,
        security=security,
        username=_one_line(ctx, tbl, "username") or address,
        password_command=_one_line(ctx, tbl, "password_command"),
        oauth2_token_command=_one_line(ctx, tbl, "oauth2_token_command"),
        inbox_folder=_one_line(ctx, tbl, "inbox_folder") or "INBOX",
        drafts_folder=folders["drafts_folder"],
        sent_folder=folders["sent_folder"],
        trash_folder=folders["trash_folder"],
        idle=_or(_bool(ctx, tbl, "idle"), True),
        timeout=_or(_number(ctx, tbl, "timeout", 1, 600), 60.0),
    )


def _google(ctx: _Ctx, data: dict[str, object], home: Key) -> GoogleSettings:
    _check_keys(ctx, data, home, _dataclass_keys(GoogleSettings))
    tbl = _plain(data, home)
    secrets = _one_line(ctx, tbl, "client_secrets")
    return GoogleSettings(
        client_secrets=str(ctx.path(secrets)) if secrets else None,
        api_endpoint=_url(ctx, tbl, "api_endpoint"),
        calendar_endpoint=_url(ctx, tbl, "calendar_endpoint"),
        batch_uri=_url(ctx, tbl, "batch_uri"),
        token_uri=_url(ctx, tbl, "token_uri"),
        auth_uri=_url(ctx, tbl, "auth_uri"),
        timeout=_or(_number(ctx, tbl, "timeout", 1, 600), GoogleSettings.timeout),
    )


def _outlook(ctx: _Ctx, data: dict[str, object], home: Key) -> OutlookSettings:
    _check_keys(ctx, data, home, _dataclass_keys(OutlookSettings))
    tbl = _plain(data, home)
    base = OutlookSettings()
    return OutlookSettings(
        client_id=_one_line(ctx, tbl, "client_id") or base.client_id,
        tenant=_one_line(ctx, tbl, "tenant") or base.tenant,
        authority_url=_url(ctx, tbl, "authority_url") or base.authority_url,
        graph_url=_url(ctx, tbl, "graph_url") or base.graph_url,
        timeout=_or(_number(ctx, tbl, "timeout", 1, 600), base.timeout),
    )


def _maildir(ctx: _Ctx, data: dict[str, object], home: Key) -> MaildirSettings | None:
    _check_keys(ctx, data, home, _dataclass_keys(MaildirSettings))
    path = _one_line(ctx, _plain(data, home), "path", required=True)
    return MaildirSettings(path=str(ctx.path(path))) if path else None


_CALENDAR_USES = {
    "path": ("file",),
    "url": ("ics", "caldav"),
    "username": ("ics", "caldav"),
    "password_command": ("ics", "caldav"),
    "calendars": ("caldav", "google", "outlook"),
}


def _calendar(ctx: _Ctx, acct: _Tbl, provider: str | None) -> CalendarSettings | None:
    data = _subtable(ctx, acct, "calendar")
    home = acct.where("calendar")
    if data is None:
        if acct.has("calendar"):
            return None  # wrong type, reported
        kind = DEFAULT_CALENDAR.get(provider or "")
        if kind is None:
            if provider is not None:
                ctx.fail(
                    home,
                    f'a "{provider}" account needs a calendar',
                    'add calendar = { kind = "file", path = "~/calendar" } (or kind "ics", '
                    '"caldav", "google", "outlook") to the account',
                )
            return None
        return CalendarSettings(kind=kind)
    _check_keys(ctx, data, home, CALENDAR_KEYS)
    tbl = _plain(data, home)
    kind = _one_line(ctx, tbl, "kind", required=True)
    if kind is None:
        return None
    if kind not in CALENDAR_KINDS:
        close = difflib.get_close_matches(kind, CALENDAR_KINDS, n=1)
        ctx.fail(
            tbl.where("kind"),
            f"unknown calendar kind {_describe(kind)}",
            (f'write kind = "{close[0]}" ' if close else "")
            + f"(valid kinds: {', '.join(CALENDAR_KINDS)})",
        )
        return None
    for name, kinds in _CALENDAR_USES.items():
        if tbl.has(name) and kind not in kinds:
            ctx.fail(
                tbl.where(name),
                f'{name} is not used by a calendar of kind "{kind}"',
                f"remove {name} (it is used with kind {' or '.join(kinds)})",
            )
    path = url = None
    if kind == "file":
        text = _one_line(ctx, tbl, "path", required=True)
        path = str(ctx.path(text)) if text else None
    if kind in ("ics", "caldav"):
        schemes = ("http", "https", "webcal") if kind == "ics" else ("http", "https")
        if not tbl.has("url"):
            ctx.fail(
                tbl.where("url"),
                f'a calendar of kind "{kind}" needs url',
                "add url = "
                + (
                    '"https://example.com/calendar.ics"'
                    if kind == "ics"
                    else '"https://caldav.example.com/"'
                ),
            )
        url = _url(ctx, tbl, "url", schemes=schemes)
    lookahead = _parsed(
        ctx, tbl, "lookahead", lambda t: parse_delay(t, maximum=timedelta(days=730))
    )
    return CalendarSettings(
        kind=kind,
        path=path,
        url=url,
        username=_one_line(ctx, tbl, "username"),
        password_command=_one_line(ctx, tbl, "password_command"),
        calendars=_texts(ctx, tbl, "calendars") or (),
        lookahead=_or(lookahead, timedelta(days=60)),
    )


def _account(
    ctx: _Ctx, name: str, data: dict[str, object], defaults: dict[str, object], top: _Top
) -> AccountSettings | None:
    home: Key = ("accounts", name)
    _check_keys(ctx, data, home, ACCOUNT_ONLY_KEYS + POLICY_KEYS)
    acct = _plain(data, home)
    problems_before = len(ctx.problems)

    provider = _one_line(ctx, acct, "provider", required=True)
    if provider is not None and provider not in PROVIDERS:
        close = difflib.get_close_matches(provider, PROVIDERS, n=1)
        ctx.fail(
            acct.where("provider"),
            f"unknown provider {_describe(provider)}",
            (f'write provider = "{close[0]}" ' if close else "")
            + f"(valid providers: {', '.join(PROVIDERS)})",
        )
        provider = None
    address = _one_line(ctx, acct, "address", required=True)
    if address is not None and not _address(ctx, acct.where("address"), address):
        address = None
    display_name = _one_line(ctx, acct, "name") or ""
    signature = _text(ctx, acct, "signature", allow_empty=True) or ""
    enabled = _or(_bool(ctx, acct, "enabled"), True)
    calendar = _calendar(ctx, acct, provider)

    subtables = {n: _subtable(ctx, acct, n) for n in ("imap", "google", "outlook", "maildir")}
    uses = {
        "imap": provider == "imap",
        "maildir": provider == "local",
        "google": provider == "gmail" or (calendar is not None and calendar.kind == "google"),
        "outlook": provider == "outlook" or (calendar is not None and calendar.kind == "outlook"),
    }
    for sub, used in uses.items():
        if subtables[sub] is not None and not used and provider is not None:
            ctx.fail(
                acct.where(sub),
                f'{sub} is not used by a "{provider}" account'
                + ("" if sub in ("imap", "maildir") else f" without a {sub} calendar"),
                f"remove the {sub} table, or change provider",
            )
    needed = {"imap": "imap", "local": "maildir"}.get(provider or "")
    if needed and subtables[needed] is None and not acct.has(needed):
        ctx.fail(
            acct.where(needed),
            f'a "{provider}" account needs a {needed} table',
            f"add {needed} = {EXAMPLES[needed]} to the account",
        )

    # With an unknown provider, still check whatever tables are there.
    check = {sub: used or provider is None for sub, used in uses.items()}
    imap = maildir = None
    google = outlook = None
    if subtables["imap"] is not None and check["imap"]:
        imap = _imap(ctx, subtables["imap"], acct.where("imap"), address or "")
    if subtables["maildir"] is not None and check["maildir"]:
        maildir = _maildir(ctx, subtables["maildir"], acct.where("maildir"))
    if uses["google"] or (subtables["google"] is not None and check["google"]):
        google = _google(ctx, subtables["google"] or {}, acct.where("google"))
    if uses["outlook"] or (subtables["outlook"] is not None and check["outlook"]):
        outlook = _outlook(ctx, subtables["outlook"] or {}, acct.where("outlook"))

    tbl = _policy_tbl(ctx, defaults, data, name)
    policy, rules = _policy(ctx, tbl, top)
    notify = _notify(ctx, tbl)
    templates = _templates(ctx, tbl)
    token_store = _token_store(ctx, tbl, top)
    poll = _interval(ctx, tbl, "poll_interval", timedelta(minutes=5))
    calendar_poll = _interval(ctx, tbl, "calendar_interval", timedelta(minutes=15))
    org_domains = _domains(ctx, tbl, "org_domains")
    aliases = _aliases(ctx, tbl)

    if len(ctx.problems) > problems_before or provider is None or address is None:
        return None
    if calendar is None:
        return None
    return AccountSettings(
        name=name,
        provider=provider,
        address=address,
        display_name=display_name,
        signature=signature,
        aliases=aliases,
        org_domains=org_domains,
        calendar=calendar,
        imap=imap,
        google=google,
        outlook=outlook,
        maildir=maildir,
        notify=notify,
        policy=policy,
        rules=rules,
        templates_dir=templates,
        poll_interval=poll,
        calendar_interval=calendar_poll,
        enabled=enabled,
        token_store=token_store,
    )


# --- public ------------------------------------------------------------------------------


def _syntax_problem(path: Path, text: str, exc: tomllib.TOMLDecodeError) -> ConfigProblem:
    message = str(exc)
    line: int | None = None
    match = re.search(r"\(at line (\d+), column (\d+)\)", message)
    if match:
        line = int(match.group(1))
        message = message[: match.start()].strip() + f" (column {match.group(2)})"
    elif "(at end of document)" in message:
        line = max(1, text.count("\n") + (0 if text.endswith("\n") else 1))
        message = message.replace("(at end of document)", "(at the end of the file)")
    hint = "check the quotes, brackets and = on that line (text values need quotes: "
    hint += 'name = "Jordan Lee")'
    if "Cannot overwrite" in message or "Cannot declare" in message:
        hint = "a key or table is written twice; keep one of them"
    elif "Unterminated string" in message:
        hint = "close the string with the same quote it starts with"
    key = _key_at_line(text, line) if line else ""
    return ConfigProblem(path, key, line, f"this is not valid TOML: {message}", hint)


_HEADER_LINE = re.compile(r"\s*\[\[?\s*([A-Za-z0-9_.\- ]+?)\s*\]\]?\s*(?:#.*)?")
_KEY_LINE = re.compile(r"\s*([A-Za-z0-9_\-]+(?:\s*\.\s*[A-Za-z0-9_\-]+)*)\s*=")


def _key_at_line(text: str, line: int) -> str:
    """For a syntax error: the dotted key written on that line, if it can be read (bare keys
    only), inside the last table header before it."""
    lines = text.splitlines()
    if not 1 <= line <= len(lines):
        return ""
    scanner = _KeyScanner("\n".join(lines[: line - 1]) + "\n")
    scanner.scan()
    table = _dotted(scanner.table)
    header = _HEADER_LINE.fullmatch(lines[line - 1])
    if header:
        return re.sub(r"\s+", "", header.group(1))
    match = _KEY_LINE.match(lines[line - 1])
    if not match:
        return ""
    key = re.sub(r"\s+", "", match.group(1))
    return f"{table}.{key}" if table else key


def loads(text: str, path: Path) -> Settings:
    """Settings from the text of a config file; `path` names the file in errors and anchors
    relative paths. Raises ConfigError listing every problem found."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([_syntax_problem(path, text, exc)]) from None
    ctx = _Ctx(path, text)
    _find_secrets(ctx, document, ())
    _check_keys(
        ctx,
        document,
        (),
        ("mailbridge", "defaults", "accounts"),
        {
            k: f"put {k} under [defaults] (for every account) or [accounts.NAME]"
            for k in POLICY_KEYS + ACCOUNT_ONLY_KEYS
        },
    )
    root = _plain(document, ())
    top = _mailbridge_table(ctx, _subtable(ctx, root, "mailbridge") or {})

    defaults = _subtable(ctx, root, "defaults") or {}
    _check_keys(
        ctx,
        defaults,
        ("defaults",),
        POLICY_KEYS,
        {k: f"{k} is set per account: move it to [accounts.NAME]" for k in ACCOUNT_ONLY_KEYS}
        | {"state_dir": "state_dir belongs in [mailbridge]"},
    )
    accounts: list[AccountSettings] = []
    raw_accounts = _subtable(ctx, root, "accounts")
    if raw_accounts is None and not root.has("accounts"):
        ctx.fail(
            ("accounts",),
            "there are no accounts",
            'add one, e.g. [accounts.main] with provider = "local", address = '
            '"you@example.com", maildir = { path = "~/Maildir" } and '
            'calendar = { kind = "file", path = "~/calendar" }',
        )
    elif raw_accounts is not None and not raw_accounts:
        ctx.fail(("accounts",), "there are no accounts", "add an [accounts.NAME] table")
    for name, data in (raw_accounts or {}).items():
        key: Key = ("accounts", name)
        if not _ACCOUNT_NAME.fullmatch(name):
            ctx.fail(
                key,
                f"the account name {_describe(name)} has characters other than "
                "letters, digits, - and _",
                f"rename it, e.g. [accounts.{_safe_name(name)}]",
            )
            continue
        if not isinstance(data, dict):
            ctx.fail(
                key,
                f"expected a table, got {_describe(data)}",
                f'write [accounts.{name}] on its own line, then provider = "...", ...',
            )
            continue
        account = _account(ctx, name, data, defaults, top)
        if account is not None:
            accounts.append(account)
    if raw_accounts is None or not raw_accounts:
        # [defaults] is checked even without accounts, so its problems show up now.
        _policy(ctx, _Tbl(dict(defaults), ("defaults",), {k: ("defaults",) for k in defaults}), top)
    if ctx.problems:
        raise ConfigError(sorted(ctx.problems, key=lambda p: p.line or 10**9))
    return Settings(
        path=path.expanduser().absolute(),
        state_dir=top.state_dir,
        timezone=top.timezone,
        country=top.country,
        accounts=tuple(accounts),
    )


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-") or "main"


def load(path: Path) -> Settings:
    """Settings from a config file. Raises ConfigError naming the file, key, line and fix."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            [
                ConfigProblem(
                    path,
                    "",
                    None,
                    "there is no config file here",
                    "run `mailbridge init` to create one, or name another with --config PATH",
                )
            ]
        ) from None
    except OSError as exc:
        raise ConfigError(
            [
                ConfigProblem(
                    path,
                    "",
                    None,
                    f"the config file cannot be read ({exc.strerror or exc})",
                    "check that the file exists and that you may read it",
                )
            ]
        ) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(
            [
                ConfigProblem(
                    path,
                    "",
                    line,
                    "the file is not UTF-8 text",
                    "save it as UTF-8 (plain text) in your editor",
                )
            ]
        ) from None
    return loads(text.removeprefix("\ufeff"), path)


# --- templates for `mailbridge init` ---------------------------------------------------------


def _toml_string(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def starter_config(address: str = "you@example.com", provider: str = "local") -> str:
    """A small, valid config for `mailbridge init`, with comments on how to change it."""
    if provider not in PROVIDERS:
        raise ValueError(f"unknown provider {provider!r}; valid: {', '.join(PROVIDERS)}")
    addr = _toml_string(address)
    domain = address.rpartition("@")[2] or "example.com"
    head = f"""\
# mailbridge configuration. Every key is explained in config.example.toml.
# mailbridge never sends mail: it only writes drafts you review and send yourself.

[mailbridge]
timezone = {_toml_string(_system_timezone())}
# country = "US"          # public holidays of this country are not business days

[defaults]                # every account inherits these
thank_you_delay = "2h"    # or: thank_you_at = "next business morning 08:00"
follow_up_after = "7 business days"
max_follow_ups = 1

# One account. provider is where drafts go: "local" (a Maildir folder), "imap", "gmail"
# or "outlook". Credentials never go in this file: run `mailbridge auth main` to put them
# in the system keyring, or set password_command.
[accounts.main]
provider = {_toml_string(provider)}
address = {addr}
# name = "Your Name"
# signature = "Your Name\\n555-0100"
"""
    body = {
        "local": """\
maildir = { path = "~/Maildir" }                 # the Maildir your mail client reads
calendar = { kind = "file", path = "~/calendar" } # an .ics file, or a folder of them
# To use a mail server instead: provider = "imap" and
#   imap = { host = "imap.example.com" }
#   calendar = { kind = "caldav", url = "https://caldav.example.com/" }
""",
        "imap": f"""\
imap = {{ host = {_toml_string("imap." + domain)}, security = "tls" }}
# To read the password from a command, add password_command = "pass show mail/imap"
# inside the braces above; otherwise `mailbridge auth main` stores it in the keyring.
calendar = {{ kind = "caldav", url = {_toml_string("https://caldav." + domain + "/")} }}
# or a read-only feed: calendar = {{ kind = "ics", url = "https://example.com/calendar.ics" }}
""",
        "gmail": """\
# The OAuth client JSON you download from Google Cloud (a "Desktop app" client):
# google = { client_secrets = "~/.config/mailbridge/client_secret.json" }
# The calendar is your Google Calendar; to use another one:
# calendar = { kind = "ics", url = "https://example.com/calendar.ics" }
""",
        "outlook": """\
# An app registration of your own (optional):
# outlook = { client_id = "00000000-0000-0000-0000-000000000000", tenant = "common" }
# The calendar is your Outlook calendar; to use another one:
# calendar = { kind = "ics", url = "https://example.com/calendar.ics" }
""",
    }[provider]
    return head + body
