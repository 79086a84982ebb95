"""Suite-wide secrecy check: no seeded secret may appear in anything the entrypoint says.

Tests *seed* the values that must never be shown (``seed_secret(value)``); the Vault test
server seeds every token it issues, every AppRole secret_id and every database password
it creates (see :func:`install`). Everything the entrypoint says is *collected*:

- the output of every ``python -m entrypoint`` subprocess: ``subprocess.Popen`` is
  wrapped, so ``run_cli``, ``subprocess.run`` and hand-made ``Popen``s are all covered;
  stderr always, stdout only for ``render``/``check``/``rotate``/``version`` (under
  ``run`` stdout belongs to the app), and never the stdout of ``render --reveal``;
  an entrypoint whose stderr/stdout went to a file has that file read at the end;
- every record logged in this process under the ``entrypoint`` logger;
- the message and hint of every :class:`EntrypointError` created in this process.

At the end of the session :func:`leaks` looks for each seeded value in what was
collected, and the plugin (tests/helpers/fixtures.py) fails the run if it finds one.

It is cheap: collecting is appending strings; the check joins them once and looks up
values of a known shape (``hvs.`` tokens, generated passwords, UUIDs) by pattern in a set,
so its cost does not grow with the number of tokens a run issues; the few other values
are searched for directly.
"""

from __future__ import annotations

import contextlib
import logging
import re
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MIN_LENGTH = 8  # shorter values ("root", "app") occur in ordinary text
SHAPES = re.compile(
    r"hvs\.[A-Za-z0-9]{24}"                          # Vault service tokens
    r"|A1a-[A-Za-z0-9]{16}"                          # the database engine's passwords
    r"|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"  # UUIDs (secret_id)
)
OWN_STDOUT = frozenset({"render", "check", "rotate", "version"})


@dataclass(frozen=True)
class Output:
    text: str
    where: str


_seeded: set[str] = set()
_outputs: list[Output] = []
_files: list[tuple[Path, str]] = []
current_test = "(outside a test)"


def seed_secret(value: str) -> str:
    """Mark ``value`` as a secret that must never appear in collected output; returns it."""
    if len(value) >= MIN_LENGTH:
        _seeded.add(value)
    return value


def record(text: str | bytes | None, where: str) -> None:
    if not text:
        return
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    _outputs.append(Output(text, f"{current_test}: {where}"))


def record_file(path: Path, where: str) -> None:
    """Read ``path`` at the end of the session (a process's stderr written to a file)."""
    _files.append((path, f"{current_test}: {where}"))


def find_leaks(outputs: Iterable[Output], seeded: Iterable[str]) -> list[tuple[str, str]]:
    """(masked value, where) for every seeded value found in ``outputs``."""
    values = set(seeded)
    shaped = {v for v in values if SHAPES.fullmatch(v)}
    plain = values - shaped
    found: list[tuple[str, str]] = []
    for output in outputs:
        hits = {m.group(0) for m in SHAPES.finditer(output.text)} & shaped
        hits |= {v for v in plain if v in output.text}
        found.extend((mask(v), output.where) for v in sorted(hits))
    return found


def mask(value: str) -> str:
    """Enough to recognise a value in a report without repeating it."""
    return f"{value[:3]}…({len(value)} chars)"


def summary() -> str:
    chars = sum(len(o.text) for o in _outputs)
    return (f"{len(_seeded)} seeded values against {len(_outputs)} outputs "
            f"({chars / 1e6:.1f} MB) and {len(_files)} log files")


def leaks() -> list[tuple[str, str]]:
    outputs = list(_outputs)
    for path, where in _files:
        with contextlib.suppress(OSError):  # removed by its test: nothing left to leak
            outputs.append(Output(path.read_text(errors="replace"), f"{where} ({path})"))
    return find_leaks(outputs, _seeded)


# -- collection hooks ---------------------------------------------------------------------

