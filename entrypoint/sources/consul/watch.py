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
from collections.abc import Callable
from typing import Protocol

from entrypoint import backoff
from entrypoint.errors import EntrypointError
from entrypoint.plan.keys import SourceKey
from entrypoint.secret import Secret
from entrypoint.sources.base import Fetched, Notify

WAIT = 300.0  # Consul's own default for a blocking query


class Watchable(Protocol):
    def watch(self, key: str, index: int, wait: float) -> tuple[int, Secret | None]: ...


class ConsulWatch:
    """Feeds ``notify(reason, [key], False)`` when a watched Consul key's value changes."""

    def __init__(self, source: Watchable, notify: Notify, log: logging.Logger, *,
                 wait: float = WAIT, rng: Callable[[], float] = random.random) -> None:
        self.source = source
        self.notify = notify
        self.log = log
        self.wait = wait
        self.rng = rng
        self._keys: dict[SourceKey, tuple[int, Secret | None]] = {}
        self._threads: dict[SourceKey, threading.Thread] = {}
        self._stop = threading.Event()
        self._started = False
        self._guard = threading.Lock()

    def add_key(self, key: SourceKey, fetched: Fetched) -> None:
        """Watch ``key`` from the read in ``fetched``; a key already watched is left alone."""
        with self._guard:
            if key in self._keys:
                return
            self._keys[key] = (fetched.version or 0, fetched.data.get(""))
            if self._started:
                self._spawn(key)

    def start(self) -> None:
        with self._guard:
            self._started = True
            for key in self._keys:
                self._spawn(key)

    def stop(self) -> None:
        """Threads end at their next answer; being daemons, a parked one never holds up exit."""
        self._stop.set()

    @property
    def watching(self) -> list[SourceKey]:
        with self._guard:
            return [k for k, t in self._threads.items() if t.is_alive()]

    def _spawn(self, key: SourceKey) -> None:
        thread = threading.Thread(target=self._loop, args=(key,), daemon=True,
                                  name=f"consul-watch:{key[1]}")
        self._threads[key] = thread
        thread.start()

    def _loop(self, key: SourceKey) -> None:
        index, last = self._keys[key]
        label = f"consul:{key[1]}"
        failures = 0
        while not self._stop.is_set():
            try:
                index, value = self.source.watch(key[1], index, self.wait)
            except EntrypointError as exc:
                failures += 1
                delay = backoff.running_delay(failures, self.rng)
                self.log.warning("watching %s failed: %s; retry in %.1fs", label, exc, delay,
                                 extra={"attempt": failures})
                # Retry with a plain read: an agent that came back without its state has an
                # index below ours, and a blocking query on ours would wait out its whole
                # wait (5 minutes) before telling us, a change on the new agent unseen.
                index = 0
                if self._stop.wait(delay):
                    return
                continue
            if failures:
                self.log.info("recovered: watching %s after %d failed attempts", label,
                              failures)
                failures = 0
            if self._stop.is_set():
                return
            if value != last:
                last = value
                what = "was deleted" if value is None else "changed"
                self.notify(f"{label} {what}", [key], False)
