"""Proofreading warnings: unfilled gaps, text-speak, misspelled names in the greeting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mailbridge.compose import render
from mailbridge.model import DraftKind, EventKey, InterviewRow, InterviewState, Person, Policy
from mailbridge.proofread import proofread
from mailbridge.settings import AccountSettings

JOHN = Person("john.smith@acme.example", "John Smith")
DANA = Person("dana.lee@acme.example", "Lee, Dana")
JOSE = Person("jose@acme.example", "José García")
NAMELESS = Person("jsmith@acme.example")
DOTTED = Person("dana.lee@acme.example")

CLEAN = "Dear John,\n\nThank you for your time today.\n\nBest,\nJordan\n"


@pytest.mark.parametrize(
    ("body", "recipients", "expected"),
    [
        # Nothing to say about a clean letter.
        (CLEAN, [JOHN], []),
        ("Hi John,\n\nThanks.\n", [JOHN], []),
        ("Dear Mr. Smith,\n\nThanks.\n", [JOHN], []),
        ("Dear John Smith,\n\nThanks.\n", [JOHN], []),
        ("dear john,\n\nThanks.\n", [JOHN], []),
        ("Dear Dana,\n\nThanks.\n", [DANA], []),
        ("Dear Dana and John,\n\nThanks.\n", [DANA, JOHN], []),
        ("Hello all,\n\nThanks.\n", [DANA, JOHN], []),
        ("Dear Hiring Manager,\n\nThanks.\n", [JOHN], []),
        ("Dear José,\n\nThanks.\n", [JOSE], []),
        ("Dear Dana,\n\nThanks.\n", [DOTTED], []),
        ("Dear Jo,\n\nThanks.\n", [NAMELESS], []),  # no name to compare with
        ("Dear John,\n\nI worked in the U.S. and the U.K. for years.\n", [JOHN], []),
        ("Dear John,\n\nSee john.u@acme.example or acme.example/u/ur.\n", [JOHN], []),
        ("Dear John,\n\nMy middle initial is U.\n", [JOHN], []),
        ("Dear John,\n\nWhat a day!\n", [JOHN], []),
        # Unfilled gaps.
        ("Dear John,\n\n[[ADD: one thing from your talk]]\n", [JOHN], ["gap:one thing"]),
        (
            "Dear John,\n\n[[ADD (optional): more]]\n[[ADD: your name]]\n",
            [JOHN],
            ["gap:more", "gap:your name"],
        ),
        # Text-speak.
        ("Dear John,\n\nthx for ur time, u were great\n", [JOHN], ["ts:thx", "ts:ur", "ts:u"]),
        ("Dear John,\n\nPls let me know.\n", [JOHN], ["ts:Pls"]),
        (
            "Dear John,\n\nI'm gonna do it, I wanna join. BTW, lol.\n",
            [JOHN],
            ["ts:gonna", "ts:wanna", "ts:BTW", "ts:lol"],
        ),  # fmt: skip
        ("Dear John,\n\nThanks!!!\n", [JOHN], ["punct:!!!"]),
        ("Dear John,\n\nThanks so much 😀🎉\n", [JOHN], ["emoji"]),
        ("Dear John,\n\nGreat talk :)\n", [JOHN], ["emoticon::)"]),
        ("Dear John,\n\nthx thx thx\n", [JOHN], ["ts:thx"]),  # reported once
        # Misspelled names.
        ("Dear Jon,\n\nThanks.\n", [JOHN], ["name:Jon"]),
        ("Hi Jonh,\n\nThanks.\n", [JOHN], ["name:Jonh"]),
        ("Dear Dan,\n\nThanks.\n", [DANA], ["name:Dan"]),
        ("Dear Jose,\n\nThanks.\n", [JOSE], ["accent:Jose"]),
        ("Dear Dana,\n\nThanks.\n", [JOHN], ["name:Dana"]),
        ("Dear Dana and Jon,\n\nThanks.\n", [DANA, JOHN], ["name:Jon"]),
        ("Dear Donna,\n\nThanks.\n", [DOTTED], ["name:Donna"]),
        # A department greeted as if it were a person.
        ("Dear Recruiting,\n\nThanks.\n", [JOHN], ["team:Recruiting"]),
        ("Dear Talent Acquisition,\n\nThanks.\n", [JOHN], ["team:Talent Acquisition"]),
        ("Dear Recruiting team,\n\nThanks.\n", [JOHN], []),
        ("Dear Talent Acquisition team,\n\nThanks.\n", [JOHN], []),
        # ...unless a recipient, a person, goes by that word.
        ("Dear People,\n\nThanks.\n", [Person("p@acme.example", "PEOPLE AA")], []),
        ("Dear People,\n\nThanks.\n", [JOHN], ["team:People"]),
        ("Dear People,\n\nThanks.\n", [Person("p@acme.example", "People Team")],
         ["team:People"]),
    ],
)
def test_proofread(body: str, recipients: list[Person], expected: list[str]) -> None:
    warnings = proofread(body, recipients)
    assert len(warnings) == len(expected), warnings
    for warning, want in zip(warnings, expected, strict=True):
        kind, _, detail = want.partition(":")
        if kind == "gap":
            assert warning.startswith("Unfilled gap: [[ADD") and detail in warning
        elif kind == "ts":
            assert warning.startswith(f'Text-speak "{detail}"')
        elif kind == "punct":
            assert warning.startswith(f'Repeated punctuation "{detail}"')
        elif kind == "emoji":
            assert warning.startswith("Emoji ") and "😀" in warning and "🎉" in warning
        elif kind == "emoticon":
            assert warning.startswith(f'Emoticon "{detail}"')
        elif kind == "name":
            assert f'greeting says "{detail}"' in warning
            assert "check the spelling" in warning
            assert any(p.email in warning for p in recipients)
        elif kind == "team":
            assert f'greeting "{detail}" reads as a person' in warning
            assert f'"{detail} team"' in warning
        elif kind == "accent":
            assert f'greeting writes "{detail}"' in warning and "accents" in warning
        else:  # pragma: no cover - a typo in the table
            raise AssertionError(want)


def test_text_speak_suggests_the_full_words() -> None:
    (warning,) = proofread("Dear John,\n\nthx\n", [JOHN])
    assert '"thanks"' in warning


# --- the default drafts pass their own proofreading except for the gaps ----------------

START = datetime(2025, 11, 18, 20, 0, tzinfo=UTC)


def _interview(attendees: tuple[Person, ...], notes: str = "") -> InterviewRow:
    return InterviewRow(
        id=1,
        account="personal",
        key=EventKey("primary", "uid"),
        title="Interview",
        company="Acme",
        role="Backend Engineer",
        start=START,
        end=START + timedelta(hours=1),
        state=InterviewState.ACTIVE,
        attendees=attendees,
        lead=attendees[0],
        notes=notes,
    )


ACCOUNT = AccountSettings(
    name="personal",
    provider="local",
    address="jordan@mail.example.org",
    display_name="Jordan Lee",
    signature="Jordan Lee",
    policy=Policy(timezone="America/Chicago"),
)


@pytest.mark.parametrize("kind", list(DraftKind))
def test_default_draft_warns_only_about_its_gaps(kind: DraftKind) -> None:
    draft = render(kind, _interview((JOHN, DANA)), JOHN, ACCOUNT)
    warnings = proofread(draft.body, [JOHN])
    assert len(warnings) == len(draft.gaps) == 2
    assert all(w.startswith("Unfilled gap") for w in warnings)


def test_a_team_inbox_is_greeted_as_a_team_without_warnings() -> None:
    team = Person("talent.partners@acme.example", "Recruiting Team")
    draft = render(DraftKind.THANK_YOU, _interview((team, JOHN)), team, ACCOUNT)
    assert draft.body.startswith("Dear Recruiting team,\n")
    assert [w for w in proofread(draft.body, [team]) if "greeting" in w] == []


def test_filled_draft_has_no_warnings() -> None:
    draft = render(DraftKind.THANK_YOU, _interview((JOHN,), notes="Loved the demo."), JOHN, ACCOUNT)
    lines = [line for line in draft.body.splitlines() if "[[ADD" not in line]
    assert proofread("\n".join(lines), [JOHN]) == []


name_word = st.text(st.characters(whitelist_categories=("Lu", "Ll", "Lo")), min_size=2, max_size=12)


@settings(max_examples=150, deadline=None)
@example(words=["PEOPLE", "AA"], style="plain")  # a person whose first name is a team word
@given(
    words=st.lists(name_word, min_size=1, max_size=3),
    style=st.sampled_from(["plain", "comma", "title", "paren"]),
)
def test_greeting_of_a_rendered_draft_never_looks_misspelled(words: list[str], style: str) -> None:
    if style == "comma" and len(words) > 1:
        name = f"{words[-1]}, {' '.join(words[:-1])}"
    elif style == "title":
        name = "Dr. " + " ".join(words)
    elif style == "paren":
        name = " ".join(words) + " (they/them)"
    else:
        name = " ".join(words)
    person = Person("someone@acme.example", name)
    draft = render(DraftKind.THANK_YOU, _interview((person,)), person, ACCOUNT)
    warnings = proofread(draft.body, [person])
    assert [w for w in warnings if "greeting" in w] == []


@settings(max_examples=150, deadline=None)
@given(name=st.text(st.characters(blacklist_categories=("Cs",)), max_size=40), email=st.emails())
def test_greeting_check_agrees_with_first_name_for_any_name(name: str, email: str) -> None:
    person = Person(email, name)
    draft = render(DraftKind.THANK_YOU, _interview((person,)), person, ACCOUNT)
    assert [w for w in proofread(draft.body, [person]) if "greeting" in w] == []
