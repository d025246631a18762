"""The chaos audit's matching of gateway answers to stored ticks, on gateways as slow as real."""

from __future__ import annotations

from bench.chaos_audit import match_polls


def test_a_killed_pollers_late_answer_does_not_take_its_successors_row() -> None:
    # Poller killed at 15.0 with tick 14.0 in flight (answered 19.8, never stored); its
    # successor's tick 15.0 queued behind it on the gateway's one backend: answered 25.2.
    answers, rows = [8.0 + 5.4, 19.8, 25.2], [8.0, 15.0]
    assert match_polls(answers, rows, 1.0, (4.9, 6.0)) == [19.8]
    # Without the least answer time the early answer takes the row: the wrong one is lost.
    assert match_polls(answers, rows, 1.0, (0.0, 6.0)) == [25.2]


def test_an_answer_beyond_the_gateways_slowest_time_plus_slack_has_no_row() -> None:
    assert match_polls([30.0], [10.0], 1.0, (4.9, 6.0)) == [30.0]
    assert match_polls([22.0], [10.0], 1.0, (4.9, 6.0)) == []
