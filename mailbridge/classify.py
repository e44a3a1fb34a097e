"""Classify inbound and sent mail, find out-of-office return dates, match mail to interviews.

Pure functions over `MailHeaders`: no I/O, no clock. Only a human reply from the employer
retracts a follow-up, so the rules below lean on structure (DSN reports, calendar parts,
RFC 3834 and vendor headers) first and on wording (subjects, body phrases) second.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from mailbridge import domains
from mailbridge.mailparse import parse_addresses
from mailbridge.model import Classification, Folder, MailHeaders, MessageKind, Person

# --- wording -------------------------------------------------------------------------------

# Subject prefixes of out-of-office replies. Exchange localises "Automatic reply:" and uses it
# for its OOF feature only, so each of these names an absence.
_OOO_SUBJECT = re.compile(
    r"^\s*(?:automatic\s+reply|out\s+of\s+(?:the\s+)?office(?:\s+reply)?|ooo|away|"
    r"vacation(?:\s+reply)?|on\s+vacation|autosvar|automatiskt?\s+svar|automatisch\s+antwoord|"
    r"abwesenheitsnotiz|automatische\s+antwort|r[ée]ponse\s+automatique|"
    r"respuesta\s+autom[áa]tica|risposta\s+automatica|resposta\s+autom[áa]tica|"
    r"automaattinen\s+vastaus|automatyczna\s+odpowied[źz]|odpowied[źz]\s+automatyczna)\s*:",
    re.IGNORECASE,
)
# Subject prefixes of automatic replies that do not by themselves say the person is away.
_AUTO_SUBJECT = re.compile(
    r"^\s*(?:auto(?:matic)?[-\s]?(?:reply|response|responder)|autoreply|auto)\s*:",
    re.IGNORECASE,
)
# Invitations, updates, responses and cancellations, as calendar systems title them. Only at the
# very start: "Re: Invitation: ..." is a person answering an invitation.
_CALENDAR_SUBJECT = re.compile(
    r"^\s*(?:invitation|updated\s+invitation(?:\s+with\s+note)?|invitation\s+from\s+google\s+"
    r"calendar|accepted|declined|tentatively\s+accepted|tentative|canceled|cancelled|"
    r"canceled\s+event|cancelled\s+event|event\s+canceled|event\s+cancelled|new\s+event|"
    r"updated\s+event|new\s+time\s+proposed|proposed\s+new\s+time|"
    r"einladung|aktualisierte\s+einladung|angenommen|abgelehnt|mit\s+vorbehalt\s+angenommen|"
    r"abgesagt|invitation\s+mise\s+[àa]\s+jour|accept[ée]|refus[ée]|annul[ée]|"
    r"invitaci[óo]n|aceptado|rechazado|cancelado)\s*:",
    re.IGNORECASE,
)
_BOUNCE_SUBJECT = re.compile(
    r"^\s*(?:undeliverable|undelivered\s+mail|delivery\s+status\s+notification\s*\(failure\)|"
    r"mail\s+delivery\s+(?:failed|failure|subsystem)|delivery\s+(?:has\s+)?failed|"
    r"delivery\s+failure|failure\s+notice|returned\s+mail|message\s+not\s+delivered|"
    r"unzustellbar|nicht\s+zustellbar|non\s+remis|no\s+se\s+puede\s+entregar)",
    re.IGNORECASE,
)
_DELAY_SUBJECT = re.compile(
    r"delivery\s+status\s+notification\s*\(delay\)|delivery\s+delayed|delayed\s+mail|"
    r"message\s+delayed|warning:.{0,40}delayed",
    re.IGNORECASE,
)
# Phrases of an absence notice. Present tense and first person, so "I was out last week" in a
# real reply does not count.
_OOO_TEXT = re.compile(
    r"\b(?:i\s*am|i['’]m|i\s+will\s+be|i['’]ll\s+be|i\s+shall\s+be)\s+(?:currently\s+|now\s+)?"
    r"(?:out\s+of\s+(?:the\s+)?office|ooo|away|on\s+(?:vacation|holiday|holidays|leave|"
    r"annual\s+leave|parental\s+leave|maternity\s+leave|paternity\s+leave|pto|sabbatical|"
    r"a\s+business\s+trip)|travell?ing|out\s+(?:until|till|through|on|from)|off\s+(?:until|till))"
    r"|\bout\s+of\s+(?:the\s+)?office\s+(?:until|till|through|from|and|with|on)\b"
    r"|\bthis\s+is\s+an\s+auto(?:matic|mated)?[-\s]?(?:reply|response|generated)"
    r"|\bich\s+bin\s+(?:derzeit\s+|zurzeit\s+|bis\s+)?(?:nicht\s+im\s+b[üu]ro|abwesend|im\s+urlaub)"
    r"|\bje\s+suis\s+(?:actuellement\s+)?absente?"
    r"|\bestoy\s+(?:fuera\s+de\s+la\s+oficina|de\s+vacaciones)",
    re.IGNORECASE,
)
# Second signs that a text is an absence notice rather than a person who mentions being away.
_OOO_CONFIRM = re.compile(
    r"\b(?:limited|no|intermittent|occasional)\s+access\s+to\s+(?:my\s+)?e-?mails?"
    r"|\b(?:respond|reply|get\s+back\s+to\s+you|answer)\b[^.!?]{0,40}\b(?:when|upon|after|once)\s+"
    r"(?:i\s+(?:return|am\s+back|get\s+back)|my\s+return)"
    r"|\bfor\s+(?:urgent|immediate)\s+(?:matters|requests|assistance|issues)"
    r"|\bin\s+my\s+absence\b|\bthis\s+is\s+an\s+auto(?:matic|mated)"
    r"|\bautomatic\s+reply\b|\bauto-?reply\b",
    re.IGNORECASE,
)

# --- addresses ------------------------------------------------------------------------------

_MAIL_SYSTEM_LOCAL = re.compile(
    r"^(?:mailer[-_.]?daemon|postmaster|mail[-_.]?delivery[-_.]?(?:subsystem|system)?|"
    r"microsoftexchange[0-9a-f]{32})$",
    re.IGNORECASE,
)
_CALENDAR_ROBOTS = frozenset(
    {
        "calendar-notification@google.com",
        "calendar-server.bounces.google.com",
        "noreply@calendar.google.com",
        "calendar@icloud.com",
        "noreply@email.apple.com",
    }
)
_VIA = re.compile(r"\bvia\b|\(.+\)", re.IGNORECASE)


def _main_type(value: str) -> str:
    return value.split(";", 1)[0].strip().lower()


def _param(value: str, name: str) -> str:
    found = re.search(rf"\b{name}\s*=\s*\"?([^\";\s]+)", value, re.IGNORECASE)
    return found.group(1).lower() if found else ""


# --- classification -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Facts:
    """What the rules look at, read once from the message."""

    message: MailHeaders
    own: tuple[str, ...]
    subject: str
    text: str  # subject and excerpt, for wording rules
    content_type: str
    part_types: frozenset[str]
    auto_submitted: str  # the first token, lower-cased; "" or "no" for mail a person sent
    precedence: str
    null_return_path: bool
    threaded: bool

    def has(self, name: str) -> bool:
        return bool(self.message.header(name).strip())


def _facts(message: MailHeaders, own_addresses: Sequence[str]) -> _Facts:
    ctype = message.header("content-type")
    parts = set(message.part_types)
    if ctype:
        parts.add(_main_type(ctype))
    return _Facts(
        message=message,
        own=tuple(own_addresses),
        subject=message.subject.strip(),
        text=f"{message.subject}\n{message.excerpt}",
        content_type=ctype.lower(),
        part_types=frozenset(parts),
        auto_submitted=message.header("auto-submitted").split(";", 1)[0].strip().lower(),
        precedence=message.header("precedence").strip().lower(),
        null_return_path=message.header("return-path").replace(" ", "") == "<>",
        threaded=bool(message.in_reply_to or message.references),
    )


Rule = Callable[[_Facts], Classification | None]


def _own(f: _Facts) -> Classification | None:
    if f.message.folder == Folder.SENT:
        return Classification(MessageKind.OWN, "own: in the Sent folder")
    if domains.is_own_address(f.message.sender.email, f.own):
        return Classification(
            MessageKind.OWN, f"own: from the user's own address {f.message.sender.email}"
        )
    return None


def _spam(f: _Facts) -> Classification | None:
    if "SPAM" in f.message.hint("gmail.label"):
        return Classification(MessageKind.BULK, "bulk: Gmail put it in Spam")
    if any(k.lower() in ("$junk", "junk") for k in f.message.hint("imap.keyword")):
        return Classification(MessageKind.BULK, "bulk: the mail server flagged it as junk")
    if f.message.header("x-spam-flag").strip().lower().startswith("yes"):
        return Classification(MessageKind.BULK, "bulk: marked as spam (X-Spam-Flag: YES)")
    if f.message.header("x-spam-status").strip().lower().startswith("yes"):
        return Classification(MessageKind.BULK, "bulk: marked as spam (X-Spam-Status: Yes)")
    scl = f.message.header("x-ms-exchange-organization-scl").strip()
    if not scl:
        found = re.search(r"\bSCL:(-?[0-9]+)", f.message.header("x-forefront-antispam-report"))
        scl = found.group(1) if found else ""
    # ASCII digits only: "²".isdigit() is true, and int() refuses it.
    if re.fullmatch(r"-?[0-9]{1,3}", scl) and int(scl) >= 5:
        return Classification(MessageKind.BULK, f"bulk: marked as spam by Exchange (SCL {scl})")
    return None


def _mail_system_sender(f: _Facts) -> bool:
    sender = f.message.sender
    local = domains.local_part(sender.email)
    return bool(
        _MAIL_SYSTEM_LOCAL.match(local)
        or re.match(r"^mail delivery (?:subsystem|system)$", sender.name, re.IGNORECASE)
    )


def _bounce(f: _Facts) -> Classification | None:
    report_type = _param(f.content_type, "report-type")
    if (
        _main_type(f.content_type) == "multipart/report"
        and report_type == "disposition-notification"
    ):
        return Classification(
            MessageKind.AUTO_REPLY, "automatic: read receipt (disposition notification)"
        )
    if "message/delivery-status" in f.part_types or report_type == "delivery-status":
        if _DELAY_SUBJECT.search(f.subject):
            return Classification(
                MessageKind.AUTO_REPLY, "automatic: delivery delayed, not failed (delivery report)"
            )
        return Classification(
            MessageKind.BOUNCE, "bounce: delivery status report (multipart/report)"
        )
    system = _mail_system_sender(f)
    failed = f.has("x-failed-recipients")
    if (system or f.null_return_path) and (failed or _BOUNCE_SUBJECT.search(f.subject)):
        if _DELAY_SUBJECT.search(f.subject):
            return Classification(MessageKind.AUTO_REPLY, "automatic: delivery delayed, not failed")
        who = f.message.sender.email or "the null sender"
        evidence = "X-Failed-Recipients" if failed else f"subject {f.subject[:60]!r}"
        return Classification(MessageKind.BOUNCE, f"bounce: from mail system {who} with {evidence}")
    if system and _DELAY_SUBJECT.search(f.subject):
        return Classification(MessageKind.AUTO_REPLY, "automatic: delivery delayed, not failed")
    if _BOUNCE_SUBJECT.search(f.subject):
        # A bounce subject with no report, no mail-system sender and no null Return-Path is what
        # phishing looks like; it must never mark an interviewer's address as dead.
        return Classification(
            MessageKind.BULK,
            "bulk: bounce-like subject without a delivery report or a mail-system sender",
        )
    return None


# Graph turns an invitation, update, cancellation or response into an eventMessage (its
# @odata.type) and says which one in meetingMessageType; the text/calendar part is not shown.
_GRAPH_EVENT_TYPES = frozenset(
    {
        "#microsoft.graph.eventmessage",
        "#microsoft.graph.eventmessagerequest",
        "#microsoft.graph.eventmessageresponse",
    }
)


def _calendar(f: _Facts) -> Classification | None:
    if "text/calendar" in f.part_types or "application/ics" in f.part_types:
        method = _param(f.content_type, "method")
        detail = f" (method {method.upper()})" if method else ""
        return Classification(MessageKind.CALENDAR, f"calendar: has a text/calendar part{detail}")
    meeting = [m for m in f.message.hint("graph.meetingMessageType") if m.lower() != "none"]
    if meeting:
        return Classification(
            MessageKind.CALENDAR, f"calendar: the mailbox reports a meeting message ({meeting[0]})"
        )
    if any(t.lower() in _GRAPH_EVENT_TYPES for t in f.message.hint("graph.type")):
        return Classification(
            MessageKind.CALENDAR, "calendar: the mailbox reports an event message"
        )
    if "calendarmessage" in f.message.header("content-class").lower():
        return Classification(MessageKind.CALENDAR, "calendar: Exchange calendar message class")
    if f.has("x-ms-exchange-calendar-series-instance-id"):
        return Classification(MessageKind.CALENDAR, "calendar: Exchange meeting series header")
    for name in ("sender", "from"):
        people = (
            (f.message.sender,) if name == "from" else parse_addresses([f.message.header(name)])
        )
        for person in people:
            if person.email in _CALENDAR_ROBOTS:
                return Classification(
                    MessageKind.CALENDAR, f"calendar: sent by calendar robot {person.email}"
                )
    if _CALENDAR_SUBJECT.match(f.subject):
        prefix = f.subject.split(":", 1)[0].strip()
        return Classification(MessageKind.CALENDAR, f"calendar: subject starts with {prefix!r}")
    return None


def _automatic_evidence(f: _Facts) -> str:
    """Why the message looks machine-sent, or "" when nothing says so."""
    if f.auto_submitted and f.auto_submitted != "no":
        return f"Auto-Submitted: {f.auto_submitted}"
    for name in (
        "x-autoreply",
        "x-autorespond",
        "x-autoresponder",
        "x-auto-reply",
        "x-autogenerated",
    ):
        value = f.message.header(name).strip().lower()
        if value and value not in ("no", "false", "0"):
            return f"{name} header"
    if f.has("x-ms-exchange-inbox-rules-loop"):
        return "Exchange autoreply header (X-MS-Exchange-Inbox-Rules-Loop)"
    if f.has("x-ms-exchange-generated-message-source"):
        return "Exchange generated-message header"
    if f.has("x-ms-exchange-organization-autoreplied"):
        return "Exchange autoreplied header"
    if f.precedence in ("auto_reply", "auto-reply"):
        return f"Precedence: {f.precedence}"
    if _OOO_SUBJECT.match(f.subject):
        return f"subject {f.subject.split(':', 1)[0].strip()!r}"
    if _AUTO_SUBJECT.match(f.subject):
        return f"subject {f.subject.split(':', 1)[0].strip()!r}"
    if f.null_return_path and f.has("x-auto-response-suppress"):
        return "null Return-Path with X-Auto-Response-Suppress"
    return ""


def _automatic(f: _Facts) -> Classification | None:
    evidence = _automatic_evidence(f)
    if evidence:
        # Notices about bulk mail are bulk, not replies; the generic auto-generated mail of a
        # service with list headers is bulk as well.
        if f.auto_submitted == "auto-generated" and f.has("list-unsubscribe"):
            return Classification(
                MessageKind.BULK, "bulk: auto-generated mail with List-Unsubscribe"
            )
        away = _OOO_SUBJECT.match(f.subject) or _OOO_TEXT.search(f.text)
        returning = parse_return_date(f.text, f.message.date)
        if away or returning:
            return Classification(
                MessageKind.OUT_OF_OFFICE, f"out-of-office: {evidence}", return_date=returning
            )
        return Classification(MessageKind.AUTO_REPLY, f"automatic: {evidence}")
    # No header says so (iCloud vacation replies thread like a person's reply): the wording has
    # to, twice over, so a person who mentions being away in a real reply is not taken for one.
    excerpt = f.message.excerpt[:400]
    if _OOO_TEXT.search(f.text) and (
        _OOO_CONFIRM.search(excerpt) or parse_return_date(f.text, f.message.date)
    ):
        returning = parse_return_date(f.text, f.message.date)
        return Classification(
            MessageKind.OUT_OF_OFFICE,
            "out-of-office: absence notice wording in the text, without autoreply headers",
            return_date=returning,
        )
    return None


def _ats(f: _Facts) -> Classification | None:
    sender = f.message.sender
    if not domains.is_ats(sender.email):
        return None
    system = domains.registrable_domain(sender.email)
    reply_to = [
        p
        for p in parse_addresses([f.message.header("reply-to")])
        if not domains.is_robot(p.email) and not domains.is_ats(p.email)
    ]
    if reply_to:
        return Classification(
            MessageKind.HUMAN,
            f"human: relayed by applicant-tracking system {system} "
            f"with Reply-To {reply_to[0].email}",
        )
    if _VIA.search(sender.name):
        return Classification(
            MessageKind.HUMAN,
            f"human: relayed by applicant-tracking system {system} for {sender.name!r}",
        )
    if not domains.is_robot(sender.email) and not domains.is_group(sender.email):
        return Classification(
            MessageKind.HUMAN,
            f"human: personal relay address {sender.email} of applicant-tracking system {system}",
        )
    return Classification(
        MessageKind.AUTO_REPLY, f"automatic: notification from applicant-tracking system {system}"
    )


_MARKETING = ("feedback-id", "x-campaign", "x-campaignid", "x-mc-user")
_LISTS = ("list-id", "list-unsubscribe", "list-post")


def _bulk(f: _Facts) -> Classification | None:
    marketing = next((h for h in _MARKETING if f.has(h)), "")
    listed = next((h for h in _LISTS if f.has(h)), "")
    if f.precedence in ("bulk", "junk"):
        return Classification(MessageKind.BULK, f"bulk: Precedence: {f.precedence}")
    if listed or f.precedence == "list":
        if f.threaded and not marketing:
            # Discussion lists (Google Groups, hiring@ aliases) carry list headers on a person's
            # reply. It is human; match() decides whether it is one of ours (thread, attendee).
            return Classification(
                MessageKind.HUMAN, "human: a reply in a thread that came through a mailing list"
            )
        what = listed or "Precedence: list"
        return Classification(MessageKind.BULK, f"bulk: mailing list ({what})")
    if marketing:
        return Classification(MessageKind.BULK, f"bulk: bulk-sender header {marketing}")
    return None


def _robot(f: _Facts) -> Classification | None:
    if domains.is_robot(f.message.sender.email):
        return Classification(
            MessageKind.AUTO_REPLY,
            f"automatic: sent from no-reply address {f.message.sender.email}",
        )
    return None


_RULES: tuple[Rule, ...] = (_own, _spam, _bounce, _calendar, _automatic, _ats, _bulk, _robot)


def classify(message: MailHeaders, own_addresses: Sequence[str]) -> Classification:
    """What kind of mail this is, with a sentence saying why."""
    facts = _facts(message, own_addresses)
    for rule in _RULES:
        verdict = rule(facts)
        if verdict is not None:
            return verdict
    return Classification(MessageKind.HUMAN, "human: no sign of automatic, bulk or calendar mail")


# --- return dates ---------------------------------------------------------------------------

_MONTHS = {
    "january": 1, "february": 2, "march": 3, "april": 4, "may": 5, "june": 6, "july": 7,
    "august": 8, "september": 9, "october": 10, "november": 11, "december": 12,
    "jan": 1, "feb": 2, "mar": 3, "apr": 4, "jun": 6, "jul": 7, "aug": 8, "sep": 9,
    "sept": 9, "oct": 10, "nov": 11, "dec": 12,
}  # fmt: skip
_WEEKDAYS = {
    "monday": 0, "tuesday": 1, "wednesday": 2, "thursday": 3, "friday": 4, "saturday": 5,
    "sunday": 6, "mon": 0, "tue": 1, "tues": 1, "wed": 2, "thu": 3, "thur": 3, "thurs": 3,
    "fri": 4, "sat": 5, "sun": 6,
}  # fmt: skip
_M = "|".join(sorted(_MONTHS, key=len, reverse=True))
_W = "|".join(sorted(_WEEKDAYS, key=len, reverse=True))
_ORD = r"(?:st|nd|rd|th)?"


def _wd(group: str) -> str:
    """An optional weekday before a date ("Monday, ", "Mon. the ")."""
    return rf"(?:(?P<{group}>{_W})\.?,?\s+(?:the\s+)?)?"


def _date_pattern(p: str) -> str:
    """One date in any of the shapes we read; group names carry the prefix ``p``."""
    return (
        rf"(?:(?P<{p}iy>\d{{4}})-(?P<{p}im>\d{{1,2}})-(?P<{p}id>\d{{1,2}})\b"
        rf"|{_wd(p + 'mw')}(?P<{p}mm>{_M})\.?\s+(?P<{p}md>\d{{1,2}}){_ORD}\b"
        rf"(?:,?\s+(?P<{p}my>\d{{4}})\b)?"
        rf"|{_wd(p + 'dw')}(?:the\s+)?(?P<{p}dd>\d{{1,2}}){_ORD}\.?(?:\s+of)?\s+"
        rf"(?P<{p}dm>{_M})\b\.?"
        rf"(?:,?\s+(?P<{p}dy>\d{{4}})\b)?"
        rf"|{_wd(p + 'nw')}(?P<{p}n1>\d{{1,2}})/(?P<{p}n2>\d{{1,2}})"
        rf"(?:/(?P<{p}ny>\d{{4}}|\d{{2}}))?\b"
        rf"|(?P<{p}e1>\d{{1,2}})\.(?P<{p}e2>\d{{1,2}})\.(?P<{p}ey>\d{{4}}|\d{{2}})?"
        rf"|(?P<{p}ow>{_W})\b)"
    )


_FILLER = r"[^.!?\n\d]{0,40}?"
_RETURN = re.compile(
    r"\b(?:back|return|returning|returns|in\s+the\s+office|in\s+office|available\s+again|"
    r"reachable\s+again|zur[üu]ck|wieder)\b" + _FILLER + r"\b" + _date_pattern("a"),
    re.IGNORECASE,
)
_UNTIL = re.compile(
    r"\b(?:until|till|til|through|thru|up\s+to\s+and\s+including|bis)\b[\s,]+"
    r"(?:and\s+including\s+|including\s+|zum\s+|the\s+)?" + _date_pattern("a"),
    re.IGNORECASE,
)
_RANGE = re.compile(
    _date_pattern("a") + r"\s*(?:to|-|–|—)\s*" + _date_pattern("b"),
    re.IGNORECASE,
)
_HORIZON = timedelta(days=400)  # a parental leave is long; a date further out is a misreading


def _year(text: str | None) -> int | None:
    if not text:
        return None
    year = int(text)
    return year + 2000 if year < 100 else year


def _resolve(
    month: int, day: int, year: int | None, weekday: int | None, received: datetime | None
) -> date | None:
    base = received.date() if received else None
    if year is not None:
        try:
            found = date(year, month, day)
        except ValueError:
            return None
    else:
        if base is None:
            return None  # no year and nothing to anchor one to
        upcoming: list[date] = []
        for offset in range(5):  # five years reach the next 29 February
            try:
                candidate = date(base.year + offset, month, day)
            except ValueError:
                continue
            if candidate >= base:
                upcoming.append(candidate)
        if not upcoming:
            return None
        found = upcoming[0]
        # "Monday, December 1" names a weekday too; when the next December 1 is not a Monday
        # but the one after is, the writer meant that one.
        if (
            weekday is not None
            and found.weekday() != weekday
            and len(upcoming) > 1
            and upcoming[1].weekday() == weekday
            and upcoming[1].year == found.year + 1
        ):
            found = upcoming[1]
    if base is not None and not (base <= found <= base + _HORIZON):
        return None  # in the past, or absurdly far away: not a date we should trust
    return found


def _date_from(m: re.Match[str], p: str, received: datetime | None) -> date | None:
    g = m.groupdict()

    def wd(key: str) -> int | None:
        value = g.get(key)
        return _WEEKDAYS[value.lower()] if value else None

    if g.get(f"{p}iy"):
        return _resolve(int(g[f"{p}im"]), int(g[f"{p}id"]), int(g[f"{p}iy"]), None, received)
    if g.get(f"{p}mm"):
        return _resolve(
            _MONTHS[g[f"{p}mm"].lower()],
            int(g[f"{p}md"]),
            _year(g.get(f"{p}my")),
            wd(f"{p}mw"),
            received,
        )
    if g.get(f"{p}dm"):
        return _resolve(
            _MONTHS[g[f"{p}dm"].lower()],
            int(g[f"{p}dd"]),
            _year(g.get(f"{p}dy")),
            wd(f"{p}dw"),
            received,
        )
    if g.get(f"{p}n1"):
        first, second = int(g[f"{p}n1"]), int(g[f"{p}n2"])
        # US order (month/day) unless the first number cannot be a month.
        month, day = (second, first) if first > 12 >= second else (first, second)
        return _resolve(month, day, _year(g.get(f"{p}ny")), wd(f"{p}nw"), received)
    if g.get(f"{p}e1"):  # 01.12.2026: day first, as everywhere dots are used
        return _resolve(int(g[f"{p}e2"]), int(g[f"{p}e1"]), _year(g.get(f"{p}ey")), None, received)
    if g.get(f"{p}ow"):
        if received is None:
            return None
        base = received.date()
        ahead = (_WEEKDAYS[g[f"{p}ow"].lower()] - base.weekday() - 1) % 7 + 1
        return base + timedelta(days=ahead)
    return None


def parse_return_date(text: str, received: datetime | None) -> date | None:
    """The day an absent person is back, from an out-of-office text; None when unsure.

    "back on Monday, December 1" and "returning 12/01" name the day itself; "until November 30"
    and "from 24 to 30 November" name the last day away, so the answer is the day after.
    """
    text = text[:4000]
    for found in _RETURN.finditer(text):
        day = _date_from(found, "a", received)
        if day is not None:
            return day
    for found in _UNTIL.finditer(text):
        if found.group("aow"):
            continue  # "until Monday": back on Monday or the day after? Unsure.
        day = _date_from(found, "a", received)
        if day is not None:
            return day + timedelta(days=1)
    for found in _RANGE.finditer(text):
        if found.group("bow"):
            continue
        day = _date_from(found, "b", received)
        if day is not None:
            return day + timedelta(days=1)
    return None


# --- matching -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """An interview a message might belong to."""

    interview_id: int
    attendees: tuple[str, ...]  # lower-cased emails of the kept interviewers
    employer_domains: tuple[str, ...]  # registrable domains (never free-mail)
    company: str
    start: datetime
    end: datetime


_LEGAL_SUFFIX = re.compile(
    r"[\s,]+(?:inc|llc|ltd|limited|gmbh|corp|corporation|co|plc|s\.?a|ag|b\.?v|pty|oy|ab|as)\.?$",
    re.IGNORECASE,
)


def _company_pattern(company: str) -> re.Pattern[str] | None:
    name = _LEGAL_SUFFIX.sub("", company.strip()).strip()
    if len(name) < 2:
        return None
    return re.compile(rf"(?<!\w){re.escape(name)}(?!\w)", re.IGNORECASE)


def _pick(found: Sequence[Candidate], when: datetime | None) -> Candidate:
    """The latest interview that had started by the message's date; else the next one."""
    started = [c for c in found if when is None or c.start <= when]
    if started:
        return max(started, key=lambda c: (c.start, c.interview_id))
    return min(found, key=lambda c: (c.start, c.interview_id))


