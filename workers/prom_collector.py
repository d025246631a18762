"""What the Prometheus exporter serves: the latest values, and the collector over them.

The exporter process feeds every batch it receives (`PowerBatch`, `InverterBatch`,
`DailyEnergyBatch`) and every `SelfMetrics` snapshot from the supervisor into one
`LatestValues`; the HTTP thread of prometheus-client calls `EnvoyCollector.collect` on
each scrape. Nothing here reads a channel itself.

Naming: base units, labels for dimensions, never a serial in a metric name. Energy
counters are ``wh * 3600`` joules. The net meter's imported / exported counters are
separate metrics (``envoy_energy_delivered_joules_total`` / ``..._received_...``) rather
than a label, because summing them over such a label would mean nothing.

Values are exported without timestamps: Prometheus then stamps them with the scrape
time, applies its normal staleness handling when a series disappears, and never rejects
them as out of bounds after an outage. How old the data is shows in
``envoy_last_success_timestamp_seconds`` and ``envoy_inverter_last_report_timestamp_seconds``.
Instead of freezing at their last value, series older than ``stale_after_s`` (by our own
clock, not the gateway's) are left out of the scrape.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from wsgiref.simple_server import WSGIServer

import structlog
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from shared.messages import (
    DailyEnergyBatch,
    InverterBatch,
    InverterReport,
    PowerBatch,
    PowerSample,
    SelfMetrics,
    Tags,
)

log = structlog.get_logger(__name__)

NS = 1_000_000_000
J_PER_WH = 3600.0
UP_INTERVALS = 3  #: envoy_up is 1 while the last good power poll is this many intervals old
DAILY_KEEP_S = 50 * 3600.0  #: a finished day stays exported through the whole next day (DST: 25 h)

# (metric, PowerSample field, unit, help)
POWER_GAUGES = (
    ("envoy_power_watts", "p_w", "watts", "Active power; net-consumption > 0 is import"),
    ("envoy_reactive_power_var", "q_var", "var", "Reactive power"),
    ("envoy_apparent_power_va", "s_va", "va", "Apparent power"),
    ("envoy_current_amperes", "i_a", "amperes", "RMS current"),
    ("envoy_voltage_volts", "v_v", "volts", "RMS voltage"),
    ("envoy_power_factor", "pf", "", "Power factor"),
    ("envoy_frequency_hertz", "freq_hz", "hertz", "Line frequency (meters readings)"),
)
ENERGY_COUNTERS = (
    ("envoy_energy_joules", "wh_lifetime", "Lifetime energy counter of the meter"),
    ("envoy_energy_delivered_joules", "wh_delivered", "Energy delivered (imported, net meter)"),
    ("envoy_energy_received_joules", "wh_received", "Energy received (exported, net meter)"),
)


@dataclass(slots=True)
class _Values:
    power: dict[tuple[str, str, str], tuple[int, PowerSample]] = field(default_factory=dict)
    inverters: dict[tuple[str, str], tuple[int, InverterReport]] = field(default_factory=dict)
    daily: dict[str, DailyEnergyBatch] = field(default_factory=dict)
    fed: dict[tuple[str, str], int] = field(default_factory=dict)  #: (envoy, feed) -> tick
    self_metrics: SelfMetrics = field(default_factory=SelfMetrics)

    def copy(self) -> _Values:
        return _Values(
            dict(self.power),
            dict(self.inverters),
            dict(self.daily),
            dict(self.fed),
            self.self_metrics,
        )


class LatestValues:
    """The newest value of every series; fed by the exporter's loop, read per scrape."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # the scrape runs in prometheus-client's HTTP thread
        self._v = _Values()

    def update(self, message: PowerBatch | InverterBatch | DailyEnergyBatch | SelfMetrics) -> None:
        with self._lock:
            v = self._v
            if isinstance(message, PowerBatch):
                self._fed(message.envoy, "power", message.tick_ns)
                for s in message.samples:
                    key = (message.envoy, s.measurement_type, s.line)
                    # per series, not per batch: meters readings may come in batches of their own
                    if key not in v.power or v.power[key][0] <= message.tick_ns:
                        v.power[key] = (message.tick_ns, s)
            elif isinstance(message, InverterBatch):
                self._fed(message.envoy, "inverters", message.tick_ns)
                for r in message.reports:
                    # staleness counts from when we got the report, so a gateway with a
                    # wrong clock does not make all its inverters look stale
                    v.inverters[(message.envoy, r.serial)] = (message.tick_ns, r)
            elif isinstance(message, DailyEnergyBatch):
                old = v.daily.get(message.envoy)
                if old is None or old.time_ns <= message.time_ns:
                    v.daily[message.envoy] = message
            elif isinstance(message, SelfMetrics):
                v.self_metrics = message
            else:
                log.warning("unexpected message for the exporter", type=type(message).__name__)

    def _fed(self, envoy: str, feed: str, tick_ns: int) -> None:
        self._v.fed[(envoy, feed)] = max(tick_ns, self._v.fed.get((envoy, feed), 0))

    def snapshot(self) -> _Values:
        with self._lock:
            return self._v.copy()


