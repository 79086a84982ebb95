"""The fast path of ``entrypoint --exec -- CMD``: the common case without the full CLI.

Start-up of ``--exec`` is mostly imports: argparse, logging, the dataclasses of the
config model (which bring inspect, ast, enum), pathlib, re, threads for the fetches.
For the common case -- configuration from the environment only, values from the local
secrets directory, no templates -- this module does the same work with the interpreter's
built-in modules: the argv is read by hand, the few settings by name, the references by
:mod:`entrypoint.plan.refs` (str methods), the JSON files by the C scanner behind
``json``, and log lines are written in the format of :mod:`entrypoint.logs`.

It decides late and safely: everything that can fail (settings, references, reading
and decoding every file, each key, what an environment can carry, finding CMD) is done
first, silently. Anything it does not handle, or any error at all, and :func:`run` returns
None before anything observable has happened (no line written, nothing closed): the
full path (:func:`entrypoint.cli.main`) then starts from the beginning and gives its own
answer, message and exit status. Only then are the log lines written and the process
replaced, through the same :func:`entrypoint.commands.exec_app.exec_with` and with the
same hardening as the full path.

``tests/unit/test_exec_imports.py`` checks that this path imports none of the heavy
modules and gives the app the same environment and the same log lines as the full one.
"""

from __future__ import annotations

import _json  # json's C half: the JSON log line without json.encoder
import _signal  # type: ignore[import-not-found]  # signal's C half: no enum
import os
import sys
import time

from entrypoint.commands.fast_local import Fallback, read_consul, read_vault
from entrypoint.config.bootstrap import is_bootstrap_variable
from entrypoint.errors import EntrypointError
from entrypoint.plan import refs

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

# The ENTRYPOINT_* variables read here. Any other one (a config file, templates, bulk
# export, Vault's settings, a user, hardening or pass_fds, debug...) takes the full path.
# ENTRYPOINT_CONTROL_SOCKET is any string and unused by exec mode.
HANDLED = frozenset({
    "ENTRYPOINT_LOCAL_SECRETS", "ENTRYPOINT_MODE", "ENTRYPOINT_LOG_FORMAT",
    "ENTRYPOINT_LOG_LEVEL", "ENTRYPOINT_PASS_ENV", "ENTRYPOINT_CONTROL_SOCKET",
})
LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}
# Copies, so as not to import their modules; the test checks that they agree.
MAX_ENV_STRING = 32 * 4096  # entrypoint.plan.resolve.MAX_ENV_STRING
MIN_SCRUBBED = 8  # entrypoint.secret.MIN_SCRUBBED
REDACTED = "<redacted>"  # entrypoint.secret.REDACTED


class _Interrupted(Exception):
    def __init__(self, signum: int) -> None:
        self.signum = signum


def run(argv: Sequence[str], environ: Mapping[str, str]) -> int | None:
    """Exec the app (never returns), return an exit status, or None: take the full path."""
    if "--debug" in argv:  # main() shows tracebacks then
        return None
    try:
        command, exec_flag = _command(argv)
        settings = _settings(environ, exec_flag)
    except Fallback:
        return None
    from entrypoint.process import hardening

    # As harden() does, before anything is read.
    if hardening.not_dumpable() != 0:
        return None  # the full path warns

    def interrupted(signum: int, frame: object) -> None:
        raise _Interrupted(signum)

    out = _Output(settings)
    previous: dict[int, object] = {}
    try:
        # As exec_app() does: as PID 1 a default disposition ignores SIGTERM.
        for sig in (_signal.SIGTERM, _signal.SIGINT):
            previous[sig] = _signal.signal(sig, interrupted)
        try:
            child_env, early, late, known = _resolve(environ, settings, command)
        except _Interrupted:
            raise
        except Exception:
            for sig, handler in previous.items():
                _signal.signal(sig, handler)
            return None
        # The source's lines come before anything is fetched: nothing to scrub yet.
        for level, message in early:
            out.line(level, message)
        out.known = known
        for level, message in late:
            out.line(level, message)
        out.line("info", f"exec {command[0]}")
    except _Interrupted as exc:
        name = {_signal.SIGTERM: "SIGTERM", _signal.SIGINT: "SIGINT"}[exc.signum]
        out.line("info", f"stopped by {name} before the app started")
        return 128 + exc.signum
    from entrypoint.commands.exec_app import exec_with

    try:
        return exec_with(command, child_env, user=None, parent_death_signal=None,
                         new_privileges=True, pass_fds=())
    except EntrypointError as exc:
        out.line("error", str(exc))
        return exc.exit_code
    except Exception:
        import traceback

        out.line("error", "internal error, please report it:\n" + traceback.format_exc())
        return 70


