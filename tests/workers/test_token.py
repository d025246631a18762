"""The token keeper under a fake clock and a scripted cloud, and the worker process loop."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, TypeVar

import pytest
from structlog.testing import capture_logs

from shared.cloud import EnlightenClient
from shared.config import DAY_S, AccountConfig, CloudConfig, GatewayConfig
from shared.errors import CloudThrottled, CloudUnavailable, LoginRefused, MultiFactorRequired
from shared.gateway import GatewayClient
from shared.messages import (
    GatewayIdentified,
    GatewayInfo,
    Heartbeat,
    Stop,
    TokenIssued,
    TokenRejected,
)
from shared.simulator.cloud import SimulatedCloud
from shared.simulator.gateway import SimulatedGateway
from shared.simulator.timing import INSTANT
from shared.tokens import TokenCache, read_claims
from tests.jwts import make_jwt
from tests.workers.harness import RunningWorker, worker_on_pipes
from workers.token import TokenSettings, run
from workers.token_keeper import TokenKeeper

T = TypeVar("T")
FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "pyenphase"
MFA_EMAIL = "careful@example.com"

SERIAL = "122233344455"
OTHER = "122233344466"
NOW = 1_700_000_000.0
YEAR = 365 * DAY_S
PASSWORD = "hunter2-very-secret"
EMAIL = "owner@example.com"


class FakeClock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class ScriptedCloud:
    """Answers like Enlighten; ``login_error`` / ``token_error`` make it fail instead."""

    clock: FakeClock
    lifetime_s: float = YEAR
    login_error: Exception | None = None
    token_error: Exception | None = None
    logins: int = 0
    fetched: list[str] = field(default_factory=list)

    def login(self, email: str, password: str) -> str:
        assert (email, password) == (EMAIL, PASSWORD)
        self.logins += 1
        if self.login_error is not None:
            raise self.login_error
        return "session-1234567"

    def fetch_token(self, session_id: str, serial: str, username: str) -> str:
        assert (session_id, username) == ("session-1234567", EMAIL)
        if self.token_error is not None:
            raise self.token_error
        self.fetched.append(serial)
        now = self.clock()
        # The iat makes each token distinct even within one second.
        return make_jwt(now + self.lifetime_s, serial=serial, iat=now, jti=len(self.fetched))


def account(**overrides: float) -> AccountConfig:
    return AccountConfig(name="home", email=EMAIL, password=PASSWORD, **overrides)  # type: ignore[arg-type]


def gateway(
    name: str = "garage", serial: str | None = SERIAL, token: str | None = None
) -> GatewayConfig:
    return GatewayConfig(name=name, host="192.0.2.1", serial=serial, account="home", token=token)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def cloud(clock: FakeClock) -> ScriptedCloud:
    return ScriptedCloud(clock)


Keeper = Callable[..., TokenKeeper]


@pytest.fixture
def keeper(tmp_path: Path, clock: FakeClock, cloud: ScriptedCloud) -> Keeper:
    def make(acct: AccountConfig | None = None, *gateways: GatewayConfig) -> TokenKeeper:
        return TokenKeeper(acct or account(), gateways or (gateway(),), tmp_path, cloud, clock)

    return make


def test_first_start_logs_in_and_issues_a_token_for_each_gateway(
    keeper: Keeper, cloud: ScriptedCloud
) -> None:
    step = keeper(None, gateway(), gateway("shed", OTHER)).start()
    assert cloud.logins == 1
    assert sorted(m.serial for m in step.issued) == [SERIAL, OTHER]
    assert all(read_claims(m.token).serial == m.serial for m in step.issued)
    assert step.issued[0].user_type == "owner"


def test_a_restart_uses_the_cached_token_without_logging_in(
    keeper: Keeper, cloud: ScriptedCloud, clock: FakeClock
) -> None:
    first = keeper().start().issued
    clock.now += DAY_S
    second = keeper().start().issued
    assert cloud.logins == 1
    assert second == first


def test_the_token_is_refreshed_the_margin_before_it_expires(
    keeper: Keeper, cloud: ScriptedCloud, clock: FakeClock
) -> None:
    k = keeper()
    first = k.start()
    expected = first.issued[0].expires_s - 30 * DAY_S
    assert first.wake_at_s == expected
    clock.now = expected - 1
    assert k.on_timer().issued == []
    clock.now = first.wake_at_s
    renewed = k.on_timer().issued
    assert cloud.logins == 2
    assert renewed[0].expires_s > first.issued[0].expires_s
    assert TokenCache(k._cache.tokens_path.parent, "home").load_tokens()[SERIAL] == (  # type: ignore[union-attr]
        renewed[0].token
    )


def test_a_cached_token_inside_the_margin_is_issued_and_replaced_at_once(
    tmp_path: Path, keeper: Keeper, cloud: ScriptedCloud
) -> None:
    old = make_jwt(NOW + 10 * DAY_S, serial=SERIAL)
    TokenCache(tmp_path, "home").store_tokens({SERIAL: old})
    issued = keeper().start().issued
    assert cloud.logins == 1
    assert [m.token for m in issued] != [old]


def test_short_lived_installer_tokens_refresh_at_half_life_not_in_a_loop(
    keeper: Keeper, cloud: ScriptedCloud, clock: FakeClock
) -> None:
    cloud.lifetime_s = 12 * 3600
    k = keeper()
    step = k.start()
    assert step.wake_at_s == NOW + 6 * 3600
    clock.now += 3600
    assert k.on_timer().issued == []
    assert cloud.logins == 1


def test_wrong_password_backs_off_doubling_and_a_new_keeper_remembers(
    keeper: Keeper, cloud: ScriptedCloud, clock: FakeClock
) -> None:
    cloud.login_error = LoginRefused("Enlighten login: HTTP 401: the email or password is wrong")
    k = keeper()
    waits = []
    step = k.start()
    for _ in range(3):
        waits.append(step.wake_at_s - clock.now)
        clock.now = step.wake_at_s
        step = k.on_timer()
    assert waits == [60.0, 120.0, 240.0]
    assert cloud.logins == 4
    restarted = keeper().start()  # a restart does not reset the cooldown
    assert cloud.logins == 4
    assert restarted.wake_at_s == clock.now + 480.0


def test_the_backoff_is_capped_at_the_maximum(
    keeper: Keeper, cloud: ScriptedCloud, clock: FakeClock
) -> None:
    cloud.login_error = CloudUnavailable("down")
    k = keeper(account(login_backoff_s=60.0, login_backoff_max_s=300.0))
    step = k.start()
    for _ in range(6):
        clock.now = step.wake_at_s
        step = k.on_timer()
    assert step.wake_at_s - clock.now == 300.0


def test_throttling_waits_at_least_what_the_cloud_asked(
    keeper: Keeper, cloud: ScriptedCloud, clock: FakeClock
) -> None:
    cloud.login_error = CloudThrottled("429", retry_after_s=900.0)
    assert keeper().start().wake_at_s == clock.now + 900.0


def test_multi_factor_login_is_an_error_with_advice_and_waits_the_maximum(
    keeper: Keeper, cloud: ScriptedCloud, clock: FakeClock
) -> None:
    cloud.login_error = MultiFactorRequired()
    with capture_logs() as logs:
        step = keeper().start()
    assert step.wake_at_s == clock.now + DAY_S
    errors = [e for e in logs if e["log_level"] == "error"]
    assert "multi-factor" in errors[0]["error"]
    assert "static long-lived token" in errors[0]["error"]


def test_a_rejection_fetches_a_new_token_once_per_cooldown(
    keeper: Keeper, cloud: ScriptedCloud, clock: FakeClock
) -> None:
    k = keeper(account(reauth_cooldown_s=600.0))
    k.start()
    clock.now += 700
    fresh = k.on_rejected(TokenRejected(SERIAL, "garage"))
    assert cloud.logins == 2 and len(fresh.issued) == 1
    clock.now += 60
    again = k.on_rejected(TokenRejected(SERIAL, "garage"))
    assert again.issued == [] and cloud.logins == 2
    assert again.wake_at_s == clock.now - 60 + 600
    clock.now = again.wake_at_s
    assert len(k.on_timer().issued) == 1 and cloud.logins == 3


def test_a_rejection_right_after_login_waits_for_the_cooldown(
    keeper: Keeper, cloud: ScriptedCloud, clock: FakeClock
) -> None:
    k = keeper(account(reauth_cooldown_s=600.0))
    k.start()
    for _ in range(20):  # a poller reports every failed poll
        step = k.on_rejected(TokenRejected(SERIAL, "garage"))
    assert cloud.logins == 1 and step.wake_at_s == NOW + 600


def test_a_serial_learned_from_info_gets_a_token(keeper: Keeper, cloud: ScriptedCloud) -> None:
    k = keeper(None, gateway(serial=None))
    assert k.start().issued == [] and cloud.logins == 0
    info = GatewayInfo(SERIAL, "D7.6.175", (7, 6, 175), web_tokens=True, metered=True)
    issued = k.on_identified(GatewayIdentified("garage", info)).issued
    assert [m.serial for m in issued] == [SERIAL]
    # A restarted poller identifies again: it gets the held token, no new login.
    assert k.on_identified(GatewayIdentified("garage", info)).issued == issued
    assert cloud.logins == 1


def test_legacy_firmware_needs_no_token(keeper: Keeper, cloud: ScriptedCloud) -> None:
    k = keeper(None, gateway(serial=None))
    k.start()
    info = GatewayInfo(SERIAL, "R3.9.36", (3, 9, 36), web_tokens=False, metered=False)
    assert k.on_identified(GatewayIdentified("garage", info)).issued == []
    assert cloud.logins == 0


def test_a_static_token_is_issued_as_is_without_an_account(
    tmp_path: Path, clock: FakeClock
) -> None:
    token = make_jwt(NOW + YEAR, serial=SERIAL)
    k = TokenKeeper(None, [gateway(token=token)], tmp_path, None, clock)
    (issued,) = k.start().issued
    assert (issued.serial, issued.token, issued.expires_s) == (SERIAL, token, int(NOW + YEAR))
    assert list(tmp_path.iterdir()) == []  # nothing to cache


def test_an_expired_static_token_is_logged_loudly_and_still_issued(
    tmp_path: Path, clock: FakeClock
) -> None:
    token = make_jwt(NOW - 1, serial=SERIAL)
    with capture_logs() as logs:
        issued = TokenKeeper(None, [gateway(token=token)], tmp_path, None, clock).start().issued
    assert len(issued) == 1
    assert any(e["log_level"] == "error" and "EXPIRED" in e["event"] for e in logs)


def test_a_static_token_without_configured_serial_uses_the_tokens_audience(
    tmp_path: Path, clock: FakeClock
) -> None:
    token = make_jwt(NOW + YEAR, serial=OTHER)
    (issued,) = (
        TokenKeeper(None, [gateway(serial=None, token=token)], tmp_path, None, clock).start().issued
    )
    assert issued.serial == OTHER


def test_a_rejected_static_token_is_an_error_not_a_login(
    tmp_path: Path, clock: FakeClock, cloud: ScriptedCloud
) -> None:
    token = make_jwt(NOW + YEAR, serial=SERIAL)
    k = TokenKeeper(account(), [gateway(token=token)], tmp_path, cloud, clock)
    k.start()
    with capture_logs() as logs:
        for _ in range(5):  # a poller reports every failed poll
            assert k.on_rejected(TokenRejected(SERIAL, "garage")).issued == []
    assert cloud.logins == 0
    (error,) = logs
    assert "replace it" in error["event"]


def test_a_failed_token_fetch_backs_off_too(
    keeper: Keeper, cloud: ScriptedCloud, clock: FakeClock
) -> None:
    cloud.token_error = LoginRefused("the account may not own this gateway")
    step = keeper().start()
    clock.now = step.wake_at_s
    step = keeper().on_timer()
    assert cloud.logins == 2
    assert step.wake_at_s - clock.now == 120.0


def test_no_secret_reaches_a_log_line_in_login_refresh_and_failures(
    keeper: Keeper, cloud: ScriptedCloud, clock: FakeClock
) -> None:
    with capture_logs() as logs:
        k = keeper(None, gateway(), gateway("shed", OTHER))
        tokens = [m.token for m in k.start().issued]
        clock.now = k.wake_at_s
        tokens += [m.token for m in k.on_timer().issued]
        clock.now += 700
        tokens += [m.token for m in k.on_rejected(TokenRejected(SERIAL, "garage")).issued]
        cloud.login_error = LoginRefused("wrong password")
        clock.now = k.wake_at_s
        k.on_timer()
    assert len(tokens) == 5 and cloud.logins == 4  # the last one refused
    text = repr(logs)
    for secret in (PASSWORD, EMAIL, "session-1234567", *tokens):
        assert secret not in text
    assert "new token" in text and "Enlighten login failed" in text


# --- against the simulated cloud and gateway, over real HTTPS ---------------------------


@pytest.fixture
def sim_cloud(
    tmp_path_factory: pytest.TempPathFactory, clock: FakeClock
) -> Iterator[SimulatedCloud]:
    with SimulatedCloud(
        accounts={EMAIL: PASSWORD, MFA_EMAIL: PASSWORD},
        mfa_accounts=(MFA_EMAIL,),
        clock=clock,
        state_dir=tmp_path_factory.mktemp("cloud"),
    ) as sim:
        yield sim


@pytest.fixture
def sim_gateway(sim_cloud: SimulatedCloud, clock: FakeClock) -> Iterator[SimulatedGateway]:
    with SimulatedGateway(
        FIXTURES / "7.6.175_with_cts", cloud=sim_cloud, serial=SERIAL, clock=clock, latency=INSTANT
    ) as sim:
        yield sim


def real_account(sim: SimulatedCloud, email: str = EMAIL, **overrides: Any) -> AccountConfig:
    cloud = CloudConfig(login_url=sim.url, token_url=sim.url, ca_file=sim.ca_file)
    return AccountConfig(name="home", email=email, password=PASSWORD, cloud=cloud, **overrides)


def enlighten(sim: SimulatedCloud) -> EnlightenClient:
    return EnlightenClient(real_account(sim).cloud, timeout=(5.0, 5.0))


def gateway_accepts(sim: SimulatedGateway, token: str) -> bool:
    host = sim.url.split("://", 1)[1]
    with GatewayClient(
        GatewayConfig(name="garage", host=host, read_timeout_s=5.0), pin_store=None
    ) as client:
        client.info()
        client.set_token(token)
        return client.check_token()


def test_a_token_from_the_simulated_cloud_opens_the_gateway_and_survives_restarts(
    tmp_path: Path, clock: FakeClock, sim_cloud: SimulatedCloud, sim_gateway: SimulatedGateway
) -> None:
    (issued,) = (
        TokenKeeper(real_account(sim_cloud), [gateway()], tmp_path, enlighten(sim_cloud), clock)
        .start()
        .issued
    )
    assert sim_cloud.logins == 1
    assert gateway_accepts(sim_gateway, issued.token)
    clock.now += 10 * DAY_S
    again = (
        TokenKeeper(real_account(sim_cloud), [gateway()], tmp_path, enlighten(sim_cloud), clock)
        .start()
        .issued
    )
    assert again == [issued] and sim_cloud.logins == 1


def test_the_token_is_renewed_before_the_gateway_would_refuse_it(
    tmp_path: Path, clock: FakeClock, sim_cloud: SimulatedCloud, sim_gateway: SimulatedGateway
) -> None:
    keeper = TokenKeeper(
        real_account(sim_cloud), [gateway()], tmp_path, enlighten(sim_cloud), clock
    )
    (first,) = keeper.start().issued
    clock.now = keeper.wake_at_s
    (renewed,) = keeper.on_timer().issued
    assert sim_cloud.logins == 2
    clock.now = first.expires_s + 1  # the old one has expired now; the new one has not
    assert not gateway_accepts(sim_gateway, first.token)
    assert gateway_accepts(sim_gateway, renewed.token)


def test_a_wrong_password_at_the_real_cloud_backs_off_across_restarts(
    tmp_path: Path, clock: FakeClock, sim_cloud: SimulatedCloud
) -> None:
    wrong = replace(real_account(sim_cloud), password="not-the-password")
    keeper = TokenKeeper(wrong, [gateway()], tmp_path, _Unchecked(enlighten(sim_cloud)), clock)
    step = keeper.start()
    clock.now = step.wake_at_s
    step = keeper.on_timer()
    restarted = TokenKeeper(wrong, [gateway()], tmp_path, _Unchecked(enlighten(sim_cloud)), clock)
    assert restarted.start().wake_at_s == step.wake_at_s == clock.now + 120.0
    assert sim_cloud.logins == 0


def test_multi_factor_accounts_get_the_advice_in_the_log(
    tmp_path: Path, clock: FakeClock, sim_cloud: SimulatedCloud
) -> None:
    mfa = real_account(sim_cloud, email=MFA_EMAIL)
    with capture_logs() as logs:
        TokenKeeper(mfa, [gateway()], tmp_path, enlighten(sim_cloud), clock).start()
    (error,) = [e for e in logs if e["log_level"] == "error"]
    assert error["kind"] == "mfa" and "static long-lived token" in error["error"]


class _Unchecked:
    """The real client, with any email/password (the scripted cloud asserts them)."""

    def __init__(self, client: EnlightenClient) -> None:
        self._client = client

    def login(self, email: str, password: str) -> str:
        return self._client.login(email, password)

    def fetch_token(self, session_id: str, serial: str, username: str) -> str:
        return self._client.fetch_token(session_id, serial, username)


# --- the worker process body ----------------------------------------------------------


@pytest.fixture
def worker(tmp_path: Path, sim_cloud: SimulatedCloud) -> Iterator[RunningWorker]:
    """`run` on a thread with a real Mailbox on real pipes; stopped after the test."""
    settings = TokenSettings(real_account(sim_cloud), (gateway(serial=None),), tmp_path)
    with worker_on_pipes("token:home", lambda mailbox: run(settings, mailbox)) as running:
        yield running


def receive_until(conn: Connection, kind: type[T], timeout_s: float = 10.0) -> T:
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        if conn.poll(left):
            message = conn.recv()
            if isinstance(message, kind):
                return message
    raise AssertionError(f"no {kind.__name__} within {timeout_s} s")


def test_the_worker_serves_an_identified_gateway_and_stops_on_request(
    worker: RunningWorker,
    sim_cloud: SimulatedCloud,
    caplog: pytest.LogCaptureFixture,
) -> None:
    inbox, outbox, thread = worker
    info = GatewayInfo(SERIAL, "D7.6.175", (7, 6, 175), web_tokens=True, metered=True)
    with capture_logs() as logs, caplog.at_level(logging.DEBUG):
        receive_until(outbox, Heartbeat)
        inbox.send(GatewayIdentified("garage", info))
        issued = receive_until(outbox, TokenIssued)
        assert sim_cloud.token_is_valid(issued.token, SERIAL)
        inbox.send("what is this?")
        inbox.send(Stop())
        thread.join(timeout=10)
    assert not thread.is_alive()
    assert any(e["event"] == "unexpected message" for e in logs)
    text = repr(logs) + caplog.text
    for secret in (PASSWORD, EMAIL, issued.token):
        assert secret not in text
