"""`mailbridge check`: every problem of every account at once, and (``--online``) what works.

Offline, each account's settings are looked at as a pass would use them: files that must
exist, the token store (a real keyring, or the one the user chose), the credentials in it, and
every ``password_command``/``token_command``, which is run (its output is never shown).
Online, each provider's ``probe(account)`` signs in and makes one cheap read per resource
(calendar, Drafts, inbox, Sent); a provider without one is read through its adapter.

The report is plain data; `render` makes the text, and its headline agrees with the exit
status by construction (both come from `failed`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import import_module
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType

from mailbridge import adapters, compose, secrets
from mailbridge.adapters import (
    ENTRY_POINT_GROUP,
    ProviderError,
    open_calendar,
    open_mailbox,
)
from mailbridge.model import Window
from mailbridge.settings import AccountSettings, Settings


@dataclass(frozen=True)
class Probe:
    """One online read: the resource ("sign-in", "calendar", "Drafts", "inbox", "Sent"),
    whether it worked, and what works or what to fix."""

    resource: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class AccountReport:
    name: str
    provider: str
    calendar: str
    enabled: bool
    store: str  # the token store in use, named (never a secret)
    problems: tuple[str, ...]
    probes: tuple[Probe, ...] = ()

    @property
    def failed(self) -> bool:
        return self.enabled and (bool(self.problems) or any(not p.ok for p in self.probes))

    @property
    def count(self) -> int:
        return len(self.problems) + sum(1 for p in self.probes if not p.ok)


@dataclass(frozen=True)
class Report:
    path: Path
    accounts: tuple[AccountReport, ...] = field(default=())

    @property
    def failed(self) -> bool:
        return any(a.failed for a in self.accounts)


# --- offline --------------------------------------------------------------------------------


def stored_purposes(account: AccountSettings) -> list[str]:
    """The purposes this account keeps in its token store."""
    needs = []
    if account.provider == "gmail" or account.calendar.kind == "google":
        needs.append("google-refresh-token")
    if account.provider == "outlook" or account.calendar.kind == "outlook":
        needs.append("msal-cache")
    imap = account.imap
    if (account.provider == "imap" and imap is not None
            and not (imap.password_command or imap.oauth2_token_command)):
        needs.append("imap")
    if account.calendar.kind == "caldav" and not _calendar_key(account, "password_command"):
        needs.append("caldav")
    return needs


def _calendar_key(account: AccountSettings, key: str) -> str | None:
    """A key of the calendar kind's own settings, None when that kind has no such key."""
    value = getattr(account.calendar.options, key, None)
    return value if isinstance(value, str) else None


def _ran(command: str | None, what: str, setting: str, problems: list[str]) -> None:
    if not command:
        return
    try:
        secrets.run_command(command, what=what, setting=setting)
    except ProviderError as exc:
        problems.append(str(exc).removeprefix(f"{what}: "))


PURPOSE_NAMES = {
    "google-refresh-token": "not signed in to Google",
    "msal-cache": "not signed in to Microsoft",
    "imap": "no IMAP password",
    "caldav": "no CalDAV password",
}


def offline_problems(account: AccountSettings) -> list[str]:
    """Every problem found without a network: settings, files, token store, commands."""
    problems: list[str] = list(compose.check_templates(account.templates_dir))
    what = f"account {account.name!r}"
    # A provider may check its own settings (a client file, an app id) without a network.
    modules = {provider_module("mailbox." + account.provider),
               provider_module("calendar." + account.calendar.kind)}
    for module in sorted(filter(None, modules), key=lambda m: m.__name__):
        own = getattr(module, "problems", None)
        if own is not None:
            problems += own(account)
    if (account.provider == "local" and account.maildir is not None
            and not Path(account.maildir.path).expanduser().is_dir()):
        problems.append(f"maildir.path {account.maildir.path} does not exist")
    if account.provider == "imap" and account.imap is not None:
        _ran(account.imap.password_command, what, "imap.password_command", problems)
        _ran(account.imap.oauth2_token_command, what, "imap.oauth2_token_command", problems)
    path = _calendar_key(account, "path")
    if account.calendar.kind == "file" and path and not Path(path).expanduser().exists():
        problems.append(f"calendar.path {path} does not exist")
    _ran(_calendar_key(account, "password_command"), what, "calendar.password_command", problems)

    store = secrets.token_store(account)
    needs = stored_purposes(account)
    if needs:
        trouble = store.problem()
        if trouble:
            problems.append(trouble)
        else:
            for purpose in needs:
                try:
                    found = store.lookup(purpose)
                except ProviderError as exc:
                    problems.append(str(exc).removeprefix(f"{what}: "))
                    break  # the same command or file fails the same way for the others
                if not found:
                    problems.append(f"{PURPOSE_NAMES.get(purpose, purpose)}: run "
                                    f"`mailbridge auth {account.name}`")
    # What the account's providers check themselves (a third-party provider's own rules too).
    try:
        own = adapters.credential_problem(account)
    except ProviderError as exc:
        own = str(exc)
    if own:
        own = own.removeprefix(f"{what}: ")
        if not any(own in p or p in own or own.split(":")[0] == p.split(":")[0]
                   for p in problems):
            problems.append(own)

    return problems


