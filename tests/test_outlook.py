"""The Outlook adapter through msal and requests against the Graph emulator on loopback."""

from __future__ import annotations

import inspect
import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

import keyring
import pytest
import requests
from mailbridge_providers import outlook
from mailbridge_providers.outlook import OutlookSettings

from mailbridge.adapters import AuthError, FolderMissing, ProviderError
from mailbridge.compose import fingerprint
from mailbridge.model import (
    AttendeeKind,
    DraftKind,
    DraftMessage,
    EventKey,
    EventStatus,
    Folder,
    Person,
    Presence,
    Response,
    Window,
)
from mailbridge.settings import AccountSettings, CalendarSettings
from tests.emulators import half_request
from tests.emulators.graph import AUTHORITY, TENANT, GraphEmulator

T0 = datetime(2030, 5, 6, 15, 0, tzinfo=UTC)
WINDOW = Window(T0 - timedelta(days=3), T0 + timedelta(days=30))
SEND_PATH = re.compile(r"/(send|sendMail|reply|replyAll|forward)$", re.I)


@pytest.fixture
def emu() -> Iterator[GraphEmulator]:
    emulator = GraphEmulator().start()
    yield emulator
    emulator.stop()
    assert emulator.violations == [], "requests the real Graph would reject"
    assert emulator.send_attempts == []


def account_for(emu: GraphEmulator, name: str = "work") -> AccountSettings:
    return AccountSettings(
        name=name,
        provider="outlook",
        address=emu.user,
        display_name=emu.user_name,
        calendar=CalendarSettings(kind="outlook"),
        tables={"outlook": OutlookSettings(
            client_id=emu.client_id,
            tenant=TENANT,
            authority_url=AUTHORITY,
            graph_url=emu.graph_url,
        )},
    )


