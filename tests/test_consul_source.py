"""The Consul source against the Consul KV stand-in: reads, blocking watches, faults, CLI."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
from collections.abc import Iterable
from pathlib import Path

import pytest

from entrypoint.errors import ConfigError, PermissionDenied, SecretNotFound, UnavailableError
from entrypoint.secret import Secret
from entrypoint.sources.consul import ConsulSource, settings_from_environment
from tests.consulserver.server import ConsulServer
from tests.helpers.cli import clean_env, run_cli, wait_until

# The stand-in's fixture; tests/conftest.py does not list this plugin yet.

TOKEN = "acl-token-Vv83-secret"
VALUE = "value-Gg19-consul-secret"

DUMP_ENV = "import json, os, sys; json.dump(dict(os.environ), open(sys.argv[1], 'w'))"


def source_for(server: ConsulServer, **extra: str) -> ConsulSource:
    return ConsulSource.from_environment({**server.env(), **extra})


# -- reading -------------------------------------------------------------------------------

def test_fetch_returns_the_value_and_its_modify_index(consul_server: ConsulServer) -> None:
    index = consul_server.put("config/app/feature_x", VALUE)
    source = source_for(consul_server)
    fetched = source.fetch("config/app/feature_x")
    assert fetched.kind == "consul"
    assert fetched.data == {"": Secret(VALUE)}
    assert fetched.version == index
    assert source.fetch("/config/app/feature_x/").data[""].reveal() == VALUE
    source.close()


def test_missing_key_names_key_and_address(consul_server: ConsulServer) -> None:
    source = source_for(consul_server)
    with pytest.raises(SecretNotFound) as caught:
        source.fetch("config/app/nothing")
    assert str(caught.value) == (f"consul key config/app/nothing not found at "
                                 f"{consul_server.addr}")
    assert caught.value.exit_code == 78


def test_empty_and_binary_values(consul_server: ConsulServer) -> None:
    """A key with no body reads as ""; bytes that are not UTF-8 are a clear config error."""
    consul_server.put("empty", b"")
    consul_server.put("binary", b"\xff\xfe-bytes")
    source = source_for(consul_server)
    assert source.fetch("empty").data[""].reveal() == ""
    with pytest.raises(ConfigError, match=r"consul key binary at .* does not hold UTF-8 text"):
        source.fetch("binary")


def test_token_comes_from_the_given_environment(consul_server: ConsulServer,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """CONSUL_HTTP_TOKEN of the environ passed in wins over os.environ (py-consul reads that)."""
    consul_server.require_token(TOKEN)
    consul_server.put("k", VALUE)
    monkeypatch.setenv("CONSUL_HTTP_TOKEN", "wrong-token-from-os-environ")
    source = source_for(consul_server, CONSUL_HTTP_TOKEN=TOKEN)
    assert source.fetch("k").data[""].reveal() == VALUE
    assert consul_server.requests[-1].token == TOKEN
    assert TOKEN not in repr(source.settings)


def test_token_file(consul_server: ConsulServer, tmp_path: Path) -> None:
    consul_server.require_token(TOKEN)
    consul_server.put("k", VALUE)
    (tmp_path / "token").write_text(TOKEN + "\n")
    source = source_for(consul_server, CONSUL_HTTP_TOKEN_FILE=str(tmp_path / "token"))
    assert source.fetch("k").data[""].reveal() == VALUE


def test_refused_token_is_permission_denied_without_the_token(
        consul_server: ConsulServer) -> None:
    consul_server.require_token(TOKEN)
    consul_server.put("k", VALUE)
    source = source_for(consul_server, CONSUL_HTTP_TOKEN="bad-token-Ll02-value")
    with pytest.raises(PermissionDenied) as caught:
        source.fetch("k")
    assert caught.value.exit_code == 77
    assert "refused to read key k" in str(caught.value)
    assert "bad-token-Ll02-value" not in str(caught.value)


def test_server_errors_and_outages_are_unavailable(consul_server: ConsulServer) -> None:
    """A 500 and a dead agent: 69, naming the address, never quoting the answer's body."""
    consul_server.put("k", VALUE)
    source = source_for(consul_server)
    consul_server.fail_next(1, 500)
    with pytest.raises(UnavailableError) as caught:
        source.fetch("k")
    assert str(caught.value) == f"consul at {consul_server.addr} failed to read key k: status 500"
    consul_server.stop()
    with pytest.raises(UnavailableError, match="cannot be reached to read key k"):
        source.fetch("k")
    consul_server.start()
    assert source.fetch("k").data[""].reveal() == VALUE


