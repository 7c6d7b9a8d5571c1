"""FastAGI: complete IVR sessions per second, command latency and memory per call, against peers.

Every target gets the same calls from ``bench/agi_load.py`` (Asterisk 22's side of AGI, see
that module): the default Korean menu walked to a queue. Targets:

- (a) this project's FastAGI server (``dasan up --only agi``), in a subprocess;
- (b) the same menu through process AGI: the ``agi_scripts/`` entry point started once per
  call as Asterisk does (environment on stdin, commands on stdout, pyst2 inside);
- (c) a thread-per-call server (``socketserver.ThreadingTCPServer``, wazo-agid's design),
  ``bench/peers/threaded_agi.py``: the exact command lines (a) sent for the walk and the same
  contact-record transactions (open, one commit per menu step, finish) through blocking
  SQLAlchemy on its own SQLite file (the project's engine is asyncio code, so it cannot be
  driven from a blocking channel; its behaviour is replicated instead);
- (d) a bare asyncio server (``bench/peers/bare_agi.py``) that sends the same lines and does
  nothing else: the ceiling for this machine with this load generator; (d') the same on the
  event loop (a) runs on (the ``event_loop`` setting, uvloop by default).

Saturated runs: N calls kept going back to back, replies at once, for a fixed time; calls/s
counts sessions completed in the window (calls still running then may finish within a grace
period: "done after window"; after that they are cut and count as failed, their latencies kept). Paced run: many calls arriving over several seconds,
each prompt answered after 1-3 s (a person listening), measuring the server's reaction time
(p50/p99) and its memory with every call up at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench import report
from bench.agi_load import (
    CallResult,
    RunStats,
    paced,
    process_call,
    raise_fd_limit,
    saturated,
    tcp_call,
)
from bench.measure import (
    ROOT,
    ServerProcess,
    children,
    cpu_seconds,
    load_generator_gc,
    percentile,
    processes_named,
    rss_kib,
)
from ivr.config import Settings

QUICK = os.environ.get("BENCH_QUICK") == "1"
DURATION = float(os.environ.get("BENCH_AGI_SECONDS", "2" if QUICK else "4"))
LEVELS = [int(x) for x in os.environ.get("BENCH_AGI_LEVELS", "1,100,1000").split(",")]
PACED_CALLS = int(os.environ.get("BENCH_AGI_PACED_CALLS", "200" if QUICK else "1000"))
PACED_ARRIVAL = float(os.environ.get("BENCH_AGI_ARRIVAL", "5"))
PROCESS_LEVELS = [1, 10]  # process AGI: one Python process per call, bounded
# A process-AGI call takes about a second (a Python start-up per call): its window is longer,
# so its rate counts several calls rather than the one or two a 4 s window holds.
PROCESS_SECONDS = float(os.environ.get("BENCH_AGI_PROCESS_SECONDS", "8" if QUICK else "20"))
PROCESS_PACED_CALLS = 50
PACE = (1.0, 3.0)
PG_TOO = os.environ.get("BENCH_AGI_POSTGRES", "1") == "1"
# Saturated runs are repeated and the best kept, for every target alike: the machine is shared,
# and a neighbour's burst in one 4 s window otherwise decides a ratio (process AGI: once).
REPEAT = int(os.environ.get("BENCH_AGI_REPEAT", "1" if QUICK else "2"))


@dataclass
class Target:
    key: str
    label: str
    # Returns a coroutine making one call (digits, pace) -> CallResult.
    make_call: Callable[[Sequence[str], tuple[float, float] | None], asyncio.Task[CallResult]] | None = None
    server: ServerProcess | None = None
    levels: list[int] = field(default_factory=lambda: list(LEVELS))
    paced_calls: int = PACED_CALLS
    duration: float = DURATION  # each saturated run's window
    rows: list[list[object]] = field(default_factory=list)
    best_rate: float = 0.0
    paced_p99: float | None = None
    memory_per_call_kib: float | None = None
    note: str = ""


# A call still running this long after its run's window is cut (counted as failed, its
# latencies kept): a server that queues calls for minutes must not stretch `make bench`.
GRACE = float(os.environ.get("BENCH_AGI_GRACE", "10"))
PACED_CALL_LIMIT = 60.0


def _tcp(port: int) -> Callable[[Sequence[str], tuple[float, float] | None], asyncio.Task[CallResult]]:
    def make(digits: Sequence[str], pace: tuple[float, float] | None) -> asyncio.Task[CallResult]:
        limit = PACED_CALL_LIMIT if pace else DURATION + GRACE
        return asyncio.ensure_future(tcp_call("127.0.0.1", port, "main", digits, pace, timeout=limit))
    return make


def _ms(value: float | None) -> float | None:
    return None if value is None else value * 1000


async def _measure_target(t: Target, digits: Sequence[str], pids: Callable[[], list[int]],
                          database_pids: Callable[[], list[int]] | None = None) -> None:
    """Paced run first (clean memory baseline), then the saturated levels. ``database_pids``:
    a database server on this machine whose CPU is reported beside the server's."""
    assert t.make_call is not None
    make = t.make_call

    def mem() -> int:
        return sum(rss_kib(p) for p in pids())

    def cpu() -> float:
        return sum(cpu_seconds(p) for p in pids())

    await asyncio.sleep(0.3)
    idle = mem()
    peak: dict[str, float] = {}

    def at_peak() -> None:
        peak["rss"] = mem()

    stats = await paced(lambda: make(digits, PACE), t.paced_calls, PACED_ARRIVAL, at_peak=at_peak)
    p50, p99 = percentile(stats.latencies, 50), percentile(stats.latencies, 99)
    t.paced_p99 = p99
    per_call = (peak.get("rss", 0) - idle) / t.paced_calls if peak else None
    if t.key == "b":
        # Each call is its own process: what a call costs is the whole process.
        per_call = peak.get("rss", 0) / t.paced_calls if peak else None
    t.memory_per_call_kib = per_call
    t.rows.append([f"paced {t.paced_calls} calls", stats.calls, None, stats.failed, None, _ms(p50), _ms(p99),
                   stats.commands_per_call, None, idle / 1024, peak.get("rss", 0) / 1024, per_call, None])
    if stats.errors:
        t.note += f" paced errors: {stats.errors[:2]}"
    for level in t.levels:
        best: tuple[float, RunStats, float, float, float, float] | None = None
        for _ in range(1 if t.key == "b" else REPEAT):
            database_before = sum(cpu_seconds(p) for p in database_pids()) if database_pids else 0.0
            before, mine, wall = cpu(), time.process_time(), time.monotonic()
            run = await saturated(lambda: make(digits, None), level, t.duration)
            elapsed = time.monotonic() - wall
            database = sum(cpu_seconds(p) for p in database_pids()) - database_before if database_pids else 0.0
            if best is None or run.calls_per_second > best[0]:
                best = (run.calls_per_second, run, cpu() - before, time.process_time() - mine, elapsed, database)
        assert best is not None
        _rate, stats, used, mine_used, elapsed, database = best
        if database_pids:
            t.note += (f" saturated {level}: PostgreSQL's own processes used {database / elapsed * 100:.0f} %"
                       f" of a core ({database / max(1, stats.calls) * 1000:.2f} ms per call) on the same two cores.")
        loadgen = mine_used / elapsed * 100
        total = stats.calls + stats.late + stats.failed
        if loadgen >= 90:
            t.note += (f" saturated {level}: the load generator used {loadgen:.0f} % of a core, so this row is "
                       "limited by the load generator as much as by the server.")
        rate = stats.calls_per_second
        t.best_rate = max(t.best_rate, rate)
        cpu_per_call = used / total * 1000 if total and t.key != "b" else None
        t.rows.append([f"saturated {level}", stats.calls, stats.late, stats.failed, rate, _ms(percentile(stats.latencies, 50)),
                       _ms(percentile(stats.latencies, 99)), stats.commands_per_call, cpu_per_call,
                       None, None, None, f"{loadgen:.0f} %"])
        if stats.errors:
            t.note += f" {level}: errors {stats.errors[:2]}"


