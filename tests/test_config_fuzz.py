"""config.loads on arbitrary and mutated input: it returns Settings or raises ConfigError, never
anything else, and every ConfigError names the file.

Three generators: any text at all; TOML-ish lines built from the config's own vocabulary; and
valid documents (a rich config, parsed, then mutated as data: values swapped for values of other
types, keys dropped, tables replaced) written back as TOML, so the checks behind the parser see
every kind of wrong value in every place.
"""

from __future__ import annotations

import datetime as dt
import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailbridge import config
from mailbridge.config import ConfigError

PATH = Path("/nonexistent/fuzz/config.toml")

VALID = """\
[mailbridge]
timezone = "America/Chicago"
country = "US"
subdivision = "TX"
state_dir = "state"

[defaults]
thank_you_delay = "2h"
follow_up_after = "7 business days"
max_follow_ups = 2
follow_up_spacing = "8 days"
morning = "09:00"
lookback = "3 days"
reminder_after = "20h"
quiet_hours = "21:00-08:00"
keywords = ["interview", "phone screen"]
exclude_keywords = ["mock interview"]
extra_keywords = ["debrief"]
max_attendees = 10
include_recurring = false
allow_free_mail = false
poll_interval = "5m"
calendar_interval = "15m"
notify = { channels = ["ntfy"], ntfy_url = "https://ntfy.sh/topic" }
org_domains = ["mycompany.com"]

[accounts.home]
provider = "local"
address = "me@example.com"
name = "Jordan Lee"
signature = "Jordan\\n555-0100"
maildir = { path = "Maildir" }
calendar = { kind = "file", path = "cal" }
aliases = ["me@example.org"]

[accounts.mail]
provider = "imap"
address = "jordan@example.net"
thank_you_at = "next business morning 08:00"
imap = { host = "imap.example.net", port = 993, security = "tls", password_command = "pass x", timeout = 30, idle = true }
calendar = { kind = "caldav", url = "https://dav.example.net/", username = "jordan", calendars = ["Work"], lookahead = "30 days" }

[accounts.g]
provider = "gmail"
address = "jordan@gmail.com"
google = { client_secrets = "client.json", api_endpoint = "http://127.0.0.1:8080/" }

[accounts.o]
provider = "outlook"
address = "jordan@contoso.example"
outlook = { client_id = "00000000-0000-0000-0000-000000000000", tenant = "common" }
calendar = { kind = "ics", url = "webcal://example.com/cal.ics" }
"""  # noqa: E501

# Every key some schema declares (the core's and each installed provider's), and the tables.
KEYS = sorted(config.schema_keys() | {"accounts", "defaults", "mailbridge"})


def loads_only_config_error(text: str) -> None:
    try:
        config.loads(text, PATH)
    except ConfigError as exc:
        assert str(PATH) in str(exc)
        assert exc.problems and all(p.path == PATH for p in exc.problems)
        assert all(str(p).startswith(str(PATH)) for p in exc.problems)


# --- TOML values, written by hand (no writer library needed) ---------------------------------


def toml_key(key: str) -> str:
    return key if key and all(c.isalnum() or c in "_-" for c in key) else json.dumps(key)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, float) and value != value:
        return "nan"
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(type(value))


def dump(document: dict[str, Any]) -> str:
    """Top-level tables as [headers], everything below them inline."""
    lines: list[str] = []
    plain = {k: v for k, v in document.items() if not isinstance(v, dict)}
    lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in plain.items()]
    for name, table in document.items():
        if not isinstance(table, dict):
            continue
        if name == "accounts" and all(isinstance(v, dict) for v in table.values()):
            for account, body in table.items():
                lines.append(f"[accounts.{toml_key(account)}]")
                lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in body.items()]
            if not table:
                lines.append("[accounts]")
            continue
        lines.append(f"[{toml_key(name)}]")
        lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(
        [
            "",
            " ",
            "2h",
            "0s",
            "25h",
            "7 business days",
            "next business morning 08:00",
            "09:00",
            "25:99",
            "21:00-08:00",
            "imap",
            "gmail",
            "local",
            "outlook",
            "file",
            "ics",
            "caldav",
            "google",
            "tls",
            "plain",
            "starttls",
            "desktop",
            "ntfy",
            "webhook",
            "http://example.com/",
            "https://x",
            "https://",
            "https://[::1",
            "http://[::1]:80/",
            "webcal://",
            "https://u:p@h.example/",
            "me@example.com",
            "@",
            "~",
            "$HOME/x",
            "US",
            "XX",
            "Mars/Olympus",
            "UTC",
            "\n",
            "a\rb",
            "\x00",
        ]
    ),
    st.dates(),
    st.times(),
    st.datetimes(),
    st.datetimes(timezones=st.just(dt.UTC)),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=8)), inner, max_size=4),
    ),
    max_leaves=8,
)


