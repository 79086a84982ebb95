"""References to secrets inside environment values.

Grammar of one value, tried in this order:

1. It contains ``${SCHEME:`` (``SCHEME`` is ``vault``, ``consul`` or ``file``): a template.
   ``${SCHEME:BODY}`` is a reference, ``$$`` is a literal ``$`` and everything else is
   literal text. So ``$${vault:x}`` is the literal text ``${vault:x}``.
2. It starts with one or more backslashes then ``SCHEME:``: a literal with the first
   backslash removed (``\\vault:not-a-ref`` gives ``vault:not-a-ref``).
3. It starts with ``SCHEME:``: the whole value is one reference.
4. Anything else is literal and passes through byte for byte.

Bodies: ``vault:PATH#KEY[?version=N]``, ``consul:KEY``, ``file:PATH[#KEY]``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from entrypoint.errors import ReferenceSyntaxError
from entrypoint.plan.keys import SourceKey

SCHEMES = ("vault", "consul", "file")
_SCHEME_ALT = "|".join(SCHEMES)
_INLINE_START = re.compile(rf"\$\{{(?:{_SCHEME_ALT}):")
_ESCAPED = re.compile(rf"\\+(?:{_SCHEME_ALT}):")
_WHOLE = re.compile(rf"(?:{_SCHEME_ALT}):")
_VERSION = re.compile(r"\?version=(\d+)\Z")


@dataclass(frozen=True)
class Ref:
    scheme: str
    path: str
    key: str | None = None
    version: int | None = None

    def format(self) -> str:
        text = f"{self.scheme}:{self.path}"
        if self.key is not None:
            text += f"#{self.key}"
        if self.version is not None:
            text += f"?version={self.version}"
        return text

    @property
    def source_key(self) -> SourceKey:
        """What is fetched once per generation: two keys of one path share it."""
        return SourceKey(self.scheme, self.path, self.version)

    def __str__(self) -> str:
        return self.format()


Part = str | Ref


def parse_body(body: str, where: str) -> Ref:
    """Parse ``SCHEME:BODY`` (without ``${ }``)."""
    scheme, sep, rest = body.partition(":")
    if not sep or scheme not in SCHEMES:
        raise ReferenceSyntaxError(f"{where}: unknown reference scheme {scheme!r}",
                                   hint=f"expected one of {', '.join(SCHEMES)}")
    version: int | None = None
    m = _VERSION.search(rest)
    if m:
        version = int(m.group(1))
        rest = rest[: m.start()]
        if scheme != "vault" or version < 1:
            raise ReferenceSyntaxError(
                f"{where}: ?version={m.group(1)} is only valid on vault: references, "
                "with a version of 1 or more")
    if "?" in rest:
        raise ReferenceSyntaxError(f"{where}: unexpected '?' in reference {scheme}:…",
                                   hint="the only option is ?version=N, at the end")
    path, hash_, key = rest.partition("#")
    path = path.strip("/") if scheme != "file" else path
    if not path:
        raise ReferenceSyntaxError(f"{where}: reference {scheme}: has no path",
                                   hint=_expected(scheme))
    if hash_ and not key:
        raise ReferenceSyntaxError(f"{where}: reference {scheme}:{path}# has an empty key",
                                   hint=_expected(scheme))
    if scheme == "vault" and not hash_:
        raise ReferenceSyntaxError(f"{where}: reference vault:{path} names no key",
                                   hint=_expected(scheme))
    if scheme == "consul" and hash_:
        raise ReferenceSyntaxError(f"{where}: consul: references take no #KEY",
                                   hint=_expected(scheme))
    return Ref(scheme, path, key if hash_ else None, version)


def _expected(scheme: str) -> str:
    return {
        "vault": "expected vault:PATH#KEY or vault:PATH#KEY?version=N",
        "consul": "expected consul:KEY",
        "file": "expected file:PATH or file:PATH#KEY",
    }[scheme]


def parse(value: str, where: str = "value") -> list[Part]:
    """Split ``value`` into literal text and references. ``where`` names it in errors."""
    if _INLINE_START.search(value):
        return _parse_template(value, where)
    if _ESCAPED.match(value):
        return [value[1:]]
    if _WHOLE.match(value):
        return [parse_body(value, where)]
    return [value] if value else []


def _parse_template(value: str, where: str) -> list[Part]:
    parts: list[Part] = []
    text: list[str] = []
    i = 0
    while i < len(value):
        if value.startswith("$$", i):
            text.append("$")
            i += 2
        elif _INLINE_START.match(value, i):
            end = value.find("}", i)
            if end < 0:
                raise ReferenceSyntaxError(
                    f"{where}: reference starting at character {i + 1} has no closing '}}'")
            if text:
                parts.append("".join(text))
                text = []
            parts.append(parse_body(value[i + 2 : end], where))
            i = end + 1
        else:
            text.append(value[i])
            i += 1
    if text:
        parts.append("".join(text))
    return parts


def format(parts: list[Part]) -> str:
    """The inverse of :func:`parse`: ``parse(format(p)) == p`` for any parsed ``p``."""
    if not parts:
        return ""
    if len(parts) == 1:
        only = parts[0]
        if isinstance(only, Ref):
            text = only.format()
            if not _INLINE_START.search(text):
                return text
        else:
            if _INLINE_START.search(only):
                return only.replace("$", "$$")
            if _ESCAPED.match(only) or _WHOLE.match(only):
                return "\\" + only
            return only
    return "".join(
        "${" + p.format() + "}" if isinstance(p, Ref) else p.replace("$", "$$") for p in parts
    )


def references(parts: list[Part]) -> list[Ref]:
    return [p for p in parts if isinstance(p, Ref)]
