"""Sidecar mode: ``entrypoint run`` with no command stays resident without an app.

For a native Kubernetes sidecar (an init container with ``restartPolicy: Always``) or an
ECS sidecar sharing a volume: it resolves, renders the file templates, then keeps them
fresh (renewals, replacements, polls, file edits) and runs their ``on_change`` commands.
There is no app to restart or signal, so those actions are logged and dropped. SIGTERM
or SIGINT ends it cleanly (exit 0 once ready), revoking its leases as usual
(``revoke_on_exit``). ``entrypoint render`` remains the one-shot form for init containers.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from entrypoint.config.model import Config
from entrypoint.errors import EntrypointError, report_end
from entrypoint.process import reaper, signals
from entrypoint.process.child import Launch
from entrypoint.process.events import Fatal, Restart, RunCommand, SignalChild
from entrypoint.process.side_commands import SideCommands

if TYPE_CHECKING:
    from entrypoint.commands.run import Resident
    from entrypoint.ops.service import Ops

TICK = 1.0  # reap at least this often even if a SIGCHLD is somehow missed


def run(config: Config, env: Mapping[str, str], log: logging.Logger) -> int:
    from entrypoint.commands.run import Resident
    from entrypoint.ops.service import Ops
    from entrypoint.plan.resolution import Runtime
    from entrypoint.process.identity import resolve_user

    inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
    signals.install(inbox.put_nowait)  # at once: a SIGTERM while resolving is not lost
    reaper.become_subreaper(log)  # on_change commands may leave orphans
    identity = resolve_user(config.user) if config.user else None
    launch = Launch(identity, (), config.parent_death_signal or 0)
    runtime = Runtime(config, env, log)
    ops = Ops(config, runtime, log, mode="sidecar")
    resident = Resident(config, runtime, inbox.put, log, ops)
    commands = SideCommands(log)
    ops.start_metrics()
    log.info("sidecar mode: no command, keeping files rendered and fresh",
             extra={"event": "sidecar"})

    def prepare() -> None:
        signals.block_in_this_thread()
        try:
            inbox.put(("prepared", resident.prepare()))
        except BaseException as exc:
            inbox.put(("failed", exc))

    threading.Thread(target=prepare, name="entrypoint-prepare", daemon=True).start()
    loop = _Loop(config, log, resident, ops, commands, launch)
    code: int | None = None
    try:
        while code is None:
            try:
                item = inbox.get(timeout=loop.wait())
            except queue.Empty:
                item = None
            loop.release_due()
            code = loop.handle(item)
            for pid, status in reaper.reap():
                commands.reaped(pid, status)
    except EntrypointError as exc:
        code = report_end(log, exc, config.debug)
    finally:
        ops.ready.set(False)
        commands.kill_all()
        for pid, status in reaper.reap():
            commands.reaped(pid, status)
        resident.shutdown()
    return code


class _Loop:
    """What the sidecar's loop keeps between items, and what each item does."""

    def __init__(self, config: Config, log: logging.Logger, resident: Resident, ops: Ops,
                 commands: SideCommands, launch: Launch) -> None:
        self.config, self.log, self.resident, self.ops = config, log, resident, ops
        self.commands, self.launch = commands, launch
        self.child_env: Mapping[str, str] = {}
        self.ready = False
        # (when the readers of the files had time to move on, the successor they moved to)
        self.graces: list[tuple[float, int]] = []

    def wait(self) -> float:
        if not self.graces:
            return TICK
        return min(TICK, max(0.0, self.graces[0][0] - time.monotonic()))

    def release_due(self) -> None:
        while self.graces and time.monotonic() >= self.graces[0][0]:
            # The engine's cue that the leases this successor replaced may go.
            self.resident.child_started(0, self.graces.pop(0)[1])

    def handle(self, item: Any) -> int | None:
        """The exit status when ``item`` ends the sidecar, else None."""
        if isinstance(item, tuple) and item[0] == "prepared":
            self.child_env, self.ready = item[1], True
            self.ops.ready.set(True)  # resolved and rendered: what a probe waits for
        elif isinstance(item, tuple) and item[0] == "failed":
            return report_end(self.log, item[1], self.config.debug)
        elif isinstance(item, int) and item in signals.SHUTDOWN:
            self.log.info("received %s: stopping (sidecar mode)", signals.name(item),
                          extra={"event": "stop", "reason": f"received {signals.name(item)}"})
            return 0 if self.ready else 128 + item
        elif isinstance(item, RunCommand):
            self.commands.start(item, self.child_env, self.launch)
        elif isinstance(item, Restart):
            self.child_env = item.env  # what on_change commands get from now on
            # No app will start on the new values: whoever reads the files gets
            # revoke_grace to pick them up before the old leases are revoked.
            self.graces.append((time.monotonic() + self.config.revoke_grace, item.generation))
            self.log.info("new values rendered; no app to restart (sidecar mode): %s",
                          item.reason, extra={"event": "no_action", "reason": item.reason})
        elif isinstance(item, SignalChild):
            self.log.info("no app to send %s to (sidecar mode): %s",
                          signal.Signals(item.signum).name, item.reason)
        elif isinstance(item, Fatal):
            return report_end(self.log, item.error, self.config.debug)
        return None

