"""Reading config.toml into `mailbridge.settings` values.

Every problem names the file, the key, the line and the fix, and the whole file is checked at
once, so a user fixes everything in one pass. The checks are pydantic schemas: the core owns
`[mailbridge]`, `[defaults]`, the account keys and the calendar's ``kind``/``lookahead``; each
provider owns its own table and its calendar kinds' keys (see `mailbridge.adapters`). A schema is
a frozen dataclass whose fields carry a description and an example (`doc`), built from the field
types below; `mailbridge.reference` writes the README table and `mailbridge init` from them.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import os
import re
import tomllib
import typing
import urllib.parse
import zoneinfo
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import time, timedelta
from pathlib import Path
from typing import Annotated, Any, TypeVar

import holidays
from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
)
from pydantic_core import PydanticCustomError

from mailbridge import adapters, domains, paths, secrets, timing
from mailbridge.durations import (
    DurationError,
    parse_clock,
    parse_delay,
    parse_quiet_hours,
    parse_timing,
)
from mailbridge.model import HARD_MAX_FOLLOW_UPS, Delay, NextBusinessMorning, Policy, Timing
from mailbridge.settings import (
    DEFAULT_EXCLUDE_KEYWORDS,
    DEFAULT_KEYWORDS,
    TOKEN_STORES,
    AccountSettings,
    CalendarSettings,
    DetectionRules,
    NotifySettings,
    Settings,
    TokenStoreSettings,
)

T = TypeVar("T")
Key = tuple[str, ...]
FORBID = ConfigDict(extra="forbid")  # every schema: unknown keys are errors
CHECKED = ConfigDict(extra="forbid", validate_default=True)  # ...and defaults read like input

# --- problems ----------------------------------------------------------------------------------


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


def fail(message: str, hint: str = "") -> PydanticCustomError:
    """The error a schema's validator raises: its message and fix reach the user as written.
    In ``hint``, {write} stands for "write KEY = EXAMPLE"; an empty hint means just that."""
    return PydanticCustomError("config", message, {"hint": hint})


# --- field types, for the core's and the providers' schemas --------------------------------


def doc(description: str, example: object = None) -> Any:
    """A field's description (README, `init`) and the example shown in its "write" fix."""
    return Field(description=description, examples=None if example is None else [example])


def _one_line(value: str) -> str:
    if not value.strip():
        raise fail("expected some text, got an empty string")
    if "\n" in value or "\r" in value:
        raise fail("expected a single line of text")
    return value.strip()


def _local_path(value: str, info: ValidationInfo) -> str:
    """~ and $VARS expanded; relative paths are relative to the config file's folder."""
    path = Path(os.path.expandvars(value)).expanduser()
    base = (info.context or {}).get("base")
    return str(path if path.is_absolute() or base is None else Path(base) / path)


_URL_USERINFO = re.compile(r"([a-z][a-z0-9+.-]*://)[^/?#\s@]*@", re.IGNORECASE)


def _web(schemes: tuple[str, ...]) -> Callable[[str, ValidationInfo], str]:
    def check(value: str, info: ValidationInfo) -> str:
        if secrets.URL_PASSWORD.search(value):
            raise fail("")  # reported once as a secret, without repeating the address
        if _URL_USERINFO.search(value):
            raise fail(
                "this address carries a user name (user@host), which may be a token; only the "
                "host part belongs in the address",
                "remove the part before @ (a calendar's user name goes in username; a password "
                "or token in the keyring, `mailbridge auth "
                f"{(info.context or {}).get('account', 'ACCOUNT')}`)",
            )
        scheme = value.split("://", 1)[0].lower() if "://" in value else ""
        try:
            host = urllib.parse.urlsplit(value).hostname or ""
        except ValueError:
            host = ""
        if scheme not in schemes or not re.fullmatch(r"[a-z+]+://[^\s/]+\S*", value, re.I):
            raise fail(f"expected a web address ({'/'.join(schemes)}://...), got "
                       + _describe(value))
        if not host:
            raise fail(f"{_describe(value)} has no host name")
        if scheme == "http" and not domains.is_loopback_host(host):
            # Plain http has no certificate to verify: anyone on the way could read or change it.
            raise fail(
                f"{_describe(value)} is not encrypted (http://); only https:// is allowed, "
                "except to this computer (localhost, 127.0.0.1)",
                f"write {info.field_name} = {_describe('https://' + value.split('://', 1)[1])}",
            )
        return "https://" + value.split("://", 1)[1] if scheme == "webcal" else value

    return check


Text = Annotated[str, Strict(), AfterValidator(_one_line)]  # one line, stripped, not empty
AnyText = Annotated[str, Strict()]  # several lines, may be empty
Whole = Annotated[int, Strict()]
Number = Annotated[float, Strict()]
Flag = Annotated[bool, Strict()]
Texts = tuple[Text, ...]
LocalPath = Annotated[Text, AfterValidator(_local_path)]
WebAddress = Annotated[Text, AfterValidator(_web(("http", "https")))]
FeedAddress = Annotated[Text, AfterValidator(_web(("http", "https", "webcal")))]


def require(test: Callable[[Any], bool], message: str, hint: str = "") -> AfterValidator:
    """A rule on a value that has its type: when broken, ``message`` ({value} is the value)."""

    def check(value: T) -> T:
        if value is not None and not test(value):
            raise fail(message.format(value=value), hint)
        return value

    return AfterValidator(check)


def between(low: float, high: float) -> AfterValidator:
    return require(lambda v: low <= v <= high, f"expected a number from {low:g} to {high:g}, "
                   "got {value}")


