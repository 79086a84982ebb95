"""Bad input, table-driven, through the real CLI: each case exits with its documented code
and a message that names what was wrong, where, and what was expected.

Every case also checks what must *not* happen: no traceback, no secret value in the
output, nothing written (the base config always has a good file template, so "nothing
half-written" means that even it is not rendered, and no temp file is left), and the app
never started (it would create a marker file).

Then property tests (hypothesis) for what tests/unit/test_refs.py and tests/unit/test_config.py do
not fuzz yet: the TOML config file, the on_change/perms/template-flag parsers.
"""

from __future__ import annotations

import json
import string
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from entrypoint.config import values
from entrypoint.config.model import OnChange, Raw, load
from entrypoint.errors import ConfigError
from tests.helpers.cli import run_cli
from tests.helpers.secrecy import seed_secret

PASSWORD = seed_secret("pw-Bad1nput-Qx7-secret")

BASE_TOP = 'local_secrets = "sec"\n'
BASE_TABLES = ('[[template]]\ncontents = "pw={{ secret(\'kv/app/db\').password }}\\n"\n'
               'destination = "out/good.txt"\n')


@dataclass(frozen=True)
class Case:
    id: str
    code: int
    expect: tuple[str, ...]                     # fragments of the message, in stderr
    top: str = ""                               # top-level TOML lines (before tables)
    tables: str = ""                            # more TOML tables
    env: dict[str, str] = field(default_factory=dict)
    args: tuple[str, ...] = ()
    files: dict[str, str] = field(default_factory=dict)  # relative path -> text ("/" = dir)
    raw_config: str | None = None               # replaces the whole config file


