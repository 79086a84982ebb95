"""Turn a burst of changes into one action: wait for quiet (``wait_min``), at most ``wait_max``.

The same rule as consul-template's ``wait``: every change restarts the quiet timer,
but the first change of a burst sets a deadline that no later change can push back.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Coalescer:
    wait_min: float
    wait_max: float
    _first: float | None = None
    _last: float | None = None
    reasons: list[str] = field(default_factory=list)

    def add(self, now: float, reason: str) -> None:
        if self._first is None:
            self._first = now
        self._last = now
        if reason not in self.reasons:
            self.reasons.append(reason)

    @property
    def pending(self) -> bool:
        return self._first is not None

    def due_at(self) -> float | None:
        if self._first is None or self._last is None:
            return None
        return min(self._last + self.wait_min, self._first + max(self.wait_max, self.wait_min))

    def due(self, now: float) -> bool:
        due_at = self.due_at()
        return due_at is not None and now >= due_at

    def take(self) -> list[str]:
        """The reasons of the burst; the coalescer is empty afterwards."""
        reasons, self.reasons = self.reasons, []
        self._first = self._last = None
        return reasons
