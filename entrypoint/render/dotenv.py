"""The two line formats ``entrypoint render`` prints the app's environment in.

``dotenv`` is read by a POSIX shell (``set -a; . FILE``): a value made only of characters
the shell takes literally is written bare, any other in single quotes, where the shell
takes every character literally, line breaks included; a ``'`` inside is written ``'\\''``.
Nothing in it is ever expanded (``$``, backquotes, ``~``, globs).

``env-file`` is what ``docker run --env-file`` (and ``podman``) read: ``NAME=VALUE``, the
value taken verbatim to the end of the line, no quoting at all. Such a file cannot hold
a line break in a value, nor a carriage return at its end (the line reader drops it), so
those values are refused rather than cut.
"""

from __future__ import annotations

import string

from entrypoint.errors import ConfigError

# Characters a POSIX shell takes literally in an assignment's value. Not "~" (expanded
# after = and :), nor any of $`\"'*?[]#&;|<>(){}! or white space.
_BARE = frozenset(string.ascii_letters + string.digits + "_-./:@%+,=")


def shell_value(value: str) -> str:
    if value and all(c in _BARE for c in value):
        return value
    return "'" + value.replace("'", "'\\''") + "'"


def env_file_value(name: str, value: str) -> str:
    """``value`` as docker's --env-file reads it back; ConfigError when it cannot."""
    if "\n" in value or value.endswith("\r"):
        raise ConfigError(f"variable {name}: its value holds a line break, which docker "
                          "--env-file cannot carry",
                          hint="use --format dotenv and read it with set -a; . FILE, or "
                               "--format json")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(f"variable {name}: its value is not UTF-8 text, which docker "
                          "--env-file refuses", hint="use --format json") from None
    return value


def lines(raw: dict[str, str], fmt: str, *, reveal: bool) -> list[str]:
    """``NAME=VALUE`` lines in ``fmt``. Without ``reveal`` every value reads
    ``<redacted>``, left bare: such a listing is for eyes, not for a shell; the real
    values are still checked for env-file, so that the check is not only done with
    --reveal."""
    if fmt == "env-file":
        for name, value in raw.items():
            env_file_value(name, value)
    if not reveal:
        return [f"{name}=<redacted>" for name in raw]
    if fmt == "env-file":
        return [f"{name}={value}" for name, value in raw.items()]
    return [f"{name}={shell_value(value)}" for name, value in raw.items()]