CASES = [
    Case("malformed-toml", 78, ("entrypoint.toml is not valid TOML", "line 2"),
         raw_config='local_secrets = "sec"\nkill_timeout == "5s"\n'),
    Case("unknown-key", 78, ("entrypoint.toml:2: unknown setting 'kill_timout'",
                             "did you mean 'kill_timeout'"), top='kill_timout = "5s"\n'),
    Case("key-in-wrong-table", 78, ("entrypoint.toml:2: setting 'wait_min' belongs in the "
                                    "[rotation] table",), top='wait_min = "1s"\n'),
    Case("unknown-template-key", 78, ("unknown key 'destinaton' in [[template]]",
                                      "did you mean 'destination'"),
         tables='[[template]]\ncontents = "x"\ndestinaton = "out/x"\n'),
    Case("wrong-type-toml", 78, ("entrypoint.toml:2: kill_timeout expects a duration such "
                                 "as 30s, got a boolean",), top="kill_timeout = true\n"),
    Case("wrong-type-variable", 78, ("variable ENTRYPOINT_VAULT_CONCURRENCY",
                                     "expected a whole number, got 'many'"),
         env={"ENTRYPOINT_VAULT_CONCURRENCY": "many"}),
    Case("bad-duration-flag", 78, ("flag --kill-timeout", "expected a duration",
                                   "got '5x'"), args=("--kill-timeout", "5x")),
    Case("wait-max-below-wait-min", 78, ("wait_max (1s) is shorter than wait_min (2s)",
                                         "expected wait_max >= wait_min"),
         args=("--wait-min", "2s", "--wait-max", "1s")),
    Case("bad-perms", 78, ("template: expected octal file permissions such as 0600",
                           "'0999'"),
         tables='[[template]]\ncontents = "x"\ndestination = "out/x"\nperms = "0999"\n'),
    Case("unknown-setting-variable", 78, ("variable ENTRYPOINT_KILL_TIMOUT: unknown setting",
                                          "did you mean 'ENTRYPOINT_KILL_TIMEOUT'"),
         env={"ENTRYPOINT_KILL_TIMOUT": "5s"}),
    Case("reference-without-key", 78, ("variable DB_PASSWORD: reference vault:kv/app/db "
                                       "names no key", "expected vault:PATH#KEY"),
         env={"DB_PASSWORD": "vault:kv/app/db"}),
    Case("reference-unclosed", 78, ("variable DATABASE_URL: reference starting at "
                                    "character 6 has no closing '}'",),
         env={"DATABASE_URL": "pg://${vault:kv/app/db#password@db"}),
    Case("reference-bad-option", 78, ("variable DB_PASSWORD: unexpected '?'",
                                      "the options are ?version=N and ?write&NAME=VALUE"),
         env={"DB_PASSWORD": "vault:kv/app/db#password?ver=2"}),
    Case("missing-key", 78, ("variable DB_PASSWORD: key vault:kv/app/db#nope not found in "
                             "local secrets directory", "keys present: password, username"),
         env={"DB_PASSWORD": "vault:kv/app/db#nope"}),
    Case("missing-path", 78, ("secret kv/app/nothing not found in local secrets directory",
                              "expected a file"),
         env={"DB_PASSWORD": "vault:kv/app/nothing#password"}),
    Case("template-syntax", 78, ("bad.j2:2: ",),
         tables='[[template]]\nsource = "bad.j2"\ndestination = "out/bad.txt"\n',
         files={"bad.j2": "line one\n{{ secret('kv/app/db').password \n"}),
    Case("template-missing-key", 78, ("missing.j2:3: secret kv/app/db has no key 'nope'",
                                      "keys present: password, username"),
         tables='[[template]]\nsource = "missing.j2"\ndestination = "out/m.txt"\n',
         files={"missing.j2": "a\nb\n{{ secret('kv/app/db').nope }}\n"}),
    Case("template-unknown-function", 78, ("fn.j2:1: ", "undefined"),
         tables='[[template]]\nsource = "fn.j2"\ndestination = "out/f.txt"\n',
         files={"fn.j2": "{{ vault('kv/app/db') }}\n"}),
    Case("unknown-stop-signal", 78, ("flag --stop-signal", "expected a signal name such as "
                                     "SIGHUP or SIGTERM, got 'SIGFOO'"),
         args=("--stop-signal", "SIGFOO")),
    Case("unknown-on-change-signal", 78, ("template: expected a signal name", "'NOPE'"),
         tables='[[template]]\ncontents = "x"\ndestination = "out/x"\n'
                'on_change = "signal:NOPE"\n'),
    Case("bad-on-change", 78, ("expected restart, signal:NAME, command:ARGV or none",
                               "'reboot'"),
         tables='[[template]]\ncontents = "x"\ndestination = "out/x"\non_change = "reboot"\n'),
    Case("unknown-user", 78, ("no-such-user-xyz",), args=("--user", "no-such-user-xyz")),
    Case("unknown-template-owner", 78, ("template", "user 'no-such-user-xyz' does not exist",
                                        "expected a user name or a numeric uid"),
         tables='[[template]]\ncontents = "x"\ndestination = "out/x"\n'
                'user = "no-such-user-xyz"\n'),
    Case("config-is-a-directory", 78, ("config file", "cannot be read: is a folder"),
         raw_config="/"),
    Case("template-source-is-a-directory", 78, ("template", "tdir",
                                                "cannot be read as UTF-8 text: "
                                                "is a folder"),
         tables='[[template]]\nsource = "tdir"\ndestination = "out/t.txt"\n',
         files={"tdir": "/"}),
    Case("file-reference-unreadable", 78, ("file /proc/self/mem cannot be read as UTF-8 text",),
         env={"MEM": "file:/proc/self/mem"}),
    Case("local-secrets-not-a-directory", 78, ("local secrets directory", "does not exist or "
                                               "is not a directory"),
         env={"ENTRYPOINT_LOCAL_SECRETS": "/proc/self/status"}),
    Case("non-json-local-secret", 78, ("broken.json:1 is not valid JSON",
                                       "expected one object of key/value pairs"),
         env={"BROKEN": "vault:kv/app/broken#password"},
         files={"sec/kv/app/broken.json": '{"password": "' + PASSWORD + '", oops\n'}),
    Case("local-secret-not-an-object", 78, ("list.json holds a list",),
         env={"LISTED": "vault:kv/app/list#x"}, files={"sec/kv/app/list.json": "[1, 2]\n"}),
    Case("bad-vault-addr", 78, ("variable VAULT_ADDR: expected an http:// or https:// URL",),
         env={"VAULT_ADDR": "ftp://vault.example", "VAULT_TOKEN": "unused-token-value",
              "DB_PASSWORD": "vault:kv/app/db#password"}, raw_config=""),
    Case("unknown-auth-method", 78, ("variable ENTRYPOINT_VAULT_AUTH: vault_auth must be one "
                                     "of token, aws-iam, approle, kubernetes, got 'ldap'",),
         env={"ENTRYPOINT_VAULT_AUTH": "ldap"}),
    Case("bad-fraction", 78, ("flag --renew-fraction", "expected a number strictly between "
                              "0 and 1"), args=("--renew-fraction", "1.5")),
    Case("unknown-flag", 64, ("unrecognized arguments: --no-such-flag",),
         args=("--no-such-flag",)),
]


