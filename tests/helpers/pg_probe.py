"""An app for rotation tests that really uses its database credential, all the time.

    python pg_probe.py JOURNAL HOST PORT [--file PATH]

It logs in to PostgreSQL with its current credential every ``INTERVAL`` seconds and
journals each attempt: ``{"event": "connect", "pid", "user", "ok", "error"}``. The
credential comes from ``DB_USER`` / ``DB_PASSWORD`` in its environment, or, with
``--file``, from a JSON file ``{"username", "password"}`` that is read again on SIGHUP
(the reload path). On start it journals ``{"event": "start", "user", "password"}`` (the
password so that a test can look for it where it must not be: the entrypoint's logs);
on SIGHUP ``{"event": "hup", "user"}``; on SIGTERM ``{"event": "stop"}`` and exits 0.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType

import psycopg

INTERVAL = 0.05


def main() -> int:
    args = sys.argv[1:]
    journal, host, port = Path(args[0]), args[1], int(args[2])
    cred_file = Path(args[args.index("--file") + 1]) if "--file" in args else None

    def write(event: dict[str, object]) -> None:
        event["pid"] = os.getpid()
        event["t"] = time.time()
        with journal.open("a") as f:
            f.write(json.dumps(event) + "\n")

    def read_credential() -> tuple[str, str]:
        if cred_file is not None:
            data = json.loads(cred_file.read_text())
            return str(data["username"]), str(data["password"])
        return os.environ["DB_USER"], os.environ["DB_PASSWORD"]

    reload_wanted = False

    def on_hup(signum: int, frame: FrameType | None) -> None:
        nonlocal reload_wanted
        reload_wanted = True  # re-read in the loop: never mid-connect in a handler

    def on_term(signum: int, frame: FrameType | None) -> None:
        write({"event": "stop"})
        sys.exit(0)

    signal.signal(signal.SIGHUP, on_hup)
    signal.signal(signal.SIGTERM, on_term)
    user, password = read_credential()
    write({"event": "start", "user": user, "password": password})
    while True:
        if reload_wanted:
            reload_wanted = False
            user, password = read_credential()
            write({"event": "hup", "user": user, "password": password})
        try:
            with psycopg.connect(host=host, port=port, dbname="postgres", user=user,
                                 password=password, connect_timeout=3) as conn:
                conn.execute("SELECT 1")
            write({"event": "connect", "user": user, "ok": True})
        except psycopg.Error as exc:
            write({"event": "connect", "user": user, "ok": False,
                   "error": str(exc).strip().splitlines()[0][:200]})
        time.sleep(INTERVAL)


if __name__ == "__main__":
    sys.exit(main())
