"""Command line: parse, load config, dispatch to a subcommand. Only :func:`main` exits.

:func:`console` first offers the command line to the fast ``--exec`` path
(``commands/fast_exec.py``), which imports none of argparse, logging or the config model:
so this module imports them only inside the functions that use them.
"""

from __future__ import annotations

import os
import sys

from entrypoint import __version__
from entrypoint.errors import EX_USAGE, EntrypointError, UsageError

TYPE_CHECKING = False  # not typing's: importing typing costs the fast path milliseconds
if TYPE_CHECKING:
    import argparse
    import logging
    from collections.abc import Mapping, Sequence
    from typing import Any

    from entrypoint.config.model import Config, Raw
    from entrypoint.config.settings import Setting

SUBCOMMANDS = ("run", "render", "check", "rotate", "status", "help", "version")
DESCRIPTIONS = {
    "run": "resolve references, render templates, then run and supervise CMD (the default)",
    "render": "resolve and write templates once, print the app's environment as dotenv "
              "(values redacted unless --reveal)",
    "check": "validate config, reach the servers, log in and confirm every referenced path "
             "is readable; print a table; exit non-zero on any failure",
    "rotate": "ask the running entrypoint in this container to re-fetch every dynamic "
              "secret now and act once",
    "status": "show what the running entrypoint in this container holds (auth, each "
              "source key's version or short lease id, TTLs, next renewal, failures) and "
              "its app; never a value",
    "help": "list the subcommands, or show one's options (entrypoint help SUBCOMMAND)",
    "version": "print the version",
}


def _parser_class() -> type[argparse.ArgumentParser]:
    import argparse

    class _Formatter(argparse.HelpFormatter):
        # argparse makes a formatter at every add_argument and asks shutil for the width:
        # shutil brings zlib, bz2 and lzma, which a resident supervisor started with options
        # would keep for nothing. The width is found as shutil finds it (less 2, as argparse).
        def __init__(self, prog: str, indent_increment: int = 2,
                     max_help_position: int = 24, width: int | None = None) -> None:
            super().__init__(prog, indent_increment, max_help_position,
                             _columns() - 2 if width is None else width)

    class _Parser(argparse.ArgumentParser):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(formatter_class=_Formatter, **kwargs)

        def error(self, message: str) -> None:  # type: ignore[override]
            raise UsageError(f"{self.prog}: {message}", hint=f"see '{self.prog} --help'")

    return _Parser


