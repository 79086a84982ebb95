"""``entrypoint rotate``: ask the running entrypoint to re-fetch every dynamic secret now.

The running entrypoint listens on a unix socket (``control_socket``). A socket, not a
signal: every signal an app might use is forwarded to it, so none is free to keep for
ourselves. By default (``auto``) it is the abstract socket ``@entrypoint-<N>``, where N
identifies the container's mount namespace: an abstract name is shared by every process
of a network namespace, and the containers of one pod or ECS task share theirs, while
each container has its own mount namespace (and ``docker exec`` joins it, so the client
computes the same name).

Both ends check who is on the other side with ``SO_PEERCRED``: the server answers only
root or its own user, and the client believes only a server running as root or as the
client's user (a user who took the name first cannot answer a fake "ok"). The server
treats every connection as hostile: a request is read up to :data:`MAX_REQUEST` bytes,
each connection has a deadline, connections are served side by side (a silent one
delays no other), and refused connections are logged at most once a minute.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from entrypoint.config.model import Config
from entrypoint.errors import PermissionDenied, UnavailableError, UsageError

REQUEST = b"rotate\n"
STATUS = b"status\n"
MAX_REQUEST = 64  # bytes; the longest request is 7: anything longer is refused unread
MAX_REPLY = 256
MAX_STATUS = 1 << 20  # a status reply (JSON) is read up to this, then cut
CLIENT_TIMEOUT = 10.0
CONNECTION_DEADLINE = 2.0  # a client that has not sent its request by then is dropped
MAX_PENDING = 16  # connections waiting for their request; the oldest makes room
WARN_EVERY = 60.0  # seconds between two warnings about refused connections
AUTO = "auto"
FALLBACK = "@entrypoint"  # when the mount namespace cannot be read (no /proc)


def resolve_name(name: str) -> str:
    """``auto`` -> ``@entrypoint-<mount namespace inode>``; any other name as given."""
    if name != AUTO:
        return name
    try:
        namespace = os.readlink("/proc/self/ns/mnt")  # "mnt:[4026532451]"
    except OSError:
        return FALLBACK
    digits = namespace[namespace.find("[") + 1:namespace.rfind("]")]
    return f"{FALLBACK}-{digits}" if digits.isdigit() else FALLBACK


def address(name: str) -> str | bytes:
    """``@NAME`` is an abstract socket (Linux); anything else a filesystem path."""
    return b"\0" + name[1:].encode() if name.startswith("@") else name


def peer(sock: socket.socket) -> tuple[int, int]:
    """(pid, uid) of the process at the other end, as the kernel saw it connect/listen."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, _ = struct.unpack("3i", creds)
    return pid, uid


def trusted(uid: int) -> bool:
    return uid in (0, os.getuid())


# -- the client: entrypoint rotate --------------------------------------------------------

def request_rotation(config: Config, env: Mapping[str, str], log: logging.Logger) -> int:
    reply = _ask(config, REQUEST, MAX_REPLY).split("\n", 1)[0].strip()
    if reply.startswith("denied"):
        raise PermissionDenied(f"the running entrypoint refused: {reply}")
    if not reply.startswith("ok"):
        raise UnavailableError(f"unexpected answer from the running entrypoint: {reply!r}")
    log.info("rotation requested: %s", reply)
    print(reply)
    return 0


def request_status(config: Config) -> dict[str, Any]:
    """The running entrypoint's status snapshot (entrypoint/commands/status.py)."""
    reply = _ask(config, STATUS, MAX_STATUS)
    if reply.startswith("denied"):
        raise PermissionDenied(f"the running entrypoint refused: {reply.strip()}")
    try:
        snap = json.loads(reply)
    except ValueError:
        raise UnavailableError("unexpected answer from the running entrypoint: "
                               f"{reply[:80]!r}") from None
    if not isinstance(snap, dict):
        raise UnavailableError("unexpected answer from the running entrypoint")
    return snap


def _ask(config: Config, request: bytes, limit: int) -> str:
    if not config.control_socket:
        raise UsageError("control_socket is empty, so the running entrypoint does not listen",
                         hint="set control_socket to the value the running entrypoint uses")
    name = resolve_name(config.control_socket)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # A blocking connect bounded by SO_SNDTIMEO: with a timeout set, Python connects in
    # non-blocking mode, and a unix socket whose backlog is full (silent clients ahead of
    # us) then fails at once with EAGAIN instead of waiting for the server to accept.
    seconds = int(CLIENT_TIMEOUT)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", seconds, 0))
    try:
        sock.connect(address(name))
        sock.settimeout(CLIENT_TIMEOUT)
        pid, uid = peer(sock)
        if not trusted(uid):
            raise PermissionDenied(
                f"the process listening on control socket {name} runs as uid {uid} "
                f"(pid {pid}), neither root nor your user: it is not the entrypoint, and "
                f"nothing was asked of it",
                hint="another process took the name first; see 'control socket' in "
                     "docs/security.md")
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request)  # a server that refuses us says why, then hangs up
        return _read_reply(sock, limit)
    except (FileNotFoundError, ConnectionRefusedError):
        raise UnavailableError(
            f"no running entrypoint listens on control socket {name}",
            hint="run this inside the container of a running entrypoint "
                 "(docker exec CONTAINER entrypoint rotate)") from None
    except OSError as exc:
        raise UnavailableError(f"control socket {name}: {exc.strerror or exc}") from None
    finally:
        sock.close()


def _read_reply(sock: socket.socket, limit: int) -> str:
    """The server's answer (one line), read up to ``limit`` bytes (a server is not
    trusted with our memory either)."""
    data = bytearray()
    while b"\n" not in data and len(data) < limit:
        chunk = sock.recv(min(65536, limit - len(data)))
        if not chunk:
            break
        data += chunk
    return bytes(data).split(b"\n", 1)[0].decode("utf-8", "replace")


