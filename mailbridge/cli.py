"""The `mailbridge` command line."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sqlite3
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mailbridge import __version__, compose, paths, reference, secrets
from mailbridge import config as config_module
from mailbridge.adapters import (
    Provider,
    ProviderError,
    available,
    classes_of,
    mailbox_class,
)
from mailbridge.compose import GAP_PATTERN
from mailbridge.durations import DurationError, parse_delay
from mailbridge.ledger import Ledger, LedgerError, ledger_problem
from mailbridge.model import (
    DraftKind,
    DraftRow,
    DraftState,
    InterviewRow,
    MessageKind,
    MessageRow,
)
from mailbridge.settings import AccountSettings, Settings
from mailbridge.textsafe import printable, redact_urls, safe

if TYPE_CHECKING:
    # The commands that run passes import the engine themselves: its planner, classifier and
    # holiday tables would slow every other command down (`check` of a thousand accounts).
    from mailbridge import engine

log = logging.getLogger("mailbridge")


class UserError(Exception):
    """A mistake the user can fix; printed as one message, never a traceback."""


# --- plumbing --------------------------------------------------------------------------------


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is at the time (it may be replaced after setup)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def _redact_record(record: logging.LogRecord) -> bool:
    """Every log line: secret URLs redacted, other people's control characters escaped."""
    record.msg, record.args = safe(record.getMessage()), None
    return True


def _setup_logging(verbose: bool) -> None:
    handler = _Stderr()
    # journald stamps every line itself; elsewhere a time helps.
    fmt = "%(levelname)s %(message)s" if os.environ.get("JOURNAL_STREAM") else (
        "%(asctime)s %(levelname)s %(message)s"
    )
    handler.setFormatter(logging.Formatter(fmt))
    handler.addFilter(_redact_record)
    root = logging.getLogger("mailbridge")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False


def _config_path(args: argparse.Namespace) -> Path:
    return Path(args.config).expanduser() if args.config else paths.default_config_path()


def _load(args: argparse.Namespace) -> Settings:
    path = _config_path(args)
    if not path.exists():
        raise UserError(
            f"no config file at {path}. Create one with `mailbridge init` "
            "(or pass --config PATH)."
        )
    return config_module.load(path)


def _accounts(settings: Settings, name: str | None) -> list[AccountSettings]:
    if name is None:
        return [a for a in settings.accounts if a.enabled]
    for account in settings.accounts:
        if account.name == name:
            return [account]
    names = ", ".join(a.name for a in settings.accounts)
    raise UserError(f"no account named {name!r} in the config (accounts: {names})")


def _open_ledger(settings: Settings) -> Ledger:
    return Ledger.open(settings.state_dir)


def _interview_id(ledger: Ledger, text: str) -> int:
    try:
        interview_id = int(text)
    except ValueError:
        raise UserError(f"{text!r} is not an interview number; `mailbridge status` lists them") \
            from None
    if ledger.interview(interview_id) is None:
        raise UserError(f"no interview {interview_id}; `mailbridge status` lists them")
    return interview_id


def _account_of(settings: Settings, name: str, interview_id: int) -> AccountSettings:
    for account in settings.accounts:
        if account.name == name:
            return account
    raise UserError(f"interview {interview_id} belongs to account {name!r}, which is no longer "
                    "in the config; add it back to work on this interview")


def _local(t: datetime | None, tz: str) -> str:
    if t is None:
        return "-"
    from zoneinfo import ZoneInfo

    return t.astimezone(ZoneInfo(tz)).strftime("%a %b %d %H:%M")


