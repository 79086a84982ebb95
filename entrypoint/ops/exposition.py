"""The Prometheus text exposition format (version 0.0.4), written by hand.

Why not ``prometheus_client``: importing it loads ``http.server``, ``http.client`` and
``ssl`` (its exposition module needs them), which took the resident entrypoint on the
local directory from 19.4 MB to 27.8 MB, over its 20 MB target (benchmarks/, row
``rss-local-metrics``; docs/operations.md). The format we need is small: counters,
gauges and one histogram, each ``# HELP``, ``# TYPE`` and samples with escaped label
values. tests/test_ops_metrics.py reads our output back with prometheus_client's own
parser, so a mistake here fails a test rather than a scrape.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Labels = Sequence[tuple[str, str]]


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_value(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return repr(float(value))


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape_value(v)}"' for k, v in labels) + "}"


@dataclass
class Family:
    """One metric: its name (counters without ``_total``), help, type and samples."""

    name: str
    help: str
    type: str  # "counter" | "gauge" | "histogram"
    samples: list[tuple[str, Labels, float]] = field(default_factory=list)

    def add(self, value: float, labels: Labels = ()) -> None:
        suffix = "_total" if self.type == "counter" else ""
        self.samples.append((self.name + suffix, tuple(labels), value))

    def add_histogram(self, labels: Labels, bounds: Sequence[float],
                      counts: Sequence[int], total: int, seconds: float) -> None:
        """``counts[i]``: observations <= ``bounds[i]`` (already cumulative)."""
        for bound, count in zip(bounds, counts, strict=True):
            le = (*labels, ("le", _number(bound)))
            self.samples.append((self.name + "_bucket", le, count))
        self.samples.append((self.name + "_bucket", (*labels, ("le", "+Inf")), total))
        self.samples.append((self.name + "_count", tuple(labels), total))
        self.samples.append((self.name + "_sum", tuple(labels), seconds))


def render(families: Iterable[Family]) -> bytes:
    lines: list[str] = []
    for family in families:
        name = family.name + ("_total" if family.type == "counter" else "")
        lines.append(f"# HELP {name} {_escape_help(family.help)}")
        lines.append(f"# TYPE {name} {family.type}")
        for sample, labels, value in family.samples:
            lines.append(f"{sample}{_labels(labels)} {_number(value)}")
    return ("\n".join(lines) + "\n").encode()