def _report(targets: list[Target], walk: CallResult) -> None:
    headers = ["run", "calls done", "done after window", "failed", "calls/s", "p50 ms", "p99 ms", "cmds/call", "server CPU ms/call",
               "RSS idle MiB", "RSS at peak MiB", "KiB per call", "load generator CPU"]
    for t in targets:
        report.table(headers, t.rows, caption=t.label)
        if t.note.strip():
            report.note(f"{t.label}:{t.note}")
    by = {t.key: t for t in targets}
    a = by.get("a")
    rows: list[list[object]] = []
    for t in targets:
        ratio = a.best_rate / t.best_rate if a and t.best_rate and t is not a else None
        rows.append([t.label, t.best_rate, ratio, _ms(t.paced_p99), t.memory_per_call_kib])
    report.table(["target", "best calls/s (saturated)", "(a) / this", "paced p99 ms", "KiB per concurrent call"],
                 rows, caption="Side by side")
    goals = []
    for x in (t for t in targets if t.key.startswith("a")):
        name = "(a)" if x.key == "a" else "(a) on PostgreSQL"
        for d, tag in (("d", "(d)"), ("d-uv", "(d')")):
            if d in by and by[d].best_rate:
                goals.append([f"{name} >= 80 % of {tag} throughput", f"{x.best_rate / by[d].best_rate:.0%}",
                              "yes" if x.best_rate >= 0.8 * by[d].best_rate else "no"])
        if "b" in by and by["b"].best_rate:
            goals.append([f"{name} >= 50 x (b)", f"{x.best_rate / by['b'].best_rate:.1f} x",
                          "yes" if x.best_rate >= 50 * by["b"].best_rate else "no"])
        if "c" in by and by["c"].best_rate:
            goals.append([f"{name} >= 3 x (c)", f"{x.best_rate / by['c'].best_rate:.2f} x",
                          "yes" if x.best_rate >= 3 * by["c"].best_rate else "no"])
        if x.paced_p99 is not None:
            goals.append([f"{name} paced p99 < 5 ms ({x.paced_calls} calls)", f"{x.paced_p99 * 1000:.2f} ms",
                          "yes" if x.paced_p99 < 0.005 else "no"])
    if goals:
        report.table(["goal", "measured", "met"], goals, caption="Goals")
    report.note("The walk each call makes (commands (a) sent, replies from the load generator):\n\n```\n"
                + "\n".join(walk.commands) + "\n```\n\nFinal channel variables: "
                + ", ".join(f"{k}={v}" for k, v in sorted(walk.variables.items())))


