"""Real servers for tests: VictoriaMetrics, InfluxDB 1.x, Prometheus and mosquitto.

Each server runs as a child process of the test session on a free loopback port, with
its data, config and log in a temp dir; start-up waits for the server's readiness
endpoint with a bounded timeout (and fails with the log's tail), and `stop()` sends
SIGTERM, then SIGKILL after a grace period. A stopped server can be started again on the
same port and data dir, which is how tests take "the database" down for a while.

The binaries come from Debian packages (``.ci/run`` installs them); `missing()` names
the ones not on PATH so `tests/conftest.py` can skip with a clear reason. Nothing here
uses systemd or the packages' default ports and directories.
"""

from __future__ import annotations

import os
import pwd
import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import requests

START_TIMEOUT_S = 60.0  # a loaded 2-core CI machine: influxd takes a few seconds
STOP_GRACE_S = 10.0
#: Debian package -> the binary it installs
BINARIES = {
    "victoria-metrics": "victoria-metrics",
    "influxdb": "influxd",
    "prometheus": "prometheus",
    "mosquitto": "mosquitto",
}
#: where a package's binary is when PATH lacks it (Debian puts mosquitto in /usr/sbin)
SBIN = Path("/usr/sbin")


def missing(*names: str) -> list[str]:
    """Packages (keys of BINARIES) whose binary is not on PATH."""
    return [name for name in names if binary(name) is None]


def binary(name: str) -> str | None:
    """The path of a package's binary: on PATH, or in /usr/sbin for non-root users."""
    return shutil.which(BINARIES[name]) or shutil.which(BINARIES[name], path=str(SBIN))


def free_port() -> int:
    """A loopback port nobody listens on right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_fixed_port() -> int:
    """A free loopback port below the ephemeral range, for a server that is restarted.

    A client retrying a connection to a stopped server on an ephemeral port can be given
    that very port as its own source port and connect to itself (TCP simultaneous open),
    holding the port so the server cannot bind it again. Outside the range that cannot be.
    """
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    for _ in range(100):
        port = random.randrange(max(1024, low - 12000), low)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


class ServerProcess:
    """One server child process: start, wait until ready, stop, start again."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        port: int,
        ready_path: str,
        workdir: Path,
        ready_status: int = 200,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.workdir = workdir
        self.log_path = workdir / f"{name}.log"
        self._ready_path = ready_path
        self._ready_status = ready_status
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Start the process and return once its readiness endpoint answers."""
        if self.running:
            return
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.workdir,
                start_new_session=True,  # a Ctrl-C in the terminal is the session's to handle
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self._proc.returncode} on start:\n{self.log_tail()}"
                )
            if self.ready():
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} not ready within {timeout_s} s:\n{self.log_tail()}")

    def ready(self) -> bool:
        """The readiness endpoint answers as expected."""
        try:
            answer = requests.get(self.url + self._ready_path, timeout=2)
        except requests.RequestException:
            return False
        return answer.status_code == self._ready_status

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited within the grace period."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_GRACE_S)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class VictoriaMetrics(ServerProcess):
    """VictoriaMetrics single-node: accepts InfluxDB line protocol on /write and /api/v2/write."""

    def __init__(self, workdir: Path) -> None:
        port = free_port()
        super().__init__(
            "victoria-metrics",
            [
                BINARIES["victoria-metrics"],
                f"-storageDataPath={workdir / 'data'}",
                f"-httpListenAddr=127.0.0.1:{port}",
                "-retentionPeriod=100y",  # tests write fixed timestamps from the past
                "-search.latencyOffset=0s",  # make points visible to queries at once
            ],
            port,
            "/health",
            workdir,
        )

    def flush(self) -> None:
        """Make everything written so far visible to queries and exports."""
        requests.get(self.url + "/internal/force_flush", timeout=10).raise_for_status()

    def export(self, match: str) -> list[dict[str, object]]:
        """Every series matching a selector, as /api/v1/export's JSON lines."""
        import json

        self.flush()
        answer = requests.get(self.url + "/api/v1/export", params={"match[]": match}, timeout=10)
        answer.raise_for_status()
        return [json.loads(line) for line in answer.text.splitlines() if line.strip()]


_INFLUXD_CONF = """\
reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"

[meta]
  dir = "{dir}/meta"

[data]
  dir = "{dir}/data"
  wal-dir = "{dir}/wal"
  query-log-enabled = false

[http]
  bind-address = "127.0.0.1:{port}"
  log-enabled = false
  auth-enabled = false

[monitor]
  store-enabled = false

[continuous_queries]
  enabled = false
"""