def one_of(*options: str, what: str = "") -> AfterValidator:
    def check(value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and value not in options:
            name = what or info.field_name or "value"
            raise fail(f"unknown {name} {_describe(value)}",
                       f"use one of {', '.join(options)}: {{write}}")
        return value

    return AfterValidator(check)


def _read(value: object, parse: Callable[[str], Any]) -> Any:
    if value is None:
        return None
    if isinstance(value, time):  # an unquoted TOML time: 08:00:00
        value = value.strftime("%H:%M")
    if not isinstance(value, str):
        raise fail(f"expected text in quotes, got {_describe(value)}")
    try:
        return parse(value)
    except DurationError as exc:
        raise fail(str(exc)) from None


def parsed(parse: Callable[[str], Any]) -> BeforeValidator:
    """A text read by one of the `durations` parsers (their errors say what was expected).
    Each text is read once: [defaults] reaches every account, and the results are frozen."""
    once = functools.lru_cache(maxsize=256)(parse)
    return BeforeValidator(lambda value: _read(value, once))


def at_most(days: float, *, zero: bool = False) -> BeforeValidator:
    """A length of time written as text ("2h", "3 days"), of at most ``days`` days."""
    return parsed(lambda t: parse_delay(t, allow_zero=zero, maximum=timedelta(days=days)))


# --- where keys are written ----------------------------------------------------------------


def _paths(value: object, prefix: Key = ()) -> Iterable[Key]:
    if isinstance(value, dict):
        for name, inner in value.items():
            yield (*prefix, name)
            yield from _paths(inner, (*prefix, name))


def _key_lines(text: str) -> tuple[dict[Key, int], list[int]]:
    """The line of every key, and the lines where a statement starts. tomllib keeps no
    positions, so it parses growing prefixes: a key first seen in the prefix ending at line n
    was written on the first line after the last prefix that parsed (multi-line values)."""
    lines = text.splitlines(keepends=True)
    found: dict[Key, int] = {}
    starts, last_ok = [1], 0
    for n in range(1, len(lines) + 1):
        try:
            document = tomllib.loads("".join(lines[:n]))
        except tomllib.TOMLDecodeError:
            continue
        for key in _paths(document):
            found.setdefault(key, last_ok + 1)
        last_ok = n
        starts.append(n + 1)
    return found, starts


# --- the checking context ------------------------------------------------------------------


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _dotted(key: Key) -> str:
    return ".".join(part if _BARE_KEY.fullmatch(part) else json.dumps(part) for part in key)


def _describe(value: object) -> str:
    """A value in a message: text as written (any user name in an address hidden), else its
    kind."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"the number {value}"
    if isinstance(value, list | tuple | dict):
        return "a table" if isinstance(value, dict) else "a list"
    if isinstance(value, str):
        value = _URL_USERINFO.sub(lambda m: m.group(1) + "...@", value)
    return toml(value) if isinstance(value, bool | str) else f"a {type(value).__name__}"


def toml(value: object) -> str:
    """A value as written in TOML (for fixes, README and `init`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml(v)}" for k, v in value.items()) + " }"
    return json.dumps(value, ensure_ascii=False) if isinstance(value, str) else str(value)


@dataclass(frozen=True)
class Entry:
    """One field of a schema, as the README and the fixes show it."""

    name: str
    schema: type | None  # the nested schema, for a field that is a table
    default: object
    description: str
    example: object


@functools.cache
def fields(schema: type) -> dict[str, Entry]:
    hints = typing.get_type_hints(schema, include_extras=True)
    found: dict[str, Entry] = {}
    for f in dataclasses.fields(schema):
        info = next((m for m in getattr(hints[f.name], "__metadata__", ()) if hasattr(
            m, "description")), None)
        nested = [a for a in typing.get_args(hints[f.name]) if dataclasses.is_dataclass(a)]
        found[f.name] = Entry(
            f.name,
            nested[0] if nested and isinstance(nested[0], type) else None,
            f.default,
            getattr(info, "description", None) or "",
            (getattr(info, "examples", None) or [None])[0],
        )
    return found


def starter_table(schema: type) -> dict[str, object]:
    """The required fields with their examples: the least a user writes."""
    return {e.name: e.example for e in fields(schema).values()
            if e.default is dataclasses.MISSING}


def starter_calendar(kind: str | None) -> dict[str, object]:
    schema = adapters.calendar_schema(kind) if kind else None
    return {"kind": kind, **(starter_table(schema) if schema else {})}


_ADAPTERS: dict[type, TypeAdapter[Any]] = {}  # building one costs more than a whole check


