"""From a raw setting value (a string from a flag or variable, a native TOML value) to
the setting's type, with an error that names where the value came from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from entrypoint.config import values
from entrypoint.config.settings import Setting
from entrypoint.errors import ConfigError
from entrypoint.secret import Secret

# The lists of whole numbers, with their bounds: exit statuses are 0-255; a passed
# descriptor is one the caller opened beyond 0, 1, 2.
INT_LISTS = {"success_exit_code": (0, 255), "pass_fds": (3, 2**20)}


@dataclass(frozen=True)
class Raw:
    """A raw value and where it came from."""

    value: Any
    origin: str
    # For an array of tables ([[template]]): where each table starts, in order.
    items: tuple[str, ...] = ()

    def item(self, index: int) -> str:
        return self.items[index] if index < len(self.items) else self.origin


def did_you_mean(word: str, choices: list[str]) -> str | None:
    import difflib

    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else None


def _expect(setting: Setting, raw: Raw, what: str) -> ConfigError:
    from entrypoint.describe import value_kind

    return ConfigError(f"{raw.origin}: {setting.name} expects {what}, got "
                       f"{value_kind(raw.value)}")


def _to_list(setting: Setting, raw: Raw, v: Any) -> Any:
    if isinstance(v, str):
        return [p.strip() for p in v.split(",") if p.strip()]
    if isinstance(v, list) and all(isinstance(p, str) for p in v):
        return list(v)
    if setting.name in INT_LISTS:  # as TOML writes them: pass_fds = [3]
        if isinstance(v, list) and all(isinstance(p, int | str) and not isinstance(p, bool)
                                       for p in v):
            return [str(p) for p in v]
        raise _expect(setting, raw, "a list of whole numbers")
    raise _expect(setting, raw, "a list of strings")


def _to_bool(setting: Setting, raw: Raw, v: Any) -> Any:
    if isinstance(v, bool):
        return v
    if isinstance(v, str):
        return values.parse_bool(v)
    raise _expect(setting, raw, "true or false")


def _to_int(setting: Setting, raw: Raw, v: Any) -> Any:
    if isinstance(v, int | str) and not isinstance(v, bool):
        return values.parse_positive_int(str(v))
    raise _expect(setting, raw, "a whole number")


def _to_duration(setting: Setting, raw: Raw, v: Any) -> Any:
    if isinstance(v, int | float) and not isinstance(v, bool):
        return values.check_duration(float(v))  # TOML has nan and inf
    if isinstance(v, str):
        return values.parse_duration(v)
    raise _expect(setting, raw, "a duration such as 30s")


def _to_fraction(setting: Setting, raw: Raw, v: Any) -> Any:
    if isinstance(v, int | float | str) and not isinstance(v, bool):
        return values.parse_fraction(str(v))
    raise _expect(setting, raw, "a number between 0 and 1")


def _to_text(setting: Setting, raw: Raw, v: Any) -> Any:
    """The kinds TOML can only give as a string, and signals, also a number."""
    if setting.kind == "signal" and isinstance(v, int) and not isinstance(v, bool):
        v = str(v)
    if not isinstance(v, str):
        raise _expect(setting, raw, "a string")
    if setting.kind == "signal":
        return int(values.parse_signal(v))
    if setting.kind == "choice":
        if v not in setting.choices:
            hint = did_you_mean(v, list(setting.choices))
            raise ConfigError(
                f"{raw.origin}: {setting.name} must be one of {', '.join(setting.choices)},"
                f" got {v!r}", hint=hint)
        return v
    if setting.kind == "path":
        if not v:
            raise ValueError("expected a path, got an empty value")
        return Path(v)
    return Secret(v) if setting.secret else v


_CONVERTERS = {"list": _to_list, "bool": _to_bool, "int": _to_int, "duration": _to_duration,
               "fraction": _to_fraction}


def convert(setting: Setting, raw: Raw) -> Any:
    """Turn a raw value (string from flag/env, native from TOML) into the setting's type."""
    try:
        return _CONVERTERS.get(setting.kind, _to_text)(setting, raw, raw.value)
    except ValueError as exc:
        raise ConfigError(f"{raw.origin}: {setting.name}: {exc}") from None
