"""The hand-written Prometheus exposition and its listener (issue 17): read back with
prometheus_client's own parser, label values that need escaping, the HTTP edge cases a
scraper or an attacker on the port can produce, and the memory reason it is by hand
(the resident process with metrics on loads neither http.server, http.client nor ssl)."""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from entrypoint.errors import ConfigError
from entrypoint.ops import metrics
from entrypoint.ops.exposition import Family, render
from entrypoint.ops.metrics import MetricsServer, families, parse_listen
from entrypoint.ops.state import Observer, endpoint_class, short_lease_id
from tests.helpers.cli import REPO, clean_env, start_cli
from tests.helpers.journal import wait_for
from tests.services.ports import free_port, wait_until

parser = pytest.importorskip("prometheus_client.parser")
LOG = logging.getLogger("entrypoint")
PROBE = str(REPO / "tests/helpers/app_probe.py")


def snapshot(key: str = "vault:database/creds/app") -> dict[str, object]:
    return {"keys": [{"key": key, "kind": "leased", "ttl": 42.5}],
            "auth": {"method": "token (VAULT_TOKEN)", "token_ttl": 3000.0}}


def folded_observer() -> Observer:
    observer = Observer()
    log = logging.getLogger("test-ops-metrics")
    log.propagate = False
    log.addHandler(observer)
    log.setLevel(logging.DEBUG)
    fields = {"key": "vault:database/creds/app", "kind": "leased", "lease": "abc"}
    log.info("x", extra={"event": "lease_renew", "outcome": "ok", "ttl": 60, **fields})
    log.info("x", extra={"event": "lease_renew", "outcome": "error", "error": "boom",
                         **fields})
    log.debug("x", extra={"event": "lease_replace", "outcome": "ok", **fields})
    log.info("x", extra={"event": "child_started", "pid": 10})
    log.info("x", extra={"event": "restart", "reason": "lease ending"})
    log.info("x", extra={"event": "child_started", "pid": 11})
    log.info("x", extra={"event": "signal_forwarded", "signal": "SIGHUP", "pid": 11})
    observer.vault_request("secret", "200", 0.003)
    observer.vault_request("secret", "200", 0.2)
    observer.vault_request("lease", "403", 20.0)
    return observer


def test_exposition_parses_with_prometheus_clients_own_parser() -> None:
    text = render(families(folded_observer(), snapshot())).decode()
    parsed = {f.name: f for f in parser.text_string_to_metric_families(text)}
    renewals = {(s.labels["kind"], s.labels["outcome"]): s.value
                for s in parsed["entrypoint_lease_renewals"].samples}
    assert renewals == {("leased", "ok"): 1.0, ("leased", "error"): 1.0}
    assert parsed["entrypoint_lease_renewals"].type == "counter"
    assert parsed["entrypoint_app_restarts"].samples[0].value == 1.0
    assert parsed["entrypoint_failures"].samples[0].value == 1.0
    [sighup] = parsed["entrypoint_app_signals"].samples
    assert sighup.labels == {"signal": "SIGHUP"} and sighup.value == 1.0
    hist = parsed["entrypoint_vault_request_duration_seconds"]
    assert hist.type == "histogram"
    by = {(s.name, s.labels.get("endpoint"), s.labels.get("status"), s.labels.get("le")):
          s.value for s in hist.samples}
    assert by[("entrypoint_vault_request_duration_seconds_count", "secret", "200", None)] == 2
    assert by[("entrypoint_vault_request_duration_seconds_bucket", "secret", "200",
               "0.005")] == 1
    assert by[("entrypoint_vault_request_duration_seconds_bucket", "secret", "200",
               "+Inf")] == 2
    assert by[("entrypoint_vault_request_duration_seconds_bucket", "lease", "403",
               "10.0")] == 0
    assert parsed["entrypoint_lease_ttl_seconds"].samples[0].value == 42.5
    assert parsed["entrypoint_vault_token_ttl_seconds"].samples[0].value == 3000.0


