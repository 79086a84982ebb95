"""A long-running app for rotation tests: it reports what it was given to a journal file.

    python app_probe.py JOURNAL [VAR ...] [--file PATH]

On start it appends ``{"event": "start", "pid": .., "env": {VAR: value}}``; on SIGHUP
``{"event": "hup", "file": <content of PATH>}``; on SIGTERM ``{"event": "stop"}`` and exits 0.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType


def main() -> int:
    args = sys.argv[1:]
    journal = Path(args.pop(0))
    watched_file: Path | None = None
    if "--file" in args:
        i = args.index("--file")
        watched_file = Path(args[i + 1])
        del args[i : i + 2]

    def write(event: dict[str, object]) -> None:
        with journal.open("a") as f:
            f.write(json.dumps(event) + "\n")

    def on_hup(signum: int, frame: FrameType | None) -> None:
        content = watched_file.read_text() if watched_file and watched_file.exists() else None
        write({"event": "hup", "pid": os.getpid(), "file": content})

    def on_term(signum: int, frame: FrameType | None) -> None:
        write({"event": "stop", "pid": os.getpid()})
        sys.exit(0)

    signal.signal(signal.SIGHUP, on_hup)
    signal.signal(signal.SIGTERM, on_term)
    content = watched_file.read_text() if watched_file and watched_file.exists() else None
    write({"event": "start", "pid": os.getpid(), "env": {v: os.environ.get(v) for v in args},
           "file": content})
    while True:
        time.sleep(0.05)


if __name__ == "__main__":
    sys.exit(main())