# -- watching ------------------------------------------------------------------------------

def test_watch_blocks_until_the_key_changes(consul_server: ConsulServer) -> None:
    consul_server.put("feature", "off")
    source = source_for(consul_server)
    index, value = source.watch("feature", 0, 5)  # index 0: answer at once
    assert value == Secret("off")
    result: list[tuple[int, Secret | None]] = []
    watcher = threading.Thread(target=lambda: result.append(source.watch("feature", index, 30)))
    watcher.start()
    consul_server.wait_for_blocked_queries(1)
    assert not result
    new = consul_server.put("feature", "on")
    watcher.join(10)
    assert result == [(new, Secret("on"))]
    assert new > index
    source.close()


def test_watch_returns_the_same_index_when_the_wait_ends(consul_server: ConsulServer) -> None:
    index = consul_server.put("feature", "off")
    source = source_for(consul_server)
    assert source.watch("feature", index, 0.2) == (index, Secret("off"))
    wait = [r for r in consul_server.requests if "index" in r.query][-1]
    assert wait.query["wait"] == "200ms"
    assert wait.finished - wait.started >= 0.19


def test_watch_sees_a_deleted_key_as_none(consul_server: ConsulServer) -> None:
    index = consul_server.put("feature", "off")
    source = source_for(consul_server)
    result: list[tuple[int, Secret | None]] = []
    watcher = threading.Thread(target=lambda: result.append(source.watch("feature", index, 30)))
    watcher.start()
    consul_server.wait_for_blocked_queries(1)
    consul_server.delete("feature")
    watcher.join(10)
    assert result and result[0][1] is None and result[0][0] > index


def test_watch_resets_an_index_that_went_backwards(consul_server: ConsulServer) -> None:
    """An agent that lost its state answers a lower index: reset to 0, then start over."""
    for n in range(5):
        consul_server.put("feature", f"v{n}")
    source = source_for(consul_server)
    index, _ = source.watch("feature", 0, 1)
    consul_server.restart(keep_data=False)
    consul_server.put("feature", "after-restart")
    assert source.watch("feature", index, 0.2)[0] == 0
    new_index = 0
    assert source.watch("feature", new_index, 1) == (consul_server.index, Secret("after-restart"))


def test_watch_survives_a_restart_as_an_error_then_recovers(
        consul_server: ConsulServer) -> None:
    """A parked query dropped by a dying agent is UnavailableError; the next call works."""
    index = consul_server.put("feature", "off")
    source = source_for(consul_server)
    errors: list[BaseException] = []

    def watch() -> None:
        try:
            source.watch("feature", index, 30)
        except UnavailableError as exc:
            errors.append(exc)

    watcher = threading.Thread(target=watch)
    watcher.start()
    consul_server.wait_for_blocked_queries(1)
    consul_server.restart()
    watcher.join(10)
    assert len(errors) == 1
    consul_server.put("feature", "on")
    assert source.watch("feature", index, 5)[1] == Secret("on")


# -- settings ------------------------------------------------------------------------------

@pytest.mark.parametrize(("environ", "addr"), [
    ({}, "http://127.0.0.1:8500"),
    ({"CONSUL_HTTP_ADDR": "consul.internal:8500"}, "http://consul.internal:8500"),
    ({"CONSUL_HTTP_ADDR": "consul.internal"}, "http://consul.internal:8500"),
    ({"CONSUL_HTTP_ADDR": "https://consul.internal"}, "https://consul.internal:8501"),
    ({"CONSUL_HTTP_ADDR": "consul:9000", "CONSUL_HTTP_SSL": "true"}, "https://consul:9000"),
])
def test_address_forms(environ: dict[str, str], addr: str) -> None:
    assert settings_from_environment(environ).addr == addr


