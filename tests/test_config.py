"""Config loading: valid files become settings; each invalid one is one clear problem that
names the key, the line and the fix.

In the invalid cases the expected line is the one carrying the marker comment `#<`, so the
test text says where the problem is instead of a counted number.
"""

from __future__ import annotations

import os
from datetime import time, timedelta
from pathlib import Path

import pytest

from mailbridge import adapters, config, paths, reference
from mailbridge.config import ConfigError, load, loads
from mailbridge.model import BusinessDays, Delay, NextBusinessMorning
from mailbridge.reference import starter_config
from mailbridge.settings import DEFAULT_EXCLUDE_KEYWORDS, DEFAULT_KEYWORDS, Settings

REPO = Path(__file__).resolve().parent.parent

LOCAL = """\
[accounts.main]
provider = "local"
address = "me@example.com"
maildir = { path = "Maildir" }
calendar = { kind = "file", path = "cal" }
"""

IMAP = """\
[accounts.main]
provider = "imap"
address = "me@example.com"
calendar = { kind = "ics", url = "https://example.com/cal.ics" }
"""


def marked_line(text: str) -> int | None:
    for number, line in enumerate(text.splitlines(), start=1):
        if "#<" in line:
            return number
    return None


def load_text(text: str, tmp_path: Path) -> Settings:
    return loads(text, tmp_path / "config.toml")


# --- valid files ---------------------------------------------------------------------------


def test_minimal_local_account(tmp_path: Path) -> None:
    settings = load_text(LOCAL, tmp_path)
    (account,) = settings.accounts
    assert account.name == "main" and account.provider == "local"
    assert account.address == "me@example.com"
    # relative paths are relative to the config file's folder
    maildir = account.tables.get("maildir")
    assert maildir is not None and maildir.path == str(tmp_path / "Maildir")
    assert account.calendar.kind == "file"
    assert account.calendar.options.path == str(tmp_path / "cal")
    assert account.policy.thank_you == Delay(timedelta(hours=2))
    assert account.policy.follow_up == BusinessDays(7)
    assert account.rules.keywords == DEFAULT_KEYWORDS
    assert account.rules.exclude_keywords == DEFAULT_EXCLUDE_KEYWORDS
    assert account.enabled
    assert settings.path == tmp_path / "config.toml"
    assert settings.state_dir == paths.default_state_dir()


def test_defaults_are_inherited_and_overridden(tmp_path: Path) -> None:
    text = """\
[defaults]
thank_you_at = "next business morning 07:30"
follow_up_after = "10 days"
max_follow_ups = 2
keywords = ["Interview"]
extra_keywords = ["chat with"]
exclude_keywords = []
reminder_after = false
morning = 08:15:00
quiet_hours = "22:00-07:00"
lookback = "0m"
max_attendees = 5
include_recurring = true
allow_free_mail = true
poll_interval = "1m"
calendar_interval = "1h"
org_domains = ["@Contoso.com"]

[accounts.main]
provider = "local"
address = "me@example.com"
maildir = { path = "~/Mail" }
calendar = { kind = "file", path = "/srv/cal" }

[accounts.other]
provider = "local"
address = "other@example.com"
maildir.path = "other"
calendar.kind = "file"
calendar.path = "cal"
thank_you_delay = "30m"
max_follow_ups = 3
keywords = ["screen"]
"""
    settings = load_text(text, tmp_path)
    main, other = settings.accounts
    assert main.policy.thank_you == NextBusinessMorning(time(7, 30))
    assert main.policy.follow_up == Delay(timedelta(days=10))
    assert main.policy.max_follow_ups == 2
    assert main.policy.reminder_after is None
    assert main.policy.morning == time(8, 15)
    assert (main.policy.quiet_start, main.policy.quiet_end) == (time(22), time(7))
    assert main.policy.lookback == timedelta(0)
    assert main.rules.keywords == ("interview", "chat with")
    assert main.rules.exclude_keywords == ()
    assert main.rules.max_attendees == 5
    assert main.rules.include_recurring and main.rules.allow_free_mail
    assert main.poll_interval == timedelta(minutes=1)
    assert main.calendar_interval == timedelta(hours=1)
    assert main.org_domains == ("contoso.com",)
    maildir = main.tables.get("maildir")
    assert maildir is not None and maildir.path == str(Path.home() / "Mail")
    assert main.calendar.options.path == "/srv/cal"
    # the account's thank_you_delay replaces the inherited thank_you_at
    assert other.policy.thank_you == Delay(timedelta(minutes=30))
    assert other.policy.max_follow_ups == 3
    assert other.rules.keywords == ("screen", "chat with")
    assert other.policy.follow_up == Delay(timedelta(days=10))
    maildir = other.tables.get("maildir")
    assert maildir is not None and maildir.path == str(tmp_path / "other")


