"""The Consul stand-in, driven by py-consul as the entrypoint's Consul source drives it."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import consul
import pytest
import requests
from consul.exceptions import BadRequest

from tests.consulserver.server import ConsulServer, parse_go_duration
from tests.services.ports import wait_until


@pytest.fixture
def client(consul_server: ConsulServer) -> Iterator[consul.Consul]:
    with consul.Consul(host=consul_server.host, port=consul_server.port) as c:
        yield c


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=2) as executor:
        yield executor


def test_a_missing_key_is_none_with_an_index(
    consul_server: ConsulServer, client: consul.Consul
) -> None:
    index, value = client.kv.get("app/missing")
    assert value is None and int(index) >= 1
    assert consul_server.requests[-1].status == 404


def test_put_then_get_round_trips_value_and_flags(client: consul.Consul) -> None:
    assert client.kv.put("app/db/password", "s3cr\u00e9t", flags=42) is True
    index, entry = client.kv.get("app/db/password")
    assert entry["Value"] == "s3cr\u00e9t".encode()
    assert entry["Flags"] == 42 and entry["Key"] == "app/db/password"
    assert int(index) == entry["ModifyIndex"] == entry["CreateIndex"]


def test_the_json_is_consuls_shape(consul_server: ConsulServer) -> None:
    consul_server.put("cfg/a", b"\x00\xffbin")
    consul_server.put("cfg/empty", b"")
    response = requests.get(f"{consul_server.addr}/v1/kv/cfg/?recurse", timeout=5)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert [list(item) for item in body] == [
        ["LockIndex", "Key", "Flags", "Value", "CreateIndex", "ModifyIndex"]
    ] * 2
    assert base64.b64decode(body[0]["Value"]) == b"\x00\xffbin"
    assert body[1]["Value"] is None  # Consul sends null for an empty value
    assert int(response.headers["X-Consul-Index"]) == body[1]["ModifyIndex"]


def test_raw_gives_the_bare_value_and_404_when_missing(consul_server: ConsulServer) -> None:
    consul_server.put("raw/key", "plain text")
    response = requests.get(f"{consul_server.addr}/v1/kv/raw/key?raw", timeout=5)
    assert (response.status_code, response.content) == (200, b"plain text")
    missing = requests.get(f"{consul_server.addr}/v1/kv/raw/nope?raw", timeout=5)
    assert (missing.status_code, missing.content) == (404, b"")
    assert "X-Consul-Index" in missing.headers


def test_recurse_and_keys_list_a_prefix(consul_server: ConsulServer, client: consul.Consul) -> None:
    for key in ("svc/b", "svc/a/x", "svc/a/y", "svcother"):
        consul_server.put(key, key.upper())
    _, entries = client.kv.get("svc/", recurse=True)
    assert [(e["Key"], e["Value"]) for e in entries] == [
        ("svc/a/x", b"SVC/A/X"),
        ("svc/a/y", b"SVC/A/Y"),
        ("svc/b", b"SVC/B"),
    ]
    assert client.kv.get("svc/", keys=True)[1] == ["svc/a/x", "svc/a/y", "svc/b"]
    assert client.kv.get("svc/", keys=True, separator="/")[1] == ["svc/a/", "svc/b"]
    assert client.kv.get("none/", recurse=True)[1] is None


def test_check_and_set_put_and_delete(client: consul.Consul) -> None:
    assert client.kv.put("lock", "one", cas=0) is True
    assert client.kv.put("lock", "two", cas=0) is False
    index = client.kv.get("lock")[1]["ModifyIndex"]
    assert client.kv.put("lock", "three", cas=index + 1) is False
    assert client.kv.put("lock", "three", cas=index) is True
    assert client.kv.delete("lock", cas=index) is False
    assert client.kv.delete("lock", cas=client.kv.get("lock")[1]["ModifyIndex"]) is True
    assert client.kv.get("lock")[1] is None


def test_delete_recurse_removes_the_prefix_only(client: consul.Consul) -> None:
    for key in ("d/1", "d/2", "e/1"):
        client.kv.put(key, "v")
    assert client.kv.delete("d/", recurse=True) is True
    assert client.kv.get("d/", recurse=True)[1] is None
    assert client.kv.get("e/1")[1]["Value"] == b"v"


def test_a_blocking_query_wakes_on_a_change(
    consul_server: ConsulServer, client: consul.Consul, pool: ThreadPoolExecutor
) -> None:
    consul_server.put("app/flag", "off")
    index, _ = client.kv.get("app/flag")
    started = time.monotonic()
    waiting = pool.submit(client.kv.get, "app/flag", index=index, wait="20s")
    consul_server.wait_for_blocked_queries(1)
    # A write to another key wakes the query, which sees its answer unchanged and waits on.
    reparked = consul_server.store.reparked
    consul_server.put("app/other", "x")
    wait_until(lambda: consul_server.store.reparked > reparked, 10, "the query to wait again")
    assert not waiting.done()
    new_index = consul_server.put("app/flag", "on")
    got_index, entry = waiting.result(timeout=10)
    assert (int(got_index), entry["Value"]) == (new_index, b"on")
    assert time.monotonic() - started < 10


def test_a_blocking_query_times_out_with_the_same_index(
    consul_server: ConsulServer, client: consul.Consul
) -> None:
    consul_server.put("app/quiet", "same")
    index, _ = client.kv.get("app/quiet")
    started = time.monotonic()
    again, entry = client.kv.get("app/quiet", index=index, wait="300ms")
    elapsed = time.monotonic() - started
    assert (again, entry["Value"]) == (index, b"same")
    assert 0.3 <= elapsed < 5


def test_a_blocking_query_on_a_missing_key_wakes_when_it_is_created(
    consul_server: ConsulServer, client: consul.Consul, pool: ThreadPoolExecutor
) -> None:
    index, value = client.kv.get("later")
    assert value is None
    waiting = pool.submit(client.kv.get, "later", index=index, wait="20s")
    consul_server.wait_for_blocked_queries(1)
    consul_server.put("later", "here")
    assert waiting.result(timeout=10)[1]["Value"] == b"here"


def test_a_blocking_recurse_wakes_on_a_delete_under_the_prefix(
    consul_server: ConsulServer, client: consul.Consul, pool: ThreadPoolExecutor
) -> None:
    consul_server.put("tree/a", "1")
    consul_server.put("tree/b", "2")
    index, _ = client.kv.get("tree/", recurse=True)
    waiting = pool.submit(client.kv.get, "tree/", recurse=True, index=index, wait="20s")
    consul_server.wait_for_blocked_queries(1)
    consul_server.delete("tree/a")
    new_index, entries = waiting.result(timeout=10)
    assert int(new_index) > int(index)
    assert [e["Key"] for e in entries] == ["tree/b"]


def test_the_token_is_required_when_asked_for(
    consul_server: ConsulServer, client: consul.Consul
) -> None:
    consul_server.put("secure/key", "v")
    consul_server.require_token("root-token")
    with pytest.raises(consul.ACLPermissionDenied, match="Permission denied"):
        client.kv.get("secure/key")
    with pytest.raises(consul.ACLPermissionDenied, match="ACL not found"):
        client.kv.get("secure/key", token="wrong")
    assert client.kv.get("secure/key", token="root-token")[1]["Value"] == b"v"
    bearer = requests.get(
        f"{consul_server.addr}/v1/kv/secure/key?raw",
        headers={"Authorization": "Bearer root-token"},
        timeout=5,
    )
    assert bearer.content == b"v"
    assert [r.token for r in consul_server.requests[-3:]] == ["wrong", "root-token", "root-token"]


def test_the_client_finds_it_through_the_environment(
    consul_server: ConsulServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    consul_server.require_token("env-token")
    consul_server.put("from/env", "ok")
    for name, value in consul_server.env().items():
        monkeypatch.setenv(name, value)
    with consul.Consul() as c:
        assert c.kv.get("from/env")[1]["Value"] == b"ok"


def test_injected_failures_then_recovery(
    consul_server: ConsulServer, client: consul.Consul
) -> None:
    consul_server.put("k", "v")
    consul_server.fail_next(2)
    for _ in range(2):
        with pytest.raises(consul.ConsulException, match="500"):
            client.kv.get("k")
    assert client.kv.get("k")[1]["Value"] == b"v"
    assert [r.status for r in consul_server.requests] == [500, 500, 200]


def test_a_delay_holds_each_answer(consul_server: ConsulServer, client: consul.Consul) -> None:
    consul_server.set_delay(0.25)
    started = time.monotonic()
    client.kv.get("k")
    assert time.monotonic() - started >= 0.25
    consul_server.set_delay(0)
    request = consul_server.requests[-1]
    assert request.finished - request.started >= 0.25


def test_stop_refuses_connections_and_start_comes_back_on_the_same_port(
    consul_server: ConsulServer, client: consul.Consul
) -> None:
    consul_server.put("kept", "yes")
    port = consul_server.port
    consul_server.stop()
    with pytest.raises(requests.ConnectionError):
        client.kv.get("kept")
    consul_server.start()
    assert consul_server.port == port
    assert client.kv.get("kept")[1]["Value"] == b"yes"


def test_stop_drops_a_parked_blocking_query(
    consul_server: ConsulServer, client: consul.Consul, pool: ThreadPoolExecutor
) -> None:
    index, _ = client.kv.get("parked")
    waiting = pool.submit(client.kv.get, "parked", index=index, wait="30s")
    consul_server.wait_for_blocked_queries(1)
    started = time.monotonic()
    consul_server.stop()
    with pytest.raises(requests.ConnectionError):
        waiting.result(timeout=10)
    assert time.monotonic() - started < 5


def test_a_restart_without_data_sends_the_index_backwards(
    consul_server: ConsulServer, client: consul.Consul
) -> None:
    for n in range(5):
        consul_server.put("gone", str(n))
    before, _ = client.kv.get("gone")
    consul_server.restart(keep_data=False)
    after, value = client.kv.get("gone")
    assert value is None and int(after) < int(before)


def test_bad_requests_get_consuls_errors(
    consul_server: ConsulServer, client: consul.Consul
) -> None:
    with pytest.raises(BadRequest):
        client.kv.get("k", index=5, wait="soon")
    too_big = requests.put(
        f"{consul_server.addr}/v1/kv/big", data=b"x" * (512 * 1024 + 1), timeout=5
    )
    assert too_big.status_code == 413
    assert requests.put(f"{consul_server.addr}/v1/kv/", data=b"v", timeout=5).status_code == 400
    leader = requests.get(f"{consul_server.addr}/v1/status/leader", timeout=5)
    assert json.loads(leader.content) == "127.0.0.1:8300"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("5s", 5.0), ("250ms", 0.25), ("1m30s", 90.0), ("2h", 7200.0), ("0", 0.0), ("1.5s", 1.5)],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["5", "s", "5x", "5s garbage", "-1s"])
def test_bad_go_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_go_duration(text)