# The default Korean menu walked to a queue: main menu "1" (transport), then "2" (counsellor).
DIGITS = [d for d in os.environ.get("BENCH_AGI_DIGITS", "1,2").split(",") if d]


def _project_env(workdir: Path, db_url: str) -> dict[str, str]:
    return {"DASAN_CONFIG": "/dev/null", "DASAN__DATABASE__URL": db_url, "DASAN__AGI__PORT": "0",
            "DASAN__AGI__HOST": "127.0.0.1", "DASAN__DATA_DIR": str(workdir / "var"),
            "DASAN__RECORDINGS__DIR": str(workdir / "recordings"), "DASAN__AMI__ENABLED": "false"}


def _project_server(workdir: Path, db_url: str) -> tuple[ServerProcess | None, str]:
    """``dasan up --only agi`` when the service is registered, else the same service built directly."""
    import importlib.util

    from ivr import services

    env = _project_env(workdir, db_url)
    if "agi" in services.REGISTRY:
        return ServerProcess(["-m", "ivr.cli", "up", "--only", "agi"], env=env,
                             ready=r"dasan: agi\s+\S*?:(\d+)", settled=r"dasan: ready"), "`dasan up --only agi`"
    if importlib.util.find_spec("ivr.agi.server") is not None:
        return ServerProcess(["-m", "bench.project_agi"], env=env), \
            "`ivr.agi.server.AgiService` started by `bench/project_agi.py` (`agi` not registered in ivr.services)"
    return None, ""


def _process_agi_argv() -> list[str] | None:
    """The agi_scripts/ entry point for the main menu, as Asterisk's AGI(<script>) would run it."""
    script = ROOT / "agi_scripts" / "dasan_agi.py"
    return [sys.executable, str(script), "main"] if script.is_file() else None


async def _walk(port: int) -> CallResult:
    return await tcp_call("127.0.0.1", port, "main", DIGITS, keep_commands=True)


