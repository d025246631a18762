"""Security promises, checked on a real run: secrets stay out of logs, files stay private.

One real site (the chaos bench's world: simulated cloud, three simulated gateways, the
real supervisor, SQLite and VictoriaMetrics when installed) runs for a while with a
worker killed and a token rejected, so the token worker logs in again; then everything
it logged and published is searched for the password, the InfluxDB token and every
gateway token it held. The rest are focused checks of the config loader, the cloud
client and certificate pinning against the simulator.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from bench import chaos
from shared.cloud import EnlightenClient
from shared.config import CloudConfig, GatewayConfig
from shared.config_loader import load_config
from shared.errors import CertificateMismatch, CloudError, ConfigError
from shared.gateway import GatewayClient
from shared.parsers import parse_production
from shared.simulator import INSTANT, SimulatedCloud, SimulatedGateway
from shared.simulator.faults import Fault, FaultKind
from tests.supervisor.conftest import wait_for

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[chaos.Run]:
    run = chaos.build_world(
        tmp_path_factory.mktemp("secure"), poll_s=1.0, with_db=True, latency=INSTANT
    )
    try:
        chaos.start_supervisor(run)
        db = run.state_dir / "envoy.sqlite3"
        wait_for(lambda: db.exists() and len(chaos.worker_pids(run)) >= 8, 60, "workers running")
        time.sleep(3)
        run.gateways["gw1"].faults.set(
            "/ivp/meters/readings", Fault(FaultKind.UNAUTHORIZED, times=3)
        )  # the power tick's endpoint
        wait_for(lambda: run.cloud.logins >= 1, 30, "the token worker to log in again")
        if run.vm is not None:
            run.vm.stop()  # data waits in the spool: its files must be private too
        pids = chaos.worker_pids(run)
        os.kill(pids["power:gw2"], signal.SIGKILL)
        time.sleep(4)
        spool_status = chaos.status(run)
        (run.workdir / "status-copy.json").write_bytes(orjson.dumps(spool_status))
        chaos.stop_supervisor(run, signal.SIGTERM)
        yield run
    finally:
        if run.supervisor is not None:
            chaos.stop_supervisor(run, signal.SIGKILL)
        for gw in run.gateways.values():
            gw.stop()
        run.cloud.close()
        if run.vm is not None and run.vm.running:
            run.vm.stop()


def secrets_of(run: chaos.Run) -> list[str]:
    found = [chaos.PASSWORD, chaos.INFLUX_TOKEN]
    for cache in run.state_dir.glob("tokens-*.json"):
        found += orjson.loads(cache.read_bytes())["tokens"].values()
    return found


def test_the_run_held_real_tokens_to_look_for(finished_run: chaos.Run) -> None:
    assert len(secrets_of(finished_run)) >= 4  # password, influx token, two gateway tokens
    assert finished_run.cloud.logins >= 1


def test_no_secret_appears_in_anything_the_run_logged_or_published(
    finished_run: chaos.Run,
) -> None:
    published = [finished_run.log, finished_run.workdir / "status-copy.json"]
    published += [finished_run.state_dir / "status.json"]
    for path in published:
        text = path.read_bytes()
        assert text  # something was written
        for secret in secrets_of(finished_run):
            assert secret.encode() not in text, f"a secret ({secret[:4]}...) is in {path.name}"


def test_no_secret_appears_in_the_check_output(finished_run: chaos.Run) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "supervisor",
            "--config",
            str(finished_run.workdir / "site.yml"),
            "--check",
        ],
        cwd=REPO,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for secret in (chaos.PASSWORD, chaos.INFLUX_TOKEN):
        assert secret.encode() not in result.stdout + result.stderr


def test_the_state_dir_is_0700_and_every_token_spool_and_journal_file_in_it_0600(
    finished_run: chaos.Run,
) -> None:
    state = finished_run.state_dir
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    private = [*state.glob("tokens-*.json"), *state.glob("login-*.json")]
    private += [p for p in state.rglob("*") if "spool" in str(p.relative_to(state)) and p.is_file()]
    assert any("tokens-" in p.name for p in private)
    if finished_run.vm is not None:
        assert any("spool" in str(p) for p in private), "expected spool files: the db was down"
    for path in private:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_no_worker_of_the_run_is_left_behind(finished_run: chaos.Run) -> None:
    assert finished_run.orphans == []
    assert finished_run.supervisor_exit_codes == [0]


# --- the config file ----------------------------------------------------------------------


SITE_WITH_PASSWORD = """\
state_dir: {state}
accounts:
  - {{name: home, email: me@example.com, password: hunter2-secret}}
