"""Sources' own watches (Consul's blocking queries), following each generation.

A watched value that no file answers is watched by its source (``Source.start_watch``).
Which values are watched follows what each generation's outputs read, as for files
(:class:`~entrypoint.rotation.file_watch.FileWatch`): a key a template reads only after
an edit, or after another value changed one of its conditions, is watched from then on;
one that nothing reads any more is not, and its query ends.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Container, Sequence
from typing import TYPE_CHECKING

from entrypoint.sources.base import Fetched, Notify, Refresh, Source, Watcher

if TYPE_CHECKING:
    from entrypoint.plan.keys import SourceKey
    from entrypoint.plan.resolve import Generation


def in_use(generation: Generation, key: SourceKey) -> bool:
    """Whether ``generation``'s outputs read ``key``: a value carried over from an older
    generation is kept there even when nothing reads it any more."""
    return key not in generation.seeded or key in generation.used


def to_watch(generation: Generation) -> dict[SourceKey, Fetched | None]:
    """What ``generation``'s outputs read that is to be watched, each from its read: the
    values watched (not one carried over that nothing reads any more), and the paths a
    failing template asked for and did not find, whose making is a change (as
    consul-template renders once a missing key appears), from the read that found
    nothing where the source can watch from it (None: a file can answer it)."""
    wanted: dict[SourceKey, Fetched | None] = {
        key: fetched for key, fetched in generation.fetched.items()
        if fetched.refresh is Refresh.WATCH and in_use(generation, key)}
    for key, missing in generation.missing.items():
        if key not in generation.fetched:
            wanted[key] = missing.absent
    return wanted


class SourceWatches:
    """One watcher per source that watches on its own, made when its first key comes."""

    def __init__(self, source: Callable[[str], Source], notify: Notify,
                 log: logging.Logger) -> None:
        # By scheme, at each call: a source first used after the start is watched too.
        self._source = source
        self._notify = notify
        self._log = log
        self._watchers: dict[str, Watcher] = {}
        self._lock = threading.Lock()  # the start's thread, then the engine's
        self._stopped = False

    def follow(self, generation: Generation, covered: Container[SourceKey]) -> None:
        """Watch the values ``generation``'s outputs read that are to be watched and that
        no file answers (``covered``: the keys the file watch has), and no others."""
        wanted: dict[str, list[tuple[SourceKey, Fetched]]] = {}
        for key, fetched in to_watch(generation).items():
            if fetched is not None and key not in covered:
                wanted.setdefault(key.scheme, []).append((key, fetched))
        with self._lock:
            if self._stopped:
                return
            for scheme in sorted(wanted.keys() | self._watchers.keys()):
                self._follow(scheme, wanted.get(scheme, []))

    def _follow(self, scheme: str, keys: Sequence[tuple[SourceKey, Fetched]]) -> None:
        watcher = self._watchers.get(scheme)
        if watcher is not None:
            watcher.watch_keys(keys)
        elif keys:
            started = self._source(scheme).start_watch(keys, self._notify, self._log)
            if started is not None:
                self._watchers[scheme] = started

    def get(self, scheme: str) -> Watcher | None:
        with self._lock:
            return self._watchers.get(scheme)

    def stop(self) -> None:
        """Stop every watcher; none is started afterwards."""
        with self._lock:
            self._stopped = True
            watchers, self._watchers = list(self._watchers.values()), {}
        for watcher in watchers:
            watcher.stop()
