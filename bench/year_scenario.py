"""The simulated year's scenario: when each fault starts and ends, and what the design
promises about normal service after it (see `bench.year`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from shared.config import SupervisionConfig
from workers.poller import MAX_BACKOFF_S, REIDENTIFY_AFTER_FAILURES
from workers.sink_influx import RETRY_MAX_S

DAY = 86400.0
HOUR = 3600.0
START = datetime(2027, 1, 1, tzinfo=UTC).timestamp()
SITE_TZ = ZoneInfo("Europe/Amsterdam")
POWER_S = 60.0
HOST = "envoy.year"
SPOOL_MAX_BYTES = 256 * 1024  #: small, so three days of points overflow it
SUPERVISION = SupervisionConfig()


@dataclass(frozen=True, slots=True)
class Fault:
    name: str
    start_s: float  #: true time
    end_s: float
    promise_s: float  #: normal service is back at most this long after end_s
    promise: str  #: what that promise rests on


def day_at(n: float, hour: float = 0.0) -> float:
    return START + n * DAY + hour * HOUR


def faults() -> list[Fault]:
    interval_and_backoff = POWER_S + MAX_BACKOFF_S
    return [
        Fault(
            "firmware update HTTP -> HTTPS",
            day_at(20, 10),
            day_at(20, 10),
            2 * POWER_S + (REIDENTIFY_AFTER_FAILURES - 1) * MAX_BACKOFF_S,
            "failed polls with their backoff until /info is read again, then a token",
        ),
        Fault(
            "gateway unreachable 72 h",
            day_at(40, 8),
            day_at(43, 8),
            interval_and_backoff,
            "poller backoff cap + one interval",
        ),
        Fault(
            "installer logins refused 1 week",
            day_at(100, 6),
            day_at(107, 6),
            DAY + HOUR,
            "login backoff cap (1 day)",
        ),
        Fault(
            "database down 3 days",
            day_at(150, 9),
            day_at(153, 9),
            RETRY_MAX_S + POWER_S,
            "forwarder retry cap",
        ),
        Fault(
            "full disk 1 h (sqlite sink crashes)",
            day_at(200, 12),
            day_at(200, 13),
            SUPERVISION.fatal_cooldown_max_s + SUPERVISION.backoff_max_s,
            "FATAL cool-down cap",
        ),
        # Mid-interval: a step while the poller waits for its next tick.
        Fault(
            "clock stepped 1 h back",
            day_at(250, 3) + 30,
            day_at(250, 3) + 30,
            2 * POWER_S,
            "one interval",
        ),
        Fault(
            "clock stepped 1 h forward",
            day_at(260, 3) + 30,
            day_at(260, 3) + 30,
            2 * POWER_S,
            "one interval",
        ),
        Fault(
            "owner logins refused 1 week",
            day_at(352, 6),
            day_at(359, 6),
            POWER_S,
            "the token is renewed 30 days ahead: no reading may be missed",
        ),
    ]


def nightly(true_s: float) -> bool:
    """Inside the 23:00-23:03 local window when a real gateway stops answering."""
    local = datetime.fromtimestamp(true_s, SITE_TZ)
    return local.hour == 23 and local.minute < 3
