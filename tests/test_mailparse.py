"""mailparse: headers and excerpts from real-looking and broken mail; never raises."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailbridge.classify import classify
from mailbridge.mailparse import (
    KEPT_HEADERS,
    headers_from_bytes,
    headers_from_fields,
    text_excerpt,
)
from mailbridge.model import Folder, MailHeaders, Person

MAIL = Path(__file__).parent / "data" / "mail"
SAMPLES = sorted(MAIL.glob("*.eml"))


def load(name: str, folder: Folder = Folder.INBOX) -> MailHeaders:
    return headers_from_bytes((MAIL / name).read_bytes(), folder=folder, provider_id=name)


def parse(raw: str | bytes, excerpt_chars: int = 600) -> MailHeaders:
    data = raw.encode("utf-8") if isinstance(raw, str) else raw
    return headers_from_bytes(
        data, folder=Folder.INBOX, provider_id="p1", excerpt_chars=excerpt_chars
    )


# --- samples -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "sender", "message_id", "date", "in_reply_to"),
    [
        pytest.param(
            "human_reply.eml",
            Person("priya.natarajan@northwind-labs.com", "Priya Natarajan"),
            "<CAF3x9k2pQ7mZ@mail.northwind-labs.com>",
            datetime(2025, 12, 2, 17, 13, 58, tzinfo=UTC),
            "<mb.7f3a9c2e.thank_you@mailbridge.local>",
            id="encoded-name-mixed-case-address",
        ),
        pytest.param(
            "exchange_oof.eml",
            Person("marcus.webb@contoso-freight.com", "Marcus Webb"),
            "<DM6PR11MB4123A1B2C3D4E5F6@DM6PR11MB4123.namprd11.prod.outlook.com>",
            datetime(2025, 12, 10, 15, 2, 11, tzinfo=UTC),
            "<mb.11aa22bb.follow_up@mailbridge.local>",
            id="exchange-oof",
        ),
        pytest.param(
            "postfix_dsn.eml",
            Person("mailer-daemon@mx1.fastmail.example", "Mail Delivery System"),
            "<20251205152044.7E2A11A0C3@mx1.fastmail.example>",
            datetime(2025, 12, 5, 15, 20, 44, tzinfo=UTC),
            "",
            id="dsn-comment-style-name",
        ),
        pytest.param(
            "list_reply.eml",
            Person("hiring-panel@northwind-labs.com", "'Tom Alvarez' via Hiring Panel"),
            "<CAKq7f2Lm9@mail.gmail.com>",
            datetime(2025, 12, 3, 17, 45, tzinfo=UTC),
            "<mb.7f3a9c2e.thank_you@mailbridge.local>",
            id="google-groups-rewritten-from",
        ),
    ],
)
def test_sample_headers(
    name: str, sender: Person, message_id: str, date: datetime, in_reply_to: str
) -> None:
    headers = load(name)
    assert headers.sender == sender
    assert headers.message_id == message_id
    assert headers.date == date
    assert headers.in_reply_to == in_reply_to
    assert headers.provider_id == name


def test_sample_excerpts_are_decoded_text() -> None:
    assert load("human_reply.eml").excerpt.startswith(
        "Hi Jordan, Thanks for the note \u2014 it was great talking with you. We'd like to invite"
    )
    # HTML only: tags, styles and entities go; the words stay.
    assert load("newsletter.eml").excerpt == "Hi Jordan, Explore open roles & more."
    # A DSN: the human-readable part comes first.
    assert load("postfix_dsn.eml").excerpt.startswith("This is the mail system at host")


def test_part_types_show_nested_calendar_and_report_parts() -> None:
    invite = load("google_invitation.eml").part_types
    assert "text/calendar" in invite
    assert "application/ics" in invite
    assert "message/delivery-status" in load("postfix_dsn.eml").part_types


def test_kept_headers_only() -> None:
    headers = load("human_reply.eml")
    names = {name for name, _ in headers.headers}
    assert "received" not in names and "delivered-to" in names
    assert names <= KEPT_HEADERS
    assert load("exchange_oof.eml").header("x-ms-exchange-inbox-rules-loop") == (
        "marcus.webb@contoso-freight.com"
    )
    # Thread-Index is an Exchange header classification has no use for.
    assert load("exchange_oof.eml").header("thread-index") == ""


def test_broken_sample_parses_to_what_can_be_read() -> None:
    headers = load("broken.eml")
    assert headers.subject == "Hello world café été"  # encoded word, raw Latin-1 and raw UTF-8
    assert headers.date is None  # nonsense date
    assert headers.message_id == "<spaced@id.example>"
    assert headers.to == ()  # an unterminated address is no address
    assert "\n" not in headers.excerpt


# --- header edge cases --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "field", "expected"),
    [
        pytest.param(
            "From: =?utf-8?q?Doe=2C_Jane?= <J.Doe@Acme.EXAMPLE>\n\n",
            "sender",
            Person("j.doe@acme.example", "Doe, Jane"),
            id="encoded-comma-in-name-does-not-split",
        ),
        pytest.param(
            'From: "Müller, Jörg" <joerg@firma.example>\n\n'.encode(),
            "sender",
            Person("joerg@firma.example", "Müller, Jörg"),
            id="raw-utf8-name",
        ),
        pytest.param(
            b"From: J\xf6rg <joerg@firma.example>\n\n",
            "sender",
            Person("joerg@firma.example", "Jörg"),
            id="raw-latin1-name",
        ),
        pytest.param("To: a@x.example\n\n", "sender", Person(""), id="missing-from"),
        pytest.param(
            "Sender: Ops <ops@x.example>\n\n",
            "sender",
            Person("ops@x.example", "Ops"),
            id="sender-when-no-from",
        ),
        pytest.param(
            "Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= =?utf-8?q?_aus_Berlin?=\n\n",
            "subject",
            "Grüße aus Berlin",
            id="adjacent-encoded-words-join",
        ),
        pytest.param(
            "Subject: =?bogus-charset?q?hello?= world\n\n",
            "subject",
            "hello world",
            id="unknown-charset-encoded-word",
        ),
        pytest.param(
            "Subject: =?utf-8?x?broken?= tail\n\n",
            "subject",
            "=?utf-8?x?broken?= tail",
            id="bad-encoding-letter-kept-raw",
        ),
        pytest.param(
            "Subject: Re: long\n subject folded\n\tover lines\n\n",
            "subject",
            "Re: long subject folded over lines",
            id="folded-subject",
        ),
        pytest.param(
            "Date: Tue, 2 Dec 2025 12:00:00 -0000\n\n",
            "date",
            datetime(2025, 12, 2, 12, tzinfo=UTC),
            id="date-unknown-zone-as-utc",
        ),
        pytest.param(
            "Date: Tue, 2 Dec 2025 04:00:00 -0800 (PST)\n\n",
            "date",
            datetime(2025, 12, 2, 12, tzinfo=UTC),
            id="date-converted-to-utc",
        ),
        pytest.param("Date: yesterday-ish\n\n", "date", None, id="date-unparsable"),
        pytest.param(
            "Date: Tue, 2 Dec 99999 12:00:00 +0000\n\n", "date", None, id="date-year-out-of-range"
        ),
        pytest.param("Subject: x\n\n", "date", None, id="date-missing"),
        pytest.param(
            "Message-ID: \n  <abc@x.example>  \n\n",
            "message_id",
            "<abc@x.example>",
            id="message-id-whitespace",
        ),
        pytest.param(
            "Message-ID: abc@x.example\n\n",
            "message_id",
            "abc@x.example",
            id="message-id-without-brackets",
        ),
        pytest.param(
            "In-Reply-To: <m1@x.example> (Jane Doe's message of Tue)\n\n",
            "in_reply_to",
            "<m1@x.example>",
            id="in-reply-to-with-comment",
        ),
        pytest.param(
            "References: <a@x.example>\n <b@x.example><c@x.example>\n <a@x.example>\n\n",
            "references",
            ("<a@x.example>", "<b@x.example>", "<c@x.example>"),
            id="references-folded-deduplicated",
        ),
        pytest.param(
            "To: Ann <ANN@x.example>, bob@y.example, not-an-address, Ann <ann@x.example>\n\n",
            "to",
            (Person("ann@x.example", "Ann"), Person("bob@y.example", "")),
            id="recipients-lowercased-junk-dropped",
        ),
        pytest.param(
            "To: undisclosed-recipients:;\n\n",
            "to",
            (),
            id="empty-group",
        ),
    ],
)
def test_header_edge_cases(raw: str | bytes, field: str, expected: object) -> None:
    assert getattr(parse(raw), field) == expected


def test_absurdly_long_header_is_cut_not_fatal() -> None:
    headers = parse("List-Id: <" + "x" * 2_000_000 + ">\nSubject: " + "y" * 200_000 + "\n\n")
    assert 0 < len(headers.header("list-id")) <= 2000
    assert len(headers.subject) <= 2000


def test_part_types_cannot_be_forged_by_a_header() -> None:
    forged = parse("X-Mailbridge-Part-Types: text/calendar\nContent-Type: text/plain\n\nhi")
    assert forged.part_types == ("text/plain",)
    assert forged.header("x-mailbridge-part-types") == ""
    from_api = headers_from_fields(
        [("From", "a@x.example"), ("X-Mailbridge-Part-Types", "text/calendar")],
        folder=Folder.INBOX,
        provider_id="g1",
    )
    assert from_api.part_types == ()


def test_the_parts_of_an_attached_message_are_not_the_message_s_own() -> None:
    bounce = load("postfix_dsn.eml").part_types
    assert bounce[0] == "multipart/report"
    forwarded = parse(
        "Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\nfyi\n"
        "--b\nContent-Type: message/rfc822\n\nContent-Type: text/calendar\n\nBEGIN:VCALENDAR\n"
        "--b--\n"
    )
    assert forwarded.part_types == ("multipart/mixed", "text/plain", "message/rfc822")


def test_headers_from_fields_like_gmail_metadata() -> None:
    fields = [
        ("From", "=?UTF-8?Q?Ren=C3=A9e_Ito?= <Renee.Ito@Acme.example>"),
        ("To", "jordan.lee@gmail.com"),
        ("Subject", "Automatic reply: Thank you"),
        ("Date", "Wed, 10 Dec 2025 15:02:11 +0000"),
        ("Message-ID", "<x1@acme.example>"),
        ("References", "<a@b.example> <c@d.example>"),
        ("X-MS-Exchange-Inbox-Rules-Loop", "renee.ito@acme.example"),
        ("Received", "from somewhere"),
    ]
    headers = headers_from_fields(
        fields, folder=Folder.INBOX, provider_id="18c1", excerpt="I am away\r\nuntil Friday"
    )
    assert headers.sender == Person("renee.ito@acme.example", "Renée Ito")
    assert headers.references == ("<a@b.example>", "<c@d.example>")
    assert headers.date == datetime(2025, 12, 10, 15, 2, 11, tzinfo=UTC)
    assert headers.header("x-ms-exchange-inbox-rules-loop") == "renee.ito@acme.example"
    assert headers.header("received") == ""
    assert headers.excerpt == "I am away until Friday"


# --- excerpts -------------------------------------------------------------------------------


def _message(raw: str) -> email.message.Message:
    return email.message_from_bytes(raw.encode(), policy=email.policy.default)


@pytest.mark.parametrize(
    ("raw", "limit", "expected"),
    [
        pytest.param(
            "Content-Type: text/plain\n\nHello\n\n  there", 600, "Hello there", id="plain-one-line"
        ),
        pytest.param("Content-Type: text/plain\n\nabcdefghij", 4, "abcd", id="limited"),
        pytest.param("Content-Type: text/plain\n\nabc", 0, "", id="zero-limit"),
        pytest.param(
            "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n\n"
            "w6l0w6k=\n",
            600,
            "été",
            id="base64",
        ),
        pytest.param(
            'Content-Type: multipart/alternative; boundary="b"\n\n--b\n'
            "Content-Type: text/html\n\n<p>html&nbsp;first</p>\n--b\n"
            "Content-Type: text/plain\n\nplain wins\n--b--\n",
            600,
            "plain wins",
            id="plain-preferred-over-html",
        ),
        pytest.param(
            'Content-Type: multipart/mixed; boundary="b"\n\n--b\n'
            "Content-Type: text/html\n\n<style>.x{}</style><b>Hi</b><br>there &amp; you\n--b\n"
            "Content-Type: text/plain\nContent-Disposition: attachment; filename=a.txt\n\n"
            "attached notes\n--b--\n",
            600,
            "Hi there & you",
            id="attachment-skipped-html-stripped",
        ),
        pytest.param(
            "Content-Type: text/plain; charset=x-klingon\n\nqapla",
            600,
            "qapla",
            id="unknown-charset",
        ),
        pytest.param("Content-Type: image/png\n\n\x89PNG", 600, "", id="no-text"),
    ],
)
def test_text_excerpt(raw: str, limit: int, expected: str) -> None:
    assert text_excerpt(_message(raw), limit) == expected


# --- fuzzing --------------------------------------------------------------------------------


def _check(headers: MailHeaders) -> None:
    strings = [headers.subject, headers.excerpt, headers.sender.email, headers.message_id]
    strings += [value for _, value in headers.headers]
    strings += [p.email for p in headers.to + headers.cc] + [p.name for p in headers.to]
    for text in strings:
        assert "\n" not in text and "\r" not in text
        text.encode("utf-8")  # no lone surrogates: it must be storable
    assert headers.date is None or headers.date.tzinfo is not None
    classify(headers, ["jordan.lee@gmail.com"])  # never raises either


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=3000))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    _check(parse(raw))


_HEADER_LINE = st.tuples(
    st.sampled_from(
        [
            "From",
            "To",
            "Cc",
            "Subject",
            "Date",
            "Message-ID",
            "In-Reply-To",
            "References",
            "Content-Type",
            "Auto-Submitted",
            "List-Id",
            "Reply-To",
            "Return-Path",
        ]
    ),
    st.text(max_size=200),
).map(lambda kv: f"{kv[0]}: {kv[1]}")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_HEADER_LINE, max_size=12), st.text(max_size=500))
def test_arbitrary_header_text_never_raises(lines: list[str], body: str) -> None:
    raw = "\n".join(lines) + "\n\n" + body
    _check(parse(raw.encode("utf-8", "surrogatepass")))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(SAMPLES),
    st.lists(st.tuples(st.integers(min_value=0), st.binary(max_size=8)), max_size=6),
    st.integers(min_value=0),
)
def test_mutated_samples_never_raise(
    sample: Path, edits: list[tuple[int, bytes]], cut: int
) -> None:
    data = bytearray(sample.read_bytes())
    for position, insert in edits:
        at = position % (len(data) + 1)
        data[at : at + len(insert)] = insert
    data = data[: cut % (len(data) + 1) or None]
    _check(parse(bytes(data)))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.text(max_size=30), st.text(max_size=200)), max_size=15))
def test_arbitrary_fields_never_raise(fields: list[tuple[str, str]]) -> None:
    _check(headers_from_fields(fields, folder=Folder.SENT, provider_id="x"))
