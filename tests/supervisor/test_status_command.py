"""``python -m supervisor status``: the verdict, the tables, and the real command against
a status file and against a real running supervisor."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import orjson
import pytest

from shared.messages import GatewayInfo, PollReport, SinkStatus
from supervisor.commands.status import STALE_AFTER_S, render, state_dir_of, verdict
from supervisor.policy import ChildState, State
from supervisor.status import StatusBoard
from tests.supervisor.conftest import PASSWORD, REPO, Site, wait_for

NOW = 1_800_000_000.0
SECRET = "correct horse battery staple"


def run_status(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "supervisor", "status", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith(("ENPHASE_", "INFLUX"))},
    )


def published(state_dir: Path, clock: float, pid: int | None = None) -> dict[str, Any]:
    """A status.json as a supervisor with one gateway and one sink writes it."""
    board = StatusBoard(state_dir, clock=lambda: clock)
    board.worker("power:garage", "power", 4242, ChildState(state=State.RUNNING), 0.0)
    board.worker(
        "sink:influx",
        "sink",
        None,
        ChildState(state=State.BACKOFF, restarts_total=3, last_exit_code=-9),
        0.0,
    )
    board.identified("garage", GatewayInfo("122238082763", "D7.6.175", (7, 6, 175), True, True))
    board.token_expiry({"garage": int(clock + 20 * 86400)})
    tick = int((clock - 4) * 1e9)
    board.poll_report(PollReport("garage", "power", tick, True, jitter_ms=2.0, duration_ms=800))
    board.poll_report(PollReport("garage", "power", tick, False, "timeout", "read timed out"))
    board.consumer(
        "sink:influx", **asdict(SinkStatus(spool_items=12, spool_bytes=4096, dead_letters=1))
    )
    board.publish(force=True)
    data: dict[str, Any] = orjson.loads((state_dir / "status.json").read_bytes())
    if pid is not None:
        data["pid"] = pid
        (state_dir / "status.json").write_bytes(orjson.dumps(data))
    return data


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(30)
    return child.pid


# --- the verdict --------------------------------------------------------------------------


def test_a_fresh_file_from_a_live_pid_means_running() -> None:
    assert verdict({"pid": 1, "updated_s": NOW - 1}, NOW, alive=lambda pid: True) is None


def test_no_file_means_not_running() -> None:
    assert verdict(None, NOW) == "not running (no status published)"


def test_a_gone_pid_means_not_running_and_says_when_it_was_last_seen() -> None:
    why = verdict({"pid": 7, "updated_s": NOW - 90}, NOW, alive=lambda pid: False)
    assert why == "not running (pid 7 is gone; last seen 2027-01-15 07:58:30 UTC, 1.5 min ago)"


def test_a_file_not_updated_for_a_while_means_not_running_even_if_the_pid_lives() -> None:
    status = {"pid": 7, "updated_s": NOW - STALE_AFTER_S - 1}
    why = verdict(status, NOW, alive=lambda pid: True)
    assert why is not None
    assert why.startswith("not running (no update for 11 s;")


# --- the tables ---------------------------------------------------------------------------


def test_the_tables_show_workers_gateways_feeds_and_sinks(tmp_path: Path) -> None:
    text = "\n".join(render(published(tmp_path, NOW), NOW))
    assert "power:garage  running  4242" in text
    assert "sink:influx   backoff  -     3         -9" in text
    assert "garage  122238082763  D7.6.175  2027-02-04 (in 20.0 d)" in text
    assert "4 s ago" in text  # last good poll
    assert "timeout=1" in text
    assert "read timed out" in text
    assert "influx  12 (4 KiB)" in text


def test_an_expired_token_says_so(tmp_path: Path) -> None:
    data = published(tmp_path, NOW)
    data["gateways"]["garage"]["token_expiry_s"] = int(NOW - 60)
    assert "(expired)" in "\n".join(render(data, NOW))


def test_the_state_dir_is_read_from_the_config_relative_to_it(tmp_path: Path) -> None:
    config = tmp_path / "site.yml"
    config.write_text("state_dir: data\nenvoys: []\n")
    assert state_dir_of(config) == tmp_path / "data"
    config.write_text("envoys: []\n")
    assert state_dir_of(config) == tmp_path / "state"


# --- the real command ---------------------------------------------------------------------


def test_the_command_prints_the_tables_and_exits_0_while_the_supervisor_lives(
    tmp_path: Path,
) -> None:
    published(tmp_path, time.time(), pid=os.getpid())
    result = run_status("--state-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"supervisor: running, pid {os.getpid()}")
    assert "122238082763" in result.stdout


def test_the_command_says_not_running_and_exits_3_when_the_pid_is_gone(tmp_path: Path) -> None:
    published(tmp_path, time.time(), pid=dead_pid())
    result = run_status("--state-dir", str(tmp_path))
    assert result.returncode == 3
    assert result.stdout.startswith("supervisor: not running (pid ")
    assert "the last known state follows" in result.stdout
    assert "power:garage" in result.stdout


def test_the_command_exits_4_naming_a_fatal_worker_while_the_supervisor_lives(
    tmp_path: Path,
) -> None:
    data = published(tmp_path, time.time(), pid=os.getpid())
    data["workers"]["sink:influx"].update(state="fatal", retry_at_s=None, fatal_count=1)
    (tmp_path / "status.json").write_bytes(orjson.dumps(data))
    result = run_status("--state-dir", str(tmp_path))
    assert result.returncode == 4, result.stdout + result.stderr
    assert "worker down: sink:influx FATAL (restarted too often; episode 1" in result.stdout
    assert "left down for good (supervision.fatal_forever)" in result.stdout
    as_json = run_status("--state-dir", str(tmp_path), "--json")
    assert as_json.returncode == 4
    assert list(orjson.loads(as_json.stdout)["workers_down"]) == ["sink:influx"]


def test_the_command_exits_3_when_nothing_was_ever_published(tmp_path: Path) -> None:
    result = run_status("--state-dir", str(tmp_path))
    assert result.returncode == 3
    assert "not running (no status published)" in result.stdout


def test_json_output_carries_the_verdict_and_the_whole_status(tmp_path: Path) -> None:
    data = published(tmp_path, time.time(), pid=dead_pid())
    result = run_status("--state-dir", str(tmp_path), "--json")
    assert result.returncode == 3
    body = orjson.loads(result.stdout)
    assert body["running"] is False
    assert body["reason"].startswith("not running (pid ")
    assert body["status"] == data


def test_the_command_needs_no_secrets_in_the_environment_and_prints_none(tmp_path: Path) -> None:
    config = tmp_path / "site.yml"
    config.write_text(
        "state_dir: state\n"
        "accounts: [{name: home, email: me@example.com}]\n"  # password only in the service's env
        "envoys: [{name: garage, host: 192.0.2.1, account: home}]\n"
        f"sinks: [{{type: influxdb, url: 'http://127.0.0.1:8086', org: o, token: '{SECRET}'}}]\n"
    )
    result = run_status("--config", str(config))
    assert result.returncode == 3
    assert f"no {tmp_path / 'state' / 'status.json'}" in result.stdout
    assert SECRET not in result.stdout + result.stderr


def test_a_config_that_cannot_be_read_is_exit_2_naming_it(tmp_path: Path) -> None:
    result = run_status("--config", str(tmp_path / "missing.yml"))
    assert result.returncode == 2
    assert "missing.yml" in result.stderr


@pytest.mark.slow
def test_status_of_a_real_running_site_lists_its_workers_gateways_and_sink(
    running_site: Site,
) -> None:
    def all_running() -> bool:
        workers = running_site.status().get("workers", {})
        gateways = running_site.status().get("gateways", {})
        return (
            bool(workers)
            and all(w["state"] == "running" for w in workers.values())
            and all("token_expiry_s" in g for g in gateways.values())
            and len(gateways) == 2
        )

    wait_for(all_running, 60, "every worker running and both gateways with tokens")
    result = run_status("--config", str(running_site.config))
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for worker in ("power:gw1", "inverters:gw2", "token:home", "daily", "sink:db"):
        assert worker in out
    assert "(in 365.0 d)" in out  # the simulated cloud's owner token lasts a year
    assert PASSWORD not in out
    assert "db " in out.split("\nsinks\n", 1)[1]
