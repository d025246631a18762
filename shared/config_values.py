"""Reading single values out of parsed YAML, with every problem named by file and key.

`Reader` walks the plain dicts and lists that ``yaml.safe_load`` returned: each getter
returns a typed value (or the default) and records a ``FILE: key.path: problem`` line
when the value is wrong, so the loader can report every problem at once. The ``check_*``
functions validate one string and return the problem, or None. Secret values are never
quoted in a problem. Used by `shared.config_loader` and `shared.config_sinks` only;
reads and writes nothing.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import re
import stat
import zoneinfo
from collections.abc import Callable, Collection, Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from shared.errors import excerpt

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # worker names, file names, tags
HOSTNAME = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?")
TAG_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # a valid Prometheus label name too
USERINFO = re.compile(r"^(\w+://)[^/@]*@")  # user:password@ in a URL, never shown
#: tag names the measurements already use: a user tag must not shadow them (``direction``
#: is the daily series' delivered/received tag: an inverter tag of that name would share its
#: SQLite column and InfluxDB tag)
RESERVED_TAGS = frozenset({"envoy", "serial", "measurement_type", "line", "direction"})


def defaults(cls: type) -> dict[str, Any]:
    return {f.name: f.default for f in fields(cls)}


def show(value: object) -> str:
    """A value as a short excerpt for a message, spelled the way YAML spells it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return repr(excerpt(USERINFO.sub(r"\1***@", value)))
    return excerpt(repr(value))


