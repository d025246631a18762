"""site.yml -> SiteConfig: every problem named by file and key, env secrets, the plan."""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.config import (
    AccountConfig,
    GatewayConfig,
    InfluxSinkConfig,
    MqttSinkConfig,
    PrometheusSinkConfig,
    SiteConfig,
    SqliteSinkConfig,
    SupervisionConfig,
)
from shared.config_loader import DEFAULT_SINK, load_config
from shared.errors import ConfigError
from supervisor.check import describe_config

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "site.yml"
MINIMAL: dict[str, Any] = {"envoys": [{"name": "garage", "host": "192.168.1.20"}]}


def write(directory: Path, content: dict[str, Any] | str, mode: int = 0o600) -> Path:
    path = directory / "site.yml"
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    path.chmod(mode)
    return path


def load(directory: Path, content: dict[str, Any] | str, **env: str) -> SiteConfig:
    return load_config(write(directory, content), environ=env)


def problems(directory: Path, content: dict[str, Any] | str, **env: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(directory, content, **env)
    assert str(caught.value) == "\n".join(caught.value.problems)
    return caught.value.problems


def with_(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A deep copy of ``base`` with dotted paths set: ``with_(MINIMAL, **{"envoys.0.x": 1})``."""
    doc = copy.deepcopy(base)
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        node: Any = doc
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return doc


ACCOUNT = {"name": "home", "email": "me@example.com", "password": "pw-in-file"}
INFLUX2 = {"type": "influxdb", "url": "http://127.0.0.1:8086", "org": "o", "token": "t0ken"}

# (the document, the key path the message must name, a piece of the problem)
BAD: list[tuple[str, dict[str, Any], str, str]] = [
    ("unknown top-level key", with_(MINIMAL, envoy=[]), "envoy", "did you mean 'envoys'?"),
    (
        "negative interval",
        with_(MINIMAL, **{"envoys.0.poll.power_s": -5}),
        "envoys[0].poll.power_s",
        "expected a number > 0, got -5",
    ),
    (
        "text interval",
        with_(MINIMAL, **{"envoys.0.poll.inverters_s": "fast"}),
        "envoys[0].poll.inverters_s",
        "got 'fast'",
    ),
    (
        "boolean timeout",
        with_(MINIMAL, **{"envoys.0.poll.read_timeout_s": True}),
        "envoys[0].poll.read_timeout_s",
        "got true",
    ),
    (
        "infinite timeout",
        with_(MINIMAL, **{"envoys.0.poll.connect_timeout_s": float("inf")}),
        "envoys[0].poll.connect_timeout_s",
        "expected a number > 0",
    ),
    (
        "unknown poll key",
        with_(MINIMAL, **{"envoys.0.poll.power": 5}),
        "envoys[0].poll.power",
        "did you mean 'power_s'?",
    ),
    (
        "host with scheme",
        with_(MINIMAL, **{"envoys.0.host": "http://envoy.local/"}),
        "envoys[0].host",
        "without scheme or path",
    ),
    (
        "host port 0",
        with_(MINIMAL, **{"envoys.0.host": "envoy.local:0"}),
        "envoys[0].host",
        "port 1..65535",
    ),
    ("missing host", {"envoys": [{"name": "garage"}]}, "envoys[0].host", "missing"),
    ("neither name nor serial", {"envoys": [{"host": "10.0.0.2"}]}, "envoys[0].name", "missing"),
    (
        "name with a space",
        with_(MINIMAL, **{"envoys.0.name": "garage roof"}),
        "envoys[0].name",
        "expected a name",
    ),
    (
        "serial with letters",
        with_(MINIMAL, **{"envoys.0.serial": "12ab"}),
        "envoys[0].serial",
        "digits",
    ),
    (
        "unknown account",
        with_(MINIMAL, **{"envoys.0.account": "nope"}),
        "envoys[0].account",
        "no account named 'nope'",
    ),
    (
        "account and token",
        with_(
            MINIMAL, accounts=[ACCOUNT], **{"envoys.0.account": "home", "envoys.0.token": "x.y.z"}
        ),
        "envoys[0].token",
        "either account or token",
    ),
    (
        "unknown scheme",
        with_(MINIMAL, **{"envoys.0.scheme": "ftp"}),
        "envoys[0].scheme",
        "expected one of auto, http, https",
    ),
    (
        "pin_certificate as text",
        with_(MINIMAL, **{"envoys.0.pin_certificate": "yes"}),
        "envoys[0].pin_certificate",
        "expected true or false",
    ),
    (
        "inverter serial with letters",
        with_(MINIMAL, **{"envoys.0.inverters": {"abc": None}}),
        "envoys[0].inverters",
        "serial numbers of digits, got 'abc'",
    ),
    (
        "reserved tag name",
        with_(MINIMAL, **{"envoys.0.inverters": {"123": {"serial": "x"}}}),
        "envoys[0].inverters.123.serial",
        "reserved",
    ),
    (
        "inverter tag named like the daily series' direction",
        with_(MINIMAL, **{"envoys.0.inverters": {"123": {"direction": "east"}}}),
        "envoys[0].inverters.123.direction",
        "reserved",
    ),
    (
        "tag name starting with a digit",
        with_(MINIMAL, **{"envoys.0.inverters": {"1": {"2a": "x"}}}),
        "envoys[0].inverters.1.2a",
        "tag name",
    ),
    (
        "tag value with a newline",
        with_(MINIMAL, **{"envoys.0.inverters": {"1": {"r": "a\nb"}}}),
        "envoys[0].inverters.1.r",
        "one-line",
    ),
    (
        "empty tag value",
        with_(MINIMAL, **{"envoys.0.inverters": {"1": {"r": ""}}}),
        "envoys[0].inverters.1.r",
        "non-empty",
    ),
    (
        "tags not a mapping",
        with_(MINIMAL, **{"envoys.0.inverters": {"1": ["south"]}}),
        "envoys[0].inverters.1",
        "mapping of tag: value",
    ),
    (
        "duplicate gateway names",
        {"envoys": [{"name": "a", "host": "h1"}, {"name": "a", "host": "h2"}]},
        "envoys[1].name",
        "'a' is already used by envoys[0]",
    ),
    (
        "duplicate hosts",
        {"envoys": [{"name": "a", "host": "h1"}, {"name": "b", "host": "h1"}]},
        "envoys[1].host",
        "already used by envoys[0]",
    ),
    ("no gateways", {"envoys": []}, "envoys", "at least one gateway"),
    ("gateways not a list", {"envoys": {"name": "a"}}, "envoys", "expected a list"),
    ("gateway not a mapping", {"envoys": ["10.0.0.2"]}, "envoys[0]", "expected a mapping"),
    (
        "account without name",
        with_(MINIMAL, accounts=[{"email": "a@b", "password": "p"}]),
        "accounts[0].name",
        "missing",
    ),
    (
        "account without email",
        with_(MINIMAL, accounts=[{"name": "h", "password": "p"}]),
        "accounts[0].email",
        "ENPHASE_EMAIL",
    ),
    (
        "account without password",
        with_(MINIMAL, accounts=[{"name": "h", "email": "a@b"}]),
        "accounts[0].password",
        "ENPHASE_PASSWORD",
    ),
    (
        "email without @",
        with_(MINIMAL, accounts=[{**ACCOUNT, "email": "me"}]),
        "accounts[0].email",
        "email address",
    ),
    (
        "duplicate account names",
        with_(MINIMAL, accounts=[ACCOUNT, ACCOUNT]),
        "accounts[1].name",
        "already used by accounts[0]",
    ),
    (
        "plain http cloud",
        with_(MINIMAL, accounts=[{**ACCOUNT, "cloud": {"login_url": "http://x"}}]),
        "accounts[0].cloud.login_url",
        "https://",
    ),
    (
        "missing CA file",
        with_(MINIMAL, accounts=[{**ACCOUNT, "cloud": {"ca_file": "nope.pem"}}]),
        "accounts[0].cloud.ca_file",
        "no such file",
    ),
    (
        "negative account backoff",
        with_(MINIMAL, accounts=[{**ACCOUNT, "login_backoff_s": 0}]),
        "accounts[0].login_backoff_s",
        "> 0",
    ),
    (
        "sink without type",
        with_(MINIMAL, sinks=[{"name": "x"}]),
        "sinks[0].type",
        "expected one of sqlite, influxdb, prometheus",
    ),
    ("unknown sink type", with_(MINIMAL, sinks=[{"type": "mysql"}]), "sinks[0].type", "'mysql'"),
    (
        "duplicate sink names",
        with_(MINIMAL, sinks=[{"type": "sqlite"}, {"type": "sqlite"}]),
        "sinks[1].name",
        "already used by sinks[0]",
    ),
    (
        "unknown sqlite key",
        with_(MINIMAL, sinks=[{"type": "sqlite", "file": "x"}]),
        "sinks[0].file",
        "unknown key",
    ),
    (
        "influx URL with a bad scheme",
        with_(MINIMAL, sinks=[{**INFLUX2, "url": "ftp://db"}]),
        "sinks[0].url",
        "http:// or https://",
    ),
    (
        "influx without URL",
        with_(MINIMAL, sinks=[{k: v for k, v in INFLUX2.items() if k != "url"}]),
        "sinks[0].url",
        "missing",
    ),
    (
        "influx v2 without org",
        with_(MINIMAL, sinks=[{**INFLUX2, "org": ""}]),
        "sinks[0].org",
        "version 2 needs it",
    ),
    (
        "influx v2 without token",
        with_(MINIMAL, sinks=[{k: v for k, v in INFLUX2.items() if k != "token"}]),
        "sinks[0].token",
        "INFLUXDB_TOKEN",
    ),
    (
        "influx v1 with an org",
        with_(MINIMAL, sinks=[{**INFLUX2, "version": 1, "token": None}]),
        "sinks[0].org",
        "not used with version: 1",
    ),
    (
        "influx v1 without database",
        with_(
            MINIMAL, sinks=[{"type": "influxdb", "version": 1, "url": "http://db", "database": ""}]
        ),
        "sinks[0].database",
        "version 1 needs it",
    ),
    (
        "influx version 3",
        with_(MINIMAL, sinks=[{**INFLUX2, "version": 3}]),
        "sinks[0].version",
        "expected one of 1, 2",
    ),
    (
        "prometheus port too high",
        with_(MINIMAL, sinks=[{"type": "prometheus", "port": 70000}]),
        "sinks[0].port",
        "1..65535, got 70000",
    ),
    (
        "prometheus bad listen",
        with_(MINIMAL, sinks=[{"type": "prometheus", "listen": "a b"}]),
        "sinks[0].listen",
        "host name or IP address",
    ),
    (
        "two exporters on one port",
        with_(
            MINIMAL,
            sinks=[{"type": "prometheus", "name": "a"}, {"type": "prometheus", "name": "b"}],
        ),
        "sinks[1].port",
        "already used by sinks[0]",
    ),
    ("unknown time zone", with_(MINIMAL, timezone="Mars/Olympus"), "timezone", "IANA time zone"),
    ("state dir as a list", with_(MINIMAL, state_dir=["a"]), "state_dir", "got a list"),
    (
        "zero max restarts",
        with_(MINIMAL, supervision={"max_restarts": 0}),
        "supervision.max_restarts",
        "whole number",
    ),
    (
        "fractional max restarts",
        with_(MINIMAL, supervision={"max_restarts": 1.5}),
        "supervision.max_restarts",
        "got 1.5",
    ),
    (
        "initial backoff above the cap",
        with_(MINIMAL, supervision={"backoff_initial_s": 90}),
        "supervision.backoff_initial_s",
        "backoff_max_s",
    ),
    (
        "hang timeout below the heartbeat",
        with_(MINIMAL, supervision={"hang_timeout_s": 0.5}),
        "supervision.hang_timeout_s",
        "heartbeat_s",
    ),
    ("unknown log level", with_(MINIMAL, logging={"level": "loud"}), "logging.level", "'loud'"),
    ("unknown log format", with_(MINIMAL, logging={"format": "xml"}), "logging.format", "'xml'"),
    ("zero daily gap", with_(MINIMAL, daily={"max_gap_s": 0}), "daily.max_gap_s", "> 0"),
    ("top level a list", "- a\n- b\n", "(top level)", "expected a mapping of keys, got a list"),
]


@pytest.mark.parametrize(("doc", "key", "problem"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_each_bad_value_is_reported_with_file_key_and_problem(
    tmp_path: Path, doc: dict[str, Any] | str, key: str, problem: str
) -> None:
    found = problems(tmp_path, doc)
    prefix = f"{tmp_path / 'site.yml'}: {key}: "
    assert any(p.startswith(prefix) and problem in p for p in found), found


def test_every_problem_in_a_file_is_reported_at_once(tmp_path: Path) -> None:
    doc = {
        "envoys": [{"name": "a", "host": "h", "poll": {"power_s": -1, "inverters_s": 0}}],
        "sinks": [{"type": "prometheus", "port": 0}],
        "logging": {"level": "loud"},
        "timezone": "Nowhere/Land",
    }
    assert len(problems(tmp_path, doc)) == 5


def test_invalid_yaml_is_reported_with_line_and_column(tmp_path: Path) -> None:
    [problem] = problems(tmp_path, "envoys:\n  - name: a\n   host: b: c\n")
    assert problem.startswith(f"{tmp_path / 'site.yml'}: line 3, column ")
    assert "not valid YAML" in problem


def test_a_missing_file_is_reported_by_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yml: cannot read the file"):
        load_config(tmp_path / "nope.yml", environ={})


def test_a_file_that_is_not_utf8_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "site.yml"
    path.write_bytes(b"envoys: \xff\xfe\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path, environ={})


def test_the_file_is_named_as_the_user_gave_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, with_(MINIMAL, extra=1))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as caught:
        load_config(Path("site.yml"), environ={})
    assert caught.value.problems == ["site.yml: extra: unknown key"]


def test_a_secret_of_the_wrong_type_is_not_quoted(tmp_path: Path) -> None:
    doc = with_(MINIMAL, accounts=[{**ACCOUNT, "password": 987654321}])
    [problem] = problems(tmp_path, doc)
    assert "accounts[0].password: expected a string, got a number" in problem
    assert "987654321" not in problem


def test_credentials_in_an_influx_url_are_refused_without_being_shown(tmp_path: Path) -> None:
    doc = with_(MINIMAL, sinks=[{**INFLUX2, "url": "http://admin:hunter22@db:8086"}])
    [problem] = problems(tmp_path, doc)
    assert "sinks[0].url: expected no user or password" in problem
    assert "hunter22" not in problem


# --- defaults and accepted forms -------------------------------------------------------------


def test_a_minimal_file_gets_the_documented_defaults(tmp_path: Path) -> None:
    config = load(tmp_path, MINIMAL)
    assert config.gateways == (GatewayConfig(name="garage", host="192.168.1.20"),)
    assert config.sinks == (DEFAULT_SINK,)
    assert config.state_dir == tmp_path / "state"
    assert config.timezone == "UTC"
    assert config.supervision == SupervisionConfig()
    assert config.source == tmp_path / "site.yml"
    assert config.warnings == ()


def test_relative_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("not checked here")
    doc = with_(MINIMAL, state_dir="data", accounts=[{**ACCOUNT, "cloud": {"ca_file": "ca.pem"}}])
    config = load(tmp_path, doc)
    assert config.state_dir == tmp_path / "data"
    assert config.accounts[0].cloud.ca_file == tmp_path / "ca.pem"
    assert load(tmp_path, with_(MINIMAL, state_dir="/var/lib/x")).state_dir == Path("/var/lib/x")


def test_a_gateway_without_a_name_is_named_by_its_serial(tmp_path: Path) -> None:
    config = load(tmp_path, "envoys:\n  - host: 10.0.0.2\n    serial: 122238082763\n")
    assert config.gateways[0].name == "122238082763"
    assert config.gateways[0].serial == "122238082763"


def test_inverters_may_be_a_list_or_a_map_of_tags_with_unquoted_serials(tmp_path: Path) -> None:
    text = (
        "envoys:\n  - {name: a, host: h1, inverters: [121, 122]}\n"
        "  - name: b\n    host: h2\n    inverters:\n      131: {roof: south, string: 7}\n"
        "      132:\n"
    )
    a, b = load(tmp_path, text).gateways
    assert a.inverters == ("121", "122") and a.inverter_tags == ()
    assert b.inverters == ("131", "132")
    assert b.inverter_tags == (("131", (("roof", "south"), ("string", "7"))),)


def test_hosts_may_carry_a_port_or_be_ipv6(tmp_path: Path) -> None:
    doc = {
        "envoys": [
            {"name": "a", "host": "envoy.local:8443"},
            {"name": "b", "host": "[::1]:443"},
            {"name": "c", "host": "fe80::1"},
        ]
    }
    assert [g.host for g in load(tmp_path, doc).gateways] == [
        "envoy.local:8443",
        "[::1]:443",
        "fe80::1",
    ]


# --- secrets from the environment --------------------------------------------------------------


def test_enphase_credentials_fill_the_one_account_that_lacks_them(tmp_path: Path) -> None:
    doc = with_(MINIMAL, accounts=[{"name": "home"}], **{"envoys.0.account": "home"})
    [account] = load(tmp_path, doc, ENPHASE_EMAIL="e@x.org", ENPHASE_PASSWORD="pw").accounts
    assert (account.email, account.password) == ("e@x.org", "pw")


def test_a_value_in_the_file_wins_over_the_environment(tmp_path: Path) -> None:
    doc = with_(MINIMAL, accounts=[ACCOUNT], **{"envoys.0.account": "home"})
    [account] = load(tmp_path, doc, ENPHASE_PASSWORD="from-env").accounts
    assert account.password == "pw-in-file"


def test_one_variable_cannot_fill_two_accounts(tmp_path: Path) -> None:
    doc = with_(
        MINIMAL,
        accounts=[{**ACCOUNT, "password": None}, {**ACCOUNT, "name": "b", "password": None}],
    )
    found = problems(tmp_path, doc, ENPHASE_PASSWORD="pw")
    assert any(
        "accounts[0].password: missing, and ENPHASE_PASSWORD cannot fill it" in p for p in found
    )
    assert any(
        "accounts[1].password: missing, and ENPHASE_PASSWORD cannot fill it" in p for p in found
    )


def test_envoy_token_makes_the_one_tokenless_gateway_a_static_token_gateway(tmp_path: Path) -> None:
    assert load(tmp_path, MINIMAL, ENVOY_TOKEN="aaa.bbb.ccc").gateways[0].token == "aaa.bbb.ccc"


def test_a_gateway_without_account_or_token_is_legacy_and_valid(tmp_path: Path) -> None:
    gateway = load(tmp_path, MINIMAL).gateways[0]
    assert gateway.token is None and gateway.account is None
    assert "auth: none (legacy firmware < 7)" in "\n".join(describe_config(load(tmp_path, MINIMAL)))


def test_envoy_token_with_two_tokenless_gateways_is_ambiguous(tmp_path: Path) -> None:
    doc = {"envoys": [{"name": "a", "host": "h1"}, {"name": "b", "host": "h2"}]}
    found = problems(tmp_path, doc, ENVOY_TOKEN="aaa.bbb.ccc")
    assert [p.split(": ")[1] for p in found] == ["envoys[0].token", "envoys[1].token"]


def test_influxdb_token_fills_a_version_2_sink(tmp_path: Path) -> None:
    sink = {k: v for k, v in INFLUX2.items() if k != "token"}
    config = load(tmp_path, with_(MINIMAL, sinks=[sink]), INFLUXDB_TOKEN="from-env")
    assert config.sinks == (
        InfluxSinkConfig(name="influxdb", url=sink["url"], org="o", token="from-env"),
    )


def test_an_empty_environment_variable_counts_as_unset(tmp_path: Path) -> None:
    found = problems(
        tmp_path, with_(MINIMAL, accounts=[{"name": "h", "email": "a@b"}]), ENPHASE_PASSWORD=""
    )
    assert any("accounts[0].password: missing: set it here" in p for p in found)


def test_load_config_reads_the_process_environment_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENVOY_TOKEN", "tok.from.env")
    assert load_config(write(tmp_path, MINIMAL)).gateways[0].token == "tok.from.env"


# --- warnings ----------------------------------------------------------------------------------


def test_a_file_readable_by_others_that_holds_a_secret_is_warned_about(tmp_path: Path) -> None:
    doc = with_(MINIMAL, accounts=[ACCOUNT], **{"envoys.0.account": "home"})
    config = load_config(write(tmp_path, doc, mode=0o644), environ={})
    [warning] = config.warnings
    assert warning.startswith(f"{tmp_path / 'site.yml'}: accounts[0].password: ")
    assert "0644" in warning and "pw-in-file" not in warning
    assert f"warning: {warning}" in describe_config(config)


def test_a_private_file_or_one_without_secrets_is_not_warned_about(tmp_path: Path) -> None:
    doc = with_(MINIMAL, accounts=[ACCOUNT], **{"envoys.0.account": "home"})
    assert load_config(write(tmp_path, doc, mode=0o600), environ={}).warnings == ()
    env = {"ENPHASE_PASSWORD": "pw"}
    doc = with_(doc, **{"accounts.0": {"name": "home", "email": "a@b"}})
    assert load_config(write(tmp_path, doc, mode=0o644), environ=env).warnings == ()


def test_an_account_no_gateway_uses_is_warned_about(tmp_path: Path) -> None:
    config = load(tmp_path, with_(MINIMAL, accounts=[ACCOUNT]))
    assert config.warnings == (
        f"{tmp_path / 'site.yml'}: accounts[0]: no gateway uses this account",
    )


# --- the plan and secrecy -------------------------------------------------------------------------

FULL: dict[str, Any] = {
    "timezone": "Europe/Amsterdam",
    "accounts": [{**ACCOUNT, "password": "S3cretPassw0rd"}],
    "envoys": [
        {
            "name": "garage",
            "host": "10.0.0.2",
            "serial": "122238082763",
            "account": "home",
            "poll": {"power_s": 2, "inverters_s": 30},
        },
        {"name": "shed", "host": "10.0.0.3", "token": "eyJstatic.token.value"},
        {"name": "old", "host": "10.0.0.4"},
    ],
    "sinks": [
        {**INFLUX2, "name": "influx", "token": "InfluxT0kenValue"},
        {
            "type": "influxdb",
            "name": "v1",
            "version": 1,
            "url": "http://db:8086",
            "username": "u",
            "password": "V1passwordValue",
        },
        {"type": "prometheus", "port": 9500},
        {"type": "sqlite", "path": "x.db"},
    ],
}
SECRETS = ("S3cretPassw0rd", "eyJstatic.token.value", "InfluxT0kenValue", "V1passwordValue")


def test_secrets_never_appear_in_the_plan_or_the_config_repr(tmp_path: Path) -> None:
    config = load(tmp_path, FULL)
    shown = "\n".join(describe_config(config)) + repr(config)
    assert config.accounts[0].password == "S3cretPassw0rd"
    for secret in SECRETS:
        assert secret not in shown


def test_the_example_file_is_valid(tmp_path: Path) -> None:
    env = {"ENPHASE_PASSWORD": "pw", "INFLUXDB_TOKEN": "tok"}
    config = load_config(EXAMPLE, environ=env)
    assert config.gateways and config.sinks
    assert isinstance(config.accounts[0], AccountConfig)
    assert {type(s) for s in config.sinks} == {
        InfluxSinkConfig,
        PrometheusSinkConfig,
        SqliteSinkConfig,
    }
    assert os.fspath(config.source) == os.fspath(EXAMPLE)


# --- the mqtt sink ------------------------------------------------------------------------


def test_an_mqtt_sink_takes_its_defaults_and_its_password_from_the_environment(
    tmp_path: Path,
) -> None:
    sink = {"type": "mqtt", "host": "192.168.1.5", "username": "envoy"}
    config = load(tmp_path, with_(MINIMAL, sinks=[sink]), MQTT_PASSWORD="Mqtt-pw-from-env")
    (mqtt,) = config.sinks
    assert mqtt == MqttSinkConfig(
        name="mqtt", host="192.168.1.5", username="envoy", password="Mqtt-pw-from-env"
    )
    assert (mqtt.port, mqtt.topic_prefix, mqtt.discovery_prefix) == (1883, "envoy", "homeassistant")
    assert mqtt.discovery and not mqtt.inverter_sensors
    shown = "\n".join(describe_config(config)) + repr(config)
    assert "Mqtt-pw-from-env" not in shown
    assert "sink mqtt: mqtt broker 192.168.1.5:1883, user envoy, topics under envoy/" in shown


def test_mqtt_sink_problems_are_reported_by_key(tmp_path: Path) -> None:
    sink = {"type": "mqtt", "topic_prefix": "envoy/#", "ca_file": "nope.pem", "port": 0}
    found = problems(tmp_path, with_(MINIMAL, sinks=[sink]))
    file = str(tmp_path / "site.yml")
    assert f"{file}: sinks[0].host: missing: the MQTT broker's host name or address" in found
    assert any(p.startswith(f"{file}: sinks[0].topic_prefix: expected topic levels") for p in found)
    assert any(p.startswith(f"{file}: sinks[0].ca_file: no such file") for p in found)
    assert any(p.startswith(f"{file}: sinks[0].port:") for p in found)


def test_an_mqtt_sink_without_paho_names_the_install_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "paho", None)  # as if paho-mqtt were not installed
    monkeypatch.setitem(sys.modules, "paho.mqtt", None)
    monkeypatch.setitem(sys.modules, "paho.mqtt.client", None)
    found = problems(tmp_path, with_(MINIMAL, sinks=[{"type": "mqtt", "host": "127.0.0.1"}]))
    assert found == [
        f"{tmp_path / 'site.yml'}: sinks[0].type: mqtt needs the paho-mqtt package:"
        ' pip install "envoy-supervisor[mqtt]"'
    ]
