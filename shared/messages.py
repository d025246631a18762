"""Every record that crosses a process boundary, in one place.

Workers talk to each other and to the supervisor only through these types, sent over
multiprocessing queues or pipes. Dispatch is on the type; a receiver that gets a type it
does not know logs a warning and carries on.

Two kinds of record live here:

* per-reading records (`PowerSample`, `InverterReport`, `DailyEnergy`, ...) are
  `NamedTuple`s. A gateway poll builds a dozen of them on the hot parse path, and a
  NamedTuple is built three to four times faster than a frozen dataclass (whose
  ``__init__`` goes through ``object.__setattr__``), pickles smaller, and is just as
  immutable. The parse path has a budget of 1.3x a bare ``orjson.loads``.
* batches and control messages are frozen, slotted dataclasses: built once per poll or
  event, so clarity wins over speed.

Units are in the field names (``p_w`` watts, ``q_var`` reactive power, ``s_va`` apparent
power, ``i_a`` amperes, ``v_v`` volts, ``pf`` power factor, ``wh_*`` watt-hours). Values
are whatever number type the gateway sent (int in one capture, float in the next); the
encoders normalise them. ``None`` means the gateway does not report that value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

# measurement_type tag values (SPEC "What it writes").
PRODUCTION = "production"
TOTAL_CONSUMPTION = "total-consumption"
NET_CONSUMPTION = "net-consumption"
INVERTERS = "inverters"  # the inverter-sum entry of production[], and per-inverter daily energy
MEASUREMENT_TYPES = (PRODUCTION, TOTAL_CONSUMPTION, NET_CONSUMPTION, INVERTERS)

# line tag values: the whole meter, or one phase.
LINE_TOTAL = "total"
PHASES = ("L1", "L2", "L3")

#: tags a user attached to one inverter in the config, as sorted (key, value) pairs
Tags = tuple[tuple[str, str], ...]


# --- readings -------------------------------------------------------------------------


class PowerSample(NamedTuple):
    """One reading of one meter (or the inverter sum) for one line, at one poll.

    Written as a ``power`` point (p_w .. pf) and an ``energy`` point (wh_*).
    """

    measurement_type: str  #: production / total-consumption / net-consumption / inverters
    line: str  #: total / L1 / L2 / L3
    p_w: float  #: active power; net-consumption is positive when importing
    q_var: float | None  #: reactive power
    s_va: float | None  #: apparent power
    i_a: float | None  #: RMS current
    v_v: float | None  #: RMS voltage
    pf: float | None  #: power factor
    wh_lifetime: float | None  #: lifetime energy counter
    wh_delivered: float | None = None  #: meters readings: energy imported (actEnergyDlvd)
    wh_received: float | None = None  #: meters readings: energy exported (actEnergyRcvd)
    freq_hz: float | None = None  #: meters readings: line frequency


class InverterReport(NamedTuple):
    """One micro-inverter's latest report; written at its own report time."""

    serial: str
    report_s: int  #: lastReportDate, epoch seconds (the inverter's report, not our poll)
    p_w: float  #: lastReportWatts
    p_max_w: float  #: maxReportWatts
    tags: Tags = ()  #: the user's tags for this serial, added by the inverter poller


class DailyEnergy(NamedTuple):
    """Energy of one series over one local day."""

    measurement_type: str
    line: str | None  #: set for meter series (total / L1 ..)
    serial: str | None  #: set for per-inverter series
    wh: float
    tags: Tags = ()


class MeterInfo(NamedTuple):
    """One entry of /ivp/meters."""

    eid: int
    measurement_type: str
    enabled: bool  #: state == "enabled"
    phase_count: int


# --- what a gateway says about itself -------------------------------------------------


@dataclass(frozen=True, slots=True)
class GatewayInfo:
    """Parsed /info: who the gateway is and how to talk to it."""

    serial: str  #: device/sn
    software: str  #: device/software as sent, e.g. "D7.6.175"
    version: tuple[int, ...]  #: numeric part of software, e.g. (7, 6, 175)
    web_tokens: bool  #: firmware >= 7: HTTPS and a bearer token on every request
    metered: bool  #: device/imeter: the gateway has CT meters (it may still have none enabled)


# --- batches: pollers -> sinks --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PowerBatch:
    """Samples from one power poll of one gateway."""

    envoy: str  #: configured gateway name
    tick_ns: int  #: the aligned poll tick, UTC nanoseconds: the time of every point
    samples: tuple[PowerSample, ...]
    phase_ns: int = 0  #: the poll was due this long after the tick (ticks are staggered)


@dataclass(frozen=True, slots=True)
class InverterBatch:
    """Reports newer than the last seen, from one inverter poll of one gateway."""

    envoy: str
    tick_ns: int  #: the aligned poll tick; each report carries its own time
    reports: tuple[InverterReport, ...]
    phase_ns: int = 0  #: the poll was due this long after the tick (ticks are staggered)


@dataclass(frozen=True, slots=True)
class DailyEnergyBatch:
    """Daily energy for one gateway and one local day (the ``energy_daily`` bucket)."""

    envoy: str
    day: str  #: local date, ISO format
    time_ns: int  #: the local midnight that starts ``day``, in UTC nanoseconds
    entries: tuple[DailyEnergy, ...]


