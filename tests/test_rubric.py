"""The rubric from the advice the product is built on, applied to every built-in template.

For every combination the templates branch on (a panel of one to six, notes or none, notes for
one interviewer, role and company known or not, a decision date or none, written the same day
or the next, a follow-up threaded under the thank-you or not), each draft must:

- go to one recipient, greeted by the right first name (or their team);
- name the company and the role once each;
- stay at about 200 words or fewer;
- carry no text-speak;
- share no sentence of its own with another draft of the same panel;
- leave no unfilled gap except the marked ones, and mark every gap;
- pass proofreading once the gaps are filled.

The demo's Sent copies are held to the same rubric, and `preview` of a six-person panel is
checked through the real command line.
"""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from email import message_from_bytes
from email import policy as email_policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from mailbridge import demo
from mailbridge.compose import GAP_PATTERN, find_gaps, render
from mailbridge.model import (
    DraftKind,
    DraftMessage,
    EventKey,
    InterviewRow,
    InterviewState,
    Note,
    Person,
    Policy,
)
from mailbridge.proofread import proofread
from mailbridge.settings import AccountSettings

SIGNATURE = "Jordan Lee\n555-0100"
ZONE = "America/Chicago"
# Tuesday December 1 2026, 2:00 PM in Chicago.
START = datetime(2026, 12, 1, 20, 0, tzinfo=UTC)

# The people a panel is drawn from, with the greeting each must get.
PEOPLE: list[tuple[Person, str]] = [
    (Person("dana.whitfield@acme.example", "Dr. Dana Whitfield"), "Dana"),
    (Person("priya.raman@acme.example", "Priya Raman"), "Priya"),
    (Person("jl.moreau@acme.example", "Jean-Luc Moreau"), "Jean-Luc"),
    (Person("xiaoming.wang@acme.example", "王小明"), "王小明"),
    (Person("l.vanderberg@acme.example", "Ludwig van der Berg"), "Ludwig"),
    (Person("talent.partners@acme.example", "Recruiting Team"), "Recruiting team"),
]

SHARED_NOTE = "we talked about their move to ROS 2"
OWN_NOTE = "her story about the warehouse robots that learned to share aisles"

# Text-speak the rubric forbids, whatever proofread knows about.
TEXT_SPEAK = re.compile(r"(?i)\b(?:u|ur|thx|pls|plz|gonna|wanna|btw|lol|omg|idk|imo|cuz)\b|!!|:\)")


@dataclass(frozen=True)
class Case:
    panel: int
    notes: str  # none | shared | own | both
    job: str  # both | role | company | neither
    decision: bool
    next_day: bool

    @property
    def id(self) -> str:
        return (
            f"panel{self.panel}-notes_{self.notes}-job_{self.job}"
            f"-{'decision' if self.decision else 'no_decision'}"
            f"-{'next_day' if self.next_day else 'same_day'}"
        )


CASES = [
    Case(*combo)
    for combo in itertools.product(
        range(1, 7),
        ("none", "shared", "own", "both"),
        ("both", "role", "company", "neither"),
        (False, True),
        (False, True),
    )
]


def account() -> AccountSettings:
    return AccountSettings(
        name="me",
        provider="local",
        address="jordan.lee@example.org",
        display_name="Jordan Lee",
        signature=SIGNATURE,
        policy=Policy(timezone=ZONE),
    )


def interview_for(case: Case) -> InterviewRow:
    people = tuple(p for p, _ in PEOPLE[: case.panel])
    notes: list[Note] = []
    if case.notes in ("shared", "both"):
        notes.append(Note(SHARED_NOTE, number=len(notes) + 1))
    if case.notes in ("own", "both"):
        notes.append(Note(OWN_NOTE, recipient=people[0].email, number=len(notes) + 1))
    role = "Robotics Software Engineer" if case.job in ("both", "role") else ""
    company = "Northwind Robotics" if case.job in ("both", "company") else ""
    return InterviewRow(
        id=1,
        account="me",
        key=EventKey("primary", f"rubric-{case.panel}"),
        title="Interview",
        company=company,
        role=role,
        start=START,
        end=START + timedelta(hours=1),
        state=InterviewState.ACTIVE,
        attendees=people,
        lead=people[0],
        note_list=tuple(notes),
        decision_date=date(2026, 12, 11) if case.decision else None,
    )


def body_without_signature(body: str) -> str:
    assert body.rstrip().endswith(SIGNATURE)
    return body.rstrip()[: -len(SIGNATURE)]


def sentences(body: str) -> set[str]:
    """The sentences of a letter (greeting and sign-off lines count as sentences)."""
    text = body_without_signature(body)
    parts = re.split(r"(?<=[.!?;])\s+|\n+", text)
    return {p.strip() for p in parts if p.strip()}


def fill(body: str) -> str:
    """The candidate's own words in place of every gap."""
    return GAP_PATTERN.sub("I keep thinking about the sensor fusion problem you described.", body)


