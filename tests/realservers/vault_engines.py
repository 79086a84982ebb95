"""Operator helpers for real Vault auth mounts the tests log in through.

`AppRole` creates roles and secret_ids through Vault's API. `Kubernetes` needs what a
cluster would give Vault: a TokenReview endpoint, served here by a fake Kubernetes API (the
one part of a login no real server on this machine can answer), and service-account JWTs
whose claims Vault reads (unsigned: Vault verifies them through the TokenReview, as it does
when no `pem_keys` are configured).
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.services.ports import LOOPBACK


class AppRole:
    def __init__(self, vault: Any, mount: str) -> None:
        self.vault = vault
        self.mount = mount

    def add_role(self, name: str, policies: list[str], ttl: int = 0, max_ttl: int = 0,
                 bind_secret_id: bool = True, **fields: Any) -> tuple[str, str | None]:
        """A role; returns (role_id, a fresh secret_id or None when not bound)."""
        self.vault.api("POST", f"auth/{self.mount}/role/{name}", {
            "token_policies": policies, "token_ttl": ttl, "token_max_ttl": max_ttl,
            "bind_secret_id": bind_secret_id, **fields})
        role_id: str = self.vault.api(
            "GET", f"auth/{self.mount}/role/{name}/role-id")["data"]["role_id"]
        secret_id = self.new_secret_id(name) if bind_secret_id else None
        return role_id, secret_id

    def new_secret_id(self, name: str) -> str:
        answer = self.vault.api("POST", f"auth/{self.mount}/role/{name}/secret-id")
        secret_id: str = answer["data"]["secret_id"]
        return secret_id


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def service_account_jwt(name: str, namespace: str, uid: str) -> str:
    header = {"alg": "RS256", "typ": "JWT"}
    claims = {"iss": "kubernetes/serviceaccount",
              "kubernetes.io/serviceaccount/namespace": namespace,
              "kubernetes.io/serviceaccount/service-account.name": name,
              "kubernetes.io/serviceaccount/service-account.uid": uid,
              "kubernetes.io/serviceaccount/secret.name": f"{name}-token",
              "sub": f"system:serviceaccount:{namespace}:{name}"}
    return ".".join((_b64(json.dumps(header).encode()), _b64(json.dumps(claims).encode()),
                     _b64(secrets.token_bytes(64))))


class _TokenReviews(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__((LOOPBACK, 0), _ReviewHandler)
        self.accounts: dict[str, dict[str, str]] = {}


class _ReviewHandler(BaseHTTPRequestHandler):
    server: _TokenReviews

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        account = self.server.accounts.get(body.get("spec", {}).get("token", ""))
        status: dict[str, Any] = {"authenticated": False}
        if account is not None:
            status = {"authenticated": True, "user": {
                "username": f"system:serviceaccount:{account['namespace']}:{account['name']}",
                "uid": account["uid"], "groups": ["system:serviceaccounts"]}}
        payload = json.dumps({"kind": "TokenReview", "apiVersion": "authentication.k8s.io/v1",
                              "status": status}).encode()
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class Kubernetes:
    """A kubernetes auth mount pointed at a fake TokenReview API of its own."""

    def __init__(self, vault: Any, mount: str) -> None:
        self.vault = vault
        self.mount = mount
        self.api = _TokenReviews()
        self._thread = threading.Thread(target=self.api.serve_forever, daemon=True,
                                        kwargs={"poll_interval": 0.05})
        self._thread.start()
        vault.on_close(self.close)
        host, port = self.api.server_address[:2]
        vault.api("POST", f"auth/{mount}/config", {
            "kubernetes_host": f"http://{host!s}:{port}", "disable_local_ca_jwt": True})

    def add_jwt(self, service_account_name: str, namespace: str) -> str:
        """A service-account JWT the fake cluster vouches for."""
        uid = str(uuid.uuid4())
        jwt = service_account_jwt(service_account_name, namespace, uid)
        self.api.accounts[jwt] = {"name": service_account_name, "namespace": namespace,
                                  "uid": uid}
        return jwt

    def add_role(self, name: str, service_accounts: list[str], namespaces: list[str],
                 policies: list[str], ttl: int = 0) -> None:
        self.vault.api("POST", f"auth/{self.mount}/role/{name}", {
            "bound_service_account_names": service_accounts,
            "bound_service_account_namespaces": namespaces,
            "token_policies": policies, "token_ttl": ttl})

    def close(self) -> None:
        self.api.shutdown()
        self.api.server_close()
        self._thread.join(5)
