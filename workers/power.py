"""The power poller: production, consumption and per-phase readings at a high rate.

Polls ``/production.json?details=1`` every tick. On gateways with CT meters it also reads
``/ivp/meters/readings`` and adds the import/export counters (actEnergyDlvd/Rcvd) to the
matching samples. Firmware 3.x serves production.json as an HTML page: after such an answer
the poller switches to ``/api/v1/production`` (production total only), and tries
production.json again 1 minute later, then after 2, 4, .. up to every hour: a newer
gateway answering one transient HTML error page gets its per-phase readings back soon,
a real 3.x costs one extra request an hour.
Sends `PowerBatch` to the supervisor (see `workers.poller` for the loop).
"""

from __future__ import annotations

import structlog

from shared.backoff import Backoff
from shared.errors import GatewayBadResponse
from shared.gateway import GatewayClient
from shared.messages import GatewayInfo, MeterInfo, PowerBatch, PowerSample
from shared.parsers import parse_meters, parse_meters_readings, parse_production, parse_summary
from workers.mailbox import Mailbox
from workers.poller import Poller, PollerSettings, request_lock_path

PRODUCTION = "/production.json?details=1"
SUMMARY = "/api/v1/production"
METERS = "/ivp/meters"
READINGS = "/ivp/meters/readings"
#: after an HTML production.json, try it again 60 s later, doubling up to every hour
HTML_RETRY = Backoff(60.0, 3600.0)


class PowerFeed:
    """Fetches and parses one power poll; remembers what the gateway turned out to have."""

    def __init__(self, envoy: str) -> None:
        self._log = structlog.get_logger().bind(envoy=envoy)
        self._envoy = envoy
        self._html_answers = 0  # production.json answers in a row that were HTML pages
        self._retry_production_ns = 0  # while HTML: use the summary until this tick
        self._meters: tuple[MeterInfo, ...] | None = None  # None: not asked yet
        self._notes_logged: set[str] = set()

    def poll(
        self, client: GatewayClient, info: GatewayInfo, tick_ns: int, phase_ns: int
    ) -> PowerBatch:
        if self._html_answers and tick_ns < self._retry_production_ns:
            samples = client.fetch(SUMMARY, parse_summary)
        else:
            try:
                parsed = client.fetch(PRODUCTION, parse_production)
            except GatewayBadResponse as exc:
                if not exc.parse_error.reason.startswith("an HTML page"):
                    raise
                self._html_answers += 1
                retry_s = HTML_RETRY.after(self._html_answers)
                self._retry_production_ns = tick_ns + round(retry_s * 1e9)
                if self._html_answers == 1:
                    self._log.info(
                        "production.json is an HTML page: using /api/v1/production for now",
                        firmware=info.software,
                        retry_s=retry_s,
                    )
                return self.poll(client, info, tick_ns, phase_ns)
            if self._html_answers:
                self._log.info("production.json is JSON again: per-phase readings are back")
                self._html_answers = 0
            for note in parsed.notes:
                if note not in self._notes_logged:
                    self._notes_logged.add(note)
                    self._log.warning("gateway data corrected", note=note)
            samples = parsed.samples
            if info.metered:
                samples = self._with_meter_counters(client, samples)
        return PowerBatch(self._envoy, tick_ns, samples, phase_ns)

    def _with_meter_counters(
        self, client: GatewayClient, samples: tuple[PowerSample, ...]
    ) -> tuple[PowerSample, ...]:
        if self._meters is None:
            self._meters = client.fetch(METERS, parse_meters)
        if not any(m.enabled for m in self._meters):
            return samples
        readings = client.fetch(
            READINGS, lambda body: parse_meters_readings(body, self._meters or ())
        )
        counters = {(r.measurement_type, r.line): r for r in readings}
        merged = []
        for sample in samples:
            reading = counters.get((sample.measurement_type, sample.line))
            if reading is not None:
                sample = sample._replace(
                    wh_delivered=reading.wh_delivered, wh_received=reading.wh_received
                )
            merged.append(sample)
        return tuple(merged)


def run(settings: PollerSettings, mailbox: Mailbox) -> None:
    client = GatewayClient(
        settings.gateway,
        pin_store=settings.state_dir / "pins",
        request_lock=request_lock_path(settings),
    )
    Poller(settings, mailbox, client, PowerFeed(settings.gateway.name)).run()