def _thread(message: MailHeaders, known: Mapping[str, int]) -> tuple[int, str] | None:
    chain = [("In-Reply-To", message.in_reply_to)] + [
        ("References", mid) for mid in reversed(message.references)
    ]
    for header, mid in chain:
        if not mid:
            continue
        bare = mid.strip().strip("<>")
        for key in (mid, f"<{bare}>", bare):
            if key in known:
                return known[key], f"thread: {header} {mid} is a message of interview {known[key]}"
    return None


def match(
    message: MailHeaders,
    candidates: Sequence[Candidate],
    known_message_ids: Mapping[str, int],
    own_addresses: Sequence[str],
) -> tuple[int | None, str]:
    """The interview a human reply, out-of-office or sent message belongs to, and how it matched."""
    threaded = _thread(message, known_message_ids)
    if threaded is not None:
        return threaded

    own = message.folder == Folder.SENT or domains.is_own_address(
        message.sender.email, own_addresses
    )
    if own:
        people = tuple(
            p
            for p in message.to + message.cc
            if p.email and not domains.is_own_address(p.email, own_addresses)
        )
        who = "recipients"
    else:
        people = (message.sender,) if message.sender.email else ()
        who = "sender"
    when = message.date

    # (2) an interviewer's own address
    for person in people:
        address = person.email.lower()
        found = [c for c in candidates if address in (a.lower() for a in c.attendees)]
        if found:
            chosen = _pick(found, when)
            return chosen.interview_id, (
                f"attendee: {who} {address} is an interviewer of interview {chosen.interview_id}"
            )

    # (3) the employer's domain; never a free-mail domain, which would match half the world
    free: list[str] = []
    for person in people:
        domain = domains.registrable_domain(person.email)
        if not domain:
            continue
        if domains.is_free_mail(domain):
            free.append(domain)
            continue
        found = [
            c
            for c in candidates
            if any(
                domains.registrable_domain(d) == domain and not domains.is_free_mail(d)
                for d in c.employer_domains
            )
        ]
        if found:
            chosen = _pick(found, when)
            return chosen.interview_id, (
                f"employer domain: {who} {person.email} is at {domain}, "
                f"the employer of interview {chosen.interview_id}"
            )

    # (4) an applicant-tracking system relaying for the employer
    relayed = _ats_match(message, people, candidates, own, own_addresses)
    if relayed is not None:
        return relayed

    addresses = ", ".join(p.email for p in people) or "nobody"
    note = f"; free-mail domain {free[0]} never matches as a whole domain" if free else ""
    return None, (
        f"no match: not in a known thread, and {who} {addresses} "
        f"is neither an interviewer nor at an employer's domain{note}"
    )


