"""inotify's queue overflows (``fs.inotify.max_queued_events``) when its reader falls
behind: the events past its end are lost, and watchdog only logs it. The edit of a
watched file among them went unseen; now every watched secret and template is reported
changed, to be read again."""

from __future__ import annotations

import logging
import queue
import time
from pathlib import Path

import pytest

from entrypoint.plan.keys import SourceKey
from entrypoint.rotation.file_watch import FileWatch

LOG = logging.getLogger("test")
DEADLINE = 10.0


def queued_events_limit() -> int:
    return int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())


def test_lost_events_report_everything_watched_as_changed(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    key = SourceKey("file", "token")
    (tmp_path / "token").write_text("a")
    (tmp_path / "app.tmpl").write_text("{{ x }}")
    seen: queue.SimpleQueue[tuple[str, frozenset[SourceKey], bool]] = queue.SimpleQueue()
    watch = FileWatch(lambda reason, keys, rerender: seen.put((reason, frozenset(keys),
                                                                rerender)), LOG)
    watch.add_key(key, [tmp_path / "token"])
    watch.add_template(tmp_path / "app.tmpl")
    watch.start()
    try:
        # A reader starved on a busy node cannot be had on demand: holding the lock its
        # handling of events takes stands for it, while an app writes files next to its
        # secret, one event more than the queue holds per file.
        with caplog.at_level(logging.WARNING), watch._observer._inotify_fd._lock:
            for n in range(queued_events_limit() + 1):
                (tmp_path / f"cache-{n}.tmp").touch()
            (tmp_path / "token").write_text("b")
        deadline = time.monotonic() + DEADLINE
        while True:
            left = deadline - time.monotonic()
            assert left > 0, "the overflow was never reported"
            try:
                reason, keys, rerender = seen.get(timeout=left)
            except queue.Empty:
                continue
            if "events were lost" in reason:
                break
        assert keys == {key} and rerender
        assert caplog.text.count("file events were lost (the inotify queue overflowed)") == 1
    finally:
        watch.stop()
