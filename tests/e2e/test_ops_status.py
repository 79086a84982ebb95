"""`entrypoint status` over the control socket has the peer checks of `rotate` (issue 17):
another user is denied without the status being built, a listener run by another user
is not believed, a failing snapshot answers an error rather than killing the server, and
an unknown request is still refused. In-process ControlServer on a real abstract socket,
other users made with setuid in a fork (tests/e2e/test_control_socket.py)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator

import pytest

from entrypoint.config.model import Config
from entrypoint.errors import PermissionDenied, UnavailableError
from entrypoint.ops.control import ControlServer, request_status
from tests.e2e.test_control_socket import (
    LOG,
    NOBODY,
    as_user,
    connect,
    impostor,
    needs_root,
    unique_name,
)

SNAPSHOT = {"mode": "supervise", "keys": [{"key": "vault:kv/app/db", "kind": "kv2"}]}


@pytest.fixture
def served() -> Iterator[tuple[ControlServer, list[str]]]:
    built: list[str] = []

    def status() -> bytes:
        built.append("status")
        return json.dumps(SNAPSHOT).encode() + b"\n"

    srv = ControlServer(unique_name(), lambda reason: None, LOG, on_status=status)
    srv.start()
    yield srv, built
    srv.stop()


def test_status_is_answered_to_our_own_user(served: tuple[ControlServer, list[str]]) -> None:
    srv, built = served
    assert request_status(Config(control_socket=srv.name)) == SNAPSHOT
    assert built == ["status"]


@needs_root
def test_status_is_denied_to_another_user_without_being_built(
        served: tuple[ControlServer, list[str]]) -> None:
    srv, built = served

    def ask() -> None:
        with connect(srv.name) as sock:
            # The server says "denied" and hangs up as it accepts: our request may find
            # the connection closed already, as the real client allows for.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(b"status\n")
            assert sock.recv(200).startswith(b"denied")

    assert as_user(NOBODY, ask) == 0
    assert built == []


def test_a_failing_snapshot_answers_an_error_and_the_server_goes_on() -> None:
    def broken() -> bytes:
        raise RuntimeError("bug")

    srv = ControlServer(unique_name(), lambda reason: None, LOG, on_status=broken)
    srv.start()
    try:
        with pytest.raises(UnavailableError, match="unexpected answer"):
            request_status(Config(control_socket=srv.name))
        with connect(srv.name) as sock:  # still serving
            sock.sendall(b"stats\n")
            assert sock.recv(100) == b"error: unknown request\n"
    finally:
        srv.stop()


@needs_root
def test_status_client_refuses_a_listener_run_by_another_user() -> None:
    name = unique_name()
    with impostor(name, b'{"mode": "fake"}\n'), \
            pytest.raises(PermissionDenied, match=f"uid {NOBODY}"):
        request_status(Config(control_socket=name))