def _columns() -> int:
    """The terminal's width as ``shutil.get_terminal_size`` gives it: $COLUMNS, else the
    terminal of standard output, else 80."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):  # no stdout, or not a terminal
            columns = 0
    return columns or 80


def _add_setting(group: argparse._ArgumentGroup, setting: Setting) -> None:
    import argparse

    from entrypoint.commands.help import default_text

    help_text = setting.help
    if default := default_text(setting):
        help_text += f" (default: {default})"
    help_text += f" [{setting.variable}]"
    if setting.kind == "bool":
        group.add_argument(setting.flag, dest=setting.name, default=None,
                           action=argparse.BooleanOptionalAction, help=help_text)
    elif setting.kind == "list":
        group.add_argument(setting.flag, dest=setting.name, default=None, action="append",
                           metavar=setting.name.upper(), help=help_text + "; repeatable")
    else:
        metavar = "|".join(setting.choices) if setting.choices else setting.kind.upper()
        group.add_argument(setting.flag, dest=setting.name, default=None, metavar=metavar,
                           help=help_text)


def build_parser(sub: str) -> argparse.ArgumentParser:
    prog = "entrypoint" if sub == "run" else f"entrypoint {sub}"
    usage = {
        "run": "entrypoint [run] [OPTIONS] -- CMD [ARGS...]",
        "render": "entrypoint render [OPTIONS] [--reveal] [--format dotenv|env-file|json]",
        "check": "entrypoint check [OPTIONS] [--format table|json] [--issue]",
        "rotate": "entrypoint rotate [OPTIONS]",
        "status": "entrypoint status [OPTIONS] [--format table|json]",
        "help": "entrypoint help [SUBCOMMAND]",
        "version": "entrypoint version",
    }[sub]
    from entrypoint.commands.help import settings_for
    from entrypoint.config.settings import SETTINGS

    settings = settings_for(sub)
    only = ("" if settings is SETTINGS or not settings
            else f" Only the settings {prog} reads are listed.")
    parser = _parser_class()(prog=prog, usage=usage, description=DESCRIPTIONS[sub],
                     epilog="Every option is also an ENTRYPOINT_* variable and a TOML key; "
                            f"see docs/configuration.md.{only} Subcommands: "
                            + ", ".join(SUBCOMMANDS))
    if sub == "help":
        parser.add_argument("topic", nargs="?", choices=SUBCOMMANDS, metavar="SUBCOMMAND")
        return parser
    if sub == "version":
        return parser
    if sub == "run":
        parser.add_argument("--version", dest="show_version", action="store_true",
                            help="print the version and exit")
        parser.add_argument("--exec", dest="exec_mode", action="store_true",
                            help="resolve once, then replace this process with CMD "
                                 "(same as --mode exec)")
    if sub == "render":
        parser.add_argument("--reveal", action="store_true",
                            help="print secret values instead of <redacted>")
        parser.add_argument("--format", dest="output_format",
                            choices=("dotenv", "env-file", "json"), default="dotenv",
                            help="dotenv: for set -a; . FILE (values single-quoted when "
                                 "needed); env-file: for docker's and podman's env files "
                                 "(verbatim, no line breaks); json (default: dotenv)")
    if sub in ("check", "status"):
        parser.add_argument("--format", dest="output_format", choices=("table", "json"),
                            default="table", help="output format (default: table)")
    if sub == "check":
        parser.add_argument("--issue", action="store_true",
                            help="make the writes (?write references, secret() with "
                                 "parameters): issue certificates instead of only asking "
                                 "whether the PKI role would accept them")
    group = parser.add_argument_group("settings")
    for setting in settings:
        _add_setting(group, setting)
    return parser


def _takes_value(token: str) -> bool:
    from entrypoint.config.settings import SETTINGS

    name = token[2:].split("=", 1)[0].replace("-", "_")
    return "=" not in token and any(s.name == name and s.kind != "bool" for s in SETTINGS)


def split_argv(argv: Sequence[str]) -> tuple[str, list[str], list[str]]:
    """-> (subcommand, its options, the app's command)."""
    args = list(argv)
    command: list[str] = []
    if "--" in args:
        cut = args.index("--")
        args, command = args[:cut], args[cut + 1 :]
    sub = "run"
    skip = False
    for i, token in enumerate(args):
        if skip:
            skip = False
            continue
        if token.startswith("--"):
            skip = _takes_value(token)
            continue
        if token in SUBCOMMANDS:
            sub = token
            args = args[:i] + args[i + 1 :]
        break
    return sub, args, command


def flags_of(namespace: argparse.Namespace) -> dict[str, Raw]:
    from entrypoint.config.model import Raw
    from entrypoint.config.settings import SETTINGS

    out: dict[str, Raw] = {}
    for setting in SETTINGS:
        value = getattr(namespace, setting.name, None)
        if value is not None:
            out[setting.name] = Raw(value, f"flag {setting.flag}")
    if getattr(namespace, "exec_mode", False):
        out["mode"] = Raw("exec", "flag --exec")
    return out


def console() -> int:
    """The process entry point (console script, ``python -m entrypoint``): the fast
    ``--exec`` path when it can do it all, else :func:`main`."""
    try:
        from entrypoint.commands import fast_exec

        code = fast_exec.run(sys.argv[1:], os.environ)
    except KeyboardInterrupt:  # as main() answers it
        return 128 + 2  # SIGINT
    if code is not None:
        return code
    skip_charset_detection()
    skip_urllib3_http2_init()
    return main()


def skip_charset_detection() -> None:
    """requests (py-consul's HTTP client) loads a charset detector only to guess the
    encoding of a body that names none; Consul always answers JSON, which requests decodes
    without it. Not loading it
    saves ~3 MB resident and ~15 ms at start (requests then assumes UTF-8). Done for this
    process only, never when imported as a library."""
    import warnings

    for name in ("chardet", "charset_normalizer"):
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]
    warnings.filterwarnings("ignore", message=".*character detection dependency.*")


def skip_urllib3_http2_init() -> None:
    """urllib3 2.x's connection module imports ``urllib3.http2.probe``, and so runs the
    package's ``__init__``, which imports ``importlib.metadata`` (and csv and its own
    helpers) only to check h2's version in ``inject_into_urllib3()``, the HTTP/2 opt-in
    nobody here calls: 0.4 MB resident that a supervisor talking to Consul would keep. The
    package is registered without running its ``__init__``; ``probe`` loads from its
    folder as before. Done for this process only, never when imported as a library, and
    only if urllib3 has that layout."""
    if "urllib3" in sys.modules:
        return
    from importlib.machinery import PathFinder

    spec = PathFinder.find_spec("urllib3")
    folders = list(spec.submodule_search_locations or ()) if spec is not None else []
    http2 = [os.path.join(f, "http2") for f in folders]
    if len(http2) != 1 or not os.path.isfile(os.path.join(http2[0], "probe.py")):
        return
    import types

    package = types.ModuleType("urllib3.http2", "urllib3.http2, its __init__ not run")
    package.__path__ = http2
    sys.modules["urllib3.http2"] = package


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    import signal
    import traceback

    from entrypoint import logs

    argv = sys.argv[1:] if argv is None else argv
    env = os.environ if environ is None else environ
    log = logs.setup(env.get("ENTRYPOINT_LOG_FORMAT", "text")
                     if env.get("ENTRYPOINT_LOG_FORMAT") in ("text", "json") else "text")
    debug = Debug(debug_before_config(argv, env))
    try:
        return _main(argv, env, log, debug)
    except EntrypointError as exc:
        log.error("%s", exc, exc_info=debug.on)
        return exc.exit_code
    except KeyboardInterrupt:
        return 128 + signal.SIGINT
    except Exception:
        log.error("internal error, please report it:\n%s", traceback.format_exc())
        return 70