def _command(argv: Sequence[str]) -> tuple[list[str], bool]:
    """``[run] --exec -- CMD [ARGS...]`` (``--exec`` and ``run`` in any order, or no
    ``--exec`` when ENTRYPOINT_MODE says exec) -> (CMD..., whether --exec was given)."""
    args = list(argv)
    if "--" not in args:
        raise Fallback
    cut = args.index("--")
    options, command = args[:cut], args[cut + 1:]
    if not command:
        raise Fallback  # the full path's "no command to run"
    rest = [token for token in options if token != "--exec"]
    if rest not in ([], ["run"]):
        raise Fallback
    return command, len(rest) != len(options)


class _Settings:
    __slots__ = ("level", "local_secrets", "log_format", "pass_env")

    def __init__(self, log_format: str, level: str, local_secrets: str | None,
                 pass_env: list[str]) -> None:
        self.log_format = log_format
        self.level = level
        self.local_secrets = local_secrets
        self.pass_env = pass_env


def _settings(environ: Mapping[str, str], exec_flag: bool) -> _Settings:
    for name in environ:
        if name.startswith("ENTRYPOINT_") and name not in HANDLED:
            raise Fallback
    # A flag wins over the variable, which is then not even read (config.model.load).
    if not exec_flag and environ.get("ENTRYPOINT_MODE") != "exec":
        raise Fallback
    log_format = environ.get("ENTRYPOINT_LOG_FORMAT", "text")
    level = environ.get("ENTRYPOINT_LOG_LEVEL", "info")
    if log_format not in ("text", "json") or level not in LEVELS:
        raise Fallback
    local = environ.get("ENTRYPOINT_LOCAL_SECRETS")
    if local is not None:
        if not local:
            raise Fallback
        local = pure_path(local)
        if not os.path.isdir(local):
            raise Fallback
    pass_env = [p.strip() for p in environ.get("ENTRYPOINT_PASS_ENV", "").split(",")
                if p.strip()]
    return _Settings(log_format, level, local, pass_env)


def pure_path(text: str) -> str:
    """``str(pathlib.PurePosixPath(text))``: repeated slashes and ``.`` parts dropped,
    ``//`` kept at the start (POSIX leaves its meaning to the system)."""
    root = ""
    if text.startswith("/"):
        root = "//" if text.startswith("//") and not text.startswith("///") else "/"
    parts = [part for part in text.split("/") if part and part != "."]
    return (root + "/".join(parts)) or "."


Key = tuple[str, str, "int | None"]


Lines = list[tuple[str, str]]


def _resolve(environ: Mapping[str, str], settings: _Settings, command: list[str]
             ) -> tuple[dict[str, str], Lines, Lines, list[str]]:
    """-> (the app's environment, the log lines before the first fetch and after the
    last, the values to scrub from the latter).

    What ``Runtime.resolve`` and ``Resolution.child_env`` give for the same input."""
    references, passthrough = _plan(environ, settings)
    keys = sorted({(r.scheme, r.path, r.version) for parts in references.values()
                   for r in parts if isinstance(r, refs.Ref)},
                  key=lambda k: (k[0], k[1], k[2] or 0))
    early = _sources(keys, environ, settings.local_secrets)
    fetched, known = _fetch(keys, settings.local_secrets)
    managed = _assemble(references, fetched, known)
    late: Lines = []
    for scheme, path, version in sorted(fetched, key=lambda k: (k[1], k[0], k[2] or 0)):
        detail = f" v{version}" if version is not None else ""
        late.append(("info", f"fetched {scheme}:{path}{detail}"))
    from entrypoint.process.executable import find_executable

    child_env = dict(passthrough)
    child_env.update(managed)
    find_executable(command[0], child_env.get("PATH", os.defpath))  # not found: full path
    return child_env, early, late, known


def _plan(environ: Mapping[str, str], settings: _Settings
          ) -> tuple[dict[str, list[refs.Part]], dict[str, str]]:
    """``plan_environment``: the values with references, and the others as they pass."""
    kept = set(settings.pass_env)
    references: dict[str, list[refs.Part]] = {}
    passthrough: dict[str, str] = {}
    for name, value in environ.items():
        if is_bootstrap_variable(name) and name not in kept:
            continue
        parts = refs.parse(value, where=f"variable {name}")
        if any(isinstance(p, refs.Ref) for p in parts):
            references[name] = parts
        else:
            passthrough[name] = "".join(p for p in parts if isinstance(p, str))
    if any(isinstance(r, refs.Ref) and r.params for parts in references.values()
           for r in parts):
        raise Fallback  # a write (?write&...): issued by the full path
    return references, passthrough


