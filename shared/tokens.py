"""Gateway tokens at rest: reading a JWT's claims, the token cache and the login cooldown.

Owns the token worker's files in the state dir, one pair per Enlighten account:

* ``tokens-<account>.json``: ``{"tokens": {serial: jwt}}``, the last token fetched for
  each gateway, so a restart does not log in again;
* ``login-<account>.json``: consecutive login failures, the earliest time the next login
  is allowed and the time of the last good login, so a restart does not reset the
  cooldown and a broken password never hammers Enlighten.

Both are written 0600 through a temp file, fsync and ``os.replace`` (a crash leaves the
old file or the new one, never half of one) in a state dir created 0700. A full disk
(`shared.storage`) is logged once per episode and not raised: the token worker keeps
tokens and cooldown in memory and the next store tries again. Nothing here
checks a JWT's signature: only the gateway can, and it tells us with a 401.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson
import structlog

from shared.backoff import Backoff
from shared.errors import InvalidToken
from shared.storage import StorageEpisode, tolerant_write


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """What a JWT's payload says about itself."""

    expires_s: int  #: ``exp``, epoch seconds
    user_type: str  #: ``enphaseUser``: "owner" (~1 year) or "installer" (~12 h)
    serial: str | None  #: ``aud``: the gateway the token was issued for, when present
    issued_s: int | None = None  #: ``iat``, epoch seconds, when present


def read_claims(token: str) -> TokenClaims:
    """The claims of a JWT, without checking its signature; InvalidToken on anything else.

    The error text describes the shape only: a token must never end up in a log.
    """
    parts = token.strip().split(".")
    if len(parts) != 3:
        raise InvalidToken(f"not a JWT: expected 3 dot-separated parts, got {len(parts)}")
    try:
        raw = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        payload = orjson.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise InvalidToken("not a JWT: the payload is not base64url-encoded JSON") from exc
    if not isinstance(payload, dict):
        raise InvalidToken("not a JWT: the payload is not a JSON object")
    exp = payload.get("exp")
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        raise InvalidToken("JWT payload has no numeric 'exp' (expiry)")
    iat = payload.get("iat")
    aud = payload.get("aud")
    user = payload.get("enphaseUser")
    return TokenClaims(
        expires_s=int(exp),
        user_type=user if isinstance(user, str) else "unknown",
        serial=str(aud) if isinstance(aud, str | int) and not isinstance(aud, bool) else None,
        issued_s=int(iat) if isinstance(iat, int | float) and not isinstance(iat, bool) else None,
    )


def refresh_at(
    claims: TokenClaims, margin_s: float, fetched_s: float | None = None, keep_s: float = 0.0
) -> float:
    """When to replace a token: ``margin_s`` before exp, or at half-life if that is later.

    An installer token lives ~12 h: with a 30-day margin it would be due the moment it
    arrives, and the worker would log in on every wake. A token fetched at ``fetched_s``
    is kept at least ``keep_s`` even if it looks due (a clock that is off, an odd token).
    """
    born = claims.issued_s if claims.issued_s is not None else fetched_s
    if born is not None:
        margin_s = min(margin_s, max(claims.expires_s - born, 0) / 2)
    refresh = claims.expires_s - margin_s
    if fetched_s is not None:
        refresh = max(refresh, fetched_s + keep_s)
    return refresh


# --- private files in the state dir ---------------------------------------------------


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) readable by this user only; tighten it if it exists."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o077:
        path.chmod(0o700)
    return path


def write_private(path: Path, data: bytes) -> None:
    """Replace ``path`` atomically with ``data``, mode 0600 from the first byte."""
    ensure_private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    # The rename is durable only once the directory entry is on disk too.
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def safe_name(name: str) -> str:
    """A config label as a file-name part: anything but [A-Za-z0-9._-] becomes '_'."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name) or "_"


def _read_json(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; {} when it is missing or unreadable (start afresh)."""
    try:
        data = orjson.loads(path.read_bytes())
    except (FileNotFoundError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


# --- the login cooldown ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LoginState:
    """How the last logins went; persisted so restarts keep the cooldown."""

    failures: int = 0  #: consecutive failed logins
    next_login_s: float = 0.0  #: epoch seconds before which no login is attempted
    last_login_s: float | None = None  #: epoch seconds of the last successful login

    def failed(self, now: float, backoff_s: float, backoff_max_s: float) -> LoginState:
        """After a failed login: wait ``backoff_s`` doubling per failure, capped."""
        wait = Backoff(backoff_s, backoff_max_s).after(self.failures + 1)
        return LoginState(self.failures + 1, now + wait, self.last_login_s)

    def locked(self, now: float, wait_s: float) -> LoginState:
        """After an answer that says "not before ``wait_s``" (throttling, MFA)."""
        return LoginState(self.failures + 1, now + wait_s, self.last_login_s)

    def succeeded(self, now: float) -> LoginState:
        return LoginState(0, 0.0, now)


class TokenCache:
    """The token and login-state files of one account."""

    def __init__(self, state_dir: Path, account: str) -> None:
        self.tokens_path = state_dir / f"tokens-{safe_name(account)}.json"
        self.login_path = state_dir / f"login-{safe_name(account)}.json"
        self.storage = StorageEpisode(
            structlog.get_logger(), state_dir, f"account {account}: tokens and login cooldown"
        )

    def load_tokens(self) -> dict[str, str]:
        """serial -> token as last stored; entries of the wrong type are dropped."""
        tokens = _read_json(self.tokens_path).get("tokens", {})
        if not isinstance(tokens, dict):
            return {}
        return {s: t for s, t in tokens.items() if isinstance(s, str) and isinstance(t, str)}

    def store_tokens(self, tokens: dict[str, str]) -> None:
        data = orjson.dumps({"tokens": tokens}, option=orjson.OPT_SORT_KEYS)
        tolerant_write(self.storage, lambda: write_private(self.tokens_path, data))

    def load_login(self) -> LoginState:
        data = _read_json(self.login_path)
        try:
            last = data.get("last_login_s")
            return LoginState(
                failures=int(data.get("failures", 0)),
                next_login_s=float(data.get("next_login_s", 0.0)),
                last_login_s=None if last is None else float(last),
            )
        except (TypeError, ValueError):
            return LoginState()

    def store_login(self, state: LoginState) -> None:
        data = orjson.dumps(asdict(state))
        tolerant_write(self.storage, lambda: write_private(self.login_path, data))
