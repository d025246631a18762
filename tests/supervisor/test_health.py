"""/healthz: the judgement, the real HTTP endpoint over a real status file, its config
keys, and the real supervisor serving it."""

from __future__ import annotations

import http.client
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from shared.config_loader import load_config
from shared.errors import ConfigError
from shared.messages import PollReport
from supervisor.check import describe_config
from supervisor.health import HealthServer, assess, serve_site
from supervisor.policy import ChildState, State
from supervisor.shard import shard_view
from supervisor.status import StatusBoard, read_status
from tests.supervisor.conftest import start_site, stop_site, wait_for

NOW = 1_800_000_000.0
INTERVALS = {"garage": 5.0, "shed": 10.0}


def status(started_s: float = NOW - 3600, **last_ok_s: float) -> dict[str, Any]:
    feeds = {
        name: {"power": {"last_ok_ns": int(t * 1e9)}, "inverters": {"last_ok_ns": None}}
        for name, t in last_ok_s.items()
    }
    return {"started_s": started_s, "feeds": feeds}


def get(url: str, path: str = "/healthz") -> tuple[int, dict[str, Any]]:
    host_port = url.split("//", 1)[1].split("/", 1)[0]
    conn = http.client.HTTPConnection(host_port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, orjson.loads(response.read())
    finally:
        conn.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- the judgement ------------------------------------------------------------------------


def test_healthy_when_every_gateway_polled_within_three_intervals() -> None:
    code, body = assess(status(garage=NOW - 14, shed=NOW - 29), INTERVALS, NOW)
    assert code == 200
    assert body["status"] == "ok"
    assert body["late"] == []
    assert body["gateways"]["garage"] == {
        "late_after_s": 15.0,
        "last_ok_age_s": 14.0,
        "state": "ok",
    }


def test_a_gateway_late_by_more_than_three_intervals_makes_it_503_and_is_named() -> None:
    code, body = assess(status(garage=NOW - 16, shed=NOW - 1), INTERVALS, NOW)
    assert code == 503
    assert body["late"] == ["garage"]
    assert body["gateways"]["garage"]["state"] == "late"
    assert body["gateways"]["shed"]["state"] == "ok"


def test_a_gateway_never_polled_is_starting_at_first_and_late_later() -> None:
    just_started = assess(status(started_s=NOW - 5, shed=NOW - 1), INTERVALS, NOW)
    assert just_started[0] == 200
    assert just_started[1]["gateways"]["garage"] == {
        "late_after_s": 15.0,
        "last_ok_age_s": None,
        "state": "starting",
    }
    long_ago = assess(status(started_s=NOW - 600, shed=NOW - 1), INTERVALS, NOW)
    assert long_ago[0] == 503
    assert long_ago[1]["late"] == ["garage"]


def test_no_published_status_is_unhealthy() -> None:
    code, body = assess(None, INTERVALS, NOW)
    assert code == 503
    assert body["late"] == ["garage", "shed"]
    assert "no status" in body["reason"]


# --- the endpoint over a real file -------------------------------------------------------


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[StatusBoard, str]]:
    """A StatusBoard publishing to tmp_path and /healthz reading it, both at time NOW."""
    board = StatusBoard(tmp_path, clock=lambda: NOW)
    server = HealthServer("127.0.0.1", 0, INTERVALS, lambda: read_status(tmp_path), lambda: NOW)
    url = server.start()
    try:
        yield board, url
    finally:
        server.stop()


def poll(board: StatusBoard, envoy: str, age_s: float, ok: bool = True) -> None:
    tick = int((NOW - age_s) * 1e9)
    board.poll_report(PollReport(envoy, "power", tick, ok, "" if ok else "timeout"))
    board.publish(force=True)


def test_the_endpoint_answers_503_before_the_first_status_then_200_once_all_polled(
    served: tuple[StatusBoard, str],
) -> None:
    board, url = served
    assert get(url)[0] == 503
    poll(board, "garage", 2)
    poll(board, "shed", 3)
    code, body = get(url)
    assert (code, body["status"]) == (200, "ok")


def test_a_failing_gateway_turns_the_endpoint_503_naming_it(
    served: tuple[StatusBoard, str],
) -> None:
    board, url = served
    poll(board, "garage", 60)  # the last success, a minute ago
    poll(board, "garage", 1, ok=False)
    poll(board, "shed", 1)
    code, body = get(url)
    assert code == 503
    assert body["late"] == ["garage"]
    assert body["gateways"]["garage"]["last_ok_age_s"] == 60.0


