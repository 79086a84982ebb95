"""The control socket under attack (issue 14, item 5): a huge request, a silent client,
a flood of refused connections, a user who binds the name first; and the per-container
default name. In-process: a real ControlServer on a real abstract socket, the client
function `entrypoint rotate` runs, and real other users made with setuid in a fork."""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator

import pytest

from entrypoint.config.model import Config
from entrypoint.errors import PermissionDenied
from entrypoint.ops import control
from entrypoint.ops.control import ControlServer, address, request_rotation, resolve_name
from tests.helpers.clock import Clock
from tests.services.ports import wait_until

LOG = logging.getLogger("entrypoint")
NOBODY = 65534
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="another uid needs root")


def unique_name() -> str:
    return f"@entrypoint-test-{secrets.token_hex(6)}"


@pytest.fixture
def server() -> Iterator[Callable[..., tuple[ControlServer, list[str]]]]:
    made: list[ControlServer] = []

    def make(**options: object) -> tuple[ControlServer, list[str]]:
        asked: list[str] = []
        srv = ControlServer(unique_name(), asked.append, LOG, **options)  # type: ignore[arg-type]
        srv.start()
        made.append(srv)
        return srv, asked

    yield make
    for srv in made:
        srv.stop()


def connect(name: str, timeout: float | None = 5.0) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect(address(name))
    return sock


def as_user(uid: int, fn: Callable[[], None]) -> int:
    """Run ``fn`` in a forked child that switched to ``uid``; its exit code."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            fn()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_rotate_is_answered(server: Callable[..., tuple[ControlServer, list[str]]],
                            capsys: pytest.CaptureFixture[str]) -> None:
    srv, asked = server()
    assert request_rotation(Config(control_socket=srv.name), {}, LOG) == 0
    assert len(asked) == 1 and capsys.readouterr().out.startswith("ok")


def test_huge_request_is_cut_off_unread(
        server: Callable[..., tuple[ControlServer, list[str]]]) -> None:
    """The attack: one 1.5 GiB line grew the entrypoint to 2.1 GB. Now the server stops
    reading at MAX_REQUEST bytes and hangs up, so the sender's writes fail long before
    64 MiB have gone (before the fix the server read the whole line, then answered)."""
    srv, asked = server()
    sock = connect(srv.name, timeout=10)
    with sock, pytest.raises((BrokenPipeError, ConnectionResetError)):
        sock.sendall(b"r" * (64 << 20))
    assert asked == []


def test_silent_client_does_not_delay_a_real_rotate(
        server: Callable[..., tuple[ControlServer, list[str]]],
        capsys: pytest.CaptureFixture[str]) -> None:
    """The attack: a client that connects and says nothing delayed a real rotate by 9 s.
    Connections are served side by side: with the silent one still open (its deadline
    far off), the real request is answered. Before the fix the server sat in the silent
    client's read until its 10 s timeout."""
    srv, asked = server(deadline=60.0)
    silent = connect(srv.name)
    answered = threading.Event()
    real = threading.Thread(target=lambda: (
        request_rotation(Config(control_socket=srv.name), {}, LOG), answered.set()))
    with silent:
        real.start()
        try:
            assert answered.wait(3), "the real request waited behind the silent client"
        finally:
            silent.close()
            real.join(15)
        assert len(asked) == 1


def test_silent_client_is_dropped_at_its_deadline(
        server: Callable[..., tuple[ControlServer, list[str]]]) -> None:
    srv, asked = server(deadline=0.2)
    with connect(srv.name, timeout=10) as silent:
        assert silent.recv(1) == b""  # hung up by the server, not by our timeout
    assert asked == []


def test_many_silent_clients_make_room_for_a_real_one(
        server: Callable[..., tuple[ControlServer, list[str]]],
        capsys: pytest.CaptureFixture[str]) -> None:
    srv, asked = server(deadline=60.0)
    # Blocking connects: a full backlog makes a non-blocking one fail at once.
    silent = [connect(srv.name, timeout=None) for _ in range(control.MAX_PENDING * 2)]
    try:
        assert request_rotation(Config(control_socket=srv.name), {}, LOG) == 0
        assert len(asked) == 1
    finally:
        for sock in silent:
            sock.close()


