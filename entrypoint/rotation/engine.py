"""The rotation engine: one thread that keeps the app's values current.

It owns the secret side of the state (the current generation, the leases held, what is
due when) and does all network I/O for it, so that the supervisor's main loop never
blocks on a server. It talks to the supervisor only by posting events (restart, signal,
run a command, fatal) and hears back through :meth:`Engine.child_started`.

When something changes (a lease cannot be extended, a poll finds a new version, a file is
edited, ops revoke a lease), the paths concerned are marked dirty and the change goes into
the coalescer. When the burst is over, one successor generation is built from the
unchanged fetches plus fresh reads of the dirty paths, outputs are rendered, and **one**
action is taken. Old leases are revoked once the app runs on their successors.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from entrypoint import backoff
from entrypoint.config.model import Config, OnChange
from entrypoint.errors import EntrypointError
from entrypoint.plan.keys import SourceKey
from entrypoint.plan.resolution import Resolution, Runtime
from entrypoint.process.events import Post
from entrypoint.render.outcome import FatalOutputError, failures_of
from entrypoint.rotation import timing
from entrypoint.rotation.actions import changed_names, decide
from entrypoint.rotation.coalesce import Coalescer
from entrypoint.rotation.failing import FailingOutputs
from entrypoint.rotation.leases import HeldLease, Revoker
from entrypoint.rotation.successor import (
    log_replaced,
    new_leases,
    post_plan,
    stale_leases,
    successor_seed,
    unwatched_carried,
)
from entrypoint.rotation.tasks import Tasks
from entrypoint.sources.base import Fetched, Refresh

# Long enough for one request in flight (the client's timeout) and a few revocations.
STOP_TIMEOUT = 15.0

# Renders the outputs of a resolution; returns the on_change of every file that changed.
RenderFn = Callable[[Resolution], list[OnChange]]


@dataclass(frozen=True)
class _Change:
    reason: str
    keys: frozenset[SourceKey]
    rerender: bool = False


@dataclass(frozen=True)
class _ChildStarted:
    pid: int
    generation: int  # the Restart.generation the child runs on (0: the first values)


class _Stop:
    pass


class Engine(Tasks, FailingOutputs):
    def __init__(self, config: Config, runtime: Runtime, post: Post, log: logging.Logger,
                 render: RenderFn, *, clock: Callable[[], float] = time.monotonic,
                 rng: Callable[[], float] = random.random) -> None:
        self.config = config
        self.runtime = runtime
        self.post = post
        self.log = log
        self.render = render
        self.clock = clock
        self.rng = rng
        self.inbox: queue.SimpleQueue[_Change | _ChildStarted | _Stop] = queue.SimpleQueue()
        self.coalescer = Coalescer(config.wait_min, config.wait_max)
        self._tasks: list[tuple[float, int, tuple[Any, ...]]] = []
        self._seq = itertools.count()
        self._poll_token: dict[SourceKey, int] = {}
        self.dirty: set[SourceKey] = set()
        self.fresh: dict[SourceKey, Fetched] = {}
        self.leases: dict[SourceKey, HeldLease] = {}
        # Values valid for a ttl of their own, without a lease: when each ends (monotonic).
        self.ttl_ends: dict[SourceKey, float] = {}
        self.ttl_reported: set[SourceKey] = set()
        # Leases to revoke once a child runs on the successor that replaced them, tagged
        # with that successor's number (Restart.generation).
        self.revoke_on_start: list[tuple[int, HeldLease]] = []
        self.successors = 0
        self.revoker = Revoker(runtime.sources, log)
        self.failures: dict[str, int] = {}
        self.resolution: Resolution | None = None
        self.env: dict[str, str] = {}
        self.act_failures = 0
        self.failing: dict[Path, int] = {}  # file templates kept at their last good file
        self._retry_token = 0
        self.not_before = 0.0  # backoff after a failed successor
        self.env_matters = True  # False in sidecar mode: no app reads the environment
        self._exiting = False
        self._checking = False  # a lease check is scheduled
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        # Told each generation adopted (in this thread), so that what watches files and
        # Consul keys follows what the outputs read now: a value first read later is
        # watched too.
        self.on_adopt: Callable[[Resolution], None] | None = None

    # -- entry points, safe from any thread -------------------------------------------

    def start(self, resolution: Resolution) -> None:
        """Begin keeping ``resolution`` (the values the app was started with) current."""
        # Start-up is over once the app has its values: from now on a failed call must
        # come back at once, so that this thread keeps its own schedule (renewals,
        # backoff, expiry) instead of sitting in the client's start-up retries.
        self.runtime.sources.end_startup()
        self._adopt(resolution)
        self._thread = threading.Thread(target=self._run, name="rotation", daemon=True)
        self._thread.start()

    def notify(self, reason: str, keys: Iterable[SourceKey] = (), *,
               rerender: bool = False) -> None:
        self.inbox.put(_Change(reason, frozenset(keys), rerender))

    def rotate_all(self, reason: str) -> None:
        """Force a fresh read of every dynamic secret (``entrypoint rotate``)."""
        resolution = self.resolution
        keys = [k for k, f in resolution.generation.fetched.items()
                if f.dynamic] if resolution else []
        self.notify(reason, keys, rerender=True)

    def child_started(self, pid: int, generation: int) -> None:
        """A child runs on the values of ``generation``: what they replaced can go. A
        start on an older successor (the supervisor still working through a restart)
        leaves the leases of newer ones alone."""
        self.inbox.put(_ChildStarted(pid, generation))

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """End the thread, which revokes this process's leases on its way out (if so
        configured). The engine's state is only ever touched by its own thread: if it is
        still in a request at ``timeout``, its leases are left to the source's close,
        which revokes every lease it handed out, even one that arrives later."""
        self._stopping.set()
        if self._thread is None:
            return
        self.inbox.put(_Stop())
        self._thread.join(timeout)
        if self._thread.is_alive():
            self.log.warning("rotation engine still busy after %.0fs at shutdown; its leases "
                             "are revoked as the Vault client closes", timeout)

    def _shut_down(self) -> None:
        if self.config.revoke_on_exit:
            pending = [lease for _, lease in self.revoke_on_start]
            self.revoker.revoke([*pending, *self.leases.values()], "shutdown")
            self.leases.clear()
            self.revoke_on_start.clear()

    # -- the loop ---------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping.is_set():
            timeout = self._next_wake()
            try:
                message = self.inbox.get(timeout=timeout)
            except queue.Empty:
                message = None
            if isinstance(message, _Stop):
                break
            try:
                if message is not None:
                    self._handle(message)
                self._run_due()
            except Exception:  # the engine must never stop watching silently
                self.log.exception("rotation engine error; it keeps running")
        self._shut_down()

    def _next_wake(self) -> float:
        now = self.clock()
        wakes = [t[0] for t in self._tasks[:1]]
        due = self.coalescer.due_at()
        if due is not None:
            wakes.append(max(due, self.not_before))
        token_ends = [lease.token_deadline for lease in self.leases.values()
                      if lease.token_deadline is not None and not lease.token_replacing]
        if token_ends:
            # A new login is not an event we hear about: look at the token often enough
            # to replace its leases within a tenth of the life it has left.
            wakes.append(now + min(max(0.25, (min(token_ends) - now) / 10), 60.0))
        if not wakes:
            return 60.0
        return max(0.0, min(60.0, min(wakes) - now))

    def _handle(self, message: _Change | _ChildStarted) -> None:
        if isinstance(message, _ChildStarted):
            due = [lease for g, lease in self.revoke_on_start if g <= message.generation]
            self.revoke_on_start = [(g, lease) for g, lease in self.revoke_on_start
                                    if g > message.generation]
            if due:
                self.revoker.revoke(due, "the app runs on their successors")
            return
        self.dirty |= message.keys
        if message.keys or message.rerender:
            self.coalescer.add(self.clock(), message.reason)

    def _run_due(self) -> None:
        now = self.clock()
        while self._tasks and self._tasks[0][0] <= now and not self._stopping.is_set():
            _, _, task = heapq.heappop(self._tasks)
            try:
                getattr(self, f"_task_{task[0]}")(*task[1:])
            except Exception:
                # A bug must not end a renewal or a poll for good: its schedule would be
                # lost and nothing would say so. Log it and try the same task again.
                self.log.exception("rotation engine error (%s); trying again in %.0fs",
                                   task[0], backoff.RUNNING_CAP)
                self._schedule(self.clock() + backoff.RUNNING_CAP, *task)
        self._follow_tokens(self.clock())
        self._check_expiry(self.clock())
        now = self.clock()
        if (self.coalescer.due(now) and now >= self.not_before and not self._exiting
                and not self._stopping.is_set()):
            self._act()

    def _schedule(self, when: float, *task: Any) -> None:
        heapq.heappush(self._tasks, (when, next(self._seq), task))

    # -- adopting a generation ---------------------------------------------------------

    def _adopt(self, resolution: Resolution, only: Iterable[SourceKey] | None = None) -> None:
        """Track the leases and polls of ``resolution`` (of the keys in ``only``, if given)."""
        self.resolution = resolution
        self.env = resolution.child_env()
        now = self.clock()
        fetched = resolution.generation.fetched
        keys = list(fetched) if only is None else [k for k in only if k in fetched]
        for key in keys:
            self._track(key, fetched[key], now)
        for key in [k for k, lease in self.leases.items()
                    if k not in fetched or fetched[k].lease_id != lease.lease_id]:
            del self.leases[key]
        for key in [k for k in self.ttl_ends
                    if k not in fetched or fetched[k].refresh is not Refresh.TTL]:
            del self.ttl_ends[key]
        if self.leases and self.config.lease_check_interval > 0 and not self._checking:
            # Also when the first lease comes with a later generation (a template that
            # started to use a dynamic secret); the check then reschedules itself.
            self._checking = True
            self._schedule(timing.poll_at(now, self.config.lease_check_interval, self.rng),
                           "check")
        if self.on_adopt is not None:
            try:
                self.on_adopt(resolution)
            except Exception:  # the generation is adopted all the same; its action follows
                self.log.exception("rotation engine error while updating the file watch; "
                                   "files or Consul keys first read by this generation may "
                                   "not be watched")

    def _track(self, key: SourceKey, item: Fetched, now: float) -> None:
        """Schedule what keeps ``item`` current, by its ``refresh`` (sources/base.py)."""
        lease = HeldLease.from_fetched(key, item)
        self.leases.pop(key, None)
        if lease is not None:
            state = self._login_state(key)
            if state is not None:
                lease.token_generation, lease.token_deadline = state
            self.leases[key] = lease
            when = (timing.renew_at(lease.times, self.config.renew_fraction, self.rng)
                    if lease.times.renewable else
                    self._replace_at(lease.times, now))
            self._schedule(when, "renew" if lease.times.renewable else "replace",
                           key, lease.lease_id)
        elif item.refresh is Refresh.TTL and item.ttl is not None:
            token = self._poll_token[key] = self._poll_token.get(key, 0) + 1
            times = timing.LeaseTimes(item.fetched_at, item.fetched_at + item.ttl, False)
            self.ttl_ends[key] = times.expires_at
            self.ttl_reported.discard(key)
            self._schedule(timing.replace_at_life(times, now, self.config.replace_fraction,
                                                  self.rng, margin=self._margin()),
                           "expire", key, token)
        elif item.refresh in (Refresh.POLL, Refresh.ROTATED):
            self._schedule_poll(key, item, now)

    def _schedule_poll(self, key: SourceKey, item: Fetched, now: float) -> None:
        token = self._poll_token[key] = self._poll_token.get(key, 0) + 1
        if item.refresh is Refresh.ROTATED:
            when = timing.static_creds_poll_at(now, self.config.static_creds_poll_interval,
                                               item.ttl, self.rng)
        else:
            when = timing.poll_at(now, self.config.poll_interval, self.rng)
        self._schedule(when, "poll", key, token)

    # -- tasks ------------------------------------------------------------------------

    def _mark(self, key: SourceKey, reason: str) -> None:
        self.dirty.add(key)
        self.coalescer.add(self.clock(), reason)

    # -- acting -----------------------------------------------------------------------

    def _act(self) -> None:
        assert self.resolution is not None
        old = self.resolution
        dirty = set(self.dirty)
        generation = self.runtime.new_generation(
            successor_seed(old.generation, dirty | unwatched_carried(old.generation),
                           self.fresh))
        try:
            resolution = self.runtime.resolve(generation)
            changed_files = self.render(resolution)
        except FatalOutputError as exc:
            self._output_fatal(exc, old.generation, generation)
            return
        except Exception as exc:
            # Any failure (a bug included) backs off: the burst stays pending, and
            # retrying it at once would spin this thread and flood the log.
            self.act_failures += 1
            delay = backoff.running_delay(self.act_failures, self.rng)
            fields = {"event": "refresh", "outcome": "error", "error": str(exc),
                      "delay": round(delay, 3), "attempt": self.act_failures}
            if isinstance(exc, EntrypointError):
                self.log.warning("could not fetch new values: %s; the app keeps the last "
                                 "good values; retry in %.1fs", exc, delay, extra=fields)
            else:
                self.log.exception("rotation engine error while building new values; the "
                                   "app keeps the last good values; retry in %.1fs", delay,
                                   extra=fields)
            log_replaced(self.log, old.generation, dirty, "error", str(exc))
            # A failed successor must not leak the leases it did obtain.
            for key, lease_id in new_leases(old.generation, generation):
                self.revoker.revoke_ids(key, [lease_id])
            self.not_before = self.clock() + delay
            return
        if self.act_failures:
            self.log.info("recovered: new values fetched after %d failed attempts",
                          self.act_failures)
        self.act_failures = 0
        failed = failures_of(changed_files)
        # Paths only failing templates read keep their last good value and stay dirty.
        held = self._hold_back(old.generation, generation, dirty, failed)
        log_replaced(self.log, old.generation, dirty - held, "ok", None)
        reasons = self.coalescer.take()
        self.dirty = set(held)
        self.fresh.clear()
        new_env = resolution.child_env()
        plan = (decide(self.env, new_env, changed_files, reasons) if self.env_matters else
                decide({}, {}, changed_files, reasons))
        stale = stale_leases(old.generation, generation)
        reason = "; ".join(reasons)
        self._adopt(resolution, only=[k for k in generation.fetched if k not in held
                                      and (k in dirty or k not in old.generation.fetched)])
        self._report_outputs(failed)
        if plan.restart:
            self.successors += 1
            self.revoke_on_start.extend((self.successors, lease) for lease in stale)
        post_plan(plan, new_env, reason, changed_names(old.child_env(), new_env),
                  self.post, self.log, generation=self.successors)
        if stale and not plan.restart:
            grace = self.config.revoke_grace
            self.log.info("old leases revoked in %.0fs (revoke_grace)", grace)
            self._schedule(self.clock() + grace, "revoke_later", tuple(stale))