def test_a_fatal_worker_turns_the_endpoint_503_naming_it_and_when_it_is_retried(
    served: tuple[StatusBoard, str],
) -> None:
    board, url = served
    poll(board, "garage", 1)
    poll(board, "shed", 1)
    fatal = ChildState(state=State.FATAL, next_start_at=700.0, fatal_count=2, last_exit_code=1)
    board.worker("sink:db", "sink", None, fatal, now=100.0)  # monotonic 100: retry in 600 s
    board.publish(force=True)
    code, body = get(url)
    assert (code, body["status"], body["late"]) == (503, "worker down", [])
    reason = body["workers_down"]["sink:db"]
    assert reason.startswith("FATAL (restarted too often; episode 2, last exit code 1)")
    assert time.strftime("%H:%M:%S", time.localtime(NOW + 600)) in reason
    assert read_status(board.path.parent)["workers"]["sink:db"]["retry_at_s"] == NOW + 600
    board.worker("sink:db", "sink", 4321, ChildState(state=State.RUNNING), now=701.0)
    board.publish(force=True)
    assert get(url)[0] == 200


def test_other_paths_are_404_and_query_strings_are_ignored(
    served: tuple[StatusBoard, str],
) -> None:
    _, url = served
    assert get(url, "/metrics")[0] == 404
    assert get(url, "/healthz?verbose=1")[0] == 503


def test_the_endpoint_listens_on_ipv6_loopback_too(tmp_path: Path) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    server = HealthServer("::1", 0, INTERVALS, lambda: None)
    try:
        url = server.start()
    except OSError:
        pytest.skip("::1 not available here")
    try:
        assert url.startswith("http://[::1]:")
        assert get(url)[0] == 503
    finally:
        server.stop()


# --- configuration -----------------------------------------------------------------------


def site_file(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "site.yml"
    path.write_text(
        "envoys:\n  - {name: garage, host: 192.0.2.1, token: abc.def.ghi}\n" + extra,
        encoding="utf-8",
    )
    path.chmod(0o600)
    return path


def test_the_health_endpoint_is_off_unless_a_port_is_configured(tmp_path: Path) -> None:
    config = load_config(site_file(tmp_path, ""), environ={})
    assert config.health.port is None
    assert not any(line.startswith("health:") for line in describe_config(config))


def test_a_configured_port_is_shown_by_check(tmp_path: Path) -> None:
    config = load_config(site_file(tmp_path, "health: {listen: 0.0.0.0, port: 9434}\n"), {})
    assert (config.health.listen, config.health.port) == ("0.0.0.0", 9434)
    assert "health: http://0.0.0.0:9434/healthz" in describe_config(config)


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ("health: {port: 0}\n", "health.port: expected a whole number 1..65535, got 0"),
        ("health: {port: http}\n", "health.port: expected a whole number"),
        ("health: {listen: 'a b'}\n", "health.listen: expected a host name or IP address"),
        ("health: {prot: 1}\n", "health.prot"),
        (
            "health: {port: 9433}\nsinks: [{type: prometheus}]\n",
            "health.port: 9433 is also a prometheus sink's port",
        ),
    ],
)
def test_bad_health_keys_are_named_with_the_file(tmp_path: Path, extra: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(site_file(tmp_path, extra), environ={})
    assert any(p.startswith(f"{tmp_path / 'site.yml'}: {problem}") for p in caught.value.problems)


def test_a_sharded_host_judges_only_its_own_gateways(tmp_path: Path) -> None:
    port = free_port()
    names = [f"gw{i}" for i in range(6)]
    envoys = "".join(f"  - {{name: {n}, host: 192.0.2.{i + 1}}}\n" for i, n in enumerate(names))
    path = tmp_path / "site.yml"
    path.write_text(
        f"state_dir: state\nenvoys:\n{envoys}shard: {{index: 1, count: 2}}\n"
        f"health: {{port: {port}}}\n"
    )
    config = load_config(path, environ={})
    server = serve_site(config)
    assert server is not None
    try:
        _, body = get(server.url)
    finally:
        server.stop()
    mine = {gw.name for gw in shard_view(config).gateways}
    assert set(body["gateways"]) == mine
    assert 0 < len(mine) < len(names)


def test_a_port_already_taken_is_logged_and_the_supervisor_goes_on(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = load_config(site_file(tmp_path, f"health: {{port: {port}}}\n"), environ={})
        assert serve_site(config) is None


# --- the real supervisor ------------------------------------------------------------------


@pytest.mark.slow
def test_the_running_supervisor_serves_healthz_and_it_turns_200_once_gateways_poll(
    tmp_path: Path,
) -> None:
    port = free_port()
    site = start_site(tmp_path, extra_yaml=f"health: {{listen: 127.0.0.1, port: {port}}}\n")
    url = f"http://127.0.0.1:{port}/healthz"

    def healthy() -> dict[str, Any] | None:
        try:
            code, body = get(url)
        except OSError:
            return None
        return body if code == 200 and body["gateways"]["gw1"]["state"] == "ok" else None

    try:
        body = wait_for(healthy, 60, "/healthz answering 200 with gw1 polled")
        assert set(body["gateways"]) == {"gw1", "gw2"}
        assert body["gateways"]["gw1"]["late_after_s"] == 3.0  # poll power_s: 1
    finally:
        stop_site(site)
