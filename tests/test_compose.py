"""Composing drafts: names, ids, fingerprints, templates and the RFC 5322 message."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email import policy as email_policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailbridge.compose import (
    GAP_PATTERN,
    TEMPLATE_NAMES,
    ComposeError,
    check_templates,
    draft_message_ids,
    fingerprint,
    first_name,
    gap,
    is_draft_message_id,
    message_id,
    one_line,
    read_draft,
    render,
    sentence,
    template_environment,
    unflow,
)
from mailbridge.model import (
    DraftKind,
    EventKey,
    InterviewRow,
    InterviewState,
    Person,
    Policy,
)
from mailbridge.settings import AccountSettings

START = datetime(2025, 11, 18, 20, 0, tzinfo=UTC)  # 2:00 PM in Chicago, a Tuesday
DANA = Person("dana.lee@acme.example", "Dana Lee")
SAM = Person("sam.ortiz@acme.example", "Sam Ortiz")
KEY = EventKey("primary", "uid-123")


def make_interview(**changes: Any) -> InterviewRow:
    base = InterviewRow(
        id=7,
        account="personal",
        key=KEY,
        title="Interview: Backend Engineer",
        company="Acme",
        role="Backend Engineer",
        start=START,
        end=START + timedelta(hours=1),
        state=InterviewState.ACTIVE,
        attendees=(DANA, SAM),
        lead=DANA,
        notes="",
    )
    return dataclasses.replace(base, **changes)


def make_account(**changes: Any) -> AccountSettings:
    base = AccountSettings(
        name="personal",
        provider="local",
        address="jordan@mail.example.org",
        display_name="Jordan Lee",
        signature="Jordan Lee\n555-0100",
        policy=Policy(timezone="America/Chicago"),
    )
    return dataclasses.replace(base, **changes)


def parse(raw: bytes) -> EmailMessage:
    return cast(EmailMessage, message_from_bytes(raw, policy=email_policy.default))


def body_of(msg: EmailMessage) -> str:
    content = msg.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")


# --- first_name ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "email", "expected"),
    [
        ("Dana Lee", "x@acme.example", "Dana"),
        ("Lee, Dana", "x@acme.example", "Dana"),
        ("Lee, Dana M.", "x@acme.example", "Dana"),
        ("Dana Lee, PhD", "x@acme.example", "Dana"),
        ("Dana Lee, PhD, MBA", "x@acme.example", "Dana"),
        ("Dr. Dana Lee", "x@acme.example", "Dana"),
        ("Prof Dana Lee", "x@acme.example", "Dana"),
        ("Ms. Lee", "x@acme.example", "Lee"),
        ("Dana Lee (she/her)", "x@acme.example", "Dana"),
        ("[Recruiting] Dana Lee", "x@acme.example", "Dana"),
        ('"Dana Lee"', "x@acme.example", "Dana"),
        ("DANA LEE", "x@acme.example", "Dana"),
        ("dana lee", "x@acme.example", "Dana"),
        ("mary-jane watson", "x@acme.example", "Mary-Jane"),
        ("McKenzie Ross", "x@acme.example", "McKenzie"),
        ("J. Robert Smith", "x@acme.example", "Robert"),
        ("J. Smith", "x@acme.example", "J. Smith"),
        ("José García", "x@acme.example", "José"),
        ("王伟", "x@acme.example", "王伟"),
        ("Dana\r\nBcc: evil@x.example", "x@acme.example", "Dana"),
        ("", "dana.lee@acme.example", "Dana"),
        ("", "dana_lee@acme.example", "Dana"),
        ("", "DANA.LEE+jobs@acme.example", "Dana"),
        ("dana.lee@acme.example", "dana.lee@acme.example", "Dana"),
        ("Dr.", "dana.lee@acme.example", "Dana"),
        ("", "recruiting@acme.example", "there"),
        ("", "12345@acme.example", "there"),
        ("", "d.lee@acme.example", "there"),
        ("   ", "", "there"),
    ],
)
def test_first_name(name: str, email: str, expected: str) -> None:
    assert first_name(Person(email, name)) == expected


@given(st.text(max_size=60), st.emails())
def test_first_name_is_never_empty_and_one_line(name: str, email: str) -> None:
    result = first_name(Person(email, name))
    assert result.strip()
    assert "\n" not in result and "\r" not in result


# --- message_id ----------------------------------------------------------------------------

ID_SHAPE = re.compile(r"<[0-9a-f]{40}\.mailbridge@[a-z0-9.-]+>")


def test_message_id_is_deterministic_and_well_formed() -> None:
    one = message_id("me@mail.org", KEY, "dana@acme.example", DraftKind.THANK_YOU, 1)
    two = message_id("me@mail.org", KEY, "dana@acme.example", DraftKind.THANK_YOU, 1)
    assert one == two
    assert ID_SHAPE.fullmatch(one)
    assert one.endswith("@mail.org>")


@pytest.mark.parametrize(("address", "value", "ours"), [
    ("me@mail.org", message_id("me@mail.org", KEY, "x@y.z", DraftKind.FOLLOW_UP, 2), True),
    ("Me@Mail.org", message_id("me@mail.org", KEY, "x@y.z", DraftKind.THANK_YOU, 1), True),
    ("you@mail.org", message_id("me@mail.org", KEY, "x@y.z", DraftKind.THANK_YOU, 1), True),
    ("me@other.org", message_id("me@mail.org", KEY, "x@y.z", DraftKind.THANK_YOU, 1), False),
    ("me@mail.org", "<CAF1234.abcdef@mail.gmail.com>", False),  # the user's own mail
    ("me@mail.org", "<thanks.mailbridge@mail.org>", False),
    ("me@mail.org", "", False),
])
def test_is_draft_message_id_knows_our_drafts_without_a_ledger(
    address: str, value: str, ours: bool
) -> None:
    assert is_draft_message_id(address, value) is ours


def test_draft_message_ids_are_every_draft_an_event_may_have() -> None:
    # A thank-you and each follow-up per recipient: what threads a reply without a ledger row.
    found = draft_message_ids("me@mail.org", KEY, ["dana@acme.example", "lee@acme.example"])
    assert found == [
        message_id("me@mail.org", KEY, who, kind, seq)
        for who in ("dana@acme.example", "lee@acme.example")
        for kind, seq in ((DraftKind.THANK_YOU, 1), (DraftKind.FOLLOW_UP, 1),
                          (DraftKind.FOLLOW_UP, 2), (DraftKind.FOLLOW_UP, 3))
    ]


def test_message_id_ignores_recipient_and_address_case_and_spaces() -> None:
    a = message_id("Me@M.org", KEY, "Dana@Acme.Example", DraftKind.THANK_YOU, 1)
    b = message_id(" me@m.org", KEY, " dana@acme.example ", DraftKind.THANK_YOU, 1)
    assert a == b


def test_message_id_ignores_where_the_calendar_is_kept() -> None:
    # The account's name and the calendar's path are not part of the event's identity.
    a = message_id("me@m.org", EventKey("work.ics", "uid-1"), "x@y.z", DraftKind.THANK_YOU, 1)
    b = message_id("me@m.org", EventKey("jobs/a.ics", "uid-1"), "x@y.z", DraftKind.THANK_YOU, 1)
    assert a == b


@pytest.mark.parametrize(
    "changed",
    [
        {"address": "me@work.org"},
        {"key": EventKey("primary", "uid-124")},
        {"key": EventKey("primary", "uid-123", "2025-11-18T20:00:00Z")},
        {"recipient": "sam@acme.example"},
        {"kind": DraftKind.FOLLOW_UP},
        {"seq": 2},
    ],
)
def test_message_id_differs_when_any_part_differs(changed: dict[str, Any]) -> None:
    parts: dict[str, Any] = {
        "address": "me@mail.org",
        "key": KEY,
        "recipient": "dana@acme.example",
        "kind": DraftKind.THANK_YOU,
        "seq": 1,
    }
    assert message_id(**parts) != message_id(**{**parts, **changed})


def test_message_id_parts_cannot_run_into_each_other() -> None:
    # "u" + "b:c" and "u:b" + "c" must not collide the way a naive join would.
    a = message_id("me@m.org", EventKey("x", "u", "b:c"), "x@y.z", DraftKind.THANK_YOU, 1)
    b = message_id("me@m.org", EventKey("x", "u:b", "c"), "x@y.z", DraftKind.THANK_YOU, 1)
    assert a != b


@pytest.mark.parametrize(
    ("domain", "expected"),
    [
        ("Mail.Example.ORG", "mail.example.org"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("", "mailbridge.invalid"),
        ("evil>\r\nBcc: x", "mailbridge.invalid"),
    ],
)
def test_message_id_domain(domain: str, expected: str) -> None:
    mid = message_id("me@" + domain, KEY, "x@y.z", DraftKind.THANK_YOU, 1)
    assert mid.endswith(f"@{expected}>")
    assert ID_SHAPE.fullmatch(mid)


# --- fingerprint -------------------------------------------------------------------------

BASE_BODY = "Dear Dana,\n\nThank you.\n\nJordan\n"


@pytest.mark.parametrize(
    ("subject", "recipients", "body"),
    [
        ("Thank you", ["dana@acme.example"], BASE_BODY),
        ("Thank you", ["Dana@ACME.example"], BASE_BODY),
        ("Thank you", [" dana@acme.example "], BASE_BODY),
        ("Thank  you", ["dana@acme.example"], BASE_BODY),  # folding/unfolding of the subject
        ("Thank you", ["dana@acme.example"], BASE_BODY.replace("\n", "\r\n")),
        ("Thank you", ["dana@acme.example"], BASE_BODY.replace("\n", "\r")),
        ("Thank you", ["dana@acme.example"], BASE_BODY.replace("Dana,", "Dana,   ")),
        ("Thank you", ["dana@acme.example"], BASE_BODY + "\n\n\n"),
        ("Thank you", ["dana@acme.example"], BASE_BODY.rstrip("\n")),
        ("Thank you", ["dana@acme.example"], BASE_BODY.replace("\n", " \t\r\n")),
    ],
)
def test_fingerprint_ignores_transport_noise(
    subject: str, recipients: list[str], body: str
) -> None:
    assert fingerprint(subject, recipients, body) == fingerprint(
        "Thank you", ["dana@acme.example"], BASE_BODY
    )


@pytest.mark.parametrize(
    ("subject", "recipients", "body"),
    [
        ("Thank you!", ["dana@acme.example"], BASE_BODY),
        ("Thank you", ["sam@acme.example"], BASE_BODY),
        ("Thank you", ["dana@acme.example", "sam@acme.example"], BASE_BODY),
        ("Thank you", ["dana@acme.example"], BASE_BODY.replace("Thank you.", "Thanks.")),
        ("Thank you", ["dana@acme.example"], BASE_BODY.replace("Dear", "dear")),
        ("Thank you", ["dana@acme.example"], "\n" + BASE_BODY),
    ],
)
def test_fingerprint_sees_real_edits(subject: str, recipients: list[str], body: str) -> None:
    assert fingerprint(subject, recipients, body) != fingerprint(
        "Thank you", ["dana@acme.example"], BASE_BODY
    )


def test_fingerprint_ignores_recipient_order() -> None:
    assert fingerprint("s", ["a@x.example", "b@x.example"], "b") == fingerprint(
        "s", ["B@x.example", "a@x.example"], "b"
    )


TO_DANA, TO_SAM = "dana@acme.example", "sam@acme.example"


@pytest.mark.parametrize(
    ("to", "cc", "bcc", "same"),
    [
        ([TO_DANA], [], [], True),
        ([TO_DANA], [TO_SAM], [], False),  # a Cc the user added is an edit
        ([TO_DANA], [], [TO_SAM], False),
        ([], [TO_DANA], [], False),  # the lead moved from To to Cc
    ],
)
def test_fingerprint_counts_copies(to: list[str], cc: list[str], bcc: list[str],
                                   same: bool) -> None:
    ours = fingerprint("Thank you", [TO_DANA], BASE_BODY)
    assert (fingerprint("Thank you", to, BASE_BODY, cc, bcc) == ours) is same


@pytest.mark.parametrize(
    ("flowed", "delsp", "meant"),
    [
        ("Thank you for the \ntime today.", False, "Thank you for the time today."),
        ("Thank you for the \ntime today.", True, "Thank you for thetime today."),
        ("one \ntwo \nthree\n\nnext", False, "one two three\n\nnext"),
        (" From here\n >not a quote", False, "From here\n>not a quote"),  # space-stuffed
        ("-- \nJordan", False, "-- \nJordan"),  # the signature separator is no soft break
        ("> quoted \n> text\nmine", False, "> quoted text\nmine"),
        ("> deep \n>> deeper", False, "> deep \n>> deeper"),  # depth changes: no join
        ("no break\nhere", False, "no break\nhere"),
    ],
)
def test_unflow_reads_soft_breaks(flowed: str, delsp: bool, meant: str) -> None:
    assert unflow(flowed, delsp) == meant


def test_read_draft_sees_a_flowed_resave_as_the_same_words() -> None:
    body = ("Dear Dana,\n\nThank you for taking the time to talk with me today about the "
            "platform role; I enjoyed hearing how the team ships.\n\nBest,\nJordan\n")
    ours = EmailMessage()
    ours["To"], ours["Subject"] = "Dana <dana@acme.example>", "Thank you"
    ours.set_content(body)
    resaved = EmailMessage()
    resaved["To"], resaved["Subject"] = ours["To"], ours["Subject"]
    resaved.set_content(body.replace("platform ", "platform \n"), params={"format": "flowed"})
    assert read_draft(bytes(resaved))[0] == read_draft(bytes(ours))[0]
    resaved.replace_header("Content-Type", "text/plain; charset=utf-8")  # not flowed: an edit
    assert read_draft(bytes(resaved))[0] != read_draft(bytes(ours))[0]
    ours["Cc"] = "sam@acme.example"
    assert read_draft(bytes(ours))[0] != fingerprint("Thank you", ["dana@acme.example"], body)


# --- render --------------------------------------------------------------------------------


def test_thank_you_message_headers_and_body() -> None:
    interview = make_interview()
    account = make_account()
    now = datetime(2025, 11, 18, 23, 0, tzinfo=UTC)
    draft = render(DraftKind.THANK_YOU, interview, DANA, account, now=now)
    msg = parse(draft.raw)

    assert msg["From"].addresses[0].display_name == "Jordan Lee"
    assert msg["From"].addresses[0].addr_spec == "jordan@mail.example.org"
    assert len(msg["To"].addresses) == 1
    assert msg["To"].addresses[0].display_name == "Dana Lee"
    assert msg["To"].addresses[0].addr_spec == "dana.lee@acme.example"
    assert msg["Subject"] == "Thank you — Backend Engineer interview"
    assert msg["Date"].datetime == now
    assert msg["Date"].datetime.utcoffset() == timedelta(hours=-6)  # shown in the user's zone
    expected_id = message_id(
        "jordan@mail.example.org", KEY, "dana.lee@acme.example", DraftKind.THANK_YOU, 1
    )
    assert msg["Message-ID"] == expected_id == draft.message_id
    assert msg["In-Reply-To"] is None and msg["References"] is None
    assert msg["X-Mailbridge-Kind"] == "thank_you"
    assert msg.get_content_type() == "text/plain"
    assert msg.get_content_charset() == "utf-8"
    assert msg["Bcc"] is None and msg["Cc"] is None
    for header in ("To", "Subject", "From", "Date", "Message-ID"):
        assert len(msg.get_all(header) or []) == 1, header

    body = body_of(msg)
    assert body == draft.body
    assert body.startswith("Dear Dana,\n\n")
    assert "this afternoon" in body  # written at 5 PM in Chicago, the same day
    assert body.count("the Backend Engineer role at Acme") == 1
    assert body.rstrip().endswith("Jordan Lee\n555-0100")
    assert "[[ADD: one thing from your conversation with Dana" in body
    assert draft.gaps[0].startswith("one thing from your conversation with Dana")
    assert len(draft.gaps) == 2
    assert draft.subject == msg["Subject"]
    assert draft.to == Person("dana.lee@acme.example", "Dana Lee")
    assert draft.sender == Person("jordan@mail.example.org", "Jordan Lee")
    assert draft.content_hash == fingerprint(draft.subject, ["dana.lee@acme.example"], body)
    for line in draft.raw.split(b"\r\n"):
        assert len(line) <= 998


def test_thank_you_uses_notes_instead_of_the_gap() -> None:
    notes = "I enjoyed hearing how your team moved billing onto an event log."
    draft = render(DraftKind.THANK_YOU, make_interview(notes=notes), SAM, make_account())
    body = body_of(parse(draft.raw))
    assert notes in body
    assert "one thing from your conversation" not in body
    assert body.startswith("Dear Sam,")
    assert draft.gaps == ("something you did not get to tell Sam, or delete this line",)


def test_date_defaults_to_interview_end() -> None:
    draft = render(DraftKind.THANK_YOU, make_interview(), DANA, make_account())
    assert parse(draft.raw)["Date"].datetime == START + timedelta(hours=1)


def test_interview_date_and_time_in_users_zone() -> None:
    env = template_environment(None)
    assert env is not None
    late = datetime(2025, 11, 19, 3, 30, tzinfo=UTC)  # Tuesday 9:30 PM in Chicago
    account = make_account()
    draft = render(DraftKind.THANK_YOU, make_interview(start=late), DANA, account)
    assert "with you this evening." in draft.body
    weeks_later = late + timedelta(days=14)
    draft = render(DraftKind.FOLLOW_UP, make_interview(start=late), DANA, account,
                   now=weeks_later)
    assert "talked about on Tuesday, November 18." in draft.body
    tokyo = make_account(policy=Policy(timezone="Asia/Tokyo"))
    draft = render(DraftKind.FOLLOW_UP, make_interview(start=late), DANA, tokyo,
                   now=weeks_later)
    assert "talked about on Wednesday, November 19." in draft.body


def test_interview_time_field(tmp_path: Path) -> None:
    (tmp_path / "thank_you.txt.j2").write_text(
        "Subject: t\n\n{{ interview_date }} at {{ interview_time }}\n"
    )
    draft = render(
        DraftKind.THANK_YOU, make_interview(), DANA, make_account(templates_dir=tmp_path)
    )
    assert draft.body == "Tuesday, November 18 at 2:00 PM\n"
    morning = make_interview(start=datetime(2025, 11, 18, 6, 5, tzinfo=UTC))  # 12:05 AM
    draft = render(DraftKind.THANK_YOU, morning, DANA, make_account(templates_dir=tmp_path))
    assert draft.body == "Tuesday, November 18 at 12:05 AM\n"


@pytest.mark.parametrize(
    ("role", "company", "thanks", "follow"),
    [
        ("Backend Engineer", "Acme", "Thank you — Backend Engineer interview", None),
        ("", "Acme", "Thank you — interview with Acme", "Following up — interview with Acme"),
        ("", "", "Thank you for the interview", "Following up on our interview"),
        ("Data\r\nBcc: x@evil.example", "", "Thank you — Data Bcc: x@evil.example interview", None),
    ],
)
def test_subjects_for_known_and_unknown_role_and_company(
    role: str, company: str, thanks: str, follow: str | None
) -> None:
    interview = make_interview(role=role, company=company)
    draft = render(DraftKind.THANK_YOU, interview, DANA, make_account())
    assert parse(draft.raw)["Subject"] == thanks
    follow_up = render(DraftKind.FOLLOW_UP, interview, DANA, make_account())
    expected = follow or f"Following up — {one_line(role)} interview"
    assert parse(follow_up.raw)["Subject"] == expected


def test_unknown_role_and_company_read_naturally() -> None:
    draft = render(DraftKind.THANK_YOU, make_interview(role="", company=""), DANA, make_account())
    assert "this role" in draft.body and " at ." not in draft.body
    follow_up = render(
        DraftKind.FOLLOW_UP, make_interview(role="", company=""), DANA, make_account()
    )
    assert "I am writing about this role, which we talked about" in follow_up.body


def test_follow_up_threaded_under_the_thank_you() -> None:
    interview = make_interview()
    account = make_account()
    thanks = render(DraftKind.THANK_YOU, interview, DANA, account)
    draft = render(
        DraftKind.FOLLOW_UP,
        interview,
        DANA,
        account,
        in_reply_to=thanks.message_id,
        references=("<older@acme.example>",),
        thread_subject=thanks.subject,
    )
    msg = parse(draft.raw)
    assert msg["Subject"] == "Re: Thank you — Backend Engineer interview"
    assert msg["In-Reply-To"] == thanks.message_id
    assert msg["References"].split() == ["<older@acme.example>", thanks.message_id]
    assert msg["X-Mailbridge-Kind"] == "follow_up"
    assert draft.in_reply_to == thanks.message_id
    assert draft.message_id != thanks.message_id
    body = body_of(msg)
    assert body.startswith("Dear Dana,")
    assert "the Backend Engineer role at Acme" in body
    assert "Please pass my thanks on to Sam as well." in body
    assert "[[ADD: a sentence or two on what you would bring to this role]]" in body
    assert body != thanks.body


def test_follow_up_threaded_without_thread_subject_and_no_double_re() -> None:
    interview = make_interview()
    draft = render(DraftKind.FOLLOW_UP, interview, DANA, make_account(), in_reply_to="x@y")
    assert draft.subject == "Re: Thank you — Backend Engineer interview"
    assert draft.in_reply_to == "<x@y>"
    again = render(
        DraftKind.FOLLOW_UP,
        interview,
        DANA,
        make_account(),
        in_reply_to="<x@y>",
        thread_subject="RE: Thank you",
    )
    assert again.subject == "RE: Thank you"


def test_second_follow_up_differs_and_has_its_own_id() -> None:
    first = render(DraftKind.FOLLOW_UP, make_interview(), DANA, make_account(), seq=1)
    second = render(DraftKind.FOLLOW_UP, make_interview(), DANA, make_account(), seq=2)
    assert "writing once more" in second.body and "writing once more" not in first.body
    assert first.message_id != second.message_id


def test_sole_interviewer_gets_no_pass_on_thanks_line() -> None:
    interview = make_interview(attendees=(DANA,))
    draft = render(DraftKind.FOLLOW_UP, interview, DANA, make_account())
    assert "pass my thanks" not in draft.body


def test_signature_falls_back_to_name_then_gap() -> None:
    account = make_account(signature="")
    assert render(DraftKind.THANK_YOU, make_interview(), DANA, account).body.endswith(
        "\nJordan Lee\n"
    )
    nameless = make_account(signature="", display_name="")
    draft = render(DraftKind.THANK_YOU, make_interview(), DANA, nameless)
    assert draft.body.endswith("[[ADD: your name]]\n")
    assert "your name" in draft.gaps
    assert parse(draft.raw)["From"].addresses[0].display_name == ""


@pytest.mark.parametrize(
    "email", ["", "not-an-address", "dana@", "@acme.example", "dana@acme.example\r\nBcc: x@y"]
)
def test_unusable_recipient_address_is_a_clear_error(email: str) -> None:
    with pytest.raises(ComposeError, match="not a valid email address"):
        render(DraftKind.THANK_YOU, make_interview(), Person(email, "Dana"), make_account())


def test_unusable_account_address_names_the_account() -> None:
    with pytest.raises(ComposeError, match="The address of account 'personal', 'jordan', is not"):
        render(DraftKind.THANK_YOU, make_interview(), DANA, make_account(address="jordan"))


def test_international_domain_is_written_in_ascii() -> None:
    draft = render(
        DraftKind.THANK_YOU, make_interview(), Person("dana@bücher.example", "Dana"), make_account()
    )
    assert parse(draft.raw)["To"].addresses[0].addr_spec == "dana@xn--bcher-kva.example"


@pytest.mark.parametrize(
    "name",
    [
        "Lee, Dana",
        'Dana "DJ" Lee',
        "Dana \\ Lee",
        "José García-Núñez",
        "=?utf-8?q?Bcc=3A_x=40evil?=",
        "Dana <dana@evil.example>",
        "李 小龙, 博士",
        "Dana; Bcc: x@evil.example",
    ],
)
def test_awkward_display_names_parse_back_exactly(name: str) -> None:
    draft = render(
        DraftKind.THANK_YOU, make_interview(), Person("d@acme.example", name), make_account()
    )
    addresses = parse(draft.raw)["To"].addresses
    assert len(addresses) == 1
    assert addresses[0].display_name == name
    assert addresses[0].addr_spec == "d@acme.example"


def test_body_is_quoted_printable_when_not_ascii() -> None:
    draft = render(
        DraftKind.THANK_YOU, make_interview(notes="Café talk — très bien."), DANA, make_account()
    )
    msg = parse(draft.raw)
    assert msg["Content-Transfer-Encoding"] == "quoted-printable"
    assert "Café talk — très bien." in body_of(msg)
    assert draft.raw.isascii()


# --- templates -----------------------------------------------------------------------------


def test_default_templates_check_clean() -> None:
    assert check_templates(None) == []


def test_template_override_from_a_directory(tmp_path: Path) -> None:
    (tmp_path / "thank_you.txt.j2").write_text(
        "Subject: Thanks, {{ recipient_first_name }}!\n\n"
        "Hi {{ recipient_first_name }} ({{ recipient_name }}),\n"
        "{{ role }} at {{ company }}; panel: {{ and_list(interviewers) }}; seq {{ seq }}.\n"
        "{{ notes }}\n"
        "{{ gap('a detail') }}\n"
        "-- {{ user_name }}\n"
    )
    account = make_account(templates_dir=tmp_path)
    interview = make_interview(notes="Notes here.")
    draft = render(DraftKind.THANK_YOU, interview, DANA, account)
    assert draft.subject == "Thanks, Dana!"
    assert draft.body == (
        "Hi Dana (Dana Lee),\n"
        "Backend Engineer at Acme; panel: Dana and Sam; seq 1.\n"
        "Notes here.\n"
        "[[ADD: a detail]]\n"
        "-- Jordan Lee\n"
    )
    assert draft.gaps == ("a detail",)
    assert check_templates(tmp_path) == []
    # The follow-up is not overridden: the built-in one is used.
    follow_up = render(DraftKind.FOLLOW_UP, interview, DANA, account)
    assert follow_up.body.startswith("Dear Dana,\n\nI hope")


def test_template_without_subject_line_keeps_the_default_subject(tmp_path: Path) -> None:
    (tmp_path / "follow_up.txt.j2").write_text("Hello {{ recipient_first_name }}.\n")
    account = make_account(templates_dir=tmp_path)
    draft = render(DraftKind.FOLLOW_UP, make_interview(), DANA, account)
    assert draft.subject == "Following up — Backend Engineer interview"
    assert draft.body == "Hello Dana.\n"


def test_template_cannot_smuggle_a_header_through_the_subject(tmp_path: Path) -> None:
    (tmp_path / "thank_you.txt.j2").write_text("Subject: {{ role }}\n\nbody\n")
    interview = make_interview(role="Eng\r\nBcc: x@evil.example")
    draft = render(DraftKind.THANK_YOU, interview, DANA, make_account(templates_dir=tmp_path))
    msg = parse(draft.raw)
    assert msg["Bcc"] is None
    assert msg["Subject"] == "Eng Bcc: x@evil.example"


def test_check_templates_reports_syntax_error_with_line(tmp_path: Path) -> None:
    path = tmp_path / "thank_you.txt.j2"
    path.write_text("Subject: hi\n\nDear {{ recipient_first_name }},\n{% if notes %}\n")
    errors = check_templates(tmp_path)
    assert len(errors) == 1
    assert errors[0].startswith(f"{path}:4: ")
    with pytest.raises(ComposeError, match=re.escape(f"{path}:4")):
        render(DraftKind.THANK_YOU, make_interview(), DANA, make_account(templates_dir=tmp_path))


def test_check_templates_reports_unknown_name_with_line(tmp_path: Path) -> None:
    path = tmp_path / "follow_up.txt.j2"
    path.write_text("Subject: hi\n\nDear {{ recipient_first_name }},\n\n{{ recruiter_name }}\n")
    errors = check_templates(tmp_path)
    assert len(errors) == 1
    assert errors[0].startswith(f"{path}:5: unknown name: ")
    assert "recruiter_name" in errors[0]
    assert "recipient_first_name" in errors[0]  # the message lists the names that exist


def test_check_templates_reports_name_unknown_only_in_one_branch(tmp_path: Path) -> None:
    # The sample data renders with and without notes, so both branches are exercised.
    path = tmp_path / "thank_you.txt.j2"
    path.write_text("Subject: s\n\n{% if notes %}{{ notes }}{% else %}{{ nots }}{% endif %}\n")
    errors = check_templates(tmp_path)
    assert len(errors) == 1 and "nots" in errors[0] and errors[0].startswith(f"{path}:3:")


def test_check_templates_missing_directory(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    errors = check_templates(missing)
    assert len(errors) == 1
    assert str(missing) in errors[0] and "does not exist" in errors[0]


def test_check_templates_flags_misnamed_override(tmp_path: Path) -> None:
    (tmp_path / "thank-you.txt.j2").write_text("Subject: s\n\nx\n")
    errors = check_templates(tmp_path)
    assert len(errors) == 1
    assert "thank-you.txt.j2" in errors[0] and "thank_you.txt.j2" in errors[0]


def test_check_templates_flags_empty_body(tmp_path: Path) -> None:
    (tmp_path / "thank_you.txt.j2").write_text("Subject: only a subject\n")
    errors = check_templates(tmp_path)
    assert errors == ["thank_you.txt.j2: the template renders an empty message body."]


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ notes.__class__.__base__.__subclasses__() }}",
        "{{ gap.__globals__ }}",
        "{{ seq.__class__ }}",
    ],
)
def test_sandbox_refuses_attribute_escapes(tmp_path: Path, source: str) -> None:
    path = tmp_path / "thank_you.txt.j2"
    path.write_text(f"Subject: s\n\n{source}\n")
    errors = check_templates(tmp_path)
    assert len(errors) == 1
    assert errors[0].startswith(f"{path}:3: ")
    assert "unsafe" in errors[0]
    with pytest.raises(ComposeError, match="unsafe"):
        render(DraftKind.THANK_YOU, make_interview(), DANA, make_account(templates_dir=tmp_path))


def test_template_environment_is_strict_and_plain_text() -> None:
    env = template_environment(None)
    assert env.from_string("{{ x }}").render(x="<b>&") == "<b>&"  # no HTML escaping
    with pytest.raises(Exception, match="'y' is undefined"):
        env.from_string("{{ y }}").render()
    assert set(TEMPLATE_NAMES.values()) == {"thank_you.txt.j2", "follow_up.txt.j2"}


@pytest.mark.parametrize(
    ("text", "optional", "marker"),
    [
        ("one thing", False, "[[ADD: one thing]]"),
        ("one thing", True, "[[ADD (optional): one thing]]"),
        ("a]]b\nc", False, "[[ADD: a] ]b c]]"),
    ],
)
def test_gap_marker_and_pattern(text: str, optional: bool, marker: str) -> None:
    assert gap(text, optional=optional) == marker
    found = GAP_PATTERN.findall(f"before {marker} after")
    assert found == [" ".join(text.replace("]]", "] ]").split())]


# --- header safety, property-based -------------------------------------------------------

# Anything a calendar might hand us: control characters, line breaks, unicode, quotes, commas.
wild_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=300) | st.sampled_from(
    [
        "Interview\r\nBcc: x@evil.example",
        "Lee, Dana",
        '"Dana" \\ Lee',
        "=?utf-8?q?Bcc=3A_x?=",
        "\u202eevil",
        "a" * 1200,
        "Ünïcødé " * 40,
        "\n\n",
    ]
)
# Notes are multi-line user text; other control characters are dropped by design.
notes_text = st.text(
    st.characters(blacklist_categories=("Cs", "Cc")) | st.sampled_from(["\n", "\r", "\t"]),
    max_size=400,
)


@pytest.mark.slow
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    title=wild_text,
    company=wild_text,
    role=wild_text,
    name=wild_text,
    email=st.emails(),
    user_name=wild_text,
    notes=notes_text,
    kind=st.sampled_from(list(DraftKind)),
)
def test_any_event_data_gives_a_message_that_parses_back(
    title: str,
    company: str,
    role: str,
    name: str,
    email: str,
    user_name: str,
    notes: str,
    kind: DraftKind,
) -> None:
    interview = make_interview(title=title, company=company, role=role, notes=notes)
    recipient = Person(email, name)
    account = make_account(display_name=user_name)
    draft = render(kind, interview, recipient, account)
    msg = parse(draft.raw)

    assert not msg.defects
    to = msg["To"].addresses
    assert len(to) == 1
    assert to[0].addr_spec == email
    assert to[0].display_name == draft.to.name
    assert msg["From"].addresses[0].addr_spec == "jordan@mail.example.org"
    assert msg["From"].addresses[0].display_name == draft.sender.name
    for shown, given_name in ((draft.to.name, name), (draft.sender.name, user_name)):
        assert not any(ch in "\r\n\x00\x1b\u2028\u202e" for ch in shown)
        if len(one_line(given_name)) <= 78:
            assert shown == one_line(given_name)
    subject = msg["Subject"]
    assert "\r" not in subject and "\n" not in subject
    assert subject == draft.subject
    assert len(subject) <= 200
    for header in ("Bcc", "Cc", "Reply-To", "Sender"):
        assert msg[header] is None
    for header in ("From", "To", "Subject", "Message-ID", "Date"):
        assert len(msg.get_all(header) or []) == 1
    assert sorted(set(msg.keys())) == sorted(
        {"From", "To", "Subject", "Date", "Message-ID", "X-Mailbridge-Kind"}
        | {"Content-Type", "Content-Transfer-Encoding", "MIME-Version"}
    )
    body = body_of(msg)
    assert body == draft.body
    if kind is DraftKind.THANK_YOU:
        assert sentence(notes) in body
    assert draft.raw.isascii()
    assert all(len(line) <= 998 for line in draft.raw.split(b"\r\n"))


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(title=wild_text)
def test_injected_headers_in_any_field_never_become_headers(title: str) -> None:
    evil = title + "\r\nBcc: x@evil.example\r\n\r\nInjected body"
    interview = make_interview(title=evil, role=evil, company=evil)
    draft = render(
        DraftKind.THANK_YOU, interview, Person("dana@acme.example", evil), make_account()
    )
    msg = parse(draft.raw)
    assert msg["Bcc"] is None
    assert len(msg["To"].addresses) == 1
    assert msg["To"].addresses[0].addr_spec == "dana@acme.example"


def test_unknown_name_becomes_a_gap_in_the_greeting() -> None:
    draft = render(
        DraftKind.THANK_YOU, make_interview(), Person("k7@acme.example"), make_account()
    )
    assert draft.body.startswith("Dear [[ADD: their name]],\n")
    assert draft.gaps[0] == "their name"
    assert parse(draft.raw)["To"].addresses[0].addr_spec == "k7@acme.example"


@pytest.mark.parametrize(
    ("email", "account_address"),
    [
        ("Dana.Lee@ACME.example", "Jordan@Mail.Example.org"),
        ("dana@bücher.example", "jordan@bücher.example"),
    ],
)
def test_message_id_matches_what_a_planner_computes_from_the_ledger(
    email: str, account_address: str
) -> None:
    account = make_account(address=account_address)
    draft = render(DraftKind.THANK_YOU, make_interview(), Person(email, "Dana"), account)
    planned = message_id(account_address, KEY, email, DraftKind.THANK_YOU, 1)
    assert draft.message_id == planned
    assert parse(draft.raw)["Message-ID"] == planned
