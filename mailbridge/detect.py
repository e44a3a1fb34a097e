"""Detection: is this calendar event a job interview the user attends as a candidate?

Pure functions over `model.Event`: no I/O, no clock. `detect` answers with a `Detection` that
says why (or why not) in one plain sentence, which interviewers to write to, who leads, and
every attendee it skipped with the reason (the engine writes those to the audit log).

The rules, in the order they are applied:

1. an exclude keyword (configured, or a built-in internal hiring event such as a candidate
   debrief or interviewer training) wins over everything;
2. an interview keyword in the title or description is required; events arranged by an
   applicant-tracking system also count with a softer word ("call", "chat", "screening", ...);
3. cancelled, declined by the user, all-day, too many people, recurring (unless allowed);
4. a meeting of the user's own organisation is never an interview *of the user*: when the
   organizer or any remaining interviewer is a colleague, the user is the interviewer;
5. attendee hygiene leaves at least one external interviewer.
"""

from __future__ import annotations

import contextlib
import html
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from mailbridge import domains
from mailbridge.model import Attendee, AttendeeKind, Event, EventStatus, Person, Response
from mailbridge.settings import DetectionRules

# Reasons an attendee is skipped; the engine writes them to the audit log.
SKIP_YOU = "you"
SKIP_INVALID = "not an email address"
SKIP_RESOURCE = "room or resource"
SKIP_DECLINED = "declined"
SKIP_ROBOT = "no-reply robot"
SKIP_SCHEDULER = "scheduling system"
SKIP_GROUP = "group list"
SKIP_FREE_MAIL = "free-mail address"


@dataclass(frozen=True)
class Skipped:
    email: str
    reason: str


@dataclass(frozen=True)
class Detection:
    is_interview: bool
    reason: str  # one plain sentence: why it is, or why it is not, an interview
    company: str = ""
    role: str = ""
    attendees: tuple[Person, ...] = ()  # the interviewers kept, in event order
    lead: Person | None = None
    skipped: tuple[Skipped, ...] = ()
    employer_domains: tuple[str, ...] = ()  # registrable domains of the kept interviewers
    company_reason: str = ""  # where `company` came from, for `status`


def default_org_domains(address: str) -> tuple[str, ...]:
    """The user's own organisation: the registrable domain of their address, unless free mail."""
    email = _clean_email(address)
    if "@" not in email or domains.is_free_mail(email):
        return ()
    domain = domains.registrable_domain(email)
    return (domain,) if domain else ()


def detect(
    event: Event,
    own_addresses: Sequence[str],
    org_domains: Sequence[str],
    rules: DetectionRules,
    lead_override: str | None = None,
) -> Detection:
    """Judge one event. Never raises: odd input yields a non-interview with a reason."""
    try:
        return judge(event, own_addresses, org_domains, rules, lead_override)
    except Exception as exc:  # noqa: BLE001 - one unreadable event must not stop a reconcile
        return Detection(
            False, f"the event could not be read as an interview ({type(exc).__name__})"
        )


