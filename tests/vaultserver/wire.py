"""Vault's wire format: the response envelope, error bodies, durations and identifiers.

Everything here follows /work/shared/reference/vault-api.md section 0: every envelope key
is present (absent parts are JSON null), errors are {"errors": [...]}, plain core errors
are wrapped the way go-multierror prints them.
"""

from __future__ import annotations

import re
import secrets
import string
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from typing import Any

SYSTEM_DEFAULT_TTL = 2764800  # 768h: Vault's default and max lease TTL
SYSTEM_MAX_TTL = 2764800
BASE62 = string.ascii_letters + string.digits
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class VaultError(Exception):
    """An error answer: status and the strings of {"errors": [...]}."""

    def __init__(self, status: int, *errors: str) -> None:
        super().__init__(", ".join(errors))
        self.status = status
        self.errors = list(errors)


def bad_request(message: str) -> VaultError:
    """A logical.ErrorResponse: 400 with the clean message."""
    return VaultError(400, message)


def multierror(*messages: str) -> str:
    """go-multierror's text, as core errors reach the client."""
    count = len(messages)
    head = f"{count} error occurred:\n" if count == 1 else f"{count} errors occurred:\n"
    return head + "".join(f"\t* {m}\n" for m in messages) + "\n"


PERMISSION_DENIED = multierror("permission denied")
INVALID_TOKEN = multierror("permission denied", "invalid token")


@dataclass
class Request:
    """A logical request: operation (read/list/update/delete), path without /v1/, data."""

    method: str
    operation: str
    path: str
    data: dict[str, Any]
    headers: Message
    token: str | None
    remote_addr: str = "127.0.0.1"
    accessor: str | None = None  # filled in once the token is known
    token_entry: Any = None


@dataclass
class Response:
    """What the HTTP layer writes: no body means 204."""

    status: int = 200
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)


def envelope(
    data: dict[str, Any] | None = None,
    *,
    auth: dict[str, Any] | None = None,
    warnings: list[str] | None = None,
    lease_id: str = "",
    renewable: bool = False,
    lease_duration: int = 0,
    mount_type: str = "",
) -> dict[str, Any]:
    """The HTTPResponse of translate_response.go, every key present."""
    return {
        "request_id": str(uuid.uuid4()),
        "lease_id": lease_id,
        "renewable": renewable,
        "lease_duration": lease_duration,
        "data": data,
        "wrap_info": None,
        "warnings": warnings or None,
        "auth": auth,
        "mount_type": mount_type,
    }


def ok(data: dict[str, Any] | None = None, **kwargs: Any) -> Response:
    return Response(200, envelope(data, **kwargs))


def no_content() -> Response:
    return Response(204, None)


def parse_duration(value: Any, what: str = "duration") -> int:
    """Seconds from an int, a numeric string or a Go duration ("1h30m", "90s", "2d")."""
    if value is None or value == "":
        return 0
    if isinstance(value, bool):
        raise bad_request(f"invalid {what}")
    if isinstance(value, int | float):
        return int(value)
    text = str(value).strip()
    if text.isdigit():
        return int(text)
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise bad_request(f"error parsing {what}: invalid duration {text!r}")
    return int(sum(float(n) * _UNITS[u] for n, u in parts))


def go_duration(seconds: int) -> str:
    """Go's time.Duration.String() for whole seconds: 3600 -> "1h0m0s"."""
    if seconds == 0:
        return "0s"
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{sign}{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{sign}{minutes}m{secs}s"
    return f"{sign}{secs}s"


def human_duration(seconds: int) -> str:
    """sdk/framework/lease.go humanDuration: Go's string without zero units ("1h", "1m")."""
    text = go_duration(seconds)
    if text == "0s":
        return text
    if text.endswith("m0s"):
        text = text[:-2]
    index = text.find("h0m")
    if index > 0:
        text = text[: index + 1] + text[index + 3 :]
    return text


def ttl_cap_warning(requested: int, remaining: int) -> str:
    return (
        f'TTL of "{human_duration(requested)}" exceeded the effective max_ttl of '
        f'"{human_duration(remaining)}"; TTL value is capped accordingly'
    )


def rfc3339nano(epoch: float | None) -> str:
    """ptypes.TimestampString / Go RFC3339Nano in UTC: trailing zeros trimmed, "Z"."""
    if epoch is None:
        return ""
    moment = datetime.fromtimestamp(epoch, UTC)
    fraction = f"{moment.microsecond:06d}".rstrip("0")
    base = moment.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{fraction}Z" if fraction else f"{base}Z"


def base62(length: int) -> str:
    return "".join(secrets.choice(BASE62) for _ in range(length))


def new_uuid() -> str:
    return str(uuid.uuid4())


def as_list(value: Any) -> list[str]:
    """A Vault comma-string-or-list field."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return [str(item) for item in value]


def as_bool(value: Any, default: bool = False) -> bool:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    text = str(value).lower()
    if text in ("true", "1", "t", "yes"):
        return True
    if text in ("false", "0", "f", "no"):
        return False
    raise bad_request(f"cannot parse '{value}' as bool")