def test_timezone_and_holidays_chain(tmp_path: Path) -> None:
    text = """\
[mailbridge]
timezone = "Europe/Berlin"
country = "us"
subdivision = "ca"
state_dir = "state"

[accounts.main]
provider = "local"
address = "me@example.com"
maildir = { path = "m" }
calendar = { kind = "file", path = "c" }

[accounts.uk]
provider = "local"
address = "me@example.co.uk"
timezone = "Europe/London"
country = "GB"
maildir = { path = "m" }
calendar = { kind = "file", path = "c" }

[accounts.ny]
provider = "local"
address = "me@example.org"
subdivision = "NY"
maildir = { path = "m" }
calendar = { kind = "file", path = "c" }
"""
    settings = load_text(text, tmp_path)
    assert settings.timezone == "Europe/Berlin" and settings.country == "US"
    assert settings.state_dir == tmp_path / "state"
    main, uk, ny = settings.accounts
    assert (main.policy.timezone, main.policy.country, main.policy.subdivision) == (
        "Europe/Berlin",
        "US",
        "CA",
    )
    # another country does not inherit the subdivision of [mailbridge]
    assert (uk.policy.timezone, uk.policy.country, uk.policy.subdivision) == (
        "Europe/London",
        "GB",
        None,
    )
    assert (ny.policy.country, ny.policy.subdivision) == ("US", "NY")


def test_imap_account(tmp_path: Path) -> None:
    text = (
        IMAP
        + 'imap = { host = "127.0.0.1", port = 1143, security = "plain", '
        + 'password_command = "pass show x", idle = false, timeout = 5 }\n'
    )
    (account,) = load_text(text, tmp_path).accounts
    assert account.tables.get("imap") is not None
    imap = account.tables["imap"]
    assert imap.host == "127.0.0.1" and imap.port == 1143
    assert account.tables.get("imap").security == "plain"
    assert account.tables.get("imap").username == "me@example.com"  # defaults to the address
    assert account.tables.get("imap").password_command == "pass show x"
    assert account.tables.get("imap").idle is False and account.tables.get("imap").timeout == 5.0
    assert account.calendar.kind == "ics" and account.calendar.options.url == "https://example.com/cal.ics"


def test_webcal_feed_becomes_https(tmp_path: Path) -> None:
    text = IMAP.replace("https://", "webcal://") + 'imap = { host = "imap.example.com" }\n'
    (account,) = load_text(text, tmp_path).accounts
    assert account.calendar.options.url == "https://example.com/cal.ics"


def test_mixed_imap_mailbox_with_google_calendar(tmp_path: Path) -> None:
    text = """\
[accounts.mixed]
provider = "imap"
address = "me@example.com"
imap = { host = "imap.example.com" }
calendar = { kind = "google", calendars = ["primary"] }
google = { client_secrets = "secret.json" }
notify = { channels = ["ntfy", "desktop"], ntfy_url = "https://ntfy.sh/t" }
aliases = ["Me@Example.org"]
"""
    (account,) = load_text(text, tmp_path).accounts
    assert account.calendar.kind == "google" and account.calendar.options.calendars == ("primary",)
    assert account.tables.get("google") is not None
    assert account.tables.get("google").client_secrets == str(tmp_path / "secret.json")
    assert account.notify.channels == ("ntfy", "desktop")
    assert account.notify.ntfy_url == "https://ntfy.sh/t"
    assert account.own_addresses == ("me@example.com", "me@example.org")


@pytest.mark.parametrize(("provider", "calendar"), [("gmail", "google"), ("outlook", "outlook")])
def test_cloud_accounts_default_to_their_calendar(
    tmp_path: Path, provider: str, calendar: str
) -> None:
    text = f'[accounts.a]\nprovider = "{provider}"\naddress = "me@example.com"\n'
    (account,) = load_text(text, tmp_path).accounts
    assert account.calendar.kind == calendar
    assert (account.tables.get("google") is not None) == (provider == "gmail")
    assert (account.tables.get("outlook") is not None) == (provider == "outlook")


