"""A value that must never be shown: its repr and str are redacted.

Every value fetched from a secret source travels as a :class:`Secret`. The value is
also registered with :mod:`entrypoint.logs` so that a log line that somehow contains it
is scrubbed before it is written (belt and braces).

The registry counts the live ``Secret`` objects holding each value: a value is scrubbed
while this process still holds it, and forgotten once the last of them is gone, so a
long-running entrypoint that rotates credentials for months does not grow without end.
The values are sorted once per change of the registry, not for every log line.
"""

from __future__ import annotations

import collections
import threading
from typing import Final

REDACTED: Final = "<redacted>"
# Short values (a username such as "app") would scrub ordinary words out of log lines;
# the scrubber is a safety net, the rule is that code never logs a value.
MIN_SCRUBBED: Final = 8

_lock = threading.Lock()
_known: dict[str, int] = {}  # value -> how many live Secret objects hold it
# Values whose Secret was collected. ``__del__`` may run inside any allocation, even one
# made while ``_lock`` is held by the same thread, so it must not take the lock: it only
# appends here (atomic), and whoever holds the lock next settles the counts.
_released: collections.deque[str] = collections.deque()
_by_length: tuple[str, ...] = ()  # _known's values, longest first; rebuilt on change
_by_length_valid = True


def _settle() -> None:
    """Apply the releases queued by ``__del__``; the caller holds ``_lock``."""
    global _by_length_valid
    while _released:
        value = _released.popleft()
        left = _known.get(value, 0) - 1
        if left > 0:
            _known[value] = left
        else:
            _known.pop(value, None)
            _by_length_valid = False


def _register(value: str) -> None:
    global _by_length_valid
    with _lock:
        _settle()
        count = _known.get(value, 0)
        _known[value] = count + 1
        if count == 0:
            _by_length_valid = False


def known_count() -> int:
    """How many distinct values the scrubber currently knows (for tests and metrics)."""
    with _lock:
        _settle()
        return len(_known)


class Secret:
    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        if len(value) >= MIN_SCRUBBED:
            _register(value)

    def __del__(self) -> None:
        # getattr: __init__ may have failed before the value was set.
        value = getattr(self, "_value", "")
        if len(value) >= MIN_SCRUBBED and _released is not None:  # None: interpreter exit
            _released.append(value)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({REDACTED!r})"

    def __str__(self) -> str:
        return REDACTED

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a Secret cannot be pickled")


def _longest_first() -> tuple[str, ...]:
    global _by_length, _by_length_valid
    with _lock:
        _settle()
        if not _by_length_valid:
            _by_length = tuple(sorted(_known, key=len, reverse=True))
            _by_length_valid = True
        return _by_length


def scrub(text: str) -> str:
    """Replace any known secret value inside ``text`` with the redaction marker.

    Longest first: a value that contains (or overlaps) a shorter one is replaced whole.
    """
    for value in _longest_first():
        if value in text:
            text = text.replace(value, REDACTED)
    return text