class _Ctx:
    def __init__(self, file: Path, text: str) -> None:
        self.path, self.text = file, text
        self.base = file.expanduser().absolute().parent
        self.problems: list[ConfigProblem] = []
        self.declared = schema_keys(())  # the keys no secret can hide behind, where we are
        self.account = "ACCOUNT"  # the account being read, for the fixes that name it

    @functools.cached_property
    def lines(self) -> dict[Key, int]:
        return _key_lines(self.text)[0]

    def line(self, key: Key) -> int | None:
        for n in range(len(key), 0, -1):
            if key[:n] in self.lines:
                return self.lines[key[:n]]
        return None

    def fail(self, key: Key, message: str, hint: str) -> None:
        problem = ConfigProblem(self.path, _dotted(key), self.line(key), message, hint)
        if problem not in self.problems:
            self.problems.append(problem)

    def validate(self, schema: type[T], data: Mapping[str, object], home: Key,
                 origin: Mapping[str, Key] | None = None, **context: object) -> T | None:
        """``data`` checked by ``schema``; None after reporting every problem. ``origin`` says
        where an inherited key was written (``[defaults]``)."""
        data = {k: v for k, v in data.items() if not secrets.is_secret_key(k, self.declared)}
        try:
            if schema not in _ADAPTERS:
                _ADAPTERS[schema] = TypeAdapter(schema)
            found: T = _ADAPTERS[schema].validate_python(data, context={
                "base": self.base, "account": self.account, **context})
            return found
        except ValidationError as exc:
            for error in exc.errors():
                names = [str(p) for p in error["loc"] if isinstance(p, str)]
                where = (origin or {}).get(names[0], home) if names else home
                self._report(schema, (*where, *names), names, error)
        return None

    def _report(self, schema: type, key: Key, names: list[str], error: Any) -> None:
        entries, entry = fields(schema), None
        for name in names:
            entry = entries.get(name)
            if entry is None or entry.schema is None:
                break
            entries = fields(entry.schema)
        value, kind, name = error.get("input"), error["type"], key[-1]
        example = entry.example if entry and entry.example is not None else None
        write = f"write {name} = {'...' if example is None else toml(example)}"
        in_list = any(isinstance(p, int) for p in error["loc"])
        message, hint = error["msg"], write
        if kind == "config":
            if not message:
                return
            hint = error["ctx"]["hint"].replace("{write}", write) or write
        elif kind == "missing":
            message = f"{name} is required here"
        elif kind in ("unexpected_keyword_argument", "extra_forbidden"):
            return _unknown(self, key, entries if entry is None or entry.name != name
                            else fields(schema))
        elif in_list or (kind in ("tuple_type", "list_type") and not isinstance(value, str)):
            message = "expected a list of texts in quotes"
        elif kind in ("tuple_type", "list_type"):
            message = f"expected a list in square brackets, got {_describe(value)}"
            hint = f"write {name} = [{json.dumps(value, ensure_ascii=False)}]"
        elif kind.startswith(("dataclass", "dict", "model")):
            message = f"expected a table, got {_describe(value)}"
        else:
            expected = {"string_type": "text in quotes", "int_type": "a whole number",
                        "float_type": "a number", "bool_type": "true or false (without quotes)"}
            message = f"expected {expected.get(kind, 'something else')}, got {_describe(value)}"
        self.fail(key, message, hint)


# --- secrets -------------------------------------------------------------------------------

def schemas(configs: Iterable[adapters.ProviderConfig] | None = None) -> list[type]:
    """The core's schemas and those of ``configs`` (default: every installed provider's)."""
    found: list[type] = [MailbridgeTable, PolicyTable, NotifyTable, AccountTable, CalendarTable]
    for config in adapters.configs().values() if configs is None else configs:
        found += [s for s in (config.settings, *config.calendars.values()) if s]
    return list(dict.fromkeys(found))


def schema_keys(configs: Iterable[adapters.ProviderConfig] | None = None) -> frozenset[str]:
    """Every key those schemas declare: a key a schema asks for is never taken for a secret."""
    return frozenset(name for s in schemas(configs) for name in fields(s))


def _providers_of(data: Mapping[str, object]) -> list[adapters.ProviderConfig]:
    """The configs an account's keys belong to: its mailbox's and its calendar's, or every
    installed one when a key belongs to neither (another provider's table, or a typo) or the
    provider is unknown. Each provider module imported costs every command time."""
    provider, calendar = data.get("provider"), data.get("calendar")
    mailbox = adapters.config_of(f"mailbox.{provider.strip()}") if isinstance(
        provider, str) else None
    kind = calendar.get("kind") if isinstance(calendar, dict) else (
        mailbox.default_calendar if mailbox else None)
    found = [c for c in (mailbox, adapters.config_of(f"calendar.{str(kind).strip()}")) if c]
    known = {*fields(AccountTable), *fields(PolicyTable), *(c.table for c in found)}
    if mailbox is None or any(k not in known for k in data):
        return list(adapters.configs().values())
    return found


# --- the core's schemas --------------------------------------------------------------------

_ADDRESS = re.compile(r"[^@\s<>()\[\],;:\"]+@([^@\s<>()\[\],;:\"]+)")
_DOMAIN = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+")


def _address(hint: str = "") -> AfterValidator:
    def check(value: str) -> str:
        match = _ADDRESS.fullmatch(value)
        domain = match.group(1).lower() if match else ""
        if not match or not ("." in domain.strip(".") or domain == "localhost"):
            raise fail(f"{_describe(value)} does not look like an email address", hint)
        return value

    return AfterValidator(check)


def _domain(value: str) -> str:
    domain = value.lower().lstrip("@").rstrip(".")
    if not _DOMAIN.fullmatch(domain):
        raise fail(f"{_describe(value)} is not a domain name")
    return domain


def _zone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        close = difflib.get_close_matches(value, sorted(zoneinfo.available_timezones()), n=1)
        raise fail(f"unknown time zone {_describe(value)}", f'write timezone = "{close[0]}"'
                   if close else 'use an IANA zone name, e.g. timezone = "Europe/Berlin"') from None
    return value


def _subdivision(value: str, info: ValidationInfo) -> str:
    country = info.data.get("country") or (info.context or {}).get("country")
    if country is None:
        raise fail("subdivision needs a country",
                   'add country = "US" (or the right code) next to it, or remove subdivision')
    valid = holidays.list_supported_countries().get(country, [])
    if value.upper() in valid:
        return value.upper()
    try:  # holidays also knows some subdivisions by alias
        holidays.country_holidays(country, subdiv=value)
    except (NotImplementedError, ValueError, KeyError):
        shown = ", ".join(valid[:40]) + (", ..." if len(valid) > 40 else "")
        raise fail(f"{country} has no subdivision {_describe(value)}",
                   f"use one of {shown}" if valid else
                   f"remove subdivision ({country} has none)") from None
    return value