def judge(
    event: Event,
    own_addresses: Sequence[str],
    org_domains: Sequence[str],
    rules: DetectionRules,
    lead_override: str | None = None,
) -> Detection:
    """`detect` without the safety net, so that tests see any failure."""
    title = _clean_text(event.title)
    description = _plain_description(event.description)
    shown = _quote(title)
    own = set(domains.own_keys(_clean_email(a) for a in (own_addresses or ())))
    orgs = _org_domains(org_domains)
    attendees = tuple(a for a in (event.attendees or ()) if isinstance(a, Attendee))

    # 1. Exclusions by keyword win over everything.
    excluded = _first_match(rules.exclude_keywords, title) or _first_match(
        rules.exclude_keywords, description
    )
    if excluded:
        return Detection(False, f"{shown} matches the exclude keyword {_quote(excluded)}.")
    internal = _INTERNAL_EVENT.search(title)
    if internal:
        return Detection(
            False,
            f"{shown} looks like an internal hiring event ({internal.group(0).lower()}), "
            "not an interview you attend as a candidate.",
        )

    # 2. An interview keyword, or a scheduling system with a softer word.
    keyword = _first_match(rules.keywords, title)
    where = "in its title"
    if keyword is None:
        keyword = _first_match(rules.keywords, description)
        where = "in its description"
    if keyword is None and _arranged_by_hiring_system(event, attendees):
        soft = _SOFT_KEYWORD.search(title)
        if soft:
            keyword = soft.group(0).lower()
            where = "in the title of a hiring-system invitation"
    if keyword is None:
        return Detection(False, f"{shown} has no interview keyword in its title or description.")

    # 3. Plain exclusions.
    if event.status == EventStatus.CANCELLED:
        return Detection(False, f"{shown} was cancelled.")
    if _user_declined(attendees, own):
        return Detection(False, f"You declined {shown}.")
    if event.all_day:
        return Detection(False, f"{shown} is an all-day event, not a meeting.")
    if event.recurring and not rules.include_recurring:
        return Detection(
            False, f"{shown} is part of a recurring series and include_recurring is off."
        )
    people = _head_count(attendees)
    if people > rules.max_attendees:
        return Detection(
            False,
            f"{shown} has {people} people on it, more than max_attendees ({rules.max_attendees}).",
        )

    # 4. Meetings of the user's own organisation: the user is the interviewer there.
    organizer = _organizer(event, attendees)
    if organizer is not None and orgs and domains.same_organisation(organizer.email, orgs):
        return Detection(
            False,
            f"{shown} is organised by {organizer.email} inside your own organisation, "
            "so you are the interviewer, not the candidate.",
        )

    # 5. Attendee hygiene.
    kept, skipped = _hygiene(organizer, attendees, own, rules.allow_free_mail)
    colleague = next((p for p in kept if orgs and domains.same_organisation(p.email, orgs)), None)
    if colleague is not None:
        return Detection(
            False,
            f"{shown} includes {colleague.email} from your own organisation, "
            "so you are the interviewer, not the candidate.",
            skipped=tuple(skipped),
        )
    if not kept:
        return Detection(False, _nobody_left(shown, skipped), skipped=tuple(skipped))

    employer = _unique(
        d
        for d in (domains.registrable_domain(p.email) for p in kept)
        if d and not domains.is_free_mail(d)
    )
    lead, override_note = _choose_lead(kept, organizer, lead_override)
    tokens = _person_tokens(organizer, attendees, own)
    company, company_reason = _infer_company(title, organizer, lead, employer, tokens)
    role = _infer_role(title, description)
    count = len(kept)
    reason = (
        f"{shown} matches the keyword {_quote(keyword)} {where} and has "
        f"{count} external interviewer{'s' if count != 1 else ''}{override_note}."
    )
    return Detection(
        True,
        reason,
        company=company,
        role=role,
        attendees=tuple(kept),
        lead=lead,
        skipped=tuple(skipped),
        employer_domains=employer,
        company_reason=company_reason,
    )


# --- keywords ---------------------------------------------------------------------------

# Words that commonly take "-ing" in titles ("Interviewing with Acme", "phone screening").
_ING_OK = frozenset({"interview", "screen"})


@lru_cache(maxsize=512)
def _keyword_pattern(keyword: str) -> re.Pattern[str] | None:
    """Word-boundary aware: "panel" matches "Panel" and "panels", never "panelling"."""
    tokens = [t for t in re.split(r"[\s\-_]+", _normalise(keyword).strip()) if t]
    if not tokens:
        return None
    body = r"[\s\-_]+".join(re.escape(t) for t in tokens)
    start = r"(?<!\w)" if re.match(r"\w", tokens[0]) else ""
    last = tokens[-1]
    end = ""
    if re.search(r"\w$", last):
        suffix = "(?:s|es|ing)?" if last.casefold() in _ING_OK else "(?:s|es)?"
        end = suffix + r"(?!\w)"
    return re.compile(start + body + end, re.IGNORECASE)


