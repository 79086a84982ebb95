"""Moves of the watched folders and of the folders above them (``file_watch.py``).

inotify watches a folder, not its name: after ``mv app app.old && mv app.new app`` the
watch is on app.old, and nothing is told at app's name. The kernel reports a watched
folder moving (IN_MOVE_SELF), but watchdog (7.1) neither asks for it nor passes it on;
and a folder above a watched one moving (``mv kv kv.old``, the secrets folder itself) is
reported at that folder only. So each watched folder and each one above it gets a watch
of its own moving here, on watchdog's inotify instance, and a move is told by its path.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from entrypoint.rotation.watch_paths import Identity, identity

# inotify(7)'s flags, not imported from watchdog's inotify_c: this module is loaded before
# the observer, whose import keeps ctypes.util out (``watch_observer``). Asked here: the
# folder's own moves and removal, none of what it holds, on a path resolved already, added
# to the mask of a watch the folder may have already (watchdog's).
_MOVE_SELF = 0x800
_DELETE_SELF = 0x400
_ONLYDIR = 0x01000000
_DONT_FOLLOW = 0x02000000
_MASK_ADD = 0x20000000
_MASK = _MOVE_SELF | _DELETE_SELF | _ONLYDIR | _DONT_FOLLOW | _MASK_ADD


class FolderMoves:
    """Calls ``moved(path)`` when the folder at ``path`` is moved away, for every folder
    :meth:`follow` was last given and every folder above them. Without watchdog's
    inotify instance (the polling observer, another watchdog) it does nothing."""

    def __init__(self, observer: Any, moved: Callable[[str], None], log: logging.Logger
                 ) -> None:
        self._inotify: Any = getattr(observer, "_inotify_fd", None)
        if not callable(getattr(self._inotify, "add_callback", None)):
            self._inotify = None
        self._moved, self._log = moved, log
        self._lock = threading.Lock()
        self._watched: dict[str, tuple[int, Identity, _Moved]] = {}  # path -> (wd, ...)
        if self._inotify is not None:
            _ask_moves_of_every_watch(self._inotify)

    def follow(self, folders: Iterable[str]) -> None:
        """Follow the moves of ``folders`` and of every folder above them, as they are
        named now: a path that names another folder since is followed anew."""
        if self._inotify is None:
            return
        wanted = {up for folder in folders for up in _self_and_above(folder)}
        with self._lock:
            for path, (wd, ident, moved) in list(self._watched.items()):
                if path not in wanted or identity(path) != ident:
                    self._drop(path, wd, moved)
            for path in sorted(wanted - set(self._watched)):
                self._add(path)

    def _add(self, path: str) -> None:
        for _ in range(3):
            before = identity(path)
            if before is None:
                return  # gone meanwhile: the file watch awaits it from above
            moved = _Moved(self, path)
            try:
                wd = self._inotify.add_callback(os.fsencode(path), _MASK, moved, id(moved))
            except OSError:
                # Not said: a folder above may be unreadable (EACCES) where all worked
                # before, and the watch limit is said where the watched folders are.
                return
            if identity(path) == before:  # the watch is on the folder of that identity
                self._watched[path] = (wd, before, moved)
                return
            self._drop(path, wd, moved)  # replaced while it was added: again

    def _drop(self, path: str, wd: int, moved: _Moved) -> None:
        self._watched.pop(path, None)
        moved.active = False
        with contextlib.suppress(OSError):  # its folder removed: the kernel dropped it
            self._inotify.remove_callbacks([(wd, id(moved))])

    def _gone(self, path: str, moved: _Moved) -> None:
        """The kernel dropped the watch (the folder was removed): nothing to remove."""
        with self._lock:
            if self._watched.get(path, (0, (0, 0), None))[2] is moved:
                del self._watched[path]

    def _tell(self, path: str) -> None:
        try:
            self._moved(path)
        except Exception:  # watchdog's reader thread must not end: every event with it
            self._log.exception("file watch error; watching goes on")


class _Moved:
    """watchdog's WatchCallback for the watch of one folder's moves. Called on watchdog's
    reader thread, before it reads any later event: the new folder's watch is set, and
    the old one's dropped, before an edit in either can be read."""

    def __init__(self, owner: FolderMoves, path: str) -> None:
        self.owner, self.path = owner, path
        self.active = True

    def on_event(self, event: Any) -> None:
        # The watch may be shared with watchdog's own for that folder: its every event.
        if self.active and getattr(event, "is_move_self", False):
            self.owner._tell(self.path)

    def on_watch_deleted(self, wd: int) -> None:
        self.owner._gone(self.path, self)

    def on_queue_overflow(self) -> None:
        """The file watch hears of it and reads everything again (``watch_observer``)."""


def _self_and_above(folder: str) -> Iterator[str]:
    while os.path.dirname(folder) != folder:  # the root cannot be moved
        yield folder
        folder = os.path.dirname(folder)


def _ask_moves_of_every_watch(inotify: Any) -> None:
    """watchdog sets a watch's mask whole (no IN_MASK_ADD), which would drop the moves
    asked for here on a folder it watches later (the folder above a removed one, while it
    is awaited): every watch of the instance asks for them, watchdog ignores them."""
    add = inotify.add_callback

    def add_callback(path: bytes, mask: int, callback: Any, id_: int) -> Any:
        return add(path, mask | _MOVE_SELF, callback, id_)

    inotify.add_callback = add_callback