# --- commands --------------------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    path = _config_path(args)
    if path.exists() and not args.force:
        raise UserError(f"{path} already exists; edit it, or pass --force to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(reference.starter_config(args.address, args.provider), encoding="utf-8")
    print(f"Wrote {path}. Edit it, then run `mailbridge check`.")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from mailbridge import checks

    settings = _load(args)
    report = checks.run(settings, online=args.online)
    for line in checks.render(report, online=args.online):
        print(line)
    return 1 if report.failed else 0


def _dry_mailbox(account: AccountSettings) -> Any:
    """The provider's dry-run opener (it creates no folders), when it has one."""
    try:
        return mailbox_class(account.provider).open_dry(account)
    except (ImportError, ProviderError):
        return None


def _print_outcome(name: str, actions: Sequence[str], error: str | None) -> bool:
    """One pass's outcome for the terminal; True when it failed."""
    for line in actions:
        print(safe(line))
    if not actions and error is None:
        print(f"{safe(name)}: nothing to do")
    if error:
        print(f"{safe(name)}: {safe(error)}", file=sys.stderr)
    return error is not None


def _ask_service_for_passes(settings: Settings, account: str | None) -> int | None:
    """A pass now by the running service, shown here; None when no service answers."""
    from mailbridge.daemon import ServiceUnreachable, ask_service

    if account is not None:
        _accounts(settings, account)  # an unknown name is the user's mistake, said here
    try:
        reply = ask_service(settings.state_dir, {"command": "sync", "account": account})
    except ServiceUnreachable:
        return None
    except OSError as exc:
        raise UserError(f"the running service did not answer ({exc.strerror or exc}); "
                        "see its log (`mailbridge service status`)") from None
    if "error" in reply:
        raise UserError(f"the running service refused: {reply['error']}")
    failures = 0
    print("Asked the running service for a pass:")
    for result in reply.get("results", []):
        failures += _print_outcome(result["account"], result.get("actions", []),
                                   result.get("error"))
    return 1 if failures else 0


def _dry_run(settings: Settings, account_name: str | None) -> int:
    """One pass per account against a copy of the ledger in memory: nothing on disk changes."""
    from mailbridge import engine
    failures = 0
    accounts = _accounts(settings, account_name)
    # The decisions are printed below; logging them too would show each one twice.
    quiet = log.level > logging.DEBUG
    if quiet:
        log.setLevel(logging.WARNING)
    with Ledger.scratch_copy(settings.state_dir) as ledger:
        for account in accounts:
            mailbox = None
            try:
                mailbox = _dry_mailbox(account)
                report = engine.reconcile(account, ledger, dry_run=True, mailbox=mailbox)
            except ProviderError as exc:
                failures += _print_outcome(account.name, [], str(exc))
                continue
            finally:
                if mailbox is not None:
                    mailbox.close()
            if report.paused:
                print(f"{safe(account.name)}: would pause: {safe(report.paused)}",
                      file=sys.stderr)
            failures += _print_outcome(account.name, report.actions, report.error)
    return 1 if failures else 0


def cmd_run(args: argparse.Namespace) -> int:
    if not args.once and (args.dry_run or args.account):
        raise UserError("--dry-run and --account go with --once "
                        "(the service always runs every enabled account)")
    settings = _load(args)
    if not args.once:
        from mailbridge.daemon import Daemon, FileLimitError

        try:
            return Daemon(settings.path, settings).serve()
        except FileLimitError as exc:
            raise UserError(str(exc)) from None
    if args.dry_run:
        return _dry_run(settings, args.account)
    return _one_pass_here_or_by_service(settings, args.account)


def _one_pass_here_or_by_service(settings: Settings, account_name: str | None) -> int:
    from mailbridge import engine, notify

    failures = 0
    with _open_ledger(settings) as ledger:
        try:
            ledger.lock()
        except LedgerError:
            # The service holds the ledger: ask it for the pass instead of fighting it.
            asked = _ask_service_for_passes(settings, account_name)
            if asked is None:
                raise
            return asked
        for account in _accounts(settings, account_name):
            try:
                report = engine.reconcile(account, ledger, notify=notify.send)
            except sqlite3.Error as exc:
                # This account's pass could not be recorded; the others still get theirs.
                problem = ledger_problem(exc, settings.state_dir)
                failures += _print_outcome(account.name, [], problem)
                continue
            if report.paused:
                failures += 1
                print(f"{safe(account.name)}: paused: {safe(report.paused)}", file=sys.stderr)
            if report.error:
                failures += 1
                print(f"{safe(account.name)}: {safe(report.error)}", file=sys.stderr)
    return 1 if failures else 0


def cmd_sync(args: argparse.Namespace) -> int:
    settings = _load(args)
    asked = _ask_service_for_passes(settings, args.account)
    if asked is not None:
        return asked
    print("The service is not running; doing the pass here.", file=sys.stderr)
    return _one_pass_here_or_by_service(settings, args.account)


# --- status: each part its own small function, so more parts can be added beside them -------


# How each cause of a pause ends by itself (engine.CALENDAR / engine.MAILBOX).
_PAUSE_LIFTS = {
    "calendar": "lifts by itself once the calendar holds its events again",
    "mailbox": "lifts by itself once the Drafts folder is back",
}


def _since(text: str, tz: str) -> datetime:
    """``--since``: a date (2026-11-01, midnight in your time zone) or a span back from now."""
    from zoneinfo import ZoneInfo

    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        pass
    else:
        return datetime.combine(day, datetime.min.time(), ZoneInfo(tz)).astimezone(UTC)
    try:
        return datetime.now(UTC) - parse_delay(text)
    except (DurationError, OverflowError) as exc:
        raise UserError(f"--since takes a date like 2026-11-01 or a span like 7d "
                        f"({exc})") from None


def interview_notes(ledger: Ledger, interview: InterviewRow) -> list[dict[str, str]]:
    """The notes to show for an interview, as {"text", "for"} (for: "" or an interviewer).

    The one place that reads notes for `status` and `preview`.
    """
    return [{"number": str(n.number), "text": n.text, "for": n.recipient}
            for n in ledger.notes(interview.id)]


def _draft_row(ledger: Ledger, draft: DraftRow) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": draft.id,
        "kind": draft.kind.value,
        "to": draft.recipient.email,
        "state": draft.state.value,
        "due": draft.due.isoformat(),
        "late": draft.late,
    }
    if draft.flagged:
        row["flagged"] = draft.flagged
    if draft.state in (DraftState.CREATED, DraftState.USER_EDITED):
        row["warnings"] = ledger.draft_warnings(draft.id)
    return row