Zone = Annotated[Text, AfterValidator(_zone)]
# The registry names every country without importing each one's module, as listing does.
_COUNTRIES = frozenset(code for entry in holidays.registry.COUNTRIES.values()
                        for code in entry[1:] if code.isupper())  # ISO codes and aliases
Country = Annotated[Text, require(
    lambda v: v.upper() in _COUNTRIES,
    'no public-holiday calendar for country "{value}"', 'use a two-letter ISO 3166 code such as '
    '"US", "GB", "DE" or "IN", or remove country to count only weekends'),
    AfterValidator(str.upper)]
Subdivision = Annotated[Text, AfterValidator(_subdivision)]


@dataclass(frozen=True)
class MailbridgeTable:
    __pydantic_config__ = FORBID
    timezone: Annotated[Zone | None, doc(
        "your time zone (IANA name) for every timing decision; default: the system's",
        "America/Chicago")] = None
    country: Annotated[Country | None, doc(
        "public holidays of this country are not business days", "US")] = None
    subdivision: Annotated[Subdivision | None, doc(
        "a state or region of that country, for its own holidays", "CA")] = None
    state_dir: Annotated[LocalPath | None, doc(
        "where the ledger lives; default: the platform's state folder",
        "~/.local/state/mailbridge")] = None


def _thank_you_delay(text: str) -> Timing:
    try:
        return Delay(parse_delay(text, allow_zero=True, maximum=timedelta(hours=24)))
    except DurationError as exc:
        if "too long" in str(exc):
            raise DurationError(
                f'"{text}" is too long: a thank-you should be ready within 24 hours of the '
                'interview; for the next morning use thank_you_at = "next business morning 08:00"'
            ) from None
        raise


def _thank_you_at(value: str, info: ValidationInfo) -> Timing:
    at = parse_timing(value, morning=info.data.get("morning") or Policy().morning)
    if not isinstance(at, NextBusinessMorning):
        raise fail("thank_you_at takes a time of day, not a delay", 'write thank_you_at = '
                   f'"next business morning 08:00", or use thank_you_delay = "{value}"')
    return at


def _reminder(value: object) -> object:
    if value is False:
        return None
    if value is True:
        raise fail("reminder_after takes a duration or false",
                   'write reminder_after = "20h" (or false for no reminders)')
    return value


Interval = Annotated[timedelta, at_most(1), require(
    lambda v: v >= timedelta(seconds=30), "polling more often than every 30 seconds is not allowed"
)]


def _templates(folder_text: str | None) -> Path | None:
    if folder_text is None:
        return None
    folder = Path(folder_text)
    if not folder.is_dir():
        raise fail(f"the templates folder {folder} does not exist",
                   "create it (with thank_you.txt.j2 and/or follow_up.txt.j2) or remove templates")
    found = sorted(folder.glob("*.j2"))
    if not found:
        raise fail(f"the templates folder {folder} has no *.j2 templates",
                   "add thank_you.txt.j2 and/or follow_up.txt.j2 to it, or remove templates")
    from jinja2 import TemplateSyntaxError
    from jinja2.sandbox import SandboxedEnvironment

    for template in found:
        try:
            SandboxedEnvironment().parse(template.read_text(encoding="utf-8"), name=template.name)
        except TemplateSyntaxError as exc:
            raise fail(f"template {template}, line {exc.lineno}: {exc.message}",
                       f"correct line {exc.lineno} of {template.name} "
                       "(Jinja2 syntax: {{ name }}, {% if x %}...{% endif %})") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise fail(f"cannot read template {template}: {type(exc).__name__}",
                       "make it a readable UTF-8 text file") from None
    return folder


def _needs_url(channel: str) -> AfterValidator:
    def check(value: str | None, info: ValidationInfo) -> str | None:
        if value is None and channel in info.data.get("channels", ()):
            raise fail(f'channel "{channel}" needs {info.field_name}',
                       "{write} in notify")
        return value

    return AfterValidator(check)


Channel = Annotated[Text, one_of("desktop", "ntfy", "webhook", what="notification channel")]


@dataclass(frozen=True)
class NotifyTable:
    __pydantic_config__ = CHECKED
    channels: Annotated[tuple[Channel, ...], doc(
        "where notices go: desktop, ntfy, webhook", ["desktop", "ntfy"])] = ()
    ntfy_url: Annotated[WebAddress | None, _needs_url("ntfy"), doc(
        "the ntfy topic URL", "https://ntfy.sh/your-topic")] = None
    webhook_url: Annotated[WebAddress | None, _needs_url("webhook"), doc(
        "a URL that receives each notice as JSON", "https://example.com/hook")] = None


Duration = timedelta  # a field holding one, written as text: "2h", "90 minutes", "1 day"


# What each command of a token_store = "command" pair runs, for the fix in an error.
_TOKEN_COMMANDS = {"token_command": "pass show", "token_store_command": "pass insert -m -f"}


def _names_purpose(key: str) -> AfterValidator:
    """A token-store command, needed with token_store = "command", says where the secret's
    {purpose} goes."""

    def check(value: str | None, info: ValidationInfo) -> str | None:
        needed = value is not None or info.data.get("token_store") == "command"
        if needed and "{purpose}" not in (value or ""):
            raise fail(f'token_store = "command" needs {key} naming {{purpose}}',
                       f'e.g. {key} = "{_TOKEN_COMMANDS[key]} mailbridge/{{account}}/{{purpose}}"'
                       " (docs/tokens.md)")
        return value

    return AfterValidator(check)


