"""Proofreading a draft before the user sends it.

The advice the product follows: real words, correct names, no placeholders left behind. These
checks are cheap and deliberately plain; each warning says what was found and what to do.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator, Sequence

from mailbridge.compose import GAP_PATTERN, first_name, is_team, name_key, one_line
from mailbridge.model import Person

# Text-speak and what to write instead. "u" and "ur" count only in lower case: a capital U is
# more often an initial ("John U. Smith") than shorthand.
_TEXT_SPEAK: dict[str, str] = {
    "u": "you",
    "ur": "your",
    "thx": "thanks",
    "thnx": "thanks",
    "thanx": "thanks",
    "tx": "thanks",
    "ty": "thank you",
    "pls": "please",
    "plz": "please",
    "gonna": "going to",
    "wanna": "want to",
    "gotta": "have to",
    "btw": "by the way",
    "lol": "",
    "omg": "",
    "idk": "I don't know",
    "imo": "in my opinion",
    "tbh": "",
    "cuz": "because",
    "coz": "because",
    "b4": "before",
    "cya": "",
    "np": "no problem",
}
_LOWER_ONLY = frozenset({"u", "ur"})

# A word on its own: not part of an address, a path, a contraction or an abbreviation like "U.S.".
_WORD = re.compile(r"(?<![\w'’@./\-])([A-Za-z0-9]+)(?![\w'’@\-]|\.\w)")
_SHOUTING = re.compile(r"!{2,}|\?{3,}")
_EMOTICON = re.compile(r"(?<!\S)[:;]-?[)(DPp](?!\w)")

_GREETING = re.compile(
    r"^[ \t]*(?:dear|hi|hello|hey|greetings|good (?:morning|afternoon|evening))\b"
    r"(?P<names>[^\n]*)$",
    re.IGNORECASE | re.MULTILINE,
)
# Words in a greeting that are not anyone's name.
_GENERIC = frozenset(
    {
        "and", "&", "there", "all", "everyone", "team", "hiring", "manager", "managers",
        "committee", "sir", "madam", "sir/madam", "recruiter", "recruiting", "folks", "both",
        "dr", "mr", "mrs", "ms", "mx", "miss", "prof", "professor", "again", "to", "you",
        "the", "talent", "acquisition", "people",
    }
)  # fmt: skip

_EMOJI_RANGES: tuple[tuple[int, int], ...] = (
    (0x1F000, 0x1FAFF),  # emoticons, pictographs, transport, symbols and pictographs ext.
    (0x2600, 0x27BF),  # miscellaneous symbols, dingbats
    (0x2B00, 0x2BFF),  # arrows and stars used as emoji (⭐, ⬆)
    (0x231A, 0x231B),
    (0x23E9, 0x23FA),
    (0xFE0F, 0xFE0F),  # emoji presentation selector
)


def _is_emoji(ch: str) -> bool:
    code = ord(ch)
    return any(lo <= code <= hi for lo, hi in _EMOJI_RANGES)


def _strip_accents(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def _gap_warnings(body: str) -> Iterator[str]:
    for match in GAP_PATTERN.finditer(body):
        yield (
            f"Unfilled gap: {match.group(0)}. Write this part yourself, or delete the line "
            "before sending."
        )


def _text_speak_warnings(body: str) -> Iterator[str]:
    text = GAP_PATTERN.sub(" ", body)
    seen: set[str] = set()
    for match in _WORD.finditer(text):
        word = match.group(1)
        key = word if word in _LOWER_ONLY else word.lower()
        if key not in _TEXT_SPEAK or key in seen:
            continue
        if key in _LOWER_ONLY and word != key:
            continue
        seen.add(key)
        better = _TEXT_SPEAK[key]
        advice = f'write "{better}" instead' if better else "leave it out"
        yield f'Text-speak "{word}": {advice}; this letter goes to an employer.'
    marks = sorted({m.group(0) for m in _SHOUTING.finditer(text)})
    for mark in marks:
        yield f'Repeated punctuation "{mark}": one mark is enough in a letter to an employer.'
    faces = sorted({m.group(0) for m in _EMOTICON.finditer(text)})
    for face in faces:
        yield f'Emoticon "{face}": leave it out of a letter to an employer.'
    emoji = sorted({ch for ch in text if _is_emoji(ch) and ch != "\ufe0f"})
    if emoji:
        yield f"Emoji {' '.join(emoji)}: leave emoji out of a letter to an employer."


# Greeting words and the names they are checked against are split the same way.
_NAME_SPLIT = re.compile(r"[\s,&/()\[\]<>\"“”]+")


def _name_tokens(text: str) -> set[str]:
    tokens: set[str] = set()
    for word in _NAME_SPLIT.split(text):
        for part in (word, *word.split("-")):
            if name_key(part):
                tokens.add(name_key(part))
    return tokens


def _known_name_words(recipients: Sequence[Person]) -> tuple[set[str], set[str]]:
    """The name words of the recipients: from display names, and from address local parts."""
    named: set[str] = set()
    local_words: set[str] = set()
    for person in recipients:
        named.update(_name_tokens(one_line(person.name)))
        named.update(_name_tokens(first_name(person)))
        local = person.email.rpartition("@")[0]
        for part in re.split(r"[._+\-\d]+", local):
            if part:
                local_words.add(part.casefold())
    return named, local_words


def _describe(person: Person) -> str:
    name = one_line(person.name)
    return f"{name} <{person.email}>" if name else person.email


def _greeting_warnings(body: str, recipients: Sequence[Person]) -> Iterator[str]:
    if not recipients:
        return
    match = _GREETING.search(GAP_PATTERN.sub("", body))
    if match is None:
        return
    names = match.group("names").strip().rstrip(",:;!.—-").strip()
    words = [w for w in _NAME_SPLIT.split(names) if w]
    named, local_words = _known_name_words(recipients)
    named_plain = {_strip_accents(k) for k in named}
    has_names = any(one_line(p.name) for p in recipients) or any(
        re.search(r"[._\-]", p.email.rpartition("@")[0]) for p in recipients
    )
    if not has_names:
        return  # nothing to compare with: an opaque address tells us no name
    who = ", ".join(_describe(p) for p in recipients)
    for word in words:
        key = name_key(word)
        if not key or key in _GENERIC or key.rstrip(".") in _GENERIC or key in named:
            continue
        if not any(ch.isalpha() for ch in key):
            continue
        if _strip_accents(key) in named_plain:
            yield (
                f'The greeting writes "{word.strip(",.:;!")}", but the invitation spells the name'
                f" differently ({who}): check the accents."
            )
        elif key not in local_words:
            yield (
                f'The greeting says "{word.strip(",.:;!")}", but the recipient is {who}: check'
                " the spelling of their name (ignore this if it is what they go by)."
            )


# Words that make a greeting to a department read right ("Recruiting team", "Hiring Manager").
_ADDRESSABLE = frozenset(
    {"team", "all", "everyone", "manager", "managers", "coordinator", "recruiter", "partner",
     "partners", "committee"}
)  # fmt: skip


def _team_greeting_warnings(body: str, recipients: Sequence[Person]) -> Iterator[str]:
    """ "Dear Recruiting," greets a department as if it were a person (unless a recipient,
    a person, goes by that name: "People Aa" is greeted "Dear People,")."""
    match = _GREETING.search(GAP_PATTERN.sub("", body))
    if match is None:
        return
    names = match.group("names").strip().rstrip(",:;!.—-").strip()
    words = {name_key(w) for w in _NAME_SPLIT.split(names) if w}
    own = {name_key(first_name(p)) for p in recipients if not is_team(p)}
    if (names and is_team(Person("", names)) and not words & _ADDRESSABLE
            and name_key(names) not in own):
        yield (
            f'The greeting "{names}" reads as a person\'s name: write "{names} team", or greet'
            " the person by name."
        )


def proofread(body: str, recipients: Sequence[Person]) -> list[str]:
    """Warnings about a draft body, in plain words; an empty list means nothing was found."""
    return [
        *_gap_warnings(body),
        *_text_speak_warnings(body),
        *_greeting_warnings(body, recipients),
        *_team_greeting_warnings(body, recipients),
    ]


__all__ = ["proofread"]
