"""Where the supervisor's resident memory goes: RSS after each group of imports.

    python -m benchmarks.memory [--runs N] [--floor]

A fresh interpreter of the benchmark venv (the wheel of this tree and its runtime
dependencies only, benchmarks/venv.py) imports, in the order the resident supervisor with
an aws-iam login does, one group of modules after another and reads VmRSS after each (the
median over ``runs`` fresh interpreters is printed). Modules are most of the supervisor's memory:
code objects, functions and class dicts, plus the shared libraries they map (libssl for
``ssl``). Attribution at module level is approximate (the allocator takes memory from the
system in 1 MiB arenas), group level is good to a few hundred kB.

``--floor`` imports, instead, none of entrypoint: first what an init in Python cannot do
without (signals, select, JSON, a thread), then, one group after another, the standard
library modules the supervisor's code is written with (logging, subprocesses and sockets,
dataclasses, typing and pathlib) and watchdog: where along that line the ``rss-local``
target is crossed before any code of ours loads. Then two fresh interpreters each import
watchdog alone, as the standards have the supervisor watch files with: plainly, and as the
supervisor imports it (``ctypes.util``, which watchdog never calls, skipped).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

from benchmarks.common import baseline_env, python

GROUPS: list[tuple[str, list[str]]] = [
    ("entrypoint: cli, config, runtime (the --exec path)",
     ["entrypoint.cli", "entrypoint.plan.resolution", "entrypoint.sources.local.folder"]),
    ("entrypoint: supervisor, rotation engine, control socket",
     ["entrypoint.commands.run", "entrypoint.process.supervisor", "entrypoint.rotation.engine",
      "entrypoint.ops.control"]),
    # As the supervisor imports it: without ctypes.util, which watchdog never calls.
    ("watchdog (local directory watched)",
     ["entrypoint.rotation.watch_observer:_inotify_observer_class", "watchdog.events"]),
    # http.client imports ssl itself: an http:// Vault pays for TLS as an https:// one.
    ("http.client with ssl and email (the Vault transport's)", ["http.client", "ssl"]),
    ("entrypoint.sources.vault (source, transport, token keeper, auth)",
     ["entrypoint.sources.vault.source", "entrypoint.sources.vault.auth.aws_iam"]),
    # botocore (about 8 MB more here) is imported by the aws-iam signing helper process
    # only (entrypoint/sources/vault/auth/aws_sign.py), never by the supervisor.
]

FLOOR: list[tuple[str, list[str]]] = [
    ("an init's own needs: signal, select, fcntl, json, threading",
     ["signal", "select", "fcntl", "json", "threading"]),
    ("ctypes (what an inotify watch without watchdog needs)", ["ctypes"]),
    ("logging", ["logging"]),
    ("subprocess, socket, queue", ["subprocess", "socket", "queue"]),
    ("dataclasses (it imports inspect, ast, dis, tokenize)", ["dataclasses"]),
    ("typing, pathlib, re, urllib.parse", ["typing", "pathlib", "re", "urllib.parse"]),
    # watchdog's inotify backend imports ctypes.util, which brings shutil, tempfile,
    # bz2 and lzma.
    ("watchdog (the local directory's watcher)", ["watchdog.observers", "watchdog.events"]),
]

ALONE: list[tuple[str, str]] = [
    ("watchdog alone: Observer and events, plainly imported",
     "import watchdog.observers, watchdog.events"),
    ("watchdog alone, as the supervisor imports it (no ctypes.util)",
     "from entrypoint.rotation.watch_observer import _inotify_observer_class\n"
     "_inotify_observer_class()\nimport watchdog.events"),
]

ALONE_CHILD = """
import os
exec(compile(__import__("sys").argv[1], "<alone>", "exec"))
with open(f"/proc/{os.getpid()}/status") as f:
    print(next(int(line.split()[1]) for line in f if line.startswith("VmRSS")))
"""

CHILD = """
import importlib, json, os, sys
if sys.argv[2] == "entrypoint":
    import entrypoint.cli as cli
    cli.skip_charset_detection()  # as the console script does before it imports requests
    cli.skip_urllib3_http2_init()
def rss():
    with open(f"/proc/{os.getpid()}/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1])
out = [rss()]
for modules in json.loads(sys.argv[1]):
    for m in modules:  # "module:function" calls the function: an import made by our code
        name, _, call = m.partition(":")
        module = importlib.import_module(name)
        if call:
            getattr(module, call)()
    out.append(rss())
print(json.dumps(out))
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--floor", action="store_true",
                        help="the standard library's floor for a supervisor, no entrypoint")
    args = parser.parse_args(argv)
    table = FLOOR if args.floor else GROUPS
    groups = json.dumps([modules for _, modules in table])
    samples = []
    for _ in range(max(1, args.runs)):
        result = subprocess.run(
            [python(), "-c", CHILD, groups, "bare" if args.floor else "entrypoint"],
            env=baseline_env(), capture_output=True, text=True, timeout=60, check=True)
        samples.append(json.loads(result.stdout))
    steps = [statistics.median(run[i] for run in samples) / 1024
             for i in range(len(table) + 1)]
    first = ("interpreter, site and the probe's json" if args.floor else
             "interpreter, site and entrypoint.cli (bare: see rss rows)")
    print(f"{first:66} {steps[0]:5.1f} MB")
    for i, (label, _) in enumerate(table, start=1):
        print(f"{'+ ' + label:66} {steps[i] - steps[i - 1]:+5.1f}  = {steps[i]:5.1f} MB")
    if args.floor:
        for label, code in ALONE:
            alone = [int(subprocess.run(
                [python(), "-c", ALONE_CHILD, code], env=baseline_env(), capture_output=True,
                text=True, timeout=60, check=True).stdout) for _ in range(max(1, args.runs))]
            print(f"{label:66}        = {statistics.median(alone) / 1024:5.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