@dataclass(frozen=True)
class PolicyTable:
    """The keys of [defaults], which every account inherits and may override."""

    __pydantic_config__ = CHECKED
    morning: Annotated[time, parsed(parse_clock), doc(
        "when business-day drafts appear", "09:00")] = "09:00"  # type: ignore[assignment]
    thank_you_delay: Annotated[Timing, parsed(_thank_you_delay), doc(
        "the thank-you draft appears this long after the interview ends (at most 24h)",
        "2h")] = "2h"  # type: ignore[assignment]
    thank_you_at: Annotated[Timing | None, BeforeValidator(
        lambda v, info: _read(v, lambda t: _thank_you_at(t, info))), doc(
        "instead of a delay: a time, the next business morning", "next business morning 08:00")
    ] = None
    follow_up_after: Annotated[Timing, parsed(parse_timing), require(
        lambda t: not isinstance(t, NextBusinessMorning), "follow_up_after counts from the "
        'interview: write business days or a duration such as "7 business days" or "10 days"'),
        doc(
        "silence this long before a follow-up, when no decision date is known",
        "7 business days")] = "7 business days"  # type: ignore[assignment]
    max_follow_ups: Annotated[Whole, require(
        lambda v: v <= HARD_MAX_FOLLOW_UPS, "{value} follow-ups is more than the hard cap of "
        f"{HARD_MAX_FOLLOW_UPS}: one polite follow-up is the advice, a stream of them hurts",
        f"write max_follow_ups = 1 (at most {HARD_MAX_FOLLOW_UPS})"), between(
        0, HARD_MAX_FOLLOW_UPS), doc(
        "follow-ups at most (1 is the advice; the cap is 3; 0 turns them off)", 1)] = 1
    follow_up_spacing: Annotated[Duration, parsed(parse_delay), require(
        lambda v: v >= timedelta(days=7), "follow-ups must be at least a week apart",
        'write follow_up_spacing = "7 days" or longer'), doc(
        "at least this long between follow-ups (a week or more)",
        "7 days")] = "7 days"  # type: ignore[assignment]
    lookback: Annotated[Duration, at_most(60, zero=True), doc(
        "interviews this recent still get drafts on the first run",
        "3 days")] = "3 days"  # type: ignore[assignment]
    removal_grace: Annotated[Duration, at_most(7, zero=True), doc(
        "an interview missing from the calendar this long (or for two full listings) counts "
        "as removed; its drafts wait meanwhile", "1h")] = "1h"  # type: ignore[assignment]
    reminder_after: Annotated[Duration | None, at_most(14), BeforeValidator(_reminder), doc(
        "one reminder when thank-yous are still unsent after this long; false: never",
        "20h")] = "20h"  # type: ignore[assignment]
    quiet_hours: Annotated[tuple[time, time], parsed(parse_quiet_hours), doc(
        "no desktop notifications in this span", "21:00-08:00")] = "21:00-08:00"  # type: ignore[assignment]
    keywords: Annotated[Texts | None, require(bool, "the list is empty"), doc(
        "what makes an event an interview; replaces the built-in list",
        ["interview", "phone screen"])] = None
    extra_keywords: Annotated[Texts, doc(
        "added to the built-in keywords", ["technical assessment"])] = ()
    exclude_keywords: Annotated[Texts | None, doc(
        "events with these words are not interviews; default: mock and practice interviews",
        ["mock interview"])] = None
    max_attendees: Annotated[Whole, between(2, 500), doc(
        "bigger meetings are not interviews", 12)] = 12
    include_recurring: Annotated[Flag, doc("recurring series may be interviews", False)] = False
    allow_free_mail: Annotated[Flag, doc(
        "write to interviewers at gmail.com-style addresses too", False)] = False
    templates: Annotated[LocalPath | None, AfterValidator(_templates), doc(
        "a folder with thank_you.txt.j2 / follow_up.txt.j2 overrides",
        "~/.config/mailbridge/templates")] = None
    poll_interval: Annotated[Interval, doc(
        "how often the mailbox is read (IMAP also pushes with IDLE)", "5m")] = "5m"  # type: ignore[assignment]
    calendar_interval: Annotated[Interval, doc(
        "how often the calendar is read", "15m")] = "15m"  # type: ignore[assignment]
    token_store: Annotated[Text, one_of(*TOKEN_STORES, what="token_store"), doc(
        "where `mailbridge auth` keeps tokens and passwords: the OS keyring, a command pair, "
        "or a marked 0600 file in the state folder (docs/tokens.md)", "keyring")] = "keyring"
    token_store_command: Annotated[Text | None, _names_purpose("token_store_command"), doc(
        'with token_store = "command": stores the secret it reads on stdin',
        "pass insert -m -f mailbridge/{account}/{purpose}")] = None
    token_command: Annotated[Text | None, _names_purpose("token_command"), doc(
        'with token_store = "command": prints the stored secret',
        "pass show mailbridge/{account}/{purpose}")] = None
    timezone: Annotated[Zone | None, doc(
        "this account's time zone; default: [mailbridge]'s", "America/Chicago")] = None
    country: Annotated[Country | None, doc(
        "this account's holiday country; default: [mailbridge]'s", "US")] = None
    subdivision: Annotated[Subdivision | None, doc(
        "this account's holiday region", "CA")] = None
    notify: Annotated[NotifyTable, doc(
        "notices about drafts and problems", {"channels": ["desktop"]})] = NotifyTable()
    org_domains: Annotated[tuple[Annotated[Text, AfterValidator(_domain)], ...], doc(
        "your own organisation: meetings there are internal", ["mycompany.com"])] = ()
    aliases: Annotated[tuple[Annotated[Text, _address(
        'write aliases = ["you@example.org"] (your other addresses)')], ...], doc(
        "your other addresses", ["you@example.org"])] = ()