def test_templates_folder_is_checked_and_kept(tmp_path: Path) -> None:
    folder = tmp_path / "tpl"
    folder.mkdir()
    (folder / "thank_you.txt.j2").write_text("Dear {{ name }},\n{% if x %}x{% endif %}\n")
    (account,) = load_text(LOCAL + 'templates = "tpl"\n', tmp_path).accounts
    assert account.templates_dir == folder


def test_example_file_loads() -> None:
    settings = load(REPO / "config.example.toml")
    names = [a.name for a in settings.accounts]
    assert names == ["demo", "personal", "work", "fastmail"]
    kinds = {a.provider for a in settings.accounts}
    assert kinds == set(adapters.available("mailbox"))
    demo = settings.account("demo")
    assert demo.enabled
    assert demo.calendar.kind == "file"
    assert demo.calendar.options.path == str(REPO / "examples" / "calendar")
    maildir = demo.tables.get("maildir")
    assert maildir is not None and maildir.path == str(REPO / "examples" / "Maildir")
    assert settings.account("personal").policy.thank_you == NextBusinessMorning(time(8, 0))
    assert settings.account("fastmail").policy.max_follow_ups == 2


@pytest.mark.parametrize("provider", adapters.available("mailbox"))
@pytest.mark.parametrize("address", ["you@example.com", "o'brien@example.ie"])
def test_starter_configs_load(tmp_path: Path, provider: str, address: str) -> None:
    text = starter_config(address, provider)
    (account,) = load_text(text, tmp_path).accounts
    assert account.provider == provider
    assert account.address == address
    assert "#" in text  # it explains itself


def test_starter_config_default_is_local(tmp_path: Path) -> None:
    (account,) = load_text(starter_config(), tmp_path).accounts
    assert account.provider == "local" and account.tables.get("maildir") is not None


def test_starter_config_rejects_unknown_provider() -> None:
    with pytest.raises(ValueError, match="valid: gmail, imap, local, outlook"):
        starter_config(provider="yahoo")


# --- invalid files ---------------------------------------------------------------------


