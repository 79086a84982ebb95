"""What the real Vault does that the project's stand-in never did (issue 13, point 4).

Each test is one finding: a behaviour of HashiCorp Vault's own source, met here on the
real server, that the entrypoint must handle: batch tokens, tokens without the `default`
policy, a 500 whose body carries the reason, renewal of a lease whose role was deleted.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from entrypoint.config.model import Config
from entrypoint.errors import EntrypointError, LeaseGone
from entrypoint.sources.vault.source import VaultSource
from tests.helpers.cli import run_cli


def source_for(server: Any, token: str) -> VaultSource:
    return VaultSource.from_config(Config(startup_timeout=3.0),
                                   {"VAULT_ADDR": server.addr, "VAULT_TOKEN": token})


@pytest.fixture
def kv(vault_server: Any) -> Any:
    vault_server.write_kv("secret", "app", {"k": "finding-value-7"})
    vault_server.set_policy("app", {"secret/data/app": ["read"],
                                    "database/creds/*": ["read"]})
    return vault_server


def test_batch_token_is_neither_renewed_nor_revoked(kv: Any,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    """Vault: "batch tokens cannot be renewed" / "cannot be revoked" (400). A batch token
    given to us is used as it is; one we logged in for is left to end at its TTL."""
    token = kv.create_token(["app"], ttl=600, token_type="batch")
    assert token.startswith("hvb.")
    src = source_for(kv, token)
    assert src.fetch("secret/app").plain() == {"k": "finding-value-7"}
    assert src.keeper.current is not None and src.keeper.current.batch
    assert not src.keeper.current.renewable
    src.close()
    kv.enable_auth("approle")
    role_id, secret_id = kv.engine("approle", auth=True).add_role(
        "batch", ["app"], ttl=600, token_type="batch")
    with caplog.at_level(logging.INFO, logger="entrypoint"):
        src = VaultSource.from_config(
            Config(vault_auth="approle", vault_approle_role_id=role_id, startup_timeout=3.0),
            {"VAULT_ADDR": kv.addr, "VAULT_SECRET_ID": secret_id})
        assert src.fetch("secret/app").plain() == {"k": "finding-value-7"}
        assert src.keeper.current is not None and src.keeper.current.batch
        src.close()
    assert kv.count("auth/token/revoke-self") == 0
    assert kv.count("auth/token/renew-self") == 0
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "batch token is not revoked" in text and "could not revoke" not in text


def test_token_without_the_default_policy_works(kv: Any) -> None:
    """Only `default` grants auth/token/lookup-self: Vault answers 403 "permission denied"
    without "invalid token". Such a token is valid and must be used, not refused."""
    token = kv.create_token(["app"], ttl=600, no_default_policy=True)
    src = source_for(kv, token)
    assert src.fetch("secret/app").plain() == {"k": "finding-value-7"}
    with pytest.raises(EntrypointError) as info:
        src.fetch("secret/other")
    assert info.value.exit_code == 77 and "permission denied" in str(info.value)
    src.close()
    result = run_cli(["--exec", "--", "sh", "-c", 'test "$X" = finding-value-7'],
                     {"VAULT_ADDR": kv.addr, "VAULT_TOKEN": token, "X": "vault:secret/app#k"})
    assert result.returncode == 0, result.stderr
    assert "may not look itself up" in result.stderr


def test_invalid_token_is_still_refused(kv: Any) -> None:
    token = kv.create_token(["app"], ttl=600)
    kv.revoke_token(token)
    result = run_cli(["--exec", "--", "true"],
                     {"VAULT_ADDR": kv.addr, "VAULT_TOKEN": token, "X": "vault:secret/app#k"})
    assert result.returncode == 77, result.stderr
    assert "is not valid" in result.stderr and token not in result.stderr


def test_a_500_shows_vaults_own_reason(kv: Any, postgres: Any) -> None:
    """A role the connection does not allow is a 500 from Vault whose body says why."""
    kv.configure_database(postgres, allowed_roles="other")
    kv.add_database_role("app")
    result = run_cli(["--exec", "--startup-timeout", "2s", "--", "true"],
                     {"VAULT_ADDR": kv.addr, "VAULT_TOKEN": kv.create_token(["app"], ttl=600),
                      "X": "vault:database/creds/app#username"}, timeout=60)
    assert result.returncode != 0
    assert '"app" is not an allowed role' in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_renewing_a_lease_whose_role_was_deleted(kv: Any, postgres: Any) -> None:
    """Vault cannot renew what the engine no longer has a role for (400): the lease cannot
    be kept, so the engine asks for a successor (which then names the missing role)."""
    kv.configure_database(postgres)
    kv.add_database_role("app", default_ttl=60, max_ttl=600)
    src = source_for(kv, kv.create_token(["app"], ttl=600))
    lease = src.fetch("database/creds/app").lease_id
    assert lease is not None
    kv.delete_database_role("app")
    with pytest.raises(LeaseGone) as info:
        src.renew_lease(lease, 60)
    assert "could not renew" in str(info.value) or "no longer knows" in str(info.value)
    src.close()


def test_token_from_a_role_that_forbids_renewal_is_not_renewed(kv: Any) -> None:
    """A token role with renewable=false (as operators give to short-lived jobs): Vault
    says so in lookup-self, and the entrypoint never asks to renew it."""
    kv.add_token_role("jobs", allowed_policies=["app"], renewable=False, orphan=True)
    token = kv.create_token(["app"], ttl=600, role="jobs")
    src = source_for(kv, token)
    assert src.fetch("secret/app").plain() == {"k": "finding-value-7"}
    assert src.keeper.current is not None and not src.keeper.current.renewable
    assert not src.keeper.current.created  # the user's token: never revoked by us
    src.close()
    assert kv.count("auth/token/renew-self") == 0 and kv.count("auth/token/revoke-self") == 0


def test_a_standby_redirect_is_followed_to_the_active_node(kv: Any) -> None:
    """A standby answers 307 with the active node's address (a fault of a cluster, which
    one dev server cannot be: the proxy plays the standby). The token lookup and the reads
    follow it, with the token, and the value comes from the active node."""
    standby = kv.proxy()
    standby.redirect_next(10**6, to=kv.addr)
    token = kv.create_token(["app"], ttl=600)
    result = run_cli(["--exec", "--", "sh", "-c", 'test "$X" = finding-value-7'],
                     {"VAULT_ADDR": standby.addr, "VAULT_TOKEN": token,
                      "X": "vault:secret/app#k"})
    assert result.returncode == 0, result.stderr
    assert [r.status for r in standby.requests] and \
        all(r.status == 307 for r in standby.requests)
    assert kv.count("secret/data/app") == 1