def _draft_warnings(interview_id: int, draft: dict[str, Any]) -> list[str]:
    found = []
    label = draft["kind"].replace("_", "-")
    if draft.get("flagged"):
        found.append(f"interview {interview_id}: {draft['kind']} to {draft['to']}:"
                     f" {draft['flagged']}")
    found.extend(f"interview {interview_id}: {label} to {draft['to']}: {text}"
                 for text in _summarise(draft.get("warnings", [])))
    return found


def _interview_data(ledger: Ledger, account: AccountSettings,
                    interview: InterviewRow) -> dict[str, Any]:
    return {
        "id": interview.id,
        "title": interview.title,
        "company": interview.company,
        "company_reason": interview.company_reason,
        "role": interview.role,
        "start": interview.start.isoformat(),
        "end": interview.end.isoformat(),
        "state": interview.state.value,
        "archived": interview.archived_at is not None,
        "lead": interview.lead.email if interview.lead else None,
        "decision_by": interview.decision_date.isoformat() if interview.decision_date else None,
        "notes": interview_notes(ledger, interview),
        "drafts": [_draft_row(ledger, d) for d in ledger.drafts(interview_id=interview.id)],
        "replies": [
            {"from": m.sender, "kind": m.kind.value, "at": m.at.isoformat()}
            for m in ledger.messages(account.name) if m.interview_id == interview.id
        ],
    }


def _account_warnings(ledger: Ledger, account: AccountSettings) -> list[str]:
    tz = account.policy.timezone
    state = ledger.account_status(account.name)
    warnings: list[str] = []
    causes = ledger.pause_causes(account.name)
    for cause, reason in sorted(causes.items()):
        lift = _PAUSE_LIFTS.get(cause, "it lifts when its cause ends")
        warnings.append(f"paused ({cause}): {reason} [{lift}, or run "
                        f"`mailbridge resume {account.name}`]")
    if state.paused and not causes:
        warnings.append(f"paused: {state.paused}")
    if state.last_error:
        warnings.append(f"trouble since {_local(state.error_since, tz)}: {state.last_error}")
    warnings.extend(
        f"message from {w.message.sender.email} ({w.message.subject!r}) could not be "
        f"handled ({w.error}); tried {w.tries} time(s), next try {_local(w.next_try, tz)}"
        for w in _waiting(ledger, account)
    )
    warnings.extend(
        f"interview {m.interview_id}: suspicious message from {m.sender} "
        f"({_local(m.at, tz)}): its sender could not be confirmed (DMARC/SPF/DKIM "
        "failed), so it was not taken as a reply; check it before you answer it"
        for m in _suspicious(ledger, account)
    )
    # A ledger written by an older version may hold a secret link in an error: not shown.
    return [redact_urls(w) for w in warnings]


def _waiting(ledger: Ledger, account: AccountSettings) -> list[engine.WaitingMessage]:
    """Messages whose handling failed and that are kept for another try."""
    from mailbridge import engine
    return [w for w in engine.waiting_messages(ledger, account.name).values() if not w.given_up]


def _suspicious(ledger: Ledger, account: AccountSettings) -> list[MessageRow]:
    """Mail that claims to come from the employer but failed the receiving server's checks."""
    return [m for m in ledger.messages(account.name) if m.kind is MessageKind.SUSPICIOUS]


def _account_data(ledger: Ledger, account: AccountSettings, since: datetime | None,
                  now: datetime) -> dict[str, Any]:
    """The live interviews, and the archived (finished) ones that ended recently (while
    replies are still matched to them) or since ``since``."""
    from mailbridge import engine
    state = ledger.account_status(account.name)
    recent = now - engine.MATCH_HORIZON
    shown = sorted([*ledger.interviews(account.name, live_only=True),
                    *ledger.archived_interviews(account.name, min(since or recent, recent))],
                   key=lambda i: (i.start, i.id))
    archived = ledger.archived_count(account.name)
    interviews = [_interview_data(ledger, account, i) for i in shown]
    warnings = _account_warnings(ledger, account)
    for iv in interviews:
        for draft in iv["drafts"]:
            warnings.extend(_draft_warnings(iv["id"], draft))
    upcoming = sorted(
        (d for d in ledger.drafts(account.name, live_only=True)
         if d.state == DraftState.PLANNED),
        key=lambda d: d.due,
    )
    return {
        "account": account.name,
        "provider": account.provider,
        "last_ok": state.last_ok.isoformat() if state.last_ok else None,
        "paused": redact_urls(state.paused) if state.paused else None,
        "pause_causes": {cause: redact_urls(reason)
                         for cause, reason in ledger.pause_causes(account.name).items()},
        "error": redact_urls(state.last_error) if state.last_error else None,
        "warnings": warnings,
        "interviews": interviews,
        "archived": archived,  # finished interviews, the older ones shown only with --since
        "waiting_messages": [
            {"from": w.message.sender.email, "subject": w.message.subject,
             "folder": w.message.folder.value, "tries": w.tries,
             "next_try": w.next_try.isoformat(), "error": w.error}
            for w in _waiting(ledger, account)
        ],
        "suspicious": [
            {"interview": m.interview_id, "from": m.sender, "at": m.at.isoformat()}
            for m in _suspicious(ledger, account)
        ],
        "next_due": [
            {"draft": d.id, "kind": d.kind.value, "to": d.recipient.email,
             "due": d.due.isoformat()} for d in upcoming[:10]
        ],
    }


