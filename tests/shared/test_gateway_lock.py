"""One slow request at a time per gateway, even across the two poller processes' clients;
fast requests go alongside (issue 13: a slow answer must not hold up a power tick)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from shared.config import GatewayConfig
from shared.gateway import GatewayClient
from shared.simulator.faults import Fault, FaultKind
from shared.simulator.gateway import SimulatedGateway
from shared.simulator.timing import INSTANT
from tests.fixtures import FIXTURES, require_fixtures

SUMMARY = "/api/v1/production"
PRODUCTION = "/production.json"


def hammer(clients: list[GatewayClient], requests_each: int, paths: list[str]) -> None:
    def run(client: GatewayClient, path: str) -> None:
        for _ in range(requests_each):
            client.get(path)

    threads = [threading.Thread(target=run, args=cp) for cp in zip(clients, paths, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
        assert not thread.is_alive()


@pytest.mark.parametrize("shared_lock", [True, False], ids=["with lock", "without (control)"])
def test_two_clients_sharing_a_lock_file_never_overlap_their_slow_requests(
    tmp_path: Path, shared_lock: bool
) -> None:
    require_fixtures()
    with SimulatedGateway(FIXTURES / "5.0.62", latency=INSTANT) as sim:
        sim.faults.set(PRODUCTION, Fault(FaultKind.LATENCY, seconds=0.05))
        config = GatewayConfig("garage", sim.url.split("://", 1)[1], read_timeout_s=5.0)
        lock = tmp_path / "locks" / "garage.lock" if shared_lock else None
        # Two clients, as the power and the inverter poller have (each its own process).
        clients = [GatewayClient(config, pin_store=None, request_lock=lock) for _ in range(2)]
        try:
            hammer(clients, requests_each=6, paths=[PRODUCTION, PRODUCTION])
        finally:
            for client in clients:
                client.close()
        if shared_lock:
            assert sim.max_slow_in_flight == 1
        else:
            assert sim.max_slow_in_flight == 2  # the test can tell the difference


def test_a_fast_request_goes_alongside_the_other_pollers_slow_one(tmp_path: Path) -> None:
    require_fixtures()
    with SimulatedGateway(FIXTURES / "5.0.62", latency=INSTANT) as sim:
        sim.faults.set(PRODUCTION, Fault(FaultKind.LATENCY, seconds=0.3))
        sim.faults.set(SUMMARY, Fault(FaultKind.LATENCY, seconds=0.05))
        config = GatewayConfig("garage", sim.url.split("://", 1)[1], read_timeout_s=5.0)
        lock = tmp_path / "locks" / "garage.lock"
        # One client in the slow lane, one asking /api/v1/production meanwhile; and a third
        # client's fast requests from the same lock file: none waits for the slow one.
        clients = [GatewayClient(config, pin_store=None, request_lock=lock) for _ in range(3)]
        try:
            hammer(clients, requests_each=4, paths=[PRODUCTION, SUMMARY, SUMMARY])
        finally:
            for client in clients:
                client.close()
        assert sim.max_slow_in_flight == 1
        assert sim.max_in_flight == 3
