"""``entrypoint status``: what the running entrypoint holds and does, never a value.

The snapshot is built from memory only (the engine's leases and schedule, the Vault
token's expiry as last seen, the observer's counters): asking costs no request to a
server, so ``status`` and ``/metrics`` can be polled freely. It names keys, kinds,
versions and short lease ids (a hash, see :func:`state.short_lease_id`); no secret value
and no lease id ever goes into it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from entrypoint.config.model import Config
from entrypoint.ops.state import Observer, short_lease_id
from entrypoint.secret import scrub
from entrypoint.sources.base import Refresh

if TYPE_CHECKING:
    from entrypoint.plan.resolution import Runtime
    from entrypoint.rotation.engine import Engine

Snapshot = dict[str, Any]


def _copy(read: Callable[[], Any]) -> Any:
    """Copy state the engine's thread owns: a copy taken while it changes the dict may
    raise; the next attempt sees it settled."""
    for _ in range(10):
        try:
            return read()
        except RuntimeError:
            continue
    return read()


def _due_by_key(engine: Engine, mono_now: float) -> dict[Any, tuple[str, float]]:
    """The next scheduled task (renew, replace, poll) of each key, in seconds from now."""
    due: dict[Any, tuple[str, float]] = {}
    for when, _, task in sorted(_copy(lambda: list(engine._tasks))):
        if len(task) > 1 and isinstance(task[1], tuple) and task[1] not in due:
            due[task[1]] = (str(task[0]), max(0.0, when - mono_now))
    return due


def auth_snapshot(runtime: Runtime) -> Snapshot | None:
    # The local secrets directory answers vault: references too, and logs in nowhere.
    vault = runtime.sources.built().get("vault")
    return vault.auth_status() if vault is not None else None


def snapshot(engine: Engine | None, runtime: Runtime, observer: Observer,
             *, mode: str) -> Snapshot:
    now, mono = time.time(), time.monotonic()
    keys: list[Snapshot] = []
    resolution = engine.resolution if engine is not None else None
    if engine is not None and resolution is not None:
        fetched = _copy(lambda: dict(resolution.generation.fetched))
        leases = _copy(lambda: dict(engine.leases))
        poll_failures = _copy(lambda: dict(engine.failures))
        due = _due_by_key(engine, mono)
        for key, item in sorted(fetched.items(), key=lambda kv: str(kv[0])):
            label = key.label
            lease = leases.get(key)
            task = due.get(key)
            facts = observer.keys.get(label)
            # A static role's ttl is Vault's countdown to its next password, as read
            # (fetched_at is on the engine's monotonic clock).
            ttl = (lease.times.expires_at - mono if lease is not None else
                   item.ttl - (mono - item.fetched_at)
                   if item.refresh is Refresh.ROTATED and item.ttl is not None else None)
            keys.append({
                "key": key.ref,
                "kind": item.kind,
                "version": item.version,
                "lease": short_lease_id(lease.lease_id) if lease is not None else None,
                "ttl": None if ttl is None else round(max(0.0, ttl), 1),
                "next": task[0] if task else None,
                "next_in": round(task[1], 1) if task else None,
                "failures": lease.failures if lease is not None else poll_failures.get(label, 0),
                "last_error": scrub(facts.last_error) if facts and facts.last_error else None,
            })
    with observer.guard:
        app = {
            "pid": observer.app_pid,
            "uptime": (round(now - observer.app_started_at, 1)
                       if observer.app_started_at is not None else None),
            "restarts": observer.restarts,
            "last_exit_code": observer.last_exit_code,
            "last_action": observer.last_action,
            "last_action_reason": (scrub(str(observer.last_action_reason))
                                   if observer.last_action_reason is not None else None),
            "last_action_ago": (round(now - observer.last_action_at, 1)
                                if observer.last_action_at is not None else None),
        }
        refreshed = observer.last_refresh_at
    return {
        "mode": mode,
        "ready": observer.ready,
        "uptime": round(now - observer.started_at, 1),
        "auth": auth_snapshot(runtime),
        "keys": keys,
        "app": app,
        "refresh_failures": engine.act_failures if engine is not None else 0,
        "last_refresh_ago": round(now - refreshed, 1) if refreshed is not None else None,
    }


def _cell(value: Any, unit: str = "") -> str:
    return "-" if value is None else f"{value}{unit}"


def format_table(snap: Snapshot) -> str:
    lines = [f"mode {snap['mode']}, ready {'yes' if snap['ready'] else 'no'}, "
             f"up {_cell(snap['uptime'], 's')}"]
    auth = snap.get("auth")
    if auth:
        lines.append(f"vault auth {auth['method']}, token ttl {_cell(auth['token_ttl'], 's')}")
    app = snap["app"]
    if snap["mode"] != "sidecar":
        lines.append(f"app pid {_cell(app['pid'])}, up {_cell(app['uptime'], 's')}, "
                     f"restarts {app['restarts']}")
    if app["last_action"]:
        lines.append(f"last action {app['last_action']} {_cell(app['last_action_ago'], 's')} "
                     f"ago: {app['last_action_reason']}")
    rows = [("KEY", "KIND", "VERSION/LEASE", "TTL", "NEXT", "FAILURES", "LAST ERROR")]
    for k in snap["keys"]:
        ident = f"v{k['version']}" if k["version"] is not None else _cell(k["lease"])
        nxt = f"{k['next']} in {k['next_in']}s" if k["next"] else "-"
        rows.append((k["key"], k["kind"], ident, _cell(k["ttl"], "s"), nxt,
                     str(k["failures"]), _cell(k["last_error"])))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines.append("")
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1]
              for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def encode(snap: Snapshot) -> bytes:
    return json.dumps(snap, sort_keys=True).encode() + b"\n"


def show(config: Config, *, fmt: str) -> int:
    """``entrypoint status``: ask the running entrypoint, print its answer."""
    from entrypoint.ops.control import request_status

    snap = request_status(config)
    print(json.dumps(snap, indent=2, sort_keys=True) if fmt == "json" else format_table(snap))
    return 0
