"""Benchmarks on the local secrets directory: no server involved."""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.common import (
    BenchError,
    Context,
    Row,
    Target,
    baseline_env,
    cpu_ms,
    entrypoint_argv,
    entrypoint_env,
    interleaved,
    ms,
    now_ns,
    probe_argv,
    python,
    rss_kb,
    stop,
    timed_run,
)

KV_REFS = 10
SETTLE = 0.5  # seconds after the app runs before RSS is read: watchers and timers started
DB_URL = ("postgresql://${vault:database/creds/app#username}:"
          "${vault:database/creds/app#password}@127.0.0.1/app")


def kv_refs(count: int = KV_REFS) -> dict[str, str]:
    """``count`` variables, each a reference to its own KV path."""
    return {f"SECRET_{i}": f"vault:secret/app/s{i}#value" for i in range(count)}


def write_local_secrets(root: Path, count: int = KV_REFS) -> Path:
    """The local directory answering :func:`kv_refs` and the database credential."""
    (root / "secret/app").mkdir(parents=True)
    for i in range(count):
        (root / f"secret/app/s{i}.json").write_text(json.dumps({"value": f"local-value-{i}"}))
    (root / "database/creds").mkdir(parents=True)
    (root / "database/creds/app.json").write_text(
        json.dumps({"username": "local-user", "password": "local-password"}))
    return root


def write_secret(file: Path, data: dict[str, str]) -> None:
    """Atomically, as editors and config management do."""
    tmp = file.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(file)


# -- start to exec --------------------------------------------------------------------------

def exec_start(ctx: Context) -> list[Row]:
    folder = ctx.folder("exec-start")
    secrets = write_local_secrets(folder / "secrets")
    env = entrypoint_env({"ENTRYPOINT_LOCAL_SECRETS": str(secrets), **kv_refs()})
    true = shutil.which("true") or "/bin/true"
    argv = entrypoint_argv("--exec", "--", true)
    base = [python(), "-c", "pass"]
    log = folder / "stderr"
    cpu: list[float] = []
    base_cpu: list[float] = []
    pairs = list(interleaved(
        ctx.runs,
        lambda: timed_run(argv, env, 30, log, cpu),
        lambda: timed_run(base, baseline_env(), 30, folder / "base-stderr", base_cpu)))
    row = Row(
        name="exec start, local dir, 10 refs", unit="ms",
        target=Target("ratio", 3.0, "<= 3x baseline"),
        samples=[p[0] for p in pairs], baseline_samples=[p[1] for p in pairs],
        baseline_what="python -c pass",
        what="spawn of `entrypoint --exec -- true` (the venv's) to its exit (the exec'd true "
             "included), 10 vault: refs over 10 files of a local secrets directory")
    add_cpu(row, cpu[1:], base_cpu[1:])
    return [row]


def add_cpu(row: Row, cpu: list[float], base_cpu: list[float]) -> None:
    """CPU time (user + system) beside the wall time: it hardly moves with the load."""
    row.extra["cpu_ms"] = cpu
    row.extra["baseline_cpu_ms"] = base_cpu
    if cpu and base_cpu:
        row.notes.append(f"CPU time (median): {statistics.median(cpu):.0f} ms, baseline "
                         f"{statistics.median(base_cpu):.0f} ms "
                         f"({statistics.median(cpu) / max(1.0, statistics.median(base_cpu)):.2f}x)")


# -- the resident supervisor on the local directory -------------------------------------------

def local_supervise_runs(ctx: Context, extra: dict[str, str] | None = None,
                        name: str = "local-supervise",
                        probe: Callable[[], object] | None = None) -> list[dict[str, Any]]:
    """Start the supervisor on 10 KV refs + 1 DB ref from the local directory, ``runs``
    times: ms to the app running, and RSS once it has settled. Shared by two rows."""
    def measure() -> list[dict[str, Any]]:
        folder = ctx.folder(name)
        secrets = write_local_secrets(folder / "secrets")
        env = entrypoint_env({"ENTRYPOINT_LOCAL_SECRETS": str(secrets), **kv_refs(),
                              "DATABASE_URL": DB_URL, **(extra or {})})
        results = []
        for i in range(ctx.runs + 1):  # the first one warms the caches and is dropped
            results.append(supervised_start(ctx, folder / f"run-{i}", env, ["SECRET_0"],
                                            probe=probe))
        return results[1:]

    runs: list[dict[str, Any]] = ctx.once(name, measure)
    return runs


