"""The vault CLI's conventions (issue 18.5): VAULT_AGENT_ADDR, unix:// addresses, Go's
ParseBool for VAULT_* switches, mounts of child namespaces; and why aws-iam was tried."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from entrypoint.config.values import parse_go_bool
from entrypoint.errors import ConfigError
from entrypoint.sources.vault import kv
from entrypoint.sources.vault.connection import UNIX_URL, Connection
from tests.helpers.cli import run_cli

LOG = logging.getLogger("test")


@pytest.mark.parametrize("text", ["1", "t", "T", "TRUE", "true", "True"])
def test_go_true(text: str) -> None:
    assert parse_go_bool(text) is True


@pytest.mark.parametrize("text", ["0", "f", "F", "FALSE", "false", "False"])
def test_go_false(text: str) -> None:
    assert parse_go_bool(text) is False


@pytest.mark.parametrize("text", ["yes", "no", "on", "off", "tRUE", "2", "y", ""])
def test_go_refuses_the_rest(text: str) -> None:
    with pytest.raises(ValueError, match="ParseBool"):
        parse_go_bool(text)


def test_vault_skip_verify_t_is_accepted_and_yes_refused_naming_the_variable() -> None:
    on = Connection.from_environ({"VAULT_ADDR": "https://v:8200", "VAULT_SKIP_VERIFY": "t"},
                                 LOG)
    assert on.verify is False
    with pytest.raises(ConfigError, match="variable VAULT_SKIP_VERIFY: expected true or fal"):
        Connection.from_environ({"VAULT_ADDR": "https://v:8200", "VAULT_SKIP_VERIFY": "yes"},
                                LOG)


def test_agent_addr_wins_as_for_the_cli(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        conn = Connection.from_environ({"VAULT_ADDR": "https://vault.example:8200",
                                        "VAULT_AGENT_ADDR": "http://127.0.0.1:8100"}, LOG)
    assert conn.addr == conn.url == "http://127.0.0.1:8100" and conn.socket_path is None
    assert "using VAULT_AGENT_ADDR http://127.0.0.1:8100" in caplog.text
    alone = Connection.from_environ({"VAULT_AGENT_ADDR": "unix:///run/agent.sock"}, LOG)
    assert alone.socket_path == "/run/agent.sock" and alone.url == UNIX_URL
    assert alone.addr == "unix:///run/agent.sock"


@pytest.mark.parametrize(("env", "message"), [
    ({"VAULT_AGENT_ADDR": "127.0.0.1:8100"},
     "variable VAULT_AGENT_ADDR: expected an http:// or https:// URL or a unix:// socket"),
    ({"VAULT_ADDR": "unix://"}, "variable VAULT_ADDR: unix:// names no socket"),
])
def test_bad_addresses_name_their_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Connection.from_environ(env, LOG)


@pytest.mark.parametrize(("namespace", "answer", "path", "expected"), [
    # VAULT_NAMESPACE=org, a mount of child namespace org/team/: Vault answers the full
    # path from the root (sys/internal/ui/mounts: me.Namespace().Path + me.Path).
    ("org", "org/team/kv/", "team/kv/app/db", "team/kv/"),
    ("org/", "org/team/kv/", "team/kv/app/db", "team/kv/"),
    ("/org/sub", "org/sub/team/secret/", "team/secret/x", "team/secret/"),
    # A mount of the namespace itself: Vault answers it relative, as without namespaces.
    ("org", "kv/", "kv/app/db", "kv/"),
    # No namespace set: child namespaces of the root are already relative.
    (None, "team/kv/", "team/kv/app", "team/kv/"),
    # A mount literally named like the namespace is not cut when it is ours.
    ("org", "org/", "org/app", "org/"),
])
def test_child_namespace_mount_paths(namespace: str | None, answer: str, path: str,
                                     expected: str) -> None:
    data = {"path": answer, "type": "kv", "options": {"version": "2"}}
    mount = kv.Mount.from_data(data, path, namespace)
    assert mount == kv.Mount(expected, "kv", 2)
    table = kv.MountTable(namespace)
    assert table.find(path, lambda p: data) == mount
    assert table.cached(path) == mount


def test_aws_iam_chosen_by_default_says_why(tmp_path: Path) -> None:
    result = run_cli(["render"], {"VAULT_ADDR": "http://127.0.0.1:9", "HOME": str(tmp_path),
                                  "AWS_EC2_METADATA_DISABLED": "true",
                                  "AWS_CONFIG_FILE": str(tmp_path / "none"),
                                  "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
                                  "A": "vault:kv/app#k"})
    assert result.returncode == 77, result.stderr
    assert "aws-iam: no AWS credentials found; aws-iam was tried because no Vault token " \
           "was found: VAULT_TOKEN, vault_token_file and vault_auth are all unset" \
           in result.stderr
    chosen = run_cli(["render"], {"VAULT_ADDR": "http://127.0.0.1:9", "HOME": str(tmp_path),
                                  "AWS_EC2_METADATA_DISABLED": "true",
                                  "ENTRYPOINT_VAULT_AUTH": "aws-iam", "A": "vault:kv/app#k"})
    assert chosen.returncode == 77 and "was tried because" not in chosen.stderr


def test_local_secrets_over_vault_addr_is_logged(tmp_path: Path) -> None:
    (tmp_path / "kv").mkdir()
    (tmp_path / "kv/app.json").write_text('{"k": "v-local-0123"}')
    result = run_cli(["render"], {"VAULT_ADDR": "https://vault.example:8200",
                                  "ENTRYPOINT_LOCAL_SECRETS": str(tmp_path),
                                  "A": "vault:kv/app#k"})
    assert result.returncode == 0, result.stderr
    assert "ENTRYPOINT_LOCAL_SECRETS is set, so Vault at https://vault.example:8200 is " \
           "not used" in result.stderr
