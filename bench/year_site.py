"""The simulated year's site: the real parts wired together on one virtual clock, and
what they did (see `bench.year`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from bench.year_scenario import (
    DAY,
    HOST,
    HOUR,
    POWER_S,
    SITE_TZ,
    SPOOL_MAX_BYTES,
    START,
    SUPERVISION,
    faults,
    nightly,
)
from bench.year_world import GatewayNetwork, VirtualClock, YearCloud, YearDatabase
from shared.config import AccountConfig, GatewayConfig
from shared.gateway import GatewayClient
from shared.lineproto import encode
from shared.messages import (
    DailyEnergyBatch,
    GatewayIdentified,
    PollReport,
    PowerBatch,
    TokenIssued,
    TokenRejected,
)
from shared.simulator import INSTANT, SimulatedGateway
from shared.simulator.cloud import INSTALLER_LIFETIME_S, OWNER_LIFETIME_S
from shared.simulator.fixture import info_xml
from supervisor import policy
from workers.daily import DailyEnergyTracker
from workers.poller import Poller, PollerSettings
from workers.power import PowerFeed, ProductionFetch
from workers.sink_influx import Forwarder, kind_of
from workers.spool import Spool
from workers.token_keeper import TokenKeeper


@dataclass
class Record:
    """What the year saw, for the verdicts."""

    ok_polls: list[float] = field(default_factory=list)  #: true times of good polls
    errors: dict[str, int] = field(default_factory=dict)
    requests: list[float] = field(default_factory=list)
    daily: list[DailyEnergyBatch] = field(default_factory=list)
    owner_tokens: list[float] = field(default_factory=list)  #: true times tokens issued
    installer_held_until: list[tuple[float, float]] = field(default_factory=list)
    sink_states: list[tuple[float, str]] = field(default_factory=list)
    no_token: list[float] = field(default_factory=list)  #: polls waiting for a token
    put: int = 0  #: batches spooled


class Site:
    """Wires the real parts together on one virtual clock."""

    def __init__(self, days: float, workdir: Path) -> None:
        self.clock = VirtualClock(START, START + days * DAY)
        self.faults = {f.name: f for f in faults()}
        self.record = Record()
        self.worker = "power:home"  # the name the poller logs with, as its mailbox's
        clock = self.clock
        self.gateway = SimulatedGateway(
            serial="122200001234", firmware="D5.0.55", clock=clock.monotonic, latency=INSTANT
        )
        self.network = GatewayNetwork(self.gateway, clock, self._weather)
        gw = GatewayConfig(name="home", host=HOST, account="owner", power_interval_s=POWER_S)
        self._gateway_config = gw
        client = GatewayClient(gw, pin_store=None, transport=self.network)
        settings = PollerSettings(gw, "power", POWER_S, workdir, 0.0)
        # production.json in the tick's own thread: in virtual time its 5 s are spent
        # inside the tick, which at 60 s ticks costs none of them.
        production = ProductionFetch("home", 60.0, self.send, threaded=False, clock=clock.time)
        self.poller = Poller(
            settings, self, client, PowerFeed("home", production), clock=clock.time, wait=clock.wait
        )
        self.owner_cloud = self._cloud("owner", OWNER_LIFETIME_S)
        self.owner_account = AccountConfig("owner", "owner@example.com", "pw")
        self.owner = TokenKeeper(
            self.owner_account,
            [gw],
            workdir / "owner",
            self.owner_cloud,
            clock=clock.time,
            worker="token:owner",
        )
        installer_gw = GatewayConfig(name="home", host=HOST, serial=self.gateway.serial)
        self.installer_cloud = self._cloud("installer", INSTALLER_LIFETIME_S)
        self.installer_account = AccountConfig("installer", "installer@example.com", "pw")
        self.installer = TokenKeeper(
            self.installer_account,
            [installer_gw],
            workdir / "installer",
            self.installer_cloud,
            clock=clock.time,
            worker="token:installer",
        )
        self.database = YearDatabase(clock, lambda t: self._active("database down 3 days", t))
        path = workdir / "spool.sqlite3"
        log = structlog.get_logger(worker="sink:year")
        self.spool = Spool(path, SPOOL_MAX_BYTES, log=log)
        self.forwarder = Forwarder(Spool(path, SPOOL_MAX_BYTES, log=log), self.database, log)  # type: ignore[arg-type]
        self._forward_due = False
        self.daily = DailyEnergyTracker("home", SITE_TZ, {}, 3 * HOUR, None)
        self.sink = policy.ChildState()

    # --- the world --------------------------------------------------------------------

    def _cloud(self, user: str, lifetime_s: float) -> YearCloud:
        refusal = f"{user} logins refused 1 week"
        return YearCloud(
            self.gateway, self.clock, lambda t: self._active(refusal, t), user, lifetime_s
        )

    def _active(self, name: str, true_s: float) -> bool:
        fault = self.faults[name]
        return fault.start_s <= true_s < fault.end_s

    def _weather(self, true_s: float) -> str | None:
        self.record.requests.append(true_s)
        if self._active("gateway unreachable 72 h", true_s):
            return "unreachable"
        return "hang" if nightly(true_s) else None

    # --- the poller's mailbox: what the supervisor would route ------------------------

    def send(self, message: object) -> None:
        if isinstance(message, PowerBatch):
            self._accept(message)
        elif isinstance(message, PollReport):
            if message.ok:
                if message.feed == "power":  # production.json reports as its own feed
                    self.record.ok_polls.append(self.clock.true_s)
            else:
                key = message.error_kind
                self.record.errors[key] = self.record.errors.get(key, 0) + 1
                if key in ("no-token", "auth"):
                    self.record.no_token.append(self.clock.true_s)
        elif isinstance(message, GatewayIdentified):
            self._owner_step(self.owner.on_identified(message))
        elif isinstance(message, TokenRejected):
            self._owner_step(self.owner.on_rejected(message))

    def _accept(self, batch: PowerBatch) -> None:
        self.record.daily.extend(self.daily.observe_power(batch))
        payload = encode(batch)
        if payload:
            self.spool.put(payload, kind_of(batch))
            self.record.put += 1
        if not self._forward_due:
            self._forward_due = True
            self.clock.at(self.clock.true_s, self._forward)

    def _forward(self) -> None:
        while (pause := self.forwarder.forward_once()) == 0.0:
            pass
        self._forward_due = pause is not None
        if pause is not None:
            self.clock.at(self.clock.true_s + pause, self._forward)

    # --- token keepers ------------------------------------------------------------------

    def _owner_step(self, step: Any) -> None:
        for issued in step.issued:
            self.record.owner_tokens.append(self.clock.true_s)
            self.poller.on_token(issued)
        self._wake(step.wake_at_s, lambda: self._owner_step(self.owner.on_timer()))

    def _installer_step(self, step: Any) -> None:
        for issued in step.issued:
            assert isinstance(issued, TokenIssued)
            self.record.installer_held_until.append((self.clock.true_s, issued.expires_s))
        self._wake(step.wake_at_s, lambda: self._installer_step(self.installer.on_timer()))

    def _wake(self, wall_s: float, action: Callable[[], None]) -> None:
        self.clock.at(wall_s - self.clock.step_s, action)

    # --- the SQLite sink's restart policy ----------------------------------------------

    def _sink_event(self, event: policy.Event) -> None:
        before = self.sink.state
        self.sink, action = policy.decide(SUPERVISION, self.sink, event, self.clock.true_s)
        if self.sink.state is not before:
            self.record.sink_states.append((self.clock.true_s, self.sink.state.value))
        if action is policy.Action.START:
            full = self._active("full disk 1 h (sqlite sink crashes)", self.clock.true_s)
            outcome = policy.Exited(1) if full else policy.Healthy()
            self.clock.at(
                self.clock.true_s + (1.0 if full else 0.5), lambda: self._sink_event(outcome)
            )
        if self.sink.deadline is not None:
            self.clock.at(self.sink.deadline, lambda: self._sink_event(policy.Tick()))

    def _disk_fills(self) -> None:
        # The running sink hits the full disk: it crashes, and so will every start.
        self._sink_event(policy.Exited(1))

    # --- the year -----------------------------------------------------------------------

    def _script(self) -> None:
        c = self.clock
        upgrade = info_xml(self.gateway.serial, "D7.6.175", time_s=0, web_tokens=True)
        c.at(
            self.faults["firmware update HTTP -> HTTPS"].start_s,
            lambda: self.gateway.set_info(upgrade),
        )
        back, fwd = self.faults["clock stepped 1 h back"], self.faults["clock stepped 1 h forward"]
        c.at(back.start_s, lambda: setattr(c, "step_s", c.step_s - HOUR))
        c.at(fwd.start_s, lambda: setattr(c, "step_s", c.step_s + HOUR))
        c.at(self.faults["full disk 1 h (sqlite sink crashes)"].start_s, self._disk_fills)
        c.at(START, lambda: self._owner_step(self.owner.start()))
        c.at(START, lambda: self._installer_step(self.installer.start()))
        c.at(START, lambda: self._sink_event(policy.Start()))

    def run(self) -> None:
        self._script()
        self.clock.advance(0.0)
        self.poller.poll_loop()
        self.record.daily.extend(self.daily.flush(int(self.clock.time() * 1e9)))
        self.clock.end_s = math.inf
        self._forward()
