"""When no inotify instance can be had (``fs.inotify.max_user_instances``, 128 per user on
the node, counts the instances of every container of that user), the file watch polls.
Before, creating the observer raised and the app never started (the CLI exited 70)."""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import json
import logging
import os
import queue
import select
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from entrypoint.plan.keys import SourceKey
from entrypoint.rotation.file_watch import FileWatch

DEADLINE = 10.0
KEY = SourceKey("file", "token")
LOG = logging.getLogger("test")
# A user no other process has: its inotify instances are its own to exhaust.
OTHER_UID = 54_321


def watch_and_edit(folder: Path, log: logging.Logger) -> dict[str, object]:
    """Watch ``folder/token``, edit it, and say how it was watched and what was seen."""
    seen: queue.SimpleQueue[str] = queue.SimpleQueue()
    watch = FileWatch(lambda reason, keys, rerender: seen.put(reason), log)
    watch.add_key(KEY, [folder / "token"])
    watch.start()
    try:
        kind = type(watch._observer).__name__
        (folder / "token").write_text("b")
        try:
            reason = seen.get(timeout=DEADLINE)
        except queue.Empty:
            reason = ""
    finally:
        watch.stop()
    return {"observer": kind, "seen": reason}


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become a user of its own")
def test_with_the_instance_limit_really_reached_the_watch_polls(tmp_path: Path) -> None:
    """The limit reached for real, in a child that takes another user's identity: this
    process's user (maybe running other tests) keeps its instances."""
    # Imported before the user changes: root's files cannot be read then.
    for module in ("watchdog.observers", "watchdog.observers.polling"):
        importlib.import_module(module)

    folder = Path(tempfile.mkdtemp(prefix="entrypoint-inotify-"))
    try:
        (folder / "token").write_text("a")
        os.chown(folder, OTHER_UID, OTHER_UID)
        os.chown(folder / "token", OTHER_UID, OTHER_UID)
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            status = 1
            try:
                os.close(read_end)
                os.setegid(OTHER_UID)
                os.seteuid(OTHER_UID)
                libc = ctypes.CDLL("libc.so.6", use_errno=True)
                held = 0
                while libc.inotify_init1(os.O_CLOEXEC) != -1:  # closed as the child ends
                    held += 1
                records: list[str] = []

                class Keep(logging.Handler):
                    def emit(self, record: logging.LogRecord) -> None:
                        records.append(record.getMessage())

                log = logging.getLogger("inotify-child")
                log.addHandler(Keep())
                result = watch_and_edit(folder, log)
                result.update(held=held, logged=records)
                os.write(write_end, json.dumps(result).encode())
                status = 0
            except BaseException as exc:  # said to the test, which fails on it
                os.write(write_end, json.dumps({"error": repr(exc)}).encode())
            finally:
                os._exit(status)
        os.close(write_end)
        try:
            ready, _, _ = select.select([read_end], [], [], 3 * DEADLINE)
            assert ready, "the child said nothing"
            result = json.loads(os.read(read_end, 65536) or b"{}")
        finally:
            os.close(read_end)
            with contextlib.suppress(ChildProcessError):
                if os.waitpid(pid, os.WNOHANG) == (0, 0):
                    os.kill(pid, 9)
                os.waitpid(pid, 0)
    finally:
        shutil.rmtree(folder)
    assert "error" not in result, result["error"]
    assert result["held"] > 0  # the instances were there to take, then none was left
    assert result["observer"] == "PollingObserver"
    assert "token changed" in str(result["seen"])
    logged = [line for line in result["logged"] if "cannot watch files with inotify" in line]
    assert len(logged) == 1 and "fs.inotify.max_user_instances" in logged[0], result


def test_an_observer_that_cannot_start_gives_way_to_polling(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """The same, where the real limit cannot be reached (not root): inotify_init's
    EMFILE simulated, as watchdog's observer raises it."""
    import watchdog.observers

    def refused() -> None:
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(watchdog.observers, "Observer", refused)
    (tmp_path / "token").write_text("a")
    with caplog.at_level(logging.WARNING, logger="test"):
        result = watch_and_edit(tmp_path, LOG)
    assert result["observer"] == "PollingObserver"
    assert "token changed" in str(result["seen"])
    assert caplog.text.count("cannot watch files with inotify (Too many open files") == 1


def test_polling_follows_a_watched_folder_moved_away_and_replaced(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Polling looks at paths, not folders: after ``mv app app.old && mv app.new app`` the
    new folder's file is the one read, and its later edits are seen, as with inotify."""
    import watchdog.observers

    def refused() -> None:
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(watchdog.observers, "Observer", refused)
    (tmp_path / "app").mkdir()
    (tmp_path / "app/token").write_text("a")
    seen: queue.SimpleQueue[str] = queue.SimpleQueue()
    watch = FileWatch(lambda reason, keys, rerender: seen.put(reason), LOG)
    watch.add_key(KEY, [tmp_path / "app/token"])
    watch.start()
    try:
        assert type(watch._observer).__name__ == "PollingObserver"
        (tmp_path / "app.new").mkdir()
        (tmp_path / "app.new/token").write_text("b")
        os.rename(tmp_path / "app", tmp_path / "app.old")
        os.rename(tmp_path / "app.new", tmp_path / "app")
        assert "app/token changed" in seen.get(timeout=DEADLINE)
        # Once the poller's last look holds the new folder's file, and what that look
        # reported is drained, a report can only come from the edit below.
        new = os.stat(tmp_path / "app/token").st_ino
        deadline = time.monotonic() + DEADLINE
        while not all(_last_look(e, tmp_path / "app/token") == new
                      for e in watch._observer.emitters):
            assert time.monotonic() < deadline, "the poller never looked at the new folder"
            time.sleep(0.02)
        watch._observer.event_queue.join()
        while not seen.empty():
            seen.get()
        (tmp_path / "app/token").write_text("c")
        assert "app/token changed" in seen.get(timeout=DEADLINE)
    finally:
        watch.stop()


def _last_look(emitter: object, file: Path) -> int | None:
    """The inode the polling emitter's last snapshot has at ``file`` (watchdog's own)."""
    try:
        inode: int = emitter._snapshot.inode(str(file))[0]  # type: ignore[attr-defined]
    except (AttributeError, KeyError):
        return None
    return inode
