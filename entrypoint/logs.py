"""Logging to stderr, one line per event, as text or JSON.

Every line passes through :func:`entrypoint.secret.scrub` before it is written (in JSON,
every field before it is encoded): code is meant never to hand a secret to the logger,
and this makes a slip harmless.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from entrypoint.secret import scrub

LOGGER_NAME = "entrypoint"
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def _timestamp(record: logging.LogRecord) -> str:
    ms = int(record.msecs)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{ms:03d}Z"


# Fields of structured events (JSON keys for log pipelines); the text line already says
# them in words, so text shows only the other extras.
EVENT_FIELDS = frozenset({"event", "outcome", "key", "kind", "lease", "ttl", "pid", "exit_code",
                          "delay", "reason", "signal", "error", "changed", "asked_to_stop"})


def _extras(record: logging.LogRecord, *, text: bool = False) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items()
            if k not in _STANDARD and not (text and k in EVENT_FIELDS)}


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{k}={v}" for k, v in _extras(record, text=True).items())
        line = f"{_timestamp(record)} entrypoint {record.levelname.lower()}: {record.getMessage()}"
        if fields:
            line += " " + fields
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return scrub(line)


class JsonFormatter(logging.Formatter):
    """Each field is scrubbed *before* ``json.dumps``: encoding escapes ``"``, ``\\``,
    newlines and tabs, after which a value holding one (any PEM key) is no longer found
    by a search for the value itself."""

    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": scrub(record.getMessage()),
        }
        event.update({k: v if isinstance(v, int | float | bool) or v is None else scrub(str(v))
                      for k, v in _extras(record).items()})
        if record.exc_info:
            event["traceback"] = scrub(self.formatException(record.exc_info))
        return json.dumps(event, ensure_ascii=False)


def setup(fmt: str = "text", level: str = "info") -> logging.Logger:
    logger = logging.getLogger(LOGGER_NAME)
    logger.handlers.clear()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.setLevel(level.upper())
    logger.addHandler(handler)
    # The logger passes every record, the handler filters: the status and metrics
    # observer (entrypoint/ops/state.py) counts events logged below log_level too.
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    return logger


def get() -> logging.Logger:
    return logging.getLogger(LOGGER_NAME)
