"""References to secrets inside environment values.

Grammar of one value, tried in this order:

1. It contains ``${SCHEME:`` (``SCHEME`` is ``vault``, ``consul`` or ``file``): a template.
   ``${SCHEME:BODY}`` is a reference, ``$$`` is a literal ``$`` and everything else is
   literal text. So ``$${vault:x}`` is the literal text ``${vault:x}``.
2. It starts with one or more backslashes then ``SCHEME:``: a literal with the first
   backslash removed (``\\vault:not-a-ref`` gives ``vault:not-a-ref``).
3. It starts with ``SCHEME:``: the whole value is one reference.
4. Anything else is literal and passes through byte for byte.

Bodies: ``vault:PATH#KEY[?version=N]``, ``consul:KEY``, ``file:PATH[#KEY]``,
``transit:KEY#CIPHERTEXT`` (decrypted by Vault's transit engine; ``vault:vN:CIPHERTEXT``, as
bank-vaults vault-env writes it, is the same with the key of the ``transit_key`` setting), and a
write (issuing a certificate): ``vault:PATH#KEY?write&NAME=VALUE[&NAME=VALUE...]``, values
percent-encoded where they hold ``%``, ``&``, ``#`` or ``}`` (docs/configuration.md).
"""

from __future__ import annotations

from entrypoint.errors import ReferenceSyntaxError

TYPE_CHECKING = False  # not typing's: importing typing costs the fast path milliseconds
if TYPE_CHECKING:
    from entrypoint.plan.keys import SourceKey

# Parsed with str methods, not ``re``, and ``Ref`` is a plain class, not a dataclass: the
# fast ``--exec`` path (entrypoint/commands/fast_exec.py) parses with this module and
# imports neither (tests/unit/test_exec_imports.py).
SCHEMES = ("vault", "consul", "file", "transit")
_INLINE_STARTS = tuple("${" + scheme + ":" for scheme in SCHEMES)
_WHOLE_STARTS = tuple(scheme + ":" for scheme in SCHEMES)
_VERSION_TAG = "?version="
_WRITE_TAG = "?write&"
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
_HEX = frozenset("0123456789abcdefABCDEF")
Params = tuple[tuple[str, str], ...]


def _inline_start(value: str, pos: int = 0) -> bool:
    """``${SCHEME:`` at ``pos``."""
    return value.startswith(_INLINE_STARTS, pos)


def _has_inline(value: str) -> bool:
    """``${SCHEME:`` anywhere in ``value``."""
    return any(start in value for start in _INLINE_STARTS)


def _escaped(value: str) -> bool:
    """One or more backslashes, then ``SCHEME:``, at the start."""
    return value.startswith("\\") and value.lstrip("\\").startswith(_WHOLE_STARTS)


def _whole(value: str) -> bool:
    return value.startswith(_WHOLE_STARTS)


def _version_suffix(rest: str) -> int:
    """Where a trailing ``?version=DIGITS`` starts in ``rest``, or -1. Digits are what
    ``re``'s ``\\d`` matches (``str.isdecimal``)."""
    at = rest.rfind(_VERSION_TAG)
    if at < 0:
        return -1
    digits = rest[at + len(_VERSION_TAG):]
    return at if digits and digits.isdecimal() else -1


