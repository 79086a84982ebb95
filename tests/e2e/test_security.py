"""Security defaults through the real CLI against the Vault test server: the app's
environment holds no bootstrap credential unless asked, TLS is verified unless turned off
(loudly), and rendered files are private. (The template sandbox is tested in
tests/e2e/test_templates.py; the secrecy of every output across the suite in
tests/helpers/secrecy.py.)"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import http_servers
from tests.helpers.cli import run_cli
from tests.helpers.secrecy import seed_secret
from tests.realservers.vault import RealVault

VALUE = seed_secret("sec-Vault-Value-77q")
DUMP_ENV = "import json, os, sys; json.dump(dict(os.environ), open(sys.argv[1], 'w'))"


@pytest.fixture
def vault(vault_server: Any) -> Any:
    vault_server.write_kv("secret", "app", {"value": VALUE})
    vault_server.set_policy("app", {"secret/data/*": ["read"]})
    return vault_server


def _child_env(tmp_path: Path, env: dict[str, str], *args: str) -> dict[str, str]:
    out = tmp_path / "env.json"
    result = run_cli([*args, "--", sys.executable, "-c", DUMP_ENV, str(out)], env)
    assert result.returncode == 0, result.stderr
    data: dict[str, str] = json.loads(out.read_text())
    return data


@pytest.mark.parametrize("mode", ["supervise", "exec"])
def test_child_gets_no_bootstrap_credentials(vault: Any, tmp_path: Path, mode: str) -> None:
    token = vault.create_token(["app"], ttl=600)
    env = {"VAULT_ADDR": vault.addr, "VAULT_TOKEN": token, "APP_SECRET":
           "vault:secret/app#value", "ENTRYPOINT_MODE": mode, "ENTRYPOINT_KILL_TIMEOUT": "5s",
           "ENTRYPOINT_CONTROL_SOCKET": "", "VAULT_SECRET_ID": seed_secret("bootstrap-sid-1")}
    child = _child_env(tmp_path, env)
    assert child["APP_SECRET"] == VALUE
    leaked = sorted(k for k in child if k.startswith("ENTRYPOINT_") or k in
                    ("VAULT_TOKEN", "VAULT_SECRET_ID", "VAULT_ROLE_ID", "CONSUL_HTTP_TOKEN"))
    assert leaked == []
    assert token not in json.dumps(child)


def test_pass_env_keeps_only_what_is_named(vault: Any, tmp_path: Path) -> None:
    token = vault.create_token(["app"], ttl=600)
    env = {"VAULT_ADDR": vault.addr, "VAULT_TOKEN": token, "APP_SECRET":
           "vault:secret/app#value", "ENTRYPOINT_PASS_ENV": "VAULT_TOKEN",
           "ENTRYPOINT_REVOKE_ON_EXIT": "false"}
    child = _child_env(tmp_path, env, "--exec")
    assert child["VAULT_TOKEN"] == token
    assert not any(k.startswith("ENTRYPOINT_") for k in child)


# -- TLS -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (no CA anyone trusts)."""
    return http_servers.self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def tls_vault(self_signed: tuple[Path, Path]) -> Iterator[Any]:
    """A real Vault that also serves HTTPS with the self-signed certificate (.https_addr)."""
    with RealVault(tls=self_signed) as server:
        server.write_kv("secret", "app", {"value": VALUE})
        server.set_policy("app", {"secret/data/*": ["read"]})
        yield server


def _tls_env(vault: Any, addr: str, **extra: str) -> dict[str, str]:
    return {"VAULT_ADDR": addr, "VAULT_TOKEN": vault.create_token(["app"], ttl=600),
            "APP_SECRET": "vault:secret/app#value", **extra}


def test_self_signed_vault_is_refused_by_default(tls_vault: Any, tmp_path: Path) -> None:
    """No VAULT_CACERT: the certificate is not trusted, the run fails at once (a bad
    certificate is not retried for the whole start-up window) and the app never runs."""
    marker = tmp_path / "started"
    began = time.monotonic()
    result = run_cli(["--startup-timeout", "30s", "--", sys.executable, "-c",
                      f"open({str(marker)!r}, 'w').close()"],
                     _tls_env(tls_vault, tls_vault.https_addr))
    assert result.returncode == 69, result.stderr
    assert "TLS failed" in result.stderr and "VAULT_CACERT" in result.stderr
    assert time.monotonic() - began < 10
    assert not marker.exists()
    assert not any(r.status == 200 and r.path == "secret/data/app" for r in tls_vault.requests)


def test_self_signed_vault_with_its_cacert_works(tls_vault: Any,
                                                 self_signed: tuple[Path, Path]) -> None:
    result = run_cli(["render"], _tls_env(tls_vault, tls_vault.https_addr,
                                          VAULT_CACERT=str(self_signed[0])))
    assert result.returncode == 0, result.stderr
    assert "APP_SECRET=<redacted>" in result.stdout


def test_skip_verify_works_but_says_so_loudly(tls_vault: Any) -> None:
    result = run_cli(["render"], _tls_env(tls_vault, tls_vault.https_addr,
                                          VAULT_SKIP_VERIFY="true"))
    assert result.returncode == 0, result.stderr
    assert "VAULT_SKIP_VERIFY is set: the Vault server's TLS certificate is NOT verified" \
        in result.stderr


# -- files -----------------------------------------------------------------------------------

def test_rendered_file_is_0600_even_with_a_permissive_umask(vault: Any, tmp_path: Path) -> None:
    """A template without perms gets 0600 whatever the umask (the temp file is created
    0600 by mkstemp, so the secret is never readable by others, even for an instant)."""
    (tmp_path / "t.j2").write_text("{{ secret('secret/app').value }}\n")
    dest = tmp_path / "out/app.conf"
    env = _tls_env(vault, vault.addr, ENTRYPOINT_TEMPLATE=f"{tmp_path / 't.j2'}:{dest}")
    result = subprocess.run(["sh", "-c", 'umask 000; exec "$@"', "sh", sys.executable, "-m",
                             "entrypoint", "render"], env=_with_path(env), capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert dest.read_text() == VALUE + "\n"
    assert dest.stat().st_mode & 0o777 == 0o600


def _with_path(env: dict[str, str]) -> dict[str, str]:
    from tests.helpers.cli import clean_env

    return clean_env(env)
