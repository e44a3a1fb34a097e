"""The core (mailbridge/) names no provider: every kind, table and key belongs to the provider
that registers it (issue 11). Prose and URLs may mention a service; code may not."""

from __future__ import annotations

import ast
from pathlib import Path

from mailbridge import adapters
from mailbridge.settings import TOKEN_STORES

REPO = Path(__file__).resolve().parent.parent


def _provider_names_in(path: Path, names: set[str]) -> list[str]:
    """Where a file's code names one of ``names``: a string that is exactly the name, or an
    attribute of that name (``account.imap``). Prose, URLs, f-strings and the examples of a
    schema field's documentation (``doc(description, example)``, shown in README and fixes)
    are not hits."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    documentation: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr) or (
                isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id == "doc"):
            documentation |= {id(inner) for inner in ast.walk(node)}
    hits = []
    for node in ast.walk(tree):
        if id(node) in documentation:
            continue
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names:
            hits.append(f"{path.name}:{node.lineno}: {node.value!r}")
        elif isinstance(node, ast.Attribute) and node.attr in names:
            hits.append(f"{path.name}:{node.lineno}: .{node.attr}")
    return sorted(hits)


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
    assert _provider_names_in(sample, {"job hunt"}) == []  # a doc() example is documentation


def test_every_entry_point_registers_a_class_of_its_kind() -> None:
    for prefix, base in (("mailbox", adapters.Mailbox), ("calendar", adapters.CalendarSource)):
        for kind in adapters.available(prefix):
            cls = adapters.provider_class(f"{prefix}.{kind}")
            assert cls is not None and issubclass(cls, base), f"{prefix}.{kind}"
            # A declared capability comes with its method (not the base class's default).
            if cls.pushes:
                assert cls.watch.__func__ is not adapters.Provider.watch.__func__, kind
            if cls.signs_in:
                assert (cls.authenticate.__func__
                        is not adapters.Provider.authenticate.__func__), kind
    assert adapters.default_kind("mailbox") in adapters.available("mailbox")
    assert adapters.default_kind("calendar") in adapters.available("calendar")
