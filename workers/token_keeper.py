"""What a token worker decides: which gateway tokens to fetch, cache, renew and issue.

`TokenKeeper` is the whole behaviour of the token worker (`workers.token` is only the
process around it), with the clock, the cloud client and the state dir injected and no
sleeping, so tests and ``bench.year`` drive it with a fake clock; each method returns the
tokens to send and when it next wants to be woken (a `Step`).

Rules:

* a static token is issued as is (an expired one is logged loudly, still issued: the
  gateway is the judge);
* with an account, a cached token (state dir) is used while it is valid for longer than
  the refresh margin; otherwise the keeper logs in. Tokens are refreshed ``refresh_margin_s``
  before ``exp`` (at half-life for tokens shorter than twice the margin, e.g. installer
  tokens), so the gateway never sees an expired one;
* a failed login waits ``login_backoff_s``, doubling to ``login_backoff_max_s``; multi-factor
  login waits the maximum. That state is persisted, so restarts never hammer Enlighten;
* a `TokenRejected` forces a new token for that serial, but at most one login per
  ``reauth_cooldown_s``: pollers report every failed poll, and the cloud must not see that.

Secrets (password, email, session id, tokens) are never passed to a log call; tokens are
also registered with `shared.logs.register_secrets` in case something else prints one.
Reads and writes only the account's token cache in the state dir (`shared.tokens`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import structlog

from shared.config import AccountConfig, GatewayConfig
from shared.errors import CloudError, CloudThrottled, InvalidToken, MultiFactorRequired
from shared.logs import register_secrets
from shared.messages import GatewayIdentified, TokenIssued, TokenRejected
from shared.tokens import LoginState, TokenCache, TokenClaims, read_claims, refresh_at

IDLE_WAKE_S = 3600.0  #: the longest the worker sleeps: nothing to do, or a far wake
MIN_WAKE_S = 1.0  #: never spin, whatever the arithmetic says


class Step(NamedTuple):
    """What the keeper wants done: tokens to send, and when to call `on_timer`."""

    issued: list[TokenIssued]
    wake_at_s: float  #: epoch seconds


class Cloud(Protocol):
    def login(self, email: str, password: str) -> str: ...
    def fetch_token(self, session_id: str, serial: str, username: str) -> str: ...


@dataclass(frozen=True, slots=True)
class Held:
    """A token the keeper holds for one serial."""

    token: str
    claims: TokenClaims
    refresh_at_s: float  #: get a new one from this time on

    def issued(self, serial: str) -> TokenIssued:
        return TokenIssued(serial, self.token, self.claims.expires_s, self.claims.user_type)


def _when(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="seconds")


class TokenKeeper:
    """Decides which tokens to fetch, cache and issue; never sleeps."""

    def __init__(
        self,
        account: AccountConfig | None,
        gateways: Sequence[GatewayConfig],
        cache_dir: Path,
        cloud_client: Cloud | None,
        clock: Callable[[], float] = time.time,
        worker: str = "token",
    ) -> None:
        if account is not None and cloud_client is None:
            raise ValueError("an account needs a cloud client")
        self._account = account
        self._cloud = cloud_client
        self._clock = clock
        self._log = structlog.get_logger().bind(
            worker=worker, account=account.name if account else None
        )
        self._static = {g.name: g.token for g in gateways if g.token}
        self._serials = {g.name: g.serial for g in gateways}  # envoy -> serial once known
        # Serials whose tokens come from the account (learned later through /info too).
        self._wanted = {g.serial for g in gateways if g.serial and not g.token}
        self._held: dict[str, Held] = {}
        self._rejected: set[str] = set()  # serials whose token a gateway refused
        self._noted: set[tuple[str, str]] = set()  # rejections we cannot act on, logged
        self._cache = TokenCache(cache_dir, account.name) if account else None
        self._login = self._cache.load_login() if self._cache else LoginState()
        self.wake_at_s = clock()

    # --- events -----------------------------------------------------------------------

    def start(self) -> Step:
        """Static tokens, cached tokens, and a login if any gateway still needs one."""
        now = self._clock()
        issued: dict[str, TokenIssued] = {}
        for envoy, token in self._static.items():
            message = self._static_token(envoy, self._serials.get(envoy), token, now)
            if message is not None:
                issued[message.serial] = message
        if self._cache is not None:
            for serial, token in self._cache.load_tokens().items():
                try:
                    claims = read_claims(token)
                except InvalidToken:
                    self._log.warning("dropping an unreadable cached token", serial=serial)
                    continue
                register_secrets([token], slot=self._secret_slot(serial))
                self._held[serial] = Held(token, claims, self._refresh_at(claims, None))
            for serial in self._wanted:
                held = self._held.get(serial)
                if held is not None and held.claims.expires_s > now:
                    self._log.info(
                        "using cached token", serial=serial, expires=_when(held.claims.expires_s)
                    )
                    issued[serial] = held.issued(serial)
        return self._step(now, issued)

    def on_timer(self) -> Step:
        return self._step(self._clock(), {})

    def on_identified(self, message: GatewayIdentified) -> Step:
        """A poller read /info: serve that serial (again: the poller may be new)."""
        now = self._clock()
        envoy, info = message.envoy, message.info
        if envoy not in self._serials:
            self._log.warning("identified gateway is not served here", envoy=envoy)
            return self._step(now, {})
        self._serials[envoy] = info.serial
        if not info.web_tokens:
            return self._step(now, {})  # legacy firmware: digest auth, no token
        issued: dict[str, TokenIssued] = {}
        token = self._static.get(envoy)
        if token is not None:
            message_out = self._static_token(envoy, info.serial, token, now)
            if message_out is not None:
                issued[info.serial] = message_out
        elif self._account is not None:
            self._wanted.add(info.serial)
            held = self._held.get(info.serial)
            if held is not None and held.claims.expires_s > now:
                issued[info.serial] = held.issued(info.serial)
        else:
            self._log.error(
                "gateway needs a token but has neither a static token nor an "
                "account: set token: or account: for it",
                envoy=envoy,
            )
        return self._step(now, issued)

    def on_rejected(self, message: TokenRejected) -> Step:
        """A gateway refused the token: fetch a new one, within the re-auth cooldown."""
        now = self._clock()
        if (message.envoy, message.serial) in self._noted:
            pass  # pollers report every failed poll: say it once
        elif message.envoy in self._static:
            self._noted.add((message.envoy, message.serial))
            self._log.error(
                "the gateway refused the static token: replace it (token: or "
                "ENVOY_TOKEN) with one from https://entrez.enphaseenergy.com",
                envoy=message.envoy,
                serial=message.serial,
            )
        elif message.serial not in self._wanted:
            self._noted.add((message.envoy, message.serial))
            self._log.warning(
                "token rejected for a gateway this worker does not serve",
                envoy=message.envoy,
                serial=message.serial,
            )
        elif message.serial not in self._rejected:
            self._rejected.add(message.serial)
            allowed = self._reauth_allowed_at()
            self._log.warning(
                "gateway refused our token: getting a new one",
                envoy=message.envoy,
                serial=message.serial,
                **({"not_before": _when(allowed)} if allowed > now else {}),
            )
        return self._step(now, {})

    # --- the decision -----------------------------------------------------------------

    def _step(self, now: float, issued: dict[str, TokenIssued]) -> Step:
        if self._account is not None:
            due = self._due(now)
            if due and now >= self._login.next_login_s:
                issued.update(self._renew(due, now))
        self.wake_at_s = self._next_wake(now)
        return Step(list(issued.values()), self.wake_at_s)

    def _due(self, now: float) -> list[str]:
        """Serials that need a new token now (ignoring the login cooldown)."""
        due = []
        for serial in sorted(self._wanted):
            held = self._held.get(serial)
            expiring = held is None or now >= held.refresh_at_s
            refused = serial in self._rejected and now >= self._reauth_allowed_at()
            if expiring or refused:
                due.append(serial)
        return due

    def _next_wake(self, now: float) -> float:
        times: list[float] = []
        for serial in self._wanted:
            held = self._held.get(serial)
            if held is None:
                times.append(self._login.next_login_s)
                continue
            times.append(max(held.refresh_at_s, self._login.next_login_s))
            if serial in self._rejected:
                times.append(max(self._reauth_allowed_at(), self._login.next_login_s))
        return max(min(times, default=now + IDLE_WAKE_S), now + MIN_WAKE_S)

    def _reauth_allowed_at(self) -> float:
        assert self._account is not None
        last = self._login.last_login_s
        return float("-inf") if last is None else last + self._account.reauth_cooldown_s

    def _secret_slot(self, serial: str) -> str:
        """The log mask's slot for this account's token of ``serial``: a renewal replaces it."""
        assert self._account is not None
        return f"token:{self._account.name}:{serial}"

    def _refresh_at(self, claims: TokenClaims, fetched_s: float | None) -> float:
        assert self._account is not None
        account = self._account
        return refresh_at(claims, account.refresh_margin_s, fetched_s, account.reauth_cooldown_s)

    def _renew(self, serials: list[str], now: float) -> dict[str, TokenIssued]:
        """Log in once and fetch a token for each of ``serials``."""
        account, cloud, cache = self._account, self._cloud, self._cache
        assert account is not None and cloud is not None and cache is not None
        log = self._log.bind(serials=serials)
        try:
            session_id = cloud.login(account.email, account.password)
        except CloudError as error:
            self._login_failed(error, now, log)
            return {}
        state = replace(self._login, last_login_s=now)
        failed = False
        issued: dict[str, TokenIssued] = {}
        for serial in serials:
            try:
                token = cloud.fetch_token(session_id, serial, account.email)
                register_secrets([token], slot=self._secret_slot(serial))
                claims = read_claims(token)
            except (CloudError, InvalidToken) as error:
                failed = True
                log.error(
                    "could not get a token",
                    serial=serial,
                    error=str(error),
                    kind=getattr(error, "kind", "invalid"),
                )
                continue
            if claims.expires_s <= now:
                log.error(
                    "the cloud issued an expired token: is this machine's clock right?",
                    serial=serial,
                    expires=_when(claims.expires_s),
                )
            held = Held(token, claims, self._refresh_at(claims, now))
            self._held[serial] = held
            self._rejected.discard(serial)
            issued[serial] = held.issued(serial)
            log.info(
                "new token",
                serial=serial,
                user_type=claims.user_type,
                expires=_when(claims.expires_s),
                refresh=_when(held.refresh_at_s),
            )
        if failed:
            state = state.failed(now, account.login_backoff_s, account.login_backoff_max_s)
        else:
            state = state.succeeded(now)
        self._login = state
        self._persist(tokens=bool(issued))
        return issued

    def _login_failed(self, error: CloudError, now: float, log: Any) -> None:
        assert self._account is not None
        base, cap = self._account.login_backoff_s, self._account.login_backoff_max_s
        if isinstance(error, MultiFactorRequired):
            self._login = self._login.locked(now, cap)
        elif isinstance(error, CloudThrottled):
            backoff = self._login.failed(now, base, cap)
            wait = max(backoff.next_login_s - now, error.retry_after_s or 0.0)
            self._login = self._login.locked(now, wait)
        else:
            self._login = self._login.failed(now, base, cap)
        log.error(
            "Enlighten login failed",
            error=str(error),
            kind=error.kind,
            failures=self._login.failures,
            next_login=_when(self._login.next_login_s),
        )
        self._persist(tokens=False)

    def _persist(self, tokens: bool) -> None:
        assert self._cache is not None
        try:
            if tokens:
                self._cache.store_tokens({s: h.token for s, h in sorted(self._held.items())})
            self._cache.store_login(self._login)
        except OSError as error:
            # Keep working from memory; the next restart may log in once more.
            self._log.error("cannot write the token cache", error=str(error))

    def _static_token(
        self, envoy: str, serial: str | None, token: str, now: float
    ) -> TokenIssued | None:
        register_secrets([token])
        try:
            claims = read_claims(token)
        except InvalidToken as error:
            self._log.error(
                "the static token is not a readable JWT: check token: or ENVOY_TOKEN",
                envoy=envoy,
                error=str(error),
            )
            return None
        serial = serial or claims.serial
        if serial is None:
            return None  # issued once a poller reports the serial from /info
        if claims.serial is not None and claims.serial != serial:
            self._log.warning(
                "the static token was issued for another gateway",
                envoy=envoy,
                serial=serial,
                token_serial=claims.serial,
            )
        if claims.expires_s <= now:
            self._log.error(
                "the static token has EXPIRED: the gateway will refuse it; get a "
                "new one from https://entrez.enphaseenergy.com",
                envoy=envoy,
                serial=serial,
                expired=_when(claims.expires_s),
            )
        return TokenIssued(serial, token, claims.expires_s, claims.user_type)