def keyword_in(text: str, keywords: Iterable[str]) -> str | None:
    """The first of `keywords` found in `text` (case-insensitive, whole words), or None."""
    return _first_match(tuple(k for k in keywords if isinstance(k, str)), _clean_text(text))


def _first_match(keywords: Iterable[str], text: str) -> str | None:
    if not text:
        return None
    for keyword in keywords or ():
        if not isinstance(keyword, str):
            continue
        pattern = _keyword_pattern(keyword)
        if pattern is not None and pattern.search(text):
            return keyword
    return None


# Internal hiring events: the user is on the hiring side. Matched in the title only, since an
# employer's own invitation text may mention a debrief or training in passing.
_INTERNAL_EVENT = re.compile(
    r"(?<!\w)(?:(?:candidate\s+|interview\s+|hiring\s+)?debrief(?:ing)?"
    r"|interview(?:er)?s?\s+(?:training|calibration|shadow(?:ing)?|prep(?:aration)?|sync)"
    r"|reverse[\s\-]+shadow(?:ing)?|shadow(?:ing)?\s+interview\w*"
    r"|hiring\s+(?:committee|sync|review)|candidate\s+(?:review|sync|discussion)"
    r"|intake\s+(?:meeting|call|session)|interview\s+(?:kick-?off|planning))(?!\w)",
    re.IGNORECASE,
)

# In an invitation from a hiring system (Greenhouse, GoodTime, Ashby, ...), these words are
# enough; a general-purpose booking page (Calendly) needs a real interview keyword.
_SOFT_KEYWORD = re.compile(
    r"(?<!\w)(?:screen(?:ing)?|chat|call|conversation|meeting|intro(?:duction|ductory)?|"
    r"assessment|loop|round|session)(?!\w)",
    re.IGNORECASE,
)
_GENERAL_SCHEDULERS = frozenset({"calendly.com"})


def _arranged_by_hiring_system(event: Event, attendees: Sequence[Attendee]) -> bool:
    addresses = [_clean_email(a.email) for a in attendees]
    if event.organizer is not None:
        addresses.append(_clean_email(event.organizer.email))
    return any(
        domains.is_ats(a) and domains.registrable_domain(a) not in _GENERAL_SCHEDULERS
        for a in addresses
        if "@" in a
    )


# --- people -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    email: str
    name: str
    kind: AttendeeKind
    response: Response
    is_self: bool


def _user_declined(attendees: Sequence[Attendee], own: set[str]) -> bool:
    return any(
        a.response == Response.DECLINED
        and (a.is_self is True or domains.address_key(_clean_email(a.email)) in own)
        for a in attendees
    )


def _head_count(attendees: Sequence[Attendee]) -> int:
    """People on the invitation; rooms and equipment are not people."""
    seen = {
        _clean_email(a.email).lower()
        for a in attendees
        if a.kind != AttendeeKind.RESOURCE and not domains.is_resource(_clean_email(a.email))
    }
    seen.discard("")
    return len(seen)


def _organizer(event: Event, attendees: Sequence[Attendee]) -> Person | None:
    if event.organizer is not None and isinstance(event.organizer, Person):
        email = _clean_email(event.organizer.email)
        if email:
            return Person(email, _clean_name(event.organizer.name, email))
    for a in attendees:
        if a.is_organizer is True:
            email = _clean_email(a.email)
            if email:
                return Person(email, _clean_name(a.name, email))
    return None