class EnvoyCollector(Collector):
    """prometheus-client custom collector: builds every family from a `LatestValues` snapshot."""

    def __init__(
        self,
        latest: LatestValues,
        clock: Callable[[], float] = time.time,
        stale_after_s: float = 1800.0,
        power_interval_s: Mapping[str, float] | None = None,
        default_interval_s: float = 5.0,
    ) -> None:
        self._latest = latest
        self._clock = clock  #: epoch seconds
        self._stale_ns = int(stale_after_s * NS)
        self._intervals = dict(power_interval_s or {})  #: configured gateways: always in envoy_up
        self._default_interval_s = default_interval_s

    def collect(self) -> Iterator[Metric]:
        v = self._latest.snapshot()
        now_ns = int(self._clock() * NS)
        fresh_after = now_ns - self._stale_ns
        yield from self._power(t for t in v.power.items() if t[1][0] >= fresh_after)
        yield from self._inverters(
            [(k[0], r) for k, (t, r) in v.inverters.items() if t >= fresh_after]
        )
        yield from self._daily(
            [b for b in v.daily.values() if b.time_ns >= now_ns - DAILY_KEEP_S * NS]
        )
        yield from self._health(v, now_ns, fresh_after)

    def _power(
        self, items: Iterable[tuple[tuple[str, str, str], tuple[int, PowerSample]]]
    ) -> Iterator[Metric]:
        labels = ["envoy", "measurement_type", "line"]
        gauges = [GaugeMetricFamily(n, h, labels=labels, unit=u) for n, _, u, h in POWER_GAUGES]
        counters = [
            CounterMetricFamily(n, h, labels=labels, unit="joules") for n, _, h in ENERGY_COUNTERS
        ]
        for key, (_, sample) in sorted(items):
            for family, (_, attr, _, _) in zip(gauges, POWER_GAUGES, strict=True):
                value = getattr(sample, attr)
                if value is not None:
                    family.add_metric(key, value)
            for counter, (_, attr, _) in zip(counters, ENERGY_COUNTERS, strict=True):
                value = getattr(sample, attr)
                if value is not None:
                    counter.add_metric(key, value * J_PER_WH)
        yield from gauges
        yield from counters

    def _inverters(self, reports: list[tuple[str, InverterReport]]) -> Iterator[Metric]:
        tag_keys = _tag_union((r.tags for _, r in reports), reserved={"envoy", "serial"})
        labels = ["envoy", "serial", *tag_keys]
        power = GaugeMetricFamily(
            "envoy_inverter_power_watts",
            "lastReportWatts of the inverter",
            labels=labels,
            unit="watts",
        )
        peak = GaugeMetricFamily(
            "envoy_inverter_max_power_watts",
            "maxReportWatts of the inverter",
            labels=labels,
            unit="watts",
        )
        last = GaugeMetricFamily(
            "envoy_inverter_last_report_timestamp_seconds",
            "lastReportDate of the inverter (the gateway's clock)",
            labels=labels,
            unit="seconds",
        )
        for envoy, r in sorted(reports):
            values = [envoy, r.serial, *_tag_values(r.tags, tag_keys)]
            power.add_metric(values, r.p_w)
            peak.add_metric(values, r.p_max_w)
            last.add_metric(values, r.report_s)
        yield from (power, peak, last)

    def _daily(self, batches: list[DailyEnergyBatch]) -> Iterator[Metric]:
        fixed = {"envoy", "measurement_type", "line", "serial"}
        tag_keys = _tag_union((e.tags for b in batches for e in b.entries), reserved=fixed)
        energy = GaugeMetricFamily(
            "envoy_daily_energy_joules",
            "Energy of the last finished local day",
            labels=["envoy", "measurement_type", "line", "serial", *tag_keys],
            unit="joules",
        )
        start = GaugeMetricFamily(
            "envoy_daily_energy_day_start_timestamp_seconds",
            "Local midnight starting the day envoy_daily_energy_joules is about",
            labels=["envoy"],
            unit="seconds",
        )
        for b in sorted(batches, key=lambda b: b.envoy):
            start.add_metric([b.envoy], b.time_ns / NS)
            for e in b.entries:
                values = [
                    b.envoy,
                    e.measurement_type,
                    e.line or "",
                    e.serial or "",
                    *_tag_values(e.tags, tag_keys),
                ]
                energy.add_metric(values, e.wh * J_PER_WH)
        yield from (energy, start)

    def _health(self, v: _Values, now_ns: int, fresh_after: int) -> Iterator[Metric]:
        sm = v.self_metrics
        success = dict(v.fed)
        for envoy, feed, ns in sm.last_success_ns:
            success[(envoy, feed)] = max(ns, success.get((envoy, feed), 0))
        up = GaugeMetricFamily(
            "envoy_up", "1 while the last good power poll is recent", labels=["envoy"]
        )
        envoys = set(self._intervals) | {
            e for (e, feed), ns in success.items() if feed == "power" and ns >= fresh_after
        }
        for envoy in sorted(envoys):
            interval_ns = self._intervals.get(envoy, self._default_interval_s) * NS
            last = success.get((envoy, "power"))
            ok = last is not None and now_ns - last <= UP_INTERVALS * interval_ns
            up.add_metric([envoy], 1.0 if ok else 0.0)
        yield up
        last_ok = GaugeMetricFamily(
            "envoy_last_success_timestamp_seconds",
            "Time of the last good poll",
            labels=["envoy", "feed"],
            unit="seconds",
        )
        for (envoy, feed), ns in sorted(success.items()):
            last_ok.add_metric([envoy, feed], ns / NS)
        yield last_ok
        yield _family(
            CounterMetricFamily,
            "envoy_poll_errors",
            "Failed polls by kind",
            ["envoy", "kind"],
            sm.poll_errors,
        )
        yield _family(
            GaugeMetricFamily,
            "envoy_feed_readings_per_minute",
            "Readings a feed wrote over the last minute",
            ["envoy", "feed", "endpoint"],
            sm.feed_written_per_min,
        )
        yield _family(
            GaugeMetricFamily,
            "envoy_feed_due_per_minute",
            "Readings a feed is due to write per minute at its configured cadence",
            ["envoy", "feed", "endpoint"],
            sm.feed_due_per_min,
        )
        yield _family(
            CounterMetricFamily,
            "envoy_feed_missed_ticks",
            "Ticks that wrote nothing, by why (a skip's reason, or the failure's kind)",
            ["envoy", "feed", "why"],
            sm.feed_missed,
        )
        yield _family(
            CounterMetricFamily,
            "envoy_worker_restarts",
            "Worker restarts",
            ["worker_kind"],
            sm.worker_restarts,
        )
        yield _family(
            GaugeMetricFamily,
            "envoy_spool_depth_points",
            "Points waiting in the sink's spool",
            ["sink"],
            sm.spool_depth,
        )
        yield _family(
            GaugeMetricFamily,
            "envoy_storage_error",
            "1 while this writer cannot write to the state dir (disk full or failing)",
            ["writer"],
            sm.storage_error,
        )
        yield _family(
            GaugeMetricFamily,
            "envoy_worker_fatal",
            "1 while this worker is FATAL: restarted too often, down until its cool-down ends",
            ["worker"],
            sm.worker_fatal,
        )
        yield _family(
            GaugeMetricFamily,
            "envoy_token_expiry_timestamp_seconds",
            "exp of the gateway's token",
            ["envoy"],
            sm.token_expiry_s,
        )


