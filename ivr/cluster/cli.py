"""``dasan cluster up --dir DIR``: a local cluster for trying it (docs/cluster.md)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any


def _up(args: argparse.Namespace) -> int:
    from ivr import up
    from ivr.cli import settings_from
    from ivr.cluster.local import LocalCluster, LocalClusterError
    from ivr.kamailio.render import KamailioRenderError

    settings = settings_from(args)
    if not settings.cluster.enabled:
        print("cluster.asterisk_nodes is empty: nothing to start (docs/cluster.md)", file=sys.stderr)
        return 2
    root = Path(args.dir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    local = LocalCluster(settings, root)
    try:
        for line in local.start():
            print(line, flush=True)
        if args.no_dasan:
            print("cluster: ready (Ctrl-C stops it) / 클러스터 준비됨", flush=True)
            asyncio.run(asyncio.Event().wait())
            return 0
        # this process is the first dasan node: its IVR where the nodes' dialplans look first
        if settings.cluster.dasan_nodes:
            first = settings.cluster.dasan_nodes[0]
            settings.agi.host, settings.agi.port = first.agi_host, first.agi_port
        print("cluster: ready; dasan node 1 starting here (Ctrl-C stops all)", flush=True)
        with asyncio.Runner(loop_factory=up.loop_factory(settings.event_loop)) as runner:
            runner.run(up.run(settings))
    except (LocalClusterError, KamailioRenderError) as exc:
        print(f"cluster up failed / 클러스터 시작 실패: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    finally:
        local.stop()
    return 0


def register(sub: Any) -> None:
    parser = sub.add_parser("cluster", help="several Asterisk nodes behind Kamailio / 클러스터")
    cluster_sub = parser.add_subparsers(dest="cluster_command", required=True)
    up_parser = cluster_sub.add_parser("up", help="start Kamailio and every Asterisk node of cluster: on this machine")
    up_parser.add_argument("--dir", required=True, help="folder for the rendered files, logs and the nodes' data")
    up_parser.add_argument("--no-dasan", action="store_true", help="start only Kamailio and the Asterisk nodes")
    up_parser.set_defaults(func=_up)
