"""Watched paths reached through symbolic links, as in a Kubernetes secret or ConfigMap
volume: ``token -> ..data/token``, ``..data -> ..2026_...``, and every update writes a new
timestamped folder, swaps ``..data`` to it by a rename and removes the old folder. There
is no event at the file itself: without following the links, one update was seen (the old
folder's removal) and none after it, because the watch stayed on the removed folder."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from entrypoint.plan.keys import SourceKey
from entrypoint.rotation import file_watch, watch_paths
from entrypoint.rotation.file_watch import FileWatch, link_folders
from tests.helpers.file_notices import DEADLINE, RELINKED, Seen, drain, next_notice
from tests.helpers.kube_volume import Volume

KEY = SourceKey("file", "token")


def test_link_folders_are_where_each_link_on_the_way_lives(tmp_path: Path) -> None:
    volume = Volume(tmp_path / "vol", {"token": "a"})
    assert link_folders(str(volume.root / "token")) == {str(volume.root)}
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    assert link_folders(str(plain)) == set()
    # A link elsewhere, relative with "..", to a folder that is itself a link.
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf/current").symlink_to("../vol")
    assert link_folders(str(tmp_path / "conf/current/token")) == {str(tmp_path / "conf"),
                                                                  str(volume.root)}
    # ".." after a link is taken from where the link led, as the kernel does.
    (tmp_path / "cfg").symlink_to("vol/..data")
    assert link_folders(str(tmp_path / "cfg/../token")) == {str(tmp_path), str(volume.root)}
    (tmp_path / "loop").symlink_to("loop")
    assert link_folders(str(tmp_path / "loop/x")) == {str(tmp_path)}  # ends, as the kernel does


def test_every_update_of_a_kubernetes_volume_is_a_change(
        tmp_path: Path, watch: FileWatch, seen: Seen) -> None:
    volume = Volume(tmp_path / "vol", {"token": "a"})
    watch.add_key(KEY, [volume.root / "token"])
    watch.start()
    for text in ("b", "c", "d"):
        volume.update({"token": text})
        next_notice(seen, frozenset({KEY}), saying=RELINKED)
        # What the engine then reads through the path is the new value.
        assert (volume.root / "token").read_text() == text
        assert watch.files == {os.path.realpath(volume.root / "token"): {KEY}}
        drain(seen)
    # In place, as an editor would: the folder it leads to now is watched.
    (volume.root / "token").write_text("e")
    assert "changed" in next_notice(seen, frozenset({KEY}))
    # Only the folders in use are watched: the volume's and its newest folder.
    assert sorted(watch._scheduled) == [(str(volume.root), False),
                                        (os.path.realpath(volume.root / "..data"), False)]


def test_a_template_in_a_configmap_volume_renders_again_at_each_update(
        tmp_path: Path, watch: FileWatch, seen: Seen) -> None:
    volume = Volume(tmp_path / "vol", {"app.tmpl": "one"})
    watch.add_template(volume.root / "app.tmpl")
    watch.start()
    for text in ("two", "three"):
        volume.update({"app.tmpl": text})
        reason = next_notice(seen, frozenset(), rerender=True, saying=RELINKED)
        assert reason.startswith("template ")
        drain(seen)


def test_a_secrets_folder_reached_through_a_link_is_followed_to_its_new_place(
        tmp_path: Path, watch: FileWatch, seen: Seen) -> None:
    key = SourceKey("vault", "kv/app/")
    (tmp_path / "v1/app").mkdir(parents=True)
    (tmp_path / "v1/app/db.json").write_text("{}")
    (tmp_path / "current").symlink_to("v1")
    watch.add_key(key, [tmp_path / "current/app"])
    watch.start()
    (tmp_path / "v2/app").mkdir(parents=True)
    (tmp_path / "v2/app/db.json").write_text('{"k": "v"}')
    (tmp_path / "next").symlink_to("v2")
    os.replace(tmp_path / "next", tmp_path / "current")
    next_notice(seen, frozenset({key}), saying=RELINKED)
    drain(seen)
    (tmp_path / "v2/app/new.json").write_text("{}")  # beneath the new place: watched
    next_notice(seen, frozenset({key}))


def test_a_folder_name_used_again_is_watched_again(tmp_path: Path, watch: FileWatch,
                                                  seen: Seen) -> None:
    """Checkouts named by commit, as git-sync makes them: after a revert, a folder removed
    earlier comes back under its old name. It is watched anew, not through the watcher
    that stopped when the folder was removed."""
    def check_out(slot: str, text: str) -> None:
        (tmp_path / slot).mkdir()
        (tmp_path / slot / "token").write_text(text)
        (tmp_path / "next").symlink_to(slot)
        os.replace(tmp_path / "next", tmp_path / "current")

    def remove(slot: str) -> None:
        (tmp_path / slot / "token").unlink()
        (tmp_path / slot).rmdir()

    check_out("A", "a")
    watch.add_key(KEY, [tmp_path / "current/token"])
    watch.start()
    check_out("B", "b")
    remove("A")
    next_notice(seen, frozenset({KEY}), saying=RELINKED)
    check_out("A", "a again")
    remove("B")
    next_notice(seen, frozenset({KEY}), saying=RELINKED)
    drain(seen)
    (tmp_path / "A/token").write_text("edited in place")
    next_notice(seen, frozenset({KEY}))


def test_a_folder_that_cannot_be_watched_is_said_and_the_watch_goes_on(
        tmp_path: Path, watch: FileWatch, seen: Seen, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The inotify watch limit (ENOSPC) cannot be reached on demand here, so the
    observer's schedule is made to refuse the new folder; before, the refusal ended
    watchdog's one thread and every later change went unseen."""
    volume = Volume(tmp_path / "vol", {"token": "a"})
    other = tmp_path / "plain.txt"
    other.write_text("x")
    other_key = SourceKey("file", str(other))
    watch.add_key(KEY, [volume.root / "token"])
    watch.add_key(other_key, [other])
    watch.start()
    schedule = watch._observer.schedule

    def refuse(handler: object, folder: str, recursive: bool = False, **options: Any
               ) -> object:
        if "..2026" in folder:
            raise OSError(28, "inotify watch limit reached")
        return schedule(handler, folder, recursive=recursive, **options)

    monkeypatch.setattr(watch._observer, "schedule", refuse)
    with caplog.at_level(logging.WARNING, logger="test"):
        volume.update({"token": "b"})
        next_notice(seen, frozenset({KEY}), saying=RELINKED)  # the change is still told
    assert "inotify watch limit reached" in caplog.text and "cannot watch" in caplog.text
    other.write_text("y")  # the observer lives on
    next_notice(seen, frozenset({other_key}))