INVALID: list[tuple[str, str, str, str]] = [
    # (id, text, key, a fragment of the hint)
    (
        "syntax",
        LOCAL.replace('"me@example.com"', "me@example.com  #<"),
        "accounts.main.address",
        "need quotes",
    ),
    (
        "duplicate key",
        LOCAL + 'address = "x@example.com"  #<\n',
        "accounts.main.address",
        "written twice",
    ),
    ("unknown key", LOCAL + 'adress = "x"  #<\n', "accounts.main.adress", "did you mean address"),
    (
        "unknown key in defaults",
        '[defaults]\nfollow_up_afterr = "7 days"  #<\n\n' + LOCAL,
        "defaults.follow_up_afterr",
        "did you mean follow_up_after",
    ),
    (
        "unknown inline key",
        IMAP + 'imap = { host = "imap.example.com", prot = 993 }  #<\n',
        "accounts.main.imap.prot",
        "did you mean port",
    ),
    (
        "port not a number",
        IMAP + 'imap = { host = "imap.example.com", port = "abc" }  #<\n',
        "accounts.main.imap.port",
        "write port = 993",
    ),
    (
        "port out of range",
        IMAP + "[accounts.main.imap]\nhost = 'imap.example.com'\nport = 99999  #<\n",
        "accounts.main.imap.port",
        "write port = 993",
    ),
    (
        "dotted key",
        IMAP + 'imap.host = "imap.example.com"\nimap.timeout = "long"  #<\n',
        "accounts.main.imap.timeout",
        "write timeout = 60",
    ),
    (
        "plain to a remote host",
        IMAP + 'imap = { host = "imap.example.com", security = "plain" }  #<\n',
        "accounts.main.imap.security",
        'write security = "tls"',
    ),
    (
        "unknown security",
        IMAP + 'imap = { host = "imap.example.com", security = "ssl" }  #<\n',
        "accounts.main.imap.security",
        "tls, starttls, plain",
    ),
    (
        "imap without host",
        IMAP + "imap = { port = 993 }  #<\n",
        "accounts.main.imap.host",
        'write host = "imap.example.com"',
    ),
    (
        "unknown provider",
        LOCAL.replace('"local"', '"yahoo"  #<'),
        "accounts.main.provider",
        "gmail, imap, local, outlook",
    ),
    (
        "missing address",
        '[accounts.main]  #<\nprovider = "gmail"\n',
        "accounts.main.address",
        'write address = "you@example.com"',
    ),
    (
        "bad address",
        '[accounts.main]\nprovider = "gmail"\naddress = "me at example.com"  #<\n',
        "accounts.main.address",
        'write address = "you@example.com"',
    ),
    (
        "password in the account",
        LOCAL + 'password = "hunter2"  #<\n',
        "accounts.main.password",
        "mailbridge auth main",
    ),
    (
        "token inside imap",
        IMAP + 'imap = { host = "imap.example.com", token = "abc" }  #<\n',
        "accounts.main.imap.token",
        "password_command",
    ),
    (
        "client_secret inside google",
        '[accounts.g]\nprovider = "gmail"\naddress = "me@example.com"\n'
        'google.client_secret = "s3cret"  #<\n',
        "accounts.g.google.client_secret",
        "mailbridge auth g",
    ),
    (
        "access_token in [mailbridge]",
        '[mailbridge]\naccess_token = "x"  #<\n' + LOCAL,
        "mailbridge.access_token",
        "keyring",
    ),
    (
        "both thank-you timings",
        LOCAL + 'thank_you_delay = "2h"\nthank_you_at = "next business morning 08:00"  #<\n',
        "accounts.main.thank_you_at",
        "keep only one",
    ),
    (
        "thank-you delay past 24 hours",
        LOCAL + 'thank_you_delay = "30h"  #<\n',
        "accounts.main.thank_you_delay",
        'write thank_you_delay = "2h"',
    ),
    (
        "thank_you_at given a delay",
        LOCAL + 'thank_you_at = "2h"  #<\n',
        "accounts.main.thank_you_at",
        'thank_you_delay = "2h"',
    ),
    (
        "follow-up at a morning",
        LOCAL + 'follow_up_after = "next business morning"  #<\n',
        "accounts.main.follow_up_after",
        'write follow_up_after = "7 business days"',
    ),
    (
        "follow-up nonsense",
        LOCAL + 'follow_up_after = "a while"  #<\n',
        "accounts.main.follow_up_after",
        'write follow_up_after = "7 business days"',
    ),
    (
        "too many follow-ups",
        LOCAL + "max_follow_ups = 4  #<\n",
        "accounts.main.max_follow_ups",
        "at most 3",
    ),
    (
        "follow-ups as text",
        LOCAL + 'max_follow_ups = "one"  #<\n',
        "accounts.main.max_follow_ups",
        "write max_follow_ups = 1",
    ),
    (
        "follow-ups too close",
        LOCAL + 'follow_up_spacing = "3 days"  #<\n',
        "accounts.main.follow_up_spacing",
        '"7 days" or longer',
    ),
    (
        "reminder_after true",
        LOCAL + "reminder_after = true  #<\n",
        "accounts.main.reminder_after",
        "or false",
    ),
    (
        "quiet hours without an end",
        LOCAL + 'quiet_hours = "21:00"  #<\n',
        "accounts.main.quiet_hours",
        'write quiet_hours = "21:00-08:00"',
    ),
    (
        "morning out of range",
        LOCAL + 'morning = "25:00"  #<\n',
        "accounts.main.morning",
        'write morning = "09:00"',
    ),
    (
        "keywords as text",
        LOCAL + 'keywords = "interview"  #<\n',
        "accounts.main.keywords",
        'keywords = ["interview"]',
    ),
    ("keywords empty", LOCAL + "keywords = []  #<\n", "accounts.main.keywords", "write keywords"),
    (
        "keywords with a number",
        LOCAL + 'keywords = ["interview", 3]  #<\n',
        "accounts.main.keywords",
        "write keywords",
    ),
    (
        "boolean as text",
        LOCAL + 'include_recurring = "yes"  #<\n',
        "accounts.main.include_recurring",
        "write include_recurring = false",
    ),
    (
        "too few attendees",
        LOCAL + "max_attendees = 1  #<\n",
        "accounts.main.max_attendees",
        "write max_attendees = 12",
    ),
    (
        "poll too often",
        LOCAL + 'poll_interval = "10s"  #<\n',
        "accounts.main.poll_interval",
        'write poll_interval = "5m"',
    ),
    (
        "misspelt time zone",
        '[mailbridge]\ntimezone = "Europe/Berln"  #<\n' + LOCAL,
        "mailbridge.timezone",
        'timezone = "Europe/Berlin"',
    ),
    (
        "unknown country",
        LOCAL + 'country = "XX"  #<\n',
        "accounts.main.country",
        "two-letter ISO 3166 code",
    ),
    (
        "unknown subdivision",
        '[mailbridge]\ncountry = "US"\nsubdivision = "ZZ"  #<\n' + LOCAL,
        "mailbridge.subdivision",
        "use one of AK",
    ),
    (
        "subdivision without a country",
        '[mailbridge]\nsubdivision = "CA"  #<\n' + LOCAL,
        "mailbridge.subdivision",
        'add country = "US"',
    ),
    (
        "missing templates folder",
        LOCAL + 'templates = "nowhere"  #<\n',
        "accounts.main.templates",
        "create it",
    ),
    (
        "unknown notification channel",
        LOCAL + 'notify = { channels = ["sms"] }  #<\n',
        "accounts.main.notify.channels",
        "desktop, ntfy, webhook",
    ),
    (
        "ntfy without a url",
        LOCAL + '[accounts.main.notify]  #<\nchannels = ["ntfy"]\n',
        "accounts.main.notify.ntfy_url",
        'ntfy_url = "https://ntfy.sh/your-topic"',
    ),
    (
        "webhook url not a url",
        LOCAL + 'notify = { channels = ["webhook"], webhook_url = "example.com" }  #<\n',
        "accounts.main.notify.webhook_url",
        'write webhook_url = "https://example.com/hook"',
    ),
    (
        "password inside a url",
        IMAP.replace("https://example.com", "https://me:hunter2@example.com").replace(
            'cal.ics" }', 'cal.ics" }  #<'
        )
        + 'imap = { host = "imap.example.com" }\n',
        "accounts.main.calendar.url",
        "mailbridge auth main",
    ),
    (
        "unknown calendar kind",
        LOCAL.replace('kind = "file", path = "cal" }', 'kind = "fiel", path = "cal" }  #<'),
        "accounts.main.calendar.kind",
        'write kind = "file"',
    ),
    (
        "local without a calendar",
        '[accounts.main]  #<\nprovider = "local"\naddress = "me@example.com"\n'
        'maildir = { path = "m" }\n',
        "accounts.main.calendar",
        'kind = "file"',
    ),
    (
        "file calendar without path",
        '[accounts.main]\nprovider = "local"\naddress = "me@example.com"\n'
        'maildir = { path = "m" }\ncalendar = { kind = "file" }  #<\n',
        "accounts.main.calendar.path",
        "write path =",
    ),
    (
        "caldav without url",
        IMAP.replace(
            '{ kind = "ics", url = "https://example.com/cal.ics" }', '{ kind = "caldav" }  #<'
        )
        + 'imap = { host = "imap.example.com" }\n',
        "accounts.main.calendar.url",
        'write url = "https://caldav.example.com/"',
    ),
    (
        "path on a caldav calendar",
        IMAP.replace('kind = "ics", url', 'kind = "caldav", path = "x", url').replace(
            'cal.ics" }', 'cal.ics" }  #<'
        )
        + 'imap = { host = "imap.example.com" }\n',
        "accounts.main.calendar.path",
        "remove path",
    ),
    (
        "lookahead zero",
        IMAP.replace('cal.ics" }', 'cal.ics", lookahead = "0 days" }  #<')
        + 'imap = { host = "imap.example.com" }\n',
        "accounts.main.calendar.lookahead",
        'write lookahead = "60 days"',
    ),
    (
        "local without maildir",
        '[accounts.main]  #<\nprovider = "local"\naddress = "me@example.com"\n'
        'calendar = { kind = "file", path = "c" }\n',
        "accounts.main.maildir",
        'maildir = { path = "~/Maildir" }',
    ),
    (
        "imap without imap table",
        IMAP.replace("[accounts.main]", "[accounts.main]  #<"),
        "accounts.main.imap",
        'imap = { host = "imap.example.com" }',
    ),
    (
        "imap table on a gmail account",
        '[accounts.g]\nprovider = "gmail"\naddress = "me@example.com"\n'
        'imap = { host = "imap.gmail.com" }  #<\n',
        "accounts.g.imap",
        "remove the imap table",
    ),
    (
        "imap as text",
        IMAP + 'imap = "imap.example.com"  #<\n',
        "accounts.main.imap",
        'write imap = { host = "imap.example.com" }',
    ),
    (
        "account name with a space",
        LOCAL.replace("[accounts.main]", '[accounts."my work"]  #<'),
        'accounts."my work"',
        "[accounts.my-work]",
    ),
    ("no accounts", '[mailbridge]\ntimezone = "UTC"\n', "accounts", "[accounts.main]"),
    (
        "empty accounts",
        "[accounts]  #<\n",
        "accounts",
        "add an [accounts.NAME] table",
    ),
    (
        "provider in defaults",
        '[defaults]\nprovider = "gmail"  #<\n' + LOCAL,
        "defaults.provider",
        "move it to [accounts.NAME]",
    ),
    (
        "policy key at the top",
        'thank_you_delay = "2h"  #<\n' + LOCAL,
        "thank_you_delay",
        "under [defaults]",
    ),
    (
        "policy key in [mailbridge]",
        '[mailbridge]\nthank_you_delay = "2h"  #<\n' + LOCAL,
        "mailbridge.thank_you_delay",
        "[defaults] or in [accounts.NAME]",
    ),
    (
        "misspelt top table",
        LOCAL + "[acounts.x]  #<\n",
        "acounts",
        "did you mean accounts",
    ),
    (
        "org domain not a domain",
        LOCAL + 'org_domains = ["not a domain"]  #<\n',
        "accounts.main.org_domains",
        'write org_domains = ["mycompany.com"]',
    ),
    (
        "alias not an address",
        LOCAL + 'aliases = ["me"]  #<\n',
        "accounts.main.aliases",
        'write aliases = ["you@example.org"]',
    ),
    (
        "name on two lines",
        LOCAL + 'name = """Jordan  #<\nLee"""\n',
        "accounts.main.name",
        'write name = "Jordan Lee"',
    ),
    (
        "error in defaults is placed in defaults",
        '[defaults]\nlookback = "forever"  #<\n' + LOCAL,
        "defaults.lookback",
        'write lookback = "3 days"',
    ),
]


