"""Start many entrypoints at the same instant: fork them from one interpreter that has
already imported the entrypoint and its Vault client.

    python zygote.py < jobs.json      # [{"argv": [...], "env": {...}, "stderr": path}, ...]

Each child is its own process with its own environment, stderr, sockets and random seed,
and runs ``entrypoint.cli.main(argv, env)`` -- what ``python -m entrypoint`` runs -- so
only the interpreter's start and imports (~0.2 CPU-s each, 40 s for 200 on two cores) are
shared. Prints ``{"codes": [exit status per job]}`` once every child has ended.
"""

from __future__ import annotations

import email.utils  # noqa: F401

# Everything the Vault path imports, including what the entrypoint imports lazily, so
# that the children only run code.
import http.client  # noqa: F401
import json
import os
import random
import sys

import entrypoint.cli
import entrypoint.commands.exec_app
import entrypoint.plan.resolution
import entrypoint.plan.resolve
import entrypoint.sources.registry
import entrypoint.sources.vault.auth.token
import entrypoint.sources.vault.client
import entrypoint.sources.vault.source
import entrypoint.sources.vault.transport


def _child(job: dict[str, object]) -> None:
    env = {str(k): str(v) for k, v in dict(job["env"]).items()}  # type: ignore[call-overload]
    fd = os.open(str(job["stderr"]), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(fd, 2)
    os.close(fd)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.environ.clear()
    os.environ.update(env)
    random.seed()  # each container has its own seed: jitter must not be shared
    code = 70
    try:
        code = entrypoint.cli.main(list(job["argv"]), env)  # type: ignore[call-overload]
    finally:
        sys.stderr.flush()
        os._exit(code)


def main() -> int:
    jobs = json.load(sys.stdin)
    pids = []
    for job in jobs:
        pid = os.fork()
        if pid == 0:
            _child(job)
        pids.append(pid)
    codes = []
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        codes.append(os.waitstatus_to_exitcode(status))
    print(json.dumps({"codes": codes}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
