"""Reports and the knowledge base at 120's volume, on SQLite and PostgreSQL.

A month of contacts (``BENCH_REPORT_CONTACTS``, default 660,000: 22,000 a day for 30 days,
across queues, channels and languages, three in four answered) is loaded straight into a fresh
database (SQLite executemany, PostgreSQL COPY); then a fresh Python process runs what the
supervisor's report API runs: ``ivr.reports.contacts.export_csv`` (every row to a counting
sink, as the HTTP response would send it) and ``aggregate`` (per local hour, queue, channel and
language). Peak memory is that process's VmHWM after ``/proc/self/clear_refs`` reset it, minus
its RSS before: what that step added (measured in the process that had run the benches before,
the memory they had freed and it kept hid it: 0.00). The knowledge base gets ``BENCH_KB_ARTICLES`` (default 10,000)
generated Korean/English articles and ``BENCH_KB_QUERIES`` searches (words with and without
spaces and particles, 2 to 6 syllables) through ``ivr.knowledge.search.search_articles``.
"""

from __future__ import annotations

import asyncio
import csv
import multiprocessing
import os
import random
import sqlite3
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from bench import report
from bench.databases import postgres_available, postgres_db, sqlite_db
from bench.measure import percentile
from ivr.db import Database
from ivr.knowledge.models import Article
from ivr.knowledge.search import search_articles
from ivr.knowledge.text import compact
from ivr.reports.contacts import aggregate, export_csv

QUICK = os.environ.get("BENCH_QUICK") == "1"
CONTACTS = int(os.environ.get("BENCH_REPORT_CONTACTS", "30000" if QUICK else "660000"))
ARTICLES = int(os.environ.get("BENCH_KB_ARTICLES", "1000" if QUICK else "10000"))
QUERIES = int(os.environ.get("BENCH_KB_QUERIES", "200" if QUICK else "1000"))
START = datetime(2026, 10, 31, 15, tzinfo=UTC)  # 2026-11-01 00:00 in Seoul
DAYS = 30
QUEUES = ["general-ko", "general-en", "transport-ko", "welfare-ko", "foreign-zh"]
CHANNELS = ["voice"] * 7 + ["sms", "chat", "sns"]
LANGUAGES = ["ko"] * 8 + ["en", "zh"]
COLUMNS = ("channel", "status", "started_at", "language", "ivr_path", "queue", "wait_seconds", "talk_seconds",
           "outcome", "ivr_fallback", "notes", "satisfaction", "updated_at")
WORDS = ["버스", "정류장", "노선", "지하철", "주차", "쓰레기", "수거", "가로등", "도로", "보수", "복지", "수당", "신청",
         "여권", "민원", "세금", "납부", "공원", "예약", "소음", "불법", "주정차", "택시", "요금", "환급", "전입", "신고"]
PARTICLE = ["이", "가", "을", "를", "에서", "으로", "의", ""]


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _reset_peak() -> int:
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux)
    return _rss_kib("VmRSS")


def contact_rows(n: int) -> Iterator[tuple[object, ...]]:
    """The same month every time (seeded), generated as it is loaded."""
    rng = random.Random(18)
    step = DAYS * 86400 / n
    for i in range(n):
        at = START + timedelta(seconds=i * step)
        channel = rng.choice(CHANNELS)
        queue = rng.choice(QUEUES) if channel == "voice" else None
        roll = rng.random()
        outcome = ("answered" if roll < 0.75 else "abandoned" if roll < 0.9 else "self_service") if queue else None
        wait = round(rng.expovariate(1 / 25), 1) if outcome in ("answered", "abandoned") else None
        talk = round(rng.uniform(30, 600), 1) if outcome == "answered" else None
        sat = rng.randint(1, 5) if outcome == "answered" and rng.random() < 0.4 else None
        yield (channel, "closed", at, rng.choice(LANGUAGES), "main", queue, wait, talk, outcome, False, "", sat, at)


def load_contacts(url: str, rows: Iterable[tuple[object, ...]]) -> None:
    cols = ", ".join(COLUMNS)
    if url.startswith("sqlite"):
        def sqlite_row(r: tuple[object, ...]) -> tuple[object, ...]:
            # SQLAlchemy's SQLite DateTime: UTC wall time as text.
            return tuple(v.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f") if isinstance(v, datetime) else v
                         for v in r)
        with sqlite3.connect(url.split("///", 1)[1]) as conn:
            conn.executemany(f"INSERT INTO contacts ({cols}) VALUES ({', '.join('?' * len(COLUMNS))})",
                             (sqlite_row(r) for r in rows))
            conn.execute("ANALYZE")
        return
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        with conn.cursor().copy(f"COPY contacts ({cols}) FROM STDIN") as copy:
            for r in rows:
                copy.write_row(r)
        conn.execute("ANALYZE contacts")


async def measure_reports(url: str) -> list[object]:
    db = Database(url)
    end = START + timedelta(days=DAYS)
    try:
        base = _reset_peak()
        started = time.perf_counter()
        rows = size = 0
        async with db.session() as session:
            async for chunk in export_csv(session, START, end):
                size += len(chunk)
                rows += chunk.count(b"\n")
        export_s = time.perf_counter() - started
        export_mib = (_rss_kib("VmHWM") - base) / 1024
        base = _reset_peak()
        started = time.perf_counter()
        async with db.session() as session:
            hourly = await aggregate(session, START, end, period="hour")
        hour_s = time.perf_counter() - started
        hour_mib = (_rss_kib("VmHWM") - base) / 1024
        started = time.perf_counter()
        async with db.session() as session:
            daily = await aggregate(session, START, end, period="day")
        day_s = time.perf_counter() - started
        assert rows - 1 == CONTACTS, (rows, CONTACTS)  # every contact exported, once
        total = sum(b.contacts for b in daily.rows.values())
        assert total == CONTACTS, (total, CONTACTS)
        started = time.perf_counter()
        peer_rows = await asyncio.to_thread(peer_export, url)
        peer_s = time.perf_counter() - started
        assert peer_rows == CONTACTS
        return [rows - 1, export_s, peer_s, export_mib, size / 1e6, hour_s, len(hourly.rows), hour_mib, day_s]
    finally:
        await db.dispose()


