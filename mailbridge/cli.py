"""The `mailbridge` command line."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from mailbridge import __version__, compose, engine, paths, secrets
from mailbridge import config as config_module
from mailbridge.adapters import ProviderError, mailbox_module
from mailbridge.compose import GAP_PATTERN
from mailbridge.durations import DurationError, parse_delay
from mailbridge.ledger import Ledger, LedgerError
from mailbridge.model import DraftKind, DraftState, InterviewState
from mailbridge.settings import AccountSettings, Settings

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


def _setup_logging(verbose: bool) -> None:
    handler = _Stderr()
    # journald stamps every line itself; elsewhere a time helps.
    fmt = "%(levelname)s %(message)s" if os.environ.get("JOURNAL_STREAM") else (
        "%(asctime)s %(levelname)s %(message)s"
    )
    handler.setFormatter(logging.Formatter(fmt))
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
    path.write_text(config_module.starter_config(args.address, args.provider), encoding="utf-8")
    print(f"Wrote {path}. Edit it, then run `mailbridge check`.")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from mailbridge import checks

    settings = _load(args)
    report = checks.run(settings, online=args.online)
    for line in checks.render(report, online=args.online):
        print(line)
    return 1 if report.failed else 0


def cmd_run(args: argparse.Namespace) -> int:
    if not args.once and (args.dry_run or args.account):
        raise UserError("--dry-run and --account go with --once "
                        "(the service always runs every enabled account)")
    settings = _load(args)
    if not args.once:
        from mailbridge.daemon import Daemon

        return Daemon(settings.path, settings).serve()
    from mailbridge import notify

    failures = 0
    with _open_ledger(settings) as ledger:
        if not args.dry_run:
            ledger.lock()
        for account in _accounts(settings, args.account):
            report = engine.reconcile(
                account, ledger, dry_run=args.dry_run,
                notify=None if args.dry_run else notify.send,
            )
            if args.dry_run:
                for line in report.actions:
                    print(line)
                if not report.actions:
                    print(f"{account.name}: nothing to do")
            if report.paused:
                failures += 1
                print(f"{account.name}: paused: {report.paused}", file=sys.stderr)
            if report.error:
                failures += 1
                print(f"{account.name}: {report.error}", file=sys.stderr)
    return 1 if failures else 0


def _status_data(settings: Settings, ledger: Ledger, since: datetime | None) -> dict[str, Any]:
    accounts = []
    now = datetime.now(UTC)
    for account in settings.accounts:
        tz = account.policy.timezone
        state = ledger.account_status(account.name)
        warnings: list[str] = []
        if state.paused:
            warnings.append(f"paused: {state.paused}")
        if state.last_error:
            warnings.append(f"trouble since {_local(state.error_since, tz)}: {state.last_error}")
        interviews = []
        for interview in ledger.interviews(account.name):
            if since and interview.end < since and interview.state == InterviewState.ACTIVE:
                pass
            drafts = []
            for draft in ledger.drafts(interview_id=interview.id):
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
                    warnings.append(
                        f"interview {interview.id}: {draft.kind.value} to {draft.recipient.email}:"
                        f" {draft.flagged}"
                    )
                if draft.state in (DraftState.CREATED, DraftState.USER_EDITED):
                    waiting = ledger.draft_warnings(draft.id)
                    row["warnings"] = waiting
                    warnings.extend(
                        f"interview {interview.id}: {draft.kind.value.replace('_', '-')} to "
                        f"{draft.recipient.email}: {text}"
                        for text in _summarise(waiting)
                    )
                drafts.append(row)
            replies = [
                {"from": m.sender, "kind": m.kind.value, "at": m.at.isoformat()}
                for m in ledger.messages(account.name) if m.interview_id == interview.id
            ]
            interviews.append({
                "id": interview.id,
                "title": interview.title,
                "company": interview.company,
                "role": interview.role,
                "start": interview.start.isoformat(),
                "end": interview.end.isoformat(),
                "state": interview.state.value,
                "lead": interview.lead.email if interview.lead else None,
                "notes": interview.notes,
                "drafts": drafts,
                "replies": replies,
            })
        upcoming = sorted(
            (d for d in ledger.drafts(account.name) if d.state == DraftState.PLANNED),
            key=lambda d: d.due,
        )
        accounts.append({
            "account": account.name,
            "provider": account.provider,
            "last_ok": state.last_ok.isoformat() if state.last_ok else None,
            "paused": state.paused,
            "error": state.last_error,
            "warnings": warnings,
            "interviews": interviews,
            "next_due": [
                {"draft": d.id, "kind": d.kind.value, "to": d.recipient.email,
                 "due": d.due.isoformat()} for d in upcoming[:10]
            ],
        })
    data: dict[str, Any] = {"generated": now.isoformat(), "accounts": accounts}
    if since is not None:
        data["since"] = since.isoformat()
        data["digest"] = [
            {"at": e.at.isoformat(), "account": e.account, "decision": e.decision,
             "reason": e.reason, "interview": e.interview_id}
            for e in ledger.audit_entries(since=since)
        ]
    return data


def cmd_status(args: argparse.Namespace) -> int:
    settings = _load(args)
    since = None
    if args.since:
        try:
            since = datetime.now(UTC) - parse_delay(args.since)
        except DurationError as exc:
            raise UserError(f"--since: {exc}") from None
    with _open_ledger(settings) as ledger:
        data = _status_data(settings, ledger, since)
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    for account_data in data["accounts"]:
        account = settings.account(account_data["account"])
        tz = account.policy.timezone
        last = account_data["last_ok"]
        last_text = _local(datetime.fromisoformat(last), tz) if last else "never"
        print(f"{account.name} ({account.provider}) — last good pass: {last_text}")
        for warning in account_data["warnings"]:
            print(f"  ! {warning}")
        for iv in account_data["interviews"]:
            start = datetime.fromisoformat(iv["start"])
            print(f"  [{iv['id']}] {_local(start, tz)}  {iv['title']}  "
                  f"({iv['company'] or '?'}{', ' + iv['role'] if iv['role'] else ''})"
                  f"{'  CANCELLED' if iv['state'] == 'cancelled' else ''}")
            for d in iv["drafts"]:
                label = "thank-you" if d["kind"] == DraftKind.THANK_YOU.value else "follow-up"
                state = d["state"].replace("_", " ")
                when = ""
                if d["state"] == DraftState.PLANNED.value:
                    when = f", due {_local(datetime.fromisoformat(d['due']), tz)}"
                first = _plain_line(label, d["to"], d["state"])
                print(f"      {label:9} to {d['to']:32} {state}{when}"
                      f"{' (late)' if d['late'] else ''}")
                if first:
                    print(f"                {first}")
            for r in iv["replies"]:
                what = MESSAGE_LABELS.get(r["kind"], r["kind"])
                print(f"      {what} {r['from']}, {_local(datetime.fromisoformat(r['at']), tz)}")
        if account_data["next_due"]:
            nxt = account_data["next_due"][0]
            print(f"  next: {nxt['kind'].replace('_', '-')} to {nxt['to']} at "
                  f"{_local(datetime.fromisoformat(nxt['due']), tz)}")
    if since is not None:
        print(f"\nSince {since.date().isoformat()}:")
        counts: dict[str, int] = {}
        for entry in data["digest"]:
            counts[entry["decision"]] = counts.get(entry["decision"], 0) + 1
        for decision, count in sorted(counts.items()):
            print(f"  {decision}: {count}")
        for entry in data["digest"]:
            if entry["decision"] in EXPLAINED:
                print(f"  - {entry['decision']}: {entry['reason']}")
    return 0


# Decisions whose reasons the digest spells out: whatever did not happen, and why.
EXPLAINED = frozenset({
    "not an interview", "attendee skipped", "draft skipped", "draft cancelled",
    "interview cancelled", "event skipped", "message skipped", "paused",
})

MESSAGE_LABELS = {
    "human": "reply from",
    "out_of_office": "out-of-office from",
    "own": "you wrote, as",
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
    settings = _load(args)
    with _open_ledger(settings) as ledger:
        interview_id = _interview_id(ledger, args.interview)
        interview = ledger.interview(interview_id)
        assert interview is not None
        account = _account_of(settings, interview.account, interview_id)
        for person in interview.attendees:
            message = compose.render(DraftKind.THANK_YOU, interview, person, account)
            _print_message(message.raw)
        if interview.lead:
            message = compose.render(DraftKind.FOLLOW_UP, interview, interview.lead, account)
            _print_message(message.raw)
    return 0


def _print_message(raw: bytes) -> None:
    import email
    import email.policy

    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    print("=" * 72)
    for name in ("From", "To", "Subject"):
        print(f"{name}: {parsed[name]}")
    print()
    body = parsed.get_body(preferencelist=("plain",))
    print(body.get_content() if body is not None else "")


def cmd_note(args: argparse.Namespace) -> int:
    settings = _load(args)
    now = datetime.now(UTC)
    with _open_ledger(settings) as ledger:
        interview_id = _interview_id(ledger, args.interview)
        interview = ledger.interview(interview_id)
        assert interview is not None
        account = _account_of(settings, interview.account, interview_id)
        if args.text is None and not args.decision_by and not args.lead:
            raise UserError("nothing to save: give the notes text, --decision-by or --lead")
        with ledger.transaction():
            if args.text is not None:
                ledger.set_notes(interview_id, args.text, now)
                ledger.audit(interview.account, "notes", "you added notes", now=now,
                             interview_id=interview_id)
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


def _sign_in_modules(account: AccountSettings) -> list[Any]:
    """The provider modules that sign this account in: its mailbox's, and its calendar's when
    that is another provider (an IMAP mailbox with a Google calendar)."""
    from mailbridge import checks

    modules = [mailbox_module(account.provider)]
    calendar = checks.provider_module("calendar." + account.calendar.kind)
    if calendar is not None and calendar not in modules and hasattr(calendar, "authenticate"):
        modules.append(calendar)
    return modules


def _revoke(account: AccountSettings) -> int:
    from mailbridge import checks

    store = secrets.token_store(account)
    wheres = [m.forget(account) for m in _sign_in_modules(account) if hasattr(m, "forget")]
    for purpose in checks.stored_purposes(account):
        secrets.forget(account, purpose)
    print(f"{account.name}: the saved sign-in is removed from {store.describe()}.")
    for where in wheres:
        print(where)
    return 0


def cmd_auth(args: argparse.Namespace) -> int:
    settings = _load(args)
    account = _accounts(settings, args.account)[0]
    if args.revoke:
        return _revoke(account)
    sign_ins = [m.authenticate for m in _sign_in_modules(account) if hasattr(m, "authenticate")]
    caldav_password = account.calendar.kind == "caldav" and not account.calendar.password_command
    if not sign_ins and not caldav_password:
        raise UserError(f"provider {account.provider} needs no sign-in")
    import inspect

    takes_port = [f for f in sign_ins if "port" in inspect.signature(f).parameters]
    if args.port is not None and not takes_port:
        raise UserError("--port is for Google sign-in only (Microsoft uses a device code)")
    from mailbridge import checks

    store = secrets.token_store(account)
    if checks.stored_purposes(account):
        # Found out before the sign-in, not after it: a sign-in that cannot be kept is lost.
        problem = store.problem()
        if problem:
            raise UserError(f"{account.name}: {problem}")
        print(f"{account.name}: tokens are kept in {store.describe()}")
    for authenticate in sign_ins:
        options: dict[str, Any] = {"no_browser": args.no_browser}
        if args.port is not None and authenticate in takes_port:
            options["port"] = args.port
        print(authenticate(account, **options))
    if caldav_password:
        import getpass

        password = getpass.getpass(
            f"CalDAV password for {account.calendar.username or account.address} "
            f"at {account.calendar.url}: "
        )
        if not password:
            raise UserError("no password given; nothing was stored")
        secrets.store(account, "caldav", password)
        print(f"{account.name}: CalDAV password stored in {store.describe()} "
              "(it is checked at the next pass)")
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

    return demo.run(Path(args.dir) if args.dir else None)


def cmd_service(args: argparse.Namespace) -> int:
    from mailbridge import service

    return service.install(_config_path(args), dry=args.print)


# --- parser -----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mailbridge",
        description="Thank-you and follow-up drafts for your job interviews. Never sends mail.",
    )
    parser.add_argument("--config", help="the config file (default: %(default)s)",
                        default=None)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail")
    parser.add_argument("--version", action="version", version=f"mailbridge {__version__}")
    # The same options after the command as before it: `mailbridge status --config X`.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=argparse.SUPPRESS, help="the config file")
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="log debug detail")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    real_add_parser = sub.add_parser

    def add_parser(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        return real_add_parser(name, parents=[common], **kwargs)

    sub.add_parser = add_parser  # type: ignore[method-assign]

    p = sub.add_parser("init", help="write a starter config")
    p.add_argument("--address", default="you@example.com", help="your email address")
    p.add_argument("--provider", default="local", choices=["local", "imap", "gmail", "outlook"])
    p.add_argument("--force", action="store_true", help="replace an existing config")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("check", help="validate the config and credentials (--online: sign in)")
    p.add_argument("--online", action="store_true",
                   help="also sign in and read the calendar, Drafts, inbox and Sent once")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("run", help="run the service (or one pass with --once)")
    p.add_argument("--once", action="store_true", help="one pass over every account, then exit")
    p.add_argument("--dry-run", action="store_true",
                   help="with --once: write nothing, print what would be done")
    p.add_argument("--account", help="only this account (with --once)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("status", help="interviews, drafts, replies, what is next, warnings")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--since", help='also summarise what happened, e.g. "7d"')
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("preview", help="show an interview's drafts without writing them")
    p.add_argument("interview", help="the interview number from `status`")
    p.set_defaults(func=cmd_preview)

    p = sub.add_parser("note", help="add notes (and decision date, lead) to an interview")
    p.add_argument("interview", help="the interview number from `status`")
    p.add_argument("text", nargs="?", help="what you want the drafts to mention")
    p.add_argument("--decision-by", help="when the employer said they would decide (YYYY-MM-DD)")
    p.add_argument("--lead", help="the interviewer who gets the follow-up")
    p.set_defaults(func=cmd_note)

    p = sub.add_parser("auth", help="sign in to an account and store the credential")
    p.add_argument("account")
    p.add_argument("--no-browser", action="store_true",
                   help="print the sign-in URL; paste back the address the browser ends on")
    p.add_argument("--port", type=int, help="Google: listen on this loopback port (ssh -L)")
    p.add_argument("--revoke", action="store_true",
                   help="forget the account's saved sign-in (and say where to remove access)")
    p.set_defaults(func=cmd_auth)

    p = sub.add_parser("resume", help="accept a source that tripped a safety valve")
    p.add_argument("account")
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("demo", help="watch the whole loop on a throwaway local example")
    p.add_argument("--dir", help="keep the example here instead of a temporary folder")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("service", help="run mailbridge at login (systemd user unit / launchd)")
    p.add_argument("action", choices=["install"])
    p.add_argument("--print", action="store_true", help="print the unit instead of writing it")
    p.set_defaults(func=cmd_service)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    try:
        result: int = args.func(args)
        return result
    except (UserError, config_module.ConfigError, LedgerError, ProviderError,
            compose.ComposeError) as exc:
        print(f"mailbridge: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
