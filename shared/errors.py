"""The project's one error hierarchy.

Every error a user can see derives from `EnvoyLoggerError` and carries the facts as
fields (endpoint, status, excerpt, file, key path), so callers can count and sort them
without parsing messages. ``str(error)`` is always one line that names the thing at
fault and, where there is one, what to do next. Error text never contains a secret.
"""

from __future__ import annotations

EXCERPT_CHARS = 60


def excerpt(body: bytes | str, limit: int = EXCERPT_CHARS) -> str:
    """The start of a body as one short printable line, for error messages."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class EnvoyLoggerError(Exception):
    """Base of every error this project raises on purpose."""


# --- gateway responses ----------------------------------------------------------------


class ParseError(EnvoyLoggerError):
    """A gateway response that is not what the endpoint should return."""

    def __init__(self, endpoint: str, reason: str, body: bytes | str = b"") -> None:
        self.endpoint = endpoint
        self.reason = reason
        self.excerpt = excerpt(body)
        super().__init__(f"{endpoint}: {reason}: {self.excerpt!r}")


# --- talking to a gateway -------------------------------------------------------------


class GatewayError(EnvoyLoggerError):
    """A request to a gateway failed. Subclasses say how, so pollers can count by kind."""

    kind = "error"  #: a short label for metrics and status ("timeout", "auth", ...)

    def __init__(self, envoy: str, endpoint: str, detail: str) -> None:
        self.envoy = envoy
        self.endpoint = endpoint
        self.detail = detail
        super().__init__(f"{envoy} {endpoint}: {detail}")


class GatewayTimeout(GatewayError):
    """No answer within the read or connect timeout."""

    kind = "timeout"


class GatewayUnreachable(GatewayError):
    """Connection refused, reset, or no route: the gateway is off the network."""

    kind = "unreachable"


class GatewayAuthError(GatewayError):
    """401/403: the token (or digest password) was refused."""

    kind = "auth"


class GatewayHTTPError(GatewayError):
    """Any other unexpected status (5xx, 404, a redirect we do not follow)."""

    kind = "http"

    def __init__(self, envoy: str, endpoint: str, status: int, body: bytes = b"") -> None:
        self.status = status
        detail = f"HTTP {status}"
        if body:
            detail += f": {excerpt(body)!r}"
        super().__init__(envoy, endpoint, detail)


class GatewayBadResponse(GatewayError):
    """The gateway answered 200 with a body the parser rejected."""

    kind = "malformed"

    def __init__(self, envoy: str, parse_error: ParseError) -> None:
        self.parse_error = parse_error
        super().__init__(
            envoy, parse_error.endpoint, f"{parse_error.reason}: {parse_error.excerpt!r}"
        )


class CertificateMismatch(GatewayError):
    """The gateway's TLS certificate differs from the one pinned in the state dir."""

    kind = "certificate"


# --- the Enphase cloud ----------------------------------------------------------------


class CloudError(EnvoyLoggerError):
    """Getting a token from Enlighten / Entrez failed."""

    kind = "error"


class LoginRefused(CloudError):
    """Wrong email or password: retrying will not help until the config changes."""

    kind = "refused"


class MultiFactorRequired(CloudError):
    """The account has multi-factor login on, which a headless logger cannot answer."""

    kind = "mfa"

    def __init__(self) -> None:
        super().__init__(
            "multi-factor login is on for this Enlighten account: it cannot be used "
            "unattended; set a static long-lived token instead (token: or ENVOY_TOKEN)"
        )


class CloudThrottled(CloudError):
    """429 or 503: the cloud asked us to come back later."""

    kind = "throttled"

    def __init__(self, message: str, retry_after_s: float | None) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(message)


class CloudUnavailable(CloudError):
    """Network failure or 5xx from the cloud: transient."""

    kind = "unavailable"


class InvalidToken(EnvoyLoggerError):
    """A token that is not a JWT we can read (bad shape, no ``exp``)."""


# --- configuration --------------------------------------------------------------------


class ConfigError(EnvoyLoggerError):
    """One or more problems in a config file; each names file, key path and value."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))