def check_rubric(draft: DraftMessage, recipient: Person, greeting: str, interview: InterviewRow,
                 expected_gaps: int) -> None:
    msg = message_from_bytes(draft.raw, policy=email_policy.default)
    assert isinstance(msg, EmailMessage)
    # One recipient, and nobody copied.
    assert [a.addr_spec for a in msg["To"].addresses] == [recipient.email]
    assert msg["Cc"] is None and msg["Bcc"] is None
    body = draft.body
    # The right name.
    assert body.startswith(f"Dear {greeting},\n\n"), body.splitlines()[0]
    # Company and role named once each, in the letter itself.
    text = body_without_signature(body)
    if interview.company:
        assert text.count(interview.company) == 1, text
    if interview.role:
        assert text.count(interview.role) == 1, text
    # Short.
    assert len(fill(text).split()) <= 200
    # Real words.
    assert not TEXT_SPEAK.search(text), text
    # No gap but the marked ones, and every gap marked.
    assert draft.gaps == find_gaps(body)
    assert len(draft.gaps) == expected_gaps, draft.gaps
    assert "\n\n\n" not in body and not body.startswith(("\n", " "))
    rest = GAP_PATTERN.sub("", text)
    for leftover in ("[[", "]]", "{{", "}}", "{%", "None", " ,", " .", "  ", "()", "at .",
                     "the  ", "there,"):
        assert leftover not in rest, (leftover, text)
    # Proofreading finds nothing once the candidate has written their parts.
    assert proofread(fill(body), [recipient]) == []


def time_words(case: Case) -> str:
    return "yesterday" if case.next_day else "this afternoon"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_thank_you_rubric(case: Case) -> None:
    interview = interview_for(case)
    written = interview.end + (timedelta(hours=18) if case.next_day else timedelta(hours=2))
    panel = PEOPLE[: case.panel]
    drafts = []
    for person, greeting in panel:
        draft = render(DraftKind.THANK_YOU, interview, person, account(), now=written)
        own = case.notes in ("own", "both") and person == panel[0][0]
        has_notes = own or case.notes in ("shared", "both")
        gaps = (0 if has_notes else 1) + 1 + (1 if greeting.startswith("[[") else 0)
        check_rubric(draft, person, greeting, interview, gaps)
        assert time_words(case) in draft.body
        assert ("by Friday, December 11" in draft.body or "around Friday, December 11" in draft.body
                ) is case.decision
        # A note for one interviewer reaches only that interviewer; a note for the interview
        # reaches everyone, as a sentence of its own.
        assert ("Her story about the warehouse robots that learned to share aisles." in draft.body
                ) is own
        assert ("We talked about their move to ROS 2." in draft.body) is (
            case.notes in ("shared", "both")
        )
        drafts.append(draft)
    # One letter per person: apart from the candidate's own notes, no sentence is shared.
    notes = {"We talked about their move to ROS 2."}
    for first, second in itertools.combinations(drafts, 2):
        shared = (sentences(first.body) & sentences(second.body)) - notes
        assert not shared, shared


@pytest.mark.parametrize("threaded", [False, True], ids=["new-thread", "threaded"])
@pytest.mark.parametrize(
    "case",
    [c for c in CASES if c.notes == "none" and not c.next_day],
    ids=lambda c: c.id,
)
def test_follow_up_rubric(case: Case, threaded: bool) -> None:
    interview = interview_for(case)
    lead, greeting = PEOPLE[0]
    written = interview.end + timedelta(days=12)
    thanks = render(DraftKind.THANK_YOU, interview, lead, account(), now=interview.end)
    draft = render(
        DraftKind.FOLLOW_UP, interview, lead, account(), now=written,
        in_reply_to=thanks.message_id if threaded else "",
        thread_subject=thanks.subject if threaded else "",
    )
    check_rubric(draft, lead, greeting, interview, expected_gaps=2)
    assert draft.subject.startswith("Re: ") is threaded
    assert "on Tuesday, December 1" in draft.body  # the interview, as a date
    assert ("by Friday, December 11" in draft.body) is case.decision
    # The others on the panel are thanked by name; a team inbox is not a name to pass on.
    others = [g for _, g in PEOPLE[1 : case.panel] if not g.endswith(" team")]
    for name in others:
        assert name in draft.body
    assert "Recruiting" not in draft.body.split("Dear", 1)[1].split("\n", 1)[1]


