"""Properties of the config loader: valid files round-trip, any input gives a config or a
ConfigError and nothing else."""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.config import (
    AccountConfig,
    GatewayConfig,
    InfluxSinkConfig,
    LoggingConfig,
    PrometheusSinkConfig,
    SinkConfig,
    SiteConfig,
    SqliteSinkConfig,
    SupervisionConfig,
)
from shared.config_loader import load_config
from shared.errors import ConfigError
from supervisor.check import describe_config

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
RESERVED = {"envoy", "serial", "measurement_type", "line"}

words = st.text(string.ascii_lowercase + string.digits + "_", min_size=1, max_size=8)
numbers = st.one_of(st.integers(1, 10**6), st.floats(0.001, 1e6))
serials = st.from_regex(r"[1-9][0-9]{5,12}", fullmatch=True)
tag_keys = st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True).filter(
    lambda k: k not in RESERVED and not k.startswith("__")
)
tag_values = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=12
).filter(lambda v: bool(v.strip()))
secrets = st.text(string.ascii_letters + string.digits + "._-!", min_size=4, max_size=30).map(
    lambda s: f"Secret:{s}"
)


def name(prefix: str, i: int, word: str) -> str:
    return f"{prefix}{word}-{i}"  # unique per entry whatever word is


@st.composite
def site(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    """A valid site.yml as a dict, and the SiteConfig fields it must load as."""
    doc: dict[str, Any] = {}
    accounts, envoys, sinks = [], [], []
    account_docs: list[dict[str, Any]] = []
    for i in range(draw(st.integers(0, 2))):
        a = {
            "name": name("a", i, draw(words)),
            "email": f"user{i}@example.com",
            "password": draw(secrets),
            "login_backoff_s": draw(numbers),
        }
        account_docs.append(a)
        accounts.append(
            AccountConfig(
                a["name"], a["email"], a["password"], login_backoff_s=float(a["login_backoff_s"])
            )
        )
    envoy_docs = []
    for i in range(draw(st.integers(1, 3))):
        e: dict[str, Any] = {
            "name": name("g", i, draw(words)),
            "host": f"10.0.{i}.{draw(st.integers(1, 254))}",
        }
        auth = draw(
            st.sampled_from(["account", "token", "none"] if accounts else ["token", "none"])
        )
        if auth == "account":
            e["account"] = draw(st.sampled_from(accounts)).name
        elif auth == "token":
            e["token"] = draw(secrets)
        if draw(st.booleans()):
            e["serial"] = draw(serials)
        poll = draw(
            st.fixed_dictionaries(
                {},
                optional={
                    k: numbers
                    for k in ("power_s", "inverters_s", "connect_timeout_s", "read_timeout_s")
                },
            )
        )
        if poll:
            e["poll"] = poll
        inverters = draw(
            st.dictionaries(
                serials,
                st.one_of(st.none(), st.dictionaries(tag_keys, tag_values, max_size=3)),
                max_size=3,
            )
        )
        if inverters:
            e["inverters"] = inverters
        e["pin_certificate"] = draw(st.booleans())
        envoy_docs.append(e)
        envoys.append(
            GatewayConfig(
                name=e["name"],
                host=e["host"],
                serial=e.get("serial"),
                account=e.get("account"),
                token=e.get("token"),
                pin_certificate=e["pin_certificate"],
                power_interval_s=float(poll.get("power_s", 5.0)),
                inverter_interval_s=float(poll.get("inverters_s", 60.0)),
                connect_timeout_s=float(poll.get("connect_timeout_s", 5.0)),
                read_timeout_s=float(poll.get("read_timeout_s", 20.0)),
                inverters=tuple(inverters),
                inverter_tags=tuple(
                    (s, tuple(sorted(t.items()))) for s, t in inverters.items() if t
                ),
            )
        )
    sink_docs = []
    for i, kind in enumerate(
        draw(st.lists(st.sampled_from(["sqlite", "influx1", "influx2", "prometheus"]), max_size=4))
    ):
        sink_name = name("s", i, draw(words))
        built: SinkConfig
        if kind == "sqlite":
            s: dict[str, Any] = {"type": "sqlite", "name": sink_name, "path": f"{draw(words)}.db"}
            built = SqliteSinkConfig(sink_name, Path(s["path"]))
        elif kind == "influx1":
            s = {
                "type": "influxdb",
                "name": sink_name,
                "version": 1,
                "url": "http://db:8086",
                "database": draw(words),
                "password": draw(secrets),
            }
            built = InfluxSinkConfig(
                sink_name, s["url"], version=1, database=s["database"], password=s["password"]
            )
        elif kind == "influx2":
            s = {
                "type": "influxdb",
                "name": sink_name,
                "url": "https://db.example:8086",
                "org": draw(words),
                "bucket": draw(words),
                "token": draw(secrets),
                "timeout_s": draw(numbers),
            }
            built = InfluxSinkConfig(
                sink_name,
                s["url"],
                org=s["org"],
                bucket=s["bucket"],
                token=s["token"],
                timeout_s=float(s["timeout_s"]),
            )
        else:
            s = {"type": "prometheus", "name": sink_name, "port": 9000 + i}
            built = PrometheusSinkConfig(sink_name, port=s["port"])
        sink_docs.append(s)
        sinks.append(built)
    beat, hang = sorted(draw(st.lists(numbers, min_size=2, max_size=2, unique=True)))
    low, high = sorted(draw(st.lists(numbers, min_size=2, max_size=2)))
    supervision = {
        "heartbeat_s": beat,
        "hang_timeout_s": hang,
        "backoff_initial_s": low,
        "backoff_max_s": high,
        "max_restarts": draw(st.integers(1, 100)),
    }
    doc = {
        "accounts": account_docs,
        "envoys": envoy_docs,
        "sinks": sink_docs,
        "supervision": supervision,
        "timezone": draw(st.sampled_from(["UTC", "Europe/Amsterdam", "Australia/Sydney"])),
        "logging": {
            "level": draw(st.sampled_from(["debug", "info", "warning", "error"])),
            "format": draw(st.sampled_from(["auto", "json", "console"])),
        },
    }
    expected = {
        "accounts": tuple(accounts),
        "gateways": tuple(envoys),
        "sinks": tuple(sinks) or (SqliteSinkConfig("sqlite"),),
        "supervision": SupervisionConfig(
            **{k: float(v) if k != "max_restarts" else v for k, v in supervision.items()}
        ),
        "timezone": doc["timezone"],
        "logging": LoggingConfig(**doc["logging"]),
    }
    return doc, expected


def write(directory: Path, text: str) -> Path:
    path = directory / "site.yml"
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return path


@SETTINGS
@given(case=site())
def test_a_valid_site_round_trips_through_yaml(
    tmp_path: Path, case: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    doc, expected = case
    config = load_config(
        write(tmp_path, yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)), environ={}
    )
    for field, value in expected.items():
        assert getattr(config, field) == value, field
    plan = "\n".join(describe_config(config)) + repr(config)
    for secret in [a.password for a in config.accounts] + [
        g.token for g in config.gateways if g.token
    ]:
        assert secret not in plan


KEYS = st.one_of(
    st.sampled_from(
        [
            "envoys",
            "accounts",
            "sinks",
            "name",
            "host",
            "type",
            "poll",
            "power_s",
            "inverters",
            "version",
            "url",
            "token",
            "password",
            "supervision",
            "timezone",
            "state_dir",
            "account",
            "port",
            "serial",
            "logging",
            "level",
        ]
    ),
    st.text(max_size=6),
)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=10))
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=4)),
    max_leaves=15,
)


