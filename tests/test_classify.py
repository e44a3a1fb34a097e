"""classify, parse_return_date and match: one table per concern."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailbridge.classify import Candidate, classify, match, parse_return_date
from mailbridge.mailparse import KEPT_HEADERS, headers_from_bytes, headers_from_fields
from mailbridge.model import Folder, MailHeaders, MessageKind, Person

MAIL = Path(__file__).parent / "data" / "mail"
OWN = ("jordan.lee@gmail.com", "jordan@fastmail.com")

HUMAN = MessageKind.HUMAN
AUTO = MessageKind.AUTO_REPLY
OOO = MessageKind.OUT_OF_OFFICE
BOUNCE = MessageKind.BOUNCE
CALENDAR = MessageKind.CALENDAR
BULK = MessageKind.BULK
OWN_KIND = MessageKind.OWN


def load(name: str, folder: Folder = Folder.INBOX) -> MailHeaders:
    return headers_from_bytes((MAIL / name).read_bytes(), folder=folder, provider_id=name)


def mail(
    *fields: tuple[str, str],
    excerpt: str = "",
    folder: Folder = Folder.INBOX,
) -> MailHeaders:
    """A message as an API (Gmail metadata, Graph headers) would report it."""
    base = {"from": ("From", "Priya Natarajan <priya.natarajan@northwind-labs.com>")}
    base["date"] = ("Date", "Tue, 2 Dec 2025 17:00:00 +0000")
    base["message-id"] = ("Message-ID", "<m1@northwind-labs.com>")
    for name, value in fields:
        base[name.lower()] = (name, value)
    return headers_from_fields(
        list(base.values()), folder=folder, provider_id="p1", excerpt=excerpt
    )


# --- classify: the samples --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind", "reason", "return_date"),
    [
        pytest.param("human_reply.eml", HUMAN, "human:", None, id="human-reply"),
        pytest.param(
            "exchange_oof.eml",
            OOO,
            "out-of-office: Exchange autoreply header",
            date(2025, 12, 20),  # "until Friday, December 19": back the day after
            id="exchange-oof-without-auto-submitted",
        ),
        pytest.param(
            "icloud_vacation.eml",
            OOO,
            "absence notice wording",
            date(2025, 12, 13),
            id="icloud-vacation-threads-like-a-reply",
        ),
        pytest.param(
            "gmail_bounce.eml",
            BOUNCE,
            "mailer-daemon@googlemail.com",
            None,
            id="gmail-bounce-not-multipart-report",
        ),
        pytest.param(
            "postfix_dsn.eml", BOUNCE, "delivery status report", None, id="dsn-multipart-report"
        ),
        pytest.param(
            "google_invitation.eml",
            CALENDAR,
            "text/calendar",
            None,
            id="invitation-marked-auto-submitted",
        ),
        pytest.param(
            "exchange_accepted.eml", CALENDAR, "method REPLY", None, id="exchange-accepted"
        ),
        pytest.param(
            "list_reply.eml",
            HUMAN,
            "through a mailing list",
            None,
            id="person-replying-through-a-list",
        ),
        pytest.param("newsletter.eml", BULK, "Precedence: bulk", None, id="newsletter"),
        pytest.param("spam_fake_bounce.eml", BULK, "spam", None, id="spam-imitating-a-bounce"),
        pytest.param(
            "greenhouse_relay.eml",
            HUMAN,
            "applicant-tracking system greenhouse-mail.io",
            None,
            id="ats-relay-with-feedback-id",
        ),
        pytest.param("sent_thank_you.eml", OWN_KIND, "own address", None, id="from-user"),
    ],
)
def test_samples(name: str, kind: MessageKind, reason: str, return_date: date | None) -> None:
    verdict = classify(load(name), OWN)
    assert verdict.kind == kind, verdict.reason
    assert reason in verdict.reason
    assert verdict.return_date == return_date


def test_the_sent_folder_is_own_whoever_it_is_from() -> None:
    verdict = classify(load("human_reply.eml", folder=Folder.SENT), OWN)
    assert (verdict.kind, verdict.reason) == (OWN_KIND, "own: in the Sent folder")


# --- classify: pitfalls, from header pairs ----------------------------------------------------

# Each row: the headers that differ from a plain message by Priya, the excerpt, the kind, and a
# piece of the reason.
PITFALLS = [
    # Exchange / Outlook out-of-office without Auto-Submitted
    pytest.param(
        [
            ("Subject", "Abwesenheitsnotiz: Danke"),
            ("X-MS-Exchange-Inbox-Rules-Loop", "p@n.example"),
        ],
        "Ich bin bis zum 12.12.2025 nicht im Büro.",
        OOO,
        "X-MS-Exchange-Inbox-Rules-Loop",
        id="exchange-oof-german",
    ),
    pytest.param(
        [("Subject", "Réponse automatique : Merci")],
        "Je suis absente.",
        OOO,
        "subject 'Réponse automatique'",
        id="oof-subject-french-only",
    ),
    pytest.param(
        [("Subject", "Autosvar: Tak for samtalen")],
        "",
        OOO,
        "subject 'Autosvar'",
        id="oof-subject-danish",
    ),
    pytest.param(
        [("Subject", "Out of Office: Thank you")],
        "",
        OOO,
        "Out of Office",
        id="oof-subject-english",
    ),
    pytest.param(
        [
            ("X-MS-Exchange-Generated-Message-Source", "Mailbox Rules Agent"),
            ("Subject", "Re: Thank you"),
        ],
        "We received your message and will respond shortly.",
        AUTO,
        "Exchange generated-message header",
        id="exchange-rule-reply-not-an-absence",
    ),
    pytest.param(
        [("Return-Path", "<>"), ("X-Auto-Response-Suppress", "All"), ("Subject", "Thanks")],
        "",
        AUTO,
        "null Return-Path",
        id="null-return-path-with-suppress",
    ),
    pytest.param(
        [("X-Auto-Response-Suppress", "All"), ("Subject", "Re: Thank you")],
        "Great to meet you, let's talk Friday.",
        HUMAN,
        "human:",
        id="suppress-header-alone-is-not-an-autoreply",
    ),
    pytest.param(
        [("Auto-Submitted", "auto-replied"), ("Subject", "Re: Thank you")],
        "I'm away until 12/15.",
        OOO,
        "Auto-Submitted: auto-replied",
        id="rfc3834-oof",
    ),
    pytest.param(
        [("Auto-Submitted", "auto-generated"), ("Subject", "Your ticket #4411")],
        "We got your request.",
        AUTO,
        "Auto-Submitted: auto-generated",
        id="auto-generated",
    ),
    pytest.param(
        [("Auto-Submitted", "no"), ("Subject", "Re: Thank you")],
        "See you soon.",
        HUMAN,
        "human:",
        id="auto-submitted-no-is-a-person",
    ),
    pytest.param(
        [("X-Autoreply", "yes"), ("Subject", "Re: Thank you")],
        "",
        AUTO,
        "x-autoreply",
        id="x-autoreply",
    ),
    pytest.param(
        [("Precedence", "auto_reply"), ("Subject", "Auto: Thank you")],
        "Back on January 5th, 2026.",
        OOO,
        "Precedence: auto_reply",
        id="precedence-auto-reply",
    ),
    pytest.param(
        [("Subject", "Auto: Thank you")],
        "Your message was received.",
        AUTO,
        "subject 'Auto'",
        id="sieve-vacation-subject-no-absence-wording",
    ),
    # iCloud-style vacation text without any header: needs two signs
    pytest.param(
        [("Subject", "Re: Thank you"), ("In-Reply-To", "<t1@mailbridge.local>")],
        "I am currently out of the office with limited access to email.",
        OOO,
        "absence notice wording",
        id="text-only-oof-two-signs",
    ),
    pytest.param(
        [("Subject", "Re: Thank you"), ("In-Reply-To", "<t1@mailbridge.local>")],
        "I'm on vacation next week, but wanted to say we'd like to move you to the final round.",
        HUMAN,
        "human:",
        id="person-mentions-vacation-is-human",
    ),
    pytest.param(
        [("Subject", "Re: Thank you"), ("In-Reply-To", "<t1@mailbridge.local>")],
        "Sorry, I was out of the office last week. Can you do Tuesday?",
        HUMAN,
        "human:",
        id="past-absence-is-human",
    ),
    # bounces and their imitations
    pytest.param(
        [
            ("From", "Mail Delivery Subsystem <mailer-daemon@googlemail.com>"),
            ("Subject", "Delivery Status Notification (Failure)"),
        ],
        "",
        BOUNCE,
        "mailer-daemon@googlemail.com",
        id="gmail-bounce-subject-only",
    ),
    pytest.param(
        [
            ("From", "Mail Delivery Subsystem <mailer-daemon@googlemail.com>"),
            ("Subject", "Delivery Status Notification (Delay)"),
        ],
        "",
        AUTO,
        "delayed",
        id="delay-is-not-a-bounce",
    ),
    pytest.param(
        [
            (
                "From",
                "Outlook <MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@acme.example>",
            ),
            ("Subject", "Undeliverable: Thank you"),
        ],
        "",
        BOUNCE,
        "mail system",
        id="exchange-ndr-sender",
    ),
    pytest.param(
        [
            ("From", "Security Team <alerts@account-verify.example>"),
            ("Subject", "Undeliverable: messages on hold"),
        ],
        "",
        BULK,
        "bounce-like subject",
        id="unflagged-fake-bounce-is-not-a-bounce",
    ),
    pytest.param(
        [
            ("From", "mailer-daemon@fake.example"),
            ("Subject", "Undeliverable"),
            ("X-Spam-Flag", "YES"),
        ],
        "",
        BULK,
        "spam",
        id="spam-flag-beats-mailer-daemon",
    ),
    pytest.param(
        [("X-Forefront-Antispam-Report", "CIP:1.2.3.4;CTRY:;LANG:en;SCL:9;SRV:;SFV:SPM;")],
        "",
        BULK,
        "SCL 9",
        id="exchange-spam-verdict",
    ),
    pytest.param(
        [("Content-Type", "multipart/report; report-type=disposition-notification")],
        "",
        AUTO,
        "read receipt",
        id="read-receipt",
    ),
    # calendar
    pytest.param(
        [("Subject", "Updated invitation: Onsite interview"), ("Auto-Submitted", "auto-generated")],
        "",
        CALENDAR,
        "Updated invitation",
        id="updated-invitation-subject",
    ),
    pytest.param(
        [("Subject", "Declined: Final round")],
        "",
        CALENDAR,
        "Declined",
        id="declined-subject",
    ),
    pytest.param(
        [("Subject", "Re: Invitation: Onsite interview"), ("In-Reply-To", "<x@google.com>")],
        "Looking forward to it!",
        HUMAN,
        "human:",
        id="person-answering-an-invitation",
    ),
    pytest.param(
        [
            ("Sender", "Google Calendar <calendar-notification@google.com>"),
            ("Subject", "Onsite interview has been moved"),
        ],
        "",
        CALENDAR,
        "calendar-notification@google.com",
        id="google-calendar-sender",
    ),
    pytest.param(
        [("Content-Class", "urn:content-classes:calendarmessage"), ("Subject", "Interview")],
        "",
        CALENDAR,
        "calendar message class",
        id="exchange-meeting-request",
    ),
    # lists and bulk
    pytest.param(
        [
            ("List-Id", "<panel.northwind-labs.com>"),
            ("Precedence", "list"),
            ("Subject", "Panel notes"),
        ],
        "",
        BULK,
        "mailing list",
        id="list-post-not-in-a-thread",
    ),
    pytest.param(
        [
            ("List-Unsubscribe", "<mailto:u@x.example>"),
            ("In-Reply-To", "<t@x>"),
            ("Feedback-ID", "1:2:campaign"),
        ],
        "",
        BULK,
        "mailing list",
        id="threaded-marketing-is-still-bulk",
    ),
    pytest.param(
        [("Precedence", "junk")],
        "",
        BULK,
        "Precedence: junk",
        id="precedence-junk",
    ),
    pytest.param(
        [("Feedback-ID", "42:ses")],
        "",
        BULK,
        "feedback-id",
        id="feedback-id-alone",
    ),
    pytest.param(
        [("Auto-Submitted", "auto-generated"), ("List-Unsubscribe", "<https://x.example/u>")],
        "",
        BULK,
        "List-Unsubscribe",
        id="auto-generated-digest",
    ),
    # ATS and robots
    pytest.param(
        [("From", "Northwind Labs <no-reply@ashbyhq.com>"), ("Subject", "Application update")],
        "",
        AUTO,
        "applicant-tracking system ashbyhq.com",
        id="ats-robot-notification",
    ),
    pytest.param(
        [("From", "Dana Whitfield <dana.whitfield@hire.lever.co>")],
        "",
        HUMAN,
        "personal relay address",
        id="ats-personal-relay-address",
    ),
    pytest.param(
        [("From", "Acme Careers <noreply@acme.example>")],
        "",
        AUTO,
        "no-reply address",
        id="no-reply-sender",
    ),
    # own mail
    pytest.param(
        [("From", "Jordan Lee <Jordan.Lee+jobs@GMAIL.com>")],
        "",
        OWN_KIND,
        "own address",
        id="own-address-with-plus-tag",
    ),
    pytest.param(
        [("From", "Jordan Lee <jordan@fastmail.com>"), ("Auto-Submitted", "auto-replied")],
        "I am out of the office.",
        OWN_KIND,
        "own address",
        id="own-autoreply-is-own",
    ),
]


@pytest.mark.parametrize(("fields", "excerpt", "kind", "reason"), PITFALLS)
def test_pitfalls(
    fields: list[tuple[str, str]], excerpt: str, kind: MessageKind, reason: str
) -> None:
    verdict = classify(mail(*fields, excerpt=excerpt), OWN)
    assert verdict.kind == kind, verdict.reason
    assert reason in verdict.reason


def test_list_reply_is_human_and_matched_only_by_its_thread() -> None:
    # classify cannot know attendees: a threaded message through a discussion list is a
    # person's reply. Whether it is the employer's is match()'s call, and here the thread says so.
    message = load("list_reply.eml")
    assert classify(message, OWN).kind == HUMAN
    ours = {"<mb.7f3a9c2e.thank_you@mailbridge.local>": 7}
    assert match(message, [], ours, OWN)[0] == 7
    # The same list reply in a thread we know nothing about, from nobody we know: no match.
    assert match(message, [], {}, OWN)[0] is None


@pytest.mark.parametrize(
    ("fields", "excerpt"),
    [pytest.param(p.values[0], p.values[1], id=p.id) for p in PITFALLS]
    + [pytest.param([], "", id="plain")],
)
def test_reasons_are_plain_sentences(fields: list[tuple[str, str]], excerpt: str) -> None:
    verdict = classify(mail(*fields, excerpt=excerpt), OWN)
    label, _, rest = verdict.reason.partition(": ")
    assert label in {"human", "automatic", "out-of-office", "bounce", "calendar", "bulk", "own"}
    assert rest and "\n" not in rest


# --- parse_return_date ------------------------------------------------------------------------

RECEIVED = datetime(2025, 11, 20, 15, 0, tzinfo=UTC)  # a Thursday


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "I will be back on Monday, December 1.", date(2025, 12, 1), id="weekday-month-day"
        ),
        pytest.param("I'm returning 12/01.", date(2025, 12, 1), id="us-numeric"),
        pytest.param("returning 25/11", date(2025, 11, 25), id="numeric-day-first-when-obvious"),
        pytest.param(
            "I will be back in the office on 1 December 2026.",
            date(2026, 12, 1),
            id="day-month-year",
        ),
        pytest.param("I am out until November 30.", date(2025, 12, 1), id="until-is-day-after"),
        pytest.param("away through Nov. 28th", date(2025, 11, 29), id="through-abbreviated"),
        pytest.param("Back on 2025-12-03.", date(2025, 12, 3), id="iso"),
        pytest.param("I will return on the 2nd of December", date(2025, 12, 2), id="ordinal-of"),
        pytest.param("Out from Nov 24 to Nov 28.", date(2025, 11, 29), id="range"),
        pytest.param("Out 24 - 26 November", None, id="day-range-without-month-unsure"),
        pytest.param(
            "I won't read mail until I return on Monday, December 1.",
            date(2025, 12, 1),
            id="return-beats-until",
        ),
        pytest.param("Back on January 5", date(2026, 1, 5), id="next-occurrence-next-year"),
        pytest.param(
            "Back on Monday, November 30",
            date(2026, 11, 30),
            id="weekday-picks-the-year-that-fits",
        ),
        pytest.param("back on Monday", date(2025, 11, 24), id="weekday-alone-next-one"),
        pytest.param("I am away until Monday", None, id="until-weekday-unsure"),
        pytest.param(
            "Ich bin bis zum 30.11.2025 nicht im Büro", date(2025, 12, 1), id="german-bis"
        ),
        pytest.param("wieder da am 01.12.2025", date(2025, 12, 1), id="german-wieder"),
        pytest.param("back on December 1st, 2024", None, id="past-year-distrusted"),
        pytest.param("back on December 1st, 2031", None, id="too-far-away"),
        pytest.param("back at 10.30 tomorrow", None, id="time-is-not-a-date"),
        pytest.param("returning February 30", None, id="impossible-date"),
        pytest.param("I am out of the office.", None, id="no-date"),
        pytest.param("Call me back. On 12/05 we have a board meeting", None, id="sentence-break"),
    ],
)
def test_return_dates(text: str, expected: date | None) -> None:
    assert parse_return_date(text, RECEIVED) == expected


def test_missing_year_needs_a_received_date() -> None:
    assert parse_return_date("back on December 1", None) is None
    assert parse_return_date("back on December 1, 2025", None) == date(2025, 12, 1)


@settings(max_examples=300, deadline=None)
@given(
    st.text(max_size=300),
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1)),
)
def test_return_date_never_raises_and_stays_near(text: str, received: datetime) -> None:
    aware = received.replace(tzinfo=UTC)
    found = parse_return_date(text, aware)
    assert found is None or aware.date() <= found <= aware.date() + timedelta(days=402)


# --- match -----------------------------------------------------------------------------------


def candidate(
    iid: int,
    attendees: tuple[str, ...] = (),
    domains: tuple[str, ...] = (),
    company: str = "",
    start: datetime = datetime(2025, 12, 1, 15, tzinfo=UTC),
) -> Candidate:
    return Candidate(iid, attendees, domains, company, start, start + timedelta(hours=1))


NORTHWIND = candidate(
    1, ("priya.natarajan@northwind-labs.com",), ("northwind-labs.com",), "Northwind Labs"
)
OAKMONT = candidate(
    2, ("dana.whitfield@oakmont-energy.com",), ("oakmont-energy.com",), "Oakmont Energy, Inc."
)
META = candidate(3, ("ann@meta-example.com",), ("meta-example.com",), "Meta")
GMAIL_INTERVIEWER = candidate(4, ("freelance.sam@gmail.com",), ("gmail.com",), "Sam Consulting")
CANDIDATES = [NORTHWIND, OAKMONT, META, GMAIL_INTERVIEWER]
KNOWN = {"<mb.11aa22bb.follow_up@mailbridge.local>": 2, "<sent-by-user@mail.gmail.com>": 1}


@pytest.mark.parametrize(
    ("fields", "folder", "expected", "reason"),
    [
        pytest.param(
            [("In-Reply-To", "<mb.11aa22bb.follow_up@mailbridge.local>")],
            Folder.INBOX,
            2,
            "thread: In-Reply-To",
            id="thread-in-reply-to-beats-attendee",
        ),
        pytest.param(
            [("References", "<zz@x> <sent-by-user@mail.gmail.com> <yy@x>")],
            Folder.INBOX,
            1,
            "thread: References",
            id="thread-references-users-sent-mail",
        ),
        pytest.param(
            [("From", "Priya <PRIYA.NATARAJAN@northwind-labs.com>")],
            Folder.INBOX,
            1,
            "attendee: sender",
            id="attendee-sender",
        ),
        pytest.param(
            [
                ("From", "Jordan <jordan.lee@gmail.com>"),
                ("To", "Dana <dana.whitfield@oakmont-energy.com>"),
            ],
            Folder.SENT,
            2,
            "attendee: recipients",
            id="own-mail-to-an-attendee",
        ),
        pytest.param(
            [
                ("From", "Jordan <jordan.lee@gmail.com>"),
                ("To", "jordan.lee@gmail.com"),
                ("Cc", "hr@oakmont-energy.com"),
            ],
            Folder.SENT,
            2,
            "employer domain: recipients hr@oakmont-energy.com",
            id="own-mail-cc-employer-domain",
        ),
        pytest.param(
            [("From", "Lee Park <lee.park@eu.mail.northwind-labs.com>")],
            Folder.INBOX,
            1,
            "employer domain: sender",
            id="employer-subdomain",
        ),
        pytest.param(
            [("From", "Bob <bob@gmail.com>")],
            Folder.INBOX,
            None,
            "free-mail domain gmail.com never matches",
            id="free-mail-never-whole-domain",
        ),
        pytest.param(
            [("From", "Sam <freelance.sam@gmail.com>")],
            Folder.INBOX,
            4,
            "attendee: sender freelance.sam@gmail.com",
            id="free-mail-attendee-exact-address",
        ),
        pytest.param(
            [
                (
                    "From",
                    '"Dana W. (Oakmont Energy) via Greenhouse" <no-reply@greenhouse-mail.io>',
                ),
                ("Reply-To", "dana.whitfield@oakmont-energy.com"),
            ],
            Folder.INBOX,
            2,
            "relays for interviewer dana.whitfield@oakmont-energy.com",
            id="ats-reply-to-attendee",
        ),
        pytest.param(
            [
                ("From", "Recruiting via Lever <notifications@hire.lever.co>"),
                ("Reply-To", "talent@oakmont-energy.com"),
            ],
            Folder.INBOX,
            2,
            "relays for oakmont-energy.com",
            id="ats-reply-to-employer-domain",
        ),
        pytest.param(
            [("From", '"Jane Doe (Oakmont Energy) via Greenhouse" <no-reply@greenhouse-mail.io>')],
            Folder.INBOX,
            2,
            "named in the display name",
            id="ats-company-in-display-name",
        ),
        pytest.param(
            [
                ("From", "Ashby <no-reply@ashbyhq.com>"),
                ("Subject", "Your interview with Northwind Labs"),
            ],
            Folder.INBOX,
            1,
            "named in the subject",
            id="ats-company-in-subject",
        ),
        pytest.param(
            [("From", "Ashby <no-reply@ashbyhq.com>"), ("Subject", "Metadata about your profile")],
            Folder.INBOX,
            None,
            "no match",
            id="ats-company-needs-whole-word",
        ),
        pytest.param(
            [("From", "Ashby <no-reply@ashbyhq.com>"), ("Reply-To", "someone@gmail.com")],
            Folder.INBOX,
            None,
            "no match",
            id="ats-free-mail-reply-to-no-domain-match",
        ),
        pytest.param(
            [
                ("From", "Jordan <jordan.lee@gmail.com>"),
                ("To", "reply+abc@greenhouse-mail.io"),
                ("Subject", "Re: Oakmont Energy next steps"),
            ],
            Folder.SENT,
            2,
            "named in the subject",
            id="own-reply-to-ats-relay",
        ),
        pytest.param(
            [("From", "Someone <someone@unrelated.example>")],
            Folder.INBOX,
            None,
            "no match: not in a known thread",
            id="stranger",
        ),
    ],
)
def test_match_routes(
    fields: list[tuple[str, str]], folder: Folder, expected: int | None, reason: str
) -> None:
    found, why = match(mail(*fields, folder=folder), CANDIDATES, KNOWN, OWN)
    assert found == expected, why
    assert reason in why


def test_free_mail_in_employer_domains_still_never_matches_whole_domain() -> None:
    # GMAIL_INTERVIEWER wrongly lists gmail.com as an employer domain: any Gmail user would
    # then "be the employer". Only the attendee's exact address may match.
    found, why = match(mail(("From", "stranger@gmail.com")), [GMAIL_INTERVIEWER], {}, OWN)
    assert found is None and "free-mail" in why


@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        pytest.param("Tue, 9 Dec 2025 12:00:00 +0000", 12, id="latest-started"),
        pytest.param("Wed, 3 Dec 2025 12:00:00 +0000", 11, id="ignores-future-interview"),
        pytest.param("Sat, 1 Nov 2025 12:00:00 +0000", 10, id="before-all-picks-next"),
    ],
)
def test_several_interviews_same_level(sent: str, expected: int) -> None:
    same = ("priya.natarajan@northwind-labs.com",)
    interviews = [
        candidate(10, same, start=datetime(2025, 11, 20, tzinfo=UTC)),
        candidate(12, same, start=datetime(2025, 12, 8, tzinfo=UTC)),
        candidate(11, same, start=datetime(2025, 12, 1, tzinfo=UTC)),
    ]
    found, _ = match(mail(("Date", sent)), interviews, {}, OWN)
    assert found == expected


def test_thread_id_without_brackets_in_ledger() -> None:
    found, _ = match(mail(("In-Reply-To", "<bare@x.example>")), [], {"bare@x.example": 9}, OWN)
    assert found == 9


# --- classify never raises --------------------------------------------------------------------

_NAMES = st.sampled_from(sorted(KEPT_HEADERS) + ["from", "to", "subject", "in-reply-to"])


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(_NAMES, st.text(max_size=80)), max_size=10),
    st.text(max_size=300),
    st.text(max_size=60),
    st.sampled_from(list(Folder)),
)
def test_classify_and_match_never_raise(
    headers: list[tuple[str, str]], excerpt: str, subject: str, folder: Folder
) -> None:
    message = MailHeaders(
        folder=folder,
        provider_id="x",
        message_id="<m@x>",
        sender=Person(email=subject[:20]),
        subject=subject,
        headers=tuple(headers),
        excerpt=excerpt,
        date=datetime(2025, 12, 1, tzinfo=UTC),
    )
    verdict = classify(message, OWN)
    assert verdict.reason
    match(message, CANDIDATES, KNOWN, OWN)


@pytest.mark.parametrize("scl, kind", [
    ("²", MessageKind.HUMAN),  # a superscript digit is no spam score (and once crashed int())
    ("٥", MessageKind.HUMAN),  # nor an Arabic-Indic five
    ("7", MessageKind.BULK),
    ("-1", MessageKind.HUMAN),
])
def test_exchange_spam_score_is_read_as_ascii_digits(scl: str, kind: MessageKind) -> None:
    message = MailHeaders(folder=Folder.INBOX, provider_id="1", message_id="<a@b.example>",
                          sender=Person("dana@acme.example"),
                          headers=(("x-ms-exchange-organization-scl", scl),))
    assert classify(message, ["me@example.org"]).kind == kind