@dataclass(frozen=True)
class AccountTable:
    """The keys of [accounts.NAME] that are the account's own (besides the [defaults] keys and
    the provider's table)."""

    __pydantic_config__ = FORBID
    provider: Annotated[Text, doc("where drafts go: the mailbox kind", "imap")]
    address: Annotated[Text, _address(), doc("your address, as the drafts are from",
                                             "you@example.com")]
    name: Annotated[Text, doc("your name, as the drafts sign", "Jordan Lee")] = ""
    signature: Annotated[AnyText, doc("closes every draft", "Jordan Lee\n555-0100")] = ""
    enabled: Annotated[Flag, doc("false keeps the account out of every pass", True)] = True
    calendar: Annotated[dict[str, Any] | None, doc(
        "where interviews are read: a table with kind and that kind's keys; default: the "
        "provider's own calendar", {"kind": "caldav", "url": "https://caldav.example.com/"})
    ] = None


@dataclass(frozen=True)
class CalendarTable:
    """The keys of every calendar table; the kind's own keys go to its provider's schema."""

    __pydantic_config__ = CHECKED
    kind: Annotated[Text, doc("the calendar kind", "caldav")]
    lookahead: Annotated[Duration, at_most(730), doc("how far ahead events are read", "60 days")
                         ] = "60 days"  # type: ignore[assignment]


# --- reading the file ----------------------------------------------------------------------


def _table(ctx: _Ctx, data: Mapping[str, object], key: Key) -> dict[str, object] | None:
    value = data.get(key[-1])
    if value is None or isinstance(value, dict):
        return value
    ctx.fail(key, f"expected a table, got {_describe(value)}", f"write [{_dotted(key)}] on its "
             "own line, then its keys")
    return None


def _known(ctx: _Ctx, data: Mapping[str, object], home: Key,
           valid: Iterable[str]) -> dict[str, object]:
    """The keys of ``data`` that belong in ``home``; every other one is reported (a secret
    already was, by `_find_secrets`)."""
    valid = set(valid)
    for name in data:
        if name not in valid and not secrets.is_secret_key(name, ctx.declared):
            _unknown(ctx, (*home, name), valid)
    return {k: v for k, v in data.items() if k in valid}


def _elsewhere(name: str, home: Key) -> str:
    """For a key written in the wrong table: where it goes ("" when it belongs nowhere)."""
    per_account, inherited = name in fields(AccountTable), name in fields(PolicyTable)
    if home == () and (per_account or inherited):
        return f"put {name} under [defaults] (for every account) or [accounts.NAME]"
    if home == ("mailbridge",) and (per_account or inherited):
        return f"{name} is set in [defaults] or in [accounts.NAME]"
    if home == ("defaults",) and per_account:
        return f"{name} is set per account: move it to [accounts.NAME]"
    return "state_dir belongs in [mailbridge]" if name == "state_dir" and home else ""


def _unknown(ctx: _Ctx, key: Key, valid: Iterable[str]) -> None:
    if hint := _elsewhere(key[-1], key[:-1]):
        return ctx.fail(key, f"{key[-1]} does not belong here", hint)
    valid = sorted(valid)
    close = difflib.get_close_matches(key[-1], valid, n=1, cutoff=0.6)
    ctx.fail(key, f'unknown key "{key[-1]}"', (
        f"did you mean {close[0]}? Rename the key to {close[0]} " if close else
        "remove it, or use one of ") + f"(valid keys here: {', '.join(valid)})")


def _choice(ctx: _Ctx, key: Key, value: object, valid: list[str], what: str) -> str | None:
    """A provider or calendar kind: one of those installed."""
    if not isinstance(value, str) or not value.strip():
        return None  # reported by the schema
    if value.strip() in valid:
        return value.strip()
    close = difflib.get_close_matches(value, valid, n=1)
    ctx.fail(key, f"unknown {what} {_describe(value)}", (f'write {key[-1]} = "{close[0]}" '
             if close else "") + f"(valid {what}s: {', '.join(valid)})")
    return None


def _calendar(ctx: _Ctx, data: dict[str, object], home: Key, provider: str | None,
              config: adapters.ProviderConfig | None) -> tuple[str | None, CalendarSettings | None]:
    kinds = adapters.available("calendar")
    key = (*home, "calendar")
    if "calendar" not in data:
        kind = config.default_calendar if config else None
        if kind is None and provider is not None:
            suggested = config.starter_calendar if config else None
            example = ("a calendar = { kind = ... } table (kind " if not suggested else
                       f"calendar = {toml(starter_calendar(suggested))} (or kind ")
            ctx.fail(key, f'a "{provider}" account needs a calendar',
                     f"add {example}{', '.join(kinds)}) to the account")
        if kind is None:
            return None, None
        raw: dict[str, object] = {"kind": kind}
    elif not isinstance(data["calendar"], dict):
        return None, None  # reported by the account's schema
    else:
        raw = data["calendar"]
    kind = _choice(ctx, (*key, "kind"), raw.get("kind"), kinds, "calendar kind")
    core = fields(CalendarTable)
    common = ctx.validate(CalendarTable, {k: v for k, v in raw.items() if k in core}, key)
    if kind is None:
        return None, None
    schema = adapters.calendar_schema(kind)
    own: dict[str, object] = {}
    for name in (n for n in raw if n not in core):
        if name in _calendar_keys(kind):  # the other kinds' modules are imported only for a
            own[name] = raw[name]  # stray key: each costs every command time and memory
            continue
        users = [k for k in kinds if name in _calendar_keys(k)]
        if users:
            ctx.fail((*key, name), f'{name} is not used by a calendar of kind "{kind}"',
                     f"remove {name} (it is used with kind {' or '.join(users)})")
        elif schema is None:  # a kind without keys of its own
            _unknown(ctx, (*key, name), core)
        else:
            own[name] = raw[name]
    options = ctx.validate(schema, own, key) if schema else None
    if common is None or (schema and options is None):
        return kind, None
    return kind, CalendarSettings(kind=kind, lookahead=common.lookahead, options=options)


