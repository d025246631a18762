"""A slow answer never costs a power tick (issue 13).

A real supervisor with its real power and inverter poller processes polls a simulated
D8.3.5169 at half a real gateway's latency (production.json ~2.7 s, the fast endpoints
~0.16 s) at ``power_s: 1``, with production.json due every 2 s (so one is nearly always
in flight, and some are skipped) and the inverter poller's answer held 3 s on every
poll (standing in for a slow inventory: before, its lock held the power poller up).
Counted, not timed: every power tick from the first written to the last must be in the
SQLite store, and status must report no missed power tick, while production.json and
the inverters were read (their slow answers were in flight).
"""

from __future__ import annotations

import time
from pathlib import Path

from shared.simulator import SimulatedCloud, SimulatedGateway
from shared.simulator.faults import Fault, FaultKind
from tests.fixtures import FIXTURES, require_fixtures
from tests.supervisor.conftest import (
    EMAIL,
    FAST_SUPERVISION,
    PASSWORD,
    launch_site,
    site_yaml,
    stop_site,
    wait_for,
)

RUN_S = 14.0  #: power ticks counted over about this long, once the first is written
INVERTERS = "/api/v1/production/inverters"


def test_slow_production_json_and_inverters_skip_no_power_tick(tmp_path: Path) -> None:
    require_fixtures()
    cloud = SimulatedCloud(accounts={EMAIL: PASSWORD})
    cloud.start()
    gateway = SimulatedGateway(FIXTURES / "8.3.5169_with_generator", cloud=cloud, latency=0.5)
    gateway.faults.set(INVERTERS, Fault(FaultKind.LATENCY, seconds=3.0))
    gateway.start()
    text = site_yaml(tmp_path / "state", cloud, [gateway], FAST_SUPERVISION)
    text = text.replace(
        "poll: {power_s: 1, inverters_s: 2}",
        "poll: {power_s: 1, inverters_s: 2, production_s: 2}",
    )
    site = launch_site(tmp_path, text, cloud, [gateway])
    ticks_sql = (
        "SELECT DISTINCT time FROM power WHERE envoy='gw1' AND measurement_type='production'"
        " AND line='total' ORDER BY time"
    )
    try:
        first = wait_for(lambda: site.db_rows(ticks_sql), 60, "a first power reading")[0][0]
        time.sleep(RUN_S)
        status = site.status()
    finally:
        stop_site(site)
    times = [t for (t,) in site.db_rows(ticks_sql) if t >= first]
    expected = list(range(times[0], times[-1] + 1, 10**9))
    assert times == expected, f"missing power ticks: {sorted(set(expected) - set(times))}"
    assert len(times) >= RUN_S - 2
    feeds = status["feeds"]["gw1"]
    assert feeds["power"]["endpoint"] == "/ivp/meters/readings"
    # before the token worker's first token arrived nothing could be asked; after, no miss
    assert set(feeds["power"].get("missed", {})) <= {"no-token"}, feeds["power"]
    # the slow ones were in flight meanwhile
    assert feeds["production"]["polls"] >= 3, feeds["production"]
    assert feeds["inverters"]["polls"] >= 3, feeds["inverters"]
    assert gateway.max_slow_in_flight == 1
    counts = gateway.request_counts()
    assert counts.get("/production.json", 0) >= 3
