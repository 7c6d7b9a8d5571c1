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

The load generator (``bench/http_load.py``) keeps that many keep-alive connections, one
webhook in flight on each, and costs about a tenth of a core at these rates (aiohttp's
client cost as much CPU per request as the server it measured). Peers, same load generator,
same signed webhooks (``bench/peers/bare_webhook.py``):
- "bare aiohttp, nothing stored": the signature checked, the JSON parsed, 200 at once; what
  aiohttp on this machine answers at all, so the sidecar's share of it is plain;
- "one transaction per webhook": the usual design, durable too: the same checks, then one
  transaction per request through the project's own record helpers (citizen, thread or new
  contact, message, timeline event), committed before the 200.
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
from ivr.messaging.providers.generic import GENERIC_HEADER, generic_signature
from ivr.up import loop_factory

QUICK = os.environ.get("BENCH_QUICK") == "1"
SECONDS = float(os.environ.get("BENCH_SMS_SECONDS", "3" if QUICK else "6"))
# Webhooks in flight at once: a provider delivers in parallel, so the server is measured at a
# few levels (the latency column shows what a deeper pipeline costs each request).
LEVELS = [int(x) for x in os.environ.get("BENCH_SMS_CONCURRENCY", "64,256,512").split(",") if x.strip()]
PEER_LEVEL = 32  # the per-webhook-transaction peer: more in flight only queues on its commits
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


def _project(url: str, workdir: Path) -> ServerProcess:
    """The sidecar as it runs: ``dasan up --only web``."""
    env = {"DASAN_CONFIG": "/dev/null", "DASAN__DATABASE__URL": url, "DASAN__WEB__PORT": "0",
           "DASAN__DATA_DIR": str(workdir / "var"), "DASAN__RECORDINGS__DIR": str(workdir / "recordings"),
           "DASAN__SMS__WEBHOOK_SECRET": SECRET, "DASAN__AMI__ENABLED": "false"}
    return ServerProcess(["-m", "ivr.cli", "up", "--only", "web"], env=env, ready=r"dasan: web\s+http://[^:]+:(\d+)",
                         settled=r"dasan: ready")


def _peer(mode: str, url: str) -> ServerProcess:
    return ServerProcess(["-m", "bench.peers.bare_webhook", "--mode", mode, "--secret", SECRET, "--db", url])


def _run(server: ServerProcess, url: str | None, label: str, database: str, levels: list[int]) -> list[list[object]]:
    """One server, each level in turn; ``url`` None: nothing is stored (the ceiling)."""
    server.start()
    rows: list[list[object]] = []
    try:
        host = f"127.0.0.1:{server.port}"
        for level in levels:
            before = _count_messages(url) if url else 0
            cpu_before = cpu_seconds(server.pid)
            # The load generator on uvloop too: on two cores, its CPU is taken from the server.
            with asyncio.Runner(loop_factory=loop_factory("uvloop")) as runner:
                stats = runner.run(post_for("127.0.0.1", server.port, _webhooks(host), SECONDS, level))
            stored = _count_messages(url) - before if url else None
            cpu = (cpu_seconds(server.pid) - cpu_before) / max(1, stats.ok) * 1000
            rate = (stored if stored is not None else stats.ok) / SECONDS
            goal = "yes" if rate >= 1500 else "no"
            rows.append([label, database, level, stats.ok, stats.failed, stored, rate,
                         _ms(percentile(stats.latencies, 50)), _ms(percentile(stats.latencies, 99)), cpu,
                         server.rss_kib() / 1024, goal if url else "-", "; ".join(stats.errors)])
    finally:
        server.stop()
    return rows


def _ms(v: float | None) -> float | None:
    return None if v is None else v * 1000


PROJECT = "dasan sidecar (group commit)"
PER_REQUEST = "one transaction per webhook"
BARE = "bare aiohttp, nothing stored (the ceiling)"


def main() -> None:
    report.section("Messaging sidecar: inbound SMS webhooks per second (durable)", __doc__ or "")
    backends: list[tuple[str, Callable[[], contextlib.AbstractContextManager[str]]]] = [("SQLite", sqlite_db)]
    why_not = postgres_available()
    if not why_not:
        backends.append(("PostgreSQL", postgres_db))
    rows = _run(_peer("bare", ""), None, BARE, "-", [max(LEVELS)])
    for name, factory in backends:
        with factory() as url, tempfile.TemporaryDirectory(prefix="dasan-bench-sms-") as tmp:
            rows.extend(_run(_project(url, Path(tmp)), url, PROJECT, name, LEVELS))
        with factory() as url:
            rows.extend(_run(_peer("per-request", url), url, PER_REQUEST, name, [PEER_LEVEL]))
    report.table(["server", "database", "webhooks in flight", "200 OK", "failed", "stored", "stored/s", "p50 ms",
                  "p99 ms", "server CPU ms/webhook", "server RSS MiB", "goal 1,500/s met", "errors"], rows)
    best = {name: max((float(r[6]) for r in rows if r[0] == PROJECT and r[1] == name), default=0.0)
            for name, _ in backends}
    side = []
    for name, _ in backends:
        peer = next((float(r[6]) for r in rows if r[0] == PER_REQUEST and r[1] == name), 0.0)
        ceiling = next((float(r[6]) for r in rows if r[0] == BARE), 0.0)
        side.append([name, best[name], f"{best[name] / peer:.0f} x" if peer else "-",
                     f"{best[name] / ceiling:.0%}" if ceiling else "-"])
    report.table(["database", "sidecar best stored/s", "vs one transaction per webhook", "of the bare ceiling"],
                 side, caption="Side by side")
    if why_not:
        report.note(f"PostgreSQL not measured: {why_not}.")


if __name__ == "__main__":
    main()
