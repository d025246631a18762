"""Sinks end to end: the real supervisor, simulated gateways, and real database servers.

Each test runs ``python -m supervisor`` (see tests/supervisor/conftest.py) with the
SQLite sink ``db`` plus the sink under test, pointed at a real VictoriaMetrics, InfluxDB
1.6 or Prometheus on loopback (tests/servers.py), does to it what the real world does
(the database goes away, the sink is SIGKILLed, a batch is malformed) and then compares
what the database holds with what the SQLite sink holds: the same batches went to both.

Daily energy cannot reach a real site within a test (it needs a local midnight), so its
worker loop is driven directly over real pipes with batches that span a midnight.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from collections.abc import Iterator
from datetime import date
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from shared.config import GatewayConfig, SqliteSinkConfig
from shared.messages import (
    DailyEnergyBatch,
    Deliver,
    Delivered,
    PowerBatch,
    PowerSample,
    Stop,
)
from shared.points import ENERGY, ENERGY_FIELDS, INVERTER, INVERTER_FIELDS, POWER, POWER_FIELDS
from tests.servers import InfluxDB1, PrometheusServer, VictoriaMetrics, free_port
from tests.supervisor.conftest import Site, start_site, stop_site, wait_for
from tests.workers.harness import RunningWorker, worker_on_pipes
from workers.daily import day_start_ns
from workers.energy import DailySettings, run
from workers.sink_sqlite import SqliteBackend
from workers.spool import Spool

NS_PER_MS = 1_000_000
Series = dict[tuple[str, str, str], list[tuple[int, float]]]


# --- reading back what each store holds ------------------------------------------------


def sqlite_power(site: Site) -> Series:
    """Every power row in the SQLite sink, per (envoy, measurement_type, line), at ms."""
    series: Series = {}
    rows = site.db_rows("SELECT envoy, measurement_type, line, time, p_w FROM power ORDER BY time")
    for envoy, mt, line, t, p_w in rows:
        assert t % NS_PER_MS == 0, "ticks are whole seconds: nothing is lost at ms"
        series.setdefault((envoy, mt, line), []).append((t // NS_PER_MS, p_w))
    return series


def sqlite_duplicates(site: Site) -> list[tuple[Any, ...]]:
    return site.db_rows(
        "SELECT envoy, measurement_type, line, time, count(*) FROM power"
        " GROUP BY envoy, measurement_type, line, time HAVING count(*) > 1"
    )


def vm_power(vm: VictoriaMetrics) -> tuple[Series, int]:
    """Every ``power_p_w`` sample VictoriaMetrics holds, per series, and how many of them
    repeat a (series, time) already seen (a replay after a crash between send and ack
    writes a batch twice; InfluxDB overwrites, VictoriaMetrics keeps both samples)."""
    series: Series = {}
    repeats = 0
    for line in vm.export('{__name__="power_p_w"}'):
        labels: Any = line["metric"]
        key = (labels["envoy"], labels["measurement_type"], labels["line"])
        samples: dict[int, float] = {}
        for t, v in zip(line["timestamps"], line["values"], strict=True):  # type: ignore[call-overload]
            if t in samples:
                repeats += 1
                assert samples[t] == v, f"{key} at {t}: two different values"
            samples[t] = v
        merged = dict(series.get(key, [])) | samples
        series[key] = sorted(merged.items())
    return series, repeats


def assert_same_series(site: Site, vm: VictoriaMetrics) -> tuple[int, int]:
    """VictoriaMetrics holds exactly the SQLite power rows; returns (points, repeats)."""
    expected = sqlite_power(site)
    got, repeats = vm_power(vm)
    assert expected, "the SQLite sink stored nothing"
    assert sorted(got) == sorted(expected)
    for key, rows in expected.items():
        missing = sorted(set(rows) - set(got[key]))
        extra = sorted(set(got[key]) - set(rows))
        assert not missing and not extra, f"{key}: missing {missing[:5]}, extra {extra[:5]}"
    assert not sqlite_duplicates(site)
    return sum(len(rows) for rows in expected.values()), repeats


def spool_depth(site: Site, sink: str) -> int:
    """Batches in a sink's spool file right now (status.json lags by up to 5 s)."""
    path = site.state_dir / f"spool-{sink}.sqlite3"
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
        return int(db.execute("SELECT value FROM counters WHERE name = 'items'").fetchone()[0])