class Ref:
    """One reference: ``vault:PATH#KEY?version=N``, or a write with ``params`` (sorted by
    name). Immutable, compared by value."""

    __slots__ = ("key", "params", "path", "scheme", "version")
    __match_args__ = ("scheme", "path", "key", "version", "params")
    scheme: str
    path: str
    key: str | None
    version: int | None
    params: Params

    def __init__(self, scheme: str, path: str, key: str | None = None,
                 version: int | None = None, params: Params = ()) -> None:
        object.__setattr__(self, "scheme", scheme)
        object.__setattr__(self, "path", path)
        object.__setattr__(self, "key", key)
        object.__setattr__(self, "version", version)
        object.__setattr__(self, "params", params)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to field {name!r}: a Ref is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r}: a Ref is immutable")

    def _fields(self) -> tuple[str, str, str | None, int | None, Params]:
        return (self.scheme, self.path, self.key, self.version, self.params)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, Ref)
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        return (f"Ref(scheme={self.scheme!r}, path={self.path!r}, key={self.key!r}, "
                f"version={self.version!r}"
                + (f", params={self.params!r})" if self.params else ")"))

    def format(self, *, hide_params: bool = False) -> str:
        """As written; with ``hide_params``, a write's parameters by name only
        (``?write&common_name=…``), as messages show them: some writes take secret
        values."""
        if self.scheme == "transit" and not self.path:
            return str(self.key)  # vault:vN:..., decrypted with the transit_key setting
        text = f"{self.scheme}:{self.path}"
        if self.key is not None:
            text += f"#{self.key}"
        if self.version is not None:
            text += f"?version={self.version}"
        if self.params:
            text += "?write&" + "&".join(f"{name}={'…' if hide_params else _quote(value)}"
                                         for name, value in self.params)
        return text

    @property
    def source_key(self) -> SourceKey:
        """What is fetched once per generation: two keys of one path share it. A transit
        value is one decryption: its ciphertext is part of what is read."""
        from entrypoint.plan.keys import SourceKey

        if self.scheme == "transit":
            return SourceKey("transit", f"{self.path}#{self.key}")
        return SourceKey(self.scheme, self.path, self.version, self.params)

    def __str__(self) -> str:
        return self.format()


Part = str | Ref


def parse_body(body: str, where: str) -> Ref:
    """Parse ``SCHEME:BODY`` (without ``${ }``)."""
    scheme, sep, rest = body.partition(":")
    if not sep or scheme not in SCHEMES:
        raise ReferenceSyntaxError(f"{where}: unknown reference scheme {scheme!r}",
                                   hint=f"expected one of {', '.join(SCHEMES)}")
    if scheme == "transit" or (scheme == "vault" and _is_ciphertext(rest)):
        return _transit(scheme, rest, where)
    rest, version = _version(scheme, rest, where)
    params: Params = ()
    if _WRITE_TAG in rest or rest.endswith("?write"):
        rest, params = _write_params(scheme, rest, where)
    if "?" in rest:
        _stray_option(scheme, rest, where)
    path, hash_, key = rest.partition("#")
    path = path.strip("/") if scheme != "file" else path
    _check_parts(scheme, path, hash_, key, where)
    if params and version is not None:
        raise ReferenceSyntaxError(f"{where}: ?version=N cannot be combined with ?write")
    return Ref(scheme, path, key if hash_ else None, version, params)


def _version(scheme: str, rest: str, where: str) -> tuple[str, int | None]:
    """A trailing ``?version=N`` taken off ``rest``."""
    at = _version_suffix(rest)
    if at < 0:
        return rest, None
    digits = rest[at + len(_VERSION_TAG):]
    version = int(digits)
    if scheme != "vault" or version < 1:
        raise ReferenceSyntaxError(
            f"{where}: ?version={digits} is only valid on vault: references, "
            "with a version of 1 or more")
    return rest[:at], version


def _stray_option(scheme: str, rest: str, where: str) -> None:
    head, _, tail = rest.partition("?")
    if scheme == "vault" and "#" not in head and "#" in tail:
        raise ReferenceSyntaxError(f"{where}: options of vault:{head.strip('/')} come "
                                   "before its key",
                                   hint="expected vault:PATH#KEY?version=N or "
                                        "vault:PATH#KEY?write&NAME=VALUE")
    raise ReferenceSyntaxError(f"{where}: unexpected '?' in reference {scheme}:…",
                               hint="the options are ?version=N and ?write&NAME=VALUE, "
                                    "after the key of a vault: reference")


def _check_parts(scheme: str, path: str, hash_: str, key: str, where: str) -> None:
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


def _is_ciphertext(rest: str) -> bool:
    """``v1:BASE64``: what Vault's transit engine returns (``vault:v1:...``)."""
    version, sep, data = rest.partition(":")
    return bool(sep and data and version[:1] == "v" and version[1:].isdecimal()
                and "#" not in rest)


