"""Measure entrypoint against the speed and size targets of DESIGN.md.

    python -m benchmarks.run [--only NAME[,NAME...]] [--runs N] [--json PATH] [--list]

From the repository's root (the current directory puts ``benchmarks`` and the tests'
helpers on the path, as packages). Every measured command and its baseline run in a venv
holding only the wheel of this tree and its runtime dependencies (benchmarks/venv.py).
Prints one table (target, median over N runs, the baseline measured in the same run,
the difference, the ratio, pass/fail) and writes it as JSON (default
benchmarks/results.json). Starts what it needs itself, on loopback only, and stops it.
See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

if not __package__:
    sys.exit("run the benchmarks from the repository's root as a module: "
             "python -m benchmarks.run [--list | --only NAME,... | --runs N]")

from benchmarks import local
from benchmarks.common import REPO, BenchError, Context, Row, table
from benchmarks.venv import bench_venv

Case = Callable[[Context], list[Row]]


def cases() -> dict[str, tuple[Case, str]]:
    """name -> (function, one line); vault cases are imported only when asked for."""
    def vault(name: str) -> Case:
        def run(ctx: Context) -> list[Row]:
            from benchmarks import vault as vault_cases

            fn: Case = getattr(vault_cases, name)
            return fn(ctx)

        return run

    return {
        "exec-start": (local.exec_start, "local dir, 10 refs, --exec: start to app exec"),
        "vault-start": (vault("vault_start"),
                        "real Vault, token auth, 10 KV + 1 DB: start to app running"),
        "vault-start-standin": (vault("vault_start_standin"),
                                "the same against the Vault test server, for comparison"),
        "rss-local": (local.rss_local, "supervisor RSS, local directory"),
        "rss-local-metrics": (local.rss_local_metrics,
                              "supervisor RSS, local directory, metrics_listen on"),
        "rss-iam": (vault("rss_iam"), "supervisor RSS, Vault + AWS IAM login"),
        "rss-iam-tls": (vault("rss_iam_tls"),
                        "the same with Vault over https (VAULT_CACERT)"),
        "refs-1000": (vault("refs_1000"), "1,000 references over 100 paths resolved"),
        "requests": (vault("requests_per_hour"),
                     "steady-state Vault requests per hour, 1 KV + 1 DB lease"),
        "change-restart": (local.change_restart, "file change to app restarted"),
        "change-signal": (local.change_signal, "file change to app signalled"),
    }


def main(argv: list[str] | None = None) -> int:
    known = cases()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="",
                        help="comma-separated case names (default: all); see --list")
    parser.add_argument("--runs", type=int, default=5, help="runs per case (default 5, min 1)")
    parser.add_argument("--json", dest="json_path", type=Path,
                        default=REPO / "benchmarks/results.json",
                        help="where to write the table as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    args = parser.parse_args(argv)
    if args.list:
        for name, (_, line) in known.items():
            print(f"{name:16} {line}")
        return 0
    selected = [n.strip() for n in args.only.split(",") if n.strip()] or list(known)
    unknown = [n for n in selected if n not in known]
    if unknown:
        parser.error(f"unknown case(s): {', '.join(unknown)}; known: {', '.join(known)}")
    runs = max(1, args.runs)
    # SIGTERM ends the run like Ctrl-C: through the cleanup of everything started.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    rows: list[Row] = []
    errors: dict[str, str] = {}
    started = time.monotonic()
    venv = bench_venv()
    print(f"... {venv.describe()}", file=sys.stderr, flush=True)
    with Context(runs, keep=args.keep) as ctx:
        for name in selected:
            case_started = time.monotonic()
            print(f"... {name}", file=sys.stderr, flush=True)
            load_before = os.getloadavg()[0]
            try:
                case_rows = known[name][0](ctx)
                for row in case_rows:
                    row.extra["load_average_1min"] = [load_before, os.getloadavg()[0]]
                rows.extend(case_rows)
            except Exception as exc:  # a service that would not start, a failed run
                errors[name] = str(exc) if isinstance(exc, BenchError) else \
                    f"{type(exc).__name__}: {exc}"
                print(f"!!! {name}: {exc}", file=sys.stderr, flush=True)
            print(f"    {name}: {time.monotonic() - case_started:.1f}s", file=sys.stderr,
                  flush=True)
        if args.keep:
            print(f"scratch folder kept: {ctx.root}", file=sys.stderr)
    elapsed = time.monotonic() - started
    print(table(rows))
    for row in rows:
        for note in row.notes:
            print(f"  {row.name}: {note}")
    for name, error in errors.items():
        print(f"{name}: NOT MEASURED: {error.splitlines()[0] if error else ''}")
    cores = os.cpu_count() or 1
    load = os.getloadavg()
    busy = [row.name for row in rows if max(row.extra["load_average_1min"]) > cores]
    if busy:
        print(f"\nThe machine was busy (1-minute load average above {cores}, the cores) "
              f"while these were measured: {'; '.join(busy)}. Ratios hold up better than "
              "absolute times under load.")
    print(f"\n{runs} runs per row; {cores} cores; load average at the end "
          f"{load[0]:.2f}; took {elapsed:.0f}s. Ratios are measured / baseline, both "
          "measured in this invocation, both in the venv "
          f"{venv.path.name} ({venv.wheel} + {len(venv.freeze)} runtime dependencies, "
          f"Python {sys.version.split()[0]}).")
    report = {
        "runs": runs,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "venv": {"path": str(venv.path), "sources_key": venv.key, "wheel": venv.wheel,
                 "packages": venv.freeze, "built_now": venv.built_now},
        "cores": cores,
        "load_average_end": load,
        "elapsed_s": round(elapsed, 1),
        "rows": [row.as_json() for row in rows],
        "errors": errors,
    }
    args.json_path.parent.mkdir(parents=True, exist_ok=True)
    args.json_path.write_text(json.dumps(report, indent=2) + "\n")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