@pytest.mark.parametrize(
    ("text", "key", "hint"), [case[1:] for case in INVALID], ids=[case[0] for case in INVALID]
)
def test_invalid_config(tmp_path: Path, text: str, key: str, hint: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_text(text, tmp_path)
    error = info.value
    assert len(error.problems) == 1, str(error)
    assert error.key == key
    assert error.line == marked_line(text), str(error)
    assert hint in error.hint, error.hint
    assert error.path == tmp_path / "config.toml"
    # the sentence the user reads has all four parts
    rendered = str(error)
    where = f"{tmp_path / 'config.toml'}:{error.line}:" if error.line else str(error.path)
    assert rendered.startswith(where)
    assert f" {key}:" in rendered and "Fix: " in rendered


def test_marker_lines_are_where_the_case_says() -> None:
    # A guard on the table itself: only the whole-file case has no line to point at.
    unmarked = {case[0] for case in INVALID if marked_line(case[1]) is None}
    assert unmarked == {"no accounts"}


def test_message_format(tmp_path: Path) -> None:
    text = IMAP + 'imap = { host = "imap.example.com", port = "abc" }\n'
    with pytest.raises(ConfigError) as info:
        loads(text, Path("config.toml"))
    assert str(info.value) == (
        'config.toml:5: accounts.main.imap.port: expected a whole number, got "abc". '
        "Fix: write port = 993"
    )


def test_all_problems_are_reported_in_file_order(tmp_path: Path) -> None:
    text = """\
[defaults]
max_follow_ups = 9
follow_up_after = "soonish"

[accounts.a]
provider = "local"
address = "a@example.com"
maildir = { path = "m" }
calendar = { kind = "file", path = "c" }

[accounts.b]
provider = "gmail"
address = "b@example.com"
passwd = "x"
"""
    with pytest.raises(ConfigError) as info:
        load_text(text, tmp_path)
    problems = info.value.problems
    # the [defaults] problems appear once, though two accounts inherit them
    assert [(p.key, p.line) for p in problems] == [
        ("defaults.max_follow_ups", 2),
        ("defaults.follow_up_after", 3),
        ("accounts.b.passwd", 14),
    ]
    assert "secrets are not allowed" in problems[2].message
    assert str(info.value).count("\n") == 2


def test_unknown_provider_still_checks_its_tables(tmp_path: Path) -> None:
    text = IMAP.replace('"imap"', '"imapp"') + 'imap = { host = "h.example.com", port = "x" }\n'
    with pytest.raises(ConfigError) as info:
        load_text(text, tmp_path)
    assert [p.key for p in info.value.problems] == [
        "accounts.main.provider",
        "accounts.main.imap.port",
    ]


def test_template_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    folder = tmp_path / "tpl"
    folder.mkdir()
    (folder / "follow_up.txt.j2").write_text("Hello {{ name }},\n\n{% if notes %}\n{{ notes }}\n")
    with pytest.raises(ConfigError) as info:
        load_text(LOCAL + 'templates = "tpl"\n', tmp_path)
    error = info.value
    assert error.key == "accounts.main.templates" and error.line == 6
    assert "follow_up.txt.j2, line 4" in error.message
    assert "follow_up.txt.j2" in error.hint


def test_templates_folder_without_templates(tmp_path: Path) -> None:
    (tmp_path / "tpl").mkdir()
    with pytest.raises(ConfigError, match=r"has no \*\.j2 templates"):
        load_text(LOCAL + 'templates = "tpl"\n', tmp_path)


def test_defaults_are_checked_without_accounts(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_text('[defaults]\nmorning = "noon"\n', tmp_path)
    keys = [p.key for p in info.value.problems]
    assert keys == ["defaults.morning", "accounts"]


# --- load() and the file itself ---------------------------------------------------------------


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path / "absent.toml")
    assert "mailbridge init" in info.value.hint and info.value.line is None


def test_load_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(LOCAL.encode() + b'name = "J\xf6rg"\n')
    with pytest.raises(ConfigError) as info:
        load(path)
    assert info.value.line == 6 and "UTF-8" in info.value.hint


def test_load_with_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b"\xef\xbb\xbf" + LOCAL.encode())
    assert load(path).accounts[0].name == "main"


