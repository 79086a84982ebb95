"""``ready_file``: a file that exists exactly while the app may be sent work.

It appears (atomically: written aside, then renamed into place, so a probe never sees a
half-written file) once the first values are resolved and rendered and the app was
started on them (in sidecar mode: once the files are rendered). It is removed when a stop
begins (before ``stop_delay``, so load balancers drain first), while the app is being
restarted, and at exit. A probe is then ``test -f PATH`` (``/ready`` on the metrics
listener says the same).
"""

from __future__ import annotations

import contextlib
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
        # The app may be able to write the ready file's folder, and this runs as root:
        # the folder is reached without following a link others planted, and the temp
        # file is made, chmod-ed and renamed through descriptors (a chmod by name
        # followed a link the app swapped in for it, making any file 0644).
        from entrypoint.render.safepath import open_folder, reason

        assert self.path is not None
        tmp = f".ready-{os.urandom(6).hex()}"
        folder: int | None = None
        try:
            folder = open_folder(self.path.parent)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o600, dir_fd=folder)
            with os.fdopen(fd, "w") as out:
                out.write(f"{os.getpid()}\n")
                out.flush()
                os.fchmod(fd, 0o644)  # a probe may run as another user
            os.replace(tmp, self.path.name, src_dir_fd=folder, dst_dir_fd=folder)
        except OSError as exc:
            if folder is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp, dir_fd=folder)
            self.log.warning("cannot create the ready file %s: %s", self.path, reason(exc))
        finally:
            if folder is not None:
                os.close(folder)

    def _remove(self) -> None:
        if self.path is None:
            return
        from entrypoint.render.safepath import open_folder, reason

        try:
            folder = open_folder(self.path.parent)
        except FileNotFoundError:
            return
        except OSError as exc:
            self.log.warning("cannot remove the ready file %s: %s", self.path, reason(exc))
            return
        try:
            os.unlink(self.path.name, dir_fd=folder)
        except FileNotFoundError:
            pass
        except OSError as exc:
            self.log.warning("cannot remove the ready file %s: %s", self.path, reason(exc))
        finally:
            os.close(folder)