@pytest.mark.parametrize(
    ("hours_after", "words"),
    [(1, "this afternoon"), (18, "yesterday"), (24 * 3, "on Tuesday"),
     (24 * 9, "on Tuesday, December 1")],
    ids=["same-day", "next-morning", "days-later", "over-a-week"],
)
def test_time_in_words_people_use(hours_after: int, words: str) -> None:
    interview = interview_for(Case(1, "none", "both", False, False))
    morning = replace(interview, start=START - timedelta(hours=6), end=START - timedelta(hours=5))
    draft = render(DraftKind.THANK_YOU, interview, PEOPLE[0][0], account(),
                   now=interview.end + timedelta(hours=hours_after))
    assert f" {words}" in draft.body
    early = render(DraftKind.THANK_YOU, morning, PEOPLE[0][0], account(),
                   now=morning.end + timedelta(hours=1))
    assert " this morning" in early.body


# --- the demo and the command line ------------------------------------------------------


@pytest.mark.slow
def test_the_demo_sends_filled_letters_that_pass_the_rubric(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert demo.run(tmp_path / "demo") == 0
    out = capsys.readouterr().out
    sent_dir = tmp_path / "demo" / "Maildir" / ".Sent"
    sent = [
        message_from_bytes(p.read_bytes(), policy=email_policy.default)
        for p in sorted((sent_dir / "cur").iterdir()) + sorted((sent_dir / "new").iterdir())
    ]
    assert len(sent) == 2
    greetings = {demo.LEAD[1]: "Dana", demo.SECOND[1]: "Priya"}
    bodies = []
    for msg in sent:
        assert isinstance(msg, EmailMessage)
        (to,) = msg["To"].addresses
        part = msg.get_body(preferencelist=("plain",))
        assert part is not None
        body = str(part.get_content())
        bodies.append(body)
        assert body.startswith(f"Dear {greetings[to.addr_spec]},\n")
        assert find_gaps(body) == ()  # the candidate filled every gap before sending
        assert "[[" not in body
        assert proofread(body, [Person(to.addr_spec, to.display_name)]) == []
        text = body_without_signature(body)
        assert text.count("Northwind Robotics") == 1
        assert len(text.split()) <= 200
    assert not (sentences(bodies[0]) & sentences(bodies[1]))
    assert "fills the gaps" in out


SIX = [
    ("Dana Whitfield", "dana.whitfield"),
    ("Priya Raman", "priya.raman"),
    ("Jean-Luc Moreau", "jl.moreau"),
    ("Ludwig van der Berg", "l.vanderberg"),
    ("Amara Okafor", "amara.okafor"),
    ("Kenji Sato", "kenji.sato"),
]


def six_person_calendar(start: datetime) -> str:
    stamp = "%Y%m%dT%H%M%SZ"
    domain = "northwind-robotics.com"
    lines = [
        "BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//mailbridge//rubric//EN", "BEGIN:VEVENT",
        "UID:six-person-panel@mailbridge",
        f"DTSTAMP:{start.strftime(stamp)}",
        f"DTSTART:{start.strftime(stamp)}",
        f"DTEND:{(start + timedelta(hours=2)).strftime(stamp)}",
        "SUMMARY:Northwind Robotics - Panel Interview (Robotics Software Engineer)",
        f"ORGANIZER;CN={SIX[0][0]}:mailto:{SIX[0][1]}@{domain}",
        f"ATTENDEE;CN=Jordan Lee;PARTSTAT=ACCEPTED:mailto:{demo.USER}",
    ]
    lines += [f"ATTENDEE;CN={name};PARTSTAT=ACCEPTED:mailto:{local}@{domain}"
              for name, local in SIX]
    lines += ["END:VEVENT", "END:VCALENDAR", ""]
    return "\r\n".join(lines)


def cli(config: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailbridge.cli", "--config", str(config), *argv],
        capture_output=True, text=True, timeout=120, check=False,
    )


@pytest.mark.slow
def test_preview_of_a_six_person_panel_shows_six_different_letters(tmp_path: Path) -> None:
    config = demo.write_example(tmp_path, datetime.now(UTC))
    start = (datetime.now(UTC) - timedelta(hours=3)).replace(second=0, microsecond=0)
    (tmp_path / "calendar" / "interview.ics").write_text(six_person_calendar(start),
                                                         encoding="utf-8")
    assert cli(config, "run", "--once").returncode == 0
    status = json.loads(cli(config, "status", "--json").stdout)
    (interview,) = status["accounts"][0]["interviews"]
    assert interview["company"] == "Northwind Robotics"
    assert "the event title" in interview["company_reason"]

    done = cli(config, "preview", str(interview["id"]))
    assert done.returncode == 0, done.stderr
    assert "Company 'Northwind Robotics', from the event title" in done.stdout
    letters = [part for part in done.stdout.split("=" * 72) if "To: " in part]
    thank_yous = [p for p in letters if "Subject: Thank you" in p]
    assert len(thank_yous) == 6
    bodies = [p.split("\n\n", 1)[1] for p in thank_yous]
    for (name, _), body in zip(SIX, bodies, strict=True):
        assert body.startswith(f"Dear {name.split()[0]},")
    for first, second in itertools.combinations(bodies, 2):
        assert len(sentences(first) & sentences(second)) <= 1
