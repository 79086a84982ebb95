"""Start-up against an unreachable, sealed, rate-limiting or failing Vault: capped
exponential backoff with full jitter up to startup_timeout, Retry-After honoured, then
UnavailableError (69) saying what was tried. Time is injected: the client's clock moves
by what it sleeps, so nothing here waits out a backoff."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import pytest

from entrypoint import backoff
from entrypoint.errors import UnavailableError
from entrypoint.secret import Secret
from entrypoint.sources.vault.auth.token import TokenLogin
from entrypoint.sources.vault.client import VaultClient
from entrypoint.sources.vault.connection import Connection
from entrypoint.sources.vault.source import VaultSource
from entrypoint.sources.vault.token_keeper import TokenKeeper

LOG = logging.getLogger("entrypoint")


class Time:
    """A clock that only moves when the client sleeps; ``on_sleep`` lets a test act then."""

    def __init__(self, on_sleep: Callable[[int], None] | None = None) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self.on_sleep = on_sleep

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if self.on_sleep is not None:
            self.on_sleep(len(self.sleeps))


def build(server: Any, t: Time, timeout: float = 30.0, rng: float = 0.5) -> VaultSource:
    client = VaultClient(Connection.from_environ({"VAULT_ADDR": server.addr}),
                         startup_timeout=timeout, log=LOG, clock=t.clock, sleep=t.sleep,
                         rng=lambda: rng)
    method = TokenLogin(env_token=Secret(server.root_token))
    keeper = TokenKeeper(client, method, log=LOG, clock=t.clock)
    return VaultSource(client, method, log=LOG, keeper=keeper)


@pytest.fixture
def kv(vault_server: Any) -> Any:
    """Real Vault behind the fault proxy: every test here needs a fault at start-up."""
    vault_server.write_kv("secret", "app", {"k": "v"})
    return vault_server.proxy()


@pytest.mark.parametrize("status", [500, 502, 503])
def test_5xx_is_retried_with_backoff(kv: Any, status: int,
                                     caplog: pytest.LogCaptureFixture) -> None:
    t = Time()
    src = build(kv, t)
    kv.fail_next(3, status=status)
    with caplog.at_level(logging.WARNING):
        assert src.fetch("secret/app").plain() == {"k": "v"}
    # Full jitter of a doubling bound: rng 0.5 of 0.5, 1, 2.
    assert t.sleeps == [backoff.retry_delay(a, backoff.RETRY_BASE, backoff.RETRY_CAP,
                                            lambda: 0.5) for a in (1, 2, 3)]
    retries = [r for r in caplog.records if "retry" in r.getMessage()]
    assert len(retries) == 3
    assert all(f"{d:.2f}s" in r.getMessage() for r, d in zip(retries, t.sleeps, strict=True))
    src.close()


def test_sealed_then_unsealed(kv: Any) -> None:
    t = Time(on_sleep=lambda n: kv.unseal() if n == 4 else None)
    src = build(kv, t)
    kv.seal()
    assert src.fetch("secret/app").plain() == {"k": "v"}
    assert len(t.sleeps) == 4
    src.close()


def test_sealed_until_the_timeout_is_unavailable(kv: Any) -> None:
    t = Time()
    src = build(kv, t, timeout=20.0)
    kv.seal()
    with pytest.raises(UnavailableError) as info:
        src.fetch("secret/app")
    error = str(info.value)
    assert info.value.exit_code == 69
    assert "sealed" in error and kv.addr in error and "startup_timeout (20s)" in error
    assert "attempt(s)" in error
    assert t.now <= 20.0 and sum(t.sleeps) == pytest.approx(t.now)
    assert max(t.sleeps) <= backoff.RETRY_CAP
    src.close()


@pytest.mark.parametrize("http_date", [False, True])
def test_429_retry_after_is_honoured(kv: Any, http_date: bool) -> None:
    t = Time()
    src = build(kv, t, rng=0.0)  # backoff alone would not wait at all
    src.fetch("secret/app")
    kv.rate_limit_next(1, retry_after=3.0, http_date=http_date)
    src.fetch("secret/app")
    assert len(t.sleeps) == 1
    # An HTTP date has whole seconds: up to 3 seconds from now, less the second cut off
    # and the time the answer took to arrive through the proxy (backoff alone: 0).
    assert 1.5 <= t.sleeps[0] <= 3.0 if http_date else t.sleeps[0] == 3.0
    src.close()


def test_retry_after_past_the_deadline_gives_up_at_once(kv: Any) -> None:
    t = Time()
    src = build(kv, t, timeout=5.0)
    src.fetch("secret/app")
    kv.rate_limit_next(1, retry_after=60.0, http_date=False)
    with pytest.raises(UnavailableError, match="asked to retry after 60s"):
        src.fetch("secret/app")
    assert t.sleeps == []
    src.close()


def test_stopped_then_started_on_the_same_port(kv: Any) -> None:
    t = Time(on_sleep=lambda n: kv.start() if n == 3 else None)
    src = build(kv, t)
    kv.stop()
    assert src.fetch("secret/app").plain() == {"k": "v"}
    assert len(t.sleeps) == 3
    src.close()


def test_after_startup_a_failure_is_reported_at_once(kv: Any) -> None:
    t = Time()
    src = build(kv, t, timeout=10.0)
    src.fetch("secret/app")
    t.now = 11.0  # the start-up window is over: the rotation engine has its own schedule
    kv.fail_next(1, status=503)
    with pytest.raises(UnavailableError) as info:
        src.fetch("secret/app")
    assert t.sleeps == [] and "startup_timeout" not in str(info.value)
    src.close()


def test_unreachable_with_the_real_clock_ends_in_time() -> None:
    """Nothing listens: the real loop gives up within the timeout (plus one request)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = VaultClient(Connection.from_environ({"VAULT_ADDR": f"http://127.0.0.1:{port}"}),
                         startup_timeout=1.0, log=LOG)
    method = TokenLogin(env_token=Secret("not-a-real-token-000"))
    src = VaultSource(client, method, log=LOG)
    started = time.monotonic()
    with pytest.raises(UnavailableError, match="unreachable"):
        src.fetch("secret/app")
    assert time.monotonic() - started < 3.0
    src.close()
