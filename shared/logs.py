"""Logging setup for every process, and the one place secrets are kept out of logs.

`configure_logging` is called once at the top of each process (supervisor and every
worker). It routes structlog *and* the standard library's `logging` (requests, urllib3,
influxdb-client log there) through one handler on ``stream``, so every line has the same
shape: JSON lines in production, a readable console line on a terminal, timestamps in
ISO 8601 UTC, and the process's ``worker=`` bound. Workers add ``envoy=`` themselves with
``structlog.get_logger().bind(envoy=name)``.

Redaction happens in one processor, after exceptions are formatted and just before
rendering, so it sees everything that will be written:

* the value of any key named like a secret (password, token, secret, authorization,
  session_id, jwt; any case, also inside nested dicts and lists) becomes ``"***"``;
* any string registered with `register_secrets` is masked wherever it appears, in the
  event text, in values and in tracebacks. The supervisor registers the config's
  secrets; the token worker registers each token it gets.

Channel: writes log lines to ``stream`` (stderr by default). Nothing else.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, Mapping
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

MASK = "***"

#: a key whose value is a secret, whatever else the key says ("access_token", "X-Password")
SECRET_KEY = re.compile(r"password|passwd|token|secret|authorization|session_?id|jwt", re.I)

#: shorter registered strings are ignored: masking "abc" everywhere would garble the log
#: far more than it protects (a secret that short is no secret)
MIN_SECRET_CHARS = 4

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}

_secrets: set[str] = set()  #: registered without a slot: masked for the process's life
_slots: dict[str, str] = {}  #: slot -> the one secret it holds now (a renewed token)
_masked: tuple[str, ...] = ()  #: every secret masked now, longest first
_handler: logging.Handler | None = None  # ours, replaced when configure_logging runs again


def register_secrets(values: Iterable[str | None], *, slot: str | None = None) -> None:
    """Mask these strings wherever they appear in a log line from now on (this process).

    A ``slot`` holds one secret: registering under it again replaces the one before. The
    token worker keeps one slot per gateway, so a year of renewed tokens (1425 for an
    installer's 12 h tokens) is not a year of secrets scanned in every log line.
    """
    global _masked
    kept = [v for v in values if v and len(v) >= MIN_SECRET_CHARS]
    if slot is not None:
        for value in kept:
            _slots[slot] = value
    else:
        _secrets.update(kept)
    # Longest first, so a secret that contains another is masked whole.
    _masked = tuple(sorted(_secrets | set(_slots.values()), key=len, reverse=True))


def forget_secrets() -> None:
    """Drop every registered secret (tests; a process never needs to)."""
    global _masked
    _secrets.clear()
    _slots.clear()
    _masked = ()


def _mask_text(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def _mask(value: Any, secrets: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        return _mask_text(value, secrets)
    if isinstance(value, Mapping):
        return {
            k: MASK if isinstance(k, str) and SECRET_KEY.search(k) else _mask(v, secrets)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [_mask(v, secrets) for v in value]
    if isinstance(value, bytes | bytearray):
        return _mask(bytes(value).decode("utf-8", "replace"), secrets)
    if secrets and not isinstance(value, int | float | bool) and value is not None:
        # Other objects are rendered as text anyway: if that text holds a secret, mask it.
        text = repr(value)
        masked = _mask_text(text, secrets)
        if masked != text:
            return masked
    return value


def redact(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: secret-named keys become ``***``; registered secrets are masked."""
    secrets = _masked
    for key, value in list(event_dict.items()):
        if key.startswith("_"):  # structlog's own bookkeeping (_record, _from_structlog)
            continue
        event_dict[key] = MASK if SECRET_KEY.search(key) else _mask(value, secrets)
    return event_dict


def _bind_worker(worker: str | None) -> Processor:
    def add_worker(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
        if worker is not None:
            event_dict.setdefault("worker", worker)
        return event_dict

    return add_worker


def _renderer(format: str, stream: TextIO) -> Processor:
    tty = bool(getattr(stream, "isatty", lambda: False)())
    if format == "json" or (format == "auto" and not tty):
        return structlog.processors.JSONRenderer(default=str, sort_keys=False)
    # Exceptions are already text (format_exc_info ran, so redaction could see them).
    return structlog.dev.ConsoleRenderer(
        colors=tty, exception_formatter=structlog.dev.plain_traceback
    )


def configure_logging(
    level: str = "info",
    format: str = "auto",
    worker: str | None = None,
    stream: TextIO | None = None,
) -> None:
    """Send this process's structlog and stdlib logging to ``stream`` (default stderr).

    ``format``: ``json``, ``console``, or ``auto`` (console on a terminal, else JSON).
    Calling it again replaces the previous setup (tests, or a worker after fork).
    """
    global _handler
    out = stream if stream is not None else sys.stderr
    pre_chain: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _bind_worker(worker),
    ]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=pre_chain,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            redact,
            _renderer(format, out),
        ],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
    root.addHandler(handler)
    root.setLevel(LEVELS.get(level, logging.INFO))
    _handler = handler

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *pre_chain,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
