"""``python -m supervisor status``: what the running supervisor says about itself.

Reads ``<state_dir>/status.json`` (published every second by `supervisor.status`) and
prints every worker, gateway, feed and sink as tables, or the file itself with
``--json``. It never talks to the supervisor, so it works from any shell that can read
the state dir. A supervisor counts as running when the file exists, its pid is alive and
it was updated within `STALE_AFTER_S`; otherwise the command says "not running", shows
the last known state, and exits 3 (like ``systemctl status`` for a dead unit). A running
supervisor with a FATAL worker (down for its cool-down, or for good) exits 4 and names
it: the Docker HEALTHCHECK then shows unhealthy while nothing is stored.

The state dir comes from ``--config`` (only ``state_dir`` is read, so the service's
secrets need not be in this shell's environment) or ``--state-dir``. Nothing printed is
secret: status.json holds no credentials and error texts are redacted where they arise.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson
import yaml

from shared.config import SiteConfig
from shared.config_values import defaults, resolve
from supervisor.status import STATUS_FILE, read_status, workers_down

STALE_AFTER_S = 10.0  #: the file is rewritten every second; this much silence means dead
NOT_RUNNING = 3
DEGRADED = 4  #: running, but a worker is FATAL


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "status",
        help="show the running supervisor's workers, gateways, feeds and sinks",
        description="Show what the supervisor of a site publishes in its state dir. "
        "Exits 3 when no supervisor is running.",
    )
    where = parser.add_mutually_exclusive_group()
    # SUPPRESS: the top-level parser has the same options; either position works.
    where.add_argument(
        "--config", type=Path, metavar="FILE", default=argparse.SUPPRESS, help="the site file"
    )
    where.add_argument(
        "--state-dir",
        type=Path,
        metavar="DIR",
        default=argparse.SUPPRESS,
        help="the state dir itself (e.g. a demo's)",
    )
    parser.add_argument("--json", action="store_true", help="print status.json and a verdict")


def state_dir_of(config: Path) -> Path:
    """The state dir a site file names, read the way `shared.config_loader` reads it.

    Only this key: loading the whole config would demand the secrets from the environment,
    which an operator's shell usually does not have.
    """
    try:
        data = yaml.safe_load(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"{config}: cannot read the state_dir: {type(exc).__name__}") from None
    value = data.get("state_dir") if isinstance(data, dict) else None
    if value is None:
        return config.parent / Path(defaults(SiteConfig)["state_dir"])
    if not isinstance(value, str) or not value:
        raise ValueError(f"{config}: state_dir: expected a path, got {value!r}")
    return resolve(config.parent, value)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but another user's (DynamicUser=yes)
        return True
    return True


def verdict(
    status: dict[str, Any] | None, now_s: float, alive: Callable[[int], bool] = pid_alive
) -> str | None:
    """None when the supervisor is running, else why it is not."""
    if status is None:
        return "not running (no status published)"
    updated = float(status.get("updated_s") or 0.0)
    seen = f"last seen {stamp(updated)}, {age(now_s - updated)} ago"
    pid = status.get("pid")
    if not isinstance(pid, int) or not alive(pid):
        return f"not running (pid {pid} is gone; {seen})"
    if now_s - updated > STALE_AFTER_S:
        return f"not running (no update for {age(now_s - updated)}; {seen})"
    return None


# --- rendering ---------------------------------------------------------------------------


def stamp(epoch_s: float) -> str:
    return dt.datetime.fromtimestamp(epoch_s, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def section(title: str, headers: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> list[str]:
    """A blank line, the title, and the rows as columns under their headers."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return ["", title, fmt.format(*headers).rstrip(), *(fmt.format(*r).rstrip() for r in rows)]


def _text(value: object) -> str:
    return "-" if value is None or value == "" else str(value)


def _ago(epoch_s: float | None, now_s: float) -> str:
    return "never" if epoch_s is None else f"{age(now_s - epoch_s)} ago"


def _expiry(exp: int | None, now_s: float) -> str:
    if exp is None:
        return "-"
    left = exp - now_s
    when = dt.datetime.fromtimestamp(exp, dt.UTC).strftime("%Y-%m-%d")
    return f"{when} (expired)" if left <= 0 else f"{when} (in {age(left)})"


def _timing(window: dict[str, float] | None) -> str:
    return "-" if not window else f"{window['p50']:g}/{window['p99']:g}"


def _cadence(cadence: dict[str, float] | None) -> str:
    """``58/60``: readings written in the last minute against those due at the cadence."""
    if not cadence:
        return "-"
    return f"{cadence['written_per_min']:g}/{cadence['due_per_min']:g}"


