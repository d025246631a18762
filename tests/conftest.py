"""Session fixtures: the real database servers tests write to (see `tests/servers.py`).

Each server starts once per test session on a free loopback port with a temp dir, and
stops (SIGTERM, then SIGKILL) when the session ends. A test that needs a server whose
binary is not installed is skipped with the reason; ``.ci/run`` installs all three, so
CI runs every one of them. Tests that need a server to themselves (to stop it, say) use
the function-scoped ``own_*`` fixtures.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.servers import (
    InfluxDB1,
    Mosquitto,
    PrometheusServer,
    ServerProcess,
    VictoriaMetrics,
    missing,
    start_prometheus,
)


def _require(package: str) -> None:
    if missing(package):
        pytest.skip(
            f"{package} is not installed (its binary is not on PATH): "
            f"apt-get install {package}, as .ci/run does"
        )


def _serve(server: ServerProcess) -> Iterator[ServerProcess]:
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def victoria_metrics(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VictoriaMetrics]:
    """VictoriaMetrics for the whole session; do not stop it (use own_victoria_metrics)."""
    _require("victoria-metrics")
    server = VictoriaMetrics(tmp_path_factory.mktemp("victoria-metrics"))
    yield from _serve(server)  # type: ignore[misc]


@pytest.fixture
def own_victoria_metrics(tmp_path: Path) -> Iterator[VictoriaMetrics]:
    """A VictoriaMetrics only this test uses: it may stop and start it."""
    _require("victoria-metrics")
    server = VictoriaMetrics(tmp_path)
    yield from _serve(server)  # type: ignore[misc]


@pytest.fixture(scope="session")
def influxdb1(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxDB1]:
    """InfluxDB 1.x (Debian's 1.6) for the whole session, with no auth."""
    _require("influxdb")
    server = InfluxDB1(tmp_path_factory.mktemp("influxdb"))
    yield from _serve(server)  # type: ignore[misc]


MQTT_USERS = {"envoy": "mqtt-Secret-pw"}  #: the user the ``mosquitto_auth`` broker knows


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """An anonymous mosquitto for the whole session; do not stop it (use own_mosquitto)."""
    _require("mosquitto")
    yield from _serve(Mosquitto(tmp_path_factory.mktemp("mosquitto")))  # type: ignore[misc]


@pytest.fixture(scope="session")
def mosquitto_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """A mosquitto that accepts only MQTT_USERS (a password file from mosquitto_passwd)."""
    _require("mosquitto")
    server = Mosquitto(tmp_path_factory.mktemp("mosquitto-auth"), MQTT_USERS)
    yield from _serve(server)  # type: ignore[misc]


@pytest.fixture
def own_mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A mosquitto only this test uses: it may stop and start it."""
    _require("mosquitto")
    yield from _serve(Mosquitto(tmp_path))  # type: ignore[misc]


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[[list[str]], PrometheusServer]]:
    """``prometheus(["127.0.0.1:PORT"])`` starts a Prometheus scraping those targets
    every second; every one started is stopped when the test ends."""
    _require("prometheus")
    started: list[PrometheusServer] = []

    def start(targets: list[str]) -> PrometheusServer:
        workdir = tmp_path / f"prometheus-{len(started)}"
        workdir.mkdir()
        server = start_prometheus(targets, workdir=workdir)
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()
