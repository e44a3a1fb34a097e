"""Push for local accounts on Linux: one inotify instance and one thread for every account's
folders (issue 13), and the calendar folders whose files an idle pass need not stat. Nothing
here is timed: a change to another account, made after the one that must stay silent, shows
that the silent one was read (one queue, read in order)."""

from __future__ import annotations

import mailbox
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mailbridge import config as config_module
from mailbridge.model import CalendarBatch, Window
from mailbridge.settings import AccountSettings
from tests.test_outages import calendar_file, wait_for
from tests.test_scale import many_accounts

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="inotify is Linux's")

local = pytest.importorskip("mailbridge_providers.local")


class Calls:
    """Each account's callback: how often it was called, and a way to wait for it."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.lock = threading.Lock()

    def of(self, name: str) -> Callable[[], None]:
        self.counts[name] = 0

        def on_change() -> None:
            with self.lock:
                self.counts[name] += 1

        return on_change

    def reset(self, name: str) -> None:
        with self.lock:
            self.counts[name] = 0

    def wait(self, name: str) -> None:
        wait_for(f"a change for {name}", lambda: self.counts[name] > 0)


@pytest.fixture
def subscribe(
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Callable[[AccountSettings, Callable[[], None]], Callable[[], None]]]:
    # A fresh instance, whatever another test left subscribed: the counts below are its own.
    monkeypatch.setattr(local, "_inotify", None)
    ends: list[Callable[[], None]] = []

    def start(account: AccountSettings, on_change: Callable[[], None]) -> Callable[[], None]:
        end = local.subscribe(account, on_change)
        ends.append(end)
        return end  # type: ignore[no-any-return]

    yield start
    for end in ends:
        end()
    assert local._inotify is None  # the last account gone, the instance and thread with it


def accounts(root: Path, count: int) -> list[AccountSettings]:
    return list(config_module.load(many_accounts(root, count, interviews=False)).accounts)


def inotify_fds() -> int:
    return sum(1 for fd in os.listdir("/proc/self/fd")
               if _link(f"/proc/self/fd/{fd}") == "anon_inode:inotify")


def _link(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


def kernel_watches() -> int:
    """The watches the kernel holds on the shared instance."""
    watcher = local._inotify
    assert watcher is not None
    info = Path(f"/proc/self/fdinfo/{watcher.inotify.fileno()}").read_text()
    return sum(1 for line in info.splitlines() if line.startswith("inotify wd:"))


def watcher_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "mailbridge-inotify")


def deliver(root: Path) -> None:
    """A message delivered to the inbox as a mail program does it (tmp/, then new/)."""
    mailbox.Maildir(root, create=False).add(b"Subject: hi\n\nx\n")


@pytest.mark.slow
def test_three_hundred_accounts_share_one_instance_and_one_thread(
    tmp_path: Path, subscribe: Callable[..., Callable[[], None]]
) -> None:
    fds_before, threads_before = inotify_fds(), watcher_threads()
    calls = Calls()
    for account in accounts(tmp_path, 300):
        subscribe(account, calls.of(account.name))
    assert watcher_threads() == threads_before + 1
    assert inotify_fds() == fds_before + 1
    # Per account: the Maildir, its new/ and cur/, the calendar folder.
    assert kernel_watches() == 300 * 4
    deliver(tmp_path / "a7" / "Maildir")
    calls.wait("a7")
    assert calls.counts["a7"] == 1
    assert [n for n, c in calls.counts.items() if c] == ["a7"]


def test_tmp_drafts_trash_and_scratch_files_call_no_one(
    tmp_path: Path, subscribe: Callable[..., Callable[[], None]]
) -> None:
    quiet, other = accounts(tmp_path, 2)
    maildir = mailbox.Maildir(tmp_path / "a0" / "Maildir", create=False)
    drafts = maildir.add_folder("Drafts")
    trash = maildir.add_folder("Trash")
    calls = Calls()
    subscribe(quiet, calls.of("a0"))
    subscribe(other, calls.of("a1"))
    (tmp_path / "a0" / "Maildir" / "tmp" / "1.being-written").write_bytes(b"Subject: x\n")
    drafts.add(b"Subject: a draft\n\nx\n")
    trash.add(b"Subject: thrown away\n\nx\n")
    (tmp_path / "a0" / "calendar" / ".#interview.ics").write_text("lock")
    (tmp_path / "a0" / "calendar" / "interview.ics~").write_text("backup")
    (tmp_path / "a0" / "calendar" / "notes.txt").write_text("not a calendar")
    deliver(tmp_path / "a1" / "Maildir")
    calls.wait("a1")
    assert calls.counts["a0"] == 0
    (tmp_path / "a0" / "calendar" / "interview.ics").write_text("BEGIN:VCALENDAR\n")
    calls.wait("a0")


def test_a_sent_folder_and_a_calendar_subfolder_made_later_are_watched(
    tmp_path: Path, subscribe: Callable[..., Callable[[], None]]
) -> None:
    account, other = accounts(tmp_path, 2)
    calls = Calls()
    subscribe(account, calls.of("a0"))
    subscribe(other, calls.of("a1"))
    sent = mailbox.Maildir(tmp_path / "a0" / "Maildir", create=False).add_folder("Sent")
    (tmp_path / "a0" / "calendar" / "work").mkdir()
    deliver(tmp_path / "a1" / "Maildir")  # after it, every event above has been read
    calls.wait("a1")
    calls.reset("a0")
    sent.add(b"Subject: thanks\n\nx\n")
    calls.wait("a0")
    calls.reset("a0")
    (tmp_path / "a0" / "calendar" / "work" / "interview.ics").write_text("BEGIN:VCALENDAR\n")
    calls.wait("a0")


def test_an_empty_folder_made_by_a_pass_wakes_no_one_but_one_moved_in_with_mail_does(
    tmp_path: Path, subscribe: Callable[..., Callable[[], None]]
) -> None:
    account, other = accounts(tmp_path, 2)
    calls = Calls()
    subscribe(account, calls.of("a0"))
    subscribe(other, calls.of("a1"))
    mailbox.Maildir(tmp_path / "a0" / "Maildir", create=False).add_folder("Sent")
    (tmp_path / "a0" / "calendar" / "empty").mkdir()
    deliver(tmp_path / "a1" / "Maildir")  # after it, every event above has been read
    calls.wait("a1")
    assert calls.counts["a0"] == 0
    # A folder written elsewhere and moved in whole (a restore, a sync tool) holds news.
    outside = tmp_path / "restored"
    mailbox.Maildir(outside, create=True).add(b"Subject: sent long ago\n\nx\n")
    os.rename(outside, tmp_path / "a0" / "Maildir" / ".Sent Items")
    calls.wait("a0")


def test_unsubscribe_removes_the_watches_and_the_callback(
    tmp_path: Path, subscribe: Callable[..., Callable[[], None]]
) -> None:
    first, second = accounts(tmp_path, 2)
    calls = Calls()
    end_first = subscribe(first, calls.of("a0"))
    subscribe(second, calls.of("a1"))
    assert kernel_watches() == 8
    end_first()
    end_first()  # twice: nothing more happens
    assert kernel_watches() == 4
    deliver(tmp_path / "a0" / "Maildir")
    deliver(tmp_path / "a1" / "Maildir")
    calls.wait("a1")
    assert calls.counts["a0"] == 0


def test_a_deleted_folder_is_dropped_and_one_made_again_is_watched_again(
    tmp_path: Path, subscribe: Callable[..., Callable[[], None]]
) -> None:
    (account,) = accounts(tmp_path, 1)
    root = tmp_path / "a0" / "Maildir"
    mailbox.Maildir(root, create=False).add_folder("Sent")
    calls = Calls()
    subscribe(account, calls.of("a0"))
    assert kernel_watches() == 7  # Maildir, new, cur, .Sent, its new and cur, calendar
    shutil.rmtree(root / ".Sent")
    watcher = local._inotify
    wait_for("the Sent watches dropped", lambda: len(watcher.interests) == 4)
    assert kernel_watches() == 4
    sent = mailbox.Maildir(root, create=False).add_folder("Sent")
    wait_for("Sent watched again", lambda: len(watcher.interests) == 7)
    calls.reset("a0")
    sent.add(b"Subject: thanks\n\nx\n")
    calls.wait("a0")


def test_a_lost_event_queue_calls_every_account_once(
    tmp_path: Path, subscribe: Callable[..., Callable[[], None]]
) -> None:
    from inotify_simple import Event, flags

    calls = Calls()
    for account in accounts(tmp_path, 3):
        subscribe(account, calls.of(account.name))
    watcher = local._inotify
    overflow = Event(wd=-1, mask=flags.Q_OVERFLOW, cookie=0, name="")
    with local._inotify_lock:
        due = watcher.dispatch([overflow, overflow])
    for on_change in due:
        on_change()
    assert calls.counts == {"a0": 1, "a1": 1, "a2": 1}


def test_a_one_file_calendar_wakes_its_account_for_that_file_only(
    tmp_path: Path, subscribe: Callable[..., Callable[[], None]]
) -> None:
    _, other = accounts(tmp_path, 2)
    (tmp_path / "a0" / "calendar" / "mine.ics").write_text("BEGIN:VCALENDAR\n")
    path_text = (tmp_path / "config.toml").read_text().replace(
        'path = "a0/calendar"', 'path = "a0/calendar/mine.ics"')
    (tmp_path / "config.toml").write_text(path_text)
    one_file = config_module.load(tmp_path / "config.toml").accounts[0]
    calls = Calls()
    subscribe(one_file, calls.of("a0"))
    subscribe(other, calls.of("a1"))
    (tmp_path / "a0" / "calendar" / "other.ics").write_text("BEGIN:VCALENDAR\n")
    deliver(tmp_path / "a1" / "Maildir")
    calls.wait("a1")
    assert calls.counts["a0"] == 0
    (tmp_path / "a0" / "calendar" / "mine.ics").write_text("BEGIN:VCALENDAR\nX:1\n")
    calls.wait("a0")


# --- a watched calendar folder: its files are not stat'ed while nothing can have changed ----

NOW = datetime.now(UTC).replace(microsecond=0)
WINDOW = Window(NOW - timedelta(days=30), NOW + timedelta(days=30))
TITLE, EDITED = b"Northwind Robotics", b"Northwind Robotica"  # same size


def settle(folder: Path) -> None:
    """Every folder's time as after a quiet minute, so a look stands for it (`_SETTLE_NS`)."""
    past = time.time_ns() - 60 * 10**9
    for each in [folder, *(p for p in folder.rglob("*") if p.is_dir())]:
        os.utime(each, ns=(past, past))