async def _bench(workdir: Path, db_url: str) -> None:
    project, how = _project_server(workdir, db_url)
    if project is None:
        report.note("Not measured: this tree has no FastAGI server (ivr.agi.server).")
        return
    report.note(f"(a) runs as {how}, on SQLite (`synchronous=FULL`) in a temporary folder, then on a "
                "fresh PostgreSQL database of the local server (`BENCH_AGI_POSTGRES=0` skips that).")
    targets: list[Target] = []
    project.start()
    try:
        walk = await _walk(project.port)
        if not walk.ok or not walk.variables.get("QUEUE"):
            raise RuntimeError(f"the walk did not reach a queue: {walk.error} {walk.variables} {walk.commands}")
        commands_file = workdir / "commands.json"
        commands_file.write_text(json.dumps(walk.commands, ensure_ascii=False), encoding="utf-8")
        steps = _menu_steps(db_url, walk.variables.get("CONTACT_ID", ""))
        a = Target("a", "(a) dasan FastAGI server (SQLite)", _tcp(project.port), project)
        await _measure_target(a, DIGITS, lambda: [project.pid, *children(project.pid)])
        targets.append(a)
    finally:
        project.stop()

    # The same server on PostgreSQL (the production database), when the server answers.
    from bench.databases import postgres_available, postgres_db

    if PG_TOO and not postgres_available():
        with postgres_db() as pg_url:
            pg_server, _how = _project_server(workdir, pg_url)
            assert pg_server is not None
            pg_server.start()
            try:
                apg = Target("a-pg", "(a) dasan FastAGI server (PostgreSQL)", _tcp(pg_server.port), pg_server)
                await _measure_target(apg, DIGITS, lambda: [pg_server.pid, *children(pg_server.pid)],
                                      lambda: processes_named("postgres"))
                targets.append(apg)
            finally:
                pg_server.stop()

    argv = _process_agi_argv()
    if argv is not None:
        env = {"DASAN_CONFIG": "/dev/null", **{k: v for k, v in _project_env(workdir, db_url).items()
                                               if k != "DASAN_CONFIG"}}
        me = os.getpid()

        def make_b(digits: Sequence[str], pace: tuple[float, float] | None) -> asyncio.Task[CallResult]:
            return asyncio.ensure_future(process_call(argv, digits, pace, env=env))

        b = Target("b", "(b) process AGI (agi_scripts/, pyst2, one process per call)", make_b,
                   levels=[x for x in PROCESS_LEVELS], paced_calls=PROCESS_PACED_CALLS, duration=PROCESS_SECONDS)
        await _measure_target(b, DIGITS, lambda: children(me))
        targets.append(b)
    else:
        report.note("(b) process AGI not measured: no agi_scripts/ entry point for the main menu.")

    from bench.databases import sqlite_db

    peers = [("c", "(c) thread-per-call (socketserver.ThreadingTCPServer), same commands and commits",
              "bench.peers.threaded_agi", [])]
    # (d) on asyncio's own loop, as the issue names it, and (d') on the loop (a) runs on when
    # that is another one (uvloop), so the ceiling is the same runtime's too.
    peers.append(("d", "(d) bare asyncio, same commands only (the ceiling)", "bench.peers.bare_agi",
                  ["--loop", "asyncio"]))
    if Settings().event_loop != "asyncio":
        peers.append(("d-uv", f"(d') bare asyncio on {Settings().event_loop} (the loop (a) runs on)",
                      "bench.peers.bare_agi", ["--loop", Settings().event_loop]))
    for key, label, module, extra in peers:
        args = ["-m", module, "--commands", str(commands_file), *extra]
        with contextlib.ExitStack() as stack:
            if key == "c":
                args += ["--db", stack.enter_context(sqlite_db(workdir)), "--steps", str(steps)]
            await _run_peer(targets, key, label, args)
    _report(targets, walk)


async def _run_peer(targets: list[Target], key: str, label: str, args: list[str]) -> None:
    server = ServerProcess(args)
    server.start()
    try:
        t = Target(key, label, _tcp(server.port), server)
        await _measure_target(t, DIGITS, lambda: [server.pid])
        targets.append(t)
    finally:
        server.stop()


def _menu_steps(db_url: str, contact_id: str) -> int:
    """How many menu steps the IVR committed for the walk (entries of the contact's ivr_path)."""
    import sqlite3

    with sqlite3.connect(db_url.split("///", 1)[1]) as conn:
        row = conn.execute("SELECT ivr_path FROM contacts WHERE id = ?", (int(contact_id or 0),)).fetchone()
    return len([p for p in (row[0] if row else "").split(" > ") if p.strip()])


def main() -> None:
    raise_fd_limit()
    report.section("FastAGI: IVR sessions per second, command latency and memory per call", __doc__ or "")
    report.note(f"Saturated runs: {DURATION:.0f} s each at {', '.join(map(str, LEVELS))} concurrent calls, "
                f"the best of {REPEAT} for every target "
                f"(process AGI: {', '.join(map(str, PROCESS_LEVELS))}, one Python process per call, "
                f"{PROCESS_SECONDS:.0f} s each). "
                f"Paced run: {PACED_CALLS} calls arriving over {PACED_ARRIVAL:.0f} s, every prompt answered "
                f"after {PACE[0]:.0f}-{PACE[1]:.0f} s (process AGI: {PROCESS_PACED_CALLS} calls). "
                "Latency = the server's reaction time per command, taken on the caller's side. "
                "\"server CPU ms/call\" = the server process's CPU time / calls, from /proc. "
                "Memory per concurrent call = (RSS with every paced call up - RSS idle) / calls; "
                "for process AGI, the RSS of all AGI processes / calls.")
    from bench.databases import sqlite_db

    with tempfile.TemporaryDirectory(prefix="dasan-bench-agi-") as tmp, sqlite_db(Path(tmp)) as url, \
            load_generator_gc():
        asyncio.run(_bench(Path(tmp), url))


if __name__ == "__main__":
    main()
