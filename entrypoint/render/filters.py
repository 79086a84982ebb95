"""The filters templates get besides Jinja2's own: ``tojson``, ``b64encode``,
``b64decode`` and ``quote``. An error names the filter, never the value (it could be a
secret)."""

from __future__ import annotations

import base64
import binascii
import json
import shlex
from collections.abc import Callable
from typing import Any

from entrypoint.errors import TemplateError


def _b64encode(value: Any) -> str:
    data = value if isinstance(value, bytes) else str(value).encode("utf-8")
    return base64.b64encode(data).decode("ascii")


def _b64decode(value: Any) -> str:
    try:
        return base64.b64decode(str(value), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        # The codec's own message quotes the offending bytes: say what, not which.
        raise TemplateError("b64decode: the value is not base64 of UTF-8 text") from None


def _tojson(value: Any, indent: int | None = None) -> str:
    try:
        return json.dumps(value, indent=indent, ensure_ascii=False)
    except (TypeError, ValueError):
        raise TemplateError(f"tojson: a {type(value).__name__} cannot be written as "
                            "JSON") from None


def _quote(value: Any) -> str:
    return shlex.quote(str(value))


ADDED: dict[str, Callable[..., str]] = {"tojson": _tojson, "b64encode": _b64encode,
                                        "b64decode": _b64decode, "quote": _quote}
