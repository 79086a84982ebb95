"""Watch files with watchdog: the local secrets directory, ``file:`` references and
template sources. An edit acts like a rotation of the paths that file answers.

watchdog is imported here only, and this module only when something is watched.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
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
        self._observer: Any = None

    def add_key(self, key: SourceKey, candidates: Iterable[Path]) -> None:
        for path in candidates:
            resolved = os.path.realpath(path)
            self.files.setdefault(resolved, set()).add(key)
            self.folders.add(os.path.dirname(resolved))

    def add_template(self, path: Path) -> None:
        resolved = os.path.realpath(path)
        self.rerender_files.add(resolved)
        self.folders.add(os.path.dirname(resolved))

    def start(self) -> None:
        if not self.folders:
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
        observer.daemon = True
        observer.start()
        self._observer = observer

    def changed(self, path: str) -> None:
        keys = self.files.get(path)
        if keys:
            self.notify(f"{path} changed", keys, False)
        elif path in self.rerender_files:
            self.notify(f"template {path} changed", (), True)

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None