Batch = PowerBatch | InverterBatch | DailyEnergyBatch


# --- control --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Stop:
    """Finish the work in hand, flush, and exit."""


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """I am alive and my loop is turning (sent by every worker at a fixed interval)."""

    worker: str  #: the worker's name, e.g. "power:garage"
    pid: int


@dataclass(frozen=True, slots=True)
class TokenIssued:
    """A valid token for one gateway (token worker -> that gateway's pollers)."""

    serial: str  #: the gateway's serial number
    token: str = field(repr=False)  #: the JWT; never logged, never in a repr
    expires_s: int  #: the JWT's `exp`, epoch seconds
    user_type: str  #: the JWT's `enphaseUser`: "owner" or "installer"


@dataclass(frozen=True, slots=True)
class TokenRejected:
    """The gateway answered 401/403 to the token a poller holds: get a fresh one."""

    serial: str
    envoy: str  #: the poller's configured gateway name, for the log


# --- routing: supervisor <-> pollers and sinks ----------------------------------------


@dataclass(frozen=True, slots=True)
class Deliver:
    """A batch handed to a consumer (sink or daily-energy worker) by the supervisor."""

    seq: int  #: per-consumer sequence number, echoed in `Delivered`
    batch: Batch


@dataclass(frozen=True, slots=True)
class Delivered:
    """The consumer has durably taken every batch up to and including ``seq``."""

    seq: int


@dataclass(frozen=True, slots=True)
class PollReport:
    """The outcome of one poll: for status, `envoy_up` and the error counters."""

    envoy: str
    feed: str  #: "power", "production" (the slow production.json) or "inverters"
    tick_ns: int
    ok: bool
    error_kind: str = ""  #: GatewayError.kind when not ok, or "skipped" for a missed tick
    detail: str = ""  #: one-line error text (never a secret)
    jitter_ms: float = 0.0  #: how late the poll started after it was due (tick + phase)
    duration_ms: float = 0.0  #: how long the gateway took to answer
    endpoint: str = ""  #: what the feed read for this poll (e.g. "/ivp/meters/readings")
    interval_s: float = 0.0  #: the feed's configured cadence, for readings-per-minute in status


@dataclass(frozen=True, slots=True)
class SelfMetrics:
    """The supervisor's own counters and gauges, a full snapshot (supervisor -> exporter).

    Counts are totals since the supervisor started, so a restarted exporter loses none;
    each snapshot replaces the previous one.
    """

    poll_errors: tuple[tuple[str, str, int], ...] = ()  #: (envoy, error kind, count)
    worker_restarts: tuple[tuple[str, int], ...] = ()  #: (worker kind, count)
    spool_depth: tuple[tuple[str, int], ...] = ()  #: (sink name, points waiting)
    token_expiry_s: tuple[tuple[str, int], ...] = ()  #: (envoy, the token's exp, epoch s)
    last_success_ns: tuple[tuple[str, str, int], ...] = ()  #: (envoy, feed, UTC ns)
    #: (writer to the state dir, 1 while it cannot write: disk full or failing)
    storage_error: tuple[tuple[str, int], ...] = ()
    #: (envoy, serial, firmware) of each gateway read from its /info (the MQTT devices)
    gateways: tuple[tuple[str, str, str], ...] = ()
    #: (worker name, 1 while it is FATAL: down, waiting for its cool-down or for good)
    worker_fatal: tuple[tuple[str, int], ...] = ()
    #: (envoy, feed, endpoint, readings written per minute over the last minute)
    feed_written_per_min: tuple[tuple[str, str, str, float], ...] = ()
    #: (envoy, feed, endpoint, readings due per minute at the configured cadence)
    feed_due_per_min: tuple[tuple[str, str, str, float], ...] = ()
    #: (envoy, feed, why, ticks that wrote nothing since start)
    feed_missed: tuple[tuple[str, str, str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class GatewayIdentified:
    """A poller read /info: the supervisor learns serial and firmware of a gateway."""

    envoy: str
    info: GatewayInfo


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """What the supervisor hands a new worker process: which worker, configured how."""

    kind: str  #: "token", "power", "inverters", "daily" or "sink"
    name: str  #: unique worker name, e.g. "power:garage"; bound to every log line
    settings: object  #: the kind's own frozen settings object
    heartbeat_s: float
    log_level: str = "info"
    log_format: str = "auto"


@dataclass(frozen=True, slots=True)
class SinkStatus:
    """A sink's health, sent every few seconds (sink -> supervisor -> status, metrics)."""

    spool_items: int = 0  #: batches waiting to be forwarded to the database
    spool_bytes: int = 0
    dropped: int = 0  #: batches dropped because the spool was full, ever
    dead_letters: int = 0  #: batches the database refused as malformed, ever
    last_write_ok_s: float | None = None  #: last successful database write, epoch s
    last_error: str = ""
    #: commit time minus poll tick of recent power and inverter batches, ms (None: none yet)
    commit_lag_p50_ms: float | None = None
    commit_lag_p99_ms: float | None = None
    #: while the sink cannot write to the state dir (disk full or failing): the error
    storage_error: str = ""
