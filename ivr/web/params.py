"""Parsing numbers from URLs before they reach the database.

Primary keys are ``INTEGER`` columns (32-bit on PostgreSQL; SQLite refuses anything past 64
bits), so ``int()`` of a path segment is not enough: ``/api/recordings/99999999999999999999``
would reach the driver and fail as a 500. A number outside the column's range names no row:
``path_id`` answers 404 for it, as for any other missing row, and ``query_int`` answers 400.
"""

from __future__ import annotations

import re

from aiohttp import web

from ivr.web.errors import json_error

MAX_DB_ID = 2**31 - 1  # the largest value of an INTEGER primary key on PostgreSQL
_DIGITS = re.compile(r"[0-9]{1,10}")  # ASCII only: int() would also take " 7", "+7", "7_0", "٧"


def parse_db_id(raw: str | None) -> int | None:
    """The positive database id spelled by ``raw``, or None when it cannot be one."""
    if raw is None or not _DIGITS.fullmatch(raw):
        return None
    value = int(raw)
    return value if 1 <= value <= MAX_DB_ID else None


def path_id(request: web.Request, name: str = "id", what: str = "record") -> int:
    """The id in the URL path; a JSON 404 when it is not a possible id (so no such row)."""
    value = parse_db_id(request.match_info.get(name))
    if value is None:
        raise json_error(404, f"no such {what} / 찾을 수 없습니다")
    return value


def query_int(request: web.Request, name: str, default: int | None = None,
              low: int = 0, high: int = MAX_DB_ID) -> int | None:
    """An optional whole number in the query string, within [low, high]; else a JSON 400."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if re.fullmatch(r"-?[0-9]{1,10}", raw) and low <= (value := int(raw)) <= high:
        return value
    raise json_error(400, f"{name}: expected a whole number from {low} to {high} "
                          f"/ {low}~{high} 사이의 정수여야 합니다")
