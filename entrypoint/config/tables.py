"""``[[template]]`` and ``[[env_template]]`` tables (and ``--template SRC:DEST[:PERMS]``)
into specs, each error naming where the table is and what it expected."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from entrypoint.config import values
from entrypoint.config.convert import did_you_mean
from entrypoint.config.model import (
    EnvTemplateSpec,
    OnChange,
    Raw,
    TemplateSpec,
)
from entrypoint.describe import value_kind
from entrypoint.errors import ConfigError


def _template_from_flag(text: str, origin: str) -> TemplateSpec:
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise ConfigError(f"{origin}: template expects SRC:DEST[:PERMS], got {text!r}")
    try:
        perms = values.parse_perms(parts[2]) if len(parts) == 3 else 0o600
    except ValueError as exc:
        raise ConfigError(f"{origin}: template: {exc}") from None
    return TemplateSpec(source=Path(parts[0]), destination=Path(parts[1]), perms=perms,
                        origin=origin)


_TEMPLATE_KEYS = ("source", "contents", "destination", "perms", "on_change", "user", "group",
                  "error_on_refresh")
ERROR_ON_REFRESH = ("keep", "fatal")
_ENV_TEMPLATE_KEYS = ("name", "source", "contents")


def _table_str(table: dict[str, Any], key: str, origin: str, what: str) -> str | None:
    value = table.get(key)
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"{origin}: {what}.{key} expects a string, "
                          f"got {value_kind(value)}")
    return value


def _check_table(table: Any, allowed: tuple[str, ...], origin: str, what: str) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise ConfigError(f"{origin}: each [[{what}]] must be a table, "
                          f"got {value_kind(table)}")
    for key in table:
        if key not in allowed:
            raise ConfigError(f"{origin}: unknown key {key!r} in [[{what}]]",
                              hint=did_you_mean(key, list(allowed))
                              or f"expected one of {', '.join(allowed)}")
    return table


def _source_or_contents(table: dict[str, Any], origin: str, what: str,
                        base: Path) -> tuple[Path | None, str | None]:
    source = _table_str(table, "source", origin, what)
    contents = _table_str(table, "contents", origin, what)
    if (source is None) == (contents is None):
        raise ConfigError(f"{origin}: [[{what}]] needs exactly one of source or contents")
    return (base / source if source is not None else None), contents


def templates(raw: Raw, base: Path) -> list[TemplateSpec]:
    if isinstance(raw.value, str):
        return [_template_from_flag(p, raw.origin) for p in raw.value.split(",") if p.strip()]
    if not isinstance(raw.value, list):
        raise ConfigError(f"{raw.origin}: template expects [[template]] tables")
    specs = []
    for index, item in enumerate(raw.value):
        origin = raw.item(index)
        if isinstance(item, str):
            specs.append(_template_from_flag(item, raw.origin))
            continue
        table = _check_table(item, _TEMPLATE_KEYS, origin, "template")
        source, contents = _source_or_contents(table, origin, "template", base)
        dest = _table_str(table, "destination", origin, "template")
        if not dest:
            raise ConfigError(f"{origin}: [[template]] needs a destination")
        try:
            perms = values.parse_perms(_perms_text(table.get("perms", "0600")))
            on_change = OnChange.parse(str(table.get("on_change", "restart")))
        except ValueError as exc:
            raise ConfigError(f"{origin}: template: {exc}") from None
        on_error = _table_str(table, "error_on_refresh", origin, "template")
        if on_error is not None and on_error not in ERROR_ON_REFRESH:
            raise ConfigError(f"{origin}: template.error_on_refresh expects keep or fatal, "
                              f"got {on_error!r}")
        specs.append(TemplateSpec(
            destination=base / dest, source=source, contents=contents, perms=perms,
            on_change=on_change, user=_table_str(table, "user", origin, "template"),
            group=_table_str(table, "group", origin, "template"), origin=origin,
            error_on_refresh=on_error))
    return specs


def env_templates(raw: Raw, base: Path) -> list[EnvTemplateSpec]:
    if not isinstance(raw.value, list):
        raise ConfigError(f"{raw.origin}: env_template expects [[env_template]] tables")
    specs = []
    for index, item in enumerate(raw.value):
        origin = raw.item(index)
        table = _check_table(item, _ENV_TEMPLATE_KEYS, origin, "env_template")
        name = _table_str(table, "name", origin, "env_template")
        if not name or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ConfigError(f"{origin}: [[env_template]] needs a name that is a valid "
                              f"variable name, got {name!r}")
        source, contents = _source_or_contents(table, origin, "env_template", base)
        specs.append(EnvTemplateSpec(name=name, source=source, contents=contents,
                                     origin=origin))
    return specs


def _perms_text(value: object) -> str:
    """perms as written in quotes. A TOML number is refused: 0o600 and 600 both arrive
    as numbers (384 and 600), and reading either back as octal digits made a wrong mode
    in silence (0o644 became 0420)."""
    if isinstance(value, str):
        return value
    raise ValueError(f"expected octal file permissions in quotes such as \"0600\", got "
                     f"{value!r}: TOML reads 0o600 and 600 as numbers")
