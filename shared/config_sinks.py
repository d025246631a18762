"""Reads the ``sinks:`` section of ``site.yml``: one entry per sqlite, influxdb, prometheus
or mqtt sink, each with its own keys.

`read_sink` checks one entry with the loader's `Reader` (every problem recorded as
``FILE: sinks[i].key: problem``) and returns its values as keyword arguments, which
`shared.config_loader` completes (secrets from the environment, unique names and ports)
before `build_sink` makes the typed `SinkConfig`. An ``mqtt`` sink needs the optional
paho-mqtt package: without it the entry is refused with `MQTT_INSTALL`, so ``--check``
says so before a run would crash the sink. Part of the loading; reads nothing but the
entry (and whether a ``ca_file`` exists), writes nothing.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from shared.config import (
    InfluxSinkConfig,
    MqttSinkConfig,
    PrometheusSinkConfig,
    SinkConfig,
    SqliteSinkConfig,
)
from shared.config_values import (
    Reader,
    check_address,
    check_name,
    check_path,
    check_secret,
    check_topic,
    check_url,
    defaults,
    join,
    resolve,
    show,
)

# The keys each kind of sink accepts (see examples/site.yml).
# fmt: off
INFLUX_V1_KEYS = ("database", "database_daily", "retention_policy", "username", "password")
INFLUX_V2_KEYS = ("org", "bucket", "bucket_daily", "token")
INFLUX_KEYS = ("type", "name", "url", "version", "timeout_s", "spool_max_mb")
PROMETHEUS_KEYS = ("type", "name", "listen", "port", "stale_after_s")
SQLITE_KEYS = ("type", "name", "path")
MQTT_TEXTS = ("username", "client_id")
MQTT_KEYS = ("type", "name", "host", "port", "password", "ca_file", "keepalive_s",
             "topic_prefix", "discovery", "discovery_prefix", "inverter_sensors",
             "spool_max_mb", *MQTT_TEXTS)
SINK_TYPES = ("sqlite", "influxdb", "prometheus", "mqtt")
MQTT_INSTALL = 'pip install "envoy-supervisor[mqtt]"'
# fmt: on


def read_sink(r: Reader, raw: object, path: str, base: Path) -> dict[str, Any] | None:
    kind = raw.get("type") if isinstance(raw, dict) else None
    if kind not in SINK_TYPES:
        r.mapping(raw, path, ("type",))  # reports a non-mapping
        if isinstance(raw, dict):
            r.problem(
                join(path, "type"), f"expected one of {', '.join(SINK_TYPES)}, got {show(kind)}"
            )
        return None
    if kind == "mqtt":
        return _mqtt(r, raw, path, base)
    if kind == "sqlite":
        data = r.mapping(raw, path, SQLITE_KEYS)
        where = r.text(data, path, "path", "envoy.sqlite3", check=check_path)
        return {
            "type": kind,
            "name": r.text(data, path, "name", kind, check=check_name),
            "path": Path(where or "envoy.sqlite3").expanduser(),
        }
    if kind == "prometheus":
        data = r.mapping(raw, path, PROMETHEUS_KEYS)
        dflt = defaults(PrometheusSinkConfig)
        return {
            "type": kind,
            "name": r.text(data, path, "name", kind, check=check_name),
            "listen": r.text(data, path, "listen", dflt["listen"], check=check_address),
            "port": r.whole(data, path, "port", dflt["port"], 65535),
            "stale_after_s": r.number(data, path, "stale_after_s", dflt["stale_after_s"]),
        }
    data = r.mapping(raw, path, (*INFLUX_KEYS, *INFLUX_V1_KEYS, *INFLUX_V2_KEYS))
    dflt = defaults(InfluxSinkConfig)
    version = r.choice(data, path, "version", dflt["version"], (1, 2))
    other = INFLUX_V2_KEYS if version == 1 else INFLUX_V1_KEYS
    for key in other:
        if key in data:
            r.problem(join(path, key), f"not used with version: {version}")
    kwargs: dict[str, Any] = {
        "type": kind,
        "version": version,
        "name": r.text(data, path, "name", kind, check=check_name),
        "url": r.text(data, path, "url", check=check_url(("http", "https"))),
        "timeout_s": r.number(data, path, "timeout_s", dflt["timeout_s"]),
        "spool_max_mb": r.number(data, path, "spool_max_mb", dflt["spool_max_mb"]),
    }
    for key in INFLUX_V1_KEYS if version == 1 else INFLUX_V2_KEYS:
        secret = key in ("password", "token")
        value = r.text(data, path, key, dflt[key], secret=secret)
        kwargs[key] = value
        if not value and key not in ("retention_policy", "username", "password", "token"):
            r.problem(join(path, key), f"missing: version {version} needs it")
    if data.get("url") is None:
        r.problem(join(path, "url"), "missing: the InfluxDB server's URL")
    return kwargs


def paho_missing() -> bool:
    """True when the optional MQTT client library is not installed."""
    try:
        return importlib.util.find_spec("paho.mqtt.client") is None
    except (ImportError, ValueError):  # a parent package missing or blocked
        return True


def _mqtt(r: Reader, raw: object, path: str, base: Path) -> dict[str, Any]:
    data = r.mapping(raw, path, MQTT_KEYS)
    dflt = defaults(MqttSinkConfig)
    if paho_missing():
        r.problem(join(path, "type"), f"mqtt needs the paho-mqtt package: {MQTT_INSTALL}")
    ca_file = r.text(data, path, "ca_file", check=check_path)
    if ca_file is not None and not resolve(base, ca_file).is_file():
        r.problem(join(path, "ca_file"), f"no such file {show(ca_file)}")
    kwargs: dict[str, Any] = {
        "type": "mqtt",
        "name": r.text(data, path, "name", "mqtt", check=check_name),
        "host": r.text(data, path, "host", check=check_address),
        "port": r.whole(data, path, "port", dflt["port"], 65535),
        "password": r.text(data, path, "password", "", secret=True, check=check_secret),
        "ca_file": resolve(base, ca_file) if ca_file else None,
        "keepalive_s": r.whole(data, path, "keepalive_s", dflt["keepalive_s"], 65535),
        "discovery": r.flag(data, path, "discovery", dflt["discovery"]),
        "inverter_sensors": r.flag(data, path, "inverter_sensors", dflt["inverter_sensors"]),
        "spool_max_mb": r.number(data, path, "spool_max_mb", dflt["spool_max_mb"]),
    }
    for key in MQTT_TEXTS:
        kwargs[key] = r.text(data, path, key, dflt[key])
    for key in ("topic_prefix", "discovery_prefix"):
        kwargs[key] = r.text(data, path, key, dflt[key], check=check_topic)
    if data.get("host") is None:
        r.problem(join(path, "host"), "missing: the MQTT broker's host name or address")
    return kwargs


def build_sink(kwargs: dict[str, Any]) -> SinkConfig:
    """The typed sink from what `read_sink` returned (once the whole file is valid)."""
    kind = kwargs.pop("type")
    cls = {"sqlite": SqliteSinkConfig, "influxdb": InfluxSinkConfig, "mqtt": MqttSinkConfig}
    config: SinkConfig = cls.get(kind, PrometheusSinkConfig)(**kwargs)
    return config
