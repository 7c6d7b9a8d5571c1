"""``INSERT ... SELECT`` and ``UPDATE ... FROM`` of many rows passed as one JSON parameter.

The SQL text is the same for every batch, so psycopg converts and prepares it once and SQLite
reuses its compiled statement, and the rows cost one ``json.dumps`` instead of a bound
parameter each. (A multi-row VALUES of a few hundred rows is new SQL every batch: psycopg
re-parses its placeholders in Python, which was most of a batch on PostgreSQL.) Group-commit
writers (the AMI bridge, the IVR's record, the messaging sidecar) insert their batches so; the
IVR's record updates its contacts so too (one statement per batch and shape of update, where an
executemany is one execution per row for the database and one parameter set per row for the
driver).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import JSON, DateTime, Dialect, Enum, Table, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from ivr.db.database import Executor


class _JsonRows:
    """Rows bound as one JSON parameter: how each column's values are encoded for a back-end."""

    def __init__(self, dialect: Dialect, table: Table, columns: Sequence[str]) -> None:
        # Rows go into json.dumps as they are: datetimes through ``default`` (as SQLAlchemy binds
        # them), JSON columns as nested values, so no row is copied or encoded twice.
        self._convert: dict[str, Callable[[Any], Any]] = {}
        self._datetime: Callable[[Any], Any] = datetime.isoformat
        if dialect.name != "postgresql":
            for c in columns:
                kind = table.c[c].type
                process = kind.dialect_impl(dialect).bind_processor(dialect)
                if process is None or isinstance(kind, JSON) or _plain_enum(kind):
                    continue
                if isinstance(kind, DateTime):
                    self._datetime = process
                else:
                    self._convert[c] = process
        self._last: tuple[Any, Any] = (None, None)

    def _default(self, value: Any) -> Any:
        if isinstance(value, datetime):
            # A batch's rows mostly share one timestamp: bind it once.
            last = self._last  # one read: the writer thread and the server loop share this insert
            if value is last[0]:
                return last[1]
            text = self._datetime(value)
            self._last = (value, text)
            return text
        raise TypeError(f"{type(value).__name__} is not JSON serializable")

    statement: Any  # the subclass's SQL text, reading the rows from ``:rows``
    _driver_sql: str = ""

    def driver_sql(self, dialect: Dialect) -> str:
        """The statement as the driver takes it (its own parameter style), compiled once."""
        if not self._driver_sql:
            self._driver_sql = str(self.statement.compile(dialect=dialect))
        return self._driver_sql

    def payload(self, rows: Sequence[dict[str, Any]]) -> str:
        convert = self._convert
        if convert:
            rows = [{**row, **{c: fn(row[c]) for c, fn in convert.items() if row.get(c) is not None}}
                    for row in rows]
        return json.dumps(rows, default=self._default, ensure_ascii=False, separators=(",", ":"))

    async def execute(self, executor: Executor, rows: Sequence[dict[str, Any]]) -> Any:
        return await executor.execute(self.statement, {"rows": self.payload(rows)})


async def execute_together(conn: AsyncConnection, work: Sequence[tuple[_JsonRows, Sequence[dict[str, Any]]]]) -> None:
    """Statements whose results nobody reads, in order. PostgreSQL: sent in one round trip
    (psycopg's pipeline mode) instead of one each; elsewhere one after the other."""
    if conn.dialect.name != "postgresql" or len(work) < 2:
        for statement, rows in work:
            await statement.execute(conn, rows)
        return
    import psycopg

    raw = (await conn.get_raw_connection()).driver_connection
    assert raw is not None
    sql = ""
    try:
        async with raw.pipeline():
            for statement, rows in work:
                sql = statement.driver_sql(conn.dialect)
                await raw.execute(sql, {"rows": statement.payload(rows)})
    except psycopg.Error as exc:
        # As SQLAlchemy raises it (IntegrityError, DataError...): a group commit splits a batch
        # whose bad row broke it, and tells a broken database apart, by these classes.
        raise DBAPIError.instance(sql, None, exc, psycopg.Error) from exc


def _rows_source(dialect: Dialect, table: Table, columns: Sequence[str]) -> str:
    """The FROM item that reads the ``:rows`` JSON parameter as rows (PostgreSQL: alias ``r``)."""
    if dialect.name == "postgresql":
        quote = dialect.identifier_preparer.quote
        types = ", ".join(f"{quote(c)} {table.c[c].type.compile(dialect)}" for c in columns)
        return f"json_to_recordset(CAST(:rows AS json)) AS r({types})"
    return "json_each(:rows)"


def _sqlite_value(table: Table, column: str) -> str:
    """SQLite: a row's value: "->" gives a JSON column its JSON text, "->>" any other its value."""
    return f"value {'->' if isinstance(table.c[column].type, JSON) else '->>'} '$.{column}'"


