"""The log scrubber against values that JSON escapes (issue 14, item 4).

The JSON formatter used to scrub the line *after* ``json.dumps``: a value holding ``"``,
``\\``, a newline or a tab (any PEM key) was escaped first, so the scrubber's search for
the value found nothing and the line carried it in clear. These tests log such values,
held by live :class:`Secret` objects, through the real formatters and look for the value
in every form it could take.
"""

from __future__ import annotations

import io
import json
import logging

from hypothesis import given, settings
from hypothesis import strategies as st

from entrypoint import logs
from entrypoint.secret import REDACTED, Secret

PEM = ("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC-Log-Kk73\n"
       "-----END PRIVATE KEY-----\n")
# Characters that JSON and repr escape, and ordinary ones around them.
ALPHABET = st.sampled_from([*'"\\\n\t\r\x00\x1bé✓ab/:\'', "xyz"])


def forms(value: str) -> set[str]:
    return {value, json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1],
            repr(value)[1:-1]}


def emit(fmt: str, message: str, *args: object, **extra: object) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter() if fmt == "json" else logs.TextFormatter())
    log = logging.getLogger(f"entrypoint.test-log-secrecy-{fmt}")
    log.propagate = False
    log.handlers = [handler]
    log.setLevel(logging.INFO)
    try:
        raise ValueError(f"failed with {args[0] if args else ''}")
    except ValueError:
        log.error(message, *args, extra=extra, exc_info=True)
    return stream.getvalue()


def assert_clean(line: str, value: str) -> None:
    for form in forms(value):
        if len(form) >= 8:
            assert form not in line, "a secret value is in the log line"


def test_a_pem_key_in_a_json_log_line_is_scrubbed() -> None:
    held = Secret(PEM)
    line = emit("json", "oops: %s", held.reveal(), detail=held.reveal())
    assert_clean(line, PEM)
    event = json.loads(line)
    assert REDACTED in event["msg"] and event["detail"] == REDACTED
    assert PEM not in event["traceback"]


@settings(max_examples=150, deadline=None)
@given(core=st.lists(ALPHABET, min_size=3, max_size=12).map("".join),
       fmt=st.sampled_from(["json", "text"]))
def test_any_value_is_scrubbed_in_both_formats(core: str, fmt: str) -> None:
    value = f"Sx{core}-Secret-Ll40"  # at least 8 characters: scrubbed by the registry
    held = Secret(value)
    line = emit(fmt, "value was %s here", held.reveal(), field=held.reveal())
    assert_clean(line, value)
    if fmt == "json":
        event = json.loads(line)
        assert all(value not in str(v) for v in event.values())
