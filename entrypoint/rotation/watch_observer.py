"""The watchdog observer behind the file watch (``file_watch.py``): inotify, or polling
where inotify cannot be had."""

from __future__ import annotations

import logging
import sys
import types
from collections.abc import Callable
from typing import Any

# How often files are looked at when inotify cannot be used: edits are seen this late.
POLL_INTERVAL = 1.0


def start_observer(log: logging.Logger, on_overflow: Callable[[], None]) -> Any:
    """A started observer: inotify's, or, when no inotify instance can be had, one that
    polls. ``fs.inotify.max_user_instances`` (128 by default) counts every instance of a
    user on the node, across all its containers: once it is reached, inotify_init fails
    and the app must still start, its files watched more slowly. ``on_overflow`` is
    called when inotify's queue overflowed: the events lost, watchdog only logs it."""
    Observer = _inotify_observer_class()
    observer: Any = None
    try:
        observer = Observer()
        observer.daemon = True
        _hook_overflow(observer, on_overflow, log)
        observer.start()
        return observer
    except OSError as exc:
        if observer is not None and observer.is_alive():
            observer.stop()
        reason = exc.strerror or str(exc)
        log.warning("cannot watch files with inotify (%s; fs.inotify.max_user_instances "
                    "counts a user's instances across every container of the node); "
                    "polling them every %.0fs instead", reason, POLL_INTERVAL,
                    extra={"event": "file_watch", "outcome": "polling"})
    from watchdog.observers.polling import PollingObserver

    observer = PollingObserver(timeout=POLL_INTERVAL)
    observer.daemon = True
    observer.start()
    return observer


def _hook_overflow(observer: Any, on_overflow: Callable[[], None], log: logging.Logger
                   ) -> None:
    """Call ``on_overflow`` after watchdog's reader has handled IN_Q_OVERFLOW. watchdog
    (7.1) has no public hook for it; its reader calls ``handle_event`` of the observer's
    inotify instance for each event, overflow included. Without that method (another
    observer, another watchdog) overflows stay unreported, as before."""
    inotify: Any = getattr(observer, "_inotify_fd", None)
    handle = getattr(inotify, "handle_event", None)
    if handle is None:
        return

    def handle_event(event: Any) -> None:
        handle(event)
        if getattr(event, "is_queue_overflow", False):
            try:
                on_overflow()
            except Exception:  # the reader thread must not end: every later event with it
                log.exception("file watch error; watching goes on")

    inotify.handle_event = handle_event


class _CtypesUtilOnDemand(types.ModuleType):
    """Stands in for ``ctypes.util`` while watchdog is imported and loads the real one the
    moment anything is asked of it."""

    def __getattr__(self, name: str) -> Any:
        if sys.modules.get("ctypes.util") is self:
            del sys.modules["ctypes.util"]
        import ctypes.util

        return getattr(ctypes.util, name)


def _inotify_observer_class() -> Any:
    """watchdog's Observer, imported without ``ctypes.util``: watchdog (7.1) imports it and
    never calls it (it loads libc with ``CDLL(None)``), and it imports shutil, tempfile,
    bz2, lzma and zlib: 1.5 MB of the resident supervisor's memory, for nothing
    (benchmarks/README.md). Should a later watchdog call it, the stand-in loads it then."""
    stand_in = None
    if "ctypes.util" not in sys.modules:
        stand_in = sys.modules["ctypes.util"] = _CtypesUtilOnDemand("ctypes.util")
    try:
        from watchdog.observers import Observer
    finally:
        if stand_in is not None and sys.modules.get("ctypes.util") is stand_in:
            del sys.modules["ctypes.util"]
    return Observer
