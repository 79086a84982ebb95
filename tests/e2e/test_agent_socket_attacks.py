"""The app steals the token sent to a Vault Agent's unix socket, performed for real.

The agent's socket sits in a folder every user may write (a Kubernetes emptyDir is
0777). The app, running as ``nobody``, binds a socket of its own and renames it over the
agent's: the path now leads to it, and the entrypoint (root) connecting by path would send
it the token. The entrypoint checks who listens (``SO_PEERCRED``) and refuses the app's
uid before sending anything.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.helpers.attacks import reachable_folder
from tests.helpers.cli import REPO, run_cli, start_cli, wait_until

SYSTEM_PYTHON = "/usr/bin/python3"
pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="an attack across users needs root"),
    pytest.mark.skipif(not os.access(SYSTEM_PYTHON, os.X_OK), reason=f"needs {SYSTEM_PYTHON}"),
]

# The app: swap its own socket in for the agent's, then log whatever it is sent.
STEAL = """\
import os, socket, sys
path, log, done = sys.argv[1:4]
listener = socket.socket(socket.AF_UNIX)
listener.bind(path + ".mine")
listener.listen(8)
os.rename(path + ".mine", path)
open(done, "w").write("swapped")
listener.settimeout(60)
while True:
    try:
        conn, _ = listener.accept()
    except OSError:
        break
    conn.settimeout(2)
    try:
        data = conn.recv(65536)
    except OSError:
        data = b""
    with open(log, "ab") as out:
        out.write(b"<connection>" + data)
    try:
        conn.sendall(b"HTTP/1.1 503 x\\r\\nContent-Length: 0\\r\\nConnection: close\\r\\n\\r\\n")
    except OSError:
        pass
    conn.close()
"""


class Agent:
    """The stand-in for Vault Agent (root): its unix socket relayed to the real Vault over
    TCP. Not ``vault agent`` itself: the running-app attack needs the agent's open
    keep-alive connections dropped on demand, so that the next request reconnects to the
    swapped socket, and a real agent cannot be made to do that."""

    def __init__(self, path: Path, vault_addr: str) -> None:
        self.path = path
        target = urlsplit(vault_addr)
        self.target = (target.hostname or "127.0.0.1", target.port or 8200)
        self.listener = socket.socket(socket.AF_UNIX)
        self.listener.bind(str(path))
        path.chmod(0o777)
        self.listener.listen(16)
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.accepted.append(conn)
            upstream = socket.create_connection(self.target)
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def drop_connections(self) -> None:
        """Close the connections open now, as an agent does with idle keep-alive ones."""
        for conn in self.accepted:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.listener.close()
        self.drop_connections()


@pytest.fixture
def shared() -> Iterator[Path]:
    """The emptyDir: a short folder (sun_path is 108 bytes) every user may write."""
    with reachable_folder("ep-ag-", 0o777) as folder:
        yield folder


@pytest.fixture
def agent(vault_server: Any, shared: Path) -> Iterator[Agent]:
    vault_server.write_kv("secret", "app/db", {"password": "pw-agent-sock-51"})
    relay = Agent(shared / "agent.sock", vault_server.addr)
    yield relay
    relay.close()


def env_for(vault_server: Any, agent: Agent, **extra: str) -> dict[str, str]:
    return {"VAULT_AGENT_ADDR": f"unix://{agent.path}", "VAULT_TOKEN": vault_server.root_token,
            "DB": "vault:secret/app/db#password", **extra}


def steal_argv(agent: Agent, shared: Path) -> list[str]:
    return [SYSTEM_PYTHON, "-I", "-c", STEAL, str(agent.path), str(shared / "stolen"),
            str(shared / "swapped")]


def stolen(shared: Path) -> bytes:
    log = shared / "stolen"
    return log.read_bytes() if log.exists() else b""


def test_a_socket_swapped_in_by_the_app_is_refused_at_start(
        vault_server: Any, agent: Agent, shared: Path) -> None:
    """The app (say the previous instance, in a folder that outlives it) swapped the
    socket: the entrypoint refuses the listener at start, exit 77, and sends it nothing."""
    nobody = pwd.getpwnam("nobody")
    thief = subprocess.Popen(steal_argv(agent, shared), user=nobody.pw_uid,
                             group=nobody.pw_gid, extra_groups=[])
    try:
        wait_until(lambda: (shared / "swapped").exists(), timeout=10, what="the swap")
        done = run_cli(["--control-socket", "", "--user", "nobody", "--", "true"],
                       env_for(vault_server, agent, ENTRYPOINT_STARTUP_TIMEOUT="3s"),
                       cwd=REPO)
    finally:
        thief.kill()
        thief.wait()
    assert vault_server.root_token.encode() not in stolen(shared)
    assert b"X-Vault" not in stolen(shared)
    assert done.returncode == 77, done.stderr
    assert (f"Vault socket {agent.path} refused: it is served by uid {nobody.pw_uid}"
            in done.stderr)
    # The real agent, run as another user than the app, is used as before.
    os.unlink(agent.path)
    agent.listener.close()
    relay = Agent(agent.path, vault_server.addr)
    try:
        done = run_cli(["--control-socket", "", "--user", "nobody", "--", "sh", "-c",
                        'test "$DB" = pw-agent-sock-51'], env_for(vault_server, relay),
                       cwd=REPO)
    finally:
        relay.close()
    assert done.returncode == 0, done.stderr


def test_the_running_app_swapping_the_socket_gets_nothing_and_keeps_running(
        vault_server: Any, agent: Agent, shared: Path) -> None:
    """The app itself swaps the socket while the entrypoint re-reads its secrets: each
    re-read is refused (logged), nothing is sent, and the app keeps running."""
    log = shared / "ep.log"
    with log.open("w") as err:
        proc = start_cli(["--control-socket", "", "--user", "nobody", "--",
                          *steal_argv(agent, shared)],
                         env_for(vault_server, agent, ENTRYPOINT_POLL_INTERVAL="1s"),
                         cwd=REPO, stderr=err)
    try:
        wait_until(lambda: (shared / "swapped").exists(), timeout=30, what="the swap")
        agent.drop_connections()  # the next request needs a new connection
        wait_until(lambda: "it is served by uid" in log.read_text(), timeout=30,
                   what="a refused re-read")
        assert proc.poll() is None, log.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert vault_server.root_token.encode() not in stolen(shared)
    assert b"X-Vault" not in stolen(shared)
    assert f"Vault socket {agent.path} refused" in log.read_text()
