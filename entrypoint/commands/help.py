"""What the command line shows: which settings each subcommand lists, defaults as users
write them, ``entrypoint help``, and the hint for a command given without ``--``."""

from __future__ import annotations

from entrypoint.config.settings import SETTINGS, Setting
from entrypoint.config.values import format_duration
from entrypoint.errors import UsageError

# Settings every subcommand reads: where the config is and how to log.
_COMMON = frozenset({"config", "log_format", "log_level", "debug"})
# What resolving references and rendering templates reads (render and check): what
# Runtime, the sources (sources/registry.py, the Vault source and its logins) and the
# templates read from Config.
_RESOLVE = _COMMON | {
    "local_secrets", "secrets", "secrets_prefix", "secrets_upcase", "secrets_sanitize",
    "template", "template_allowed_dirs", "template_timeout", "template_max_bytes",
    "startup_timeout",
    "pass_env",  # what env() in a template sees of the bootstrap variables
    "transit_key", "transit_mount",  # decrypt transit: and vault:v1: values
    "renew_fraction",  # the Vault token is renewed while they run
    "user",  # the app's user: a Vault Agent socket it serves is refused (vault/source.py)
} | {s.name for s in SETTINGS if s.name.startswith("vault_")}
# render issues certificates through issue_cache_dir (reused until replace_fraction of
# their life); check never uses that folder (commands/check.py).
_RENDER = _RESOLVE | {"issue_cache_dir", "replace_fraction"}
# rotate and status only talk to the running entrypoint over its control socket.
_CONTROL = _COMMON | {"control_socket"}
USED_BY: dict[str, frozenset[str] | None] = {
    "run": None,  # all of them
    "render": _RENDER,
    "check": _RESOLVE,
    "rotate": _CONTROL,
    "status": _CONTROL,
    "help": frozenset(),
    "version": frozenset(),
}


def settings_for(sub: str) -> tuple[Setting, ...]:
    """The settings ``entrypoint SUB --help`` lists: those SUB reads."""
    used = USED_BY.get(sub)
    return SETTINGS if used is None else tuple(s for s in SETTINGS if s.name in used)


def default_text(setting: Setting) -> str:
    """A default as a user would write it in a variable: ``60s``, ``true``, ``SIGTERM``
    (the same text as the table of docs/configuration.md); "" when there is none."""
    value = setting.default
    if value is None or value == [] or value == "":
        return ""
    if setting.kind == "duration":
        return format_duration(float(value))
    if setting.kind == "bool":
        return "true" if value else "false"
    return str(value)


def overview(subcommands: tuple[str, ...], descriptions: dict[str, str]) -> str:
    """``entrypoint help``: every subcommand in one screen."""
    width = max(len(s) for s in subcommands)
    lines = ["usage: entrypoint [SUBCOMMAND] [OPTIONS] [-- CMD [ARGS...]]", "",
             "subcommands:"]
    lines += [f"  {sub.ljust(width)}  {descriptions[sub]}" for sub in subcommands]
    lines += ["", "'entrypoint help SUBCOMMAND' or 'entrypoint SUBCOMMAND --help' lists its "
              "options; every option is also an ENTRYPOINT_* variable and a TOML key "
              "(docs/configuration.md).",
              "The app's command goes after --: entrypoint [OPTIONS] -- CMD [ARGS...]"]
    return "\n".join(lines)


def stray_words(extra: list[str], subcommands: tuple[str, ...],
                prog: str = "entrypoint") -> UsageError:
    """``entrypoint echo hi``: words that are neither a subcommand nor an option. The
    likely intent is a command, which goes after ``--``; only ``run`` (``prog``
    ``entrypoint``) takes one, so another subcommand points to its own help, which lists
    the options it takes."""
    words = " ".join(extra)
    if extra[0].startswith("-") or prog != "entrypoint":
        return UsageError(f"{prog}: unrecognized arguments: {words}",
                          hint=f"see '{prog} --help'")
    return UsageError(f"entrypoint: {extra[0]!r} is not a subcommand",
                      hint=f"to run a command, put it after --: entrypoint [OPTIONS] -- "
                           f"{words}; subcommands: {', '.join(subcommands)}")
