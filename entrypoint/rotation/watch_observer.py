"""The watchdog observer behind the file watch (``file_watch.py``): inotify, or polling
where inotify cannot be had."""

from __future__ import annotations

import logging
from typing import Any

# How often files are looked at when inotify cannot be used: edits are seen this late.
POLL_INTERVAL = 1.0


def start_observer(log: logging.Logger) -> Any:
    """A started observer: inotify's, or, when no inotify instance can be had, one that
    polls. ``fs.inotify.max_user_instances`` (128 by default) counts every instance of a
    user on the node, across all its containers: once it is reached, inotify_init fails
    and the app must still start, its files watched more slowly."""
    from watchdog.observers import Observer

    observer: Any = None
    try:
        observer = Observer()
        observer.daemon = True
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