def edit_in_place(file: Path) -> None:
    """One character changed where it is: same name, same size, same folder time, and a
    modification time in the same second as the file's writing."""
    at = file.read_bytes().index(TITLE)
    with open(file, "r+b") as handle:
        handle.seek(at)
        handle.write(EDITED)
    events_read()


def events_read() -> None:
    """Wait until the watcher has read the events queued so far, as it has by a daemon's next
    pass: what the pass then sees is the events' count, not an unread queue."""
    watcher = local._inotify
    if watcher is not None:
        wait_for("the watcher to read its queue", lambda: not watcher.unread.poll(0))


class Reader:
    """A calendar read pass after pass, as the engine does, keeping the cursor."""

    def __init__(self, calendar: Any) -> None:
        self.calendar = calendar
        self.cursor: str | None = None

    def read(self) -> CalendarBatch:
        batch: CalendarBatch = self.calendar.changes(self.cursor, WINDOW)
        self.cursor = batch.cursor
        return batch

    def sees_edit(self) -> bool:
        batch = self.read()
        return batch.complete and any(e.title.startswith(EDITED.decode()) for e in batch.events)

    def skips(self) -> bool:
        """Whether an idle pass stats no file (and reports nothing)."""
        looks = self.calendar.full_looks
        return not self.read().complete and self.calendar.full_looks == looks


