"""How long a simulated gateway takes to answer, and which answers wait for each other.

The model, from the capture logs (``duration_seconds``) of a D8.3.5169 gateway (issue 13):

* Every endpoint answers after its own time: the served fixture's recorded duration where
  its capture log has one, else `DEFAULT_S` (the D8.3.5169 figures). Each answer varies
  by up to ±`JITTER` of that, drawn from a seeded generator.
* The slow JSON endpoints (`SLOW`: production.json with or without details, /production,
  inventory.json, /home) are computed by one backend, one at a time: a second slow
  request waits until the first is answered, then takes its own time, so two slow
  requests answer after the sum of their times.
* ``/ivp/*``, ``/api/v1/*`` and ``/info`` are served alongside: they wait neither for the
  backend nor for each other.
* 401 and 404 answers come from the web server in front, at once (the gateway applies
  the delay only to answers it serves).

``scale`` multiplies every time: `REAL` (1.0) is a real gateway, `INSTANT` (0.0) answers
at once and never queues (unit tests), 0.1 a gateway ten times faster than a real one.
"""

from __future__ import annotations

import argparse
import random
import threading
from collections.abc import Mapping

from shared.gateway import is_slow

REAL = 1.0
INSTANT = 0.0
JITTER = 0.1  #: each answer takes its time times a factor in [1 - JITTER, 1 + JITTER]

# Seconds per endpoint key (the path, plus the query that changes what is computed).
DEFAULT_S: Mapping[str, float] = {
    "/production.json?details=1": 5.41,
    "/production.json": 5.04,
    "/production": 11.1,
    "/inventory.json": 5.79,
    "/inventory.json?deleted=1": 6.21,
    "/home": 9.3,
    "/ivp/meters/readings": 0.32,
    "/ivp/meters": 0.30,
    "/ivp/pdm/device_data": 0.34,
    "/api/v1/production": 0.37,
    "/api/v1/production/inverters": 0.31,
    "/info": 0.29,
}
ENSEMBLE_S = 0.26  #: every ``/ivp/ensemble/*`` endpoint
OTHER_S = 0.3  #: any other endpoint (``/auth/check_jwt``, ...): like the fast ones
#: the endpoints the gateway's one slow backend computes: the client's own rule
#: (`shared.gateway.is_slow`), so the model and the client cannot disagree about it
SLOW = frozenset(key for key in DEFAULT_S if is_slow(key))


def parse_latency(text: str) -> float:
    """``real``, ``instant`` or a non-negative factor of real (``0.1``) -> the scale."""
    named = {"real": REAL, "instant": INSTANT}
    word = text.strip().lower()
    if word in named:
        return named[word]
    try:
        scale = float(word)
    except ValueError:
        raise ValueError(f"latency must be real, instant or a factor, got {text!r}") from None
    if not 0 <= scale < float("inf"):
        raise ValueError(f"latency factor must be >= 0, got {text!r}")
    return scale


def latency_argument(text: str) -> float:
    """`parse_latency` for argparse: a bad value is a one-line usage error saying why."""
    try:
        return parse_latency(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_latency_option(parser: argparse.ArgumentParser) -> None:
    """``--latency real|instant|FACTOR`` (default real), for the benches that run simulators."""
    parser.add_argument(
        "--latency",
        type=latency_argument,
        default="real",
        metavar="real|instant|FACTOR",
        help="simulated answer times (default: a real gateway's)",
    )


def timing_key(path: str, query: Mapping[str, list[str]]) -> str:
    """The `DEFAULT_S` key of a request: its path, with the query that costs more time."""
    if path == "/production.json" and query.get("details") == ["1"]:
        return path + "?details=1"
    if path == "/inventory.json" and query.get("deleted") == ["1"]:
        return path + "?deleted=1"
    return path


def default_s(key: str) -> float:
    if key in DEFAULT_S:
        return DEFAULT_S[key]
    return ENSEMBLE_S if key.startswith("/ivp/ensemble/") else OTHER_S


class Timing:
    """One gateway's answer times and its one slow backend (see the module docstring).

    Thread-safe: handler threads call `answer`; ``stopping`` releases them at once.
    """

    def __init__(self, scale: float = REAL, *, seed: int = 0) -> None:
        if not 0 <= scale < float("inf"):
            raise ValueError(f"latency scale must be >= 0, got {scale}")
        self.scale = scale
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        self._backend = threading.Lock()  # the one computation of slow answers

    def seconds(self, key: str, recorded: float | None = None) -> float:
        """How long the answer for ``key`` takes once started (jitter drawn anew)."""
        if self.scale == 0:
            return 0.0
        with self._rng_lock:
            factor = self._rng.uniform(1 - JITTER, 1 + JITTER)
        return self._nominal_s(key, recorded) * factor

    def range_s(self, key: str, recorded: float | None = None) -> tuple[float, float]:
        """The least and the most an answer for ``key`` takes once started (no queueing)."""
        nominal = self._nominal_s(key, recorded)
        return nominal * (1 - JITTER), nominal * (1 + JITTER)

    def _nominal_s(self, key: str, recorded: float | None) -> float:
        return (default_s(key) if recorded is None else recorded) * self.scale

    def answer(self, key: str, recorded: float | None, stopping: threading.Event) -> None:
        """Wait as long as the gateway takes for ``key`` (queued behind the backend when
        it is slow); returns early when ``stopping`` is set."""
        seconds = self.seconds(key, recorded)
        if seconds == 0:
            return
        if key not in SLOW:
            stopping.wait(seconds)
            return
        # Polling the lock keeps a stopping server from waiting out a queue of slow answers.
        while not self._backend.acquire(timeout=0.1):
            if stopping.is_set():
                return
        try:
            stopping.wait(seconds)
        finally:
            self._backend.release()