envoys:
  - {{name: garage, host: 192.0.2.1, account: home}}
"""


def test_a_config_readable_by_others_holding_a_secret_is_accepted_with_a_warning(
    tmp_path: Path,
) -> None:
    site = tmp_path / "site.yml"
    site.write_text(SITE_WITH_PASSWORD.format(state=tmp_path / "state"))
    site.chmod(0o644)
    config = load_config(site, environ={})
    (warning,) = config.warnings
    assert "readable by others" in warning and "chmod 600" in warning
    assert "hunter2-secret" not in warning


def test_a_private_config_holding_a_secret_gets_no_warning(tmp_path: Path) -> None:
    site = tmp_path / "site.yml"
    site.write_text(SITE_WITH_PASSWORD.format(state=tmp_path / "state"))
    site.chmod(0o600)
    assert load_config(site, environ={}).warnings == ()


@pytest.mark.parametrize(
    "cloud",
    [
        "{login_url: 'http://enlighten.example/login', token_url: 'https://e.example/t'}",
        "{verify: false}",
        "{verify_tls: false}",
        "{insecure: true}",
        "{ca_file: ''}",
    ],
)
def test_cloud_tls_verification_cannot_be_turned_off_in_the_config(
    tmp_path: Path, cloud: str
) -> None:
    site = tmp_path / "site.yml"
    text = SITE_WITH_PASSWORD.format(state=tmp_path / "state")
    site.write_text(text.replace("password: hunter2-secret}", f"password: x, cloud: {cloud}}}"))
    site.chmod(0o600)
    with pytest.raises(ConfigError) as caught:
        load_config(site, environ={})
    assert any("cloud" in problem for problem in caught.value.problems)


def test_the_cloud_client_refuses_a_server_its_trust_store_does_not_vouch_for(
    tmp_path: Path,
) -> None:
    with SimulatedCloud(accounts={"me@example.com": "pw"}, state_dir=tmp_path) as cloud:
        client = EnlightenClient(CloudConfig(cloud.url, cloud.url, None))  # system CAs only
        with pytest.raises(CloudError) as caught:
            client.login("me@example.com", "pw")
        client.close()
    assert cloud.logins == 0
    assert "pw" not in str(caught.value).replace("pwd", "")


def test_a_changed_pinned_gateway_certificate_is_refused_with_re_pin_advice(
    tmp_path: Path,
) -> None:
    with SimulatedGateway(seed=4, latency=INSTANT) as gw:
        config = GatewayConfig(
            name="garage", host=gw.url.split("://")[1], scheme="https", pin_certificate=True
        )
        token = gw.issue_token()
        first = GatewayClient(config, pin_store=tmp_path)
        first.set_token(token)
        assert first.fetch("/production.json?details=1", parse_production).samples
        pins = list(tmp_path.glob("gateway-cert-*"))
        assert len(pins) == 1
        assert stat.S_IMODE(pins[0].stat().st_mode) == 0o600
        gw.rotate_certificate()  # the gateway was replaced, or someone is in between
        second = GatewayClient(config, pin_store=tmp_path)
        second.set_token(token)
        with pytest.raises(CertificateMismatch) as caught:
            second.fetch("/production.json?details=1", parse_production)
    message = str(caught.value)
    assert "delete" in message and str(pins[0]) in message
    assert token not in message
    # The handshake failed before any request: the token went to the old gateway only.
    assert len([r for r in gw.served if r.endpoint == "/production.json"]) == 1


def test_a_spool_file_and_its_wal_are_private_whatever_the_umask(tmp_path: Path) -> None:
    from workers.spool import Spool

    old = os.umask(0o022)
    try:
        spool = Spool(tmp_path / "spool-x.sqlite3", max_bytes=1 << 20)
        spool.put(b"power,envoy=a p_w=1.0 1\n", "high")
    finally:
        os.umask(old)
    files = list(tmp_path.glob("spool-x.sqlite3*"))
    assert len(files) >= 2  # the database and its WAL
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
