"""``dasan transcribe``: run transcription workers alone (e.g. on extra machines with Redis)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from typing import Any

from ivr.cli import settings_from


async def _run(args: argparse.Namespace) -> int:
    from ivr.context import AppContext
    from ivr.speech.worker import TranscriptionWorker, consumer_name, recover_unfinished

    ctx = await AppContext.create(settings_from(args))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        workers = [TranscriptionWorker(ctx.db, ctx.bus, ctx.settings, name=f"{args.name}-{i}" if args.name
                                       else consumer_name(i), claim_after=args.claim_after)
                   for i in range(args.workers)]
        if args.preload:
            for lang in ctx.settings.speech.models:
                await asyncio.to_thread(workers[0].store.get, lang)
        if ctx.settings.bus.backend == "memory":
            queued = await recover_unfinished(ctx.db, ctx.bus)
            if queued:
                print(f"transcribe: re-queued {queued} unfinished recordings from the database", flush=True)
        print(f"transcribe: {len(workers)} worker(s) {', '.join(w.name for w in workers)}; "
              f"models: {', '.join(sorted(ctx.settings.speech.models))}; bus {ctx.settings.bus.backend} "
              "/ 전사 작업자 시작", flush=True)
        tasks = [asyncio.create_task(w.run(stop)) for w in workers]
        await stop.wait()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        print("transcribe: stopped", flush=True)
    finally:
        await ctx.close()
    return 0


def _transcribe(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))


def register(sub: Any) -> None:
    p = sub.add_parser("transcribe", help="run transcription workers (recordings.finished jobs)")
    p.add_argument("--workers", type=int, default=1, help="worker tasks in this process (default 1)")
    p.add_argument("--name", help="consumer name prefix (default host:pid)")
    p.add_argument("--claim-after", type=float, default=None,
                   help="seconds a job may sit unacked with a silent worker before it is taken over "
                        "(default: bus.claim_after_seconds, 30)")
    p.add_argument("--no-preload", dest="preload", action="store_false",
                   help="load models at the first job instead of at start")
    p.set_defaults(func=_transcribe)
