"""``consul:KEY`` answered by a Consul agent, and watched with blocking queries.

Settings come from Consul's own variables, read from the environment given (never from
``os.environ`` behind our back, which py-consul would otherwise do):

- ``CONSUL_HTTP_ADDR``: ``host:port``, ``http://host:port`` or ``https://host:port``
  (default ``127.0.0.1:8500``); ``CONSUL_HTTP_SSL=true`` means https when no scheme is given.
- ``CONSUL_HTTP_TOKEN`` (or ``CONSUL_HTTP_TOKEN_FILE``): the ACL token.
- ``CONSUL_CACERT``: CA bundle to verify the agent; ``CONSUL_HTTP_SSL_VERIFY=false`` turns
  verification off; ``CONSUL_CLIENT_CERT`` + ``CONSUL_CLIENT_KEY``: a client certificate.

py-consul (``import consul``) is imported on first use, so a container that never uses a
``consul:`` reference never loads it. Messages name the key and the agent's address; the
token and values never appear (py-consul's own messages can quote a response body, so
they are not passed on).
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from entrypoint.config import values
from entrypoint.describe import os_reason, transport_reason
from entrypoint.errors import (
    ConfigError,
    EntrypointError,
    PermissionDenied,
    SecretNotFound,
    UnavailableError,
)
from entrypoint.secret import Secret
from entrypoint.sources.base import Fetched, Notify, Refresh, Source, Watcher
from entrypoint.sources.consul.interrupt import Cutter

if TYPE_CHECKING:
    from entrypoint.plan.keys import SourceKey

DEFAULT_ADDR = "127.0.0.1:8500"
CONNECT_TIMEOUT = 10.0  # seconds to connect or answer; a blocking query adds its wait
# What Go's HTTP server answers (400) to plain HTTP on a TLS port.
HTTP_TO_HTTPS = "Client sent an HTTP request to an HTTPS server"


@dataclass(frozen=True)
class ConsulSettings:
    host: str
    port: int
    scheme: str = "http"
    token: Secret | None = field(default=None, repr=False)
    verify: bool | str = True
    cert: tuple[str, str] | None = None

    @property
    def addr(self) -> str:
        """The agent's address, for messages (no token, no path)."""
        return f"{self.scheme}://{self.host}:{self.port}"


def _truthy(text: str, name: str) -> bool:
    try:
        return values.parse_bool(text)
    except ValueError as exc:
        raise ConfigError(f"variable {name}: {exc}") from None


def settings_from_environment(environ: Mapping[str, str]) -> ConsulSettings:
    """Read Consul's standard variables from ``environ``."""
    scheme, host, port = _address(environ)
    return ConsulSettings(host, port, scheme, _token(environ), _verify(environ),
                          _client_cert(environ))


def _address(environ: Mapping[str, str]) -> tuple[str, str, int]:
    raw = environ.get("CONSUL_HTTP_ADDR") or DEFAULT_ADDR
    ssl = _truthy(environ["CONSUL_HTTP_SSL"], "CONSUL_HTTP_SSL") \
        if environ.get("CONSUL_HTTP_SSL") else False
    parsed = urllib.parse.urlsplit(raw if "//" in raw else f"//{raw}")
    scheme = parsed.scheme or ("https" if ssl else "http")
    try:
        port = parsed.port
    except ValueError:
        port = -1
    if scheme not in ("http", "https") or not parsed.hostname or port == -1 \
            or parsed.path not in ("", "/"):
        raise ConfigError(f"variable CONSUL_HTTP_ADDR: expected host:port or "
                          f"http(s)://host:port, got {raw!r}")
    return scheme, parsed.hostname, port or (8501 if scheme == "https" else 8500)


def _token(environ: Mapping[str, str]) -> Secret | None:
    if environ.get("CONSUL_HTTP_TOKEN"):
        return Secret(environ["CONSUL_HTTP_TOKEN"])
    if environ.get("CONSUL_HTTP_TOKEN_FILE"):
        return Secret(_read(environ["CONSUL_HTTP_TOKEN_FILE"], "CONSUL_HTTP_TOKEN_FILE").strip())
    return None


def _verify(environ: Mapping[str, str]) -> bool | str:
    verify: bool | str = True
    if environ.get("CONSUL_CACERT"):
        verify = _readable(environ["CONSUL_CACERT"], "CONSUL_CACERT")
    if environ.get("CONSUL_HTTP_SSL_VERIFY") and not _truthy(
            environ["CONSUL_HTTP_SSL_VERIFY"], "CONSUL_HTTP_SSL_VERIFY"):
        verify = False
    return verify