@pytest.fixture
def folder(tmp_path: Path) -> tuple[AccountSettings, Path]:
    """One account whose calendar folder holds two interviews, and one in a subfolder."""
    (account,) = accounts(tmp_path, 1)
    folder = tmp_path / "a0" / "calendar"
    calendar_file(folder, "iv-0", NOW - timedelta(days=1))
    calendar_file(folder, "iv-1", NOW - timedelta(days=2))
    calendar_file(folder / "work", "iv-2", NOW - timedelta(days=3))
    settle(folder)
    return account, folder


def watched(folder: tuple[AccountSettings, Path],
            subscribe: Callable[..., Callable[[], None]]) -> Reader:
    account, _ = folder
    subscribe(account, lambda: None)
    reader = Reader(local.open_calendar(account))
    assert reader.read().complete
    assert reader.skips()  # the ground every test below stands on
    return reader


def test_an_edit_in_place_in_a_watched_folder_is_seen_on_the_next_pass(
    folder: tuple[AccountSettings, Path], subscribe: Callable[..., Callable[[], None]]
) -> None:
    reader = watched(folder, subscribe)
    edit_in_place(folder[1] / "iv-1.ics")
    assert reader.sees_edit()


def test_a_new_a_deleted_and_a_subfolder_file_are_seen(
    folder: tuple[AccountSettings, Path], subscribe: Callable[..., Callable[[], None]]
) -> None:
    _, root = folder
    reader = watched(folder, subscribe)
    edit_in_place(root / "work" / "iv-2.ics")
    assert reader.sees_edit()
    calendar_file(root, "iv-3", NOW - timedelta(days=4))
    assert "iv-3" in {e.key.uid for e in reader.read().events}
    settle(root)
    # The look below is kept only when the watcher has numbered the new file's events first:
    # read after the look, they stand for a change it may have missed (a loaded machine).
    events_read()
    reader.read()  # a full look, now that the folder is settled again
    assert reader.skips()
    (root / "iv-0.ics").unlink()
    batch = reader.read()
    assert batch.complete and "iv-0" not in {e.key.uid for e in batch.events}


