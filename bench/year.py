"""A year of one site's life in minutes of real time: ``python -m bench.year [--days N]``.

The real time-dependent parts run with the clock and the network injected
(`bench.year_world`): the power `Poller` with its `PowerFeed` and a real `GatewayClient`
talking to a simulated gateway in this process, the owner's and an installer's
`TokenKeeper`, the InfluxDB sink's `Spool` and `Forwarder`, the `DailyEnergyTracker`, and
the restart policy of the SQLite sink (`supervisor.policy.decide`). Power is polled every
60 s (a year at 5 s would take hours of CPU; the backoff rules are the same).

The scenario, in true time from 2027-01-01 00:00 UTC: a firmware update from HTTP to
HTTPS with tokens (day 20), the gateway unreachable for 72 h (day 40), the nightly 23:00
outage every night (requests held 3 min, so the client sees read timeouts), the cloud
refusing the installer's logins for a week (day 100) and the owner's for the week its
token renewal is due (day 352), the database down for 3 days with the spool reaching its
cap (day 150), a full disk for an hour that makes the SQLite sink crash on every start
(day 200), the machine's clock stepped an hour back (day 250) and forward (day 260), and
both DST changes of Europe/Amsterdam for the daily energy.

Verdict per event: no exception escapes (and the poller counted no "bug"), every wait
within its cap, logins within the promised count, and the time from the fault's end to
the next written reading (or token, or running sink) within what the design promises.
The last line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import structlog

from bench.year_site import Site
from bench.year_verdicts import figures as year_figures
from bench.year_verdicts import judge


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.year", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--days", type=float, default=365.0, help="how much of the year to run")
    args = parser.parse_args(argv)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(50))
    started, cpu = time.monotonic(), time.process_time()
    with tempfile.TemporaryDirectory(prefix="year-") as tmp:
        site = Site(args.days, Path(tmp))
        site.run()
        verdicts = judge(site)
        figures = year_figures(
            site, verdicts, time.monotonic() - started, time.process_time() - cpu
        )
        site.spool.close()
    for v in verdicts:
        recovery = "-" if v.recovery_s is None else f"{v.recovery_s:g} s"
        print(f"{'ok  ' if v.ok else 'FAIL'}  {v.event:<42} back after {recovery:<10} {v.detail}")
    print(json.dumps(figures))
    return 0 if all(v.ok for v in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