def test_tls_settings() -> None:
    settings = settings_from_environment({
        "CONSUL_HTTP_ADDR": "https://c:8501", "CONSUL_CACERT": "/ca.pem",
        "CONSUL_CLIENT_CERT": "/c.pem", "CONSUL_CLIENT_KEY": "/k.pem"})
    assert (settings.verify, settings.cert) == ("/ca.pem", ("/c.pem", "/k.pem"))
    insecure = settings_from_environment({"CONSUL_HTTP_SSL_VERIFY": "false"})
    assert insecure.verify is False


@pytest.mark.parametrize("bad", ["unix:///var/run/consul.sock", "ftp://c:1", "c:notaport",
                                 "http://c:8500/v1"])
def test_bad_address_is_a_config_error(bad: str) -> None:
    with pytest.raises(ConfigError, match="CONSUL_HTTP_ADDR"):
        settings_from_environment({"CONSUL_HTTP_ADDR": bad})


# -- through the CLI -----------------------------------------------------------------------

def test_consul_reference_and_template_reach_the_app(consul_server: ConsulServer,
                                                     tmp_path: Path) -> None:
    """--exec: consul: in the environment and consul() in a template; the token is stripped."""
    consul_server.require_token(TOKEN)
    consul_server.put("config/app/feature_x", VALUE)
    consul_server.put("config/app/limits", json.dumps({"rps": 50}))
    (tmp_path / "t.j2").write_text("feature={{ consul('config/app/feature_x') }}\n")
    dump = tmp_path / "env.json"
    proc = run_cli(["--exec", "--template", f"{tmp_path / 't.j2'}:{tmp_path / 'out.conf'}",
                    "--", sys.executable, "-c", DUMP_ENV, str(dump)],
                   {**consul_server.env(), "FEATURE_X": "consul:config/app/feature_x",
                    "LIMITS": "consul:config/app/limits"})
    assert proc.returncode == 0, proc.stderr
    env = json.loads(dump.read_text())
    assert env["FEATURE_X"] == VALUE
    assert json.loads(env["LIMITS"]) == {"rps": 50}
    assert "CONSUL_HTTP_TOKEN" not in env
    assert (tmp_path / "out.conf").read_text() == f"feature={VALUE}\n"
    # One read per key per generation, the template's included.
    reads = [r.path for r in consul_server.requests if r.method == "GET"]
    assert sorted(reads) == ["/v1/kv/config/app/feature_x", "/v1/kv/config/app/limits"]
    assert VALUE not in proc.stderr and TOKEN not in proc.stderr


def test_missing_consul_key_through_the_cli(consul_server: ConsulServer) -> None:
    proc = run_cli(["render"], {**consul_server.env(), "X": "consul:config/none"})
    assert proc.returncode == 78
    assert f"consul key config/none not found at {consul_server.addr}" in proc.stderr


def test_unreachable_agent_through_the_cli(consul_server: ConsulServer) -> None:
    env = {**consul_server.env(), "X": "consul:k"}
    consul_server.stop()
    proc = run_cli(["render", "--startup-timeout", "0"], env)
    assert proc.returncode == 69, proc.stderr
    assert f"consul at {consul_server.addr} cannot be reached" in proc.stderr


LAZY = """
import sys
from entrypoint.config import Config
from entrypoint.runtime import Runtime
from entrypoint import logs
environ = dict(arg.split("=", 1) for arg in sys.argv[1:])
runtime = Runtime(Config(), environ, logs.setup())
runtime.resolve()
print('consul' in sys.modules, 'requests' in sys.modules)
"""


def test_py_consul_is_imported_only_when_a_consul_reference_is_used(
        consul_server: ConsulServer) -> None:
    consul_server.put("k", "v")
    addr = f"CONSUL_HTTP_ADDR={consul_server.addr}"
    without = subprocess.run([sys.executable, "-c", LAZY, addr, "PLAIN=x"], env=clean_env(),
                             capture_output=True, text=True, check=True)
    assert without.stdout.split() == ["False", "False"]
    with_ref = subprocess.run([sys.executable, "-c", LAZY, addr, "X=consul:k"],
                              env=clean_env(), capture_output=True, text=True, check=True)
    assert with_ref.stdout.split()[0] == "True"