def test_a_file_made_in_an_unwatched_subfolder_is_seen_by_its_folder_time(
    folder: tuple[AccountSettings, Path], subscribe: Callable[..., Callable[[], None]]
) -> None:
    # A hidden folder (.stversions, .git) is read but not watched: what comes into it sends
    # no event, only its own time moves.
    _, root = folder
    (root / ".kept").mkdir()
    settle(root)
    reader = watched(folder, subscribe)
    calendar_file(root / ".kept", "iv-3", NOW - timedelta(days=4))
    assert "iv-3" in {e.key.uid for e in reader.read().events}


def test_an_unwatched_folder_is_looked_at_in_full_at_every_pass(
    folder: tuple[AccountSettings, Path],
) -> None:
    account, root = folder  # nobody subscribed: a one-shot run, or a test calling changes()
    reader = Reader(local.open_calendar(account))
    reader.read()
    assert not reader.skips()
    edit_in_place(root / "iv-1.ics")
    assert reader.sees_edit()


def test_a_folder_on_a_network_file_system_is_never_skipped(
    tmp_path: Path, folder: tuple[AccountSettings, Path],
    subscribe: Callable[..., Callable[[], None]],
) -> None:
    account, root = folder
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(f"1 0 0:1 / / rw - ext4 /dev/vda rw\n"
                         f"2 1 0:2 / {tmp_path.resolve()} rw shared:1 - nfs4 server:/home rw\n")
    subscribe(account, lambda: None)
    reader = Reader(local.open_calendar(account))
    reader.calendar.mountinfo = str(mountinfo)
    reader.read()
    assert not reader.skips()
    edit_in_place(root / "iv-1.ics")
    assert reader.sees_edit()


