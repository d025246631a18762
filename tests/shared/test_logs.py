"""Log lines: JSON with worker and UTC time off a terminal, console on one, never a secret."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.logs import MASK, configure_logging, forget_secrets, register_secrets


class TtyStream(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def clean_logging() -> Iterator[None]:
    forget_secrets()
    structlog.contextvars.clear_contextvars()
    yield
    forget_secrets()
    configure_logging("info", "json", stream=io.StringIO())  # detach from the test's stream


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_lines_off_a_terminal_are_json_with_worker_level_and_utc_time() -> None:
    out = io.StringIO()
    configure_logging("info", "auto", worker="power:garage", stream=out)
    structlog.get_logger().bind(envoy="garage").info("polled", samples=12)
    [line] = json_lines(out)
    assert line["event"] == "polled"
    assert line["worker"] == "power:garage"
    assert line["envoy"] == "garage"
    assert line["level"] == "info"
    assert line["samples"] == 12
    assert line["timestamp"].endswith("Z")


def test_lines_on_a_terminal_are_readable_console_lines() -> None:
    out = TtyStream()
    configure_logging("info", "auto", worker="sink:db", stream=out)
    structlog.get_logger().info("flushed", points=3)
    text = out.getvalue()
    assert "flushed" in text
    assert "sink:db" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


def test_lines_below_the_configured_level_are_dropped() -> None:
    out = io.StringIO()
    configure_logging("warning", "json", stream=out)
    structlog.get_logger().info("chatty")
    structlog.get_logger().warning("important")
    assert [line["event"] for line in json_lines(out)] == ["important"]


def test_standard_library_logging_comes_out_in_the_same_json_shape() -> None:
    out = io.StringIO()
    configure_logging("info", "json", worker="token:home", stream=out)
    logging.getLogger("urllib3.connectionpool").warning("retrying %s", "/tokens")
    [line] = json_lines(out)
    assert line["event"] == "retrying /tokens"
    assert line["worker"] == "token:home"
    assert line["level"] == "warning"


def test_values_of_secret_named_keys_are_masked_also_when_nested() -> None:
    out = io.StringIO()
    configure_logging("info", "json", stream=out)
    structlog.get_logger().info(
        "login",
        password="hunter2hunter2",
        Authorization="Bearer abc.def.ghi",
        form={"user": {"email": "me@example.com", "Password": "pw-nested"}},
        cookies=[{"session_id": "s3ss10n"}],
        access_token="tok-123456",
        jwt="eyJhbGciOi",
    )
    [line] = json_lines(out)
    assert line["password"] == MASK
    assert line["Authorization"] == MASK
    assert line["form"] == {"user": {"email": "me@example.com", "Password": MASK}}
    assert line["cookies"] == [{"session_id": MASK}]
    assert line["access_token"] == MASK
    assert line["jwt"] == MASK


def test_registered_secrets_are_masked_anywhere_in_the_text() -> None:
    out = io.StringIO()
    configure_logging("info", "json", stream=out)
    register_secrets(["eyJ.secret.jwt", None, ""])
    log = structlog.get_logger()
    log.info("got token eyJ.secret.jwt from cloud", detail={"body": "x eyJ.secret.jwt y"})
    logging.getLogger("requests").info("header Bearer eyJ.secret.jwt")
    text = out.getvalue()
    assert "eyJ.secret.jwt" not in text
    assert text.count(MASK) == 3


def test_registered_secrets_are_masked_in_exception_tracebacks() -> None:
    out = io.StringIO()
    configure_logging("info", "console", stream=out)
    register_secrets(["s3cr3t-password"])
    try:
        raise ValueError("login failed for s3cr3t-password")
    except ValueError:
        structlog.get_logger().exception("login crashed")
    text = out.getvalue()
    assert "login crashed" in text
    assert "ValueError" in text
    assert "s3cr3t-password" not in text


def test_a_secret_containing_another_is_masked_whole() -> None:
    out = io.StringIO()
    configure_logging("info", "json", stream=out)
    register_secrets(["abcd", "abcdefgh"])
    structlog.get_logger().info("value abcdefgh")
    [line] = json_lines(out)
    assert line["event"] == f"value {MASK}"


def test_very_short_secrets_are_not_masked_everywhere() -> None:
    out = io.StringIO()
    configure_logging("info", "json", stream=out)
    register_secrets(["a"])
    structlog.get_logger().info("a plain line")
    [line] = json_lines(out)
    assert line["event"] == "a plain line"


def test_a_secret_registered_in_a_slot_replaces_the_one_before() -> None:
    # A year of renewed tokens must not become a year of secrets scanned in every line.
    out = io.StringIO()
    configure_logging("info", "json", stream=out)
    register_secrets(["the-password"])
    for n in range(2000):
        register_secrets([f"token-{n:04d}"], slot="token:owner:1234")
    structlog.get_logger().info("token-1998 token-1999 the-password")
    [line] = json_lines(out)
    assert line["event"] == f"token-1998 {MASK} {MASK}"


SECRETS = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=4, max_size=30
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(secret=SECRETS, prefix=st.text(max_size=20), suffix=st.text(max_size=20))
def test_a_registered_secret_never_appears_in_a_json_line(
    secret: str, prefix: str, suffix: str
) -> None:
    out = io.StringIO()
    configure_logging("info", "json", worker="w", stream=out)
    register_secrets([secret])
    structlog.get_logger().info(prefix + secret + suffix, field=[secret, {"k": secret}])
    [line] = json_lines(out)
    # (only what we logged: a secret like "even" may well be part of the key "event")
    assert secret not in line["event"]
    assert secret not in json.dumps(line["field"], ensure_ascii=False)