def _digest(ledger: Ledger, since: datetime) -> list[dict[str, Any]]:
    return [
        {"at": e.at.isoformat(), "account": e.account, "decision": e.decision,
         "reason": redact_urls(e.reason), "interview": e.interview_id}
        for e in ledger.audit_entries(since=since)
    ]


def _status_data(settings: Settings, ledger: Ledger, since: datetime | None,
                 now: datetime | None = None) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    data: dict[str, Any] = {
        "generated": now.isoformat(),
        "accounts": [_account_data(ledger, account, since, now)
                     for account in settings.accounts],
    }
    if since is not None:
        data["since"] = since.isoformat()
        data["digest"] = _digest(ledger, since)
    return data


def _draft_lines(d: dict[str, Any], tz: str) -> list[str]:
    label = "thank-you" if d["kind"] == DraftKind.THANK_YOU.value else "follow-up"
    state = STATE_LABELS.get(d["state"], d["state"].replace("_", " "))
    when = ""
    if d["state"] == DraftState.PLANNED.value:
        when = f", due {_local(datetime.fromisoformat(d['due']), tz)}"
    lines = [f"      {label:9} to {d['to']:32} {state}{when}{' (late)' if d['late'] else ''}"]
    first = _plain_line(label, d["to"], d["state"])
    if first:
        lines.append(f"                {first}")
    return lines


def _interview_lines(iv: dict[str, Any], tz: str) -> list[str]:
    start = datetime.fromisoformat(iv["start"])
    lines = [f"  [{iv['id']}] {_local(start, tz)}  {iv['title']}  "
             f"({iv['company'] or '?'}{', ' + iv['role'] if iv['role'] else ''})"
             f"{'  CANCELLED' if iv['state'] == 'cancelled' else ''}"
             f"{'  (finished, archived)' if iv.get('archived') else ''}"]
    if iv["company"] and iv["company_reason"]:
        lines.append(f"      company {iv['company']!r}: from {iv['company_reason']}")
    facts = [f"lead: {iv['lead'] or 'none'}"]
    if iv["decision_by"]:
        facts.append(f"decision by {iv['decision_by']}")
    lines.append("      " + "; ".join(facts))
    for note in iv["notes"]:
        who = f" (for {note['for']})" if note["for"] else ""
        lines.append(f"      note{who}: {note['text']}")
    for d in iv["drafts"]:
        lines.extend(_draft_lines(d, tz))
    for r in iv["replies"]:
        what = MESSAGE_LABELS.get(r["kind"], r["kind"])
        lines.append(f"      {what} {r['from']}, {_local(datetime.fromisoformat(r['at']), tz)}")
    return lines


def _account_lines(account: AccountSettings, data: dict[str, Any]) -> list[str]:
    tz = account.policy.timezone
    last = data["last_ok"]
    last_text = _local(datetime.fromisoformat(last), tz) if last else "never"
    lines = [f"{account.name} ({account.provider}) — last good pass: {last_text}"]
    lines.extend(f"  ! {warning}" for warning in data["warnings"])
    for iv in data["interviews"]:
        lines.extend(_interview_lines(iv, tz))
    hidden = data["archived"] - sum(1 for iv in data["interviews"] if iv.get("archived"))
    if hidden:
        lines.append(f"  {hidden} older finished interview{'s' if hidden != 1 else ''} "
                     "archived (`status --since DATE` shows those that ended since DATE)")
    if data["next_due"]:
        nxt = data["next_due"][0]
        lines.append(f"  next: {nxt['kind'].replace('_', '-')} to {nxt['to']} at "
                     f"{_local(datetime.fromisoformat(nxt['due']), tz)}")
    return lines


def _digest_lines(since: datetime, digest: list[dict[str, Any]]) -> list[str]:
    lines = ["", f"Since {since.date().isoformat()}:"]
    counts: dict[str, int] = {}
    for entry in digest:
        counts[entry["decision"]] = counts.get(entry["decision"], 0) + 1
    lines.extend(f"  {decision}: {count}" for decision, count in sorted(counts.items()))
    lines.extend(f"  - {entry['decision']}: {entry['reason']}"
                 for entry in digest if entry["decision"] in EXPLAINED)
    return lines


