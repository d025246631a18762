"""Reads ``site.yml`` once into a validated `SiteConfig`; every problem, one line each.

`load_config` parses the file with ``yaml.safe_load`` and walks it once, collecting
*every* problem as ``FILE: key.path: problem`` before raising one `ConfigError`, so a
user fixes the whole file in one go. Unknown keys are errors (with a "did you mean"
hint). The schema, with every key and default, is documented in ``examples/site.yml``.

Secrets may come from the environment instead of the file. Each variable fills the one
entry that lacks the value; when several entries lack it, the variable cannot say which
one it is meant for, so that is an error naming each of them:

* ``ENPHASE_EMAIL`` / ``ENPHASE_PASSWORD``: an account's ``email`` / ``password``;
* ``ENVOY_TOKEN``: the static token of a gateway with neither ``account`` nor ``token``
  (with the variable unset such a gateway is legacy firmware, polled without a token);
* ``INFLUXDB_TOKEN``: the ``token`` of an ``influxdb`` sink with ``version: 2``;
* ``MQTT_PASSWORD``: the ``password`` of an ``mqtt`` sink that gives a ``username``.

Each ``sinks:`` entry is read by `shared.config_sinks` (an ``mqtt`` sink without the
optional paho-mqtt package is refused there, with the install command); this module
fills their secrets, checks names and ports across the file and applies the default sink.

Relative paths in the file (``state_dir``, ``cloud.ca_file``) are relative to the file's
directory, so the service does not depend on its working directory; a sqlite ``path``
stays relative to the state dir. Findings that do not stop a run (the file is readable
by others and holds secrets; an account no gateway uses) are returned in
``SiteConfig.warnings``, not logged: logging is not configured yet when this runs.

What a valid config means in words (``--check``) is `supervisor.check`'s; this module
only loads. Reads: the config file and the given environment mapping. Writes nothing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from shared.config import (
    MAX_SHARDS,
    AccountConfig,
    CloudConfig,
    GatewayConfig,
    HealthConfig,
    LoggingConfig,
    ShardConfig,
    SiteConfig,
    SqliteSinkConfig,
    SupervisionConfig,
)
from shared.config_sinks import build_sink, read_sink
from shared.config_values import (
    Reader,
    check_address,
    check_email,
    check_host,
    check_name,
    check_path,
    check_secret,
    check_serial,
    check_tag_key,
    check_tag_value,
    check_timezone,
    check_url,
    defaults,
    join,
    one_line,
    resolve,
    show,
)
from shared.errors import ConfigError

# The keys each section accepts (see examples/site.yml).
# fmt: off
TOP_KEYS = ("state_dir", "timezone", "accounts", "envoys", "sinks", "supervision", "logging",
            "daily", "health", "shard")
CLOUD_KEYS = ("login_url", "token_url", "ca_file")
ACCOUNT_NUMBERS = ("refresh_margin_s", "reauth_cooldown_s", "login_backoff_s",
                   "login_backoff_max_s")
ACCOUNT_KEYS = ("name", "email", "password", "cloud", *ACCOUNT_NUMBERS)
ENVOY_KEYS = ("name", "host", "serial", "account", "token", "scheme", "poll", "pin_certificate",
              "inverters")
#: YAML key under ``poll:`` -> GatewayConfig field
POLL_KEYS = {"power_s": "power_interval_s", "inverters_s": "inverter_interval_s",
             "production_s": "production_interval_s", "connect_timeout_s": "connect_timeout_s",
             "read_timeout_s": "read_timeout_s"}
SUPERVISION_FLOATS = ("heartbeat_s", "hang_timeout_s", "backoff_initial_s", "backoff_max_s",
                      "restart_window_s", "grace_s", "fatal_cooldown_s", "fatal_cooldown_max_s")
# fmt: on
#: used when the file configures no sinks: the embedded store that needs no server
DEFAULT_SINK = SqliteSinkConfig(name="sqlite")


# --- sections -------------------------------------------------------------------------


def _account(r: Reader, raw: object, path: str, base: Path) -> dict[str, Any]:
    data = r.mapping(raw, path, ACCOUNT_KEYS)
    cloud_path = join(path, "cloud")
    cloud = r.mapping(data.get("cloud"), cloud_path, CLOUD_KEYS)
    dflt = defaults(CloudConfig)
    ca_file = r.text(cloud, cloud_path, "ca_file", check=check_path)
    if ca_file is not None and not resolve(base, ca_file).is_file():
        r.problem(join(cloud_path, "ca_file"), f"no such file {show(ca_file)}")
    https = check_url(("https",))  # cloud TLS is always verified
    kwargs: dict[str, Any] = {
        "name": r.text(data, path, "name", check=check_name),
        "email": r.text(data, path, "email", check=check_email),
        "password": r.text(data, path, "password", secret=True, check=check_secret),
        "cloud": CloudConfig(
            login_url=r.text(cloud, cloud_path, "login_url", check=https) or dflt["login_url"],
            token_url=r.text(cloud, cloud_path, "token_url", check=https) or dflt["token_url"],
            ca_file=resolve(base, ca_file) if ca_file else None,
        ),
    }
    dflt = defaults(AccountConfig)
    for key in ACCOUNT_NUMBERS:
        kwargs[key] = r.number(data, path, key, dflt[key])
    if data.get("name") is None:
        r.problem(join(path, "name"), "missing: every account needs a name")
    return kwargs


def _inverters(r: Reader, raw: object, path: str) -> tuple[tuple[str, ...], tuple[Any, ...]]:
    """The expected serials and their tags, from a list of serials or a serial: tags map."""
    if raw is None:
        return (), ()
    if isinstance(raw, list):  # expected serials without tags
        raw = {item if isinstance(item, str | int) else show(item): None for item in raw}
    if not isinstance(raw, dict):
        r.problem(path, f"expected a mapping of serial: tags, got {show(raw)}")
        return (), ()
    serials: list[str] = []
    tagged: list[tuple[str, tuple[tuple[str, str], ...]]] = []
    for key, tags in raw.items():
        serial = str(key) if isinstance(key, int) and not isinstance(key, bool) else key
        if not isinstance(serial, str) or check_serial(serial):
            r.problem(path, f"expected inverter serial numbers of digits, got {show(key)}")
            continue
        here = f"{path}.{serial}"
        if tags is not None and not isinstance(tags, dict):
            r.problem(here, f"expected a mapping of tag: value, got {show(tags)}")
            continue
        pairs: list[tuple[str, str]] = []
        for name, value in (tags or {}).items():
            trouble = check_tag_key(name) if isinstance(name, str) else "expected a tag name"
            if trouble:
                r.problem(f"{here}.{name}", trouble)
                continue
            if isinstance(value, int) and not isinstance(value, bool):
                value = str(value)
            if not isinstance(value, str) or check_tag_value(value):
                r.problem(
                    f"{here}.{name}", f"expected a non-empty one-line value, got {show(value)}"
                )
                continue
            pairs.append((name, value))
        serials.append(serial)
        if pairs:
            tagged.append((serial, tuple(sorted(pairs))))
    return tuple(serials), tuple(tagged)


def _envoy(r: Reader, raw: object, path: str) -> dict[str, Any]:
    data = r.mapping(raw, path, ENVOY_KEYS)
    poll_path = join(path, "poll")
    poll = r.mapping(data.get("poll"), poll_path, tuple(POLL_KEYS))
    dflt = defaults(GatewayConfig)
    serial = r.text(data, path, "serial", check=check_serial)
    inverters, tags = _inverters(r, data.get("inverters"), join(path, "inverters"))
    kwargs: dict[str, Any] = {
        "name": r.text(data, path, "name", check=check_name) or serial,
        "host": r.text(data, path, "host", check=check_host),
        "serial": serial,
        "account": r.text(data, path, "account", check=check_name),
        "token": r.text(data, path, "token", secret=True, check=check_secret),
        "scheme": r.choice(data, path, "scheme", "auto", ("auto", "http", "https")),
        "pin_certificate": r.flag(data, path, "pin_certificate", dflt["pin_certificate"]),
        "inverters": inverters,
        "inverter_tags": tags,
    }
    for key, field_name in POLL_KEYS.items():
        kwargs[field_name] = r.number(poll, poll_path, key, dflt[field_name])
    if data.get("host") is None:
        r.problem(join(path, "host"), "missing: the gateway's host name or address")
    if kwargs["name"] is None and data.get("name") is None:
        r.problem(join(path, "name"), "missing: give a name or the gateway's serial")
    if kwargs["account"] and kwargs["token"]:
        r.problem(join(path, "token"), "give either account or token, not both")
    return kwargs


def _shard(r: Reader, raw: object) -> ShardConfig:
    """``shard: {index: K, count: N}``: this host runs shard K of N (`supervisor.shard`)."""
    if raw is None:
        return ShardConfig()
    data = r.mapping(raw, "shard", ("index", "count"))
    for key in ("index", "count"):
        if data.get(key) is None and isinstance(raw, dict):
            r.problem(join("shard", key), "missing: give both index and count (K of N)")
    count = r.whole(data, "shard", "count", 1, MAX_SHARDS)
    index = r.whole(data, "shard", "index", 1, MAX_SHARDS)
    if index > count:
        r.problem("shard.index", f"expected a shard number 1..{count}, got {index}")
    return ShardConfig(index, count)


def _site(r: Reader, raw: object, source: Path, environ: Mapping[str, str]) -> SiteConfig | None:
    data = r.mapping(raw, "", TOP_KEYS)
    base = source.parent
    accounts = [(p, _account(r, item, p, base)) for p, item in r.entries(data, "accounts")]
    envoys = [(p, _envoy(r, item, p)) for p, item in r.entries(data, "envoys")]
    sinks = [
        (p, kw)
        for p, item in r.entries(data, "sinks")
        if (kw := read_sink(r, item, p, base)) is not None
    ]
    if not envoys and not data.get("envoys"):
        r.problem("envoys", "expected at least one gateway")

    r.fill_from_env(accounts, "email", "ENPHASE_EMAIL", environ, required=True)
    r.fill_from_env(accounts, "password", "ENPHASE_PASSWORD", environ, required=True)
    tokenless = [(p, kw) for p, kw in envoys if not kw["account"]]
    r.fill_from_env(tokenless, "token", "ENVOY_TOKEN", environ, required=False)
    influx2 = [(p, kw) for p, kw in sinks if kw["type"] == "influxdb" and kw["version"] == 2]
    r.fill_from_env(influx2, "token", "INFLUXDB_TOKEN", environ, required=True)
    # Only a sink that names a user has a password to find; anonymous brokers need none.
    mqtt = [(p, kw) for p, kw in sinks if kw["type"] == "mqtt" and kw["username"]]
    r.fill_from_env(mqtt, "password", "MQTT_PASSWORD", environ, required=False)

    for entries, key in ((accounts, "name"), (envoys, "name"), (envoys, "host"), (sinks, "name")):
        r.unique(entries, key)
    r.unique([(p, kw) for p, kw in sinks if kw["type"] == "prometheus"], "port")
    health_data = r.mapping(data.get("health"), "health", ("listen", "port"))
    health = HealthConfig(
        listen=r.text(health_data, "health", "listen", "127.0.0.1", check=check_address)
        or "127.0.0.1",
        port=r.whole(health_data, "health", "port", 0, 65535) or None,
    )
    if health.port in {kw["port"] for _, kw in sinks if kw["type"] == "prometheus"}:
        r.problem("health.port", f"{health.port} is also a prometheus sink's port")
    names = {kw["name"] for _, kw in accounts}
    for path, kw in envoys:
        if kw["account"] and kw["account"] not in names:
            r.problem(
                join(path, "account"), f"no account named {show(kw['account'])} under accounts:"
            )
    used = {kw["account"] for _, kw in envoys}
    warnings = [
        f"{r.file}: {p}: no gateway uses this account"
        for p, kw in accounts
        if kw["name"] not in used
    ]

    sup_data = r.mapping(
        data.get("supervision"),
        "supervision",
        (*SUPERVISION_FLOATS, "max_restarts", "fatal_forever"),
    )
    dflt = defaults(SupervisionConfig)
    sup = {k: r.number(sup_data, "supervision", k, dflt[k]) for k in SUPERVISION_FLOATS}
    max_restarts = r.whole(sup_data, "supervision", "max_restarts", dflt["max_restarts"], 10**6)
    forever = r.flag(sup_data, "supervision", "fatal_forever", dflt["fatal_forever"])
    if sup["backoff_initial_s"] > sup["backoff_max_s"]:
        r.problem("supervision.backoff_initial_s", "must not exceed backoff_max_s")
    if sup["fatal_cooldown_s"] > sup["fatal_cooldown_max_s"]:
        r.problem("supervision.fatal_cooldown_s", "must not exceed fatal_cooldown_max_s")
    if sup["hang_timeout_s"] <= sup["heartbeat_s"]:
        r.problem("supervision.hang_timeout_s", "must be longer than heartbeat_s")
    log_data = r.mapping(data.get("logging"), "logging", ("level", "format"))
    level = r.choice(log_data, "logging", "level", "info", ("debug", "info", "warning", "error"))
    fmt = r.choice(log_data, "logging", "format", "auto", ("auto", "json", "console"))
    shard = _shard(r, data.get("shard"))
    daily = r.mapping(data.get("daily"), "daily", ("max_gap_s",))
    site = defaults(SiteConfig)
    gap = r.number(daily, "daily", "max_gap_s", site["daily_max_gap_s"])
    timezone = r.text(data, "", "timezone", site["timezone"], check=check_timezone)
    state_dir = r.text(data, "", "state_dir", check=check_path)

    warnings.extend(r.mode_warning(source))
    if r.problems:
        return None
    built = [build_sink(kw) for _, kw in sinks]
    return SiteConfig(
        source=source,
        gateways=tuple(GatewayConfig(**kw) for _, kw in envoys),
        accounts=tuple(AccountConfig(**kw) for _, kw in accounts),
        sinks=tuple(built) or (DEFAULT_SINK,),
        state_dir=resolve(base, state_dir) if state_dir else base / site["state_dir"],
        timezone=timezone or site["timezone"],
        daily_max_gap_s=gap,
        supervision=SupervisionConfig(**sup, max_restarts=max_restarts, fatal_forever=forever),
        logging=LoggingConfig(level=level, format=fmt),
        shard=shard,
        health=health,
        warnings=tuple(warnings),
    )


def load_config(path: Path, environ: Mapping[str, str] = os.environ) -> SiteConfig:
    """The validated config in ``path``; `ConfigError` listing every problem otherwise."""
    file = str(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError([f"{file}: cannot read the file: {exc.strerror}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{file}: cannot read the file: not UTF-8 text"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(top level)"
        raise ConfigError(
            [one_line(f"{file}: {where}: not valid YAML: {exc.problem or 'syntax error'}")]
        ) from None
    except (yaml.YAMLError, ValueError, RecursionError) as exc:
        # ValueError: Python refuses int() of more than 4300 digits, and PyYAML lets it out.
        raise ConfigError(
            [f"{file}: (top level): not valid YAML: {' '.join(str(exc).split())}"]
        ) from None
    reader = Reader(file)
    config = _site(reader, data, path, {k: v for k, v in environ.items() if v})
    if config is None:
        raise ConfigError(reader.problems)
    return config
