"""HTTP Digest authentication (RFC 7616, qop=auth), the client side, for firmware < 7.

Legacy gateways ask for Digest (user ``envoy``, password the serial's last 6 digits) on
some endpoints. `DigestAuth` answers a challenge only when it can: one without realm or
nonce, with a qop other than ``auth`` or an unknown algorithm is left unanswered, so the
client reports the gateway's status. Once answered, the challenge is reused for later
requests (nc counting up), as requests' ``HTTPDigestAuth`` does, saving the 401 round
trip; a new challenge replaces it.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple
from urllib.request import parse_http_list

#: algorithm -> hash; the protocol's, not a security choice of ours (hence the flag)
_HASHES: dict[str, Callable[[bytes], Any]] = {
    "MD5": lambda data: hashlib.md5(data, usedforsecurity=False),
    "MD5-SESS": lambda data: hashlib.md5(data, usedforsecurity=False),
    "SHA": lambda data: hashlib.sha1(data, usedforsecurity=False),
    "SHA-256": hashlib.sha256,
    "SHA-512": hashlib.sha512,
}


class Challenge(NamedTuple):
    realm: str
    nonce: str
    qop: str | None  #: None, or "auth" (the only one answered)
    algorithm: str | None  #: as the gateway spelled it; None: MD5
    opaque: str | None


def parse_challenge(header: str) -> Challenge | None:
    """The Digest challenge in a ``WWW-Authenticate`` value, if it is one we can answer."""
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() != "digest":
        return None
    fields: dict[str, str] = {}
    for item in parse_http_list(rest):
        name, sep, value = item.partition("=")
        if sep:
            value = value.strip()
            fields[name.strip().lower()] = value[1:-1] if value[:1] == value[-1:] == '"' else value
    qop = fields.get("qop")
    algorithm = fields.get("algorithm")
    if (
        not fields.get("realm")
        or not fields.get("nonce")
        or (qop is not None and "auth" not in [q.strip() for q in qop.split(",")])
        or (algorithm or "MD5").upper() not in _HASHES
    ):
        return None
    return Challenge(
        fields["realm"], fields["nonce"], qop and "auth", algorithm, fields.get("opaque")
    )


class DigestAuth:
    """One user's digest credentials and the gateway's last challenge."""

    def __init__(self, user: str, password: str) -> None:
        self.user = user
        self._password = password
        self._challenge: Challenge | None = None
        self._count: Iterator[int] = itertools.count(1)

    @property
    def ready(self) -> bool:
        """True once a challenge has been answered: later requests carry the header."""
        return self._challenge is not None

    def accept(self, header: str) -> bool:
        """Take the challenge in ``header`` (WWW-Authenticate); False: none we can answer."""
        challenge = parse_challenge(header)
        if challenge is None:
            return False
        if self._challenge is None or challenge.nonce != self._challenge.nonce:
            self._count = itertools.count(1)
        self._challenge = challenge
        return True

    def header(self, method: str, uri: str) -> str:
        """The ``Authorization`` value for ``method uri`` under the current challenge."""
        chal = self._challenge
        assert chal is not None, "accept a challenge first"
        algorithm = (chal.algorithm or "MD5").upper()

        def digest(text: str) -> str:
            return str(_HASHES[algorithm](text.encode()).hexdigest())

        nc = f"{next(self._count):08x}"
        cnonce = os.urandom(8).hex()
        ha1 = digest(f"{self.user}:{chal.realm}:{self._password}")
        if algorithm == "MD5-SESS":
            ha1 = digest(f"{ha1}:{chal.nonce}:{cnonce}")
        ha2 = digest(f"{method}:{uri}")
        if chal.qop:
            response = digest(f"{ha1}:{chal.nonce}:{nc}:{cnonce}:auth:{ha2}")
        else:
            response = digest(f"{ha1}:{chal.nonce}:{ha2}")
        parts = [
            f'username="{self.user}"',
            f'realm="{chal.realm}"',
            f'nonce="{chal.nonce}"',
            f'uri="{uri}"',
            f'response="{response}"',
        ]
        if chal.opaque:
            parts.append(f'opaque="{chal.opaque}"')
        if chal.algorithm:
            parts.append(f'algorithm="{chal.algorithm}"')
        if chal.qop:
            parts.append(f'qop="auth", nc={nc}, cnonce="{cnonce}"')
        return "Digest " + ", ".join(parts)
