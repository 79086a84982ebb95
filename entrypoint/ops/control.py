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
treats every connection as hostile (:mod:`entrypoint.ops.connections`, shared with the
metrics listener): a request is read up to :data:`MAX_REQUEST` bytes, each connection
has one deadline, at most :data:`MAX_PENDING` are held at once, connections are served
side by side (a silent one delays no other), and refused connections are logged at most
once a minute.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import socket
import struct
import time
from collections.abc import Callable, Mapping
from typing import Any

from entrypoint.config.model import Config
from entrypoint.errors import PermissionDenied, UnavailableError, UsageError
from entrypoint.ops.connections import Pending, RequestServer

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


class ControlServer(RequestServer):
    """Accepts ``rotate`` requests and hands them to ``on_rotate``, from one thread
    (:class:`entrypoint.ops.connections.RequestServer`)."""

    label = "control socket"
    thread_name = "control"

    def __init__(self, name: str, on_rotate: Callable[[str], None], log: logging.Logger,
                 *, on_status: Callable[[], bytes] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 deadline: float = CONNECTION_DEADLINE) -> None:
        self.name = resolve_name(name)
        self.on_rotate = on_rotate
        self.on_status = on_status
        self.refusals = _RefusalLog(log, clock)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        addr = address(self.name)
        if isinstance(addr, str) and os.path.exists(addr):
            os.unlink(addr)  # a socket file left by a previous run of this container
        try:
            sock.bind(addr)
        except OSError as exc:
            sock.close()
            taken = exc.errno == errno.EADDRINUSE
            hint = ("another process in this network namespace (another container of the "
                    "same pod or task?) listens on it: give each container its own "
                    "control_socket, or leave it at auto" if taken else
                    "set control_socket to a free name, or empty")
            raise UnavailableError(f"cannot listen on control socket {self.name}: "
                                   f"{exc.strerror}", hint=hint) from None
        sock.listen(MAX_PENDING)
        super().__init__(sock, log, max_request=MAX_REQUEST, max_pending=MAX_PENDING,
                         deadline=deadline, clock=clock)

    def start(self) -> None:
        self.start_thread()
        self.log.debug("listening for 'entrypoint rotate' on %s", self.name)

    def admit(self, conn: socket.socket) -> int | None:
        pid, uid = peer(conn)
        if trusted(uid):
            return pid
        with contextlib.suppress(OSError):
            conn.send(b"denied: only root or the entrypoint's user may rotate\n")
        self.refusals.refused(uid, pid)
        return None

    def complete(self, received: bytes) -> bool:
        return b"\n" in received

    def answer(self, pending: Pending, received: bytes, ended: bool) -> bytes | None:
        if b"\n" not in received:
            # Cut at MAX_REQUEST: the rest of a huge request is never read. A client that
            # hung up before a whole line gets nothing.
            return None if ended else b"error: request too long\n"
        line = received.split(b"\n", 1)[0] + b"\n"
        if line == REQUEST:
            self.on_rotate(f"rotation requested by 'entrypoint rotate' (pid {pending.pid})")
            return b"ok: every dynamic secret will be fetched again, then one action\n"
        if line == STATUS and self.on_status is not None:
            return self._status()
        return b"error: unknown request\n"

    def _status(self) -> bytes:
        assert self.on_status is not None
        try:
            return self.on_status()
        except Exception:
            self.log.exception("control socket: building the status failed")
            return b"error: status unavailable\n"

    def stop(self) -> None:
        super().stop()
        addr = address(self.name)
        if isinstance(addr, str) and os.path.exists(addr):
            os.unlink(addr)