def test_label_values_that_need_escaping_survive_the_round_trip() -> None:
    odd = 'vault:kv/a"b\\c\nd'
    text = render(families(Observer(), snapshot(odd))).decode()
    [family] = [f for f in parser.text_string_to_metric_families(text)
                if f.name == "entrypoint_lease_ttl_seconds"]
    assert family.samples[0].labels["key"] == odd
    help_text = render([Family("x", "a\\b\nc", "gauge")]).decode()
    assert "# HELP x a\\\\b\\nc" in help_text


def test_endpoint_classes_and_short_lease_ids_name_no_path_and_no_id() -> None:
    assert endpoint_class("https://v:8200/v1/database/creds/app") == "secret"
    assert endpoint_class("http://v/v1/sys/leases/renew") == "lease"
    assert endpoint_class("http://v/v1/auth/token/lookup-self") == "token"
    assert endpoint_class("http://v/v1/auth/aws/login") == "login"
    assert endpoint_class("http://v/v1/sys/health") == "sys"
    lease = "database/creds/app/9mXqAbCdEfGh"
    short = short_lease_id(lease)
    assert short is not None and len(short) == 12 and short not in lease


@pytest.mark.parametrize("text", ["9102", "localhost:9102", "127.0.0.1:", "1.2.3.4:99999",
                                  "[::1]", "host:port"])
def test_bad_listen_addresses_are_config_errors(text: str) -> None:
    with pytest.raises(ConfigError, match="expected HOST:PORT"):
        parse_listen(text)


def test_listen_addresses_ipv4_and_ipv6() -> None:
    assert parse_listen("0.0.0.0:9102") == ("0.0.0.0", 9102)
    assert parse_listen("[::1]:9102") == ("::1", 9102)


@pytest.fixture
def server() -> Iterator[MetricsServer]:
    srv = MetricsServer(f"127.0.0.1:{free_port()}", folded_observer(), snapshot, LOG)
    srv.start()
    yield srv
    srv.stop()


def exchange(srv: MetricsServer, raw: bytes, timeout: float = 5.0) -> bytes:
    with socket.create_connection(srv.address[:2], timeout=timeout) as sock:
        sock.sendall(raw)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


