"""Terminal-safe text and link redaction (mailbridge.textsafe), by table."""

from __future__ import annotations

import pytest

from mailbridge.textsafe import printable, redact_url, redact_urls, safe


@pytest.mark.parametrize("text, shown", [
    ("Interview with Acme", "Interview with Acme"),
    ("Café – Zürich 面试", "Café – Zürich 面试"),  # letters of any script stay
    ("\x1b]0;owned\x07", "\\e]0;owned\\x07"),  # retitling the terminal
    ("\x1b[2J\x1b[H", "\\e[2J\\e[H"),  # clearing the screen
    ("line\r  ! forged", "line\\r  ! forged"),  # overwriting a line
    ("two\nlines", "two\\nlines"),  # forging a status line
    ("\x9b31m", "\\x9b31m"),  # the C1 form of ESC [
    ("evil\u202egnp.exe", "evil\\u202egnp.exe"),  # right-to-left override
    ("zero\u200bwidth", "zero\\u200bwidth"),
    ("tab\there", "tab\\there"),
])
def test_printable_escapes_every_control(text: str, shown: str) -> None:
    assert printable(text) == shown


def test_printable_can_keep_line_breaks_of_a_body() -> None:
    assert printable("Hi\n\x1b[31mDana", keep_newlines=True) == "Hi\n\\e[31mDana"


@pytest.mark.parametrize("url, shown", [
    ("https://calendar.google.com/calendar/ical/abc%40group/private-0123abcd/basic.ics",
     "https://calendar.google.com/…"),
    ("https://outlook.office365.com/owa/calendar/0123@x.com/4567/calendar.ics",
     "https://outlook.office365.com/…"),
    ("https://example.com/feed.ics?token=s3cr3t", "https://example.com/…"),
    ("webcal://p01-caldav.icloud.com/published/2/MTIz", "webcal://p01-caldav.icloud.com/…"),
    ("https://user:pw@example.com/", "https://example.com/…"),
    ("http://127.0.0.1:8080/x", "http://127.0.0.1:8080/…"),
    ("https://caldav.example.com/", "https://caldav.example.com/"),  # nothing to hide
    ("https://caldav.example.com", "https://caldav.example.com"),
    ("not a url", "(a link)"),
    ("https://[::1", "(a link)"),
])
def test_redact_url_keeps_scheme_and_host_only(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_redact_urls_in_text_and_safe_does_both() -> None:
    text = "cannot read 'https://h.example/private-abc/basic.ics?token=x': 404"
    assert redact_urls(text) == "cannot read 'https://h.example/…': 404"
    assert safe("see https://h.example/s3cr3t \x1b[2J") == "see https://h.example/… \\e[2J"
