"""The app in the container tests: it journals what it is and what reaches it.

    python container_probe.py JOURNAL_DIR [--exit-code N] [--orphans N] [VAR ...]

It appends JSON lines to JOURNAL_DIR/events (a host folder mounted into the container):

- at start ``{"event": "start", "pid", "ppid", "uid", "gid", "groups", "env": {VAR: ..},
  "pid1_environ": "readable" | "<error name>"}``; VAR values are journaled as given, so
  only non-secret variables (a database user name, not its password) are listed;
- with ``--orphans N``, N processes whose parent exits at once, so that they are
  re-parented to PID 1: each journals ``{"event": "orphan", "pid", "ppid"}`` once
  re-parented, then waits for the file JOURNAL_DIR/release and exits; PID 1 must reap it;
- on SIGHUP ``{"event": "hup"}``;
- on SIGTERM ``{"event": "stop"}``, then it exits with ``--exit-code`` (default 0).

Only the standard library: it runs on the image's Python.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType

JOURNAL = Path(sys.argv[1]) / "events"
RELEASE = Path(sys.argv[1]) / "release"


def write(event: dict[str, object]) -> None:
    event.setdefault("pid", os.getpid())
    # One write() of one line on an O_APPEND file: lines of several processes never mix.
    fd = os.open(JOURNAL, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        os.write(fd, (json.dumps(event) + "\n").encode())
    finally:
        os.close(fd)


def orphan() -> None:
    """Fork twice; the middle process exits, so the grandchild's parent becomes PID 1."""
    middle = os.fork()
    if middle:
        os.waitpid(middle, 0)  # the app reaps its own child; the grandchild is PID 1's
        return
    if os.fork():
        os._exit(0)
    # The app's handlers are not the orphan's: a stop signal simply ends it.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    deadline = time.monotonic() + 30
    while os.getppid() != 1 and time.monotonic() < deadline:
        time.sleep(0.01)  # re-parenting happens when the middle process has exited
    write({"event": "orphan", "ppid": os.getppid()})
    while not RELEASE.exists() and time.monotonic() < deadline:
        time.sleep(0.01)  # the test creates the file once it has seen every orphan
    os._exit(0)


def main() -> int:
    args = sys.argv[2:]
    exit_code, orphans = 0, 0
    if "--exit-code" in args:
        i = args.index("--exit-code")
        exit_code = int(args[i + 1])
        del args[i : i + 2]
    if "--orphans" in args:
        i = args.index("--orphans")
        orphans = int(args[i + 1])
        del args[i : i + 2]

    def on_hup(signum: int, frame: FrameType | None) -> None:
        write({"event": "hup"})

    def on_term(signum: int, frame: FrameType | None) -> None:
        write({"event": "stop"})
        sys.exit(exit_code)

    signal.signal(signal.SIGHUP, on_hup)
    signal.signal(signal.SIGTERM, on_term)
    try:
        Path("/proc/1/environ").read_bytes()
        pid1_environ = "readable"
    except OSError as exc:
        pid1_environ = type(exc).__name__
    write({"event": "start", "ppid": os.getppid(), "uid": os.getuid(), "euid": os.geteuid(),
           "gid": os.getgid(), "groups": os.getgroups(),
           "env": {name: os.environ.get(name) for name in args},
           "pid1_environ": pid1_environ})
    for _ in range(orphans):
        orphan()
    while True:
        signal.pause()


if __name__ == "__main__":
    sys.exit(main())
