"""The one backoff every retry waits through: capped, monotone, never raises."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from shared.backoff import Backoff
from shared.tokens import LoginState
from workers.poller import MAX_BACKOFF_S, backoff_s

FAILURES = st.integers(min_value=-(10**30), max_value=10**30)
SECONDS = st.floats(min_value=0.0, max_value=1e12, allow_nan=False)


@given(first=SECONDS, cap=SECONDS, failures=FAILURES)
def test_any_count_of_failures_gives_a_wait_between_zero_and_the_cap(
    first: float, cap: float, failures: int
) -> None:
    wait = Backoff(first, cap).after(failures)
    assert 0.0 <= wait <= cap


@given(first=SECONDS, cap=SECONDS, failures=FAILURES, more=st.integers(0, 10**6))
def test_more_failures_never_wait_less(first: float, cap: float, failures: int, more: int) -> None:
    backoff = Backoff(first, cap)
    assert backoff.after(failures + more) >= backoff.after(failures)


def test_the_wait_doubles_from_the_first_to_the_cap() -> None:
    backoff = Backoff(60.0, 1000.0)
    assert [backoff.after(n) for n in range(7)] == [0.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1000.0]
    assert Backoff(500.0, 100.0).after(1) == 100.0  # a first wait above the cap is the cap


def test_a_gateway_unreachable_for_a_long_weekend_keeps_its_capped_backoff() -> None:
    # 1025 failures at the 120 s cap is 34 h: on the old formula, OverflowError from here on.
    for failures in (1024, 1025, 2000, 10**9):
        assert backoff_s(5.0, failures) == MAX_BACKOFF_S
    assert [backoff_s(5.0, n) for n in range(1, 6)] == [0.0, 10.0, 20.0, 40.0, 80.0]


def test_a_login_refused_thousands_of_times_still_waits_its_cap() -> None:
    state = LoginState(failures=5000)
    after = state.failed(1000.0, backoff_s=60.0, backoff_max_s=86400.0)
    assert (after.failures, after.next_login_s) == (5001, 1000.0 + 86400.0)
