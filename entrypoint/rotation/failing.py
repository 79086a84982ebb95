"""Outputs that fail after start: one failing file template does not block the others.

The renderer (``render/outputs.py``) writes every file template that rendered and
reports the ones that did not (:class:`OutputFailure`). Here the engine

- holds the paths only failing templates read at their last good value in the new
  generation (their leases stay, a lease obtained for nothing is given back) and keeps
  them dirty, so that the next successor reads them again;
- logs a warning per failing template and schedules a retry with the running backoff
  (``backoff.running_delay``); other changes are not held up by it;
- says when a template renders again;
- with ``error_on_refresh = "fatal"``, stops the app with the template's error.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from entrypoint import backoff
from entrypoint.plan.keys import SourceKey
from entrypoint.plan.resolve import Generation
from entrypoint.process.events import Fatal, Post
from entrypoint.render.outcome import FatalOutputError, OutputFailure
from entrypoint.rotation.coalesce import Coalescer
from entrypoint.rotation.leases import Revoker
from entrypoint.rotation.successor import new_leases
from entrypoint.sources.base import Fetched


class FailingOutputs:
    post: Post
    log: logging.Logger
    clock: Callable[[], float]
    rng: Callable[[], float]
    revoker: Revoker
    coalescer: Coalescer
    fresh: dict[SourceKey, Fetched]
    _exiting: bool
    # Destination of each failing file template -> failed attempts in a row.
    failing: dict[Path, int]
    _retry_token: int

    def _schedule(self, when: float, *task: Any) -> None:
        raise NotImplementedError

    def _output_fatal(self, exc: FatalOutputError, old: Generation, new: Generation) -> None:
        """A template with ``error_on_refresh = "fatal"`` failed: nothing was written."""
        for key, lease_id in new_leases(old, new):
            self.revoker.revoke_ids(key, [lease_id])
        self.post(Fatal(exc.error))
        # The supervisor stops the app and exits: no successor to fetch any more.
        self._exiting = True

    def _hold_back(self, old: Generation, new: Generation, dirty: set[SourceKey],
                   failed: tuple[OutputFailure, ...]) -> set[SourceKey]:
        """Put the last good value of each path only failing templates read back into
        ``new``; returns those to read again (they stay dirty)."""
        held: set[SourceKey] = set()
        only_failing = {key for failure in failed for key in failure.held}
        for key in only_failing & dirty:
            was, now = old.fetched.get(key), new.fetched.get(key)
            if now is not None and now.lease_id and (was is None
                                                     or was.lease_id != now.lease_id):
                self.revoker.revoke_ids(key, [now.lease_id])  # obtained for nothing
            self.fresh.pop(key, None)  # the retry reads it again
            if was is None:
                new.fetched.pop(key, None)
                continue
            new.fetched[key] = was
            held.add(key)
        return held

    def _report_outputs(self, failed: tuple[OutputFailure, ...]) -> None:
        now = self.clock()
        failing = {f.destination for f in failed}
        for destination in [d for d in self.failing if d not in failing]:
            attempts = self.failing.pop(destination)
            self.log.info("recovered: template %s rendered after %d failed attempts",
                          destination, attempts, extra={"event": "template",
                                                        "outcome": "ok",
                                                        "destination": str(destination)})
        if not failed:
            return
        attempt = max(self.failing.get(d, 0) for d in failing) + 1
        delay = backoff.running_delay(attempt, self.rng)
        for failure in failed:
            self.failing[failure.destination] = self.failing.get(failure.destination, 0) + 1
            self.log.warning(
                "template %s not rendered: %s; it keeps its last good file, the other "
                "outputs are up to date; retry in %.1fs", failure.destination, failure.error,
                delay, extra={"event": "template", "outcome": "error",
                              "destination": str(failure.destination),
                              "error": str(failure.error), "delay": round(delay, 3),
                              "attempt": self.failing[failure.destination]})
        self._retry_token += 1
        self._schedule(now + delay, "retry_outputs", self._retry_token)

    def _task_retry_outputs(self, token: int) -> None:
        if token != self._retry_token or not self.failing:
            return
        names = ", ".join(str(d) for d in self.failing)
        self.coalescer.add(self.clock(), f"retrying template {names}")
