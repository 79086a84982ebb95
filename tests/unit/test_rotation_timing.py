"""Lease, poll and coalescing maths: pure functions, plain numbers."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from entrypoint.rotation.coalesce import Coalescer
from entrypoint.rotation.timing import (
    MIN_MARGIN,
    LeaseTimes,
    jittered,
    poll_at,
    renew_at,
    replace_at,
    static_creds_poll_at,
)


def fixed(value: float):  # type: ignore[no-untyped-def]
    return lambda: value


def test_renew_at_two_thirds_pulled_earlier_by_jitter() -> None:
    lease = LeaseTimes(updated_at=100.0, expires_at=400.0, renewable=True)
    assert renew_at(lease, 2 / 3, fixed(0.0)) == 300.0
    early = renew_at(lease, 2 / 3, fixed(0.999999))
    assert 100 + 180 <= early < 300.0


def test_renew_never_later_than_the_margin_before_expiry() -> None:
    lease = LeaseTimes(updated_at=0.0, expires_at=2.0, renewable=True)
    assert renew_at(lease, 0.99, fixed(0.999)) <= 2.0 - MIN_MARGIN


def test_zero_duration_lease_is_checked_again_later() -> None:
    lease = LeaseTimes(updated_at=10.0, expires_at=10.0, renewable=True)
    assert renew_at(lease, 0.67, fixed(0.5)) == 70.0


@given(updated=st.floats(0, 1e6), duration=st.floats(0, 1e5), now_offset=st.floats(0, 1e5),
       fraction=st.floats(0.01, 0.99), r=st.floats(0, 0.999999))
# Found by hypothesis: now + (remaining - margin) rounded one step past the bound.
@example(updated=1.9, duration=20479.724489494158, now_offset=4095.0, fraction=0.96875,
         r=0.875)
def test_replacement_is_never_after_expiry(updated: float, duration: float, now_offset: float,
                                           fraction: float, r: float) -> None:
    lease = LeaseTimes(updated_at=updated, expires_at=updated + duration, renewable=False)
    now = updated + min(now_offset, duration)
    when = replace_at(lease, now, fraction, fixed(r))
    assert now <= when
    if lease.expires_at - now > MIN_MARGIN:
        assert when <= lease.expires_at - MIN_MARGIN


@given(remaining=st.floats(0, 1e4), margin=st.floats(0, 100), r=st.floats(0, 0.999999))
def test_replacement_leaves_the_margin_for_the_coalescing_wait(remaining: float, margin: float,
                                                               r: float) -> None:
    lease = LeaseTimes(updated_at=0.0, expires_at=remaining, renewable=False)
    when = replace_at(lease, 0.0, 0.99, fixed(r), margin=margin)
    assert when >= 0.0
    if remaining > max(margin, MIN_MARGIN):
        assert when <= remaining - max(margin, MIN_MARGIN)
    else:
        assert when == 0.0  # no time to lose: replace now


def test_replacement_at_fraction_of_remaining_life() -> None:
    lease = LeaseTimes(updated_at=0.0, expires_at=100.0, renewable=False)
    assert replace_at(lease, 20.0, 0.75, fixed(0.5)) == 80.0


@given(st.floats(0, 1e6), st.floats(0, 0.999999))
def test_jitter_stays_within_ten_percent(base: float, r: float) -> None:
    assert 0.9 * base - 1e-6 <= jittered(base, fixed(r)) <= 1.1 * base + 1e-6


def test_polls() -> None:
    assert poll_at(10.0, 300.0, fixed(0.5)) == 310.0
    assert static_creds_poll_at(0.0, 60.0, ttl=9.0, rng=fixed(0.5)) == 9.5
    assert static_creds_poll_at(0.0, 60.0, ttl=3600.0, rng=fixed(0.5)) == 60.0
    assert static_creds_poll_at(0.0, 60.0, ttl=None, rng=fixed(0.5)) == 60.0
    # Rotation due but not yet done: ask again soon, not a whole interval later.
    assert static_creds_poll_at(0.0, 60.0, ttl=0.0, rng=fixed(0.5)) == 0.5


@given(ttl=st.floats(0, 1e6), interval=st.floats(0.1, 1e5), r=st.floats(0, 0.999999))
def test_static_role_read_at_most_a_second_after_its_rotation(ttl: float, interval: float,
                                                              r: float) -> None:
    when = static_creds_poll_at(0.0, interval, ttl, fixed(r))
    assert when > 0.0
    assert when <= ttl + 1.0 or when <= interval * 1.05


def test_coalescer_waits_for_quiet_but_not_past_wait_max() -> None:
    c = Coalescer(wait_min=2.0, wait_max=5.0)
    assert c.due_at() is None and not c.pending
    c.add(0.0, "a")
    assert c.due_at() == 2.0
    c.add(1.5, "b")
    assert c.due_at() == 3.5
    c.add(3.0, "a")
    c.add(4.5, "c")
    assert c.due_at() == 5.0  # wait_max from the first change caps the wait
    assert not c.due(4.9) and c.due(5.0)
    assert c.take() == ["a", "b", "c"]
    assert not c.pending


def test_five_changes_in_one_window_are_one_action() -> None:
    c = Coalescer(wait_min=1.0, wait_max=10.0)
    actions = 0
    for t in (0.0, 0.2, 0.4, 0.6, 0.8):
        c.add(t, f"change {t}")
        assert not c.due(t)
    for t in (1.0, 1.79, 1.8, 2.5):
        if c.due(t):
            c.take()
            actions += 1
    assert actions == 1


def test_a_value_is_replaced_at_a_fraction_of_its_whole_life_even_when_reused_late() -> None:
    from entrypoint.rotation.timing import LeaseTimes, replace_at_life

    times = LeaseTimes(updated_at=0.0, expires_at=100.0, renewable=False)
    mid = lambda: 0.5  # noqa: E731 - no jitter
    assert replace_at_life(times, 0.0, 0.8, mid) == 80.0   # fetched just now
    assert replace_at_life(times, 50.0, 0.8, mid) == 80.0  # reused halfway: same point
    assert replace_at_life(times, 90.0, 0.8, mid) == 90.0  # past it: at once
    assert replace_at_life(times, 0.0, 0.99, mid, margin=5.0) == 95.0  # never inside it
    for r in (0.0, 0.999):
        assert 76.0 <= replace_at_life(times, 0.0, 0.8, lambda r=r: r) <= 84.0
