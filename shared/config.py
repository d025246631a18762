"""The typed configuration every process receives.

`shared.config_loader` builds these from ``site.yml`` (once, in the supervisor) and
validates every value; workers get the frozen objects and never read files or the
environment themselves. Defaults here are the documented defaults of the config keys.
Secrets are excluded from ``repr`` so a logged config never shows them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Literal

from shared.messages import Tags

DAY_S = 86_400.0

ENLIGHTEN_URL = "https://enlighten.enphaseenergy.com"
ENTREZ_URL = "https://entrez.enphaseenergy.com"


@dataclass(frozen=True, slots=True)
class CloudConfig:
    """Where tokens come from. TLS to the cloud is always verified."""

    login_url: str = ENLIGHTEN_URL  #: base URL serving /login/login.json
    token_url: str = ENTREZ_URL  #: base URL serving /tokens
    ca_file: Path | None = None  #: verify against this CA bundle instead of the system store


@dataclass(frozen=True, slots=True)
class AccountConfig:
    """An Enlighten account whose token worker serves one or more gateways."""

    name: str
    email: str
    password: str = field(repr=False)
    cloud: CloudConfig = CloudConfig()
    refresh_margin_s: float = 30 * DAY_S  #: renew this long before the token's exp
    reauth_cooldown_s: float = 600.0  #: at most one re-login per this period on 401 reports
    login_backoff_s: float = 60.0  #: first wait after a failed login; doubles per failure
    login_backoff_max_s: float = DAY_S  #: cap of that wait


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """One gateway to poll."""

    name: str  #: the `envoy` tag; defaults to the serial when the config omits it
    host: str  #: host name or address, optionally with :port
    serial: str | None = None  #: read from /info when not given
    account: str | None = None  #: name of an AccountConfig that gets tokens for it
    token: str | None = field(default=None, repr=False)  #: a static long-lived token
    scheme: Literal["auto", "http", "https"] = "auto"  #: auto: from the firmware in /info
    power_interval_s: float = 5.0
    inverter_interval_s: float = 60.0
    #: /production.json?details=1 (5 s to answer; only the inverter sum and whLifetime
    #: counters that nothing faster has): read this often by the power poller, off its ticks
    production_interval_s: float = 60.0
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 20.0  #: gateways answer in 3-11 s when busy
    pin_certificate: bool = False  #: trust the gateway's certificate on first use, then pin it
    inverter_tags: tuple[tuple[str, Tags], ...] = ()  #: (serial, tags) for inverters
    inverters: tuple[str, ...] = ()  #: serials expected; those silent all day get 0 Wh


@dataclass(frozen=True, slots=True)
class InfluxSinkConfig:
    """InfluxDB 2.x/3.x (v2 API), 1.8 through the v2 compatibility API, or 1.x via /write."""

    name: str
    url: str
    version: Literal[1, 2] = 2
    org: str = ""
    bucket: str = "envoy"  #: high-rate: power, energy, inverter (1.8 compat: "db/rp")
    bucket_daily: str = "envoy_daily"  #: low-rate: energy_daily
    token: str = field(default="", repr=False)  #: v2 token (1.8 compat: "user:password")
    database: str = "envoy"  #: version 1
    database_daily: str = "envoy_daily"  #: version 1
    retention_policy: str = ""  #: version 1; empty is the database's default
    username: str = ""  #: version 1
    password: str = field(default="", repr=False)  #: version 1
    timeout_s: float = 10.0
    spool_max_mb: float = 256.0  #: oldest points dropped (and counted) beyond this


@dataclass(frozen=True, slots=True)
class PrometheusSinkConfig:
    """One exporter scraped by Prometheus."""

    name: str
    listen: str = "127.0.0.1"
    port: int = 9433
    stale_after_s: float = 1800.0  #: an inverter silent this long drops out of the scrape


@dataclass(frozen=True, slots=True)
class SqliteSinkConfig:
    """The embedded store; ``path`` is relative to the state dir unless absolute."""

    name: str
    path: Path = Path("envoy.sqlite3")


@dataclass(frozen=True, slots=True)
class MqttSinkConfig:
    """An MQTT broker: state topics per gateway, Home Assistant discovery (`workers.sink_mqtt`)."""

    name: str
    host: str
    port: int = 1883
    username: str = ""
    password: str = field(default="", repr=False)
    ca_file: Path | None = None  #: TLS to the broker, verified against this CA bundle
    client_id: str = ""  #: empty: ``envoy-supervisor-<name>``
    keepalive_s: int = 60
    topic_prefix: str = "envoy"
    discovery: bool = True  #: publish Home Assistant discovery configs
    discovery_prefix: str = "homeassistant"
    inverter_sensors: bool = False  #: one discovered sensor per inverter (50 panels: 50 more)
    spool_max_mb: float = 256.0  #: oldest messages dropped (and counted) beyond this


SinkConfig = InfluxSinkConfig | PrometheusSinkConfig | SqliteSinkConfig | MqttSinkConfig


@dataclass(frozen=True, slots=True)
class SupervisionConfig:
    """Restart policy and watchdog settings."""

    heartbeat_s: float = 1.0  #: how often workers say they are alive
    hang_timeout_s: float = 30.0  #: no heartbeat for this long: the worker is killed
    backoff_initial_s: float = 0.5  #: first restart delay; doubles per consecutive crash
    backoff_max_s: float = 60.0
    max_restarts: int = 10  #: more restarts than this within restart_window_s: FATAL
    restart_window_s: float = 300.0
    grace_s: float = 10.0  #: shutdown: time for sinks to drain before everything is killed
    #: a FATAL worker is started again this long after it went FATAL; doubles per episode
    fatal_cooldown_s: float = 600.0
    fatal_cooldown_max_s: float = 21600.0
    fatal_forever: bool = False  #: leave a FATAL worker down until the service is restarted


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"  #: auto: console on a tty, else JSON


@dataclass(frozen=True, slots=True)
class HealthConfig:
    """The ``/healthz`` endpoint served by the supervisor; off unless a port is given."""

    listen: str = "127.0.0.1"
    port: int | None = None  #: None: no endpoint


@dataclass(frozen=True, slots=True)
class ShardConfig:
    """This host's share of a site split over several hosts (`supervisor.shard`)."""

    index: int = 1  #: which shard this host runs, 1..count
    count: int = 1  #: how many hosts share the site's gateways


