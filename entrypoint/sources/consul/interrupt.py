"""A requests session whose request in flight another thread can cut short.

A blocking query holds its connection for up to its wait (Consul's is 5 minutes), and
the agent answers nothing meanwhile. A key no longer watched must give its thread and
connection back at once, not minutes later, or keys read in turn by a template whose
condition flips would pile up parked connections (Consul limits them per client:
``http_max_conns_per_client``, 200 by default).

urllib3 does not tell which connection a request holds, so the connections of this
session note their socket as they connect; cutting shuts it down, and the blocked read
ends with the connection error the watch loop already handles. Going through a proxy
(``HTTP_PROXY``) the request is not cut: it ends at its next answer instead.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Any


class Cutter:
    """Cuts the request in flight on one session, and every one it starts afterwards."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._cut = False

    def install(self, session: Any) -> None:
        """Make ``session`` (a ``requests.Session``) connect through sockets we can cut."""
        from requests.adapters import HTTPAdapter
        from urllib3.connection import HTTPConnection, HTTPSConnection
        from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

        adapter = HTTPAdapter()
        pools: dict[str, type[HTTPConnectionPool]] = {}
        for scheme, pool, conn in (("http", HTTPConnectionPool, HTTPConnection),
                                   ("https", HTTPSConnectionPool, HTTPSConnection)):
            cuttable = type("Cuttable" + conn.__name__, (conn,),
                            {"connect": self._connect_method(conn)})
            pools[scheme] = type("Cuttable" + pool.__name__, (pool,),
                                 {"ConnectionCls": cuttable})
        # An instance attribute: the module's own mapping is shared by every PoolManager.
        adapter.poolmanager.pool_classes_by_scheme = pools
        session.mount("http://", adapter)
        session.mount("https://", adapter)

    def _connect_method(self, base: type[Any]) -> Any:
        cutter = self

        def connect(conn: Any) -> None:
            base.connect(conn)
            cutter._connected(conn.sock)

        return connect

    def _connected(self, sock: socket.socket | None) -> None:
        with self._lock:
            self._sock = sock
            cut = self._cut
        if cut and sock is not None:
            _shut(sock)  # cut while it was connecting: it must not go on to park

    def cut(self) -> None:
        with self._lock:
            self._cut = True
            sock = self._sock
        if sock is not None:
            _shut(sock)


def _shut(sock: socket.socket) -> None:
    # Already closed (OSError): nothing is parked on it.
    with contextlib.suppress(OSError):
        # The plain socket's shutdown, also for TLS: SSLSocket.shutdown would drop the
        # TLS state under the thread still reading through it.
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
