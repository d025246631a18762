"""Poll ticks: wall-clock multiples of the interval; each poll is due a phase after its tick."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from workers.poller import next_tick, to_ns


def test_ticks_fall_on_multiples_of_the_interval() -> None:
    assert next_tick(100.2, 1.0) == 101.0
    assert next_tick(101.0, 1.0) == 102.0  # strictly after now
    assert next_tick(125.0, 10.0) == 130.0


def test_a_phased_poll_keeps_the_tick_it_is_due_after() -> None:
    # due at 120.5: the tick is 120 until then, 130 once that poll is due
    assert next_tick(120.2, 10.0, 0.5) == 120.0
    assert next_tick(120.5, 10.0, 0.5) == 130.0
    assert next_tick(129.9, 10.0, 0.5) == 130.0


@settings(max_examples=200, deadline=None)
@given(
    now=st.floats(0, 2e9),
    interval=st.sampled_from([0.5, 1.0, 2.0, 5.0, 10.0, 60.0]),
    fraction=st.floats(0, 0.99),
)
def test_the_next_tick_is_the_first_multiple_whose_poll_is_due_after_now(
    now: float, interval: float, fraction: float
) -> None:
    phase = fraction * interval
    tick = next_tick(now, interval, phase)
    assert now < tick + phase <= now + interval + 1e-6 * max(now, 1)
    periods = tick / interval
    assert abs(periods - round(periods)) < 1e-6 * max(periods, 1)


def test_ticks_become_exact_nanoseconds() -> None:
    # int(t * 1e9) gives 1795480873249999872 here: a double near 1.8e18 steps by 256
    assert to_ns(1795480873.25) == 1_795_480_873_250_000_000
    assert to_ns(next_tick(1795480873.1, 0.25)) % 250_000_000 == 0
