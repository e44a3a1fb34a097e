"""The core (mailbridge/) names no provider: every kind, table and key belongs to the provider
that registers it (issue 11). Prose and URLs may mention a service; code may not."""

from __future__ import annotations

import ast
import tokenize
from pathlib import Path

from mailbridge import adapters
from mailbridge.settings import TOKEN_STORES

REPO = Path(__file__).resolve().parent.parent


def _provider_names_in(path: Path, names: set[str]) -> list[str]:
    """Where a file's code names one of ``names``: a string that is exactly the name, or an
    attribute of that name (``account.imap``). A name inside prose or a URL is not a hit."""
    hits = []
    with tokenize.open(path) as source:
        tokens = list(tokenize.generate_tokens(source.readline))
    for before, token in zip([None, *tokens], tokens, strict=False):
        if token.type == tokenize.STRING:
            try:
                value = ast.literal_eval(token.string)
            except (ValueError, SyntaxError):
                continue  # an f-string: its parts are not names
            if value in names:
                hits.append(f"{path.name}:{token.start[0]}: {token.string}")
        elif (token.type == tokenize.NAME and token.string in names and before is not None
              and before.string == "."):
            hits.append(f"{path.name}:{token.start[0]}: .{token.string}")
    return hits


def test_the_core_names_no_provider() -> None:
    # Every registered kind and every provider's own table key.
    names = {kind for prefix in ("mailbox", "calendar") for kind in adapters.available(prefix)}
    names |= {c.table for c in adapters.configs().values() if c.table}
    assert {"imap", "gmail", "google", "outlook", "caldav", "ics", "file", "local"} <= names
    # The token store of that name is the core's own (secrets.py): the one shared word.
    token_store_words = {"file"} & set(TOKEN_STORES)
    hits = []
    for path in sorted((REPO / "mailbridge").glob("*.py")):
        allowed = token_store_words if path.name in ("secrets.py", "settings.py") else set()
        hits += _provider_names_in(path, names - allowed)
    assert hits == []


def test_the_name_finder_finds_names() -> None:
    # The check above must be able to fail: it finds a name where code uses one.
    sample = Path(__file__).parent / "data" / "provider" / "notebook_provider.py"
    assert _provider_names_in(sample, {"notebook", "folder"}) != []
    assert _provider_names_in(sample, {"mailbox"}) == []  # "mailbox.notebook" is not a name
