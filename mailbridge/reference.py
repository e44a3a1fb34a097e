"""Written from the config schemas: the starter config of `mailbridge init` and the README's
table of every key, so neither can drift from what `mailbridge.config` accepts."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from mailbridge import adapters
from mailbridge.config import (
    AccountTable,
    CalendarTable,
    MailbridgeTable,
    NotifyTable,
    PolicyTable,
    fields,
    starter_calendar,
    toml,
)
from mailbridge.timing import system_timezone


def _lines(schema: type, names: Iterable[str], *, prefix: str = "") -> str:
    entries = fields(schema)
    return "".join(f"{prefix}{n} = {toml(entries[n].example)}   # {entries[n].description}\n"
                   for n in names)


def starter_config(address: str = "you@example.com", provider: str | None = None) -> str:
    """A small, valid config for `mailbridge init`, with comments on how to change it (for
    the default provider unless ``provider`` names another)."""
    provider = provider or adapters.default_kind("mailbox")
    config = adapters.config_of("mailbox." + provider)
    if config is None:
        raise ValueError(f"unknown provider {provider!r}; valid: "
                         + ", ".join(adapters.available("mailbox")))
    text = ("# mailbridge configuration. Every key is explained in config.example.toml.\n"
            "# mailbridge never sends mail: it only writes drafts you review and send yourself."
            f"\n\n[mailbridge]\ntimezone = {toml(system_timezone())}\n"
            + _lines(MailbridgeTable, ["country"], prefix="# ")
            + "\n[defaults]   # every account inherits these\n"
            + _lines(PolicyTable, ["thank_you_delay", "follow_up_after", "max_follow_ups"])
            + _lines(PolicyTable, ["thank_you_at"], prefix="# ")
            + "\n# Credentials never go in this file: `mailbridge auth main` puts them in the "
            "system keyring.\n[accounts.main]\n"
            f"provider = {toml(provider)}   # {', '.join(adapters.available('mailbox'))}\n"
            f"address = {toml(address)}\n" + _lines(AccountTable, ["name"], prefix="# "))
    if config.default_calendar:
        text += (f'# calendar = {{ kind = "{config.default_calendar}" }}   # or kind '
                 + ", ".join(adapters.available("calendar")) + ", with that kind's keys\n")
    else:
        text += f"calendar = {toml(starter_calendar(config.starter_calendar))}\n"
    if config.settings and config.table:  # last: the keys below the header belong to it
        entries = fields(config.settings)
        text += f"\n[accounts.main.{config.table}]\n" + "".join(
            f"{'' if e.default is dataclasses.MISSING else '# '}{e.name} = {toml(e.example)}"
            f"   # {e.description}\n" for e in entries.values() if e.example is not None)
    return text


def reference_table() -> str:
    """The README's table of every key, from the schemas' field descriptions."""
    rows = ["| key | where | default | meaning |", "|---|---|---|---|"]

    def add(schema: type, where: str, skip: Iterable[str] = ()) -> None:
        for e in fields(schema).values():
            if e.name in skip:
                continue
            default = "" if e.default in (dataclasses.MISSING, None, (), "") else toml(
                e.default.__dict__ if dataclasses.is_dataclass(e.default) else e.default)
            rows.append(f"| `{e.name}` | {where} | {default} | {e.description} |".replace(
                "\n", "\\n"))

    add(MailbridgeTable, "mailbridge")
    add(PolicyTable, "defaults, account", skip=["notify"])
    add(NotifyTable, "`notify = {...}` (defaults, account)")
    add(AccountTable, "account")
    add(CalendarTable, "`calendar = {...}`")
    for kind in adapters.available("calendar"):
        schema = adapters.calendar_schema(kind)
        if schema:
            add(schema, f'`calendar = {{ kind = "{kind}" }}`')
    for config in sorted(adapters.configs().values(), key=lambda c: c.table):
        if config.table and config.settings:
            users = ", ".join(u.replace(".", " ") for u in config.used_by)
            add(config.settings, f"`{config.table} = {{...}}` ({users})")
    return "\n".join(dict.fromkeys(rows)) + "\n"
