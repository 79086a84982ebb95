"""The Consul source against a real Consul agent: reads, ACL tokens, blocking watches,
outages, the CLI. A 500 comes from the fault proxy in front of the agent (a real agent
gives one only when it has lost its servers); everything else is the agent's own."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

import pytest

from entrypoint.errors import ConfigError, PermissionDenied, SecretNotFound, UnavailableError
from entrypoint.secret import Secret
from entrypoint.sources.consul.source import ConsulSource, settings_from_environment
from tests.helpers.cli import clean_env, run_cli, wait_until
from tests.realservers.consul_agent import ConsulAgent
from tests.realservers.consul_proxy import ConsulFaultProxy
from tests.services.ports import free_port

VALUE = "value-Gg19-consul-secret"

DUMP_ENV = "import json, os, sys; json.dump(dict(os.environ), open(sys.argv[1], 'w'))"


def source_for(agent: ConsulAgent | ConsulFaultProxy, token: str | None = None,
               **extra: str) -> ConsulSource:
    return ConsulSource.from_environment({**agent.env(token), **extra})


# -- reading -------------------------------------------------------------------------------

def test_fetch_returns_the_value_and_its_modify_index(consul_agent: ConsulAgent) -> None:
    index = consul_agent.put("config/app/feature_x", VALUE)
    source = source_for(consul_agent)
    fetched = source.fetch("config/app/feature_x")
    assert fetched.kind == "consul"
    assert fetched.data == {"": Secret(VALUE)}
    assert fetched.version == index
    assert source.fetch("/config/app/feature_x/").data[""].reveal() == VALUE
    source.close()


def test_missing_key_names_key_and_address(consul_agent: ConsulAgent) -> None:
    source = source_for(consul_agent)
    with pytest.raises(SecretNotFound) as caught:
        source.fetch("config/app/nothing")
    assert str(caught.value) == (f"consul key config/app/nothing not found at "
                                 f"{consul_agent.addr}")
    assert caught.value.exit_code == 78


def test_empty_and_binary_values(consul_agent: ConsulAgent) -> None:
    """A key with no body reads as ""; bytes that are not UTF-8 are a clear config error."""
    consul_agent.put("empty", b"")
    consul_agent.put("binary", b"\xff\xfe-bytes")
    source = source_for(consul_agent)
    assert source.fetch("empty").data[""].reveal() == ""
    with pytest.raises(ConfigError, match=r"consul key binary at .* does not hold UTF-8 text"):
        source.fetch("binary")


def test_a_key_the_agent_would_read_as_another_is_refused(consul_agent: ConsulAgent) -> None:
    """Consul's HTTP router cleans the path: odd/a//b, odd/./a/b and odd/../b would read the
    keys odd/a/b and b. Such a reference is a config error, and nothing is read."""
    consul_agent.put("odd/a/b", VALUE)
    consul_agent.put("b", VALUE)
    source = source_for(consul_agent)
    for key in ("odd/a//b", "odd/./a/b", "odd/../b"):
        with pytest.raises(ConfigError, match=f"consul key {re.escape(key)}: an empty, '.' or "
                                              r"'..' part cannot be read"):
            source.fetch(key)
    assert not [r for r in consul_agent.requests() if r.path in ("/v1/kv/odd/a/b", "/v1/kv/b")]


def test_token_comes_from_the_given_environment(consul_acl_agent: ConsulAgent,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """CONSUL_HTTP_TOKEN of the environ passed in wins over os.environ (py-consul reads that):
    with default_policy deny, the read works only with the token we were given."""
    token = consul_acl_agent.create_token()
    consul_acl_agent.put("k", VALUE)
    monkeypatch.setenv("CONSUL_HTTP_TOKEN", str(uuid.uuid4()))  # a token Consul never made
    source = source_for(consul_acl_agent, token)
    assert source.fetch("k").data[""].reveal() == VALUE
    assert token not in repr(source.settings)


def test_token_file(consul_acl_agent: ConsulAgent, tmp_path: Path) -> None:
    token = consul_acl_agent.create_token()
    consul_acl_agent.put("k", VALUE)
    (tmp_path / "token").write_text(token + "\n")
    source = source_for(consul_acl_agent, CONSUL_HTTP_TOKEN_FILE=str(tmp_path / "token"))
    assert source.fetch("k").data[""].reveal() == VALUE


def test_refused_token_is_permission_denied_without_the_token(
        consul_acl_agent: ConsulAgent) -> None:
    """An unknown token ("ACL not found") and a token whose policy does not cover the key
    ("Permission denied"): both 403 from Consul, both 77, the token never in the message."""
    consul_acl_agent.put("k", VALUE)
    unknown = str(uuid.uuid4())
    narrow = consul_acl_agent.create_token('key_prefix "other/" { policy = "read" }')
    for token in (unknown, narrow):
        source = source_for(consul_acl_agent, token)
        with pytest.raises(PermissionDenied) as caught:
            source.fetch("k")
        assert caught.value.exit_code == 77
        assert "refused to read key k" in str(caught.value)
        assert token not in str(caught.value)


def test_anonymous_read_under_default_deny_is_permission_denied(
        consul_acl_agent: ConsulAgent) -> None:
    """No token at all: Consul answers a missing *and* an existing key with 403 (the
    anonymous token may read nothing), which is a permission problem, not a missing key."""
    consul_acl_agent.put("k", VALUE)
    source = source_for(consul_acl_agent)
    for key in ("k", "missing"):
        with pytest.raises(PermissionDenied, match=f"refused to read key {key}"):
            source.fetch(key)


def test_server_error_is_unavailable(consul_proxy: ConsulFaultProxy) -> None:
    """A 500 (the fault proxy's, as an agent without a leader answers): 69, naming the
    address, never quoting the answer's body."""
    consul_proxy.put("k", VALUE)
    source = source_for(consul_proxy)
    consul_proxy.fail_next(1, 500)
    with pytest.raises(UnavailableError) as caught:
        source.fetch("k")
    assert str(caught.value) == f"consul at {consul_proxy.addr} failed to read key k: status 500"
    assert source.fetch("k").data[""].reveal() == VALUE


def test_stopped_agent_is_unavailable_until_it_is_back(consul_agent: ConsulAgent) -> None:
    """The agent stops: connection refused is 69; once it is back (a dev agent keeps no
    data, so the key is written again) the same source reads again."""
    consul_agent.put("k", VALUE)
    source = source_for(consul_agent)
    assert source.fetch("k").data[""].reveal() == VALUE
    consul_agent.stop()
    with pytest.raises(UnavailableError, match="cannot be reached to read key k"):
        source.fetch("k")
    consul_agent.start()
    consul_agent.put("k", VALUE)
    assert source.fetch("k").data[""].reveal() == VALUE


def test_https_with_the_agent_ca_and_a_client_certificate(
        consul_tls_agent: ConsulAgent) -> None:
    """CONSUL_CACERT verifies the agent; CONSUL_CLIENT_CERT/KEY answer its demand for a
    client certificate (verify_incoming); reads and blocking watches work over it."""
    index = consul_tls_agent.put("k", VALUE)
    source = source_for(consul_tls_agent, **consul_tls_agent.tls_env())
    assert source.settings.addr == consul_tls_agent.https_addr
    assert source.fetch("k").data[""].reveal() == VALUE
    result: list[tuple[int, Secret | None]] = []
    watcher = threading.Thread(target=lambda: result.append(source.watch("k", index, 30)))
    watcher.start()
    consul_tls_agent.wait_for_blocked_queries(1)
    new = consul_tls_agent.put("k", "rotated")
    watcher.join(10)
    assert result == [(new, Secret("rotated"))]
    source.close()


def test_https_without_ssl_scheme_in_the_address(consul_tls_agent: ConsulAgent) -> None:
    """CONSUL_HTTP_SSL=true with a bare host:port, as the consul CLI takes it."""
    consul_tls_agent.put("k", VALUE)
    env = consul_tls_agent.tls_env()
    env["CONSUL_HTTP_ADDR"] = f"127.0.0.1:{consul_tls_agent.https_port}"
    source = source_for(consul_tls_agent, **env, CONSUL_HTTP_SSL="true")
    assert source.fetch("k").data[""].reveal() == VALUE


def test_https_failures_are_unavailable(consul_tls_agent: ConsulAgent) -> None:
    """No client certificate (the agent ends the handshake) and an agent certificate from
    another CA: both 69, "cannot be reached"; CONSUL_HTTP_SSL_VERIFY=false skips only the
    second check."""
    consul_tls_agent.put("k", VALUE)
    no_cert = source_for(consul_tls_agent, **consul_tls_agent.tls_env(client_cert=False))
    other = {**consul_tls_agent.tls_env(), "CONSUL_CACERT": str(consul_tls_agent.other_ca())}
    for source in (no_cert, source_for(consul_tls_agent, **other)):
        with pytest.raises(UnavailableError,
                           match=f"consul at {re.escape(consul_tls_agent.https_addr)} cannot "
                                 "be reached to read key k"):
            source.fetch("k")
    unverified = source_for(consul_tls_agent, **other, CONSUL_HTTP_SSL_VERIFY="false")
    assert unverified.fetch("k").data[""].reveal() == VALUE


def test_plain_http_to_the_https_port_says_so(consul_tls_agent: ConsulAgent) -> None:
    """The agent's TLS port answers plain HTTP with Go's 400: a configuration error that
    names the fix, not a retried "status 400"."""
    consul_tls_agent.put("k", VALUE)
    addr = f"http://127.0.0.1:{consul_tls_agent.https_port}"
    with pytest.raises(ConfigError, match=f"consul at {re.escape(addr)} speaks HTTPS") as caught:
        source_for(consul_tls_agent, CONSUL_HTTP_ADDR=addr).fetch("k")
    assert "https://" in (caught.value.hint or "")


def test_unverified_https_is_said_once_in_our_log(consul_tls_agent: ConsulAgent) -> None:
    """CONSUL_HTTP_SSL_VERIFY=false through the CLI: one warning in the entrypoint's log,
    and not urllib3's own text on stderr for every request."""
    consul_tls_agent.put("a", "1")
    consul_tls_agent.put("b", "2")
    proc = run_cli(["render"], {**consul_tls_agent.tls_env(), "CONSUL_HTTP_SSL_VERIFY": "false",
                                "A": "consul:a", "B": "consul:b"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("CONSUL_HTTP_SSL_VERIFY is false: the Consul agent's TLS "
                             "certificate is NOT verified") == 1
    assert "InsecureRequestWarning" not in proc.stderr


# -- watching ------------------------------------------------------------------------------

def test_watch_blocks_until_the_key_changes(consul_agent: ConsulAgent) -> None:
    consul_agent.put("feature", "off")
    source = source_for(consul_agent)
    index, value = source.watch("feature", 0, 5)  # index 0: answer at once
    assert value == Secret("off")
    result: list[tuple[int, Secret | None]] = []
    watcher = threading.Thread(target=lambda: result.append(source.watch("feature", index, 30)))
    watcher.start()
    consul_agent.wait_for_blocked_queries(1)
    assert not result
    new = consul_agent.put("feature", "on")
    watcher.join(10)
    assert result == [(new, Secret("on"))]
    assert new > index
    source.close()


def test_watch_returns_the_same_index_when_the_wait_ends(consul_agent: ConsulAgent) -> None:
    index = consul_agent.put("feature", "off")
    source = source_for(consul_agent)
    started = time.monotonic()
    assert source.watch("feature", index, 0.2) == (index, Secret("off"))
    assert time.monotonic() - started >= 0.19
    watched = [r for r in consul_agent.requests()
               if r.path == "/v1/kv/feature" and "index=" in r.query]
    assert len(watched) == 1 and "wait=200ms" in watched[0].query


def test_watch_sees_a_deleted_key_as_none(consul_agent: ConsulAgent) -> None:
    index = consul_agent.put("feature", "off")
    source = source_for(consul_agent)
    result: list[tuple[int, Secret | None]] = []
    watcher = threading.Thread(target=lambda: result.append(source.watch("feature", index, 30)))
    watcher.start()
    consul_agent.wait_for_blocked_queries(1)
    consul_agent.delete("feature")
    watcher.join(10)
    assert result and result[0][1] is None and result[0][0] > index


def test_watch_resets_an_index_that_went_backwards(consul_agent: ConsulAgent) -> None:
    """An agent that lost its state answers a lower index once the wait ends: reset to 0,
    then start over with an immediate read."""
    for n in range(30):  # well above the index a fresh agent reaches while it starts
        consul_agent.put("feature", f"v{n}")
    source = source_for(consul_agent)
    index, _ = source.watch("feature", 0, 1)
    consul_agent.restart()
    new = consul_agent.put("feature", "after-restart")
    assert new < index
    assert source.watch("feature", index, 0.2)[0] == 0
    assert source.watch("feature", 0, 1) == (new, Secret("after-restart"))


def test_a_stopping_agent_answers_a_parked_watch(consul_agent: ConsulAgent) -> None:
    """Consul stopped with SIGTERM answers a parked blocking query (unchanged) before it
    goes; the next call, while it is down, is UnavailableError."""
    index = consul_agent.put("feature", "off")
    source = source_for(consul_agent)
    result: list[tuple[int, Secret | None]] = []
    watcher = threading.Thread(target=lambda: result.append(source.watch("feature", index, 30)))
    watcher.start()
    consul_agent.wait_for_blocked_queries(1)
    consul_agent.stop()
    watcher.join(10)
    assert result == [(index, Secret("off"))]
    with pytest.raises(UnavailableError, match="cannot be reached to read key feature"):
        source.watch("feature", index, 1)


def test_watch_survives_a_crash_as_an_error_then_recovers(consul_agent: ConsulAgent) -> None:
    """A parked query cut by a crashing agent (SIGKILL) is UnavailableError; once an agent
    is back on the address (a dev agent keeps no data) the next call works."""
    index = consul_agent.put("feature", "off")
    source = source_for(consul_agent)
    errors: list[BaseException] = []

    def watch() -> None:
        try:
            source.watch("feature", index, 30)
        except UnavailableError as exc:
            errors.append(exc)

    watcher = threading.Thread(target=watch)
    watcher.start()
    consul_agent.wait_for_blocked_queries(1)
    consul_agent.crash()
    watcher.join(10)
    assert len(errors) == 1
    consul_agent.start()
    consul_agent.put("feature", "on")
    assert source.watch("feature", index, 1)[1] == Secret("on")


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_interrupt_cuts_a_parked_watch_at_once(request: pytest.FixtureRequest,
                                               tls: bool) -> None:
    """A key no longer watched: its parked query (30 s here, 5 minutes in use) fails at
    once, over TLS too; a thread cut before its first request never parks."""
    agent: ConsulAgent = request.getfixturevalue("consul_tls_agent" if tls else
                                                 "consul_agent")
    index = agent.put("feature", "off")
    source = source_for(agent, **(agent.tls_env() if tls else {}))
    go = threading.Event()
    errors: list[UnavailableError] = []

    def watch() -> None:
        go.wait(10)
        try:
            source.watch("feature", index, 30)
        except UnavailableError as exc:
            errors.append(exc)
        finally:
            source.release()

    parked, early = threading.Thread(target=watch), threading.Thread(target=watch)
    parked.start()
    go.set()
    agent.wait_for_blocked_queries(1)
    source.interrupt(parked)
    parked.join(5)
    assert not parked.is_alive() and len(errors) == 1
    source.interrupt(early)  # before it has a client, or a connection
    started = time.monotonic()
    early.start()
    early.join(5)
    assert not early.is_alive() and len(errors) == 2 and time.monotonic() - started < 5
    source.close()


def test_a_thread_that_ended_leaves_no_connection(consul_agent: ConsulAgent) -> None:
    """Each generation's reads run in threads of their own (plan/resolve.py): the client
    of a thread that ended is closed when another is made, so that rotations do not pile
    up connections to the agent (it allows 200 from one address)."""
    consul_agent.put("k", VALUE)
    source = source_for(consul_agent)
    before = consul_agent.connections_from_here()
    for _ in range(5):
        reader = threading.Thread(target=source.fetch, args=("k",))
        reader.start()
        reader.join(10)
    assert consul_agent.connections_from_here() > before
    source.fetch("k")
    assert consul_agent.connections_from_here() == before + 1
    source.close()
    assert consul_agent.connections_from_here() == before


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


def test_tls_settings(tmp_path: Path) -> None:
    ca, cert, key = (str(tmp_path / name) for name in ("ca.pem", "c.pem", "k.pem"))
    for name in (ca, cert, key):
        Path(name).write_text("PEM")
    settings = settings_from_environment({
        "CONSUL_HTTP_ADDR": "https://c:8501", "CONSUL_CACERT": ca,
        "CONSUL_CLIENT_CERT": cert, "CONSUL_CLIENT_KEY": key})
    assert (settings.verify, settings.cert) == (ca, (cert, key))
    insecure = settings_from_environment({"CONSUL_HTTP_SSL_VERIFY": "false"})
    assert insecure.verify is False


def test_tls_files_are_a_config_error_up_front(consul_tls_agent: ConsulAgent,
                                               tmp_path: Path) -> None:
    """Against an agent that wants a client certificate, a missing CA file, a certificate
    without its key, or a key that is a folder would have been "cannot be reached" (69) at
    the first read; they are configuration errors (78), said before any request."""
    good = consul_tls_agent.tls_env()
    cases = [
        ({**good, "CONSUL_CACERT": str(tmp_path / "none.pem")},
         f"variable CONSUL_CACERT: file {tmp_path / 'none.pem'} cannot be read"),
        ({k: v for k, v in good.items() if k != "CONSUL_CLIENT_KEY"},
         "CONSUL_CLIENT_CERT and CONSUL_CLIENT_KEY must be set together"),
        ({**good, "CONSUL_CLIENT_KEY": str(tmp_path)},
         f"variable CONSUL_CLIENT_KEY: file {tmp_path} cannot be read"),
    ]
    for environ, message in cases:
        with pytest.raises(ConfigError, match=re.escape(message)) as caught:
            settings_from_environment(environ)
        assert caught.value.exit_code == 78
    proc = run_cli(["render"], {**cases[1][0], "X": "consul:k"})
    assert proc.returncode == 78, proc.stderr
    assert cases[1][1] in proc.stderr
    assert not [r for r in consul_tls_agent.requests() if r.path == "/v1/kv/k"]


@pytest.mark.parametrize("bad", ["unix:///var/run/consul.sock", "ftp://c:1", "c:notaport",
                                 "http://c:8500/v1"])
def test_bad_address_is_a_config_error(bad: str) -> None:
    with pytest.raises(ConfigError, match="CONSUL_HTTP_ADDR"):
        settings_from_environment({"CONSUL_HTTP_ADDR": bad})


# -- through the CLI -----------------------------------------------------------------------

def test_consul_reference_and_template_reach_the_app(consul_acl_agent: ConsulAgent,
                                                     tmp_path: Path) -> None:
    """--exec: consul: in the environment and consul() in a template; the token is stripped."""
    token = consul_acl_agent.create_token('key_prefix "config/app/" { policy = "read" }')
    consul_acl_agent.put("config/app/feature_x", VALUE)
    consul_acl_agent.put("config/app/limits", json.dumps({"rps": 50}))
    (tmp_path / "t.j2").write_text("feature={{ consul('config/app/feature_x') }}\n")
    dump = tmp_path / "env.json"
    proc = run_cli(["--exec", "--template", f"{tmp_path / 't.j2'}:{tmp_path / 'out.conf'}",
                    "--", sys.executable, "-c", DUMP_ENV, str(dump)],
                   {**consul_acl_agent.env(token), "FEATURE_X": "consul:config/app/feature_x",
                    "LIMITS": "consul:config/app/limits"})
    assert proc.returncode == 0, proc.stderr
    env = json.loads(dump.read_text())
    assert env["FEATURE_X"] == VALUE
    assert json.loads(env["LIMITS"]) == {"rps": 50}
    assert "CONSUL_HTTP_TOKEN" not in env
    assert (tmp_path / "out.conf").read_text() == f"feature={VALUE}\n"
    # One read per key per generation, the template's included (the agent's own log).
    reads = [r.path for r in consul_acl_agent.requests()
             if r.method == "GET" and r.path.startswith("/v1/kv/config/")]
    assert sorted(reads) == ["/v1/kv/config/app/feature_x", "/v1/kv/config/app/limits"]
    assert VALUE not in proc.stderr and token not in proc.stderr


def test_missing_consul_key_through_the_cli(consul_agent: ConsulAgent) -> None:
    proc = run_cli(["render"], {**consul_agent.env(), "X": "consul:config/none"})
    assert proc.returncode == 78
    assert f"consul key config/none not found at {consul_agent.addr}" in proc.stderr


def test_unreachable_agent_through_the_cli() -> None:
    """Nothing listens on the address (no agent needed to show that)."""
    addr = f"http://127.0.0.1:{free_port()}"
    proc = run_cli(["render", "--startup-timeout", "0"], {"CONSUL_HTTP_ADDR": addr,
                                                          "X": "consul:k"})
    assert proc.returncode == 69, proc.stderr
    assert f"consul at {addr} cannot be reached" in proc.stderr


LAZY = """
import sys
from entrypoint.config.model import Config
from entrypoint.plan.resolution import Runtime
from entrypoint import logs
environ = dict(arg.split("=", 1) for arg in sys.argv[1:])
runtime = Runtime(Config(), environ, logs.setup())
runtime.resolve()
print('consul' in sys.modules, 'requests' in sys.modules)
"""


def test_py_consul_is_imported_only_when_a_consul_reference_is_used(
        consul_agent: ConsulAgent) -> None:
    consul_agent.put("k", "v")
    addr = f"CONSUL_HTTP_ADDR={consul_agent.addr}"
    without = subprocess.run([sys.executable, "-c", LAZY, addr, "PLAIN=x"], env=clean_env(),
                             capture_output=True, text=True, check=True)
    assert without.stdout.split() == ["False", "False"]
    with_ref = subprocess.run([sys.executable, "-c", LAZY, addr, "X=consul:k"],
                              env=clean_env(), capture_output=True, text=True, check=True)
    assert with_ref.stdout.split()[0] == "True"


def test_a_watch_loop_sees_each_change_once(consul_agent: ConsulAgent) -> None:
    """A watcher loop as the rotation engine would run it sees each change exactly once."""
    index = consul_agent.put("feature", "a")
    source = source_for(consul_agent)
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
        consul_agent.wait_for_blocked_queries(1)
        consul_agent.put("feature", text)

        def saw(wanted: str = text) -> bool:
            return bool(seen) and seen[-1] == wanted

        wait_until(saw, what=f"watch to see {text}")
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


def test_consul_watch_notifies_each_change_and_deletion(consul_agent: ConsulAgent) -> None:
    """ConsulWatch: a put and a delete each reach notify once, with the key, no value."""
    from entrypoint.sources.consul.watch import ConsulWatch

    consul_agent.put("config/app/feature_x", "off")
    source = source_for(consul_agent)
    key = ("consul", "config/app/feature_x", None)
    notes = Notes()
    watch = ConsulWatch(source, notes, logging.getLogger("test-consul-watch"), wait=5)
    watch.add_key(key, source.fetch("config/app/feature_x"))
    watch.start()
    consul_agent.wait_for_blocked_queries(1)
    consul_agent.put("config/app/feature_x", "off")  # same value: Consul wakes, no change
    consul_agent.wait_for_blocked_queries(1)
    consul_agent.put("config/app/feature_x", VALUE)
    wait_until(lambda: notes.calls, what="notify after a put")
    consul_agent.wait_for_blocked_queries(1)
    consul_agent.delete("config/app/feature_x")
    wait_until(lambda: len(notes.calls) == 2, what="notify after a delete")
    assert notes.calls == [("consul:config/app/feature_x changed", [key], False),
                           ("consul:config/app/feature_x was deleted", [key], False)]
    watch.stop()


def test_consul_watch_backs_off_and_recovers(consul_agent: ConsulAgent,
                                             caplog: pytest.LogCaptureFixture) -> None:
    """The agent stops: the failure is logged with its retry delay; when an agent is back
    on the address (with none of the old state) the watcher recovers and sees the key."""
    from entrypoint.sources.consul.watch import ConsulWatch

    consul_agent.put("k", "one")
    source = source_for(consul_agent)
    key = ("consul", "k", None)
    notes = Notes()
    log = logging.getLogger("test-consul-watch-outage")
    # Consul's own 5-minute wait: the new agent's index is below the watcher's, so only a
    # plain read after the failure (not a blocking query on the old index) sees the change
    # in time.
    watch = ConsulWatch(source, notes, log, rng=lambda: 0.01)
    watch.add_key(key, source.fetch("k"))
    watch.start()
    consul_agent.wait_for_blocked_queries(1)
    with caplog.at_level(logging.INFO, logger=log.name):
        consul_agent.stop()
        wait_until(lambda: "watching consul:k failed" in caplog.text, what="a failure logged")
        consul_agent.start()
        consul_agent.put("k", "two")
        wait_until(lambda: notes.calls and notes.calls[-1][0] == "consul:k changed",
                   what="the change after the outage")
        wait_until(lambda: "recovered: watching consul:k" in caplog.text, what="recovery")
    # The new agent starts empty: a read before our put rightly reports the key deleted.
    assert notes.calls in ([("consul:k changed", [key], False)],
                           [("consul:k was deleted", [key], False),
                            ("consul:k changed", [key], False)])
    assert watch.watching == [key]
    watch.stop()
