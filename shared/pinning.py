"""Trust on first use for a gateway's self-signed TLS certificate.

Gateways present a self-signed certificate, so there is nothing to verify it against.
With ``pin_certificate: true`` the first connection's certificate is remembered: its
SHA-256 fingerprint goes to ``<state dir>/gateway-cert-<host>.sha256`` (0600, atomic
write), and from then on the gateway client's connections refuse any other certificate
right after the handshake (`shared.gateway_transport.KeepAlive`), before a token is sent.

Owns only those pin files and the TLS context of gateway connections.
"""

from __future__ import annotations

import hashlib
import ssl
from pathlib import Path

import structlog
from urllib3.util.ssl_ import create_urllib3_context

from shared.storage import StorageEpisode, tolerant_write
from shared.tokens import safe_name, write_private


def _gateway_tls() -> ssl.SSLContext:
    """urllib3's client defaults, without a CA store: nothing is verified against one."""
    return create_urllib3_context(cert_reqs=ssl.CERT_NONE)


#: The one TLS context of every gateway connection in a process. Built at import, which
#: for workers happens once, in the fork server (`supervisor.launch` preloads
#: `shared.gateway`): the workers share its pages. A default context per connection
#: loads the system CA store into it, which cost every poller process
#: ~3.7 MiB of unique memory (OpenSSL set-up and ~140 parsed CA certificates) and CPU on
#: every reconnect, for certificates never checked against a CA.
GATEWAY_TLS = _gateway_tls()


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