class JsonInsert(_JsonRows):
    """One table's batch INSERT for one back-end. ``conflict``: the unique columns whose
    duplicates are skipped (``()``: a duplicate of any unique column is skipped)."""

    def __init__(self, dialect: Dialect, table: Table, columns: Sequence[str], conflict: Sequence[str] = (),
                 returning: Sequence[str] = ()) -> None:
        super().__init__(dialect, table, columns)
        quote = dialect.identifier_preparer.quote
        names = ", ".join(quote(c) for c in columns)
        picked = names if dialect.name == "postgresql" else ", ".join(_sqlite_value(table, c) for c in columns)
        # "WHERE true" keeps SQLite from reading ON CONFLICT as a join constraint.
        target = f" ({', '.join(quote(c) for c in conflict)})" if conflict else ""
        sql = (f"INSERT INTO {quote(table.name)} ({names}) SELECT {picked} FROM "
               f"{_rows_source(dialect, table, columns)} WHERE true ON CONFLICT{target} DO NOTHING")
        if returning:
            sql += " RETURNING " + ", ".join(quote(c) for c in returning)
        self.statement = text(sql)
        self.columns = tuple(columns)


class JsonUpdate(_JsonRows):
    """One table's batch UPDATE: each row sets ``columns`` of the row whose ``key`` it names
    (one statement for the batch instead of one execution per row)."""

    def __init__(self, dialect: Dialect, table: Table, key: str, columns: Sequence[str]) -> None:
        super().__init__(dialect, table, [key, *columns])
        quote = dialect.identifier_preparer.quote
        if dialect.name == "postgresql":
            sets = ", ".join(f"{quote(c)} = r.{quote(c)}" for c in columns)
            match = f"r.{quote(key)}"
        else:
            sets = ", ".join(f"{quote(c)} = {_sqlite_value(table, c)}" for c in columns)
            match = _sqlite_value(table, key)
        self.statement = text(f"UPDATE {quote(table.name)} SET {sets} FROM {_rows_source(dialect, table, [key, *columns])} "
                              f"WHERE {quote(table.name)}.{quote(key)} = {match}")


class JsonLock(_JsonRows):
    """Row locks (``FOR NO KEY UPDATE``, what an UPDATE takes) on the rows of ``table`` whose
    ``key`` the JSON rows name, taken in key order. Writers that change several rows of a table
    in one transaction lock them so first: two such transactions then wait for each other in one
    order instead of each holding a row the other wants (a deadlock). PostgreSQL only; on SQLite
    one writer holds the whole database, so ``execute`` does nothing."""

    def __init__(self, dialect: Dialect, table: Table, key: str) -> None:
        super().__init__(dialect, table, [key])
        quote = dialect.identifier_preparer.quote
        self.enabled = dialect.name == "postgresql"
        name, column = quote(table.name), quote(key)
        self.statement = text(f"SELECT t.{column} FROM {name} AS t WHERE t.{column} IN (SELECT r.{column} FROM "
                              f"{_rows_source(dialect, table, [key])}) ORDER BY t.{column} FOR NO KEY UPDATE OF t")

    async def execute(self, executor: Executor, rows: Sequence[dict[str, Any]]) -> Any:
        if self.enabled and rows:
            return await super().execute(executor, rows)
        return None


def _plain_enum(kind: Any) -> bool:
    """An Enum column whose members' names are their values: binding changes nothing."""
    members = getattr(kind, "enum_class", None)
    return isinstance(kind, Enum) and members is not None and all(m.name == m.value for m in members)


_CACHE: dict[tuple[Any, ...], _JsonRows] = {}  # (kind, back-end, table, arguments) -> statement


def _dialect(executor: Executor) -> Dialect:
    return executor.dialect if hasattr(executor, "dialect") else executor.get_bind().dialect


def json_update(executor: Executor, table: Table, key: str, columns: Sequence[str]) -> JsonUpdate:
    """The (cached) ``JsonUpdate`` for the executor's back-end."""
    dialect = _dialect(executor)
    cache_key = (JsonUpdate, dialect.name, table.name, key, tuple(columns))
    found = _CACHE.get(cache_key)
    if found is None:
        found = _CACHE[cache_key] = JsonUpdate(dialect, table, key, columns)
    return cast(JsonUpdate, found)


def json_lock(executor: Executor, table: Table, key: str) -> JsonLock:
    """The (cached) ``JsonLock`` for the executor's back-end."""
    dialect = _dialect(executor)
    cache_key = (JsonLock, dialect.name, table.name, key)
    found = _CACHE.get(cache_key)
    if found is None:
        found = _CACHE[cache_key] = JsonLock(dialect, table, key)
    return cast(JsonLock, found)


def json_insert(executor: Executor, table: Table, columns: Sequence[str], conflict: Sequence[str] = (),
                returning: Sequence[str] = ()) -> JsonInsert:
    """The (cached) ``JsonInsert`` for the executor's back-end."""
    dialect = _dialect(executor)
    cache_key = (JsonInsert, dialect.name, table.name, tuple(columns), tuple(conflict), tuple(returning))
    found = _CACHE.get(cache_key)
    if found is None:
        found = _CACHE[cache_key] = JsonInsert(dialect, table, columns, conflict, returning)
    return cast(JsonInsert, found)
