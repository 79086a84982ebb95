"""A file watch under test and what it notices: fixtures and waits the file-watch tests
share (``seen`` and ``watch`` are fixtures of every test, by tests/conftest.py)."""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Iterator

import pytest

from entrypoint.plan.keys import SourceKey
from entrypoint.rotation.file_watch import FileWatch

LOG = logging.getLogger("test")
DEADLINE = 10.0
# What a link swap on the way to a watched path is told as.
RELINKED = "a link on its way was replaced"
Seen = queue.SimpleQueue[tuple[str, frozenset[SourceKey], bool]]  # reason, keys, rerender


@pytest.fixture
def seen() -> Seen:
    return queue.SimpleQueue()


@pytest.fixture
def watch(seen: Seen) -> Iterator[FileWatch]:
    """A file watch that puts each notice in ``seen``; stopped after the test."""
    files = FileWatch(lambda reason, keys, rerender: seen.put((reason, frozenset(keys),
                                                                rerender)), LOG)
    yield files
    files.stop()


def next_notice(seen: Seen, want: SourceKey | frozenset[SourceKey], saying: str = "",
                rerender: bool = False) -> str:
    """The next notice for ``want`` (one key, or exactly these) whose reason holds
    ``saying``; others are passed over (what was there leaving, removed or moved away,
    is a change too)."""
    keys_wanted = frozenset({want}) if isinstance(want, SourceKey) else want
    deadline = time.monotonic() + DEADLINE
    while (left := deadline - time.monotonic()) > 0:
        try:
            reason, keys, again = seen.get(timeout=left)
        except queue.Empty:
            break
        if keys == keys_wanted and again == rerender and saying in reason:
            return reason
    raise AssertionError(f"no notice for {set(keys_wanted)} saying {saying!r} "
                         f"within {DEADLINE}s")


def drain(seen: Seen) -> None:
    """Pass over every notice already told."""
    while not seen.empty():
        seen.get()