def test_a_watched_folder_replaced_whole_is_watched_again(
        tmp_path: Path, watch: FileWatch, seen: Seen) -> None:
    """``rm -rf app && mv app.new app``: the watch on the removed folder ended with it.
    While it is gone the folder that held it is watched, so the new one is watched from
    then on, and what it holds is read again (it may have been written before its watch
    began); then the parent's watch is dropped."""
    app = tmp_path / "app"
    app.mkdir()
    (app / "token").write_text("a")
    watch.add_key(KEY, [app / "token"])
    watch.start()
    staged = tmp_path / "app.new"
    staged.mkdir()
    (staged / "token").write_text("b")
    (app / "token").unlink()
    app.rmdir()
    next_notice(seen, frozenset({KEY}))  # the file's removal
    os.rename(staged, app)
    next_notice(seen, frozenset({KEY}))  # back: read again
    drain(seen)
    (app / "token").write_text("c")  # and edits in the new folder are seen
    next_notice(seen, frozenset({KEY}))
    assert sorted(watch._scheduled) == [(str(app), False)]  # no watch on its parent now


@pytest.mark.parametrize("removed", ["kv/app", "kv"])
def test_a_secrets_folder_removed_and_made_again_is_watched_again(
        tmp_path: Path, watch: FileWatch, seen: Seen, removed: str) -> None:
    """``rm -rf kv/app`` (or ``rm -rf kv``) then ``mkdir -p kv/app``: the nearest folder
    left is watched until kv/app is back, then kv/app alone again."""
    key = SourceKey("vault", "kv/app/")
    tree = tmp_path / "kv/app"
    tree.mkdir(parents=True)
    (tree / "db.json").write_text("{}")
    watch.add_key(key, [tree])
    watch.start()
    (tree / "db.json").unlink()
    tree.rmdir()
    if removed == "kv":
        tree.parent.rmdir()
    next_notice(seen, frozenset({key}))
    tree.mkdir(parents=True)
    (tree / "db.json").write_text('{"k": "v"}')
    next_notice(seen, frozenset({key}))
    drain(seen)
    (tree / "new.json").write_text("{}")
    next_notice(seen, frozenset({key}))
    assert sorted(watch._scheduled) == [(str(tree), True)]