def _transit(scheme: str, rest: str, where: str) -> Ref:
    """``transit:[MOUNT/]KEY#vault:vN:...`` or ``vault:vN:...`` (the key from settings:
    path ``""``)."""
    if scheme == "vault":
        return Ref("transit", "", f"vault:{rest}")
    path, hash_, ciphertext = rest.partition("#")
    path = path.strip("/")
    if not path or not hash_ or not ciphertext.startswith("vault:v"):
        raise ReferenceSyntaxError(f"{where}: reference transit:{path or '…'} is not "
                                   "KEY#CIPHERTEXT", hint=_expected("transit"))
    return Ref("transit", path, ciphertext)


def _write_params(scheme: str, rest: str, where: str) -> tuple[str, Params]:
    """``PATH#KEY?write&a=1&b=2`` -> (``PATH#KEY``, (("a", "1"), ("b", "2")))."""
    at = rest.find("?write")
    head, query = rest[:at], rest[at + len("?write"):].removeprefix("&")
    if scheme != "vault":
        raise ReferenceSyntaxError(f"{where}: ?write is only valid on vault: references")
    if "#" not in head:
        raise ReferenceSyntaxError(f"{where}: options of vault:{head.strip('/')} come before "
                                   "its key", hint="expected vault:PATH#KEY?write&NAME=VALUE")
    if not query:
        raise ReferenceSyntaxError(f"{where}: ?write names no parameter",
                                   hint="expected vault:PATH#KEY?write&NAME=VALUE[&NAME=VALUE]")
    found: dict[str, str] = {}
    for item in query.split("&"):
        name, eq, value = item.partition("=")
        if not eq or not name or not set(name) <= _NAME_CHARS:
            raise ReferenceSyntaxError(
                f"{where}: write parameter {name or item!r} is not NAME=VALUE",
                hint="names are letters, digits, _ and -; percent-encode %, &, # and } "
                     "in values (%25, %26, %23, %7D)")
        if name == "version" or name in found:
            raise ReferenceSyntaxError(f"{where}: write parameter {name} is given twice"
                                       if name in found else
                                       f"{where}: ?version=N cannot be combined with ?write")
        found[name] = _unquote(value, name, where)
    return head, tuple(sorted(found.items()))


def _quote(value: str) -> str:
    """Percent-encode what would end a value early: ``%``, ``&``, ``#``, ``}``."""
    for char, code in (("%", "%25"), ("&", "%26"), ("#", "%23"), ("}", "%7D")):
        value = value.replace(char, code)
    return value


def _unquote(value: str, name: str, where: str) -> str:
    if "%" not in value:
        return value
    out = bytearray()
    i = 0
    while i < len(value):
        if value[i] == "%":
            digits = value[i + 1:i + 3]
            if len(digits) != 2 or not set(digits) <= _HEX:
                raise ReferenceSyntaxError(f"{where}: write parameter {name}: '%' starts "
                                           "no %XX escape", hint="write a literal % as %25")
            out.append(int(digits, 16))
            i += 3
        else:
            out += value[i].encode("utf-8", "surrogatepass")
            i += 1
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        raise ReferenceSyntaxError(f"{where}: write parameter {name}: the %XX escapes are "
                                   "not UTF-8") from None


def _expected(scheme: str) -> str:
    return {
        "vault": "expected vault:PATH#KEY, vault:PATH#KEY?version=N or "
                 "vault:PATH#KEY?write&NAME=VALUE",
        "consul": "expected consul:KEY",
        "file": "expected file:PATH or file:PATH#KEY",
        "transit": "expected transit:KEY#vault:v1:CIPHERTEXT (or transit:MOUNT/KEY#...)",
    }[scheme]


def parse(value: str, where: str = "value") -> list[Part]:
    """Split ``value`` into literal text and references. ``where`` names it in errors."""
    if _has_inline(value):
        return _parse_template(value, where)
    if _escaped(value):
        return [value[1:]]
    if _whole(value):
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
        elif _inline_start(value, i):
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
            if not _has_inline(text):
                return text
        else:
            if _has_inline(only):
                return only.replace("$", "$$")
            if _escaped(only) or _whole(only):
                return "\\" + only
            return only
    return "".join(
        "${" + p.format() + "}" if isinstance(p, Ref) else p.replace("$", "$$") for p in parts
    )


def references(parts: list[Part]) -> list[Ref]:
    return [p for p in parts if isinstance(p, Ref)]
