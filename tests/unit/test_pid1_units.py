"""Pure pieces of the supervisor: wait-status decoding, /proc reading, redaction."""

from __future__ import annotations

import os
import signal

import pytest

from entrypoint.process import reaper, signals
from entrypoint.process.events import Restart
from entrypoint.process.identity import resolve_user


@pytest.mark.parametrize(("status", "code", "text"), [
    (0, 0, "code=0"),
    (3 << 8, 3, "code=3"),
    (255 << 8, 255, "code=255"),
    (signal.SIGTERM, 143, "code=143 (killed by SIGTERM)"),
    (signal.SIGKILL, 137, "code=137 (killed by SIGKILL)"),
    (signal.SIGSEGV | 0x80, 139, "code=139 (killed by SIGSEGV)"),  # with a core dump
])
def test_wait_status_decoding(status: int, code: int, text: str) -> None:
    """Never status >> 8 (gunicorn's old bug): a signal death is 128+N, as sh says."""
    assert reaper.exit_code(status) == code
    assert reaper.describe(status) == text


def test_handles_reads_this_process() -> None:
    previous = signal.signal(signal.SIGUSR2, lambda *_: None)
    try:
        assert signals.handles(os.getpid(), signal.SIGUSR2) is True
        signal.signal(signal.SIGUSR2, signal.SIG_DFL)
        assert signals.handles(os.getpid(), signal.SIGUSR2) is False
    finally:
        signal.signal(signal.SIGUSR2, previous)
    assert signals.handles(2**22 + 12345, signal.SIGHUP) is None  # no such pid


def test_restart_repr_hides_the_environment() -> None:
    assert "hunter2" not in repr(Restart({"DB_PASSWORD": "hunter2"}, "rotated"))


def test_signal_sets() -> None:
    assert {signal.SIGCHLD, signal.SIGPIPE, signal.SIGXFSZ}.isdisjoint(signals.FORWARDED)
    assert {signal.SIGALRM, signal.SIGSEGV, signal.SIGTTIN, signal.SIGRTMAX} <= signals.FORWARDED
    assert signals.WAITED <= signals.FORWARDED
    assert {signal.SIGKILL, signal.SIGSTOP}.isdisjoint(signals.CHILD_DEFAULTS)
    assert signals.name(signal.SIGHUP) == "SIGHUP"


def test_numeric_user_and_group() -> None:
    identity = resolve_user("4242:4343")
    assert (identity.uid, identity.gid, identity.groups) == (4242, 4343, (4343,))
