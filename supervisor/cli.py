"""The command line: parses arguments and hands off to the code that does the work.

``python -m supervisor --config site.yml [--check]`` runs (or checks) a site and
``--demo`` runs one against simulated gateways; the tools (``parse``, ``simulate``,
``status``, ...) are sub-commands. Each sub-command module in `supervisor.commands`
exposes ``add_parser(subparsers)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shared.config import ShardConfig

# Sub-command modules, imported lazily so `parse` does not pay for the simulator's imports.
COMMANDS: tuple[str, ...] = ("simulate", "parse", "report", "import-config", "status")


def _module(command: str) -> str:
    """The module of a sub-command: commands are spelled with dashes, modules with '_'."""
    return command.replace("-", "_")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m supervisor",
        description="Log Enphase IQ Gateways into InfluxDB, Prometheus and SQLite.",
    )
    parser.add_argument("--config", type=Path, metavar="FILE", help="the site file (site.yml)")
    parser.add_argument(
        "--check",
        action="store_true",
        help="validate the config, print the plan and exit (2 on errors)",
    )
    parser.add_argument(
        "--shard",
        type=_shard,
        metavar="K/N",
        help="run only shard K of N of the site's gateways (overrides the file's shard:)",
    )
    demo = parser.add_argument_group("demo: simulated gateways on loopback into SQLite")
    demo.add_argument("--demo", action="store_true", help="run the demo instead of a site")
    demo.add_argument("--envoys", type=int, default=2, metavar="N", help="gateways (default 2)")
    demo.add_argument(
        "--duration",
        type=float,
        metavar="S",
        help="stop after S seconds (default: run until Ctrl-C)",
    )
    demo.add_argument(
        "--mqtt",
        type=_broker,
        metavar="HOST[:PORT]",
        help="also publish to this MQTT broker, with Home Assistant discovery (port 1883)",
    )
    demo.add_argument(
        "--state-dir",
        type=Path,
        metavar="DIR",
        help="where the demo keeps its data (default: a new temp dir)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"supervisor.commands.{_module(name)}").add_parser(sub)
    return parser


def _broker(value: str) -> tuple[str, int]:
    """``host`` or ``host:port`` of an MQTT broker."""
    from shared.config_values import check_address

    host, _, port = value.rpartition(":") if ":" in value else (value, "", "1883")
    if check_address(host) or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST or HOST:PORT, got {value!r}")
    return host, int(port)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        if args.demo:
            if args.config or args.check or args.shard:
                # Silently running the demo instead would leave the user waiting for a plan.
                parser.error(
                    "--demo runs simulated gateways: it takes no --config, --check or --shard"
                )
            from shared.config_sinks import MQTT_INSTALL, paho_missing
            from supervisor.demo import run_demo

            if args.mqtt and paho_missing():
                parser.error(f"--mqtt needs the paho-mqtt package: {MQTT_INSTALL}")
            return run_demo(args.envoys, args.duration, args.state_dir, args.mqtt)
        if args.config is None:
            parser.print_help()
            return 0
        return run_config(args.config, check_only=args.check, shard=args.shard)
    module = importlib.import_module(f"supervisor.commands.{_module(args.command)}")
    code: int = module.run(args)
    sys.stdout.flush()
    return code


def _shard(text: str) -> ShardConfig:
    from supervisor.shard import parse_shard

    try:
        return parse_shard(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def run_config(path: Path, check_only: bool, shard: ShardConfig | None = None) -> int:
    from shared.config_loader import load_config
    from shared.errors import ConfigError

    try:
        config = load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    from supervisor.shard import shard_view

    if shard is not None:
        config = replace(config, shard=shard)  # the flag wins over the file's shard: key
    site = shard_view(config)  # this host's gateways only
    if check_only:
        from supervisor.check import check_report

        print("\n".join(check_report(config, site)))
        return 0
    from supervisor.launch import run_site

    return run_site(site)