def _client_cert(environ: Mapping[str, str]) -> tuple[str, str] | None:
    client_cert, client_key = environ.get("CONSUL_CLIENT_CERT"), environ.get("CONSUL_CLIENT_KEY")
    if bool(client_cert) != bool(client_key):
        # One without the other would connect with no certificate, and an agent with
        # verify_incoming would end the handshake: say what is wrong instead.
        raise ConfigError("CONSUL_CLIENT_CERT and CONSUL_CLIENT_KEY must be set together",
                          hint="expected both a certificate file and its key file")
    if client_cert and client_key:
        return (_readable(client_cert, "CONSUL_CLIENT_CERT"),
                _readable(client_key, "CONSUL_CLIENT_KEY"))
    return None


def _read(path: str, variable: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"variable {variable}: file {path} cannot be read: "
                          f"{os_reason(exc)}") from None


def _readable(path: str, variable: str) -> str:
    """``path``, once it opens: a missing CA or certificate file is a configuration error
    (78), not "cannot be reached" (69) at the first request."""
    try:
        with open(path, "rb"):
            return path
    except OSError as exc:
        raise ConfigError(f"variable {variable}: file {path} cannot be read: "
                          f"{os_reason(exc)}") from None


def _duration(seconds: float) -> str:
    """A Go duration for Consul's ``wait`` (whole milliseconds)."""
    return f"{max(1, round(seconds * 1000))}ms"


