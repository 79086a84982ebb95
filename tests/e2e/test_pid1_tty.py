"""On a terminal (docker run -it): the app's group gets the foreground, so it can read
the terminal and ^C reaches it once, from the terminal, not a second time from us."""

from __future__ import annotations

import os
import pty
import select
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.helpers.cli import REPO, clean_env, entrypoint_argv
from tests.helpers.pid1 import PRINT_SIGNALS, fields, is_alive


def drain(master: int, into: bytearray, until: float) -> None:
    """Keep the terminal's output moving so nobody blocks writing to it."""
    while time.monotonic() < until:
        ready, _, _ = select.select([master], [], [], 0.02)
        if not ready:
            return
        try:
            into += os.read(master, 4096)
        except OSError:
            return


def wait_for(out: Path, prefix: str, master: int, seen: bytearray) -> str:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        drain(master, seen, deadline)
        lines = out.read_text().splitlines() if out.exists() else []
        for line in lines:
            if line == prefix or line.startswith(prefix + " "):
                return line
    raise AssertionError(f"no {prefix!r} in {out}; terminal:\n{seen.decode(errors='replace')}")


def test_child_owns_the_terminal_and_gets_ctrl_c_once(tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    argv = [sys.executable, "-m", "tests.helpers.run_supervisor", "--kill-timeout", "5", "--",
            *PRINT_SIGNALS, "--out", str(out), "--read-stdin"]
    pid, master = pty.fork()
    if pid == 0:  # pragma: no cover - the child of pty.fork
        os.chdir(REPO)
        os.execve(argv[0], argv, clean_env())
    seen = bytearray()
    try:
        child = fields(wait_for(out, "ready", master, seen))
        assert child["tty_fg"] == "yes"
        os.write(master, b"hello\n")
        assert wait_for(out, "read", master, seen) == "read hello"
        os.write(master, b"\x03")  # ^C: SIGINT to the terminal's foreground group
        assert wait_for(out, f"signal {signal.SIGINT}", master, seen)
        deadline = time.monotonic() + 10
        while (status := os.waitpid(pid, os.WNOHANG))[0] == 0:
            assert time.monotonic() < deadline, seen.decode(errors="replace")
            drain(master, seen, deadline)
        pid = 0
        assert os.waitstatus_to_exitcode(status[1]) == 0
        drain(master, seen, time.monotonic() + 1)
        log = seen.decode(errors="replace")
        assert "child exited code=0" in log
        assert "received SIGINT" not in log  # the terminal delivered it; we did not repeat it
        assert out.read_text().splitlines().count(f"signal {signal.SIGINT}") == 1
    finally:
        if pid:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(master)


def test_own_log_lines_with_tostop_never_stop_the_entrypoint(tmp_path: Path) -> None:
    """With ``stty tostop`` a background process that writes to the terminal gets SIGTTOU.
    Once the app holds the foreground, the entrypoint is in the background: its own log
    line (here "forwarded SIGHUP") must be written, not stop it (nor be forwarded as a
    SIGTTOU to the app)."""
    out = tmp_path / "out.txt"
    argv = ["sh", "-c", 'stty tostop && exec "$@"', "sh", sys.executable, "-m",
            "tests.helpers.run_supervisor", "--kill-timeout", "5", "--", *PRINT_SIGNALS,
            "--out", str(out), "--stay"]
    pid, master = pty.fork()
    if pid == 0:  # pragma: no cover - the child of pty.fork
        os.chdir(REPO)
        os.execvpe(argv[0], argv, clean_env())
    seen = bytearray()
    try:
        child = fields(wait_for(out, "ready", master, seen))
        assert child["tty_fg"] == "yes"
        os.kill(pid, signal.SIGHUP)
        wait_for(out, f"signal {signal.SIGHUP}", master, seen)
        deadline = time.monotonic() + 10
        while b"forwarded SIGHUP" not in seen:
            assert time.monotonic() < deadline, seen.decode(errors="replace")
            drain(master, seen, deadline)
        os.kill(pid, signal.SIGTERM)
        wait_for(out, f"signal {signal.SIGTERM}", master, seen)
        os.kill(pid, signal.SIGTERM)  # the app stays: the second one kills it
        while (status := os.waitpid(pid, os.WNOHANG))[0] == 0:
            assert time.monotonic() < deadline + 10, seen.decode(errors="replace")
            drain(master, seen, deadline + 10)
        pid = 0
        assert os.waitstatus_to_exitcode(status[1]) == 128 + signal.SIGKILL
        assert f"signal {signal.SIGTTOU}" not in out.read_text().splitlines()
    finally:
        if pid:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(master)
        app = fields(next((ln for ln in out.read_text().splitlines()
                           if ln.startswith("ready ")), "ready")) if out.exists() else {}
        if "pid" in app and is_alive(int(app["pid"])):  # it survives a failed test's kill
            os.kill(int(app["pid"]), signal.SIGKILL)


def tagged(tag: str) -> list[int]:
    """Processes whose environment carries ``tag``: what a run left behind."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and tag.encode() in Path(f"/proc/{entry}/environ").read_bytes():
                found.append(int(entry))
        except OSError:
            pass
    return found


@pytest.mark.skipif(not (shutil.which("script") and shutil.which("dash")),
                    reason="needs script(1) and dash")
def test_100_interactive_shells_on_a_terminal_never_hang() -> None:
    """issue 19.2: an interactive shell checks that it is the terminal's foreground and
    stops itself with SIGTTIN until it is. Started just before the entrypoint handed the
    foreground over, it stayed stopped for good (10 in 100 starts, 22 in 40 on a loaded
    machine). Now each of 100 shells under a pseudo-terminal reads "exit 0" and exits."""
    tag = f"EP_TTY_TEST={uuid.uuid4().hex}"
    command = shlex.join(entrypoint_argv(["--control-socket", "", "--", "dash"]))
    env = clean_env({tag.split("=")[0]: tag.split("=")[1]})

    def one(_: int) -> str:
        try:
            done = subprocess.run(["script", "-qec", command, "/dev/null"], input=b"exit 0\n",
                                  capture_output=True, env=env, cwd=REPO, timeout=20)
        except subprocess.TimeoutExpired:
            return "hung"
        return "ok" if done.returncode == 0 else f"exit {done.returncode}"

    try:
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(one, range(100)))
    finally:
        for pid in tagged(tag):
            os.kill(pid, signal.SIGKILL)
    assert results.count("ok") == 100, sorted(set(results))