def render(status: dict[str, Any], now_s: float) -> list[str]:
    """Tables of workers, gateways, feeds and sinks from a status snapshot."""
    out: list[str] = []
    workers = status.get("workers", {})
    out += section(
        "workers",
        ("name", "state", "pid", "restarts", "last exit"),
        [
            (n, w["state"], _text(w["pid"]), str(w["restarts"]), _text(w["last_exit_code"]))
            for n, w in workers.items()
        ]
        or [("(none)", "", "", "", "")],
    )
    gateways = status.get("gateways", {})
    if gateways:
        out += section(
            "gateways",
            ("envoy", "serial", "firmware", "token expires"),
            [
                (
                    n,
                    _text(g.get("serial")),
                    _text(g.get("firmware")),
                    _expiry(g.get("token_expiry_s"), now_s),
                )
                for n, g in sorted(gateways.items())
            ],
        )
    feed_rows: list[tuple[str, ...]] = []
    for envoy, feeds in sorted(status.get("feeds", {}).items()):
        for name, f in feeds.items():
            last_ok = f["last_ok_ns"] / 1e9 if f.get("last_ok_ns") is not None else None
            errors = " ".join(f"{k}={v}" for k, v in sorted(f.get("errors", {}).items()))
            missed = ", ".join(f"{k}: {v}" for k, v in sorted(f.get("missed", {}).items()))
            feed_rows.append(
                (
                    envoy,
                    name,
                    _text(f.get("endpoint")),
                    _cadence(f.get("cadence")),
                    _ago(last_ok, now_s),
                    str(f.get("polls", 0)),
                    errors or "-",
                    missed[:60] or "-",
                    _timing(f.get("jitter_ms")),
                    _timing(f.get("duration_ms")),
                    _text(f.get("last_error"))[:60],
                )
            )
    if feed_rows:
        out += section(
            "feeds (written/due per minute; jitter and poll time in ms, p50/p99)",
            (
                "envoy",
                "feed",
                "endpoint",
                "per min",
                "last good poll",
                "polls",
                "errors",
                "missed ticks (why)",
                "jitter",
                "poll",
                "last error",
            ),
            feed_rows,
        )
    sinks = {n: c for n, c in status.get("consumers", {}).items() if n.startswith("sink:")}
    if sinks:
        out += section(
            "sinks",
            ("name", "spool", "pending", "dropped", "dead letters", "last write", "last error"),
            [
                (
                    n.removeprefix("sink:"),
                    f"{c.get('spool_items', 0)} ({c.get('spool_bytes', 0) // 1024} KiB)",
                    str(c.get("pending_batches", 0)),
                    str(c.get("dropped", 0)),
                    str(c.get("dead_letters", 0)),
                    _ago(c.get("last_write_ok_s"), now_s),
                    _text(c.get("last_error"))[:60],
                )
                for n, c in sinks.items()
            ],
        )
    storage = status.get("storage_errors") or {}
    if storage:
        out += section(
            "disk full or failing: these writers keep data in memory and retry",
            ("writer", "error"),
            [(writer, str(error)[:80]) for writer, error in sorted(storage.items())],
        )
    return out


def report(state_dir: Path, as_json: bool, now_s: float, alive: Callable[[int], bool]) -> int:
    status = read_status(state_dir)
    why = verdict(status, now_s, alive)
    down = workers_down((status or {}).get("workers") or {}) if why is None else {}
    code = NOT_RUNNING if why is not None else DEGRADED if down else 0
    if as_json:
        body = {"running": why is None, "reason": why, "workers_down": down, "status": status}
        sys.stdout.write(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode() + "\n")
        return code
    if status is None:
        print(f"supervisor: {why}: no {state_dir / STATUS_FILE}")
        return NOT_RUNNING
    started = float(status.get("started_s") or 0.0)
    if why is None:
        head = f"supervisor: running, pid {status['pid']}, up {age(now_s - started)}"
        head += "".join(f"\nworker down: {name} {reason}" for name, reason in down.items())
    else:
        head = f"supervisor: {why}; the last known state follows"
    print("\n".join([head, f"state dir: {state_dir}", *render(status, now_s)]))
    return code


def run(args: argparse.Namespace) -> int:
    config: Path | None = getattr(args, "config", None)
    state_dir: Path | None = getattr(args, "state_dir", None)
    if state_dir is None:
        if config is None:
            print("status: give --config FILE or --state-dir DIR", file=sys.stderr)
            return 2
        try:
            state_dir = state_dir_of(config)
        except ValueError as exc:
            print(exc, file=sys.stderr)
            return 2
    return report(state_dir, args.json, time.time(), pid_alive)
