"""Config as one typed model, merged from flags > ``ENTRYPOINT_*`` > TOML file > defaults.

Every value remembers where it came from (``flag --x``, ``variable ENTRYPOINT_X`` or
``file.toml:12``) so that an error can name it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from entrypoint.config import values
from entrypoint.config.convert import INT_LISTS, convert, did_you_mean
from entrypoint.config.convert import Raw as Raw
from entrypoint.config.settings import BY_NAME, BY_VARIABLE, SECTIONS, SETTINGS
from entrypoint.describe import os_reason
from entrypoint.errors import ConfigError, PermissionDenied
from entrypoint.secret import Secret

ON_CHANGE_FORMS = "restart, signal:NAME, command:ARGV or none"


@dataclass(frozen=True)
class OnChange:
    """What to do with the app when a file template's output changes."""

    action: str  # "restart" | "signal" | "command" | "none"
    signal: int | None = None
    command: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> OnChange:
        s = text.strip()
        if s in ("restart", "none"):
            return cls(s)
        kind, sep, arg = s.partition(":")
        if sep and kind == "signal":
            return cls("signal", signal=values.parse_signal(arg))
        if sep and kind == "command" and arg.strip():
            import shlex

            return cls("command", command=tuple(shlex.split(arg)))
        raise ValueError(f"expected {ON_CHANGE_FORMS}, got {text!r}")


@dataclass(frozen=True)
class TemplateSpec:
    destination: Path
    source: Path | None = None
    contents: str | None = None
    perms: int = 0o600
    on_change: OnChange = OnChange("restart")
    user: str | None = None
    group: str | None = None
    origin: str = ""
    # "keep" or "fatal" when a render after start fails; None: template_error_on_refresh.
    error_on_refresh: str | None = None

    @property
    def name(self) -> str:
        return str(self.source) if self.source else f"{self.origin} (contents)"


@dataclass(frozen=True)
class EnvTemplateSpec:
    name: str
    source: Path | None = None
    contents: str | None = None
    origin: str = ""


@dataclass(frozen=True)
class Config:
    config: Path | None = None
    local_secrets: Path | None = None
    mode: str = "supervise"
    secrets: list[str] = field(default_factory=list)
    secrets_prefix: str = ""
    secrets_upcase: bool = True
    secrets_sanitize: bool = True
    template: list[TemplateSpec] = field(default_factory=list)
    template_allowed_dirs: list[str] = field(default_factory=list)
    template_timeout: float = 10.0
    template_max_bytes: int = 16 * 1024 * 1024
    transit_mount: str = "transit"
    transit_key: str | None = None
    issue_cache_dir: Path | None = None  # sources/vault/issue.py
    template_error_on_refresh: str = "keep"
    pass_env: list[str] = field(default_factory=list)
    vault_auth: str | None = None
    vault_auth_mount: str | None = None
    vault_role: str | None = None
    vault_aws_header: str | None = None
    vault_aws_region: str | None = None
    vault_sts_endpoint: str | None = None
    vault_token_file: Path | None = None
    vault_approle_role_id: str | None = None
    vault_approle_secret_id: Secret | None = None
    vault_approle_secret_id_file: Path | None = None
    vault_kubernetes_token_file: Path = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
    vault_concurrency: int = 8
    startup_timeout: float = 60.0
    poll_interval: float = 300.0
    static_creds_poll_interval: float = 60.0
    lease_check_interval: float = 30.0
    renew_fraction: float = 0.75
    replace_fraction: float = 0.8
    revoke_grace: float = 30.0
    on_expiry: str = "keep"
    revoke_on_exit: bool = True
    wait_min: float = 1.0
    wait_max: float = 5.0
    splay: float = 0.0
    kill_timeout: float = 30.0
    stop_delay: float = 0.0
    stop_signal: int = 15
    user: str | None = None
    signal_group: bool = True
    rewrite_signal: dict[int, int] = field(default_factory=dict)
    success_exit_code: list[int] = field(default_factory=list)
    parent_death_signal: int | None = None
    new_privileges: bool = True
    pass_fds: list[int] = field(default_factory=list)
    control_socket: str = "auto"
    ready_file: Path | None = None
    metrics_listen: str | None = None
    log_format: str = "text"
    log_level: str = "info"
    debug: bool = False
    env_template: list[EnvTemplateSpec] = field(default_factory=list)
    origins: dict[str, str] = field(default_factory=dict, compare=False, repr=False)


