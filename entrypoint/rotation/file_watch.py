"""Watch files with watchdog: the local secrets directory, ``file:`` references and
template sources. An edit acts like a rotation of the paths that file answers.

watchdog is imported here only, and this module only when something is watched.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from entrypoint.plan.keys import SourceKey
from entrypoint.rotation.watch_moves import FolderMoves
from entrypoint.rotation.watch_observer import start_observer
from entrypoint.rotation.watch_paths import (
    absolute,
    content_mark,
    link_folders,
    realpath,
)
from entrypoint.rotation.watch_schedule import FolderSchedule, Place
from entrypoint.sources.base import Notify

__all__ = ["FileWatch", "content_mark", "link_folders"]


class FileWatch(FolderSchedule):
    """Maps changed files to the source keys they answer and calls ``notify``.

    A path reached through symbolic links is watched where it leads and in every folder
    that holds one of its links: a Kubernetes secret or ConfigMap volume is updated by
    swapping a link (``token -> ..data/token``, ``..data -> ..2026_12_02...``, the old
    folder then removed), with no event at the file itself. After such a swap the path
    is followed to where it leads now, which is watched from then on.

    What is watched for keys follows each generation (:meth:`watch_keys`): a secret an
    edited template reads from then on is watched, one no output reads any more is not.
    """

    def __init__(self, notify: Notify, log: logging.Logger) -> None:
        super().__init__(log)
        self.notify = notify
        self.files: dict[str, set[SourceKey]] = {}   # resolved file -> keys
        self.rerender_files: set[str] = set()        # template sources
        self.trees: dict[str, set[SourceKey]] = {}   # folder -> keys: any change beneath
        # Every path as given -> (what it is, where it led last, the keys it answers);
        # the tables above are made from it (:meth:`_tabulate`).
        self.given: dict[str, tuple[str, str, frozenset[SourceKey]]] = {}
        self.key_paths: dict[SourceKey, set[str]] = {}  # key -> its paths as given
        self.link_folders: set[str] = set()          # folders holding a link of a path
        # Becomes watchdog's own lock at start(); see there.
        self._lock: Any = threading.RLock()

    @property
    def folders(self) -> set[str]:
        """The folders of the watched files: an editor's rename is an event there."""
        return {os.path.dirname(path) for path in (*self.files, *self.rerender_files)}

    def add_key(self, key: SourceKey, candidates: Iterable[Path]) -> None:
        """A file is watched by itself; a folder (a ``secrets`` folder of the local
        directory, whose key ends in ``/``) whole: a file added, edited or removed
        anywhere beneath it. A candidate need not exist: the file is seen once made,
        its folder too (the local directory's ``secret/data/app.json``, Vault's API
        layout, next to ``secret/app.json``)."""
        with self._lock:
            for path in candidates:
                resolved = realpath(path)
                tree = key.path.endswith("/") or os.path.isdir(resolved)
                self._follow(absolute(path), "tree" if tree else "file", resolved,
                             frozenset({key}))
                self.key_paths.setdefault(key, set()).add(absolute(path))
                folder = resolved if tree else os.path.dirname(resolved)
                if not os.path.isdir(folder):  # awaited where it will show, not warned
                    self._lost.add((folder, tree))

    def add_template(self, path: Path) -> None:
        with self._lock:
            self._follow(absolute(path), "template", realpath(path), frozenset())

    def watch_keys(self, wanted: Mapping[SourceKey, Iterable[Path]]) -> set[SourceKey]:
        """Watch for keys exactly the paths of ``wanted`` (each key's candidates, as for
        :meth:`add_key`); a path or key left out is no longer watched. Returns the keys
        with a path watched anew: their change since their read had no event."""
        with self._lock:
            added: set[SourceKey] = set()
            for key in [k for k in self.key_paths if k not in wanted]:
                for given in self.key_paths.pop(key):
                    self._unfollow(given, key)
            for key, paths in wanted.items():
                by_given = {absolute(path): path for path in paths}
                before = self.key_paths.get(key, set())
                for given in before - set(by_given):
                    self._unfollow(given, key)
                self.key_paths[key] = before & set(by_given)
                new = [path for given, path in by_given.items() if given not in before]
                if new:
                    self.add_key(key, new)
                    added.add(key)
                elif not self.key_paths[key]:
                    del self.key_paths[key]
            self.link_folders = set().union(*(link_folders(g) for g in self.given))
            self._lost &= self._places()  # a folder awaited for a key now dropped
            if self._observer is not None:
                self._schedule_all()
        self._read_unread()
        return added

    def _follow(self, given: str, kind: str, resolved: str, keys: frozenset[SourceKey]
                ) -> None:
        _, _, before = self.given.get(given, (kind, resolved, frozenset()))
        self.given[given] = (kind, resolved, before | keys)
        self.link_folders |= link_folders(given)
        self._tabulate()

    def _unfollow(self, given: str, key: SourceKey) -> None:
        kind, resolved, keys = self.given.pop(given, ("file", "", frozenset()))
        if keys - {key} or kind == "template":  # a template is watched for itself
            self.given[given] = (kind, resolved, keys - {key})
        self._tabulate()

    def _tabulate(self) -> None:
        """The resolved files, trees and templates, with the keys each answers, from
        :attr:`given`: two paths may lead to one file, so that dropping one of them must
        not drop the other's keys."""
        files: dict[str, set[SourceKey]] = {}
        trees: dict[str, set[SourceKey]] = {}
        rerender: set[str] = set()
        for kind, resolved, keys in self.given.values():
            if kind == "template":
                rerender.add(resolved)
            else:
                (trees if kind == "tree" else files).setdefault(resolved, set()).update(keys)
        self.files, self.trees, self.rerender_files = files, trees, rerender

    def start(self) -> None:
        if not self.folders and not self.trees:
            return
        from watchdog.events import FileSystemEvent, FileSystemEventHandler

        watch = self

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                try:
                    watch.seen(event)
                except Exception:  # watchdog's only thread must never end on one event
                    watch.log.exception("file watch error; watching goes on")

        inotify_log = logging.getLogger("watchdog.observers.inotify")
        if _not_retired_noise not in inotify_log.filters:
            inotify_log.addFilter(_not_retired_noise)
        self._handler = Handler()
        # Started first: a folder then fails alone, at its schedule (ENOSPC, removed),
        # instead of at the observer's start, for all of them and the app's start.
        self._observer = start_observer(self.log, self.overflowed)
        self._moves = FolderMoves(self._observer, lambda _: self.rescan(), self.log)
        # One lock with watchdog's: its dispatch thread holds that lock while it runs the
        # handler, which takes ours, and scheduling takes watchdog's; two locks taken in
        # opposite orders here and there would deadlock the start. Swapped before any
        # other thread uses the watch (the engine's starts after this).
        self._lock = getattr(self._observer, "_lock", self._lock)
        with self._lock:
            self._settle()
            self._unread.clear()  # everything is read once the watch is up (catch_up)

    def seen(self, event: Any) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        paths = [raw.decode() if isinstance(raw, bytes) else str(raw)
                 for raw in (event.src_path, getattr(event, "dest_path", "")) if raw]
        for path in paths:
            self.changed(realpath(path))
        # A path given made, removed or replaced (by a link: ``ln -sfn app.prod.json
        # app.json``), or a link on the way of one: follow each to where it leads now.
        if any(os.path.dirname(path) in self.link_folders or absolute(path) in self.given
               for path in paths):
            self.relinked()
        if event.is_directory and event.event_type in ("created", "deleted", "moved"):
            self.rescan(paths[0] if event.event_type != "created" else None)
        self._read_unread()  # a folder swapped in while a link's new place was watched

    def _places(self) -> set[Place]:
        places = {(folder, False) for folder in self.folders | self.link_folders}
        return places | {(tree, True) for tree in self.trees}

    def rescan(self, gone: str | None = None) -> None:
        """A folder was made, removed or moved (``gone``, its old path; or one watched, or
        above one, moved away): a watched one that went stops being watched (watchdog's
        watcher ended with it, or follows it elsewhere, even when a new folder of that
        name is already there), one that is there is watched, and what it holds then is
        read again."""
        with self._lock:
            if self._observer is None:
                return
            # A folder now a link (``rm -rf kv/app && ln -s ../other/app kv/app``): its
            # watcher watched the folder removed; where the link leads is followed below.
            self._retire([p for p in self._scheduled
                          if p[0] == gone or self._named_elsewhere(p)])
            wanted = self._settle()
            back = [place for place in self._lost if place in self._scheduled]
            self._lost = {place for place in self._lost - set(back) if place in wanted}
            self._unread.update(folder for folder, _ in back)
            if back:
                self._schedule_all()  # their parents need no watch any more
        self._read_unread()

    def _read_unread(self) -> None:
        """Read again what is beneath each folder retired or watched anew: its own events
        may have gone with its old watcher, or come before its new one."""
        with self._lock:
            folders, self._unread = sorted(self._unread), set()
        for folder in folders:
            self.changed_beneath(folder)

    def _settle(self) -> set[tuple[str, bool]]:
        """Schedule until each lost folder, or the folder its return will show in, is
        watched: folders made or removed while the watches were set up have no event."""
        wanted: set[tuple[str, bool]] = set()
        for _ in range(6):
            self.relinked()  # a folder awaited may be back as a link (to elsewhere)
            wanted = self._schedule_all()
            if self._anchors() <= set(self._scheduled) and not any(
                    os.path.isdir(p[0]) for p in self._lost - set(self._scheduled)):
                break
        return wanted

    def changed_beneath(self, folder: str) -> None:
        """Everything watched in or beneath ``folder`` may have changed."""
        with self._lock:
            inside = [path for path in (*self.files, *self.rerender_files, *self.trees)
                      if path == folder or path.startswith(folder + os.sep)]
        for path in inside:
            self.changed(path if path not in self.trees else path + os.sep)

    def relinked(self) -> None:
        """A link in a watched path's way changed: follow each path to where it leads
        now; one that leads elsewhere is a change, and its new place is watched."""
        with self._lock:
            moved = []
            for given, (kind, resolved, keys) in list(self.given.items()):
                now = realpath(given)
                if now != resolved:
                    self.given[given] = (kind, now, keys)
                    moved.append((given, kind, keys))
            if moved:
                self._tabulate()
                self.link_folders = set().union(*(link_folders(g) for g in self.given))
                self._lost &= self._places()  # a removed folder no path leads to: not awaited
                if self._observer is not None:
                    self._schedule_all()
        for given, kind, keys in moved:
            if kind == "template":
                self.notify(f"template {given} changed (a link on its way was replaced)",
                            (), True)
            else:
                self.notify(f"{given} changed (a link on its way was replaced)", keys, False)

    def overflowed(self) -> None:
        """inotify's queue overflowed (``fs.inotify.max_queued_events``): which events
        were lost is unknown, so everything watched may have changed."""
        self.log.warning("file events were lost (the inotify queue overflowed); every "
                         "watched secret and template is read again",
                         extra={"event": "file_watch", "outcome": "overflow"})
        self.rescan()  # folders made or removed, and links swapped, meanwhile
        with self._lock:
            keys = set(self.key_paths)
            templates = bool(self.rerender_files)
        if keys or templates:
            self.notify("file events were lost (inotify queue overflow)", keys, templates)

    def catch_up(self, stale: Callable[[SourceKey], bool],
                 template_marks: Mapping[str, int | None],
                 only: Iterable[SourceKey] | None = None) -> None:
        """Report what changed after its first read and before its watch started (no
        event will): each watched key (of ``only``, if given) for which ``stale`` says its
        source now answers otherwise, each template whose text is no longer what the
        first render read."""
        with self._lock:
            keys = set(self.key_paths) if only is None else set(self.key_paths) & set(only)
        missed = sorted((key for key in keys if stale(key)), key=lambda k: (k[0], k[1]))
        if missed:
            labels = ", ".join(key.label for key in missed)
            self.notify(f"{labels} changed before its watch started", missed, False)
        for path, mark in template_marks.items():
            if content_mark(path) != mark:
                self.notify(f"template {path} changed before its watch started", (), True)

    def changed(self, path: str) -> None:
        with self._lock:
            keys = set(self.files.get(path, ()))
            for tree, tree_keys in self.trees.items():
                if path.startswith(tree + os.sep):
                    keys |= tree_keys
            template = path in self.rerender_files
        if keys:
            self.notify(f"{path} changed", keys, False)
        elif template:
            self.notify(f"template {path} changed", (), True)

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            if self._observer.is_alive():
                self._observer.join(timeout=5)
            self._observer = None


def _not_retired_noise(record: logging.LogRecord) -> bool:
    """watchdog logs this (raw, at error) when a watch retired here still had an event
    in flight; that event is not needed: what was beneath is read again."""
    return "called when the thread is inactive" not in str(record.msg)
