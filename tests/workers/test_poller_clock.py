"""The poller in virtual time: a real `Poller`, `PowerFeed` and `GatewayClient` over the
in-process network of `bench.year_world`, its clock and waits injected."""

from __future__ import annotations

import itertools
import threading
from pathlib import Path

from bench.year_world import GatewayNetwork, VirtualClock
from shared.config import GatewayConfig
from shared.gateway import GatewayClient
from shared.messages import PollReport
from shared.simulator import INSTANT, SimulatedGateway
from workers.poller import Poller, PollerSettings
from workers.power import PowerFeed, ProductionFetch

START = 1_800_000_000.0
INTERVAL = 60.0


class Outbox:
    worker = "power:test"

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self.ok: list[float] = []  # true times of good polls

    def send(self, message: object) -> None:
        if isinstance(message, PollReport) and message.ok and message.feed == "power":
            self.ok.append(self.clock.true_s)


def run_poller(tmp_path: Path, hours: float, script: dict[float, float]) -> list[float]:
    """Poll for ``hours`` of virtual time; ``script`` maps true times to wall-clock steps."""
    clock = VirtualClock(START, START + hours * 3600)
    gateway = SimulatedGateway(firmware="D5.0.55", clock=clock.monotonic, latency=INSTANT)
    config = GatewayConfig("test", "gw.test", power_interval_s=INTERVAL)
    network = GatewayNetwork(gateway, clock, lambda t: None)
    client = GatewayClient(config, pin_store=None, transport=network)
    outbox = Outbox(clock)
    settings = PollerSettings(config, "power", INTERVAL, tmp_path, 0.0)
    production = ProductionFetch("test", 60.0, outbox.send, threaded=False, clock=clock.time)
    poller = Poller(
        settings, outbox, client, PowerFeed("test", production), clock=clock.time, wait=clock.wait
    )  # type: ignore[arg-type]
    for at, step in script.items():
        clock.at(at, lambda step=step: setattr(clock, "step_s", clock.step_s + step))
    poller.poll_loop()
    return outbox.ok


def longest_gap(times: list[float]) -> float:
    return max(b - a for a, b in itertools.pairwise(times))


def test_every_interval_is_polled_in_virtual_time(tmp_path: Path) -> None:
    ok = run_poller(tmp_path, 2, {})
    assert len(ok) >= 119
    assert longest_gap(ok) <= INTERVAL + 10


def test_a_clock_stepped_an_hour_back_does_not_stop_the_polls_for_an_hour(tmp_path: Path) -> None:
    ok = run_poller(tmp_path, 3, {START + 3600 + 30: -3600.0})
    assert longest_gap(ok) <= 2 * INTERVAL, "polls stopped until the clock caught up"


def test_a_clock_stepped_an_hour_forward_goes_on_polling_at_once(tmp_path: Path) -> None:
    ok = run_poller(tmp_path, 3, {START + 3600 + 30: 3600.0})
    assert longest_gap(ok) <= 2 * INTERVAL


def test_the_virtual_wait_returns_when_the_year_is_over() -> None:
    clock = VirtualClock(0.0, 100.0)
    stop = threading.Event()
    assert clock.wait(stop, 60) is False
    assert clock.wait(stop, 60) is True
    assert clock.true_s == 100.0