def test_a_watch_loop_sees_each_change_once(consul_server: ConsulServer) -> None:
    """A watcher loop as the rotation engine would run it sees each change exactly once."""
    index = consul_server.put("feature", "a")
    source = source_for(consul_server)
    seen: list[str] = []
    stop = threading.Event()

    def loop() -> None:
        nonlocal index
        last: Secret | None = Secret("a")
        while not stop.is_set():
            index, value = source.watch("feature", index, 0.5)
            if value != last:
                seen.append(value.reveal() if value else "<gone>")
                last = value

    watcher = threading.Thread(target=loop, daemon=True)
    watcher.start()
    for text in ("b", "c"):
        consul_server.wait_for_blocked_queries(1)
        consul_server.put("feature", text)
        wait_until(lambda text=text: seen and seen[-1] == text, what=f"watch to see {text}")
    stop.set()
    watcher.join(5)
    assert seen == ["b", "c"]


# -- the engine's watcher ------------------------------------------------------------------

class Notes:
    def __init__(self) -> None:
        self.calls: list[tuple[str, list[tuple[str, str, int | None]], bool]] = []
        self.lock = threading.Lock()

    def __call__(self, reason: str, keys: Iterable[tuple[str, str, int | None]],
                 rerender: bool) -> None:
        with self.lock:
            self.calls.append((reason, list(keys), rerender))


def test_consul_watch_notifies_each_change_and_deletion(consul_server: ConsulServer) -> None:
    """ConsulWatch: a put and a delete each reach notify once, with the key, no value."""
    from entrypoint.rotation.consul_watch import ConsulWatch

    consul_server.put("config/app/feature_x", "off")
    source = source_for(consul_server)
    key = ("consul", "config/app/feature_x", None)
    notes = Notes()
    watch = ConsulWatch(source, notes, logging.getLogger("test-consul-watch"), wait=5)
    watch.add_key(key, source.fetch("config/app/feature_x"))
    watch.start()
    consul_server.wait_for_blocked_queries(1)
    consul_server.put("config/app/feature_x", "off")  # same value: Consul wakes, no change
    consul_server.wait_for_blocked_queries(1)
    consul_server.put("config/app/feature_x", VALUE)
    wait_until(lambda: notes.calls, what="notify after a put")
    consul_server.wait_for_blocked_queries(1)
    consul_server.delete("config/app/feature_x")
    wait_until(lambda: len(notes.calls) == 2, what="notify after a delete")
    assert notes.calls == [("consul:config/app/feature_x changed", [key], False),
                           ("consul:config/app/feature_x was deleted", [key], False)]
    watch.stop()


def test_consul_watch_backs_off_and_recovers(consul_server: ConsulServer,
                                             caplog: pytest.LogCaptureFixture) -> None:
    """An agent outage is logged with its retry delay; after it the change still arrives."""
    from entrypoint.rotation.consul_watch import ConsulWatch

    consul_server.put("k", "one")
    source = source_for(consul_server)
    key = ("consul", "k", None)
    notes = Notes()
    log = logging.getLogger("test-consul-watch-outage")
    watch = ConsulWatch(source, notes, log, wait=5, rng=lambda: 0.01)
    watch.add_key(key, source.fetch("k"))
    watch.start()
    consul_server.wait_for_blocked_queries(1)
    with caplog.at_level(logging.INFO, logger=log.name):
        consul_server.stop()
        wait_until(lambda: "watching consul:k failed" in caplog.text, what="a failure logged")
        consul_server.start()
        consul_server.put("k", "two")
        wait_until(lambda: notes.calls, what="the change after the outage")
        wait_until(lambda: "recovered: watching consul:k" in caplog.text, what="recovery")
    assert notes.calls == [("consul:k changed", [key], False)]
    assert watch.watching == [key]
    watch.stop()
