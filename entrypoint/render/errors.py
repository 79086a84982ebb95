"""Template errors that name the place and never a value.

A template handles secret values, and Python's and Jinja's messages quote what they were
given: ``float()`` of a PEM key (``filesizeformat``) quotes the key, escaped; a key looked
up by a computed value (``d[value|upper]``) is that value, transformed; ``repr`` turns a
value holding ``'`` and ``\\`` into text no plain search finds. Scrubbing such text
cannot be made complete, so messages are *built* here from parts that are safe to show:

- where (``file:line``) and the exception's kind, always;
- a name (a key, an attribute, a variable) only when the template's own text spells it;
- our own errors (:class:`EntrypointError`), whose messages name paths and keys, after
  every value the template was handed is scrubbed from them in every form it could take;
- any other exception's message never (``ValueError``, ``TypeError``, ...: only the kind).
"""

from __future__ import annotations

import json
import re
import traceback
from collections.abc import Iterable

from jinja2 import TemplateSyntaxError, UndefinedError
from jinja2.exceptions import SecurityError

from entrypoint.errors import EntrypointError, TemplateError
from entrypoint.secret import REDACTED

MIN_SCRUB = 3  # shorter values would scrub ordinary letters out of a message
COMPUTED = "<computed>"  # stands for an argument or name the template did not spell out


class Missing(UndefinedError):
    """A missing variable, key or attribute, its parts kept apart (see :func:`describe`)."""

    def __init__(self, owner: str | None, name: object, keys: list[str] | None) -> None:
        super().__init__("a missing name")  # never shown: describe() builds the message
        self.owner = owner      # "secret kv/app/db", "dict object", or None for a variable
        self.name = name
        self.keys = keys        # for a secret: the names of its keys


class Unsafe(SecurityError):
    """The sandbox refused an attribute; the name is kept apart as in :class:`Missing`."""

    def __init__(self, name: object, owner_type: str) -> None:
        super().__init__("an unsafe attribute")
        self.name = name
        self.owner_type = owner_type


def written(name: object, source: str) -> bool:
    """The template's text spells ``name`` as a whole word (so showing it reveals nothing)."""
    text = str(name)
    return bool(text) and re.search(rf"(?<!\w){re.escape(text)}(?!\w)", source) is not None


def shown(name: object, source: str) -> str:
    return repr(name) if written(name, source) else f"'{COMPUTED}'"


def forms(value: str) -> set[str]:
    """The ways ``value`` can appear in a message: as is, escaped by ``repr`` or JSON, and
    each of its lines (a PEM key split, or quoted one line at a time)."""
    out = {value, repr(value)[1:-1], json.dumps(value)[1:-1],
           json.dumps(value, ensure_ascii=False)[1:-1]}
    out.update(line for line in value.splitlines() if len(line.strip()) >= 8)
    return {form for form in out if len(form) >= MIN_SCRUB}


def scrub(text: str, source: str, values: Iterable[str]) -> str:
    """Remove every value (in every form) from ``text``, unless the template spells it.

    A value the template itself spells out (a username "app" in "kv/app/db") is no secret
    from its reader, and scrubbing it would garble paths in messages.
    """
    found = {form for value in values if value not in source for form in forms(value)}
    for form in sorted(found, key=len, reverse=True):
        if form in text:
            text = text.replace(form, REDACTED)
    return text


def line_of(exc: BaseException, label: str) -> int | None:
    """Jinja rewrites tracebacks so a template frame carries the template's own line."""
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == label:
            line = frame.lineno
    return line


def describe(exc: Exception, here: str, source: str, values: Iterable[str]) -> EntrypointError:
    """The error to show for ``exc`` raised while rendering at ``here`` (``file:line``)."""
    if isinstance(exc, EntrypointError):
        # Keep the class (and exit status): an unreachable server stays retryable.
        hint = scrub(exc.hint, source, values) if exc.hint else None
        return copy_error(exc, f"{here}: {scrub(exc.message, source, values)}", hint)
    if isinstance(exc, Unsafe):
        return TemplateError(f"{here}: refused by the sandbox: access to attribute "
                             f"{shown(exc.name, source)} of a {exc.owner_type} object is unsafe")
    if isinstance(exc, SecurityError):
        return TemplateError(f"{here}: refused by the sandbox")
    if isinstance(exc, Missing):
        name = shown(exc.name, source)
        if exc.owner is None:
            return TemplateError(f"{here}: {name} is undefined")
        if exc.keys is not None:
            present = ", ".join(exc.keys) or "none"
            return TemplateError(f"{here}: {exc.owner} has no key {name} "
                                 f"(keys present: {present})")
        return TemplateError(f"{here}: {exc.owner} has no attribute or key {name}")
    if isinstance(exc, TemplateSyntaxError):  # an {% include %}d template: text, not values
        return TemplateError(f"{here}: {scrub(exc.message or '', source, values)}")
    if isinstance(exc, UndefinedError):
        return TemplateError(f"{here}: an undefined value was used")
    from entrypoint.describe import error_kind

    return TemplateError(f"{here}: {error_kind(exc)} (its message is not shown: it could "
                         "quote a secret value)")


def copy_error(exc: EntrypointError, message: str, hint: str | None) -> EntrypointError:
    """``exc`` with another message: same class, same exit status, same extra fields."""
    new = exc.__class__.__new__(exc.__class__)
    new.__dict__.update(exc.__dict__)
    new.message = message
    new.hint = hint
    new.args = (message,)
    return new
