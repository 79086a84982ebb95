"""The proxy on the way to Vault, from ``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY`` and
``NO_PROXY`` (lower case wins over upper case), read as curl, requests and Go's net/http
read them: ``NO_PROXY`` entries are host names (a leading ``.`` or ``*.`` for a domain),
IP addresses, CIDR blocks (``10.0.0.0/8``, common in Kubernetes), ``host:port``, or ``*``.
A ``user:password@`` in the proxy's URL is sent as ``Proxy-Authorization: Basic``, and
never logged.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import NamedTuple
from urllib.parse import unquote, urlsplit

from entrypoint.errors import ConfigError


class Proxy(NamedTuple):
    host: str
    port: int
    authorization: str | None = None  # a header value: a secret, never in a message

    def __repr__(self) -> str:
        return f"Proxy({self.host}:{self.port})"


def environ_proxy(url: str, environ: Mapping[str, str] = os.environ) -> Proxy | None:
    """The proxy for ``url``, or None: none is set, or NO_PROXY exempts the host."""
    if not any(k.lower().endswith("_proxy") for k in environ):
        return None
    parts = urlsplit(url)
    name, proxy = _lookup(environ, parts.scheme) or _lookup(environ, "all") or ("", "")
    if not proxy or bypassed(parts.hostname or "", parts.port,
                             (_lookup(environ, "no") or ("", ""))[1]):
        return None
    where = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    if where.scheme != "http":
        raise ConfigError(f"variable {name}: a {where.scheme}:// proxy is not supported",
                          hint="expected an http:// proxy; an https:// Vault is reached "
                               "through it in a CONNECT tunnel, TLS end to end")
    try:
        port = where.port or 80
    except ValueError:
        raise ConfigError(f"variable {name}: the proxy's port is not a number") from None
    authorization = None
    if where.username is not None:
        import base64

        pair = f"{unquote(where.username)}:{unquote(where.password or '')}"
        authorization = "Basic " + base64.b64encode(pair.encode()).decode()
    return Proxy(where.hostname or "localhost", port, authorization)


def bypassed(host: str, port: int | None, no_proxy: str) -> bool:
    """Whether ``NO_PROXY`` sends ``host`` (and ``port``) direct."""
    host = host.lower().strip("[]")
    for entry in no_proxy.replace(" ", ",").split(","):
        entry = entry.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        if "/" in entry:
            if _in_network(host, entry):
                return True
            continue
        name, _, wanted = entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "")
        if wanted and (not wanted.isdigit() or int(wanted) != port):
            continue
        name = name.removeprefix("*.").removeprefix(".").strip("[]")
        if host == name or host.endswith("." + name):
            return True
    return False


def _in_network(host: str, block: str) -> bool:
    import ipaddress  # only with a CIDR entry

    try:
        return ipaddress.ip_address(host) in ipaddress.ip_network(block, strict=False)
    except ValueError:  # a host name, or an entry that is no network: no match
        return False


def _lookup(environ: Mapping[str, str], scheme: str) -> tuple[str, str] | None:
    for name in (f"{scheme}_proxy", f"{scheme.upper()}_PROXY"):
        value = environ.get(name, "").strip()
        if value:
            return name, value
    return None