class Debug:
    """Whether an error is shown with its traceback. An error can come before the config
    is loaded (a bad setting, a usage error): until then the command line and
    ``ENTRYPOINT_DEBUG`` answer; once it is loaded, the ``debug`` setting (flag, variable
    or TOML key) does."""

    __slots__ = ("on",)

    def __init__(self, on: bool) -> None:
        self.on = on


def debug_before_config(argv: Sequence[str], env: Mapping[str, str]) -> bool:
    """The ``debug`` setting as far as it can be known without the config file: the last
    ``--debug``/``--no-debug`` before ``--`` (after it, they are the app's), else the
    variable, read as every boolean setting is; a bad value is refused by the config
    loader, which then shows no traceback."""
    from entrypoint.config.values import parse_bool

    options = list(argv)
    if "--" in options:
        options = options[:options.index("--")]
    flags = [token for token in options if token in ("--debug", "--no-debug")]
    if flags:
        return flags[-1] == "--debug"
    try:
        return parse_bool(env.get("ENTRYPOINT_DEBUG", "false"))
    except ValueError:
        return False


def _main(argv: Sequence[str], env: Mapping[str, str], log: logging.Logger,
          debug: Debug) -> int:
    from entrypoint import logs
    from entrypoint.config.model import load

    sub, options, command = split_argv(argv)
    if sub == "run" and not options:
        # The usual form, ENTRYPOINT ["entrypoint", "--"]: no option to parse, so argparse
        # (with gettext and locale) stays out of the process that stays resident.
        config = load({}, env)
        debug.on = config.debug
        return _run(config, env, logs.setup(config.log_format, config.log_level), command)
    parser = build_parser(sub)
    if sub == "help":
        from entrypoint.commands.help import overview

        topic = parser.parse_args(options).topic
        print(build_parser(topic).format_help() if topic else overview(SUBCOMMANDS,
                                                                        DESCRIPTIONS))
        return 0
    if sub == "version":
        parser.parse_args(options)
    if sub == "version" or (sub == "run" and "--version" in options):
        print(f"vault-entrypoint {__version__} (Python {sys.version.split()[0]})")
        return 0
    namespace, extra = parser.parse_known_args(options)
    if extra:
        from entrypoint.commands.help import stray_words

        raise stray_words(extra, SUBCOMMANDS, parser.prog)
    config = load(flags_of(namespace), env)
    debug.on = config.debug
    log = logs.setup(config.log_format, config.log_level)
    if getattr(namespace, "vault_approle_secret_id", None) is not None:
        # Any local user sees a command line in ps or /proc/PID/cmdline, for as long as
        # the entrypoint runs, and it cannot be rewritten from Python.
        log.warning("--vault-approle-secret-id on the command line is visible to every "
                    "process on the host (ps, /proc/PID/cmdline); prefer "
                    "ENTRYPOINT_VAULT_APPROLE_SECRET_ID or --vault-approle-secret-id-file")
    if sub == "render":
        from entrypoint.commands.render import render

        return render(config, env, log, reveal=namespace.reveal, fmt=namespace.output_format)
    if sub == "check":
        from entrypoint.commands.check import main as check_main

        return check_main(config, env, log, fmt=namespace.output_format,
                          issue=namespace.issue)
    if sub == "rotate":
        from entrypoint.ops.control import request_rotation

        return request_rotation(config, env, log)
    if sub == "status":
        from entrypoint.commands.status import show

        return show(config, fmt=namespace.output_format)
    return _run(config, env, log, command)


def _run(config: Config, env: Mapping[str, str], log: logging.Logger,
         command: list[str]) -> int:
    """``run``: supervise the app, exec it, or keep file templates fresh (sidecar)."""
    if not command and (config.mode == "exec" or not config.template):
        # Without an app, only file templates are worth keeping fresh (sidecar mode).
        raise UsageError("no command to run",
                         hint="expected: entrypoint [OPTIONS] -- CMD [ARGS...], or file "
                              "templates and no command for sidecar mode")
    harden(config, log)
    if not command:
        from entrypoint.ops import sidecar

        return sidecar.run(config, env, log)
    if config.mode == "exec":
        from entrypoint.commands.exec_app import resolve_and_exec

        return resolve_and_exec(config, env, log, command)
    from entrypoint.commands.run import supervise

    return supervise(config, env, log, command)


def harden(config: Config, log: logging.Logger) -> None:
    """Before anything is fetched: make this process unreadable to the app (same uid
    included), and check the descriptors to pass while they are still only the caller's."""
    from entrypoint.process.hardening import check_pass_fds, not_dumpable

    if (err := not_dumpable()) != 0:
        log.warning("could not make the entrypoint non-dumpable (%s): an app running with "
                    "its uid could read its memory", os.strerror(err))
    check_pass_fds(config.pass_fds, config.origins.get("pass_fds", "pass_fds"))


__all__ = ["EX_USAGE", "main"]