MAX_SHARDS = 1000  #: more hosts than this for one site file is a typo, not a deployment


@dataclass(frozen=True, slots=True)
class SiteConfig:
    """Everything the supervisor needs, validated."""

    source: Path  #: the file it came from, for messages
    gateways: tuple[GatewayConfig, ...]
    accounts: tuple[AccountConfig, ...] = ()
    sinks: tuple[SinkConfig, ...] = ()
    state_dir: Path = Path("state")
    timezone: str = "UTC"  #: IANA name; daily energy is cut at this zone's midnight
    daily_max_gap_s: float = 3600.0  #: inverter reports further apart are not interpolated
    supervision: SupervisionConfig = SupervisionConfig()
    logging: LoggingConfig = LoggingConfig()
    shard: ShardConfig = ShardConfig()  #: the site's gateways run here (all when 1/1)
    health: HealthConfig = HealthConfig()
    #: things the loader found worth saying that do not stop a run (file mode, unused
    #: accounts), as `FILE: key.path: problem` lines; the supervisor logs them at start
    warnings: tuple[str, ...] = ()


#: config field names that hold secrets (the logging redaction uses the same idea by key)
SECRET_FIELD = re.compile(r"^(password|token)$")


def secrets_in(value: object) -> list[str]:
    """Every non-empty secret field in a (nested) config or settings object.

    Each process registers these with `shared.logs.register_secrets`, so a secret that
    slips into a log line by value (an exception text, a URL) is still masked.
    """
    found: list[str] = []
    if is_dataclass(value) and not isinstance(value, type):
        for f in fields(value):
            item = getattr(value, f.name)
            if isinstance(item, str) and SECRET_FIELD.search(f.name):
                found.append(item)
            else:
                found.extend(secrets_in(item))
    elif isinstance(value, tuple | list):
        for item in value:
            found.extend(secrets_in(item))
    return [s for s in found if s]
