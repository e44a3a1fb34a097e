"""The validated configuration, as plain values.

`mailbridge.config` reads the TOML file into these; nothing else parses configuration.
Providers receive the `AccountSettings` of their account and read their own table with
`AccountSettings.settings_of` (and their calendar keys with `CalendarSettings.settings_of`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from mailbridge.model import Policy

T = TypeVar("T")

DEFAULT_KEYWORDS: tuple[str, ...] = (
    "interview",
    "phone screen",
    "phone interview",
    "technical screen",
    "tech screen",
    "screening call",
    "onsite",
    "on-site",
    "panel",
    "hiring manager",
    "final round",
    "recruiter call",
    "coding challenge review",
    "case interview",
)
DEFAULT_EXCLUDE_KEYWORDS: tuple[str, ...] = ("mock interview", "practice interview")


@dataclass(frozen=True)
class DetectionRules:
    keywords: tuple[str, ...] = DEFAULT_KEYWORDS
    exclude_keywords: tuple[str, ...] = DEFAULT_EXCLUDE_KEYWORDS
    max_attendees: int = 12
    include_recurring: bool = False
    allow_free_mail: bool = False


@dataclass(frozen=True)
class CalendarSettings:
    kind: str  # the calendar kind: the entry point calendar.KIND that reads it
    lookahead: timedelta = timedelta(days=60)
    options: Any = None  # the kind's own keys, as its provider's schema validated them

    def settings_of(self, schema: type[T]) -> T | None:
        """The kind's own settings, if they are of ``schema``."""
        return self.options if isinstance(self.options, schema) else None


@dataclass(frozen=True)
class NotifySettings:
    channels: tuple[str, ...] = ()  # "desktop", "ntfy", "webhook"
    ntfy_url: str | None = None  # topic URL
    webhook_url: str | None = None


TOKEN_STORES = ("keyring", "command", "file")


@dataclass(frozen=True)
class TokenStoreSettings:
    """Where `mailbridge auth` keeps the account's tokens and passwords (mailbridge.secrets)."""

    kind: str = "keyring"  # "keyring" | "command" | "file"
    store_command: str | None = None  # token_store_command: stores the secret read on stdin
    lookup_command: str | None = None  # token_command: prints the stored secret
    directory: Path | None = None  # the state directory; "file" keeps STATE_DIR/tokens/*


@dataclass(frozen=True)
class AccountSettings:
    name: str  # the key in [accounts.NAME]
    provider: str  # the mailbox kind: the entry point mailbox.KIND that holds the drafts
    address: str
    display_name: str = ""
    signature: str = ""
    aliases: tuple[str, ...] = ()  # other addresses of the user
    org_domains: tuple[str, ...] = ()  # the user's own organisation: meetings there are internal
    calendar: CalendarSettings = field(default_factory=lambda: _default_calendar())
    tables: Mapping[str, Any] = field(default_factory=dict)  # provider tables, by their key
    notify: NotifySettings = field(default_factory=NotifySettings)
    policy: Policy = field(default_factory=Policy)
    rules: DetectionRules = field(default_factory=DetectionRules)
    templates_dir: Path | None = None  # thank_you.txt.j2 / follow_up.txt.j2 overrides
    poll_interval: timedelta = timedelta(minutes=5)
    calendar_interval: timedelta = timedelta(minutes=15)
    enabled: bool = True
    # The configured accounts with this address, this one included (empty when no other
    # shares it): a draft another of them made is theirs (not left by this account under an
    # older name) and is not written twice.
    same_address: frozenset[str] = frozenset()
    token_store: TokenStoreSettings = field(default_factory=TokenStoreSettings)

    def settings_of(self, schema: type[T]) -> T | None:
        """The provider table that ``schema`` validated: how a provider reads its settings."""
        return next((t for t in self.tables.values() if isinstance(t, schema)), None)

    @property
    def own_addresses(self) -> tuple[str, ...]:
        return (self.address.lower(), *(a.lower() for a in self.aliases))


def _default_calendar() -> CalendarSettings:
    """The calendar of the provider that declares itself the default (no options)."""
    from mailbridge.adapters import default_kind

    return CalendarSettings(kind=default_kind("calendar"))


@dataclass(frozen=True)
class Settings:
    path: Path  # the file these came from
    state_dir: Path
    timezone: str
    country: str | None
    accounts: tuple[AccountSettings, ...]

    def account(self, name: str) -> AccountSettings:
        for account in self.accounts:
            if account.name == name:
                return account
        raise KeyError(name)