def load_or_config_error(path: Path) -> None:
    try:
        assert isinstance(load_config(path, environ={"ENVOY_TOKEN": "x.y.z"}), SiteConfig)
    except ConfigError as exc:
        assert exc.problems
        assert all(p.startswith(f"{path}: ") and "\n" not in p for p in exc.problems)


@SETTINGS
@given(doc=st.dictionaries(KEYS, VALUES, max_size=6))
def test_any_yaml_document_gives_a_config_or_a_config_error(
    tmp_path: Path, doc: dict[Any, Any]
) -> None:
    load_or_config_error(write(tmp_path, yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)))


@SETTINGS
@given(case=site(), where=st.lists(st.integers(0, 50), min_size=1, max_size=4), value=VALUES)
def test_a_valid_site_with_any_value_swapped_in_gives_a_config_or_a_config_error(
    tmp_path: Path, case: tuple[dict[str, Any], dict[str, Any]], where: list[int], value: Any
) -> None:
    doc: Any = case[0]
    node = doc
    for step in where:  # walk down a few levels, choosing children by index
        children = list(node.items()) if isinstance(node, dict) else list(enumerate(node))
        if not children:
            break
        key, child = children[step % len(children)]
        if not isinstance(child, dict | list) or step == where[-1]:
            node[key] = value
            break
        node = child
    load_or_config_error(write(tmp_path, yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)))


@SETTINGS
@given(text=st.text(max_size=200))
def test_any_text_gives_a_config_or_a_config_error(tmp_path: Path, text: str) -> None:
    try:
        path = write(tmp_path, text)
    except UnicodeEncodeError:  # lone surrogates cannot be written as UTF-8
        return
    load_or_config_error(path)