# -- the server -------------------------------------------------------------------------

@dataclass
class _Pending:
    pid: int
    deadline: float
    received: bytearray = field(default_factory=bytearray)


class _RefusalLog:
    """At most one warning per ``every`` seconds for refused connections; the next one
    says how many were not shown (22,000 refused connections are not 22,000 lines)."""

    def __init__(self, log: logging.Logger, clock: Callable[[], float],
                 every: float = WARN_EVERY) -> None:
        self.log = log
        self.clock = clock
        self.every = every
        self.next_at = float("-inf")
        self.hidden = 0

    def refused(self, uid: int, pid: int) -> None:
        now = self.clock()
        if now < self.next_at:
            self.hidden += 1
            return
        more = (f"; {self.hidden} more refused since the last warning" if self.hidden else "")
        self.log.warning("refused a rotation request from uid %d (pid %d): only root or the "
                         "entrypoint's user may rotate%s", uid, pid, more)
        self.hidden = 0
        self.next_at = now + self.every


class ControlServer:
    """Accepts ``rotate`` requests and hands them to ``on_rotate``, from one thread."""

    def __init__(self, name: str, on_rotate: Callable[[str], None], log: logging.Logger,
                 *, on_status: Callable[[], bytes] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 deadline: float = CONNECTION_DEADLINE) -> None:
        self.name = resolve_name(name)
        self.on_rotate = on_rotate
        self.on_status = on_status
        self.log = log
        self.clock = clock
        self.deadline = deadline
        self.refusals = _RefusalLog(log, clock)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        addr = address(self.name)
        if isinstance(addr, str) and os.path.exists(addr):
            os.unlink(addr)  # a socket file left by a previous run of this container
        try:
            self.sock.bind(addr)
        except OSError as exc:
            self.sock.close()
            taken = exc.errno == errno.EADDRINUSE
            hint = ("another process in this network namespace (another container of the "
                    "same pod or task?) listens on it: give each container its own "
                    "control_socket, or leave it at auto" if taken else
                    "set control_socket to a free name, or empty")
            raise UnavailableError(f"cannot listen on control socket {self.name}: "
                                   f"{exc.strerror}", hint=hint) from None
        self.sock.listen(MAX_PENDING)
        self.sock.setblocking(False)
        # stop() writes a byte here to wake the selector: closing a socket another thread
        # is waiting on does not wake it.
        self._wake_r, self._wake_w = socket.socketpair()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self.sock, selectors.EVENT_READ)
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._pending: dict[socket.socket, _Pending] = {}  # oldest first
        self._thread = threading.Thread(target=self._serve, name="control", daemon=True)
        self._stopped = False

    def start(self) -> None:
        self._thread.start()
        self.log.debug("listening for 'entrypoint rotate' on %s", self.name)

    def _serve(self) -> None:
        try:
            while not self._stopped:
                self._expire()
                deadlines = [p.deadline for p in self._pending.values()]
                timeout = max(0.0, min(deadlines) - self.clock()) if deadlines else None
                for key, _ in self._selector.select(timeout):
                    if key.fileobj is self._wake_r:
                        return
                    if key.fileobj is self.sock:
                        self._accept()
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
                self.log.debug("control socket: accept failed: %s", exc)
                return
            conn.setblocking(False)  # no send or read of ours may wait on a client
            try:
                pid, uid = peer(conn)
            except OSError:
                conn.close()
                continue
            if not trusted(uid):
                with contextlib.suppress(OSError):
                    conn.send(b"denied: only root or the entrypoint's user may rotate\n")
                conn.close()
                self.refusals.refused(uid, pid)
                continue
            if len(self._pending) >= MAX_PENDING:
                self._drop(next(iter(self._pending)))  # a real client sends at once
            self._pending[conn] = _Pending(pid, self.clock() + self.deadline)
            self._selector.register(conn, selectors.EVENT_READ)

    def _read(self, conn: socket.socket) -> None:
        pending = self._pending.get(conn)
        if pending is None:
            return
        try:
            chunk = conn.recv(MAX_REQUEST - len(pending.received))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(conn)
            return
        if not chunk:
            self._drop(conn)
            return
        pending.received += chunk
        if b"\n" in pending.received:
            line = bytes(pending.received.split(b"\n", 1)[0]) + b"\n"
            if line == REQUEST:
                self.on_rotate(f"rotation requested by 'entrypoint rotate' (pid {pending.pid})")
                self._reply(conn, b"ok: every dynamic secret will be fetched again, then one "
                                  b"action\n")
            elif line == STATUS and self.on_status is not None:
                self._reply(conn, self._status())
            else:
                self._reply(conn, b"error: unknown request\n")
        elif len(pending.received) >= MAX_REQUEST:
            # Dropped unread: the rest of a huge request never reaches our memory.
            self._reply(conn, b"error: request too long\n")

    def _status(self) -> bytes:
        assert self.on_status is not None
        try:
            return self.on_status()
        except Exception:
            self.log.exception("control socket: building the status failed")
            return b"error: status unavailable\n"

    def _reply(self, conn: socket.socket, answer: bytes) -> None:
        # Into an empty socket buffer (200 KiB and more on Linux, a status is a few KiB):
        # never blocks; what does not fit is cut rather than waited for.
        with contextlib.suppress(OSError):
            conn.send(answer)
        self._drop(conn)

    def _expire(self) -> None:
        now = self.clock()
        for conn in [c for c, p in self._pending.items() if p.deadline <= now]:
            self.log.debug("control socket: a client sent no request within %.0fs",
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
        addr = address(self.name)
        if isinstance(addr, str) and os.path.exists(addr):
            os.unlink(addr)
