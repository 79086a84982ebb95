"""Token lifecycle against the Vault test server: renewal ahead of expiry, login again when
it cannot be renewed, 403 on an invalid token (once, then fail), token file re-read,
revoke on close only for a token we created. The clock is injected; the thread is tested
once with the real one."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from entrypoint.config.model import Config
from entrypoint.errors import AuthError
from entrypoint.secret import Secret
from entrypoint.sources.vault.auth import LoginResult, result_of
from entrypoint.sources.vault.client import VaultClient
from entrypoint.sources.vault.connection import Connection
from entrypoint.sources.vault.source import VaultSource
from entrypoint.sources.vault.token_keeper import RENEW_FRACTION, TokenKeeper
from tests.helpers.cli import wait_until
from tests.helpers.clock import Clock

LOG = logging.getLogger("entrypoint")


@dataclass
class CreateTokenLogin:
    """A login method for tests: auth/token/create with the root token (a token we make)."""

    root: str
    ttl: int
    max_ttl: int = 0
    name: str = "test"
    mount: str = "token"
    logins: int = 0

    def login(self, client: VaultClient) -> LoginResult:
        self.logins += 1
        body: dict[str, Any] = {"ttl": f"{self.ttl}s", "policies": ["root"], "no_parent": True}
        if self.max_ttl:
            body["explicit_max_ttl"] = f"{self.max_ttl}s"
        response = client.anonymous.post("/v1/auth/token/create", body,
                                         headers={"X-Vault-Token": self.root})
        return result_of(response, "test")

    def describe(self) -> str:
        return "test login"


def build(server: Any, method: Any, clock: Clock | None = None,
          revoke_on_exit: bool = True) -> VaultSource:
    client = VaultClient(Connection.from_environ({"VAULT_ADDR": server.addr}),
                         startup_timeout=3.0, log=LOG)
    keeper = TokenKeeper(client, method, log=LOG, revoke_on_exit=revoke_on_exit,
                         clock=clock or Clock(), rng=lambda: 0.0)
    keeper.start = lambda: None  # type: ignore[method-assign]  # ticks are driven by the test
    return VaultSource(client, method, log=LOG, revoke_on_exit=revoke_on_exit, keeper=keeper)


def valid(server: Any, token: str) -> bool:
    import hvac

    return bool(hvac.Client(url=server.addr, token=token).is_authenticated())


@pytest.fixture
def kv_server(vault_server: Any) -> Iterator[Any]:
    vault_server.write_kv("secret", "app", {"k": "v"})
    yield vault_server


@pytest.fixture
def kv_proxy(kv_server: Any) -> Any:
    """The same Vault behind the fault proxy, for the renewal faults it cannot give."""
    return kv_server.proxy()


def test_renewed_ahead_of_expiry(kv_server: Any) -> None:
    clock = Clock()
    method = CreateTokenLogin(kv_server.root_token, ttl=60)
    src = build(kv_server, method, clock)
    src.fetch("secret/app")
    keeper = src.keeper
    assert src.token_expires_at() == clock.now + 60
    assert keeper.next_at == pytest.approx(clock.now + 60 * RENEW_FRACTION)
    assert keeper.tick() == keeper.next_at and kv_server.count("auth/token/renew-self") == 0
    clock.now = keeper.next_at
    keeper.tick()
    assert kv_server.count("auth/token/renew-self") == 1
    assert method.logins == 1 and keeper.next_at > clock.now
    src.close()


def test_near_max_ttl_logs_in_again_and_reissues_nothing(kv_server: Any, database: Any) -> None:
    clock = Clock()
    method = CreateTokenLogin(kv_server.root_token, ttl=60, max_ttl=62)
    src = build(kv_server, method, clock)
    lease = src.fetch("database/creds/app").lease_id
    # Vault counts the max TTL on its own clock, in whole seconds: once 5 s have passed
    # there, a renewal can grant at most 57 s of the 60 asked -- capped.
    token = src.client.token
    wait_until(lambda: kv_server.api("POST", "auth/token/lookup", {"token": token})
               ["data"]["ttl"] <= 55, timeout=15, what="5 s of the token's life on Vault's clock")
    clock.now = src.keeper.next_at
    src.keeper.tick()  # renewal capped at the max TTL: no more room
    assert src.keeper.capped and kv_server.count("auth/token/renew-self") == 1
    clock.now = src.keeper.next_at
    src.keeper.tick()
    assert method.logins == 2 and not src.keeper.capped
    # A new token alone re-issues no secret.
    assert kv_server.count("database/creds/app") == 1
    assert lease in kv_server.leases()
    src.close()


def test_refused_renewal_logs_in_again(kv_proxy: Any) -> None:
    clock = Clock()
    method = CreateTokenLogin(kv_proxy.root_token, ttl=60)
    src = build(kv_proxy, method, clock)
    src.fetch("secret/app")
    kv_proxy.fail_next(1, status=400, message="lease is not renewable",
                        path_prefix="auth/token/renew-self")
    clock.now = src.keeper.next_at
    src.keeper.tick()
    assert method.logins == 2
    src.close()


def test_transient_renewal_failure_is_retried_not_relogged(kv_proxy: Any) -> None:
    clock = Clock()
    method = CreateTokenLogin(kv_proxy.root_token, ttl=60)
    src = build(kv_proxy, method, clock)
    src.fetch("secret/app")
    src.client.end_startup()
    kv_proxy.fail_next(1, status=503, path_prefix="auth/token/renew-self")
    clock.now = src.keeper.next_at
    src.keeper.tick()
    assert method.logins == 1 and src.keeper.failures == 1
    assert src.keeper.next_at < clock.now + 60  # retried before the token runs out
    clock.now = src.keeper.next_at
    src.keeper.tick()
    assert src.keeper.failures == 0 and kv_proxy.count("auth/token/renew-self") == 2
    src.close()


def test_invalid_token_logs_in_again_once(kv_server: Any) -> None:
    method = CreateTokenLogin(kv_server.root_token, ttl=600)
    src = build(kv_server, method)
    src.fetch("secret/app")
    kv_server.revoke_token(src.client.token)
    assert src.fetch("secret/app").plain() == {"k": "v"}
    assert method.logins == 2
    src.close()


def test_given_token_revoked_fails_with_auth_error(kv_server: Any) -> None:
    token = kv_server.create_token(["root"], ttl=600)
    src = VaultSource.from_config(Config(startup_timeout=2),
                                  {"VAULT_ADDR": kv_server.addr, "VAULT_TOKEN": token})
    src.fetch("secret/app")
    kv_server.revoke_token(token)
    with pytest.raises(AuthError) as info:
        src.fetch("secret/app")
    assert info.value.exit_code == 77 and "VAULT_TOKEN" in str(info.value)
    assert token not in str(info.value)
    src.close()


def test_token_file_is_read_again_and_never_revoked(kv_server: Any, tmp_path: Path) -> None:
    sink = tmp_path / "token"
    first = kv_server.create_token(["root"], ttl=600)
    sink.write_text(first + "\n")
    src = VaultSource.from_config(Config(startup_timeout=2, vault_token_file=sink),
                                  {"VAULT_ADDR": kv_server.addr})
    src.fetch("secret/app")
    second = kv_server.create_token(["root"], ttl=600)
    kv_server.revoke_token(first)
    sink.write_text(second)  # what Vault Agent does when it logs in again
    assert src.fetch("secret/app").plain() == {"k": "v"}
    src.close()
    assert valid(kv_server, second), "a token the user gave us is never revoked"


def test_close_revokes_only_a_token_we_created(kv_server: Any) -> None:
    src = build(kv_server, CreateTokenLogin(kv_server.root_token, ttl=600))
    src.fetch("secret/app")
    ours = src.client.token
    src.close()
    assert not valid(kv_server, ours)
    kept = build(kv_server, CreateTokenLogin(kv_server.root_token, ttl=600),
                 revoke_on_exit=False)
    kept.fetch("secret/app")
    token = kept.client.token
    kept.close()
    assert valid(kv_server, token)
    given = kv_server.create_token(["root"], ttl=600)
    src = VaultSource.from_config(Config(), {"VAULT_ADDR": kv_server.addr, "VAULT_TOKEN": given})
    src.fetch("secret/app")
    src.close()
    assert valid(kv_server, given)


def test_renewal_thread_with_the_real_clock(kv_server: Any) -> None:
    method = CreateTokenLogin(kv_server.root_token, ttl=3)
    src = VaultSource(
        client := VaultClient(Connection.from_environ({"VAULT_ADDR": kv_server.addr}),
                              startup_timeout=3.0, log=LOG), method, log=LOG,
        keeper=TokenKeeper(client, method, log=LOG))
    src.fetch("secret/app")
    wait_until(lambda: kv_server.count("auth/token/renew-self") >= 2, timeout=15,
               what="two renewals by the keeper thread")
    token = src.client.token
    assert valid(kv_server, token)
    src.close()
    assert src.keeper._thread is not None and not src.keeper._thread.is_alive()


def test_token_not_in_logs(kv_server: Any, caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    with caplog.at_level(logging.DEBUG):
        src = build(kv_server, CreateTokenLogin(kv_server.root_token, ttl=60), clock)
        src.fetch("secret/app")
        tokens = [src.client.token]
        kv_server.revoke_token(tokens[0])
        src.fetch("secret/app")
        tokens.append(src.client.token)
        clock.now = src.keeper.next_at
        src.keeper.tick()
        src.close()
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "logged in again" in text and "renewed" in text
    for token in tokens:
        assert token not in text
    assert Secret  # the keeper holds tokens as Secret: repr redacted
    assert tokens[0] not in repr(src.keeper.current)


@pytest.fixture
def database(vault_server: Any, postgres: Any) -> Any:
    vault_server.configure_database(postgres)
    vault_server.add_database_role("app", default_ttl=600, max_ttl=1200)
    return vault_server


def test_vault_down_while_running_renewal_retries_then_recovers(kv_proxy: Any) -> None:
    clock = Clock()
    method = CreateTokenLogin(kv_proxy.root_token, ttl=60)
    src = build(kv_proxy, method, clock)
    src.fetch("secret/app")
    src.client.end_startup()
    kv_proxy.stop()
    delays = []
    for _ in range(3):
        clock.now = src.keeper.next_at
        src.keeper.tick()
        delays.append(src.keeper.next_at - clock.now)
    assert src.keeper.failures == 3 and method.logins == 1
    assert all(0 < d <= 30 for d in delays)  # backoff, always before the token's expiry
    kv_proxy.start()
    clock.now = src.keeper.next_at
    src.keeper.tick()
    assert src.keeper.failures == 0 and method.logins == 1, "renewed, not logged in again"
    src.close()


def wrapped_token(server: Any) -> tuple[str, str]:
    """(wrap info JSON as a Vault Agent file sink with wrap_ttl writes it, the accessor of
    the token inside). The agent wraps the token it holds with sys/wrapping/wrap, so the
    unwrapped answer carries it as data.token, with no auth block."""
    import json

    import requests

    token = server.create_token(["root"], ttl=600)
    answer = requests.post(f"{server.addr}/v1/sys/wrapping/wrap",
                           headers={"X-Vault-Token": server.root_token,
                                    "X-Vault-Wrap-TTL": "300"},
                           json={"token": token}, timeout=10).json()
    return json.dumps(answer["wrap_info"]), server.token_accessor(token)


def test_wrapped_token_file_is_unwrapped_once(kv_server: Any, tmp_path: Path) -> None:
    sink = tmp_path / "token"
    text, accessor = wrapped_token(kv_server)
    sink.write_text(text)
    src = VaultSource.from_config(Config(startup_timeout=2, vault_token_file=sink),
                                  {"VAULT_ADDR": kv_server.addr})
    assert src.fetch("secret/app").plain() == {"k": "v"}
    assert kv_server.count("sys/wrapping/unwrap") == 1
    first = src.client.token
    assert kv_server.token_accessor(first) == accessor
    # Logging in again with the same file reuses what was unwrapped (single-use token).
    src.keeper.relogin(src.keeper.generation, "test")
    assert kv_server.count("sys/wrapping/unwrap") == 1 and src.client.token == first
    # The agent logs in again and writes a new wrapped token; the old one stops working.
    text, _ = wrapped_token(kv_server)
    sink.write_text(text)
    kv_server.revoke_token(first)
    assert src.fetch("secret/app").plain() == {"k": "v"}
    assert kv_server.count("sys/wrapping/unwrap") == 2 and src.client.token != first
    src.close()
    assert valid(kv_server, src.client.token), "the agent's token is not ours to revoke"


def test_spent_wrapped_token_is_a_clear_auth_error(kv_server: Any, tmp_path: Path) -> None:
    import json

    import requests

    sink = tmp_path / "token"
    text, _ = wrapped_token(kv_server)
    spent = requests.post(f"{kv_server.addr}/v1/sys/wrapping/unwrap", timeout=10,
                          headers={"X-Vault-Token": json.loads(text)["token"]})  # someone else
    assert spent.status_code == 200
    sink.write_text(text)
    src = VaultSource.from_config(Config(startup_timeout=2, vault_token_file=sink),
                                  {"VAULT_ADDR": kv_server.addr})
    with pytest.raises(AuthError) as info:
        src.fetch("secret/app")
    assert "cannot be unwrapped" in str(info.value) and "works once" in str(info.value)
    assert json.loads(text)["token"] not in str(info.value)
    src.close()