def _setup(tmp_path: Path, case: Case) -> tuple[Path, Path]:
    (tmp_path / "sec/kv/app").mkdir(parents=True)
    (tmp_path / "sec/kv/app/db.json").write_text(
        json.dumps({"username": "app", "password": PASSWORD}))
    for name, text in case.files.items():
        path = tmp_path / name
        if text == "/":
            path.mkdir(parents=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    config = tmp_path / "entrypoint.toml"
    if case.raw_config == "/":
        config.mkdir()
    else:
        config.write_text(case.raw_config if case.raw_config is not None
                          else BASE_TOP + case.top + BASE_TABLES + case.tables)
    (tmp_path / "out").mkdir()
    return config, tmp_path / "started"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_refused_cleanly(tmp_path: Path, case: Case) -> None:
    config, marker = _setup(tmp_path, case)
    env = {"ENTRYPOINT_CONFIG": str(config), "ENTRYPOINT_CONTROL_SOCKET": "", **case.env}
    app = [sys.executable, "-c", f"open({str(marker)!r}, 'w').close()"]
    result = run_cli([*case.args, "--", *app], env, cwd=tmp_path, timeout=30)
    err = result.stderr
    assert result.returncode == case.code, err
    for fragment in case.expect:
        assert fragment in err, f"{fragment!r} not in:\n{err}"
    assert "Traceback" not in err and "internal error" not in err
    assert PASSWORD not in err + result.stdout
    assert len(err.strip().splitlines()) <= 3, err  # one message, not a cascade
    assert not marker.exists(), "the app was started"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == []


def test_render_subcommand_is_as_strict(tmp_path: Path) -> None:
    """``render`` (init containers) fails the same way, and prints no partial env."""
    case = next(c for c in CASES if c.id == "template-missing-key")
    config, _ = _setup(tmp_path, case)
    result = run_cli(["render"], {"ENTRYPOINT_CONFIG": str(config),
                                  "DB_PASSWORD": "vault:kv/app/db#password"}, cwd=tmp_path)
    assert result.returncode == 78 and result.stdout == ""
    assert "missing.j2:3" in result.stderr and PASSWORD not in result.stderr
    assert list((tmp_path / "out").iterdir()) == []


# -- property tests ----------------------------------------------------------------------

_KEY = st.text(alphabet=string.ascii_lowercase + "_", min_size=1, max_size=24)
_SCALAR = st.one_of(st.booleans(), st.integers(-10**6, 10**6),
                    st.floats(allow_nan=False, allow_infinity=False, width=32),
                    st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")),
                            max_size=30))
_SETTING_NAMES = ["kill_timeout", "stop_signal", "user", "mode", "secrets", "pass_env",
                  "vault_concurrency", "renew_fraction", "template", "env_template",
                  "on_expiry", "rewrite_signal", "rotation", "log_level", "debug"]


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value) if not isinstance(value, float) or value == value else "0"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)  # a JSON string is a valid TOML basic string


_VALUE = st.recursive(_SCALAR, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(_KEY, inner, max_size=3)), max_leaves=6)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.one_of(st.sampled_from(_SETTING_NAMES), _KEY), _VALUE,
                       max_size=5))
def test_any_toml_document_loads_or_raises_a_config_error(
        tmp_path_factory: pytest.TempPathFactory, document: dict[str, object]) -> None:
    document.pop("config", None)
    document.pop("local_secrets", None)
    text = "".join(f"{key} = {_toml_value(value)}\n" for key, value in document.items())
    path = tmp_path_factory.mktemp("toml") / "entrypoint.toml"
    path.write_text(text)
    try:
        load({}, {"ENTRYPOINT_CONFIG": str(path)})
    except ConfigError as exc:
        assert exc.exit_code == 78 and str(path) in str(exc)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_any_toml_text_loads_or_raises_a_config_error(
        tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    path = tmp_path_factory.mktemp("toml") / "entrypoint.toml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        load({}, {"ENTRYPOINT_CONFIG": str(path)})
    except ConfigError as exc:
        assert exc.exit_code == 78 and str(path) in str(exc)


@given(st.text(max_size=40))
def test_on_change_parser_raises_only_value_error(text: str) -> None:
    try:
        parsed = OnChange.parse(text)
    except ValueError as exc:
        assert "expected" in str(exc)
    else:
        assert parsed.action in ("restart", "signal", "command", "none")


@given(st.text(max_size=12))
def test_perms_parser_raises_only_value_error(text: str) -> None:
    try:
        assert 0 <= values.parse_perms(text) <= 0o7777
    except ValueError as exc:
        assert "expected octal file permissions" in str(exc)


@given(st.lists(st.text(max_size=20), min_size=1, max_size=3))
def test_template_flag_loads_or_raises_a_config_error(items: list[str]) -> None:
    try:
        load({"template": Raw(items, "flag --template")}, {})
    except ConfigError as exc:
        assert "flag --template" in str(exc)
