"""Measurement helpers shared by the benchmark cases: rows, timing, journals, RSS.

Everything here is a measurement tool, never an assertion. Every wait has a count bound
and a time bound, and every process started is stopped by the :class:`Context` that
started it.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import select
import shutil
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.venv import bench_venv
from tests.helpers.cli import clean_env
from tests.helpers.journal import events

REPO = Path(__file__).resolve().parents[1]
PROBE = str(REPO / "tests/helpers/app_probe.py")
NS_PER_MS = 1_000_000


class BenchError(RuntimeError):
    """A benchmark could not be measured (a process failed, a wait timed out)."""


# -- results ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    """``kind`` "max": measured <= limit; "ratio": measured / baseline <= limit."""

    kind: str
    limit: float
    text: str

    def met(self, measured: float, baseline: float | None) -> bool:
        if self.kind == "ratio":
            return baseline is not None and baseline > 0 and measured / baseline <= self.limit
        return measured <= self.limit


@dataclass
class Row:
    name: str
    unit: str
    target: Target
    samples: list[float]
    baseline_samples: list[float]
    baseline_what: str
    what: str = ""
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def measured(self) -> float:
        return statistics.median(self.samples)

    @property
    def baseline(self) -> float | None:
        return statistics.median(self.baseline_samples) if self.baseline_samples else None

    @property
    def ratio(self) -> float | None:
        base = self.baseline
        return self.measured / base if base else None

    @property
    def passed(self) -> bool:
        return self.target.met(self.measured, self.baseline)

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["target"] = self.target.text
        out.update(measured=self.measured, baseline=self.baseline, ratio=self.ratio,
                   passed=self.passed, runs=len(self.samples))
        return out


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "req/h":  # the target is a small count: show the second decimal
        return f"{value:.2f} {unit}"
    return f"{value:.1f} {unit}"


def table(rows: Sequence[Row]) -> str:
    header = ("target", "runs", "measured (median)", "baseline (median)", "difference",
              "ratio", "target", "result")
    lines = [header]
    for row in rows:
        ratio = f"{row.ratio:.2f}x" if row.ratio is not None else "-"
        base = row.baseline
        diff = "-" if base is None else "+" * (row.measured >= base) + fmt(row.measured - base,
                                                                           row.unit)
        lines.append((row.name, str(len(row.samples)), fmt(row.measured, row.unit),
                      fmt(base, row.unit), diff, ratio, row.target.text,
                      "PASS" if row.passed else "FAIL"))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
           for line in lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


# -- time -----------------------------------------------------------------------------------

def now_ns() -> int:
    return time.perf_counter_ns()


def ms(ns: int) -> float:
    return ns / NS_PER_MS


# -- processes ------------------------------------------------------------------------------

_sockets = itertools.count()


def entrypoint_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment the tests give the CLI, minus the path to this tree (see
    :func:`baseline_env`). The control socket stays on, as by default, under a name of its
    own: an abstract socket name is global to the machine, and other test runs may be
    using the default one."""
    env = baseline_env()
    env["ENTRYPOINT_CONTROL_SOCKET"] = f"@entrypoint-bench-{os.getpid()}-{next(_sockets)}"
    env.update(extra or {})
    return env


def baseline_env() -> dict[str, str]:
    """The tests' environment for a subprocess (nothing that configures the entrypoint)
    without their ``PYTHONPATH`` to this tree: the measured commands import the package
    installed in the benchmark venv (:mod:`benchmarks.venv`), never the working tree.
    Bytecode caching stays on, as for any installed package."""
    env = clean_env()
    for name in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONDONTWRITEBYTECODE",
                 "VIRTUAL_ENV"):
        env.pop(name, None)
    return env


def python() -> str:
    """The benchmark venv's interpreter: for baselines, the app probe and the stand-ins."""
    return bench_venv().python


def timed_run(argv: Sequence[str], env: Mapping[str, str], timeout: float,
              log: Path, cpu: list[float] | None = None) -> float:
    """Run ``argv`` to completion; milliseconds from just before spawn to its exit. The
    CPU time it used (user + system, ms) is appended to ``cpu`` when given: unlike the
    wall time, it hardly moves when other work shares the machine."""
    with log.open("wb") as err:
        start = now_ns()
        proc = subprocess.Popen(list(argv), env=dict(env), stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=err)
        timer = threading.Timer(timeout, proc.kill)  # the bound on the blocking wait
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        end = now_ns()
        code = proc.returncode = os.waitstatus_to_exitcode(status)
        if code == -signal.SIGKILL:
            raise BenchError(f"{argv[:4]} did not finish in {timeout}s")
    if cpu is not None:
        cpu.append((usage.ru_utime + usage.ru_stime) * 1000)
    if code != 0:
        raise BenchError(f"{' '.join(argv[:6])} exited {code}:\n{tail(log)}")
    return ms(end - start)


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> int:
    """SIGTERM, then SIGKILL after ``timeout``; the exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def cpu_ms(pid: int) -> float:
    """User + system CPU time a running process has used so far (10 ms resolution)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15
    return ticks * 1000 / os.sysconf("SC_CLK_TCK")