def test_syntax_error_at_end_of_file(tmp_path: Path) -> None:
    text = LOCAL + 'name = "Jordan\n'
    with pytest.raises(ConfigError) as info:
        load_text(text, tmp_path)
    assert info.value.line == 6 and info.value.key == "accounts.main.name"


# --- finding lines -----------------------------------------------------------------------------


def test_key_lines_across_toml_forms() -> None:
    text = "\n".join(
        [
            "# a comment with = and [brackets]",
            "[accounts.main]",
            'provider = "local" # trailing',
            "\"quoted key\" = 'x'",
            'signature = """',
            "line one",
            "[not.a.table]",
            'x = "not a key"',
            '"""',
            "keywords = [",
            '  "interview",  # inside an array',
            '  "screen",',
            "]",
            'imap = { host = "h", nested = { deep = 1 } }',
            'calendar.kind = "file"',
            "[accounts.main.maildir]",
            "path = '''x'''",
        ]
    )
    assert config.tomllib.loads(text)  # the sample is valid TOML
    lines = config._key_lines(text)[0]
    assert lines[("accounts", "main")] == 2
    assert lines[("accounts", "main", "provider")] == 3
    assert lines[("accounts", "main", "quoted key")] == 4
    assert lines[("accounts", "main", "signature")] == 5
    assert ("not", "a", "table") not in lines
    assert ("accounts", "main", "x") not in lines
    assert lines[("accounts", "main", "keywords")] == 10
    assert lines[("accounts", "main", "imap", "host")] == 14
    assert lines[("accounts", "main", "imap", "nested", "deep")] == 14
    assert lines[("accounts", "main", "calendar", "kind")] == 15
    assert lines[("accounts", "main", "maildir")] == 16
    assert lines[("accounts", "main", "maildir", "path")] == 17