@pytest.mark.parametrize(("path", "kind"), [
    ("/home/jo/calendar", "ext4"),
    ("/mnt/nas/calendar", "nfs4"),
    ("/mnt/nas", "nfs4"),
    ("/mnt/nasty/calendar", "ext4"),  # a prefix of the name is not a parent
    ("/mnt/my cloud/cal", "fuse.sshfs"),  # \040 in the table
    ("/mnt/stacked/x", "cifs"),  # two mounts at one point: the later hides the earlier
    ("/proc/1", "proc"),
])
def test_the_file_system_of_a_path_is_its_longest_mount_point(path: str, kind: str) -> None:
    table = "\n".join([
        "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw",
        "22 27 0:21 / /proc rw,relatime - proc proc rw",
        "40 27 0:40 / /mnt/nas rw,relatime shared:7 master:2 - nfs4 nas:/export rw",
        r"41 27 0:41 / /mnt/my\040cloud rw - fuse.sshfs jo@host: rw",
        "42 27 0:42 / /mnt/stacked rw - ext4 /dev/vdb rw",
        "43 42 0:43 / /mnt/stacked rw - cifs //srv/share rw",
        "not a mount line",
    ])
    assert local._mount_type(table, path) == kind
    assert local._mount_type("", path) is None


def test_a_full_look_comes_after_the_safety_interval_without_any_event(
    folder: tuple[AccountSettings, Path], subscribe: Callable[..., Callable[[], None]]
) -> None:
    _, root = folder
    reader = watched(folder, subscribe)
    with open(root / "iv-1.ics", "r+b") as writer:  # kept open: no event until it closes
        writer.seek((root / "iv-1.ics").read_bytes().index(TITLE))
        writer.write(EDITED)
        writer.flush()
        assert reader.skips()  # the limit the interval is for
        reader.calendar.full_look_every_ns = 0
        assert reader.sees_edit()


def test_a_lost_event_queue_makes_every_watched_folder_look_again(
    folder: tuple[AccountSettings, Path], subscribe: Callable[..., Callable[[], None]]
) -> None:
    from inotify_simple import Event, flags

    _, root = folder
    reader = watched(folder, subscribe)
    with open(root / "iv-1.ics", "r+b") as writer:  # kept open: no event of its own
        writer.seek((root / "iv-1.ics").read_bytes().index(TITLE))
        writer.write(EDITED)
        writer.flush()
        with local._inotify_lock:
            local._inotify.dispatch([Event(wd=-1, mask=flags.Q_OVERFLOW, cookie=0, name="")])
        assert reader.sees_edit()


def test_a_linked_calendar_file_is_looked_at_in_full_at_every_pass(
    tmp_path: Path, folder: tuple[AccountSettings, Path],
    subscribe: Callable[..., Callable[[], None]],
) -> None:
    # Edits to the file a link points to happen in another folder, which sends no event here.
    account, root = folder
    calendar_file(tmp_path / "elsewhere", "iv-9", NOW - timedelta(days=5))
    (root / "iv-9.ics").symlink_to(tmp_path / "elsewhere" / "iv-9.ics")
    settle(root)
    subscribe(account, lambda: None)
    reader = Reader(local.open_calendar(account))
    reader.read()
    assert not reader.skips()
    edit_in_place(tmp_path / "elsewhere" / "iv-9.ics")
    assert reader.sees_edit()


# --- the waiting drafts: one stat each per pass, none while the watcher vouches for Drafts ---