class Sleeps(list[float]):
    """Records the waits the retry policy asks for; waits only a token amount."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)
        time.sleep(min(seconds, 0.01))


def sign_in(emu: GraphEmulator, name: str = "work") -> AccountSettings:
    account = account_for(emu, name)
    outlook.authenticate(account, http_client=emu.http_client(), say=lambda _: None)
    return account


def open_both(
    emu: GraphEmulator, account: AccountSettings, sleeps: Sleeps | None = None
) -> tuple[outlook.OutlookMailbox, outlook.OutlookCalendar]:
    retry = outlook.RetryPolicy(
        base=0.01, cap=0.05, sleep=sleeps if sleeps is not None else Sleeps()
    )
    opts = {"http_client": emu.http_client(), "retry": retry}
    return outlook.open_mailbox(account, **opts), outlook.open_calendar(account, **opts)


def draft(
    to: str,
    subject: str,
    body: str,
    *,
    kind: DraftKind = DraftKind.THANK_YOU,
    message_id: str = "<ty-1@mailbridge.example>",
    in_reply_to: str = "",
) -> DraftMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"], msg["Message-ID"] = "jordan", to, subject, message_id
    msg.set_content(body)
    return DraftMessage(
        kind,
        message_id,
        Person("jordan.lee@contoso.example"),
        Person(to, "Ann"),
        subject,
        body,
        bytes(msg),
        in_reply_to=in_reply_to,
        references=(in_reply_to,) if in_reply_to else (),
    )


# --- sign-in --------------------------------------------------------------------------------


def test_device_code_sign_in_stores_the_cache_and_never_asks_for_mail_send(emu):
    said: list[str] = []
    message = outlook.authenticate(account_for(emu), http_client=emu.http_client(), say=said.append)
    assert "EMUL-8TOR" in said[0] and emu.user in message
    assert keyring.get_password("mailbridge", "work/msal-cache")
    assert emu.counts["POST token urn:ietf:params:oauth:grant-type:device_code"] == 2  # polled
    asked = [f["scope"] for f in emu.token_requests if "scope" in f]
    assert asked
    for scope in asked:
        scopes = set(scope.split())
        assert {"Calendars.Read", "Mail.ReadWrite", "User.Read"} <= scopes
        assert not any("send" in s.lower() for s in scopes)


def test_expired_access_token_is_refreshed_by_msal_and_the_cache_written_back(emu):
    emu.access_token_lifetime = 60  # msal treats < 5 minutes as expired
    account = sign_in(emu)
    before = keyring.get_password("mailbridge", "work/msal-cache")
    _, calendar = open_both(emu, account)
    calendar.changes(None, WINDOW)
    assert emu.counts["POST token refresh_token"] == 1
    after = keyring.get_password("mailbridge", "work/msal-cache")
    assert after != before
    # Refresh tokens rotate: only the written-back cache can refresh again.
    _, again = open_both(emu, account)
    again.changes(None, WINDOW)
    assert emu.counts["POST token refresh_token"] == 2


def test_the_mailbox_and_calendar_of_an_account_share_one_token_cache(emu):
    emu.access_token_lifetime = 60  # the signed-in token is due for a refresh (msal: < 5 min)
    account = sign_in(emu)
    emu.access_token_lifetime = 3600
    emu.counts.clear()
    mailbox, calendar = open_both(emu, account)
    calendar.changes(None, WINDOW)
    mailbox.messages(None, T0 - timedelta(days=3))
    # One msal app (one authority discovery) and one refresh for the account, not one each.
    assert emu.counts["GET openid-configuration"] == 1
    assert emu.counts["POST token refresh_token"] == 1
    calendar.close()
    mailbox.close()


def test_a_cache_that_cannot_refresh_says_to_run_auth(emu):
    emu.access_token_lifetime = 60
    account = sign_in(emu)
    emu.refresh_mode = "invalid_grant"
    _, calendar = open_both(emu, account)
    with pytest.raises(AuthError, match=r"run `mailbridge auth work`"):
        calendar.changes(None, WINDOW)


def test_no_cache_at_all_says_to_run_auth(emu):
    mailbox, _ = open_both(emu, account_for(emu))
    with pytest.raises(AuthError, match=r"mailbridge auth work"):
        mailbox.find_draft("<x@y>")


# --- calendar ------------------------------------------------------------


def test_calendar_delta_pages_reuses_the_delta_link_and_reports_removals(emu):
    account = sign_in(emu)
    _, calendar = open_both(emu, account)
    emu.page_size = 2
    ids = [
        emu.add_event(f"Interview {i}", T0 + timedelta(days=i), T0 + timedelta(days=i, hours=1))
        for i in range(5)
    ]
    emu.add_event("Far away", T0 + timedelta(days=90), T0 + timedelta(days=90, hours=1))
    first = calendar.changes(None, WINDOW)
    assert first.complete and emu.counts["GET calendarView/delta"] == 3
    assert sorted(e.title for e in first.events) == [f"Interview {i}" for i in range(5)]

    idle = calendar.changes(first.cursor, WINDOW)
    assert (idle.events, idle.removed, idle.complete) == ((), (), False)
    assert emu.counts["GET calendarView/delta"] == 4  # one request when nothing changed

    emu.update_event(
        ids[0],
        subject="Interview 0 (moved)",
        start=T0 + timedelta(hours=2),
        end=T0 + timedelta(hours=3),
    )
    emu.delete_event(ids[1])
    emu.update_event(ids[2], start=T0 + timedelta(days=200), end=T0 + timedelta(days=200, hours=1))
    later = calendar.changes(idle.cursor, WINDOW)
    assert [(e.title, e.start) for e in later.events] == [
        ("Interview 0 (moved)", T0 + timedelta(hours=2))
    ]
    assert set(later.removed) == {EventKey("outlook", ids[1]), EventKey("outlook", ids[2])}


def test_expired_calendar_delta_starts_a_complete_round(emu):
    _, calendar = open_both(emu, sign_in(emu))
    emu.add_event("Interview", T0, T0 + timedelta(hours=1))
    first = calendar.changes(None, WINDOW)
    emu.expire_deltas()
    again = calendar.changes(first.cursor, WINDOW)
    assert again.complete and [e.title for e in again.events] == ["Interview"]


def test_events_map_people_status_and_recurring_instances(emu):
    _, calendar = open_both(emu, sign_in(emu))
    emu.add_event(
        "Onsite interview — Fabrikam",
        T0,
        T0 + timedelta(hours=3),
        body="Agenda: system design",
        organizer=("lead@fabrikam.example", "Lee Lead"),
        location="Building 4",
        attendees=[
            ("lead@fabrikam.example", "Lee Lead", "required", "organizer"),
            ("ann@fabrikam.example", "Ann", "optional", "declined"),
            ("room4@fabrikam.example", "Room 4", "resource", "accepted"),
            (emu.user, emu.user_name, "required", "accepted"),
        ],
    )
    emu.add_event(
        "Cancelled screen",
        T0 + timedelta(days=1),
        T0 + timedelta(days=1, hours=1),
        is_cancelled=True,
        response="declined",
    )
    emu.add_event("Holiday", T0 + timedelta(days=2), T0 + timedelta(days=3), is_all_day=True)
    series_start = T0 + timedelta(days=4)
    occurrence = emu.add_event(
        "Weekly chat",
        series_start,
        series_start + timedelta(hours=1),
        event_type="occurrence",
        series="AAMkSeries1",
    )
    batch = calendar.changes(None, WINDOW)
    by_title = {e.title: e for e in batch.events}

    onsite = by_title["Onsite interview — Fabrikam"]
    assert onsite.organizer == Person("lead@fabrikam.example", "Lee Lead")
    assert onsite.description == "Agenda: system design" and onsite.location == "Building 4"
    people = {a.email: a for a in onsite.attendees}
    assert people["lead@fabrikam.example"].is_organizer
    assert people["ann@fabrikam.example"].response is Response.DECLINED
    assert people["room4@fabrikam.example"].kind is AttendeeKind.RESOURCE
    assert people[emu.user].is_self and len(onsite.attendees) == 4

    cancelled = by_title["Cancelled screen"]
    assert cancelled.status is EventStatus.CANCELLED
    assert [(a.is_self, a.response) for a in cancelled.attendees] == [(True, Response.DECLINED)]
    assert by_title["Holiday"].all_day

    weekly = by_title["Weekly chat"]
    assert weekly.recurring
    assert weekly.key == EventKey("outlook", "AAMkSeries1", series_start.isoformat())
    emu.delete_event(occurrence)
    assert calendar.changes(batch.cursor, WINDOW).removed == (weekly.key,)


# --- drafts ------------------------------------------------------------


def test_draft_lifecycle_create_find_observe_update_retract(emu):
    mailbox, _ = open_both(emu, sign_in(emu))
    ty = draft("ann@fabrikam.example", "Thank you", "Dear Ann,\nThank you.\n")
    pid = mailbox.create_draft(ty)
    [stored] = emu.drafts()
    assert stored["id"] == pid and stored["internetMessageId"] == ty.message_id
    assert stored["body"] == {"contentType": "text", "content": ty.body}
    assert {"name": "X-Mailbridge-Kind", "value": "thank_you"} in stored["internetMessageHeaders"]
    assert mailbox.find_draft(ty.message_id) == pid
    assert mailbox.find_draft("<nobody@x>") is None

    seen = mailbox.observe(pid, ty.message_id)
    assert seen.presence is Presence.PRESENT
    assert seen.content_hash == fingerprint(ty.subject, ["ann@fabrikam.example"], ty.body)

    notes = draft("ann@fabrikam.example", "Thank you", "Dear Ann,\nThank you for the demo.\n")
    assert mailbox.update_draft(pid, notes) == pid
    assert emu.drafts()[0]["body"]["content"] == notes.body

    mailbox.observe(pid, ty.message_id)
    emu.user_edits(pid, body="Dear Ann, my own words")
    edited = mailbox.observe(pid, ty.message_id)
    assert edited.presence is Presence.PRESENT and edited.content_hash != seen.content_hash

    emu.user_edits(pid, body="edited again after we looked")
    with pytest.raises(ProviderError, match="changed"):  # changeKey no longer matches
        mailbox.retract(pid)
    assert emu.drafts()

    mailbox.observe(pid, ty.message_id)
    mailbox.retract(pid)
    assert emu.drafts() == [] and emu.messages[pid].folder == "deleteditems"
    assert mailbox.observe(pid, ty.message_id).presence is Presence.GONE
    mailbox.retract(pid)  # permanently removed now; a second retract is harmless
    mailbox.retract(pid)


@pytest.mark.parametrize(
    ("user_action", "expected"),
    [("user_sends", Presence.SENT), ("user_deletes", Presence.GONE)],
)
def test_observe_sees_what_the_user_did(emu, user_action, expected):
    mailbox, _ = open_both(emu, sign_in(emu))
    ty = draft("ann@fabrikam.example", "Thank you", "Thanks!")
    pid = mailbox.create_draft(ty)
    getattr(emu, user_action)(pid)
    assert mailbox.observe(pid, ty.message_id).presence is expected


def test_a_vanished_drafts_folder_is_a_fault(emu):
    mailbox, _ = open_both(emu, sign_in(emu))
    emu.drafts_missing = True
    with pytest.raises(FolderMissing):
        mailbox.observe("AAk-any", "<x@y>")


def test_follow_up_is_created_in_the_thank_you_thread(emu):
    mailbox, _ = open_both(emu, sign_in(emu))
    ty = draft("lead@fabrikam.example", "Thank you", "Thanks, Lee.")
    ty_id = mailbox.create_draft(ty)
    emu.user_sends(ty_id)
    follow = draft(
        "lead@fabrikam.example",
        "Re: Thank you",
        "Checking in on next steps.",
        kind=DraftKind.FOLLOW_UP,
        message_id="<fu-1@mailbridge.example>",
        in_reply_to=ty.message_id,
    )
    pid = mailbox.create_draft(follow)
    # One call: the draft never exists without the Message-ID it is found by.
    assert emu.counts["POST createReply"] == 1 and emu.counts.get("PATCH message", 0) == 0
    [stored] = emu.drafts()
    assert stored["id"] == pid
    assert stored["conversationId"] == emu.messages[ty_id].data["conversationId"]
    headers = {h["name"]: h["value"] for h in stored["internetMessageHeaders"]}
    assert headers["In-Reply-To"] == ty.message_id
    assert headers["X-Mailbridge-Kind"] == "follow_up"
    assert [r["emailAddress"]["address"] for r in stored["toRecipients"]] == [
        "lead@fabrikam.example"
    ]
    assert stored["body"]["content"] == follow.body and stored["subject"] == "Re: Thank you"
    assert mailbox.find_draft(follow.message_id) == pid


def test_every_draft_we_create_carries_the_mailbridge_category(emu):
    mailbox, _ = open_both(emu, sign_in(emu))
    ty = draft("lead@fabrikam.example", "Thank you", "Thanks, Lee.")
    ty_id = mailbox.create_draft(ty)
    assert emu.messages[ty_id].data["categories"] == [outlook.CATEGORY] == ["mailbridge"]
    emu.user_sends(ty_id)
    follow = draft("lead@fabrikam.example", "Re: Thank you", "Checking in.",
                   kind=DraftKind.FOLLOW_UP, message_id="<fu-1@mailbridge.example>",
                   in_reply_to=ty.message_id)
    pid = mailbox.create_draft(follow)  # createReply, then PATCH
    assert emu.counts["POST createReply"] == 1
    [stored] = emu.drafts()
    assert stored["id"] == pid and stored["categories"] == ["mailbridge"]

    # The user files the draft under a category of their own; our update keeps both.
    emu.messages[pid].data["categories"].append("Job search")
    mailbox.update_draft(pid, draft("lead@fabrikam.example", "Re: Thank you", "New words.",
                                    kind=DraftKind.FOLLOW_UP,
                                    message_id="<fu-1@mailbridge.example>"))
    assert emu.drafts()[0]["categories"] == ["mailbridge", "Job search"]
    assert emu.drafts()[0]["body"]["content"] == "New words."


def test_the_emulator_checks_categories_like_graph(emu):
    sign_in(emu)
    token = next(iter(emu._access))
    head = {"Authorization": f"Bearer {token}", "Prefer": 'IdType="ImmutableId"'}
    ok = requests.post(emu.graph_url + "/me/messages", headers=head,
                       json={"subject": "x", "categories": ["Red category"]})
    assert ok.status_code == 201 and ok.json()["categories"] == ["Red category"]
    plain = requests.post(emu.graph_url + "/me/messages", headers=head, json={"subject": "y"})
    assert plain.json()["categories"] == []
    bad = requests.post(emu.graph_url + "/me/messages", headers=head,
                        json={"subject": "z", "categories": "mailbridge"})
    assert bad.status_code == 400
    assert len(emu.violations) == 1
    emu.violations.clear()


def test_a_request_cut_short_by_a_killed_client_is_not_acted_on(emu):
    half_request(emu.url, "POST", "/v1.0/me/messages")
    assert emu.requests == [] and emu.drafts() == []  # the fixture checks for violations


def test_follow_up_without_a_sent_thank_you_is_a_plain_draft(emu):
    mailbox, _ = open_both(emu, sign_in(emu))
    follow = draft(
        "lead@fabrikam.example",
        "Re: Thank you",
        "Checking in.",
        kind=DraftKind.FOLLOW_UP,
        in_reply_to="<never-sent@x>",
    )
    mailbox.create_draft(follow)
    assert emu.counts["POST createReply"] == 0 and len(emu.drafts()) == 1


# --- inbox and sent ------------------------------------------------------------


def test_inbox_and_sent_delta_with_headers_only_for_inbound_mail(emu):
    mailbox, _ = open_both(emu, sign_in(emu))
    emu.page_size = 2
    since = datetime.now(UTC) - timedelta(days=1)
    emu.deliver("old@fabrikam.example", "Too old", received=since - timedelta(days=5))
    reply = emu.deliver(
        "lead@fabrikam.example",
        "RE: Thank you",
        "We'd love to move forward",
        name="Lee Lead",
        headers=[
            ("In-Reply-To", "<ty-1@mailbridge.example>"),
            ("References", "<ty-1@mailbridge.example>"),
        ],
    )
    ooo = emu.deliver(
        "ann@fabrikam.example",
        "Automatic reply: Thank you",
        "I am away",
        headers=[
            ("Auto-Submitted", "auto-replied"),
            ("X-MS-Exchange-Inbox-Rules-Loop", "ann@fabrikam.example"),
        ],
    )
    emu.deliver("news@lists.example", "Weekly digest", headers=[("List-Id", "<w.lists.example>")])
    emu.deliver(emu.user, "Note to self")
    sent = mailbox.create_draft(draft("lead@fabrikam.example", "Thank you", "Thanks"))
    emu.user_sends(sent)

    batch = mailbox.messages(None, since)
    by_id = {m.provider_id: m for m in batch.messages}
    assert len(by_id) == 5 and "Too old" not in {m.subject for m in by_id.values()}
    assert by_id[reply].in_reply_to == "<ty-1@mailbridge.example>"
    assert by_id[reply].sender == Person("lead@fabrikam.example", "Lee Lead")
    assert by_id[reply].excerpt.startswith("We'd love")
    assert by_id[ooo].header("auto-submitted") == "auto-replied"
    assert by_id[ooo].header("x-ms-exchange-inbox-rules-loop")
    assert (
        by_id[sent].folder is Folder.SENT and by_id[sent].message_id == "<ty-1@mailbridge.example>"
    )
    assert emu.counts["GET message"] == 3  # headers for the three inbound messages from others

    requests_before = sum(emu.counts[k] for k in ("GET messages/delta", "GET message"))
    idle = mailbox.messages(batch.cursor, since)
    assert idle.messages == ()
    # One delta each of the inbox, Archive and Sent Items; nothing fetched.
    assert sum(emu.counts[k] for k in ("GET messages/delta", "GET message")) == requests_before + 3

    late = emu.deliver("lead@fabrikam.example", "One more thing")
    assert [m.provider_id for m in mailbox.messages(idle.cursor, since).messages] == [late]

    emu.expire_deltas()
    again = mailbox.messages(idle.cursor, since)
    assert len(again.messages) == 6  # a full re-read after the delta tokens expired


def test_a_reply_archived_before_the_pass_is_read_once(emu):
    """Outlook's Archive button files mail in Archive: a reply archived before mailbridge
    looked is still a reply; one archived after it was read is the same message (its
    immutable id), not a second one."""
    mailbox, _ = open_both(emu, sign_in(emu))
    since = datetime.now(UTC) - timedelta(days=1)
    first = mailbox.messages(None, since)
    early = emu.deliver("lead@fabrikam.example", "RE: Thank you", "Let's talk")
    emu.user_moves(early, "archive")
    late = emu.deliver("ann@fabrikam.example", "RE: Thank you", "Soon")
    batch = mailbox.messages(first.cursor, since)
    assert sorted(m.provider_id for m in batch.messages) == sorted([early, late])
    assert {m.folder for m in batch.messages} == {Folder.INBOX}
    emu.user_moves(late, "archive")
    again = mailbox.messages(batch.cursor, since)
    assert [m.provider_id for m in again.messages] == [late]  # the same id: known to the core


def test_a_mailbox_without_an_archive_folder_reads_the_inbox_and_sent(emu):
    mailbox, _ = open_both(emu, sign_in(emu))
    emu.missing_folders.add("archive")
    reply = emu.deliver("lead@fabrikam.example", "RE: Thank you", "Let's talk")
    since = datetime.now(UTC) - timedelta(days=1)
    batch = mailbox.messages(None, since)
    assert [m.provider_id for m in batch.messages] == [reply]
    emu.missing_folders.clear()  # made later, by the first use of the Archive button
    emu.user_moves(reply, "archive")
    assert [m.provider_id for m in mailbox.messages(batch.cursor, since).messages] == [reply]


# --- faults ------------------------------------------------------------


def test_throttling_storm_honours_retry_after_then_succeeds(emu):
    sleeps = Sleeps()
    _, calendar = open_both(emu, sign_in(emu), sleeps)
    emu.add_event("Interview", T0, T0 + timedelta(hours=1))
    emu.storm(3, status=429, retry_after="2")
    assert [e.title for e in calendar.changes(None, WINDOW).events] == ["Interview"]
    assert emu.throttled == 3 and sleeps == [2.0, 2.0, 2.0]


def test_503_without_retry_after_backs_off_exponentially_and_is_bounded(emu):
    sleeps = Sleeps()
    mailbox, _ = open_both(emu, sign_in(emu), sleeps)
    emu.storm(1000, status=503, retry_after=None)
    with pytest.raises(ProviderError, match="kept refusing"):
        mailbox.find_draft("<x@y>")
    assert emu.throttled == 5 and len(sleeps) == 4
    assert all(0 <= s <= 0.05 for s in sleeps)


def test_a_retry_after_beyond_the_bound_is_not_waited_out(emu):
    sleeps = Sleeps()
    mailbox, _ = open_both(emu, sign_in(emu), sleeps)
    emu.storm(1, status=429, retry_after="3600")
    with pytest.raises(ProviderError):
        mailbox.find_draft("<x@y>")
    assert sleeps == []


def test_at_most_four_requests_in_flight_per_mailbox_even_in_a_storm(emu):
    mailbox, _ = open_both(emu, sign_in(emu))
    emu.latency = 0.05
    emu.storm(6, status=429, retry_after="0")
    results: list[str | None] = []
    threads = [
        threading.Thread(target=lambda: results.append(mailbox.find_draft("<x@y>")))
        for _ in range(12)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [None] * 12
    assert emu.max_in_flight == 4  # reached, never exceeded


def test_a_failing_account_does_not_block_another():
    sick, healthy = GraphEmulator().start(), GraphEmulator().start()
    try:
        sick_box, _ = open_both(sick, sign_in(sick, "sick"))
        ok_box, _ = open_both(healthy, sign_in(healthy, "healthy"))
        sick.latency = 0.05
        sick.storm(10_000, status=503, retry_after="0")
        errors: list[Exception] = []

        def run_sick() -> None:
            try:
                sick_box.find_draft("<x@y>")
            except ProviderError as exc:
                errors.append(exc)

        thread = threading.Thread(target=run_sick)
        thread.start()
        started = time.monotonic()
        assert ok_box.find_draft("<x@y>") is None
        assert time.monotonic() - started < 0.2
        thread.join()
        assert len(errors) == 1 and "'sick'" in str(errors[0])
    finally:
        sick.stop()
        healthy.stop()


# --- never send ------------------------------------------------------------


def test_no_request_ever_sends_and_no_token_asks_for_mail_send(emu):
    mailbox, calendar = open_both(emu, sign_in(emu))
    ty = draft("lead@fabrikam.example", "Thank you", "Thanks")
    pid = mailbox.create_draft(ty)
    mailbox.observe(pid, ty.message_id)
    mailbox.update_draft(pid, ty)
    emu.user_sends(pid)
    mailbox.create_draft(
        draft(
            "lead@fabrikam.example",
            "Re: Thank you",
            "Any news?",
            message_id="<fu@x>",
            in_reply_to=ty.message_id,
        )
    )
    mailbox.messages(None, datetime.now(UTC) - timedelta(days=1))
    calendar.changes(None, WINDOW)
    mailbox.retract(mailbox.find_draft("<fu@x>") or "")
    assert len(emu.requests) > 10
    assert [p for _, p, _ in emu.requests if SEND_PATH.search(p)] == []
    assert not any("Mail.Send" in f.get("scope", "") for f in emu.token_requests)
    assert outlook.SCOPES == ("Calendars.Read", "Mail.ReadWrite", "User.Read")
    source = inspect.getsource(outlook)
    assert not re.search(r"/send|sendMail|/reply\b|replyAll|/forward", source)
    assert not [n for n in dir(outlook.OutlookMailbox) if "send" in n.lower()]


def test_the_emulator_catches_a_send_and_malformed_requests(emu):
    sign_in(emu)
    token = next(iter(emu._access))
    head = {"Authorization": f"Bearer {token}", "Prefer": 'IdType="ImmutableId"'}
    base = emu.graph_url
    cases = [
        ("POST", "/me/messages/AAk1/send", {}, None, 403),
        ("POST", "/me/sendMail", {}, {"message": {}}, 403),
        ("GET", "/me/calendarView/delta", {"$top": "5"}, None, 400),
        ("POST", "/me/messages", {}, {"subject": "x", "isDraft": True}, 400),
        (
            "POST",
            "/me/messages",
            {},
            {"internetMessageHeaders": [{"name": "In-Reply-To", "value": "<a@b>"}]},
            400,
        ),
        ("PUT", "/me/messages", {}, None, 405),
        ("GET", "/me/contacts", {}, None, 400),
    ]
    for method, path, params, body, status in cases:
        resp = requests.request(method, base + path, params=params, json=body, headers=head)
        assert resp.status_code == status, (method, path)
    resp = requests.get(
        base + "/me/mailFolders/drafts", headers={"Authorization": head["Authorization"]}
    )
    assert resp.status_code == 400
    assert len(emu.violations) == len(cases) + 1 and len(emu.send_attempts) == 2
    emu.violations.clear()
    emu.send_attempts.clear()


# --- the whole loop through the engine ------------------------------------------------------


def test_whole_loop_through_reconcile(emu, tmp_path):
    from mailbridge.engine import reconcile
    from mailbridge.ledger import Ledger

    account = sign_in(emu)
    mailbox, calendar = open_both(emu, account)
    ledger = Ledger.open(tmp_path / "state")
    start = T0 - timedelta(days=1)
    emu.add_event(
        "Interview: Fabrikam — Staff Engineer",
        start,
        start + timedelta(hours=1),
        organizer=("lee@fabrikam.example", "Lee Lead"),
        attendees=[
            ("lee@fabrikam.example", "Lee Lead", "required", "organizer"),
            ("ann@fabrikam.example", "Ann Other", "required", "accepted"),
            (emu.user, emu.user_name, "required", "accepted"),
        ],
    )

    def run(now: datetime) -> None:
        report = reconcile(account, ledger, now=now, mailbox=mailbox, calendar=calendar)
        assert report.error is None, report.error

    run(start + timedelta(hours=4))
    thanks = {d["toRecipients"][0]["emailAddress"]["address"]: d for d in emu.drafts()}
    assert set(thanks) == {"lee@fabrikam.example", "ann@fabrikam.example"}
    assert all(d["categories"] == ["mailbridge"] for d in thanks.values())
    for stored in thanks.values():
        emu.user_sends(stored["id"])

    later = start + timedelta(days=14)
    run(later)
    [follow] = emu.drafts()
    assert [r["emailAddress"]["address"] for r in follow["toRecipients"]] == [
        "lee@fabrikam.example"
    ]
    assert follow["conversationId"] == thanks["lee@fabrikam.example"]["conversationId"]
    assert follow["categories"] == ["mailbridge"]

    emu.deliver(
        "lee@fabrikam.example",
        "RE: Thank you",
        "Thanks, we will be in touch",
        name="Lee Lead",
        received=later + timedelta(hours=1),
        headers=[("In-Reply-To", thanks["lee@fabrikam.example"]["internetMessageId"])],
    )
    run(later + timedelta(hours=2))
    assert emu.drafts() == []
    assert emu.messages[follow["id"]].folder == "deleteditems"
    run(later + timedelta(hours=3))  # idempotent: nothing more happens
    assert emu.drafts() == [] and not emu.send_attempts
    ledger.close()


def test_a_cursor_that_is_not_ours_starts_over(emu):
    mailbox, calendar = open_both(emu, sign_in(emu))
    emu.add_event("Interview", T0, T0 + timedelta(hours=1))
    assert calendar.changes("not-json", WINDOW).complete
    assert mailbox.messages("[]", datetime.now(UTC)).cursor


def test_accounts_on_one_authority_fetch_its_discovery_once(emu):
    """A thousand accounts on one tenant ask for the authority's metadata once, not once each:
    every account's msal app shares the sign-in client and what it has fetched."""
    first, second = sign_in(emu, "work"), sign_in(emu, "home")
    emu.access_token_lifetime = 3600
    client = emu.http_client()
    emu.counts.clear()
    for account in (first, second):
        mailbox = outlook.open_mailbox(account, http_client=client)
        mailbox.messages(None, T0 - timedelta(days=3))
        mailbox.close()
    assert emu.counts["GET openid-configuration"] == 1
    # Another client (a new process, or a test of its own) asks again.
    mailbox = outlook.open_mailbox(first, http_client=emu.http_client())
    mailbox.messages(None, T0 - timedelta(days=3))
    assert emu.counts["GET openid-configuration"] == 2
