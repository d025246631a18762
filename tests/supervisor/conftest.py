"""A real site for supervisor tests: simulated cloud and gateways, a real supervisor process.

`running_site` starts a simulated cloud and two simulated gateways on loopback (in this
test process), writes a site.yml for them and starts ``python -m supervisor --config``
in its own session. Teardown kills every process of that session, whatever the test did.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bench.chaos_audit import session_pids
from shared.simulator import INSTANT, SimulatedCloud, SimulatedGateway
from supervisor.status import read_status

REPO = Path(__file__).resolve().parents[2]
EMAIL = "owner@example.com"
PASSWORD = "correct horse battery staple"


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, every: float = 0.1) -> Any:
    """Poll until ``predicate()`` is truthy (returning it) or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@dataclass
class Site:
    config: Path
    state_dir: Path
    process: subprocess.Popen[bytes]
    gateways: list[SimulatedGateway]
    cloud: SimulatedCloud
    log: Path

    def status(self) -> dict[str, Any]:
        return read_status(self.state_dir) or {}

    def worker(self, name: str) -> dict[str, Any]:
        return dict(self.status().get("workers", {}).get(name, {}))

    def running_pid(self, name: str, other_than: int | None = None, timeout: float = 30) -> int:
        def check() -> int | None:
            w = self.worker(name)
            pid = w.get("pid")
            if w.get("state") == "running" and pid and pid != other_than:
                return int(pid)
            return None

        return int(wait_for(check, timeout, f"worker {name} running"))

    def pids(self) -> list[int]:
        return session_pids(self.process.pid)

    def db_rows(self, sql: str) -> list[tuple[Any, ...]]:
        import sqlite3

        path = self.state_dir / "envoy.sqlite3"
        if not path.exists():
            return []
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
            try:
                return db.execute(sql).fetchall()
            except sqlite3.OperationalError:
                return []


def site_yaml(
    state_dir: Path,
    cloud: SimulatedCloud,
    gateways: list[SimulatedGateway],
    supervision: dict[str, float],
    sinks: list[str] | None = None,
) -> str:
    """The site.yml text; ``sinks`` are extra flow-style sink entries besides ``db``."""
    lines = [
        f"state_dir: {state_dir}",
        "timezone: Europe/Amsterdam",
        "accounts:",
        "  - name: home",
        f"    email: {EMAIL}",
        f"    password: {PASSWORD}",
        f"    cloud: {{login_url: '{cloud.url}', token_url: '{cloud.url}',",
        f"             ca_file: '{cloud.ca_file}'}}",
        "envoys:",
    ]
    for i, gw in enumerate(gateways, start=1):
        lines += [
            f"  - name: gw{i}",
            f"    host: '{gw.url.split('://')[1]}'",
            "    account: home",
            "    poll: {power_s: 1, inverters_s: 2}",
        ]
    lines += ["sinks:", "  - {type: sqlite, name: db}"]
    lines += [f"  - {sink}" for sink in sinks or ()]
    lines += ["supervision:"]
    lines += [f"  {key}: {value}" for key, value in supervision.items()]
    lines += ["logging: {level: info, format: json}"]
    return "\n".join(lines) + "\n"


FAST_SUPERVISION = {
    "heartbeat_s": 0.2,
    "hang_timeout_s": 3,
    "backoff_initial_s": 0.2,
    "backoff_max_s": 2,
    "max_restarts": 5,
    "restart_window_s": 60,
    "grace_s": 8,
}


def start_site(
    tmp_path: Path,
    supervision: dict[str, float] | None = None,
    sinks: list[str] | None = None,
    env: dict[str, str] | None = None,
    extra_yaml: str = "",
) -> Site:
    """``env`` is added to this process's environment; ``extra_yaml`` to the site file."""
    cloud = SimulatedCloud(accounts={EMAIL: PASSWORD})
    cloud.start()
    gateways = [
        SimulatedGateway(cloud=cloud, seed=1, phases=1, latency=INSTANT),
        SimulatedGateway(cloud=cloud, seed=2, phases=3, consumption_cts=True, latency=INSTANT),
    ]
    for gw in gateways:
        gw.start()
    state_dir = tmp_path / "state"
    text = site_yaml(state_dir, cloud, gateways, supervision or FAST_SUPERVISION, sinks)
    return launch_site(tmp_path, text + extra_yaml, cloud, gateways, env)


def launch_site(
    tmp_path: Path,
    site_text: str,
    cloud: SimulatedCloud,
    gateways: list[SimulatedGateway],
    env: dict[str, str] | None = None,
) -> Site:
    """Write ``site_text`` (whose state dir is ``tmp_path/state``) and start a supervisor
    on it, for gateways and a cloud already running."""
    state_dir = tmp_path / "state"
    config = tmp_path / "site.yml"
    config.write_text(site_text)
    config.chmod(0o600)
    log = tmp_path / "supervisor.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "supervisor", "--config", str(config)],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, **(env or {})},
    )
    return Site(config, state_dir, process, gateways, cloud, log)


def stop_site(site: Site) -> None:
    if site.process.poll() is None:
        site.process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            site.process.wait(15)
    for pid in site.pids():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if site.process.poll() is None:
        site.process.kill()
        site.process.wait(5)
    for gw in site.gateways:
        gw.stop()
    site.cloud.stop()


@pytest.fixture
def running_site(tmp_path: Path) -> Iterator[Site]:
    site = start_site(tmp_path)
    try:
        yield site
    finally:
        stop_site(site)
        if os.environ.get("SHOW_SUPERVISOR_LOG"):
            sys.stderr.write(site.log.read_text())
