"""``ready_file``: a file that exists exactly while the app may be sent work.

It appears (atomically: written aside, then renamed into place, so a probe never sees a
half-written file) once the first values are resolved and rendered and the app was
started on them (in sidecar mode: once the files are rendered). It is removed when a stop
begins (before ``stop_delay``, so load balancers drain first), while the app is being
restarted, and at exit. A probe is then ``test -f PATH`` (``/ready`` on the metrics
listener says the same).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from entrypoint.ops.state import Observer


class ReadyFile:
    def __init__(self, path: Path | None, observer: Observer, log: logging.Logger) -> None:
        self.path = path
        self.observer = observer
        self.log = log
        # One left by an earlier run of this container (a restart keeps the volume) must
        # not say "ready" before this run is.
        self._remove()

    def set(self, ready: bool) -> None:
        if ready == self.observer.ready:
            return
        self.observer.ready = ready
        if self.path is None:
            return
        if ready:
            self._create()
        else:
            self._remove()
        self.log.debug("ready file %s %s", self.path, "created" if ready else "removed",
                       extra={"event": "ready" if ready else "not_ready"})

    def _create(self) -> None:
        # Here, not at the top: tempfile brings shutil, random, bz2 and lzma, 0.9 MB
        # the supervisor would keep for its whole life with no ready file configured.
        import tempfile

        assert self.path is not None
        tmp: str | None = None
        try:
            fd, tmp = tempfile.mkstemp(prefix=".ready-", dir=self.path.parent)
            with os.fdopen(fd, "w") as out:
                out.write(f"{os.getpid()}\n")
            os.chmod(tmp, 0o644)  # a probe may run as another user
            os.replace(tmp, self.path)
        except OSError as exc:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
            self.log.warning("cannot create the ready file %s: %s", self.path,
                             exc.strerror or exc)

    def _remove(self) -> None:
        if self.path is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        except OSError as exc:
            self.log.warning("cannot remove the ready file %s: %s", self.path,
                             exc.strerror or exc)
