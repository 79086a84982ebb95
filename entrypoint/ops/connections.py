"""What the control socket and the metrics listener share: one thread and one selector
serving every connection of a listening socket, each treated as hostile.

A connection is read up to ``max_request`` bytes; it has one deadline, counted from its
accept, for its whole request and its whole answer (a client sending a byte every few
seconds, or reading its answer as slowly, is dropped at that deadline); at most
``max_pending`` connections are held at once, the oldest making room for a new one (a
real client sends at once, and is read as soon as it is accepted). No send or read waits
on a client, so a silent one delays no other, and the number of threads and descriptors
stays bounded whatever the peers do.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Pending:
    """One connection: who it is (``pid`` on a unix socket, else 0), its deadline, what
    it sent so far, and the part of its answer not yet sent."""

    pid: int
    deadline: float
    received: bytearray = field(default_factory=bytearray)
    outgoing: bytes | None = None


class RequestServer:
    """Subclasses say whom to serve (:meth:`admit`), when a request is whole
    (:meth:`complete`) and what to answer (:meth:`answer`)."""

    label = "listener"  # names the server in its debug lines
    thread_name = "listener"

    def __init__(self, sock: socket.socket, log: logging.Logger, *, max_request: int,
                 max_pending: int, deadline: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.sock = sock
        self.log = log
        self.max_request = max_request
        self.max_pending = max_pending
        self.deadline = deadline
        self.clock = clock
        self.sock.setblocking(False)
        # stop() writes a byte here to wake the selector: closing a socket another thread
        # is waiting on does not wake it.
        self._wake_r, self._wake_w = socket.socketpair()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self.sock, selectors.EVENT_READ)
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._pending: dict[socket.socket, Pending] = {}  # oldest first
        self._thread = threading.Thread(target=self._serve, name=self.thread_name, daemon=True)
        self._stopped = False

    # -- what subclasses decide ----------------------------------------------------------

    def admit(self, conn: socket.socket) -> int | None:
        """The peer's pid (0 when unknown) to serve it, None to refuse it (closed then)."""
        return 0

    def complete(self, received: bytes) -> bool:
        raise NotImplementedError

    def answer(self, pending: Pending, received: bytes, ended: bool) -> bytes | None:
        """The answer to a whole request, to one cut at ``max_request`` bytes, or (with
        ``ended``) to what came before the client stopped sending; None: close unanswered."""
        raise NotImplementedError

    # -- the loop --------------------------------------------------------------------------

    @property
    def connections(self) -> int:
        """Connections held now (accepted, not yet answered and closed)."""
        return len(self._pending)

    def start_thread(self) -> None:
        self._thread.start()

    def _serve(self) -> None:
        try:
            while not self._stopped:
                self._expire()
                deadlines = [p.deadline for p in self._pending.values()]
                timeout = max(0.0, min(deadlines) - self.clock()) if deadlines else None
                for key, events in self._selector.select(timeout):
                    if key.fileobj is self._wake_r:
                        return
                    if key.fileobj is self.sock:
                        self._accept()
                    elif events & selectors.EVENT_WRITE:
                        self._send(key.fileobj)  # type: ignore[arg-type]
                    else:
                        self._read(key.fileobj)  # type: ignore[arg-type]
        finally:
            for conn in list(self._pending):
                self._drop(conn)

    def _accept(self) -> None:
        while True:  # everything the backlog holds
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.log.debug("%s: accept failed: %s", self.label, exc)
                return
            conn.setblocking(False)  # no send or read of ours may wait on a client
            try:
                pid = self.admit(conn)
            except OSError:
                pid = None
            if pid is None:
                conn.close()
                continue
            if len(self._pending) >= self.max_pending:
                self._drop(next(iter(self._pending)))  # a real client sends at once
            self._pending[conn] = Pending(pid, self.clock() + self.deadline)
            self._selector.register(conn, selectors.EVENT_READ)
            self._read(conn)  # a request already there is served before the next accept

    def _read(self, conn: socket.socket) -> None:
        pending = self._pending.get(conn)
        if pending is None or pending.outgoing is not None:
            return
        try:
            chunk = conn.recv(self.max_request - len(pending.received))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(conn)
            return
        pending.received += chunk
        received = bytes(pending.received)
        if chunk and not self.complete(received) and len(received) < self.max_request:
            return
        # Whole, or cut at the cap (the rest of a huge request never reaches our memory),
        # or the client stopped sending.
        try:
            reply = self.answer(pending, received, ended=not chunk)
        except Exception:
            self.log.exception("%s: answering a request failed", self.label)
            reply = None
        if reply is None:
            self._drop(conn)
            return
        pending.outgoing = reply
        self._selector.modify(conn, selectors.EVENT_WRITE)
        self._send(conn)

    def _send(self, conn: socket.socket) -> None:
        pending = self._pending.get(conn)
        if pending is None or pending.outgoing is None:
            return
        try:
            sent = conn.send(pending.outgoing)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(conn)
            return
        pending.outgoing = pending.outgoing[sent:]
        if not pending.outgoing:
            self._drop(conn)

    def _expire(self) -> None:
        now = self.clock()
        for conn, pending in [(c, p) for c, p in self._pending.items() if p.deadline <= now]:
            what = "read its answer" if pending.outgoing is not None else "sent its request"
            self.log.debug("%s: a client had not %s within %.0fs: dropped", self.label, what,
                           self.deadline)
            self._drop(conn)

    def _drop(self, conn: socket.socket) -> None:
        self._pending.pop(conn, None)
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(conn)
        conn.close()

    def stop(self) -> None:
        self._stopped = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)
        self._selector.close()
        for sock in (self.sock, self._wake_r, self._wake_w):
            sock.close()
