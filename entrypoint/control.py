"""``entrypoint rotate``: ask the running entrypoint to re-fetch every dynamic secret now.

The running entrypoint listens on a unix socket (``control_socket``; by default the
abstract socket ``@entrypoint``, private to the container's network namespace and never
a file left behind). A socket, not a signal: every signal an app might use is forwarded
to it, so none is free to keep for ourselves. Only root or the entrypoint's own user may
ask (checked with ``SO_PEERCRED``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import struct
import threading
from collections.abc import Callable, Mapping

from entrypoint.config import Config
from entrypoint.errors import PermissionDenied, UnavailableError, UsageError

REQUEST = b"rotate\n"
TIMEOUT = 10.0


def address(name: str) -> str | bytes:
    """``@NAME`` is an abstract socket (Linux); anything else a filesystem path."""
    return b"\0" + name[1:].encode() if name.startswith("@") else name


def request_rotation(config: Config, env: Mapping[str, str], log: logging.Logger) -> int:
    if not config.control_socket:
        raise UsageError("control_socket is empty, so the running entrypoint does not listen",
                         hint="set control_socket to the value the running entrypoint uses")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(TIMEOUT)
    try:
        sock.connect(address(config.control_socket))
        sock.sendall(REQUEST)
        reply = sock.makefile("r").readline().strip()
    except (FileNotFoundError, ConnectionRefusedError):
        raise UnavailableError(
            f"no running entrypoint listens on control socket {config.control_socket}",
            hint="run this inside the container of a running entrypoint "
                 "(docker exec CONTAINER entrypoint rotate)") from None
    except OSError as exc:
        raise UnavailableError(
            f"control socket {config.control_socket}: {exc.strerror or exc}") from None
    finally:
        sock.close()
    if reply.startswith("denied"):
        raise PermissionDenied(f"the running entrypoint refused: {reply}")
    if not reply.startswith("ok"):
        raise UnavailableError(f"unexpected answer from the running entrypoint: {reply!r}")
    log.info("rotation requested: %s", reply)
    print(reply)
    return 0


class ControlServer:
    """Accepts ``rotate`` requests and hands them to ``on_rotate``."""

    def __init__(self, name: str, on_rotate: Callable[[str], None],
                 log: logging.Logger) -> None:
        self.name = name
        self.on_rotate = on_rotate
        self.log = log
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        addr = address(name)
        if isinstance(addr, str) and os.path.exists(addr):
            os.unlink(addr)  # a socket file left by a previous run of this container
        try:
            self.sock.bind(addr)
        except OSError as exc:
            self.sock.close()
            raise UnavailableError(f"cannot listen on control socket {name}: {exc.strerror}",
                                   hint="set control_socket to a free name, or empty") from None
        self.sock.listen(4)
        self._thread = threading.Thread(target=self._serve, name="control", daemon=True)
        self._stopped = False

    def start(self) -> None:
        self._thread.start()
        self.log.debug("listening for 'entrypoint rotate' on %s", self.name)

    def _serve(self) -> None:
        while not self._stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(TIMEOUT)
                try:
                    self._answer(conn)
                except OSError as exc:
                    self.log.debug("control connection failed: %s", exc)

    def _answer(self, conn: socket.socket) -> None:
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid, uid, _ = struct.unpack("3i", creds)
        if uid not in (0, os.getuid()):
            conn.sendall(b"denied: only root or the entrypoint's user may rotate\n")
            self.log.warning("refused a rotation request from uid %d (pid %d)", uid, pid)
            return
        request = conn.makefile("rb").readline()
        if request != REQUEST:
            conn.sendall(b"error: unknown request\n")
            return
        self.on_rotate(f"rotation requested by 'entrypoint rotate' (pid {pid})")
        conn.sendall(b"ok: every dynamic secret will be fetched again, then one action\n")

    def stop(self) -> None:
        self._stopped = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        addr = address(self.name)
        if isinstance(addr, str) and os.path.exists(addr):
            os.unlink(addr)