def test_http_answers_and_refusals(server: MetricsServer) -> None:
    ok = exchange(server, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    assert ok.startswith(b"HTTP/1.0 200 OK\r\n")
    assert b"Content-Type: text/plain; version=0.0.4; charset=utf-8" in ok
    assert b"entrypoint_app_restarts_total 1.0" in ok
    assert exchange(server, b"HEAD /metrics HTTP/1.0\r\n\r\n").endswith(b"\r\n\r\n")
    assert exchange(server, b"POST /metrics HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.0 405")
    assert exchange(server, b"GET /secret HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.0 404")
    assert exchange(server, b"\r\n\r\n").startswith(b"HTTP/1.0 400")
    assert exchange(server, b"GET /ready HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.0 503")
    server.observer.ready = True
    assert exchange(server, b"GET /ready?x=1 HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.0 200")
    assert exchange(server, b"GET /live HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.0 200")


def test_a_huge_or_silent_client_delays_no_scrape(server: MetricsServer) -> None:
    silent = socket.create_connection(server.address[:2])
    huge = socket.create_connection(server.address[:2])
    try:
        huge.sendall(b"GET /" + b"a" * 20000)  # no end of headers: read up to the cap only
        began = time.monotonic()
        assert exchange(server, b"GET /live HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.0 200")
        assert time.monotonic() - began < 2.0
        huge.settimeout(10)
        assert huge.recv(100).startswith(b"HTTP/1.0 404")
    finally:
        silent.close()
        huge.close()


class Slowloris:
    """The attack of the review: clients that each send one byte of a request every
    ``every`` seconds, never the end of it; each one the server closes is replaced at once
    (an attacker keeps ``count`` open), and how long each one lived is kept."""

    def __init__(self, address: tuple[str, int], count: int, every: float) -> None:
        self.address, self.count, self.every = address, count, every
        self.lifetimes: list[float] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="slowloris", daemon=True)

    def __enter__(self) -> Slowloris:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(timeout=10)

    def _run(self) -> None:
        held: dict[socket.socket, float] = {}
        try:
            while not self.stopping.is_set():
                while len(held) < self.count:
                    sock = socket.create_connection(self.address, timeout=5)
                    held[sock] = time.monotonic()
                for sock, opened in list(held.items()):
                    if self._closed_by_server(sock):
                        self.lifetimes.append(time.monotonic() - opened)
                        sock.close()
                        del held[sock]
                    else:
                        with contextlib.suppress(OSError):
                            sock.send(b"G")
                self.stopping.wait(self.every)
        finally:
            for sock in held:
                sock.close()

    @staticmethod
    def _closed_by_server(sock: socket.socket) -> bool:
        try:
            return sock.recv(1, socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True


def test_slow_clients_hold_no_thread_and_no_more_than_the_cap(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The review's slowloris (a byte every 4 s under a 5 s timeout per read: 547 threads,
    44 MB in 35 s), at a scale for a test: a 1 s deadline, a byte every 0.3 s, three times
    as many slow clients as the cap, replaced as soon as they are dropped."""
    monkeypatch.setattr(metrics, "DEADLINE", 1.0)
    srv = MetricsServer(f"127.0.0.1:{free_port()}", folded_observer(), snapshot, LOG)
    srv.start()
    threads_before = threading.active_count()
    try:
        with Slowloris(srv.address[:2], 3 * metrics.MAX_PENDING, every=0.3) as attack:
            held: list[int] = []
            threads: list[int] = []

            def dropped_enough() -> bool:
                held.append(srv.connections)
                threads.append(threading.active_count())
                # More than were opened at first: replacements were dropped too.
                return len(attack.lifetimes) >= 4 * metrics.MAX_PENDING

            # Every slow client is dropped, however many bytes it trickles: at the cap
            # (the oldest first) or at its deadline, never kept for as long as it sends.
            wait_until(dropped_enough, timeout=20, what="the slow clients to be dropped")
            # Counted by the client from its connect, so it includes the time a connection
            # waited in the kernel's queue (the accept queue full, the handshake completes
            # on a SYN-ACK sent again after 1 s, then 2 s): the server held it for 1 s.
            assert max(attack.lifetimes) < 1.0 + 3.0 + 1.0
            began = time.monotonic()
            scrape = exchange(srv, b"GET /metrics HTTP/1.0\r\n\r\n")
            assert scrape.startswith(b"HTTP/1.0 200 OK\r\n")
            assert b"entrypoint_app_restarts_total 1.0" in scrape
            assert time.monotonic() - began < 2.0
        # No thread per connection (the attacker's is the one more), never more
        # connections held than the cap.
        assert max(threads) <= threads_before + 1
        assert max(held) <= metrics.MAX_PENDING
    finally:
        srv.stop()


def test_resident_run_with_metrics_loads_no_http_client_or_ssl(tmp_path: Path) -> None:
    """Why the format is by hand: http.server would load http.client and ssl (~8 MB)."""
    secrets = tmp_path / "secrets"
    (secrets / "kv/app").mkdir(parents=True)
    (secrets / "kv/app/db.json").write_text('{"password": "local-password-1"}')
    journal, stderr_file = tmp_path / "journal", tmp_path / "stderr"
    port = free_port()
    env = clean_env({"ENTRYPOINT_LOCAL_SECRETS": str(secrets), "ENTRYPOINT_CONTROL_SOCKET": "",
                     "ENTRYPOINT_METRICS_LISTEN": f"127.0.0.1:{port}",
                     "DB_PASSWORD": "vault:kv/app/db#password"})
    with stderr_file.open("w") as stderr:
        proc = start_cli(["--", sys.executable, PROBE, str(journal)], env,
                         python_flags=["-X", "importtime"], stderr=stderr,
                         stdout=subprocess.DEVNULL)
        try:
            wait_for(journal, "start")
            wait_until(lambda: b"entrypoint_ready 1.0" in _get(port), what="a scrape")
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=20) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    modules = {line.rsplit("|", 1)[1].strip()
               for line in stderr_file.read_text().splitlines()
               if line.startswith("import time:") and "|" in line}
    assert "entrypoint.ops.metrics" in modules  # the listing is really there
    assert not modules & {"ssl", "http.client", "http.server", "prometheus_client"}


def _get(port: int) -> bytes:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
            return data
    except OSError:
        return b""