def supervised_start(ctx: Context, folder: Path, env: dict[str, str],
                     names: list[str], settle: float = SETTLE,
                     probe: Callable[[], object] | None = None) -> dict[str, Any]:
    """One run of the supervisor with an app probe: ms from spawn to the probe's first
    journal line, RSS of the entrypoint process ``settle`` seconds later."""
    folder.mkdir(parents=True)
    journal = ctx.journal(folder)
    argv = entrypoint_argv("--", *probe_argv(journal, *names))
    spawned_at = time.time()
    start = now_ns()
    proc = ctx.popen(argv, env, folder / "stderr")
    try:
        arrived, event = journal.wait("start", alive=lambda: proc.poll() is None)
        running_at = time.time()  # wall clock, as in the Vault test server's request log
        cpu = cpu_ms(proc.pid)
        if probe is not None:
            probe()  # e.g. a scrape, so that what it allocates is counted
        time.sleep(settle)
        memory = rss_kb(proc.pid)
    except BenchError as exc:
        stop(proc)
        raise BenchError(f"{exc}\n{(folder / 'stderr').read_text(errors='replace')[-2000:]}"
                         ) from None
    stop(proc)
    return {"start_ms": ms(arrived - start), "rss": memory, "env": event["env"],
            "running_at": running_at, "cpu_ms": cpu,
            "phases": phases((folder / "stderr").read_text(errors="replace"), spawned_at,
                             running_at)}


PHASES = (("interpreter, imports, config, login", ("logged in", "using the given token",
                                                   "references answered by")),
          ("fetches", ("fetched",)),
          ("spawn of the app", ("child started",)))


def phases(log: str, spawned_at: float, running_at: float) -> dict[str, float]:
    """Milliseconds between the spawn, the log lines that end each phase (their last
    occurrence) and the app's first journal line, from the log's own timestamps (1 ms)."""
    from datetime import datetime

    ends: dict[str, float] = {}
    for line in log.splitlines():
        stamp, _, text = line.partition(" ")
        for name, markers in PHASES:
            if any(marker in text for marker in markers):
                with contextlib.suppress(ValueError):
                    ends[name] = datetime.fromisoformat(stamp.replace("Z", "+00:00")
                                                        ).timestamp()
    out: dict[str, float] = {}
    last = spawned_at
    for name, _ in PHASES:
        if name in ends:
            out[name] = round((ends[name] - last) * 1000, 1)
            last = ends[name]
    out["the app's own start"] = round((running_at - last) * 1000, 1)
    return out


def bare_python_rss(ctx: Context) -> list[dict[str, int]]:
    """RSS of a bare ``python -c "import time; time.sleep(60)"`` (the benchmark venv's
    interpreter), ``runs`` times."""
    def measure() -> list[dict[str, int]]:
        folder = ctx.folder("bare-python")
        out = []
        for i in range(ctx.runs):
            proc = ctx.popen([python(), "-c", "import time; time.sleep(60)"],
                             baseline_env(), folder / f"stderr-{i}")
            time.sleep(SETTLE)
            if proc.poll() is not None:
                raise BenchError("the bare python baseline exited early")
            out.append(rss_kb(proc.pid))
            stop(proc)
        return out

    runs: list[dict[str, int]] = ctx.once("bare-python", measure)
    return runs


