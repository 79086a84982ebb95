"""The compose stack's sample app: a long-running process, so that rotation can be seen.

It prints which variables it received (values masked), then waits. On SIGHUP it says so
(an app that reloads its config would do it here); on SIGTERM it exits 0. Each restart
by the entrypoint (a credential replaced, `entrypoint rotate`) prints a new block with
a new pid and a new database username.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from types import FrameType

WATCHED = ("API_TOKEN", "API_ENDPOINT", "DB_USER", "DB_PASSWORD", "DATABASE_URL")


def mask(value: str) -> str:
    return f"{len(value)} characters, starts {value[:2]!r}…" if len(value) > 4 else "***"


def show() -> None:
    print(f"compose app pid={os.getpid()} received:", flush=True)
    for name in WATCHED:
        value = os.environ.get(name)
        print(f"  {name:<13} {'(not set)' if value is None else mask(value)}", flush=True)
    # The database user is not a secret, and it shows rotation happening.
    print(f"  database user: {os.environ.get('DB_USER', '(not set)')}", flush=True)
    leaked = sorted(n for n in os.environ if n.startswith("ENTRYPOINT_") or n == "VAULT_TOKEN")
    print(f"  bootstrap variables visible to the app: {leaked or 'none'}", flush=True)


def main() -> int:
    def stop(signum: int, frame: FrameType | None) -> None:
        print(f"compose app pid={os.getpid()}: {signal.Signals(signum).name}, exiting",
              flush=True)
        sys.exit(0)

    def reload(signum: int, frame: FrameType | None) -> None:
        print(f"compose app pid={os.getpid()}: SIGHUP, reloading", flush=True)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, reload)
    show()
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main())
