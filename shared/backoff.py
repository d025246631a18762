"""How long to wait before the next try, after some failures in a row.

Every retry in the logger waits through this one type: the pollers leaving an unreachable
gateway alone, the power feed's HTML fallback, the InfluxDB forwarder, failed logins and
the restart policy (backoff and the FATAL cool-down). The formula is the usual
``first_s * 2 ** (failures - 1)``, capped; it is computed so that it cannot raise for any
count (the naive float power overflows at 1025 failures, which a gateway unreachable for a
weekend reaches at a 120 s cap), and it never goes down as the count grows.

A failure count is what callers keep (and persist, for logins): a value derived from the
previous delay would compound a server's Retry-After into the next wait.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """``first_s`` after the first failure, doubling per failure, never more than ``cap_s``."""

    first_s: float
    cap_s: float

    def after(self, failures: int) -> float:
        """The wait after ``failures`` in a row; 0 for none. Any int is fine."""
        cap = max(self.cap_s, 0.0)
        first = min(max(self.first_s, 0.0), cap)
        if failures <= 0 or first == 0.0:
            return 0.0
        doublings = failures - 1
        # Past log2(cap / first) doublings the cap is reached: stop before the float would
        # (as a difference of logs: cap / first itself overflows for a subnormal first).
        if doublings >= math.log2(cap) - math.log2(first):
            return cap
        return min(math.ldexp(first, doublings), cap)