def _family(
    kind: type[GaugeMetricFamily] | type[CounterMetricFamily],
    name: str,
    doc: str,
    labels: list[str],
    rows: Iterable[tuple[str | int | float, ...]],
) -> Metric:
    family = kind(name, doc, labels=labels)
    for *values, value in rows:
        family.add_metric([str(x) for x in values], float(value))
    return family


_INVALID = re.compile(r"[^a-zA-Z0-9_]")


def label_name(key: str, reserved: set[str]) -> str:
    """A user tag key as a valid Prometheus label name that cannot clash with ours."""
    name = _INVALID.sub("_", key)
    if not name or name[0].isdigit() or name.startswith("__") or name in reserved:
        name = "tag_" + name
    return name


def _tag_union(tag_sets: Iterable[Tags], reserved: set[str]) -> dict[str, str]:
    """label name -> tag key over all series: one label set per family, as Prometheus needs."""
    keys = {k for tags in tag_sets for k, _ in tags}
    return {label_name(k, reserved): k for k in sorted(keys)}


def _tag_values(tags: Tags, tag_keys: Mapping[str, str]) -> list[str]:
    have = dict(tags)
    return [have.get(key, "") for key in tag_keys.values()]


def serve(collector: EnvoyCollector, host: str, port: int) -> tuple[WSGIServer, threading.Thread]:
    """Serve `collector` alone (no process metrics) on host:port; port 0 picks a free one.

    Stop it with ``server.shutdown(); server.server_close()``.
    """
    registry = CollectorRegistry()
    registry.register(collector)
    return start_http_server(port, addr=host, registry=registry)
