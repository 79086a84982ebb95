"""Where the start-up time of ``--exec`` goes: ``python -X importtime`` summarised.

    python -m benchmarks.importtime [--runs N] [--top N] [--vault] [--supervise]

Runs ``python -X importtime -m entrypoint --exec -- true`` with the benchmark venv's
interpreter (the installed wheel, benchmarks/venv.py) on a local secrets directory with
10 references (with ``--vault``: against a real Vault, ``VAULT_BIN``, token auth) ``runs``
times and prints, per top-level package, the median of its self time summed over its
modules, and the slowest single imports by cumulative time. Numbers under ``-X importtime``
are inflated by the instrumentation; read them as shares, not as absolute costs.

``--supervise`` drops ``--exec``: ``entrypoint -- true`` in supervise mode, the path of
the ``vault-start`` row (the supervisor starts, fetches, runs ``true`` and exits with it).
It then also times, without the instrumentation, the imports of that path one after the
other in a fresh interpreter (``entrypoint.cli`` with the console script's skips,
``entrypoint.commands.run``, ``http.client``, ``entrypoint.sources.vault.source``, the
rotation engine and the control socket) next to ``python -c pass``: wall time, median of
``runs``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from benchmarks.common import Context, entrypoint_env, python
from benchmarks.local import kv_refs, write_local_secrets


def parse(stderr: str) -> list[tuple[str, int, int, int]]:
    """(module, self us, cumulative us, depth) for every import listed."""
    out = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "imported package" in line:
            continue
        self_us, cumulative, name = line[len("import time:"):].split("|")
        depth = (len(name) - len(name.lstrip(" ")) - 1) // 2
        out.append((name.strip(), int(self_us), int(cumulative), depth))
    return out


Medians = dict[str, float]


def measure(env: dict[str, str], runs: int,
            supervise: bool = False) -> tuple[Medians, Medians, Medians, float]:
    true = shutil.which("true") or "/bin/true"
    mode = [] if supervise else ["--exec"]
    by_package: dict[str, list[int]] = defaultdict(list)
    by_module: dict[str, list[int]] = defaultdict(list)
    by_self: dict[str, list[int]] = defaultdict(list)
    totals = []
    for _ in range(runs):
        result = subprocess.run([python(), "-X", "importtime", "-m", "entrypoint",
                                 *mode, "--", true], env=env, capture_output=True,
                                text=True, timeout=60)
        if result.returncode != 0:
            raise SystemExit(result.stderr[-2000:])
        rows = parse(result.stderr)
        packages: dict[str, int] = defaultdict(int)
        for name, self_us, cumulative, _ in rows:
            packages[name.split(".")[0]] += self_us
            by_module[name].append(cumulative)
            by_self[name].append(self_us)
        for name, total in packages.items():
            by_package[name].append(total)
        totals.append(sum(self_us for _, self_us, _, _ in rows))
    def medians(table: dict[str, list[int]]) -> Medians:
        return {k: statistics.median(v) / 1000 for k, v in table.items()}

    return (medians(by_package), medians(by_module), medians(by_self),
            statistics.median(totals) / 1000)


START_STEPS = ["entrypoint.cli", "entrypoint.commands.run", "http.client",
               "entrypoint.sources.vault.source", "entrypoint.rotation.engine",
               "entrypoint.ops.control"]

TIMED = """
import importlib, json, sys, time
t0 = time.perf_counter()
out = []
for name in json.loads(sys.argv[1]):
    importlib.import_module(name)
    if name == "entrypoint.cli":
        import entrypoint.cli as cli
        cli.skip_charset_detection()  # as the console script does before main()
        cli.skip_urllib3_http2_init()
    out.append((name, (time.perf_counter() - t0) * 1000))
print(json.dumps(out))
"""


def timed_imports(runs: int) -> tuple[float, list[tuple[str, float]]]:
    """Wall ms of ``python -c pass``, and of each step of START_STEPS cumulated (process
    start to the end of the step's import, spawn not included), medians of ``runs``."""
    import time

    from benchmarks.common import baseline_env

    env = baseline_env()
    bare: list[float] = []
    steps: dict[str, list[float]] = defaultdict(list)
    for _ in range(runs):  # alternated, so that load falls on both alike
        t0 = time.perf_counter()
        subprocess.run([python(), "-c", "pass"], env=env, check=True)
        bare.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        result = subprocess.run([python(), "-c", TIMED, json.dumps(START_STEPS)], env=env,
                                capture_output=True, text=True, check=True)
        total = (time.perf_counter() - t0) * 1000
        for name, ms in json.loads(result.stdout):
            steps[name].append(ms)
        steps["(whole process, spawn to exit)"].append(total)
    return statistics.median(bare), [(k, statistics.median(v)) for k, v in steps.items()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--vault", action="store_true",
                        help="resolve through a real Vault (VAULT_BIN; token auth)")
    parser.add_argument("--supervise", action="store_true",
                        help="supervise mode (entrypoint -- true), not --exec; and time "
                             "the imports of that path without -X importtime")
    args = parser.parse_args(argv)
    with Context(1) as ctx:
        if args.vault:
            from benchmarks.vault import vault_env, vault_server

            env = vault_env(vault_server(ctx), **kv_refs())
        else:
            secrets = write_local_secrets(Path(tempfile.mkdtemp(dir=ctx.root)) / "secrets")
            env = entrypoint_env({"ENTRYPOINT_LOCAL_SECRETS": str(secrets), **kv_refs()})
        packages, modules, selfs, total = measure(env, max(1, args.runs),
                                                   args.supervise)
    print(f"all imports, self time summed: {total:.1f} ms (median of {args.runs})\n")
    print("top-level package       self ms (its modules summed)")
    for name, value in sorted(packages.items(), key=lambda kv: -kv[1])[:args.top]:
        print(f"  {name:22} {value:6.1f}")
    print("\nslowest modules          self ms")
    for name, value in sorted(selfs.items(), key=lambda kv: -kv[1])[:args.top]:
        print(f"  {name:40} {value:6.1f}")
    print("\nslowest imports          cumulative ms")
    for name, value in sorted(modules.items(), key=lambda kv: -kv[1])[:args.top]:
        print(f"  {name:40} {value:6.1f}")
    if args.supervise:
        bare, steps = timed_imports(max(1, args.runs))
        print(f"\nimports of the supervise path, no -X importtime, wall ms from the "
              f"interpreter's first line (median of {args.runs})")
        print(f"  {'python -c pass (spawn to exit)':40} {bare:6.1f}")
        previous = 0.0
        for name, value in steps:
            if name.startswith("("):
                print(f"  {name:40} {value:6.1f}")
            else:
                print(f"  {'+ ' + name:40} {value - previous:+6.1f}  = {value:6.1f}")
                previous = value
    return 0


if __name__ == "__main__":
    sys.exit(main())