def _hygiene(
    organizer: Person | None,
    attendees: Sequence[Attendee],
    own: set[str],
    allow_free_mail: bool,
) -> tuple[list[Person], list[Skipped]]:
    entries: list[_Entry] = []
    for a in attendees:
        email = _clean_email(a.email)
        kind = a.kind if isinstance(a.kind, AttendeeKind) else AttendeeKind.UNKNOWN
        response = a.response if isinstance(a.response, Response) else Response.UNKNOWN
        entries.append(_Entry(email, _clean_name(a.name, email), kind, response, a.is_self is True))
    # The organizer is an interviewer too: first when not on the attendee list; otherwise
    # their entry only lends a display name the attendee entry lacks.
    if organizer is not None:
        entry = _Entry(
            organizer.email, organizer.name, AttendeeKind.PERSON, Response.UNKNOWN, False
        )
        if organizer.email.lower() in {e.email.lower() for e in entries}:
            entries.append(entry)
        else:
            entries.insert(0, entry)

    # One entry per address (lower-cased); the strongest evidence of all its copies wins, so a
    # duplicate can never turn the user, a room or a declined attendee into an interviewer.
    merged: dict[str, _Entry] = {}
    for entry in entries:
        key = entry.email.lower()
        first = merged.get(key)
        if first is None:
            merged[key] = entry
            continue
        merged[key] = _Entry(
            first.email,
            first.name or entry.name,
            max(first.kind, entry.kind, key=_KIND_STRENGTH.__getitem__),
            Response.DECLINED
            if Response.DECLINED in (first.response, entry.response)
            else first.response,
            first.is_self or entry.is_self,
        )

    kept: list[Person] = []
    skipped: list[Skipped] = []
    for entry in merged.values():
        reason = _skip_reason(entry, own, allow_free_mail)
        if reason:
            skipped.append(Skipped(entry.email, reason))
        else:
            kept.append(Person(entry.email, entry.name))
    return kept, skipped


_KIND_STRENGTH = {
    AttendeeKind.UNKNOWN: 0,
    AttendeeKind.PERSON: 1,
    AttendeeKind.GROUP: 2,
    AttendeeKind.RESOURCE: 3,
}


def _skip_reason(entry: _Entry, own: set[str], allow_free_mail: bool) -> str:
    email = entry.email
    if not _looks_like_address(email):
        return SKIP_INVALID
    if entry.is_self or domains.address_key(email) in own:
        return SKIP_YOU
    if entry.kind == AttendeeKind.RESOURCE or domains.is_resource(email):
        return SKIP_RESOURCE
    if entry.response == Response.DECLINED:
        return SKIP_DECLINED
    if domains.is_robot(email):
        return SKIP_ROBOT
    if domains.is_ats(email):
        return SKIP_SCHEDULER
    if entry.kind == AttendeeKind.GROUP or domains.is_group(email):
        return SKIP_GROUP
    if not allow_free_mail and domains.is_free_mail(email):
        return SKIP_FREE_MAIL
    return ""


def _nobody_left(shown: str, skipped: Sequence[Skipped]) -> str:
    skipped = [s for s in skipped if s.reason != SKIP_YOU]
    if not skipped:
        return f"{shown} has no other attendee to thank."
    listed = ", ".join(f"{s.email} ({s.reason})" for s in skipped[:5])
    more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
    hint = (
        "; set allow_free_mail = true to write to personal addresses"
        if any(s.reason == SKIP_FREE_MAIL for s in skipped)
        else ""
    )
    return f"{shown} has no external interviewer left after skipping {listed}{more}{hint}."


def _choose_lead(
    kept: Sequence[Person], organizer: Person | None, override: str | None
) -> tuple[Person, str]:
    by_email = {p.email.lower(): p for p in kept}
    note = ""
    if isinstance(override, str) and override.strip():
        wanted = _clean_email(override).lower()
        if wanted in by_email:
            return by_email[wanted], ""
        note = f" (the lead override {wanted} is not among them)"
    if organizer is not None and organizer.email.lower() in by_email:
        return by_email[organizer.email.lower()], note
    return kept[0], note


# --- company and role -------------------------------------------------------------------


