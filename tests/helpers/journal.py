"""Read the journal an app_probe writes, and wait on it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.helpers.cli import wait_until


def events(journal: Path, kind: str | None = None) -> list[dict[str, Any]]:
    if not journal.exists():
        return []
    lines = [json.loads(line) for line in journal.read_text().splitlines() if line.strip()]
    return [e for e in lines if kind is None or e["event"] == kind]


def wait_for(journal: Path, kind: str, count: int = 1,
             timeout: float = 15.0) -> list[dict[str, Any]]:
    wait_until(lambda: len(events(journal, kind)) >= count, timeout=timeout,
               what=f"{count} {kind!r} event(s) in {journal}")
    return events(journal, kind)
