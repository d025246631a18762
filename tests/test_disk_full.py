"""A full state dir: every writer copes, and in a real run nothing is lost.

The state dir is a small tmpfs made by the test (root or CAP_SYS_ADMIN needed; skipped
otherwise), filled with a big file and freed again. First each writer on its own (journal,
status.json, SQLite store, spool, daily state, the sink's holding of batches); then the
supervisor with two simulated gateways, the SQLite sink, the Prometheus exporter and
``/healthz``, filled for several polls.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import structlog
from structlog.testing import capture_logs

from shared.messages import Deliver, PowerBatch, SinkStatus
from shared.points import Point
from shared.storage import StorageEpisode, is_storage_error
from supervisor.journal import Journal, read_journal
from supervisor.status import StatusBoard, read_status
from tests.servers import free_port
from tests.supervisor.conftest import Site, start_site, stop_site, wait_for

FS_SIZE = "16m"
FULL_EVENT = "cannot write to the state dir (disk full or failing)"


@contextlib.contextmanager
def small_tmpfs(where: Path) -> Iterator[Path]:
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={FS_SIZE},mode=0700", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (needs root or CAP_SYS_ADMIN): {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=30)


def fill(path: Path) -> None:
    """Write ``path`` until the filesystem has no byte left."""
    with path.open("wb", buffering=0) as out:
        for size in (1 << 20, 4096, 1):
            try:
                while True:
                    out.write(b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc


@dataclass
class SmallDisk:
    root: Path

    def fill(self) -> None:
        fill(self.root / "filler")

    def free(self) -> None:
        (self.root / "filler").unlink()


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[SmallDisk]:
    with small_tmpfs(tmp_path / "disk") as root:
        yield SmallDisk(root)


def full_events(logs: list[dict[str, object]]) -> list[dict[str, object]]:
    return [e for e in logs if str(e["event"]).startswith(FULL_EVENT)]


def test_the_journal_keeps_batches_in_memory_while_full_and_catches_up_when_freed(
    disk: SmallDisk,
) -> None:
    now = [0.0]
    journal = Journal(disk.root / "handover.journal", clock=lambda: now[0])
    journal.recover()
    journal.add(PowerBatch("garage", 1, ()))
    disk.fill()
    with capture_logs() as logs:
        for tick in range(2, 200):
            journal.add(PowerBatch("garage", tick, ()))
            now[0] += 0.1
    assert journal.outstanding() == 199
    assert journal.storage.error and len(full_events(logs)) == 1
    disk.free()
    now[0] += 1.0
    journal.add(PowerBatch("garage", 200, ()))  # the retry: a whole rewrite
    assert not journal.storage.error
    assert [b.tick_ns for b in read_journal(journal.path).values()] == list(range(1, 201))
    journal.close()


def test_status_json_says_disk_full_written_in_place_and_clears_when_freed(
    disk: SmallDisk,
) -> None:
    board = StatusBoard(disk.root)
    board.publish(force=True)
    disk.fill()
    board.consumer("sink:db", storage_error="database or disk is full")
    with capture_logs() as logs:
        board.publish(force=True)
        board.publish(force=True)
    shown = read_status(disk.root)
    assert shown is not None
    assert set(shown["storage_errors"]) == {"status", "sink:db"}
    assert len(full_events(logs)) == 1
    assert not (disk.root / "status.tmp").exists(), "no partial temp file left"
    disk.free()
    board.consumer("sink:db", storage_error="")
    board.publish(force=True)
    board.publish(force=True)  # the first still named the episode that just ended
    assert read_status(disk.root)["storage_errors"] == {}  # type: ignore[index]


def test_sqlite_store_and_spool_raise_a_storage_error_when_full_and_work_once_freed(
    disk: SmallDisk,
) -> None:
    from workers.spool import Spool
    from workers.sqlite_store import SqliteStore

    def point(t: int) -> Point:
        return Point(
            "power", {"envoy": "garage", "measurement_type": "production"}, {"p_w": 1.0}, t
        )

    store = SqliteStore(disk.root / "envoy.sqlite3")
    spool = Spool(disk.root / "spool.sqlite3", max_bytes=1 << 30)
    store.write([point(0)])
    disk.fill()
    with pytest.raises(Exception) as failed:
        store.write([point(t) for t in range(1, 20_000)])
    assert is_storage_error(failed.value), failed.value
    with pytest.raises(Exception) as failed:
        for _ in range(1000):
            spool.put(b"x" * 4096, "high")
    assert is_storage_error(failed.value), failed.value
    disk.free()
    store.write([point(t) for t in range(1, 20_000)])
    assert store.count("power") == 20_000
    spool.put(b"x", "high")
    store.close()
    spool.close()


def test_the_daily_state_save_survives_a_full_disk_and_saves_once_freed(
    disk: SmallDisk,
) -> None:
    from zoneinfo import ZoneInfo

    from workers.daily import DailyEnergyTracker

    path = disk.root / "garage.json"
    tracker = DailyEnergyTracker("garage", ZoneInfo("UTC"), {}, 3600, path)
    disk.fill()
    with capture_logs() as logs:
        tracker.save()
        tracker.save()
    assert tracker.storage.error and len(full_events(logs)) == 1
    assert not path.exists() and not path.with_name("garage.json.tmp").exists()
    disk.free()
    tracker.save()
    assert path.exists() and not tracker.storage.error


def test_token_cache_login_state_and_pin_stores_survive_a_full_disk(disk: SmallDisk) -> None:
    from shared.pinning import PinStore
    from shared.tokens import LoginState, TokenCache

    cache = TokenCache(disk.root, "home")
    pins = PinStore(disk.root, "envoy.local")
    disk.fill()
    with capture_logs() as logs:
        cache.store_tokens({"122": "jwt"})
        cache.store_login(LoginState(failures=1))
        pins.store("ab" * 32)
    assert len(full_events(logs)) == 2, "one line per writer and episode"
    assert cache.storage.error and pins.storage.error
    disk.free()
    cache.store_tokens({"122": "jwt"})
    pins.store("ab" * 32)
    assert cache.load_tokens() == {"122": "jwt"} and pins.load() == "ab" * 32
    assert not cache.storage.error and not pins.storage.error


def test_the_sink_holds_what_it_could_not_store_within_a_bound_and_counts_the_rest() -> None:
    from workers.sink import Held

    held = Held(StorageEpisode(structlog.get_logger(), "/state", "batches"), max_held=3)
    full = OSError(errno.ENOSPC, "No space left on device")
    held.add([Deliver(seq, PowerBatch("garage", seq, ())) for seq in (1, 2)])
    taken = held.take(10)
    held.add([Deliver(seq, PowerBatch("garage", seq, ())) for seq in (3, 4)])
    held.keep(taken, full, 0.0)  # back in front of what came meanwhile; 1 dropped
    assert not held.due(0.5) and held.due(1.0)
    assert [d.seq for d in held.take(2)] == [2, 3]
    assert [d.seq for d in held.take(2)] == [4]
    status = held.stamp(SinkStatus(dropped=2))
    assert status.dropped == 3 and status.storage_error
    assert not is_storage_error(OSError(errno.EACCES, "Permission denied"))


def http_get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def power_ticks(site: Site, envoy: str) -> list[int]:
    return [
        t
        for (t,) in site.db_rows(
            f"SELECT time FROM power WHERE envoy = '{envoy}' AND measurement_type = "
            "'production' AND line = 'total' ORDER BY time"
        )
    ]


def log_events(site: Site) -> list[dict[str, object]]:
    events = []
    for line in site.log.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            event = json.loads(line)
            if isinstance(event, dict):
                events.append(event)
    return events


@pytest.mark.slow
def test_a_full_state_dir_keeps_the_logger_up_and_loses_no_tick_once_space_returns(
    tmp_path: Path,
) -> None:
    with small_tmpfs(tmp_path / "state"):
        prom, health = free_port(), free_port()
        site = start_site(
            tmp_path,
            sinks=[f"{{type: prometheus, name: prom, port: {prom}}}"],
            extra_yaml=f"health: {{port: {health}}}\n",
        )
        metrics_url = f"http://127.0.0.1:{prom}/metrics"
        health_url = f"http://127.0.0.1:{health}/healthz"
        try:
            wait_for(lambda: len(power_ticks(site, "gw1")) >= 2, 60, "data in SQLite")
            wait_for(lambda: http_get(health_url)[0] == 200, 30, "healthz 200")
            filler = site.state_dir / "filler"
            fill(filler)
            full_from_ns = time.time_ns()

            def disk_full_shown() -> bool:
                errors = site.status().get("storage_errors", {})
                return "sink:db" in errors and "journal" in errors

            wait_for(disk_full_shown, 30, "status naming the sink and the journal")
            code, body = http_get(health_url)
            assert code == 503 and json.loads(body)["status"] == "disk full", body
            wait_for(
                lambda: b'envoy_storage_error{writer="sink:db"} 1.0' in http_get(metrics_url)[1],
                30,
                "the self-metric saying the sink cannot write",
            )
            time.sleep(4)  # several more polls while full
            assert site.process.poll() is None, "the supervisor is still up"
            assert http_get(metrics_url)[0] == 200, "Prometheus still answers"
            full_until_ns = time.time_ns()
            filler.unlink()

            wait_for(lambda: not site.status().get("storage_errors"), 30, "errors to clear")
            wait_for(lambda: http_get(health_url)[0] == 200, 30, "healthz 200 again")
            assert b'envoy_storage_error{writer="sink:db"} 1.0' not in http_get(metrics_url)[1]
            time.sleep(2)
            site.process.send_signal(signal.SIGTERM)
            assert site.process.wait(30) == 0
        finally:
            stop_site(site)

        feeds = site.status()["feeds"]
        for envoy in ("gw1", "gw2"):
            ticks = power_ticks(site, envoy)
            during = [t for t in ticks if full_from_ns <= t <= full_until_ns]
            assert len(during) >= 4, f"{envoy}: ticks polled while full reached SQLite"
            missing = sum((b - a) // 1_000_000_000 - 1 for a, b in itertools.pairwise(ticks))
            # A tick may be missing only if its poll failed or was skipped (and counted).
            unpolled = sum(feeds[envoy]["power"]["errors"].values())
            assert missing <= unpolled, f"{envoy}: {missing} ticks lost, {unpolled} unpolled"

        events = log_events(site)
        episodes = Counter(
            (e.get("worker"), e.get("path"))
            for e in events
            if str(e.get("event", "")).startswith(FULL_EVENT)
        )
        assert episodes, "the full disk was logged"
        assert set(episodes.values()) == {1}, f"one error line per writer and episode: {episodes}"
        assert "Traceback" not in site.log.read_text(errors="replace")
        restarts = {n: w["restarts"] for n, w in site.status()["workers"].items()}
        assert set(restarts.values()) == {0}, f"no worker was disturbed: {restarts}"


def test_healthz_and_the_status_command_say_disk_full_while_a_writer_cannot_write() -> None:
    from supervisor.commands.status import render
    from supervisor.health import assess

    status = {"started_s": 0.0, "feeds": {}, "storage_errors": {"journal": "[Errno 28] ..."}}
    code, body = assess(status, {}, 1.0)
    assert (code, body["status"], body["storage_errors"]) == (
        503,
        "disk full",
        {"journal": "[Errno 28] ..."},
    )
    assert assess({**status, "storage_errors": {}}, {}, 1.0)[0] == 200
    lines = render(status, 1.0)
    assert any(line.startswith("disk full or failing") for line in lines)
    assert any(line.startswith("journal") and "Errno 28" in line for line in lines)


class FullOnAck:
    """A real spool whose first ``failures`` acks meet a full disk (ENOSPC), as SQLite
    raises it when the delete cannot be journalled."""

    def __init__(self, path: Path, failures: int) -> None:
        from workers.spool import Spool

        self.spool = Spool(path, max_bytes=1 << 20)
        self.failures = failures

    def __getattr__(self, name: str) -> object:
        return getattr(self.spool, name)

    def ack(self, ids: object) -> None:
        if self.failures:
            self.failures -= 1
            raise OSError(errno.ENOSPC, "No space left on device")
        self.spool.ack(ids)  # type: ignore[arg-type]


class AcknowledgingLink:
    """A broker link that is connected and acknowledges every publish at once."""

    class Info:
        def wait_for_publish(self, timeout: float) -> None:
            pass

        def is_published(self) -> bool:
            return True

    def __init__(self) -> None:
        import threading

        self.connected = threading.Event()
        self.connected.set()
        self.published: list[object] = []

    def publish(self, message: object) -> Info:
        self.published.append(message)
        return self.Info()


def test_the_mqtt_forwarder_outlives_a_spool_it_cannot_mark_sent_and_then_empties_it(
    tmp_path: Path,
) -> None:
    import threading

    from shared.mqtt_topics import Message
    from workers.sink_mqtt import Forwarder, encode

    spool = FullOnAck(tmp_path / "spool.sqlite3", failures=2)
    for i in range(5):
        spool.put(encode(Message(f"envoy/garage/power/state/{i}", "{}")), "mqtt")
    link = AcknowledgingLink()
    with capture_logs() as logs:
        forwarder = Forwarder(spool, link, structlog.get_logger())  # type: ignore[arg-type]
        thread = threading.Thread(target=forwarder.run, daemon=True)
        thread.start()
        try:
            wait_for(lambda: not spool.peek(10, 1 << 20), 30, "the spool emptied")
            assert thread.is_alive()
            assert forwarder.storage.error == ""
        finally:
            forwarder.stop = True
            forwarder.wake.set()
            thread.join(10)
    assert len(full_events(logs)) == 1  # one episode, one line
    assert len(link.published) >= 15  # published again after each failed ack