@pytest.mark.parametrize(
    "text",
    ["[unclosed\nx = 1", 'x = "never closed', "= 3", "[a]\nk = {", "\x00\x01", ""],
)
def test_key_lines_never_crash(text: str) -> None:
    assert isinstance(config._key_lines(text)[0], dict)


# --- default paths ------------------------------------------------------------------------------


def test_default_paths_honour_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILBRIDGE_CONFIG", str(tmp_path / "c.toml"))
    monkeypatch.setenv("MAILBRIDGE_STATE_DIR", str(tmp_path / "state"))
    assert paths.default_config_path() == tmp_path / "c.toml"
    assert paths.default_state_dir() == tmp_path / "state"
    monkeypatch.delenv("MAILBRIDGE_CONFIG")
    monkeypatch.delenv("MAILBRIDGE_STATE_DIR")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    if os.name == "posix":
        assert paths.default_config_path() == tmp_path / "xdg" / "mailbridge" / "config.toml"
    assert paths.default_config_path().name == "config.toml"
    assert paths.default_state_dir().name == "mailbridge"


def test_syntax_error_key_ignores_headers_inside_strings(tmp_path: Path) -> None:
    text = LOCAL + 'signature = """\n[not.a.table]\n"""\nname = Jordan\n'
    with pytest.raises(ConfigError) as info:
        load_text(text, tmp_path)
    assert (info.value.key, info.value.line) == ("accounts.main.name", 9)


