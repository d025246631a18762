"""``python -m supervisor --demo``: the real supervisor against simulated gateways.

A separate process hosts the simulated Enphase cloud and N simulated gateways on loopback
(HTTPS, real tokens from the simulated cloud). The supervisor then runs exactly as it
would on a real site, logging in through the simulated cloud, into an SQLite store and a
Prometheus exporter on a free port. At the end it prints where the data is and a summary.

Gateway shapes alternate: single-phase with a production CT; three-phase with
consumption CTs; a legacy (firmware 5, plain HTTP) gateway as every third.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import socket
import sqlite3
import tempfile
import threading
from multiprocessing.connection import Connection
from pathlib import Path

from shared.config import (
    AccountConfig,
    CloudConfig,
    GatewayConfig,
    MqttSinkConfig,
    PrometheusSinkConfig,
    SiteConfig,
    SqliteSinkConfig,
    SupervisionConfig,
)

EMAIL = "owner@example.com"
PASSWORD = "demo-password"  # the simulated cloud's, not a real secret
SQLITE_FILE = "envoy.sqlite3"


def gateway_shape(index: int) -> dict[str, object]:
    """Keyword arguments for the simulated gateway number ``index``."""
    if index % 3 == 2:
        return {"phases": 1, "consumption_cts": False, "firmware": "D5.0.62", "inverters": 8}
    if index % 2 == 1:
        return {"phases": 3, "consumption_cts": True, "inverters": 24}
    return {"phases": 1, "consumption_cts": False, "inverters": 12}


def host_simulators(count: int, conn: Connection) -> None:
    """Process body: run the cloud and the gateways until the demo closes the pipe."""
    from shared.simulator import SimulatedCloud, SimulatedGateway

    with SimulatedCloud(accounts={EMAIL: PASSWORD}) as cloud:
        gateways = [
            SimulatedGateway(cloud=cloud, seed=i + 1, **gateway_shape(i))  # type: ignore[arg-type]
            for i in range(count)
        ]
        for gateway in gateways:
            gateway.start()
        conn.send((cloud.url, str(cloud.ca_file), [(g.url, g.serial) for g in gateways]))
        with contextlib.suppress(EOFError):
            conn.recv()  # blocks until the demo is over (or gone)
        for gateway in gateways:
            gateway.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def demo_config(
    state_dir: Path,
    cloud_url: str,
    ca_file: str,
    gateways: list[tuple[str, str]],
    mqtt: tuple[str, int] | None = None,
) -> SiteConfig:
    """``mqtt``: (host, port) of a broker to publish to as well (with HA discovery)."""
    account = AccountConfig(
        "demo", EMAIL, PASSWORD, CloudConfig(cloud_url, cloud_url, Path(ca_file))
    )
    configs = []
    for i, (url, serial) in enumerate(gateways, start=1):
        scheme, host = url.split("://")
        configs.append(
            GatewayConfig(
                name=f"demo-{i}",
                host=host,
                serial=serial,
                scheme=scheme,  # type: ignore[arg-type]
                account="demo" if scheme == "https" else None,
                power_interval_s=2.0,
                inverter_interval_s=10.0,
            )
        )
    return SiteConfig(
        source=Path("<demo>"),
        gateways=tuple(configs),
        accounts=(account,),
        sinks=(
            SqliteSinkConfig("sqlite", Path(SQLITE_FILE)),
            PrometheusSinkConfig("prometheus", "127.0.0.1", free_port()),
            *((MqttSinkConfig("mqtt", mqtt[0], mqtt[1]),) if mqtt else ()),
        ),
        state_dir=state_dir,
        supervision=SupervisionConfig(grace_s=10.0),
    )


def summary(db_path: Path) -> list[str]:
    """What reached the store: rows per table and the latest power per series."""
    lines = []
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as db:
        for table in ("power", "energy", "inverter", "energy_daily"):
            try:
                (rows,) = db.execute(f"SELECT count(*) FROM {table}").fetchone()
            except sqlite3.OperationalError:
                rows = 0
            lines.append(f"  {table:<13} {rows} rows")
        try:
            latest = db.execute(
                "SELECT envoy, measurement_type, round(p_w, 1) FROM power "
                "WHERE line = 'total' AND time = (SELECT max(time) FROM power p2 "
                "WHERE p2.envoy = power.envoy) ORDER BY envoy, measurement_type"
            ).fetchall()
        except sqlite3.OperationalError:
            latest = []
    for envoy, mtype, watts in latest:
        lines.append(f"  latest {envoy} {mtype}: {watts} W")
    return lines


def run_demo(
    envoys: int,
    duration_s: float | None,
    state_dir: Path | None,
    mqtt: tuple[str, int] | None = None,
) -> int:
    from shared.logs import configure_logging
    from supervisor.launch import make_supervisor

    state_dir = state_dir or Path(tempfile.mkdtemp(prefix="envoy-demo-"))
    ctx = multiprocessing.get_context("spawn")
    ours, theirs = ctx.Pipe()
    host = ctx.Process(
        target=host_simulators, args=(envoys, theirs), daemon=True, name="simulators"
    )
    host.start()
    theirs.close()
    if not ours.poll(60):
        print("demo: the simulated gateways did not start within 60 s")
        host.kill()
        return 1
    cloud_url, ca_file, gateways = ours.recv()
    config = demo_config(state_dir, cloud_url, ca_file, gateways, mqtt)
    configure_logging(config.logging.level, config.logging.format, worker="supervisor")
    prometheus = config.sinks[1]
    assert isinstance(prometheus, PrometheusSinkConfig)
    print(
        f"demo: {envoys} simulated gateways; data in {state_dir / SQLITE_FILE}; "
        f"metrics at http://127.0.0.1:{prometheus.port}/metrics; status in "
        f"{state_dir / 'status.json'}"
        + (f"; MQTT to {mqtt[0]}:{mqtt[1]} under envoy/ and homeassistant/" if mqtt else ""),
        flush=True,
    )
    supervisor = make_supervisor(config)
    if duration_s is not None:
        timer = threading.Timer(duration_s, supervisor.request_stop)
        timer.daemon = True
        timer.start()
    try:
        code = supervisor.run()
    finally:
        ours.close()
        host.join(10)
        if host.is_alive():
            host.kill()
    print(f"demo finished; data in {state_dir / SQLITE_FILE}:")
    print("\n".join(summary(state_dir / SQLITE_FILE)))
    return code
