"""From a validated site config to the workers to run and how their messages flow.

Per gateway a power poller and an inverter poller; per Enlighten account one token
worker (and one per gateway that has a static token instead); per sink one sink worker;
and one daily-energy worker when a sink stores history. Of a sharded site only this
host's gateways (`supervisor.shard`), whose polls are spread over the interval by
`stagger`. Pure: no processes, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from shared.config import (
    GatewayConfig,
    InfluxSinkConfig,
    MqttSinkConfig,
    PrometheusSinkConfig,
    SiteConfig,
    SqliteSinkConfig,
)
from shared.messages import WorkerSpec
from supervisor.router import Routes
from supervisor.shard import shard_view
from workers.energy import DailySettings
from workers.poller import PollerSettings
from workers.sink import SinkSettings
from workers.token import TokenSettings

#: A host's power polls are spread over at most this much of each interval. All on the
#: tick, 25 pollers woke at once and queued for 2 cores (bench.scale, N=25: tick jitter
#: p99 112 ms and polls taking 66 ms at the median, against 17 ms and 6 ms spread).
STAGGER_WINDOW_S = 1.0


@dataclass(frozen=True, slots=True)
class Plan:
    specs: tuple[WorkerSpec, ...]
    routes: Routes


def stagger(gateways: Sequence[GatewayConfig]) -> list[tuple[float, float]]:
    """(power phase, inverter phase) in seconds for each gateway, in order.

    Gateway i of n polls power i/n of the way into the window (its power interval, at most
    `STAGGER_WINDOW_S`), so polls are evenly spaced; points keep the tick's timestamp, so
    gateways still line up in the database and a reading is at most one window old. The
    gateway's inverter polls fall halfway between its own power polls: the gateway answers
    one request at a time, and the two would otherwise queue for it.
    """
    phases = []
    for i, gw in enumerate(gateways):
        power = min(gw.power_interval_s, STAGGER_WINDOW_S) * i / len(gateways)
        inverters = (power + gw.power_interval_s / 2) % gw.inverter_interval_s
        phases.append((power, inverters))
    return phases


def token_worker_name(gateway: GatewayConfig) -> str | None:
    if gateway.account is not None:
        return f"token:{gateway.account}"
    if gateway.token is not None:
        return f"token:{gateway.name}"
    return None  # legacy firmware: no token at all


def build_plan(config: SiteConfig) -> Plan:
    config = shard_view(config)  # a host of a sharded site runs only its own gateways
    sup = config.supervision
    log = config.logging

    def spec(kind: str, name: str, settings: object) -> WorkerSpec:
        return WorkerSpec(kind, name, settings, sup.heartbeat_s, log.level, log.format)

    specs: list[WorkerSpec] = []
    pollers: dict[str, tuple[str, ...]] = {}
    token_worker: dict[str, str] = {}
    for gw, (power_phase, inverter_phase) in zip(
        config.gateways, stagger(config.gateways), strict=True
    ):
        names = (f"power:{gw.name}", f"inverters:{gw.name}")
        specs.append(
            spec(
                "power",
                names[0],
                PollerSettings(gw, "power", gw.power_interval_s, config.state_dir, power_phase),
            )
        )
        specs.append(
            spec(
                "inverters",
                names[1],
                PollerSettings(
                    gw, "inverters", gw.inverter_interval_s, config.state_dir, inverter_phase
                ),
            )
        )
        pollers[gw.name] = names
        worker = token_worker_name(gw)
        if worker is not None:
            token_worker[gw.name] = worker

    accounts = {a.name: a for a in config.accounts}
    for worker in sorted(set(token_worker.values())):
        served = tuple(gw for gw in config.gateways if token_worker.get(gw.name) == worker)
        account = accounts.get(served[0].account) if served[0].account else None
        specs.append(spec("token", worker, TokenSettings(account, served, config.state_dir)))

    history = [s for s in config.sinks if isinstance(s, InfluxSinkConfig | SqliteSinkConfig)]
    daily = "daily" if history else None
    if daily:
        specs.append(
            spec(
                "daily",
                daily,
                DailySettings(
                    config.gateways, config.timezone, config.daily_max_gap_s, config.state_dir
                ),
            )
        )
    sink_names = []
    for sink in config.sinks:
        name = f"sink:{sink.name}"
        sink_names.append(name)
        intervals = tuple((gw.name, gw.power_interval_s) for gw in config.gateways)
        serials = tuple((gw.name, gw.serial) for gw in config.gateways if gw.serial)
        specs.append(spec("sink", name, SinkSettings(sink, config.state_dir, intervals, serials)))

    routes = Routes(
        sinks=tuple(sink_names),
        daily=daily,
        pollers=pollers,
        token_worker=token_worker,
        serials={gw.name: gw.serial for gw in config.gateways if gw.serial},
        # The MQTT sink gets them too: gateway availability is the logger's view of it.
        exporters=tuple(
            f"sink:{s.name}"
            for s in config.sinks
            if isinstance(s, PrometheusSinkConfig | MqttSinkConfig)
        ),
    )
    return Plan(tuple(specs), routes)


def describe(plan: Plan) -> list[tuple[str, str]]:
    """(worker name, what it does) for every worker, for ``--check``."""
    described = []
    for spec in plan.specs:
        settings = spec.settings
        if isinstance(settings, PollerSettings):
            what = (
                f"{settings.feed} every {settings.interval_s:g} s,"
                f" {settings.phase_s * 1000:.0f} ms after the tick"
            )
        elif isinstance(settings, TokenSettings):
            served = ", ".join(gw.name for gw in settings.gateways)
            what = f"tokens for {served}" if settings.account else f"static token for {served}"
        elif isinstance(settings, DailySettings):
            what = f"daily energy at midnight {settings.timezone}"
        elif isinstance(settings, SinkSettings):
            what = f"writes to {settings.sink.name}"
        else:
            what = spec.kind
        described.append((spec.name, what))
    return described
