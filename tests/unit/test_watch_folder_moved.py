"""A watched folder moved away and replaced by another of its name (``mv app app.old &&
mv app.new app``; its parent, or the whole secrets folder, alike). inotify watches a
folder, not its name, and watchdog passes on no event for a watched folder moving
(IN_MOVE_SELF), nor can one come for a folder above it: the watch stayed on app.old, the
new app was read only once app.old was removed, and app.old's edits were taken for app's.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from entrypoint.plan.keys import SourceKey
from entrypoint.rotation.file_watch import FileWatch
from entrypoint.sources.local.folder import LocalSource
from tests.helpers.file_notices import DEADLINE, Seen, next_notice
from tests.helpers.residents import Make, Posted, next_restart, quiet_config

TREE = SourceKey("vault", "kv/app/")
TOKEN = SourceKey("file", "token")


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {DEADLINE}s"
        time.sleep(0.02)


def put(file: Path, text: str) -> None:
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(text)


def swap(path: Path, staged: Path) -> Path:
    """``mv path path.old && mv staged path``; the old folder is kept, and returned."""
    old = path.with_name(f"{path.name}.old")
    os.rename(path, old)
    os.rename(staged, path)
    return old


def watched_inodes(watch: FileWatch) -> set[int]:
    """The inodes the watch's inotify instance has a watch on, as the kernel tells."""
    fd = watch._observer._inotify_fd._inotify_fd
    with open(f"/proc/self/fdinfo/{fd}") as info:
        return {int(ino, 16) for ino in re.findall(r"^inotify wd:\S+ ino:([0-9a-f]+)",
                                                   info.read(), re.MULTILINE)}


@pytest.mark.parametrize("moved", ["secrets/kv/app", "secrets/kv", "secrets"])
def test_a_secrets_folder_moved_away_and_replaced_is_followed(
        tmp_path: Path, watch: FileWatch, seen: Seen, moved: str) -> None:
    """The folder watched, its parent or the secrets folder whole: the new one is read
    and watched, and what is later written in the old one is no change."""
    tree = tmp_path / "secrets/kv/app"
    put(tree / "a.json", "{}")
    watch.add_key(TREE, [tree])
    watch.start()
    put(tmp_path / "staged" / tree.relative_to(tmp_path) / "a.json", '{"k": "v"}')
    old = swap(tmp_path / moved, tmp_path / "staged" / moved)
    old_tree = old / tree.relative_to(tmp_path / moved)
    next_notice(seen, TREE, saying=f"{tree}{os.sep} changed")  # read again, whole
    # The old folder is no longer watched at all (its edits would pass for the new one's).
    assert os.stat(old_tree).st_ino not in watched_inodes(watch)
    wait_for(lambda: sorted(watch._scheduled) == [(str(tree), True)], "kv/app alone watched")
    (old_tree / "a.json").write_text('{"k": "old"}')
    (tree / "b.json").write_text("{}")
    assert next_notice(seen, TREE, saying=".json changed") == f"{tree / 'b.json'} changed"


def test_the_folder_of_a_watched_file_moved_away_and_replaced_is_followed(
        tmp_path: Path, watch: FileWatch, seen: Seen) -> None:
    app = tmp_path / "app"
    put(app / "token", "a")
    watch.add_key(TOKEN, [app / "token"])
    watch.start()
    put(tmp_path / "app.new/token", "b")
    old = swap(app, tmp_path / "app.new")
    next_notice(seen, TOKEN, saying="changed")  # read again
    assert os.stat(old).st_ino not in watched_inodes(watch)
    wait_for(lambda: sorted(watch._scheduled) == [(str(app), False)], "app alone watched")
    (app / "token").write_text("c")
    next_notice(seen, TOKEN, saying=f"{app / 'token'} changed")


def test_the_secrets_folder_replaced_whole_restarts_the_app_only_on_a_new_value(
        tmp_path: Path, resident_for: Make, posted: Posted) -> None:
    """A deploy of a new secrets folder by two renames, as the entrypoint's users make
    it: the app gets the new value; a deploy of the same values restarts nothing."""
    root = tmp_path / "secrets"

    def stage(value: str) -> Path:
        put(tmp_path / "staged/kv/app.json", json.dumps({"k": value}))
        return tmp_path / "staged"

    put(root / "kv/app.json", json.dumps({"k": "v1"}))
    resident = resident_for(quiet_config(), {"A": "vault:kv/app#k"}, LocalSource(root))
    assert resident.prepare()["A"] == "v1"
    assert resident.rotation is not None
    watch = resident.rotation.files
    old = swap(root, stage("v2"))
    assert next_restart(posted).env["A"] == "v2"
    os.rename(old, tmp_path / "secrets.v1")
    old = swap(root, stage("v2"))  # the same value: read again, no restart
    wait_for(lambda: (os.stat(root / "kv").st_ino in watched_inodes(watch)
                      and os.stat(old / "kv").st_ino not in watched_inodes(watch)),
             "the new kv folder watched, the old one not")
    (root / "kv/app.json").write_text(json.dumps({"k": "v3"}))
    assert next_restart(posted).env["A"] == "v3"


def test_the_folder_above_a_removed_one_moved_away_and_replaced_is_followed(
        tmp_path: Path, watch: FileWatch, seen: Seen) -> None:
    """kv/app removed: kv is watched, by watchdog, until it is back; watchdog sets its
    watch's events whole, which dropped those of kv's own moves asked for before."""
    tree = tmp_path / "secrets/kv/app"
    put(tree / "a.json", "{}")
    watch.add_key(TREE, [tree])
    watch.start()
    (tree / "a.json").unlink()
    tree.rmdir()
    wait_for(lambda: (str(tree.parent), False) in watch._scheduled, "kv watched")
    put(tmp_path / "kv.new/app/a.json", '{"k": "v"}')
    old = swap(tree.parent, tmp_path / "kv.new")
    next_notice(seen, TREE, saying=f"{tree}{os.sep} changed")
    wait_for(lambda: sorted(watch._scheduled) == [(str(tree), True)], "kv/app alone watched")
    assert os.stat(old).st_ino not in watched_inodes(watch)
    (tree / "b.json").write_text("{}")
    next_notice(seen, TREE, saying=f"{tree / 'b.json'} changed")