def consumer(site: Site, sink: str) -> dict[str, Any]:
    return dict(site.status().get("consumers", {}).get(f"sink:{sink}", {}))


def power_rows(site: Site) -> int:
    return len(site.db_rows("SELECT time FROM power"))


def sigterm_and_wait(site: Site) -> None:
    site.process.send_signal(signal.SIGTERM)
    assert site.process.wait(30) == 0


def influx_sink(name: str, url: str, **keys: object) -> str:
    fields = ", ".join(
        f"{k}: {v}"
        for k, v in {"type": "influxdb", "name": name, "url": f"'{url}'", **keys}.items()
    )
    return "{" + fields + "}"


@pytest.fixture
def site_factory(tmp_path: Path) -> Iterator[Any]:
    """``site_factory(sinks=[...])`` starts a site; every one started is stopped."""
    started: list[Site] = []

    def start(sinks: list[str]) -> Site:
        if started:  # the same state dir again: keep the earlier run's log apart
            earlier = started[-1]
            earlier.log = earlier.log.rename(tmp_path / f"supervisor-{len(started)}.log")
        site = start_site(tmp_path, sinks=sinks)
        started.append(site)
        return site

    try:
        yield start
    finally:
        for site in started:
            stop_site(site)
            if os.environ.get("SHOW_SUPERVISOR_LOG"):
                print(site.log.read_text())


# --- InfluxDB v2 API into VictoriaMetrics -----------------------------------------------


def vm_points(vm: VictoriaMetrics) -> int:
    return sum(len(rows) for rows in vm_power(vm)[0].values())


def vm_site(site_factory: Any, vm: VictoriaMetrics) -> Site:
    site: Site = site_factory(
        [influx_sink("vm", vm.url, org="home", bucket="envoy", token="any-token")]
    )
    wait_for(lambda: vm_points(vm), 60, "points in VictoriaMetrics")
    return site


@pytest.mark.slow
@pytest.mark.servers
def test_points_spooled_while_the_database_was_down_all_arrive_exactly_once_it_is_back(
    site_factory: Any, own_victoria_metrics: VictoriaMetrics
) -> None:
    vm = own_victoria_metrics
    site = vm_site(site_factory, vm)
    vm.stop()
    down = time.monotonic()
    wait_for(
        lambda: consumer(site, "vm").get("spool_items", 0) > 0,
        30,
        "the spool to grow while VictoriaMetrics is down",
    )
    time.sleep(max(0.0, 8 - (time.monotonic() - down)))  # polls go on meanwhile
    depth = spool_depth(site, "vm")
    vm.start()
    back = time.monotonic()
    held = power_rows(site)  # everything polled up to now is in SQLite...
    wait_for(lambda: vm_points(vm) >= held, 60, "the spool to replay")  # ...and soon in VM
    replay_s = time.monotonic() - back
    wait_for(lambda: power_rows(site) > held, 30, "polls to go on after the outage")
    sigterm_and_wait(site)
    points, repeats = assert_same_series(site, vm)
    print(
        f"\nVictoriaMetrics down {back - down:.1f} s: spool depth {depth} batches;"
        f" replayed within {replay_s:.1f} s of its restart; {points} power_p_w points"
        f" equal to SQLite's, {repeats} samples written twice"
    )


@pytest.mark.slow
@pytest.mark.servers
def test_an_influx_sink_killed_with_sigkill_mid_write_loses_nothing(
    site_factory: Any, own_victoria_metrics: VictoriaMetrics
) -> None:
    vm = own_victoria_metrics
    site = vm_site(site_factory, vm)
    pid = site.running_pid("sink:vm")

    def kill() -> None:
        nonlocal pid
        os.kill(pid, signal.SIGKILL)
        pid = site.running_pid("sink:vm", other_than=pid)

    for delay in (0.0, 0.7):  # mid-stream, while polls arrive and are forwarded
        time.sleep(delay)
        kill()
    vm.stop()  # with a backlog in the spool file ...
    wait_for(lambda: spool_depth(site, "vm") > 0, 30, "a backlog in the spool")
    kill()
    vm.start()  # ... and again at once when it is back: killed while replaying
    kill()
    held = power_rows(site)
    wait_for(lambda: vm_points(vm) >= held, 60, "the restarted sink to catch up")
    sigterm_and_wait(site)
    assert site.worker("sink:vm")["restarts"] >= 4
    points, repeats = assert_same_series(site, vm)
    print(f"\nsink SIGKILLed 4 times: {points} points equal, {repeats} samples written twice")


