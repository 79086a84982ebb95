"""Pure retry/renewal maths of entrypoint.backoff: plain numbers, no clock, no sleep."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from entrypoint import backoff


def const(x: float):  # an injected random source that always answers x
    return lambda: x


ALMOST_ONE = math.nextafter(1.0, 0.0)


class TestRetryDelay:
    def test_bound_doubles_from_base(self) -> None:
        bounds = [backoff.retry_delay(a, 0.5, 100.0, const(ALMOST_ONE)) for a in range(1, 6)]
        assert [round(b, 6) for b in bounds] == [0.5, 1.0, 2.0, 4.0, 8.0]

    def test_capped(self) -> None:
        assert backoff.retry_delay(20, 0.5, 10.0, const(ALMOST_ONE)) == pytest.approx(10.0)

    def test_full_jitter_reaches_zero(self) -> None:
        assert backoff.retry_delay(5, 0.5, 10.0, const(0.0)) == 0.0

    def test_huge_attempt_does_not_overflow(self) -> None:
        assert backoff.retry_delay(10_000, 1.0, 30.0, const(0.5)) == 15.0

    @pytest.mark.parametrize("attempt", [0, -1])
    def test_attempt_counts_from_one(self, attempt: int) -> None:
        with pytest.raises(ValueError):
            backoff.retry_delay(attempt, 1.0, 10.0, const(0.5))

    @given(st.integers(1, 500), st.floats(0.0, 5.0), st.floats(0.0, 60.0),
           st.floats(0.0, 1.0, exclude_max=True))
    def test_always_within_zero_and_cap(self, attempt: int, base: float, cap: float,
                                        r: float) -> None:
        delay = backoff.retry_delay(attempt, base, cap, const(r))
        assert 0.0 <= delay <= min(cap, base * 2 ** min(attempt - 1, 62))

    @given(st.integers(1, 60), st.floats(0.0, 1.0, exclude_max=True))
    def test_monotonic_in_attempt_for_a_fixed_draw(self, attempt: int, r: float) -> None:
        assert (backoff.retry_delay(attempt, 0.5, 10.0, const(r))
                <= backoff.retry_delay(attempt + 1, 0.5, 10.0, const(r)))


class TestRenewDelay:
    def test_at_fraction_without_jitter(self) -> None:
        assert backoff.renew_delay(3600, 0.67, const(0.0)) == pytest.approx(2412.0)

    def test_jitter_pulls_earlier_by_at_most_a_tenth(self) -> None:
        assert backoff.renew_delay(3600, 0.5, const(ALMOST_ONE)) == pytest.approx(1620.0)

    def test_never_later_than_margin_before_expiry(self) -> None:
        assert backoff.renew_delay(1.5, 1.0, const(0.0)) == pytest.approx(0.5)

    def test_tiny_ttl_renews_now(self) -> None:
        assert backoff.renew_delay(0.5, 0.9, const(0.0)) == 0.0

    def test_zero_ttl_never_expires(self) -> None:
        assert backoff.renew_delay(0, 0.67, const(0.5)) == math.inf

    @pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5])
    def test_fraction_checked(self, fraction: float) -> None:
        with pytest.raises(ValueError):
            backoff.renew_delay(60, fraction, const(0.5))

    @given(st.floats(0.001, 1e7), st.floats(0.01, 1.0), st.floats(0.0, 1.0, exclude_max=True))
    def test_before_expiry_and_not_negative(self, ttl: float, fraction: float, r: float) -> None:
        delay = backoff.renew_delay(ttl, fraction, const(r))
        assert 0.0 <= delay <= ttl * fraction
        assert delay <= max(0.0, ttl - backoff.RENEW_MARGIN)


class TestCappedAndRelogin:
    def test_is_capped(self) -> None:
        assert backoff.is_capped(3600, 120)
        assert not backoff.is_capped(3600, 3600)
        assert not backoff.is_capped(3600, 3599.5)  # rounding is not a cap
        assert backoff.is_capped(3600, 3599)  # whole seconds: one short is a cap
        assert backoff.is_capped(3600, 3600, ["TTL value is capped accordingly"])

    def test_relogin_delay(self) -> None:
        assert backoff.relogin_delay(100, const(0.0)) == pytest.approx(80.0)
        assert backoff.relogin_delay(100, const(ALMOST_ONE)) == pytest.approx(72.0)
        assert backoff.relogin_delay(0.5, const(0.0)) == 0.0

    @given(st.floats(0.0, 1e7), st.floats(0.0, 1.0, exclude_max=True))
    def test_relogin_before_the_end(self, remaining: float, r: float) -> None:
        delay = backoff.relogin_delay(remaining, const(r))
        assert 0.0 <= delay <= max(0.0, remaining - backoff.RENEW_MARGIN)


class TestRetryAfter:
    NOW = 1_700_000_000.0  # 2023-11-14T22:13:20Z

    def test_seconds(self) -> None:
        assert backoff.parse_retry_after("7", self.NOW) == 7.0
        assert backoff.parse_retry_after(" 0 ", self.NOW) == 0.0

    def test_http_date(self) -> None:
        assert backoff.parse_retry_after("Tue, 14 Nov 2023 22:13:25 GMT",
                                         self.NOW) == pytest.approx(5.0)

    def test_date_in_the_past_is_zero(self) -> None:
        assert backoff.parse_retry_after("Tue, 14 Nov 2023 22:00:00 GMT", self.NOW) == 0.0

    @pytest.mark.parametrize("value", [None, "", "soon", "-3", "1.5"])
    def test_unreadable_is_none(self, value: str | None) -> None:
        assert backoff.parse_retry_after(value, self.NOW) is None

    def test_startup_delay_honours_retry_after_above_cap(self) -> None:
        assert backoff.startup_delay(1, 42.0, const(0.5)) == 42.0
        assert backoff.startup_delay(3, None, const(0.5)) == pytest.approx(1.0)
        assert backoff.startup_delay(3, 0.1, const(0.5)) == pytest.approx(1.0)


def test_running_delay_is_one_second_doubling_to_thirty() -> None:
    assert backoff.running_delay(1, lambda: 0.999999) < 1.0
    assert backoff.running_delay(3, lambda: 0.5) == 2.0
    assert backoff.running_delay(50, lambda: 0.999999) < backoff.RUNNING_CAP == 30.0
