"""Staggered polls: a site's gateways are polled spread over the interval, not all at once,
and their points still share the interval's timestamps.

The end-to-end test runs the real supervisor on two simulated gateways (see conftest.py)
and reads both sides: when each simulator was asked, and what reached SQLite.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest

from shared.config import GatewayConfig, ShardConfig, SiteConfig
from supervisor.plan import STAGGER_WINDOW_S, build_plan, stagger
from tests.supervisor.conftest import Site, wait_for
from workers.poller import PollerSettings


def gateways(count: int, power_s: float = 1.0, inverters_s: float = 60.0) -> list[GatewayConfig]:
    return [
        GatewayConfig(
            name=f"gw{i}",
            host=f"10.0.0.{i + 1}",
            power_interval_s=power_s,
            inverter_interval_s=inverters_s,
        )
        for i in range(count)
    ]


def test_power_polls_are_evenly_spread_over_the_interval() -> None:
    phases = stagger(gateways(25))
    assert [round(power, 6) for power, _ in phases] == [i * 0.04 for i in range(25)]


def test_a_long_interval_spreads_polls_over_the_window_only() -> None:
    # a minute-long interval must not leave the last gateway's reading 58 s old
    phases = stagger(gateways(4, power_s=60.0, inverters_s=300.0))
    assert [power for power, _ in phases] == [0.0, 0.25, 0.5, 0.75]
    assert STAGGER_WINDOW_S == 1.0


def test_inverter_polls_fall_halfway_between_the_gateways_own_power_polls() -> None:
    for power, inverters in stagger(gateways(3, power_s=5.0, inverters_s=60.0)):
        assert inverters == pytest.approx(power + 2.5)
    # the phase stays inside the inverter interval
    assert stagger(gateways(1, power_s=30.0, inverters_s=10.0)) == [(0.0, 5.0)]


def test_the_plan_gives_each_poller_its_phase_within_this_hosts_share() -> None:
    site = SiteConfig(
        source=Path("site.yml"), gateways=tuple(gateways(10)), shard=ShardConfig(1, 2)
    )
    pollers = [
        spec.settings
        for spec in build_plan(site).specs
        if isinstance(spec.settings, PollerSettings)
    ]
    power = sorted(p.phase_s for p in pollers if p.feed == "power")
    # this host runs about half the gateways and spreads them over the whole window
    assert 1 <= len(power) < 10
    assert power == pytest.approx([i / len(power) for i in range(len(power))])
    for p in pollers:
        assert 0 <= p.phase_s < p.interval_s


@pytest.mark.slow
def test_gateways_are_asked_at_different_moments_and_written_at_the_same_ticks(
    running_site: Site,
) -> None:
    site = running_site  # gw1 and gw2, power every 1 s: phases 0 and 0.5 s

    def power_times() -> list[tuple[str, int]] | None:
        rows = site.db_rows(
            "SELECT envoy, time FROM power WHERE measurement_type = 'production' AND line = 'total'"
        )
        counts = [sum(1 for envoy, _ in rows if envoy == gw) for gw in ("gw1", "gw2")]
        return rows if min(counts) >= 5 else None

    rows = wait_for(power_times, 60, "5 power points from each gateway")
    assert all(time_ns % 10**9 == 0 for _, time_ns in rows), rows
    shared_ticks = {t for e, t in rows if e == "gw1"} & {t for e, t in rows if e == "gw2"}
    assert len(shared_ticks) >= 3

    def asked_at(gateway_index: int) -> float:
        """Median fraction of the second at which the gateway was asked for its power tick."""
        served = site.gateways[gateway_index].served
        times = [r.time for r in served if r.endpoint == "/ivp/meters/readings"]
        assert len(times) >= 5
        return statistics.median(t % 1.0 for t in times)

    gap = (asked_at(1) - asked_at(0)) % 1.0
    assert 0.3 < gap < 0.7, gap  # half a second apart, give or take scheduling