@needs_root
def test_refused_connections_warn_once_a_minute(
        server: Callable[..., tuple[ControlServer, list[str]]],
        caplog: pytest.LogCaptureFixture) -> None:
    """The attack: 22,000 refused connections made 22,000 warning lines. Now one line per
    WARN_EVERY (injected clock), and the next one counts those not shown."""
    clock = Clock()
    srv, asked = server(clock=clock)

    def knock(times: int) -> Callable[[], None]:
        def run() -> None:
            for _ in range(times):
                with connect(srv.name) as sock:
                    assert sock.recv(100).startswith(b"denied")
        return run

    caplog.set_level(logging.WARNING, logger="entrypoint")
    assert as_user(NOBODY, knock(300)) == 0
    refused = [r for r in caplog.records if "refused a rotation request" in r.getMessage()]
    assert len(refused) == 1 and f"uid {NOBODY}" in refused[0].getMessage()
    clock.now += control.WARN_EVERY
    assert as_user(NOBODY, knock(1)) == 0
    refused = [r for r in caplog.records if "refused a rotation request" in r.getMessage()]
    assert len(refused) == 2 and "299 more refused" in refused[1].getMessage()
    assert asked == []


@contextlib.contextmanager
def impostor(name: str, answer: bytes) -> Iterator[None]:
    """A listener bound to ``name`` by another user (nobody) in a forked child, answering
    one connection with ``answer``; there while the block runs."""
    ready_r, ready_w = os.pipe()
    done_r, done_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.bind(address(name))
                sock.listen(1)
                os.write(ready_w, b"x")
                sock.settimeout(10)
                try:
                    conn, _ = sock.accept()
                    with conn:
                        conn.sendall(answer)
                except TimeoutError:
                    pass
                os.read(done_r, 1)
        finally:
            os._exit(0)
    try:
        assert os.read(ready_r, 1) == b"x"
        yield
    finally:
        os.write(done_w, b"x")
        os.waitpid(pid, 0)
        for fd in (ready_r, ready_w, done_r, done_w):
            os.close(fd)


@needs_root
def test_client_refuses_a_server_run_by_another_user() -> None:
    """The attack: a user who binds the name first answers `entrypoint rotate` with a fake
    "ok". The client now checks the listener's uid with SO_PEERCRED before it asks."""
    name = unique_name()
    with impostor(name, b"ok: every dynamic secret will be fetched again\n"), \
            pytest.raises(PermissionDenied, match=f"uid {NOBODY}"):
        request_rotation(Config(control_socket=name), {}, LOG)


def test_default_name_is_one_per_mount_namespace() -> None:
    """`auto` names the socket after the mount namespace: the containers of one pod or
    ECS task share a network namespace (and so the abstract names) but not that."""
    own = resolve_name("auto")
    assert own == f"@entrypoint-{os.stat('/proc/self/ns/mnt').st_ino}"
    assert resolve_name("@custom") == "@custom" and resolve_name("/run/x.sock") == "/run/x.sock"


@needs_root
def test_two_containers_in_one_network_namespace_do_not_collide(
        capsys: pytest.CaptureFixture[str]) -> None:
    """Two entrypoints with the default name in one network namespace but two mount
    namespaces (as two containers of one pod): both listen, each is reached from its
    own. Before the fix both used `@entrypoint`, and the second could not listen."""
    if subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode != 0:
        pytest.skip("unshare -m is not permitted here")
    asked: list[str] = []
    here = ControlServer("auto", asked.append, LOG)
    here.start()
    script = ("import logging, sys\n"
              "from entrypoint.ops.control import ControlServer\n"
              "s = ControlServer('auto', lambda r: None, logging.getLogger('x'))\n"
              "print(s.name, flush=True)\n"
              "sys.stdin.read()\n"
              "s.stop()\n")
    other = subprocess.Popen(["unshare", "-m", sys.executable, "-c", script],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                             cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    try:
        assert other.stdout is not None
        name = other.stdout.readline().strip()
        assert name.startswith("@entrypoint-") and name != here.name
        assert request_rotation(Config(control_socket="auto"), {}, LOG) == 0
        assert len(asked) == 1
    finally:
        assert other.stdin is not None
        other.stdin.close()
        other.wait(timeout=10)
        here.stop()
    assert other.returncode == 0


def test_stop_frees_the_name_and_ends_the_thread(
        server: Callable[..., tuple[ControlServer, list[str]]]) -> None:
    srv, _ = server()
    threads = lambda: [t for t in threading.enumerate() if t.name == "control"]  # noqa: E731
    assert threads()
    srv.stop()
    wait_until(lambda: not srv._thread.is_alive(), 5, "the control thread to end")
    with pytest.raises(ConnectionRefusedError):
        connect(srv.name)
