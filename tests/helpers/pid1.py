"""Drive ``run_supervisor.py`` around ``print_signals.py``: real processes, real signals.

    with Supervised(tmp_path, child_args=["--stay"]) as run:
        run.ready()                       # waits for the child's "ready" line
        run.kill(signal.SIGHUP)
        run.wait_line("signal 1")
        run.kill(signal.SIGTERM)
        assert run.wait() == 0

Every wait has a deadline; nothing sleeps for a fixed time to hide a race.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType

from tests.helpers.cli import REPO, clean_env, wait_until

PRINT_SIGNALS = [sys.executable, str(REPO / "tests" / "helpers" / "print_signals.py")]
DRIVER = [sys.executable, "-m", "tests.helpers.run_supervisor"]


class Supervised:
    def __init__(self, tmp_path: Path, driver_args: Sequence[str] = (),
                 child_args: Sequence[str] = (), *, command: Sequence[str] | None = None,
                 prefix: Sequence[str] = (), out: Path | None = None,
                 python: str = sys.executable) -> None:
        self.dir = tmp_path
        self.out = out or tmp_path / "out.txt"
        self.marker = tmp_path / "marker.txt"
        self.control = tmp_path / "control.jsonl"
        self.stderr = tmp_path / "supervisor.log"
        self.stdout = tmp_path / "supervisor.out"
        child = list(command) if command is not None else [
            python, PRINT_SIGNALS[1], "--out", str(self.out), *child_args]
        argv = [*prefix, *DRIVER, "--marker", str(self.marker), "--control", str(self.control),
                *driver_args, "--", *child]
        with open(self.stderr, "wb") as err, open(self.stdout, "wb") as stdout:
            self.proc = subprocess.Popen(argv, env=clean_env(), cwd=REPO, stdout=stdout,
                                         stderr=err)

    def __enter__(self) -> Supervised:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for line in self.lines():  # children left behind by a failed test
            if line.startswith(("ready ", "worker-ready ")):
                pid = int(fields(line)["pid"])
                if is_alive(pid):
                    os.kill(pid, signal.SIGKILL)

    # -- what happened ---------------------------------------------------------------

    def lines(self, path: Path | None = None) -> list[str]:
        try:
            return (path or self.out).read_text().splitlines()
        except FileNotFoundError:
            return []

    def log(self) -> str:
        return self.stderr.read_text()

    def wait_line(self, wanted: str | Callable[[str], bool], path: Path | None = None,
                  timeout: float = 10.0) -> str:
        def match(line: str) -> bool:  # a word, not a prefix: "signal 2" is not "signal 28"
            if callable(wanted):
                return wanted(line)
            return line == wanted or line.startswith(wanted + " ")

        found = wait_until(lambda: next((ln for ln in self.lines(path) if match(ln)), None),
                           timeout=timeout, what=f"{wanted!r} in {path or self.out}; "
                                                 f"log so far:\n{self.log()}")
        assert isinstance(found, str)
        return found

    def ready(self, gen: str = "1") -> dict[str, str]:
        return fields(self.wait_line(lambda ln: ln.startswith("ready ")
                                     and f" gen={gen} " in ln))

    def wait_log(self, text: str, timeout: float = 10.0) -> None:
        wait_until(lambda: text in self.log(), timeout=timeout,
                   what=f"{text!r} in the supervisor's log:\n{self.log()}")

    # -- acting on it ----------------------------------------------------------------

    def kill(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def post(self, **event: object) -> None:
        with open(self.control, "a", encoding="utf-8") as control:
            control.write(json.dumps(event) + "\n")

    def wait(self, timeout: float = 15.0) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"supervisor still running after {timeout}s; log:\n"
                                 f"{self.log()}") from None


def fields(line: str) -> dict[str, str]:
    return dict(word.split("=", 1) for word in line.split() if "=" in word)


def stat_of(pid: int) -> tuple[str, int] | None:
    """(state, ppid) of ``pid`` from /proc, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            state, ppid = stat.read().rsplit(")", 1)[1].split()[:2]
    except (OSError, IndexError, ValueError):
        return None
    return state, int(ppid)


def processes() -> Iterator[tuple[int, str, int]]:
    """(pid, state, ppid) of every process, as dumb-init's tests walk /proc."""
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (found := stat_of(int(entry))) is not None:
            yield int(entry), *found


def is_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    found = stat_of(pid)
    return found is not None and found[0] != "Z"


def zombies_of(parent: int) -> list[int]:
    return [pid for pid, state, ppid in processes() if state == "Z" and ppid == parent]


def children_of(parent: int) -> list[int]:
    """Live (non-zombie) children of ``parent``."""
    return [pid for pid, state, ppid in processes() if state != "Z" and ppid == parent]


def elapsed(since: float) -> float:
    return time.monotonic() - since