class InfluxDB1(ServerProcess):
    """InfluxDB 1.x (Debian ships 1.6): /write and InfluxQL /query, no auth."""

    def __init__(self, workdir: Path) -> None:
        port = free_port()
        conf = workdir / "influxdb.conf"
        conf.write_text(_INFLUXD_CONF.format(rpc_port=free_port(), dir=workdir, port=port))
        super().__init__(
            "influxdb", [BINARIES["influxdb"], "-config", str(conf)], port, "/ping", workdir, 204
        )

    def query(self, q: str, db: str | None = None) -> dict[str, object]:
        """Run InfluxQL (POST, so statements that write work too); the JSON answer."""
        params = {"q": q, "epoch": "ns"}
        if db is not None:
            params["db"] = db
        answer = requests.post(self.url + "/query", params=params, timeout=10)
        answer.raise_for_status()
        result: dict[str, object] = answer.json()
        return result


_PROMETHEUS_YML = """\
global:
  scrape_interval: {interval}
  scrape_timeout: {interval}
  evaluation_interval: {interval}
scrape_configs:
  - job_name: envoy
    static_configs:
      - targets: [{targets}]
"""


class PrometheusServer(ServerProcess):
    """Prometheus scraping the given ``host:port`` targets every ``scrape_interval_s``."""

    def __init__(self, workdir: Path, targets: Sequence[str], scrape_interval_s: float) -> None:
        port = free_port()
        conf = workdir / "prometheus.yml"
        conf.write_text(
            _PROMETHEUS_YML.format(
                interval=f"{int(scrape_interval_s * 1000)}ms",
                targets=", ".join(f'"{t}"' for t in targets),
            )
        )
        super().__init__(
            "prometheus",
            [
                BINARIES["prometheus"],
                f"--config.file={conf}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            port,
            "/-/ready",
            workdir,
        )
        self._cleanup: Callable[[], None] | None = None

    def query(self, promql: str) -> list[dict[str, object]]:
        """An instant query's result vector."""
        answer = requests.get(self.url + "/api/v1/query", params={"query": promql}, timeout=10)
        answer.raise_for_status()
        result: list[dict[str, object]] = answer.json()["data"]["result"]
        return result

    def stop(self) -> None:
        super().stop()
        if self._cleanup is not None:
            self._cleanup()
            self._cleanup = None


def start_prometheus(
    targets: list[str], scrape_interval_s: float = 1.0, workdir: Path | None = None
) -> PrometheusServer:
    """A running Prometheus scraping ``targets`` (``"127.0.0.1:9433"``). Call ``stop()``.

    Without ``workdir`` the server gets a temp dir that ``stop()`` removes.
    """
    cleanup = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="prometheus-")
        workdir, cleanup = Path(tmp.name), tmp.cleanup
    server = PrometheusServer(workdir, targets, scrape_interval_s)
    server._cleanup = cleanup
    server.start()
    return server


class Mosquitto(ServerProcess):
    """The mosquitto MQTT broker on a loopback port: anonymous, or with one user.

    With persistence in its workdir, as Debian's default config has it: retained
    messages and persistent sessions (a subscriber's queued QoS 1 messages) survive a
    stop and start, so a test can count what arrived across a broker restart.
    """

    def __init__(
        self,
        workdir: Path,
        users: dict[str, str] | None = None,
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        """``tls``: (certificate chain, key) files; the listener then speaks only TLS."""
        port = free_fixed_port()  # tests stop and start it while clients keep retrying
        conf = workdir / "mosquitto.conf"
        lines = [
            # as root, mosquitto would switch to the mosquitto user, who cannot write here
            f"user {pwd.getpwuid(os.getuid()).pw_name}",
            f"listener {port} 127.0.0.1",
            "persistence true",
            f"persistence_location {workdir}/",
        ]
        if tls:
            lines += [f"certfile {tls[0]}", f"keyfile {tls[1]}"]
        if users:
            passwords = workdir / "passwords"
            for i, (user, password) in enumerate(users.items()):
                create = ["-c"] if i == 0 else []
                subprocess.run(
                    ["mosquitto_passwd", "-b", *create, str(passwords), user, password],
                    check=True,
                    capture_output=True,
                )
            lines += ["allow_anonymous false", f"password_file {passwords}"]
        else:
            lines += ["allow_anonymous true"]
        conf.write_text("\n".join(lines) + "\n")
        super().__init__(
            "mosquitto", [binary("mosquitto") or "mosquitto", "-c", str(conf)], port, "", workdir
        )

    def ready(self) -> bool:
        """The listener accepts connections."""
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            return False
        return True
