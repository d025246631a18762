"""Status and metrics tell the truth about cadence: per feed, readings written per minute
against the configured cadence, ticks that wrote nothing and why, the endpoint read."""

from __future__ import annotations

from pathlib import Path

from shared.messages import PollReport
from supervisor.commands.status import render
from supervisor.status import StatusBoard

NOW = 1_800_000_000.0
NS = 10**9
READINGS = "/ivp/meters/readings"
PRODUCTION = "/production.json?details=1"


def power(tick_s: float, ok: bool = True, kind: str = "", detail: str = "") -> PollReport:
    return PollReport(
        "garage", "power", round(tick_s * NS), ok, kind, detail, 5.0, 300.0, READINGS, 1.0
    )


def test_a_feed_that_misses_ticks_shows_fewer_readings_than_due_and_why(tmp_path: Path) -> None:
    clock = [NOW - 120.0]
    board = StatusBoard(tmp_path, clock=lambda: clock[0])
    # two minutes at 1 s; in the last minute every tenth tick skipped, two timed out
    for i in range(120):
        tick = NOW - 120.0 + i
        clock[0] = tick + 0.5
        if i >= 60 and i % 10 == 0:
            board.poll_report(power(tick, False, "skipped", "previous poll running"))
        elif i in (65, 66):
            board.poll_report(power(tick, False, "timeout", "no answer within 20 s"))
        else:
            board.poll_report(power(tick))
    board.poll_report(
        PollReport("garage", "production", round((NOW - 60) * NS), True, "", "", 1.0, 5400.0,
                   PRODUCTION, 60.0)
    )  # fmt: skip
    clock[0] = NOW
    feeds = board.snapshot()["feeds"]["garage"]
    cadence = feeds["power"]["cadence"]
    assert cadence["due_per_min"] == 60
    assert cadence["written"] == 60 - 6 - 2  # the last 60 s: 6 skipped, 2 timed out
    assert cadence["written_per_min"] == 52
    assert feeds["power"]["endpoint"] == READINGS
    assert feeds["power"]["missed"] == {"previous poll running": 6, "timeout": 2}
    assert feeds["production"]["endpoint"] == PRODUCTION
    assert feeds["production"]["cadence"]["due_per_min"] == 1

    table = "\n".join(render(board.snapshot(), NOW))
    assert "52/60" in table and READINGS in table
    assert "previous poll running: 6" in table

    metrics = board.self_metrics({})
    assert ("garage", "power", READINGS, 52.0) in metrics.feed_written_per_min
    assert ("garage", "power", READINGS, 60.0) in metrics.feed_due_per_min
    assert ("garage", "power", "previous poll running", 6) in metrics.feed_missed
    # one series per gateway and kind, whatever the feed
    kinds = [(envoy, kind) for envoy, kind, _ in metrics.poll_errors]
    assert len(kinds) == len(set(kinds))


def test_a_feed_just_started_is_measured_over_the_time_it_has_run(tmp_path: Path) -> None:
    clock = [NOW]
    board = StatusBoard(tmp_path, clock=lambda: clock[0])
    for i in range(10):
        clock[0] = NOW + i + 0.5
        board.poll_report(power(NOW + i))
    clock[0] = NOW + 10.5
    cadence = board.snapshot()["feeds"]["garage"]["power"]["cadence"]
    assert cadence["window_s"] == 10.5
    assert cadence["written"] == 10  # NOW+10 is not due yet: its poll may still run
    assert cadence["due"] == 10
    assert cadence["written_per_min"] == 60.0
