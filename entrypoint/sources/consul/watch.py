"""Watch Consul keys with blocking queries: a change acts like a rotation of that key.

One daemon thread per key, parked in :meth:`ConsulSource.watch` (a blocking query), so a
change reaches the engine as soon as Consul answers. The thread only compares and
notifies: the engine marks the key dirty and its successor generation reads it again.
An outage is retried with capped, jittered backoff and logged, never silently dropped.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from entrypoint import backoff
from entrypoint.errors import EntrypointError
from entrypoint.plan.keys import SourceKey
from entrypoint.secret import Secret
from entrypoint.sources.base import Fetched, Notify

WAIT = 300.0  # Consul's own default for a blocking query


class Watchable(Protocol):
    def watch(self, key: str, index: int, wait: float) -> tuple[int, Secret | None]: ...

    def interrupt(self, thread: threading.Thread) -> None: ...

    def release(self) -> None: ...


@dataclass
class _Watched:
    """One key's blocking-query thread, from the read it was started with."""

    index: int
    last: Secret | None
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None


class ConsulWatch:
    """Feeds ``notify(reason, [key], False)`` when a watched Consul key's value changes.

    What it watches follows each generation (:meth:`watch_keys`): a key a template reads
    only after an edit is watched from then on, and one nothing reads any more is no
    longer watched, its query cut short (:meth:`Watchable.interrupt`)."""

    def __init__(self, source: Watchable, notify: Notify, log: logging.Logger, *,
                 wait: float = WAIT, rng: Callable[[], float] = random.random) -> None:
        self.source = source
        self.notify = notify
        self.log = log
        self.wait = wait
        self.rng = rng
        self._keys: dict[SourceKey, _Watched] = {}
        self._started = False
        self._stopped = False
        self._guard = threading.Lock()

    def add_key(self, key: SourceKey, fetched: Fetched) -> None:
        """Watch ``key`` from the read in ``fetched``; a key already watched is left alone."""
        with self._guard:
            self._add(key, fetched)

    def watch_keys(self, keys: Sequence[tuple[SourceKey, Fetched]]) -> None:
        """Watch exactly ``keys`` from now on. A key watched already goes on from where its
        query is; one new is watched from its read in ``keys``, so that a change made since
        that read is answered at once; one left out is no longer watched."""
        wanted = dict(keys)
        with self._guard:
            left = [self._keys.pop(key) for key in list(self._keys) if key not in wanted]
            for key, fetched in wanted.items():
                self._add(key, fetched)
        for watched in left:
            self._end(watched)

    def start(self) -> None:
        with self._guard:
            self._started = True
            for key, watched in self._keys.items():
                self._spawn(key, watched)

    def stop(self) -> None:
        """End every query now; a thread ends as its request fails."""
        with self._guard:
            self._stopped = True
            ended, self._keys = list(self._keys.values()), {}
        for watched in ended:
            self._end(watched)

    @property
    def watching(self) -> list[SourceKey]:
        with self._guard:
            return [k for k, w in self._keys.items()
                    if w.thread is not None and w.thread.is_alive()]

    def _add(self, key: SourceKey, fetched: Fetched) -> None:
        if key in self._keys or self._stopped:
            return
        watched = self._keys[key] = _Watched(fetched.version or 0, fetched.data.get(""))
        if self._started:
            self._spawn(key, watched)

    def _end(self, watched: _Watched) -> None:
        watched.stop.set()
        if watched.thread is not None:
            self.source.interrupt(watched.thread)

    def _spawn(self, key: SourceKey, watched: _Watched) -> None:
        watched.thread = threading.Thread(target=self._run, args=(key, watched), daemon=True,
                                          name=f"consul-watch:{key[1]}")
        watched.thread.start()

    def _run(self, key: SourceKey, watched: _Watched) -> None:
        try:
            self._loop(key, watched)
        finally:
            self.source.release()  # its connection goes with it, not at the process's end

    def _loop(self, key: SourceKey, watched: _Watched) -> None:
        index, last, stop = watched.index, watched.last, watched.stop
        label = f"consul:{key[1]}"
        failures = 0
        while not stop.is_set():
            try:
                index, value = self.source.watch(key[1], index, self.wait)
            except EntrypointError as exc:
                if stop.is_set():
                    return  # cut short on purpose: not a failure
                failures += 1
                delay = backoff.running_delay(failures, self.rng)
                self.log.warning("watching %s failed: %s; retry in %.1fs", label, exc, delay,
                                 extra={"attempt": failures})
                # Retry with a plain read: an agent that came back without its state has an
                # index below ours, and a blocking query on ours would wait out its whole
                # wait (5 minutes) before telling us, a change on the new agent unseen.
                index = 0
                if stop.wait(delay):
                    return
                continue
            if failures:
                self.log.info("recovered: watching %s after %d failed attempts", label,
                              failures)
                failures = 0
            if stop.is_set():
                return
            if value != last:
                last = value
                what = "was deleted" if value is None else "changed"
                self.notify(f"{label} {what}", [key], False)
