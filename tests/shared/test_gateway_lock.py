"""One request at a time per gateway, even across the two poller processes' clients."""

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


def hammer(clients: list[GatewayClient], requests_each: int) -> None:
    def run(client: GatewayClient) -> None:
        for _ in range(requests_each):
            client.get(SUMMARY)

    threads = [threading.Thread(target=run, args=(c,)) for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
        assert not thread.is_alive()


@pytest.mark.parametrize("shared_lock", [True, False], ids=["with lock", "without (control)"])
def test_two_clients_sharing_a_lock_file_never_overlap_their_requests(
    tmp_path: Path, shared_lock: bool
) -> None:
    require_fixtures()
    with SimulatedGateway(FIXTURES / "5.0.62", latency=INSTANT) as sim:
        sim.faults.set(SUMMARY, Fault(FaultKind.LATENCY, seconds=0.05))
        config = GatewayConfig("garage", sim.url.split("://", 1)[1], read_timeout_s=5.0)
        lock = tmp_path / "locks" / "garage.lock" if shared_lock else None
        # Two clients, as the power and the inverter poller have (each its own process).
        clients = [GatewayClient(config, pin_store=None, request_lock=lock) for _ in range(2)]
        try:
            hammer(clients, requests_each=6)
        finally:
            for client in clients:
                client.close()
        if shared_lock:
            assert sim.max_in_flight == 1
        else:
            assert sim.max_in_flight == 2  # the test can tell the difference