def paths_of(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, inner in value.items():
            found += paths_of(inner, (*prefix, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            found += paths_of(inner, (*prefix, index))
    return found


@st.composite
def mutated_documents(draw: st.DrawFn) -> dict[str, Any]:
    document: dict[str, Any] = tomllib.loads(VALID)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        places = paths_of(document)
        if not places:  # every table deleted: nothing left to mutate
            break
        where = draw(st.sampled_from(places))
        parent: Any = document
        for step in where[:-1]:
            parent = parent[step]
        last = where[-1]
        action = draw(st.sampled_from(["replace", "delete", "add", "rename"]))
        if action == "replace":
            parent[last] = draw(values)
        elif action == "delete":
            del parent[last]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.sampled_from(KEYS))] = draw(values)
        elif action == "rename" and isinstance(parent, dict):
            parent[draw(st.sampled_from(KEYS))] = parent.pop(last)
    return document


FAST = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def test_the_valid_config_is_valid() -> None:
    # The base of the mutations must itself load, or the mutations test little.
    loaded = config.loads(VALID, PATH)
    assert [a.name for a in loaded.accounts] == ["home", "mail", "g", "o"]


@FAST
@given(st.text(max_size=200))
def test_any_text(text: str) -> None:
    loads_only_config_error(text)


fragments = st.one_of(
    st.sampled_from(
        [
            "[mailbridge]",
            "[defaults]",
            "[accounts]",
            "[accounts.a]",
            "[accounts.a.imap]",
            "[accounts.a.calendar]",
            "[[accounts]]",
            "[[accounts.a]]",
            "[accounts.a.notify]",
            "[accounts.\"a b\"]",
            "[accounts.a.google]",
        ]
    ),
    st.builds(
        lambda key, value: f"{key} = {value}",
        st.one_of(
            st.sampled_from(KEYS),
            st.builds(lambda a, b: f"{a}.{b}", st.sampled_from(KEYS), st.sampled_from(KEYS)),
        ),
        st.one_of(values.map(toml_value), st.text(max_size=10)),
    ),
    st.text(max_size=20),
)


@FAST
@given(st.lists(fragments, max_size=12))
def test_toml_ish_lines(lines: list[str]) -> None:
    loads_only_config_error("\n".join(lines))


@pytest.mark.slow
@FAST
@given(mutated_documents())
def test_mutated_valid_config(document: dict[str, Any]) -> None:
    loads_only_config_error(dump(document))


@pytest.mark.slow
@FAST
@given(st.data())
def test_mutated_valid_text(data: st.DataObject) -> None:
    text = VALID
    for _ in range(data.draw(st.integers(min_value=1, max_value=3))):
        at = data.draw(st.integers(min_value=0, max_value=len(text)))
        action = data.draw(st.sampled_from(["delete", "insert", "duplicate"]))
        if action == "delete":
            end = data.draw(st.integers(min_value=at, max_value=min(len(text), at + 20)))
            text = text[:at] + text[end:]
        elif action == "insert":
            text = text[:at] + data.draw(st.one_of(fragments, st.text(max_size=5))) + text[at:]
        else:
            lines = text.splitlines()
            index = data.draw(st.integers(min_value=0, max_value=len(lines) - 1))
            lines.insert(index, lines[index])
            text = "\n".join(lines)
    loads_only_config_error(text)


def test_the_fuzzer_reaches_deep_checks() -> None:
    """A replaced value deep in an account is reported by key, through the same dump()."""
    document = tomllib.loads(VALID)
    document["accounts"]["mail"]["imap"]["port"] = "993"
    try:
        config.loads(dump(document), PATH)
    except ConfigError as exc:
        assert exc.key == "accounts.mail.imap.port"
    else:
        raise AssertionError("a port in quotes was accepted")
