"""A source written only from docs/contributing.md ("Adding a source"): it subclasses
``Source``, implements ``fetch`` and says how its values stay current with ``refresh``.
Registered under an existing scheme as the page says, it is resolved, kept fresh by the
engine and checked without a change anywhere else."""

from __future__ import annotations

import itertools
import logging
import time
from pathlib import Path
from typing import Any

import pytest

from entrypoint.config.model import load
from entrypoint.errors import SecretNotFound
from entrypoint.plan.keys import SourceKey
from entrypoint.plan.resolution import Runtime
from entrypoint.process import events
from entrypoint.rotation.engine import Engine
from entrypoint.sources.base import Fetched, Refresh, Source, to_secrets
from entrypoint.sources.registry import Sources
from tests.helpers.clock import Clock
from tests.helpers.engine_turns import run_until

LOG = logging.getLogger("entrypoint")
DOC = Path(__file__).resolve().parents[2] / "docs" / "contributing.md"
TTL = 60.0


class TicketSource(Source):
    """Hands out a new short-lived ticket at every read (``Refresh.TTL``) and a static
    greeting (``Refresh.NEVER``)."""

    name = "tickets"

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.reads: list[tuple[str, float]] = []

    def fetch(self, path: str, version: int | None = None) -> Fetched:
        started = self.clock()
        self.reads.append((path, started))
        if path == "greeting":
            return Fetched(data=to_secrets({"text": "hello"}), kind="greeting",
                           refresh=Refresh.NEVER, fetched_at=started)
        if path != "ticket":
            raise SecretNotFound(f"tickets:{path}: no such path",
                                 hint="expected 'ticket' or 'greeting'")
        return Fetched(data=to_secrets({"value": f"ticket-{len(self.reads)}"}), kind="ticket",
                       refresh=Refresh.TTL, ttl=TTL, fetched_at=started)

    def describe(self, path: str) -> str:
        return f"the ticket office, path {path}"


def rig(**settings: str) -> tuple[Clock, TicketSource, Engine, list[Any]]:
    variables = {"ENTRYPOINT_WAIT_MIN": "1s", "ENTRYPOINT_WAIT_MAX": "2s",
                 "ENTRYPOINT_POLL_INTERVAL": "10s", **settings}
    config = load({}, variables)
    clock = Clock()
    source = TicketSource(clock)
    environ = {"TICKET": "vault:ticket#value", "GREETING": "vault:greeting#text"}
    runtime = Runtime(config, environ, LOG, sources=Sources({"vault": lambda: source}, {}))
    posted: list[Any] = []
    engine = Engine(config, runtime, posted.append, LOG, render=lambda _: [], clock=clock,
                    rng=lambda: 0.5)
    engine._adopt(runtime.resolve())
    return clock, source, engine, posted


def test_a_ttl_value_is_replaced_before_it_ends_and_never_polled() -> None:
    clock, source, engine, posted = rig(ENTRYPOINT_REPLACE_FRACTION="0.5")
    start = clock.now
    assert sorted(p for p, _ in source.reads) == ["greeting", "ticket"]
    run_until(clock, engine, start + 25.0)
    # poll_interval is 10 s: a TTL value is not re-read by the poll, nor is NEVER.
    assert len(source.reads) == 2 and posted == []
    run_until(clock, engine, start + TTL)
    tickets = [t for p, t in source.reads if p == "ticket"]
    # Replaced once, at about half its ttl (plus the coalescing wait), before it ended.
    assert len(tickets) == 2 and start + 0.45 * TTL <= tickets[1] < start + TTL
    [restart] = posted
    assert isinstance(restart, events.Restart)
    assert restart.env["TICKET"] == "ticket-3" and restart.env["GREETING"] == "hello"
    assert [p for p, _ in source.reads].count("greeting") == 1


def test_the_replacement_schedules_the_next_one() -> None:
    clock, source, engine, posted = rig(ENTRYPOINT_REPLACE_FRACTION="0.5")
    run_until(clock, engine, clock.now + 3 * TTL)
    tickets = [t for p, t in source.reads if p == "ticket"]
    assert len(tickets) >= 4 and len(posted) == len(tickets) - 1
    assert all(later - earlier < TTL for earlier, later in itertools.pairwise(tickets))


def test_the_protocol_defaults_need_nothing_else() -> None:
    source = TicketSource(Clock(time.monotonic()))
    assert source.preflight() == [] and source.login_state() is None
    assert source.auth_status() is None and source.lookup_lease("x") is None
    assert list(source.watched_files("ticket", None)) == []
    with pytest.raises(SecretNotFound, match="expected 'ticket' or 'greeting'"):
        source.fetch("nope")
    assert SourceKey("vault", "ticket").ref == "vault:ticket"


def test_the_page_names_only_what_exists() -> None:
    """Every method the page tells a contributor to implement is on ``Source``."""
    text = DOC.read_text()
    for method in ("fetch", "describe", "renew_lease", "revoke_lease", "lookup_lease",
                   "watched_files", "start_watch", "login_state", "end_startup",
                   "preflight", "auth_status", "keep_on_close"):
        assert f"`{method}" in text and callable(getattr(Source, method))
    for refresh in Refresh:
        assert f"`{refresh.name}`" in text


@pytest.mark.parametrize("on_expiry", ["exit", "keep"])
def test_a_ttl_value_that_cannot_be_replaced_is_reported_when_it_ends(on_expiry: str) -> None:
    clock, source, engine, posted = rig(ENTRYPOINT_ON_EXPIRY=on_expiry)
    start = clock.now

    def refuse(path: str, version: int | None = None) -> Fetched:
        from entrypoint.errors import UnavailableError

        raise UnavailableError("the ticket office is closed")

    source.fetch = refuse  # type: ignore[method-assign]
    run_until(clock, engine, start + TTL - 0.5)
    assert posted == [] and not engine._exiting
    run_until(clock, engine, start + TTL + 1.0)
    if on_expiry == "exit":
        [fatal] = posted
        assert isinstance(fatal, events.Fatal)
        assert "value of vault:ticket (its ttl) expired" in str(fatal.error)
    else:
        assert posted == [] and SourceKey("vault", "ticket") in engine.dirty