def _ats_match(
    message: MailHeaders,
    people: tuple[Person, ...],
    candidates: Sequence[Candidate],
    own: bool,
    own_addresses: Sequence[str],
) -> tuple[int, str] | None:
    relays = [p for p in people if domains.is_ats(p.email)]
    if not relays:
        return None
    relay = relays[0]
    system = domains.registrable_domain(relay.email)
    when = message.date

    if not own:
        reply_to = [
            p
            for p in parse_addresses([message.header("reply-to")])
            if not domains.is_own_address(p.email, own_addresses)
        ]
        for person in reply_to:
            found = [c for c in candidates if person.email in (a.lower() for a in c.attendees)]
            if found:
                chosen = _pick(found, when)
                return chosen.interview_id, (
                    f"applicant-tracking system: {system} relays for interviewer {person.email} "
                    f"(Reply-To) of interview {chosen.interview_id}"
                )
        for person in reply_to:
            domain = domains.registrable_domain(person.email)
            if not domain or domains.is_free_mail(domain):
                continue
            found = [
                c
                for c in candidates
                if any(domains.registrable_domain(d) == domain for d in c.employer_domains)
            ]
            if found:
                chosen = _pick(found, when)
                return chosen.interview_id, (
                    f"applicant-tracking system: {system} relays for {domain} (Reply-To "
                    f"{person.email}), the employer of interview {chosen.interview_id}"
                )

    places = [("subject", message.subject)]
    if not own:
        places.insert(0, ("display name", relay.name))
    for where, text in places:
        found = []
        for c in candidates:
            pattern = _company_pattern(c.company)
            if pattern is not None and pattern.search(text):
                found.append(c)
        if found:
            chosen = _pick(found, when)
            return chosen.interview_id, (
                f"applicant-tracking system: {system} relays for {chosen.company} "
                f"(named in the {where}) of interview {chosen.interview_id}"
            )
    return None


