"""``INSERT ... SELECT`` of many rows passed as one JSON parameter.

The SQL text is the same for every batch, so psycopg converts and prepares it once and SQLite
reuses its compiled statement, and the rows cost one ``json.dumps`` instead of a bound
parameter each. (A multi-row VALUES of a few hundred rows is new SQL every batch: psycopg
re-parses its placeholders in Python, which was most of a batch on PostgreSQL.) Group-commit
writers (the AMI bridge, the IVR's record, the messaging sidecar) insert their batches so.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, Dialect, Table, text

from ivr.db.database import Executor


class JsonInsert:
    """One table's batch INSERT for one back-end. ``conflict``: the unique columns whose
    duplicates are skipped (``()``: a duplicate of any unique column is skipped)."""

    def __init__(self, dialect: Dialect, table: Table, columns: Sequence[str], conflict: Sequence[str] = (),
                 returning: Sequence[str] = ()) -> None:
        quote = dialect.identifier_preparer.quote
        names = ", ".join(quote(c) for c in columns)
        self._convert: dict[str, Callable[[Any], Any]]
        if dialect.name == "postgresql":
            types = ", ".join(f"{quote(c)} {table.c[c].type.compile(dialect)}" for c in columns)
            source = f"SELECT {names} FROM json_to_recordset(CAST(:rows AS json)) AS r({types})"
            self._convert = {c: datetime.isoformat for c in columns if isinstance(table.c[c].type, DateTime)}
        else:
            # SQLite: the values as SQLAlchemy would bind them (its datetime text, JSON as text);
            # "WHERE true" keeps ON CONFLICT from being read as a join constraint.
            source = "SELECT " + ", ".join(f"value ->> '$.{c}'" for c in columns) + " FROM json_each(:rows) WHERE true"
            self._convert = {c: fn for c in columns
                             if (fn := table.c[c].type.dialect_impl(dialect).bind_processor(dialect)) is not None}
        target = f" ({', '.join(quote(c) for c in conflict)})" if conflict else ""
        sql = f"INSERT INTO {quote(table.name)} ({names}) {source} ON CONFLICT{target} DO NOTHING"
        if returning:
            sql += " RETURNING " + ", ".join(quote(c) for c in returning)
        self.statement = text(sql)
        self.columns = tuple(columns)

    async def execute(self, executor: Executor, rows: Sequence[dict[str, Any]]) -> Any:
        convert = self._convert
        payload = [{c: (convert[c](row[c]) if c in convert and row[c] is not None else row[c])
                    for c in self.columns} for row in rows]
        return await executor.execute(self.statement, {"rows": json.dumps(payload)})


_CACHE: dict[tuple[str, str, tuple[str, ...], tuple[str, ...], tuple[str, ...]], JsonInsert] = {}


def json_insert(executor: Executor, table: Table, columns: Sequence[str], conflict: Sequence[str] = (),
                returning: Sequence[str] = ()) -> JsonInsert:
    """The (cached) ``JsonInsert`` for the executor's back-end."""
    dialect = executor.dialect if hasattr(executor, "dialect") else executor.get_bind().dialect
    key = (dialect.name, table.name, tuple(columns), tuple(conflict), tuple(returning))
    found = _CACHE.get(key)
    if found is None:
        found = _CACHE[key] = JsonInsert(dialect, table, columns, conflict, returning)
    return found