# --- online ---------------------------------------------------------------------------------


def provider_module(entry: str) -> ModuleType | None:
    """The module that registered ``entry`` ("mailbox.KIND" or "calendar.KIND"), if any."""
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == entry:
            return import_module(ep.module)
    return None


def _quietly(close: Callable[[], None]) -> None:
    with contextlib.suppress(Exception):
        close()


def _read_calendar(account: AccountSettings) -> Probe:
    """A calendar without a probe of its own: one adapter read of the next day."""
    try:
        source = open_calendar(account)
        try:
            now = datetime.now(UTC)
            batch = source.changes(None, Window(now, now + timedelta(days=1)))
        finally:
            _quietly(source.close)
    except ProviderError as exc:
        return Probe("calendar", False, str(exc))
    return Probe("calendar", True, f"readable ({len(batch.events)} event(s) in the next day)")


def _read_mailbox(account: AccountSettings) -> list[Probe]:
    """A mailbox without a probe of its own: the inbox and Sent since now, then Drafts."""
    try:
        mailbox = open_mailbox(account)
    except ProviderError as exc:
        return [Probe("sign-in", False, str(exc))]
    found = [Probe("sign-in", True, "connected")]
    try:
        for resource, read in (
            ("inbox and Sent", lambda: mailbox.messages(None, datetime.now(UTC))),
            ("Drafts", lambda: mailbox.find_draft("<check@mailbridge.invalid>")),
        ):
            try:
                read()
            except ProviderError as exc:
                found.append(Probe(resource, False, str(exc)))
            else:
                found.append(Probe(resource, True, "readable"))
    finally:
        _quietly(mailbox.close)
    return found


def online_probes(account: AccountSettings) -> list[Probe]:
    mailbox_module = provider_module("mailbox." + account.provider)
    calendar_module = provider_module("calendar." + account.calendar.kind)
    probes: list[Probe] = []
    mailbox_probe = getattr(mailbox_module, "probe", None)
    probes += mailbox_probe(account) if mailbox_probe else _read_mailbox(account)
    if calendar_module is mailbox_module and mailbox_probe:
        return probes  # the mailbox's probe read its own calendar
    calendar_probe = getattr(calendar_module, "probe", None)
    probes += calendar_probe(account) if calendar_probe else [_read_calendar(account)]
    return probes


# --- the whole check ------------------------------------------------------------------------


def run(settings: Settings, *, online: bool = False) -> Report:
    reports = []
    for account in settings.accounts:
        problems = tuple(offline_problems(account))
        probes: tuple[Probe, ...] = ()
        # Online reads only for an enabled account whose sign-in can work at all.
        if online and account.enabled and not problems:
            probes = tuple(online_probes(account))
        reports.append(AccountReport(
            name=account.name, provider=account.provider, calendar=account.calendar.kind,
            enabled=account.enabled, store=secrets.token_store(account).describe()
            if stored_purposes(account) else "", problems=problems, probes=probes,
        ))
    return Report(settings.path, tuple(reports))


def headline(report: Report) -> str:
    failing = [a for a in report.accounts if a.failed]
    if not failing:
        return f"{report.path}: everything checked is in order"
    count = sum(a.count for a in failing)
    return (f"{report.path}: {count} problem{'s' if count != 1 else ''} in "
            f"{len(failing)} account{'s' if len(failing) != 1 else ''}; fix them and run "
            "`mailbridge check` again")


def render(report: Report, *, online: bool) -> list[str]:
    lines = [headline(report)]
    for account in report.accounts:
        state = ("disabled" if not account.enabled
                 else "problem" if account.failed else "ok")
        lines.append(f"  {account.name} ({account.provider}, calendar {account.calendar}): "
                     f"{state}")
        if account.store:
            lines.append(f"    tokens: {account.store}")
        lines += [f"    - {problem}" for problem in account.problems]
        for probe in account.probes:
            mark = "ok" if probe.ok else "FAILED"
            lines.append(f"    {probe.resource}: {mark}: {probe.detail}")
        if online and account.enabled and account.problems:
            lines.append("    (not tried online until the problems above are fixed)")
    return lines