def _entrypoint_argv(args: Any) -> list[str] | None:
    """The entrypoint's own arguments when ``args`` runs it, else None."""
    if isinstance(args, str | bytes) or not isinstance(args, Sequence):
        return None
    argv = [str(a) for a in args]
    for i, arg in enumerate(argv):
        if arg == "-m" and i + 1 < len(argv) and argv[i + 1] == "entrypoint":
            return argv[i + 2 :]
        if Path(arg).name == "entrypoint" and i == 0:
            return argv[1:]
    return None


def _stdout_is_ours(argv: list[str]) -> tuple[bool, bool]:
    """(stdout is the entrypoint's own, it was revealed with --reveal)."""
    options = argv[: argv.index("--")] if "--" in argv else argv
    own = any(a in OWN_STDOUT for a in options)
    return own, own and "--reveal" in options


class _LogCollector(logging.Handler):
    def emit(self, entry: logging.LogRecord) -> None:
        try:
            text = entry.getMessage()
        except Exception:  # a bad format string is the logging call's problem, not ours
            return
        record(text, f"log {entry.name}")


_installed = False


def install() -> None:
    """Wrap Popen, the entrypoint logger, errors and the Vault test server; once."""
    global _installed
    if _installed:
        return
    _installed = True
    _wrap_popen()
    logging.getLogger("entrypoint").addHandler(_LogCollector(logging.DEBUG))
    _wrap_errors()
    _wrap_vault_server()


def _wrap_popen() -> None:
    original_init = subprocess.Popen.__init__
    original_communicate = subprocess.Popen.communicate

    def init(self: subprocess.Popen[Any], args: Any, *a: Any, **kw: Any) -> None:
        original_init(self, args, *a, **kw)
        argv = _entrypoint_argv(args)
        if argv is None:
            return
        own, revealed = _stdout_is_ours(argv)
        self._secrecy = (own and not revealed)  # type: ignore[attr-defined]
        what = "entrypoint " + " ".join(argv)[:120]
        for stream, name in ((kw.get("stderr"), "stderr"),
                             (kw.get("stdout") if own and not revealed else None, "stdout")):
            path = getattr(stream, "name", None)
            if isinstance(path, str) and path.startswith("/"):
                record_file(Path(path), f"{what} [{name} file]")

    def communicate(self: subprocess.Popen[Any], *a: Any, **kw: Any) -> Any:
        out, err = original_communicate(self, *a, **kw)
        check_stdout = getattr(self, "_secrecy", None)
        if check_stdout is not None:
            what = "entrypoint " + " ".join(_entrypoint_argv(self.args) or [])[:120]
            record(err, f"{what} [stderr]")
            if check_stdout:
                record(out, f"{what} [stdout]")
        return out, err

    subprocess.Popen.__init__ = init  # type: ignore[assignment,method-assign]
    subprocess.Popen.communicate = communicate  # type: ignore[method-assign]


def _wrap_errors() -> None:
    from entrypoint.errors import EntrypointError

    original = EntrypointError.__init__

    def init(self: EntrypointError, message: str, *a: Any, **kw: Any) -> None:
        original(self, message, *a, **kw)
        record(str(self), f"error {type(self).__name__}")

    EntrypointError.__init__ = init  # type: ignore[method-assign]
    # ChildStartError has its own __init__ that calls ours through super(): covered.


def _wrap_vault_server() -> None:
    """Seed every token, secret_id and database password the test server makes.

    Wrapped from outside, at the module attributes the server calls through, so the
    server's own files stay as their owner writes them.
    """
    from tests.vaultserver import database, logins, tokens

    new_token = tokens.new_token

    def seeded_token(*a: Any, **kw: Any) -> Any:
        token = new_token(*a, **kw)
        seed_secret(token.id)
        return token

    tokens.new_token = seeded_token  # type: ignore[assignment]

    new_password = database.new_password

    def seeded_password() -> str:
        return seed_secret(new_password())

    database.new_password = seeded_password

    new_secret_id = logins.AppRoleAuth._new_secret_id

    def seeded_secret_id(self: Any, name: str) -> dict[str, Any]:
        answer = new_secret_id(self, name)
        seed_secret(str(answer["secret_id"]))
        return answer

    logins.AppRoleAuth._new_secret_id = seeded_secret_id  # type: ignore[method-assign]
