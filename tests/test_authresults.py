"""A reply must be from who it says: Authentication-Results (RFC 8601) as Gmail, Microsoft 365
and Fastmail write them, and the engine's use of the verdict."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailbridge import cli, timing
from mailbridge.classify import sender_authentication
from mailbridge.mailparse import headers_from_bytes, headers_from_fields
from mailbridge.model import DraftKind, DraftState, Folder, MailHeaders, MessageKind
from tests.test_engine import END, LEAD, World

MAIL = Path(__file__).parent / "data" / "mail"

GMAIL_PASS = (
    "mx.google.com; dkim=pass header.i=@northwind-labs.com header.s=s1 header.b=Ab12Cd34; "
    "spf=pass (google.com: domain of priya@northwind-labs.com designates 40.107.93.61 as "
    "permitted sender) smtp.mailfrom=priya@northwind-labs.com; "
    "dmarc=pass (p=REJECT sp=REJECT dis=NONE) header.from=northwind-labs.com"
)
GMAIL_DMARC_FAIL = (
    "mx.google.com; spf=pass (google.com: domain of b@bulk.example designates 1.2.3.4 as "
    "permitted sender) smtp.mailfrom=b@bulk.example; "
    "dmarc=fail (p=NONE sp=NONE dis=NONE) header.from=northwind-labs.com"
)
# Gmail when the domain publishes no DMARC record: SPF and DKIM are what is left.
GMAIL_NO_DMARC_SPF_FAIL = (
    "mx.google.com; spf=fail (google.com: domain of priya@northwind-labs.com does not "
    "designate 185.220.101.47 as permitted sender) smtp.mailfrom=priya@northwind-labs.com"
)
GMAIL_NO_DMARC_DKIM_OTHER = (
    "mx.google.com; dkim=pass header.i=@sendgrid.net header.s=smtpapi header.b=xYz; "
    "spf=softfail (google.com: domain of transitioning priya@northwind-labs.com does not "
    "designate 1.2.3.4 as permitted sender) smtp.mailfrom=priya@northwind-labs.com"
)
GMAIL_NO_DMARC_FORWARDED = (
    "mx.google.com; dkim=pass header.i=@northwind-labs.com header.s=s1 header.b=Ab12; "
    "spf=fail (google.com: domain of priya@northwind-labs.com does not designate "
    "10.0.0.1 as permitted sender) smtp.mailfrom=priya@northwind-labs.com"
)
# Microsoft 365 writes no authserv-id, and adds compauth (its composite verdict).
M365_PASS = (
    "spf=pass (sender IP is 209.85.220.41) smtp.mailfrom=northwind-labs.com; "
    "dkim=pass (signature was verified) header.d=northwind-labs.com;dmarc=pass action=none "
    "header.from=northwind-labs.com;compauth=pass reason=100"
)
M365_DMARC_FAIL = (
    "spf=fail (sender IP is 185.220.101.47) smtp.mailfrom=northwind-labs.com; "
    "dkim=none (message not signed) header.d=none;dmarc=fail action=oreject "
    "header.from=northwind-labs.com;compauth=fail reason=000"
)
M365_COMPAUTH_FAIL = (
    "spf=none (sender IP is 185.220.101.47) smtp.mailfrom=mailer.example; dkim=none "
    "(message not signed) header.d=none;dmarc=none action=none "
    "header.from=northwind-labs.com;compauth=fail reason=001"
)
M365_COMPAUTH_SOFTPASS = (
    "spf=none (sender IP is 1.2.3.4) smtp.mailfrom=northwind-labs.com; dkim=none "
    "(message not signed) header.d=none;dmarc=none action=none "
    "header.from=northwind-labs.com;compauth=softpass reason=201"
)
FASTMAIL_PASS = (
    "mx4.messagingengine.com; dkim=pass (2048-bit rsa key sha256) header.d=northwind-labs.com "
    "header.i=@northwind-labs.com header.b=Kq1wE2rT header.a=rsa-sha256 header.s=s1 "
    "x-bits=2048; dmarc=pass policy.published-domain-policy=reject "
    "policy.applied-disposition=none policy.evaluated-disposition=none "
    "(p=reject,d=none,d.eval=none) policy.policy-from=p header.from=northwind-labs.com; "
    "iprev=pass smtp.remote-ip=40.107.93.61 (mail-dm6.outbound.protection.outlook.com); "
    "spf=pass smtp.mailfrom=priya@northwind-labs.com smtp.helo=mail-dm6.outbound.example"
)
FASTMAIL_DMARC_FAIL = (
    "mx4.messagingengine.com; dkim=none (no signatures found); dmarc=fail "
    "policy.published-domain-policy=none header.from=northwind-labs.com; "
    "spf=fail smtp.mailfrom=priya@northwind-labs.com smtp.helo=mailer.example"
)
# A result the sender wrote itself, claiming a pass; the receiving side's header sits above it.
FORGED_PASS = "mx.northwind-labs.com; dkim=pass header.d=northwind-labs.com; dmarc=pass"


def reply(*results: str, sender: str = "priya.natarajan@northwind-labs.com") -> MailHeaders:
    return headers_from_fields(
        [("From", f"Priya Natarajan <{sender}>"), ("Subject", "Re: Thank you")]
        + [("Authentication-Results", r) for r in results],
        folder=Folder.INBOX,
        provider_id="m1",
    )


@pytest.mark.parametrize(
    ("results", "verdict", "reason"),
    [
        pytest.param((), "none", "no Authentication-Results", id="no-headers"),
        pytest.param((GMAIL_PASS,), "pass", "DMARC passed for northwind-labs.com", id="gmail"),
        pytest.param((GMAIL_DMARC_FAIL,), "fail", "DMARC failed", id="gmail-dmarc-fail"),
        pytest.param(
            (GMAIL_NO_DMARC_SPF_FAIL,), "fail", "SPF and DKIM did not pass", id="gmail-spf-fail"
        ),
        pytest.param(
            (GMAIL_NO_DMARC_DKIM_OTHER,),
            "fail",
            "SPF and DKIM did not pass",
            id="gmail-dkim-of-another-domain-does-not-count",
        ),
        pytest.param(
            (GMAIL_NO_DMARC_FORWARDED,), "pass", "DKIM passed", id="gmail-forwarded-dkim-holds"
        ),
        pytest.param((M365_PASS,), "pass", "composite authentication passed", id="m365"),
        pytest.param(
            (M365_DMARC_FAIL,), "fail", "composite authentication failed", id="m365-dmarc-fail"
        ),
        pytest.param(
            (M365_COMPAUTH_FAIL,), "fail", "composite authentication failed", id="m365-compauth"
        ),
        pytest.param(
            (M365_COMPAUTH_SOFTPASS,), "none", "nothing decisive", id="m365-compauth-softpass"
        ),
        pytest.param(
            (M365_DMARC_FAIL.replace("compauth=fail reason=000", "compauth=pass reason=130"),),
            "pass",
            "reason 130",
            id="m365-forwarded-with-arc-is-forgiven",
        ),
        pytest.param((FASTMAIL_PASS,), "pass", "DMARC passed", id="fastmail"),
        pytest.param((FASTMAIL_DMARC_FAIL,), "fail", "DMARC failed", id="fastmail-dmarc-fail"),
        pytest.param(
            (GMAIL_DMARC_FAIL, FORGED_PASS),
            "fail",
            "checked by mx.google.com",
            id="a-forged-pass-below-the-receiver-s-header-is-ignored",
        ),
        pytest.param(
            (FORGED_PASS.replace("dmarc=pass", "dmarc=fail"), GMAIL_PASS),
            "fail",
            "checked by mx.northwind-labs.com",
            id="only-the-topmost-server-counts",
        ),
        pytest.param(
            ("mx.google.com; dkim=pass header.i=@northwind-labs.com",
             "mx.google.com; spf=fail smtp.mailfrom=northwind-labs.com"),
            "pass",
            "DKIM passed",
            id="several-headers-of-the-receiving-server",
        ),  # fmt: skip
        pytest.param(
            ("mx.google.com; dmarc=pass header.from=partner.example",),
            "none",
            "nothing decisive",
            id="dmarc-for-another-domain-does-not-count",
        ),
        pytest.param(("mx.google.com; none",), "none", "nothing decisive", id="no-results"),
        pytest.param(("garbage ;;; ===",), "none", "nothing decisive", id="garbage"),
    ],
)
def test_sender_authentication(results: tuple[str, ...], verdict: str, reason: str) -> None:
    found = sender_authentication(reply(*results))
    assert found.verdict == verdict
    assert reason in found.reason


def test_a_subdomain_of_the_sender_s_organisation_is_aligned() -> None:
    found = sender_authentication(
        reply("mx.google.com; dkim=pass header.d=mail.northwind-labs.com",
              sender="priya@northwind-labs.com")
    )  # fmt: skip
    assert found.verdict == "pass"


def test_a_named_receiving_server_is_trusted_over_the_topmost_header() -> None:
    # A local filter (say, a Sieve or spam filter) added its own header on top.
    message = reply("localhost; x-filter=pass", GMAIL_DMARC_FAIL)
    assert sender_authentication(message).verdict == "none"
    assert sender_authentication(message, trusted=["mx.google.com"]).verdict == "fail"


def test_the_spoofed_sample_fails_and_the_real_ones_pass() -> None:
    def check(name: str) -> str:
        raw = (MAIL / name).read_bytes()
        message = headers_from_bytes(raw, folder=Folder.INBOX, provider_id=name)
        return sender_authentication(message).verdict

    assert check("spoofed_reply.eml") == "fail"
    assert check("teams_invitation.eml") == "pass"
    assert check("human_reply.eml") == "none"


@given(
    results=st.lists(
        st.text(alphabet=st.sampled_from(list("abcdefmx.=;() @\"-_12pasfilnoe")), max_size=80),
        max_size=4,
    )
)
def test_any_header_text_gives_a_verdict(results: list[str]) -> None:
    found = sender_authentication(reply(*results))
    assert found.verdict in ("pass", "fail", "none") and found.reason


# --- the engine -------------------------------------------------------------------------------


@pytest.fixture
def world(tmp_path: Path) -> World:
    w = World(tmp_path)
    yield w
    w.ledger.close()


def test_a_spoofed_reply_is_suspicious_and_retracts_nothing(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world.add_interview()
    world.run(END + timedelta(hours=2))
    world.send_all_drafts()
    due = timing.follow_up_due(END, None, world.account.policy)
    world.run(due)
    assert len(world.messages("Drafts")) == 1
    thank_you = next(d for d in world.drafts(DraftKind.THANK_YOU) if d.recipient.email == LEAD)

    spoofed = (
        "mx.example.com; spf=fail smtp.mailfrom=dana.whitfield@northwind-robotics.com; "
        "dmarc=fail header.from=northwind-robotics.com"
    )
    world.deliver(f"Dana Whitfield <{LEAD}>", "Re: Thank you", thank_you.message_id,
                  at=due + timedelta(hours=1), extra={"Authentication-Results": spoofed})
    world.run(due + timedelta(hours=1, minutes=1))

    assert len(world.messages("Drafts")) == 1  # the follow-up stays
    (follow_up,) = world.drafts(DraftKind.FOLLOW_UP)
    assert follow_up.state == DraftState.CREATED
    (row,) = world.ledger.messages(world.account.name)[-1:]
    assert row.kind is MessageKind.SUSPICIOUS and row.sender == LEAD
    (entry,) = [e for e in world.ledger.audit_entries() if e.decision == "suspicious message"]
    spoof_id = next(m.message_id for m in world.ledger.messages(world.account.name)
                    if m.kind is MessageKind.SUSPICIOUS)  # fmt: skip
    assert spoof_id not in world.ledger.known_message_ids(world.account.name)
    assert "DMARC failed for northwind-robotics.com" in entry.reason

    assert cli.main(["--config", str(world.config), "status"]) == 0
    out = capsys.readouterr().out
    assert f"suspicious message from {LEAD}" in out
    assert f"suspicious (not taken as a reply): from {LEAD}" in out
    assert cli.main(["--config", str(world.config), "status", "--json"]) == 0
    (account,) = json.loads(capsys.readouterr().out)["accounts"]
    assert [m["from"] for m in account["suspicious"]] == [LEAD]

    # The real reply, which passes, still takes the follow-up back.
    passed = "mx.example.com; dmarc=pass header.from=northwind-robotics.com"
    world.deliver(f"Dana Whitfield <{LEAD}>", "Re: Thank you!", thank_you.message_id,
                  at=due + timedelta(hours=2), extra={"Authentication-Results": passed})
    world.run(due + timedelta(hours=2, minutes=1))
    assert world.messages("Drafts") == []
    (follow_up,) = world.drafts(DraftKind.FOLLOW_UP)
    assert follow_up.state == DraftState.RETRACTED
