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
from entrypoint.sources.base import Notify


class FileWatch:
    """Maps changed files to the source keys they answer and calls ``notify``.

    A path reached through symbolic links is watched where it leads and in every folder
    that holds one of its links: a Kubernetes secret or ConfigMap volume is updated by
    swapping a link (``token -> ..data/token``, ``..data -> ..2026_12_02...``, the old
    folder then removed), with no event at the file itself. After such a swap the path
    is followed to where it leads now, which is watched from then on.
    """

    def __init__(self, notify: Notify, log: logging.Logger) -> None:
        self.notify = notify
        self.log = log
        self.files: dict[str, set[SourceKey]] = {}   # resolved file -> keys
        self.rerender_files: set[str] = set()        # template sources
        self.folders: set[str] = set()
        self.trees: dict[str, set[SourceKey]] = {}   # folder -> keys: any change beneath
        # A path as given -> (what it is, where it led last, the keys it answers).
        self.given: dict[str, tuple[str, str, frozenset[SourceKey]]] = {}
        self.link_folders: set[str] = set()          # folders holding a link of a path
        self._lock = threading.RLock()  # the observer's thread against catch_up's
        self._observer: Any = None
        self._handler: Any = None
        self._scheduled: set[tuple[str, bool]] = set()

    def add_key(self, key: SourceKey, candidates: Iterable[Path]) -> None:
        """A file is watched by itself; a folder (a ``secrets`` folder of the local
        directory) whole: a file added, edited or removed anywhere beneath it."""
        for path in candidates:
            resolved = os.path.realpath(path)
            kind = "tree" if os.path.isdir(resolved) else "file"
            self._follow(os.path.abspath(path), kind, resolved, frozenset({key}))

    def add_template(self, path: Path) -> None:
        self._follow(os.path.abspath(path), "template", os.path.realpath(path), frozenset())

    def _follow(self, given: str, kind: str, resolved: str, keys: frozenset[SourceKey]
                ) -> None:
        if kind == "tree":
            self.trees.setdefault(resolved, set()).update(keys)
        else:
            if kind == "file":
                self.files.setdefault(resolved, set()).update(keys)
            else:
                self.rerender_files.add(resolved)
            self.folders.add(os.path.dirname(resolved))
        if given != resolved:
            _, _, before = self.given.get(given, (kind, resolved, frozenset()))
            self.given[given] = (kind, resolved, before | keys)
            self.link_folders |= link_folders(given)

    def start(self) -> None:
        if not self.folders and not self.trees:
            return
        from watchdog.events import FileSystemEvent, FileSystemEventHandler
        from watchdog.observers import Observer

        watch = self

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                if event.event_type in ("opened", "closed_no_write"):
                    return
                for raw in (event.src_path, getattr(event, "dest_path", "")):
                    if raw:
                        path = raw.decode() if isinstance(raw, bytes) else str(raw)
                        watch.changed(os.path.realpath(path))
                        if os.path.dirname(path) in watch.link_folders:
                            watch.relinked()

        self._observer = Observer()
        self._handler = Handler()
        self._schedule_all()
        self._observer.daemon = True
        self._observer.start()

    def _schedule_all(self) -> None:
        wanted = [(folder, False) for folder in sorted(self.folders | self.link_folders)]
        wanted += [(tree, True) for tree in sorted(self.trees)]
        for folder, recursive in wanted:
            if (folder, recursive) in self._scheduled:
                continue
            if not os.path.isdir(folder):
                self.log.warning("cannot watch %s: not a folder", folder)
                continue
            self._observer.schedule(self._handler, folder, recursive=recursive)
            self._scheduled.add((folder, recursive))

    def relinked(self) -> None:
        """A link in a watched path's way changed: follow each path to where it leads
        now; one that leads elsewhere is a change, and its new place is watched."""
        with self._lock:
            moved = []
            for given, (kind, resolved, keys) in list(self.given.items()):
                now = os.path.realpath(given)
                if now != resolved:
                    self._forget(kind, resolved, keys)
                    self._follow(given, kind, now, keys)
                    self.given[given] = (kind, now, keys)
                    moved.append((given, kind, keys))
            if moved and self._observer is not None:
                self._schedule_all()
        for given, kind, keys in moved:
            if kind == "template":
                self.notify(f"template {given} changed (a link on its way was replaced)",
                            (), True)
            else:
                self.notify(f"{given} changed (a link on its way was replaced)", keys, False)

    def _forget(self, kind: str, resolved: str, keys: frozenset[SourceKey]) -> None:
        table = self.trees if kind == "tree" else self.files
        if kind == "template":
            self.rerender_files.discard(resolved)
            return
        left = table.get(resolved, set()) - keys
        if left:
            table[resolved] = left
        else:
            table.pop(resolved, None)

    def catch_up(self, stale: Callable[[SourceKey], bool],
                 template_marks: Mapping[str, int | None]) -> None:
        """Report what changed after its first read and before :meth:`start` (no event
        will): each watched key for which ``stale`` says its source now answers otherwise,
        each template whose text is no longer what the first render read."""
        with self._lock:
            keys = {key for group in (*self.files.values(), *self.trees.values())
                    for key in group}
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
            self._observer.join(timeout=5)
            self._observer = None


def link_folders(path: str, limit: int = 40) -> set[str]:
    """The folders holding a symbolic link met on the way from ``path`` to where it
    leads (as the kernel resolves it: component by component, a link's target in place
    of the link)."""
    folders: set[str] = set()
    pending = list(reversed(os.path.abspath(path).split(os.sep)))
    current = os.sep
    hops = 0
    while pending:
        name = pending.pop()
        if name in ("", "."):
            continue
        if name == "..":
            current = os.path.dirname(current)
            continue
        candidate = os.path.join(current, name)
        try:
            target = os.readlink(candidate)
        except OSError:  # not a link (or not there): a plain step
            current = candidate
            continue
        hops += 1
        if hops > limit:  # a loop: the kernel gives up at 40 too
            break
        folders.add(current)
        if os.path.isabs(target):
            current = os.sep
        pending.extend(reversed(target.split(os.sep)))
    return folders


def content_mark(path: str | Path) -> int | None:
    """What a file holds, to tell later whether it changed; None if it cannot be read."""
    try:
        with open(path, "rb") as file:
            return hash(file.read())
    except OSError:
        return None
