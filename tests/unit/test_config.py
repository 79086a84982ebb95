"""Config precedence, types, and errors that say what, where and what was expected."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from entrypoint.config import values
from entrypoint.config.model import Raw, load
from entrypoint.config.settings import SETTINGS
from entrypoint.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "entrypoint.toml"
    path.write_text(text)
    return path


def test_defaults() -> None:
    config = load({}, {})
    assert config.kill_timeout == 30.0
    assert config.stop_signal == 15
    assert config.mode == "supervise"
    assert config.poll_interval == 300.0
    assert config.revoke_on_exit is True


def test_flag_beats_variable_beats_file_beats_default(tmp_path: Path) -> None:
    path = write(tmp_path, 'kill_timeout = "7s"\npoll_interval = "1m"\n\n'
                           '[rotation]\nwait_min = "2s"\n')
    env = {"ENTRYPOINT_CONFIG": str(path), "ENTRYPOINT_KILL_TIMEOUT": "9s",
           "ENTRYPOINT_POLL_INTERVAL": "2m"}
    config = load({"kill_timeout": Raw("11", "flag --kill-timeout")}, env)
    assert config.kill_timeout == 11.0
    assert config.origins["kill_timeout"] == "flag --kill-timeout"
    assert config.poll_interval == 120.0
    assert config.origins["poll_interval"] == "variable ENTRYPOINT_POLL_INTERVAL"
    assert config.wait_min == 2.0
    assert config.origins["wait_min"].endswith("entrypoint.toml:5")
    assert config.origins["splay"] == "default"


def test_toml_top_level_key_that_belongs_in_a_section_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, 'wait_min = "2s"\n')
    with pytest.raises(ConfigError) as info:
        load({}, {"ENTRYPOINT_CONFIG": str(path)})
    assert "entrypoint.toml:1" in str(info.value)
    assert "belongs in the [rotation] table" in str(info.value)


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ('kill_timout = "5s"\n', ["entrypoint.toml:1", "unknown setting 'kill_timout'",
                                  "did you mean 'kill_timeout'"]),
        ('\n\nkill_timeout = "soon"\n', ["entrypoint.toml:3", "kill_timeout",
                                         "expected a duration"]),
        ("revoke_on_exit = 3\n", ["entrypoint.toml:1",
                                  "expects true or false, got a whole number"]),
        ('mode = "exce"\n', ["mode must be one of supervise, exec", "did you mean 'exec'"]),
        ('stop_signal = "SIGNOPE"\n', ["stop_signal", "expected a signal name"]),
        ("secrets = [1, 2]\n", ["secrets expects a list of strings"]),
        ("[rotation]\nwiat_max = 3\n", ["entrypoint.toml:2", "rotation.wiat_max",
                                        "did you mean 'rotation.wait_max'"]),
        ('[[template]]\ndestination = "/x"\n', ["exactly one of source or contents"]),
        ('[[template]]\ncontents = "x"\ndestination = "/x"\non_change = "reload"\n',
         ["expected restart, signal:NAME, command:ARGV or none"]),
        ('[[template]]\ncontents = "x"\ndestination = "/x"\nperm = "0600"\n',
         ["unknown key 'perm'", "did you mean 'perms'"]),
        ("[rotation]\nwait_min = 5\nwait_max = 2\n", ["wait_max (2s) is shorter"]),
        ("this is not toml\n", ["is not valid TOML"]),
        # A quoted mode only: 0o644 arrives as the number 420 and was read back as 0420.
        ('[[template]]\ncontents = "x"\ndestination = "/x"\nperms = 0o644\n',
         ["entrypoint.toml:1", "octal file permissions in quotes", "got 420"]),
        ("template_timeout = inf\n", ["template_timeout", "at most 100 years"]),
        ("template_timeout = nan\n", ["template_timeout", "a duration of 0 or more"]),
        ('kill_timeout = "99999999999999h"\n', ["kill_timeout", "at most 100 years"]),
        ("pass_fds = [3, true]\n", ["pass_fds expects a list of whole numbers"]),
        ('poll_interval = "0s"\n', ["entrypoint.toml:1", "poll_interval must be longer"]),
        ("static_creds_poll_interval = 0\n", ["static_creds_poll_interval must be longer"]),
    ],
)
def test_bad_files_are_rejected_with_where_and_what(tmp_path: Path, text: str,
                                                    fragments: list[str]) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load({}, {"ENTRYPOINT_CONFIG": str(path)})
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message
    assert info.value.exit_code == 78


def test_numbers_where_toml_writes_them_as_numbers(tmp_path: Path) -> None:
    path = write(tmp_path, "stop_signal = 1\npass_fds = [3, 4]\nsuccess_exit_code = [0, 143]\n"
                           'template_timeout = 2.5\n')
    config = load({}, {"ENTRYPOINT_CONFIG": str(path)})
    assert config.stop_signal == 1
    assert config.pass_fds == [3, 4]
    assert config.success_exit_code == [0, 143]
    assert config.template_timeout == 2.5


def test_unknown_variable_gets_a_suggestion() -> None:
    with pytest.raises(ConfigError) as info:
        load({}, {"ENTRYPOINT_KILL_TIMEOT": "5"})
    assert "ENTRYPOINT_KILL_TIMEOT" in str(info.value)
    assert "did you mean 'ENTRYPOINT_KILL_TIMEOUT'" in str(info.value)


def test_bad_variable_value_names_the_variable() -> None:
    with pytest.raises(ConfigError) as info:
        load({}, {"ENTRYPOINT_VAULT_CONCURRENCY": "many"})
    assert "variable ENTRYPOINT_VAULT_CONCURRENCY" in str(info.value)
    assert "expected a whole number" in str(info.value)


def test_an_empty_config_path_is_refused_by_name() -> None:
    # As docker-compose passes ENTRYPOINT_CONFIG=${UNSET}: it read the folder "." before.
    with pytest.raises(ConfigError, match="variable ENTRYPOINT_CONFIG: config: expected a "
                                          "path, got an empty value"):
        load({}, {"ENTRYPOINT_CONFIG": ""})


def test_missing_config_file() -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load({}, {"ENTRYPOINT_CONFIG": "/nonexistent/entrypoint.toml"})


def test_templates_and_env_templates_from_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[[template]]\nsource = "db.yml.j2"\ndestination = "out/db.yml"\n'
                           'perms = "0640"\non_change = "signal:HUP"\n'
                           '[[env_template]]\nname = "DATABASE_URL"\ncontents = "x"\n')
    config = load({}, {"ENTRYPOINT_CONFIG": str(path)})
    (template,) = config.template
    assert template.source == tmp_path / "db.yml.j2"
    assert template.destination == tmp_path / "out/db.yml"
    assert template.perms == 0o640
    assert template.on_change.action == "signal" and template.on_change.signal == 1
    assert config.env_template[0].name == "DATABASE_URL"


def test_template_flags_and_rewrite_signal() -> None:
    config = load({"template": Raw(["a.j2:/run/a:0644", "b.j2:/run/b"], "flag --template"),
                   "rewrite_signal": Raw(["TERM:QUIT"], "flag --rewrite-signal")}, {})
    assert [t.perms for t in config.template] == [0o644, 0o600]
    assert config.rewrite_signal == {15: 3}
    with pytest.raises(ConfigError, match="SRC:DEST"):
        load({"template": Raw(["only-one-part"], "flag --template")}, {})


def test_secret_setting_is_redacted_in_repr() -> None:
    config = load({}, {"ENTRYPOINT_VAULT_APPROLE_SECRET_ID": "s3cr3t-approle-id"})
    assert "s3cr3t-approle-id" not in repr(config)
    assert config.vault_approle_secret_id is not None
    assert config.vault_approle_secret_id.reveal() == "s3cr3t-approle-id"


def test_every_setting_is_a_config_field() -> None:
    from dataclasses import fields

    from entrypoint.config.model import Config

    names = {f.name for f in fields(Config)}
    assert {s.name for s in SETTINGS} <= names


@pytest.mark.parametrize(("text", "seconds"),
                         [("500ms", 0.5), ("30s", 30), ("5m", 300), ("1h", 3600), ("2", 2),
                          ("1m30s", 90), ("1.5s", 1.5)])
def test_durations(text: str, seconds: float) -> None:
    assert values.parse_duration(text) == seconds


@given(st.text())
def test_duration_parser_raises_only_value_error(text: str) -> None:
    try:
        assert values.parse_duration(text) >= 0
    except ValueError as exc:
        assert "expected a duration" in str(exc)


@given(st.text())
def test_signal_parser_raises_only_value_error(text: str) -> None:
    try:
        assert values.parse_signal(text) > 0
    except ValueError as exc:
        assert "expected a signal" in str(exc)


@given(st.dictionaries(st.sampled_from([s.variable for s in SETTINGS] + ["ENTRYPOINT_X"]),
                       st.text(alphabet=st.characters(blacklist_characters="\x00"))))
def test_config_loader_raises_only_config_errors(env: dict[str, str]) -> None:
    env.pop("ENTRYPOINT_CONFIG", None)
    env.pop("ENTRYPOINT_LOCAL_SECRETS", None)
    try:
        load({}, env)
    except ConfigError as exc:
        assert exc.exit_code == 78 and str(exc)


def test_paths_in_the_file_are_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "dev-secrets").mkdir()
    path = write(tmp_path, 'local_secrets = "dev-secrets"\n')
    config = load({}, {"ENTRYPOINT_CONFIG": str(path)})
    assert config.local_secrets == tmp_path / "dev-secrets"


def test_each_template_table_is_named_by_its_own_line(tmp_path: Path) -> None:
    """An error in the second [[template]] names the second table's line, not the first's."""
    toml = tmp_path / "entrypoint.toml"
    toml.write_text('[[template]]\ncontents = "a"\ndestination = "a.txt"\n\n'
                    '[[template]]\ncontents = "b"\ndestination = "b.txt"\n\n'
                    '[[env_template]]\nname = "X"\ncontents = "x"\n')
    config = load({}, {"ENTRYPOINT_CONFIG": str(toml)})
    assert [t.origin for t in config.template] == [f"{toml}:1", f"{toml}:5"]
    assert [t.origin for t in config.env_template] == [f"{toml}:9"]
    toml.write_text('[[template]]\ncontents = "a"\ndestination = "a.txt"\n\n'
                    '[[template]]\ncontents = "b"\nperms = "bad"\ndestination = "b.txt"\n')
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(toml))}:5: template: expected"):
        load({}, {"ENTRYPOINT_CONFIG": str(toml)})