def test_a_folder_refused_at_the_start_does_not_stop_the_start(
        tmp_path: Path, watch: FileWatch, seen: Seen, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The inotify watch limit cannot be reached on demand here: adding the watch of one
    folder is refused where watchdog adds it (its emitter's start). Before, the refusal
    came out of the observer's start and the entrypoint exited 70 before the app ran."""
    from watchdog.observers.inotify import InotifyEmitter

    for name in ("refused", "fine"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "token").write_text("a")
    fine = SourceKey("file", "fine")
    watch.add_key(KEY, [tmp_path / "refused/token"])
    watch.add_key(fine, [tmp_path / "fine/token"])
    start = InotifyEmitter.on_thread_start

    def refuse(self: Any) -> None:
        if str(self.watch.path).endswith("refused"):
            raise OSError(28, "inotify watch limit reached")
        start(self)

    monkeypatch.setattr(InotifyEmitter, "on_thread_start", refuse)
    with caplog.at_level(logging.WARNING, logger="test"):
        watch.start()
    assert caplog.text.count("cannot watch") == 1 and "inotify watch limit reached" in caplog.text
    (tmp_path / "fine/token").write_text("b")
    next_notice(seen, frozenset({fine}))


def test_a_link_gone_while_it_is_resolved_is_the_path_as_given(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def vanished(path: Any) -> str:
        raise FileNotFoundError(2, "No such file or directory")

    monkeypatch.setattr(file_watch.os.path, "realpath", vanished)
    assert watch_paths.realpath("/vol/token") == "/vol/token"


def test_events_while_the_folders_are_scheduled_do_not_deadlock_the_start(
        tmp_path: Path, watch: FileWatch, seen: Seen) -> None:
    """watchdog runs the handler holding its own lock, and scheduling takes that lock:
    with a second lock of ours taken around the scheduling, an event in a folder already
    watched while later folders were scheduled hung the app's start for good."""
    keys = []
    for n in range(60):
        (tmp_path / f"f{n}").mkdir()
        (tmp_path / f"f{n}/token").write_text("a")
        keys.append(SourceKey("file", f"f{n}"))
        watch.add_key(keys[-1], [tmp_path / f"f{n}/token"])
    stop = threading.Event()

    def busy() -> None:  # events in the first folder all along
        while not stop.is_set():
            (tmp_path / "f0/token").write_text("b")

    writer = threading.Thread(target=busy)
    starter = threading.Thread(target=watch.start, daemon=True)
    writer.start()
    try:
        starter.start()
        starter.join(DEADLINE)
        assert not starter.is_alive(), "start() never returned"
    finally:
        stop.set()
        writer.join()
    (tmp_path / "f59/token").write_text("c")
    next_notice(seen, frozenset({keys[59]}))


def test_an_error_in_handling_one_event_is_logged_and_watching_goes_on(
        tmp_path: Path, watch: FileWatch, seen: Seen, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug in handling an event cannot be produced on demand: the first change handled
    raises. Watchdog's dispatch thread, the only one, must outlive it."""
    (tmp_path / "token").write_text("a")
    watch.add_key(KEY, [tmp_path / "token"])
    changed = watch.changed
    calls = []

    def fails_once(path: str) -> None:
        calls.append(path)
        if len(calls) == 1:
            raise RuntimeError("a bug in one event")
        changed(path)

    monkeypatch.setattr(watch, "changed", fails_once)
    with caplog.at_level(logging.ERROR, logger="test"):
        watch.start()
        (tmp_path / "token").write_text("b")
        deadline = time.monotonic() + DEADLINE
        while "file watch error; watching goes on" not in caplog.text:
            assert time.monotonic() < deadline, "the error was never logged"
            time.sleep(0.02)
    (tmp_path / "token").write_text("c")
    next_notice(seen, frozenset({KEY}))