def cmd_status(args: argparse.Namespace) -> int:
    settings = _load(args)
    since = None
    if args.since:
        tz = settings.accounts[0].policy.timezone if settings.accounts else "UTC"
        since = _since(args.since, tz)
    with _read_ledger(settings) as ledger:
        data = _status_data(settings, ledger, since)
    if args.json:
        print(json.dumps(data, indent=2))  # JSON escapes control characters itself
        return 0
    lines: list[str] = []
    for account_data in data["accounts"]:
        lines.extend(_account_lines(settings.account(account_data["account"]), account_data))
    if since is not None:
        lines.extend(_digest_lines(since, data["digest"]))
    for line in lines:
        print(safe(line))
    return 0


def _read_ledger(settings: Settings) -> Ledger:
    """The ledger for reading; with none yet, an empty one in memory (nothing is created)."""
    from mailbridge.ledger import DB_NAME

    existing = settings.state_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if (settings.state_dir / DB_NAME).exists() or not existing.is_dir():
        try:
            return _open_ledger(settings)  # an unusable state_dir is reported there
        except LedgerError as exc:
            if "is full" not in str(exc) and "read-only" not in str(exc):
                raise
            # Reading needs no space and no write permission: show what the ledger holds.
            print(f"mailbridge: {safe(exc)}", file=sys.stderr)
            return Ledger.scratch_copy(settings.state_dir)
    return Ledger.scratch_copy(settings.state_dir)


STATE_LABELS = {
    DraftState.PLANNED.value: "planned",
    DraftState.CREATING.value: "being written",
    DraftState.CREATED.value: "in Drafts",
    DraftState.SENT.value: "sent by you",
    DraftState.USER_EDITED.value: "in Drafts, edited by you",
    DraftState.USER_DELETED.value: "deleted by you",
    DraftState.RETRACTED.value: "taken back (the employer replied)",
    DraftState.CANCELLED.value: "cancelled",
    DraftState.SKIPPED.value: "skipped",
}


# Decisions whose reasons the digest spells out: whatever did not happen, and why.
EXPLAINED = frozenset({
    "not an interview", "attendee skipped", "draft skipped", "draft cancelled",
    "interview cancelled", "event skipped", "message skipped", "paused", "suspicious message",
    "message kept for retry", "message given up",
})

MESSAGE_LABELS = {
    "human": "reply from",
    "out_of_office": "out-of-office from",
    "own": "you wrote, as",
    "suspicious": "suspicious (not taken as a reply): from",
}


def _summarise(warnings: list[str]) -> list[str]:
    """Proofreading warnings for one line each: unfilled gaps are counted, not quoted."""
    gaps = [w for w in warnings if GAP_PATTERN.search(w)]
    rest = [w for w in warnings if not GAP_PATTERN.search(w)]
    if gaps:
        rest.insert(0, f"{len(gaps)} unfilled gap{'s' if len(gaps) != 1 else ''} "
                       "marked [[ADD: …]]: fill or delete them before sending")
    return rest


def _plain_line(label: str, to: str, state: str) -> str:
    """A plain-language first line for a draft that waits for the user."""
    if state == DraftState.CREATED.value:
        return f"→ a {label} draft to {to} is waiting in your Drafts: review it and send it"
    if state == DraftState.USER_EDITED.value:
        return f"→ you edited the {label} draft to {to}; it is yours to send"
    return ""


def cmd_preview(args: argparse.Namespace) -> int:
    from mailbridge import engine
    settings = _load(args)
    now = datetime.now(UTC)
    with _read_ledger(settings) as ledger:
        interview_id = _interview_id(ledger, args.interview)
        interview = ledger.interview(interview_id)
        assert interview is not None
        account = _account_of(settings, interview.account, interview_id)
        if interview.company:
            print(safe(f"Company {interview.company!r}, from "
                       f"{interview.company_reason or 'the event'} "
                       "(change it with `mailbridge note N --company NAME`)"))
        tz = account.policy.timezone
        for note in interview_notes(ledger, interview):
            who = f" (for {note['for']})" if note["for"] else ""
            print(safe(f"note{who}: {note['text']}"))
        drafts = ledger.drafts(interview_id=interview_id)
        for draft in drafts:
            state = STATE_LABELS.get(draft.state.value, draft.state.value)
            if draft.state == DraftState.PLANNED:
                state += f", due {_local(draft.due, tz)}"
            if draft.state in (DraftState.CREATED, DraftState.USER_EDITED, DraftState.SENT):
                state += " (shown as mailbridge wrote it; your mailbox has the real one)"
            _print_message(f"{draft.kind.value.replace('_', '-')} [{state}]",
                           engine.render_for_preview(account, ledger, draft, interview, now).raw)
        if not drafts:
            # Nothing planned yet (the first pass has not run): what the drafts would say.
            for person in interview.attendees:
                message = compose.render(DraftKind.THANK_YOU, interview, person, account)
                _print_message("thank-you [not planned yet]", message.raw)
    return 0