@pytest.mark.slow
@pytest.mark.servers
def test_what_a_stopped_site_could_not_send_is_sent_by_the_next_start(
    site_factory: Any, own_victoria_metrics: VictoriaMetrics
) -> None:
    vm = own_victoria_metrics
    site = vm_site(site_factory, vm)
    vm.stop()
    wait_for(lambda: spool_depth(site, "vm") >= 5, 30, "a backlog in the spool")
    sigterm_and_wait(site)  # the drain cannot reach the database: the backlog stays
    left = spool_depth(site, "vm")
    assert left >= 5
    held = power_rows(site)
    vm.start()
    again = site_factory([influx_sink("vm", vm.url, org="home", bucket="envoy", token="t")])
    wait_for(lambda: vm_points(vm) >= held, 60, "the next start to replay the spool")
    sigterm_and_wait(again)
    points, _ = assert_same_series(again, vm)
    print(f"\n{left} batches left in the spool at exit arrived after the next start ({points})")


# --- InfluxDB 1.x /write into the real InfluxDB 1.6 ------------------------------------

#: measurement -> its field names, from the written schema (so a new field is counted too)
FIELDS = {
    measurement: tuple(name for name, _ in table)
    for measurement, table in (
        (POWER, POWER_FIELDS),
        (ENERGY, ENERGY_FIELDS),
        (INVERTER, INVERTER_FIELDS),
    )
}


def influx_counts(influx: InfluxDB1, db: str) -> dict[tuple[str, str], int]:
    """(measurement, field) -> points, by InfluxQL ``count(*)``."""
    counts: dict[tuple[str, str], int] = {}
    for measurement in FIELDS:
        answer: Any = influx.query(f'SELECT count(*) FROM "{measurement}"', db=db)
        for result in answer["results"]:
            for series in result.get("series", []):
                for column, value in zip(series["columns"], series["values"][0], strict=True):
                    if column.startswith("count_"):
                        counts[(measurement, column.removeprefix("count_"))] = value
    return counts


def sqlite_counts(site: Site) -> dict[tuple[str, str], int]:
    counts = {}
    for measurement, fields in FIELDS.items():
        for field in fields:
            ((n,),) = site.db_rows(f"SELECT count({field}) FROM {measurement}") or [(0,)]
            if n:
                counts[(measurement, field)] = n
    return counts


def influx1_site(site_factory: Any, influx: InfluxDB1, db: str) -> Site:
    for name in (db, f"{db}_daily"):
        influx.query(f'CREATE DATABASE "{name}"')
    site: Site = site_factory(
        [influx_sink("v1", influx.url, version=1, database=db, database_daily=f"{db}_daily")]
    )
    wait_for(lambda: influx_counts(influx, db).get(("power", "p_w")), 60, "points in InfluxDB")
    wait_for(lambda: site.db_rows("SELECT 1 FROM inverter LIMIT 1"), 30, "inverter reports")
    wait_for(lambda: power_rows(site) >= 50, 30, "a few polls of both gateways")
    return site


@pytest.mark.slow
@pytest.mark.servers
def test_v1_writes_arrive_in_influxdb_1x_point_for_point(
    site_factory: Any, influxdb1: InfluxDB1
) -> None:
    site = influx1_site(site_factory, influxdb1, "e2e_v1")
    sigterm_and_wait(site)
    expected = sqlite_counts(site)
    assert expected[("power", "p_w")] > 0 and expected[("inverter", "p_w")] > 0
    assert influx_counts(influxdb1, "e2e_v1") == expected
    print(f"\nInfluxDB 1.6 counts equal SQLite's: {expected}")


