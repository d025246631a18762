"""The README's first command: ``python -m supervisor --demo`` from the shell."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.servers import Mosquitto

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_demo_polls_simulated_gateways_into_sqlite_and_says_where(tmp_path: Path) -> None:
    state = tmp_path / "demo"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "supervisor",
            "--demo",
            "--envoys",
            "3",
            "--duration",
            "12",
            "--state-dir",
            str(state),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    db = state / "envoy.sqlite3"
    assert f"data in {db}" in result.stdout
    assert "metrics at http://127.0.0.1:" in result.stdout
    with sqlite3.connect(db) as conn:
        envoys = {row[0] for row in conn.execute("SELECT DISTINCT envoy FROM power")}
        inverters = conn.execute("SELECT count(*) FROM inverter").fetchone()[0]
    # all three shapes, the legacy plain-HTTP one included, reached the store
    assert envoys == {"demo-1", "demo-2", "demo-3"}
    assert inverters > 0
    assert "power" in result.stdout and "rows" in result.stdout


@pytest.mark.parametrize("extra", [["--check"], ["--config", "site.yml"], ["--shard", "1/2"]])
def test_the_demo_refuses_options_of_a_real_site_instead_of_ignoring_them(
    extra: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    from supervisor.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["--demo", *extra])
    assert exited.value.code == 2
    assert "--demo runs simulated gateways" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.servers
def test_the_demo_publishes_to_an_mqtt_broker_when_given_one(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    seen: list[str] = []
    sub = mqtt.Client(CallbackAPIVersion.VERSION2)
    sub.on_message = lambda _c, _u, m: seen.append(m.topic)
    sub.connect("127.0.0.1", mosquitto.port)
    sub.subscribe("#", qos=1)
    sub.loop_start()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "supervisor", "--demo", "--envoys", "1", "--duration", "20",
             "--state-dir", str(tmp_path / "demo"), "--mqtt", f"127.0.0.1:{mosquitto.port}"],
            cwd=REPO, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    finally:
        sub.disconnect()
        sub.loop_stop()
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"MQTT to 127.0.0.1:{mosquitto.port}" in result.stdout
    assert "envoy/demo-1/power/state" in seen
    assert any(t.startswith("homeassistant/sensor/envoy_demo-1_") for t in seen)
