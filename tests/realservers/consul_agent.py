"""ConsulAgent: a real `consul agent -dev` for one test, driven over its HTTP API.

- The HTTP API on a free loopback port; DNS, serf WAN, gRPC and HTTPS switched off (-1),
  serf LAN and the server RPC port (which Consul cannot switch off) on other free loopback
  ports, so that agents of parallel runs never meet.
- `acl=True`: ACLs enabled with default_policy "deny" and a random initial management
  token; `create_token(rules)` makes a token with a policy, as an operator would.
- `tls=True`: HTTPS too, on its own port, asking for a client certificate; the CA and the
  certificates are made with Consul's own `consul tls` commands.
- Dev mode keeps its data in memory: `restart()` brings back an agent on the same address
  that lost its state (indexes start over), which is what a client must survive.
- The agent's own debug log is kept in the test's temporary folder: `requests()` reads its
  "Request finished" lines (what the agent says it served) and the fixture prints its tail
  for a failed test.
- `wait_for_blocked_queries(n)` counts the KV blocking queries parked in the agent (its
  goroutine dump), so a test changes a key only once a watcher's query waits in Consul.
- `proxy()`: a fault proxy in front of the agent, for the faults a real agent cannot give
  on demand (a 500, latency).

Every ACL token the agent hands out is seeded into the suite's secrecy check.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import os
import re
import secrets
import shlex
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from tests.helpers.secrecy import seed_secret
from tests.services.ports import LOOPBACK, Service, free_port, stop_process, wait_until

GET_BINARIES = Path(__file__).resolve().parent / "get-binaries.sh"
START_TIMEOUT = 60.0  # a cold agent on a loaded 2-core machine takes a few seconds
BIND_ATTEMPTS = 5
# agent/http.go logs every request it served at DEBUG, the token taken out of the URL.
# hclog quotes a value with "=" or "&" in it (a query string).
REQUEST_LINE = re.compile(
    r'\[DEBUG\] agent\.http: Request finished: method=(\S+) url=("[^"]*"|\S+)')


@functools.cache
def consul_binary() -> str:
    """The `consul` that tests/realservers/get-binaries.sh provides (CONSUL_BIN, PATH, or
    the cached build, built if missing): one rule for CI and the suite. Its log lines, with
    the binary's version, go to stderr."""
    out = subprocess.run(["bash", str(GET_BINARIES), "consul"], check=True, text=True,
                         stdout=subprocess.PIPE).stdout
    for line in out.splitlines():
        if line.startswith("CONSUL_BIN="):
            return shlex.split(line.removeprefix("CONSUL_BIN="))[0]
    raise RuntimeError(f"{GET_BINARIES} consul printed no CONSUL_BIN=: {out!r}")