# --- sender authentication ------------------------------------------------------------------


@dataclass(frozen=True)
class SenderCheck:
    """Whether the receiving side could confirm the sender's domain (RFC 8601 results).

    ``verdict`` is "pass" (DMARC, or SPF or DKIM aligned with the From domain, passed), "fail"
    (they failed for that domain), or "none" (no results from the receiving side, or nothing
    decisive in them): only "fail" makes a message suspicious.
    """

    verdict: str
    reason: str


_COMMENT = re.compile(r"\([^()]*\)")
_RESULT = re.compile(r"^\s*([a-z0-9_-]+)\s*=\s*([a-z]+)\b(.*)$", re.IGNORECASE | re.DOTALL)
# ptype.property=value (RFC 8601), and the bare name=value Microsoft adds (reason=, action=).
_PROPERTY = re.compile(r"\b([a-z]+(?:\.[a-z0-9_-]+)?)\s*=\s*\"?([^\s\";]+)", re.IGNORECASE)
_FAILED = frozenset({"fail", "softfail"})


def _authserv_id(header: str) -> str:
    """The authserv-id a header starts with; "" when it starts with a result at once (Microsoft
    365 writes "spf=pass ...; dkim=..." without one)."""
    first = _COMMENT.sub("", header).split(";", 1)[0].strip()
    return "" if "=" in first else first.split()[0].lower() if first else ""


