"""The ``--check`` report: what a run of a validated site config would do, in words.

``python -m supervisor --config FILE --check`` loads the file with
`shared.config_loader.load_config` (which owns every problem message and the exit-2
path) and prints `check_report`: the config line, this host's shard (`supervisor.shard`),
one line per gateway with its intervals, timeouts and how it authenticates, the workers
`supervisor.plan` would start, one line per sink, the supervision rules, the health
endpoint and the config's warnings. A line never shows a secret: the report is meant to
be pasted into a bug report.

Pure presentation: reads and writes nothing, prints nothing (`supervisor.cli` prints).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from shared.config import (
    GatewayConfig,
    MqttSinkConfig,
    PrometheusSinkConfig,
    SinkConfig,
    SiteConfig,
    SqliteSinkConfig,
)
from shared.config_loader import DEFAULT_SINK
from supervisor.plan import build_plan, describe
from supervisor.shard import describe_shard


def check_report(config: SiteConfig, site: SiteConfig) -> list[str]:
    """The ``--check`` lines for ``site``, this host's shard of the loaded ``config``."""
    lines = describe_config(site, describe(build_plan(site)))
    shard_line = describe_shard(config)
    if shard_line:
        lines.insert(1, shard_line)
    return lines


def _auth(gateway: GatewayConfig) -> str:
    if gateway.account:
        return f"tokens from account {gateway.account}"
    return "static token" if gateway.token else "none (legacy firmware < 7)"


def _sink_line(sink: SinkConfig, state_dir: Path, only: bool) -> str:
    if isinstance(sink, SqliteSinkConfig):
        default = " (the default when no sinks are configured)" if only else ""
        return f"sink {sink.name}: sqlite file {state_dir / sink.path}{default}"
    if isinstance(sink, PrometheusSinkConfig):
        return f"sink {sink.name}: prometheus exporter on {sink.listen}:{sink.port}"
    if isinstance(sink, MqttSinkConfig):
        tls = ", TLS" if sink.ca_file else ""
        user = f", user {sink.username}" if sink.username else ""
        found = (
            f", Home Assistant discovery under {sink.discovery_prefix}/" if sink.discovery else ""
        )
        return (
            f"sink {sink.name}: mqtt broker {sink.host}:{sink.port}{tls}{user}, "
            f"topics under {sink.topic_prefix}/{found}"
        )
    if sink.version == 1:
        where = f"databases {sink.database} / {sink.database_daily}"
    else:
        where = f"org {sink.org}, buckets {sink.bucket} / {sink.bucket_daily}"
    return f"sink {sink.name}: influxdb v{sink.version} at {sink.url}, {where}"


def describe_config(config: SiteConfig, workers: Sequence[tuple[str, str]] = ()) -> list[str]:
    """What a run of this config would do, one line per gateway, worker and sink.

    For ``--check``; never shows a secret. ``workers`` are (name, what it does) pairs
    from `supervisor.plan`, which owns the worker layout.
    """
    lines = [f"config {config.source}: time zone {config.timezone}, state dir {config.state_dir}"]
    for gw in config.gateways:
        expected = f" ({len(gw.inverters)} expected)" if gw.inverters else ""
        lines.append(
            f"gateway {gw.name}: host {gw.host}, serial {gw.serial or 'from /info'}, "
            f"power every {gw.power_interval_s:g} s, inverters every "
            f"{gw.inverter_interval_s:g} s{expected}, timeouts {gw.connect_timeout_s:g} s "
            f"connect / {gw.read_timeout_s:g} s read, auth: {_auth(gw)}"
        )
    if workers:
        width = max(len(name) for name, _ in workers)
        lines.append(f"workers ({len(workers)}):")
        lines.extend(f"  {name:<{width}}  {what}" for name, what in workers)
    only_default = config.sinks == (DEFAULT_SINK,)
    lines.extend(_sink_line(sink, config.state_dir, only_default) for sink in config.sinks)
    sup = config.supervision
    lines.append(
        f"supervision: heartbeat every {sup.heartbeat_s:g} s, hung after {sup.hang_timeout_s:g}"
        f" s, backoff {sup.backoff_initial_s:g}..{sup.backoff_max_s:g} s, FATAL after more "
        f"than {sup.max_restarts} restarts in {sup.restart_window_s:g} s, "
        + (
            "then down for good"
            if sup.fatal_forever
            else f"retried {sup.fatal_cooldown_s:g}..{sup.fatal_cooldown_max_s:g} s later"
        )
    )
    if config.health.port is not None:
        lines.append(f"health: http://{config.health.listen}:{config.health.port}/healthz")
    lines.extend(f"warning: {w}" for w in config.warnings)
    return lines
