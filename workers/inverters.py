"""The inverter poller: per-panel micro-inverter reports at a low rate.

Polls ``/api/v1/production/inverters`` (default every 60 s). Inverters report only every
5-15 minutes, so most polls repeat what was already sent: only reports newer than the
last one seen per serial are forwarded, with the user's tags for that serial attached.
Sends `InverterBatch` to the supervisor (see `workers.poller` for the loop).
"""

from __future__ import annotations

from shared.gateway import GatewayClient
from shared.messages import GatewayInfo, InverterBatch, Tags
from shared.parsers import parse_inverters
from workers.mailbox import Mailbox
from workers.poller import Poller, PollerSettings, request_lock_path

INVERTERS = "/api/v1/production/inverters"


class InverterFeed:
    endpoint = INVERTERS

    def __init__(self, envoy: str, tags: dict[str, Tags]) -> None:
        self._envoy = envoy
        self._tags = tags
        self._last_report: dict[str, int] = {}  # serial -> report_s last forwarded

    def poll(
        self, client: GatewayClient, info: GatewayInfo, tick_ns: int, phase_ns: int
    ) -> InverterBatch | None:
        fresh = []
        for report in client.fetch(INVERTERS, parse_inverters):
            if report.report_s > self._last_report.get(report.serial, -1):
                self._last_report[report.serial] = report.report_s
                fresh.append(report._replace(tags=self._tags.get(report.serial, ())))
        return InverterBatch(self._envoy, tick_ns, tuple(fresh), phase_ns) if fresh else None


def run(settings: PollerSettings, mailbox: Mailbox) -> None:
    gateway = settings.gateway
    client = GatewayClient(
        gateway, pin_store=settings.state_dir / "pins", request_lock=request_lock_path(settings)
    )
    feed = InverterFeed(gateway.name, dict(gateway.inverter_tags))
    Poller(settings, mailbox, client, feed).run()
