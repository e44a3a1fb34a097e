"""Composing drafts: templates in, RFC 5322 messages out.

Pure functions: no I/O beyond reading the template files. The Jinja2 templates are rendered in a
sandbox with strict undefined names; the stdlib `email` package assembles the message.

Event data (titles, names, companies) is untrusted: it may carry CR/LF, control characters,
bidi overrides or text that looks like an RFC 2047 encoded word. Every such value is reduced to
one clean line before it reaches a header, and the headers that carry free text (From, To,
Subject) are encoded here rather than by the email package's folder, whose round trip of long
non-ASCII display names is not exact (it inserts spaces between encoded words when parsing).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import re
import traceback
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email import policy as email_policy
from email.charset import Charset
from email.errors import HeaderParseError
from email.header import Header
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import Policy as EmailPolicy
from email.utils import format_datetime
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from mailbridge.model import (
    HARD_MAX_FOLLOW_UPS,
    DraftKind,
    DraftMessage,
    EventKey,
    InterviewRow,
    InterviewState,
    Person,
)
from mailbridge.settings import AccountSettings, CalendarSettings

TEMPLATE_NAMES: Final[dict[DraftKind, str]] = {
    DraftKind.THANK_YOU: "thank_you.txt.j2",
    DraftKind.FOLLOW_UP: "follow_up.txt.j2",
}

DEFAULT_TEMPLATES_DIR: Final = Path(__file__).resolve().parent / "templates"

# A gap the user still has to fill: "[[ADD: ...]]" or "[[ADD (optional): ...]]".
GAP_PATTERN: Final = re.compile(
    r"\[\[ADD(?: \(optional\))?:[ \t]*(?P<text>(?:(?!\]\]).)*?)[ \t]*\]\]"
)

# The names a template may use (documented for users in `check_templates` errors).
TEMPLATE_FIELDS: Final = (
    "recipient_first_name",
    "recipient_name",
    "greeting_name",
    "company",
    "role",
    "interview_date",
    "interview_time",
    "interview_when",
    "decision_date",
    "job",
    "variant",
    "threaded",
    "notes",
    "user_name",
    "signature",
    "interviewers",
    "seq",
    "subject",
    "gap(text)",
    "and_list(names)",
)

_SUBJECT_LIMIT = 200  # characters; longer subjects are clipped at a word
_NAME_LIMIT = 78  # characters of a display name in a header
_FALLBACK_DOMAIN = "mailbridge.invalid"

_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)

# Invisible characters that reorder text; in a name or subject they only serve to mislead.
_BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
_LINE_BREAKING = frozenset({"Cc", "Zl", "Zp", "Cs"})

# RFC 5322 atext, for display names that need no quoting.
_ATOM_PHRASE = re.compile(r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+(?: [A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+)*")
_MSGID_CHARS = re.compile(r"[^\x21-\x7e]|[<>]")


class ComposeError(ValueError):
    """A draft cannot be composed (a broken template, an unusable address)."""


# --- text hygiene ----------------------------------------------------------------------


def one_line(text: str) -> str:
    """`text` as one clean line: no control characters, line breaks or bidi overrides."""
    cleaned = "".join(
        " " if unicodedata.category(ch) in _LINE_BREAKING or ch in _BIDI_CONTROLS else ch
        for ch in text
    )
    return " ".join(cleaned.split())


def clean_text(text: str) -> str:
    """Multi-line text for a body: newlines normalised, other control characters removed."""
    lines = text.splitlines()  # also splits on \r, \v, \f, \x1c-\x1e, \x85, U+2028/9
    out = "\n".join(lines)
    return "".join(ch for ch in out if ch in "\n\t" or unicodedata.category(ch) not in ("Cc", "Cs"))


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip() + "…"


# --- template helpers --------------------------------------------------------------------


def gap(text: str, optional: bool = False) -> str:
    """A visible marker for something only the user can write."""
    inner = one_line(text).replace("]]", "] ]").replace("[[", "[ [")
    label = "ADD (optional)" if optional else "ADD"
    return f"[[{label}: {inner}]]"


def find_gaps(text: str) -> tuple[str, ...]:
    """The texts of the unfilled gaps in `text`, in order."""
    return tuple(match.group("text") for match in GAP_PATTERN.finditer(text))


def and_list(names: Iterable[str]) -> str:
    """ "Dana", "Dana and Sam", "Dana, Sam and Lee"."""
    items = [str(n) for n in names if str(n)]
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


# --- names -----------------------------------------------------------------------------

_HONORIFICS = frozenset(
    {
        "dr", "mr", "mrs", "ms", "mx", "miss", "prof", "professor", "sir", "dame", "rev",
        "hon", "mme", "mlle", "herr", "frau",
    }
)  # fmt: skip
_SUFFIXES = frozenset(
    {
        "jr", "sr", "ii", "iii", "iv", "phd", "md", "mba", "cpa", "esq", "jd", "msc", "bsc",
        "ma", "ba", "cfa", "pmp", "pe", "rn", "dds", "shrm-cp", "shrm-scp", "sphr", "phr",
    }
)  # fmt: skip
_ROLE_MAILBOXES = frozenset(
    {
        "recruiting", "recruiter", "recruitment", "careers", "career", "jobs", "job", "hr",
        "talent", "hiring", "info", "team", "hello", "contact", "people", "noreply",
        "no-reply", "admin", "office", "interviews", "interview",
    }
)  # fmt: skip
_BRACKETED = re.compile(r"\([^)]*\)|\[[^\]]*\]|<[^>]*>|\{[^}]*\}")
_EDGE_PUNCT = "\"'`“”‘’«».,;:!?()[]{}<>|/\\"


def name_key(word: str) -> str:
    """How two spellings of a name word are compared (case and edge punctuation ignored)."""
    return word.strip(_EDGE_PUNCT).casefold()


def _recase(word: str) -> str:
    """Title-case a name word written all in lower (or all in upper) case."""
    letters = [ch for ch in word if ch.isalpha()]
    if word.islower() or (word.isupper() and len(letters) > 2):
        return "-".join(part[:1].upper() + part[1:].lower() for part in word.split("-"))
    return word


def _is_initial(word: str) -> bool:
    return len([ch for ch in word if ch.isalpha()]) == 1


def _name_words(name: str) -> list[str]:
    """The words of a display name in reading order, without titles, pronouns or credentials."""
    text = _BRACKETED.sub(" ", one_line(name)).strip(" \"'`“”‘’")
    if re.fullmatch(r"\S+@\S+", text):  # some calendars put the address in the name field
        return []
    if "," in text:
        head, _, tail = text.partition(",")
        tail_words = [w for w in re.split(r"[\s,]+", tail) if w and name_key(w) not in _SUFFIXES]
        # "Lee, Dana" names the surname first; "Dana Lee, PhD" only adds credentials.
        text = " ".join(tail_words) if tail_words and head.strip() else head
    words = [w.strip(_EDGE_PUNCT.replace(".", "")) for w in text.split()]
    words = [w for w in words if w and "@" not in w and any(ch.isalpha() for ch in w)]
    while words and name_key(words[0]) in _HONORIFICS and len(words) > 1:
        words = words[1:]
    return words


def _local_part_words(email: str) -> list[str]:
    local = email.rpartition("@")[0] if "@" in email else email
    local = local.strip('"').split("+", 1)[0]
    return [w for w in re.split(r"[._\-\d\s]+", local) if w and w.isalpha()]


# Words of a display name that belong to a shared inbox, not a person ("Recruiting Team").
_TEAM_WORDS = frozenset(
    {
        "team", "recruiting", "recruitment", "talent", "acquisition", "hr", "people", "hiring",
        "careers", "jobs", "scheduling", "coordination", "ops", "operations", "office",
        "interviews", "interview", "panel", "committee", "staffing",
    }
)  # fmt: skip
_TEAM_TAIL = frozenset(
    {"team", "recruiting", "recruitment", "talent", "acquisition", "careers", "hr", "hiring",
     "scheduling", "jobs", "staffing"}
)  # fmt: skip
_JOINERS = frozenset({"the", "of", "and", "&"})
# A role, not a person, when it follows team words only: "Hiring Manager", "Talent Coordinator".
_ROLE_TITLES = frozenset({"manager", "managers", "coordinator", "recruiter", "partner", "partners"})


def is_team(person: Person) -> bool:
    """`person` is a shared inbox ("Recruiting Team", "Acme Talent", careers@...), not a person."""
    words = [name_key(w) for w in _name_words(person.name)]
    if words:
        meaningful = [w for w in words if w not in _JOINERS]
        return bool(meaningful) and (
            all(w in _TEAM_WORDS for w in meaningful)
            or meaningful[-1] in _TEAM_TAIL
            or (
                meaningful[-1] in _ROLE_TITLES
                and all(w in _TEAM_WORDS for w in meaningful[:-1])
                and len(meaningful) > 1
            )
        )
    parts = _local_part_words(person.email)
    return bool(parts) and parts[0].lower() in _ROLE_MAILBOXES


def team_name(person: Person) -> str:
    """How to greet a shared inbox: its team words only ("Talent Acquisition team"), or the
    role it names ("Hiring Manager")."""
    named = _name_words(person.name)
    if named and name_key(named[-1]) in _ROLE_TITLES:
        return " ".join(_recase(w) for w in named if name_key(w) not in _JOINERS)
    words = [w for w in named if name_key(w) in _TEAM_WORDS - {"team"}]
    if not words:
        words = [w for w in _local_part_words(person.email) if w.lower() in _TEAM_WORDS]
        words = [w for w in words if w.lower() not in ("team", "interview", "interviews")]
    shown = [w.upper() if len(w) <= 2 else _recase(w.lower()) for w in words]
    return f"{' '.join(shown)} team" if shown else "hiring team"


def greeting_name(person: Person) -> str:
    """The name after "Dear": a first name, a team, or a marked gap when nothing tells."""
    if is_team(person):
        return team_name(person)
    name = first_name(person)
    return name if name != "there" else gap("their name")


def first_name(person: Person) -> str:
    """How to greet `person`: the first word of the display name, else from the address."""
    words = _name_words(person.name)
    if words and is_team(person):
        return "there"
    if words and not (len(words) == 1 and name_key(words[0]) in _HONORIFICS):
        first = words[0]
        if _is_initial(first) and len(words) >= 3:
            first = words[1]  # "J. Robert Smith" goes by Robert
        elif _is_initial(first) and len(words) == 2:
            return " ".join(_recase(w) for w in words)  # "J. Smith": a lone initial reads oddly
        return _recase(first if _is_initial(first) else first.rstrip("."))
    parts = _local_part_words(person.email)
    if parts and len(parts[0]) >= 2 and parts[0].lower() not in _ROLE_MAILBOXES:
        return _recase(parts[0].lower())
    return "there"


# --- identifiers and fingerprints ------------------------------------------------------


def _domain_for_id(domain: str) -> str:
    domain = one_line(domain).strip().strip(".").lower()
    if domain and not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            return _FALLBACK_DOMAIN
    if not domain or not re.fullmatch(r"[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?", domain):
        return _FALLBACK_DOMAIN
    return domain


def message_id(address: str, key: EventKey, recipient: str, kind: DraftKind, seq: int) -> str:
    """The Message-ID of one draft: the same inputs always give the same id.

    It depends on the user's address, the event's identity (UID and instance), the recipient,
    the kind and the sequence number: never on the account's name in the TOML or on where the
    calendar is kept, so a renamed account or a rebuilt ledger finds the drafts it made before.
    """
    parts = [
        "mailbridge-draft-v2",
        address.strip().lower(),
        key.uid,
        key.instance,
        recipient.strip().lower(),
        str(kind),
        str(seq),
    ]
    digest = hashlib.sha256(json.dumps(parts).encode("ascii")).hexdigest()[:40]
    return f"<{digest}.mailbridge@{_domain_for_id(address.rpartition('@')[2])}>"


def draft_message_ids(address: str, key: EventKey, recipients: Iterable[str]) -> list[str]:
    """Every Message-ID a draft of ours for this event to one of ``recipients`` has or would
    have (a thank-you, each follow-up): derived, so a reply in one of their threads can be
    told without a ledger row for the draft."""
    return [
        message_id(address, key, recipient, kind, seq)
        for recipient in recipients
        for kind, seqs in ((DraftKind.THANK_YOU, (1,)),
                           (DraftKind.FOLLOW_UP, range(1, HARD_MAX_FOLLOW_UPS + 1)))
        for seq in seqs
    ]


def is_draft_message_id(address: str, value: str) -> bool:
    """Whether ``value`` has the form of a Message-ID `message_id` gives ``address``: one of
    our drafts, even when no ledger row (a lost ledger) says which."""
    domain = re.escape(_domain_for_id(address.rpartition("@")[2]))
    pattern = rf"<[0-9a-f]{{40}}\.mailbridge@{domain}>"
    return re.fullmatch(pattern, value.strip().lower()) is not None


def fingerprint(subject: str, recipients: Sequence[str], body: str,
                cc: Sequence[str] = (), bcc: Sequence[str] = ()) -> str:
    """A hash of what a draft says, blind to what transport does to it.

    Newline style, trailing spaces, trailing blank lines, header folding in the subject,
    the case and order of addresses, and Unicode normal form do not change it. A Cc or Bcc
    the user added does; a draft of ours has neither, so its hash is that of its To alone.
    """
    subject_n = " ".join(unicodedata.normalize("NFC", subject).split())
    rcpts = sorted({prefix + r.strip().lower()
                    for prefix, group in (("", recipients), ("cc:", cc), ("bcc:", bcc))
                    for r in group if r.strip()})  # fmt: skip
    text = unicodedata.normalize("NFC", body).replace("\r\n", "\n").replace("\r", "\n")
    lines = [line.rstrip(" \t") for line in text.split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    payload = json.dumps(["v1", subject_n, rcpts, "\n".join(lines)])
    return hashlib.sha256(payload.encode("ascii")).hexdigest()


def unflow(text: str, delsp: bool = False) -> str:
    """A format=flowed text (RFC 3676) as its writer meant it: space-stuffing removed and
    soft line breaks (a line ending in a space, other than the "-- " signature separator)
    joined, within one quote depth. Thunderbird saves drafts this way; the words are the
    same, so the draft is the same."""
    out: list[str] = []
    open_depth: int | None = None  # the quote depth of a paragraph still flowing
    for line in text.replace("\r\n", "\n").split("\n"):
        depth = len(line) - len(line.lstrip(">"))
        content = line[depth:]
        content = content[1:] if content.startswith(" ") else content  # stuffing
        soft = content.endswith(" ") and content != "-- "
        if soft and delsp:
            content = content[:-1]
        if open_depth == depth:
            out[-1] += content
        else:
            out.append(">" * depth + (" " if depth and content else "") + content)
        open_depth = depth if soft else None
    return "\n".join(out)


def read_draft(raw: bytes) -> tuple[str, str]:
    """The fingerprint and text body of a stored draft, as a mailbox holds it now.

    The one way every mailbox turns the bytes it stores back into what `fingerprint` compares.
    """
    msg = message_from_bytes(raw, policy=email_policy.default)

    def addresses(name: str) -> list[str]:
        return [a.addr_spec for value in msg.get_all(name, []) or []
                for a in getattr(value, "addresses", ())]  # fmt: skip

    body = ""
    part = msg.get_body(preferencelist=("plain",)) if isinstance(msg, EmailMessage) else None
    if part is not None:
        try:
            body = str(part.get_content())
        except (LookupError, ValueError):
            body = ""
        if str(part.get_param("format", "")).lower() == "flowed":
            body = unflow(body, delsp=str(part.get_param("delsp", "")).lower() == "yes")
    return fingerprint(str(msg.get("subject", "") or ""), addresses("to"), body,
                       addresses("cc"), addresses("bcc")), body


# --- templates -------------------------------------------------------------------------


def template_environment(templates_dir: Path | None) -> SandboxedEnvironment:
    """A sandboxed Jinja2 environment: the user's templates first, then the defaults."""
    loaders: list[jinja2.BaseLoader] = []
    if templates_dir is not None:
        loaders.append(jinja2.FileSystemLoader(str(templates_dir)))
    loaders.append(jinja2.FileSystemLoader(str(DEFAULT_TEMPLATES_DIR)))
    env = SandboxedEnvironment(
        loader=jinja2.ChoiceLoader(loaders),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # plain text mail, not HTML
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.globals["gap"] = gap
    env.globals["and_list"] = and_list
    return env


@functools.lru_cache(maxsize=16)
def _environment(templates_dir: Path | None) -> SandboxedEnvironment:
    # Compiling templates is the slow part of rendering; Jinja2 still notices edited files
    # (auto_reload compares modification times), so a cached environment stays current.
    return template_environment(templates_dir)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _format_date(moment: datetime) -> str:
    return f"{_DAYS[moment.weekday()]}, {_MONTHS[moment.month - 1]} {moment.day}"


def _format_time(moment: datetime) -> str:
    hour = moment.hour % 12 or 12
    return f"{hour}:{moment.minute:02d} {'AM' if moment.hour < 12 else 'PM'}"


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def time_words(moment: datetime, written: datetime) -> str:
    """When `moment` was, as seen from `written` (both local): "this afternoon", "yesterday",
    "on Tuesday", "on Tuesday, December 1"."""
    days = (written.date() - moment.date()).days
    if days <= 0:
        part = "morning" if moment.hour < 12 else "afternoon" if moment.hour < 17 else "evening"
        return f"this {part}"
    if days == 1:
        return "yesterday"
    if days < 7:
        return f"on {_DAYS[moment.weekday()]}"
    return f"on {_format_date(moment)}"


def sentence(text: str) -> str:
    """The user's words as a sentence of a letter: a capital first letter and a full stop."""
    text = clean_text(text).strip()
    if not text:
        return ""
    if text[0].islower() and len(text[0].upper()) == 1:  # "ß" has no one-letter capital
        text = text[0].upper() + text[1:]
    if text.rstrip("\"'”’)»")[-1:] not in (".", "!", "?", "…"):
        text += "."
    return text


def notes_for(interview: InterviewRow, recipient: Person) -> tuple[str, ...]:
    """The notes that go into the draft to `recipient`: those for everyone, then their own."""
    if not interview.note_list:
        return (sentence(interview.notes),) if interview.notes.strip() else ()
    me = recipient.email.strip().lower()
    shared = [sentence(n.text) for n in interview.note_list if not n.recipient]
    own = [sentence(n.text) for n in interview.note_list if n.recipient == me]
    return tuple(t for t in (*shared, *own) if t)


def variant(interview: InterviewRow, recipient: Person) -> int:
    """Which of a template's phrasings this recipient gets.

    Deterministic, and different for every member of a panel: the recipient's place among the
    interviewers (by address), shifted by the event so two interviews do not read alike.
    """
    panel = sorted({p.email.strip().lower() for p in (*interview.attendees, recipient)})
    shift = int(hashlib.sha256(interview.key.uid.encode("utf-8")).hexdigest()[:8], 16)
    return shift + panel.index(recipient.email.strip().lower())


def job_phrase(role: str, company: str) -> str:
    """The job, named once: "the Data Engineer role at Acme", "the role at Acme", "this role"."""
    role, company = one_line(role), one_line(company)
    if role and company:
        return f"the {role} role at {company}"
    if role:
        return f"the {role} role"
    if company:
        return f"the role at {company}"
    return "this role"


def thank_you_subject(role: str, company: str) -> str:
    role, company = one_line(role), one_line(company)
    if role:
        return f"Thank you — {role} interview"
    if company:
        return f"Thank you — interview with {company}"
    return "Thank you for the interview"


def follow_up_subject(role: str, company: str) -> str:
    role, company = one_line(role), one_line(company)
    if role:
        return f"Following up — {role} interview"
    if company:
        return f"Following up — interview with {company}"
    return "Following up on our interview"


def _reply_subject(subject: str) -> str:
    subject = one_line(subject)
    return subject if subject.lower().startswith("re:") else f"Re: {subject}"


def default_subject(
    kind: DraftKind, interview: InterviewRow, *, in_reply_to: str = "", thread_subject: str = ""
) -> str:
    if kind is DraftKind.THANK_YOU:
        return thank_you_subject(interview.role, interview.company)
    if in_reply_to:
        return _reply_subject(
            thread_subject or thank_you_subject(interview.role, interview.company)
        )
    return follow_up_subject(interview.role, interview.company)


def _context(
    interview: InterviewRow,
    recipient: Person,
    account: AccountSettings,
    *,
    seq: int,
    subject: str,
    written_at: datetime | None = None,
    threaded: bool = False,
) -> dict[str, Any]:
    zone = _zone(account.policy.timezone)
    start = _aware(interview.start).astimezone(zone)
    written = _aware(written_at or interview.end).astimezone(zone)
    kept = interview.attendees or (recipient,)
    decision = interview.decision_date
    return {
        "recipient_first_name": first_name(recipient),
        "recipient_name": one_line(recipient.name) or first_name(recipient),
        "greeting_name": greeting_name(recipient),
        "company": one_line(interview.company),
        "role": one_line(interview.role),
        "job": job_phrase(interview.role, interview.company),
        "interview_date": _format_date(start),
        "interview_time": _format_time(start),
        "interview_when": time_words(start, written),
        "decision_date": (
            f"{_DAYS[decision.weekday()]}, {_MONTHS[decision.month - 1]} {decision.day}"
            if decision
            else ""
        ),
        "variant": variant(interview, recipient),
        "threaded": threaded,
        "notes": "\n\n".join(notes_for(interview, recipient)),
        "user_name": one_line(account.display_name),
        "signature": clean_text(account.signature).strip("\n"),
        "interviewers": [first_name(p) for p in kept if not is_team(p)],
        "seq": seq,
        "subject": _clip(one_line(subject), _SUBJECT_LIMIT),
    }


def _template_line(exc: BaseException, filename: str | None) -> int | None:
    """The template line an error happened on (Jinja2 puts template frames in tracebacks)."""
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if filename is not None and frame.filename == filename:
            line = frame.lineno
    return line


def _describe(exc: Exception) -> str:
    if isinstance(exc, jinja2.UndefinedError):
        return f"unknown name: {exc.message}; a template can use {', '.join(TEMPLATE_FIELDS)}"
    if isinstance(exc, jinja2.TemplateError) and exc.message:
        return exc.message
    return f"{type(exc).__name__}: {exc}"


def _render_template(env: SandboxedEnvironment, name: str, context: Mapping[str, Any]) -> str:
    """Render one template, turning every template failure into a ComposeError "FILE:LINE: ..."."""
    try:
        template = env.get_template(name)
    except jinja2.TemplateSyntaxError as exc:
        raise ComposeError(f"{exc.filename or name}:{exc.lineno}: {exc.message}") from exc
    except jinja2.TemplateNotFound as exc:
        raise ComposeError(f"{name}: template not found") from exc
    try:
        return template.render(context)
    except Exception as exc:  # a user template can fail in any way; report, never crash
        filename = template.filename or name
        line = _template_line(exc, template.filename)
        where = f"{filename}:{line}" if line is not None else filename
        raise ComposeError(f"{where}: {_describe(exc)}") from exc


def _split_subject(text: str, default: str) -> tuple[str, str]:
    """A template's output is "Subject: ..." then a blank line then the body."""
    text = clean_text(text)
    first, _, rest = text.partition("\n")
    if first.lower().startswith("subject:"):
        subject = one_line(first[len("subject:") :]) or default
        body = rest
    else:
        subject, body = default, text
    body = body.lstrip("\n").rstrip()
    return _clip(one_line(subject), _SUBJECT_LIMIT), (body + "\n" if body else "")


def _sample_interview() -> tuple[InterviewRow, Person, AccountSettings]:
    start = datetime(2025, 11, 18, 20, 0, tzinfo=UTC)
    dana = Person("dana.lee@example.com", "Dana Lee")
    sam = Person("sam.ortiz@example.com", "Sam Ortiz")
    interview = InterviewRow(
        id=1,
        account="sample",
        key=EventKey("primary", "sample-uid"),
        title="Interview: Backend Engineer",
        company="Example Corp",
        role="Backend Engineer",
        start=start,
        end=start + timedelta(hours=1),
        state=InterviewState.ACTIVE,
        attendees=(dana, sam),
        lead=dana,
        notes="I enjoyed hearing how the team moved billing onto an event log.",
    )
    # The templates never see the account's provider or calendar: naming none spares `check`
    # the import of every provider just to find the default kinds.
    account = AccountSettings(
        name="sample",
        provider="",
        calendar=CalendarSettings(kind=""),
        address="jordan@example.org",
        display_name="Jordan Lee",
        signature="Jordan Lee\n555-0100",
    )
    return interview, dana, account


def check_templates(templates_dir: Path | None) -> list[str]:
    """Every problem with the templates an account would use, as "FILE:LINE: ..." sentences.

    Checked once per folder and state of its files: a thousand accounts sharing the built-in
    templates (or one folder) compile and try them once, not once each.
    """
    return list(_checked_templates(templates_dir, _templates_stamp(templates_dir)))


def _templates_stamp(templates_dir: Path | None) -> tuple[tuple[str, int, int], ...]:
    if templates_dir is None:
        return ()
    if not templates_dir.is_dir():  # missing, or a file: said apart, each has its own message
        return (("", int(templates_dir.exists()), 0),)
    found = [("", 2, 0)]
    for path in sorted(templates_dir.iterdir()):
        try:
            info = path.stat()
        except OSError:
            continue
        found.append((path.name, info.st_mtime_ns, info.st_size))
    return tuple(found)


@functools.lru_cache(maxsize=64)
def _checked_templates(
    templates_dir: Path | None, stamp: tuple[tuple[str, int, int], ...]
) -> tuple[str, ...]:
    return tuple(_check_templates(templates_dir))


def _check_templates(templates_dir: Path | None) -> list[str]:
    errors: list[str] = []
    usable_dir = templates_dir
    if templates_dir is not None:
        if not templates_dir.exists():
            errors.append(
                f"{templates_dir}: the templates folder does not exist; create it, or remove"
                " templates from the config to use the built-in templates."
            )
            usable_dir = None
        elif not templates_dir.is_dir():
            errors.append(f"{templates_dir}: templates must name a folder, not a file.")
            usable_dir = None
        else:
            known = set(TEMPLATE_NAMES.values())
            for path in sorted(templates_dir.glob("*.j2")):
                if path.name not in known:
                    errors.append(
                        f"{path}: mailbridge does not use a template of this name; overrides"
                        f" must be named {' or '.join(sorted(known))}."
                    )
    env = template_environment(usable_dir)
    interview, recipient, account = _sample_interview()
    variants = (
        interview,
        dataclasses.replace(interview, notes="", role="", company=""),
    )
    for kind, name in TEMPLATE_NAMES.items():
        for sample in variants:
            for seq, reply_to in ((1, ""), (2, "<thanks.mailbridge@example.org>")):
                subject = default_subject(kind, sample, in_reply_to=reply_to)
                context = _context(
                    sample, recipient, account, seq=seq, subject=subject,
                    threaded=bool(reply_to),
                )
                try:
                    output = _render_template(env, name, context)
                except ComposeError as exc:
                    if str(exc) not in errors:
                        errors.append(str(exc))
                    break
                if not _split_subject(output, subject)[1].strip():
                    problem = f"{name}: the template renders an empty message body."
                    if problem not in errors:
                        errors.append(problem)
            else:
                continue
            break
    return errors


# --- the message -------------------------------------------------------------------------


class _EncodedHeader:
    """A header value already encoded and split into lines; the email package writes it as is.

    `email.policy.EmailPolicy` keeps any value that has a matching `name` and folds it with its
    own `fold`, which is how we keep the encoding of free-text headers in our hands.
    """

    def __init__(self, name: str, lines: Sequence[str]) -> None:
        self.name = name
        self.lines = tuple(lines)

    def fold(self, *, policy: EmailPolicy) -> str:
        # Pack the pieces onto lines of at most 78 characters where they fit; a fold is
        # always at a space between pieces, so unfolding restores the value.
        out: list[str] = []
        current = f"{self.name}:"
        for piece in self.lines:
            if len(current) + 1 + len(piece) > 78 and current != f"{self.name}:":
                out.append(current)
                current = ""
            current = f"{current} {piece}"
        out.append(current)
        return policy.linesep.join(out) + policy.linesep

    def __str__(self) -> str:
        return " ".join(self.lines)


def _addr_spec(email: str, *, whose: str) -> str:
    """A checked, ASCII addr-spec for `email`, or a ComposeError that says what is wrong."""
    raw = email.strip()
    bad = (
        not raw
        or any(ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf", "Cs") for ch in raw)
        or raw.count("@") < 1
    )
    parsed: Address | None = None
    if not bad:
        try:
            parsed = Address(addr_spec=raw)
        except (ValueError, IndexError, HeaderParseError):
            parsed = None
    if parsed is None or not parsed.username or not parsed.domain:
        raise ComposeError(f"The address of {whose}, {email!r}, is not a valid email address.")
    domain = parsed.domain
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise ComposeError(
                f"The address of {whose}, {email!r}, has a domain that cannot be written in a"
                " header."
            ) from exc
    if not parsed.username.isascii():
        raise ComposeError(
            f"The address of {whose}, {email!r}, has non-ASCII characters before the @, which"
            " a draft header cannot carry; use another address for this person."
        )
    return Address(username=parsed.username, domain=domain).addr_spec


def _phrase(name: str) -> str:
    """A display name as an RFC 5322 phrase: an atom, a quoted string or one encoded word.

    One encoded word (not several) because parsers disagree on the space between adjacent
    encoded words in a phrase; `name` is short (clipped), so the header stays well under 998.
    """
    if "=?" not in name and _ATOM_PHRASE.fullmatch(name):
        return name
    if "=?" not in name and name.isascii():
        return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return Charset("utf-8").header_encode(name)


def _address_header(field: str, name: str, addr: str) -> _EncodedHeader:
    display = _clip(one_line(name), _NAME_LIMIT)
    if not display:
        return _EncodedHeader(field, [addr])
    return _EncodedHeader(field, [_phrase(display), f"<{addr}>"])


def _subject_header(subject: str) -> _EncodedHeader:
    if subject.isascii() and "=?" not in subject:
        return _EncodedHeader("Subject", subject.split(" "))
    encoded = Header(subject, "utf-8", header_name="Subject").encode(linesep="\n")
    return _EncodedHeader("Subject", [line.strip() for line in encoded.split("\n")])


def clean_message_id(value: str) -> str:
    """A Message-ID reduced to printable ASCII within angle brackets, or "" if nothing is left."""
    core = _MSGID_CHARS.sub("", value)
    return f"<{core}>" if core else ""


def render(
    kind: DraftKind,
    interview: InterviewRow,
    recipient: Person,
    account: AccountSettings,
    *,
    seq: int = 1,
    in_reply_to: str = "",
    references: Sequence[str] = (),
    thread_subject: str = "",
    now: datetime | None = None,
    written_at: datetime | None = None,
) -> DraftMessage:
    """Render one draft to `recipient` and build its RFC 5322 message.

    `written_at` is the moment the letter speaks from ("this afternoon", "yesterday"); the
    engine passes the draft's due time so every pass renders the same words. It defaults to
    `now`, else the end of the interview.
    """
    kind = DraftKind(kind)
    to_addr = _addr_spec(
        recipient.email, whose=f"interviewer {one_line(recipient.name) or recipient.email}"
    )
    from_addr = _addr_spec(account.address, whose=f"account {account.name!r}")
    parent = clean_message_id(in_reply_to)
    refs = [r for r in (clean_message_id(x) for x in references) if r]
    if parent and parent not in refs:
        refs.append(parent)

    subject = default_subject(kind, interview, in_reply_to=parent, thread_subject=thread_subject)
    env = _environment(account.templates_dir)
    context = _context(
        interview, recipient, account, seq=seq, subject=subject,
        written_at=written_at or now, threaded=bool(parent),
    )
    try:
        output = _render_template(env, TEMPLATE_NAMES[kind], context)
    except ComposeError as exc:
        raise ComposeError(
            f"Account {account.name!r}: the {kind.value.replace('_', '-')} template could not"
            f" be rendered ({exc}). Fix the template, or remove it to use the built-in one."
        ) from exc
    subject, body = _split_subject(output, context["subject"])

    # The id is derived from the addresses as the ledger holds them (not their normalised
    # header form), so a planner that computes the id up front gets the same one.
    mid = message_id(account.address, interview.key, recipient.email, kind, seq)
    zone = _zone(account.policy.timezone)
    when = _aware(now if now is not None else interview.end).astimezone(zone)

    msg = EmailMessage(policy=email_policy.SMTP)
    msg["From"] = _address_header("From", account.display_name, from_addr)
    msg["To"] = _address_header("To", recipient.name, to_addr)
    msg["Subject"] = _subject_header(subject)
    msg["Date"] = _EncodedHeader("Date", [format_datetime(when)])
    msg["Message-ID"] = _EncodedHeader("Message-ID", [mid])
    if parent:
        msg["In-Reply-To"] = _EncodedHeader("In-Reply-To", [parent])
    if refs:
        msg["References"] = _EncodedHeader("References", refs)
    msg["X-Mailbridge-Kind"] = _EncodedHeader("X-Mailbridge-Kind", [kind.value])
    text = body or "\n"
    cte = "7bit" if text.isascii() and all(len(x) <= 998 for x in text.split("\n")) else None
    msg.set_content(text, subtype="plain", charset="utf-8", cte=cte or "quoted-printable")
    raw = msg.as_bytes()

    return DraftMessage(
        kind=kind,
        message_id=mid,
        sender=Person(from_addr, _clip(one_line(account.display_name), _NAME_LIMIT)),
        to=Person(to_addr, _clip(one_line(recipient.name), _NAME_LIMIT)),
        subject=subject,
        body=body,
        raw=raw,
        in_reply_to=parent,
        references=tuple(refs),
        content_hash=fingerprint(subject, [to_addr], body),
        gaps=find_gaps(body),
    )


__all__ = [
    "DEFAULT_TEMPLATES_DIR",
    "GAP_PATTERN",
    "TEMPLATE_FIELDS",
    "TEMPLATE_NAMES",
    "ComposeError",
    "and_list",
    "check_templates",
    "clean_message_id",
    "clean_text",
    "default_subject",
    "draft_message_ids",
    "find_gaps",
    "fingerprint",
    "first_name",
    "follow_up_subject",
    "gap",
    "greeting_name",
    "is_team",
    "job_phrase",
    "notes_for",
    "sentence",
    "time_words",
    "variant",
    "message_id",
    "name_key",
    "one_line",
    "render",
    "template_environment",
    "thank_you_subject",
]
