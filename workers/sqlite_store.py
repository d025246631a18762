"""The SQLite sink's store: every point in a plain, queryable SQLite file.

One table per measurement (``power``, ``energy``, ``inverter``, ``energy_daily``), a
column per built-in tag and per field, and ``time`` (INTEGER, ns UTC). Anyone can open
the file with the ``sqlite3`` shell or Grafana's SQLite plugin while the sink writes:
WAL mode lets readers see the last committed state without blocking the writer.

Decisions:

* Users tag inverters with keys of their own choosing (``array: east``, ``string: 3``),
  and the keys differ from site to site and from one inverter to the next. Rather than
  ALTER TABLE for every new key (and a schema that depends on the config history), those
  tags go into one ``tags`` TEXT column holding the JSON object with sorted keys, e.g.
  ``{"array":"east"}``; SQLite's ``json_extract(tags, '$.array')`` queries it. Every
  table has the column, so a tag the built-in columns do not know is never lost.
* Each table has a UNIQUE key over its built-in tag columns and ``time``: the series
  identity, as in InfluxDB. Writes are upserts, so a replayed batch never duplicates a
  row, and (again as InfluxDB does) fields of two points of one series and time merge:
  a field a later point leaves out keeps its earlier value. User tags are not part of
  the key: a serial is one inverter whatever the user calls it; the latest tags win.
* An absent built-in tag is stored as '' rather than NULL, because UNIQUE treats every
  NULL as distinct and would let replays of ``energy_daily`` rows (which have a line or
  a serial, never both) duplicate.
* Indexes: the UNIQUE key serves per-series queries; (envoy, time) serves "everything of
  one gateway in a range", (time) everything in a range.
* Field columns come from the tables in `shared.points`; a field added there later is
  added to an existing file with ALTER TABLE on open. A built-in tag column added later
  (``direction`` of energy_daily) is part of the key, which ALTER cannot change: the
  table is rebuilt on open, moving the tag out of the JSON column.
* ``synchronous=NORMAL``: a commit survives the sink being SIGKILLed (see
  `workers.spool` for why FULL is not the default). This store is the SQLite sink's
  durable store: the sink acknowledges a batch once `write` returns, and needs no spool.

Reads and writes: one SQLite file; no channels.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Literal

from shared.points import (
    DAILY_FIELDS,
    ENERGY,
    ENERGY_DAILY,
    ENERGY_FIELDS,
    INVERTER,
    INVERTER_FIELDS,
    POWER,
    POWER_FIELDS,
    FieldTable,
    Point,
)

_BUSY_TIMEOUT_MS = 10_000


def _names(table: FieldTable) -> tuple[str, ...]:
    return tuple(name for name, _ in table)


#: measurement -> (built-in tag columns: the series key with time, field columns)
SCHEMA: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    POWER: (("envoy", "measurement_type", "line"), _names(POWER_FIELDS)),
    ENERGY: (("envoy", "measurement_type", "line"), _names(ENERGY_FIELDS)),
    INVERTER: (("envoy", "serial"), _names(INVERTER_FIELDS)),
    # direction: delivered / received meter series share envoy, type and line with the
    # lifetime one; without it in the key the three days overwrote each other.
    ENERGY_DAILY: (
        ("envoy", "measurement_type", "line", "serial", "direction"),
        _names(DAILY_FIELDS),
    ),
}


def _create_statements(table: str, tags: Sequence[str], fields: Sequence[str]) -> list[str]:
    columns = [f"{t} TEXT NOT NULL DEFAULT ''" for t in tags]
    columns.append("tags TEXT NOT NULL DEFAULT '{}'")
    columns += [f"{f} REAL" for f in fields]
    columns.append("time INTEGER NOT NULL")
    key = ", ".join([*tags, "time"])
    return [
        f"CREATE TABLE IF NOT EXISTS {table} ({', '.join(columns)}, UNIQUE ({key}))",
        f"CREATE INDEX IF NOT EXISTS {table}_envoy_time ON {table} (envoy, time)",
        f"CREATE INDEX IF NOT EXISTS {table}_time ON {table} (time)",
    ]


def _upsert_statement(table: str, tags: Sequence[str], fields: Sequence[str]) -> str:
    columns = [*tags, "tags", *fields, "time"]
    # COALESCE: a field the new point leaves out keeps the stored value (InfluxDB merges
    # the fields of points with one series and timestamp the same way).
    updates = ["tags = excluded.tags"]
    updates += [f"{f} = COALESCE(excluded.{f}, {f})" for f in fields]
    return (
        f"INSERT INTO {table} ({', '.join(columns)})"
        f" VALUES ({', '.join('?' * len(columns))})"
        f" ON CONFLICT ({', '.join([*tags, 'time'])}) DO UPDATE SET {', '.join(updates)}"
    )


class SqliteStore:
    """Points -> rows, idempotently, one transaction per `write`."""

    def __init__(self, path: Path, *, synchronous: Literal["NORMAL", "FULL"] = "NORMAL") -> None:
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, timeout=_BUSY_TIMEOUT_MS / 1000)
        self._db.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute(f"PRAGMA synchronous = {synchronous}")
        self._upserts: dict[str, str] = {}
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._migrate_tag_columns()
            for table, (tags, fields) in SCHEMA.items():
                for statement in _create_statements(table, tags, fields):
                    self._db.execute(statement)
                self._add_missing_fields(table, fields)
                self._upserts[table] = _upsert_statement(table, tags, fields)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def write(self, points: Iterable[Point]) -> None:
        """Store the points (all or none: one transaction). Replays overwrite, never add."""
        rows: dict[str, list[tuple[object, ...]]] = {table: [] for table in SCHEMA}
        for point in points:
            rows_of_table = rows.get(point.measurement)
            if rows_of_table is None:
                raise ValueError(f"{self.path}: no table for measurement {point.measurement!r}")
            rows_of_table.append(_row(point, *SCHEMA[point.measurement]))
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for table, table_rows in rows.items():
                if table_rows:
                    self._db.executemany(self._upserts[table], table_rows)
            self._db.execute("COMMIT")
        except BaseException:
            # SQLite may have rolled back itself (a full disk at COMMIT): a second
            # ROLLBACK would raise and hide the error that matters.
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise

    def count(self, measurement: str) -> int:
        """Rows stored for one measurement (for status and the demo's summary)."""
        if measurement not in SCHEMA:
            raise ValueError(f"{self.path}: no table for measurement {measurement!r}")
        return int(self._db.execute(f"SELECT count(*) FROM {measurement}").fetchone()[0])

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _migrate_tag_columns(self) -> None:
        """Rebuild a table whose file predates one of its built-in tag columns.

        A tag column is part of the UNIQUE key, which ALTER TABLE cannot change: the
        table is copied into the new layout, the tag moved out of the JSON ``tags``.
        (Files written before ``direction`` joined the energy_daily key.)
        """
        for table, (tags, fields) in SCHEMA.items():
            present = [row[1] for row in self._db.execute(f"PRAGMA table_info({table})")]
            missing = [t for t in tags if t not in present]
            if not present or not missing:
                continue
            old = f"{table}_before_migration"
            for (index,) in self._db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?"
                " AND sql IS NOT NULL",
                (table,),
            ).fetchall():
                self._db.execute(f"DROP INDEX {index}")
            self._db.execute(f"ALTER TABLE {table} RENAME TO {old}")
            for statement in _create_statements(table, tags, fields):
                self._db.execute(statement)
            kept = [c for c in present if c in tags or c in fields or c == "time"]
            moved = [f"COALESCE(json_extract(tags, '$.{t}'), '')" for t in missing]
            stripped = "json_remove(tags, " + ", ".join(f"'$.{t}'" for t in missing) + ")"
            self._db.execute(
                f"INSERT OR REPLACE INTO {table} ({', '.join([*kept, *missing, 'tags'])})"
                f" SELECT {', '.join([*kept, *moved, stripped])} FROM {old}"
            )
            self._db.execute(f"DROP TABLE {old}")

    def _add_missing_fields(self, table: str, fields: Sequence[str]) -> None:
        present = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
        for name in fields:
            if name not in present:
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {name} REAL")


def _row(point: Point, tags: Sequence[str], fields: Sequence[str]) -> tuple[object, ...]:
    unknown_fields = point.fields.keys() - set(fields)
    if unknown_fields:
        raise ValueError(f"{point.measurement}: no column for fields {sorted(unknown_fields)}")
    extra = {k: v for k, v in point.tags.items() if k not in tags}
    return (
        *(point.tags.get(t, "") for t in tags),
        json.dumps(extra, sort_keys=True, separators=(",", ":")),
        *(point.fields.get(f) for f in fields),
        point.time_ns,
    )
