"""Vault's own file audit log, read back as the tests' request log.

Vault writes an entry before it answers (audit is synchronous), so a client that has its
answer finds the request logged. With `log_raw` the entries hold what Vault handed out:
`seed_secrets` gives every token, secret_id and password to the suite's secrecy check.
"""

from __future__ import annotations

import json
import re
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.helpers.secrecy import seed_secret
from tests.vaultserver.faults import LoggedRequest

METHODS = {"read": "GET", "list": "LIST", "delete": "DELETE", "update": "PUT",
           "create": "PUT", "patch": "PATCH", "help": "GET"}
SECRET_KEYS = frozenset({"client_token", "token", "secret_id", "password", "secret_key",
                         "security_token", "private_key", "plaintext", "id"})


def _status(entry: dict[str, Any]) -> int:
    """The audit entry has Vault's error text, not its HTTP status: the kind it implies."""
    data = (entry.get("response") or {}).get("data") or {}
    # A request refused before a backend saw it has `error`; a backend's logical error
    # (a 400) is in the response's data.
    error = entry.get("error") or (data.get("error") if isinstance(data, dict) else "") or ""
    if not error:
        return 200
    if "permission denied" in error:
        return 403
    if "unsupported path" in error or "no handler" in error:
        return 404
    return 400


class AuditLog:
    def __init__(self, path: Path, ignore_accessor: str = "") -> None:
        self.path = path
        self.ignore_accessor = ignore_accessor  # the test's own operator token
        self._lock = threading.Lock()
        self._offset = 0  # entries before it were cleared by the test
        self._seen: set[str] = set()

    def _entries(self, start: int = 0) -> list[dict[str, Any]]:
        try:
            with self.path.open("rb") as stream:
                stream.seek(start)
                text = stream.read()
        except FileNotFoundError:
            return []
        entries = []
        for line in text.splitlines():
            if line.strip():
                try:
                    entries.append(json.loads(line))
                except ValueError:
                    continue  # a line Vault is still writing
        return entries

    def requests(self) -> list[LoggedRequest]:
        with self._lock:
            start = self._offset
        found = []
        for entry in self._entries(start):
            if entry.get("type") != "response":
                continue
            request = entry.get("request") or {}
            if self.ignore_accessor and \
                    request.get("client_token_accessor") == self.ignore_accessor:
                continue
            # Go writes nanoseconds; Python 3.11 reads at most microseconds.
            when = re.sub(r"(\.\d{6})\d+", r"\1", entry["time"]).replace("Z", "+00:00")
            stamp = datetime.fromisoformat(when)
            found.append(LoggedRequest(
                METHODS.get(request.get("operation", ""), request.get("operation", "")),
                request.get("path", ""), _status(entry),
                request.get("client_token_accessor") or None, stamp.timestamp()))
        return found

    def clear(self) -> None:
        with self._lock:
            try:
                self._offset = self.path.stat().st_size
            except FileNotFoundError:
                self._offset = 0

    def seed_secrets(self) -> None:
        """Every secret in any response: must never appear in what the entrypoint says."""
        for entry in self._entries():
            if entry.get("type") == "response":
                _seed(entry.get("response") or {})
                _seed((entry.get("request") or {}).get("data") or {})


def _seed(value: Any, key: str = "") -> None:
    if isinstance(value, dict):
        for name, item in value.items():
            _seed(item, name)
    elif isinstance(value, list):
        for item in value:
            _seed(item, key)
    elif isinstance(value, str) and key in SECRET_KEYS:
        seed_secret(value)