@pytest.mark.slow
@pytest.mark.servers
def test_a_malformed_batch_lands_in_the_dead_letters_and_the_good_points_still_arrive(
    site_factory: Any, influxdb1: InfluxDB1, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    with Spool(state / "spool-v1.sqlite3", 1 << 20) as spool:
        spool.put(b"garbage", "high")
    site = influx1_site(site_factory, influxdb1, "e2e_dead")
    wait_for(lambda: consumer(site, "v1").get("dead_letters") == 1, 30, "a dead letter in status")
    sigterm_and_wait(site)
    with Spool(state / "spool-v1.sqlite3", 1 << 20) as spool:
        (dead,) = spool.dead_letters()
        assert spool.depth() == (0, 0)
    assert dead.payload == b"garbage"
    assert "unable to parse" in dead.reason and "garbage" in dead.reason
    assert influx_counts(influxdb1, "e2e_dead") == sqlite_counts(site)
    print(f"\ndead letter reason from InfluxDB 1.6: {dead.reason!r}")


# --- Prometheus scrapes the exporter ----------------------------------------------------


@pytest.mark.slow
@pytest.mark.servers
def test_prometheus_scrapes_the_exporter_with_the_labels_of_the_spec(
    site_factory: Any, prometheus: Any
) -> None:
    port = free_port()
    site = site_factory([f"{{type: prometheus, name: prom, port: {port}}}"])
    site.running_pid("sink:prom")
    server: PrometheusServer = prometheus([f"127.0.0.1:{port}"])

    def scraped() -> list[dict[str, Any]] | None:
        result: Any = server.query("envoy_power_watts")
        envoys = {r["metric"]["envoy"] for r in result}
        return result if envoys == {"gw1", "gw2"} else None

    power = wait_for(scraped, 60, "envoy_power_watts of both gateways in Prometheus", every=0.5)
    for sample in power:
        labels = sample["metric"]
        assert labels["measurement_type"] in (
            "production",
            "total-consumption",
            "net-consumption",
            "inverters",
        )
        assert labels["line"] in ("total", "L1", "L2", "L3")
        float(sample["value"][1])
    lines = {(s["metric"]["envoy"], s["metric"]["line"]) for s in power}
    assert {("gw1", "total"), ("gw2", "L1"), ("gw2", "L2"), ("gw2", "L3")} <= lines
    up: Any = wait_for(lambda: server.query("envoy_up"), 30, "envoy_up in Prometheus")
    assert {s["metric"]["envoy"]: s["value"][1] for s in up} == {"gw1": "1", "gw2": "1"}

    # The exporter SIGKILLed: its restart binds the same port, and the scrape shows it.
    os.kill(site.running_pid("sink:prom"), signal.SIGKILL)
    restarts: Any = wait_for(
        lambda: server.query('envoy_worker_restarts_total{worker_kind="sink"} >= 1'),
        60,
        "the exporter's restart counted in Prometheus",
        every=0.5,
    )
    wait_for(lambda: server.query('up{job="envoy"} == 1'), 30, "the exporter scraped again")
    wait_for(lambda: len(server.query("envoy_up == 1")) == 2, 30, "envoy_up 1 after the restart")
    print(
        f"\nPrometheus: {len(power)} envoy_power_watts series, envoy_up 1 for {len(up)};"
        f" after a SIGKILL: {restarts[0]['metric']} = {restarts[0]['value'][1]}"
    )


# --- daily energy: the worker loop over real pipes, then into the SQLite store ---------

TZ = "Europe/Amsterdam"
HOUR_NS = 3600 * 1_000_000_000


@pytest.fixture
def daily_worker(tmp_path: Path) -> Iterator[RunningWorker]:
    """`workers.energy.run` on a thread with a real Mailbox on real pipes."""
    gateway = GatewayConfig(name="gw", host="192.0.2.1")
    settings = DailySettings((gateway,), TZ, max_gap_s=3600.0, state_dir=tmp_path)
    with worker_on_pipes("daily", lambda mailbox: run(settings, mailbox)) as worker:
        yield worker


def receive_until_acked(conn: Connection, seq: int, timeout_s: float = 10.0) -> list[object]:
    """Messages up to the `Delivered` of ``seq`` (the worker sends a batch's days first)."""
    got: list[object] = []
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        if conn.poll(left):
            got.append(message := conn.recv())
            if isinstance(message, Delivered) and message.seq == seq:
                return got
    raise AssertionError(f"no Delivered({seq}) within {timeout_s} s; got {got[-3:]}")


def polled(tick_ns: int, hours: float) -> PowerBatch:
    """Production counting 1 kWh an hour; a net meter importing 0.5 and exporting 0.25."""
    production = PowerSample(
        "production", "total", 1000.0, None, None, None, None, None, 5000.0 + 1000.0 * hours
    )
    net = PowerSample(
        "net-consumption",
        "total",
        250.0,
        None,
        None,
        None,
        None,
        None,
        100.0 + 250.0 * hours,
        wh_delivered=200.0 + 500.0 * hours,
        wh_received=300.0 + 250.0 * hours,
    )
    return PowerBatch("gw", tick_ns, (production, net))


def test_the_daily_worker_turns_polls_across_midnight_into_a_day_and_acks_them(
    daily_worker: RunningWorker, tmp_path: Path
) -> None:
    inbox, outbox, thread = daily_worker
    tz = ZoneInfo(TZ)
    day = day_start_ns(date(2026, 6, 2), tz)
    # Hourly polls from 23:00 the day before to 02:00 the day after: June 2nd is seen
    # whole, with every counter known at both of its midnights.
    ticks = [day + k * HOUR_NS for k in range(-1, 27)]
    for seq, tick in enumerate(ticks, start=1):
        inbox.send(Deliver(seq, polled(tick, (tick - ticks[0]) / HOUR_NS)))
    messages = receive_until_acked(outbox, len(ticks))
    days = [m for m in messages if isinstance(m, DailyEnergyBatch)]
    acks = [m.seq for m in messages if isinstance(m, Delivered)]
    assert acks and acks[-1] == len(ticks), "every batch acknowledged"
    assert acks == sorted(acks)
    (june_2,) = days  # June 1st was seen from 23:00 only: no entry (not a partial one)
    assert (june_2.envoy, june_2.day, june_2.time_ns) == ("gw", "2026-06-02", day)
    expected = {
        ("production", "total", ""): 24_000.0,
        ("net-consumption", "total", ""): 6_000.0,
        ("net-consumption", "total", "delivered"): 12_000.0,
        ("net-consumption", "total", "received"): 6_000.0,
    }
    got = {
        (e.measurement_type, e.line, dict(e.tags).get("direction", "")): e.wh
        for e in june_2.entries
    }
    assert got == pytest.approx(expected)

    # A poll a minute later is acknowledged but, within save_every_s, not yet saved ...
    state_file = tmp_path / "daily" / "gw.json"
    last = ticks[-1] + 60 * 1_000_000_000
    inbox.send(Deliver(len(ticks) + 1, polled(last, 28.0)))
    receive_until_acked(outbox, len(ticks) + 1)
    assert str(last).encode() not in state_file.read_bytes()
    inbox.send(Stop())  # ... until Stop saves the state
    thread.join(10)
    assert not thread.is_alive()
    assert str(last).encode() in state_file.read_bytes()

    backend = SqliteBackend(SqliteSinkConfig(name="db"), tmp_path)
    try:
        backend.accept([june_2])
        backend.accept([june_2])  # a replay after a sink restart
    finally:
        backend.close()
    with sqlite3.connect(tmp_path / "envoy.sqlite3") as db:
        rows = db.execute(
            "SELECT envoy, measurement_type, line, direction, serial, wh, time FROM energy_daily"
        ).fetchall()
    # one row per series (the three of the net meter's line included), none twice
    assert {(mt, line, direction): wh for _, mt, line, direction, _, wh, _ in rows} == (
        pytest.approx(expected)
    )
    assert len(rows) == len(expected)
    assert {(envoy, serial, t) for envoy, _, _, _, serial, _, t in rows} == {("gw", "", day)}