def _calendar_keys(kind: str) -> dict[str, Entry]:
    schema = adapters.calendar_schema(kind)
    return fields(schema) if schema else {}


def _policy_keys(ctx: _Ctx, defaults: Mapping[str, object], account: Mapping[str, object],
                 name: str) -> tuple[dict[str, object], dict[str, Key]]:
    """The account's policy keys, with [defaults] filling the ones the account leaves out, and
    where each was written."""
    data: dict[str, object] = {}
    origin: dict[str, Key] = {}
    pair = ("thank_you_delay", "thank_you_at")
    for source, home in ((defaults, ("defaults",)), (account, ("accounts", name))):
        if all(k in source for k in pair):
            ctx.fail((*home, "thank_you_at"), "thank_you_delay and thank_you_at are both set",
                     'keep only one: a delay (thank_you_delay = "2h") or a time '
                     '(thank_you_at = "next business morning 08:00")')
        if any(k in source for k in pair):  # one level overriding the other replaces both
            for k in pair:
                data.pop(k, None)
        for k in fields(PolicyTable):
            if k in source:
                data[k], origin[k] = source[k], home
    return data, origin


def _policy(table: PolicyTable, written: Mapping[str, object],
            top: MailbridgeTable) -> tuple[Policy, DetectionRules]:
    # The subdivision goes with the country: an account naming another country does not
    # inherit the subdivision of [mailbridge].
    country, subdivision = top.country, top.subdivision
    if "country" in written:
        country, subdivision = table.country, None
    if "subdivision" in written:
        subdivision = table.subdivision
    policy = _copied(
        Policy, table,
        timezone=table.timezone or top.timezone or timing.system_timezone(),
        country=country,
        subdivision=subdivision,
        thank_you=table.thank_you_at or table.thank_you_delay,
        follow_up=table.follow_up_after,
        quiet_start=table.quiet_hours[0],
        quiet_end=table.quiet_hours[1],
    )
    keywords = (*(table.keywords or DEFAULT_KEYWORDS), *table.extra_keywords)
    exclude = DEFAULT_EXCLUDE_KEYWORDS if table.exclude_keywords is None else table.exclude_keywords
    rules = _copied(
        DetectionRules, table,
        keywords=tuple(dict.fromkeys(k.lower() for k in keywords)),
        exclude_keywords=tuple(k.lower() for k in exclude),
    )
    return policy, rules


def _copied(target: type[T], *sources: object, **values: object) -> T:
    """A ``target`` with the fields its ``sources`` (validated tables) have under the same
    name, then ``values``: a key reaches the settings without being listed again here."""
    names = {f.name for f in dataclasses.fields(target)}  # type: ignore[arg-type]
    same = {k: v for source in sources for k, v in vars(source).items() if k in names}
    return target(**{**same, **values})


def _account(ctx: _Ctx, name: str, data: dict[str, object], defaults: Mapping[str, object],
             top: MailbridgeTable) -> AccountSettings | None:
    home: Key = ("accounts", name)
    before = len(ctx.problems)
    ctx.declared, ctx.account = schema_keys(configs := _providers_of(data)), name
    tables = {c.table: c for c in configs if c.table and c.settings}
    own = fields(AccountTable)
    _known(ctx, data, home, [*own, *fields(PolicyTable), *tables])
    provider = _choice(ctx, (*home, "provider"), data.get("provider"),
                       adapters.available("mailbox"), "provider")
    account = ctx.validate(AccountTable, {k: v for k, v in data.items() if k in own}, home)
    config = adapters.config_of("mailbox." + provider) if provider else None
    kind, calendar = _calendar(ctx, data, home, provider, config)

    address = account.address if account else ""
    settings: dict[str, object] = {}
    for table, owner in tables.items():
        users = {"mailbox." + provider if provider else "", "calendar." + (kind or "")}
        used = bool(users & set(owner.used_by))
        schema = owner.settings
        assert schema is not None
        if table in data and not used and provider is not None:
            ctx.fail((*home, table), f'{table} is not used by a "{provider}" account' + (
                f" without a {table} calendar" if any(u.startswith("calendar.")
                                                      for u in owner.used_by) else ""),
                f"remove the {table} table, or change provider")
        elif table in data and not isinstance(data[table], dict):
            ctx.fail((*home, table), f"expected a table, got {_describe(data[table])}",
                     f"write {table} = {toml(starter_table(schema))}")
        elif table not in data and used and starter_table(schema):
            ctx.fail((*home, table), f'a "{provider}" account needs a {table} table',
                     f"add {table} = {toml(starter_table(schema))} to the account")
        elif table in data or used:
            written = data.get(table)
            value = ctx.validate(schema, written if isinstance(written, dict) else {},
                                 (*home, table), address=address)
            if used and value is not None:
                settings[table] = value

    merged, origin = _policy_keys(ctx, defaults, data, name)
    keys = ctx.validate(PolicyTable, merged, home, origin, country=top.country)
    if len(ctx.problems) > before or not (account and keys and provider and calendar):
        return None
    policy, rules = _policy(keys, merged, top)
    return _copied(
        AccountSettings, keys, account,
        name=name,
        display_name=account.name,
        calendar=calendar,
        tables=settings,
        notify=_copied(NotifySettings, keys.notify),
        policy=policy,
        rules=rules,
        templates_dir=Path(keys.templates) if keys.templates else None,
        token_store=TokenStoreSettings(
            kind=keys.token_store, store_command=keys.token_store_command,
            lookup_command=keys.token_command,
            directory=Path(top.state_dir) if top.state_dir else paths.default_state_dir()),
    )