def probe_start_ms(ctx: Context) -> list[float]:
    """The app probe's own cold start, spawned directly: spawn to its first journal line."""
    def measure() -> list[float]:
        folder = ctx.folder("probe-start")
        journal = ctx.journal(folder)
        out = []
        for i in range(ctx.runs + 1):
            start = now_ns()
            proc = ctx.popen(probe_argv(journal), baseline_env(), folder / f"stderr-{i}")
            arrived, _ = journal.wait("start", count=i + 1,
                                      alive=lambda p=proc: p.poll() is None)  # type: ignore[misc]
            out.append(ms(arrived - start))
            stop(proc)
            journal.wait("stop", count=i + 1)
        return out[1:]

    runs: list[float] = ctx.once("probe-start", measure)
    return runs


def mb(kb: int) -> float:
    return kb / 1024


def rss_local(ctx: Context) -> list[Row]:
    runs = local_supervise_runs(ctx)
    base = bare_python_rss(ctx)
    row = Row(
        name="supervisor RSS, local dir", unit="MB",
        target=Target("max", 14.0, "<= 14 MB"),
        samples=[mb(r["rss"]["VmRSS"]) for r in runs],
        baseline_samples=[mb(b["VmRSS"]) for b in base],
        baseline_what='python -c "import time; time.sleep(60)"',
        what="VmRSS of the entrypoint process (supervise mode, 10 KV + 1 DB refs from the "
             f"local directory, watched with watchdog) {SETTLE}s after the app probe started")
    row.extra["peak_VmHWM_MB"] = [mb(r["rss"]["VmHWM"]) for r in runs]
    row.extra["RssAnon_MB"] = [mb(r["rss"]["RssAnon"]) for r in runs]
    row.extra["RssFile_MB"] = [mb(r["rss"]["RssFile"]) for r in runs]
    row.extra["threads"] = [r["rss"]["Threads"] for r in runs]
    return [row]


def rss_local_metrics(ctx: Context) -> list[Row]:
    """The same with metrics_listen on: prometheus_client, an HTTP server thread and the
    event observer, scraped once before the sample (a scrape builds every family)."""
    import socket

    with socket.socket() as sock:  # a free port (nobody else binds loopback here)
        sock.bind(("127.0.0.1", 0))
        listen = f"127.0.0.1:{sock.getsockname()[1]}"
    def scrape() -> object:
        import urllib.request

        deadline = time.monotonic() + 10
        while True:  # the listener starts before the app; retry only a refused connect
            try:
                with urllib.request.urlopen(f"http://{listen}/metrics", timeout=5) as r:
                    return r.read()
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    runs = local_supervise_runs(ctx, {"ENTRYPOINT_METRICS_LISTEN": listen},
                                name="local-supervise-metrics", probe=scrape)
    row = Row(
        name="supervisor RSS, local dir, metrics on", unit="MB",
        target=Target("max", 20.0, "<= 20 MB"),
        samples=[mb(r["rss"]["VmRSS"]) for r in runs],
        baseline_samples=[mb(b["VmRSS"]) for b in bare_python_rss(ctx)],
        baseline_what='python -c "import time; time.sleep(60)"',
        what="as 'supervisor RSS, local dir' with ENTRYPOINT_METRICS_LISTEN set "
             "(prometheus_client loaded, the listener's thread running)")
    row.extra["peak_VmHWM_MB"] = [mb(r["rss"]["VmHWM"]) for r in runs]
    row.extra["threads"] = [r["rss"]["Threads"] for r in runs]
    return [row]


# -- a file change reaching the app -----------------------------------------------------------

WAIT_MIN = 0.0  # the wait window under test is subtracted; it is zero here


