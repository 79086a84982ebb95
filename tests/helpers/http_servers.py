"""Real HTTP(S) servers on loopback for the Vault transport's tests (stdlib's http.server,
with a throwaway CA made by the openssl command)."""

from __future__ import annotations

import contextlib
import json
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


@dataclass
class Pki:
    ca: Path
    cert: Path
    key: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(d: Path) -> Pki:
    """A CA and a server certificate for the name vault.test only (not 127.0.0.1)."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
             "ca.pem", "-days", "2", "-subj", "/CN=test ca", cwd=d)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "srv.key", "-out", "srv.csr",
             "-subj", "/CN=vault.test", cwd=d)
    (d / "ext").write_text("subjectAltName=DNS:vault.test\n")
    _openssl("x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "srv.pem", "-days", "2", "-extfile", "ext", cwd=d)
    return Pki(ca=d / "ca.pem", cert=d / "srv.pem", key=d / "srv.key")


@dataclass
class Seen:
    headers: list[dict[str, str]] = field(default_factory=list)


def health(env: dict[str, str], timeout: float = 0.0) -> dict[str, object]:
    """sys/health through the entrypoint's own client and its retry policy."""
    import logging

    from entrypoint.sources.vault.client import VaultClient
    from entrypoint.sources.vault.connection import Connection

    log = logging.getLogger("entrypoint.test")
    client = VaultClient(Connection.from_environ(env, log), startup_timeout=timeout, log=log)
    try:
        result = client.call("health", lambda: client.anonymous.get("/v1/sys/health"))
        assert isinstance(result, dict)
        return result
    finally:
        client.close()


def self_signed(d: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (no CA anyone trusts) and its key."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "key.pem", "-out",
             "cert.pem", "-days", "2", "-subj", "/CN=127.0.0.1",
             "-addext", "subjectAltName=IP:127.0.0.1", cwd=d)
    return d / "cert.pem", d / "key.pem"


class Quiet(BaseHTTPRequestHandler):
    """A handler that logs nothing and answers JSON as Vault does."""

    def log_message(self, format: str, *args: object) -> None:
        pass

    def answer(self, status: int, body: object, **headers: str) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(raw)


@contextlib.contextmanager
def serving(handler: type[BaseHTTPRequestHandler], pki: Pki | None = None) -> Iterator[str]:
    """A real server on loopback (TLS with ``pki``'s certificate) -> its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if pki is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(pki.cert, pki.key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield f"{'https' if pki else 'http'}://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
