"""Trust on first use for a gateway's self-signed TLS certificate.

Gateways present a self-signed certificate, so there is nothing to verify it against.
With ``pin_certificate: true`` the first connection's certificate is remembered: its
SHA-256 fingerprint goes to ``<state dir>/gateway-cert-<host>.sha256`` (0600, atomic
write), and from then on urllib3 refuses any other certificate during the handshake
(``assert_fingerprint``), before a token is sent.

Owns only those pin files; the gateway client mounts the adapter made here.
"""

from __future__ import annotations

import hashlib
import ssl
import warnings
from pathlib import Path
from typing import Any

import requests
import structlog
from requests.adapters import HTTPAdapter
from urllib3.exceptions import InsecureRequestWarning
from urllib3.util.ssl_ import create_urllib3_context

from shared.storage import StorageEpisode, tolerant_write
from shared.tokens import safe_name, write_private


def _gateway_tls() -> ssl.SSLContext:
    """urllib3's client defaults, without a CA store: nothing is verified against one."""
    return create_urllib3_context(cert_reqs=ssl.CERT_NONE)


#: The one TLS context of every gateway connection in a process. Built at import, which
#: for workers happens once, in the fork server (`supervisor.launch` preloads
#: `shared.gateway`): the workers share its pages. Left to itself urllib3 builds a context
#: per connection and loads the system CA store into it, which cost every poller process
#: ~3.7 MiB of unique memory (OpenSSL set-up and ~140 parsed CA certificates) and CPU on
#: every reconnect, for certificates never checked against a CA.
GATEWAY_TLS = _gateway_tls()


class QuietInsecureAdapter(HTTPAdapter):
    """An adapter for one gateway's unverified TLS that keeps urllib3 from warning.

    The warning is silenced around this adapter's requests only, not process-wide, so
    an unverified request anywhere else (which would be a bug) still warns. Connections
    use the shared `GATEWAY_TLS` context.
    """

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("ssl_context", GATEWAY_TLS)
        super().init_poolmanager(*args, **kwargs)

    def send(
        self, request: requests.PreparedRequest, *args: Any, **kwargs: Any
    ) -> requests.Response:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", InsecureRequestWarning)
            return super().send(request, *args, **kwargs)


class PinnedAdapter(QuietInsecureAdapter):
    """Refuses, during the TLS handshake, any certificate but the pinned one."""

    def __init__(self, fingerprint: str, **kwargs: Any) -> None:
        self.fingerprint = fingerprint
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        # urllib3 checks the fingerprint of the peer certificate even with CERT_NONE.
        kwargs["assert_fingerprint"] = self.fingerprint
        super().init_poolmanager(*args, **kwargs)


def fingerprint(der: bytes) -> str:
    """SHA-256 of a DER certificate as lowercase hex (urllib3's assert_fingerprint form)."""
    return hashlib.sha256(der).hexdigest()


class PinStore:
    """The pinned fingerprint of one gateway host, kept in the state dir."""

    def __init__(self, state_dir: Path, host: str) -> None:
        self.host = host
        self.path = state_dir / f"gateway-cert-{safe_name(host)}.sha256"
        # Not written: the pin holds for this process; a restart pins on first use again.
        self.storage = StorageEpisode(structlog.get_logger(), self.path, "the pinned certificate")

    def load(self) -> str | None:
        try:
            text = self.path.read_text().strip().lower()
        except FileNotFoundError:
            return None
        # A hand-edited or damaged file must not silently disable pinning: keep the
        # text, so it mismatches and the error names the file to delete.
        return text or None

    def store(self, value: str) -> None:
        tolerant_write(self.storage, lambda: write_private(self.path, (value + "\n").encode()))


def peer_fingerprint(hostname: str, port: int, timeout_s: float) -> str:
    """Fingerprint of the certificate the server presents now (unverified handshake)."""
    pem = ssl.get_server_certificate((hostname, port), timeout=timeout_s)
    return fingerprint(ssl.PEM_cert_to_DER_cert(pem))


def is_fingerprint_mismatch(error: BaseException) -> bool:
    """True when a requests/urllib3 error is urllib3 refusing a pinned fingerprint."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if "Fingerprints did not match" in str(current):
            return True
        nested = [a for a in getattr(current, "args", ()) if isinstance(a, BaseException)]
        reason = getattr(current, "reason", None)
        current = (
            nested[0]
            if nested
            else reason
            if isinstance(reason, BaseException)
            else current.__cause__ or current.__context__
        )
    return False