def _results(header: str) -> list[tuple[str, str, dict[str, str]]]:
    """(method, result, properties) for each result in one Authentication-Results header."""
    found = []
    text = _COMMENT.sub(" ", _COMMENT.sub(" ", header))  # nested comments: two rounds
    pieces = text.split(";")
    if _authserv_id(header):
        pieces = pieces[1:]
    for piece in pieces:
        parsed = _RESULT.match(piece)
        if parsed is None:
            continue
        props = {k.lower(): v.strip().lower() for k, v in _PROPERTY.findall(parsed.group(3))}
        found.append((parsed.group(1).lower(), parsed.group(2).lower(), props))
    return found


def _aligned(value: str, domain: str) -> bool:
    """Whether an identity (domain or address) is in the same organisation as ``domain``."""
    value = value.rsplit("@", 1)[-1]
    return bool(value) and domains.registrable_domain(value) == domain


def sender_authentication(message: MailHeaders, trusted: Sequence[str] = ()) -> SenderCheck:
    """What the receiving server found when it checked the sender's domain.

    Only the topmost Authentication-Results headers count (the ones of the server that took the
    message in, sharing its authserv-id; or those of a server named in ``trusted``): anyone on
    the way can add more further down, claiming whatever they like.
    """
    headers = list(message.authentication_results)
    domain = domains.registrable_domain(message.sender.email)
    if not headers or not domain:
        return SenderCheck("none", "no Authentication-Results from the receiving side")
    wanted = {t.lower() for t in trusted}
    if wanted:
        ours = [h for h in headers if _authserv_id(h) in wanted]
    else:
        top = _authserv_id(headers[0])
        ours = []
        for header in headers:
            if _authserv_id(header) != top:
                break
            ours.append(header)
    results = [r for header in ours for r in _results(header)]
    server = _authserv_id(ours[0]) if ours else ""
    by = f" (checked by {server})" if server else ""

    # Microsoft 365's composite authentication is its final word: DMARC where the domain has a
    # policy, its own judgement where not, and a DMARC failure forgiven for a trusted forwarder
    # (ARC).
    for method, result, props in results:
        if method == "compauth" and result in ("pass", "fail"):
            code = props.get("reason") or ""
            detail = f" (reason {code})" if code else ""
            return SenderCheck(
                result, f"Microsoft composite authentication {result}ed for {domain}{detail}"
            )
    # DMARC decides when the receiving side evaluated it for this From domain.
    for method, result, props in results:
        if method == "dmarc" and _aligned(props.get("header.from", domain), domain):
            if result == "pass":
                return SenderCheck("pass", f"DMARC passed for {domain}{by}")
            if result == "fail":
                return SenderCheck("fail", f"DMARC failed for {domain}{by}")
    spf = [r for m, r, p in results if m == "spf" and _aligned(
        p.get("smtp.mailfrom") or p.get("smtp.helo") or "", domain)]  # fmt: skip
    dkim = [r for m, r, p in results if m == "dkim" and _aligned(
        p.get("header.d") or p.get("header.i") or "", domain)]  # fmt: skip
    if "pass" in spf or "pass" in dkim:
        method = "DKIM" if "pass" in dkim else "SPF"
        return SenderCheck("pass", f"{method} passed for {domain}{by}")
    if set(spf + dkim) & _FAILED:
        return SenderCheck("fail", f"SPF and DKIM did not pass for {domain}{by}")
    return SenderCheck("none", f"nothing decisive about {domain}{by}")
