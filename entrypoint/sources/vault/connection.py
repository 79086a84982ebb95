"""How to reach Vault: address, namespace and TLS from the standard ``VAULT_*`` variables.

The variables mean what they mean to the ``vault`` CLI, so that a container configured
for the CLI or for Vault Agent works unchanged. Verification is on unless
``VAULT_SKIP_VERIFY`` says otherwise, and that is logged loudly every start.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from entrypoint import __version__
from entrypoint.config.values import parse_go_bool
from entrypoint.errors import ConfigError

USER_AGENT = f"vault-entrypoint/{__version__}"
# Seconds for one HTTP request; start-up retries are bounded by startup_timeout on top.
REQUEST_TIMEOUT = 10.0


# The base URL of a unix socket address: the socket, not this name, says where the
# connection goes (the vault CLI sends the socket path as the host).
UNIX_URL = "http://localhost"


@dataclass(frozen=True)
class Connection:
    addr: str  # as the user wrote it, for messages: https://..., or unix:///run/agent.sock
    namespace: str | None = None
    verify: bool | str = True  # False, or a CA file (VAULT_CACERT)
    ca_pem: str | None = None  # the certificates of a VAULT_CAPATH folder, joined
    client_cert: tuple[str, str] | None = None
    server_name: str | None = None
    socket_path: str | None = None  # set for a unix:// address (Vault Agent or Proxy)
    # The app's uid when it is not ours: a listener on socket_path run by it is refused.
    app_uid: int | None = None

    @property
    def url(self) -> str:
        """The base URL requests are sent to."""
        return UNIX_URL if self.socket_path else self.addr

    @classmethod
    def from_environ(cls, environ: Mapping[str, str],
                     log: logging.Logger | None = None) -> Connection:
        addr, socket_path = address(environ, log or logging.getLogger("entrypoint"))
        verify: bool | str = True
        ca_pem: str | None = None
        skip = environ.get("VAULT_SKIP_VERIFY", "").strip()
        if skip:
            try:
                skip_on = parse_go_bool(skip)
            except ValueError as exc:
                raise ConfigError(f"variable VAULT_SKIP_VERIFY: {exc}") from None
        else:
            skip_on = False
        cacert = environ.get("VAULT_CACERT", "").strip()
        capath = environ.get("VAULT_CAPATH", "").strip()
        if skip_on:
            verify = False
            (log or logging.getLogger("entrypoint")).warning(
                "VAULT_SKIP_VERIFY is set: the Vault server's TLS certificate is NOT verified; "
                "anyone on the network path can read every secret and token. "
                "Use VAULT_CACERT instead.")
        elif cacert:  # VAULT_CACERT wins over VAULT_CAPATH, as for the vault CLI.
            verify = _readable(cacert, "VAULT_CACERT")
        elif capath and Path(capath).is_file():
            verify = _readable(capath, "VAULT_CAPATH")
        elif capath:
            ca_pem = _certificates_in(capath)
        cert = environ.get("VAULT_CLIENT_CERT", "").strip()
        key = environ.get("VAULT_CLIENT_KEY", "").strip()
        if bool(cert) != bool(key):
            raise ConfigError("VAULT_CLIENT_CERT and VAULT_CLIENT_KEY must be set together",
                              hint="expected both a certificate file and its key file")
        client_cert = ((_readable(cert, "VAULT_CLIENT_CERT"), _readable(key, "VAULT_CLIENT_KEY"))
                       if cert else None)
        return cls(addr=addr, namespace=environ.get("VAULT_NAMESPACE", "").strip() or None,
                   verify=verify, ca_pem=ca_pem, client_cert=client_cert,
                   server_name=environ.get("VAULT_TLS_SERVER_NAME", "").strip() or None,
                   socket_path=socket_path)


def address(environ: Mapping[str, str], log: logging.Logger) -> tuple[str, str | None]:
    """-> (the address, the socket path of a unix:// one). As the vault CLI does,
    VAULT_AGENT_ADDR wins over VAULT_ADDR: the local agent or proxy is the way to Vault."""
    agent = environ.get("VAULT_AGENT_ADDR", "").strip().rstrip("/")
    variable = "VAULT_AGENT_ADDR" if agent else "VAULT_ADDR"
    addr = agent or environ.get("VAULT_ADDR", "").strip().rstrip("/")
    if not addr:
        raise ConfigError("variable VAULT_ADDR is empty",
                          hint="expected the Vault URL, e.g. https://vault.example:8200")
    if agent and environ.get("VAULT_ADDR", "").strip():
        log.info("vault: using VAULT_AGENT_ADDR %s (it wins over VAULT_ADDR, as for the "
                 "vault CLI)", agent)
    if addr.startswith("unix:"):
        path = addr[len("unix://"):] if addr.startswith("unix://") else ""
        if not path:
            raise ConfigError(f"variable {variable}: unix:// names no socket",
                              hint="expected unix:///path/to/agent.sock")
        return addr, path
    if not addr.startswith(("http://", "https://")):
        raise ConfigError(f"variable {variable}: expected an http:// or https:// URL or a "
                          f"unix:// socket, got {addr!r}")
    return addr, None


def _readable(path: str, variable: str) -> str:
    if not os.access(path, os.R_OK) or not Path(path).is_file():
        raise ConfigError(f"variable {variable}: file {path} does not exist or cannot be read")
    return path


def _certificates_in(capath: str) -> str:
    """VAULT_CAPATH is a directory of PEM files (any names, as for the vault CLI); OpenSSL
    wants hashed names there, so the certificates are joined and handed to the TLS context
    as data (nothing written to disk)."""
    directory = Path(capath)
    if not directory.is_dir():
        raise ConfigError(f"variable VAULT_CAPATH: {capath} is not a directory of CA files")
    texts = (p.read_text(encoding="ascii", errors="replace")
             for p in sorted(directory.iterdir()) if p.is_file())
    pems = [text for text in texts if "BEGIN CERTIFICATE" in text]
    if not pems:
        raise ConfigError(f"variable VAULT_CAPATH: no PEM certificate in {capath}")
    return "\n".join(pems)
