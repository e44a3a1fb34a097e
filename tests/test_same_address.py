"""Two configured accounts with one address (say a second calendar of another kind for the same
mailbox): an interview both see gets one set of drafts, and a pass racing the other for a
Message-ID neither fails nor writes it twice."""

from __future__ import annotations

import mailbox
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mailbridge import config as config_module
from mailbridge import engine
from mailbridge.ledger import Ledger
from mailbridge.model import DraftState
from mailbridge.settings import AccountSettings
from tests.test_outages import HEAD, calendar_file, local_account


def two_accounts(root: Path, names: tuple[str, ...] = ("home", "work")) -> list[AccountSettings]:
    mailbox.Maildir(root / "Maildir", create=True)
    end = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    calendar_file(root / "calendar", "iv1", end)
    (root / "config.toml").write_text(HEAD + "".join(local_account(n) for n in names),
                                      encoding="utf-8")
    return list(config_module.load(root / "config.toml").accounts)


def drafts_in(root: Path) -> int:
    return len(mailbox.Maildir(root / "Maildir" / ".Drafts", create=False))


def test_the_config_tells_each_account_who_shares_its_address(tmp_path: Path) -> None:
    home, work = two_accounts(tmp_path)
    assert home.same_address == work.same_address == {"home", "work"}


def test_an_interview_both_see_is_drafted_once(tmp_path: Path) -> None:
    home, work = two_accounts(tmp_path)
    with Ledger.open(tmp_path / "state") as ledger:
        for _ in range(2):
            for account in (home, work):
                report = engine.reconcile(account, ledger)
                assert report.error is None
        made = drafts_in(tmp_path)
        assert made >= 1
        mine = ledger.drafts("home")
        theirs = ledger.drafts("work")
        assert {d.state for d in theirs} == {DraftState.SKIPPED}
        assert all(d.state is not DraftState.SKIPPED for d in mine)
        assert len(theirs) == len(mine)
        # Idle passes afterwards decide nothing more, and write nothing.
        for account in (home, work):
            assert engine.reconcile(account, ledger).actions == []
    assert drafts_in(tmp_path) == made


def test_a_pass_that_loses_the_race_for_a_message_id_writes_nothing_and_does_not_fail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home, work = two_accounts(tmp_path)
    with Ledger.open(tmp_path / "state") as ledger:
        assert engine.reconcile(home, ledger).error is None
        made = drafts_in(tmp_path)
        # The other pass looked before this one wrote: it saw no owner.
        monkeypatch.setattr(Ledger, "message_id_owner", lambda self, message_id: None)
        report = engine.reconcile(work, ledger)
        assert report.error is None
        assert ledger.drafts("work") == []
        monkeypatch.undo()
        assert engine.reconcile(work, ledger).error is None  # the next pass sees whose it is
        assert {d.state for d in ledger.drafts("work")} == {DraftState.SKIPPED}
    assert drafts_in(tmp_path) == made


def test_an_account_renamed_in_the_config_still_adopts_its_drafts(tmp_path: Path) -> None:
    (home,) = two_accounts(tmp_path, ("home",))
    with Ledger.open(tmp_path / "state") as ledger:
        assert engine.reconcile(home, ledger).error is None
        made = drafts_in(tmp_path)
        (renamed,) = two_accounts(tmp_path, ("main",))
        assert renamed.same_address == frozenset()
        assert engine.reconcile(renamed, ledger).error is None
        assert all(d.state is not DraftState.SKIPPED for d in ledger.drafts("main"))
    assert drafts_in(tmp_path) == made
