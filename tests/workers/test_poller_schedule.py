"""The poller's schedule: each poll starts when due, and a slow poll skips ticks, never stacks them.

`skipped_ticks` is checked alone; then a real power poller (real `Mailbox` pipes, real
`GatewayClient`) runs against a simulated gateway whose answers take longer than the
interval, and everything it reports is read back from its outbox.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from shared.config import GatewayConfig
from shared.gateway import GatewayClient
from shared.messages import PollReport, PowerBatch, TokenRejected
from shared.simulator.faults import Fault, FaultKind
from shared.simulator.gateway import SimulatedGateway
from shared.simulator.timing import INSTANT
from tests.fixtures import FIXTURES, require_fixtures
from tests.workers.harness import worker_on_pipes
from workers.mailbox import Mailbox
from workers.poller import Poller, PollerSettings, skipped_ticks
from workers.power import SUMMARY, PowerFeed, ProductionFetch

NS = 10**9


def test_the_ticks_between_two_polls_are_the_skipped_ones() -> None:
    assert skipped_ticks(100.0, 101.0, 1.0, most=10) == []
    assert skipped_ticks(100.0, 103.0, 1.0, most=10) == [101 * NS, 102 * NS]
    assert skipped_ticks(100.0, 130.0, 10.0, most=10) == [110 * NS, 120 * NS]


def test_a_wall_clock_stepped_forward_reports_a_bounded_number_of_skips() -> None:
    # NTP stepping the clock a day ahead in the middle of a poll is not 86399 skipped polls
    skipped = skipped_ticks(100.0, 100.0 + 86_400, 1.0, most=80)
    assert len(skipped) == 80
    assert skipped[-1] == (100 + 86_399) * NS


def test_a_slow_gateway_gets_one_poll_at_a_time_and_every_tick_is_polled_or_skipped(
    tmp_path: Path,
) -> None:
    require_fixtures()
    interval, phase = 0.25, 0.125  # binary fractions: ticks are exact in nanoseconds
    with SimulatedGateway(FIXTURES / "5.0.62", latency=INSTANT) as sim:
        # 5.0.62 has no CTs: each tick reads /api/v1/production
        sim.faults.set(SUMMARY, Fault(FaultKind.LATENCY, seconds=0.6))
        gateway = GatewayConfig("slow", sim.url.split("://", 1)[1], read_timeout_s=5.0)
        settings = PollerSettings(gateway, "power", interval, tmp_path, phase)
        client = GatewayClient(gateway, pin_store=None, request_lock=tmp_path / "slow.lock")

        def body(mailbox: Mailbox) -> None:
            feed = PowerFeed("slow", ProductionFetch("slow", 60.0, mailbox.send))
            Poller(settings, mailbox, client, feed).run()

        reports: list[PollReport] = []
        batches: list[PowerBatch] = []
        with worker_on_pipes("power:slow", body, heartbeat_s=0.5) as worker:
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and sum(r.ok for r in reports) < 4:
                if worker.outbox.poll(0.5):
                    message = worker.outbox.recv()
                    if isinstance(message, PollReport) and message.feed == "power":
                        reports.append(message)
                    elif isinstance(message, PowerBatch):
                        batches.append(message)
        thread = worker.thread
        # In a worker process exit ends the poll thread; here it finishes its poll first,
        # before the client and the gateway it talks to are closed under it.
        for poll_thread in [t for t in threading.enumerate() if t.name == "poll"]:
            poll_thread.join(10)
        client.close()
    assert not thread.is_alive()
    assert sum(r.ok for r in reports) >= 4, reports
    # one tick at a time, beside at most the one production.json of its own thread
    assert sim.max_in_flight <= 2
    assert sim.max_slow_in_flight == 1
    assert {r.endpoint for r in reports} == {SUMMARY}
    kinds = {r.error_kind for r in reports if not r.ok}
    assert kinds == {"skipped"}, reports
    # every tick from the first to the last is reported once: polled or skipped
    ticks = [r.tick_ns for r in reports]
    step = int(interval * NS)
    assert all(t % step == 0 for t in ticks)
    assert ticks == list(range(ticks[0], ticks[-1] + step, step))
    # a 0.6 s answer at 0.25 s ticks: two ticks skipped after each poll
    assert sum(not r.ok for r in reports) >= 2 * (sum(r.ok for r in reports) - 1)
    # the batches keep the tick as their time and say when the poll was due
    assert {b.tick_ns for b in batches} == {r.tick_ns for r in reports if r.ok}
    assert {b.phase_ns for b in batches} == {int(phase * NS)}


def test_a_token_refused_on_production_json_alone_is_reported_to_the_token_worker(
    tmp_path: Path,
) -> None:
    # 5.0.62's fast tick (/api/v1/production) needs no token; only the slow fetch sees a 401
    require_fixtures()
    with SimulatedGateway(FIXTURES / "5.0.62", latency=INSTANT) as sim:
        sim.faults.set("/production.json", Fault(FaultKind.UNAUTHORIZED))
        gateway = GatewayConfig("old", sim.url.split("://", 1)[1], read_timeout_s=5.0)
        client = GatewayClient(gateway, pin_store=None, request_lock=tmp_path / "old.lock")
        sent: list[object] = []
        try:
            info = client.info()
            ProductionFetch("old", 60.0, sent.append, threaded=False).due(client, info, 60 * NS)
        finally:
            client.close()
    assert TokenRejected(info.serial, "old") in sent
    (report,) = [m for m in sent if isinstance(m, PollReport)]
    assert (report.feed, report.ok, report.error_kind) == ("production", False, "auth")