PEER_SQL = ("SELECT c.id, c.channel, c.status, c.started_at, c.answered_at, c.ended_at, c.language, c.queue, "
            "a.username, c.topic, g.code, c.tracking_number, c.wait_seconds, c.talk_seconds, c.outcome, "
            "c.ivr_fallback, c.hangup_side, c.resolution, c.satisfaction FROM contacts c "
            "LEFT JOIN agents a ON a.id = c.agent_id LEFT JOIN categories g ON g.id = c.category_id "
            "WHERE c.started_at >= {p} AND c.started_at < {p} ORDER BY c.started_at, c.id")


def peer_export(url: str) -> int:
    """The floor: the bare driver's cursor straight into csv.writer (no SQLAlchemy, no cell checks)."""
    sink = _Sink()
    writer = csv.writer(sink)
    end = START + timedelta(days=DAYS)
    if url.startswith("sqlite"):
        with sqlite3.connect(url.split("///", 1)[1]) as conn:
            fmt = "%Y-%m-%d %H:%M:%S.%f"
            cursor = conn.execute(PEER_SQL.format(p="?"), (START.strftime(fmt), end.strftime(fmt)))
            while batch := cursor.fetchmany(5000):
                writer.writerows(batch)
    else:
        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn, \
                conn.cursor(name="peer_export") as cursor:  # server-side: rows arrive in batches
            cursor.itersize = 5000
            cursor.execute(PEER_SQL.format(p="%s"), (START, end))
            writer.writerows(cursor)
    return sink.lines


class _Sink:
    def __init__(self) -> None:
        self.lines = 0

    def write(self, text: str) -> int:
        self.lines += 1
        return len(text)


def article_rows(n: int) -> list[dict[str, object]]:
    rng = random.Random(1818)
    now = datetime.now(UTC)
    out = []
    for i in range(n):
        words = rng.sample(WORDS, 4)
        title = f"{words[0]} {words[1]} 안내 {i}"
        body = " ".join(w + rng.choice(PARTICLE) for w in rng.sample(WORDS, 12)) + f" 접수번호 {{tracking_number}} #{i}"
        texts = {"ko": {"title": title, "body": body}, "en": {"title": f"Guide {i}", "body": f"English text {i}"}}
        out.append({"key": f"bench-{i}", "texts": texts, "tags": words[2:], "channels": [], "owner": "bench",
                    "search_text": compact("\n".join([title, body, texts["en"]["title"], texts["en"]["body"], *words[2:]])),
                    "usage_count": rng.randint(0, 500), "revision": 1, "created_at": now, "updated_at": now})
    return out


def queries(n: int) -> list[str]:
    rng = random.Random(7)
    out = []
    for i in range(n):
        a, b = rng.sample(WORDS, 2)
        out.append([a, f"{a}{b}", f"{a} {b}{rng.choice(PARTICLE)}", f"{b}{rng.choice(PARTICLE)}"][i % 4])
    return out


async def measure_kb(url: str) -> list[object]:
    from sqlalchemy import insert

    db = Database(url)
    try:
        async with db.transaction() as session:
            rows = article_rows(ARTICLES)
            for i in range(0, len(rows), 1000):
                await session.execute(insert(Article), rows[i:i + 1000])
        timings = []
        hits = 0
        async with db.session() as session:
            for q in queries(QUERIES):
                started = time.perf_counter()
                found = await search_articles(session, q, limit=20)
                timings.append((time.perf_counter() - started) * 1000)
                hits += len(found)
        return [ARTICLES, QUERIES, percentile(timings, 50), percentile(timings, 99), max(timings), hits / QUERIES]
    finally:
        await db.dispose()


def _measure(url: str) -> list[object]:
    return asyncio.run(measure_reports(url))


def in_fresh_process(url: str) -> list[object]:
    """``measure_reports(url)`` in a new Python process (spawned, not forked: none of this
    process's heap), so its peaks are its own and not what earlier benches left behind."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_measure, (url,))


def main() -> None:
    report.section("Reports and knowledge base", __doc__ or "")
    backends = [("SQLite", sqlite_db)]
    why = postgres_available()
    if not why:
        backends.append(("PostgreSQL", postgres_db))
    else:
        report.note(f"PostgreSQL skipped: {why}")
    month, kb = [], []
    for name, make in backends:
        with make() as url:
            started = time.perf_counter()
            load_contacts(url, contact_rows(CONTACTS))
            load_s = time.perf_counter() - started
            month.append([name, load_s, *in_fresh_process(url)])
        with make() as url:
            kb.append([name, *asyncio.run(measure_kb(url))])
    report.table(["database", "load s", "contacts", "CSV export s", "peer: bare driver to csv s", "export peak MiB", "CSV MB",
                  "hourly aggregate s", "hour groups", "aggregate peak MiB", "daily aggregate s"], month,
                 caption=f"A month of contacts ({CONTACTS:,}): export and aggregate")
    report.table(["database", "articles", "searches", "p50 ms", "p99 ms", "max ms", "hits/search"], kb,
                 caption="Knowledge-base search")
