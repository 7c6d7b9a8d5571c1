"""Sidecar: inbound SMS webhooks per second with the durable commit, on SQLite and PostgreSQL.

The web service (``dasan up --only web``, which carries the messaging webhooks) runs in a
subprocess; this process posts signed generic-provider webhooks (``POST /webhooks/sms``,
``X-Dasan-Signature``) from many senders at a fixed concurrency for a fixed time. A 200 means
the message, its contact and its timeline event were committed (SQLite ``synchronous=FULL``,
PostgreSQL default ``synchronous_commit=on``) and handed off. Latency is measured here, per
request, from send to the complete response. Afterwards the stored messages are counted: the
rate counts only what is in the database. The server group-commits the webhooks that arrive
together (``ivr.messaging.store.InboundWriter``), so the rate depends on how many a provider
has in flight: each level runs against the same server, one after the other. Goal: 1,500/s
on this 2-core machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg

from bench import report
from bench.databases import postgres_available, postgres_db, sqlite_db
from bench.http_load import post_for, request_bytes
from bench.measure import ServerProcess, cpu_seconds, percentile
from ivr.messaging.signatures import GENERIC_HEADER, generic_signature
from ivr.up import loop_factory

QUICK = os.environ.get("BENCH_QUICK") == "1"
SECONDS = float(os.environ.get("BENCH_SMS_SECONDS", "3" if QUICK else "6"))
# Webhooks in flight at once: a provider delivers in parallel, so the server is measured at a
# few levels (the latency column shows what a deeper pipeline costs each request).
LEVELS = [int(x) for x in os.environ.get("BENCH_SMS_CONCURRENCY", "32,128,256").split(",") if x.strip()]
SECRET = "bench-webhook-secret"


def _count_messages(url: str) -> int:
    if url.startswith("sqlite"):
        import sqlite3

        with sqlite3.connect(url.split("///", 1)[1]) as conn:
            return int(conn.execute("SELECT count(*) FROM messages").fetchone()[0])
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://", 1)) as conn:
        row = conn.execute("SELECT count(*) FROM messages").fetchone()
        return int(row[0]) if row else 0


def _webhooks(host: str) -> Callable[[], bytes]:
    """Signed generic-provider webhooks, each a new message from one of 50,000 senders."""
    run = uuid.uuid4().hex[:8]
    counter = itertools.count(1)

    def make() -> bytes:
        n = next(counter)
        body = json.dumps({"message_id": f"bench-{run}-{n}", "from": f"+8210{n % 50_000:08d}",
                           "to": "120", "body": f"버스 정류장 안내판 고장 신고합니다 #{n}"}).encode()
        return request_bytes("POST", host, "/webhooks/sms", body, {
            GENERIC_HEADER: generic_signature(SECRET, body), "Content-Type": "application/json"})

    return make


def _run(url: str, workdir: Path, name: str) -> list[list[object]]:
    env = {"DASAN_CONFIG": "/dev/null", "DASAN__DATABASE__URL": url, "DASAN__WEB__PORT": "0",
           "DASAN__DATA_DIR": str(workdir / "var"), "DASAN__RECORDINGS__DIR": str(workdir / "recordings"),
           "DASAN__SMS__WEBHOOK_SECRET": SECRET, "DASAN__AMI__ENABLED": "false"}
    server = ServerProcess(["-m", "ivr.cli", "up", "--only", "web"], env=env, ready=r"dasan: web\s+http://[^:]+:(\d+)")
    server.start()
    rows: list[list[object]] = []
    try:
        host = f"127.0.0.1:{server.port}"
        for level in LEVELS:
            before = _count_messages(url)
            cpu_before = cpu_seconds(server.pid)
            # The load generator on uvloop too: on two cores, its CPU is taken from the server.
            with asyncio.Runner(loop_factory=loop_factory("uvloop")) as runner:
                stats = runner.run(post_for("127.0.0.1", server.port, _webhooks(host), SECONDS, level))
            ok, failed, latencies, errors = stats.ok, stats.failed, stats.latencies, stats.errors
            stored = _count_messages(url) - before
            cpu = (cpu_seconds(server.pid) - cpu_before) / max(1, ok) * 1000
            rate = stored / SECONDS
            rows.append([name, level, SECONDS, ok, failed, stored, rate, _ms(percentile(latencies, 50)),
                         _ms(percentile(latencies, 99)), cpu, server.rss_kib() / 1024,
                         "yes" if rate >= 1500 else "no", "; ".join(errors)])
    finally:
        server.stop()
    return rows


def _ms(v: float | None) -> float | None:
    return None if v is None else v * 1000


def main() -> None:
    report.section("Messaging sidecar: inbound SMS webhooks per second (durable)", __doc__ or "")
    backends: list[tuple[str, Callable[[], contextlib.AbstractContextManager[str]]]] = [("SQLite", sqlite_db)]
    why_not = postgres_available()
    if not why_not:
        backends.append(("PostgreSQL", postgres_db))
    rows = []
    for name, factory in backends:
        with factory() as url, tempfile.TemporaryDirectory(prefix="dasan-bench-sms-") as tmp:
            rows.extend(_run(url, Path(tmp), name))
    report.table(["database", "webhooks in flight", "seconds", "200 OK", "failed", "stored", "stored/s", "p50 ms",
                  "p99 ms", "server CPU ms/webhook", "server RSS MiB", "goal 1,500/s met", "errors"], rows)
    if why_not:
        report.note(f"PostgreSQL not measured: {why_not}.")


if __name__ == "__main__":
    main()
