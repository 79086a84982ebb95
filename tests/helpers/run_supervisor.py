"""Test driver: a real process running one Supervisor, so tests can send it real signals.

    python -m tests.helpers.run_supervisor [options] -- CMD [ARGS...]

The child's environment is ours plus GENERATION=1. --control FILE is tailed for JSON
lines, each posted to the supervisor as an event:

    {"restart": {"GENERATION": "2"}, "reason": "..."}
    {"signal": "HUP", "reason": "..."}
    {"command": ["touch", "/tmp/x"], "reason": "..."}
    {"fatal": "message"}
    {"crash": "SEGV"}        (a real fault on the main loop: reads a kernel address)

--marker FILE gets "constructed", "preparing" and "started PID" lines as they happen;
--hold-before-run / --hold-prepare FILE make the driver wait for FILE to exist at that point.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Mapping

from entrypoint.config.values import parse_signal
from entrypoint.errors import EntrypointError, UnavailableError
from entrypoint.process import signals
from entrypoint.process.events import Event, Fatal, Restart, RunCommand, SignalChild
from entrypoint.process.supervisor import ProcessOptions, Supervisor
from tests.helpers.pid1 import children_of


def note(path: str | None, line: str) -> None:
    if path:
        with open(path, "a", encoding="utf-8") as marker:
            marker.write(line + "\n")


def wait_for(path: str | None) -> None:
    while path and not os.path.exists(path):
        time.sleep(0.01)


def tail(path: str, supervisor: Supervisor) -> None:
    signals.block_in_this_thread()
    offset = 0
    while True:
        try:
            with open(path, encoding="utf-8") as control:
                control.seek(offset)
                data = control.read()
        except FileNotFoundError:
            data = ""
        lines = data.split("\n")[:-1]  # only complete lines
        for line in lines:
            offset += len(line) + 1
            spec = json.loads(line)
            if "crash" in spec:
                crash()
            supervisor.post(to_event(spec))
        time.sleep(0.01)


def crash() -> None:
    """A segfault of the whole supervisor process (this thread's fault kills them all)."""
    import ctypes

    # Not address 0: some sandboxes map page 0. A kernel address faults everywhere.
    print(ctypes.string_at(0xFFFFFFFFFF700000, 1))


def to_event(spec: Mapping[str, object]) -> Event:
    reason = str(spec.get("reason", "test"))
    if "restart" in spec:
        env = dict(os.environ)
        env.update(spec["restart"])  # type: ignore[call-overload]
        return Restart(env, reason)
    if "signal" in spec:
        return SignalChild(int(parse_signal(str(spec["signal"]))), reason)
    if "command" in spec:
        return RunCommand([str(a) for a in spec["command"]], reason)  # type: ignore[attr-defined]
    return Fatal(UnavailableError(str(spec["fatal"])))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kill-timeout", type=float, default=30.0)
    parser.add_argument("--stop-signal", default="TERM")
    parser.add_argument("--no-signal-group", action="store_true")
    parser.add_argument("--rewrite", action="append", default=[])
    parser.add_argument("--user")
    parser.add_argument("--splay", type=float, default=0.0)
    parser.add_argument("--success-exit-code", type=int, action="append", default=[])
    parser.add_argument("--pass-fd", type=int, action="append", default=[])
    parser.add_argument("--parent-death-signal", default=None)
    parser.add_argument("--no-new-privileges", action="store_true")
    parser.add_argument("--marker")
    parser.add_argument("--control")
    parser.add_argument("--hold-before-run")
    parser.add_argument("--hold-prepare")
    parser.add_argument("--prepare-error", action="store_true")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command

    logging.basicConfig(stream=sys.stderr, level=logging.DEBUG,
                        format="%(levelname)s %(message)s")
    log = logging.getLogger("entrypoint")
    rewrite = {int(parse_signal(a)): 0 if b in ("0", "none") else int(parse_signal(b))
               for a, b in (r.split(":") for r in args.rewrite)}
    death = int(parse_signal(args.parent_death_signal)) if args.parent_death_signal else 0
    options = ProcessOptions(kill_timeout=args.kill_timeout,
                             stop_signal=int(parse_signal(args.stop_signal)),
                             signal_group=not args.no_signal_group, rewrite_signal=rewrite,
                             user=args.user, splay=args.splay,
                             success_exit_codes=frozenset(args.success_exit_code),
                             pass_fds=tuple(args.pass_fd), parent_death_signal=death,
                             no_new_privs=args.no_new_privileges)
    try:
        supervisor = Supervisor(command, options, log)
    except EntrypointError as exc:
        print(f"entrypoint: {exc}", file=sys.stderr)
        return exc.exit_code
    note(args.marker, "constructed")
    # Our live children right after each start: proves two generations never overlap.
    supervisor.on_child_started(lambda pid, _generation: note(
        args.marker, f"started {pid} live_children={len(children_of(os.getpid()))}"))
    supervisor.on_shutdown(lambda: note(args.marker, "shutdown"))
    if args.control:
        threading.Thread(target=tail, args=(args.control, supervisor), daemon=True).start()

    def prepare() -> Mapping[str, str]:
        note(args.marker, "preparing")
        wait_for(args.hold_prepare)
        if args.prepare_error:
            raise UnavailableError("vault at http://vault:8200 did not answer in time")
        return {**os.environ, "GENERATION": "1"}

    wait_for(args.hold_before_run)
    return supervisor.run(prepare)


if __name__ == "__main__":
    sys.exit(main())
