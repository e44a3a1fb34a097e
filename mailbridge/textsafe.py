"""Text from other people, made safe to show: terminal control characters and secret URLs.

Event titles, names and subjects come from whoever sent the invitation or the mail. Printed raw,
an escape sequence in them can retitle the terminal, clear it, or forge a line of `status`.
`printable` shows every control character as a visible escape instead.

Calendar links often carry their secret in the path (Google's private ICS address, Outlook's
published calendar) or in the query (``?token=…``). `redact_url` keeps what helps to recognise
the link (scheme and host) and hides the rest; `redact_urls` does it to every URL in a text.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import urlsplit

# Unicode categories that move the cursor, change the terminal or reorder text: C0/C1 controls
# (Cc), formatting such as bidi overrides (Cf), separators other than space (Zl, Zp).
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\x1b": "\\e"}


def _escape(char: str) -> str:
    if char in _ESCAPES:
        return _ESCAPES[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object, *, keep_newlines: bool = False) -> str:
    """``text`` with every control or formatting character shown as an escape (``\\e``, ``\\x07``).

    ``keep_newlines`` leaves line breaks (and tabs) as they are, for multi-line bodies that are
    meant to be read as text.
    """
    value = str(text)
    out = []
    for char in value:
        kept_break = keep_newlines and char in "\n\t"
        if kept_break or unicodedata.category(char) not in _UNSAFE_CATEGORIES:
            out.append(char)
        else:
            out.append(_escape(char))
    return "".join(out)


URL_PATTERN = re.compile(r"\b(?:https?|webcals?)://[^\s<>\"']+", re.IGNORECASE)


def redact_url(url: str) -> str:
    """Scheme and host of ``url`` with its path and query hidden: ``https://host/…``.

    A URL whose path is only ``/`` and that has no query or credentials is kept as it is:
    there is nothing secret to hide.
    """
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "(a link)"
    if not parts.scheme or not host:
        return "(a link)"
    where = f"{parts.scheme}://{host}{f':{port}' if port else ''}"
    if parts.path in ("", "/") and not parts.query and not parts.username and not parts.fragment:
        return where + parts.path
    return where + "/…"


def redact_urls(text: str) -> str:
    """``text`` with every http(s)/webcal URL in it replaced by its redacted form."""
    return URL_PATTERN.sub(lambda m: redact_url(m.group(0)), text)


def safe(text: object) -> str:
    """For one line of human-readable output: secret URLs redacted, controls escaped."""
    return printable(redact_urls(str(text)))