def _sources(keys: list[Key], environ: Mapping[str, str], root: str | None) -> Lines:
    """The registry's choice of source, and the lines it logs; a server: the full path."""
    early: Lines = []
    if any(scheme == "vault" for scheme, _, _ in keys):
        if root is None:
            raise Fallback  # a Vault server, or the error that there is none
        early.append(("info", f"vault: references answered by local secrets directory {root}"))
        if server := environ.get("VAULT_AGENT_ADDR") or environ.get("VAULT_ADDR"):
            early.append(("warning", f"vault: ENTRYPOINT_LOCAL_SECRETS is set, so Vault at "
                                     f"{server} is not used; unset ENTRYPOINT_LOCAL_SECRETS "
                                     "to read from Vault"))
    if any(scheme == "consul" for scheme, _, _ in keys) and (
            root is None or environ.get("CONSUL_HTTP_ADDR")):
        raise Fallback
    return early


def _fetch(keys: list[Key], root: str | None) -> tuple[dict[Key, dict[str, str]], list[str]]:
    fetched: dict[Key, dict[str, str]] = {}
    known: list[str] = []
    for key in keys:
        scheme, path, version = key
        if root is None:
            raise Fallback
        if scheme == "vault":
            data = read_vault(root, path, version)
        elif scheme == "consul":
            data = {"": read_consul(root, path)}
        else:
            raise Fallback  # file: and transit: references
        fetched[key] = data
        known += data.values()
    return fetched, known


def _assemble(references: dict[str, list[refs.Part]], fetched: dict[Key, dict[str, str]],
              known: list[str]) -> dict[str, str]:
    """Each variable's value from its parts; ``known`` gains what must be scrubbed."""
    managed: dict[str, str] = {}
    for name, parts in references.items():
        pieces = []
        for part in parts:
            if isinstance(part, str):
                pieces.append(part)
                continue
            found = fetched[(part.scheme, part.path, part.version)].get(
                part.key if part.key is not None else "")
            if found is None:
                raise Fallback  # the full path names the key and the keys present
            pieces.append(found)
        text = "".join(pieces)
        if len(parts) > 1:
            known.append(text)  # a Secret of its own in the full path
        _check_env_value(name, text)
        managed[name] = text
    return managed


def _check_env_value(name: str, text: str) -> None:
    """What ``plan.resolve.check_env_value`` refuses; the full path then says why."""
    if "\0" in text:
        raise Fallback
    if len(name) + 1 + len(text.encode("utf-8", "surrogateescape")) + 1 > MAX_ENV_STRING:
        raise Fallback


class _Output:
    """Lines in the format of :mod:`entrypoint.logs` (text or JSON), each scrubbed of
    the values fetched so far as ``secret.scrub`` would, written to stderr."""

    def __init__(self, settings: _Settings) -> None:
        self.json = settings.log_format == "json"
        self.threshold = LEVELS[settings.level]
        self._known: tuple[str, ...] = ()

    @property
    def known(self) -> tuple[str, ...]:
        return self._known

    @known.setter
    def known(self, values: list[str]) -> None:
        long = [v for v in dict.fromkeys(values) if len(v) >= MIN_SCRUBBED]
        self._known = tuple(sorted(long, key=len, reverse=True))

    def scrub(self, text: str) -> str:
        for value in self._known:
            if value in text:
                text = text.replace(value, REDACTED)
        return text

    def line(self, level: str, message: str) -> None:
        if LEVELS[level] < self.threshold:
            return
        now = time.time()
        stamp = (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
                 + f".{int((now - int(now)) * 1000):03d}Z")
        if self.json:
            encode = _json.encode_basestring
            fields = (("ts", stamp), ("level", level), ("logger", "entrypoint"),
                      ("msg", self.scrub(message)))
            text = "{" + ", ".join(f"{encode(k)}: {encode(v)}" for k, v in fields) + "}"
        else:
            text = self.scrub(f"{stamp} entrypoint {level}: {message}")
        stream = sys.stderr
        if stream is not None:
            stream.write(text + "\n")
            stream.flush()
