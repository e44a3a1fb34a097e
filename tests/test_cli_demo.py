"""Issue 14, item 1: a demo that cannot hurt (the real CLI, as a subprocess)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.clirun import mb, no_traceback

pytestmark = pytest.mark.slow  # each demo runs the engine several times


def test_demo_refuses_a_folder_with_anything_of_yours_and_writes_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "Maildir" / "new").mkdir(parents=True)
    (home / "config.toml").write_text("# my own config\n")
    before = sorted(p.relative_to(home) for p in home.rglob("*"))
    done = mb("demo", "--dir", str(home))
    no_traceback(done)
    assert done.returncode == 2 and "not empty" in done.stderr
    assert "nothing was written" in done.stderr
    assert sorted(p.relative_to(home) for p in home.rglob("*")) == before
    assert (home / "config.toml").read_text() == "# my own config\n"


def test_demo_runs_again_in_its_own_folder_and_its_recipe_shows_the_story(tmp_path: Path) -> None:
    folder = tmp_path / "examples"
    first = mb("demo", "--dir", str(folder))
    assert first.returncode == 0, first.stderr
    second = mb("demo", "--dir", str(folder))  # was: ValueError: min() arg is an empty sequence
    no_traceback(second)
    assert second.returncode == 0 and "in Trash: 1" in second.stdout
    # The recipe the demo prints works as written, on the demo's own ledger.
    recipe = re.search(r"^  (.+ status)$", second.stdout, re.MULTILINE)
    assert recipe is not None
    status = mb(*recipe.group(1).split()[1:])
    assert status.returncode == 0 and "last good pass: never" not in status.stdout
    assert "follow-up" in status.stdout and "taken back" in status.stdout


def test_demo_leaves_a_foreign_file_it_finds_later_alone(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    assert mb("demo", "--dir", str(folder)).returncode == 0
    (folder / "notes.txt").write_text("mine")
    done = mb("demo", "--dir", str(folder))
    assert done.returncode == 2 and "notes.txt" in done.stderr
    assert (folder / "notes.txt").read_text() == "mine"


def test_config_example_recipe_uses_the_demos_config(tmp_path: Path) -> None:
    """The recipe in config.example.toml names the config the demo writes (one ledger)."""
    text = (Path(__file__).parent.parent / "config.example.toml").read_text()
    recipe = re.search(r"`mailbridge demo --dir (\S+)`.*?`mailbridge (--config \S+ status)`",
                       text, re.DOTALL)
    assert recipe is not None
    folder = tmp_path / recipe.group(1)
    assert mb("demo", "--dir", str(folder)).returncode == 0
    config = recipe.group(2).split()[1].replace(recipe.group(1), str(folder), 1)
    done = mb("--config", config, "status", "--json")
    assert done.returncode == 0, done.stderr
    (account,) = json.loads(done.stdout)["accounts"]
    assert account["last_ok"] is not None and account["interviews"]