_HEADER_LINE = re.compile(r"\s*\[\[?\s*([A-Za-z0-9_.\- ]+?)\s*\]\]?\s*(?:#.*)?")
_KEY_LINE = re.compile(r"\s*([A-Za-z0-9_\-]+(?:\s*\.\s*[A-Za-z0-9_\-]+)*)\s*=")


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
    hint = ("check the quotes, brackets and = on that line (text values need quotes: "
            'name = "Jordan Lee")')
    if "Cannot overwrite" in message or "Cannot declare" in message:
        hint = "a key or table is written twice; keep one of them"
    elif "Unterminated string" in message:
        hint = "close the string with the same quote it starts with"
    key = _key_at_line(text, line) if line else ""
    return ConfigProblem(path, key, line, f"this is not valid TOML: {message}", hint)


def _key_at_line(text: str, line: int) -> str:
    """For a syntax error: the dotted key written on that line, if it can be read (bare keys
    only), inside the last table header before it."""
    lines = text.splitlines()
    if not 1 <= line <= len(lines):
        return ""
    starts = _key_lines("\n".join(lines[: line - 1]) + "\n")[1]
    headers = (_HEADER_LINE.fullmatch(lines[n - 1]) for n in reversed(starts) if n < line)
    table = next((re.sub(r"\s+", "", h.group(1)) for h in headers if h), "")
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
    for where, message, hint in secrets.written_in(document, ctx.declared, lambda account:
                                                  schema_keys(_providers_of(account))):
        ctx.fail(where, message, hint)
    _known(ctx, document, (), ("mailbridge", "defaults", "accounts"))
    top_data = _known(ctx, _table(ctx, document, ("mailbridge",)) or {}, ("mailbridge",),
                      fields(MailbridgeTable))
    top = ctx.validate(MailbridgeTable, top_data, ("mailbridge",)) or MailbridgeTable()
    defaults = _known(ctx, _table(ctx, document, ("defaults",)) or {}, ("defaults",),
                      fields(PolicyTable))
    accounts: list[AccountSettings] = []
    raw_accounts = _table(ctx, document, ("accounts",))
    if "accounts" not in document:
        ctx.fail(("accounts",), "there are no accounts", "add one, such as [accounts.main] with "
                 "provider, address and the provider's table (`mailbridge init` writes one)")
    elif raw_accounts is not None and not raw_accounts:
        ctx.fail(("accounts",), "there are no accounts", "add an [accounts.NAME] table")
    for name, data in (raw_accounts or {}).items():
        key: Key = ("accounts", name)
        if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
            safe = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-") or "main"
            ctx.fail(key, f"the account name {_describe(name)} has characters other than "
                     "letters, digits, - and _", f"rename it, e.g. [accounts.{safe}]")
        elif not isinstance(data, dict):
            ctx.fail(key, f"expected a table, got {_describe(data)}",
                     f'write [accounts.{name}] on its own line, then provider = "...", ...')
        elif account := _account(ctx, name, data, defaults, top):
            accounts.append(account)
    if not raw_accounts:  # [defaults] is checked even without accounts
        ctx.validate(PolicyTable, defaults, ("defaults",), country=top.country)
    if ctx.problems:
        raise ConfigError(sorted(ctx.problems, key=lambda p: p.line or 10**9))
    by_address: dict[str, set[str]] = {}
    for account in accounts:
        by_address.setdefault(account.address.casefold(), set()).add(account.name)
    # One set per address, shared by its accounts: a thousand accounts of one address would
    # otherwise hold a million names.
    groups = {k: frozenset(v) if len(v) > 1 else frozenset() for k, v in by_address.items()}
    accounts = [dataclasses.replace(account, same_address=groups[account.address.casefold()])
                for account in accounts]
    return Settings(
        path=path.expanduser().absolute(),
        state_dir=Path(top.state_dir) if top.state_dir else paths.default_state_dir(),
        timezone=top.timezone or timing.system_timezone(),
        country=top.country,
        accounts=tuple(accounts),
    )


def load(path: Path) -> Settings:
    """Settings from a config file. Raises ConfigError naming the file, key, line and fix."""

    def problem(message: str, hint: str, line: int | None = None) -> ConfigError:
        return ConfigError([ConfigProblem(path, "", line, message, hint)])

    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise problem("there is no config file here", "run `mailbridge init` to create one, or "
                      "name another with --config PATH") from None
    except OSError as exc:
        raise problem(f"the config file cannot be read ({exc.strerror or exc})",
                      "check that the file exists and that you may read it") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise problem("the file is not UTF-8 text", "save it as UTF-8 (plain text) in your "
                      "editor", raw[: exc.start].count(b"\n") + 1) from None
    return loads(text.removeprefix("\ufeff"), path)
