"""A full state dir during a real run: the logger stays up, says so, and loses nothing.

The state dir is a small tmpfs made by the test (root or CAP_SYS_ADMIN needed; skipped
otherwise). The supervisor runs with two simulated gateways, the SQLite sink, the
Prometheus exporter and ``/healthz``; a big file then fills the tmpfs for several polls
and is removed again.
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
from pathlib import Path

import pytest

from tests.servers import free_port
from tests.supervisor.conftest import Site, start_site, stop_site, wait_for

pytestmark = pytest.mark.slow

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
