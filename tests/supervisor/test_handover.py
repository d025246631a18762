"""A SIGKILLed supervisor loses nothing it held for a sink: the next one replays its journal.

The sink is frozen (SIGSTOP), so batches pile up unacknowledged in the router; then the
supervisor and the frozen sink are SIGKILLed together. Every reading the gateways served
while the sink was frozen must reach SQLite once a new supervisor starts on the same
state dir, although no process that saw those batches survived.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest

from bench import chaos
from bench.chaos_audit import match_polls, session_pids, sqlite_ticks
from shared.simulator import INSTANT
from supervisor.journal import read_journal
from supervisor.launch import JOURNAL_FILE
from tests.supervisor.conftest import wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[chaos.Run]:
    world = chaos.build_world(
        tmp_path_factory.mktemp("handover"), poll_s=1.0, with_db=False, latency=INSTANT
    )
    try:
        yield world
    finally:
        if world.supervisor is not None:
            chaos.stop_supervisor(world, signal.SIGKILL)
        for gw in world.gateways.values():
            gw.stop()
        world.cloud.close()


def test_batches_held_for_a_frozen_sink_survive_a_supervisor_sigkill(run: chaos.Run) -> None:
    db = run.state_dir / "envoy.sqlite3"
    chaos.start_supervisor(run)
    wait_for(lambda: "sink:db" in chaos.worker_pids(run), 60, "the sink running")
    wait_for(lambda: db.exists() and sqlite_ticks(db, "gw1"), 60, "first rows in SQLite")
    assert run.supervisor is not None
    sid = run.supervisor.pid
    sink = chaos.worker_pids(run)["sink:db"]

    os.kill(sink, signal.SIGSTOP)
    frozen_at = time.time()
    time.sleep(3.0)  # shorter than the watchdog's 5 s: the supervisor keeps the batches
    killed_at = time.time()
    os.kill(sid, signal.SIGKILL)
    os.kill(sink, signal.SIGKILL)
    run.supervisor.wait(10)
    run.supervisor = None
    wait_for(lambda: not session_pids(sid), 20, "the old workers to exit")
    assert read_journal(run.state_dir / JOURNAL_FILE), "the journal should hold the batches"

    chaos.start_supervisor(run)
    time.sleep(1.0)
    for name, gw in run.gateways.items():
        # Readings answered while the sink was frozen, with time to be handed over.
        held = [
            r.time
            for r in gw.served
            if r.endpoint == "/ivp/meters/readings"  # the power tick's endpoint
            and r.complete
            and frozen_at <= r.time <= killed_at - 1.5
        ]
        assert held, name

        def arrived(held: list[float] = held, name: str = name) -> bool:
            ticks = [t for t in sqlite_ticks(db, name) if t >= frozen_at - run.poll_s]
            return not match_polls(held, ticks, run.poll_s)

        wait_for(arrived, 30, f"{name}: the replayed batches in SQLite")
    assert b"replaying batches a previous supervisor had not seen delivered" in run.log.read_bytes()
