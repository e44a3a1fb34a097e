"""Tables for interview detection and attendee hygiene, plus a property test."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailbridge import domains
from mailbridge.detect import (
    SKIP_DECLINED,
    SKIP_FREE_MAIL,
    SKIP_GROUP,
    SKIP_INVALID,
    SKIP_RESOURCE,
    SKIP_ROBOT,
    SKIP_SCHEDULER,
    SKIP_YOU,
    Detection,
    Skipped,
    company_from_domain,
    default_org_domains,
    detect,
    judge,
    keyword_in,
)
from mailbridge.model import (
    Attendee,
    AttendeeKind,
    Event,
    EventKey,
    EventStatus,
    Person,
    Response,
)
from mailbridge.settings import DetectionRules

ME = "jordan.lee@gmail.com"
WORK_ME = "jordan@initech.com"
START = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
RULES = DetectionRules()


def me(response: Response = Response.ACCEPTED, email: str = ME) -> Attendee:
    return Attendee(email, "Jordan Lee", response=response, is_self=True)


def att(email: str, name: str = "", **kw: Any) -> Attendee:
    return Attendee(email, name, **kw)


JANE = att("jane.smith@acme.com", "Jane Smith", response=Response.ACCEPTED)
RAJ = att("raj@acme.com", "Raj Patel")


def event(
    title: str = "Acme - Phone Screen",
    attendees: tuple[Attendee, ...] = (me(), JANE),
    organizer: Person | None = None,
    **kw: Any,
) -> Event:
    return Event(
        key=EventKey("primary", "uid-1"),
        title=title,
        start=START,
        end=START + timedelta(hours=1),
        organizer=organizer,
        attendees=attendees,
        **kw,
    )


def run(
    ev: Event,
    own: tuple[str, ...] = (ME,),
    org: tuple[str, ...] = (),
    rules: DetectionRules = RULES,
    lead: str | None = None,
) -> Detection:
    # `judge` has no safety net, so a bug raises here instead of hiding in a reason.
    result = judge(ev, own, org, rules, lead)
    assert detect(ev, own, org, rules, lead) == result
    return result


# --- keywords ---------------------------------------------------------------------------

KEYWORD_CASES = [
    # id, title, description, rules, expected
    ("interview-in-title", "Interview with Acme", "", RULES, True),
    ("phone-screen", "Acme - Phone Screen", "", RULES, True),
    ("phone-screen-hyphenated", "Acme phone-screen", "", RULES, True),
    ("onsite", "Acme | Onsite", "", RULES, True),
    ("on-site", "Acme On-site", "", RULES, True),
    ("panel", "Panel with Acme", "", RULES, True),
    ("hiring-manager", "Hiring Manager chat - Acme", "", RULES, True),
    ("final-round", "Acme final round", "", RULES, True),
    ("tech-screen", "Tech screen: Acme", "", RULES, True),
    ("upper-case", "ACME INTERVIEW", "", RULES, True),
    ("plural", "Acme interviews (back to back)", "", RULES, True),
    ("ing-form", "Interviewing at Acme", "", RULES, True),
    ("fullwidth-unicode", "Acme ＩＮＴＥＲＶＩＥＷ", "", RULES, True),
    ("zero-width-space", "Acme Inter\u200bview", "", RULES, True),
    ("keyword-in-description", "Acme <> Jordan", "Your interview with the team.", RULES, True),
    (
        "keyword-in-html-description",
        "Acme <> Jordan",
        "<p>Thanks for booking your <b>phone&nbsp;screen</b></p>",
        RULES,
        True,
    ),
    ("no-keyword", "Acme catch-up", "Let's talk about the partnership.", RULES, False),
    ("panelling-is-not-panel", "Quote for wall panelling", "", RULES, False),
    ("paneling-is-not-panel", "Paneling estimate", "", RULES, False),
    ("screenplay-is-not-screen", "Screenplay reading", "", RULES, False),
    ("interviewer-is-not-interview", "Interviewer pool sync-up", "", RULES, False),
    ("reviewing-is-not-interview", "Reviewing designs", "", RULES, False),
    ("mock-interview-excluded", "Mock interview with Sam", "", RULES, False),
    ("exclude-in-description", "Interview", "This is a practice interview.", RULES, False),
    ("candidate-debrief", "Candidate debrief: Jane Doe", "", RULES, False),
    ("debrief-alone", "Debrief - Acme interview", "", RULES, False),
    ("interview-training", "Interview training", "", RULES, False),
    ("interviewer-training", "Interviewer Training (required)", "", RULES, False),
    ("hiring-committee", "Hiring committee - onsite loop", "", RULES, False),
    ("reverse-shadow", "Reverse shadow: onsite interview", "", RULES, False),
    ("custom-keyword", "Coffee chat with Acme", "", DetectionRules(keywords=("chat",)), True),
    (
        "custom-exclude-wins",
        "Coffee chat interview",
        "",
        DetectionRules(exclude_keywords=("coffee",)),
        False,
    ),
    ("no-keywords-configured", "Interview", "", DetectionRules(keywords=()), False),
    ("empty-title-and-description", "", "", RULES, False),
]


@pytest.mark.parametrize(
    ("title", "description", "rules", "expected"),
    [c[1:] for c in KEYWORD_CASES],
    ids=[c[0] for c in KEYWORD_CASES],
)
def test_keywords(title: str, description: str, rules: DetectionRules, expected: bool) -> None:
    result = run(event(title, description=description), rules=rules)
    assert result.is_interview is expected, result.reason
    assert result.reason.endswith(".")


@pytest.mark.parametrize(
    ("title", "reason"),
    [
        ("Team standup", "no interview keyword"),
        ("Mock interview", 'exclude keyword "mock interview"'),
        ("Candidate debrief", "internal hiring event"),
        ("", "(untitled event) has no interview keyword"),
    ],
    ids=["no-keyword", "exclude", "internal", "untitled"],
)
def test_keyword_reasons(title: str, reason: str) -> None:
    assert reason in run(event(title)).reason


@pytest.mark.parametrize(
    ("text", "keywords", "expected"),
    [
        ("Final Round at Acme", ("interview", "final round"), "final round"),
        ("final-round", ("final round",), "final round"),
        ("final\tround", ("final round",), "final round"),
        ("finalround", ("final round",), None),
        ("C++ interview", ("c++",), "c++"),
        ("1:1 with Jane", ("1:1",), "1:1"),
        ("panels", ("panel",), "panel"),
        ("panelist", ("panel",), None),
        ("", ("interview",), None),
        ("interview", ("", "  "), None),
    ],
    ids=[
        "phrase",
        "hyphen-for-space",
        "tab-for-space",
        "glued-words",
        "punctuation-keyword",
        "digits-keyword",
        "plural",
        "longer-word",
        "empty-text",
        "blank-keywords",
    ],
)
def test_keyword_in(text: str, keywords: tuple[str, ...], expected: str | None) -> None:
    assert keyword_in(text, keywords) == expected


# --- scheduler / ATS invitations --------------------------------------------------------

GREENHOUSE = Person("no-reply@greenhouse.io", "Acme via Greenhouse")

ATS_CASES = [
    # id, title, organizer, extra attendees, expected
    ("greenhouse-organizer-soft-word", "Call with Acme", GREENHOUSE, (), True),
    ("greenhouse-organizer-keyword", "Acme Technical Interview", GREENHOUSE, (), True),
    (
        "goodtime-attendee-soft-word",
        "Acme chat",
        None,
        (att("scheduling@goodtime.io"),),
        True,
    ),
    ("ashby-screening", "Screening - Acme", Person("jobs@ashbyhq.com"), (), True),
    ("no-ats-soft-word-only", "Call with Acme", None, (), False),
    (
        "calendly-needs-real-keyword",
        "30 Minute Meeting",
        Person("notifications@calendly.com"),
        (),
        False,
    ),
    ("calendly-with-keyword", "Phone screen", Person("notifications@calendly.com"), (), True),
    ("greenhouse-no-word-at-all", "Acme <> Jordan", GREENHOUSE, (), False),
]


@pytest.mark.parametrize(
    ("title", "organizer", "extra", "expected"),
    [c[1:] for c in ATS_CASES],
    ids=[c[0] for c in ATS_CASES],
)
def test_scheduler_invitations(
    title: str, organizer: Person | None, extra: tuple[Attendee, ...], expected: bool
) -> None:
    result = run(event(title, (me(), JANE, *extra), organizer=organizer))
    assert result.is_interview is expected, result.reason
    if expected:
        # The scheduling system itself is never written to.
        assert [p.email for p in result.attendees] == ["jane.smith@acme.com"]
        assert result.company == "Acme"


# --- exclusions -------------------------------------------------------------------------

MANY = tuple(att(f"person{i}@acme.com", f"Person {i}") for i in range(12))
ROOMS = tuple(att(f"room-{i}@acme.com", kind=AttendeeKind.RESOURCE) for i in range(5))
ORG = ("initech.com",)

EXCLUSION_CASES = [
    # id, event, own addresses, org domains, rules, expected, reason fragment
    ("cancelled", event(status=EventStatus.CANCELLED), (ME,), (), RULES, False, "was cancelled"),
    ("tentative-still-counts", event(status=EventStatus.TENTATIVE), (ME,), (), RULES, True, ""),
    (
        "declined-by-self-flag",
        event(attendees=(me(Response.DECLINED), JANE)),
        (ME,),
        (),
        RULES,
        False,
        "You declined",
    ),
    (
        "declined-by-own-address",
        event(attendees=(att("Jordan.Lee@Gmail.com", response=Response.DECLINED), JANE)),
        (ME,),
        (),
        RULES,
        False,
        "You declined",
    ),
    (
        "declined-by-alias",
        event(attendees=(att("jordan@lee.dev", response=Response.DECLINED), JANE)),
        (ME, "jordan@lee.dev"),
        (),
        RULES,
        False,
        "You declined",
    ),
    (
        "tentative-self-still-counts",
        event(attendees=(me(Response.TENTATIVE), JANE)),
        (ME,),
        (),
        RULES,
        True,
        "",
    ),
    ("all-day", event(all_day=True), (ME,), (), RULES, False, "all-day"),
    ("recurring", event(recurring=True), (ME,), (), RULES, False, "recurring series"),
    (
        "recurring-allowed",
        event(recurring=True),
        (ME,),
        (),
        DetectionRules(include_recurring=True),
        True,
        "",
    ),
    (
        "too-many-attendees",
        event(attendees=(me(), *MANY)),
        (ME,),
        (),
        RULES,
        False,
        "13 people on it, more than max_attendees (12)",
    ),
    ("exactly-max-attendees", event(attendees=(me(), *MANY[:11])), (ME,), (), RULES, True, ""),
    (
        "rooms-do-not-count",
        event(attendees=(me(), *MANY[:11], *ROOMS)),
        (ME,),
        (),
        RULES,
        True,
        "",
    ),
    (
        "lower-max-attendees",
        event(attendees=(me(), JANE, RAJ)),
        (ME,),
        (),
        DetectionRules(max_attendees=2),
        False,
        "max_attendees (2)",
    ),
    (
        "work-account-colleague-organizer",
        event(
            "Interview: Jane Candidate",
            (
                att(WORK_ME, "Jordan Lee", is_self=True, response=Response.ACCEPTED),
                att("pat@initech.com", "Pat Colleague"),
                att("jane.candidate@othercorp.com", "Jane Candidate"),
            ),
            organizer=Person("pat@initech.com", "Pat Colleague"),
        ),
        (WORK_ME,),
        ORG,
        RULES,
        False,
        "inside your own organisation",
    ),
    (
        "work-account-user-organizer",
        event(
            "Phone screen - Jane Candidate",
            (att("jane.candidate@othercorp.com", "Jane Candidate"),),
            organizer=Person(WORK_ME, "Jordan Lee"),
        ),
        (WORK_ME,),
        ORG,
        RULES,
        False,
        "inside your own organisation",
    ),
    (
        "work-account-subdomain-organizer",
        event("Onsite interview", (JANE,), organizer=Person("pat@eu.initech.com")),
        (WORK_ME,),
        ORG,
        RULES,
        False,
        "inside your own organisation",
    ),
    (
        "work-account-ats-invite-with-colleague",
        event(
            "Interview: Jane Candidate",
            (
                att(WORK_ME, is_self=True),
                att("pat@initech.com", "Pat"),
                att("jane.candidate@othercorp.com", "Jane Candidate"),
            ),
            organizer=GREENHOUSE,
        ),
        (WORK_ME,),
        ORG,
        RULES,
        False,
        "pat@initech.com from your own organisation",
    ),
    (
        "work-account-all-colleagues",
        event("Interview loop", (att(WORK_ME, is_self=True), att("pat@initech.com"))),
        (WORK_ME,),
        ORG,
        RULES,
        False,
        "your own organisation",
    ),
    (
        "free-mail-org-domain-is-ignored",
        event(attendees=(me(), JANE), organizer=Person("jane.smith@acme.com")),
        (ME,),
        ("gmail.com",),
        RULES,
        True,
        "",
    ),
    (
        "external-interview-from-work-account",
        event(attendees=(att(WORK_ME, is_self=True), JANE)),
        (WORK_ME,),
        ORG,
        RULES,
        True,
        "",
    ),
    (
        "only-free-mail-left",
        event(attendees=(me(), att("bob@gmail.com", "Bob"))),
        (ME,),
        (),
        RULES,
        False,
        "bob@gmail.com (free-mail address); set allow_free_mail = true",
    ),
    (
        "only-robots-left",
        event(attendees=(me(), att("noreply@acme.com"), att("careers@acme.com"))),
        (ME,),
        (),
        RULES,
        False,
        "noreply@acme.com (no-reply robot), careers@acme.com (group list)",
    ),
    ("nobody-but-me", event(attendees=(me(),)), (ME,), (), RULES, False, "no other attendee"),
    ("no-attendees-at-all", event(attendees=()), (ME,), (), RULES, False, "no other attendee"),
    (
        "free-mail-allowed",
        event(attendees=(me(), att("bob@gmail.com", "Bob"))),
        (ME,),
        (),
        DetectionRules(allow_free_mail=True),
        True,
        "",
    ),
]


@pytest.mark.parametrize(
    ("ev", "own", "org", "rules", "expected", "fragment"),
    [c[1:] for c in EXCLUSION_CASES],
    ids=[c[0] for c in EXCLUSION_CASES],
)
def test_exclusions(
    ev: Event,
    own: tuple[str, ...],
    org: tuple[str, ...],
    rules: DetectionRules,
    expected: bool,
    fragment: str,
) -> None:
    result = run(ev, own=own, org=org, rules=rules)
    assert result.is_interview is expected, result.reason
    assert fragment in result.reason
    if not expected:
        assert result.attendees == ()
        assert result.lead is None


def test_exclusion_reports_skipped_attendees() -> None:
    result = run(event(attendees=(me(), att("bob@gmail.com"), att("noreply@acme.com"))))
    assert not result.is_interview
    assert result.skipped == (
        Skipped(ME, SKIP_YOU),
        Skipped("bob@gmail.com", SKIP_FREE_MAIL),
        Skipped("noreply@acme.com", SKIP_ROBOT),
    )


# --- attendee hygiene -------------------------------------------------------------------

HYGIENE_CASES = [
    # id, attendee, own addresses, rules, expected skip reason ("" = kept)
    ("self-flag", att("jordan@elsewhere.org", is_self=True), (ME,), RULES, SKIP_YOU),
    ("own-address", att("JORDAN.LEE@gmail.com"), (ME,), RULES, SKIP_YOU),
    ("own-address-mailto", att("mailto:jordan.lee@gmail.com"), (ME,), RULES, SKIP_YOU),
    (
        "room-by-kind",
        att("boardroom@acme.com", kind=AttendeeKind.RESOURCE),
        (ME,),
        RULES,
        SKIP_RESOURCE,
    ),
    (
        "room-by-google-address",
        att("c_188@resource.calendar.google.com", "Room 4"),
        (ME,),
        RULES,
        SKIP_RESOURCE,
    ),
    ("room-by-prefix", att("room-3b@acme.com"), (ME,), RULES, SKIP_RESOURCE),
    ("declined", att("raj@acme.com", response=Response.DECLINED), (ME,), RULES, SKIP_DECLINED),
    ("noreply", att("noreply@acme.com"), (ME,), RULES, SKIP_ROBOT),
    ("no-reply-hyphen", att("no-reply@acme.com"), (ME,), RULES, SKIP_ROBOT),
    ("calendar-notification", att("calendar-notification@acme.com"), (ME,), RULES, SKIP_ROBOT),
    ("ats-person-address", att("rita@greenhouse.io", "Rita"), (ME,), RULES, SKIP_SCHEDULER),
    ("ats-subdomain", att("rita@hire.lever.co"), (ME,), RULES, SKIP_SCHEDULER),
    ("group-by-kind", att("eng@acme.com", kind=AttendeeKind.GROUP), (ME,), RULES, SKIP_GROUP),
    ("group-by-address", att("careers@acme.com"), (ME,), RULES, SKIP_GROUP),
    ("talent-list", att("talent-acquisition@acme.com"), (ME,), RULES, SKIP_GROUP),
    ("free-mail-gmail", att("bob@gmail.com"), (ME,), RULES, SKIP_FREE_MAIL),
    ("free-mail-upper-case", att("Bob@OUTLOOK.COM"), (ME,), RULES, SKIP_FREE_MAIL),
    ("free-mail-allowed", att("bob@gmail.com"), (ME,), DetectionRules(allow_free_mail=True), ""),
    ("not-an-address", att("Jane Smith"), (ME,), RULES, SKIP_INVALID),
    ("empty-address", att(""), (ME,), RULES, SKIP_INVALID),
    ("work-address-kept", att("raj@acme.com", "Raj"), (ME,), RULES, ""),
    ("unknown-kind-kept", att("raj@acme.com", kind=AttendeeKind.UNKNOWN), (ME,), RULES, ""),
    ("needs-action-kept", att("raj@acme.com", response=Response.NEEDS_ACTION), (ME,), RULES, ""),
]


@pytest.mark.parametrize(
    ("attendee", "own", "rules", "reason"),
    [c[1:] for c in HYGIENE_CASES],
    ids=[c[0] for c in HYGIENE_CASES],
)
def test_hygiene(
    attendee: Attendee, own: tuple[str, ...], rules: DetectionRules, reason: str
) -> None:
    result = run(event(attendees=(JANE, attendee)), own=own, rules=rules)
    assert result.is_interview, result.reason
    kept = [p.email.lower() for p in result.attendees]
    wanted = attendee.email.removeprefix("mailto:").lower()
    if reason:
        assert wanted not in kept
        assert [s.reason for s in result.skipped] == [reason]
    else:
        assert kept == ["jane.smith@acme.com", wanted]
        assert result.skipped == ()


def test_hygiene_keeps_event_order_and_reports_every_skip() -> None:
    result = run(
        event(
            attendees=(
                att("boardroom@acme.com", kind=AttendeeKind.RESOURCE),
                RAJ,
                me(),
                att("bob@gmail.com"),
                JANE,
                att("noreply@greenhouse.io"),
                att("sam@acme.com", response=Response.DECLINED),
            )
        )
    )
    assert result.attendees == (Person("raj@acme.com", "Raj Patel"), Person(JANE.email, JANE.name))
    assert result.skipped == (
        Skipped("boardroom@acme.com", SKIP_RESOURCE),
        Skipped(ME, SKIP_YOU),
        Skipped("bob@gmail.com", SKIP_FREE_MAIL),
        Skipped("noreply@greenhouse.io", SKIP_ROBOT),
        Skipped("sam@acme.com", SKIP_DECLINED),
    )
    assert result.employer_domains == ("acme.com",)


DEDUP_CASES = [
    # id, attendees, organizer, expected kept (email, name)
    (
        "same-address-different-case",
        (att("Raj@Acme.com", "Raj Patel"), att("raj@acme.com")),
        None,
        [("Raj@Acme.com", "Raj Patel")],
    ),
    (
        "later-copy-lends-name",
        (att("raj@acme.com"), att("RAJ@acme.com", "Raj Patel")),
        None,
        [("raj@acme.com", "Raj Patel")],
    ),
    (
        "declined-copy-wins",
        (JANE, att("raj@acme.com"), att("raj@acme.com", response=Response.DECLINED)),
        None,
        [("jane.smith@acme.com", "Jane Smith")],
    ),
    (
        "self-copy-wins",
        # An alias the account does not list: only the second copy says it is the user.
        (JANE, att("jordan@lee.dev"), att("JORDAN@lee.dev", is_self=True)),
        None,
        [("jane.smith@acme.com", "Jane Smith")],
    ),
    (
        "resource-copy-wins",
        (JANE, att("board@acme.com"), att("board@acme.com", kind=AttendeeKind.RESOURCE)),
        None,
        [("jane.smith@acme.com", "Jane Smith")],
    ),
    (
        "external-organizer-not-listed-comes-first",
        (me(), JANE),
        Person("rita@acme.com", "Rita Recruiter"),
        [("rita@acme.com", "Rita Recruiter"), ("jane.smith@acme.com", "Jane Smith")],
    ),
    (
        "organizer-listed-keeps-position-and-lends-name",
        (me(), JANE, att("rita@acme.com")),
        Person("RITA@acme.com", "Rita Recruiter"),
        [("jane.smith@acme.com", "Jane Smith"), ("rita@acme.com", "Rita Recruiter")],
    ),
    (
        "organizer-robot-is-not-kept",
        (me(), JANE),
        Person("noreply@acme.com", "Acme Recruiting"),
        [("jane.smith@acme.com", "Jane Smith")],
    ),
    (
        "organizer-is-me",
        (JANE,),
        Person(ME, "Jordan Lee"),
        [("jane.smith@acme.com", "Jane Smith")],
    ),
    (
        "name-equal-to-address-is-no-name",
        (att("raj@acme.com", "raj@acme.com"),),
        None,
        [("raj@acme.com", "")],
    ),
    (
        "quoted-name-and-mailto",
        (att("mailto:raj@acme.com", '"Raj  Patel"'),),
        None,
        [("raj@acme.com", "Raj Patel")],
    ),
]


@pytest.mark.parametrize(
    ("attendees", "organizer", "expected"),
    [c[1:] for c in DEDUP_CASES],
    ids=[c[0] for c in DEDUP_CASES],
)
def test_dedup_and_organizer(
    attendees: tuple[Attendee, ...], organizer: Person | None, expected: list[tuple[str, str]]
) -> None:
    result = run(event(attendees=attendees, organizer=organizer))
    assert result.is_interview, result.reason
    assert [(p.email, p.name) for p in result.attendees] == expected


# --- company and role -------------------------------------------------------------------

COMPANY_CASES = [
    # id, title, attendees, organizer, expected company
    ("interview-with", "Interview with Acme", (me(), JANE), None, "Acme"),
    ("dash-phone-screen", "Acme - Phone Screen", (me(), JANE), None, "Acme"),
    ("pipe-onsite", "Acme | Onsite", (me(), JANE), None, "Acme"),
    (
        "colon",
        "Northwind Robotics: Technical Interview",
        (me(), att("kim@northwind-robotics.com", "Kim Lo")),
        None,
        "Northwind Robotics",
    ),
    ("parenthesis", "Phone screen (Acme)", (me(), JANE), None, "Acme"),
    ("brackets", "[Acme] Hiring Manager Interview", (me(), JANE), None, "Acme"),
    ("angle-user-second", "Acme <> Jordan", (me(), JANE), None, "Acme"),
    ("slash-user-first", "Jordan / Acme", (me(), JANE), None, "Acme"),
    ("x-with-full-user-name", "Jordan Lee x Acme: Final Round", (me(), JANE), None, "Acme"),
    (
        "with-person-at-company",
        "Interview with Jane at Initech",
        (me(), att("jane@initech.com", "Jane Doe")),
        None,
        "Initech",
    ),
    (
        "with-person-then-parenthesis",
        "Interview with Jane Smith (Acme Corp)",
        (me(), JANE),
        None,
        "Acme Corp",
    ),
    ("with-person-falls-back-to-domain", "Interview with Jane Smith", (me(), JANE), None, "Acme"),
    ("role-is-not-company", "Interview with Acme for Senior Engineer", (me(), JANE), None, "Acme"),
    ("role-then-company", "Product Designer - Acme - Onsite", (me(), JANE), None, "Acme"),
    (
        "inner-small-words-kept",
        "Bank of America Interview",
        (me(), att("kim@bofa.com", "Kim Lo")),
        None,
        "Bank of America",
    ),
    (
        "hyphenated-name-kept-whole",
        "Hewlett-Packard Phone Screen",
        (me(), att("kim@hp.com", "Kim Lo")),
        None,
        "Hewlett-Packard",
    ),
    (
        "domain-match-beats-order",
        "Jane Doe - Globex - Interview",
        (me(), att("jane@globex.com")),
        None,
        "Globex",
    ),
    (
        "bare-title-uses-domain",
        "Interview",
        (me(), att("kim@northwind-robotics.com")),
        None,
        "Northwind Robotics",
    ),
    (
        "meeting-words-only-uses-domain",
        "Technical Interview - Round 2 (Zoom)",
        (me(), JANE),
        None,
        "Acme",
    ),
    ("unshaped-title-uses-domain", "Weekly sync", (me(), JANE), None, "Acme"),
    (
        "organizer-display-name-at",
        "Interview",
        (me(), att("kim@gizmo.io")),
        Person("kim@gizmo.io", "Kim at Gizmo Labs"),
        "Gizmo Labs",
    ),
    (
        "organizer-display-name-via",
        "Call",
        (me(), att("kim@northwind-robotics.com")),
        Person("no-reply@greenhouse.io", "Northwind via Greenhouse"),
        "Northwind",
    ),
    (
        "organizer-display-name-recruiting",
        "Interview",
        (me(), JANE),
        Person("recruiting@acme-talent.com", "Umbrella Recruiting"),
        "Umbrella",
    ),
    (
        "w-slash-person",
        "Initech phone interview w/ Jane",
        (me(), att("jane@initech.com", "Jane")),
        None,
        "Initech",
    ),
    ("reply-prefix", "Re: Interview with Acme", (me(), JANE), None, "Acme"),
    (
        "google-updated-invitation",
        "Updated invitation: Globex Onsite @ Mon Mar 2, 2026 10am - 2pm (PST) "
        "(jordan.lee@gmail.com)",
        (me(), JANE),
        None,
        "Globex",
    ),
    ("keyword-before-colon", "Recruiter Call: Umbrella Corp", (me(), JANE), None, "Umbrella Corp"),
    (
        "candidate-named-in-ats-title",
        "Interview with Jordan Lee (Acme)",
        (me(), JANE),
        None,
        "Acme",
    ),
    ("short-domain-upper-case", "Interview", (me(), att("kim@ibm.com")), None, "IBM"),
    ("two-level-suffix", "Interview", (me(), att("kim@mail.initech.co.uk")), None, "Initech"),
    ("free-mail-lead-gives-no-company", "Interview", (me(), att("kim@gmail.com")), None, ""),
]


@pytest.mark.parametrize(
    ("title", "attendees", "organizer", "expected"),
    [c[1:] for c in COMPANY_CASES],
    ids=[c[0] for c in COMPANY_CASES],
)
def test_company(
    title: str, attendees: tuple[Attendee, ...], organizer: Person | None, expected: str
) -> None:
    rules = DetectionRules(allow_free_mail=True, keywords=(*RULES.keywords, "call"))
    result = run(event(title, attendees, organizer=organizer, description="interview"), rules=rules)
    assert result.is_interview, result.reason
    assert result.company == expected


ROLE_CASES = [
    # id, title, description, expected role
    ("for-role", "Interview with Acme for Senior Engineer", "", "Senior Engineer"),
    (
        "for-the-role",
        "Acme - Interview for the Staff Data Scientist role",
        "",
        "Staff Data Scientist",
    ),
    ("role-before-keyword", "Senior Engineer Interview", "", "Senior Engineer"),
    ("role-segment", "Acme | Product Designer | Onsite", "", "Product Designer"),
    ("slash-inside-role", "AI/ML Engineer - Phone Screen", "", "AI/ML Engineer"),
    (
        "role-label-in-description",
        "Acme - Onsite",
        "Hello!\nRole: Backend Developer\n",
        "Backend Developer",
    ),
    (
        "position-label-in-html",
        "Acme - Onsite",
        "<p>Position: <b>Head of Design</b></p>",
        "Head of Design",
    ),
    (
        "title-beats-description",
        "Acme - Engineering Manager Interview",
        "Position: Something Else Entirely",
        "Engineering Manager",
    ),
    ("hiring-manager-is-not-a-role", "Hiring Manager Interview - Acme", "", ""),
    ("technical-is-not-a-role", "Technical Interview", "", ""),
    ("for-without-role-word", "Interview for the Platform team", "", ""),
    ("empty-label-skipped", "Acme interview", "Role:\nPosition: QA Lead", "QA Lead"),
    ("unknown", "Acme interview", "See you soon.", ""),
]


@pytest.mark.parametrize(
    ("title", "description", "expected"),
    [c[1:] for c in ROLE_CASES],
    ids=[c[0] for c in ROLE_CASES],
)
def test_role(title: str, description: str, expected: str) -> None:
    result = run(event(title, description=description))
    assert result.is_interview, result.reason
    assert result.role == expected


@pytest.mark.parametrize(
    ("domain", "expected"),
    [
        ("northwind-robotics.com", "Northwind Robotics"),
        ("acme.com", "Acme"),
        ("mail.acme.co.uk", "Acme"),
        ("ibm.com", "IBM"),
        ("open_ai.com", "Open Ai"),
        ("xn--bcher-kva.example", "Bücher"),
        ("", ""),
    ],
    ids=[
        "hyphen",
        "plain",
        "subdomain-and-two-level-suffix",
        "short",
        "underscore",
        "idna",
        "empty",
    ],
)
def test_company_from_domain(domain: str, expected: str) -> None:
    assert company_from_domain(domain) == expected


# --- lead -------------------------------------------------------------------------------

RITA = Person("rita@acme.com", "Rita Recruiter")

LEAD_CASES = [
    # id, attendees, organizer, override, expected lead email, reason fragment
    ("external-organizer", (me(), JANE, RAJ), RITA, None, "rita@acme.com", ""),
    ("organizer-listed-later", (me(), JANE, att("rita@acme.com")), RITA, None, "rita@acme.com", ""),
    ("no-organizer-first-kept", (me(), JANE, RAJ), None, None, "jane.smith@acme.com", ""),
    ("organizer-is-me", (me(), RAJ, JANE), Person(ME), None, "raj@acme.com", ""),
    ("organizer-robot", (me(), RAJ, JANE), Person("noreply@acme.com"), None, "raj@acme.com", ""),
    ("organizer-free-mail", (me(), RAJ), Person("rita@gmail.com"), None, "raj@acme.com", ""),
    (
        "organizer-declined",
        (me(), RAJ, att("rita@acme.com", response=Response.DECLINED)),
        RITA,
        None,
        "raj@acme.com",
        "",
    ),
    ("override-wins", (me(), JANE, RAJ), RITA, "raj@acme.com", "raj@acme.com", ""),
    ("override-case-insensitive", (me(), JANE, RAJ), RITA, " RAJ@ACME.COM ", "raj@acme.com", ""),
    (
        "override-unknown-ignored",
        (me(), JANE, RAJ),
        RITA,
        "ghost@acme.com",
        "rita@acme.com",
        "lead override ghost@acme.com is not among them",
    ),
    (
        "override-of-skipped-ignored",
        (me(), JANE, att("bob@gmail.com")),
        None,
        "bob@gmail.com",
        "jane.smith@acme.com",
        "not among them",
    ),
    ("blank-override-ignored", (me(), JANE, RAJ), None, "  ", "jane.smith@acme.com", ""),
]


@pytest.mark.parametrize(
    ("attendees", "organizer", "override", "expected", "fragment"),
    [c[1:] for c in LEAD_CASES],
    ids=[c[0] for c in LEAD_CASES],
)
def test_lead(
    attendees: tuple[Attendee, ...],
    organizer: Person | None,
    override: str | None,
    expected: str,
    fragment: str,
) -> None:
    result = run(event(attendees=attendees, organizer=organizer), lead=override)
    assert result.is_interview, result.reason
    assert result.lead is not None
    assert result.lead.email == expected
    assert result.lead in result.attendees
    assert fragment in result.reason


def test_lead_keeps_display_name() -> None:
    result = run(event(attendees=(me(), JANE), organizer=Person(JANE.email)))
    assert result.lead == Person("jane.smith@acme.com", "Jane Smith")


# --- the whole answer -------------------------------------------------------------------


def test_full_detection() -> None:
    result = run(
        event(
            "Acme - Phone Screen for Senior Engineer",
            (
                me(),
                JANE,
                att("raj@eng.acme.com", "Raj Patel"),
                att("kim@acme-partner.io", "Kim Lo"),
                att("room-1@acme.com", kind=AttendeeKind.RESOURCE),
            ),
            organizer=Person("noreply@greenhouse.io", "Acme via Greenhouse"),
        )
    )
    assert result == Detection(
        is_interview=True,
        reason='"Acme - Phone Screen for Senior Engineer" matches the keyword "phone screen" '
        "in its title and has 3 external interviewers.",
        company="Acme",
        role="Senior Engineer",
        attendees=(
            Person("jane.smith@acme.com", "Jane Smith"),
            Person("raj@eng.acme.com", "Raj Patel"),
            Person("kim@acme-partner.io", "Kim Lo"),
        ),
        lead=Person("jane.smith@acme.com", "Jane Smith"),
        skipped=(
            Skipped("noreply@greenhouse.io", SKIP_ROBOT),
            Skipped(ME, SKIP_YOU),
            Skipped("room-1@acme.com", SKIP_RESOURCE),
        ),
        employer_domains=("acme.com", "acme-partner.io"),
        company_reason="the event title, matching the interviewers' domain",
    )


def test_free_mail_never_an_employer_domain() -> None:
    result = run(
        event(attendees=(me(), att("bob@gmail.com"), JANE)),
        rules=DetectionRules(allow_free_mail=True),
    )
    assert [p.email for p in result.attendees] == ["bob@gmail.com", "jane.smith@acme.com"]
    assert result.employer_domains == ("acme.com",)
    assert result.company == "Acme"


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("jordan@initech.com", ("initech.com",)),
        ("Jordan@Mail.Initech.co.uk", ("initech.co.uk",)),
        ("jordan.lee@gmail.com", ()),
        ("jordan@fastmail.com", ()),
        ("not an address", ()),
        ("", ()),
    ],
    ids=["work", "subdomain", "gmail", "fastmail", "garbage", "empty"],
)
def test_default_org_domains(address: str, expected: tuple[str, ...]) -> None:
    assert default_org_domains(address) == expected


# --- odd input --------------------------------------------------------------------------


def _odd(**fields: Any) -> Event:
    """An event with fields a sloppy source might hand over despite the type hints."""
    base = event()
    for name, value in fields.items():
        object.__setattr__(base, name, value)
    return base


ODD_CASES = [
    ("none-title", _odd(title=None), False),
    ("none-description", _odd(description=None), True),
    ("none-attendees", _odd(attendees=None), False),
    ("attendee-none-email", _odd(attendees=(att(None), JANE)), True),  # type: ignore[arg-type]
    ("attendee-none-name", _odd(attendees=(att("raj@acme.com", None),)), True),  # type: ignore[arg-type]
    ("garbage-attendee", _odd(attendees=("jane@acme.com", JANE)), True),
    ("organizer-none-email", _odd(organizer=Person(None)), True),  # type: ignore[arg-type]
    ("control-characters", event("Acme\r\nBcc: x@y.z - Interview\x00"), True),
    ("emoji-and-rtl", event("🎉 Acme \u202e Interview 面接"), True),
    ("huge-title", event("Interview " + "Acme " * 20_000), True),
    ("huge-html", event("Acme", description="<div>" * 15_000 + "interview"), True),
    ("unicode-address", event(attendees=(att("jöhn@bücher.de", "Jöhn"),)), True),
    ("address-with-spaces", event(attendees=(att("jane smith@acme.com"), JANE)), True),
]


@pytest.mark.parametrize(
    ("ev", "expected"), [c[1:] for c in ODD_CASES], ids=[c[0] for c in ODD_CASES]
)
def test_odd_input(ev: Event, expected: bool) -> None:
    result = run(ev)
    assert result.is_interview is expected, result.reason
    assert result.reason


def test_five_hundred_attendees() -> None:
    crowd = tuple(att(f"p{i}@acme.com", f"P {i}") for i in range(500))
    excluded = run(event(attendees=(me(), *crowd)))
    assert not excluded.is_interview
    assert "501 people" in excluded.reason
    allowed = run(event(attendees=(me(), *crowd)), rules=DetectionRules(max_attendees=1000))
    assert len(allowed.attendees) == 500


def test_detect_turns_an_internal_failure_into_a_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object) -> Detection:
        raise RuntimeError("bug")

    monkeypatch.setattr("mailbridge.detect.judge", boom)
    result = detect(event(), (ME,), (), RULES)
    assert result == Detection(False, "the event could not be read as an interview (RuntimeError)")


# --- property ---------------------------------------------------------------------------

_LOCALS = st.sampled_from(
    [
        "jane",
        "Raj.Patel",
        "noreply",
        "no-reply",
        "careers",
        "room-101",
        "team",
        "hr",
        "x",
        "calendar-notification",
        "jordan.lee",
        "Ünïcødé",
        "a+b",
        "",
    ]
)
_DOMAINS = st.sampled_from(
    [
        "acme.com",
        "ACME.com",
        "gmail.com",
        "GMail.com",
        "outlook.com",
        "greenhouse.io",
        "resource.calendar.google.com",
        "initech.co.uk",
        "mail.initech.co.uk",
        "calendly.com",
        "xn--bcher-kva.example",
        "bücher.de",
        "localhost",
        "",
    ]
)
_EMAILS = st.one_of(
    st.builds(lambda local, domain: f"{local}@{domain}", _LOCALS, _DOMAINS),
    st.builds(lambda local, domain: f" mailto:{local}@{domain} ", _LOCALS, _DOMAINS),
    st.text(max_size=30),
)
_TITLES = st.one_of(
    st.sampled_from(
        [
            "Acme - Phone Screen",
            "Interview with Acme for Senior Engineer",
            "Call",
            "Onsite",
            "Candidate debrief",
            "Jordan / Acme",
            "Interview: Jane Candidate",
            "",
        ]
    ),
    st.text(max_size=60),
    st.builds(lambda a, b: f"{a} interview {b}", st.text(max_size=20), st.text(max_size=20)),
)
_ATTENDEES = st.builds(
    Attendee,
    email=_EMAILS,
    name=st.text(max_size=30),
    kind=st.sampled_from(AttendeeKind),
    response=st.sampled_from(Response),
    is_self=st.booleans(),
    is_organizer=st.booleans(),
)
_EVENTS = st.builds(
    Event,
    key=st.just(EventKey("primary", "uid")),
    title=_TITLES,
    start=st.just(START),
    end=st.just(START + timedelta(hours=1)),
    description=st.one_of(st.just(""), st.just("Your interview"), st.text(max_size=80)),
    location=st.text(max_size=10),
    all_day=st.booleans(),
    status=st.sampled_from(EventStatus),
    organizer=st.one_of(st.none(), st.builds(Person, _EMAILS, st.text(max_size=20))),
    attendees=st.lists(_ATTENDEES, max_size=15).map(tuple),
    recurring=st.booleans(),
)
_RULES = st.builds(
    DetectionRules,
    max_attendees=st.integers(0, 20),
    include_recurring=st.booleans(),
    allow_free_mail=st.booleans(),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ev=_EVENTS,
    own=st.lists(_EMAILS, max_size=2),
    org=st.lists(st.sampled_from(["initech.co.uk", "acme.com", "gmail.com", ""]), max_size=2),
    rules=_RULES,
    lead=st.one_of(st.none(), _EMAILS),
)
def test_never_raises_and_never_keeps_the_wrong_people(
    ev: Event, own: list[str], org: list[str], rules: DetectionRules, lead: str | None
) -> None:
    own_addresses = (ME, *own)
    result = judge(ev, own_addresses, org, rules, lead)
    assert result.reason

    def same(a: str, b: str) -> bool:
        clean = (
            a.strip().removeprefix("mailto:").strip().lower(),
            b.strip().removeprefix("mailto:").strip().lower(),
        )
        return clean[0] == clean[1]

    for person in result.attendees:
        email = person.email
        assert not any(same(email, o) for o in own_addresses), email
        assert not any(a.is_self and same(email, a.email) for a in ev.attendees), email
        assert not any(
            a.kind in (AttendeeKind.RESOURCE, AttendeeKind.GROUP) or a.response == Response.DECLINED
            for a in ev.attendees
            if same(email, a.email)
        ), email
        assert not domains.is_robot(email)
        assert not domains.is_resource(email)
        assert not domains.is_ats(email)
        assert not domains.is_group(email)
        if not rules.allow_free_mail:
            assert not domains.is_free_mail(email)
        assert not any(
            domains.same_organisation(email, [d]) for d in org if d and not domains.is_free_mail(d)
        )

    if result.is_interview:
        assert result.attendees
        assert result.lead in result.attendees
        assert len({p.email.lower() for p in result.attendees}) == len(result.attendees)
        assert not any(domains.is_free_mail(d) for d in result.employer_domains)
        assert ev.status != EventStatus.CANCELLED
        assert not ev.all_day
        assert rules.include_recurring or not ev.recurring
    else:
        assert result.attendees == ()
        assert result.lead is None
