"""A child for PID 1 tests (dumb-init's idea): it tells a file everything it goes through.

Each line it appends to --out is one event, written with a single O_APPEND write so that
several processes can share the file:

    ready pid=.. pgid=.. ppid=.. uid=.. gid=.. groups=.. gen=.. sigblk=.. tty_fg=..
    signal 10              (every forwarded signal it receives, by number)
    worker-ready pid=..    /  worker-signal 10     (with --worker: a second process in its group)
    orphans pid1,pid2,...  (with --orphans N: N grandchildren that exit once orphaned)

--read-stdin notes one line read from stdin. --all catches every signal the supervisor
forwards (SIGSEGV, SIGTTIN, real-time signals, ...), not only the usual ones.
--late-handlers S waits S seconds before installing its handlers, like a slow app.
It exits 0 on SIGTERM/SIGINT unless told --stay (then it only notes them) or --ignore-term
(SIG_IGN: it never even sees them). --exit N exits with N right after "ready"; --die SIG
kills itself with SIG at default disposition.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from types import FrameType

SIGNALS = (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2,
           signal.SIGTERM, signal.SIGWINCH, signal.SIGCONT, signal.SIGURG)


def note(out: str, line: str) -> None:
    fd = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def status_field(name: str) -> str:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(name + ":"):
                return line.split(":", 1)[1].strip()
    return "?"


def foreground() -> str:
    try:
        return "yes" if os.tcgetpgrp(0) == os.getpgrp() else "no"
    except OSError:
        return "notty"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--stay", action="store_true")
    parser.add_argument("--ignore-term", action="store_true")
    parser.add_argument("--exit", type=int, default=None)
    parser.add_argument("--die", default=None)
    parser.add_argument("--orphans", type=int, default=0)
    parser.add_argument("--worker", action="store_true")
    parser.add_argument("--sleep-on-term", type=float, default=0.0)
    parser.add_argument("--read-stdin", action="store_true",
                        help="read one line from stdin (a terminal: only as its foreground)")
    parser.add_argument("--all", action="store_true", help="catch every catchable signal")
    parser.add_argument("--late-handlers", type=float, default=0.0,
                        help="start slowly: no handler for this long (default actions apply)")
    args = parser.parse_args()
    out = args.out

    def handler(signum: int, frame: FrameType | None) -> None:
        note(out, f"{prefix}signal {signum}")
        if signum in (signal.SIGTERM, signal.SIGINT) and not args.stay:
            time.sleep(args.sleep_on_term)
            sys.exit(0)

    prefix = ""
    time.sleep(args.late_handlers)
    caught = SIGNALS
    if args.all:
        caught = tuple(signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP,
                                                 signal.SIGCHLD})
    for signum in caught:
        signal.signal(signum, handler)
    if args.ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if args.worker and os.fork() == 0:
        prefix = "worker-"
        note(out, f"worker-ready pid={os.getpid()} pgid={os.getpgrp()}")
        while True:
            signal.pause()
    note(out, " ".join([
        "ready", f"pid={os.getpid()}", f"pgid={os.getpgrp()}", f"ppid={os.getppid()}",
        f"uid={os.getuid()}", f"gid={os.getgid()}",
        "groups=" + ",".join(str(g) for g in sorted(os.getgroups())),
        f"gen={os.environ.get('GENERATION', '-')}",
        f"sigblk={status_field('SigBlk')}", f"tty_fg={foreground()}",
    ]))
    if args.orphans:
        orphans = orphan_pids(args.orphans)
        note(out, "orphans " + ",".join(str(p) for p in orphans))
    if args.read_stdin:
        note(out, "read " + sys.stdin.readline().strip())
    if args.exit is not None:
        sys.exit(args.exit)
    if args.die:
        sig = signal.Signals["SIG" + args.die.upper().removeprefix("SIG")]
        if sig != signal.SIGKILL:
            signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
    while True:
        signal.pause()


def orphan_pids(count: int) -> list[int]:
    """Double-fork ``count`` grandchildren whose parents exit at once, so the kernel hands
    them to the nearest subreaper (the supervisor); they exit once all are orphaned."""
    release_r, release_w = os.pipe()
    report_r, report_w = os.pipe()
    for _ in range(count):
        middle = os.fork()
        if middle == 0:
            grandchild = os.fork()
            if grandchild == 0:
                os.close(release_w)
                os.close(report_w)
                os.read(release_r, 1)  # returns at EOF: when every copy of release_w is gone
                os._exit(0)
            os.write(report_w, f"{grandchild}\n".encode())
            os._exit(0)
        os.waitpid(middle, 0)
    os.close(report_w)
    os.close(release_r)
    data = b""
    while chunk := os.read(report_r, 65536):
        data += chunk
    os.close(report_r)
    os.close(release_w)  # releases them: they are all orphans by now
    return [int(p) for p in data.split()]


if __name__ == "__main__":
    main()
