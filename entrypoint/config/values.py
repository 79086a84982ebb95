"""Parsers for the small value types of settings: durations, signals, booleans, modes.

Each raises ``ValueError`` with a sentence saying what was expected; the config loader
adds where the value came from.
"""

from __future__ import annotations

import re
import signal

_DURATION = re.compile(r"(?P<num>\d+(?:\.\d+)?)(?P<unit>ms|s|m|h)?")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}

# The longest duration taken: a century. Beyond it, deadlines overflow the platform's
# time_t (a template_timeout of 99999999999999h ended in a traceback) for no use.
MAX_DURATION = 100 * 365.25 * 86400.0

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})


def parse_duration(text: str) -> float:
    """``500ms``, ``30s``, ``5m``, ``1h``, ``1m30s`` or a bare number of seconds."""
    s = text.strip().lower()
    if not s:
        raise ValueError("expected a duration such as 500ms, 30s, 5m or 1h, got an empty value")
    total = 0.0
    pos = 0
    while pos < len(s):
        m = _DURATION.match(s, pos)
        if m is None or (m.group("unit") is None and m.end() != len(s)):
            raise ValueError(f"expected a duration such as 500ms, 30s, 5m or 1h, got {text!r}")
        total += float(m.group("num")) * _UNITS[m.group("unit")]
        pos = m.end()
    return check_duration(total)


def check_duration(seconds: float) -> float:
    """A duration in seconds, if it is one: 0 or more, finite, at most a century."""
    if seconds != seconds or seconds < 0:  # NaN compares unequal to itself
        raise ValueError(f"expected a duration of 0 or more, got {seconds}")
    if seconds > MAX_DURATION:
        raise ValueError(f"expected a duration of at most 100 years (876000h), got {seconds:g}s")
    return seconds


def format_duration(seconds: float) -> str:
    if seconds and seconds < 1:
        return f"{round(seconds * 1000)}ms"
    if seconds % 3600 == 0 and seconds:
        return f"{int(seconds // 3600)}h"
    if seconds % 60 == 0 and seconds:
        return f"{int(seconds // 60)}m"
    return f"{seconds:g}s"


def parse_signal(text: str) -> signal.Signals:
    """``SIGHUP``, ``HUP``, ``hup`` or a number."""
    s = text.strip()
    if s.isdigit():
        try:
            return signal.Signals(int(s))
        except ValueError:
            raise ValueError(f"expected a signal name such as SIGHUP, got {text!r}") from None
    name = s.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return signal.Signals[name]
    except KeyError:
        raise ValueError(
            f"expected a signal name such as SIGHUP or SIGTERM, got {text!r}") from None


def parse_bool(text: str) -> bool:
    s = text.strip().lower()
    if s in TRUE_WORDS:
        return True
    if s in FALSE_WORDS:
        return False
    raise ValueError(f"expected true or false, got {text!r}")


# Go's strconv.ParseBool, which the vault CLI applies to its VAULT_* switches: exactly these
# spellings, so that a value means the same to the CLI, Vault Agent and the entrypoint.
GO_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
GO_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def parse_go_bool(text: str) -> bool:
    s = text.strip()
    if s in GO_TRUE:
        return True
    if s in GO_FALSE:
        return False
    raise ValueError(f"expected true or false (as Go's ParseBool reads it: 1, t, T, TRUE, "
                     f"true, True, 0, f, F, FALSE, false, False), got {text!r}")


def parse_fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"expected a number between 0 and 1, got {text!r}") from None
    if not 0.0 < value < 1.0:
        raise ValueError(f"expected a number strictly between 0 and 1, got {text!r}")
    return value


def parse_perms(text: str) -> int:
    s = text.strip()
    if not re.fullmatch(r"0?[0-7]{3}", s):
        raise ValueError(f"expected octal file permissions such as 0600, got {text!r}")
    return int(s, 8)


def parse_positive_int(text: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise ValueError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise ValueError(f"expected a whole number of at least 1, got {text!r}")
    return value
