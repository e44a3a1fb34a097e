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

from dataclasses import dataclass, field
from pathlib import Path

from mailbridge import compose, secrets
from mailbridge.adapters import Probe, ProviderError, classes_of, provider_class
from mailbridge.settings import AccountSettings, Settings

__all__ = ["Probe", "offline_problems", "online_probes", "run", "stored_purposes"]


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


def stored_purposes(account: AccountSettings) -> dict[str, str]:
    """The purposes this account keeps in its token store, each with what its absence means
    (its providers say which)."""
    needs: dict[str, str] = {}
    for cls in classes_of(account):
        needs.update(cls.stored(account))
    return needs


def offline_problems(account: AccountSettings) -> list[str]:
    """Every problem found without a network: settings, files, token store, commands."""
    problems: list[str] = list(compose.check_templates(account.templates_dir))
    what = f"account {account.name!r}"
    for cls in classes_of(account):  # files, commands, client settings: the provider knows
        problems += [p for p in cls.problems(account) if p not in problems]

    store = secrets.token_store(account)
    needs = stored_purposes(account)
    if needs:
        trouble = store.problem()
        if trouble:
            problems.append(trouble)
        else:
            for purpose, missing in needs.items():
                try:
                    found = store.lookup(purpose)
                except ProviderError as exc:
                    problems.append(str(exc).removeprefix(f"{what}: "))
                    break  # the same command or file fails the same way for the others
                if not found:
                    problems.append(f"{missing}: run `mailbridge auth {account.name}`")
    return problems


# --- online ---------------------------------------------------------------------------------


def online_probes(account: AccountSettings) -> list[Probe]:
    """Each provider's `probe`; a calendar of the mailbox's own provider is left to the
    mailbox's probe when that probe reads every resource itself."""
    mailbox = provider_class("mailbox." + account.provider)
    calendar = provider_class("calendar." + account.calendar.kind)
    probes: list[Probe] = []
    if mailbox is not None:
        probes += mailbox.probe(account)
    if calendar is not None and not (
            mailbox is not None and mailbox.own_probe and calendar.config is mailbox.config):
        probes += calendar.probe(account)
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
