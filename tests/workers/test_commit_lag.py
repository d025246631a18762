"""A sink reports how stale data is when it becomes durable (commit time minus tick)."""

from __future__ import annotations

from shared.messages import DailyEnergyBatch, InverterBatch, PowerBatch, SinkStatus
from workers.sink import LAG_WINDOW, CommitLag

TICK_NS = 1_700_000_000 * 10**9


def test_commit_lag_is_commit_time_minus_tick_over_power_and_inverter_batches() -> None:
    now = [TICK_NS]
    lag = CommitLag(clock_ns=lambda: now[0])
    assert lag.stamp(SinkStatus(spool_items=3)) == SinkStatus(spool_items=3)  # none yet
    for ms in range(1, 101):
        now[0] = TICK_NS + ms * 1_000_000
        lag.committed([PowerBatch("garage", TICK_NS, ())])
    now[0] = TICK_NS + 5_000_000_000
    lag.committed(
        [InverterBatch("garage", TICK_NS, ()), DailyEnergyBatch("garage", "2024-06-01", 0, ())]
    )
    status = lag.stamp(SinkStatus(spool_items=3))
    assert status.spool_items == 3
    assert status.commit_lag_p50_ms == 51.0
    assert status.commit_lag_p99_ms == 100.0  # the one slow inverter batch is the max, not p99


def test_commit_lag_forgets_batches_beyond_its_window() -> None:
    now = [TICK_NS + 900 * 1_000_000]
    lag = CommitLag(clock_ns=lambda: now[0])
    lag.committed([PowerBatch("garage", TICK_NS, ())])
    now[0] = TICK_NS + 1_000_000
    lag.committed([PowerBatch("garage", TICK_NS, ())] * LAG_WINDOW)
    assert lag.stamp(SinkStatus()).commit_lag_p99_ms == 1.0


def test_commit_lag_counts_from_when_a_staggered_poll_was_due() -> None:
    # the poll was due 600 ms after its tick; committed 10 ms later it is 10 ms stale
    lag = CommitLag(clock_ns=lambda: TICK_NS + 610_000_000)
    lag.committed([PowerBatch("garage", TICK_NS, (), phase_ns=600_000_000)])
    lag.committed([InverterBatch("garage", TICK_NS, (), phase_ns=600_000_000)])
    assert lag.stamp(SinkStatus()).commit_lag_p99_ms == 10.0
