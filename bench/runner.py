"""Run every ``bench/bench_*.py`` ``main()`` and write ``docs/benchmarks.md``.

A benchmark that reports through ``bench.report`` gets its tables in the document; one that
only prints gets its printed output there as a block, so nothing measured is left out. A
benchmark that fails is reported as failed (with its error) and the others still run.
``BENCH_ONLY=ami,fastagi`` runs a subset; ``BENCH_QUICK=1`` uses small sizes.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import sys
import time
import traceback
from pathlib import Path

from bench import report

HERE = Path(__file__).resolve().parent
DOC = HERE.parent / "docs" / "benchmarks.md"
# Cheap, then expensive; anything else found afterwards in name order.
ORDER = ["bench_ami", "bench_sms", "bench_fastagi", "bench_writers", "bench_transcribe"]


HEADER = """\
How to run: `make bench` (all, under 10 minutes), or `BENCH_ONLY=fastagi,ami .venv/bin/python -m bench`.
Knobs: `BENCH_QUICK=1` (small sizes), `BENCH_AGI_LEVELS=1,100,1000`, `BENCH_AGI_SECONDS`,
`BENCH_AGI_PROCESS_SECONDS`, `BENCH_AGI_PACED_CALLS`, `BENCH_AGI_ARRIVAL`, `BENCH_AGI_GRACE`, `BENCH_AGI_REPEAT`, `BENCH_AGI_POSTGRES=0`,
`BENCH_AMI_CALLS`, `BENCH_AMI_NAIVE_CALLS`, `BENCH_SMS_SECONDS`, `BENCH_SMS_CONCURRENCY=64,256,512`,
`BENCH_WRITERS_SECONDS=60`, `BENCH_WRITERS_CONCURRENCY=64`, `BENCH_REPORT_CONTACTS=660000`,
`BENCH_KB_ARTICLES=10000`, `BENCH_KB_QUERIES=1000`. Code: `bench/`
(load generators `bench/agi_load.py` and `bench/http_load.py`, peers in `bench/peers/`, measuring in
`bench/measure.py`). Every server runs in its own process; its memory is read from
`/proc/<pid>/status` (VmRSS), its CPU time from `/proc/<pid>/stat`; latencies are taken with
monotonic clocks on the client side. The machine is shared by several people's builds and tests:
the load average above says how busy it was, so compare the rows of one table with each other
(same run, same conditions) rather than with other runs."""


class _Tee(io.TextIOBase):
    def __init__(self, *streams: io.TextIOBase) -> None:
        self.streams = streams

    def write(self, text: str) -> int:
        for s in self.streams:
            s.write(text)
        return len(text)

    def flush(self) -> None:
        for s in self.streams:
            s.flush()


def modules() -> list[str]:
    found = sorted(p.stem for p in HERE.glob("bench_*.py"))
    only = {f"bench_{x.strip()}" for x in os.environ.get("BENCH_ONLY", "").split(",") if x.strip()}
    ordered = [m for m in ORDER if m in found] + [m for m in found if m not in ORDER]
    return [m for m in ordered if not only or m in only]


def run_one(name: str) -> None:
    before = len(report.SECTIONS)
    captured = io.StringIO()
    started = time.monotonic()
    try:
        with contextlib.redirect_stdout(_Tee(sys.stdout, captured)):  # type: ignore[arg-type,type-var]
            importlib.import_module(f"bench.{name}").main()
    except Exception as exc:
        traceback.print_exc()
        report.section(f"{name}: failed")
        report.note(f"`{name}` failed after {time.monotonic() - started:.0f} s: `{type(exc).__name__}: {exc}`")
        return
    if len(report.SECTIONS) == before and captured.getvalue().strip():
        report.SECTIONS.append(report.Section(name, parts=["```\n" + captured.getvalue().strip() + "\n```"]))
    print(f"[{name}: {time.monotonic() - started:.0f} s]", flush=True)


def main() -> None:
    started = time.time()
    names = modules()
    print(f"benchmarks: {', '.join(names)}", flush=True)
    for name in names:
        run_one(name)
    if os.environ.get("BENCH_ONLY") and DOC.exists():  # a subset: the other sections stay
        report.merge_markdown(DOC, started, names)
    else:
        report.write_markdown(DOC, started, header=HEADER)
    print(f"\nwrote {DOC}", flush=True)


if __name__ == "__main__":
    main()