def _print_message(label: str, raw: bytes) -> None:
    import email
    import email.policy

    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    print("=" * 72)
    print(safe(label))
    for name in ("From", "To", "Subject"):
        print(safe(f"{name}: {parsed[name]}"))
    print()
    body = parsed.get_body(preferencelist=("plain",))
    text = str(body.get_content()) if body is not None else ""
    # The message has CRLF line ends on the wire; a terminal wants plain newlines.
    print(printable(redact_urls(text.replace("\r\n", "\n")), keep_newlines=True))


def _print_notes(ledger: Ledger, interview_id: int) -> None:
    notes = ledger.notes(interview_id)
    if not notes:
        print(f"Interview {interview_id} has no notes.")
    for note in notes:
        who = f"for {note.recipient}" if note.recipient else "for everyone"
        print(f"  {note.number}. ({who}) {note.text}")


def cmd_note(args: argparse.Namespace) -> int:
    from mailbridge import engine
    settings = _load(args)
    now = datetime.now(UTC)
    with _open_ledger(settings) as ledger:
        interview_id = _interview_id(ledger, args.interview)
        interview = ledger.interview(interview_id)
        assert interview is not None
        account = _account_of(settings, interview.account, interview_id)
        if args.list:
            _print_notes(ledger, interview_id)
            return 0
        if args.for_ is not None and args.text is None:
            raise UserError("--for needs the note's text: mailbridge note N --for ADDRESS \"TEXT\"")
        if (args.text is None and not args.decision_by and not args.lead
                and args.remove is None and args.company is None):
            raise UserError("nothing to save: give the notes text, --decision-by, --lead, "
                            "--company or --remove N (see the notes with --list)")
        if args.text is not None and not args.text.strip():
            raise UserError("the note is empty; to take a note back use --remove N "
                            "(see the notes with --list)")
        recipient = ""
        if args.for_ is not None:
            chosen = [p for p in interview.attendees if p.email.lower() == args.for_.lower()]
            if not chosen:
                emails = ", ".join(sorted(p.email for p in interview.attendees))
                raise UserError(f"--for {args.for_}: not one of this interview's interviewers "
                                f"({emails})")
            recipient = chosen[0].email
        with ledger.transaction():
            if args.remove is not None:
                gone = ledger.remove_note(interview_id, args.remove, now)
                if gone is None:
                    count = len(ledger.notes(interview_id))
                    raise UserError(f"--remove {args.remove}: interview {interview_id} has "
                                    f"{count} note{'s' if count != 1 else ''}; see them with "
                                    f"`mailbridge note {interview_id} --list`")
                ledger.audit(interview.account, "notes", f"you removed the note {gone.text!r}",
                             now=now, interview_id=interview_id)
            if args.text is not None:
                ledger.add_note(interview_id, args.text, now, recipient=recipient)
                ledger.audit(interview.account, "notes",
                             f"you added a note for {recipient}" if recipient
                             else "you added a note for every interviewer", now=now,
                             interview_id=interview_id)
            if args.company is not None:
                ledger.set_company_override(interview_id, args.company, now)
                ledger.audit(interview.account, "company chosen",
                             f"you named the company {args.company.strip()!r}"
                             if args.company.strip()
                             else "you went back to the company found in the calendar",
                             now=now, interview_id=interview_id)
            if args.decision_by:
                try:
                    day = date.fromisoformat(args.decision_by)
                except ValueError:
                    raise UserError("--decision-by takes a date like 2026-12-04") from None
                ledger.set_decision_date(interview_id, day, now)
                ledger.audit(interview.account, "decision date",
                             f"the employer expects to decide by {day}", now=now,
                             interview_id=interview_id)
            if args.lead:
                chosen = [p for p in interview.attendees if p.email.lower() == args.lead.lower()]
                if not chosen:
                    emails = ", ".join(sorted(p.email for p in interview.attendees))
                    raise UserError(f"{args.lead} is not one of this interview's interviewers "
                                    f"({emails})")
                ledger.set_lead_override(interview_id, chosen[0], now)
                ledger.audit(interview.account, "lead chosen",
                             f"you chose {chosen[0].email} as the lead interviewer", now=now,
                             interview_id=interview_id)
        print(f"Saved for interview {interview_id}.")
        # Apply at once when no daemon holds the ledger; otherwise the daemon's next pass does.
        try:
            ledger.lock()
        except LedgerError:
            print("The running daemon will update unedited drafts at its next pass.")
            return 0
        report = engine.reconcile(account, ledger)
        if report.error:
            print(f"{account.name}: {report.error}", file=sys.stderr)
            return 1
    return 0


def _sign_ins(account: AccountSettings) -> list[type[Provider]]:
    """The provider classes that sign this account in: its mailbox's, and its calendar's when
    that is another provider (an IMAP mailbox with a Google calendar)."""
    found: list[type[Provider]] = []
    for cls in classes_of(account):
        if cls.signs_in and all(cls.config is not other.config for other in found):
            found.append(cls)
    return found


def _revoke(account: AccountSettings) -> int:
    from mailbridge import checks

    store = secrets.token_store(account)
    wheres = [cls.forget(account) for cls in _sign_ins(account)]
    for purpose in checks.stored_purposes(account):
        secrets.forget(account, purpose)
    print(f"{account.name}: the saved sign-in is removed from {store.describe()}.")
    for where in wheres:
        if where:
            print(where)
    return 0


