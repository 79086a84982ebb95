"""Watch files with watchdog: the local secrets directory, ``file:`` references and
template sources. An edit acts like a rotation of the paths that file answers.

watchdog is imported here only, and this module only when something is watched.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from entrypoint.plan.keys import SourceKey
from entrypoint.sources.base import Notify


class FileWatch:
    """Maps changed files to the source keys they answer and calls ``notify``."""

    def __init__(self, notify: Notify, log: logging.Logger) -> None:
        self.notify = notify
        self.log = log
        self.files: dict[str, set[SourceKey]] = {}   # resolved file -> keys
        self.rerender_files: set[str] = set()        # template sources
        self.folders: set[str] = set()
        self.trees: dict[str, set[SourceKey]] = {}   # folder -> keys: any change beneath
        self._observer: Any = None

    def add_key(self, key: SourceKey, candidates: Iterable[Path]) -> None:
        """A file is watched by itself; a folder (a ``secrets`` folder of the local
        directory) whole: a file added, edited or removed anywhere beneath it."""
        for path in candidates:
            resolved = os.path.realpath(path)
            if os.path.isdir(resolved):
                self.trees.setdefault(resolved, set()).add(key)
                continue
            self.files.setdefault(resolved, set()).add(key)
            self.folders.add(os.path.dirname(resolved))

    def add_template(self, path: Path) -> None:
        resolved = os.path.realpath(path)
        self.rerender_files.add(resolved)
        self.folders.add(os.path.dirname(resolved))

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

        observer = Observer()
        handler = Handler()
        for folder in sorted(self.folders):
            if os.path.isdir(folder):
                observer.schedule(handler, folder, recursive=False)
            else:
                self.log.warning("cannot watch %s: not a folder", folder)
        for tree in sorted(self.trees):
            observer.schedule(handler, tree, recursive=True)
        observer.daemon = True
        observer.start()
        self._observer = observer

    def catch_up(self, stale: Callable[[SourceKey], bool],
                 template_marks: Mapping[str, int | None]) -> None:
        """Report what changed after its first read and before :meth:`start` (no event
        will): each watched key for which ``stale`` says its source now answers otherwise,
        each template whose text is no longer what the first render read."""
        keys = {key for group in (*self.files.values(), *self.trees.values()) for key in group}
        missed = sorted((key for key in keys if stale(key)), key=lambda k: (k[0], k[1]))
        if missed:
            labels = ", ".join(key.label for key in missed)
            self.notify(f"{labels} changed before its watch started", missed, False)
        for path, mark in template_marks.items():
            if content_mark(path) != mark:
                self.notify(f"template {path} changed before its watch started", (), True)

    def changed(self, path: str) -> None:
        keys = set(self.files.get(path, ()))
        for tree, tree_keys in self.trees.items():
            if path.startswith(tree + os.sep):
                keys |= tree_keys
        if keys:
            self.notify(f"{path} changed", keys, False)
        elif path in self.rerender_files:
            self.notify(f"template {path} changed", (), True)

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None


def content_mark(path: str | Path) -> int | None:
    """What a file holds, to tell later whether it changed; None if it cannot be read."""
    try:
        with open(path, "rb") as file:
            return hash(file.read())
    except OSError:
        return None
