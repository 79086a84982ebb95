"""Requests per hour at real settings, from a scaled-time run against the real Vault:
one count for the load test (tests/e2e/test_load.py) and the benchmark (benchmarks/vault.py).
"""

from __future__ import annotations


def per_real_hour(timestamps: list[float], window: float, scale: float) -> float:
    """Requests per hour at real settings for one kind of request, in a run where every
    interval and TTL was divided by ``scale`` and ``window`` seconds were counted.

    From the mean interval between its requests ((n - 1) / (last - first)), not from the
    count in the window, which is off by up to one request at each edge: that is 0.4 per
    hour for something done every 40 minutes, and a renewal is done that rarely. Two
    requests already give one whole interval; only a single one falls back to the count.
    """
    if len(timestamps) >= 2 and max(timestamps) > min(timestamps):
        per_second = (len(timestamps) - 1) / (max(timestamps) - min(timestamps))
    else:
        per_second = len(timestamps) / window
    return per_second * 3600 / scale


KINDS = (
    ("sys/internal/ui/mounts/", "mount lookup"),
    ("auth/token/lookup-self", "token lookup"),
    ("secret/data/", "kv read"),
    ("database/creds/", "db creds"),
    ("sys/leases/lookup", "lease lookup"),
    ("sys/leases/renew", "lease renew"),
    ("sys/renew", "lease renew"),
    ("sys/leases/revoke", "lease revoke"),
    ("auth/token/renew", "token renew"),
)


def kind_of(path: str) -> str:
    """What a request to ``path`` does, as the requests-per-hour tables name it."""
    for prefix, kind in KINDS:
        if path.startswith(prefix):
            return kind
    return path
