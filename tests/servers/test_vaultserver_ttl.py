"""The lease TTL maths and Vault's duration strings, as pure functions."""

from __future__ import annotations

import pytest

from tests.vaultserver.leases import calculate_ttl
from tests.vaultserver.wire import VaultError, human_duration, parse_duration


def test_human_duration_drops_zero_units() -> None:
    assert [human_duration(s) for s in (0, 2, 60, 3600, 5400, 1799, 90061)] == [
        "0s", "2s", "1m", "1h", "1h30m", "29m59s", "25h1m1s"]


def test_parse_duration_forms() -> None:
    assert [parse_duration(v) for v in (30, "45", "1h", "1h30m", "500ms", "2d", None)] == [
        30, 45, 3600, 5400, 0, 172800, 0]
    with pytest.raises(VaultError):
        parse_duration("ten minutes")


def test_calculate_ttl_caps_from_issue_time() -> None:
    ttl, warnings = calculate_ttl(3600, 60, 120, issue_time=1000.0, now=1030.0)
    assert ttl == 90
    assert warnings == ['TTL of "1h" exceeded the effective max_ttl of "1m30s"; '
                        "TTL value is capped accordingly"]
    assert calculate_ttl(0, 60, 120, issue_time=1000.0, now=1030.0) == (60, [])
    assert calculate_ttl(10, 60, 0, issue_time=1000.0, now=99999.0) == (10, [])
    with pytest.raises(VaultError, match="past the max TTL, cannot renew"):
        calculate_ttl(10, 60, 120, issue_time=1000.0, now=1120.0)