def _locate(text: str, section: str | None, key: str) -> int | None:
    """The line of ``key`` in TOML ``text`` (tomllib keeps no positions)."""
    current: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        header = re.match(r"^\[\[?\s*([A-Za-z0-9_.-]+)\s*\]\]?", stripped)
        if header:
            current = header.group(1)
            if section is None and current == key:
                return number
            continue
        if current == section and re.match(rf"^\"?{re.escape(key)}\"?\s*=", stripped):
            return number
    return None


class TomlFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(
                f"config file {path} does not exist",
                hint="expected a TOML file named by --config or ENTRYPOINT_CONFIG") from None
        except PermissionError:
            # 77 as for every file the entrypoint's user may not read (configuration.md).
            raise PermissionDenied(f"config file {path} is not readable") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {path} cannot be read: {os_reason(exc)}") from None
        import tomllib  # here, not at the top: only a TOML file needs it (resident memory)

        try:
            self.data = tomllib.loads(self.text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
        except RecursionError:  # arrays or tables nested thousands deep
            raise ConfigError(f"config file {path} is nested too deeply to be read") from None

    def where(self, section: str | None, key: str) -> str:
        line = _locate(self.text, section, key)
        return f"{self.path}:{line}" if line else str(self.path)

    def tables(self, key: str) -> tuple[str, ...]:
        """Where each ``[[key]]`` table starts (tomllib keeps no positions)."""
        header = f"[[{key}]]"
        return tuple(f"{self.path}:{number}"
                     for number, line in enumerate(self.text.splitlines(), start=1)
                     if line.strip().replace(" ", "") == header)

    def raw_values(self) -> dict[str, Raw]:
        out: dict[str, Raw] = {}
        toml_names = [s.toml_key for s in SETTINGS if s.name != "template"]
        toml_names += ["template", "env_template"]
        for key, value in self.data.items():
            if key in SECTIONS and isinstance(value, dict):
                for sub, subvalue in value.items():
                    setting = BY_NAME.get(sub)
                    if setting is None or setting.section != key:
                        hint = did_you_mean(f"{key}.{sub}", toml_names)
                        raise ConfigError(
                            f"{self.where(key, sub)}: unknown setting {key}.{sub}",
                            hint=hint or "see docs/configuration.md for the settings",
                        )
                    out[sub] = Raw(subvalue, self.where(key, sub))
                continue
            setting = BY_NAME.get(key)
            if key == "env_template" or (setting is not None and setting.section is None):
                out[key] = Raw(value, self.where(None, key), self.tables(key))
                continue
            if setting is not None:
                raise ConfigError(f"{self.where(None, key)}: setting {key!r} belongs in the "
                                  f"[{setting.section}] table",
                                  hint=f"expected [{setting.section}] then {key} = ..., "
                                       f"i.e. {setting.toml_key}")
            hint = did_you_mean(key, toml_names)
            raise ConfigError(f"{self.where(None, key)}: unknown setting {key!r}",
                              hint=hint or "see docs/configuration.md for the settings")
        return out


def _rewrite_map(items: list[str], origin: str) -> dict[int, int]:
    """FROM:TO pairs; TO ``none`` (or 0, as dumb-init's ``-r 2:0``) drops the signal."""
    from entrypoint.process.signals import NOT_FORWARDED, name

    out: dict[int, int] = {}
    for item in items:
        src, sep, dst = item.partition(":")
        if not sep:
            raise ConfigError(f"{origin}: rewrite_signal expects FROM:TO such as TERM:QUIT "
                              f"or INT:none, got {item!r}")
        try:
            source = int(values.parse_signal(src))
            out[source] = 0 if dst.strip().lower() in ("none", "0") else int(
                values.parse_signal(dst))
        except ValueError as exc:
            raise ConfigError(f"{origin}: rewrite_signal: {exc}") from None
        if source in NOT_FORWARDED:
            # Accepting it would promise a rewrite that can never happen.
            raise ConfigError(f"{origin}: rewrite_signal {item!r}: {name(source)} is never "
                              "forwarded, so it cannot be rewritten",
                              hint="see the signal table in docs/supervisor.md")
    return out


def _int_list(items: list[str], origin: str, name: str, low: int, high: int) -> list[int]:
    out = []
    for item in items:
        text = str(item).strip()
        if not text.isdigit() or not low <= int(text) <= high:
            raise ConfigError(f"{origin}: {name} expects whole numbers from {low} to {high}, "
                              f"got {item!r}")
        out.append(int(text))
    return out


def check_environment(environ: Mapping[str, str]) -> None:
    """Reject ``ENTRYPOINT_*`` variables that name no setting (a typo would pass silently)."""
    for name in environ:
        if name.startswith("ENTRYPOINT_") and name not in BY_VARIABLE:
            raise ConfigError(f"variable {name}: unknown setting",
                              hint=did_you_mean(name, list(BY_VARIABLE))
                              or "see docs/configuration.md for the settings")


def load(flags: Mapping[str, Raw], environ: Mapping[str, str]) -> Config:
    """Merge flags, environment and the TOML file into one :class:`Config`."""
    from entrypoint.config.tables import env_templates, templates

    check_environment(environ)
    config_raw = flags.get("config") or (
        Raw(environ["ENTRYPOINT_CONFIG"], "variable ENTRYPOINT_CONFIG")
        if "ENTRYPOINT_CONFIG" in environ else None)
    file_values: dict[str, Raw] = {}
    base = Path.cwd()
    if config_raw is not None:
        path: Path = convert(BY_NAME["config"], config_raw)  # "" is refused, not "."
        toml = TomlFile(path)
        file_values = toml.raw_values()
        base = path.resolve().parent
    chosen: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for setting in SETTINGS:
        raw = flags.get(setting.name)
        if raw is None and setting.variable in environ:
            raw = Raw(environ[setting.variable], f"variable {setting.variable}")
        if raw is None:
            raw = file_values.get(setting.name)
        if raw is None:
            origins[setting.name] = "default"
            continue
        origins[setting.name] = raw.origin
        if setting.name == "template":
            from_file = raw is file_values.get("template")
            chosen["template"] = templates(raw, base if from_file else Path.cwd())
        elif setting.name == "rewrite_signal":
            chosen[setting.name] = _rewrite_map(convert(setting, raw), raw.origin)
        elif setting.name in INT_LISTS:
            chosen[setting.name] = _int_list(convert(setting, raw), raw.origin, setting.name,
                                             *INT_LISTS[setting.name])
        else:
            value = convert(setting, raw)
            if setting.kind == "path" and raw is file_values.get(setting.name):
                value = base / value  # paths in the file are relative to the file
            chosen[setting.name] = value
    if "env_template" in file_values:
        chosen["env_template"] = env_templates(file_values["env_template"], base)
        origins["env_template"] = file_values["env_template"].origin
    config = Config(**chosen, origins=origins)
    _cross_check(config)
    return config


def _cross_check(config: Config) -> None:
    if config.success_exit_code and config.mode == "exec":
        raise ConfigError(f"{config.origins['success_exit_code']}: success_exit_code needs "
                          "mode = supervise: in exec mode nothing stays to see the app exit",
                          hint="let the orchestrator treat that status as success instead")
    if config.wait_max < config.wait_min:
        raise ConfigError(f"{config.origins['wait_max']}: wait_max ({config.wait_max:g}s) is "
                          f"shorter than wait_min ({config.wait_min:g}s)",
                          hint="expected wait_max >= wait_min")
    for name in ("poll_interval", "static_creds_poll_interval"):
        if getattr(config, name) <= 0:
            raise ConfigError(f"{config.origins[name]}: {name} must be longer than 0: "
                              "0 would read the secrets again and again without a pause",
                              hint="expected a duration such as 5m")
    if config.local_secrets is not None and not config.local_secrets.is_dir():
        raise ConfigError(f"{config.origins['local_secrets']}: local secrets directory "
                          f"{config.local_secrets} does not exist or is not a directory")


