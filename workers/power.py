"""The power poller: production, consumption and per-phase readings at a high rate.

Every tick reads the endpoint that answers fastest for its data (issue 13; a D8.3.5169
answers ``/ivp/meters/readings`` in 0.32 s, ``/api/v1/production`` in 0.37 s, and
``/production.json?details=1`` in 5.4 s):

* gateways with enabled CTs: ``/ivp/meters/readings``: per CT and per phase active,
  reactive and apparent power, voltage, current, power factor, frequency and the
  actEnergyDlvd / actEnergyRcvd counters. Every enabled CT is written as its own
  measurement_type, whatever its measurementType (production, net-consumption,
  total-consumption, storage, backfeed, load, evse, pv3p). Where there is a net CT but
  no total one, total-consumption is derived per line as production + net, as
  production.json does (and net as total - production beside a total CT): p_w and
  q_var summed, the consumption CT's voltage and frequency (the same wire); s_va, i_a
  and pf cannot be summed and are left out.
* gateways without enabled CTs (or without a meter list): ``/api/v1/production``, the
  inverter sum (p_w, wh_lifetime).

``/production.json?details=1`` keeps only what nothing faster has: the inverter-sum entry
(on metered gateways), the eim entries' ``whLifetime`` counters (the readings count
energy differently: actEnergyDlvd/Rcvd), and on gateways without meter readings its eim
entries whole. It is read every ``poll.production_s`` (default 60 s) by a thread of its
own, never on the tick path (`ProductionFetch`), and what it brought is added once to the
next tick's batch. Firmware 3.x serves it as an HTML page: after such an answer it is
tried again 1 minute later, then after 2, 4, .. up to every hour.

Firmware 8.3.5433 reports total-consumption equal to net-consumption in production.json
(the parser corrects it to production + net, `shared.parsers.production`); its meters
readings do not have that bug: the CT reads the real total, and net is derived from it.

Sends `PowerBatch`, and a `PollReport` (feed "production") per production.json fetch, to
the supervisor (see `workers.poller` for the tick loop).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable

import structlog

from shared.backoff import Backoff
from shared.errors import GatewayAuthError, GatewayBadResponse, GatewayError, GatewayHTTPError
from shared.gateway import GatewayClient
from shared.messages import (
    INVERTERS,
    NET_CONSUMPTION,
    PRODUCTION,
    TOTAL_CONSUMPTION,
    GatewayInfo,
    MeterInfo,
    PollReport,
    PowerBatch,
    PowerSample,
    TokenRejected,
)
from shared.parsers import parse_meters, parse_meters_readings, parse_production, parse_summary
from shared.parsers.production import ProductionParse
from workers.mailbox import Mailbox
from workers.poller import Poller, PollerSettings, request_lock_path, to_ns

PRODUCTION_JSON = "/production.json?details=1"
SUMMARY = "/api/v1/production"
METERS = "/ivp/meters"
READINGS = "/ivp/meters/readings"
#: after an HTML production.json, try it again 60 s later, doubling up to every hour
HTML_RETRY = Backoff(60.0, 3600.0)


def readings_samples(readings: Iterable[PowerSample]) -> tuple[PowerSample, ...]:
    """What a tick writes from the parsed meters readings: every CT as read, plus the
    consumption production.json would show beside it and no CT measures, per line:
    total = production + net beside a net CT, net = total - production beside a total CT.
    p_w and q_var add on one wire; voltage and frequency are the consumption CT's."""
    samples = list(readings)
    types = {s.measurement_type for s in samples}
    if PRODUCTION not in types or (NET_CONSUMPTION in types) == (TOTAL_CONSUMPTION in types):
        return tuple(samples)
    sign, have, derive = (
        (1.0, NET_CONSUMPTION, TOTAL_CONSUMPTION)
        if NET_CONSUMPTION in types
        else (-1.0, TOTAL_CONSUMPTION, NET_CONSUMPTION)
    )
    production = {s.line: s for s in samples if s.measurement_type == PRODUCTION}
    for cons in [s for s in samples if s.measurement_type == have]:
        prod = production.get(cons.line)
        if prod is None:
            continue  # a line production does not report cannot be derived
        q_var = None if prod.q_var is None or cons.q_var is None else cons.q_var + sign * prod.q_var
        samples.append(
            PowerSample(
                derive,
                cons.line,
                cons.p_w + sign * prod.p_w,
                q_var,
                None,
                None,
                cons.v_v,
                None,
                None,
                freq_hz=cons.freq_hz,
            )
        )
    return tuple(samples)