def one_line(text: str) -> str:
    """Text with control characters (a key with a newline in it, say) escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def kind(value: object) -> str:
    """What sort of value this is, without showing it (for secrets)."""
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int | float):
        return "a number"
    return show(value) if isinstance(value, dict | list) or value is None else "another type"


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class Reader:
    """Walks the parsed YAML, returning typed values and collecting every problem."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[str] = []
        self.faulty: set[str] = set()  # key paths already reported, so not reported twice
        self.secrets_in_file: list[str] = []  # key paths of secrets given in the file

    def problem(self, path: str, text: str) -> None:
        line = f"{self.file}: {path or '(top level)'}: {text}"
        self.problems.append(one_line(line))
        self.faulty.add(path)

    def mapping(self, value: object, path: str, allowed: Collection[str]) -> dict[str, Any]:
        """``value`` as a mapping (null: empty) with its unknown keys reported and dropped."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.problem(path, f"expected a mapping of keys, got {show(value)}")
            return {}
        known: dict[str, Any] = {}
        for key, item in value.items():
            if isinstance(key, str) and key in allowed:
                known[key] = item
                continue
            close = difflib.get_close_matches(str(key), list(allowed), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            self.problem(join(path, str(key)), f"unknown key{hint}")
        return known

    def entries(self, data: dict[str, Any], key: str) -> list[tuple[str, Any]]:
        value = data.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.problem(key, f"expected a list, got {show(value)}")
            return []
        return [(f"{key}[{i}]", item) for i, item in enumerate(value)]

    def text(
        self,
        data: dict[str, Any],
        path: str,
        key: str,
        default: str | None = None,
        *,
        secret: bool = False,
        check: Callable[[str], str | None] | None = None,
    ) -> str | None:
        value = data.get(key)
        if value is None:
            return default
        if isinstance(value, int) and not isinstance(value, bool) and not secret:
            value = str(value)  # serial: 122238082763 unquoted, port-less hosts, ...
        if not isinstance(value, str):
            got = kind(value) if secret else show(value)  # a secret is never quoted
            self.problem(join(path, key), f"expected a string, got {got}")
            return default
        if secret and value:
            self.secrets_in_file.append(join(path, key))
        trouble = check(value) if check is not None else None
        if trouble:
            self.problem(join(path, key), trouble if secret else f"{trouble}, got {show(value)}")
            return default
        return value

    def number(self, data: dict[str, Any], path: str, key: str, default: float) -> float:
        value = data.get(key)
        if value is None:
            return default
        # (bool is an int; a float(int) of over 308 digits would overflow)
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if number and abs(value) < 1e300 and math.isfinite(value) and value > 0:
            return float(value)
        self.problem(join(path, key), f"expected a number > 0, got {show(value)}")
        return default

    def whole(self, data: dict[str, Any], path: str, key: str, default: int, hi: int) -> int:
        value = data.get(key)
        if value is None:
            return default
        if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= hi:
            return value
        self.problem(join(path, key), f"expected a whole number 1..{hi}, got {show(value)}")
        return default

    def flag(self, data: dict[str, Any], path: str, key: str, default: bool) -> bool:
        value = data.get(key)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        self.problem(join(path, key), f"expected true or false, got {show(value)}")
        return default

    def choice(
        self, data: dict[str, Any], path: str, key: str, default: Any, choices: tuple[Any, ...]
    ) -> Any:
        value = data.get(key)
        if value is None:
            return default
        if value in choices and not isinstance(value, bool):
            return choices[choices.index(value)]  # version: 1.0 -> 1
        options = ", ".join(map(str, choices))
        self.problem(join(path, key), f"expected one of {options}, got {show(value)}")
        return default

    def fill_from_env(
        self,
        entries: list[tuple[str, dict[str, Any]]],
        key: str,
        var: str,
        environ: Mapping[str, str],
        *,
        required: bool,
    ) -> None:
        """Give the one entry lacking ``key`` the value of ``var``; report what stays missing."""
        lacking = [(path, kwargs) for path, kwargs in entries if not kwargs.get(key)]
        value = environ.get(var)
        if value and len(lacking) == 1:
            lacking[0][1][key] = value
            return
        for path, _ in lacking:
            if join(path, key) in self.faulty:
                continue
            if value:  # ambiguous even where not required: never guess whose secret it is
                self.problem(
                    join(path, key),
                    f"missing, and {var} cannot fill it: {len(lacking)} "
                    f"entries lack {key}; give each its own {key} in the file",
                )
            elif required:
                self.problem(
                    join(path, key), f"missing: set it here or in the environment as {var}"
                )

    def unique(self, entries: list[tuple[str, dict[str, Any]]], key: str) -> None:
        seen: dict[Any, str] = {}
        for path, kwargs in entries:
            value = kwargs.get(key)
            if value is None:
                continue
            if value in seen:
                self.problem(join(path, key), f"{show(value)} is already used by {seen[value]}")
            else:
                seen[value] = path

    def mode_warning(self, source: Path) -> list[str]:
        """A warning when the file holds secrets and others may read it."""
        if not self.secrets_in_file:
            return []
        try:
            mode = stat.S_IMODE(source.stat().st_mode)
        except OSError:
            return []
        if not mode & 0o044:
            return []
        return [
            f"{self.file}: {self.secrets_in_file[0]}: the file holds secrets but is readable by "
            f"others (mode {mode:04o}): chmod 600 it, or move the secrets to the environment"
        ]


# --- value checks: None when fine, else the problem -------------------------------------


def check_name(value: str) -> str | None:
    if NAME.fullmatch(value):
        return None
    return "expected a name of up to 64 letters, digits, '.', '_' or '-'"


def check_serial(value: str) -> str | None:
    return None if value.isascii() and value.isdigit() else "expected a serial number of digits"


def check_address(value: str) -> str | None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        if not HOSTNAME.fullmatch(value):
            return "expected a host name or IP address"
    return None


def check_host(value: str) -> str | None:
    if "/" in value:
        return "expected host or host:port, without scheme or path"
    bracketed = re.fullmatch(r"\[([^\]]*)\](?::(\d+))?", value)
    if bracketed:  # [IPv6]:port
        host, port = bracketed.group(1), bracketed.group(2)
        if ":" not in host or check_address(host):
            return "expected an IPv6 address within [ ]"
    elif value.count(":") == 1:
        host, port = value.split(":")
    else:  # no port, or a bare IPv6 address
        host, port = value, None
    if check_address(host):
        return "expected host or host:port, without scheme or path"
    if port is not None and not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        return "expected a port 1..65535 after the ':'"
    return None


def check_url(schemes: tuple[str, ...]) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 -- raises ValueError on a bad port
        except ValueError:
            return "expected a URL"
        if parts.scheme not in schemes or not parts.hostname:
            return f"expected a URL starting with {' or '.join(f'{s}://' for s in schemes)}"
        if "@" in parts.netloc:  # a password in a URL ends up in logs and process lists
            return "expected no user or password in the URL: use the token or password keys"
        return None

    return check


def check_topic(value: str) -> str | None:
    """An MQTT topic prefix: levels without wildcards, none of them empty."""
    levels = value.split("/")
    if value.isprintable() and all(lv and "+" not in lv and "#" not in lv for lv in levels):
        return None
    return "expected topic levels separated by '/', none empty, without '+' or '#'"


def check_email(value: str) -> str | None:
    return None if "@" in value.strip("@") else "expected an email address"


def check_secret(value: str) -> str | None:
    return None if value and "\n" not in value else "expected a non-empty single line"


def check_timezone(value: str) -> str | None:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return "expected an IANA time zone such as Europe/Amsterdam"
    return None


def check_tag_key(value: str) -> str | None:
    if value in RESERVED_TAGS:
        return f"is reserved (the measurements use {', '.join(sorted(RESERVED_TAGS))})"
    if not TAG_KEY.fullmatch(value) or value.startswith("__"):
        return "expected a tag name of letters, digits and '_', not starting with a digit or '__'"
    return None


def check_tag_value(value: str) -> str | None:
    one_line = "\n" not in value and "\r" not in value
    return None if value.strip() and one_line else "expected a non-empty single line"


def check_path(value: str) -> str | None:
    return None if value and "\0" not in value else "expected a path"


def resolve(base: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path