def change_restart(ctx: Context) -> list[Row]:
    folder = ctx.folder("change-restart")
    secrets = write_local_secrets(folder / "secrets")
    journal = ctx.journal(folder)
    env = entrypoint_env({"ENTRYPOINT_LOCAL_SECRETS": str(secrets), **kv_refs()})
    argv = entrypoint_argv("--wait-min", f"{WAIT_MIN}s", "--wait-max", f"{WAIT_MIN}s",
                           "--kill-timeout", "5s", "--", *probe_argv(journal, "SECRET_0"))
    proc = ctx.popen(argv, env, folder / "stderr")
    alive = lambda: proc.poll() is None  # noqa: E731
    journal.wait("start", alive=alive)
    samples = []
    for i in range(ctx.runs + 1):
        time.sleep(0.2)  # let the previous restart settle (watchers, engine)
        value = f"edited-{i}"
        start = now_ns()
        write_secret(secrets / "secret/app/s0.json", {"value": value})
        arrived, event = journal.wait("start", count=i + 2, alive=alive)
        if event["env"]["SECRET_0"] != value:
            raise BenchError(f"restarted with {event['env']['SECRET_0']!r}, not {value!r}")
        samples.append(ms(arrived - start) - WAIT_MIN * 1000)
    stop(proc)
    row = Row(
        name="file change -> app restarted", unit="ms",
        target=Target("max", 1000.0, "<= 1000 ms + wait"),
        samples=samples[1:], baseline_samples=probe_start_ms(ctx),
        baseline_what="cold start of the app probe alone",
        what="atomic rewrite of a local secret file to the restarted app probe's first "
             "journal line, wait_min = wait_max = 0 (nothing to subtract); includes "
             "stopping the old app and the new app's own start (the baseline)")
    return [row]


def change_signal(ctx: Context) -> list[Row]:
    folder = ctx.folder("change-signal")
    secrets = write_local_secrets(folder / "secrets")
    journal = ctx.journal(folder)
    rendered = folder / "run/app.conf"
    config = folder / "entrypoint.toml"
    config.write_text(
        "[[template]]\n"
        "contents = \"value={{ secret('secret/app/s0').value }}\\n\"\n"
        f'destination = "{rendered}"\n'
        'on_change = "signal:SIGHUP"\n'
        f'[rotation]\nwait_min = "{WAIT_MIN}s"\nwait_max = "{WAIT_MIN}s"\n')
    env = entrypoint_env({"ENTRYPOINT_LOCAL_SECRETS": str(secrets),
                          "ENTRYPOINT_CONFIG": str(config)})
    argv = entrypoint_argv("--", *probe_argv(journal, file=rendered))
    proc = ctx.popen(argv, env, folder / "stderr")
    alive = lambda: proc.poll() is None  # noqa: E731
    journal.wait("start", alive=alive)
    samples = []
    for i in range(ctx.runs + 1):
        time.sleep(0.2)
        value = f"edited-{i}"
        start = now_ns()
        write_secret(secrets / "secret/app/s0.json", {"value": value})
        arrived, event = journal.wait("hup", count=i + 1, alive=alive)
        if event["file"] != f"value={value}\n":
            raise BenchError(f"signalled with file {event['file']!r}")
        samples.append(ms(arrived - start) - WAIT_MIN * 1000)
    stop(proc)
    row = Row(
        name="file change -> app signalled", unit="ms",
        target=Target("max", 1000.0, "<= 1000 ms + wait"),
        samples=samples[1:], baseline_samples=probe_hup_ms(ctx),
        baseline_what="SIGHUP sent straight to the app probe",
        what="atomic rewrite of a local secret file to the app probe's SIGHUP journal line "
             "(file template re-rendered, on_change = signal:SIGHUP), wait_min = 0")
    return [row]


def probe_hup_ms(ctx: Context) -> list[float]:
    """How long the probe itself takes from a SIGHUP to its journal line."""
    folder = ctx.folder("probe-hup")
    journal = ctx.journal(folder)
    proc = ctx.popen(probe_argv(journal), baseline_env(), folder / "stderr")
    journal.wait("start", alive=lambda: proc.poll() is None)
    out = []
    for i in range(ctx.runs + 1):
        time.sleep(0.05)
        start = now_ns()
        proc.send_signal(signal.SIGHUP)
        arrived, _ = journal.wait("hup", count=i + 1)
        out.append(ms(arrived - start))
    stop(proc)
    return out[1:]


__all__ = ["change_restart", "change_signal", "exec_start", "rss_local"]