def with_production(
    samples: tuple[PowerSample, ...], production: ProductionParse | None, metered: bool
) -> tuple[PowerSample, ...]:
    """A tick's samples with what the last production.json brought (``None``: nothing new).

    From the readings (``metered``): each eim entry's whLifetime onto the sample of the
    same meter and line, and the inverter-sum sample. From /api/v1/production: the eim
    samples whole (it has the inverter sum itself, fresher).
    """
    if production is None:
        return samples
    if not metered:
        return samples + tuple(s for s in production.samples if s.measurement_type != INVERTERS)
    lifetime = {
        (s.measurement_type, s.line): s.wh_lifetime
        for s in production.samples
        if s.measurement_type != INVERTERS
    }
    merged = tuple(
        s._replace(wh_lifetime=lifetime[s.measurement_type, s.line])
        if (s.measurement_type, s.line) in lifetime
        else s
        for s in samples
    )
    return merged + tuple(s for s in production.samples if s.measurement_type == INVERTERS)


class ProductionFetch:
    """``/production.json?details=1`` on its own thread and cadence, one in flight.

    `due`, called on every power tick, starts a fetch when the fetch's own aligned tick
    (a multiple of ``interval_s``) has come and none is running; a fetch tick that comes
    while one still runs is reported skipped. `take` hands the last parse over once.
    ``threaded=False`` runs each fetch in the caller (unit tests of what it brings).
    """

    def __init__(
        self,
        envoy: str,
        interval_s: float,
        report: Callable[[PollReport | TokenRejected], None],
        *,
        threaded: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._envoy = envoy
        self.interval_s = interval_s
        self._report = report
        self._threaded = threaded
        self._clock = clock
        self._log = structlog.get_logger().bind(envoy=envoy)
        self._lock = threading.Lock()
        self._running = False
        self._result: ProductionParse | None = None
        self._next_s = -math.inf  # the next fetch tick; at first: the first power tick
        self._html_answers = 0
        self._notes_logged: set[str] = set()

    def due(self, client: GatewayClient, info: GatewayInfo, tick_ns: int) -> None:
        now_s = tick_ns / 1e9
        if now_s < self._next_s:
            return
        tick_s = math.floor(now_s / self.interval_s) * self.interval_s
        self._next_s = tick_s + self.interval_s
        with self._lock:
            if self._running:
                self._send(tick_s, False, "skipped", "previous production.json still running")
                return
            self._running = True
        if self._threaded:
            threading.Thread(
                target=self._run, args=(client, info, tick_s), name="production", daemon=True
            ).start()
        else:
            self._run(client, info, tick_s)

    def take(self) -> ProductionParse | None:
        with self._lock:
            result, self._result = self._result, None
        return result

    def fetch(self, client: GatewayClient, info: GatewayInfo, tick_s: float) -> ProductionParse:
        """One production.json, parsed; an HTML page (firmware 3.x, or a busy gateway)
        postpones the next fetch (`HTML_RETRY`). Raises `GatewayError`."""
        try:
            parsed = client.fetch(PRODUCTION_JSON, parse_production)
        except GatewayBadResponse as exc:
            if exc.parse_error.reason.startswith("an HTML page"):
                self._html_answers += 1
                retry_s = HTML_RETRY.after(self._html_answers)
                self._next_s = max(self._next_s, tick_s + retry_s)
                if self._html_answers == 1:
                    self._log.info(
                        "production.json is an HTML page: power from the fast endpoint only",
                        firmware=info.software,
                        retry_s=retry_s,
                    )
            raise
        if self._html_answers:
            self._log.info("production.json is JSON again")
            self._html_answers = 0
        for note in parsed.notes:
            if note not in self._notes_logged:
                self._notes_logged.add(note)
                self._log.warning("gateway data corrected", note=note)
        return parsed

    def _run(self, client: GatewayClient, info: GatewayInfo, tick_s: float) -> None:
        started = self._clock()
        parsed: ProductionParse | None = None
        try:
            parsed = self.fetch(client, info, tick_s)
            outcome = (True, "", "")
        except GatewayError as exc:
            outcome = (False, exc.kind, str(exc))
            if isinstance(exc, GatewayAuthError):
                # the fast tick may not be asking the gateway anything a token guards
                # (firmware < 7 answers /api/v1/production without one): say it here too
                self._report(TokenRejected(info.serial, self._envoy))
        except Exception as exc:  # a bug must cost one fetch, not the power poller
            self._log.exception("production.json fetch failed unexpectedly")
            outcome = (False, "bug", repr(exc)[:200])
        finally:
            with self._lock:
                if parsed is not None:
                    self._result = parsed
                self._running = False
        ok, kind, detail = outcome
        self._send(tick_s, ok, kind, detail, started)

    def _send(
        self, tick_s: float, ok: bool, kind: str, detail: str, started: float | None = None
    ) -> None:
        jitter_ms = duration_ms = 0.0
        if ok and started is not None:
            jitter_ms, duration_ms = (started - tick_s) * 1e3, (self._clock() - started) * 1e3
        self._report(
            PollReport(
                self._envoy,
                "production",
                to_ns(tick_s),
                ok,
                kind,
                detail,
                jitter_ms,
                duration_ms,
                PRODUCTION_JSON,
                self.interval_s,
            )
        )


class PowerFeed:
    """Fetches and parses one power tick; remembers what the gateway turned out to have."""

    def __init__(self, envoy: str, production: ProductionFetch) -> None:
        self._log = structlog.get_logger().bind(envoy=envoy)
        self._envoy = envoy
        self.production = production
        self.endpoint = ""  #: what the last tick read, for its PollReport
        self._meters: tuple[MeterInfo, ...] | None = None  # None: not asked yet
        self._meters_retry_s = 0.0  # after a failed meter list: ask again from this time

    def poll(
        self, client: GatewayClient, info: GatewayInfo, tick_ns: int, phase_ns: int
    ) -> PowerBatch:
        self.production.due(client, info, tick_ns)
        meters = self._meter_list(client, info, tick_ns)
        if any(m.enabled for m in meters):
            self.endpoint = READINGS
            readings = client.fetch(READINGS, lambda body: parse_meters_readings(body, meters))
            samples = readings_samples(readings)
            samples = with_production(samples, self.production.take(), metered=True)
        else:
            self.endpoint = SUMMARY
            samples = client.fetch(SUMMARY, parse_summary)
            samples = with_production(samples, self.production.take(), metered=False)
        return PowerBatch(self._envoy, tick_ns, samples, phase_ns)

    def _meter_list(
        self, client: GatewayClient, info: GatewayInfo, tick_ns: int
    ) -> tuple[MeterInfo, ...]:
        if not info.metered:
            return ()
        if self._meters is None or (not self._meters and tick_ns / 1e9 >= self._meters_retry_s):
            try:
                self._meters = client.fetch(METERS, parse_meters)
            except (GatewayBadResponse, GatewayHTTPError) as exc:
                # A gateway (or capture) without the list: readings cannot be matched to CTs.
                if self._meters is None:
                    self._log.warning(
                        "no CT meter list: power from /api/v1/production", error=str(exc)
                    )
                self._meters = ()
                self._meters_retry_s = tick_ns / 1e9 + self.production.interval_s
        return self._meters


def run(settings: PollerSettings, mailbox: Mailbox) -> None:
    gateway = settings.gateway
    client = GatewayClient(
        gateway, pin_store=settings.state_dir / "pins", request_lock=request_lock_path(settings)
    )
    production = ProductionFetch(gateway.name, gateway.production_interval_s, mailbox.send)
    Poller(settings, mailbox, client, PowerFeed(gateway.name, production)).run()
