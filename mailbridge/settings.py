"""The validated configuration, as plain values.

`mailbridge.config` reads the TOML file into these; nothing else parses configuration.
Providers receive the `AccountSettings` of their account and read their own sub-table
(`imap`, `google`, `outlook`, `maildir`, `calendar`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from mailbridge.model import Policy

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
class ImapSettings:
    host: str
    port: int | None = None  # default: 993 for tls, 143 for starttls and plain
    security: str = "tls"  # "tls" | "starttls" | "plain" (plain only to loopback)
    username: str = ""
    password_command: str | None = None  # prints the password; else the keyring
    oauth2_token_command: str | None = None  # prints an OAuth2 access token: XOAUTH2
    inbox_folder: str = "INBOX"
    drafts_folder: str | None = None  # default: found by SPECIAL-USE, then by common names
    sent_folder: str | None = None
    trash_folder: str | None = None
    idle: bool = True
    timeout: float = 60.0  # seconds, every command


@dataclass(frozen=True)
class GoogleSettings:
    client_secrets: str | None = None  # the Desktop OAuth client JSON
    api_endpoint: str | None = None  # Gmail API root; default Google's
    calendar_endpoint: str | None = None  # Calendar API root; default Google's
    batch_uri: str | None = None
    token_uri: str | None = None  # default: from client_secrets, else Google's
    auth_uri: str | None = None
    timeout: float = 60.0  # seconds, every request


@dataclass(frozen=True)
class OutlookSettings:
    client_id: str = ""
    tenant: str = "common"  # common | organizations | consumers | a tenant id
    authority_url: str = "https://login.microsoftonline.com"
    graph_url: str = "https://graph.microsoft.com/v1.0"
    timeout: float = 30.0  # seconds, every request


@dataclass(frozen=True)
class MaildirSettings:
    path: str  # the Maildir root (with INBOX as the root's cur/new, or an INBOX folder)


@dataclass(frozen=True)
class CalendarSettings:
    kind: str  # "file" | "ics" | "caldav" | "google" | "outlook"
    path: str | None = None  # file: an .ics file or a folder of them
    url: str | None = None  # caldav: server or calendar URL; ics: the feed URL
    username: str | None = None
    password_command: str | None = None
    calendars: tuple[str, ...] = ()  # names, ids or URLs; empty: the default calendar(s)
    lookahead: timedelta = timedelta(days=60)


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
    provider: str  # the mailbox kind: "local" | "imap" | "gmail" | "outlook"
    address: str
    display_name: str = ""
    signature: str = ""
    aliases: tuple[str, ...] = ()  # other addresses of the user
    org_domains: tuple[str, ...] = ()  # the user's own organisation: meetings there are internal
    calendar: CalendarSettings = field(default_factory=lambda: CalendarSettings(kind="file"))
    imap: ImapSettings | None = None
    google: GoogleSettings | None = None
    outlook: OutlookSettings | None = None
    maildir: MaildirSettings | None = None
    notify: NotifySettings = field(default_factory=NotifySettings)
    policy: Policy = field(default_factory=Policy)
    rules: DetectionRules = field(default_factory=DetectionRules)
    templates_dir: Path | None = None  # thank_you.txt.j2 / follow_up.txt.j2 overrides
    poll_interval: timedelta = timedelta(minutes=5)
    calendar_interval: timedelta = timedelta(minutes=15)
    enabled: bool = True
    token_store: TokenStoreSettings = field(default_factory=TokenStoreSettings)

    @property
    def own_addresses(self) -> tuple[str, ...]:
        return (self.address.lower(), *(a.lower() for a in self.aliases))


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