class DraftLooks:
    """The waiting drafts of one local account, looked at as a pass does (`versions`)."""

    def __init__(self, account: AccountSettings, root: Path) -> None:
        drafts = mailbox.Maildir(root, create=False).get_folder("Drafts")
        self.keys = [drafts.add(b"Subject: Thank you\n\nThanks from " + TITLE + b"!\n")
                     for _ in range(3)]
        settle(root)
        self.drafts = root / ".Drafts"
        self.box = local.open_mailbox(account)
        self.known = {key: "" for key in self.keys}

    def look(self) -> dict[str, str]:
        found: dict[str, str] = self.box.versions(self.known)
        return found

    def skips(self) -> bool:
        looks, before = self.box.full_looks, self.box._drafts_look
        found = self.look()
        return self.box.full_looks == looks and before is not None and found == before.kept

    def file(self, key: str) -> Path:
        (path,) = [p for p in self.drafts.glob("*/*") if p.name.split(":")[0] == key]
        return path


@pytest.fixture
def waiting(tmp_path: Path) -> tuple[AccountSettings, DraftLooks]:
    (account,) = accounts(tmp_path, 1)
    root = tmp_path / "a0" / "Maildir"
    mailbox.Maildir(root, create=False).add_folder("Drafts")
    return account, DraftLooks(account, root)


def test_a_draft_edited_in_place_behind_a_quiet_watch_is_seen_and_wakes_no_one(
    waiting: tuple[AccountSettings, DraftLooks], subscribe: Callable[..., Callable[[], None]]
) -> None:
    account, drafts = waiting
    calls = Calls()
    subscribe(account, calls.of("a0"))
    first = drafts.look()
    assert set(first) == set(drafts.keys)
    assert drafts.skips() and drafts.skips()  # idle passes: not one stat
    edit_in_place(drafts.file(drafts.keys[1]))  # same name, size and folder time
    now = drafts.look()
    assert now[drafts.keys[1]] != first[drafts.keys[1]]
    assert now[drafts.keys[0]] == first[drafts.keys[0]]
    assert calls.counts["a0"] == 0  # Drafts is where passes write: it wakes no pass


def test_a_deleted_draft_and_a_new_waiting_one_make_a_full_look(
    waiting: tuple[AccountSettings, DraftLooks], subscribe: Callable[..., Callable[[], None]]
) -> None:
    account, drafts = waiting
    subscribe(account, lambda: None)
    drafts.look()
    assert drafts.skips()
    drafts.file(drafts.keys[2]).unlink()
    events_read()
    assert drafts.keys[2] not in drafts.look()
    del drafts.known[drafts.keys[2]]  # the pass found it gone: it waits no more
    settle(drafts.drafts)
    drafts.look()
    assert drafts.skips()
    made = mailbox.Maildir(drafts.drafts, create=False).add(b"Subject: Follow-up\n\nx\n")
    settle(drafts.drafts)  # even with the folder's time put back: a key the look never saw
    drafts.known[made] = ""
    assert made in drafts.look()


def test_unwatched_drafts_are_looked_at_in_full_at_every_pass(
    waiting: tuple[AccountSettings, DraftLooks],
) -> None:
    _, drafts = waiting  # nobody subscribed
    first = drafts.look()
    assert not drafts.skips()
    edit_in_place(drafts.file(drafts.keys[0]))
    assert drafts.look()[drafts.keys[0]] != first[drafts.keys[0]]


def test_drafts_on_a_network_file_system_are_looked_at_in_full(
    tmp_path: Path, waiting: tuple[AccountSettings, DraftLooks],
    subscribe: Callable[..., Callable[[], None]],
) -> None:
    account, drafts = waiting
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(f"1 0 0:1 / / rw - ext4 /dev/vda rw\n"
                         f"2 1 0:2 / {tmp_path.resolve()} rw - nfs server:/home rw\n")
    subscribe(account, lambda: None)
    drafts.box.mountinfo = str(mountinfo)
    drafts.look()
    assert not drafts.skips()


def test_drafts_are_looked_at_in_full_after_the_safety_interval(
    waiting: tuple[AccountSettings, DraftLooks], subscribe: Callable[..., Callable[[], None]]
) -> None:
    account, drafts = waiting
    subscribe(account, lambda: None)
    drafts.look()
    assert drafts.skips()
    drafts.box.full_look_every_ns = 0
    assert not drafts.skips()
