"""Which folders watchdog watches for the file watch (``file_watch.py``), and that each
is still the folder its name leads to."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable
from typing import Any

from entrypoint.rotation.watch_moves import FolderMoves
from entrypoint.rotation.watch_paths import Identity, identity, nearest_folder

Place = tuple[str, bool]  # (folder, recursive): one watch of watchdog's


class FolderSchedule:
    """The watches of the file watch's folders. inotify watches a folder, not its name:
    each watch is kept with the folder it was set on (:func:`identity`), so that one
    whose name now leads elsewhere is watched anew there."""

    def __init__(self, log: logging.Logger) -> None:
        self.log = log
        self._observer: Any = None
        self._handler: Any = None
        self._scheduled: dict[Place, Any] = {}  # (folder, recursive) -> watch
        self._idents: dict[Place, Identity | None] = {}  # the folder each was set on
        self._moves: FolderMoves | None = None
        self._lost: set[Place] = set()  # watched, then removed: read when back
        self._unread: set[str] = set()  # folders watched anew: to read again
        self._warned: set[str] = set()

    def _schedule_all(self) -> set[Place]:
        """Watch what is wanted now, and no longer what is not; follow the moves of each
        folder watched and of those above it. A folder moved away (and its name given to
        another) before its move was followed is watched anew, and read again."""
        wanted: set[Place] = set()
        for attempt in range(3):
            wanted = self._schedule_wanted()
            if self._moves is not None:
                self._moves.follow(folder for folder, _ in self._scheduled)
            # A folder watched through a link (its identity None) is left to rescan().
            replaced = [place for place in self._scheduled if self._idents.get(place)
                        and self._named_elsewhere(place)]
            if not replaced or attempt == 2:  # swapped on and on: the next rescan retires it
                break
            self._retire(replaced)
        return wanted

    def _named_elsewhere(self, place: Place) -> bool:
        """The folder watched at ``place`` is no longer what its name leads to: removed,
        moved away (another folder of that name, or none), or replaced by a link."""
        now = identity(place[0])
        return now is None or now != self._idents.get(place)

    def _retire(self, places: Iterable[Place]) -> None:
        """Stop watching ``places`` (gone, or another folder now): watched again, and read
        again, once back."""
        for place in places:
            with contextlib.suppress(Exception):  # its watcher stopped with it
                self._observer.unschedule(self._scheduled.pop(place))
            self._idents.pop(place, None)
            self._lost.add(place)
            self._unread.add(place[0])

    def _schedule_wanted(self) -> set[Place]:
        """Watch what is wanted now, and no longer what is not (a swapped-out folder:
        watchdog would reuse its stopped watcher were the name to come back). While a
        watched folder is removed, the folder that held it is watched: its return (a
        folder replaced whole) shows there."""
        anchors = self._anchors()
        wanted = self._places() | anchors
        for gone in [place for place in self._scheduled if place not in wanted]:
            with contextlib.suppress(Exception):  # its folder is gone, or never was watched
                self._observer.unschedule(self._scheduled[gone])
            del self._scheduled[gone]
            self._idents.pop(gone, None)
        for folder, recursive in sorted(wanted - set(self._scheduled)):
            if not os.path.isdir(folder):
                if (folder, recursive) in anchors:
                    continue  # gone since it was chosen: the rescan chooses again
                if (folder, recursive) not in self._lost:  # a lost one is awaited
                    self._warn_once(folder, "not a folder")
                continue
            if recursive and os.path.islink(folder):
                continue  # made a link since it was resolved: _settle() follows it
            ident = identity(folder)  # before: a folder swapped in meanwhile is retired
            try:
                # Each path is resolved first, so a folder is a link here only if it was
                # swapped since: watch where it leads (watchdog would watch the link
                # itself, IN_DONT_FOLLOW). Not for a whole tree, skipped above: links
                # beneath it would be walked too (a volume's ..data twice).
                watch = self._observer.schedule(self._handler, folder, recursive=recursive,
                                                follow_symlink=not recursive)
            except FileNotFoundError:  # removed since isdir(): awaited from above
                self._lost.add((folder, recursive))
                continue
            except OSError as exc:  # the inotify watch limit, most likely
                self._warn_once(folder, exc.strerror or str(exc))
                continue
            self._warned.discard(folder)
            self._scheduled[folder, recursive] = watch
            self._idents[folder, recursive] = ident
        return wanted

    def _places(self) -> set[Place]:
        """(folder, recursive) of every watch the paths need, their removed ones aside."""
        raise NotImplementedError

    def _warn_once(self, folder: str, reason: str) -> None:
        """Said once per folder, until it is watched again."""
        if folder not in self._warned:
            self._warned.add(folder)
            self.log.warning("cannot watch %s: %s", folder, reason)

    def _anchors(self) -> set[Place]:
        """Where the return of each removed folder will show: the nearest folder left."""
        return {(nearest_folder(os.path.dirname(folder)), False) for folder, _ in self._lost
                if not os.path.isdir(folder)}
