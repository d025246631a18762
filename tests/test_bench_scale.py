"""The scale bench runs one tiny round and prints its JSON lines (numbers not asserted)."""

from __future__ import annotations

import json

import pytest

from bench.scale import fit, main


@pytest.mark.slow
def test_the_scale_bench_prints_one_json_line_per_n_and_a_summary(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--envoys", "1,2", "--seconds", "2", "--warmup", "0"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line.get("envoys") for line in lines[:2]] == [1, 2]
    for run in lines[:2]:
        assert {
            "missed_ticks",
            "power_ticks",
            "power_misses",
            "never_polled",
            "poll_errors",
            "jitter_ms",
            "poll_ms",
            "commit_lag_ms",
            "cpu_s_per_gateway_hour",
            "cpu_percent_by_kind",
            "cpu_percent_simulators",
            "uss_tree_mib",
            "uss_per_gateway_mib",
            "fds_tree",
            "processes",
            "load_avg_1m",
            "wake_probe_ms",
            "cpu_steal_percent",
        } <= set(run)
        assert run["wake_probe_ms"]["p99"] is not None  # the probe ran over the window
        assert {"sqlite", "prometheus"} <= set(run["commit_lag_ms"])
        assert {"power", "inverters", "supervisor", "sink:sqlite"} <= set(
            run["cpu_percent_by_kind"]
        )
    assert {"growth", "uss_for_10_gateways_mib", "missed_ticks_total"} <= set(lines[2])
    assert set(lines[2]["growth"]["uss_tree_mib"]) == {"fixed", "per_gateway"}


def test_the_wake_probe_reports_how_late_each_wake_up_was() -> None:
    import multiprocessing

    from bench.scale import PROBE_HZ, wake_probe

    ours, theirs = multiprocessing.Pipe()
    wake_probe(0.4, theirs)
    late = ours.recv()
    assert len(late) == round(0.4 * PROBE_HZ)
    assert all(ms >= 0 for ms in late)


def test_costs_are_fitted_as_fixed_plus_per_gateway() -> None:
    assert fit([(1, 12.0), (5, 20.0), (25, 60.0)]) == {"fixed": 10.0, "per_gateway": 2.0}
    assert fit([(5, 1.0)]) is None


def test_simulated_clouds_given_one_secret_accept_each_others_tokens() -> None:
    # What lets the bench spread gateways over processes behind one account.
    from shared.simulator import SimulatedCloud

    first = SimulatedCloud(token_secret=b"s" * 32)
    second = SimulatedCloud(token_secret=b"s" * 32)
    other = SimulatedCloud()
    try:
        token = first.issue_token("122301234567")
        assert second.token_is_valid(token, "122301234567")
        assert not other.token_is_valid(token, "122301234567")
    finally:
        for cloud in (first, second, other):
            cloud.close()


def test_window_jitter_counts_only_the_polls_between_the_two_snapshots() -> None:
    from collections import Counter

    from bench.scale import window_jitter

    # start-up polls (slow) are in both snapshots, so they cancel out
    first = {"gw1/power": {"jitter_histogram": Counter({900: 3, 2: 10})}}
    last = {
        "gw1/power": {"jitter_histogram": Counter({900: 3, 2: 10, 3: 98, 40: 2})},
        "gw2/power": {"jitter_histogram": Counter({1: 100})},
        "gw1/inverters": {"jitter_histogram": Counter({700: 50})},
    }
    jitter = window_jitter(first, last)
    assert jitter["polls"] == 200
    assert jitter["p50"] == 2.0  # bucket upper bounds: the 1 ms bucket -> "<= 2 ms"
    assert jitter["p99"] == 4.0
    assert jitter["worst_gateway_p99"] == 41.0