class ConsulSource(Source):
    """Consul KV behind the :class:`~entrypoint.sources.base.Source` protocol."""

    name = "consul"

    def __init__(self, settings: ConsulSettings) -> None:
        self.settings = settings
        # One client per thread: a watcher's blocking query holds its connection for the
        # whole wait, and fetches from other threads must not queue behind it.
        self._clients: dict[threading.Thread, _Client] = {}
        self._guard = threading.Lock()
        self._warned = False

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> ConsulSource:
        return cls(settings_from_environment(environ))

    def describe(self, path: str) -> str:
        return f"consul at {self.settings.addr}"

    def _client(self) -> Any:
        thread = threading.current_thread()
        with self._guard:
            held = self._clients.get(thread)
        if held is not None and held.consul is not None:
            return held.consul
        import consul

        s = self.settings
        client = consul.Consul(host=s.host, port=s.port, scheme=s.scheme, verify=s.verify,
                               cert=s.cert, connections_timeout=CONNECT_TIMEOUT)
        # py-consul prefers os.environ's CONSUL_HTTP_TOKEN to the one it is given.
        client.token = s.token.reveal() if s.token is not None else None
        cutter = held.cutter if held is not None else Cutter()
        cutter.install(client.http.session)
        with self._guard:
            # Each generation's reads run in threads of their own: a client of a thread
            # that ended would keep its connection open to the agent for good.
            gone = [t for t in self._clients if not t.is_alive()]
            ended = [self._clients.pop(t) for t in gone]
            self._clients[thread] = _Client(client, cutter)
            warn, self._warned = not self._warned, True
        for old in ended:
            old.close()
        if warn and s.verify is False and s.scheme == "https":
            self._warn_unverified()
        return client

    def interrupt(self, thread: threading.Thread) -> None:
        """Cut short the request ``thread`` has in flight (a parked blocking query), and
        any it makes later: it fails at once, as if the agent had gone. ``thread`` has
        been started: the clients of threads not alive are closed as others are made."""
        with self._guard:
            held = self._clients.get(thread)
            if held is None:
                # Not connected yet: its client, once made, starts cut.
                held = self._clients[thread] = _Client(None, Cutter())
        held.cutter.cut()

    def release(self) -> None:
        """The calling thread is done with Consul: close its connection now."""
        with self._guard:
            held = self._clients.pop(threading.current_thread(), None)
        if held is not None:
            held.close()

    def _warn_unverified(self) -> None:
        import urllib3

        # Said once, in our log, as for VAULT_SKIP_VERIFY: urllib3 would otherwise print
        # its own warning text to stderr, outside the log's format.
        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        logging.getLogger("entrypoint").warning(
            "CONSUL_HTTP_SSL_VERIFY is false: the Consul agent's TLS certificate is NOT "
            "verified; anyone on the network path can read every value and the token. "
            "Use CONSUL_CACERT instead.")

    def _get(self, key: str, index: int | None = None,
             wait: float | None = None) -> tuple[int, dict[str, Any] | None]:
        clean = key.strip("/")
        if not clean:
            raise ConfigError("consul: reference names no key", hint="expected consul:KEY")
        if any(part in ("", ".", "..") for part in clean.split("/")):
            # The agent's HTTP router cleans the path (301 to it): odd/a//b and odd/../b
            # would silently read another key (odd/a/b, b). Consul's own CLI cannot reach
            # such a key either.
            raise ConfigError(f"consul key {clean}: an empty, '.' or '..' part cannot be read "
                              "over Consul's HTTP API (the agent would read another key)",
                              hint="name the key without '//', '/./' or '/../'")
        try:
            raw_index, entry = self._client().kv.get(
                clean, index=index or None, wait=_duration(wait) if wait else None)
        except Exception as exc:
            raise self._error(exc, clean) from None
        try:
            return int(raw_index), entry
        except (TypeError, ValueError):
            raise UnavailableError(f"consul at {self.settings.addr} answered key {clean} "
                                   "without a valid X-Consul-Index") from None

    def _error(self, exc: Exception, key: str) -> EntrypointError:
        import consul

        addr = self.settings.addr
        if isinstance(exc, consul.ACLPermissionDenied | consul.ACLDisabled):
            return PermissionDenied(f"consul at {addr} refused to read key {key}: "
                                    "permission denied",
                                    hint="check CONSUL_HTTP_TOKEN and the token's policy")
        if isinstance(exc, consul.ConsulException):
            if self.settings.scheme == "http" and HTTP_TO_HTTPS in str(exc):
                # Go's own 400 for plain HTTP on a TLS port: retrying will not help.
                return ConfigError(f"consul at {addr} speaks HTTPS on that port",
                                   hint="write CONSUL_HTTP_ADDR as https://HOST:PORT "
                                        "(or set CONSUL_HTTP_SSL=true)")
            # The message is "<status> <body>": keep the status, drop the body.
            status = str(exc).split(" ", 1)[0]
            detail = f"status {status}" if status.isdigit() else "a malformed answer"
            return UnavailableError(f"consul at {addr} failed to read key {key}: {detail}")
        return UnavailableError(f"consul at {addr} cannot be reached to read key {key} "
                                f"({transport_reason(exc)})")

    def _value(self, key: str, entry: Mapping[str, Any]) -> Secret:
        raw = entry.get("Value")
        if raw is None:  # a key written without a body
            return Secret("")
        try:
            return Secret(raw.decode("utf-8") if isinstance(raw, bytes) else str(raw))
        except UnicodeDecodeError:
            raise ConfigError(f"consul key {key.strip('/')} at {self.settings.addr} does not "
                              "hold UTF-8 text") from None

    def fetch(self, path: str, version: int | None = None) -> Fetched:
        """Read ``path`` now; ``version`` is ModifyIndex (Consul keeps no old versions)."""
        index, entry = self._get(path)
        if entry is None:
            missing = SecretNotFound(f"consul key {path.strip('/')} not found at "
                                     f"{self.settings.addr}")
            # Consul answers a missing key with an index too: a query from it wakes
            # when the key is made, even between this read and the watch's start.
            missing.absent = Fetched(data={}, kind="consul", refresh=Refresh.WATCH,
                                     version=max(index, 1), fetched_at=time.monotonic())
            raise missing
        return Fetched(data={"": self._value(path, entry)}, kind="consul",
                       refresh=Refresh.WATCH,
                       version=int(entry.get("ModifyIndex") or 0) or None,
                       fetched_at=time.monotonic())

    def watch(self, key: str, index: int, wait: float) -> tuple[int, Secret | None]:
        """Block until ``key`` changes past ``index`` or ``wait`` seconds pass.

        Returns ``(new_index, value)``; ``value`` is None when the key does not exist. Pass
        ``new_index`` to the next call; the value changed only if ``new_index != index``
        (and even then compare: Consul may wake a query without a change). ``index`` 0
        asks without blocking. Following Consul's guidance, an index that went backwards
        (the agent lost its state) comes back as 0, so the next call starts over, and an
        index is never below 1 otherwise. Errors are :class:`UnavailableError` or
        :class:`PermissionDenied`; the caller backs off and calls again.
        """
        new_index, entry = self._get(key, index if index > 0 else None,
                                     wait if index > 0 else None)
        if new_index < index:
            new_index = 0
        elif new_index < 1:
            new_index = 1
        return new_index, None if entry is None else self._value(key, entry)

    def start_watch(self, keys: Sequence[tuple[SourceKey, Fetched]], notify: Notify,
                    log: logging.Logger) -> Watcher | None:
        """One blocking query per key (:mod:`entrypoint.sources.consul.watch`)."""
        if not keys:
            return None
        from entrypoint.sources.consul.watch import ConsulWatch

        watch = ConsulWatch(self, notify, log)
        for key, fetched in keys:
            watch.add_key(key, fetched)
        watch.start()
        return watch

    def close(self) -> None:
        with self._guard:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()


@dataclass
class _Client:
    consul: Any  # None: a thread cut before it made its client
    cutter: Cutter

    def close(self) -> None:
        session = getattr(getattr(self.consul, "http", None), "session", None)
        if session is not None:
            session.close()