def consul_version() -> str:
    """`consul version`'s first line, for the test log."""
    out = subprocess.run([consul_binary(), "version"], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    return out.splitlines()[0]


def _run_consul(args: list[str], cwd: Path) -> None:
    subprocess.run([consul_binary(), *args], cwd=cwd, check=True, capture_output=True,
                   timeout=60)


class ConsulAPIError(RuntimeError):
    """An operator call the test made was refused by Consul (status and Consul's text)."""


@dataclass(frozen=True)
class AgentRequest:
    """One request as the agent logged it."""

    method: str
    path: str  # without the query
    query: str


class ConsulAgent(Service):
    """A real Consul agent; a context manager, or start()/stop() yourself."""

    def __init__(self, acl: bool = False, tls: bool = False) -> None:
        self.acl = acl
        self.tls = tls
        # Consul wants ACL SecretIDs to be UUIDs.
        self.management_token = seed_secret(str(uuid.uuid4())) if acl else None
        self.host = LOOPBACK
        self.port = 0
        self._ports: dict[str, int] = {}
        self._root = Path(tempfile.mkdtemp(prefix="consul-agent-"))
        self._process: subprocess.Popen[bytes] | None = None
        self._log_offset = 0  # where this incarnation's log starts, for requests()
        self._http = requests.Session()
        if self.management_token is not None:
            self._http.headers["X-Consul-Token"] = self.management_token
        self._proxies: list[Any] = []
        self.https_port = 0
        self.tls_dir = self._root / "tls"

    # -- addresses -------------------------------------------------------------------------

    @property
    def addr(self) -> str:
        """The agent's HTTP address with scheme, as CONSUL_HTTP_ADDR takes it."""
        return f"http://{self.host}:{self.port}"

    def env(self, token: str | None = None) -> dict[str, str]:
        """CONSUL_HTTP_ADDR, and CONSUL_HTTP_TOKEN when a token is given."""
        env = {"CONSUL_HTTP_ADDR": self.addr}
        if token is not None:
            env["CONSUL_HTTP_TOKEN"] = token
        return env

    @property
    def https_addr(self) -> str:
        """With tls=True: the HTTPS address, which asks clients for a certificate."""
        return f"https://{self.host}:{self.https_port}"

    @property
    def ca_file(self) -> Path:
        return self.tls_dir / "consul-agent-ca.pem"

    @property
    def client_cert(self) -> tuple[Path, Path]:
        """A client certificate and its key, signed by the agent's CA (`consul tls`)."""
        return (self.tls_dir / "dc1-client-consul-0.pem",
                self.tls_dir / "dc1-client-consul-0-key.pem")

    def tls_env(self, client_cert: bool = True) -> dict[str, str]:
        """CONSUL_HTTP_ADDR (https), CONSUL_CACERT and, unless told not to, the client
        certificate variables."""
        env = {"CONSUL_HTTP_ADDR": self.https_addr, "CONSUL_CACERT": str(self.ca_file)}
        if client_cert:
            env["CONSUL_CLIENT_CERT"], env["CONSUL_CLIENT_KEY"] = map(str, self.client_cert)
        return env

    def other_ca(self) -> Path:
        """A CA the agent's certificate does not come from (for a failed verification)."""
        folder = self._root / "other-ca"
        if not folder.exists():
            folder.mkdir()
            _run_consul(["tls", "ca", "create"], folder)
        return folder / "consul-agent-ca.pem"

    def _make_certificates(self) -> None:
        # Consul's own tooling: a CA, a server certificate (SANs localhost, 127.0.0.1)
        # and a client certificate, as an operator following Consul's TLS guide makes.
        if self.ca_file.exists():
            return
        self.tls_dir.mkdir()
        for command in (["tls", "ca", "create"], ["tls", "cert", "create", "-server"],
                        ["tls", "cert", "create", "-client"]):
            _run_consul(command, self.tls_dir)

    @property
    def log_path(self) -> Path:
        return self._root / "consul.log"

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the agent (again, on the same ports once it has run) and wait until it
        serves KV reads with a leader."""
        if self._process is not None:
            return
        for attempt in range(BIND_ATTEMPTS):
            if not self._ports:
                self._ports = {"http": free_port(), "serf_lan": free_port(),
                               "server": free_port(), "https": free_port() if self.tls else -1}
                self.port, self.https_port = self._ports["http"], self._ports["https"]
            if self.tls:
                self._make_certificates()
            self._write_config()
            self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
            log = self.log_path.open("ab")
            try:
                self._process = subprocess.Popen(
                    [consul_binary(), "agent", "-dev", "-config-file",
                     str(self._root / "agent.hcl")],
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    cwd=self._root)
            finally:
                log.close()
            try:
                wait_until(self._ready, timeout=START_TIMEOUT, what="consul agent to serve",
                           interval=0.05)
                return
            except TimeoutError:
                exited = self._process.poll() is not None
                stop_process(self._process)
                self._process = None
                recent = self.log_text()[self._log_offset:]
                if exited and "address already in use" in recent \
                        and attempt + 1 < BIND_ATTEMPTS and self._fresh_ports_allowed():
                    self._ports = {}  # another process took a port between pick and bind
                    continue
                raise RuntimeError("consul agent did not start; its log:\n"
                                   + "\n".join(recent.splitlines()[-60:])) from None

    def _fresh_ports_allowed(self) -> bool:
        # A restart must come back on the address the client knows; only a first start
        # may move.
        return not self._proxies and self._log_offset == 0

    def _write_config(self) -> None:
        p = self._ports
        acl = ""
        if self.management_token is not None:
            # The agent's own token is the management one: with default deny it needs one to
            # register its node, and tests only care about the tokens their clients send.
            acl = f"""
acl {{
  enabled = true
  default_policy = "deny"
  enable_token_persistence = false
  tokens {{
    initial_management = "{self.management_token}"
    agent = "{self.management_token}"
  }}
}}"""
        tls = ""
        if self.tls:
            # The HTTPS port asks for a client certificate; plain HTTP stays on for the
            # test's own setup calls.
            tls = f"""
tls {{
  defaults {{
    ca_file = "{self.ca_file}"
    cert_file = "{self.tls_dir / 'dc1-server-consul-0.pem'}"
    key_file = "{self.tls_dir / 'dc1-server-consul-0-key.pem'}"
  }}
  https {{
    verify_incoming = true
  }}
}}"""
        (self._root / "agent.hcl").write_text(f"""
node_name = "entrypoint-test"
bind_addr = "{LOOPBACK}"
client_addr = "{LOOPBACK}"
advertise_addr = "{LOOPBACK}"
log_level = "debug"
disable_update_check = true
enable_debug = true  # /debug/pprof, for blocked_queries()
ui_config {{ enabled = false }}
connect {{ enabled = false }}
ports {{
  http = {p['http']}
  https = {p['https']}
  grpc = -1
  grpc_tls = -1
  dns = -1
  serf_wan = -1
  serf_lan = {p['serf_lan']}
  server = {p['server']}
}}
{acl}
{tls}
""")

    def _ready(self) -> bool:
        if self._process is None or self._process.poll() is not None:
            raise TimeoutError("the agent exited")  # ends wait_until at once
        try:
            leader = self._http.get(f"{self.addr}/v1/status/leader", timeout=2)
            if leader.status_code != 200 or not leader.json():
                return False
            # A 404 (not a 403 or 500) for a missing key with the management token: the
            # leader has set up the KV store and, with ACLs, bootstrapped the token.
            probe = self._http.get(f"{self.addr}/v1/kv/entrypoint-test-ready-probe", timeout=2)
            return probe.status_code == 404
        except requests.RequestException:
            return False

    def stop(self) -> None:
        """Stop the agent (SIGTERM, as `docker stop` does): the port refuses connections and
        every open one, parked blocking queries included, is dropped."""
        process, self._process = self._process, None
        stop_process(process)

    def crash(self) -> None:
        """Kill the agent (SIGKILL): unlike stop(), nothing is answered; open connections,
        parked blocking queries included, are cut."""
        process, self._process = self._process, None
        if process is not None:
            process.kill()
            process.wait()

    def restart(self) -> None:
        """Stop and start on the same ports: a dev agent keeps nothing, so this is an agent
        that lost its state (keys, tokens made with create_token, indexes start over)."""
        self.stop()
        self.start()

    def close(self) -> None:
        for proxy in self._proxies:
            proxy.stop()
        self.stop()
        self._http.close()
        shutil.rmtree(self._root, ignore_errors=True)

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    # -- data, as another client would write it ----------------------------------------------

    def _call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        answer = self._http.request(method, f"{self.addr}{path}", timeout=30, **kwargs)
        if answer.status_code >= 400 and not (method == "GET" and answer.status_code == 404):
            raise ConsulAPIError(f"{method} {path}: {answer.status_code} {answer.text.strip()}")
        return answer

    def put(self, key: str, value: str | bytes, flags: int = 0) -> int:
        """Write a key; returns its new ModifyIndex (a transaction answers it with the
        write, so no second read can see someone else's)."""
        raw = value.encode() if isinstance(value, str) else value
        operation = {"KV": {"Verb": "set", "Key": key, "Flags": flags,
                            "Value": base64.b64encode(raw).decode()}}
        answer = self._call("PUT", "/v1/txn", json=[operation])
        index: int = answer.json()["Results"][0]["KV"]["ModifyIndex"]
        return index

    def get(self, key: str) -> bytes | None:
        answer = self._call("GET", f"/v1/kv/{key}", params={"raw": ""})
        return None if answer.status_code == 404 else answer.content

    def modify_index(self, key: str) -> int | None:
        answer = self._call("GET", f"/v1/kv/{key}")
        return None if answer.status_code == 404 else int(answer.json()[0]["ModifyIndex"])

    def delete(self, key: str, recurse: bool = False) -> None:
        self._call("DELETE", f"/v1/kv/{key}", params={"recurse": ""} if recurse else None)

    def create_token(self, rules: str = 'key_prefix "" { policy = "read" }',
                     secret_id: str | None = None) -> str:
        """A token with a new policy of `rules` (HCL); its SecretID (ours, if given)."""
        if self.management_token is None:
            raise ConsulAPIError("create_token needs an agent started with acl=True")
        name = "policy-" + secrets.token_hex(4)
        self._call("PUT", "/v1/acl/policy", json={"Name": name, "Rules": rules})
        body: dict[str, Any] = {"Policies": [{"Name": name}]}
        if secret_id is not None:
            body["SecretID"] = secret_id
        token: str = self._call("PUT", "/v1/acl/token", json=body).json()["SecretID"]
        return seed_secret(token)

    # -- observing ---------------------------------------------------------------------------

    def blocked_queries(self) -> int:
        """KV blocking queries parked in the agent right now: goroutines of KVS.Get waiting in
        memdb's WatchCtx, from the agent's own goroutine dump (enable_debug). Consul's
        rpc.queries_blocking gauge cannot say it: it is set when a query starts, never when
        one ends, and /v1/agent/metrics shows the last finished 10 s interval."""
        dump = self._call("GET", "/debug/pprof/goroutine", params={"debug": "1"}).text
        parked = 0
        for block in dump.split("\n\n"):
            head = block.split(" @ ", 1)[0].strip()
            if head.isdigit() and "KVS).Get" in block and "WatchCtx" in block:
                parked += int(head)
        return parked

    def wait_for_blocked_queries(self, count: int = 1, timeout: float = 10.0) -> None:
        """Return once `count` blocking queries are parked: a change made after this wakes
        them, rather than being seen by a query that had not started yet."""
        wait_until(lambda: self.blocked_queries() >= count, timeout=timeout,
                   what=f"{count} blocking queries parked in consul")

    def connections_from_here(self) -> int:
        """This process's established TCP connections to the agent's HTTP port."""
        port = int(self.addr.rsplit(":", 1)[1])
        inodes = set()
        for fd in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):  # closed since the listing
                target = os.readlink(f"/proc/self/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[len("socket:["):-1])
        count = 0
        for line in Path("/proc/self/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()  # local, remote (hex ip:port), state (01: established), inode
            remote, state, inode = fields[2], fields[3], fields[9]
            if state == "01" and int(remote.split(":")[1], 16) == port and inode in inodes:
                count += 1
        return count

    def requests(self) -> list[AgentRequest]:
        """The requests this incarnation of the agent logged having served, oldest first
        (the agent's own calls made by this fixture included: filter by path)."""
        found = []
        for method, url in REQUEST_LINE.findall(self.log_text()[self._log_offset:]):
            path, _, query = url.strip('"').partition("?")
            found.append(AgentRequest(method, path, query))
        return found

    def proxy(self) -> Any:
        """A fault proxy in front of this agent (started; stopped with the agent)."""
        from tests.realservers.consul_proxy import ConsulFaultProxy

        proxy = ConsulFaultProxy(self)
        proxy.start()
        self._proxies.append(proxy)
        return proxy

