"""The local secrets directory as the fast ``--exec`` path reads it (see
:mod:`entrypoint.commands.fast_exec`): :class:`~entrypoint.sources.local.folder.LocalSource`
and :class:`~entrypoint.sources.local.consul.LocalConsulSource` again with built-in modules
only, JSON decoded by the C scanner behind ``json``. Whatever they would refuse or report,
this raises :class:`Fallback` for, and the full path then says it."""

from __future__ import annotations

import _json  # json's C half: decoding without json.decoder, which imports re
import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

# Copies, so as not to import their modules; tests/unit/test_exec_imports.py checks them.
EXTENSIONS = (".json", ".toml")  # entrypoint.sources.local.folder.EXTENSIONS
# Path.is_file() answers False on these errors and raises on any other.
_IGNORED_ERRNOS = frozenset({2, 20, 9, 40})  # ENOENT, ENOTDIR, EBADF, ELOOP


class Fallback(Exception):
    """Not handled here: the full path does it, from the start."""


def _parts(path: str) -> list[str]:
    return [part for part in path.split("/") if part and part != "."]


def read_vault(root: str, path: str, version: int | None) -> dict[str, str]:
    """``LocalSource.fetch``: the first of the candidate files that is a file."""
    clean = path.strip("/")
    if ".." in _parts(clean):
        raise Fallback
    mount, _, rest = clean.partition("/")
    if rest == "data" or rest.startswith("data/"):
        raise Fallback
    names = [clean, f"{mount}/data/{rest}"] if rest else [clean]
    tag = f"@{version}" if version is not None else ""
    for name in names:
        for ext in EXTENSIONS:
            candidate = f"{root}/{name}{tag}{ext}"
            try:
                st = os.stat(candidate)
            except OSError as exc:
                if exc.errno in _IGNORED_ERRNOS:
                    continue
                raise Fallback from None
            except ValueError:
                continue
            if st.st_mode & 0o170000 == 0o100000:  # S_ISREG
                return _load_object(candidate, ext)
    raise Fallback  # not found


def read_consul(root: str, path: str) -> str:
    """``LocalConsulSource.fetch``: ``DIR/consul/KEY`` as text, final newlines dropped."""
    clean = path.strip("/")
    if ".." in _parts(clean):
        raise Fallback
    with open(f"{root}/consul/{clean}", encoding="utf-8") as file:  # as Path.read_text
        return file.read().rstrip("\n")


def _load_object(file: str, ext: str) -> dict[str, str]:
    """``folder.load_object`` then ``base.to_secrets``, on a JSON or TOML file."""
    with open(file, "rb") as handle:
        text = handle.read().decode("utf-8")
    data: object
    if ext == ".toml":
        import tomllib  # as the full path: only for TOML files

        data = tomllib.loads(text)
    else:
        data = json_loads(text)
    if not isinstance(data, dict):
        raise Fallback
    return {str(key): value if isinstance(value, str) else json_dumps(value)
            for key, value in data.items()}


class _Context:
    """What ``_json.make_scanner`` reads from a ``json.JSONDecoder()``."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = {"-Infinity": float("-inf"), "Infinity": float("inf"),
                      "NaN": float("nan")}.__getitem__
    memo: dict[str, str] = {}


_scan: Callable[[str, int], tuple[object, int]] = _json.make_scanner(
    _Context())  # type: ignore[arg-type]  # the stub asks for a JSONDecoder: it reads these
_SPACE = " \t\n\r"


def json_loads(text: str) -> object:
    """``json.loads(text)`` for a valid document; anything else raises (and the full
    path reports it)."""
    if text.startswith("\ufeff"):
        raise Fallback
    start = len(text) - len(text.lstrip(_SPACE))
    try:
        value, end = _scan(text, start)
    except StopIteration:
        raise Fallback from None
    if text[end:].strip(_SPACE):
        raise Fallback  # "Extra data"
    return value


def json_dumps(value: object) -> str:
    """``json.dumps(value, separators=(",", ":"), sort_keys=True)``, as ``to_secrets``
    encodes a value that is not a string."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if type(value) is int:
        return int.__repr__(value)
    if type(value) is float and value == value and value not in (float("inf"), float("-inf")):
        return float.__repr__(value)
    import json  # lists, tables, NaN: rare enough to pay for json (and re)

    return json.dumps(value, separators=(",", ":"), sort_keys=True)