def cmd_auth(args: argparse.Namespace) -> int:
    settings = _load(args)
    account = _accounts(settings, args.account)[0]
    if args.revoke:
        return _revoke(account)
    sign_ins = _sign_ins(account)
    if not sign_ins:
        raise UserError(f"provider {account.provider} needs no sign-in")
    if args.port is not None and not any(cls.sign_in_port for cls in sign_ins):
        raise UserError("--port is for a sign-in in a browser only (Microsoft uses a device "
                        "code)")
    from mailbridge import checks

    store = secrets.token_store(account)
    if checks.stored_purposes(account):
        # Found out before the sign-in, not after it: a sign-in that cannot be kept is lost.
        problem = store.problem()
        if problem:
            raise UserError(f"{account.name}: {problem}")
        print(f"{account.name}: tokens are kept in {store.describe()}")
    for cls in sign_ins:
        port = args.port if cls.sign_in_port else None
        print(cls.authenticate(account, no_browser=args.no_browser, port=port))
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    settings = _load(args)
    account = _accounts(settings, args.account)[0]
    with _open_ledger(settings) as ledger, ledger.transaction():
        if not ledger.account_status(account.name).paused:
            raise UserError(f"{account.name} is not paused; there is nothing to resume")
        ledger.confirm_resume(account.name)
        ledger.audit(account.name, "resume confirmed", "you confirmed the source is right",
                     now=datetime.now(UTC))
    print(f"{account.name}: the next pass accepts the source as it is.")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from mailbridge import demo

    if args.config:
        raise UserError("demo writes a config of its own and uses no other; leave out --config")
    try:
        return demo.run(Path(args.dir).expanduser() if args.dir else None)
    except demo.DemoRefused as exc:
        raise UserError(str(exc)) from None


def cmd_service(args: argparse.Namespace) -> int:
    from mailbridge import service

    if args.action == "install":
        return service.install(_config_path(args), dry=args.print)
    if args.action == "uninstall":
        return service.uninstall()
    return service.status(_config_path(args))


# --- parser -----------------------------------------------------------------------------------


def _interview_number(text: str) -> str:
    """Checks the form only; whether the interview exists is checked against the ledger."""
    if not text.strip().isdigit() or len(text.strip()) > 12:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an interview number (a small whole number from `mailbridge status`)")
    return text.strip()


def _note_number(text: str) -> int:
    if not text.strip().isdigit() or len(text.strip()) > 6:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a note number (a small whole number from `note N --list`)")
    return int(text)


def _email_address(text: str) -> str:
    from email.utils import parseaddr

    address = parseaddr(text)[1]
    if "@" not in address or address.startswith("@") or address.endswith("@"):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an email address; give the interviewer's address, like "
            "priya.raman@example.com (`mailbridge status` lists them)")
    return address


DECISION_HORIZON_DAYS = 2 * 366


