"""The key/value state behind the Consul stand-in, with Consul's index rules.

Consul numbers every write with a Raft index. An entry keeps the index it was created at
and the index of its last write (a PUT of the same value is still a write). A read answers
with an index in X-Consul-Index that a client sends back as ?index=N to block until the
answer changes:

- one key that exists: its ModifyIndex;
- one key that does not: the index of the last write to the KV table (never 0);
- a prefix: the highest ModifyIndex under it, counting deleted keys ("tombstones") so that
  a deletion wakes watchers too; the table's index if nothing is or was under it.

(agent/consul/state/kvs.go and kvs_endpoint.go in Consul.) Tombstones are kept for good
here; Consul reaps them after a while.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

# A fresh Consul server has already committed a few Raft entries; starting above 1 keeps
# indexes looking like real ones and keeps 0 and 1 special as in Consul.
FIRST_INDEX = 10


@dataclass
class KVEntry:
    key: str
    value: bytes
    flags: int
    create_index: int
    modify_index: int
    lock_index: int = 0

    def to_json(self) -> dict[str, object]:
        # Consul's field order and its null for an empty value.
        return {
            "LockIndex": self.lock_index,
            "Key": self.key,
            "Flags": self.flags,
            "Value": base64.b64encode(self.value).decode() if self.value else None,
            "CreateIndex": self.create_index,
            "ModifyIndex": self.modify_index,
        }


class KVStore:
    """Thread-safe KV state; every change wakes blocked queries."""

    def __init__(self) -> None:
        self.changed = threading.Condition()
        self._raft_index = FIRST_INDEX
        self._table_index = 0
        self._entries: dict[str, KVEntry] = {}
        self._tombstones: dict[str, int] = {}
        # Times a blocking query woke, found its answer unchanged and went back to wait:
        # lets a test know that a write was seen and judged irrelevant.
        self.reparked = 0

    # -- writes ----------------------------------------------------------------------------

    def put(self, key: str, value: bytes, flags: int = 0, cas: int | None = None) -> bool:
        """Consul's PUT: False when a check-and-set index does not match."""
        with self.changed:
            current = self._entries.get(key)
            if cas is not None:
                if cas == 0 and current is not None:
                    return False
                if cas != 0 and (current is None or current.modify_index != cas):
                    return False
            index = self._next_index()
            if current is None:
                self._entries[key] = KVEntry(key, value, flags, index, index)
                self._tombstones.pop(key, None)
            else:
                current.value, current.flags, current.modify_index = value, flags, index
            self.changed.notify_all()
            return True

    def delete(self, key: str, recurse: bool = False, cas: int | None = None) -> bool:
        """Consul's DELETE: a key, or with recurse every key under the prefix."""
        with self.changed:
            if recurse:
                doomed = [k for k in self._entries if k.startswith(key)]
            else:
                current = self._entries.get(key)
                if cas is not None and (cas == 0 or current is None or current.modify_index != cas):
                    return False
                doomed = [key] if current is not None else []
            if doomed:
                index = self._next_index()
                for name in doomed:
                    del self._entries[name]
                    self._tombstones[name] = index
                self.changed.notify_all()
            return True

    def clear(self) -> None:
        """Forget everything, indexes included (a server that lost its data)."""
        with self.changed:
            self._raft_index = FIRST_INDEX
            self._table_index = 0
            self._entries.clear()
            self._tombstones.clear()
            self.changed.notify_all()

    # -- reads -----------------------------------------------------------------------------

    @property
    def index(self) -> int:
        with self.changed:
            return max(self._table_index, 1)

    def get(self, key: str) -> tuple[int, KVEntry | None]:
        with self.changed:
            entry = self._entries.get(key)
            if entry is None:
                return max(self._table_index, 1), None
            return entry.modify_index, _copy(entry)

    def list(self, prefix: str) -> tuple[int, list[KVEntry]]:
        with self.changed:
            entries = sorted(
                (_copy(e) for k, e in self._entries.items() if k.startswith(prefix)),
                key=lambda e: e.key,
            )
            if prefix:
                under = [e.modify_index for e in entries]
                under += [i for k, i in self._tombstones.items() if k.startswith(prefix)]
                index = max(under, default=0) or self._table_index
            else:
                index = self._table_index
            return max(index, 1), entries

    def wait(
        self,
        query: Callable[[], tuple[int, T]],
        min_index: int,
        timeout: float,
        abandoned: Callable[[], bool] = lambda: False,
    ) -> tuple[int, T] | None:
        """A blocking query: run `query` until its index passes `min_index` or time is up.

        None if `abandoned()` turns true meanwhile (the server is going down).
        """
        deadline = time.monotonic() + timeout
        with self.changed:
            woken = False
            while True:
                if abandoned():
                    return None
                index, result = query()
                remaining = deadline - time.monotonic()
                if min_index == 0 or index > min_index or remaining <= 0:
                    return index, result
                if woken:
                    self.reparked += 1
                self.changed.wait(remaining)
                woken = True

    def wake_all(self) -> None:
        with self.changed:
            self.changed.notify_all()

    def _next_index(self) -> int:
        self._raft_index += 1
        self._table_index = self._raft_index
        return self._raft_index


def _copy(entry: KVEntry) -> KVEntry:
    return KVEntry(
        entry.key,
        entry.value,
        entry.flags,
        entry.create_index,
        entry.modify_index,
        entry.lock_index,
    )