def rss_kb(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM and the RSS split (anon/file/shmem) from /proc/PID/status, in kB."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem", "Threads"):
                out[key] = int(value.split()[0])
    return out


# -- the app probe's journal, as a FIFO ---------------------------------------------------

class Journal:
    """The app probe's journal, written through a FIFO so that the benchmark wakes the
    moment a line is written (no polling) and stamps its arrival. Every complete line is
    appended to ``<name>.jsonl`` beside it, which is read with the tests' own reader
    (``tests.helpers.journal.events``): one reading of the probe's format. We hold a
    writer end ourselves so that the probe closing its end never reads as end-of-file."""

    def __init__(self, folder: Path, name: str = "journal") -> None:
        self.path = folder / name
        self.copy = folder / f"{name}.jsonl"
        self.copy.touch()
        os.mkfifo(self.path)
        self._read = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        self._write = os.open(self.path, os.O_WRONLY)
        self._buffer = b""
        self._arrivals: list[int] = []  # ns each line arrived at, in line order
        self.events: list[tuple[int, dict[str, Any]]] = []  # (arrival ns, event)

    def _pump(self, timeout: float) -> None:
        ready, _, _ = select.select([self._read], [], [], max(0.0, timeout))
        if not ready:
            return
        arrived = now_ns()
        with contextlib.suppress(BlockingIOError):
            self._buffer += os.read(self._read, 65536)
        complete, _, self._buffer = self._buffer.rpartition(b"\n")
        lines = [line for line in complete.split(b"\n") if line.strip()]
        if not lines:
            return
        with self.copy.open("ab") as copy:
            copy.write(b"".join(line + b"\n" for line in lines))
        self._arrivals += [arrived] * len(lines)
        self.events = list(zip(self._arrivals, events(self.copy), strict=True))

    def wait(self, kind: str, count: int = 1, timeout: float = 20.0,
             alive: Callable[[], bool] | None = None) -> tuple[int, dict[str, Any]]:
        """The ``count``-th event of ``kind``: (the ns it arrived at, the event)."""
        deadline = time.monotonic() + timeout
        for _ in range(100_000):
            seen = [e for e in self.events if e[1]["event"] == kind]
            if len(seen) >= count:
                return seen[count - 1]
            left = deadline - time.monotonic()
            if left <= 0:
                break
            if alive is not None and not alive():
                raise BenchError(f"the process ended before {count} {kind!r} event(s)")
            self._pump(min(left, 0.5))
        raise BenchError(f"timed out after {timeout}s waiting for {count} {kind!r} event(s)")

    def drain(self) -> None:
        self._pump(0)

    def close(self) -> None:
        for fd in (self._read, self._write):
            with contextlib.suppress(OSError):
                os.close(fd)


# -- the context of one benchmark invocation -----------------------------------------------

class Context:
    """Runs count, a scratch folder, and everything to stop at the end."""

    def __init__(self, runs: int, keep: bool = False) -> None:
        self.runs = runs
        self.root = Path(tempfile.mkdtemp(prefix="entrypoint-bench-"))
        self.keep = keep
        self.stack = contextlib.ExitStack()
        self.cache: dict[str, Any] = {}
        self._procs: list[subprocess.Popen[bytes]] = []
        self._seq = 0

    def folder(self, name: str) -> Path:
        self._seq += 1
        path = self.root / f"{self._seq:02d}-{name}"
        path.mkdir(parents=True)
        return path

    def journal(self, folder: Path) -> Journal:
        journal = Journal(folder)
        self.stack.callback(journal.close)
        return journal

    def popen(self, argv: Sequence[str], env: Mapping[str, str], log: Path,
              **kwargs: Any) -> subprocess.Popen[bytes]:
        err = log.open("wb")
        self.stack.callback(err.close)
        proc = subprocess.Popen(list(argv), env=dict(env), stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=err, **kwargs)
        self._procs.append(proc)
        return proc

    def once(self, key: str, make: Callable[[], Any]) -> Any:
        """A shared measurement or service, made on first use."""
        if key not in self.cache:
            self.cache[key] = make()
        return self.cache[key]

    def close(self) -> None:
        for proc in reversed(self._procs):
            stop(proc, timeout=5.0)
        self.stack.close()
        if not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Context:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def interleaved(runs: int, *measures: Callable[[], float]) -> Iterator[tuple[float, ...]]:
    """Run each measure once as a warm-up, then ``runs`` rounds A, B, A, B, ... so that load
    from elsewhere on the machine falls on all of them alike."""
    for measure in measures:
        measure()
    for _ in range(runs):
        yield tuple(measure() for measure in measures)


def entrypoint_argv(*args: str) -> list[str]:
    """The benchmark venv's ``entrypoint`` console script: the installed wheel."""
    return [bench_venv().entrypoint, *args]


def probe_argv(journal: Journal, *names: str, file: Path | None = None) -> list[str]:
    argv = [python(), PROBE, str(journal.path), *names]
    if file is not None:
        argv += ["--file", str(file)]
    return argv