def _decision_date(text: str) -> str:
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date; write it like 2026-12-04") from None
    today = datetime.now(UTC).date()
    if not date(2000, 1, 1) <= day <= today + timedelta(days=DECISION_HORIZON_DAYS):
        raise argparse.ArgumentTypeError(
            f"{day} is not a plausible decision date; give the date the employer named "
            "(within two years from today)")
    return day.isoformat()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mailbridge",
        description="Thank-you and follow-up drafts for your job interviews. Never sends mail.",
        exit_on_error=False,  # a bad value is one line from main(), like every other mistake
        epilog=f"The config file is {paths.default_config_path()} unless --config or "
               f"${paths.CONFIG_ENV} names another. `mailbridge COMMAND --help` tells more.",
    )
    parser.add_argument("--config", metavar="PATH",
                        help="the config file to use instead of the default one")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail")
    parser.add_argument("--version", action="version", version=f"mailbridge {__version__}")
    # The same options after the command as before it: `mailbridge status --config X`.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS,
                        help="the config file to use instead of the default one")
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="log debug detail")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                help="what to do (each command has its own --help)")
    real_add_parser = sub.add_parser

    def add_parser(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        # The one-line help doubles as the command's description in `COMMAND --help`.
        kwargs.setdefault("description", kwargs.get("help"))
        return real_add_parser(name, parents=[common], exit_on_error=False, **kwargs)

    sub.add_parser = add_parser  # type: ignore[method-assign]

    p = sub.add_parser("init", help="write a starter config")
    p.add_argument("--address", default="you@example.com", help="your email address")
    # No default here: finding the default kind imports every provider, which would slow
    # every command down; starter_config picks it when --provider is not given.
    p.add_argument("--provider", choices=available("mailbox"),
                   help="where your mail is: one of the installed mailbox kinds "
                        "(default: the one that declares itself the default)")
    p.add_argument("--force", action="store_true", help="replace an existing config")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("check", help="validate the config and credentials (--online: sign in)")
    p.add_argument("--online", action="store_true",
                   help="also sign in and read the calendar, Drafts, inbox and Sent once")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("run", help="run the service (or one pass with --once)")
    p.add_argument("--once", action="store_true",
                   help="one pass over every account, then exit (asks the running service "
                        "for it when there is one)")
    p.add_argument("--dry-run", action="store_true",
                   help="with --once: change nothing anywhere, print what would be done")
    p.add_argument("--account", help="only this account (with --once)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("sync", help="ask the running service for a pass now and show it")
    p.add_argument("account", nargs="?", help="only this account (default: every enabled one)")
    p.set_defaults(func=cmd_sync)

    p = sub.add_parser("status", help="interviews, drafts, replies, what is next, warnings")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--since", metavar="DATE|SPAN",
                   help='also summarise what happened since a date ("2026-11-01") or for a '
                        'span back from now ("7d")')
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("preview", help="show an interview's drafts and their state, "
                                       "writing nothing")
    p.add_argument("interview", type=_interview_number,
                   help="the interview number from `status`")
    p.set_defaults(func=cmd_preview)

    p = sub.add_parser("note", help="add notes (and decision date, lead, company) to an interview")
    p.add_argument("interview", type=_interview_number,
                   help="the interview number from `status`")
    p.add_argument("text", nargs="?", help="what you want the drafts to mention (adds a note)")
    p.add_argument("--for", dest="for_", type=_email_address, metavar="ADDRESS",
                   help="the note goes only into the draft to this interviewer")
    p.add_argument("--list", action="store_true", help="show the interview's notes, numbered")
    p.add_argument("--remove", type=_note_number, metavar="N",
                   help="remove note N (see --list)")
    p.add_argument("--company", help='the company name the drafts use ("" for the one found)')
    p.add_argument("--decision-by", type=_decision_date, metavar="YYYY-MM-DD",
                   help="when the employer said they would decide")
    p.add_argument("--lead", type=_email_address, metavar="ADDRESS",
                   help="the email address of the interviewer who gets the follow-up")
    p.set_defaults(func=cmd_note)

    p = sub.add_parser("auth", help="sign in to an account and store the credential")
    p.add_argument("account", help="the account's name in the config")
    p.add_argument("--no-browser", action="store_true",
                   help="print the sign-in URL; paste back the address the browser ends on")
    p.add_argument("--port", type=int, help="Google: listen on this loopback port (ssh -L)")
    p.add_argument("--revoke", action="store_true",
                   help="forget the account's saved sign-in (and say where to remove access)")
    p.set_defaults(func=cmd_auth)

    p = sub.add_parser("resume", help="accept a source that tripped a safety valve")
    p.add_argument("account", help="the paused account's name")
    p.set_defaults(func=cmd_resume)

    p = real_add_parser(
        "demo", help="watch the whole loop on a throwaway local example", exit_on_error=False,
        description="Watch the whole loop on a throwaway local example. It never touches "
                    "your own mail or config.")
    p.add_argument("--dir", metavar="FOLDER",
                   help="keep the example in this new or empty folder (or an earlier demo's) "
                        "instead of a temporary one")
    p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                   help="log debug detail")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("service", help="run mailbridge at login (systemd user unit / launchd)")
    p.add_argument("action", choices=["install", "uninstall", "status"],
                   help="install (or replace) the unit, remove it, or show whether it runs "
                        "(status exits with 3 when the service is not running)")
    p.add_argument("--print", action="store_true",
                   help="with install: print the unit instead of writing it")
    p.set_defaults(func=cmd_service)
    return parser


def _quiet_broken_pipe() -> None:
    """The reader went away (`status | head -1`): stop quietly, as other tools do."""
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
    except argparse.ArgumentError as exc:
        hint = " (`mailbridge --help` lists them)" if "invalid choice" in str(exc) else ""
        print(f"mailbridge: {safe(exc)}{hint}", file=sys.stderr)
        return 2
    # argparse gives an optional positional up once an option follows the one before it, so
    # `note 3 --for ADDRESS "text"` leaves the text over: it is the note's text.
    if (extra and getattr(args, "func", None) is cmd_note and args.text is None
            and len(extra) == 1 and not extra[0].startswith("-")):
        args.text, extra = extra[0], []
    if extra:
        print(f"mailbridge: unrecognized arguments: {safe(' '.join(extra))}", file=sys.stderr)
        return 2
    _setup_logging(args.verbose)
    try:
        result: int = args.func(args)
        sys.stdout.flush()
        return result
    except (UserError, config_module.ConfigError, LedgerError, ProviderError,
            compose.ComposeError) as exc:
        print(f"mailbridge: {safe(exc)}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        _quiet_broken_pipe()
        return 0
    except KeyboardInterrupt:
        return 130
    except sqlite3.Error as exc:
        print(f"mailbridge: {ledger_problem(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:
        what = f" {exc.filename}" if exc.filename else ""
        print(f"mailbridge: cannot use{safe(what)}: {exc.strerror or exc}; check that it exists "
              "and that you may use it", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