# --- written from the schemas --------------------------------------------------------------------


def test_readme_table_is_the_schemas() -> None:
    # If this fails after a schema change, paste reference.reference_table() into README.md.
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    start = readme.index("| key | where | default | meaning |")
    end = readme.index("<!-- end of the generated table -->")
    assert readme[start:end] == reference.reference_table()


def test_every_key_has_a_description_and_an_example() -> None:
    # The README, `init` and the "write KEY = ..." fixes are made of these.
    for schema in config.schemas():
        for entry in config.fields(schema).values():
            assert entry.description, f"{schema.__name__}.{entry.name} has no description"
            assert entry.example is not None, f"{schema.__name__}.{entry.name} has no example"


def test_a_provider_key_is_one_field(tmp_path: Path) -> None:
    """A key added to a provider's schema is read, documented and checked with no other edit."""
    from dataclasses import make_dataclass
    from typing import Annotated

    from mailbridge_providers import local

    extended = make_dataclass("MaildirSettings", [
        ("path", Annotated[config.LocalPath, config.doc("the Maildir", "~/Maildir")]),
        ("flag_new", Annotated[config.Flag, config.doc("mark new drafts", True)], False),
    ], frozen=True, namespace={"__pydantic_config__": config.FORBID})
    extended.__module__ = local.__name__
    original = adapters.config_of
    patched = adapters.ProviderConfig(**{**original("mailbox.local").__dict__,  # type: ignore[union-attr]
                                         "settings": extended})
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(adapters, "config_of",
                   lambda entry: patched if entry in ("mailbox.local", "calendar.file")
                   else original(entry))  # both entries of the module: one CONFIG
        (account,) = load_text(LOCAL.replace('path = "Maildir" }',
                                             'path = "Maildir", flag_new = true }'),
                               tmp_path).accounts
        assert account.settings_of(extended).flag_new is True
        assert "| `flag_new` | `maildir = {...}`" in reference.reference_table()
        with pytest.raises(ConfigError) as info:
            load_text(LOCAL.replace('path = "Maildir" }', 'path = "Maildir", flag_new = 1 }'),
                      tmp_path)
        assert info.value.key == "accounts.main.maildir.flag_new"
        assert info.value.hint == "write flag_new = true"


def test_country_codes_read_from_the_registry_are_the_ones_holidays_supports() -> None:
    import holidays

    assert set(holidays.list_supported_countries()) == config._COUNTRIES


def test_reading_a_local_account_imports_no_other_provider(tmp_path: Path) -> None:
    """Every command reads the config: a provider's SDK imported for nothing costs each one
    time and the daemon memory (a calendar key is looked up in the other kinds only when the
    account's own kind does not know it)."""
    import subprocess
    import sys

    (tmp_path / "config.toml").write_text(
        '[accounts.home]\nprovider = "local"\naddress = "me@example.org"\n'
        'maildir = { path = "Maildir" }\ncalendar = { kind = "file", path = "calendar" }\n',
        encoding="utf-8")
    probe = ("import sys; from pathlib import Path; from mailbridge import config; "
             f"config.load(Path({str(tmp_path / 'config.toml')!r})); "
             "print(sorted(m for m in ('googleapiclient', 'msal', 'caldav', 'icalendar', "
             "'imapclient') if m in sys.modules))")
    found = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                           check=True).stdout.strip()
    assert found == "[]"
