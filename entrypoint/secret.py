"""A value that must never be shown: its repr and str are redacted.

Every value fetched from a secret source travels as a :class:`Secret`. The value is
also registered with :mod:`entrypoint.logs` so that a log line that somehow contains it
is scrubbed before it is written (belt and braces).
"""

from __future__ import annotations

from typing import Final

REDACTED: Final = "<redacted>"

_known: set[str] = set()


class Secret:
    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        # Short values (a username such as "app") would scrub ordinary words out of log lines;
        # the scrubber is a safety net, the rule is that code never logs a value.
        if len(value) >= 8:
            _known.add(value)

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


def scrub(text: str) -> str:
    """Replace any known secret value inside ``text`` with the redaction marker."""
    if not _known:
        return text
    for value in sorted(_known, key=len, reverse=True):
        if value in text:
            text = text.replace(value, REDACTED)
    return text
