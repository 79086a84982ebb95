"""Getting a signal to the app: rewritten, to its group or to it alone, and never too early.

A signal whose default action kills (SIGHUP, SIGUSR1, ...) sent to a child that has
just started and not installed its handler yet would kill it: dumb-init#136, where apps
died with 129 at start. Such a signal is *held* until ``/proc/<pid>/status`` shows the
child catches or ignores it, or until it has had READY_GRACE seconds to get there (after
that, the signal means for the app what it always meant). Signals that arrive while no
child runs (before the start, during a restart) are held the same way for the next one.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Mapping

from entrypoint.process import signals
from entrypoint.process.child import Child

READY_GRACE = 5.0


class Forwarder:
    def __init__(self, rewrite: Mapping[int, int], group: bool, log: logging.Logger) -> None:
        self._rewrite = rewrite
        self._group = group
        self._log = log
        self._held: list[tuple[int, str]] = []  # (signal to send, log line)

    @property
    def holding(self) -> bool:
        return bool(self._held)

    def forward(self, child: Child | None, signum: int) -> None:
        """Pass on a signal we received, rewritten; held if ``child`` is None."""
        sent = self._rewrite.get(signum, signum)
        if not sent:
            self._log.debug("dropped %s (rewrite_signal)", signals.name(signum))
            return
        what = "forwarded " + signals.name(signum)
        if sent != signum:
            what += " as " + signals.name(sent)
        if child is None:
            self._held.append((sent, what))
        else:
            self.deliver(child, sent, what)

    def deliver(self, child: Child, signum: int, what: str, *,
                event: str = "signal_forwarded", reason: str | None = None) -> None:
        """Send ``signum`` as is, unless the child is too fresh to survive it yet."""
        if not child.running and not self._group:
            return  # never signal a reaped pid: it may be someone else's by now
        if self._too_early(child, signum):
            self._log.debug("holding %s until the child can take it", signals.name(signum))
            self._held.append((signum, what))
            return
        signals.send(child.pid, signum, group=self._group)
        # Window resizes and SIGCONT are routine; do not flood the log with them.
        level = logging.DEBUG if signum in (signal.SIGWINCH, signal.SIGCONT) else logging.INFO
        self._log.log(level, "%s", what, extra={"event": event, "signal": signals.name(signum),
                                                "pid": child.pid, "reason": reason})

    def release(self, child: Child) -> None:
        """Deliver what was held to ``child`` (each may be held again if still too early)."""
        held, self._held = self._held, []
        for signum, what in held:
            self.deliver(child, signum, what)

    def _too_early(self, child: Child, signum: int) -> bool:
        if signum not in signals.FATAL_BY_DEFAULT or signum in signals.SHUTDOWN:
            return False  # harmless by default, or a stop request that must not wait
        if time.monotonic() - child.started > READY_GRACE:
            return False
        return signals.handles(child.pid, signum) is False
