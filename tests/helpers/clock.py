"""The fake clock the in-process tests inject where the code takes ``clock=``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Clock:
    """Monotonic time that moves only when the test sets ``now``."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now