def _wordset(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Separators between the parts of a title or display name. Hyphen and slash need spaces
# around them so that "Hewlett-Packard" and "AI/ML Engineer" stay whole.
_SEPARATORS = re.compile(
    r"\s+[-/]\s+|\s*[–—|•·]\s*|\s*<>\s*|\s*<->\s*|\s+x\s+|(?<!\d):(?!\d)|[()\[\]{}]"
    r"|\s+(?:with|w/|at|@|for|via|through|bei|mit|chez|avec|con|presso|bij|met|hos|med)\s+"
    r"|\s+w/|\s+@",
    re.IGNORECASE,
)

# Words that say what kind of meeting it is, never who the employer is.
_MEETING_WORDS = _wordset(
    """
    interview interviews interviewing screen screening call chat conversation meeting session
    intro introduction introductory round final first second third fourth 1st 2nd 3rd 4th
    initial technical tech behavioral behavioural culture cultural fit virtual video phone
    zoom teams google meet hangouts webex skype onsite on-site remote panel loop with at and
    the a an of for to via min mins minutes hr hrs hour hours stage part coding system design
    systems assessment challenge review exercise case study presentation pair programming
    whiteboard take-home homework follow-up followup catch-up coffee lunch dinner greet
    recruiter hiring screener re invitation invite updated update new confirmed
    tentative rescheduled reschedule canceled cancelled pst pdt est edt cst cdt mst mdt utc
    gmt bst cet cest ist aest am pm role position opening job candidate debrief 1:1 1-1 one
    on one onsite/virtual day half full time
    vorstellungsgespräch bewerbungsgespräch gespräch kennenlernen entretien d'embauche embauche
    entrevue entrevista de trabajo colloquio sollicitatiegesprek kennismakingsgesprek
    intervista intervju anställningsintervju haastattelu rozmowa kwalifikacyjna
    面接 面試 面试 採用面接 一次面接 二次面接 最終面接 インタビュー 면접
    """
)

# Legal-form words: they belong to the name before them ("Second Co", "Müller GmbH").
_LEGAL_SUFFIXES = _wordset(
    """
    co co. company inc inc. incorporated corp corp. corporation ltd ltd. limited llc llp plc
    gmbh ag kg se sa s.a. sas sarl srl spa s.p.a. bv b.v. nv n.v. ab as asa oy oyj pty kk
    株式会社 有限会社 group holdings
    """
)

# Words that make a phrase a job title rather than a company name.
_ROLE_WORDS = _wordset(
    """
    engineer engineers engineering developer developers programmer manager designer analyst
    scientist director architect consultant specialist coordinator administrator associate
    intern internship lead head officer accountant researcher writer editor representative
    executive technician teacher marketer strategist advisor owner counsel attorney lawyer
    paralegal assistant fellow apprentice operator sre swe sde qa tpm em vp cto ceo cfo coo
    ciso devops sdet
    """
)

_ROLE_LABEL = re.compile(
    r"^\s*(?:role|position|job(?:[ \t]+title)?|title|opening)[ \t]*[:\-–][ \t]*(.+?)[ \t]*$",
    re.IGNORECASE | re.MULTILINE,
)
_FOR_ROLE = re.compile(r"(?<!\w)for\s+(?:the\s+|a\s+|an\s+)?(.+)$", re.IGNORECASE)
_GROUP_SUFFIX = re.compile(
    r"\s+(?:recruiting|recruitment|talent(?:\s+acquisition)?|careers|hiring|hr|people|"
    r"jobs|team|scheduling)(?:\s+team)?\s*$",
    re.IGNORECASE,
)


def _words(text: str) -> list[str]:
    return [w for w in re.split(r"[^\w:/&'+.\-]+", text.casefold()) if w]


def _bare(word: str) -> str:
    return word.strip(".,;:!?'\"-+&/")


def _trim_meeting_words(text: str, keywords: Sequence[str], employer: Sequence[str] = ()) -> str:
    """Remove interview keywords and meeting words at the edges: "Acme Phone Screen" -> "Acme"."""
    for keyword in keywords:
        pattern = _keyword_pattern(keyword) if isinstance(keyword, str) else None
        if pattern is not None:
            text = pattern.sub(" ", text)
    parts = text.split()
    while parts and (_bare(parts[0].casefold()) in _MEETING_WORDS or not _has_letter(parts[0])):
        rest = parts[1:]
        # "Second Co", "First Solar" (firstsolar.com): the word is part of the name.
        if rest and _has_letter(parts[0]) and (
            rest[0].casefold() in _LEGAL_SUFFIXES or _names_domain(" ".join(parts), employer)
        ):
            break
        parts.pop(0)
    while parts and (_bare(parts[-1].casefold()) in _MEETING_WORDS or not _has_letter(parts[-1])):
        parts.pop()
    return " ".join(parts).strip(" \t.,;:!?'\"*#~`")


def _is_role(text: str) -> bool:
    words = {_bare(w) for w in _words(text)}
    return bool(words & _ROLE_WORDS) or "head of" in text.casefold()


def _compact(text: str) -> str:
    return "".join(ch for ch in text.casefold() if ch.isalnum())


_GERMAN_FOLD = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss"})


def _spellings(text: str) -> set[str]:
    """Compact forms a domain may use for a name: "Müller" -> muller, mueller."""
    plain = _compact(text)
    folded = _compact(plain.translate(_GERMAN_FOLD))
    no_marks = "".join(
        ch for ch in unicodedata.normalize("NFKD", plain) if not unicodedata.combining(ch)
    )
    return {plain, folded, no_marks}


def _names_domain(text: str, employer: Sequence[str]) -> bool:
    """`text` spells an employer domain's name exactly: "First Solar" and firstsolar.com."""
    labels = {_compact(_domain_label(d)) for d in employer}
    return bool(_spellings(text) & labels)


def _domain_label(domain: str) -> str:
    return domain.split(".", 1)[0] if domain else ""


def _matches_domain(candidate: str, employer: Sequence[str]) -> bool:
    for name in _spellings(candidate):
        if len(name) < 2:
            continue
        for domain in employer:
            label = _compact(_domain_label(domain))
            if len(label) < 2:
                continue
            if name == label or (
                min(len(name), len(label)) >= 3
                and (name.startswith(label) or label.startswith(name))
            ):
                return True
    return False


def _is_person(candidate: str, person_tokens: set[str]) -> bool:
    words = [_bare(w) for w in _words(candidate)]
    words = [w for w in words if w]
    if not words:
        return False
    return words[0] in person_tokens or all(w in person_tokens for w in words)


_TITLE_KEYWORDS: tuple[str, ...] = (
    "phone screen",
    "phone interview",
    "technical screen",
    "tech screen",
    "screening call",
    "hiring manager",
    "final round",
    "recruiter call",
    "coding challenge review",
    "case interview",
    "interview",
)


def _company_candidates(title: str, employer: Sequence[str]) -> list[str]:
    """Parts of the title that may name the employer.

    A part counts when it matches an employer domain, or when the title has a recognisable
    shape (several parts, or meeting words around a name): a bare title such as "Coffee
    catch-up" names nobody, and the domain is the better guess then.
    """
    segments = [s for s in _SEPARATORS.split(title) if s and s.strip()]
    candidates = []
    for segment in segments:
        text = _trim_meeting_words(segment, _TITLE_KEYWORDS, employer)
        if not text or not _has_letter(text) or _is_role(text):
            continue
        shaped = len(segments) > 1 or text != segment.strip()
        if shaped or _matches_domain(text, employer):
            candidates.append(text)
    return candidates


def _pick(candidates: Sequence[str], employer: Sequence[str], person_tokens: set[str]) -> str:
    for candidate in candidates:
        if _matches_domain(candidate, employer):
            return candidate
    for candidate in candidates:
        if not _is_person(candidate, person_tokens):
            return candidate
    return ""


def _company_from_display_name(name: str) -> list[str]:
    """From a display name: "Jane at Acme", "Acme via Greenhouse", "Acme Recruiting" -> Acme."""
    if not name:
        return []
    out: list[str] = []
    via = re.match(r"^(.+?)\s+(?:via|through)\s+", name, re.IGNORECASE)
    if via:
        out.append(via.group(1))
    group = _GROUP_SUFFIX.search(name)
    if group and group.start() > 0:
        out.append(name[: group.start()])
    # Everything after the first separator: the first part is the person's own name.
    parts = [p for p in _SEPARATORS.split(name) if p and p.strip()]
    out.extend(parts[1:])
    cleaned = []
    for candidate in out:
        candidate = _GROUP_SUFFIX.sub("", candidate)
        text = _trim_meeting_words(candidate, ())
        if text and _has_letter(text) and not _is_role(text) and _compact(text) not in _ATS_NAMES:
            cleaned.append(text)
    return cleaned


# Brand names of scheduling systems: "Acme via Greenhouse" names Acme, never Greenhouse.
_ATS_NAMES = frozenset(_compact(_domain_label(d)) for d in domains.ATS_DOMAINS) | {"goodtime"}


def company_from_domain(domain: str) -> str:
    """A readable company name from a registrable domain: northwind-robotics.com -> Northwind
    Robotics; ibm.com -> IBM."""
    label = _domain_label(domains.registrable_domain(domain) if domain else "")
    if label.startswith("xn--"):
        with contextlib.suppress(UnicodeError):
            label = label.encode("ascii").decode("idna")
    words = [w for w in re.split(r"[-_]+", label) if w]
    if len(words) == 1 and len(words[0]) <= 3 and words[0].isalpha():
        return words[0].upper()  # ibm.com, sap.com: most short names are initials
    return " ".join(w[:1].upper() + w[1:] for w in words)


def _infer_company(
    title: str,
    organizer: Person | None,
    lead: Person | None,
    employer: Sequence[str],
    person_tokens: set[str],
) -> tuple[str, str]:
    """The employer's name and where it came from, strongest evidence first.

    A part of the title that spells an employer domain is confirmed twice; then the
    organisation in the organizer's (or lead's) display name; then a title that has a
    company-shaped part; last, the employer's registrable domain turned into a name.
    """
    candidates = _company_candidates(title, employer)
    for candidate in candidates:
        if _matches_domain(candidate, employer):
            return _shorten(candidate, 80), "the event title, matching the interviewers' domain"
    for person in (organizer, lead):
        if person is not None:
            found = _pick(_company_from_display_name(person.name), employer, person_tokens)
            if found:
                return _shorten(found, 80), f"the organisation in {person.email}'s display name"
    found = _pick(candidates, employer, person_tokens)
    if found:
        return _shorten(found, 80), "the event title"
    domain = ""
    if lead is not None and not domains.is_free_mail(lead.email):
        domain = domains.registrable_domain(lead.email)
    if not domain and employer:
        domain = employer[0]
    if domain:
        return _shorten(company_from_domain(domain), 80), f"the interviewers' domain {domain}"
    return "", "nothing in the event names the employer"


def _infer_role(title: str, description: str) -> str:
    # "... for Senior Engineer" in the title.
    for segment in re.split(r"\s+[-/]\s+|\s*[–—|•·()\[\]]\s*|(?<!\d):(?!\d)", title):
        match = _FOR_ROLE.search(segment)
        if match:
            role = _trim_meeting_words(match.group(1), _TITLE_KEYWORDS)
            if role and _is_role(role):
                return _shorten(role, 120)
    # "Senior Engineer Interview": a title part that names a job.
    for segment in _SEPARATORS.split(title):
        if segment:
            role = _trim_meeting_words(segment, _TITLE_KEYWORDS)
            if role and _is_role(role):
                return _shorten(role, 120)
    # "Role: ..." / "Position: ..." in the description.
    for label in _ROLE_LABEL.finditer(description):
        role = label.group(1).strip(" \t.,;*#~`'\"")
        if role and _has_letter(role):
            return _shorten(role, 120)
    return ""


def _person_tokens(
    organizer: Person | None, attendees: Sequence[Attendee], own: set[str]
) -> set[str]:
    """Name fragments of the people on the event, so "Interview with Jane" is not a company."""
    tokens: set[str] = set()
    people: list[tuple[str, str]] = [(_clean_email(a.email), a.name) for a in attendees]
    if organizer is not None:
        people.append((organizer.email, organizer.name))
    people.extend((address, "") for address in own)
    for email, raw_name in people:
        if domains.is_robot(email) or domains.is_group(email) or domains.is_ats(email):
            continue
        label = _compact(_domain_label(domains.registrable_domain(email))) if "@" in email else ""
        name = _clean_name(raw_name, email)
        if name and not _GROUP_SUFFIX.search(name) and not re.search(r"(?i)\svia\s", name):
            first = next((p for p in _SEPARATORS.split(name) if p and p.strip()), "")
            tokens.update(w for w in (_bare(x) for x in _words(first)) if len(w) >= 2)
        local = domains.local_part(email).casefold() if "@" in email else ""
        tokens.update(w for w in re.split(r"[^\w]+|_|\d+", local) if len(w) >= 2 and w != label)
    return tokens - _MEETING_WORDS


# --- text hygiene -----------------------------------------------------------------------

_INVISIBLE = re.compile(r"[\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff\u00ad]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _normalise(text: str) -> str:
    return _INVISIBLE.sub("", unicodedata.normalize("NFKC", text))


def _clean_text(value: object) -> str:
    if not isinstance(value, str):
        return ""
    return re.sub(r"\s+", " ", _CONTROL.sub(" ", _normalise(value))).strip()


def _plain_description(value: object) -> str:
    """Descriptions arrive as plain text or HTML; keep the lines, drop the markup."""
    if not isinstance(value, str):
        return ""
    text = re.sub(r"(?i)<\s*(?:br|/p|/div|/li|/h\d)\s*/?\s*>", "\n", value[:100_000])
    text = html.unescape(re.sub(r"<[^>]{0,2000}>", " ", text))
    lines = (
        re.sub(r"[^\S\n]+", " ", _CONTROL.sub(" ", line)).strip()
        for line in _normalise(text).splitlines()
    )
    return "\n".join(line for line in lines if line)


def _clean_email(value: object) -> str:
    if not isinstance(value, str):
        return ""
    email = _normalise(value).strip().strip("<>\"' \t")
    if email[:7].lower() == "mailto:":
        email = email[7:]
    return _CONTROL.sub("", email).strip()


def _looks_like_address(email: str) -> bool:
    local, at, domain = email.rpartition("@")
    return bool(at and local and domain) and not re.search(r"[\s<>,;()\[\]]", email)


def _clean_name(value: object, email: str) -> str:
    name = _clean_text(value).strip("\"' ")
    if not name or name.casefold() == email.casefold():
        return ""
    return name


def _org_domains(org_domains: Sequence[str]) -> tuple[str, ...]:
    found = []
    for value in org_domains or ():
        if not isinstance(value, str):
            continue
        domain = domains.registrable_domain(_clean_email(value).lower().lstrip("@"))
        # A personal mailbox provider is nobody's organisation.
        if domain and not domains.is_free_mail(domain):
            found.append(domain)
    return _unique(found)


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def _has_letter(text: str) -> bool:
    return any(ch.isalpha() for ch in text)


def _quote(text: str) -> str:
    return f'"{_shorten(text, 80)}"' if text else "(untitled event)"


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
