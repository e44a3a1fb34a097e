"""Names right: the company from real-world-shaped invitations, and how each person is greeted.

Tables only. The company cases are titles and organizers as calendars and hiring systems write
them (multi-word names, legal suffixes, "via Greenhouse", "Interview with ...", other languages);
each row also says which evidence must win, since `status` shows that reason to the user.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mailbridge.compose import first_name, greeting_name, is_team
from mailbridge.detect import judge
from mailbridge.model import Attendee, Event, EventKey, Person, Response
from mailbridge.settings import DetectionRules

ME = "jordan.lee@gmail.com"
START = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
RULES = DetectionRules(allow_free_mail=True, keywords=(*DetectionRules().keywords, "call"))

TITLE = "the event title"
MATCHED = "the event title, matching the interviewers' domain"


def org(email: str) -> str:
    return f"the organisation in {email}'s display name"


def domain(name: str) -> str:
    return f"the interviewers' domain {name}"


# id, title, interviewer (email, name), organizer (email, name) or None, company, evidence
COMPANY_CASES: list[tuple[str, str, tuple[str, str], tuple[str, str] | None, str, str]] = [
    ("suffix-co", "Interview - Second Co", ("ann@secondco.com", "Ann Wu"), None,
     "Second Co", MATCHED),
    ("suffix-co-other-domain", "Interview - Second Co", ("ann@talentfirm.io", "Ann Wu"), None,
     "Second Co", TITLE),
    ("ordinal-word-in-name", "First Solar Interview", ("ann@firstsolar.com", "Ann Wu"), None,
     "First Solar", MATCHED),
    ("suffix-inc", "Phone screen - Acme Inc.", ("ann@acme.com", "Ann Wu"), None,
     "Acme Inc", MATCHED),
    ("suffix-ltd-in-parenthesis", "Interview with Priya (Blue Origin Ltd)",
     ("priya@blueorigin.com", "Priya Raman"), None, "Blue Origin Ltd", MATCHED),
    ("suffix-gmbh-german", "Vorstellungsgespräch bei Müller GmbH",
     ("anna@mueller.de", "Anna Schmidt"), None, "Müller GmbH", MATCHED),
    ("suffix-co-dot", "Northwind Robotics Co. Onsite",
     ("dana@northwind-robotics.com", "Dana Whitfield"), None, "Northwind Robotics Co", MATCHED),
    ("multi-word", "Interview: Jordan Lee <> Acme Labs", ("ann@acmelabs.io", "Ann Wu"), None,
     "Acme Labs", MATCHED),
    ("via-greenhouse-in-title", "Jordan Lee - Senior Engineer - Stripe via Greenhouse",
     ("ann@stripe.com", "Ann Wu"), None, "Stripe", MATCHED),
    ("via-greenhouse-organizer", "Call", ("kim@northwind-robotics.com", "Kim Lo"),
     ("no-reply@greenhouse.io", "Northwind via Greenhouse"), "Northwind",
     org("no-reply@greenhouse.io")),
    ("interview-with-company", "Interview with Globex", ("hank@globex.com", "Hank Scorpio"), None,
     "Globex", MATCHED),
    ("interview-with-person", "Interview with Hank Scorpio", ("hank@globex.com", "Hank Scorpio"),
     None, "Globex", domain("globex.com")),
    ("interview-with-person-at-company", "Interview with Jane at Initech",
     ("jane@initech.com", "Jane Doe"), None, "Initech", MATCHED),
    ("french", "Entretien - Société Générale", ("luc@socgen.com", "Luc Martin"), None,
     "Société Générale", TITLE),
    ("spanish", "Entrevista con Telefónica", ("ana@telefonica.com", "Ana Ruiz"), None,
     "Telefónica", MATCHED),
    ("japanese", "面接 - 株式会社メルカリ", ("taro@mercari.com", "山田 太郎"), None,
     "株式会社メルカリ", TITLE),
    ("dutch-acronym", "Sollicitatiegesprek ING", ("eva@ing.com", "Eva de Vries"), None,
     "ING", MATCHED),
    ("italian", "Colloquio presso Ferrari S.p.A.", ("gio@ferrari.com", "Giovanni Rossi"), None,
     "Ferrari S.p.A", MATCHED),
    ("bank-of-america", "Bank of America Interview", ("kim@bofa.com", "Kim Lo"), None,
     "Bank of America", TITLE),
    ("hyphenated-company", "Hewlett-Packard Phone Screen", ("kim@hp.com", "Kim Lo"), None,
     "Hewlett-Packard", TITLE),
    ("role-and-company-pipes", "Acme | Product Designer | Onsite", ("ann@acme.com", "Ann Wu"),
     None, "Acme", MATCHED),
    ("company-then-role", "Globex Corporation - Staff Engineer Interview",
     ("hank@globex.com", "Hank Scorpio"), None, "Globex Corporation", MATCHED),
    ("organizer-at-company", "Interview", ("kim@gizmo.io", "Kim Lo"),
     ("kim@gizmo.io", "Kim at Gizmo Labs"), "Gizmo Labs", org("kim@gizmo.io")),
    ("organizer-talent-team", "Technical Interview",
     ("kim@umbrella-corp.com", "Kim Lo"),
     ("talent@umbrella-corp.com", "Umbrella Corporation Talent Team"), "Umbrella Corporation",
     org("talent@umbrella-corp.com")),
    ("bare-title-hyphenated-domain", "Interview", ("kim@northwind-robotics.com", "Kim Lo"), None,
     "Northwind Robotics", domain("northwind-robotics.com")),
    ("bare-title-short-domain", "Interview", ("kim@ibm.com", "Kim Lo"), None, "IBM",
     domain("ibm.com")),
    ("country-domain", "Final round interview", ("kim@mail.initech.co.uk", "Kim Lo"), None,
     "Initech", domain("initech.co.uk")),
    ("google-updated-invitation",
     "Updated invitation: Globex Onsite @ Mon Mar 2, 2026 10am - 2pm (PST) (jordan.lee@gmail.com)",
     ("hank@globex.com", "Hank Scorpio"), None, "Globex", MATCHED),
    ("reply-prefix", "Re: Interview with Acme", ("ann@acme.com", "Ann Wu"), None, "Acme",
     MATCHED),
    ("keyword-before-colon", "Recruiter Call: Umbrella Corp", ("kim@umbrella.com", "Kim Lo"),
     None, "Umbrella Corp", MATCHED),
    ("candidate-name-x-company", "Jordan Lee x Acme: Final Round", ("ann@acme.com", "Ann Wu"),
     None, "Acme", MATCHED),
    ("free-mail-only", "Interview", ("kim@gmail.com", "Kim Lo"), None, "",
     "nothing in the event names the employer"),
]


@pytest.mark.parametrize(
    ("title", "interviewer", "organizer", "company", "evidence"),
    [c[1:] for c in COMPANY_CASES],
    ids=[c[0] for c in COMPANY_CASES],
)
def test_company_and_its_evidence(
    title: str,
    interviewer: tuple[str, str],
    organizer: tuple[str, str] | None,
    company: str,
    evidence: str,
) -> None:
    event = Event(
        key=EventKey("primary", "uid-1"),
        title=title,
        start=START,
        end=START + timedelta(hours=1),
        description="interview",
        organizer=Person(*organizer) if organizer else None,
        attendees=(
            Attendee(ME, "Jordan Lee", response=Response.ACCEPTED, is_self=True),
            Attendee(*interviewer, response=Response.ACCEPTED),
        ),
    )
    result = judge(event, (ME,), (), RULES)
    assert result.is_interview, result.reason
    assert (result.company, result.company_reason) == (company, evidence)


def test_there_are_at_least_thirty_company_cases() -> None:
    assert len(COMPANY_CASES) >= 30


# id, email, display name, first name, greeting (after "Dear"), is a team
NAME_CASES = [
    ("plain", "dana.lee@acme.com", "Dana Lee", "Dana", "Dana", False),
    ("honorific", "a.schmidt@acme.de", "Dr. Anna Schmidt", "Anna", "Anna", False),
    ("honorific-no-dot", "r.patel@acme.com", "Prof Raj Patel", "Raj", "Raj", False),
    ("hyphenated", "jl.moreau@acme.fr", "Jean-Luc Moreau", "Jean-Luc", "Jean-Luc", False),
    ("hyphenated-lower", "jl.moreau@acme.fr", "jean-luc moreau", "Jean-Luc", "Jean-Luc", False),
    ("particle-surname", "l.vanderberg@acme.nl", "Ludwig van der Berg", "Ludwig", "Ludwig", False),
    ("surname-first-comma", "m.garcia@acme.es", "García Márquez, María", "María", "María",
     False),
    ("credentials", "k.osei@acme.com", "Kwame Osei, PhD", "Kwame", "Kwame", False),
    ("pronouns", "sam@acme.com", "Sam Ortiz (they/them)", "Sam", "Sam", False),
    ("chinese", "xiaoming.wang@acme.cn", "王小明", "王小明", "王小明", False),
    ("japanese-family-first", "taro.yamada@acme.jp", "山田 太郎", "山田", "山田", False),
    ("cyrillic", "ivan@acme.ru", "Иван Петров", "Иван", "Иван", False),
    ("arabic", "m.ali@acme.ae", "محمد علي", "محمد", "محمد", False),
    ("greek", "eleni@acme.gr", "Ελένη Παππά", "Ελένη", "Ελένη", False),
    ("name-is-address", "dana.lee@acme.com", "dana.lee@acme.com", "Dana", "Dana", False),
    ("no-name-address", "priya.raman@acme.com", "", "Priya", "Priya", False),
    ("all-caps", "lee@acme.com", "DANA LEE", "Dana", "Dana", False),
    ("initial-then-name", "jr.smith@acme.com", "J. Robert Smith", "Robert", "Robert", False),
    ("recruiting-team", "talent.partners@acme.com", "Recruiting Team", "there",
     "Recruiting team", True),
    ("talent-acquisition", "ta@acme.com", "Talent Acquisition", "there",
     "Talent Acquisition team", True),
    ("company-recruiting", "hello.jobs@acme.com", "Acme Recruiting", "there", "Recruiting team",
     True),
    ("the-hiring-team", "x@acme.com", "The Hiring Team", "there", "Hiring team", True),
    ("role-mailbox-no-name", "careers@acme.com", "", "there", "Careers team", True),
    ("hr-mailbox", "hr@acme.com", "", "there", "HR team", True),
    ("hiring-manager", "hm@acme.com", "Hiring Manager", "there", "Hiring Manager", True),
    ("talent-partner", "tp@acme.com", "Talent Partner", "there", "Talent Partner", True),
    ("person-named-like-a-word", "rita@acme.com", "Rita Recruiter", "Rita", "Rita", False),
    ("opaque-address", "k7@acme.com", "", "there", "[[ADD: their name]]", False),
]


@pytest.mark.parametrize(
    ("email", "name", "first", "greeting", "team"),
    [c[1:] for c in NAME_CASES],
    ids=[c[0] for c in NAME_CASES],
)
def test_names_and_greetings(email: str, name: str, first: str, greeting: str, team: bool) -> None:
    person = Person(email, name)
    assert first_name(person) == first
    assert greeting_name(person) == greeting
    assert is_team(person) is team
    # A greeting never reads "Dear Recruiting," or names a team as if it were a person.
    assert greeting not in {"Recruiting", "Talent", "Talent Acquisition", "Careers", "HR", "Hiring"}
